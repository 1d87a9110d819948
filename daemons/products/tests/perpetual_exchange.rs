//! A perpetual market through the ledger's dispatch and a real matching
//! engine, wired as the daemons are (every forward, and every forward its
//! outcome brings, through matching and back): listing, the oracle's
//! prices and the mark in matching, orders held as margin, a trade, a
//! liquidation whose lots the network sells on the book, a stop on the
//! mark, funding on the ledger's tick, the stale index, and the state
//! restored mid-way. Every invariant after every command.

use ledger_api::perpetual::{self as api, LiquidationKind, MarginMode, MarginTier, PerpetualSpec};
use ledger_api::spot::{Market, OrderRequest, OrderStatus};
use ledger_api::{spot, wallet, AssetSpec, Command, LedgerError, Outcome};
use matching_core::{EngineLimits, FastEngine, MarketSpec, OrderKind, SelfTradePrevention, Side, TimeInForce, Trigger, TriggerDirection, TriggerSource};
use products::perpetual::{insurance, margin_account, NETWORK_USER};
use products::wallet::available;
use products::{Ledger, LedgerLimits};

type UserId = u64;
type Amount = i128;

const BTC: u32 = 1;
const USD: u32 = 2;
const PERP: u32 = 7;
const ORACLE: UserId = 90;
const ALICE: UserId = 1;
const BOB: UserId = 2;
const CAROL: UserId = 3;

/// USD in cents; prices in ticks of 0.1 USD; lots of 0.001 BTC.
const fn usd(whole: i128) -> Amount {
    whole * 100
}
const fn price(whole: u64) -> u64 {
    whole * 10
}

fn listing() -> Market {
    Market {
        base: BTC,
        quote: USD,
        base_units_per_lot: 100_000,
        trading: true,
        spec: MarketSpec {
            id: PERP,
            quote_units_per_tick_lot: 1,
            tick_lot_scale: 2,
            maker_fee_ppm: 0,
            taker_fee_ppm: 0,
            price_ticks_max: 10_000_000,
            quantity_lots_max: 100_000,
            price_band_ppm: 0,
        },
    }
}

fn terms() -> PerpetualSpec {
    PerpetualSpec {
        market: PERP,
        collateral: USD,
        units_per_tick_lot: 1,
        tick_lot_scale: 2,
        price_ticks_max: 10_000_000,
        position_lots_max: 1_000_000,
        tiers: vec![MarginTier { notional_max: usd(100_000_000), initial_ppm: 100_000, maintenance_ppm: 50_000 }],
        leverage_default: 10,
        liquidation_penalty_ppm: 10_000,
        funding_interval_ms: 3_600_000,
        funding_interest_ppb: 100_000,
        funding_clamp_ppb: 500_000,
        funding_cap_ppb: 3_750_000,
        oracle_staleness_ms: 60_000,
        oracle_sources_min: 1,
        basis_window_ms: 600_000,
        mark_interval_ms: 1_000,
    }
}

fn perpetual(command: api::Command) -> Command {
    Command::Spot(spot::Command::Perpetual(command))
}

fn limit(side: Side, at: u64, quantity: u64) -> OrderRequest {
    OrderRequest {
        market: PERP,
        side,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(at),
        quantity,
        self_trade: SelfTradePrevention::CancelTaker,
        expires_at_ms: None,
        trigger: None,
        reduce_only: false,
    }
}

struct Exchange {
    ledger: Ledger,
    matching: FastEngine,
    sequence: u64,
    at_ms: u64,
    /// Every command forwarded to matching, in order.
    forwarded: Vec<matching_core::Command>,
}

