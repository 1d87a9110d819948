//! One suite, run against both books: every test is generic over `OrderBook`
//! and instantiated once for the reference book and once for the fast one.

use matching_core::*;
use CancelReason::*;
use Side::*;

const MARKET: MarketId = 7;

fn spec() -> MarketSpec {
    MarketSpec {
        id: MARKET,
        quote_units_per_tick_lot: 10,
        tick_lot_scale: 0,
        maker_fee_ppm: 1_000,
        taker_fee_ppm: 2_000,
        price_ticks_max: 1_000_000,
        quantity_lots_max: 1_000_000,
        price_band_ppm: 0,
    }
}

struct Harness<B: OrderBook> {
    engine: Engine<B>,
}

impl<B: OrderBook> Harness<B> {
    fn new() -> Self {
        Self::with_limits(BookLimits { resting_orders_max: 100, orders_per_user_max: 50, price_levels_per_side_max: 20 })
    }

    fn with_limits(book: BookLimits) -> Self {
        Self::listing(spec(), book)
    }

    /// The market with a price band of `ppm` millionths.
    fn with_band(ppm: u32) -> Self {
        Self::listing(
            MarketSpec { price_band_ppm: ppm, ..spec() },
            BookLimits { resting_orders_max: 100, orders_per_user_max: 50, price_levels_per_side_max: 20 },
        )
    }

    fn listing(spec: MarketSpec, book: BookLimits) -> Self {
        let mut engine = Engine::new(EngineLimits { markets_max: 16, book });
        let mut out = Vec::new();
        engine.execute(&Command::AddMarket(spec), &mut out);
        assert_eq!(out, vec![Event::MarketAdded { market: MARKET }]);
        Harness { engine }
    }

    fn run(&mut self, command: Command) -> Vec<Event> {
        let mut out = Vec::new();
        self.engine.execute(&command, &mut out);
        out
    }

    fn book(&self) -> &B {
        self.engine.book(MARKET).unwrap()
    }

    fn depth(&self, side: Side) -> Vec<(PriceTicks, QuantityLots)> {
        self.book().depth(side, 100).iter().map(|l| (l.price, l.quantity)).collect()
    }
}

fn order(order_id: OrderId, user: UserId, side: Side, price: Option<PriceTicks>, quantity: QuantityLots) -> NewOrder {
    NewOrder {
        market: MARKET,
        order_id,
        user,
        side,
        kind: OrderKind::Limit,
        time_in_force: TimeInForce::Gtc,
        post_only: false,
        price,
        quantity,
        self_trade: SelfTradePrevention::CancelTaker,
    }
}

fn limit(order_id: OrderId, user: UserId, side: Side, price: PriceTicks, quantity: QuantityLots) -> Command {
    Command::Place(order(order_id, user, side, Some(price), quantity))
}

fn with(command: Command, change: impl FnOnce(&mut NewOrder)) -> Command {
    match command {
        Command::Place(mut o) => {
            change(&mut o);
            Command::Place(o)
        }
        other => other,
    }
}

fn accepted(order_id: OrderId, user: UserId, side: Side, price: Option<PriceTicks>, quantity: QuantityLots) -> Event {
    Event::Accepted { market: MARKET, order_id, user, side, price, quantity }
}

fn rejected(order_id: OrderId, user: UserId, code: RejectCode) -> Event {
    Event::Rejected { market: MARKET, order_id, user, code }
}

fn cancelled(order_id: OrderId, user: UserId, side: Side, remaining: QuantityLots, reason: CancelReason) -> Event {
    Event::Cancelled { market: MARKET, order_id, user, side, remaining, reason }
}

fn done(order_id: OrderId, user: UserId) -> Event {
    Event::Done { market: MARKET, order_id, user }
}

fn fills(events: &[Event]) -> Vec<Fill> {
    events.iter().filter_map(|e| if let Event::Fill(f) = e { Some(*f) } else { None }).collect()
}

/// (maker, taker, price, quantity) of each fill.
fn trades(events: &[Event]) -> Vec<(OrderId, OrderId, PriceTicks, QuantityLots)> {
    fills(events).iter().map(|f| (f.maker_order, f.taker_order, f.price, f.quantity)).collect()
}

macro_rules! suite {
    ($($name:ident),* $(,)?) => {
        mod reference { $( #[test] fn $name() { super::$name::<matching_core::ReferenceBook>() } )* }
        mod fast { $( #[test] fn $name() { super::$name::<matching_core::FastBook>() } )* }
    };
}

suite!(
    non_crossing_orders_rest_without_trading,
    price_then_time_priority,
    trades_print_at_the_makers_price,
    partial_fill_rests_the_remainder,
    ioc_cancels_its_unfilled_rest,
    fok_that_cannot_fill_completely_trades_nothing,
    fok_that_can_fill_completely_fills,
    post_only_that_would_take_is_refused,
    market_buy_stops_at_its_protection_price,
    market_sell_without_protection_sweeps_the_book,
    cancel_removes_only_the_owners_order,
    cancel_all_cancels_one_users_orders_in_priority_order,
    reducing_quantity_keeps_priority,
    amends_count_fills_against_the_total,
    price_amend_loses_priority_and_may_trade,
    increasing_quantity_loses_priority,
    amend_of_post_only_to_a_crossing_price_is_refused,
    self_trade_cancel_taker,
    self_trade_cancel_maker,
    self_trade_cancel_both,
    fok_does_not_count_own_orders_as_liquidity,
    limits_refuse_orders_that_could_not_rest,
    ioc_is_allowed_when_the_book_is_full,
    fees_are_exact_and_round_up_once_per_order,
    notionals_between_minor_units_round_up_for_the_buyer_and_down_for_the_seller,
    halted_market_refuses_orders_but_allows_cancels,
    price_bands_measure_from_the_last_trade_or_the_best_opposite_price,
    stops_fire_on_the_last_trade_in_order_and_survive_a_snapshot,
    stops_are_refused_when_they_would_fire_now_and_cancel_whole,
    stops_on_the_mark_fire_when_the_mark_reaches_them_and_only_then,
    an_oco_lists_fill_cancels_its_stop_and_its_stop_firing_cancels_the_limit,
    an_oco_list_is_cancelled_or_refused_whole_and_survives_a_snapshot,
    bad_orders_are_rejected_with_codes,
    duplicate_live_order_id_is_refused,
    unknown_market_is_rejected,
    snapshot_restores_the_same_state,
    depth_aggregates_levels,
);

fn non_crossing_orders_rest_without_trading<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    assert_eq!(h.run(limit(1, 1, Buy, 99, 5)), vec![accepted(1, 1, Buy, Some(99), 5)]);
    assert_eq!(h.run(limit(2, 2, Sell, 101, 3)), vec![accepted(2, 2, Sell, Some(101), 3)]);
    assert_eq!(h.depth(Buy), vec![(99, 5)]);
    assert_eq!(h.depth(Sell), vec![(101, 3)]);
    assert_eq!(h.book().resting_count(), 2);
}

fn price_then_time_priority<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 101, 1));
    h.run(limit(2, 2, Sell, 100, 1));
    h.run(limit(3, 3, Sell, 100, 1));
    let events = h.run(limit(4, 4, Buy, 101, 3));
    // Best price first (100), and within it the oldest (2 before 3); then 101.
    assert_eq!(trades(&events), vec![(2, 4, 100, 1), (3, 4, 100, 1), (1, 4, 101, 1)]);
    assert!(events.contains(&done(4, 4)));
    assert_eq!(h.book().resting_count(), 0);
}

