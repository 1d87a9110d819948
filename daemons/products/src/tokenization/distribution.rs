//! A distribution in numbers: each holder's share of the pool and the tax
//! withheld from it. Pure: amounts in lots of the token and minor units of
//! the payment.

use ids::Amount;
use ledger_api::tokenization::WITHHOLDING_BPS_MAX;

/// The pool shared by the lots each holder held, each share rounded down:
/// the shares, and what rounding leaves of the pool (less than one minor
/// unit per holder). None when the pool times the lots held does not fit
/// in 128 bits, which a declaration refuses (it bounds the pool times the
/// token's whole supply).
pub fn shares(pool: Amount, lots: &[Amount]) -> Option<(Vec<Amount>, Amount)> {
    let total = lots.iter().try_fold(0 as Amount, |sum, held| sum.checked_add(*held))?;
    if total == 0 {
        return Some((vec![0; lots.len()], pool));
    }
    let shares = lots.iter().map(|held| pool.checked_mul(*held).map(|product| product / total)).collect::<Option<Vec<Amount>>>()?;
    let paid: Amount = shares.iter().sum();
    Some((shares, pool - paid))
}

/// The tax on `gross` at `bps` basis points, rounded down: the holder is
/// never withheld more than the rate says.
pub fn withheld(gross: Amount, bps: u32) -> Amount {
    let bps = bps.min(WITHHOLDING_BPS_MAX);
    // Whole ten-thousandths first so that no product overflows for any amount.
    (gross / 10_000) * Amount::from(bps) + (gross % 10_000) * Amount::from(bps) / 10_000
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_pool_is_shared_by_the_lots_held_and_rounding_is_stated() {
        // 1,000.00 among 1, 1 and 1 lots: 333.33 each, 0.01 left.
        assert_eq!(shares(100_000, &[1, 1, 1]), Some((vec![33_333, 33_333, 33_333], 1)));
        assert_eq!(shares(100_000, &[3, 1]), Some((vec![75_000, 25_000], 0)));
        assert_eq!(shares(7, &[]), Some((vec![], 7)));
        assert_eq!(shares(Amount::MAX, &[2, 1]), None);
    }

    #[test]
    fn withholding_rounds_down() {
        assert_eq!(withheld(10_000, 1_500), 1_500);
        assert_eq!(withheld(33_333, 1_500), 4_999);
        assert_eq!(withheld(33_333, 0), 0);
        assert_eq!(withheld(33_333, 10_000), 33_333);
        assert_eq!(withheld(Amount::MAX, 10_000), Amount::MAX);
    }

    proptest! {
        /// The shares and the remainder make the pool, to the unit; no share
        /// is above its exact part, and the remainder is below one unit per holder.
        #[test]
        fn shares_and_remainder_make_the_pool(pool in 0..1_000_000_000_000_000i128, lots in proptest::collection::vec(0..1_000_000i128, 0..40)) {
            let (shares, remainder) = shares(pool, &lots).expect("within bounds");
            prop_assert_eq!(shares.iter().sum::<Amount>() + remainder, pool);
            let total: Amount = lots.iter().sum();
            prop_assert!(remainder >= 0);
            if total > 0 {
                prop_assert!(remainder < lots.iter().filter(|held| **held > 0).count().max(1) as Amount);
                for (share, held) in shares.iter().zip(&lots) {
                    prop_assert!(share * total <= pool * held && (share + 1) * total > pool * held);
                }
            } else {
                prop_assert_eq!(remainder, pool);
            }
        }

        #[test]
        fn withholding_is_the_rate_rounded_down(gross in 0..Amount::MAX / 10_001, bps in 0..=10_000u32) {
            let tax = withheld(gross, bps);
            prop_assert!(tax * 10_000 <= gross * Amount::from(bps));
            prop_assert!((tax + 1) * 10_000 > gross * Amount::from(bps));
        }
    }
}
