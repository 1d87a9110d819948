//! When a position is liquidated, at what price it is closed, and who is
//! deleveraged when nothing else can take it.
//!
//! A position's **equity** is what backs it at the mark (its margin
//! account, and in cross margin its general account too: every
//! mark-to-market has already paid its profit or loss into them). Moved to
//! a price `p`, the equity is `equity + size x (p - mark)`. The position
//! is **below maintenance** at `p` when that is less than the maintenance
//! margin of its notional at `p`, compared exactly (no rounding), so there
//! is one boundary:
//! - the **liquidation price** is, for a long, the highest tick at which
//!   it is below maintenance (for a short, the lowest);
//! - the **bankruptcy price** is, for a long, the lowest tick at which its
//!   equity is not below zero (for a short, the highest): a liquidation
//!   order never trades worse than it, so a close-out loses no more than
//!   the position had;
//! - the **penalty** of a liquidation, the notional times the market's
//!   penalty fraction, rounded up, is taken from what is left after the
//!   close, as far as it goes, into the insurance fund;
//! - **auto-deleveraging** ranks the opposing positions by Binance's
//!   score: a profitable one by its profit ratio times its leverage, a
//!   losing one by its profit ratio divided by its leverage, highest
//!   first; they are closed against the bankrupt position at its
//!   bankruptcy price, from the top, until its size is covered.

use ids::Amount;

use crate::{Contract, Lots, Ticks, Tiers, PPM};

/// A position at the mark.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Exposure {
    pub size: Lots,
    pub mark: Ticks,
    pub equity: Amount,
}

impl Exposure {
    /// The equity at `price`, exact, in `1 / divisor` of a minor unit.
    fn equity_exact(&self, contract: &Contract, price: Ticks) -> i128 {
        self.equity.saturating_mul(contract.divisor()).saturating_add(contract.pnl_exact(self.size, self.mark, price))
    }

    /// Whether the position is below maintenance at `price`.
    pub fn below_maintenance(&self, contract: &Contract, tiers: &Tiers, price: Ticks) -> bool {
        if self.size == 0 {
            return false;
        }
        let equity = self.equity_exact(contract, price).saturating_mul(PPM);
        equity < tiers.maintenance_scaled(contract.value_exact(self.size, price), contract.divisor())
    }

    /// Whether the equity at `price` is not below zero.
    fn solvent(&self, contract: &Contract, price: Ticks) -> bool {
        self.equity_exact(contract, price) >= 0
    }

    /// The liquidation price, or `None` when no price within the contract
    /// liquidates the position.
    pub fn liquidation_price(&self, contract: &Contract, tiers: &Tiers) -> Option<Ticks> {
        let below = |price| self.below_maintenance(contract, tiers, price);
        let max = contract.price_ticks_max();
        if self.size > 0 {
            // The highest price below maintenance: below(lo), !below(hi).
            if !below(1) {
                return None;
            }
            Some(boundary(1, max.saturating_add(1), |price| !below(price)) - 1)
        } else if self.size < 0 {
            if !below(max) {
                return None;
            }
            Some(boundary(0, max, below))
        } else {
            None
        }
    }

    /// The bankruptcy price, or `None` when no price within the contract
    /// leaves the equity at zero or above.
    pub fn bankruptcy_price(&self, contract: &Contract) -> Option<Ticks> {
        let solvent = |price| self.solvent(contract, price);
        let max = contract.price_ticks_max();
        if self.size > 0 {
            if solvent(1) {
                return Some(1);
            }
            if !solvent(max) {
                return None;
            }
            Some(boundary(1, max, solvent))
        } else if self.size < 0 {
            if solvent(max) {
                return Some(max);
            }
            if !solvent(1) {
                return None;
            }
            Some(boundary(1, max, |price| !solvent(price)) - 1)
        } else {
            None
        }
    }
}

/// The first price in `(lo, hi]` at which `reached` holds, given that it
/// does not at `lo`, does at `hi`, and once it holds holds above.
fn boundary(mut lo: Ticks, mut hi: Ticks, reached: impl Fn(Ticks) -> bool) -> Ticks {
    while hi - lo > 1 {
        let middle = lo + (hi - lo) / 2;
        if reached(middle) {
            hi = middle;
        } else {
            lo = middle;
        }
    }
    hi
}

/// The penalty of liquidating `size` lots at `price`, before it is limited
/// to what the position has left.
pub fn penalty(contract: &Contract, size: Lots, price: Ticks, penalty_ppm: u32) -> Amount {
    contract.fraction_ceil(contract.value_exact(size, price).abs(), penalty_ppm)
}

/// An opposing position, for auto-deleveraging.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Candidate {
    pub size: Lots,
    /// What the position cost: its size times its average entry price,
    /// exact, signed as the size.
    pub entry_value_exact: i128,
    pub equity: Amount,
}

