//! The matching engine's vocabulary as it crosses a process or reaches a
//! file: commands in, events out, its journal records and its snapshots.
//!
//! These types are a format, versioned by [`FORMAT_VERSION`]: the engine's
//! journal and snapshot files and the wire protocol carry them encoded with
//! postcard, whose encoding follows the declaration (field and variant
//! order). A change to any type here is a format change: bump the version,
//! and update the golden bytes of this crate's test, which fails otherwise.
//! The engine's internals (books, limits, fee rounding) live in
//! `matching-core` and change without touching a format.
//!
//! Prices are whole ticks and quantities whole lots (`u64`); quote amounts are
//! minor units of the quote asset (`u128`). Conversion from decimals happens at
//! the edge (the gateway and ledger), which rejects anything off the tick or lot.

use serde::{Deserialize, Serialize};

pub use ids::{MarketId, OrderId, UserId};

/// The version of every format in this crate. 1 was the unversioned
/// encoding of matching-core's own types (release 0.1.0's first builds);
/// 3 added a market's tick-lot scale and a fill's notional rounding; 4 price
/// bands and the last trade price in snapshots; 5 a resting order's filled
/// lots, an amend by total quantity, an Amended's open remainder, and stop
/// orders; 6 OCO lists.
pub const FORMAT_VERSION: u16 = 7;
/// A price in ticks of the market's tick size.
pub type PriceTicks = u64;
/// A quantity in lots of the market's lot size.
pub type QuantityLots = u64;
/// An amount of the quote asset in its minor units.
pub type QuoteUnits = u128;

