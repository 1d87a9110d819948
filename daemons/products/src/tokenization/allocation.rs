//! An offering's close in numbers: who gets how many lots, what vests
//! when, what the platform keeps. Pure: amounts in lots of the token and
//! minor units of the payment.

use ids::Amount;
use ledger_core::allocation::{pro_rata, AllocationError};

/// What a close does with the subscriptions (each the lots it asks for,
/// oldest first).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Close {
    /// Below the target: nothing issued, every subscription refunded.
    Refunded,
    /// The lots each subscription gets, in their order.
    Allocated(Vec<Amount>),
}

/// At or above the target, every subscription in full up to the hard cap;
/// beyond it, the hard cap pro rata by the lots asked for, each share
/// rounded down to a lot and the lots left over one each to the largest
/// remainders (the older subscription first between equals). A share is
/// never above its subscription: its exact part of the hard cap is below
/// what it asked for, a whole number of lots, so rounding up stays within.
/// An error only when the hard cap times a subscription does not fit in
/// 128 bits, which an offering's creation refuses.
pub fn close(soft_cap_lots: Amount, hard_cap_lots: Amount, asked_lots: &[Amount]) -> Result<Close, AllocationError> {
    let demand = asked_lots.iter().try_fold(0 as Amount, |sum, asked| sum.checked_add(*asked)).ok_or(AllocationError::Overflow)?;
    if demand < soft_cap_lots || demand == 0 {
        return Ok(Close::Refunded);
    }
    if demand <= hard_cap_lots {
        return Ok(Close::Allocated(asked_lots.to_vec()));
    }
    pro_rata(hard_cap_lots, asked_lots).map(Close::Allocated)
}

/// `lots` in `count` tranches: equal parts rounded down, the last taking
/// what the division leaves.
pub fn tranches(lots: Amount, count: u32) -> Vec<Amount> {
    let count = count.max(1);
    let each = lots / Amount::from(count);
    let mut parts = vec![each; count as usize];
    if let Some(last) = parts.last_mut() {
        *last = lots - each * Amount::from(count - 1);
    }
    parts
}

/// The platform's fee on `raised`: `fee_bps` basis points rounded down.
pub fn fee(raised: Amount, fee_bps: u32) -> Amount {
    raised * Amount::from(fee_bps) / 10_000
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn the_worked_examples() {
        // Hard cap 1,000, target 500: 333 + 333 + 500 = 1,166 asked. Exact
        // shares 285.59, 285.59, 428.82; floors 285, 285, 428 leave 2 lots,
        // to Carol (.82) and then Alice (.59, older than Bob's equal .59).
        assert_eq!(close(500, 1_000, &[333, 333, 500]), Ok(Close::Allocated(vec![286, 285, 429])));
        // 420 asked of a 500 target: refunded.
        assert_eq!(close(500, 1_000, &[300, 120]), Ok(Close::Refunded));
        // 700 asked: all of it.
        assert_eq!(close(500, 1_000, &[300, 400]), Ok(Close::Allocated(vec![300, 400])));
        assert_eq!(close(1, Amount::MAX / 2, &[Amount::MAX / 2, Amount::MAX / 2]), Err(AllocationError::Overflow));
        assert_eq!(close(0, 10, &[]), Ok(Close::Refunded));
        assert_eq!(tranches(429, 3), vec![143, 143, 143]);
        assert_eq!(tranches(1_000, 3), vec![333, 333, 334]);
        assert_eq!(tranches(2, 3), vec![0, 0, 2]);
        assert_eq!(fee(1_000_000, 200), 20_000);
        assert_eq!(fee(999, 200), 19);
    }

    proptest! {
        /// Never above the hard cap or a subscription; all of it at or under
        /// the cap; exactly the cap when oversubscribed; nothing below the target.
        #[test]
        fn allocation_stays_within_the_cap_and_each_subscription(
            soft in 1i128..2_000, extra in 0i128..2_000,
            asked in proptest::collection::vec(1i128..1_500, 0..40),
        ) {
            let hard = soft + extra;
            let demand: i128 = asked.iter().sum();
            match close(soft, hard, &asked).expect("small numbers fit") {
                Close::Refunded => prop_assert!(demand < soft),
                Close::Allocated(lots) => {
                    prop_assert!(demand >= soft);
                    prop_assert_eq!(lots.len(), asked.len());
                    prop_assert!(lots.iter().zip(&asked).all(|(got, asked)| 0 <= *got && got <= asked));
                    let total: i128 = lots.iter().sum();
                    prop_assert!(total <= hard);
                    prop_assert_eq!(total, demand.min(hard));
                    if demand <= hard {
                        prop_assert_eq!(&lots, &asked);
                    }
                    // Pro rata: each within a lot of its exact share.
                    for (got, asked) in lots.iter().zip(&asked) {
                        let exact_times_demand = asked * demand.min(hard);
                        prop_assert!((got * demand - exact_times_demand).abs() < demand);
                    }
                }
            }
        }

        /// Tranches add up to the allocation, never below zero, equal but the last.
        #[test]
        fn tranches_add_up(lots in 0i128..1_000_000_000, count in 1u32..120) {
            let parts = tranches(lots, count);
            prop_assert_eq!(parts.len(), count as usize);
            prop_assert_eq!(parts.iter().sum::<i128>(), lots);
            prop_assert!(parts.iter().all(|part| *part >= 0));
            prop_assert!(parts[..parts.len() - 1].iter().all(|part| *part == parts[0]));
        }
    }
}
