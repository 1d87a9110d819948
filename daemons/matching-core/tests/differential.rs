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
            Command::AddMarket(MarketSpec {
                id,
                quote_units_per_tick_lot: 1 + id as u64 * 4,
                maker_fee_ppm: 250 * (id + 1),
                taker_fee_ppm: 750,
                price_ticks_max: 200,
                quantity_lots_max: 50,
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
        74..=98 => Command::Amend { market, order_id, user, price, quantity },
        _ => Command::SetTrading { market, trading: rng.below(3) != 0 },
    }
}

/// What the events say each live order's open quantity is.
#[derive(Default)]
struct Model {
    open: BTreeMap<(MarketId, OrderId), QuantityLots>,
}

impl Model {
    fn apply(&mut self, events: &[Event]) {
        for event in events {
            match *event {
                Event::Accepted { market, order_id, quantity, .. } => {
                    assert!(self.open.insert((market, order_id), quantity).is_none(), "accepted a live id: {event:?}");
                }
                Event::Amended { market, order_id, quantity, .. } => {
                    *self.open.get_mut(&(market, order_id)).expect("amended a live order") = quantity;
                }
                Event::Fill(f) => {
                    assert_ne!(f.maker_user, f.taker_user, "a self-trade produced a fill");
                    for id in [f.maker_order, f.taker_order] {
                        let open = self.open.get_mut(&(f.market, id)).expect("fill of a live order");
                        *open = open.checked_sub(f.quantity).expect("filled more than was open");
                    }
                }
                Event::Cancelled { market, order_id, remaining, .. } => {
                    let open = self.open.remove(&(market, order_id)).expect("cancelled a live order");
                    assert_eq!(open, remaining, "cancelled quantity differs from what was open");
                }
                Event::Done { market, order_id, .. } => {
                    let open = self.open.remove(&(market, order_id)).expect("done for a live order");
                    assert_eq!(open, 0, "done with quantity still open");
                }
                Event::Rejected { .. } | Event::MarketAdded { .. } | Event::MarketRejected { .. } | Event::TradingSet { .. } => {}
            }
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
        model.apply(&fast_events);
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
