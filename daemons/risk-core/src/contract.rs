//! What one tick on one lot is worth, and the bounds that keep every
//! product of a price, a size and a rate inside 128 bits.

use ids::Amount;
use serde::{Deserialize, Serialize};

use crate::{floor_div, PPB, PPM};

/// A price in ticks of the market.
pub type Ticks = u64;
/// A position's size in lots: long above zero, short below.
pub type Lots = i64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ContractError {
    #[error("a tick on a lot must be worth something: units_per_tick_lot and the bounds must be above zero")]
    Zero,
    #[error("tick_lot_scale {0} is above 18")]
    Scale(u8),
    #[error("the largest position at the highest price times a billionth does not fit in 120 bits: lower price_ticks_max or position_lots_max")]
    TooLarge,
}

/// The contract of a perpetual market: the matching engine's two numbers
/// for the value of a tick on a lot, and the bounds of its prices and
/// positions.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Contract {
    units_per_tick_lot: u64,
    tick_lot_scale: u8,
    price_ticks_max: Ticks,
    position_lots_max: u64,
}

/// Headroom kept below `i128::MAX` by [`Contract::new`]'s bound: sums of a
/// few such values (a settlement over many positions is summed in
/// `Amount`s, which are far smaller) cannot overflow.
const VALUE_BITS_MAX: u32 = 120;

impl Contract {
    /// Refuses a contract whose largest value times a billionth (a funding
    /// payment, exact) or a millionth (a margin, exact) would not fit: with
    /// this bound every function of the crate computes without overflow.
    pub fn new(units_per_tick_lot: u64, tick_lot_scale: u8, price_ticks_max: Ticks, position_lots_max: u64) -> Result<Contract, ContractError> {
        if units_per_tick_lot == 0 || price_ticks_max == 0 || position_lots_max == 0 {
            return Err(ContractError::Zero);
        }
        if tick_lot_scale > 18 {
            return Err(ContractError::Scale(tick_lot_scale));
        }
        let largest = u128::from(price_ticks_max)
            .checked_mul(u128::from(position_lots_max))
            .and_then(|value| value.checked_mul(u128::from(units_per_tick_lot)))
            .and_then(|value| value.checked_mul(PPB as u128));
        match largest {
            Some(value) if value < 1u128 << VALUE_BITS_MAX => Ok(Contract { units_per_tick_lot, tick_lot_scale, price_ticks_max, position_lots_max }),
            _ => Err(ContractError::TooLarge),
        }
    }

    pub fn units_per_tick_lot(&self) -> u64 {
        self.units_per_tick_lot
    }

    pub fn tick_lot_scale(&self) -> u8 {
        self.tick_lot_scale
    }

    pub fn price_ticks_max(&self) -> Ticks {
        self.price_ticks_max
    }

    pub fn position_lots_max(&self) -> u64 {
        self.position_lots_max
    }

    /// How many exact units make one minor unit: `10^tick_lot_scale`.
    #[inline]
    pub fn divisor(&self) -> i128 {
        10i128.pow(self.tick_lot_scale.into())
    }

    /// `size` lots at `price`, exact, signed as the size: in
    /// `1 / divisor()` of a minor unit. Every function of the crate takes
    /// sizes within `position_lots_max` and prices within
    /// `price_ticks_max` (the product checks orders against them); only
    /// then are its results free of overflow.
    #[inline]
    pub fn value_exact(&self, size: Lots, price: Ticks) -> i128 {
        debug_assert!(size.unsigned_abs() <= self.position_lots_max && price <= self.price_ticks_max, "{size} lots at {price} is beyond the contract");
        i128::from(size) * i128::from(price) * i128::from(self.units_per_tick_lot)
    }

    /// What `size` lots at `price` are worth, rounded up to a minor unit:
    /// the notional margins are counted on.
    #[inline]
    pub fn notional(&self, size: Lots, price: Ticks) -> Amount {
        crate::ceil_div(self.value_exact(size, price).abs(), self.divisor())
    }

    /// The profit (above zero) or loss of `size` lots when the price moves
    /// from `from` to `to`, exact.
    #[inline]
    pub fn pnl_exact(&self, size: Lots, from: Ticks, to: Ticks) -> i128 {
        debug_assert!(
            size.unsigned_abs() <= self.position_lots_max && from.max(to) <= self.price_ticks_max,
            "{size} lots at {from} or {to} is beyond the contract"
        );
        i128::from(size) * (i128::from(to) - i128::from(from)) * i128::from(self.units_per_tick_lot)
    }

    /// An exact amount as the money that moves for its holder: a gain
    /// rounded down, a loss rounded up (both a floor).
    #[inline]
    pub fn settled(&self, exact: i128) -> Amount {
        floor_div(exact, self.divisor())
    }

    /// Whether a position of `size` lots is within the contract's bound.
    pub fn size_allowed(&self, size: i128) -> bool {
        size.unsigned_abs() <= u128::from(self.position_lots_max)
    }

    /// A fraction in millionths of an exact value, rounded up to a minor unit.
    pub fn fraction_ceil(&self, exact: i128, fraction_ppm: u32) -> Amount {
        crate::ceil_div(exact * i128::from(fraction_ppm), self.divisor() * PPM)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// BTC-USD-PERP: a 0.1 USD tick, a 0.001 BTC lot, cents: a tick on a
    /// lot is 0.0001 USD, one hundredth of a cent.
    fn btc() -> Contract {
        Contract::new(1, 2, 10_000_000, 1_000_000).unwrap()
    }

    #[test]
    fn values_are_exact_until_money_moves() {
        let contract = btc();
        // 0.5 BTC (500 lots) at 60,000.0 (600,000 ticks) is 30,000 USD.
        assert_eq!(contract.notional(500, 600_000), 3_000_000);
        assert_eq!(contract.notional(-500, 600_000), 3_000_000);
        // 3 lots from 60,000.0 to 60,000.3: 0.0009 USD, under a cent.
        let exact = contract.pnl_exact(3, 600_000, 600_003);
        assert_eq!(exact, 9);
        assert_eq!(contract.settled(exact), 0, "a gain is rounded down");
        assert_eq!(contract.settled(-exact), -1, "a loss is rounded up");
    }

    #[test]
    fn bounds_are_refused_when_they_could_overflow() {
        assert_eq!(Contract::new(0, 2, 1, 1), Err(ContractError::Zero));
        assert_eq!(Contract::new(1, 19, 1, 1), Err(ContractError::Scale(19)));
        assert_eq!(Contract::new(1_000_000, 0, u64::MAX, u64::MAX), Err(ContractError::TooLarge));
        assert!(Contract::new(1, 2, 10_000_000, 1_000_000).is_ok());
    }
}