impl Exchange {
    fn new() -> Exchange {
        let mut exchange = Exchange {
            ledger: Ledger::new(LedgerLimits::default()),
            matching: FastEngine::new(EngineLimits::default()),
            sequence: 0,
            at_ms: 1_000,
            forwarded: Vec::new(),
        };
        exchange.ok(Command::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }));
        exchange.ok(Command::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }));
        exchange.ok(perpetual(api::Command::CreateMarket { market: listing(), perpetual: Box::new(terms()) }));
        exchange.ok(perpetual(api::Command::SetOracle { market: PERP, user: ORACLE, source: Some(1) }));
        for (user, amount) in [(ALICE, usd(10_000)), (BOB, usd(20_000)), (CAROL, usd(100_000))] {
            exchange.ok(Command::Wallet(wallet::Command::Deposit { user, asset: USD, amount, reference: format!("deposit-{user}") }));
        }
        exchange
    }

    /// Applies a command at the next millisecond, then every forward it
    /// and what follows bring, through matching.
    fn apply(&mut self, command: Command) -> Result<Outcome, LedgerError> {
        self.at_ms += 1;
        let applied = self.ledger.apply(&command, self.at_ms);
        self.ledger.check_invariants().unwrap();
        let mut forwards: Vec<matching_core::Command> = applied.forward.into_iter().chain(applied.forward_more).collect();
        while !forwards.is_empty() {
            let mut next = Vec::new();
            for forward in forwards {
                self.forwarded.push(forward);
                let mut events = Vec::new();
                self.matching.execute(&forward, &mut events);
                self.sequence += 1;
                let applied = self.ledger.apply(&Command::Spot(spot::Command::ApplyMatching { sequence: self.sequence, events }), self.at_ms);
                applied.outcome.unwrap();
                self.ledger.check_invariants().unwrap();
                next.extend(applied.forward.into_iter().chain(applied.forward_more));
            }
            forwards = next;
        }
        applied.outcome
    }

    fn ok(&mut self, command: Command) -> Outcome {
        self.apply(command).unwrap_or_else(|error| panic!("refused: {error}"))
    }

    fn price(&mut self, at: u64) -> api::Outcome {
        match self.ok(perpetual(api::Command::SubmitPrice { user: ORACLE, market: PERP, price: at })) {
            Outcome::Spot(spot::Outcome::Perpetual(outcome)) => outcome,
            other => panic!("{other:?}"),
        }
    }

    fn place(&mut self, user: UserId, request: OrderRequest) -> Result<u64, LedgerError> {
        match self.apply(Command::Spot(spot::Command::PlaceOrder { user, request, client_order_id: None }))? {
            Outcome::Spot(spot::Outcome::OrderPlaced(id)) => Ok(id),
            other => panic!("{other:?}"),
        }
    }

    fn balance(&self, user: UserId) -> Amount {
        self.ledger.kernel().balance(available(user, USD))
    }

    fn margin(&self, user: UserId) -> Amount {
        let position = self.ledger.spot().perpetuals().position(user, PERP).expect("a position");
        self.ledger.kernel().balance(margin_account(position.entity, USD))
    }

    fn size(&self, user: UserId) -> i64 {
        self.ledger.spot().perpetuals().position(user, PERP).map_or(0, |position| position.holding.size)
    }

    fn fund(&self) -> Amount {
        self.ledger.kernel().balance(insurance(PERP, USD))
    }
}

