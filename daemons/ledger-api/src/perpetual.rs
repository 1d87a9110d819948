//! Perpetual futures: markets of the exchange (spot's second kind) whose
//! trades open positions settled in a collateral asset instead of moving
//! the base. The accounts follow Vega's model: per user a general account
//! (the wallet's AVAILABLE) and a margin account per market; per market an
//! insurance fund, a settlement account (zero before and after every
//! mark-to-market) and a funding clearing account (zero after every
//! funding); fees go to the house's revenue.

use serde::{Deserialize, Serialize};

use crate::{Amount, AssetId, MarketId};

/// A user's margin in one market (owner: the position's entity).
pub const MARGIN: u8 = 8;
/// A market's insurance fund (owner: the market's entity, its id).
pub const INSURANCE: u8 = 9;
/// A market's settlement account: what a mark-to-market collects, on its
/// way to the winners.
pub const SETTLEMENT: u8 = 10;
/// A market's funding clearing account: what a funding collects, on its
/// way to the receivers.
pub const FUNDING_CLEARING: u8 = 11;

/// General to margin (an order's margin, `addMargin`).
pub const MARGIN_IN: u16 = 501;
/// Margin back to general (`reduceMargin`, margin no longer needed).
pub const MARGIN_OUT: u16 = 502;
/// A loss into the settlement account, or a profit out of it.
pub const MARK_TO_MARKET: u16 = 503;
/// What a trade's price differs from the mark, between its two sides.
pub const TRADE_AT_PRICE: u16 = 504;
/// A funding payment into the clearing account, or a receipt out of it.
pub const FUNDING: u16 = 505;
/// The insurance fund covering a shortfall, or taking a leftover.
pub const INSURANCE_FUND: u16 = 506;
/// A liquidation's penalty, to the insurance fund.
pub const LIQUIDATION_PENALTY: u16 = 507;
/// A trading fee, to the house's revenue.
pub const FEE: u16 = 508;

pub(crate) fn purpose_name(purpose: u8) -> Option<&'static str> {
    Some(match purpose {
        MARGIN => "margin",
        INSURANCE => "insurance",
        SETTLEMENT => "settlement",
        FUNDING_CLEARING => "funding clearing",
        _ => return None,
    })
}

pub(crate) fn code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        MARGIN_IN => "MARGIN_IN",
        MARGIN_OUT => "MARGIN_OUT",
        MARK_TO_MARKET => "MARK_TO_MARKET",
        TRADE_AT_PRICE => "TRADE_AT_PRICE",
        FUNDING => "FUNDING",
        INSURANCE_FUND => "INSURANCE_FUND",
        LIQUIDATION_PENALTY => "LIQUIDATION_PENALTY",
        FEE => "PERPETUAL_FEE",
        _ => return None,
    })
}

/// What backs a position: its margin account alone (isolated), or its
/// margin account and the user's general account (cross, the default).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum MarginMode {
    #[default]
    Cross,
    Isolated,
}

/// One bracket of a market's margin: up to `notional_max` (collateral
/// minor units), the initial and maintenance fractions in millionths.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MarginTier {
    pub notional_max: Amount,
    pub initial_ppm: u32,
    pub maintenance_ppm: u32,
}

/// A perpetual market's terms beside its matching spec: prices in
/// matching's ticks, sizes in its lots.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PerpetualSpec {
    pub market: MarketId,
    /// What margins, profits, losses, funding and fees are paid in.
    pub collateral: AssetId,
    /// One tick on one lot is `units_per_tick_lot / 10^tick_lot_scale`
    /// collateral minor units.
    pub units_per_tick_lot: u64,
    pub tick_lot_scale: u8,
    pub price_ticks_max: u64,
    /// The largest position, either way, in lots.
    pub position_lots_max: u64,
    /// Brackets by notional, smallest first; the first's initial fraction
    /// sets the largest leverage.
    pub tiers: Vec<MarginTier>,
    /// The leverage a user's position starts with.
    pub leverage_default: u32,
    /// Of a liquidated position's notional, to the insurance fund.
    pub liquidation_penalty_ppm: u32,
    /// Funding every interval (eight hours: 28,800,000), in billionths of
    /// the notional per interval.
    pub funding_interval_ms: u64,
    pub funding_interest_ppb: i64,
    pub funding_clamp_ppb: i64,
    pub funding_cap_ppb: i64,
    /// The index takes oracles' prices no older than this, and needs this
    /// many sources; without an index the market takes only orders that
    /// reduce positions.
    pub oracle_staleness_ms: u64,
    pub oracle_sources_min: u8,
    /// The window of the moving average of the book's basis in the mark.
    pub basis_window_ms: u64,
}
