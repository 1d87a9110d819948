//! The fast store against the reference store, under the one set of rules
//! (`lifecycle.rs`), on random command streams: every
//! event and the final state must be identical. After every command a model
//! built only from the events must agree with the books (no crossed book, every
//! order's open quantity accounted for, no self-trade), and a snapshot taken at
//! a random point and restored must reach the same state hash. Every stream
//! runs twice: through the daemon's fast store, and through one whose price
//! window spans 8 ticks, so that its moves and the levels below it are used
//! all the time (the streams' prices spread over about 20 ticks).

use std::collections::BTreeMap;

use matching_core::*;
use proptest::prelude::*;

const MARKETS: [MarketId; 2] = [0, 1];

fn limits() -> EngineLimits {
    // Small limits so that the streams hit them.
    EngineLimits { markets_max: 4, book: BookLimits { resting_orders_max: 120, orders_per_user_max: 40, price_levels_per_side_max: 12 } }
}

fn setup() -> Vec<Command> {
    MARKETS
        .iter()
        .map(|&id| {
            // Market 1's tick on a lot is 0.003 of a minor unit, so most
            // of its notionals fall between units and round.
            Command::AddMarket(MarketSpec {
                id,
                quote_units_per_tick_lot: 1 + id as u64 * 2,
                tick_lot_scale: 3 * id as u8,
                maker_fee_ppm: 250 * (id + 1),
                taker_fee_ppm: 750,
                price_ticks_max: 200,
                quantity_lots_max: 50,
                // Market 1 refuses prices over 20% from the last trade.
                price_band_ppm: if id == 1 { 200_000 } else { 0 },
            })
        })
        .collect()
}

/// A small deterministic generator, so that millions of commands cost no
/// shrinking machinery and every failure is reproduced by its seed.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

fn random_command(rng: &mut SplitMix) -> Command {
    let market = if rng.below(100) == 0 { 3 } else { MARKETS[rng.below(2) as usize] };
    let user = 1 + rng.below(6);
    let order_id = 1 + rng.below(400);
    // Prices cluster around 100 so that orders cross often; 0 and 201 are invalid.
    let price = (90 + rng.below(21)).min(200) * (rng.below(200) != 0) as u64 + 111 * (rng.below(300) == 0) as u64;
    let quantity = 1 + rng.below(20) + 40 * (rng.below(200) == 0) as u64;
    let side = if rng.below(2) == 0 { Side::Buy } else { Side::Sell };
    let self_trade = match rng.below(3) {
        0 => SelfTradePrevention::CancelTaker,
        1 => SelfTradePrevention::CancelMaker,
        _ => SelfTradePrevention::CancelBoth,
    };
    let order = |kind, time_in_force, post_only, price| {
        Command::Place(NewOrder { market, order_id, user, side, kind, time_in_force, post_only, price, quantity, self_trade })
    };
    match rng.below(100) {
        0..=34 => order(OrderKind::Limit, TimeInForce::Gtc, false, Some(price)),
        35..=40 => order(OrderKind::Limit, TimeInForce::Ioc, false, Some(price)),
        41..=45 => order(OrderKind::Limit, TimeInForce::Fok, false, Some(price)),
        46..=50 => order(OrderKind::Limit, TimeInForce::Gtc, true, Some(price)),
        51..=54 => order(OrderKind::Market, TimeInForce::Ioc, false, if rng.below(3) == 0 { None } else { Some(price) }),
        55 => order(OrderKind::Market, TimeInForce::Fok, rng.below(5) == 0, Some(price)),
        56..=71 => Command::Cancel { market, order_id, user },
        72..=73 => Command::CancelAll { market, user },
        74..=90 => Command::Amend { market, order_id, user, price, quantity },
        91..=97 => {
            // Stop-market, stop-limit and take-profit orders, either way;
            // one in three with a limit order as an OCO list.
            let direction = if rng.below(2) == 0 { TriggerDirection::AtOrAbove } else { TriggerDirection::AtOrBelow };
            // One in three watches the mark.
            let source = if rng.below(3) == 0 { TriggerSource::Mark } else { TriggerSource::LastTrade };
            let trigger = Trigger { source, direction, price: (90 + rng.below(21)) * (rng.below(100) != 0) as u64 };
            let order = match rng.below(3) {
                0 => order(OrderKind::Market, TimeInForce::Ioc, false, Some(price)),
                1 => order(OrderKind::Limit, TimeInForce::Gtc, false, Some(price)),
                _ => order(OrderKind::Limit, TimeInForce::Ioc, false, Some(price)),
            };
            let Command::Place(order) = order else { unreachable!("built as a place") };
            if rng.below(3) == 0 {
                let limit_price = (90 + rng.below(21)) * (rng.below(100) != 0) as u64;
                // Now and then not post-only, or the same id twice: refused whole.
                let post_only = rng.below(50) != 0;
                let limit = NewOrder {
                    order_id: 1 + rng.below(400),
                    time_in_force: TimeInForce::Gtc,
                    post_only,
                    price: Some(limit_price),
                    kind: OrderKind::Limit,
                    ..order
                };
                Command::PlaceOco(OcoList { limit, stop_order_id: order.order_id, stop_kind: order.kind, stop_price: order.price, trigger })
            } else {
                Command::PlaceStop(ArmedStop { order, trigger })
            }
        }
        98 => Command::SetMark { market, price: (90 + rng.below(21)) * (rng.below(100) != 0) as u64 },
        _ => Command::SetTrading { market, trading: rng.below(3) != 0 },
    }
}

