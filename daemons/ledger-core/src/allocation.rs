//! Pro-rata allocation in minor units.
//!
//! An offering allocates tokens to oversubscribed investors, a campaign
//! refunds donors, a market's insurance fund covers a loss: each splits a
//! whole number of minor units in proportion to weights, and none may
//! create or lose a unit doing so.

use ids::Amount;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocationError {
    #[error("an amount to allocate or a weight is negative")]
    Negative,
    #[error("there is something to allocate but every weight is zero")]
    NoWeight,
    #[error("the amount times a weight does not fit in 128 bits")]
    Overflow,
}

/// Splits `total` in proportion to `weights` by the largest remainder
/// method. Each share is first `floor(total x weight / sum of weights)`;
/// the units this leaves over (fewer than there are weights) go one each to
/// the shares with the largest remainders, and between equal remainders to
/// the earlier weight. So the shares sum to `total` exactly, each is within
/// one unit of its exact proportion, a zero weight gets nothing, and a
/// larger weight never gets less than a smaller one.
pub fn pro_rata(total: Amount, weights: &[Amount]) -> Result<Vec<Amount>, AllocationError> {
    if total < 0 || weights.iter().any(|weight| *weight < 0) {
        return Err(AllocationError::Negative);
    }
    let weight_sum = weights.iter().try_fold(0 as Amount, |sum, weight| sum.checked_add(*weight)).ok_or(AllocationError::Overflow)?;
    if weight_sum == 0 {
        return if total == 0 { Ok(vec![0; weights.len()]) } else { Err(AllocationError::NoWeight) };
    }
    let mut shares = Vec::with_capacity(weights.len());
    let mut remainders = Vec::with_capacity(weights.len());
    for (index, weight) in weights.iter().enumerate() {
        let product = total.checked_mul(*weight).ok_or(AllocationError::Overflow)?;
        shares.push(product / weight_sum);
        remainders.push((product % weight_sum, index));
    }
    let allocated: Amount = shares.iter().sum();
    let left_over = (total - allocated) as usize;
    debug_assert!(left_over < weights.len().max(1), "flooring leaves fewer units than shares");
    // Largest remainder first; between equals, the earlier weight.
    remainders.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    for &(_, index) in &remainders[..left_over] {
        shares[index] += 1;
    }
    Ok(shares)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_worked_example() {
        // 10 units over 1:1:1 -> 3.33 each: the first of the equal remainders gets the extra unit.
        assert_eq!(pro_rata(10, &[1, 1, 1]), Ok(vec![4, 3, 3]));
        // 100 over 50:30:20 is exact.
        assert_eq!(pro_rata(100, &[50, 30, 20]), Ok(vec![50, 30, 20]));
        // 7 over 2:3:0:5 -> 1.4, 2.1, 0, 3.5: remainders .4 .1 0 .5, one unit left over, to the .5.
        assert_eq!(pro_rata(7, &[2, 3, 0, 5]), Ok(vec![1, 2, 0, 4]));
        assert_eq!(pro_rata(0, &[0, 0]), Ok(vec![0, 0]));
        assert_eq!(pro_rata(5, &[]), Err(AllocationError::NoWeight));
        assert_eq!(pro_rata(5, &[0]), Err(AllocationError::NoWeight));
        assert_eq!(pro_rata(-1, &[1]), Err(AllocationError::Negative));
        assert_eq!(pro_rata(1, &[1, -1]), Err(AllocationError::Negative));
        assert_eq!(pro_rata(Amount::MAX, &[2, 1]), Err(AllocationError::Overflow));
    }

    proptest! {
        /// Nothing created, nothing lost, every share within one unit of its
        /// exact proportion, zero weights get zero, more weight never gets less.
        #[test]
        fn shares_sum_to_the_total_and_follow_the_weights(total in 0i128..1_000_000_000_000, weights in proptest::collection::vec(0i128..1_000_000_000, 1..40)) {
            let weight_sum: i128 = weights.iter().sum();
            prop_assume!(weight_sum > 0);
            let shares = pro_rata(total, &weights).unwrap();
            prop_assert_eq!(shares.len(), weights.len());
            prop_assert_eq!(shares.iter().sum::<i128>(), total, "no unit created or lost");
            for (share, weight) in shares.iter().zip(&weights) {
                // share x W within [exact - W, exact + W): within one unit.
                let exact = total * weight;
                prop_assert!(share * weight_sum > exact - weight_sum && share * weight_sum < exact + weight_sum, "{} of {} at weight {}/{}", share, total, weight, weight_sum);
                if *weight == 0 {
                    prop_assert_eq!(*share, 0);
                }
            }
            for (i, j) in (0..weights.len()).flat_map(|i| (0..weights.len()).map(move |j| (i, j))) {
                if weights[i] > weights[j] {
                    prop_assert!(shares[i] >= shares[j], "weight {} got {} but weight {} got {}", weights[i], shares[i], weights[j], shares[j]);
                }
            }
        }
    }
}
