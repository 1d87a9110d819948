//! The spot exchange: markets, orders held against the user's money and
//! sent to matching, and the settlement of matching's fills. Its money sits
//! in the wallet's accounts (an order's hold is LOCKED) and its fees in the
//! house's revenue.

use matching_api::{Event, Fill, MarketSpec, NewOrder, OrderKind, SelfTradePrevention, Side, TimeInForce, Trigger, TriggerDirection};
use serde::{Deserialize, Serialize};

use crate::candles::{Candle, CandleInterval, DayStats};
use crate::operators::ActionKind;
use crate::{Amount, AssetId, MarketId, OrderId, TimestampMs, TradeId, UserId};

pub const HOLD: u16 = 201;
pub const RELEASE: u16 = 202;
pub const TRADE: u16 = 203;
pub const FEE: u16 = 204;
/// A notional between minor units: the unit the buyer paid above what the seller received.
pub const ROUNDING: u16 = 205;

/// Spot orders hold money in the wallet's accounts; perpetual markets
/// declare theirs.
pub(crate) fn purpose_name(purpose: u8) -> Option<&'static str> {
    crate::perpetual::purpose_name(purpose)
}

pub(crate) fn code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        HOLD => "HOLD",
        RELEASE => "RELEASE",
        TRADE => "TRADE",
        FEE => "FEE",
        ROUNDING => "ROUNDING",
        _ => return crate::perpetual::code_name(code),
    })
}

/// A market as the ledger sees it: matching's spec plus what turns lots
/// into base minor units.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Market {
    pub base: AssetId,
    pub quote: AssetId,
    /// Base minor units in one lot (lot_size x 10^base_scale).
    pub base_units_per_lot: u64,
    pub spec: MarketSpec,
    /// False while the operators have it halted: no new orders, cancels
    /// still allowed. A market is created trading.
    pub trading: bool,
}

impl Market {
    pub fn id(&self) -> MarketId {
        self.spec.id
    }
}

/// What a user asks for when placing an order; the ledger assigns the id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderRequest {
    pub market: MarketId,
    pub side: Side,
    pub kind: OrderKind,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub price: Option<u64>,
    pub quantity: u64,
    pub self_trade: SelfTradePrevention,
    /// Good till this time by the ledger's clock (a GTC limit order only):
    /// then the ledger cancels what is left of it and it ends EXPIRED.
    pub expires_at_ms: Option<TimestampMs>,
    /// A stop order: held now, armed in matching, and placed as the order
    /// above when the watched price reaches the trigger.
    pub trigger: Option<Trigger>,
    /// Perpetual markets only: the order may only shrink the user's
    /// position. Refused when it would not (with their other reduce-only
    /// orders on that side, no more than the position); cancelled when a
    /// change of the position leaves it no longer reducing.
    pub reduce_only: bool,
}

/// An OCO list as a user asks for it: a limit order that rests (post-only)
/// and a stop-loss for the same quantity on the same side, of which at most
/// one trades (matching-api's `OcoList`). A sell's limit is above its
/// trigger, a buy's below; one hold covers the list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OcoRequest {
    pub market: MarketId,
    pub side: Side,
    pub quantity: u64,
    /// The limit order's price.
    pub price: u64,
    /// The stop's order once it fires: a market order (`stop_price`, a buy's
    /// protection price) or a GTC limit order at `stop_price`.
    pub stop_kind: OrderKind,
    pub stop_price: Option<u64>,
    /// The stop-loss's trigger price (a sell's fires at or below it, a buy's at or above).
    pub trigger_price: u64,
    pub self_trade: SelfTradePrevention,
}

