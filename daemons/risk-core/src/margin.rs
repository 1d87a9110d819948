//! Margin by notional bracket.
//!
//! A market's tiers split notionals into brackets, each with an initial
//! and a maintenance fraction that grow with the bracket (bigger positions
//! need more margin, so the largest leverage is the first bracket's).
//!
//! - **Initial margin** of a notional `n` at leverage `L`:
//!   `ceil(n x max(1/L, initial fraction of n's bracket))`.
//! - **Maintenance margin**: `ceil(n x m_i - c_i)` where `m_i` is the
//!   fraction of `n`'s bracket and `c_i` its cumulative amount,
//!   `c_0 = 0`, `c_i = c_(i-1) + b_(i-1) x (m_i - m_(i-1))` with `b_(i-1)`
//!   the bracket's lower bound: so the maintenance margin is continuous
//!   across brackets and never falls as the notional grows.
//!
//! Positions above the last bracket's bound are refused when an order
//! would open them; a price that carries one above it keeps the last
//! bracket's fractions.

use ids::Amount;
use serde::{Deserialize, Serialize};

use crate::{ceil_div, Contract, Lots, Ticks, PPM};

/// One bracket: notionals up to `notional_max` (collateral minor units,
/// inclusive) above the previous bracket's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tier {
    pub notional_max: Amount,
    pub initial_ppm: u32,
    pub maintenance_ppm: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum TiersError {
    #[error("a market needs at least one margin tier, and at most {max}")]
    Count { max: usize },
    #[error("tier {index}: its notional_max must be above zero and above the tier before")]
    Bounds { index: usize },
    #[error("tier {index}: its maintenance fraction must be above zero and below its initial fraction, which is at most 100%")]
    Fractions { index: usize },
    #[error("tier {index}: its fractions must not be below the tier before's")]
    Decreasing { index: usize },
}

/// A market's brackets, checked, with their cumulative maintenance amounts.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tiers {
    tiers: Vec<Tier>,
    /// `c_i` above, times a million (exact).
    maintenance_offsets: Vec<i128>,
}

impl Tiers {
    pub const COUNT_MAX: usize = 16;

    pub fn new(tiers: Vec<Tier>) -> Result<Tiers, TiersError> {
        if tiers.is_empty() || tiers.len() > Self::COUNT_MAX {
            return Err(TiersError::Count { max: Self::COUNT_MAX });
        }
        let mut maintenance_offsets = Vec::with_capacity(tiers.len());
        for (index, tier) in tiers.iter().enumerate() {
            if tier.maintenance_ppm == 0 || tier.maintenance_ppm >= tier.initial_ppm || i128::from(tier.initial_ppm) > PPM {
                return Err(TiersError::Fractions { index });
            }
            // Bounded so that a notional times a fraction times the offsets fits.
            if tier.notional_max <= 0 || tier.notional_max > 1 << 96 {
                return Err(TiersError::Bounds { index });
            }
            let offset = match index.checked_sub(1).map(|before| tiers[before]) {
                None => 0,
                Some(before) => {
                    if tier.notional_max <= before.notional_max {
                        return Err(TiersError::Bounds { index });
                    }
                    if tier.maintenance_ppm < before.maintenance_ppm || tier.initial_ppm < before.initial_ppm {
                        return Err(TiersError::Decreasing { index });
                    }
                    maintenance_offsets[index - 1] + before.notional_max * i128::from(tier.maintenance_ppm - before.maintenance_ppm)
                }
            };
            maintenance_offsets.push(offset);
        }
        Ok(Tiers { tiers, maintenance_offsets })
    }

    pub fn tiers(&self) -> &[Tier] {
        &self.tiers
    }

    /// The bracket of a notional: the first whose bound it is within, or
    /// the last.
    pub fn bracket(&self, notional: Amount) -> usize {
        self.tiers.iter().position(|tier| notional <= tier.notional_max).unwrap_or(self.tiers.len() - 1)
    }

