//! The stop book against a model that keeps every armed stop in a list in
//! arming order and answers each question by scanning it. Driven with the
//! production window and with one of 8 ticks that moves all the time, at
//! prices the engine streams never use. After every step both must agree
//! on which stops are armed, whose, and in what order they fire.

use matching_core::stops::StopBook;
use matching_core::*;
use proptest::prelude::*;

#[derive(Clone, Debug)]
enum Step {
    Arm {
        direction: TriggerDirection,
        price: PriceTicks,
        user: UserId,
        quantity: QuantityLots,
    },
    /// Cancels the `n`th armed stop (modulo how many), as its owner or not.
    Cancel {
        n: usize,
        owner: bool,
    },
    /// A last trade at `price`: takes every stop it fires, one by one.
    Fire {
        price: PriceTicks,
    },
}

fn price() -> impl Strategy<Value = PriceTicks> {
    prop_oneof![
        4 => 1_000u64..1_030,
        2 => 5_000u64..5_010,
        1 => 0u64..20_000,
        1 => Just(0u64),
        1 => Just(u64::MAX),
        1 => (u64::MAX - 20)..=u64::MAX,
        1 => any::<u64>(),
    ]
}

fn step() -> impl Strategy<Value = Step> {
    let direction = prop_oneof![Just(TriggerDirection::AtOrAbove), Just(TriggerDirection::AtOrBelow)];
    prop_oneof![
        5 => (direction, price(), 1u64..4, 1u64..20).prop_map(|(direction, price, user, quantity)| Step::Arm { direction, price, user, quantity }),
        2 => (any::<usize>(), prop::bool::weighted(0.9)).prop_map(|(n, owner)| Step::Cancel { n, owner }),
        2 => price().prop_map(|price| Step::Fire { price }),
    ]
}

fn stop(order_id: OrderId, direction: TriggerDirection, price: PriceTicks, user: UserId, quantity: QuantityLots) -> ArmedStop {
    let order = NewOrder {
        market: 1,
        order_id,
        user,
        side: if direction == TriggerDirection::AtOrAbove { Side::Buy } else { Side::Sell },
        kind: OrderKind::Market,
        time_in_force: TimeInForce::Ioc,
        post_only: false,
        price: None,
        quantity,
        self_trade: SelfTradePrevention::CancelTaker,
    };
    ArmedStop { order, trigger: Trigger { source: TriggerSource::LastTrade, direction, price } }
}

/// Armed stops, oldest first.
#[derive(Default)]
struct Model(Vec<ArmedStop>);

impl Model {
    /// Of each direction's nearest trigger a trade at `price` reaches, its
    /// oldest stop; of those two, the older.
    fn take_fired(&mut self, price: PriceTicks) -> Option<ArmedStop> {
        let nearest = |direction| {
            self.0
                .iter()
                .enumerate()
                .filter(|(_, s)| s.trigger.direction == direction && s.trigger.fires_at(price))
                .min_by_key(|(i, s)| (if direction == TriggerDirection::AtOrAbove { s.trigger.price } else { u64::MAX - s.trigger.price }, *i))
                .map(|(i, _)| i)
        };
        let index = match (nearest(TriggerDirection::AtOrAbove), nearest(TriggerDirection::AtOrBelow)) {
            (Some(a), Some(b)) => a.min(b),
            (Some(one), None) | (None, Some(one)) => one,
            (None, None) => return None,
        };
        Some(self.0.remove(index))
    }
}

fn run<const WINDOW_MAX: usize>(steps: &[Step]) -> Result<(), TestCaseError> {
    let mut book = StopBook::<WINDOW_MAX>::default();
    let mut model = Model::default();
    let mut next_id: OrderId = 0;
    for step in steps {
        match *step {
            Step::Arm { direction, price, user, quantity } => {
                next_id += 1;
                let armed = stop(next_id, direction, price, user, quantity);
                book.arm(armed);
                model.0.push(armed);
            }
            Step::Cancel { n, owner } => {
                if model.0.is_empty() {
                    prop_assert!(book.cancel(n as OrderId, 1).is_none());
                    continue;
                }
                let index = n % model.0.len();
                let target = model.0[index].order;
                let user = if owner { target.user } else { target.user + 10 };
                let cancelled = book.cancel(target.order_id, user);
                if owner {
                    prop_assert_eq!(cancelled, Some(model.0.remove(index)));
                } else {
                    prop_assert_eq!(cancelled, None, "another user's cancel disarmed a stop");
                }
            }
            Step::Fire { price } => loop {
                let (ours, theirs) = (book.take_fired(price), model.take_fired(price));
                prop_assert_eq!(ours, theirs, "fired at {}", price);
                if ours.is_none() {
                    break;
                }
            },
        }
        prop_assert_eq!(book.len(), model.0.len());
        prop_assert_eq!(book.armed(), model.0.clone());
        for user in 1..4 {
            let theirs: Vec<OrderId> = model.0.iter().filter(|s| s.order.user == user).map(|s| s.order.order_id).collect();
            prop_assert_eq!(book.user_count(user) as usize, theirs.len());
            prop_assert_eq!(book.of_user(user), theirs);
        }
        for armed in &model.0 {
            prop_assert!(book.contains(armed.order.order_id));
        }
        prop_assert!(!book.contains(next_id + 1));
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn stop_book_matches_the_model(steps in prop::collection::vec(step(), 1..200)) {
        run::<{ matching_core::stops::STOP_WINDOW_MAX }>(&steps)?;
    }

    #[test]
    fn stop_book_with_a_tiny_window_matches_the_model(steps in prop::collection::vec(step(), 1..200)) {
        run::<8>(&steps)?;
    }
}
