//! Every product operation and refusal through the ledger's dispatch, then
//! randomized sequences through the ledger and a real matching engine with
//! a model of balances, every invariant checked after each step (the
//! kernel's and each product's: house revenue, custody and pending
//! withdrawals included), and restore checked mid-stream.

use std::collections::BTreeMap;

use ledger_api::spot::{Market, OrderRecord, OrderRequest, OrderStatus};
use ledger_api::wallet::{Balance, WithdrawalStatus};
use ledger_api::{house, spot, wallet, AssetSpec, Command, LedgerError, Outcome};
use matching_core::{EngineLimits, Event, FastEngine, MarketSpec, OrderKind, SelfTradePrevention, Side, TimeInForce, Trigger, TriggerDirection, TriggerSource};
use products::ledger_core::{AccountId, Purpose};
use products::{Applied, Ledger, LedgerLimits};
use proptest::prelude::*;

type AssetId = u32;
type UserId = u64;
type Amount = i128;
type OrderId = u64;
type WithdrawalId = u64;

const BTC: AssetId = 1;
const USD: AssetId = 2;
const MARKET: u32 = 1;

fn btc_usd() -> Market {
    // BTC scale 8, USD scale 2; tick 0.01 USD, lot 0.001 BTC = 100,000 sat;
    // one tick x one lot = 0.00001 USD: USD at scale 2 cannot hold that, so
    // quote at scale 6 here (10 micro-dollars per tick-lot).
    Market {
        base: BTC,
        quote: USD,
        base_units_per_lot: 100_000,
        trading: true,
        spec: MarketSpec {
            id: MARKET,
            quote_units_per_tick_lot: 10,
            tick_lot_scale: 0,
            maker_fee_ppm: 1_000,
            taker_fee_ppm: 2_000,
            price_ticks_max: 100_000_000,
            quantity_lots_max: 1_000_000,
            price_band_ppm: 0,
        },
    }
}

/// The same pair where a tick on a lot is 0.003 of a quote minor unit, so
/// that most notionals fall between units and round.
const FINE_MARKET: u32 = 2;

fn fine_market() -> Market {
    let spec = MarketSpec { id: FINE_MARKET, quote_units_per_tick_lot: 3, tick_lot_scale: 3, ..btc_usd().spec };
    Market { spec, ..btc_usd() }
}

fn limits() -> LedgerLimits {
    LedgerLimits { open_orders_per_user_max: 20, pending_withdrawals_max: 50, ..LedgerLimits::default() }
}

fn ok(applied: Applied) -> Outcome {
    applied.outcome.unwrap()
}

fn ledger() -> Ledger {
    let mut ledger = Ledger::new(limits());
    ok(ledger.apply(&Command::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }), 0));
    ok(ledger.apply(&Command::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 6 }), 0));
    ok(ledger.apply(&Command::Spot(spot::Command::CreateMarket(btc_usd())), 0));
    ok(ledger.apply(&Command::Spot(spot::Command::CreateMarket(fine_market())), 0));
    ledger
}

fn deposit_command(user: UserId, asset: AssetId, amount: Amount, reference: &str) -> Command {
    Command::Wallet(wallet::Command::Deposit { user, asset, amount, reference: reference.into() })
}

fn deposit(ledger: &mut Ledger, user: UserId, asset: AssetId, amount: Amount, reference: &str) -> Result<Outcome, LedgerError> {
    ledger.apply(&deposit_command(user, asset, amount, reference), 1).outcome
}

fn balance(ledger: &Ledger, user: UserId, asset: AssetId) -> Balance {
    products::wallet::balance(ledger.kernel(), user, asset)
}

fn house(ledger: &Ledger, asset: AssetId, purpose: u8) -> Amount {
    ledger.kernel().balance(AccountId::house(asset, Purpose(purpose)))
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
        expires_at_ms: None,
        trigger: None,
        reduce_only: false,
    }
}

fn place_command(user: UserId, request: OrderRequest, client_order_id: Option<&str>) -> Command {
    Command::Spot(spot::Command::PlaceOrder { user, request, client_order_id: client_order_id.map(str::to_string) })
}

fn cancel_command(user: UserId, order_id: OrderId) -> Command {
    Command::Spot(spot::Command::CancelOrder { user, order_id })
}

fn wallet_outcome(outcome: Outcome) -> wallet::Outcome {
    match outcome {
        Outcome::Wallet(outcome) => outcome,
        other => panic!("not a wallet outcome: {other:?}"),
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
        matching.execute(&matching_core::Command::AddMarket(btc_usd().spec), &mut events);
        matching.execute(&matching_core::Command::AddMarket(fine_market().spec), &mut events);
        Exchange { ledger, matching, sequence: 0 }
    }

    /// Runs a forwarded command through matching and applies its events.
    fn forward(&mut self, command: &matching_core::Command) -> Vec<Event> {
        let mut events = Vec::new();
        self.matching.execute(command, &mut events);
        self.sequence += 1;
        ok(self.ledger.apply(&Command::Spot(spot::Command::ApplyMatching { sequence: self.sequence, events: events.clone() }), 2));
        events
    }

    fn place(&mut self, user: UserId, request: OrderRequest) -> Result<(OrderId, Vec<Event>), LedgerError> {
        let applied = self.ledger.apply(&place_command(user, request, None), 2);
        match applied.outcome? {
            Outcome::Spot(spot::Outcome::OrderPlaced(order_id)) => Ok((order_id, self.forward(&applied.forward.expect("an order goes to matching")))),
            other => panic!("unexpected {other:?}"),
        }
    }

    fn closed(&mut self) -> BTreeMap<OrderId, OrderRecord> {
        self.ledger.take_changes().spot.closed_orders.into_iter().map(|r| (r.order.order_id, r)).collect()
    }
}

#[test]
fn the_products_declare_each_purpose_hold_and_record_kind_once() {
    let purposes = products::purposes();
    assert_eq!(purposes.all().len(), 19);
    for kinds in [products::record_kinds(), products::hold_kinds()] {
        let mut unique = kinds.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), kinds.len(), "{kinds:?}");
        assert!(!kinds.contains(&0), "kind 0 marks a free slot");
    }
    for spec in purposes.all() {
        assert_eq!(ledger_api::purpose_name(spec.purpose.0), spec.name, "the API names purpose {} as the product does", spec.purpose.0);
    }
}

#[test]
fn deposits_are_idempotent_by_reference() {
    let mut ledger = ledger();
    let Outcome::Wallet(wallet::Outcome::Deposited(id)) = deposit(&mut ledger, 7, USD, 500, "bank-1").unwrap() else { panic!() };
    assert_eq!(deposit(&mut ledger, 7, USD, 500, "bank-1"), Ok(Outcome::Wallet(wallet::Outcome::Deposited(id))), "a replay answers the first deposit");
    assert_eq!(deposit(&mut ledger, 7, USD, 501, "bank-1"), Err(LedgerError::Duplicate));
    assert_eq!(deposit(&mut ledger, 8, USD, 500, "bank-1"), Err(LedgerError::Duplicate));
    assert_eq!(balance(&ledger, 7, USD), Balance { available: 500, locked: 0 });
    assert_eq!(house(&ledger, USD, wallet::CUSTODY), -500, "custody holds what users were credited");
    ledger.check_invariants().unwrap();
}

#[test]
fn bad_input_is_refused_with_codes_and_changes_nothing() {
    let mut ledger = ledger();
    deposit(&mut ledger, 1, USD, 100, "d").unwrap();
    let before = ledger.state_hash();
    let wallet = |command| Command::Wallet(command);
    let cases: Vec<(Command, &str)> = vec![
        (deposit_command(1, 99, 5, "x"), "NOT_FOUND"),
        (deposit_command(1, USD, 0, "y"), "BAD_USER_INPUT"),
        (deposit_command(1, USD, -5, "z"), "BAD_USER_INPUT"),
        (deposit_command(1, USD, 5, ""), "BAD_USER_INPUT"),
        (deposit_command(1, USD, 5, &"r".repeat(129)), "BAD_USER_INPUT"),
        (wallet(wallet::Command::Transfer { from: 1, to: 2, asset: USD, amount: 101, key: "t".into() }), "INSUFFICIENT_FUNDS"),
        (wallet(wallet::Command::Transfer { from: 1, to: 1, asset: USD, amount: 1, key: "t2".into() }), "BAD_USER_INPUT"),
        (wallet(wallet::Command::RequestWithdrawal { user: 1, asset: USD, amount: 101, destination: "iban".into(), key: "w".into() }), "INSUFFICIENT_FUNDS"),
        (wallet(wallet::Command::RequestWithdrawal { user: 1, asset: USD, amount: 1, destination: String::new(), key: "w2".into() }), "BAD_USER_INPUT"),
        (wallet(wallet::Command::DecideWithdrawal { id: 42, approve: true }), "NOT_FOUND"),
        (Command::CreateAsset(AssetSpec { id: 3, symbol: "usd".into(), scale: 2 }), "BAD_USER_INPUT"),
        (Command::CreateAsset(AssetSpec { id: 3, symbol: "USD".into(), scale: 2 }), "DUPLICATE"),
        (Command::CreateAsset(AssetSpec { id: 3, symbol: "EUR".into(), scale: 19 }), "BAD_USER_INPUT"),
        (Command::Spot(spot::Command::CreateMarket(btc_usd())), "DUPLICATE"),
        (Command::Spot(spot::Command::CreateMarket(Market { quote: 9, spec: MarketSpec { id: 2, ..btc_usd().spec }, ..btc_usd() })), "NOT_FOUND"),
        (place_command(1, limit(Side::Buy, 10, 1_000_000), None), "INSUFFICIENT_FUNDS"),
        (place_command(1, OrderRequest { market: 5, ..limit(Side::Buy, 1, 1) }, None), "NOT_FOUND"),
        (place_command(1, limit(Side::Buy, 0, 1), None), "BAD_USER_INPUT"),
        (place_command(1, OrderRequest { kind: OrderKind::Market, price: None, ..limit(Side::Buy, 1, 1) }, None), "BAD_USER_INPUT"),
        // Reduce-only is the perpetual markets': a spot sell is already held to what is owned.
        (place_command(1, OrderRequest { reduce_only: true, ..limit(Side::Sell, 1, 1) }, None), "BAD_USER_INPUT"),
        (cancel_command(1, 999), "NOT_FOUND"),
        (Command::House(house::Command::Defund { asset: USD, amount: 1, reference: "d".into() }), "INSUFFICIENT_FUNDS"),
        (Command::House(house::Command::Fund { asset: 77, amount: 1, reference: "f".into() }), "NOT_FOUND"),
    ];
    for (command, code) in cases {
        let applied = ledger.apply(&command, 5);
        let error = applied.outcome.expect_err(&format!("{command:?} must be refused"));
        assert_eq!(error.code(), code, "{command:?}: {error}");
        assert_eq!(applied.forward, None, "a refused command sends matching nothing");
    }
    assert_eq!(ledger.state_hash(), before, "no refusal changed anything");
    ledger.check_invariants().unwrap();
}