fn trades_print_at_the_makers_price<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Buy, 100, 2));
    let events = h.run(limit(2, 2, Sell, 90, 2));
    assert_eq!(trades(&events), vec![(1, 2, 100, 2)]);
    let fill = fills(&events)[0];
    assert_eq!(fill.taker_side, Sell);
    assert_eq!(fill.notional, 100 * 2 * 10);
}

fn partial_fill_rests_the_remainder<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 2));
    let events = h.run(limit(2, 2, Buy, 100, 5));
    assert_eq!(
        events,
        vec![
            accepted(2, 2, Buy, Some(100), 5),
            events[1],
            done(1, 1), // the maker is complete; the taker is not, so it rests
        ]
    );
    assert_eq!(trades(&events), vec![(1, 2, 100, 2)]);
    assert_eq!(h.depth(Buy), vec![(100, 3)]);
    assert_eq!(h.depth(Sell), vec![]);
}

fn ioc_cancels_its_unfilled_rest<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 2));
    let events = h.run(with(limit(2, 2, Buy, 100, 5), |o| o.time_in_force = TimeInForce::Ioc));
    assert_eq!(trades(&events), vec![(1, 2, 100, 2)]);
    assert_eq!(events.last(), Some(&cancelled(2, 2, Buy, 3, Unfilled)));
    assert_eq!(h.book().resting_count(), 0, "an IOC order never rests");
}

fn fok_that_cannot_fill_completely_trades_nothing<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 2));
    h.run(limit(2, 1, Sell, 102, 2));
    let before = h.engine.state_hash();
    // 4 are on offer but only 2 within the limit of 101.
    let events = h.run(with(limit(3, 2, Buy, 101, 4), |o| o.time_in_force = TimeInForce::Fok));
    assert_eq!(events, vec![accepted(3, 2, Buy, Some(101), 4), cancelled(3, 2, Buy, 4, FillOrKill)]);
    assert_eq!(h.engine.state_hash(), before, "a killed FOK changes nothing");
}

fn fok_that_can_fill_completely_fills<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 2));
    h.run(limit(2, 1, Sell, 101, 2));
    let events = h.run(with(limit(3, 2, Buy, 101, 3), |o| o.time_in_force = TimeInForce::Fok));
    assert_eq!(trades(&events), vec![(1, 3, 100, 2), (2, 3, 101, 1)]);
    assert_eq!(events.last(), Some(&done(3, 2)));
    assert_eq!(h.depth(Sell), vec![(101, 1)]);
}

fn post_only_that_would_take_is_refused<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 2));
    let before = h.engine.state_hash();
    let events = h.run(with(limit(2, 2, Buy, 100, 1), |o| o.post_only = true));
    assert_eq!(events, vec![rejected(2, 2, RejectCode::PostOnlyWouldTake)]);
    assert_eq!(h.engine.state_hash(), before);
    let events = h.run(with(limit(3, 2, Buy, 99, 1), |o| o.post_only = true));
    assert_eq!(events, vec![accepted(3, 2, Buy, Some(99), 1)]);
    assert_eq!(h.depth(Buy), vec![(99, 1)]);
}

fn market_buy_stops_at_its_protection_price<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 1));
    h.run(limit(2, 1, Sell, 105, 1));
    h.run(limit(3, 1, Sell, 111, 1));
    let events = h.run(with(limit(4, 2, Buy, 110, 5), |o| o.kind = OrderKind::Market));
    assert_eq!(trades(&events), vec![(1, 4, 100, 1), (2, 4, 105, 1)]);
    assert!(fills(&events).iter().all(|f| f.price <= 110), "never above the protection price");
    assert_eq!(events.last(), Some(&cancelled(4, 2, Buy, 3, Unfilled)));
    assert_eq!(h.depth(Sell), vec![(111, 1)]);
    assert_eq!(h.depth(Buy), vec![], "a market order never rests");
}

fn market_sell_without_protection_sweeps_the_book<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Buy, 100, 1));
    h.run(limit(2, 1, Buy, 1, 1));
    let events = h.run(Command::Place(NewOrder { kind: OrderKind::Market, ..order(3, 2, Sell, None, 2) }));
    assert_eq!(trades(&events), vec![(1, 3, 100, 1), (2, 3, 1, 1)]);
    assert_eq!(events.last(), Some(&done(3, 2)));
}

fn cancel_removes_only_the_owners_order<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Buy, 100, 4));
    let by_other = h.run(Command::Cancel { market: MARKET, order_id: 1, user: 2 });
    assert_eq!(by_other, vec![rejected(1, 2, RejectCode::UnknownOrder)], "no hint that the order exists");
    assert_eq!(h.depth(Buy), vec![(100, 4)]);
    let by_owner = h.run(Command::Cancel { market: MARKET, order_id: 1, user: 1 });
    assert_eq!(by_owner, vec![cancelled(1, 1, Buy, 4, User)]);
    assert_eq!(h.book().resting_count(), 0);
    let again = h.run(Command::Cancel { market: MARKET, order_id: 1, user: 1 });
    assert_eq!(again, vec![rejected(1, 1, RejectCode::UnknownOrder)]);
}

fn cancel_all_cancels_one_users_orders_in_priority_order<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 105, 1));
    h.run(limit(2, 1, Buy, 90, 1));
    h.run(limit(3, 2, Buy, 95, 1));
    h.run(limit(4, 1, Buy, 95, 1));
    h.run(limit(5, 1, Sell, 104, 1));
    let events = h.run(Command::CancelAll { market: MARKET, user: 1 });
    assert_eq!(events, vec![cancelled(4, 1, Buy, 1, User), cancelled(2, 1, Buy, 1, User), cancelled(5, 1, Sell, 1, User), cancelled(1, 1, Sell, 1, User),]);
    assert_eq!(h.depth(Buy), vec![(95, 1)], "the other user's order stays");
    assert_eq!(h.depth(Sell), vec![]);
    assert_eq!(h.run(Command::CancelAll { market: MARKET, user: 1 }), vec![]);
}