    /// Whether an order may leave a position of this notional.
    pub fn within(&self, notional: Amount) -> bool {
        notional <= self.tiers[self.tiers.len() - 1].notional_max
    }

    /// The most leverage a position of this notional may have: the
    /// bracket's `1 / initial fraction`, rounded down.
    pub fn leverage_max(&self, notional: Amount) -> u32 {
        (PPM / i128::from(self.tiers[self.bracket(notional)].initial_ppm)) as u32
    }

    /// The fraction that applies at a leverage, in millionths.
    fn initial_fraction_ppm(&self, notional: Amount, leverage: u32) -> i128 {
        let from_leverage = ceil_div(PPM, i128::from(leverage.max(1)));
        from_leverage.max(i128::from(self.tiers[self.bracket(notional)].initial_ppm))
    }

    /// The initial margin of a notional (minor units) at a leverage.
    pub fn initial_margin(&self, notional: Amount, leverage: u32) -> Amount {
        let notional = notional.max(0);
        ceil_div(notional * self.initial_fraction_ppm(notional, leverage), PPM)
    }

    /// The maintenance margin of an exact value (`|value_exact|` in
    /// `1 / divisor` of a minor unit), not rounded: in `1 / (divisor x
    /// 1,000,000)` of a minor unit. What liquidation compares equity with,
    /// so that the comparison is linear in the price and has one boundary.
    pub fn maintenance_scaled(&self, value_exact: i128, divisor: i128) -> i128 {
        let value = value_exact.abs();
        let bracket = self.bracket(ceil_div(value, divisor));
        value * i128::from(self.tiers[bracket].maintenance_ppm) - self.maintenance_offsets[bracket] * divisor
    }

    /// The maintenance margin of a notional (minor units), rounded up.
    pub fn maintenance_margin(&self, notional: Amount) -> Amount {
        let notional = notional.max(0);
        let bracket = self.bracket(notional);
        ceil_div(notional * i128::from(self.tiers[bracket].maintenance_ppm) - self.maintenance_offsets[bracket], PPM)
    }
}

/// One of a user's open orders on a market: its side, the lots still
/// open and its limit price.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OpenOrder {
    pub buy: bool,
    pub lots: u64,
    pub price: Ticks,
}