#[test]
fn a_perpetual_market_trades_liquidates_on_the_book_and_funds_through_the_ledger_and_matching() {
    let mut exchange = Exchange::new();
    // No mark yet: orders wait for the oracle.
    let refused = exchange.place(ALICE, limit(Side::Buy, price(60_000), 1_000));
    assert!(matches!(refused, Err(LedgerError::BadInput(ref reason)) if reason.contains("no mark price")), "{refused:?}");
    // Only the market's oracle may price it.
    let forbidden = exchange.apply(perpetual(api::Command::SubmitPrice { user: ALICE, market: PERP, price: price(60_000) }));
    assert!(matches!(forbidden, Err(LedgerError::Forbidden(_))), "{forbidden:?}");
    // The first price: the index is 60,000; the mark the median of the
    // index plus the funding basis (the interest, 0.01%, for the hour
    // ahead: about 6 USD), the index plus the book's basis (none yet) and
    // no last trade: their mean. Matching has it.
    let api::Outcome::PriceSubmitted { index, mark: Some(first), .. } = exchange.price(price(60_000)) else { panic!("no mark") };
    assert_eq!(index, Some(price(60_000)));
    assert!((price(60_000)..=price(60_006)).contains(&first), "{first}");
    assert_eq!(exchange.forwarded.last(), Some(&matching_core::Command::SetMark { market: PERP, price: first }));

    // Alice, isolated, buys 1 BTC at 60,000 from Bob at 10x: 6,000 USD of
    // margin each (and Alice's bid 1 USD per tick above the mark), moved
    // from their general accounts as the orders are placed.
    exchange.ok(perpetual(api::Command::SetMarginMode { user: ALICE, market: PERP, mode: MarginMode::Isolated }));
    let bid = exchange.place(ALICE, limit(Side::Buy, price(60_000), 1_000)).unwrap();
    assert_eq!(exchange.margin(ALICE) + exchange.balance(ALICE), usd(10_000));
    assert!(exchange.margin(ALICE) >= usd(6_000));
    // Two more BTC would need 12,000 more than the 4,000 she has left.
    assert!(matches!(exchange.place(ALICE, limit(Side::Buy, price(60_000), 2_000)), Err(LedgerError::InsufficientFunds { .. })));
    exchange.place(BOB, limit(Side::Sell, price(60_000), 1_000)).unwrap();
    assert_eq!((exchange.size(ALICE), exchange.size(BOB)), (1_000, -1_000));
    assert_eq!(exchange.ledger.spot().order(bid), None, "filled and closed");
    // Trading below the mark, she received what 60,000 is below it.
    let alice_margin = exchange.margin(ALICE);
    assert_eq!(alice_margin + exchange.balance(ALICE), usd(10_000) + ((first - price(60_000)) as Amount) * 10);

    // Bob's stop buys back 0.5 BTC once the mark reaches 63,000; Carol
    // bids 56,500 for 1 BTC.
    let trigger = Trigger { source: TriggerSource::Mark, direction: TriggerDirection::AtOrAbove, price: price(63_000) };
    let stop = exchange.place(BOB, OrderRequest { trigger: Some(trigger), ..limit(Side::Buy, price(64_000), 500) }).unwrap();
    assert_eq!(exchange.ledger.spot().order(stop).map(|order| order.status), Some(OrderStatus::Armed));
    exchange.place(CAROL, limit(Side::Buy, price(56_500), 1_000)).unwrap();

    // A restart here: the state restored is the state saved.
    let state = exchange.ledger.state();
    exchange.ledger = Ledger::restore(LedgerLimits::default(), state.clone());
    assert_eq!(exchange.ledger.state(), state);
    exchange.ledger.take_changes();

    // The price falls to 56,800 (the mark a few USD above, the last trade
    // 60,000 above it): Alice's margin, down by the fall, is below 5% of
    // the mark. The network takes her lot at the mark, the penalty (1% of
    // the mark) goes to the fund, the rest of her margin back to her; the
    // network offers the lot no lower than the mark less the penalty, and
    // Carol's bid takes it at 56,500: the fund pays what that is below
    // the mark.
    let api::Outcome::PriceSubmitted { mark: Some(fallen), .. } = exchange.price(price(56_800)) else { panic!("no mark") };
    let changes = exchange.ledger.take_changes().spot;
    let [liquidation] = changes.liquidations.as_slice() else { panic!("{:?}", changes.liquidations) };
    assert_eq!((liquidation.user, liquidation.kind, liquidation.size, liquidation.price), (ALICE, LiquidationKind::Liquidated, 1_000, fallen));
    let penalty = (fallen as Amount + 9) / 10;
    assert_eq!(liquidation.penalty, penalty);
    assert_eq!(liquidation.offer_price, Some(fallen - (penalty / 10) as u64));
    let lost = (first - fallen) as Amount * 10;
    assert_eq!(exchange.size(ALICE), 0);
    assert_eq!(exchange.balance(ALICE), usd(10_000) + ((first - price(60_000)) as Amount) * 10 - lost - penalty);
    assert_eq!((exchange.size(CAROL), exchange.ledger.spot().perpetuals().market(PERP).unwrap().network.size), (1_000, 0));
    assert_eq!(exchange.fund(), penalty - (fallen - price(56_500)) as Amount * 10);
    let network_order = exchange.forwarded.iter().find_map(|command| match command {
        matching_core::Command::Place(order) if order.user == NETWORK_USER => Some(*order),
        _ => None,
    });
    let network_order = network_order.expect("the network's order went to matching");
    assert_eq!((network_order.side, network_order.time_in_force, network_order.price), (Side::Sell, TimeInForce::Ioc, liquidation.offer_price));

    // The mark climbs past 63,000: Bob's stop fires on the mark; with
    // nobody selling, its buy rests at 64,000.
    let api::Outcome::PriceSubmitted { mark: Some(high), .. } = exchange.price(price(63_000)) else { panic!("no mark") };
    assert!(high >= price(63_000));
    assert_eq!(exchange.ledger.spot().order(stop).map(|order| order.status), Some(OrderStatus::Open));

    // Just before the hour the oracle prices 63,000 again (its last price
    // is past the staleness limit): the mark is the index.
    exchange.at_ms = 3_600_000 - 10;
    exchange.price(price(63_000));
    assert_eq!(exchange.ledger.spot().perpetuals().market(PERP).unwrap().mark, Some(price(63_000)));
    // The hour's funding at the ledger's tick, which samples the book
    // first. The impact notional is 500 USD at 10x, 5,000 USD: Bob's bid
    // of 0.5 BTC at 64,000 fills it (impact bid 64,000); no asks (no
    // impact ask). Over the 63,000 index the premium is 1,000 / 63,000,
    // 1.587%; the rate premium + clamp(0.01% - premium, ±0.05%) = 1.537%,
    // capped at 0.375%. Carol's 1 BTC long pays 0.375% of 63,000 = 236.25
    // USD to Bob's short.
    let (carol, bob) = (exchange.margin(CAROL), exchange.margin(BOB));
    exchange.at_ms = 3_600_000 - 1;
    let outcome = exchange.ok(perpetual(api::Command::Tick));
    let Outcome::Spot(spot::Outcome::Perpetual(api::Outcome::Ticked { fundings, liquidations, .. })) = outcome else { panic!("{outcome:?}") };
    assert!(liquidations.is_empty());
    let due = 23_625;
    let paid: Vec<_> = fundings.iter().map(|funding| (funding.rate_ppb, funding.mark, funding.collected)).collect();
    assert_eq!(paid, vec![(3_750_000, price(63_000), due)]);
    assert_eq!((exchange.margin(CAROL), exchange.margin(BOB)), (carol - due, bob + due));

    // The oracle has gone quiet past the staleness limit: only orders that
    // reduce a position are taken.
    exchange.at_ms += 120_000;
    let refused = exchange.place(CAROL, limit(Side::Buy, price(60_000), 100));
    assert!(matches!(refused, Err(LedgerError::BadInput(ref reason)) if reason.contains("stale")), "{refused:?}");
    exchange.place(CAROL, limit(Side::Sell, price(70_000), 100)).unwrap();
    assert_eq!(exchange.ledger.spot().perpetuals().market(PERP).unwrap().open_interest, 1_000);
}