fn reducing_quantity_keeps_priority<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 5));
    h.run(limit(2, 2, Sell, 100, 5));
    let events = h.run(Command::Amend { market: MARKET, order_id: 1, user: 1, price: 100, quantity: 2 });
    assert_eq!(events, vec![Event::Amended { market: MARKET, order_id: 1, user: 1, price: 100, quantity: 2, remaining: 2 }]);
    assert_eq!(h.depth(Sell), vec![(100, 7)]);
    let events = h.run(limit(3, 3, Buy, 100, 3));
    assert_eq!(trades(&events), vec![(1, 3, 100, 2), (2, 3, 100, 1)], "order 1 kept its place");
}

/// The user amends what they saw; fills matching made meanwhile count
/// against the new total, so an amend never reopens what traded.
fn amends_count_fills_against_the_total<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 5));
    h.run(limit(2, 2, Sell, 100, 5));
    assert_eq!(trades(&h.run(limit(3, 3, Buy, 100, 3))), vec![(1, 3, 100, 3)]);
    // 3 of 5 filled: a total of 4 leaves 1 open, still first in the queue.
    let events = h.run(Command::Amend { market: MARKET, order_id: 1, user: 1, price: 100, quantity: 4 });
    assert_eq!(events, vec![Event::Amended { market: MARKET, order_id: 1, user: 1, price: 100, quantity: 4, remaining: 1 }]);
    assert_eq!(h.depth(Sell), vec![(100, 6)]);
    assert_eq!(trades(&h.run(limit(4, 3, Buy, 100, 1))), vec![(1, 4, 100, 1)], "order 1 kept its place");
    // A total at or below what filled cancels the rest.
    h.run(limit(5, 1, Sell, 101, 4));
    assert_eq!(trades(&h.run(limit(6, 3, Buy, 101, 7))), vec![(2, 6, 100, 5), (5, 6, 101, 2)]);
    let events = h.run(Command::Amend { market: MARKET, order_id: 5, user: 1, price: 101, quantity: 2 });
    assert_eq!(events, vec![cancelled(5, 1, Sell, 2, User)]);
    assert_eq!(h.depth(Sell), vec![]);
    // A new price re-enters with the total less the fills, which survive a snapshot.
    h.run(limit(7, 1, Sell, 102, 4));
    h.run(limit(8, 3, Buy, 102, 1));
    let restored = Engine::<B>::restore(*h.engine.limits(), &h.engine.snapshot()).unwrap();
    assert_eq!(restored.snapshot().markets[0].orders[0].filled, 1);
    let events = h.run(Command::Amend { market: MARKET, order_id: 7, user: 1, price: 103, quantity: 3 });
    assert_eq!(events, vec![Event::Amended { market: MARKET, order_id: 7, user: 1, price: 103, quantity: 3, remaining: 2 }]);
    assert_eq!(h.depth(Sell), vec![(103, 2)]);
}

fn price_amend_loses_priority_and_may_trade<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 101, 5));
    h.run(limit(2, 2, Sell, 100, 5));
    h.run(limit(3, 3, Buy, 98, 5));
    // Moving order 1 to 100 puts it behind order 2.
    h.run(Command::Amend { market: MARKET, order_id: 1, user: 1, price: 100, quantity: 5 });
    let events = h.run(limit(4, 4, Buy, 100, 6));
    assert_eq!(trades(&events), vec![(2, 4, 100, 5), (1, 4, 100, 1)]);
    // Moving the bid up through the ask trades, at the maker's price.
    let events = h.run(Command::Amend { market: MARKET, order_id: 3, user: 3, price: 100, quantity: 5 });
    assert_eq!(events[0], Event::Amended { market: MARKET, order_id: 3, user: 3, price: 100, quantity: 5, remaining: 5 });
    assert_eq!(trades(&events), vec![(1, 3, 100, 4)]);
    assert_eq!(h.depth(Buy), vec![(100, 1)]);
    let unknown = h.run(Command::Amend { market: MARKET, order_id: 1, user: 1, price: 100, quantity: 1 });
    assert_eq!(unknown, vec![rejected(1, 1, RejectCode::UnknownOrder)], "a filled order cannot be amended");
}

fn increasing_quantity_loses_priority<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 1));
    h.run(limit(2, 2, Sell, 100, 1));
    h.run(Command::Amend { market: MARKET, order_id: 1, user: 1, price: 100, quantity: 3 });
    assert_eq!(h.depth(Sell), vec![(100, 4)]);
    let events = h.run(limit(3, 3, Buy, 100, 1));
    assert_eq!(trades(&events), vec![(2, 3, 100, 1)]);
}

fn amend_of_post_only_to_a_crossing_price_is_refused<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 1));
    h.run(with(limit(2, 2, Buy, 98, 1), |o| o.post_only = true));
    let events = h.run(Command::Amend { market: MARKET, order_id: 2, user: 2, price: 100, quantity: 1 });
    assert_eq!(events, vec![rejected(2, 2, RejectCode::PostOnlyWouldTake)]);
    assert_eq!(h.depth(Buy), vec![(98, 1)], "the order stays where it was");
}

fn self_trade_cancel_taker<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 2, Sell, 100, 1));
    h.run(limit(2, 1, Sell, 101, 1));
    h.run(limit(3, 2, Sell, 102, 1));
    let events = h.run(limit(4, 1, Buy, 102, 3));
    assert_eq!(trades(&events), vec![(1, 4, 100, 1)]);
    assert_eq!(events.last(), Some(&cancelled(4, 1, Buy, 2, SelfTrade)));
    assert_eq!(h.depth(Sell), vec![(101, 1), (102, 1)], "the own maker stays");
}

fn self_trade_cancel_maker<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 1));
    h.run(limit(2, 2, Sell, 101, 1));
    let events = h.run(with(limit(3, 1, Buy, 101, 2), |o| o.self_trade = SelfTradePrevention::CancelMaker));
    assert_eq!(events[1], cancelled(1, 1, Sell, 1, SelfTrade));
    assert_eq!(trades(&events), vec![(2, 3, 101, 1)]);
    assert_eq!(h.depth(Buy), vec![(101, 1)], "the taker keeps going and rests");
}

