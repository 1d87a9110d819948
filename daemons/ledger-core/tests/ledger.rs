//! Every ledger operation and rejection, then randomized sequences through the
//! ledger and a real matching engine with a model of balances and every
//! invariant checked after each step, and restore checked mid-stream.

use std::collections::BTreeMap;

use ledger_core::*;
use matching_core::{Command, EngineLimits, Event, FastEngine, MarketSpec, OrderKind, SelfTradePrevention, Side, TimeInForce};
use proptest::prelude::*;

const BTC: AssetId = 1;
const USD: AssetId = 2;
const MARKET: MarketId = 1;

fn btc_usd() -> LedgerMarket {
    // BTC scale 8, USD scale 2; tick 0.01 USD, lot 0.001 BTC = 100,000 sat;
    // one tick x one lot = 0.00001 USD: USD at scale 2 cannot hold that, so
    // quote at scale 6 here (10 micro-dollars per tick-lot).
    LedgerMarket {
        base: BTC,
        quote: USD,
        base_units_per_lot: 100_000,
        spec: MarketSpec {
            id: MARKET,
            quote_units_per_tick_lot: 10,
            maker_fee_ppm: 1_000,
            taker_fee_ppm: 2_000,
            price_ticks_max: 100_000_000,
            quantity_lots_max: 1_000_000,
        },
    }
}

fn ledger() -> Ledger {
    let mut ledger = Ledger::new(LedgerLimits { open_orders_per_user_max: 20, pending_withdrawals_max: 50, ..LedgerLimits::default() });
    ledger.apply(&LedgerCommand::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }), 0).unwrap();
    ledger.apply(&LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 6 }), 0).unwrap();
    ledger.apply(&LedgerCommand::CreateMarket(btc_usd()), 0).unwrap();
    ledger
}

fn deposit(ledger: &mut Ledger, user: UserId, asset: AssetId, amount: Amount, reference: &str) -> Result<Outcome, LedgerError> {
    ledger.apply(&LedgerCommand::Deposit { user, asset, amount, reference: reference.into() }, 1)
}

fn limit(side: Side, price: u64, quantity: u64) -> OrderRequest {
    OrderRequest {
        market: MARKET,
        side,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price: Some(price),
        quantity,
        self_trade: SelfTradePrevention::CancelTaker,
    }
}

/// The ledger and the matching engine wired together, as the daemons are.
struct Exchange {
    ledger: Ledger,
    matching: FastEngine,
    sequence: u64,
}

impl Exchange {
    fn new() -> Self {
        let ledger = ledger();
        let mut matching = FastEngine::new(EngineLimits::default());
        let mut events = Vec::new();
        matching.execute(&Command::AddMarket(btc_usd().spec), &mut events);
        Exchange { ledger, matching, sequence: 0 }
    }

    /// Runs a forwarded command through matching and applies its events.
    fn forward(&mut self, command: &Command) -> Vec<Event> {
        let mut events = Vec::new();
        self.matching.execute(command, &mut events);
        self.sequence += 1;
        self.ledger.apply(&LedgerCommand::ApplyMatching { sequence: self.sequence, events: events.clone() }, 2).unwrap();
        events
    }

