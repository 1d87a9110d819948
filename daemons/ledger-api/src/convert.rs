//! Convert: a user asks for a price, sees it for a few seconds, and accepts
//! it or not; the house is the counterparty (the white paper's swap
//! platform). A quote is the ledger's own record: accepting names only its
//! id, so its terms cannot change between the gateway and the ledger, and
//! the ledger consumes it at most once and only before it expires by the
//! ledger's stamped time.
//!
//! The gateway prices a quote (from the market's book or the pair's set
//! price, with the pair's spread and fee) and the ledger checks it against
//! the pair's rules, the user's balance and the house's inventory, which a
//! hold sets aside until the quote is accepted or expires.

use serde::{Deserialize, Serialize};

use crate::operators::ActionKind;
use crate::{Amount, AssetId, MarketId, TimestampMs, TransferId, UserId};

/// A quote's id; the conversion that accepts it has the same.
pub type QuoteId = u64;

/// The house's: inventory set aside for quotes not yet accepted or expired.
pub const QUOTED: u8 = 7;

pub(crate) fn purpose_name(purpose: u8) -> Option<&'static str> {
    Some(match purpose {
        QUOTED => "quoted",
        _ => return None,
    })
}

/// Inventory set aside for a quote.
pub const QUOTE_HOLD: u16 = 401;
/// A quote's hold back to inventory: it expired.
pub const QUOTE_EXPIRY: u16 = 402;
/// The user pays the house, or the house pays the user.
pub const CONVERSION: u16 = 403;
/// The house's margin on a conversion, to its revenue.
pub const SPREAD: u16 = 404;
/// The fee on a conversion, from the user to the house's revenue.
pub const FEE: u16 = 405;

pub(crate) fn code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        QUOTE_HOLD => "CONVERT_QUOTE",
        QUOTE_EXPIRY => "CONVERT_QUOTE_EXPIRED",
        CONVERSION => "CONVERSION",
        SPREAD => "CONVERT_SPREAD",
        FEE => "CONVERT_FEE",
        _ => return None,
    })
}

/// How long a quote holds when its pair says nothing, and the bounds a pair may set.
pub const QUOTE_TTL_MS_DEFAULT: u32 = 10_000;
pub const QUOTE_TTL_MS_MIN: u32 = 5_000;
pub const QUOTE_TTL_MS_MAX: u32 = 120_000;
/// The widest spread and the highest fee a pair may have: 50%.
pub const BPS_MAX: u32 = 5_000;
/// The most legs a quote has: a direct pair, or two through one intermediate asset.
pub const LEGS_MAX: usize = 2;
/// The largest amount a pair's bounds or a quote's leg may name (10^30
/// minor units): sums of them stay far inside `Amount`.
pub const AMOUNT_BOUND: Amount = 1_000_000_000_000_000_000_000_000_000_000;

/// Where a pair's price comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PriceSource {
    /// The spot market's order book, walked for the quoted size.
    Book(MarketId),
    /// A price the operators set: `quote_units` quote minor units for
    /// `base_units` base minor units (exact, a ratio of integers).
    Set { quote_units: Amount, base_units: Amount },
}

/// A pair as operators set it: what users may convert, both ways.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PairSpec {
    pub base: AssetId,
    pub quote: AssetId,
    pub price: PriceSource,
    /// The house's margin off the fair price, in basis points.
    pub spread_bps: u32,
    /// The fee, in basis points of what the user receives.
    pub fee_bps: u32,
    /// Bounds on the base amount a leg on this pair trades, in base minor units.
    pub base_min: Amount,
    pub base_max: Amount,
    /// The base amount the user gives or gets is a multiple of this.
    pub base_step: Amount,
    pub quote_ttl_ms: u32,
    /// Paused: no quotes and no accepts until the operators resume it.
    pub paused: bool,
    /// The most the house may have paid out, net, through this pair: of
    /// the base asset, and of the quote asset (open quotes counted).
    pub exposure_max_base: Amount,
    pub exposure_max_quote: Amount,
}

impl PairSpec {
    /// Why the spec cannot be a pair, if it cannot.
    pub fn check(&self) -> Result<(), String> {
        if self.base == self.quote {
            return Err("a pair converts between two different assets".into());
        }
        if let PriceSource::Set { quote_units, base_units } = self.price {
            if !(1..=AMOUNT_BOUND).contains(&quote_units) || !(1..=AMOUNT_BOUND).contains(&base_units) {
                return Err("a set price is a positive ratio of minor units".into());
            }
        }
        if self.spread_bps > BPS_MAX || self.fee_bps > BPS_MAX {
            return Err(format!("a spread and a fee are at most {BPS_MAX} basis points"));
        }
        let in_bounds = |amount: Amount| (1..=AMOUNT_BOUND).contains(&amount);
        if !in_bounds(self.base_step) || !in_bounds(self.base_min) || !in_bounds(self.base_max) || self.base_min > self.base_max {
            return Err("the base amount's step, minimum and maximum are positive, with the minimum at most the maximum".into());
        }
        if self.base_min % self.base_step != 0 {
            return Err("the minimum is a multiple of the step".into());
        }
        if !(QUOTE_TTL_MS_MIN..=QUOTE_TTL_MS_MAX).contains(&self.quote_ttl_ms) {
            return Err(format!("a quote holds {QUOTE_TTL_MS_MIN} to {QUOTE_TTL_MS_MAX} ms"));
        }
        if !(0..=AMOUNT_BOUND).contains(&self.exposure_max_base) || !(0..=AMOUNT_BOUND).contains(&self.exposure_max_quote) {
            return Err("an exposure limit is zero or more".into());
        }
        Ok(())
    }
}