fn self_trade_cancel_both<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 1));
    h.run(limit(2, 2, Sell, 100, 1));
    let events = h.run(with(limit(3, 1, Buy, 100, 2), |o| o.self_trade = SelfTradePrevention::CancelBoth));
    assert_eq!(events, vec![accepted(3, 1, Buy, Some(100), 2), cancelled(1, 1, Sell, 1, SelfTrade), cancelled(3, 1, Buy, 2, SelfTrade)]);
    assert_eq!(h.depth(Sell), vec![(100, 1)]);
    assert_eq!(h.depth(Buy), vec![]);
}

fn fok_does_not_count_own_orders_as_liquidity<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 1));
    h.run(limit(2, 2, Sell, 100, 1));
    let fok = |stp| {
        with(limit(3, 1, Buy, 100, 2), move |o| {
            o.time_in_force = TimeInForce::Fok;
            o.self_trade = stp;
        })
    };
    let events = h.run(fok(SelfTradePrevention::CancelMaker));
    assert_eq!(events.last(), Some(&cancelled(3, 1, Buy, 2, FillOrKill)));
    assert_eq!(h.book().resting_count(), 2, "a killed FOK cancels no maker either");
}

fn limits_refuse_orders_that_could_not_rest<B: OrderBook>() {
    let mut h = Harness::<B>::with_limits(BookLimits { resting_orders_max: 4, orders_per_user_max: 2, price_levels_per_side_max: 2 });
    h.run(limit(1, 1, Buy, 90, 1));
    h.run(limit(2, 1, Buy, 91, 1));
    assert_eq!(h.run(limit(3, 1, Buy, 91, 1)), vec![rejected(3, 1, RejectCode::UserOrderLimit)]);
    assert_eq!(h.run(limit(4, 2, Buy, 92, 1)), vec![rejected(4, 2, RejectCode::PriceLevelLimit)]);
    assert_eq!(h.run(limit(5, 2, Buy, 91, 1)), vec![accepted(5, 2, Buy, Some(91), 1)], "an existing level is fine");
    h.run(limit(6, 3, Sell, 95, 1));
    assert_eq!(h.run(limit(7, 4, Sell, 96, 1)), vec![rejected(7, 4, RejectCode::BookFull)]);
    let moved = h.run(Command::Amend { market: MARKET, order_id: 1, user: 1, price: 89, quantity: 1 });
    assert_eq!(
        moved[0],
        Event::Amended { market: MARKET, order_id: 1, user: 1, price: 89, quantity: 1, remaining: 1 },
        "order 1 was alone at 90, so its level is freed"
    );
    let over = h.run(Command::Amend { market: MARKET, order_id: 2, user: 1, price: 88, quantity: 1 });
    assert_eq!(over, vec![rejected(2, 1, RejectCode::PriceLevelLimit)]);
    assert_eq!(h.book().resting_count(), 4);
}

fn ioc_is_allowed_when_the_book_is_full<B: OrderBook>() {
    let mut h = Harness::<B>::with_limits(BookLimits { resting_orders_max: 1, orders_per_user_max: 1, price_levels_per_side_max: 1 });
    h.run(limit(1, 1, Sell, 100, 1));
    let events = h.run(with(limit(2, 2, Buy, 100, 1), |o| o.time_in_force = TimeInForce::Ioc));
    assert_eq!(trades(&events), vec![(1, 2, 100, 1)]);
}

fn fees_are_exact_and_round_up_once_per_order<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    // Notional 100 x 3 x 10 = 3000: maker 0.1% = 3, taker 0.2% = 6, exact.
    h.run(limit(1, 1, Sell, 100, 3));
    let f = fills(&h.run(limit(2, 2, Buy, 100, 3)))[0];
    assert_eq!((f.notional, f.maker_fee, f.taker_fee), (3_000, 3, 6));
    // Ten fills of notional 1 x 1 x 10 = 10 each: exact fees 0.01 and 0.02 per fill.
    // Rounded per fill they would be 10 and 10; cumulatively each order pays ceil(100 x rate) = 1.
    for id in 10..20 {
        h.run(limit(id, 3, Sell, 1, 1));
    }
    let events = h.run(limit(30, 4, Buy, 1, 10));
    let taker_total: u128 = fills(&events).iter().map(|f| f.taker_fee).sum();
    assert_eq!(taker_total, 1);
    // One maker, filled in ten pieces.
    h.run(limit(40, 5, Sell, 1, 10));
    let mut maker_total = 0;
    for id in 41..51 {
        maker_total += fills(&h.run(limit(id, 6, Buy, 1, 1)))[0].maker_fee;
    }
    assert_eq!(maker_total, 1);
}

fn notionals_between_minor_units_round_up_for_the_buyer_and_down_for_the_seller<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    // A tick on a lot is 0.01 of a minor unit (BTC-USD at a 0.01 tick, a 0.0001 lot, in cents).
    let fine = MarketSpec { id: 2, quote_units_per_tick_lot: 1, tick_lot_scale: 2, ..spec() };
    assert_eq!(h.run(Command::AddMarket(fine)), vec![Event::MarketAdded { market: 2 }]);
    let place = |id, user, side, price, quantity| Command::Place(NewOrder { market: 2, ..order(id, user, side, Some(price), quantity) });
    h.run(place(1, 1, Sell, 150, 3));
    // 150 x 3 = 4.50 units: the buyer pays 5, the seller receives 4; fees of 0.2% and 0.1% of 4.50, rounded up.
    let f = fills(&h.run(place(2, 2, Buy, 150, 3)))[0];
    assert_eq!((f.notional, f.notional_rounding, f.taker_fee, f.maker_fee), (5, 1, 1, 1));
    // 10 x 1 = 0.10 units: the buyer pays 1, the seller (the taker) receives nothing and so pays no fee.
    h.run(place(3, 3, Buy, 10, 1));
    let f = fills(&h.run(place(4, 4, Sell, 10, 1)))[0];
    assert_eq!((f.notional, f.notional_rounding, f.maker_fee, f.taker_fee), (1, 1, 1, 0));
    // A whole number of units does not round.
    h.run(place(5, 5, Sell, 200, 1));
    let f = fills(&h.run(place(6, 6, Buy, 200, 1)))[0];
    assert_eq!((f.notional, f.notional_rounding), (2, 0));
}

