//! Perpetual futures: markets of the exchange (spot's second kind) whose
//! trades open positions settled in a collateral asset instead of moving
//! the base. The accounts follow Vega's model: per user a general account
//! (the wallet's AVAILABLE) and a margin account per market; per market an
//! insurance fund, a settlement account (zero before and after every
//! mark-to-market) and a funding clearing account (zero after every
//! funding); fees go to the house's revenue.

use serde::{Deserialize, Serialize};

use crate::operators::ActionKind;
use crate::spot::Market;
use crate::{Amount, AssetId, MarketId, TimestampMs, UserId};

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
    /// How often the ledger recomputes the mark (and marks to market) without a new price.
    pub mark_interval_ms: u64,
}

/// A size with what it cost.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Holding {
    /// Lots, above zero long.
    pub size: i64,
    /// Size times the average entry price, exact (in `1 / 10^tick_lot_scale`
    /// of a minor unit), signed as the size: for display and ranking only.
    pub entry_value_exact: i128,
}

/// A user's position in a market with their settings there. It stays when
/// flat: it names the margin account (`Owner::Entity(entity)`, MARGIN).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Position {
    pub holding: Holding,
    pub entity: u64,
    pub mode: MarginMode,
    pub leverage: u32,
    /// Funding received (above zero) or paid since it began.
    pub funding: Amount,
}

/// An oracle's latest price for a market.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OracleFeed {
    pub source: u32,
    pub price: u64,
    pub at_ms: TimestampMs,
}

/// A perpetual market's state: its terms, prices and funding, as stored.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PerpetualRecord {
    pub spec: PerpetualSpec,
    /// The mark the positions stand at; `None` until the first index.
    pub mark: Option<u64>,
    pub mark_ms: TimestampMs,
    /// When the ledger last recomputed the mark (it does every `mark_interval_ms`).
    pub ticked_ms: TimestampMs,
    /// The oracles allowed to submit prices, with their source numbers.
    pub oracles: Vec<(UserId, u32)>,
    pub feeds: Vec<OracleFeed>,
    pub last_trade: Option<u64>,
    /// The book's mid less the index, sampled: (at, ticks).
    pub basis_samples: Vec<(TimestampMs, i64)>,
    /// The premiums sampled since the last funding.
    pub premium_sum_ppb: i128,
    pub premium_count: u64,
    pub next_funding_ms: TimestampMs,
    /// The rate of the last funding paid.
    pub funding_rate_ppb: i64,
    /// The liquidation book's position, backed by the insurance fund.
    pub network: Holding,
    /// Lots long in all (as many are short), the network's included.
    pub open_interest: u64,
}

/// A funding paid.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FundingRecord {
    pub market: MarketId,
    pub at_ms: TimestampMs,
    pub rate_ppb: i64,
    pub mark: u64,
    /// What the payers paid into the clearing account.
    pub collected: Amount,
    /// What the receivers were owed and did not get (payers short).
    pub unpaid: Amount,
}