/// Fee rates are parts per million of the notional, so 0.1% is 1_000.
pub const FEE_RATE_DENOMINATOR_PPM: u128 = 1_000_000;
/// A fee rate above 10% is refused when a market is added: no real market has one,
/// and it would only be a typo.
pub const FEE_RATE_PPM_MAX: u32 = 100_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }

    /// True when a resting order at `resting_price` on the other side is at or
    /// better than this side's `limit`, so the two can trade.
    #[inline]
    pub fn crosses(self, limit: PriceTicks, resting_price: PriceTicks) -> bool {
        match self {
            Side::Buy => resting_price <= limit,
            Side::Sell => resting_price >= limit,
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderKind {
    Limit,
    /// Immediate-or-cancel up to an optional protection price (the worst price
    /// it may trade at). A market order never rests.
    Market,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TimeInForce {
    Gtc,
    Ioc,
    Fok,
}

/// What happens when an order would trade against a resting order of the same user.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SelfTradePrevention {
    /// Cancel the rest of the incoming order; the resting one stays.
    #[default]
    CancelTaker,
    /// Cancel the resting order and keep matching the incoming one.
    CancelMaker,
    /// Cancel both.
    CancelBoth,
}

/// A market as the core sees it: integers only.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct MarketSpec {
    pub id: MarketId,
    /// One tick of price times one lot of quantity is
    /// `quote_units_per_tick_lot / 10^tick_lot_scale` quote minor units
    /// (tick_size x lot_size x 10^quote_scale): BTC-USD with a 0.01 tick, a
    /// 0.0001 lot and cents is 1 / 10^4. Notionals are counted exactly in
    /// those fractions and rounded to minor units only when money moves.
    pub quote_units_per_tick_lot: u64,
    pub tick_lot_scale: u8,
    pub maker_fee_ppm: u32,
    pub taker_fee_ppm: u32,
    /// Bounds on what an order may say; with them every notional and fee fits in
    /// `u128` (checked when the market is added).
    pub price_ticks_max: PriceTicks,
    pub quantity_lots_max: QuantityLots,
    /// How far, in millionths, a limit price may be from the last trade's
    /// price (before the market's first trade, from the best opposite
    /// price): further, the order or amend is refused with
    /// [`RejectCode::PriceOutOfBand`]. 0 is no band.
    pub price_band_ppm: u32,
}

/// The widest price band: 100%.
pub const PRICE_BAND_PPM_MAX: u32 = 1_000_000;

/// The largest `tick_lot_scale`: a tick on a lot as small as 10^-18 of a
/// minor unit is already far below any asset's precision.
pub const TICK_LOT_SCALE_MAX: u8 = 18;

impl MarketSpec {
    /// The exact notional of `quantity` lots at `price` ticks, in
    /// `1 / notional_divisor()` of a quote minor unit.
    #[inline]
    pub fn notional_exact(&self, price: PriceTicks, quantity: QuantityLots) -> u128 {
        price as u128 * quantity as u128 * self.quote_units_per_tick_lot as u128
    }

    /// How many exact notional units make one quote minor unit.
    #[inline]
    pub fn notional_divisor(&self) -> u128 {
        10u128.saturating_pow(self.tick_lot_scale.into())
    }

    /// The quote notional of `quantity` lots at `price` ticks, rounded up to
    /// a minor unit: what a buyer pays before its fee.
    #[inline]
    pub fn notional(&self, price: PriceTicks, quantity: QuantityLots) -> QuoteUnits {
        self.notional_exact(price, quantity).div_ceil(self.notional_divisor())
    }

    /// The same rounded down: what a seller receives before its fee.
    #[inline]
    pub fn notional_down(&self, price: PriceTicks, quantity: QuantityLots) -> QuoteUnits {
        self.notional_exact(price, quantity) / self.notional_divisor()
    }

    /// Whether `price` is within the price band around `reference`
    /// (always, for a market without a band). Exact: no rounding widens it.
    #[inline]
    pub fn within_band(&self, price: PriceTicks, reference: PriceTicks) -> bool {
        self.price_band_ppm == 0 || (price.abs_diff(reference) as u128) * 1_000_000 <= reference as u128 * self.price_band_ppm as u128
    }

    pub fn validate(&self) -> Result<(), RejectCode> {
        let rates_ok = self.maker_fee_ppm <= FEE_RATE_PPM_MAX && self.taker_fee_ppm <= FEE_RATE_PPM_MAX && self.price_band_ppm <= PRICE_BAND_PPM_MAX;
        let bounds_ok =
            self.quote_units_per_tick_lot > 0 && self.tick_lot_scale <= TICK_LOT_SCALE_MAX && self.price_ticks_max > 0 && self.quantity_lots_max > 0;
        // The largest exact notional, plus a unit of rounding per lot (a
        // buyer's hold), times the largest rate must not overflow u128.
        let fits = (self.price_ticks_max as u128)
            .checked_mul(self.quantity_lots_max as u128)
            .and_then(|n| n.checked_mul(self.quote_units_per_tick_lot as u128))
            .and_then(|n| n.checked_add((self.quantity_lots_max as u128).checked_mul(self.notional_divisor())?))
            .and_then(|n| n.checked_mul(FEE_RATE_PPM_MAX as u128 + FEE_RATE_DENOMINATOR_PPM))
            .is_some();
        if rates_ok && bounds_ok && fits {
            Ok(())
        } else {
            Err(RejectCode::InvalidMarketSpec)
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct NewOrder {
    pub market: MarketId,
    pub order_id: OrderId,
    pub user: UserId,
    pub side: Side,
    pub kind: OrderKind,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    /// Required for LIMIT; for MARKET the optional protection price.
    pub price: Option<PriceTicks>,
    pub quantity: QuantityLots,
    pub self_trade: SelfTradePrevention,
}

impl NewOrder {
    /// Only a GTC limit order can end up resting on the book.
    pub fn may_rest(&self) -> bool {
        self.kind == OrderKind::Limit && self.time_in_force == TimeInForce::Gtc
    }
}

/// The price a stop order watches: the market's last trade, or the mark
/// price the ledger computes for a perpetual market and sends with
/// [`Command::SetMark`] (matching never computes one).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TriggerSource {
    LastTrade,
    Mark,
}

/// Which way the watched price must reach the trigger price: a stop-loss
/// sell or a take-profit buy fires at or below it, a stop-loss buy or a
/// take-profit sell at or above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum TriggerDirection {
    AtOrAbove,
    AtOrBelow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Trigger {
    pub source: TriggerSource,
    pub direction: TriggerDirection,
    pub price: PriceTicks,
}

impl Trigger {
    /// Whether the watched price at `price` fires this trigger.
    #[inline]
    pub fn fires_at(&self, price: PriceTicks) -> bool {
        match self.direction {
            TriggerDirection::AtOrAbove => price >= self.price,
            TriggerDirection::AtOrBelow => price <= self.price,
        }
    }
}

/// A stop order waiting for its trigger: once it fires, `order` is placed
/// as if it had just arrived.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ArmedStop {
    pub order: NewOrder,
    pub trigger: Trigger,
}

/// One-cancels-the-other: a post-only GTC limit order and a stop order of
/// the same user, market, side and quantity. Any fill of the limit order
/// cancels the stop; the stop firing cancels the limit order; cancelling
/// either (or self-trade prevention removing the limit order) cancels both.
/// So at most one of the two ever trades, and one hold covers the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OcoList {
    pub limit: NewOrder,
    pub stop_order_id: OrderId,
    /// The stop's order once it fires: a market order (a buy's protection
    /// price in `stop_price`) or a GTC limit order at `stop_price`.
    pub stop_kind: OrderKind,
    pub stop_price: Option<PriceTicks>,
    pub trigger: Trigger,
}

impl OcoList {
    /// The stop leg as it is armed.
    pub fn stop(&self) -> ArmedStop {
        let time_in_force = if self.stop_kind == OrderKind::Market { TimeInForce::Ioc } else { TimeInForce::Gtc };
        let order = NewOrder { order_id: self.stop_order_id, kind: self.stop_kind, time_in_force, post_only: false, price: self.stop_price, ..self.limit };
        ArmedStop { order, trigger: self.trigger }
    }
}

/// The two orders of an OCO list while both are open.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OcoLink {
    pub limit: OrderId,
    pub stop: OrderId,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    AddMarket(MarketSpec),
    /// Halt or resume trading. A halted market refuses new orders and amends
    /// (MARKET_CLOSED) but still lets users cancel.
    SetTrading {
        market: MarketId,
        trading: bool,
    },
    Place(NewOrder),
    Cancel {
        market: MarketId,
        order_id: OrderId,
        user: UserId,
    },
    CancelAll {
        market: MarketId,
        user: UserId,
    },
    /// Set a resting order's price and total quantity: what stays open is
    /// `quantity` less what the order has filled, so an amend sent while fills
    /// are on the way never reopens them; at or below the filled quantity the
    /// order is cancelled. A smaller open quantity at the same price keeps
    /// queue priority; any other change loses it (the order is taken out and
    /// re-entered, and may trade).
    Amend {
        market: MarketId,
        order_id: OrderId,
        user: UserId,
        price: PriceTicks,
        quantity: QuantityLots,
    },
    /// Arms a stop order (stop-loss, stop-limit, take-profit): it waits off
    /// the book, cancellable, until a trade prices the market at its
    /// trigger; then it is placed, within the command whose trade fired it.
    /// Stops fire one at a time against the latest trade price (each fired
    /// order's trades move it): the nearest trigger in each direction
    /// first, and of those two the one armed first.
    PlaceStop(ArmedStop),
    /// Places an OCO list: the limit order rests (Accepted) and the stop is
    /// armed (StopArmed), or both are refused with the first refusal's code.
    PlaceOco(OcoList),
    /// The market's mark price is now `price`: the stops watching the mark
    /// that it reaches fire (their orders' trades may fire stops watching
    /// the last trade, and those the mark reaches go on firing), then
    /// `MarkSet`. On a halted market the mark is kept and fires nothing
    /// until trading resumes (`SetTrading`), when what it reaches fires. A
    /// price of 0 or above the spec's maximum is refused (`MarketRejected`
    /// with INVALID_PRICE) and changes nothing.
    SetMark {
        market: MarketId,
        price: PriceTicks,
    },
}