    fn place(&mut self, user: UserId, request: OrderRequest) -> Result<(OrderId, Vec<Event>), LedgerError> {
        match self.ledger.apply(&LedgerCommand::PlaceOrder { user, request, client_order_id: None }, 2)? {
            Outcome::OrderPlaced { order_id, forward } => Ok((order_id, self.forward(&forward))),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn closed(&mut self) -> BTreeMap<OrderId, OrderRecord> {
        self.ledger.take_changes().closed_orders.into_iter().map(|r| (r.order.order_id, r)).collect()
    }
}

#[test]
fn deposits_are_idempotent_by_reference() {
    let mut ledger = ledger();
    let first = deposit(&mut ledger, 7, USD, 500, "bank-1").unwrap();
    assert!(matches!(first, Outcome::Deposited(_)));
    let Outcome::Deposited(id) = first else { unreachable!() };
    assert_eq!(deposit(&mut ledger, 7, USD, 500, "bank-1").unwrap(), Outcome::Replayed(Recorded::Deposit(id)));
    assert_eq!(deposit(&mut ledger, 7, USD, 501, "bank-1"), Err(LedgerError::Duplicate));
    assert_eq!(deposit(&mut ledger, 8, USD, 500, "bank-1"), Err(LedgerError::Duplicate));
    assert_eq!(ledger.balance(7, USD), Balance { available: 500, locked: 0 });
    assert_eq!(ledger.system_balances(USD)[0], -500, "custody holds what users were credited");
    ledger.check_invariants().unwrap();
}

#[test]
fn bad_wallet_input_is_refused_with_codes_and_changes_nothing() {
    let mut ledger = ledger();
    deposit(&mut ledger, 1, USD, 100, "d").unwrap();
    let before = ledger.state_hash();
    let cases: Vec<(LedgerCommand, &str)> = vec![
        (LedgerCommand::Deposit { user: 1, asset: 99, amount: 5, reference: "x".into() }, "NOT_FOUND"),
        (LedgerCommand::Deposit { user: 1, asset: USD, amount: 0, reference: "y".into() }, "BAD_USER_INPUT"),
        (LedgerCommand::Deposit { user: 1, asset: USD, amount: -5, reference: "z".into() }, "BAD_USER_INPUT"),
        (LedgerCommand::Deposit { user: 1, asset: USD, amount: 5, reference: String::new() }, "BAD_USER_INPUT"),
        (LedgerCommand::Deposit { user: 1, asset: USD, amount: 5, reference: "r".repeat(129) }, "BAD_USER_INPUT"),
        (LedgerCommand::Transfer { from: 1, to: 2, asset: USD, amount: 101, key: "t".into() }, "INSUFFICIENT_FUNDS"),
        (LedgerCommand::Transfer { from: 1, to: 1, asset: USD, amount: 1, key: "t2".into() }, "BAD_USER_INPUT"),
        (LedgerCommand::RequestWithdrawal { user: 1, asset: USD, amount: 101, destination: "iban".into(), key: "w".into() }, "INSUFFICIENT_FUNDS"),
        (LedgerCommand::RequestWithdrawal { user: 1, asset: USD, amount: 1, destination: String::new(), key: "w2".into() }, "BAD_USER_INPUT"),
        (LedgerCommand::DecideWithdrawal { id: 42, approve: true }, "NOT_FOUND"),
        (LedgerCommand::CreateAsset(AssetSpec { id: 3, symbol: "usd".into(), scale: 2 }), "BAD_USER_INPUT"),
        (LedgerCommand::CreateAsset(AssetSpec { id: 3, symbol: "USD".into(), scale: 2 }), "DUPLICATE"),
        (LedgerCommand::CreateAsset(AssetSpec { id: 3, symbol: "EUR".into(), scale: 19 }), "BAD_USER_INPUT"),
        (LedgerCommand::CreateMarket(btc_usd()), "DUPLICATE"),
        (LedgerCommand::CreateMarket(LedgerMarket { quote: 9, spec: MarketSpec { id: 2, ..btc_usd().spec }, ..btc_usd() }), "NOT_FOUND"),
        (LedgerCommand::PlaceOrder { user: 1, request: limit(Side::Buy, 10, 1_000_000), client_order_id: None }, "INSUFFICIENT_FUNDS"),
        (LedgerCommand::PlaceOrder { user: 1, request: OrderRequest { market: 5, ..limit(Side::Buy, 1, 1) }, client_order_id: None }, "NOT_FOUND"),
        (LedgerCommand::PlaceOrder { user: 1, request: limit(Side::Buy, 0, 1), client_order_id: None }, "BAD_USER_INPUT"),
        (
            LedgerCommand::PlaceOrder {
                user: 1,
                request: OrderRequest { kind: OrderKind::Market, price: None, ..limit(Side::Buy, 1, 1) },
                client_order_id: None,
            },
            "BAD_USER_INPUT",
        ),
        (LedgerCommand::CancelOrder { user: 1, order_id: 999 }, "NOT_FOUND"),
    ];
    for (command, code) in cases {
        let error = ledger.apply(&command, 5).expect_err(&format!("{command:?} must be refused"));
        assert_eq!(error.code(), code, "{command:?}: {error}");
    }
    assert_eq!(ledger.state_hash(), before, "no refusal changed anything");
    ledger.check_invariants().unwrap();
}

#[test]
fn transfers_move_available_between_users() {
    let mut ledger = ledger();
    deposit(&mut ledger, 1, USD, 100, "d").unwrap();
    let command = LedgerCommand::Transfer { from: 1, to: 2, asset: USD, amount: 40, key: "k".into() };
    let Outcome::Transferred(id) = ledger.apply(&command, 3).unwrap() else { panic!() };
    assert_eq!(ledger.apply(&command, 4).unwrap(), Outcome::Replayed(Recorded::Transfer(id)));
    assert_eq!((ledger.balance(1, USD).available, ledger.balance(2, USD).available), (60, 40));
    ledger.check_invariants().unwrap();
}

#[test]
fn withdrawals_go_through_pending_then_approve_or_reject() {
    let mut ledger = ledger();
    deposit(&mut ledger, 1, USD, 100, "d").unwrap();
    let request = |key: &str, amount| LedgerCommand::RequestWithdrawal { user: 1, asset: USD, amount, destination: "DE89 3704".into(), key: key.into() };
    let Outcome::WithdrawalRequested(first) = ledger.apply(&request("a", 30), 2).unwrap() else { panic!() };
    assert_eq!(ledger.apply(&request("a", 30), 2).unwrap(), Outcome::Replayed(Recorded::Withdrawal(first)));
    assert_eq!(ledger.apply(&request("a", 31), 2), Err(LedgerError::Duplicate));
    let Outcome::WithdrawalRequested(second) = ledger.apply(&request("b", 20), 2).unwrap() else { panic!() };
    assert_eq!(ledger.balance(1, USD).available, 50);
    assert_eq!(ledger.system_balances(USD), [-100, 0, 50]);
    ledger.check_invariants().unwrap();

    ledger.apply(&LedgerCommand::DecideWithdrawal { id: first, approve: true }, 3).unwrap();
    ledger.apply(&LedgerCommand::DecideWithdrawal { id: second, approve: false }, 3).unwrap();
    assert_eq!(ledger.apply(&LedgerCommand::DecideWithdrawal { id: first, approve: false }, 4), Err(LedgerError::NotFound), "decided once");
    assert_eq!(ledger.balance(1, USD).available, 70);
    assert_eq!(ledger.system_balances(USD), [-70, 0, 0], "the approved 30 left custody");
    let decided: Vec<_> = ledger.take_changes().withdrawals.into_iter().filter(|w| w.status != WithdrawalStatus::Pending).map(|w| (w.id, w.status)).collect();
    assert_eq!(decided, vec![(first, WithdrawalStatus::Approved), (second, WithdrawalStatus::Rejected)]);
    ledger.check_invariants().unwrap();
}

#[test]
fn a_trade_settles_both_sides_with_fees_and_releases_the_unused_hold() {
    let mut x = Exchange::new();
    deposit(&mut x.ledger, 1, USD, 10_000_000, "u1").unwrap();
    deposit(&mut x.ledger, 2, BTC, 1_000_000, "u2").unwrap();
    // Seller rests 5 lots at 2,000 ticks; the buyer bids 2,100 for 3.
    let (sell, _) = x.place(2, limit(Side::Sell, 2_000, 5)).unwrap();
    assert_eq!(x.ledger.balance(2, BTC), Balance { available: 500_000, locked: 500_000 });
    let buy_hold = btc_usd().buy_hold(2_100, 3);
    let (buy, events) = x.place(1, limit(Side::Buy, 2_100, 3)).unwrap();
    assert!(events.iter().any(|e| matches!(e, Event::Fill(_))));
    // Notional 2,000 x 3 x 10 = 60,000; taker (buyer) fee 0.2% = 120; maker (seller) fee 0.1% = 60.
    assert_eq!(
        x.ledger.balance(1, USD),
        Balance { available: 10_000_000 - 60_000 - 120, locked: 0 },
        "the buy is done: its unused hold ({buy_hold}) came back"
    );
    assert_eq!(x.ledger.balance(1, BTC), Balance { available: 300_000, locked: 0 });
    assert_eq!(x.ledger.balance(2, USD), Balance { available: 60_000 - 60, locked: 0 });
    assert_eq!(x.ledger.balance(2, BTC), Balance { available: 500_000, locked: 200_000 });
    assert_eq!(x.ledger.system_balances(USD)[1], 180, "fees");
    let closed = x.closed();
    assert_eq!(closed[&buy].status, OrderStatus::Filled);
    assert_eq!((closed[&buy].filled, closed[&buy].filled_notional, closed[&buy].fees_paid), (3, 60_000, 120));
    let open = x.ledger.order(sell).unwrap();
    assert_eq!((open.status, open.filled, open.hold_remaining), (OrderStatus::PartiallyFilled, 3, 200_000));
    x.ledger.check_invariants().unwrap();

    // Cancelling the rest releases its hold.
    let Outcome::CancelRequested { forward } = x.ledger.apply(&LedgerCommand::CancelOrder { user: 2, order_id: sell }, 3).unwrap() else { panic!() };
    assert_eq!(x.ledger.apply(&LedgerCommand::CancelOrder { user: 1, order_id: sell }, 3), Err(LedgerError::NotFound), "not another user's");
    x.forward(&forward);
    assert_eq!(x.ledger.balance(2, BTC), Balance { available: 700_000, locked: 0 });
    assert_eq!(x.closed()[&sell].status, OrderStatus::Cancelled);
    x.ledger.check_invariants().unwrap();
}

#[test]
fn rejected_and_killed_orders_release_everything() {
    let mut x = Exchange::new();
    deposit(&mut x.ledger, 1, USD, 10_000_000, "u1").unwrap();
    deposit(&mut x.ledger, 2, BTC, 1_000_000, "u2").unwrap();
    x.place(2, limit(Side::Sell, 2_000, 1)).unwrap();
    let (post_only, _) = x.place(1, OrderRequest { post_only: true, ..limit(Side::Buy, 2_000, 1) }).unwrap();
    let (fok, _) = x.place(1, OrderRequest { time_in_force: TimeInForce::Fok, ..limit(Side::Buy, 2_000, 2) }).unwrap();
    let closed = x.closed();
    assert_eq!(closed[&post_only].status, OrderStatus::Rejected);
    assert_eq!(closed[&post_only].reject_reason.as_deref(), Some("POST_ONLY_WOULD_TAKE"));
    assert_eq!((closed[&fok].status, closed[&fok].filled), (OrderStatus::Cancelled, 0));
    assert_eq!(x.ledger.balance(1, USD), Balance { available: 10_000_000, locked: 0 });
    x.ledger.check_invariants().unwrap();
}

#[test]
fn client_order_ids_are_idempotent() {
    let mut ledger = ledger();
    deposit(&mut ledger, 1, USD, 10_000_000, "u1").unwrap();
    let place = |request| LedgerCommand::PlaceOrder { user: 1, request, client_order_id: Some("mine-1".into()) };
    let Outcome::OrderPlaced { order_id, .. } = ledger.apply(&place(limit(Side::Buy, 10, 1)), 1).unwrap() else { panic!() };
    assert_eq!(ledger.apply(&place(limit(Side::Buy, 10, 1)), 1).unwrap(), Outcome::Replayed(Recorded::Order(order_id)));
    assert_eq!(ledger.apply(&place(limit(Side::Buy, 11, 1)), 1), Err(LedgerError::Duplicate));
    let other_user = LedgerCommand::PlaceOrder { user: 2, request: limit(Side::Buy, 10, 1), client_order_id: Some("mine-1".into()) };
    assert!(matches!(ledger.apply(&other_user, 1), Err(LedgerError::InsufficientFunds { .. })), "keys are per user");
}

#[test]
fn an_order_that_rests_is_reported_open_to_storage() {
    let mut exchange = Exchange::new();
    deposit(&mut exchange.ledger, 1, BTC, 1_000_000_000, "d").unwrap();
    let Outcome::OrderPlaced { order_id, forward } =
        exchange.ledger.apply(&LedgerCommand::PlaceOrder { user: 1, request: limit(Side::Sell, 100, 2), client_order_id: None }, 2).unwrap()
    else {
        panic!()
    };
    // The hold's batch is written; matching's answer comes in a later one.
    exchange.ledger.take_changes();
    let events = exchange.forward(&forward);
    assert!(matches!(events.as_slice(), [Event::Accepted { .. }]), "{events:?}");
    let changes = exchange.ledger.take_changes();
    assert!(changes.orders.contains(&order_id), "the Open status must reach storage");
    assert!(changes.closed_orders.is_empty());
    assert_eq!(exchange.ledger.order(order_id).unwrap().status, OrderStatus::Open);
}

#[test]
fn matching_outputs_apply_exactly_once_and_in_order() {
    let mut ledger = ledger();
    let apply = |ledger: &mut Ledger, sequence| ledger.apply(&LedgerCommand::ApplyMatching { sequence, events: vec![] }, 1);
    apply(&mut ledger, 1).unwrap();
    assert_eq!(apply(&mut ledger, 1).unwrap(), Outcome::MatchingApplied { orders: vec![] }, "a replayed output is a no-op");
    assert_eq!(apply(&mut ledger, 3), Err(LedgerError::OutOfSequence { expected: 2, got: 3 }));
    assert_eq!(ledger.counters().matching_applied, 1);
}

#[test]
fn open_order_limit_per_user() {
    let mut ledger = ledger();
    deposit(&mut ledger, 1, USD, 10_000_000, "u1").unwrap();
    for _ in 0..20 {
        ledger.apply(&LedgerCommand::PlaceOrder { user: 1, request: limit(Side::Buy, 1, 1), client_order_id: None }, 1).unwrap();
    }
    let error = ledger.apply(&LedgerCommand::PlaceOrder { user: 1, request: limit(Side::Buy, 1, 1), client_order_id: None }, 1).unwrap_err();
    assert_eq!(error, LedgerError::LimitReached("open_orders_per_user_max".into()));
    assert_eq!(error.code(), "LIMIT_REACHED", "not UNAVAILABLE: a retry cannot succeed until an order closes");
}

/// One random step of a wallet and exchange.
#[derive(Clone, Debug)]
enum Step {
    Deposit {
        user: UserId,
        asset: AssetId,
        amount: Amount,
        reference: u8,
    },
    Transfer {
        from: UserId,
        to: UserId,
        amount: Amount,
        key: u8,
    },
    Withdraw {
        user: UserId,
        amount: Amount,
        key: u8,
    },
    Decide {
        pick: usize,
        approve: bool,
    },
    Place {
        user: UserId,
        side: bool,
        market_order: bool,
        tif: u8,
        post_only: bool,
        price: u64,
        quantity: u64,
    },
    Cancel {
        user: UserId,
        pick: usize,
    },
    /// Deliver the queued matching outputs (they may lag behind).
    Deliver,
    Restart,
}

fn step() -> impl Strategy<Value = Step> {
    let user = 1u64..6;
    prop_oneof![
        3 => (user.clone(), prop_oneof![Just(BTC), Just(USD)], 1i128..5_000_000, any::<u8>()).prop_map(|(user, asset, amount, reference)| Step::Deposit { user, asset, amount, reference }),
        1 => (user.clone(), user.clone(), 1i128..2_000_000, any::<u8>()).prop_map(|(from, to, amount, key)| Step::Transfer { from, to, amount, key }),
        1 => (user.clone(), 1i128..2_000_000, any::<u8>()).prop_map(|(user, amount, key)| Step::Withdraw { user, amount, key }),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(pick, approve)| Step::Decide { pick, approve }),
        6 => (user.clone(), any::<bool>(), prop::bool::weighted(0.1), 0u8..3, prop::bool::weighted(0.1), 1_990u64..2_010, 1u64..8)
            .prop_map(|(user, side, market_order, tif, post_only, price, quantity)| Step::Place { user, side, market_order, tif, post_only, price, quantity }),
        2 => (user, any::<usize>()).prop_map(|(user, pick)| Step::Cancel { user, pick }),
        3 => Just(Step::Deliver),
        1 => Just(Step::Restart),
    ]
}

/// Totals per (user, asset) computed from the steps and matching's events alone.
#[derive(Default)]
struct Model {
    totals: BTreeMap<(UserId, AssetId), Amount>,
    fees: Amount,
    custody: BTreeMap<AssetId, Amount>,
}

impl Model {
    fn add(&mut self, user: UserId, asset: AssetId, amount: Amount) {
        *self.totals.entry((user, asset)).or_default() += amount;
    }