/// A position taken over by the market's liquidation book, or lots closed
/// by auto-deleveraging.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LiquidationRecord {
    /// In the ledger's numbering, in order.
    pub id: u64,
    pub market: MarketId,
    pub user: UserId,
    pub at_ms: TimestampMs,
    pub kind: LiquidationKind,
    /// The lots the user's position gave up, signed as it was.
    pub size: i64,
    /// The mark it was taken over at.
    pub price: u64,
    /// A liquidation's: where the position's equity would have been spent.
    pub bankruptcy_price: Option<u64>,
    /// A liquidation's: the worst price the exchange offers its lots to
    /// the book at (where the penalty is spent), between the mark and the
    /// bankruptcy price.
    pub offer_price: Option<u64>,
    /// A liquidation's: to the insurance fund.
    pub penalty: Amount,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LiquidationKind {
    /// Below maintenance: taken over by the network.
    Liquidated,
    /// Closed against the network when its fund was empty.
    Deleveraged,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Lists a perpetual market: matching's spec (tick, lot, fees, bounds;
    /// `base` the underlying, `quote` the collateral) and the perpetual's
    /// terms. An operator's action.
    // Boxed: the terms are most of a command's size, and a command sits in every proposal.
    CreateMarket {
        market: Market,
        perpetual: Box<PerpetualSpec>,
    },
    /// Grants a user the ORACLE role on a market under a source number, or
    /// takes it back (`None`). An operator's action.
    SetOracle {
        market: MarketId,
        user: UserId,
        source: Option<u32>,
    },
    /// An oracle's price, stamped with the ledger's time: the index, then
    /// the mark, then the mark-to-market and the liquidations it calls for.
    SubmitPrice {
        user: UserId,
        market: MarketId,
        price: u64,
    },
    SetLeverage {
        user: UserId,
        market: MarketId,
        leverage: u32,
    },
    SetMarginMode {
        user: UserId,
        market: MarketId,
        mode: MarginMode,
    },
    /// General to an isolated position's margin.
    AddMargin {
        user: UserId,
        market: MarketId,
        amount: Amount,
    },
    /// An isolated position's margin back to general, down to its need.
    ReduceMargin {
        user: UserId,
        market: MarketId,
        amount: Amount,
    },
    /// The ledger's own, journaled each mark interval and at each funding
    /// time: recomputes every mark and pays the fundings due, by the
    /// entry's stamped time. Peers may not send it.
    Tick,
}

pub(crate) fn operator_action(command: &Command) -> Option<ActionKind> {
    match command {
        Command::CreateMarket { .. } | Command::SetOracle { .. } => Some(ActionKind::Market),
        Command::SubmitPrice { .. }
        | Command::SetLeverage { .. }
        | Command::SetMarginMode { .. }
        | Command::AddMargin { .. }
        | Command::ReduceMargin { .. }
        | Command::Tick => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    MarketCreated(MarketId),
    OracleSet {
        market: MarketId,
        user: UserId,
        source: Option<u32>,
    },
    /// The index the price left, and the mark if it moved.
    PriceSubmitted {
        market: MarketId,
        index: Option<u64>,
        mark: Option<u64>,
    },
    LeverageSet {
        market: MarketId,
        leverage: u32,
    },
    MarginModeSet {
        market: MarketId,
        mode: MarginMode,
    },
    MarginAdded {
        market: MarketId,
        amount: Amount,
    },
    MarginReduced {
        market: MarketId,
        amount: Amount,
    },
    /// The marks that moved, the fundings paid and the liquidations they called for.
    Ticked {
        marks: Vec<(MarketId, u64)>,
        fundings: Vec<FundingRecord>,
        liquidations: Vec<LiquidationRecord>,
    },
}

/// A position as its owner sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PositionView {
    pub market: MarketId,
    pub size: i64,
    /// Average entry price in ticks (rounded toward zero); `None` when flat.
    pub entry_price: Option<u64>,
    pub mark: Option<u64>,
    /// The value at the mark less the entry value, rounded down.
    pub unrealized_pnl: Amount,
    /// The margin account's balance.
    pub margin: Amount,
    pub maintenance_margin: Amount,
    pub mode: MarginMode,
    pub leverage: u32,
    /// `None` when no price within the contract liquidates it.
    pub liquidation_price: Option<u64>,
    pub funding: Amount,
}

/// A market as traders see it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MarketView {
    pub record: PerpetualRecord,
    /// The index at the time of the read; `None` when stale.
    pub index: Option<u64>,
    /// The rate the premiums so far point at.
    pub predicted_rate_ppb: i64,
    pub insurance: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    /// Every perpetual market at `now_ms` (for the index's staleness).
    Markets {
        now_ms: TimestampMs,
    },
    Positions {
        user: UserId,
    },
    /// A market's fundings, newest first.
    Fundings {
        market: MarketId,
        limit: u32,
    },
    /// A market's liquidations and deleveragings, newest first; one user's when given.
    Liquidations {
        market: MarketId,
        user: Option<UserId>,
        limit: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Markets(Vec<MarketView>),
    Positions(Vec<PositionView>),
    Fundings(Vec<FundingRecord>),
    Liquidations(Vec<LiquidationRecord>),
}
