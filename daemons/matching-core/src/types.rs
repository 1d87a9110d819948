//! The core's own vocabulary: the limits a book enforces and the fee
//! rounding. Commands, events and the rest of what crosses a process are
//! `matching-api`'s, re-exported here.

use serde::{Deserialize, Serialize};

pub use matching_api::*;

/// Limits on one market's book. Every one is checked before the order is
/// accepted, so a GTC limit order that could not rest is rejected whole.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookLimits {
    pub resting_orders_max: u32,
    pub orders_per_user_max: u32,
    pub price_levels_per_side_max: u32,
}

impl Default for BookLimits {
    fn default() -> Self {
        BookLimits { resting_orders_max: 1_000_000, orders_per_user_max: 1_000, price_levels_per_side_max: 100_000 }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineLimits {
    /// Market ids must be below this; books live in a vector indexed by id.
    pub markets_max: u32,
    pub book: BookLimits,
}

impl Default for EngineLimits {
    fn default() -> Self {
        EngineLimits { markets_max: 1_024, book: BookLimits::default() }
    }
}

/// Fees round up, in the exchange's favour, but cumulatively per order: the fee
/// charged for a fill is `ceil(rate x (before + fill)) - ceil(rate x before)`,
/// where `before` is the notional the same order already traded in the same
/// role at this price. So an order's total fee is `ceil(rate x total notional)`:
/// at most one minor unit above the exact fee however many fills it took, and
/// a buyer's hold of `ceil(rate x notional) + 1` for fees always covers it.
/// Notionals here are exact ([`MarketSpec::notional_exact`]), in
/// `1 / divisor` of a minor unit, so the fee is of the exact notional.
#[inline]
pub fn fee_increment(rate_ppm: u32, divisor: u128, before: u128, fill: u128) -> QuoteUnits {
    fee_ceil(rate_ppm, divisor, before + fill) - fee_ceil(rate_ppm, divisor, before)
}

/// The fee at `rate_ppm` of an exact notional, rounded up to a minor unit.
#[inline]
pub fn fee_ceil(rate_ppm: u32, divisor: u128, notional_exact: u128) -> QuoteUnits {
    let fee_exact = notional_exact * rate_ppm as u128;
    // A constant divisor, for the whole-unit markets: the compiler turns it into a multiplication.
    if divisor == 1 {
        fee_exact.div_ceil(FEE_RATE_DENOMINATOR_PPM)
    } else {
        fee_exact.div_ceil(FEE_RATE_DENOMINATOR_PPM * divisor)
    }
}