fn halted_market_refuses_orders_but_allows_cancels<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Buy, 90, 1));
    assert_eq!(h.run(Command::SetTrading { market: MARKET, trading: false }), vec![Event::TradingSet { market: MARKET, trading: false }]);
    assert_eq!(h.run(limit(2, 1, Buy, 91, 1)), vec![rejected(2, 1, RejectCode::MarketClosed)]);
    assert_eq!(h.run(Command::Amend { market: MARKET, order_id: 1, user: 1, price: 91, quantity: 1 }), vec![rejected(1, 1, RejectCode::MarketClosed)]);
    assert_eq!(h.run(Command::Cancel { market: MARKET, order_id: 1, user: 1 }), vec![cancelled(1, 1, Buy, 1, User)]);
    h.run(Command::SetTrading { market: MARKET, trading: true });
    assert_eq!(h.run(limit(3, 1, Buy, 91, 1)), vec![accepted(3, 1, Buy, Some(91), 1)]);
}

fn stop(order: NewOrder, direction: TriggerDirection, price: PriceTicks) -> Command {
    Command::PlaceStop(ArmedStop { order, trigger: Trigger { source: TriggerSource::LastTrade, direction, price } })
}

fn stop_events(events: &[Event]) -> Vec<(OrderId, PriceTicks)> {
    events.iter().filter_map(|e| if let Event::StopTriggered { order_id, price, .. } = e { Some((*order_id, *price)) } else { None }).collect()
}

fn stops_fire_on_the_last_trade_in_order_and_survive_a_snapshot<B: OrderBook>() {
    use TriggerDirection::*;
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Buy, 97, 2));
    h.run(limit(2, 1, Buy, 95, 2));
    h.run(limit(3, 1, Buy, 94, 5));
    // A stop-loss market sell at 96 and a stop-limit sell at 95 (limit 94), armed in that order.
    let market_sell = NewOrder { kind: OrderKind::Market, time_in_force: TimeInForce::Ioc, ..order(10, 2, Sell, None, 2) };
    assert_eq!(h.run(stop(market_sell, AtOrBelow, 96)), vec![Event::StopArmed { market: MARKET, order_id: 10, user: 2 }]);
    assert_eq!(h.run(stop(order(11, 3, Sell, Some(94), 1), AtOrBelow, 95)), vec![Event::StopArmed { market: MARKET, order_id: 11, user: 3 }]);
    // A take-profit sell far above: it must not fire on the way down.
    h.run(stop(order(12, 3, Sell, Some(120), 1), AtOrAbove, 110));
    let restored = Engine::<B>::restore(*h.engine.limits(), &h.engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash(), "armed stops survive a snapshot");
    assert_eq!(restored.armed_stops(MARKET).len(), 3);
    // A trade at 97 fires nothing.
    let events = h.run(limit(4, 4, Sell, 97, 1));
    assert_eq!(stop_events(&events), vec![]);
    // The next at 97 then 95 fires the market sell, which takes 95's rest
    // and 94; its trade at 94 fires the stop-limit, which takes 94 too.
    let events = h.run(limit(5, 4, Sell, 95, 2));
    assert_eq!(stop_events(&events), vec![(10, 95), (11, 94)]);
    assert_eq!(trades(&events), vec![(1, 5, 97, 1), (2, 5, 95, 1), (2, 10, 95, 1), (3, 10, 94, 1), (3, 11, 94, 1)]);
    assert_eq!(h.engine.armed_stops(MARKET).len(), 1, "the take-profit waits");
    // The restored engine fires the same way.
    let mut restored = restored;
    let mut replayed = Vec::new();
    for command in [limit(4, 4, Sell, 97, 1), limit(5, 4, Sell, 95, 2)] {
        replayed.clear();
        restored.execute(&command, &mut replayed);
    }
    assert_eq!(replayed, events);
    assert_eq!(restored.state_hash(), h.engine.state_hash());
}

fn stops_are_refused_when_they_would_fire_now_and_cancel_whole<B: OrderBook>() {
    use TriggerDirection::*;
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Buy, 100, 1));
    // No trade yet: nothing to measure from, so any trigger arms.
    assert_eq!(h.run(stop(order(2, 2, Buy, Some(110), 1), AtOrAbove, 90)), vec![Event::StopArmed { market: MARKET, order_id: 2, user: 2 }]);
    // The trade at 100 fires it; its buy at 110 then rests.
    assert_eq!(stop_events(&h.run(limit(3, 3, Sell, 100, 1))), vec![(2, 100)]);
    assert_eq!(h.engine.armed_stops(MARKET), vec![]);
    assert_eq!(h.depth(Buy), vec![(110, 1)]);
    assert_eq!(stop_events(&h.run(limit(4, 3, Sell, 120, 1))), vec![], "resting moves no price: nothing fires");
    assert_eq!(h.run(stop(order(5, 2, Sell, Some(90), 1), AtOrBelow, 100)), vec![rejected(5, 2, RejectCode::WouldTriggerNow)]);
    assert_eq!(h.run(stop(order(6, 2, Sell, Some(1), 1), AtOrAbove, 0)), vec![rejected(6, 2, RejectCode::InvalidPrice)]);
    assert_eq!(h.run(stop(order(4, 2, Sell, Some(1), 1), AtOrBelow, 50)), vec![rejected(4, 2, RejectCode::DuplicateOrderId)], "id 4 rests");
    h.run(stop(order(7, 2, Sell, Some(90), 3), AtOrBelow, 95));
    h.run(stop(order(8, 2, Sell, Some(90), 4), AtOrBelow, 94));
    assert_eq!(h.run(limit(7, 5, Buy, 90, 1)), vec![rejected(7, 5, RejectCode::DuplicateOrderId)], "id 7 is an armed stop");
    assert_eq!(h.run(Command::Cancel { market: MARKET, order_id: 7, user: 5 }), vec![rejected(7, 5, RejectCode::UnknownOrder)], "only the owner's");
    assert_eq!(h.run(Command::Cancel { market: MARKET, order_id: 7, user: 2 }), vec![cancelled(7, 2, Sell, 3, User)]);
    // Cancel-all: the resting orders first (the fired stop rests at 110), then the armed stops.
    assert_eq!(h.run(Command::CancelAll { market: MARKET, user: 2 }), vec![cancelled(2, 2, Buy, 1, User), cancelled(8, 2, Sell, 4, User)]);
    assert_eq!(h.engine.armed_stops(MARKET), vec![]);
}

fn mark_stop(order: NewOrder, direction: TriggerDirection, price: PriceTicks) -> Command {
    Command::PlaceStop(ArmedStop { order, trigger: Trigger { source: TriggerSource::Mark, direction, price } })
}

fn set_mark(price: PriceTicks) -> Command {
    Command::SetMark { market: MARKET, price }
}