#[test]
fn transfers_move_available_between_users() {
    let mut ledger = ledger();
    deposit(&mut ledger, 1, USD, 100, "d").unwrap();
    let command = Command::Wallet(wallet::Command::Transfer { from: 1, to: 2, asset: USD, amount: 40, key: "k".into() });
    let first = ok(ledger.apply(&command, 3));
    assert!(matches!(first, Outcome::Wallet(wallet::Outcome::Transferred(_))));
    assert_eq!(ok(ledger.apply(&command, 4)), first, "a replay moves nothing and answers the first");
    assert_eq!((balance(&ledger, 1, USD).available, balance(&ledger, 2, USD).available), (60, 40));
    ledger.check_invariants().unwrap();
}

#[test]
fn withdrawals_are_held_pending_then_paid_out_or_released() {
    let mut ledger = ledger();
    deposit(&mut ledger, 1, USD, 100, "d").unwrap();
    let request = |key: &str, amount| {
        Command::Wallet(wallet::Command::RequestWithdrawal { user: 1, asset: USD, amount, destination: "DE89 3704".into(), key: key.into() })
    };
    let wallet::Outcome::WithdrawalRequested(first) = wallet_outcome(ok(ledger.apply(&request("a", 30), 2))) else { panic!() };
    assert_eq!(wallet_outcome(ok(ledger.apply(&request("a", 30), 2))), wallet::Outcome::WithdrawalRequested(first));
    assert_eq!(ledger.apply(&request("a", 31), 2).outcome, Err(LedgerError::Duplicate));
    let wallet::Outcome::WithdrawalRequested(second) = wallet_outcome(ok(ledger.apply(&request("b", 20), 2))) else { panic!() };
    assert_eq!(balance(&ledger, 1, USD).available, 50);
    assert_eq!((house(&ledger, USD, wallet::CUSTODY), house(&ledger, USD, wallet::PENDING_WITHDRAWALS)), (-100, 50));
    ledger.check_invariants().unwrap();

    ok(ledger.apply(&Command::Wallet(wallet::Command::DecideWithdrawal { id: first, approve: true }), 3));
    ok(ledger.apply(&Command::Wallet(wallet::Command::DecideWithdrawal { id: second, approve: false }), 3));
    assert_eq!(
        ledger.apply(&Command::Wallet(wallet::Command::DecideWithdrawal { id: first, approve: false }), 4).outcome,
        Err(LedgerError::NotFound),
        "decided once"
    );
    assert_eq!(balance(&ledger, 1, USD).available, 70);
    assert_eq!((house(&ledger, USD, wallet::CUSTODY), house(&ledger, USD, wallet::PENDING_WITHDRAWALS)), (-70, 0), "the approved 30 left custody");
    let decided: Vec<_> =
        ledger.take_changes().wallet.withdrawals.into_iter().filter(|w| w.status != WithdrawalStatus::Pending).map(|w| (w.id, w.status)).collect();
    assert_eq!(decided, vec![(first, WithdrawalStatus::Approved), (second, WithdrawalStatus::Rejected)]);
    ledger.check_invariants().unwrap();
}

#[test]
fn the_house_is_funded_from_custody_and_collects_revenue() {
    let mut x = Exchange::new();
    let fund = |reference: &str, amount| Command::House(house::Command::Fund { asset: USD, amount, reference: reference.into() });
    let first = ok(x.ledger.apply(&fund("treasury-1", 5_000), 1));
    assert_eq!(ok(x.ledger.apply(&fund("treasury-1", 5_000), 1)), first, "idempotent by reference");
    assert_eq!(x.ledger.apply(&fund("treasury-1", 5_001), 1).outcome, Err(LedgerError::Duplicate));
    ok(x.ledger.apply(&Command::House(house::Command::Defund { asset: USD, amount: 2_000, reference: "back".into() }), 1));
    assert_eq!(products::house::balances(x.ledger.kernel(), USD), (3_000, 0));
    assert_eq!(house(&x.ledger, USD, wallet::CUSTODY), -3_000);
    deposit(&mut x.ledger, 1, USD, 10_000_000, "u1").unwrap();
    deposit(&mut x.ledger, 2, BTC, 1_000_000, "u2").unwrap();
    x.place(2, limit(Side::Sell, 2_000, 5)).unwrap();
    x.place(1, limit(Side::Buy, 2_000, 5)).unwrap();
    // Notional 100,000: taker 0.2% = 200, maker 0.1% = 100.
    assert_eq!(products::house::balances(x.ledger.kernel(), USD), (3_000, 300), "fees are the house's revenue");
    x.ledger.check_invariants().unwrap();
}

#[test]
fn a_notional_between_minor_units_is_paid_rounded_up_and_received_rounded_down() {
    let mut x = Exchange::new();
    deposit(&mut x.ledger, 1, USD, 1_000, "u1").unwrap();
    deposit(&mut x.ledger, 2, BTC, 1_000_000, "u2").unwrap();
    let fine = |side, price, quantity| OrderRequest { market: FINE_MARKET, ..limit(side, price, quantity) };
    // Three makers of one lot at 2,001 ticks: each fill's notional is 2,001 x 3 / 1,000 = 6.003 units.
    let sells: Vec<OrderId> = (0..3).map(|_| x.place(2, fine(Side::Sell, 2_001, 1)).unwrap().0).collect();
    let hold = products::spot::buy_hold(&fine_market(), 2_001, 3);
    // 18.009 + 2.997 of rounding (under a unit per lot) = 21, + the 0.2% fee rounded up (1) + 1.
    assert_eq!(hold, 23);
    let (buy, events) = x.place(1, fine(Side::Buy, 2_001, 3)).unwrap();
    let fills: Vec<_> = events.iter().filter_map(|e| if let Event::Fill(f) = e { Some(*f) } else { None }).collect();
    assert_eq!(
        fills.iter().map(|f| (f.notional, f.notional_rounding, f.taker_fee, f.maker_fee)).collect::<Vec<_>>(),
        vec![(7, 1, 1, 1), (7, 1, 0, 1), (7, 1, 0, 1)]
    );
    // The buyer paid 3 x 7 + 1; each seller's order received 6 less its 1 fee; the house took 3 of rounding and 4 of fees.
    assert_eq!(balance(&x.ledger, 1, USD), Balance { available: 1_000 - 22, locked: 0 });
    assert_eq!(balance(&x.ledger, 2, USD), Balance { available: 15, locked: 0 });
    assert_eq!(house(&x.ledger, USD, house::REVENUE), 7);
    let changes = x.ledger.take_changes();
    let closed: BTreeMap<OrderId, OrderRecord> = changes.spot.closed_orders.into_iter().map(|r| (r.order.order_id, r)).collect();
    assert_eq!((closed[&buy].filled_notional, closed[&buy].filled_tick_lots, closed[&buy].fees_paid), (21, 6_003, 1));
    assert_eq!((closed[&sells[0]].filled_notional, closed[&sells[0]].fees_paid), (6, 1));
    let rounding: Vec<Amount> = changes.kernel.transfers.iter().filter(|t| t.code.0 == spot::ROUNDING).map(|t| t.amount).collect();
    assert_eq!(rounding, vec![1, 1, 1], "the rounding moves under its own code");
    // A trade worth less than a unit: the buyer pays one, the seller receives nothing and pays no fee.
    x.place(2, fine(Side::Sell, 1, 1)).unwrap();
    x.place(1, fine(Side::Buy, 1, 1)).unwrap();
    assert_eq!(balance(&x.ledger, 1, USD).available, 1_000 - 22 - 1 - 1, "0.003 rounded up, and the 0.2% fee rounded up");
    assert_eq!(balance(&x.ledger, 2, USD).available, 15);
    assert_eq!(house(&x.ledger, USD, house::REVENUE), 9);
    x.ledger.check_invariants().unwrap();
}