/// What the events say each live order's open quantity is, and what each
/// limit buy has paid against the worst case its hold covers.
#[derive(Default)]
struct Model {
    open: BTreeMap<(MarketId, OrderId), QuantityLots>,
    /// Per live limit buy: what its fills cost it (notional and fee), and
    /// the hold the ledger takes for it (the rule restated from the spot
    /// product's `buy_hold`). An amend starts it anew at the new terms: the
    /// ledger resizes the hold to the new price and open quantity.
    paid: BTreeMap<(MarketId, OrderId), (u128, u128)>,
    /// Per live order: lots filled, and its side.
    filled: BTreeMap<(MarketId, OrderId), (QuantityLots, Side)>,
    /// Armed stops: the quantity each will place, and its trigger.
    armed: BTreeMap<(MarketId, OrderId), (QuantityLots, Trigger)>,
    /// The stop the command being applied asks to arm.
    pending_stop: Option<ArmedStop>,
    /// Each market's last trade price, from the fills.
    last_price: BTreeMap<MarketId, PriceTicks>,
    /// Each market's mark, from the MarkSet events.
    mark_price: BTreeMap<MarketId, PriceTicks>,
    /// The mark the command being applied sets.
    pending_mark: Option<(MarketId, PriceTicks)>,
    /// Markets halted, from the TradingSet events.
    halted: std::collections::BTreeSet<MarketId>,
    /// The OCO list the command being applied places.
    pending_list: Option<OcoList>,
    /// OCO lists placed and not yet settled, by market and limit order:
    /// whether the limit order has filled, and whether the stop fired.
    lists: BTreeMap<(MarketId, OrderId), (OcoLink, bool, bool)>,
}

/// The quote a limit buy of `quantity` at `price` is held for: the exact
/// notional plus less than a unit of rounding per lot, plus fees at the
/// higher rate rounded up, plus one unit of cumulative fee rounding.
fn hold(spec: &MarketSpec, price: PriceTicks, quantity: QuantityLots) -> u128 {
    let (exact, divisor) = (spec.notional_exact(price, quantity), spec.notional_divisor());
    (exact + quantity as u128 * (divisor - 1)) / divisor + fee_ceil(spec.maker_fee_ppm.max(spec.taker_fee_ppm), divisor, exact) + 1
}

fn spec_of(market: MarketId) -> MarketSpec {
    setup()
        .into_iter()
        .find_map(|command| match command {
            Command::AddMarket(spec) if spec.id == market => Some(spec),
            _ => None,
        })
        .expect("a fill in a market of the setup")
}

impl Model {
    /// The price a stop of `source` watches in `market`.
    fn watched(&self, market: MarketId, source: TriggerSource) -> Option<PriceTicks> {
        match source {
            TriggerSource::LastTrade => self.last_price.get(&market).copied(),
            TriggerSource::Mark => self.mark_price.get(&market).copied(),
        }
    }