impl Command {
    pub fn market(&self) -> MarketId {
        match self {
            Command::AddMarket(spec) => spec.id,
            Command::SetTrading { market, .. }
            | Command::Cancel { market, .. }
            | Command::CancelAll { market, .. }
            | Command::Amend { market, .. }
            | Command::SetMark { market, .. } => *market,
            Command::Place(order) | Command::PlaceStop(ArmedStop { order, .. }) | Command::PlaceOco(OcoList { limit: order, .. }) => order.market,
        }
    }
}

/// Why an order command was refused. Nothing changed when one is emitted.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum RejectCode {
    #[error("no such market")]
    UnknownMarket,
    #[error("the market already exists")]
    MarketExists,
    #[error("market id is at or above the configured markets_max")]
    MarketLimit,
    #[error("the market's parameters are out of range")]
    InvalidMarketSpec,
    #[error("the market is not trading")]
    MarketClosed,
    #[error("price missing, zero or above the market's maximum")]
    InvalidPrice,
    #[error("quantity zero or above the market's maximum")]
    InvalidQuantity,
    #[error("this combination of order type, time in force and post-only is not allowed")]
    InvalidOrder,
    #[error("an order with this id is already on the book")]
    DuplicateOrderId,
    #[error("no such open order for this user")]
    UnknownOrder,
    #[error("a post-only order would have taken liquidity")]
    PostOnlyWouldTake,
    #[error("the book holds its configured maximum of resting orders")]
    BookFull,
    #[error("the user holds the configured maximum of open orders in this market")]
    UserOrderLimit,
    #[error("the book side holds its configured maximum of price levels")]
    PriceLevelLimit,
    #[error("the price is further from the last trade (before any, the best opposite price) than the market's price band allows")]
    PriceOutOfBand,
    #[error("the last trade already reached the stop's trigger price: it would fire at once")]
    WouldTriggerNow,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum CancelReason {
    /// Asked for by the user (cancel, cancel-all).
    User,
    /// The unfilled rest of an IOC or market order.
    Unfilled,
    /// A fill-or-kill order that could not fill completely; nothing traded.
    FillOrKill,
    /// Removed by self-trade prevention.
    SelfTrade,
    /// The other order of its OCO list filled, fired or was cancelled.
    OcoOther,
}