fn stops_on_the_mark_fire_when_the_mark_reaches_them_and_only_then<B: OrderBook>() {
    use TriggerDirection::*;
    let mut h = Harness::<B>::new();
    let armed = |order_id, user| Event::StopArmed { market: MARKET, order_id, user };
    let mark_set = |price| Event::MarkSet { market: MARKET, price };
    h.run(limit(1, 1, Buy, 97, 3));
    h.run(limit(2, 1, Buy, 96, 1));
    h.run(limit(3, 1, Buy, 90, 5));
    // A stop-loss market sell of 3 on the mark at 96, and a stop-limit sell
    // of 1 (limit 90) on the last trade at 96.
    let market_sell = NewOrder { kind: OrderKind::Market, time_in_force: TimeInForce::Ioc, ..order(10, 2, Sell, None, 3) };
    assert_eq!(h.run(mark_stop(market_sell, AtOrBelow, 96)), vec![armed(10, 2)]);
    assert_eq!(h.run(stop(order(11, 3, Sell, Some(90), 1), AtOrBelow, 96)), vec![armed(11, 3)]);
    assert_eq!(h.run(set_mark(98)), vec![mark_set(98)], "the mark above the trigger fires nothing");
    // A trade moves the last price, never the mark.
    assert_eq!(stop_events(&h.run(limit(4, 4, Sell, 97, 1))), vec![]);
    // The mark at 96 fires the mark stop: it sells 2 at 97 and 1 at 96, and
    // that trade at 96 fires the stop on the last trade, which sells at 90.
    let events = h.run(set_mark(96));
    assert_eq!(stop_events(&events), vec![(10, 96), (11, 96)]);
    assert_eq!(trades(&events), vec![(1, 10, 97, 2), (2, 10, 96, 1), (3, 11, 90, 1)]);
    assert_eq!(events.last(), Some(&mark_set(96)), "MarkSet closes the command's events");
    // Each stop is measured against its own price: the mark is 96, the last trade 90.
    assert_eq!(h.run(mark_stop(order(12, 2, Buy, Some(120), 1), AtOrAbove, 96)), vec![rejected(12, 2, RejectCode::WouldTriggerNow)]);
    assert_eq!(h.run(stop(order(12, 2, Buy, Some(120), 1), AtOrAbove, 96)), vec![armed(12, 2)]);
    assert_eq!(h.run(mark_stop(order(13, 2, Buy, Some(120), 1), AtOrBelow, 95)), vec![armed(13, 2)]);
    assert_eq!(
        h.run(mark_stop(order(12, 5, Buy, Some(120), 1), AtOrBelow, 95)),
        vec![rejected(12, 5, RejectCode::DuplicateOrderId)],
        "id 12 is armed on the last trade"
    );
    // The mark and both kinds of stop survive a snapshot, and fire the same after it.
    let mut restored = Engine::<B>::restore(*h.engine.limits(), &h.engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    assert_eq!(restored.armed_stops(MARKET).len(), 2);
    let events = h.run(set_mark(95));
    assert_eq!(stop_events(&events), vec![(13, 95)]);
    let mut replayed = Vec::new();
    restored.execute(&set_mark(95), &mut replayed);
    assert_eq!(replayed, events);
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    // A halted market keeps its stops: the mark is kept and fires on resuming.
    h.run(mark_stop(order(15, 2, Buy, Some(120), 1), AtOrBelow, 93));
    h.run(Command::SetTrading { market: MARKET, trading: false });
    assert_eq!(h.run(set_mark(93)), vec![mark_set(93)]);
    assert_eq!(h.engine.armed_stops(MARKET).len(), 2, "12 on the last trade, 15 on the mark");
    let halted = Engine::<B>::restore(*h.engine.limits(), &h.engine.snapshot()).unwrap();
    assert_eq!(halted.state_hash(), h.engine.state_hash(), "a halted market's snapshot keeps a stop its mark reaches");
    let events = h.run(Command::SetTrading { market: MARKET, trading: true });
    assert_eq!(events[0], Event::TradingSet { market: MARKET, trading: true });
    assert_eq!(stop_events(&events), vec![(15, 93)]);
    // A cancel reaches a stop on the mark as any other.
    h.run(mark_stop(order(14, 2, Buy, Some(120), 2), AtOrBelow, 90));
    assert_eq!(h.run(Command::Cancel { market: MARKET, order_id: 14, user: 2 }), vec![cancelled(14, 2, Buy, 2, User)]);
    // A mark off the market's prices changes nothing.
    assert_eq!(h.run(set_mark(0)), vec![Event::MarketRejected { market: MARKET, code: RejectCode::InvalidPrice }]);
    assert_eq!(h.run(Command::SetMark { market: MARKET + 1, price: 95 }), vec![Event::MarketRejected { market: MARKET + 1, code: RejectCode::UnknownMarket }]);
    assert_eq!(h.engine.snapshot().markets[0].mark_price, Some(93));
    // A snapshot whose trading market keeps a stop its mark fires is damaged.
    let mut snapshot = h.engine.snapshot();
    let reached = ArmedStop { order: order(16, 2, Buy, Some(120), 1), trigger: Trigger { source: TriggerSource::Mark, direction: AtOrAbove, price: 90 } };
    snapshot.markets[0].stops.push(reached);
    assert!(Engine::<B>::restore(*h.engine.limits(), &snapshot).is_err());
    // So is one that lists a stop on the mark before one on the last trade.
    let mut snapshot = h.engine.snapshot();
    let on_mark = ArmedStop { trigger: Trigger { source: TriggerSource::Mark, direction: AtOrBelow, price: 50 }, ..reached };
    snapshot.markets[0].stops.insert(0, on_mark);
    assert!(!snapshot.markets[0].stops[1..].iter().all(|stop| stop.trigger.source == TriggerSource::Mark));
    assert!(Engine::<B>::restore(*h.engine.limits(), &snapshot).is_err());
}

/// A sell OCO list: a post-only limit sell at `limit_price` (id `limit_id`)
/// and a stop-limit sell at `stop_price` firing at or below `trigger` (id
/// `limit_id + 1`), for `quantity` lots of `user`'s.
fn oco(limit_id: OrderId, user: UserId, limit_price: PriceTicks, stop_price: PriceTicks, trigger: PriceTicks, quantity: QuantityLots) -> Command {
    Command::PlaceOco(OcoList {
        limit: NewOrder { post_only: true, ..order(limit_id, user, Sell, Some(limit_price), quantity) },
        stop_order_id: limit_id + 1,
        stop_kind: OrderKind::Limit,
        stop_price: Some(stop_price),
        trigger: Trigger { source: TriggerSource::LastTrade, direction: TriggerDirection::AtOrBelow, price: trigger },
    })
}

fn an_oco_lists_fill_cancels_its_stop_and_its_stop_firing_cancels_the_limit<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Buy, 100, 1));
    h.run(limit(2, 2, Sell, 100, 1));
    // Sell 5 at 110, or stop out at 95 (limit 94).
    assert_eq!(h.run(oco(10, 3, 110, 94, 95, 5)), vec![accepted(10, 3, Sell, Some(110), 5), Event::StopArmed { market: MARKET, order_id: 11, user: 3 }]);
    // One lot of the limit sells: the stop is cancelled with it, the rest rests.
    let events = h.run(limit(4, 4, Buy, 110, 1));
    assert_eq!(trades(&events), vec![(10, 4, 110, 1)]);
    assert_eq!(events.last(), Some(&cancelled(11, 3, Sell, 5, OcoOther)), "{events:?}");
    assert_eq!(h.engine.armed_stops(MARKET), vec![]);
    assert_eq!(h.depth(Sell), vec![(110, 4)]);
    h.run(Command::Cancel { market: MARKET, order_id: 10, user: 3 });
    // Another list whose stop fires: its limit order leaves before the stop's order trades.
    h.run(oco(20, 3, 110, 94, 95, 2));
    h.run(limit(5, 1, Buy, 95, 3));
    let events = h.run(limit(6, 2, Sell, 95, 1));
    let fired = events.iter().position(|e| matches!(e, Event::StopTriggered { order_id: 21, price: 95, .. })).expect("the trade at 95 fires it");
    assert_eq!(events[fired + 1], cancelled(20, 3, Sell, 2, OcoOther), "{events:?}");
    assert_eq!(trades(&events[fired..]), vec![(5, 21, 95, 2)], "the stop's limit sell at 94 takes the bid at 95");
    assert_eq!(h.depth(Sell), vec![], "neither order of the list rests");
}