impl OcoRequest {
    /// Which way a stop-loss on `side` faces.
    pub fn trigger_direction(side: Side) -> TriggerDirection {
        match side {
            Side::Sell => TriggerDirection::AtOrBelow,
            Side::Buy => TriggerDirection::AtOrAbove,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    CreateMarket(Market),
    /// Holds the worst case and sends the order to matching; idempotent by
    /// the user's `client_order_id`.
    PlaceOrder {
        user: UserId,
        request: OrderRequest,
        client_order_id: Option<String>,
    },
    CancelOrder {
        user: UserId,
        order_id: OrderId,
    },
    /// Halts a market (no new orders; cancels still allowed) or resumes it:
    /// an operator's action, like creating one.
    SetTrading {
        market: MarketId,
        trading: bool,
    },
    /// Matching's events for its output `sequence`, applied exactly once in order.
    ApplyMatching {
        sequence: u64,
        events: Vec<Event>,
    },
    /// Cancels every open order of `user`'s in `market` (one command to
    /// matching, so orders the request finds cannot outrun it).
    CancelAll {
        user: UserId,
        market: MarketId,
    },
    /// The ledger's own, journaled when an order's expiry has come by its
    /// clock: cancels every open order whose expiry is at or before the
    /// entry's stamped time, so a replay expires the same ones. Peers may
    /// not send it.
    ExpireOrders,
    /// Sets a resting order's price and total `quantity` (what stays open is
    /// the total less what has filled; at or below that, the order is
    /// cancelled). A smaller quantity at the same price keeps its place in
    /// the queue; a new price or a larger quantity loses it. The hold grows
    /// now to cover the new terms while fills at the old ones may still be
    /// on the way, and shrinks to them when matching confirms. One amend of
    /// an order at a time.
    AmendOrder {
        user: UserId,
        order_id: OrderId,
        price: u64,
        quantity: u64,
    },
    /// Holds the list's worst case once and sends it to matching as two
    /// orders (the limit order's id, the stop's next); idempotent by the
    /// user's `client_order_id` as an order is. Cancelling either order
    /// cancels both; neither can be amended.
    PlaceOco {
        user: UserId,
        request: OcoRequest,
        client_order_id: Option<String>,
    },
    /// A perpetual market's own: its listing, oracles, margin settings and the ledger's tick.
    Perpetual(crate::perpetual::Command),
}

/// Creating, halting and resuming a market are operators' actions.
pub(crate) fn operator_action(command: &Command) -> Option<ActionKind> {
    match command {
        Command::CreateMarket(_) | Command::SetTrading { .. } => Some(ActionKind::Market),
        Command::PlaceOrder { .. }
        | Command::PlaceOco { .. }
        | Command::CancelOrder { .. }
        | Command::AmendOrder { .. }
        | Command::CancelAll { .. }
        | Command::ApplyMatching { .. }
        | Command::ExpireOrders => None,
        Command::Perpetual(command) => crate::perpetual::operator_action(command),
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    MarketCreated(MarketId),
    /// Held and sent to matching: its verdict follows as order updates.
    OrderPlaced(OrderId),
    /// Sent to matching.
    CancelRequested(OrderId),
    /// The market trades (true) or is halted (false) from now on.
    TradingSet {
        market: MarketId,
        trading: bool,
    },
    /// The orders whose state changed.
    MatchingApplied {
        orders: Vec<OrderId>,
    },
    /// Sent to matching: the user's open orders in the market when the
    /// ledger took the request, oldest first.
    CancelAllRequested {
        market: MarketId,
        orders: Vec<OrderId>,
    },
    /// The cancels of the orders whose expiry came went to matching.
    ExpiryRequested {
        orders: Vec<OrderId>,
    },
    /// Held for and sent to matching: the order's `amending` clears when
    /// matching's verdict is applied.
    AmendRequested(OrderId),
    /// Held and sent to matching: the list's limit order and stop.
    OcoPlaced {
        limit: OrderId,
        stop: OrderId,
    },
    Perpetual(crate::perpetual::Outcome),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrderStatus {
    /// Held and sent to matching; not yet acknowledged by it.
    Pending,
    Open,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
    /// Cancelled by the ledger when its good-till time came.
    Expired,
    /// A stop armed in matching, waiting for its trigger; held. When it
    /// fires the order is placed and goes on as any other.
    Armed,
}

impl OrderStatus {
    /// Held and not yet ended: a stop armed or an order on its way to, or in, the book.
    pub fn is_open(self) -> bool {
        !self.is_final()
    }

    pub fn is_final(self) -> bool {
        matches!(self, OrderStatus::Filled | OrderStatus::Cancelled | OrderStatus::Rejected | OrderStatus::Expired)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct OrderRecord {
    pub order: NewOrder,
    pub client_order_id: Option<String>,
    pub status: OrderStatus,
    pub filled: u64,
    /// The quote its fills moved before fees: what the buyer paid (rounded
    /// up) or the seller received (rounded down), in minor units.
    pub filled_notional: u128,
    /// Sum of price x quantity of its fills in ticks x lots: the exact
    /// average price is this over `filled`.
    pub filled_tick_lots: u128,
    pub fees_paid: Amount,
    pub reject_reason: Option<String>,
    pub created_ms: TimestampMs,
    pub updated_ms: TimestampMs,
    /// Good till this time (the ledger's clock).
    pub expires_at_ms: Option<TimestampMs>,
    /// The ledger sent its cancel because it expired: its Cancelled ends it EXPIRED.
    pub expiring: bool,
    /// An amend sent to matching and not yet answered.
    pub amending: Option<AmendTerms>,
    /// Why matching refused the last amend (its reject code's name);
    /// cleared by the next.
    pub amend_refused: Option<String>,
    /// A stop order's trigger.
    pub trigger: Option<Trigger>,
    /// When matching fired the stop (the ledger's clock as it applied it).
    pub triggered_ms: Option<TimestampMs>,
    /// The other order of its OCO list.
    pub oco_with: Option<OrderId>,
    /// A reduce-only order (perpetual markets).
    pub reduce_only: bool,
}

/// What an amend asks for: the new price and total quantity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AmendTerms {
    pub price: u64,
    pub quantity: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TradeRecord {
    pub id: TradeId,
    pub fill: Fill,
    /// In the quote asset.
    pub buyer_fee: Amount,
    pub seller_fee: Amount,
    pub at_ms: TimestampMs,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Markets,
    /// Any order by id; the caller decides who may see it.
    Order {
        order_id: OrderId,
    },
    /// A user's orders, newest first.
    Orders {
        user: UserId,
        market: Option<MarketId>,
        status: Option<OrderStatus>,
        limit: u32,
    },
    /// A user's trades, newest first.
    UserTrades {
        user: UserId,
        market: Option<MarketId>,
        limit: u32,
    },
    /// A market's trades, newest first.
    MarketTrades {
        market: MarketId,
        limit: u32,
    },
    /// A market's stored candles of one interval whose start is in
    /// `from_ms..=to_ms` (at most [`crate::QUERY_LIMIT_MAX`] intervals),
    /// oldest first, and the last one before them; the reader fills the
    /// intervals without trades (`candles::fill_gaps`).
    Candles {
        market: MarketId,
        interval: CandleInterval,
        from_ms: TimestampMs,
        to_ms: TimestampMs,
    },
    /// A market's rolling 24 hours at `now_ms` (`candles::day_stats`).
    DayStats {
        market: MarketId,
        now_ms: TimestampMs,
    },
    Perpetual(crate::perpetual::Query),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Markets(Vec<Market>),
    Order(Option<OrderRecord>),
    Orders(Vec<OrderRecord>),
    Trades(Vec<TradeRecord>),
    Candles {
        before: Option<Candle>,
        candles: Vec<Candle>,
    },
    /// None before the market's first trade.
    DayStats(Option<DayStats>),
    Perpetual(crate::perpetual::Answer),
}