    fn apply(&mut self, events: &[Event]) {
        for event in events {
            match *event {
                Event::Accepted { market, order_id, quantity, side, price, .. } => {
                    assert!(self.open.insert((market, order_id), quantity).is_none(), "accepted a live id: {event:?}");
                    self.filled.insert((market, order_id), (0, side));
                    if let (Side::Buy, Some(price)) = (side, price) {
                        self.paid.insert((market, order_id), (0, hold(&spec_of(market), price, quantity)));
                    }
                }
                Event::Amended { market, order_id, price, quantity, remaining, .. } => {
                    *self.open.get_mut(&(market, order_id)).expect("amended a live order") = remaining;
                    let (filled, side) = self.filled[&(market, order_id)];
                    assert_eq!(quantity, filled + remaining, "an amend's open quantity is its total less its fills: {event:?}");
                    assert!(remaining > 0, "an amend to at most the filled quantity cancels: {event:?}");
                    if side == Side::Buy {
                        self.paid.insert((market, order_id), (0, hold(&spec_of(market), price, remaining)));
                    }
                }
                Event::Fill(f) => {
                    assert_ne!(f.maker_user, f.taker_user, "a self-trade produced a fill");
                    for id in [f.maker_order, f.taker_order] {
                        if let Some((_, limit_filled, _)) = self.lists.get_mut(&(f.market, id)) {
                            *limit_filled = true;
                        }
                    }
                    self.last_price.insert(f.market, f.price);
                    for id in [f.maker_order, f.taker_order] {
                        let open = self.open.get_mut(&(f.market, id)).expect("fill of a live order");
                        *open = open.checked_sub(f.quantity).expect("filled more than was open");
                        self.filled.get_mut(&(f.market, id)).expect("fill of a live order").0 += f.quantity;
                    }
                    self.check_money(&f);
                }
                Event::Cancelled { market, order_id, remaining, .. } if self.armed.contains_key(&(market, order_id)) => {
                    let (quantity, _) = self.armed.remove(&(market, order_id)).expect("checked");
                    assert_eq!(quantity, remaining, "a stop cancelled before firing cancels all of it");
                }
                Event::Cancelled { market, order_id, remaining, .. } => {
                    let open = self.open.remove(&(market, order_id)).expect("cancelled a live order");
                    assert_eq!(open, remaining, "cancelled quantity differs from what was open");
                    self.paid.remove(&(market, order_id));
                    self.filled.remove(&(market, order_id));
                }
                Event::Done { market, order_id, .. } => {
                    let open = self.open.remove(&(market, order_id)).expect("done for a live order");
                    assert_eq!(open, 0, "done with quantity still open");
                    self.paid.remove(&(market, order_id));
                    self.filled.remove(&(market, order_id));
                }
                Event::StopArmed { market, order_id, .. } => {
                    let stop = self.pending_stop.take().filter(|stop| (stop.order.market, stop.order.order_id) == (market, order_id));
                    let stop = stop.expect("armed a stop that was not asked for");
                    assert!(!self.open.contains_key(&(market, order_id)), "armed a stop with a live order's id: {event:?}");
                    assert!(
                        self.watched(market, stop.trigger.source).is_none_or(|price| !stop.trigger.fires_at(price)),
                        "armed a stop its market already fires: {event:?}"
                    );
                    assert!(self.armed.insert((market, order_id), (stop.order.quantity, stop.trigger)).is_none(), "armed a live stop's id: {event:?}");
                }
                Event::StopTriggered { market, order_id, price, .. } => {
                    let (_, trigger) = self.armed.remove(&(market, order_id)).expect("fired a stop that was not armed");
                    if let Some((_, (_, _, fired))) = self.lists.iter_mut().find(|((in_market, _), (link, ..))| *in_market == market && link.stop == order_id) {
                        *fired = true;
                    }
                    match trigger.source {
                        TriggerSource::LastTrade => {
                            assert_eq!(self.last_price.get(&market), Some(&price), "a stop fired at other than the last trade price: {event:?}")
                        }
                        TriggerSource::Mark => {
                            // The mark being set, or on resuming trading the one kept.
                            let mark = self.pending_mark.filter(|(at, _)| *at == market).map(|(_, mark)| mark).or(self.mark_price.get(&market).copied());
                            assert_eq!(mark, Some(price), "a stop fired at other than the mark: {event:?}");
                            assert!(!self.halted.contains(&market), "a stop fired on a halted market: {event:?}");
                        }
                    }
                    assert!(trigger.fires_at(price), "a stop fired before the price reached its trigger: {event:?}");
                }
                Event::MarkSet { market, price } => {
                    assert_eq!(self.pending_mark, Some((market, price)), "a mark set that was not asked for: {event:?}");
                    self.mark_price.insert(market, price);
                }
                Event::TradingSet { market, trading } => {
                    if trading {
                        self.halted.remove(&market);
                    } else {
                        self.halted.insert(market);
                    }
                }
                Event::Rejected { .. } | Event::MarketAdded { .. } | Event::MarketRejected { .. } => {}
            }
        }
    }