fn an_oco_list_is_cancelled_or_refused_whole_and_survives_a_snapshot<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Buy, 100, 1));
    h.run(limit(2, 2, Sell, 100, 1));
    h.run(limit(3, 1, Buy, 105, 1));
    // A limit that would take is refused, and the stop with it.
    assert_eq!(h.run(oco(10, 3, 104, 94, 95, 5)), vec![rejected(10, 3, RejectCode::PostOnlyWouldTake), rejected(11, 3, RejectCode::PostOnlyWouldTake)]);
    // A stop the last trade already fires is refused, and the limit with it: nothing rests.
    assert_eq!(h.run(oco(12, 3, 110, 99, 100, 5)), vec![rejected(12, 3, RejectCode::WouldTriggerNow), rejected(13, 3, RejectCode::WouldTriggerNow)]);
    assert_eq!(h.depth(Sell), vec![]);
    let not_post_only = match oco(14, 3, 110, 94, 95, 5) {
        Command::PlaceOco(list) => Command::PlaceOco(OcoList { limit: NewOrder { post_only: false, ..list.limit }, ..list }),
        _ => unreachable!("an OCO list"),
    };
    assert_eq!(h.run(not_post_only), vec![rejected(14, 3, RejectCode::InvalidOrder), rejected(15, 3, RejectCode::InvalidOrder)]);
    h.run(oco(20, 3, 110, 94, 95, 5));
    h.run(oco(30, 3, 120, 89, 90, 5));
    let amend = Command::Amend { market: MARKET, order_id: 20, user: 3, price: 111, quantity: 5 };
    assert_eq!(h.run(amend), vec![rejected(20, 3, RejectCode::InvalidOrder)], "a list's limit order keeps its terms");
    let restored = Engine::<B>::restore(*h.engine.limits(), &h.engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash(), "lists survive a snapshot");
    assert_eq!(restored.snapshot().markets[0].lists, vec![OcoLink { limit: 20, stop: 21 }, OcoLink { limit: 30, stop: 31 }]);
    // Cancelling the stop cancels the limit order; cancelling the limit order cancels the stop.
    assert_eq!(h.run(Command::Cancel { market: MARKET, order_id: 21, user: 3 }), vec![cancelled(21, 3, Sell, 5, User), cancelled(20, 3, Sell, 5, OcoOther)]);
    assert_eq!(h.run(Command::Cancel { market: MARKET, order_id: 30, user: 3 }), vec![cancelled(30, 3, Sell, 5, User), cancelled(31, 3, Sell, 5, OcoOther)]);
    assert_eq!((h.depth(Sell), h.engine.armed_stops(MARKET)), (vec![], vec![]));
    assert_eq!(h.engine.snapshot().markets[0].lists, vec![]);
    // A snapshot naming a list whose orders are not there is refused.
    let mut damaged = restored.snapshot();
    damaged.markets[0].lists[0].stop = 99;
    assert!(Engine::<B>::restore(*h.engine.limits(), &damaged).is_err());
}

