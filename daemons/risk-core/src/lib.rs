//! The arithmetic of perpetual futures, and nothing else.
//!
//! A perpetual market trades a contract on a base (BTC) quoted and settled
//! in a collateral asset (USD). Its prices are the matching engine's ticks
//! and its sizes lots, so one tick on one lot is worth
//! `units_per_tick_lot / 10^tick_lot_scale` collateral minor units, as on
//! a spot market ([`Contract`]). Everything here is a function of its
//! arguments: the products crate keeps the state, the ledger stamps the
//! time, and this crate says what a position owes, needs and is worth.
//!
//! The formulas are the ones traders know, each stated where it is
//! written and in ARCHITECTURE.md:
//! - margin by notional bracket ([`Tiers`]): the initial margin is the
//!   notional times the larger of `1 / leverage` and the bracket's initial
//!   fraction; the maintenance margin is the notional times the bracket's
//!   fraction less the bracket's cumulative amount, so it is continuous
//!   across brackets (Binance's "maintenance amount");
//! - the index is the median of the oracles' fresh prices; the mark is the
//!   median of the index plus the funding basis, the index plus a moving
//!   average of the book's basis, and the last trade ([`prices`]);
//! - the funding rate is `premium + clamp(interest - premium, ±clamp)`,
//!   capped, paid by longs to shorts when positive ([`funding`]);
//! - a mark-to-market collects losses from margin, then the general
//!   account, then the insurance fund, and pays winners, pro rata when
//!   that is short ([`settlement`]);
//! - a position is liquidated once its equity is below maintenance, by an
//!   order no worse than its bankruptcy price, and deleveraged against the
//!   opposing positions ranked by profit and leverage ([`liquidation`]).
//!
//! **Rounding, stated once:** values are exact in `1 / 10^tick_lot_scale`
//! of a minor unit until money moves; then whatever a party pays is rounded
//! up and whatever it receives is rounded down (a floor of the signed
//! amount does both), and the settlement's leftover units go to the
//! market's insurance fund. Margin requirements are rounded up.

#![deny(clippy::float_arithmetic)]

pub mod contract;
pub mod funding;
pub mod liquidation;
pub mod margin;
pub mod prices;
pub mod settlement;

pub use contract::{Contract, ContractError, Lots, Ticks};
pub use margin::{Tier, Tiers, TiersError};

/// Millionths: margin fractions, penalties.
pub const PPM: i128 = 1_000_000;
/// Billionths: funding rates and premiums, finer than a basis point's
/// hundredth, the precision exchanges show.
pub const PPB: i128 = 1_000_000_000;

/// `a / b` rounded toward minus infinity (`b > 0`).
#[inline]
pub fn floor_div(a: i128, b: i128) -> i128 {
    debug_assert!(b > 0);
    a.div_euclid(b)
}

/// `a / b` rounded toward plus infinity (`b > 0`).
#[inline]
pub fn ceil_div(a: i128, b: i128) -> i128 {
    debug_assert!(b > 0);
    a.div_euclid(b) + i128::from(a.rem_euclid(b) != 0)
}