    fn check(&self, ledger: &Ledger) {
        for (&(user, asset), &total) in &self.totals {
            let b = ledger.balance(user, asset);
            assert_eq!(b.available + b.locked, total, "user {user} asset {asset}: ledger {b:?}, model total {total}");
        }
        assert_eq!(ledger.system_balances(USD)[1], self.fees);
        for (&asset, &custody) in &self.custody {
            assert_eq!(ledger.system_balances(asset)[0], custody, "custody of asset {asset}");
        }
    }
}

fn run(steps: &[Step]) {
    let mut x = Exchange::new();
    let mut model = Model::default();
    let mut queued: Vec<Command> = Vec::new();
    let mut placed: Vec<(UserId, OrderId)> = Vec::new();
    let mut pending_withdrawals: Vec<(WithdrawalId, UserId, Amount)> = Vec::new();
    let mut deposits: BTreeMap<(AssetId, u8), (UserId, Amount)> = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        match *step {
            Step::Deposit { user, asset, amount, reference } => {
                let result = deposit(&mut x.ledger, user, asset, amount, &format!("ref-{reference}"));
                match deposits.get(&(asset, reference)) {
                    None => {
                        assert!(matches!(result, Ok(Outcome::Deposited(_))), "{result:?}");
                        deposits.insert((asset, reference), (user, amount));
                        model.add(user, asset, amount);
                        *model.custody.entry(asset).or_default() -= amount;
                    }
                    Some(&first) if first == (user, amount) => assert!(matches!(result, Ok(Outcome::Replayed(_))), "{result:?}"),
                    Some(_) => assert_eq!(result, Err(LedgerError::Duplicate)),
                }
            }
            Step::Transfer { from, to, amount, key } => {
                let command = LedgerCommand::Transfer { from, to, asset: USD, amount, key: format!("t-{key}") };
                if let Ok(Outcome::Transferred(_)) = x.ledger.apply(&command, i as u64) {
                    model.add(from, USD, -amount);
                    model.add(to, USD, amount);
                }
            }
            Step::Withdraw { user, amount, key } => {
                let command = LedgerCommand::RequestWithdrawal { user, asset: USD, amount, destination: "acct".into(), key: format!("w-{key}") };
                if let Ok(Outcome::WithdrawalRequested(id)) = x.ledger.apply(&command, i as u64) {
                    model.add(user, USD, -amount);
                    pending_withdrawals.push((id, user, amount));
                }
            }
            Step::Decide { pick, approve } => {
                if !pending_withdrawals.is_empty() {
                    let (id, user, amount) = pending_withdrawals.remove(pick % pending_withdrawals.len());
                    x.ledger.apply(&LedgerCommand::DecideWithdrawal { id, approve }, i as u64).unwrap();
                    if approve {
                        *model.custody.entry(USD).or_default() += amount;
                    } else {
                        model.add(user, USD, amount);
                    }
                }
            }
            Step::Place { user, side, market_order, tif, post_only, price, quantity } => {
                let request = OrderRequest {
                    market: MARKET,
                    side: if side { Side::Buy } else { Side::Sell },
                    kind: if market_order { OrderKind::Market } else { OrderKind::Limit },
                    time_in_force: [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok][tif as usize],
                    post_only,
                    price: Some(price),
                    quantity,
                    self_trade: SelfTradePrevention::CancelTaker,
                };
                if let Ok(Outcome::OrderPlaced { order_id, forward }) =
                    x.ledger.apply(&LedgerCommand::PlaceOrder { user, request, client_order_id: None }, i as u64)
                {
                    placed.push((user, order_id));
                    queued.push(forward);
                }
            }
            Step::Cancel { user, pick } => {
                if !placed.is_empty() {
                    let (owner, order_id) = placed[pick % placed.len()];
                    if let Ok(Outcome::CancelRequested { forward }) = x.ledger.apply(&LedgerCommand::CancelOrder { user, order_id }, i as u64) {
                        assert_eq!(owner, user, "only the owner may cancel");
                        queued.push(forward);
                    }
                }
            }
            Step::Deliver => {
                for command in std::mem::take(&mut queued) {
                    let events = x.forward(&command);
                    for event in &events {
                        if let Event::Fill(f) = event {
                            let (buyer, seller, buyer_fee, seller_fee) = match f.taker_side {
                                Side::Buy => (f.taker_user, f.maker_user, f.taker_fee, f.maker_fee),
                                Side::Sell => (f.maker_user, f.taker_user, f.maker_fee, f.taker_fee),
                            };
                            let base = btc_usd().base_amount(f.quantity);
                            model.add(buyer, BTC, base);
                            model.add(seller, BTC, -base);
                            model.add(buyer, USD, -(f.notional as Amount) - buyer_fee as Amount);
                            model.add(seller, USD, f.notional as Amount - seller_fee as Amount);
                            model.fees += (buyer_fee + seller_fee) as Amount;
                        }
                    }
                }
            }
            Step::Restart => {
                // Through the encoded state, as the daemon restores it from storage.
                let bytes = postcard::to_stdvec(&x.ledger.state()).unwrap();
                let restored = Ledger::restore(
                    LedgerLimits { open_orders_per_user_max: 20, pending_withdrawals_max: 50, ..LedgerLimits::default() },
                    postcard::from_bytes(&bytes).unwrap(),
                );
                assert_eq!(restored.state_hash(), x.ledger.state_hash(), "a restart changes nothing");
                x.ledger = restored;
            }
        }
        if let Err(broken) = x.ledger.check_invariants() {
            panic!("after step {i} {step:?}: {broken}");
        }
        model.check(&x.ledger);
        x.ledger.take_changes();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn random_sequences_keep_every_invariant_and_match_the_model(steps in proptest::collection::vec(step(), 1..200)) {
        run(&steps);
    }
}

/// A command of any kind with an idempotency key, over a few users and
/// keys so that replays and reuses (DUPLICATE) come up, with keys that are
/// empty or too long among them.
fn keyed_command() -> impl Strategy<Value = LedgerCommand> {
    let user = 1u64..4;
    let key = prop_oneof![8 => (0u8..6).prop_map(|k| format!("k{k}")), 1 => Just(String::new()), 1 => Just("x".repeat(129))];
    let amount = 1i128..3_000;
    prop_oneof![
        (user.clone(), prop_oneof![Just(BTC), Just(USD)], amount.clone(), key.clone()).prop_map(|(user, asset, amount, reference)| LedgerCommand::Deposit {
            user,
            asset,
            amount,
            reference
        }),
        (user.clone(), user.clone(), amount.clone(), key.clone()).prop_map(|(from, to, amount, key)| LedgerCommand::Transfer {
            from,
            to,
            asset: USD,
            amount,
            key
        }),
        (user.clone(), amount, key.clone()).prop_map(|(user, amount, key)| LedgerCommand::RequestWithdrawal {
            user,
            asset: USD,
            amount,
            destination: "acct".into(),
            key
        }),
        (1u64..4, any::<bool>()).prop_map(|(id, approve)| LedgerCommand::DecideWithdrawal { id, approve }),
        (user, any::<bool>(), 1_990u64..2_010, 1u64..3, proptest::option::of(key)).prop_map(|(user, buy, price, quantity, client_order_id)| {
            LedgerCommand::PlaceOrder { user, request: limit(if buy { Side::Buy } else { Side::Sell }, price, quantity), client_order_id }
        }),
    ]
}

proptest! {
    /// `apply_all` (digests first, then each command) is `apply` one
    /// command at a time: the same outcomes, each handed over with the
    /// ledger as its command left it, and the same state after every batch.
    #[test]
    fn a_batch_applied_at_once_equals_its_commands_applied_one_by_one(
        batches in proptest::collection::vec(proptest::collection::vec(keyed_command(), 0..40), 1..6)
    ) {
        let mut one_by_one = ledger();
        let mut at_once = ledger();
        for (b, batch) in batches.iter().enumerate() {
            let mut expected = Vec::new();
            for command in batch {
                let outcome = one_by_one.apply(command, b as u64);
                expected.push((outcome, one_by_one.counters(), one_by_one.balance(1, USD)));
            }
            let mut got = Vec::new();
            at_once.apply_all(batch.iter().map(|command| (command, b as u64)), |ledger, outcome| got.push((outcome, ledger.counters(), ledger.balance(1, USD))));
            prop_assert_eq!(&got, &expected);
            prop_assert_eq!(at_once.state_hash(), one_by_one.state_hash());
            prop_assert_eq!(at_once.take_changes(), one_by_one.take_changes());
            if let Err(broken) = at_once.check_invariants() {
                panic!("after batch {b}: {broken}");
            }
        }
        // Not a vacuous comparison: money moved, and only deposits bring it in.
        let deposited = batches.iter().flatten().any(|c| matches!(c, LedgerCommand::Deposit { reference, .. } if !reference.is_empty() && reference.len() <= 128));
        prop_assert_eq!(one_by_one.counters().next_transfer > 1, deposited);
    }
}