    /// After a command: an OCO list it placed is linked when both its
    /// orders went live; of every list, at most one order ever trades, a
    /// stop still armed has its limit order resting untouched, and a limit
    /// order gone (filled or cancelled) took its stop with it.
    fn settle_lists(&mut self, events: &[Event]) {
        if let Some(list) = self.pending_list.take() {
            let (market, limit, stop) = (list.limit.market, list.limit.order_id, list.stop_order_id);
            let resting = events.iter().any(|e| matches!(e, Event::Accepted { order_id, .. } if *order_id == limit));
            let armed = events.iter().any(|e| matches!(e, Event::StopArmed { order_id, .. } if *order_id == stop));
            assert_eq!(resting, armed, "an OCO list placed one of its orders only: {list:?}");
            if resting {
                self.lists.insert((market, limit), (OcoLink { limit, stop }, false, false));
            }
        }
        self.lists.retain(|&(market, limit), &mut (link, limit_filled, stop_fired)| {
            assert!(!(limit_filled && stop_fired), "both orders of OCO list {link:?} traded");
            let stop_armed = self.armed.contains_key(&(market, link.stop));
            let limit_open = self.open.contains_key(&(market, limit));
            if stop_armed {
                assert!(limit_open && !limit_filled, "OCO list {link:?} keeps its stop armed after its limit order filled or ended: {events:?}");
            }
            if stop_fired {
                assert!(!limit_open, "OCO list {link:?} keeps its limit order after its stop fired: {events:?}");
            }
            stop_armed
        });
    }

    /// The buyer pays the notional rounded up, the seller receives it
    /// rounded down and pays a fee no larger than that, and no limit buy
    /// pays more than its hold.
    fn check_money(&mut self, f: &Fill) {
        let spec = spec_of(f.market);
        assert_eq!(f.notional, spec.notional_exact(f.price, f.quantity).div_ceil(spec.notional_divisor()), "{f:?}");
        assert_eq!(f.notional - f.notional_rounding, spec.notional_exact(f.price, f.quantity) / spec.notional_divisor(), "{f:?}");
        let (buyer_order, buyer_fee, seller_fee) = match f.taker_side {
            Side::Buy => (f.taker_order, f.taker_fee, f.maker_fee),
            Side::Sell => (f.maker_order, f.maker_fee, f.taker_fee),
        };
        assert!(seller_fee <= f.notional - f.notional_rounding, "the seller's fee exceeds its proceeds: {f:?}");
        if let Some((paid, held)) = self.paid.get_mut(&(f.market, buyer_order)) {
            *paid += f.notional + buyer_fee;
            assert!(*paid <= *held, "buy order {buyer_order} paid {paid}, more than its hold of {held}: {f:?}");
        }
    }