/// The initial margin a position and its open orders need at the mark
/// (Binance's order cost): for each side, the initial margin of the
/// position every order of that side would leave, plus what each of those
/// orders would lose at once against the mark (a buy above it, a sell
/// below; an order on the good side of the mark offsets nothing), and the
/// larger of the two sides. `None` when a side would leave a larger
/// position than the last bracket or the contract allows.
pub fn initial_requirement(contract: &Contract, tiers: &Tiers, leverage: u32, size: Lots, mark: Ticks, orders: &[OpenOrder]) -> Option<Amount> {
    let per_tick_lot = i128::from(contract.units_per_tick_lot());
    let side = |buy: bool| -> Option<Amount> {
        let (mut lots, mut loss_exact) = (0i128, 0i128);
        for order in orders.iter().filter(|order| order.buy == buy) {
            let worse = if buy { i128::from(order.price) - i128::from(mark) } else { i128::from(mark) - i128::from(order.price) };
            lots += i128::from(order.lots);
            loss_exact += worse.max(0) * i128::from(order.lots) * per_tick_lot;
        }
        let after = if buy { i128::from(size) + lots } else { i128::from(size) - lots };
        let increases = after.abs() > i128::from(size).abs();
        // A side that only reduces the position is never refused.
        if increases && !contract.size_allowed(after) {
            return None;
        }
        let notional = contract.notional(after.clamp(i128::from(Lots::MIN), i128::from(Lots::MAX)) as Lots, mark);
        if increases && !tiers.within(notional) {
            return None;
        }
        Some(tiers.initial_margin(notional, leverage) + ceil_div(loss_exact, contract.divisor()))
    };
    Some(side(true)?.max(side(false)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Brackets in cents: to 50,000 USD at 2% / 1% (50x), to 250,000 USD at
    /// 5% / 2.5%, to 1,000,000 USD at 10% / 5%.
    pub(crate) fn three() -> Tiers {
        Tiers::new(vec![
            Tier { notional_max: 5_000_000, initial_ppm: 20_000, maintenance_ppm: 10_000 },
            Tier { notional_max: 25_000_000, initial_ppm: 50_000, maintenance_ppm: 25_000 },
            Tier { notional_max: 100_000_000, initial_ppm: 100_000, maintenance_ppm: 50_000 },
        ])
        .unwrap()
    }

    #[test]
    fn a_worked_example() {
        let tiers = three();
        // 30,000 USD at 10x: 3,000 USD initial; maintenance 1% = 300 USD.
        assert_eq!(tiers.initial_margin(3_000_000, 10), 300_000);
        assert_eq!(tiers.maintenance_margin(3_000_000), 30_000);
        // 100,000 USD: the second bracket, 2.5% less 50,000 x 1.5% = 750
        // USD: 2,500 - 750 = 1,750 USD. At 50x the bracket's 5% applies.
        assert_eq!(tiers.maintenance_margin(10_000_000), 175_000);
        assert_eq!(tiers.initial_margin(10_000_000, 50), 500_000);
        assert_eq!(tiers.leverage_max(10_000_000), 20);
        // At each bound both brackets' formulas agree.
        assert_eq!(tiers.maintenance_margin(5_000_000), 50_000);
        assert_eq!(tiers.maintenance_margin(5_000_001), 50_001);
        assert!(tiers.within(100_000_000));
        assert!(!tiers.within(100_000_001));
    }

    #[test]
    fn orders_need_the_margin_of_the_position_they_would_leave() {
        let (contract, tiers) = (Contract::new(1, 2, 10_000_000, 1_000_000).unwrap(), three());
        // No position, a buy of 0.5 BTC at 60,010 with the mark at 60,000,
        // 10x: 10% of 30,000 USD plus the 5 USD it would lose at once; a
        // second buy far below the mark offsets none of it.
        let mut orders = vec![OpenOrder { buy: true, lots: 500, price: 600_100 }];
        assert_eq!(initial_requirement(&contract, &tiers, 10, 0, 600_000, &orders), Some(300_000 + 500));
        orders.push(OpenOrder { buy: true, lots: 500, price: 500_000 });
        assert_eq!(initial_requirement(&contract, &tiers, 10, 0, 600_000, &orders), Some(600_000 + 500));
        // Long 0.5 BTC with a sell of 0.5 BTC at 59,990: the sell closes it
        // (losing 5 USD), so the buys' side decides.
        let closing = [OpenOrder { buy: false, lots: 500, price: 599_900 }];
        assert_eq!(initial_requirement(&contract, &tiers, 10, 500, 600_000, &closing), Some(300_000));
        // Long 0.5 BTC and a buy of 1,000 BTC: past the last bracket.
        orders.push(OpenOrder { buy: true, lots: 1_000_000, price: 600_000 });
        assert_eq!(initial_requirement(&contract, &tiers, 10, 500, 600_000, &orders), None);
    }

    #[test]
    fn bad_tiers_are_refused_with_the_tier_named() {
        let tier = Tier { notional_max: 100, initial_ppm: 20_000, maintenance_ppm: 10_000 };
        assert_eq!(Tiers::new(vec![]), Err(TiersError::Count { max: Tiers::COUNT_MAX }));
        assert_eq!(Tiers::new(vec![Tier { maintenance_ppm: 20_000, ..tier }]), Err(TiersError::Fractions { index: 0 }));
        assert_eq!(Tiers::new(vec![Tier { initial_ppm: 1_000_001, ..tier }]), Err(TiersError::Fractions { index: 0 }));
        assert_eq!(Tiers::new(vec![tier, tier]), Err(TiersError::Bounds { index: 1 }));
        assert_eq!(Tiers::new(vec![tier, Tier { notional_max: 200, initial_ppm: 20_000, maintenance_ppm: 5_000 }]), Err(TiersError::Decreasing { index: 1 }));
    }
}
