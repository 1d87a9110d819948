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
/// a buyer's hold of `notional + ceil(rate x notional) + 1` always covers it.
#[inline]
pub fn fee_increment(rate_ppm: u32, before: QuoteUnits, fill: QuoteUnits) -> QuoteUnits {
    fee_ceil(rate_ppm, before + fill) - fee_ceil(rate_ppm, before)
}

#[inline]
pub fn fee_ceil(rate_ppm: u32, notional: QuoteUnits) -> QuoteUnits {
    (notional * rate_ppm as u128).div_ceil(FEE_RATE_DENOMINATOR_PPM)
}