    /// Everything still open must be resting on the book with exactly that quantity, and nothing else.
    fn check_against<B: OrderBook>(&self, engine: &Engine<B>) {
        let mut on_books = BTreeMap::new();
        for market in engine.market_ids() {
            let book = engine.book(market).unwrap();
            let orders = book.resting_orders();
            assert_eq!(orders.len(), book.resting_count());
            for side in [Side::Buy, Side::Sell] {
                let depth = book.depth(side, usize::MAX);
                let level_total: u64 = depth.iter().map(|l| l.quantity).sum();
                let order_total: u64 = orders.iter().filter(|o| o.side == side).map(|o| o.remaining).sum();
                assert_eq!(level_total, order_total, "level totals differ from their orders");
            }
            let best_bid = book.depth(Side::Buy, 1).first().map(|l| l.price);
            let best_ask = book.depth(Side::Sell, 1).first().map(|l| l.price);
            if let (Some(bid), Some(ask)) = (best_bid, best_ask) {
                assert!(bid < ask, "crossed book in market {market}: bid {bid} >= ask {ask}");
            }
            on_books.extend(orders.iter().map(|o| ((market, o.order_id), o.remaining)));
        }
        assert_eq!(on_books, self.open, "the events and the books disagree on what is open");
        let mut armed = BTreeMap::new();
        for market in engine.market_ids() {
            let stops = engine.armed_stops(market);
            // Nothing stays armed that the price it watches fires, but on a
            // halted market, which keeps its stops.
            for stop in stops.iter().filter(|_| !self.halted.contains(&market)) {
                if let Some(price) = self.watched(market, stop.trigger.source) {
                    assert!(!stop.trigger.fires_at(price), "market {market} keeps a stop {price} fires: {stop:?}");
                }
            }
            armed.extend(stops.iter().map(|stop| ((market, stop.order.order_id), (stop.order.quantity, stop.trigger))));
        }
        assert_eq!(armed, self.armed, "the events and the engine disagree on the armed stops");
        let lists: BTreeMap<(MarketId, OrderId), OcoLink> =
            engine.snapshot().markets.iter().flat_map(|m| m.lists.iter().map(move |link| ((m.spec.id, link.limit), *link))).collect();
        let linked: BTreeMap<(MarketId, OrderId), OcoLink> = self.lists.iter().map(|(key, (link, ..))| (*key, *link)).collect();
        assert_eq!(lists, linked, "the events and the engine disagree on the OCO lists");
    }
}

/// The fast store with a price window of 8 ticks.
type NarrowBook = Book<FastStore<8>>;

fn compare(commands: &[Command], snapshot_at: usize) -> usize {
    compare_with::<FastBook>(commands, snapshot_at);
    compare_with::<NarrowBook>(commands, snapshot_at)
}

/// Feeds both engines the stream; returns the number of commands compared.
fn compare_with<Fast: OrderBook>(commands: &[Command], snapshot_at: usize) -> usize {
    let mut fast = Engine::<Fast>::new(limits());
    let mut reference = ReferenceEngine::new(limits());
    let mut model = Model::default();
    let mut restored: Option<Engine<Fast>> = None;
    let (mut fast_events, mut reference_events, mut restored_events) = (Vec::new(), Vec::new(), Vec::new());
    for (i, command) in setup().iter().chain(commands).enumerate() {
        if i == snapshot_at {
            let bytes = encode_snapshot(&fast.snapshot());
            restored = Some(Engine::<Fast>::restore(limits(), &decode_snapshot(&bytes).unwrap()).unwrap());
        }
        fast_events.clear();
        reference_events.clear();
        fast.execute(command, &mut fast_events);
        reference.execute(command, &mut reference_events);
        assert_eq!(fast_events, reference_events, "command #{i} {command:?}");
        if let Some(restored) = restored.as_mut() {
            restored_events.clear();
            restored.execute(command, &mut restored_events);
            assert_eq!(restored_events, fast_events, "restored engine diverged at command #{i}");
        }
        model.pending_mark = match *command {
            Command::SetMark { market, price } => Some((market, price)),
            _ => None,
        };
        (model.pending_stop, model.pending_list) = match command {
            Command::PlaceStop(stop) => (Some(*stop), None),
            Command::PlaceOco(list) => (Some(list.stop()), Some(*list)),
            _ => (None, None),
        };
        model.apply(&fast_events);
        model.settle_lists(&fast_events);
        model.check_against(&fast);
    }
    assert_eq!(fast.snapshot(), reference.snapshot());
    assert_eq!(fast.state_hash(), reference.state_hash());
    if let Some(restored) = restored {
        assert_eq!(restored.state_hash(), fast.state_hash(), "snapshot + replay reaches a different state");
    }
    commands.len()
}

#[test]
fn two_million_seeded_commands_agree() {
    let mut total = 0;
    for seed in 0..40u64 {
        let mut rng = SplitMix(seed);
        let commands: Vec<Command> = (0..50_000).map(|_| random_command(&mut rng)).collect();
        total += compare(&commands, 1 + (seed as usize * 997) % 50_000);
    }
    assert_eq!(total, 2_000_000);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// Shrinkable streams: a failure here comes back as a short command list.
    #[test]
    fn random_streams_agree(seed in any::<u64>(), length in 1usize..600, cut in 0usize..600) {
        let mut rng = SplitMix(seed);
        let commands: Vec<Command> = (0..length).map(|_| random_command(&mut rng)).collect();
        compare(&commands, cut.min(length));
    }
}