fn price_bands_measure_from_the_last_trade_or_the_best_opposite_price<B: OrderBook>() {
    let mut h = Harness::<B>::with_band(100_000);
    let band = |order_id, user| vec![rejected(order_id, user, RejectCode::PriceOutOfBand)];
    // Nothing to measure from: any price.
    assert_eq!(h.run(limit(1, 1, Buy, 500, 1)), vec![accepted(1, 1, Buy, Some(500), 1)]);
    // No trade yet: a sell is measured from the best bid, 10% of 500 either way.
    assert_eq!(h.run(limit(2, 2, Sell, 449, 1)), band(2, 2));
    assert_eq!(trades(&h.run(limit(3, 2, Sell, 450, 1))), vec![(1, 3, 500, 1)]);
    // From now on from the last trade, 500; the edge is in, one tick past it out.
    assert_eq!(h.run(limit(4, 1, Buy, 551, 1)), band(4, 1));
    assert_eq!(h.run(limit(5, 1, Buy, 550, 1)), vec![accepted(5, 1, Buy, Some(550), 1)]);
    assert_eq!(h.run(limit(6, 2, Sell, 449, 1)), band(6, 2));
    assert_eq!(h.depth(Sell), vec![], "nothing refused rests");
    // An amend's new price is banded too; a refused one changes nothing.
    assert_eq!(h.run(Command::Amend { market: MARKET, order_id: 5, user: 1, price: 551, quantity: 1 }), band(5, 1));
    assert_eq!(h.depth(Buy), vec![(550, 1)]);
    let amended = h.run(Command::Amend { market: MARKET, order_id: 5, user: 1, price: 520, quantity: 1 });
    assert_eq!(amended[0], Event::Amended { market: MARKET, order_id: 5, user: 1, price: 520, quantity: 1, remaining: 1 });
    // A market order is not banded (its protection price is a bound, not a price).
    let swept = h.run(Command::Place(NewOrder { kind: OrderKind::Market, ..order(7, 2, Sell, Some(1), 1) }));
    assert_eq!(trades(&swept), vec![(5, 7, 520, 1)]);
    // The last trade, 520, is kept across a snapshot: 52 ticks is the band.
    let restored = Engine::<B>::restore(*h.engine.limits(), &h.engine.snapshot()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    h.engine = restored;
    assert_eq!(h.run(limit(8, 1, Buy, 573, 1)), band(8, 1));
    assert_eq!(h.run(limit(9, 1, Buy, 572, 1)), vec![accepted(9, 1, Buy, Some(572), 1)]);
    assert_eq!(h.run(limit(10, 2, Sell, 467, 1)), band(10, 2));
}

fn bad_orders_are_rejected_with_codes<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    assert_eq!(h.run(limit(1, 1, Buy, 0, 1)), vec![rejected(1, 1, RejectCode::InvalidPrice)]);
    assert_eq!(h.run(limit(1, 1, Buy, 1_000_001, 1)), vec![rejected(1, 1, RejectCode::InvalidPrice)]);
    assert_eq!(h.run(limit(1, 1, Buy, 10, 0)), vec![rejected(1, 1, RejectCode::InvalidQuantity)]);
    assert_eq!(h.run(limit(1, 1, Buy, 10, 1_000_001)), vec![rejected(1, 1, RejectCode::InvalidQuantity)]);
    assert_eq!(h.run(Command::Place(order(1, 1, Buy, None, 1))), vec![rejected(1, 1, RejectCode::InvalidPrice)]);
    let post_only_ioc = with(limit(1, 1, Buy, 10, 1), |o| {
        o.post_only = true;
        o.time_in_force = TimeInForce::Ioc;
    });
    assert_eq!(h.run(post_only_ioc), vec![rejected(1, 1, RejectCode::InvalidOrder)]);
    assert_eq!(h.run(Command::Amend { market: MARKET, order_id: 1, user: 1, price: 10, quantity: 0 }), vec![rejected(1, 1, RejectCode::InvalidQuantity)]);
    assert_eq!(h.book().resting_count(), 0);
    let bad_spec = MarketSpec { id: 8, maker_fee_ppm: FEE_RATE_PPM_MAX + 1, ..spec() };
    assert_eq!(h.run(Command::AddMarket(bad_spec)), vec![Event::MarketRejected { market: 8, code: RejectCode::InvalidMarketSpec }]);
    let too_fine = MarketSpec { id: 8, tick_lot_scale: TICK_LOT_SCALE_MAX + 1, ..spec() };
    assert_eq!(h.run(Command::AddMarket(too_fine)), vec![Event::MarketRejected { market: 8, code: RejectCode::InvalidMarketSpec }]);
    let too_wide = MarketSpec { id: 8, price_band_ppm: PRICE_BAND_PPM_MAX + 1, ..spec() };
    assert_eq!(h.run(Command::AddMarket(too_wide)), vec![Event::MarketRejected { market: 8, code: RejectCode::InvalidMarketSpec }]);
    let overflowing = MarketSpec { id: 8, price_ticks_max: u64::MAX, quantity_lots_max: u64::MAX, ..spec() };
    assert_eq!(h.run(Command::AddMarket(overflowing)), vec![Event::MarketRejected { market: 8, code: RejectCode::InvalidMarketSpec }]);
    assert_eq!(h.run(Command::AddMarket(spec())), vec![Event::MarketRejected { market: MARKET, code: RejectCode::MarketExists }]);
    let too_high = MarketSpec { id: 16, ..spec() };
    assert_eq!(h.run(Command::AddMarket(too_high)), vec![Event::MarketRejected { market: 16, code: RejectCode::MarketLimit }]);
}

fn duplicate_live_order_id_is_refused<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Buy, 90, 1));
    assert_eq!(h.run(limit(1, 2, Sell, 95, 1)), vec![rejected(1, 2, RejectCode::DuplicateOrderId)]);
    assert_eq!(h.depth(Sell), vec![]);
}

fn unknown_market_is_rejected<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    let events = h.run(Command::Place(NewOrder { market: 3, ..order(1, 1, Buy, Some(1), 1) }));
    assert_eq!(events, vec![Event::Rejected { market: 3, order_id: 1, user: 1, code: RejectCode::UnknownMarket }]);
    let events = h.run(Command::SetTrading { market: 3, trading: false });
    assert_eq!(events, vec![Event::MarketRejected { market: 3, code: RejectCode::UnknownMarket }]);
}

fn snapshot_restores_the_same_state<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Sell, 100, 5));
    h.run(limit(2, 2, Sell, 100, 5));
    h.run(limit(3, 3, Buy, 90, 5));
    h.run(limit(4, 4, Buy, 100, 2)); // order 1 is now partly filled as a maker
    h.run(Command::SetTrading { market: MARKET, trading: false });
    let snapshot = h.engine.snapshot();
    let bytes = encode_snapshot(&snapshot);
    let restored = Engine::<B>::restore(*h.engine.limits(), &decode_snapshot(&bytes).unwrap()).unwrap();
    assert_eq!(restored.state_hash(), h.engine.state_hash());
    assert_eq!(restored.is_trading(MARKET), Some(false));
    assert_eq!(snapshot.markets[0].orders[1].maker_filled, 2, "fee basis survives a snapshot");

    let mut reordered = snapshot.clone();
    reordered.markets[0].orders.swap(0, 1); // an ask before a bid
    assert!(Engine::<B>::restore(*h.engine.limits(), &reordered).is_err(), "a non-canonical snapshot is refused");
    let mut duplicated = snapshot.clone();
    duplicated.markets[0].orders[2].order_id = duplicated.markets[0].orders[1].order_id;
    assert!(Engine::<B>::restore(*h.engine.limits(), &duplicated).is_err(), "a repeated id is refused");
    assert!(decode_snapshot(&bytes[..bytes.len() - 3]).is_err());
}

fn depth_aggregates_levels<B: OrderBook>() {
    let mut h = Harness::<B>::new();
    h.run(limit(1, 1, Buy, 90, 1));
    h.run(limit(2, 2, Buy, 90, 2));
    h.run(limit(3, 2, Buy, 95, 4));
    h.run(limit(4, 2, Buy, 80, 4));
    let depth = h.book().depth(Buy, 2);
    assert_eq!(depth, vec![PriceLevel { price: 95, quantity: 4, orders: 1 }, PriceLevel { price: 90, quantity: 3, orders: 2 }]);
}