#[test]
fn reduce_only_orders_only_shrink_a_position_and_go_when_it_no_longer_needs_them() {
    let mut exchange = Exchange::new();
    exchange.price(price(60_000));
    let reduce_only = |side, at, quantity| OrderRequest { reduce_only: true, ..limit(side, at, quantity) };
    // Alice is long 1 BTC (1,000 lots), Bob short.
    exchange.place(ALICE, limit(Side::Buy, price(60_000), 1_000)).unwrap();
    exchange.place(BOB, limit(Side::Sell, price(60_000), 1_000)).unwrap();
    assert_eq!((exchange.size(ALICE), exchange.size(BOB)), (1_000, -1_000));
    let refused = |result: Result<u64, LedgerError>| matches!(result, Err(LedgerError::BadInput(ref reason)) if reason.contains("reduce-only"));
    assert!(refused(exchange.place(ALICE, reduce_only(Side::Buy, price(59_000), 100))), "a buy grows a long");
    assert!(refused(exchange.place(ALICE, reduce_only(Side::Sell, price(61_000), 1_001))), "more than the position turns it");
    assert!(refused(exchange.place(CAROL, reduce_only(Side::Sell, price(61_000), 1))), "no position to reduce");
    // Two reduce-only sells close 600 + 400 lots, all she holds: a third is refused.
    let first = exchange.place(ALICE, reduce_only(Side::Sell, price(61_000), 600)).unwrap();
    let second = exchange.place(ALICE, reduce_only(Side::Sell, price(62_000), 400)).unwrap();
    assert!(refused(exchange.place(ALICE, reduce_only(Side::Sell, price(63_000), 1))));
    assert_eq!(exchange.ledger.spot().order(first).map(|order| order.reduce_only), Some(true));

    // An ordinary sell of 500 lots to Carol halves the long: of the two
    // reduce-only sells (oldest first) the 600 no longer fits in it and is
    // cancelled; the 400 stays.
    exchange.place(CAROL, limit(Side::Buy, price(60_000), 500)).unwrap();
    exchange.place(ALICE, limit(Side::Sell, price(60_000), 500)).unwrap();
    assert_eq!(exchange.size(ALICE), 500);
    assert_eq!(exchange.ledger.spot().order(first), None, "cancelled");
    assert_eq!(exchange.ledger.spot().order(second).map(|order| order.status), Some(OrderStatus::Open));
    let cancelled =
        exchange.forwarded.iter().filter(|command| matches!(command, matching_core::Command::Cancel { order_id, .. } if *order_id == first)).count();
    assert_eq!(cancelled, 1, "one cancel, sent once");
    // The rest of the long sold: the 400 has nothing left to reduce.
    exchange.place(CAROL, limit(Side::Buy, price(60_000), 500)).unwrap();
    exchange.place(ALICE, limit(Side::Sell, price(60_000), 500)).unwrap();
    assert_eq!(exchange.size(ALICE), 0);
    assert_eq!(exchange.ledger.spot().order(second), None, "cancelled once flat");
    assert_eq!(exchange.balance(ALICE) + exchange.margin(ALICE), usd(10_000), "bought and sold at the mark: nothing gained or lost");
}

