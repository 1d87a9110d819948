//! The fast store's price ladder against the reference store, driven through
//! the `BookStore` trait directly with prices the order-level streams never
//! use: both ends of `u64`, clusters far apart, jumps of more than a window.
//! After every step both stores must agree on every level of both sides, the
//! best order, and every count.

use matching_core::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Insert {
        side: Side,
        price: PriceTicks,
        quantity: QuantityLots,
    },
    /// Removes the `n`th live order (modulo how many there are).
    Remove {
        n: usize,
    },
    /// The best order of a side trades this much as a maker.
    Fill {
        side: Side,
        quantity: QuantityLots,
    },
    /// Lifts the `n`th live order and relists it at a new price, or forgets it.
    Move {
        n: usize,
        price: PriceTicks,
        keep: bool,
    },
    SetRemaining {
        n: usize,
        quantity: QuantityLots,
    },
}

fn price() -> impl Strategy<Value = PriceTicks> {
    prop_oneof![
        4 => 1_000u64..1_030,
        2 => 5_000u64..5_010,
        1 => 0u64..20_000,
        1 => Just(1u64),
        1 => Just(u64::MAX),
        1 => (u64::MAX - 20)..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn side() -> impl Strategy<Value = Side> {
    prop_oneof![Just(Side::Buy), Just(Side::Sell)]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        5 => (side(), price(), 1u64..10).prop_map(|(side, price, quantity)| Step::Insert { side, price, quantity }),
        2 => any::<usize>().prop_map(|n| Step::Remove { n }),
        2 => (side(), 1u64..12).prop_map(|(side, quantity)| Step::Fill { side, quantity }),
        2 => (any::<usize>(), price(), prop::bool::weighted(0.8)).prop_map(|(n, price, keep)| Step::Move { n, price, keep }),
        1 => (any::<usize>(), 1u64..10).prop_map(|(n, quantity)| Step::SetRemaining { n, quantity }),
    ]
}

struct Pair<S: BookStore> {
    fast: S,
    reference: ReferenceStore,
    live: Vec<OrderId>,
    next_id: OrderId,
}

impl<S: BookStore> Pair<S> {
    fn new() -> Self {
        Pair { fast: S::default(), reference: ReferenceStore::default(), live: Vec::new(), next_id: 1 }
    }

    fn order(&self, n: usize) -> Option<RestingOrder> {
        let id = *self.live.get(n % self.live.len().max(1))?;
        Some(*self.reference.get(self.reference.find(id).unwrap()))
    }

    fn apply(&mut self, step: &Step) {
        match *step {
            Step::Insert { side, price, quantity } => {
                let order = RestingOrder {
                    order_id: self.next_id,
                    user: self.next_id % 5,
                    side,
                    price,
                    remaining: quantity,
                    filled: 0,
                    maker_filled: 0,
                    post_only: false,
                    self_trade: SelfTradePrevention::CancelTaker,
                };
                self.next_id += 1;
                self.live.push(order.order_id);
                self.fast.insert(order);
                self.reference.insert(order);
            }
            Step::Remove { n } => {
                let Some(order) = self.order(n) else { return };
                let fast = self.fast.remove(self.fast.find(order.order_id).unwrap());
                let reference = self.reference.remove(self.reference.find(order.order_id).unwrap());
                assert_eq!(fast, reference);
                self.live.retain(|&id| id != order.order_id);
            }
            Step::Fill { side, quantity } => {
                let Some(best) = self.reference.best(side) else {
                    assert!(self.fast.best(side).is_none(), "the fast store has a best {side:?} the reference has not");
                    return;
                };
                let best = *self.reference.get(best);
                assert_eq!(self.fast.get(self.fast.best(side).unwrap()), &best);
                let traded = quantity.min(best.remaining);
                let gone = self.fast.fill_best(side, traded);
                assert_eq!(gone, self.reference.fill_best(side, traded));
                if gone {
                    self.live.retain(|&id| id != best.order_id);
                }
            }
            Step::Move { n, price, keep } => {
                let Some(order) = self.order(n) else { return };
                let fast = self.fast.lift(self.fast.find(order.order_id).unwrap());
                // The reference store's lifted order is `()`.
                self.reference.lift(self.reference.find(order.order_id).unwrap());
                if keep {
                    let moved = RestingOrder { price, ..order };
                    self.fast.relist(fast, moved);
                    self.reference.relist((), moved);
                } else {
                    self.fast.discard(fast);
                    self.reference.discard(());
                    self.live.retain(|&id| id != order.order_id);
                }
            }
            Step::SetRemaining { n, quantity } => {
                let Some(order) = self.order(n) else { return };
                self.fast.set_remaining(self.fast.find(order.order_id).unwrap(), quantity);
                self.reference.set_remaining(self.reference.find(order.order_id).unwrap(), quantity);
            }
        }
    }

    fn check(&self) {
        assert_eq!(self.fast.len(), self.reference.len());
        for side in [Side::Buy, Side::Sell] {
            let depth = self.reference.depth(side, usize::MAX);
            assert_eq!(self.fast.depth(side, usize::MAX), depth, "{side:?} levels");
            assert_eq!(self.fast.depth(side, 3), depth.iter().take(3).copied().collect::<Vec<_>>());
            assert_eq!(self.fast.level_count(side), self.reference.level_count(side));
            for level in &depth {
                assert_eq!(self.fast.orders_at(side, level.price), level.orders);
            }
            assert_eq!(self.fast.best(side).map(|h| *self.fast.get(h)), self.reference.best(side).map(|h| *self.reference.get(h)));
            let mut fast_orders = Vec::new();
            self.fast.visit(side, |o| {
                fast_orders.push(*o);
                true
            });
            let mut reference_orders = Vec::new();
            self.reference.visit(side, |o| {
                reference_orders.push(*o);
                true
            });
            assert_eq!(fast_orders, reference_orders, "{side:?} orders in priority order");
        }
        for user in 0..5 {
            assert_eq!(self.fast.user_orders(user), self.reference.user_orders(user));
        }
    }
}

fn run<S: BookStore>(steps: &[Step]) {
    let mut pair = Pair::<S>::new();
    for step in steps {
        pair.apply(step);
        pair.check();
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn the_narrow_ladder_keeps_the_reference_order(steps in prop::collection::vec(step(), 1..300)) {
        run::<FastStore<8>>(&steps);
    }

    #[test]
    fn the_daemon_s_ladder_keeps_the_reference_order(steps in prop::collection::vec(step(), 1..300)) {
        run::<FastStore>(&steps);
    }
}

/// A book that walks away from where it started, tick by tick, further
/// than the window spans: the window follows it on both sides.
#[test]
fn a_drifting_book_is_followed() {
    let mut steps = Vec::new();
    for i in 0..20_000u64 {
        let mid = 1_000_000 - i * 3;
        steps.push(Step::Insert { side: Side::Buy, price: mid - 1 - i % 7, quantity: 2 });
        steps.push(Step::Insert { side: Side::Sell, price: mid + 1 + i % 5, quantity: 2 });
        steps.push(Step::Fill { side: Side::Buy, quantity: 3 });
        if i % 3 == 0 {
            steps.push(Step::Remove { n: i as usize * 7919 });
        }
    }
    let mut pair = Pair::<FastStore<64>>::new();
    for (i, step) in steps.iter().enumerate() {
        pair.apply(step);
        if i % 97 == 0 {
            pair.check();
        }
    }
    pair.check();
}

/// A deep order that stays while the best climbs tick by tick, past the
/// window's span: the window leaves the deep level below it and follows
/// the top, on both sides.
#[test]
fn a_best_that_climbs_away_from_a_deep_level_is_followed() {
    let mut steps = vec![Step::Insert { side: Side::Buy, price: 10_000, quantity: 1 }, Step::Insert { side: Side::Sell, price: 90_000, quantity: 1 }];
    for i in 1..300u64 {
        steps.push(Step::Insert { side: Side::Buy, price: 10_000 + i, quantity: 1 });
        steps.push(Step::Insert { side: Side::Sell, price: 90_000 - i, quantity: 1 });
        if i % 2 == 0 {
            // Take the newest top away again, so that the top moves both ways.
            steps.push(Step::Fill { side: Side::Buy, quantity: 1 });
            steps.push(Step::Fill { side: Side::Sell, quantity: 1 });
        }
    }
    let mut pair = Pair::<FastStore<64>>::new();
    for step in &steps {
        pair.apply(step);
        pair.check();
    }
    assert_eq!(pair.fast.depth(Side::Buy, usize::MAX).last().map(|l| l.price), Some(10_000), "the deep bid is still there");
}