/// A pair and what the house has done through it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pair {
    pub spec: PairSpec,
    /// Net into the house's inventory through this pair's conversions:
    /// negative when the house has paid out more than it took in.
    pub net_base: Amount,
    pub net_quote: Amount,
}

/// One conversion on one pair, as part of a quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuoteLeg {
    /// The pair, by its assets.
    pub base: AssetId,
    pub quote: AssetId,
    /// The user gives base and gets quote (else the other way).
    pub sell_base: bool,
    /// What the user gives into the house's inventory.
    pub pay: Amount,
    /// What the house gives the user (the last leg's fee is then taken from it).
    pub receive: Amount,
    /// What the house's inventory gives its revenue: the fair value less `receive`.
    pub spread: Amount,
}

impl QuoteLeg {
    pub fn from(&self) -> AssetId {
        if self.sell_base {
            self.base
        } else {
            self.quote
        }
    }

    pub fn to(&self) -> AssetId {
        if self.sell_base {
            self.quote
        } else {
            self.base
        }
    }

    /// The base amount this leg trades.
    pub fn base_amount(&self) -> Amount {
        if self.sell_base {
            self.pay
        } else {
            self.receive
        }
    }

    /// What the house's inventory of `to` gives for this leg.
    pub fn inventory_out(&self) -> Amount {
        self.receive + self.spread
    }
}

/// What the gateway asks the ledger to quote.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct QuoteRequest {
    pub user: UserId,
    /// One leg, or two through an intermediate asset: each gives the next what it receives.
    pub legs: Vec<QuoteLeg>,
    /// In the `to` asset, out of the last leg's `receive`.
    pub fee: Amount,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum QuoteStatus {
    Open,
    Accepted,
}

/// A firm quote, as the ledger holds it until it expires.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Quote {
    pub id: QuoteId,
    pub user: UserId,
    pub legs: Vec<QuoteLeg>,
    pub fee: Amount,
    pub created_ms: TimestampMs,
    /// The last ledger time it may be accepted at.
    pub expires_at_ms: TimestampMs,
    pub status: QuoteStatus,
}

impl Quote {
    pub fn from(&self) -> AssetId {
        self.legs.first().map_or(0, QuoteLeg::from)
    }

    pub fn to(&self) -> AssetId {
        self.legs.last().map_or(0, QuoteLeg::to)
    }

    /// What the user gives.
    pub fn from_amount(&self) -> Amount {
        self.legs.first().map_or(0, |leg| leg.pay)
    }

    /// What the user gets, the fee taken.
    pub fn to_amount(&self) -> Amount {
        self.legs.last().map_or(0, |leg| leg.receive) - self.fee
    }

    /// The asset a two-leg quote goes through.
    pub fn via(&self) -> Option<AssetId> {
        (self.legs.len() > 1).then(|| self.legs[0].to())
    }
}

/// An accepted quote: the user's conversion history.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Conversion {
    /// The quote's id.
    pub id: QuoteId,
    pub quote: Quote,
    pub at_ms: TimestampMs,
    /// The first of the settlement's transfers; the others follow it.
    pub first_transfer: TransferId,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Adds a pair or changes one (its price, spread, bounds, pause): an operator's action.
    SetPair(PairSpec),
    /// A firm quote for the user: refused when a pair is paused, a bound is
    /// passed, the user's available money or the house's inventory does
    /// not cover it, or the house would pass its exposure.
    Quote(QuoteRequest),
    /// Settles the quote, once, before it expires; idempotent by the user's `key`.
    Accept { user: UserId, quote: QuoteId, key: String },
    /// The ledger's own, once its clock passes a quote's expiry: closes the
    /// quotes that expired before the entry's stamped time (an open one's
    /// holds go back to inventory).
    ExpireQuotes,
}

/// Setting a pair is an operator's action.
pub(crate) fn operator_action(command: &Command) -> Option<ActionKind> {
    match command {
        Command::SetPair(_) => Some(ActionKind::ConvertPair),
        Command::Quote(_) | Command::Accept { .. } | Command::ExpireQuotes => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    PairSet {
        base: AssetId,
        quote: AssetId,
    },
    Quoted(Quote),
    /// The conversion's id, which is the quote's.
    Accepted(QuoteId),
    /// Open quotes closed unaccepted, and accepted ones forgotten.
    QuotesExpired {
        expired: u32,
        forgotten: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Pairs,
    Conversion {
        id: QuoteId,
    },
    /// A user's conversions, or everyone's (`user: None`, for operators), newest first.
    Conversions {
        user: Option<UserId>,
        limit: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Pairs(Vec<Pair>),
    Conversion(Option<Conversion>),
    Conversions(Vec<Conversion>),
}