/// A candidate's rank score in millionths: higher is deleveraged first.
pub fn adl_score(contract: &Contract, candidate: &Candidate, mark: Ticks) -> i128 {
    let value = contract.value_exact(candidate.size, mark);
    let cost = candidate.entry_value_exact.abs().max(1);
    let profit_ppm = (value - candidate.entry_value_exact).saturating_mul(PPM) / cost;
    let equity = candidate.equity.saturating_mul(contract.divisor());
    // No equity: leverage beyond measure.
    let leverage_ppm = if equity <= 0 { i128::MAX / PPM } else { value.abs().saturating_mul(PPM) / equity };
    if profit_ppm > 0 {
        profit_ppm.saturating_mul(leverage_ppm) / PPM
    } else {
        profit_ppm.saturating_mul(PPM) / leverage_ppm.max(1)
    }
}

/// The order in which candidates are deleveraged: score, highest first,
/// then the order given (the product gives them by user id).
pub fn adl_order(scores: &[i128]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|a, b| scores[*b].cmp(&scores[*a]).then(a.cmp(b)));
    order
}

/// How many lots each ranked candidate gives to cover `lots`: from the
/// first in `order`, each its whole size or what is left. Less than `lots`
/// in all only when the candidates hold less.
pub fn deleverage(lots: u64, sizes: &[Lots], order: &[usize]) -> Vec<(usize, u64)> {
    let mut left = lots;
    let mut taken = Vec::new();
    for &index in order {
        if left == 0 {
            break;
        }
        let Some(size) = sizes.get(index) else { continue };
        let take = size.unsigned_abs().min(left);
        if take > 0 {
            taken.push((index, take));
            left -= take;
        }
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Tier;

    fn btc() -> Contract {
        Contract::new(1, 2, 10_000_000, 1_000_000).unwrap()
    }

    fn one_tier() -> Tiers {
        // 10x at most, 5% maintenance.
        Tiers::new(vec![Tier { notional_max: 100_000_000, initial_ppm: 100_000, maintenance_ppm: 50_000 }]).unwrap()
    }

    #[test]
    fn a_long_at_ten_times() {
        let (contract, tiers) = (btc(), one_tier());
        // 1 BTC long at 60,000 with 6,000 USD of margin.
        let long = Exposure { size: 1_000, mark: 600_000, equity: 600_000 };
        // Liquidated when 6,000 + (p - 60,000) < 5% p: p < 54,000 / 0.95 =
        // 56,842.105...: the highest tick below is 56,842.1.
        assert_eq!(long.liquidation_price(&contract, &tiers), Some(568_421));
        assert!(long.below_maintenance(&contract, &tiers, 568_421));
        assert!(!long.below_maintenance(&contract, &tiers, 568_422));
        // Bankrupt at 54,000: the equity is zero there.
        assert_eq!(long.bankruptcy_price(&contract), Some(540_000));
        // The penalty at 1% of 56,842.1 USD, rounded up: 568.43 USD.
        assert_eq!(penalty(&contract, 1_000, 568_421, 10_000), 56_843);
    }

    #[test]
    fn a_short_at_ten_times() {
        let (contract, tiers) = (btc(), one_tier());
        let short = Exposure { size: -1_000, mark: 600_000, equity: 600_000 };
        // 6,000 - (p - 60,000) < 5% p: p > 66,000 / 1.05 = 62,857.142...
        assert_eq!(short.liquidation_price(&contract, &tiers), Some(628_572));
        assert_eq!(short.bankruptcy_price(&contract), Some(660_000));
        // Fully backed at any price within the contract: no liquidation.
        let rich = Exposure { size: 1_000, mark: 600_000, equity: 100_000_000 };
        assert_eq!(rich.liquidation_price(&contract, &tiers), None);
        assert_eq!(rich.bankruptcy_price(&contract), Some(1));
    }

    #[test]
    fn the_most_profitable_and_leveraged_go_first() {
        let contract = btc();
        // Entered at 60,000, the mark now 66,000: +10%.
        let low = Candidate { size: 1_000, entry_value_exact: 600_000_000, equity: 6_600_000 };
        let high = Candidate { size: 1_000, entry_value_exact: 600_000_000, equity: 660_000 };
        let losing = Candidate { size: 1_000, entry_value_exact: 700_000_000, equity: 660_000 };
        let scores: Vec<i128> = [low, high, losing].iter().map(|candidate| adl_score(&contract, candidate, 660_000)).collect();
        // +10% at 1x and at 10x; -5.7% at 10x.
        assert_eq!(scores[0], 100_000);
        assert_eq!(scores[1], 1_000_000);
        assert!(scores[2] < 0);
        assert_eq!(adl_order(&scores), vec![1, 0, 2]);
        assert_eq!(deleverage(1_500, &[1_000, 1_000, 1_000], &[1, 0, 2]), vec![(1, 1_000), (0, 500)]);
    }
}