#[test]
fn a_position_that_lost_margin_still_closes_by_a_reduce_only_order() {
    let mut exchange = Exchange::new();
    exchange.price(price(60_000));
    // Alice, isolated, buys 1.6 BTC at 60,000 at 10x: about 9,600 USD of
    // margin (the mark is a few dollars of funding basis above the index),
    // about 400 left in general. Bob sells them.
    exchange.ok(perpetual(api::Command::SetMarginMode { user: ALICE, market: PERP, mode: MarginMode::Isolated }));
    exchange.place(ALICE, limit(Side::Buy, price(60_000), 1_600)).unwrap();
    exchange.place(BOB, limit(Side::Sell, price(60_000), 1_600)).unwrap();
    assert!(exchange.balance(ALICE) < usd(500), "{}", exchange.balance(ALICE));
    // The price falls to 57,000: about 4,800 lost, 4,800 left, above the
    // 4,560 maintenance (5% of 91,200). Keeping 1.6 BTC open needs 9,120
    // initially, 4,300 more than its margin and more than general holds.
    exchange.price(price(57_000));
    let (margin, general) = (exchange.margin(ALICE), exchange.balance(ALICE));
    assert!(margin < usd(4_900) && margin > usd(4_560), "{margin}");
    // An ordinary sell at 57,000 is refused for want of margin; a
    // reduce-only one adds nothing to what the position needs, so it asks
    // for nothing.
    let ordinary = exchange.place(ALICE, limit(Side::Sell, price(57_000), 1_600));
    assert!(matches!(ordinary, Err(LedgerError::InsufficientFunds { .. })), "{ordinary:?}");
    let close = exchange.place(ALICE, OrderRequest { reduce_only: true, ..limit(Side::Sell, price(57_000), 1_600) }).unwrap();
    assert_eq!(exchange.balance(ALICE), general, "nothing more moved to margin");
    exchange.place(CAROL, limit(Side::Buy, price(57_000), 1_600)).unwrap();
    assert_eq!(exchange.size(ALICE), 0);
    assert_eq!(exchange.ledger.spot().order(close), None, "filled");
    assert_eq!(exchange.margin(ALICE), 0);
    // Sold below the mark (the few dollars of its funding basis): that much less than the margin back.
    let mark = exchange.ledger.spot().perpetuals().market(PERP).unwrap().mark.unwrap();
    assert_eq!(exchange.balance(ALICE), general + margin - (mark - price(57_000)) as Amount * 16);
}