#[test]
fn a_trade_settles_both_sides_with_fees_and_releases_the_unused_hold() {
    let mut x = Exchange::new();
    deposit(&mut x.ledger, 1, USD, 10_000_000, "u1").unwrap();
    deposit(&mut x.ledger, 2, BTC, 1_000_000, "u2").unwrap();
    // Seller rests 5 lots at 2,000 ticks; the buyer bids 2,100 for 3.
    let (sell, _) = x.place(2, limit(Side::Sell, 2_000, 5)).unwrap();
    assert_eq!(balance(&x.ledger, 2, BTC), Balance { available: 500_000, locked: 500_000 });
    let buy_hold = products::spot::buy_hold(&btc_usd(), 2_100, 3);
    let (buy, events) = x.place(1, limit(Side::Buy, 2_100, 3)).unwrap();
    assert!(events.iter().any(|e| matches!(e, Event::Fill(_))));
    // Notional 2,000 x 3 x 10 = 60,000; taker (buyer) fee 0.2% = 120; maker (seller) fee 0.1% = 60.
    assert_eq!(
        balance(&x.ledger, 1, USD),
        Balance { available: 10_000_000 - 60_000 - 120, locked: 0 },
        "the buy is done: its unused hold ({buy_hold}) came back"
    );
    assert_eq!(balance(&x.ledger, 1, BTC), Balance { available: 300_000, locked: 0 });
    assert_eq!(balance(&x.ledger, 2, USD), Balance { available: 60_000 - 60, locked: 0 });
    assert_eq!(balance(&x.ledger, 2, BTC), Balance { available: 500_000, locked: 200_000 });
    assert_eq!(house(&x.ledger, USD, house::REVENUE), 180, "fees");
    let closed = x.closed();
    assert_eq!(closed[&buy].status, OrderStatus::Filled);
    assert_eq!((closed[&buy].filled, closed[&buy].filled_notional, closed[&buy].fees_paid), (3, 60_000, 120));
    let open = x.ledger.spot().order(sell).unwrap();
    assert_eq!((open.status, open.filled), (OrderStatus::PartiallyFilled, 3));
    assert_eq!(products::spot::hold_remaining(x.ledger.kernel(), sell), Some(200_000));
    x.ledger.check_invariants().unwrap();

    // Cancelling the rest releases its hold.
    let applied = x.ledger.apply(&cancel_command(2, sell), 3);
    assert_eq!(applied.outcome, Ok(Outcome::Spot(spot::Outcome::CancelRequested(sell))));
    assert_eq!(x.ledger.apply(&cancel_command(1, sell), 3).outcome, Err(LedgerError::NotFound), "not another user's");
    x.forward(&applied.forward.unwrap());
    assert_eq!(balance(&x.ledger, 2, BTC), Balance { available: 700_000, locked: 0 });
    assert_eq!(x.closed()[&sell].status, OrderStatus::Cancelled);
    assert_eq!(products::spot::hold_remaining(x.ledger.kernel(), sell), None, "the hold closed with the order");
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
    assert_eq!(balance(&x.ledger, 1, USD), Balance { available: 10_000_000, locked: 0 });
    x.ledger.check_invariants().unwrap();
}

#[test]
fn client_order_ids_are_idempotent() {
    let mut ledger = ledger();
    deposit(&mut ledger, 1, USD, 10_000_000, "u1").unwrap();
    let first = ledger.apply(&place_command(1, limit(Side::Buy, 10, 1), Some("mine-1")), 1);
    let Ok(Outcome::Spot(spot::Outcome::OrderPlaced(order_id))) = first.outcome else { panic!() };
    assert!(first.forward.is_some());
    let replay = ledger.apply(&place_command(1, limit(Side::Buy, 10, 1), Some("mine-1")), 1);
    assert_eq!(
        replay,
        Applied { outcome: Ok(Outcome::Spot(spot::Outcome::OrderPlaced(order_id))), forward: None, forward_more: Vec::new() },
        "a replay sends matching nothing again"
    );
    assert_eq!(ledger.apply(&place_command(1, limit(Side::Buy, 11, 1), Some("mine-1")), 1).outcome, Err(LedgerError::Duplicate));
    let other_user = ledger.apply(&place_command(2, limit(Side::Buy, 10, 1), Some("mine-1")), 1).outcome;
    assert!(matches!(other_user, Err(LedgerError::InsufficientFunds { .. })), "keys are per user: {other_user:?}");
}

#[test]
fn an_order_that_rests_is_reported_open_to_storage() {
    let mut exchange = Exchange::new();
    deposit(&mut exchange.ledger, 1, BTC, 1_000_000_000, "d").unwrap();
    let applied = exchange.ledger.apply(&place_command(1, limit(Side::Sell, 100, 2), None), 2);
    let Ok(Outcome::Spot(spot::Outcome::OrderPlaced(order_id))) = applied.outcome else { panic!() };
    // The hold's batch is written; matching's answer comes in a later one.
    exchange.ledger.take_changes();
    let events = exchange.forward(&applied.forward.unwrap());
    assert!(matches!(events.as_slice(), [Event::Accepted { .. }]), "{events:?}");
    let changes = exchange.ledger.take_changes();
    assert!(changes.spot.orders.contains(&order_id), "the Open status must reach storage");
    assert!(changes.spot.closed_orders.is_empty());
    assert_eq!(exchange.ledger.spot().order(order_id).unwrap().status, OrderStatus::Open);
}