/// One trade. Prints at the maker's price. Fees are in the quote asset: the
/// buyer pays `notional` plus its fee, the seller receives `notional -
/// notional_rounding` minus its fee, and the exchange's fee account takes
/// both fees and the rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Fill {
    pub market: MarketId,
    pub maker_order: OrderId,
    pub maker_user: UserId,
    pub taker_order: OrderId,
    pub taker_user: UserId,
    pub taker_side: Side,
    pub price: PriceTicks,
    pub quantity: QuantityLots,
    /// Price x quantity in quote minor units, rounded up ([`MarketSpec::notional`]).
    pub notional: QuoteUnits,
    /// What rounding up added to the exact notional: 0 where one tick on one
    /// lot is a whole number of minor units, else 0 or 1.
    pub notional_rounding: QuoteUnits,
    pub maker_fee: QuoteUnits,
    pub taker_fee: QuoteUnits,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Event {
    MarketAdded {
        market: MarketId,
    },
    MarketRejected {
        market: MarketId,
        code: RejectCode,
    },
    TradingSet {
        market: MarketId,
        trading: bool,
    },
    /// The order passed every check. Unless a `Done` or `Cancelled` for it follows
    /// in the same command's events, its unfilled rest now rests on the book.
    Accepted {
        market: MarketId,
        order_id: OrderId,
        user: UserId,
        side: Side,
        price: Option<PriceTicks>,
        quantity: QuantityLots,
    },
    Rejected {
        market: MarketId,
        order_id: OrderId,
        user: UserId,
        code: RejectCode,
    },
    Fill(Fill),
    /// An amend took effect: the order's price and total quantity are now
    /// these, `remaining` of it open.
    Amended {
        market: MarketId,
        order_id: OrderId,
        user: UserId,
        price: PriceTicks,
        quantity: QuantityLots,
        remaining: QuantityLots,
    },
    /// The order left the book (or never rested) with `remaining` unfilled.
    Cancelled {
        market: MarketId,
        order_id: OrderId,
        user: UserId,
        side: Side,
        remaining: QuantityLots,
        reason: CancelReason,
    },
    /// The order is completely filled.
    Done {
        market: MarketId,
        order_id: OrderId,
        user: UserId,
    },
    /// A stop order passed every check and waits for its trigger.
    StopArmed {
        market: MarketId,
        order_id: OrderId,
        user: UserId,
    },
    /// The price the stop watches, at `price` (a trade's, or the mark),
    /// fired it: its order's own events follow (Accepted or Rejected, then
    /// as for any order), after, for the stop of an OCO list, the Cancelled
    /// (OcoOther) of the list's limit order.
    StopTriggered {
        market: MarketId,
        order_id: OrderId,
        user: UserId,
        price: PriceTicks,
    },
    /// A `SetMark` took effect, after the events of the stops it fired.
    MarkSet {
        market: MarketId,
        price: PriceTicks,
    },
}

/// An order resting on a book, as it appears in a snapshot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct RestingOrder {
    pub order_id: OrderId,
    pub user: UserId,
    pub side: Side,
    pub price: PriceTicks,
    pub remaining: QuantityLots,
    /// Lots filled over the order's life, as taker and maker: an amend's
    /// total quantity less this is what stays open.
    pub filled: QuantityLots,
    /// Lots filled as a maker since the order last took this price: the running
    /// basis of its cumulative fee rounding (matching-core's `fee_increment`).
    pub maker_filled: QuantityLots,
    pub post_only: bool,
    pub self_trade: SelfTradePrevention,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PriceLevel {
    pub price: PriceTicks,
    pub quantity: QuantityLots,
    pub orders: u32,
}

/// One journal record of the matching daemon: a command as it was received.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JournalEntry {
    /// The sender and its sequence: replay restores each peer's progress from them.
    pub peer: u32,
    pub peer_sequence: u64,
    pub command: Command,
}

/// One market of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MarketSnapshot {
    pub spec: MarketSpec,
    pub trading: bool,
    /// The last trade's price: price bands are measured from it.
    pub last_price: Option<PriceTicks>,
    /// The last mark price the ledger set (perpetual markets).
    pub mark_price: Option<PriceTicks>,
    /// Canonical order: bids best first, then asks best first, each price
    /// level oldest first.
    pub orders: Vec<RestingOrder>,
    /// Armed stops, oldest first: arming order breaks ties when they fire
    /// (those watching the last trade, then those watching the mark).
    pub stops: Vec<ArmedStop>,
    /// OCO lists with both orders open, by the limit order's id.
    pub lists: Vec<OcoLink>,
}

/// Everything the engine holds, in canonical order: two engines in the same
/// state encode to the same bytes (the state hash is their blake3).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct EngineSnapshot {
    pub markets: Vec<MarketSnapshot>,
}