#[test]
fn freezing_an_account_cancels_its_open_orders_and_refuses_new_ones() {
    use ledger_api::operators::{Action, Command as Op, Outcome as OpOutcome, Thresholds};
    let mut exchange = Exchange::new();
    let operator = 100;
    ok(exchange.ledger.apply(&Command::Operators(Op::Configure(Thresholds::all(1))), 2));
    ok(exchange.ledger.apply(&Command::Operators(Op::Bootstrap { operator }), 2));
    deposit(&mut exchange.ledger, 1, BTC, 1_000_000_000, "d1").unwrap();
    deposit(&mut exchange.ledger, 2, BTC, 1_000_000_000, "d2").unwrap();
    let (first, _) = exchange.place(1, limit(Side::Sell, 101, 2)).unwrap();
    let (other, _) = exchange.place(2, limit(Side::Sell, 102, 2)).unwrap();
    let (second, _) = exchange.place(1, limit(Side::Sell, 103, 2)).unwrap();
    let freeze = |cancel_orders| Command::Operators(Op::Propose { operator, action: Action::Freeze { user: 1, cancel_orders } });
    let applied = exchange.ledger.apply(&freeze(true), 3);
    match applied.outcome {
        Ok(Outcome::Operators(OpOutcome::Executed { outcome: ledger_api::ActionOutcome::AccountFrozen { user: 1, orders_cancelled: 2 }, .. })) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(applied.forward, None);
    let cancels: Vec<OrderId> = applied
        .forward_more
        .iter()
        .map(|command| match command {
            matching_core::Command::Cancel { order_id, user: 1, market: MARKET } => *order_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(cancels, vec![first, second], "each of the account's open orders, oldest first, and no one else's");
    for command in &applied.forward_more {
        exchange.forward(command);
    }
    let closed = exchange.closed();
    assert_eq!(closed.keys().copied().collect::<Vec<_>>(), vec![first, second]);
    assert!(closed.values().all(|record| record.status == OrderStatus::Cancelled));
    assert_eq!(balance(&exchange.ledger, 1, BTC), Balance { available: 1_000_000_000, locked: 0 }, "the holds came back");
    assert_eq!(exchange.ledger.spot().order(other).unwrap().status, OrderStatus::Open);
    assert!(matches!(exchange.place(1, limit(Side::Sell, 104, 1)), Err(LedgerError::AccountFrozen(1))));
    exchange.place(2, limit(Side::Sell, 104, 1)).unwrap();
    // Frozen with its orders kept, an account may still cancel them: that takes risk off.
    let (kept, _) = exchange.place(2, limit(Side::Sell, 105, 1)).unwrap();
    let keep = Command::Operators(Op::Propose { operator, action: Action::Freeze { user: 2, cancel_orders: false } });
    assert!(exchange.ledger.apply(&keep, 4).forward_more.is_empty());
    assert_eq!(exchange.ledger.spot().order(kept).unwrap().status, OrderStatus::Open);
    assert!(exchange.ledger.apply(&cancel_command(2, kept), 4).forward.is_some());
    exchange.ledger.check_invariants().unwrap();
}

#[test]
fn a_halted_market_refuses_orders_before_holding_and_still_cancels() {
    let mut x = Exchange::new();
    deposit(&mut x.ledger, 1, USD, 10_000_000, "u1").unwrap();
    let (resting, _) = x.place(1, limit(Side::Buy, 100, 1)).unwrap();
    let halt = |trading| Command::Spot(spot::Command::SetTrading { market: MARKET, trading });
    let applied = x.ledger.apply(&halt(false), 3);
    assert_eq!(applied.outcome, Ok(Outcome::Spot(spot::Outcome::TradingSet { market: MARKET, trading: false })));
    assert_eq!(applied.forward, Some(matching_core::Command::SetTrading { market: MARKET, trading: false }), "matching halts it too");
    x.forward(&applied.forward.unwrap());
    let held = balance(&x.ledger, 1, USD);
    assert_eq!(x.place(1, limit(Side::Buy, 100, 1)).err(), Some(LedgerError::MarketHalted(MARKET)));
    assert_eq!(balance(&x.ledger, 1, USD), held, "nothing is held for a refused order");
    let cancel = x.ledger.apply(&cancel_command(1, resting), 3);
    x.forward(&cancel.forward.expect("a cancel still goes to matching"));
    assert_eq!(x.closed()[&resting].status, OrderStatus::Cancelled);
    assert_eq!(x.ledger.apply(&Command::Spot(spot::Command::SetTrading { market: 99, trading: false }), 3).outcome, Err(LedgerError::UnknownMarket(99)));
    let resume = x.ledger.apply(&halt(true), 3).forward.unwrap();
    x.forward(&resume);
    x.place(1, limit(Side::Buy, 100, 1)).unwrap();
    x.ledger.check_invariants().unwrap();
}

#[test]
fn good_till_orders_expire_by_the_stamped_time_and_survive_a_restore() {
    let mut x = Exchange::new();
    deposit(&mut x.ledger, 1, USD, 10_000_000, "u1").unwrap();
    let gtd = |expires_at_ms| OrderRequest { expires_at_ms: Some(expires_at_ms), ..limit(Side::Buy, 100, 1) };
    // x.place stamps 2: an expiry at or before it has passed.
    assert!(matches!(x.place(1, gtd(2)), Err(LedgerError::BadInput(_))));
    let ioc = OrderRequest { time_in_force: TimeInForce::Ioc, ..gtd(5_000) };
    assert!(matches!(x.place(1, ioc), Err(LedgerError::BadInput(_))), "only an order that rests expires");
    let (later, _) = x.place(1, gtd(9_000)).unwrap();
    let (sooner, _) = x.place(1, gtd(5_000)).unwrap();
    let (forever, _) = x.place(1, limit(Side::Buy, 100, 1)).unwrap();
    assert_eq!(x.ledger.spot().next_expiry(), Some(5_000));
    // What a restart rebuilds from storage expires the same.
    let restored = Ledger::restore(limits(), x.ledger.state());
    assert_eq!(restored.spot().next_expiry(), Some(5_000));
    let expire = Command::Spot(spot::Command::ExpireOrders);
    let early = x.ledger.apply(&expire, 4_999);
    assert_eq!((early.outcome, early.forward_more), (Ok(Outcome::Spot(spot::Outcome::ExpiryRequested { orders: vec![] })), vec![]));
    let due = x.ledger.apply(&expire, 5_000);
    assert_eq!(due.outcome, Ok(Outcome::Spot(spot::Outcome::ExpiryRequested { orders: vec![sooner] })));
    assert_eq!(due.forward_more, vec![matching_core::Command::Cancel { market: MARKET, order_id: sooner, user: 1 }]);
    assert_eq!(x.ledger.spot().next_expiry(), Some(9_000));
    x.forward(&due.forward_more[0]);
    assert_eq!(x.closed()[&sooner].status, OrderStatus::Expired);
    // A user's own cancel of a GTD order is a cancel, and leaves no expiry behind.
    let cancel = x.ledger.apply(&cancel_command(1, later), 6_000);
    x.forward(&cancel.forward.unwrap());
    assert_eq!(x.closed()[&later].status, OrderStatus::Cancelled);
    assert_eq!(x.ledger.spot().next_expiry(), None);
    assert_eq!(x.ledger.spot().order(forever).unwrap().status, OrderStatus::Open);
    let held = products::spot::hold_remaining(x.ledger.kernel(), forever).unwrap();
    assert_eq!(balance(&x.ledger, 1, USD).locked, held, "only the order without an expiry is still held");
    x.ledger.check_invariants().unwrap();
}

#[test]
fn cancel_all_cancels_one_users_orders_in_one_market() {
    let mut x = Exchange::new();
    deposit(&mut x.ledger, 1, USD, 10_000_000, "u1").unwrap();
    deposit(&mut x.ledger, 2, USD, 10_000_000, "u2").unwrap();
    let (first, _) = x.place(1, limit(Side::Buy, 100, 1)).unwrap();
    let (other_user, _) = x.place(2, limit(Side::Buy, 100, 1)).unwrap();
    let (other_market, _) = x.place(1, OrderRequest { market: FINE_MARKET, ..limit(Side::Buy, 100, 1) }).unwrap();
    let (second, _) = x.place(1, limit(Side::Buy, 99, 1)).unwrap();
    let cancel_all = |user, market| Command::Spot(spot::Command::CancelAll { user, market });
    let applied = x.ledger.apply(&cancel_all(1, MARKET), 3);
    assert_eq!(applied.outcome, Ok(Outcome::Spot(spot::Outcome::CancelAllRequested { market: MARKET, orders: vec![first, second] })));
    assert_eq!(applied.forward, Some(matching_core::Command::CancelAll { market: MARKET, user: 1 }));
    x.forward(&applied.forward.unwrap());
    let closed = x.closed();
    assert_eq!((closed[&first].status, closed[&second].status), (OrderStatus::Cancelled, OrderStatus::Cancelled));
    for open in [other_user, other_market] {
        assert_eq!(x.ledger.spot().order(open).unwrap().status, OrderStatus::Open, "only user 1's orders in market 1");
    }
    let nothing = x.ledger.apply(&cancel_all(1, MARKET), 3);
    assert_eq!((nothing.outcome, nothing.forward), (Ok(Outcome::Spot(spot::Outcome::CancelAllRequested { market: MARKET, orders: vec![] })), None));
    assert_eq!(x.ledger.apply(&cancel_all(1, 99), 3).outcome, Err(LedgerError::UnknownMarket(99)));
    x.ledger.check_invariants().unwrap();
}

fn amend_command(user: UserId, order_id: OrderId, price: u64, quantity: u64) -> Command {
    Command::Spot(spot::Command::AmendOrder { user, order_id, price, quantity })
}

impl Exchange {
    /// Asks the ledger for an amend and returns what it forwards, undelivered.
    fn amend(&mut self, user: UserId, order_id: OrderId, price: u64, quantity: u64) -> Result<matching_core::Command, LedgerError> {
        let applied = self.ledger.apply(&amend_command(user, order_id, price, quantity), 3);
        assert_eq!(applied.outcome?, Outcome::Spot(spot::Outcome::AmendRequested(order_id)));
        Ok(applied.forward.expect("an amend goes to matching"))
    }
}

#[test]
fn a_smaller_amend_keeps_its_place_and_a_larger_one_loses_it() {
    let mut x = Exchange::new();
    deposit(&mut x.ledger, 1, USD, 100_000_000, "u1").unwrap();
    deposit(&mut x.ledger, 2, BTC, 10_000_000, "u2").unwrap();
    deposit(&mut x.ledger, 3, BTC, 10_000_000, "u3").unwrap();
    let (first, _) = x.place(2, limit(Side::Sell, 2_000, 5)).unwrap();
    let (second, _) = x.place(3, limit(Side::Sell, 2_000, 5)).unwrap();
    let forward = x.amend(2, first, 2_000, 3).unwrap();
    x.forward(&forward);
    assert_eq!(balance(&x.ledger, 2, BTC).locked, products::spot::base_amount(&btc_usd(), 3), "the hold shrank to the new quantity");
    let (_, events) = x.place(1, limit(Side::Buy, 2_000, 1)).unwrap();
    assert!(matches!(events[1], Event::Fill(f) if f.maker_order == first), "the smaller order kept its place: {events:?}");
    // More than it had: behind the other order now, and held for the total less the fill.
    let forward = x.amend(2, first, 2_000, 6).unwrap();
    x.forward(&forward);
    assert_eq!(balance(&x.ledger, 2, BTC).locked, products::spot::base_amount(&btc_usd(), 5));
    let (_, events) = x.place(1, limit(Side::Buy, 2_000, 1)).unwrap();
    assert!(matches!(events[1], Event::Fill(f) if f.maker_order == second), "the larger order lost its place: {events:?}");
    let record = x.ledger.spot().order(first).unwrap();
    assert_eq!((record.order.price, record.order.quantity, record.filled, record.amending), (Some(2_000), 6, 1, None));
    // A total at or below what filled cancels the rest, and the hold comes back.
    let forward = x.amend(2, first, 2_000, 1).unwrap();
    x.forward(&forward);
    assert_eq!(x.closed()[&first].status, OrderStatus::Cancelled);
    assert_eq!(balance(&x.ledger, 2, BTC).locked, 0);
    x.ledger.check_invariants().unwrap();
}

/// The amend races fills at the old terms: the hold taken at the request
/// covers both, and shrinks to the new terms' worst case once matching
/// took it.
#[test]
fn an_amend_racing_fills_is_held_for_both_terms_and_then_for_its_own() {
    let mut x = Exchange::new();
    deposit(&mut x.ledger, 1, USD, 100_000_000, "u1").unwrap();
    deposit(&mut x.ledger, 2, BTC, 10_000_000, "u2").unwrap();
    let (bid, _) = x.place(1, limit(Side::Buy, 2_009, 5)).unwrap();
    // A sell on its way to matching, then an amend to a lower price and a larger total.
    let sell = x.ledger.apply(&place_command(2, limit(Side::Sell, 2_009, 4), None), 3).forward.unwrap();
    let amend = x.amend(1, bid, 1_991, 8).unwrap();
    assert!(x.ledger.spot().order(bid).unwrap().amending.is_some());
    assert_eq!(x.amend(1, bid, 1_990, 8).err().map(|e| e.code()), Some("BAD_USER_INPUT"), "one amend at a time");
    x.forward(&sell);
    x.forward(&amend);
    let record = x.ledger.spot().order(bid).unwrap();
    assert_eq!((record.order.price, record.order.quantity, record.filled, record.amending), (Some(1_991), 8, 4, None));
    let held = products::spot::buy_hold(&btc_usd(), 1_991, 4);
    assert_eq!(products::spot::hold_remaining(x.ledger.kernel(), bid), Some(held), "held for the new terms' 4 open lots");
    assert_eq!(balance(&x.ledger, 1, USD).locked, held);
    x.ledger.check_invariants().unwrap();
}

#[test]
fn an_amend_needing_more_than_available_or_refused_by_matching_changes_nothing() {
    let mut x = Exchange::new();
    let exact = products::spot::buy_hold(&btc_usd(), 2_000, 1);
    deposit(&mut x.ledger, 1, USD, exact, "u1").unwrap();
    deposit(&mut x.ledger, 2, BTC, 10_000_000, "u2").unwrap();
    let (bid, _) = x.place(1, OrderRequest { post_only: true, ..limit(Side::Buy, 2_000, 1) }).unwrap();
    assert!(matches!(x.amend(1, bid, 2_005, 1), Err(LedgerError::InsufficientFunds { .. })));
    assert_eq!(balance(&x.ledger, 1, USD), Balance { available: 0, locked: exact });
    assert_eq!(x.amend(2, bid, 2_000, 1).err(), Some(LedgerError::NotFound), "another user's order is not found");
    // Matching refuses a post-only amend that would take: the terms stay, and so does the hold.
    x.place(2, limit(Side::Sell, 2_001, 1)).unwrap();
    deposit(&mut x.ledger, 1, USD, 10_000_000, "u1-more").unwrap();
    let forward = x.amend(1, bid, 2_001, 1).unwrap();
    assert!(balance(&x.ledger, 1, USD).locked > exact, "held for the higher price meanwhile");
    x.forward(&forward);
    let record = x.ledger.spot().order(bid).unwrap();
    assert_eq!((record.order.price, record.amending, record.amend_refused.as_deref()), (Some(2_000), None, Some("POST_ONLY_WOULD_TAKE")));
    assert_eq!(balance(&x.ledger, 1, USD).locked, exact, "what the amend added came back");
    x.ledger.check_invariants().unwrap();
}

fn stop(request: OrderRequest, direction: TriggerDirection, price: u64) -> OrderRequest {
    OrderRequest { trigger: Some(Trigger { source: TriggerSource::LastTrade, direction, price }), ..request }
}

/// A stop-limit sell is held when placed, waits armed off the book, and
/// when a trade reaches its trigger is placed as a limit order and trades.
#[test]
fn a_stop_is_held_when_placed_armed_and_fires_on_the_last_trade() {
    let mut x = Exchange::new();
    for (user, asset) in [(1, USD), (2, BTC), (3, BTC), (4, USD)] {
        deposit(&mut x.ledger, user, asset, 100_000_000, &format!("funding-{user}")).unwrap();
    }
    // Trade at 2,000 first: the last price the stop is measured by.
    x.place(1, limit(Side::Buy, 2_000, 1)).unwrap();
    x.place(3, limit(Side::Sell, 2_000, 1)).unwrap();
    // A spot market has no mark: a stop on it is refused before anything is held.
    let on_the_mark = OrderRequest {
        trigger: Some(Trigger { source: TriggerSource::Mark, direction: TriggerDirection::AtOrBelow, price: 1_990 }),
        ..limit(Side::Sell, 1_985, 4)
    };
    assert_eq!(x.place(2, on_the_mark).err().map(|e| e.code()), Some("BAD_USER_INPUT"));
    assert_eq!(balance(&x.ledger, 2, BTC).locked, 0);
    let (stop_loss, events) = x.place(2, stop(limit(Side::Sell, 1_985, 4), TriggerDirection::AtOrBelow, 1_990)).unwrap();
    assert_eq!(events, vec![Event::StopArmed { market: MARKET, order_id: stop_loss, user: 2 }]);
    let record = x.ledger.spot().order(stop_loss).unwrap();
    assert_eq!((record.status, record.triggered_ms), (OrderStatus::Armed, None));
    let lots = products::spot::base_amount(&btc_usd(), 4);
    assert_eq!(balance(&x.ledger, 2, BTC).locked, lots, "held when placed, not when it fires");
    assert_eq!(x.amend(2, stop_loss, 1_980, 4).err().map(|e| e.code()), Some("BAD_USER_INPUT"), "an armed stop is not in the book to amend");
    // A bid for it to meet, then a trade at 1,990 fires it.
    x.place(4, limit(Side::Buy, 1_988, 3)).unwrap();
    let (_, events) = x.place(3, limit(Side::Sell, 1_990, 1)).unwrap_or_else(|e| panic!("{e}"));
    assert!(events.iter().all(|e| !matches!(e, Event::StopTriggered { .. })), "nothing traded at 1,990 yet: {events:?}");
    let (_, events) = x.place(1, limit(Side::Buy, 1_990, 1)).unwrap();
    let fired = events.iter().position(|e| matches!(e, Event::StopTriggered { order_id, price: 1_990, .. } if *order_id == stop_loss));
    let fill = events.iter().position(|e| matches!(e, Event::Fill(f) if f.taker_order == stop_loss && f.price == 1_988 && f.quantity == 3));
    assert!(fired.is_some() && fill > fired, "fired by the trade at 1,990, then sold 3 to the bid at 1,988: {events:?}");
    let record = x.ledger.spot().order(stop_loss).unwrap();
    assert_eq!((record.status, record.filled, record.triggered_ms), (OrderStatus::PartiallyFilled, 3, Some(2)));
    assert_eq!(balance(&x.ledger, 2, BTC).locked, products::spot::base_amount(&btc_usd(), 1), "its last lot rests at 1,985");
    assert_eq!(balance(&x.ledger, 4, BTC).available, products::spot::base_amount(&btc_usd(), 3));
    x.ledger.check_invariants().unwrap();
}

#[test]
fn a_stop_that_would_fire_now_is_refused_and_a_cancelled_one_gives_back_its_hold() {
    let mut x = Exchange::new();
    for (user, asset) in [(1, USD), (2, BTC), (3, USD)] {
        deposit(&mut x.ledger, user, asset, 100_000_000, &format!("funding-{user}")).unwrap();
    }
    x.place(1, limit(Side::Buy, 2_000, 1)).unwrap();
    x.place(2, limit(Side::Sell, 2_000, 1)).unwrap();
    // A buy stop at or above 1,999: the last trade at 2,000 reaches it already.
    let (now, events) = x.place(3, stop(limit(Side::Buy, 2_010, 2), TriggerDirection::AtOrAbove, 1_999)).unwrap();
    assert!(matches!(events[..], [Event::Rejected { code: matching_core::RejectCode::WouldTriggerNow, .. }]), "{events:?}");
    let closed = x.closed();
    assert_eq!((closed[&now].status, closed[&now].reject_reason.as_deref()), (OrderStatus::Rejected, Some("WOULD_TRIGGER_NOW")));
    assert_eq!(balance(&x.ledger, 3, USD), Balance { available: 100_000_000, locked: 0 });
    // A stop-market buy sizes its hold by its protection price, as a market buy does.
    let no_protection = OrderRequest { kind: OrderKind::Market, time_in_force: TimeInForce::Ioc, price: None, ..limit(Side::Buy, 1, 2) };
    let refused = x.ledger.apply(&place_command(3, stop(no_protection, TriggerDirection::AtOrAbove, 2_050), None), 3).outcome;
    assert_eq!(refused.err().map(|e| e.code()), Some("BAD_USER_INPUT"));
    let bad_trigger = x.ledger.apply(&place_command(3, stop(limit(Side::Buy, 2_010, 2), TriggerDirection::AtOrAbove, 0), None), 3).outcome;
    assert_eq!(bad_trigger.err().map(|e| e.code()), Some("BAD_USER_INPUT"), "a trigger price no trade can have");
    let protected = OrderRequest { price: Some(2_060), ..no_protection };
    let (armed, _) = x.place(3, stop(protected, TriggerDirection::AtOrAbove, 2_050)).unwrap();
    assert_eq!(balance(&x.ledger, 3, USD).locked, products::spot::buy_hold(&btc_usd(), 2_060, 2));
    let cancel = x.ledger.apply(&cancel_command(3, armed), 4).forward.expect("the cancel goes to matching");
    let events = x.forward(&cancel);
    assert!(matches!(events[..], [Event::Cancelled { order_id, remaining: 2, .. }] if order_id == armed), "disarmed whole: {events:?}");
    assert_eq!(x.closed()[&armed].status, OrderStatus::Cancelled);
    assert_eq!(balance(&x.ledger, 3, USD), Balance { available: 100_000_000, locked: 0 });
    x.ledger.check_invariants().unwrap();
}

/// Matching's stop events are checked like its fills: a trigger the price
/// does not reach, a stop fired twice or never armed, and a fill of a stop
/// that has not fired are refused whole.
#[test]
fn stop_events_the_ledger_cannot_account_for_are_refused_whole() {
    let mut x = Exchange::new();
    for (user, asset) in [(1, USD), (2, BTC)] {
        deposit(&mut x.ledger, user, asset, 100_000_000, &format!("funding-{user}")).unwrap();
    }
    let (armed, _) = x.place(2, stop(limit(Side::Sell, 1_985, 2), TriggerDirection::AtOrBelow, 1_990)).unwrap();
    let (bid, _) = x.place(1, limit(Side::Buy, 1_985, 2)).unwrap();
    let (plain, _) = x.place(1, limit(Side::Buy, 1_000, 2)).unwrap();
    let spec = btc_usd().spec;
    let fill = matching_core::Fill {
        market: MARKET,
        maker_order: bid,
        maker_user: 1,
        taker_order: armed,
        taker_user: 2,
        taker_side: Side::Sell,
        price: 1_985,
        quantity: 2,
        notional: spec.notional(1_985, 2),
        notional_rounding: 0,
        maker_fee: 0,
        taker_fee: 0,
    };
    let triggered = |price| Event::StopTriggered { market: MARKET, order_id: armed, user: 2, price };
    let bad: Vec<(&str, Vec<Event>)> = vec![
        ("a trigger its price does not reach", vec![triggered(1_991)]),
        ("a fill of a stop that has not fired", vec![Event::Fill(fill)]),
        ("a stop fired twice", vec![triggered(1_990), triggered(1_990)]),
        ("a stop armed twice", vec![Event::StopArmed { market: MARKET, order_id: armed, user: 2 }]),
        ("an order that is no stop, armed", vec![Event::StopArmed { market: MARKET, order_id: plain, user: 1 }]),
        ("an order that is no stop, fired", vec![Event::StopTriggered { market: MARKET, order_id: plain, user: 1, price: 900 }]),
        ("another owner's stop fired", vec![Event::StopTriggered { market: MARKET, order_id: armed, user: 1, price: 1_990 }]),
        ("a mark set on a spot market", vec![Event::MarkSet { market: MARKET, price: 1_990 }]),
    ];
    let next = x.sequence + 1;
    for (what, events) in bad {
        let before = x.ledger.state_hash();
        match x.ledger.apply(&Command::Spot(spot::Command::ApplyMatching { sequence: next, events }), 3).outcome {
            Err(LedgerError::MatchingOutputRefused(_)) => {}
            other => panic!("{what} was not refused: {other:?}"),
        }
        assert_eq!(x.ledger.state_hash(), before, "{what}: a refused output changes nothing");
    }
    // Fired, then filled: settled.
    ok(x.ledger.apply(&Command::Spot(spot::Command::ApplyMatching { sequence: next, events: vec![triggered(1_990), Event::Fill(fill)] }), 3));
    assert_eq!(balance(&x.ledger, 1, BTC).available, products::spot::base_amount(&btc_usd(), 2));
    x.ledger.check_invariants().unwrap();
}

fn oco_request(side: Side, price: u64, stop_price: u64, trigger_price: u64, quantity: u64) -> spot::OcoRequest {
    spot::OcoRequest {
        market: MARKET,
        side,
        quantity,
        price,
        stop_kind: OrderKind::Limit,
        stop_price: Some(stop_price),
        trigger_price,
        self_trade: SelfTradePrevention::CancelTaker,
    }
}

impl Exchange {
    /// Places an OCO list through the ledger and matching: its two ids.
    fn place_oco(&mut self, user: UserId, request: spot::OcoRequest) -> Result<(OrderId, OrderId, Vec<Event>), LedgerError> {
        let applied = self.ledger.apply(&Command::Spot(spot::Command::PlaceOco { user, request, client_order_id: None }), 2);
        match applied.outcome? {
            Outcome::Spot(spot::Outcome::OcoPlaced { limit, stop }) => Ok((limit, stop, self.forward(&applied.forward.expect("a list goes to matching")))),
            other => panic!("unexpected {other:?}"),
        }
    }
}

/// A sell list is held once, for its quantity; a fill of its limit order
/// cancels the stop, the hold stays for the rest and comes back at the end.
#[test]
fn an_oco_list_is_held_once_and_a_fill_of_its_limit_order_cancels_its_stop() {
    let mut x = Exchange::new();
    for (user, asset) in [(1, USD), (2, BTC), (3, BTC)] {
        deposit(&mut x.ledger, user, asset, 100_000_000, &format!("funding-{user}")).unwrap();
    }
    x.place(1, limit(Side::Buy, 2_000, 1)).unwrap();
    x.place(3, limit(Side::Sell, 2_000, 1)).unwrap();
    let (sell, stop, events) = x.place_oco(2, oco_request(Side::Sell, 2_010, 1_985, 1_990, 4)).unwrap();
    assert!(
        matches!(events[..], [Event::Accepted { order_id, .. }, Event::StopArmed { order_id: armed, .. }] if order_id == sell && armed == stop),
        "{events:?}"
    );
    assert_eq!(balance(&x.ledger, 2, BTC).locked, products::spot::base_amount(&btc_usd(), 4), "one hold for the list");
    let spot = x.ledger.spot();
    assert_eq!((spot.order(sell).unwrap().oco_with, spot.order(stop).unwrap().oco_with), (Some(stop), Some(sell)));
    assert_eq!(x.amend(2, sell, 2_020, 4).err().map(|e| e.code()), Some("BAD_USER_INPUT"), "a list's order is not amended");
    let (_, events) = x.place(1, limit(Side::Buy, 2_010, 1)).unwrap();
    assert!(
        events.iter().any(|e| matches!(e, Event::Cancelled { order_id, reason: matching_core::CancelReason::OcoOther, .. } if *order_id == stop)),
        "{events:?}"
    );
    assert_eq!(x.closed()[&stop].status, OrderStatus::Cancelled);
    assert_eq!(x.ledger.spot().order(sell).unwrap().status, OrderStatus::PartiallyFilled);
    assert_eq!(balance(&x.ledger, 2, BTC).locked, products::spot::base_amount(&btc_usd(), 3), "the hold stays for the limit order's rest");
    x.ledger.check_invariants().unwrap();
    let cancel = x.ledger.apply(&cancel_command(2, sell), 3).forward.unwrap();
    x.forward(&cancel);
    assert_eq!(balance(&x.ledger, 2, BTC).locked, 0);
    x.ledger.check_invariants().unwrap();
}

/// The stop firing cancels the limit order; the stop's order trades from
/// the list's hold, which comes back when it ends. A buy list holds the
/// dearer of its two orders.
#[test]
fn an_oco_lists_stop_firing_cancels_its_limit_order_and_trades_from_the_one_hold() {
    let mut x = Exchange::new();
    for (user, asset) in [(1, USD), (2, BTC), (3, BTC), (4, USD)] {
        deposit(&mut x.ledger, user, asset, 100_000_000, &format!("funding-{user}")).unwrap();
    }
    x.place(1, limit(Side::Buy, 2_000, 1)).unwrap();
    x.place(3, limit(Side::Sell, 2_000, 1)).unwrap();
    let (sell, stop, _) = x.place_oco(2, oco_request(Side::Sell, 2_010, 1_985, 1_990, 4)).unwrap();
    x.place(4, limit(Side::Buy, 1_988, 4)).unwrap();
    x.place(1, limit(Side::Buy, 1_990, 1)).unwrap();
    let (_, events) = x.place(3, limit(Side::Sell, 1_990, 1)).unwrap();
    let fired = events.iter().position(|e| matches!(e, Event::StopTriggered { order_id, .. } if *order_id == stop)).expect("fired at 1,990");
    assert!(matches!(events[fired + 1], Event::Cancelled { order_id, .. } if order_id == sell), "{events:?}");
    let closed = x.closed();
    assert_eq!(closed[&sell].status, OrderStatus::Cancelled);
    assert_eq!(closed[&stop].status, OrderStatus::Filled, "the stop sold 4 to the bid at 1,988");
    assert_eq!(balance(&x.ledger, 2, BTC), Balance { available: 100_000_000 - products::spot::base_amount(&btc_usd(), 4), locked: 0 });
    x.ledger.check_invariants().unwrap();
    // A buy list: the limit at 1,950 below, the stop buying up to 2,050 above.
    let (buy, _, _) = x.place_oco(4, oco_request(Side::Buy, 1_950, 2_050, 2_040, 3)).unwrap();
    assert_eq!(products::spot::hold_remaining(x.ledger.kernel(), buy), Some(products::spot::buy_hold(&btc_usd(), 2_050, 3)));
    let refused =
        x.ledger.apply(&Command::Spot(spot::Command::PlaceOco { user: 4, request: oco_request(Side::Buy, 2_045, 2_050, 2_040, 3), client_order_id: None }), 3);
    assert_eq!(refused.outcome.err().map(|e| e.code()), Some("BAD_USER_INPUT"), "a buy list's limit is below its trigger");
    x.ledger.check_invariants().unwrap();
}

/// Matching's output in which both orders of a list trade is refused whole:
/// the one hold covers one of them.
#[test]
fn an_output_in_which_both_orders_of_a_list_trade_is_refused_whole() {
    let mut x = Exchange::new();
    for (user, asset) in [(1, USD), (2, BTC)] {
        deposit(&mut x.ledger, user, asset, 100_000_000, &format!("funding-{user}")).unwrap();
    }
    let (sell, stop, _) = x.place_oco(2, oco_request(Side::Sell, 2_010, 1_985, 1_990, 2)).unwrap();
    let (bid, _) = x.place(1, limit(Side::Buy, 1_985, 2)).unwrap();
    // A buy the ledger holds and matching has not seen yet: a fill with it is the ledger's to check.
    let Ok(Outcome::Spot(spot::Outcome::OrderPlaced(lift))) = x.ledger.apply(&place_command(1, limit(Side::Buy, 2_010, 1), None), 2).outcome else {
        panic!("placed")
    };
    let spec = btc_usd().spec;
    let user_of = |order| if order == bid || order == lift { 1 } else { 2 };
    let fill = |maker_order, taker_order, taker_side, price| matching_core::Fill {
        market: MARKET,
        maker_order,
        maker_user: user_of(maker_order),
        taker_order,
        taker_user: user_of(taker_order),
        taker_side,
        price,
        quantity: 1,
        notional: spec.notional(price, 1),
        notional_rounding: 0,
        maker_fee: 0,
        taker_fee: 0,
    };
    let events = vec![
        Event::Fill(fill(sell, lift, Side::Buy, 2_010)),
        Event::StopTriggered { market: MARKET, order_id: stop, user: 2, price: 1_985 },
        Event::Fill(fill(bid, stop, Side::Sell, 1_985)),
    ];
    let before = x.ledger.state_hash();
    let applied = x.ledger.apply(&Command::Spot(spot::Command::ApplyMatching { sequence: x.sequence + 1, events }), 3);
    assert!(
        matches!(applied.outcome, Err(LedgerError::MatchingOutputRefused(ref reason)) if reason.contains("both orders of an OCO list")),
        "{:?}",
        applied.outcome
    );
    assert_eq!(x.ledger.state_hash(), before);
}

#[test]
fn kill_switches_cancel_and_refuse_orders_until_their_holder_lifts_them() {
    use ledger_api::operators::{Action, Command as Op, KillSwitch, Outcome as OpOutcome, Thresholds};
    let mut x = Exchange::new();
    let operator = 100;
    ok(x.ledger.apply(&Command::Operators(Op::Configure(Thresholds::all(1))), 2));
    ok(x.ledger.apply(&Command::Operators(Op::Bootstrap { operator }), 2));
    deposit(&mut x.ledger, 1, USD, 10_000_000, "u1").unwrap();
    deposit(&mut x.ledger, 2, USD, 10_000_000, "u2").unwrap();
    let (first, _) = x.place(1, limit(Side::Buy, 100, 1)).unwrap();
    let (other, _) = x.place(2, limit(Side::Buy, 99, 1)).unwrap();
    let (second, _) = x.place(1, limit(Side::Buy, 98, 1)).unwrap();
    let own = |engaged| Command::Operators(Op::KillSwitch { user: 1, engaged });
    let applied = x.ledger.apply(&own(true), 3);
    let set = |by_user, by_operators, orders_cancelled| {
        Ok(Outcome::Operators(OpOutcome::KillSwitchSet { user: 1, state: KillSwitch { by_user, by_operators }, orders_cancelled }))
    };
    assert_eq!(applied.outcome, set(true, false, 2));
    let cancelled: Vec<OrderId> = applied
        .forward_more
        .iter()
        .map(|command| match command {
            matching_core::Command::Cancel { order_id, user: 1, .. } => *order_id,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(cancelled, vec![first, second], "the user's open orders, and no one else's");
    for command in &applied.forward_more {
        x.forward(command);
    }
    assert_eq!(balance(&x.ledger, 1, USD), Balance { available: 10_000_000, locked: 0 });
    assert_eq!(x.ledger.spot().order(other).unwrap().status, OrderStatus::Open);
    let refused = Some(LedgerError::KillSwitchEngaged { user: 1, by_operators: false });
    assert_eq!(x.place(1, limit(Side::Buy, 100, 1)).err(), refused);
    assert_eq!(balance(&x.ledger, 1, USD).locked, 0, "nothing is held for a refused order");
    x.place(2, limit(Side::Buy, 100, 1)).unwrap();
    // Engaged again: nothing is open, nothing to cancel.
    assert_eq!(x.ledger.apply(&own(true), 3).outcome, set(true, false, 0));

    // The operators' switch: the user's lifting theirs leaves it engaged.
    let by_operators = |engaged| Command::Operators(Op::Propose { operator, action: Action::KillSwitch { user: 1, engaged } });
    let applied = x.ledger.apply(&by_operators(true), 3);
    assert!(
        matches!(
            &applied.outcome,
            Ok(Outcome::Operators(OpOutcome::Executed {
                outcome: ledger_api::ActionOutcome::KillSwitchSet { user: 1, state: KillSwitch { by_user: true, by_operators: true }, orders_cancelled: 0 },
                ..
            }))
        ),
        "{:?}",
        applied.outcome
    );
    assert_eq!(x.ledger.apply(&own(false), 3).outcome, set(false, true, 0));
    assert_eq!(x.place(1, limit(Side::Buy, 100, 1)).err(), Some(LedgerError::KillSwitchEngaged { user: 1, by_operators: true }));
    assert!(matches!(x.ledger.apply(&by_operators(true), 3).outcome, Err(LedgerError::BadInput(_))), "engaged already");
    let self_serving = Command::Operators(Op::Propose { operator, action: Action::KillSwitch { user: operator, engaged: true } });
    assert!(matches!(x.ledger.apply(&self_serving, 3).outcome, Err(LedgerError::Forbidden(_))), "not on one's own account");
    ok(x.ledger.apply(&by_operators(false), 3));
    assert_eq!(x.ledger.operators().kill_switch(1), KillSwitch::default());
    x.place(1, limit(Side::Buy, 100, 1)).unwrap();
    x.ledger.check_invariants().unwrap();
}

#[test]
fn matching_outputs_apply_exactly_once_and_in_order() {
    let mut ledger = ledger();
    let apply = |ledger: &mut Ledger, sequence| ledger.apply(&Command::Spot(spot::Command::ApplyMatching { sequence, events: vec![] }), 1).outcome;
    apply(&mut ledger, 1).unwrap();
    assert_eq!(apply(&mut ledger, 1), Ok(Outcome::Spot(spot::Outcome::MatchingApplied { orders: vec![] })), "a replayed output is a no-op");
    assert_eq!(apply(&mut ledger, 3), Err(LedgerError::OutOfSequence { expected: 2, got: 3 }));
    assert_eq!(ledger.spot().counters().matching_applied, 1);
}

/// An output the ledger cannot settle is refused whole: nothing changes,
/// not even the output counter, and the same output, right, applies after.
#[test]
fn a_matching_output_the_ledger_cannot_settle_is_refused_whole() {
    let mut exchange = Exchange::new();
    for (user, asset) in [(1, USD), (2, BTC)] {
        deposit(&mut exchange.ledger, user, asset, 1_000_000_000, "funding").unwrap();
    }
    let (sell, _) = exchange.place(2, limit(Side::Sell, 1_000, 3)).unwrap();
    let applied = exchange.ledger.apply(&place_command(1, limit(Side::Buy, 1_000, 2), None), 2);
    let Ok(Outcome::Spot(spot::Outcome::OrderPlaced(buy))) = applied.outcome else { panic!("{:?}", applied.outcome) };
    let mut events = Vec::new();
    exchange.matching.execute(&applied.forward.unwrap(), &mut events);
    let fill = events.iter().find_map(|e| if let Event::Fill(fill) = e { Some(*fill) } else { None }).expect("the buy crosses the sell");
    assert_eq!((fill.maker_order, fill.taker_order, fill.quantity), (sell, buy, 2));
    let next = exchange.sequence + 1;
    let output = |events: Vec<Event>| Command::Spot(spot::Command::ApplyMatching { sequence: next, events });
    let with_fill = |fill: matching_core::Fill| events.iter().map(|e| if let Event::Fill(_) = e { Event::Fill(fill) } else { *e }).collect::<Vec<_>>();
    let bad: Vec<(&str, Vec<Event>)> = vec![
        ("another owner", with_fill(matching_core::Fill { taker_user: 9, ..fill })),
        ("more than the order's quantity", with_fill(matching_core::Fill { quantity: 3, notional: btc_usd().spec.notional(fill.price, 3), ..fill })),
        ("beyond the buy's limit", with_fill(matching_core::Fill { price: 1_001, notional: btc_usd().spec.notional(1_001, 2), ..fill })),
        ("a notional that is not price x quantity", with_fill(matching_core::Fill { notional: fill.notional + 1, ..fill })),
        ("a fee above the market's rate", with_fill(matching_core::Fill { taker_fee: fill.notional / 2, ..fill })),
        ("an order the ledger does not hold", with_fill(matching_core::Fill { maker_order: 999, ..fill })),
        ("the same fill twice", [with_fill(fill), vec![Event::Fill(fill)]].concat()),
        ("the order closed as another's", vec![Event::Done { market: MARKET, order_id: sell, user: 1 }]),
    ];
    for (what, events) in bad {
        let before = exchange.ledger.state_hash();
        match exchange.ledger.apply(&output(events), 3).outcome {
            Err(LedgerError::MatchingOutputRefused(reason)) => assert!(reason.starts_with(&format!("matching output {next}: ")), "{what}: {reason}"),
            other => panic!("{what} was not refused: {other:?}"),
        }
        assert_eq!(exchange.ledger.state_hash(), before, "{what}: a refused output changes nothing");
        exchange.ledger.check_invariants().unwrap();
    }
    ok(exchange.ledger.apply(&output(events), 3));
    assert_eq!(exchange.ledger.spot().counters().matching_applied, next);
    assert_eq!(balance(&exchange.ledger, 1, BTC).available, 2 * 100_000, "the buyer got two lots");
    exchange.ledger.check_invariants().unwrap();
}

#[test]
fn open_order_limit_per_user() {
    let mut ledger = ledger();
    deposit(&mut ledger, 1, USD, 10_000_000, "u1").unwrap();
    for _ in 0..20 {
        ok(ledger.apply(&place_command(1, limit(Side::Buy, 1, 1), None), 1));
    }
    let error = ledger.apply(&place_command(1, limit(Side::Buy, 1, 1), None), 1).outcome.unwrap_err();
    assert_eq!(error, LedgerError::LimitReached("open_orders_per_user_max".into()));
    assert_eq!(error.code(), "LIMIT_REACHED", "not UNAVAILABLE: a retry cannot succeed until an order closes");
}

/// One random step of a wallet, a house and an exchange.
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
    Fund {
        amount: Amount,
        out: bool,
        reference: u8,
    },
    Place {
        user: UserId,
        fine: bool,
        side: bool,
        market_order: bool,
        tif: u8,
        post_only: bool,
        price: u64,
        quantity: u64,
        /// A stop: fires at or above (true) or at or below the price.
        stop: Option<(bool, u64)>,
    },
    /// An OCO list: its limit `gap` ticks beyond its trigger, its stop's limit `gap` ticks past it.
    Oco {
        user: UserId,
        side: bool,
        trigger: u64,
        gap: u64,
        quantity: u64,
    },
    Cancel {
        user: UserId,
        pick: usize,
    },
    /// Amend an order (its owner's, mostly) to a price and total quantity,
    /// racing the fills still queued for matching.
    Amend {
        user: UserId,
        pick: usize,
        price: u64,
        quantity: u64,
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
        1 => (1i128..3_000_000, any::<bool>(), any::<u8>()).prop_map(|(amount, out, reference)| Step::Fund { amount, out, reference }),
        6 => (
            user.clone(),
            any::<bool>(),
            any::<bool>(),
            prop::bool::weighted(0.1),
            0u8..3,
            prop::bool::weighted(0.1),
            1_990u64..2_010,
            1u64..8,
            prop::option::weighted(0.2, (any::<bool>(), 1_985u64..2_015))
        )
            .prop_map(|(user, fine, side, market_order, tif, post_only, price, quantity, stop)| Step::Place {
                user,
                fine,
                side,
                market_order,
                tif,
                post_only,
                price,
                quantity,
                stop
            }),
        2 => (user.clone(), any::<bool>(), 1_985u64..2_015, 1u64..15, 1u64..8)
            .prop_map(|(user, side, trigger, gap, quantity)| Step::Oco { user, side, trigger, gap, quantity }),
        2 => (user.clone(), any::<usize>()).prop_map(|(user, pick)| Step::Cancel { user, pick }),
        3 => (user, any::<usize>(), 1_900u64..2_100, 1u64..12).prop_map(|(user, pick, price, quantity)| Step::Amend { user, pick, price, quantity }),
        3 => Just(Step::Deliver),
        1 => Just(Step::Restart),
    ]
}

/// Totals computed from the steps and matching's events alone: per
/// (user, asset), the house's revenue and inventory, custody per asset.
#[derive(Default)]
struct Model {
    totals: BTreeMap<(UserId, AssetId), Amount>,
    revenue: Amount,
    inventory: Amount,
    custody: BTreeMap<AssetId, Amount>,
}

impl Model {
    fn add(&mut self, user: UserId, asset: AssetId, amount: Amount) {
        *self.totals.entry((user, asset)).or_default() += amount;
    }

    fn check(&self, ledger: &Ledger) {
        for (&(user, asset), &total) in &self.totals {
            let b = balance(ledger, user, asset);
            assert_eq!(b.available + b.locked, total, "user {user} asset {asset}: ledger {b:?}, model total {total}");
        }
        assert_eq!(house(ledger, USD, house::REVENUE), self.revenue);
        assert_eq!(house(ledger, USD, house::INVENTORY), self.inventory);
        for (&asset, &custody) in &self.custody {
            assert_eq!(house(ledger, asset, wallet::CUSTODY), custody, "custody of asset {asset}");
        }
        // Conservation over every account a product added: users, custody,
        // pending withdrawals, revenue, inventory.
        for asset in [BTC, USD] {
            let sum: Amount = ledger.kernel().state().balances.iter().filter(|(account, _)| account.asset == asset).map(|(_, b)| *b).sum();
            assert_eq!(sum, 0, "asset {asset} sums to {sum}");
        }
    }
}

fn run(steps: &[Step]) {
    let mut x = Exchange::new();
    let mut model = Model::default();
    let mut queued: Vec<matching_core::Command> = Vec::new();
    let mut placed: Vec<(UserId, OrderId)> = Vec::new();
    let mut pending_withdrawals: Vec<(WithdrawalId, UserId, Amount)> = Vec::new();
    let mut deposits: BTreeMap<(AssetId, u8), (UserId, Amount)> = BTreeMap::new();
    for (i, step) in steps.iter().enumerate() {
        let at = i as u64;
        match *step {
            Step::Deposit { user, asset, amount, reference } => {
                let result = deposit(&mut x.ledger, user, asset, amount, &format!("ref-{reference}"));
                match deposits.get(&(asset, reference)) {
                    None => {
                        assert!(matches!(result, Ok(Outcome::Wallet(wallet::Outcome::Deposited(_)))), "{result:?}");
                        deposits.insert((asset, reference), (user, amount));
                        model.add(user, asset, amount);
                        *model.custody.entry(asset).or_default() -= amount;
                    }
                    Some(&first) if first == (user, amount) => assert!(matches!(result, Ok(Outcome::Wallet(wallet::Outcome::Deposited(_)))), "{result:?}"),
                    Some(_) => assert_eq!(result, Err(LedgerError::Duplicate)),
                }
            }
            Step::Transfer { from, to, amount, key } => {
                let command = Command::Wallet(wallet::Command::Transfer { from, to, asset: USD, amount, key: format!("t-{key}") });
                let before = x.ledger.kernel().next_transfer();
                // A replay answers the first transfer and moves nothing.
                if x.ledger.apply(&command, at).outcome.is_ok() && x.ledger.kernel().next_transfer() > before {
                    model.add(from, USD, -amount);
                    model.add(to, USD, amount);
                }
            }
            Step::Withdraw { user, amount, key } => {
                let command =
                    Command::Wallet(wallet::Command::RequestWithdrawal { user, asset: USD, amount, destination: "acct".into(), key: format!("w-{key}") });
                let before = x.ledger.wallet().next_withdrawal();
                if let Ok(Outcome::Wallet(wallet::Outcome::WithdrawalRequested(id))) = x.ledger.apply(&command, at).outcome {
                    if x.ledger.wallet().next_withdrawal() > before {
                        model.add(user, USD, -amount);
                        pending_withdrawals.push((id, user, amount));
                    }
                }
            }
            Step::Decide { pick, approve } => {
                if !pending_withdrawals.is_empty() {
                    let (id, user, amount) = pending_withdrawals.remove(pick % pending_withdrawals.len());
                    ok(x.ledger.apply(&Command::Wallet(wallet::Command::DecideWithdrawal { id, approve }), at));
                    if approve {
                        *model.custody.entry(USD).or_default() += amount;
                    } else {
                        model.add(user, USD, amount);
                    }
                }
            }
            Step::Fund { amount, out, reference } => {
                let reference = format!("house-{reference}");
                let command =
                    if out { house::Command::Defund { asset: USD, amount, reference } } else { house::Command::Fund { asset: USD, amount, reference } };
                let before = x.ledger.kernel().next_transfer();
                if x.ledger.apply(&Command::House(command), at).outcome.is_ok() && x.ledger.kernel().next_transfer() > before {
                    let signed = if out { -amount } else { amount };
                    model.inventory += signed;
                    *model.custody.entry(USD).or_default() -= signed;
                }
            }
            Step::Place { user, fine, side, market_order, tif, post_only, price, quantity, stop } => {
                let request = OrderRequest {
                    market: if fine { FINE_MARKET } else { MARKET },
                    side: if side { Side::Buy } else { Side::Sell },
                    kind: if market_order { OrderKind::Market } else { OrderKind::Limit },
                    time_in_force: [TimeInForce::Gtc, TimeInForce::Ioc, TimeInForce::Fok][tif as usize],
                    post_only,
                    price: Some(price),
                    quantity,
                    self_trade: SelfTradePrevention::CancelTaker,
                    expires_at_ms: None,
                    trigger: stop.map(|(above, price)| Trigger {
                        source: TriggerSource::LastTrade,
                        direction: if above { TriggerDirection::AtOrAbove } else { TriggerDirection::AtOrBelow },
                        price,
                    }),
                    reduce_only: false,
                };
                let applied = x.ledger.apply(&place_command(user, request, None), at);
                if let Ok(Outcome::Spot(spot::Outcome::OrderPlaced(order_id))) = applied.outcome {
                    placed.push((user, order_id));
                    queued.push(applied.forward.expect("a placed order goes to matching"));
                }
            }
            Step::Oco { user, side, trigger, gap, quantity } => {
                let side = if side { Side::Buy } else { Side::Sell };
                let (price, stop_price) = match side {
                    Side::Buy => (trigger - gap, trigger + gap),
                    Side::Sell => (trigger + gap, trigger - gap),
                };
                let request = oco_request(side, price, stop_price, trigger, quantity);
                let applied = x.ledger.apply(&Command::Spot(spot::Command::PlaceOco { user, request, client_order_id: None }), at);
                if let Ok(Outcome::Spot(spot::Outcome::OcoPlaced { limit, stop })) = applied.outcome {
                    placed.extend([(user, limit), (user, stop)]);
                    queued.push(applied.forward.expect("a list goes to matching"));
                }
            }
            Step::Cancel { user, pick } => {
                if !placed.is_empty() {
                    let (owner, order_id) = placed[pick % placed.len()];
                    let applied = x.ledger.apply(&cancel_command(user, order_id), at);
                    if applied.outcome.is_ok() {
                        assert_eq!(owner, user, "only the owner may cancel");
                        queued.push(applied.forward.expect("a cancel goes to matching"));
                    }
                }
            }
            Step::Amend { user, pick, price, quantity } => {
                if !placed.is_empty() {
                    let (owner, order_id) = placed[pick % placed.len()];
                    // Mostly the owner's: another user's is refused NOT_FOUND.
                    let user = if pick % 4 == 0 { user } else { owner };
                    let balances = (balance(&x.ledger, user, USD), balance(&x.ledger, user, BTC));
                    let applied = x.ledger.apply(&Command::Spot(spot::Command::AmendOrder { user, order_id, price, quantity }), at);
                    match applied.outcome {
                        Ok(_) => {
                            assert_eq!(owner, user, "only the owner may amend");
                            queued.push(applied.forward.expect("an amend goes to matching"));
                        }
                        Err(_) => assert_eq!((balance(&x.ledger, user, USD), balance(&x.ledger, user, BTC)), balances, "a refused amend holds nothing"),
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
                            let base = products::spot::base_amount(&btc_usd(), f.quantity);
                            model.add(buyer, BTC, base);
                            model.add(seller, BTC, -base);
                            // The buyer pays the notional rounded up, the seller
                            // receives it rounded down, revenue takes the difference.
                            let spec = if f.market == FINE_MARKET { fine_market().spec } else { btc_usd().spec };
                            let exact = spec.notional_exact(f.price, f.quantity);
                            let (paid, received) = (exact.div_ceil(spec.notional_divisor()), exact / spec.notional_divisor());
                            model.add(buyer, USD, -(paid as Amount) - buyer_fee as Amount);
                            model.add(seller, USD, received as Amount - seller_fee as Amount);
                            model.revenue += (buyer_fee + seller_fee + paid - received) as Amount;
                        }
                    }
                }
            }
            Step::Restart => {
                // Through the encoded state, as the daemon restores it from storage.
                let bytes = postcard::to_stdvec(&x.ledger.state()).unwrap();
                let restored = Ledger::restore(limits(), postcard::from_bytes(&bytes).unwrap());
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
fn keyed_command() -> impl Strategy<Value = Command> {
    let user = 1u64..4;
    let key = prop_oneof![8 => (0u8..6).prop_map(|k| format!("k{k}")), 1 => Just(String::new()), 1 => Just("x".repeat(129))];
    let amount = 1i128..3_000;
    prop_oneof![
        (user.clone(), prop_oneof![Just(BTC), Just(USD)], amount.clone(), key.clone())
            .prop_map(|(user, asset, amount, reference)| deposit_command(user, asset, amount, &reference)),
        (user.clone(), user.clone(), amount.clone(), key.clone()).prop_map(|(from, to, amount, key)| Command::Wallet(wallet::Command::Transfer {
            from,
            to,
            asset: USD,
            amount,
            key
        })),
        (user.clone(), amount.clone(), key.clone()).prop_map(|(user, amount, key)| Command::Wallet(wallet::Command::RequestWithdrawal {
            user,
            asset: USD,
            amount,
            destination: "acct".into(),
            key
        })),
        (1u64..4, any::<bool>()).prop_map(|(id, approve)| Command::Wallet(wallet::Command::DecideWithdrawal { id, approve })),
        (amount, key.clone(), any::<bool>()).prop_map(|(amount, reference, out)| Command::House(if out {
            house::Command::Defund { asset: USD, amount, reference }
        } else {
            house::Command::Fund { asset: USD, amount, reference }
        })),
        (user, any::<bool>(), 1_990u64..2_010, 1u64..3, proptest::option::of(key)).prop_map(|(user, buy, price, quantity, client_order_id)| place_command(
            user,
            limit(if buy { Side::Buy } else { Side::Sell }, price, quantity),
            client_order_id.as_deref()
        )),
    ]
}

proptest! {
    /// `apply_all` (digests first, then each command) is `apply` one
    /// command at a time: the same results, each handed over with the
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
                let applied = one_by_one.apply(command, b as u64);
                expected.push((applied, one_by_one.kernel().next_transfer(), balance(&one_by_one, 1, USD)));
            }
            let mut got = Vec::new();
            at_once.apply_all(batch.iter().map(|command| (command, b as u64)), |ledger, applied| got.push((applied, ledger.kernel().next_transfer(), balance(ledger, 1, USD))));
            prop_assert_eq!(&got, &expected);
            prop_assert_eq!(at_once.state_hash(), one_by_one.state_hash());
            prop_assert_eq!(at_once.take_changes(), one_by_one.take_changes());
            if let Err(broken) = at_once.check_invariants() {
                panic!("after batch {b}: {broken}");
            }
        }
        // Not a vacuous comparison: money moved, and only deposits and the house's funding bring it in.
        let deposited = batches.iter().flatten().any(|c| {
            matches!(c, Command::Wallet(wallet::Command::Deposit { reference, .. }) | Command::House(house::Command::Fund { reference, .. }) if !reference.is_empty() && reference.len() <= 128)
        });
        prop_assert_eq!(one_by_one.kernel().next_transfer() > 1, deposited);
    }
}
