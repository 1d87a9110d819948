//! The spot exchange: markets, the order book, orders and trades, and the
//! market data subscriptions.

use async_graphql::{Context, Enum, Error, InputObject, Object, SimpleObject, Subscription as SubscriptionObject, ID};
use futures_util::stream::{self, Stream, StreamExt};
use ledger_api::spot::{self as api, Command, Market as LedgerMarket, OrderRecord, OrderRequest, OrderStatus as LedgerStatus, TradeRecord};
use ledger_api::{Answer, AssetSpec, MarketId, Outcome, Query};
use matching_api::{
    MarketSpec, OrderKind, SelfTradePrevention, Side as CoreSide, TimeInForce as CoreTif, Trigger, TriggerDirection, TriggerSource as CoreTriggerSource,
};
use rust_decimal::Decimal;

use super::kernel::Asset;
use super::{
    ask, at, caller_id, coded, fell_behind, link_error, list_limit, operator, run, services, take_slot, unexpected, Catalog, DateTime, Dec, DEPTH_DEFAULT,
    LIST_LIMIT_DEFAULT,
};
use crate::units::{self, MarketTerms};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Side {
    Buy,
    Sell,
}

/// Stops and take-profits wait armed in matching, held, until the trigger
/// source reaches `triggerPrice`, then are placed as a market order (with
/// `price` as a buy's protection price) or a limit order at `price`. A
/// stop-loss fires at or below its trigger for a sell, at or above for a
/// buy; a take-profit the other way round.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OrderType {
    Limit,
    Market,
    StopLoss,
    StopLossLimit,
    TakeProfit,
    TakeProfitLimit,
}

impl OrderType {
    /// The order placed when it fires, and which way its trigger faces for `side`.
    fn parts(self, side: CoreSide) -> (OrderKind, Option<TriggerDirection>) {
        let toward = |stop_loss: bool| match (side, stop_loss) {
            (CoreSide::Sell, true) | (CoreSide::Buy, false) => TriggerDirection::AtOrBelow,
            (CoreSide::Buy, true) | (CoreSide::Sell, false) => TriggerDirection::AtOrAbove,
        };
        match self {
            OrderType::Limit => (OrderKind::Limit, None),
            OrderType::Market => (OrderKind::Market, None),
            OrderType::StopLoss => (OrderKind::Market, Some(toward(true))),
            OrderType::StopLossLimit => (OrderKind::Limit, Some(toward(true))),
            OrderType::TakeProfit => (OrderKind::Market, Some(toward(false))),
            OrderType::TakeProfitLimit => (OrderKind::Limit, Some(toward(false))),
        }
    }

    fn of(kind: OrderKind, side: CoreSide, trigger: Option<&Trigger>) -> OrderType {
        let stop_loss = |trigger: &Trigger| (side == CoreSide::Sell) == (trigger.direction == TriggerDirection::AtOrBelow);
        match (kind, trigger) {
            (OrderKind::Limit, None) => OrderType::Limit,
            (OrderKind::Market, None) => OrderType::Market,
            (OrderKind::Market, Some(t)) if stop_loss(t) => OrderType::StopLoss,
            (OrderKind::Limit, Some(t)) if stop_loss(t) => OrderType::StopLossLimit,
            (OrderKind::Market, Some(_)) => OrderType::TakeProfit,
            (OrderKind::Limit, Some(_)) => OrderType::TakeProfitLimit,
        }
    }
}

/// The price a stop watches.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TriggerSource {
    /// The price of the market's last trade.
    LastPrice,
    /// The mark price of a perpetual market (a spot market has none: a
    /// stop on it is refused with BAD_USER_INPUT).
    MarkPrice,
}

impl From<TriggerSource> for CoreTriggerSource {
    fn from(source: TriggerSource) -> Self {
        match source {
            TriggerSource::LastPrice => CoreTriggerSource::LastTrade,
            TriggerSource::MarkPrice => CoreTriggerSource::Mark,
        }
    }
}

impl From<CoreTriggerSource> for TriggerSource {
    fn from(source: CoreTriggerSource) -> Self {
        match source {
            CoreTriggerSource::LastTrade => TriggerSource::LastPrice,
            CoreTriggerSource::Mark => TriggerSource::MarkPrice,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TimeInForce {
    Gtc,
    Ioc,
    Fok,
    /// Good till `expiresAt` (a limit order): then, by the ledger's clock,
    /// what is left of it is cancelled and it ends EXPIRED.
    Gtd,
}

/// What happens when an order would trade with a resting order of the same user.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum SelfTradePreventionMode {
    /// Cancel the rest of the incoming order; the resting one stays (the default).
    CancelTaker,
    /// Cancel the resting order and keep matching the incoming one.
    CancelMaker,
    /// Cancel both.
    CancelBoth,
}

impl From<SelfTradePreventionMode> for SelfTradePrevention {
    fn from(mode: SelfTradePreventionMode) -> Self {
        match mode {
            SelfTradePreventionMode::CancelTaker => SelfTradePrevention::CancelTaker,
            SelfTradePreventionMode::CancelMaker => SelfTradePrevention::CancelMaker,
            SelfTradePreventionMode::CancelBoth => SelfTradePrevention::CancelBoth,
        }
    }
}

impl From<SelfTradePrevention> for SelfTradePreventionMode {
    fn from(mode: SelfTradePrevention) -> Self {
        match mode {
            SelfTradePrevention::CancelTaker => SelfTradePreventionMode::CancelTaker,
            SelfTradePrevention::CancelMaker => SelfTradePreventionMode::CancelMaker,
            SelfTradePrevention::CancelBoth => SelfTradePreventionMode::CancelBoth,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OrderStatus {
    Open,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
    /// A good-till-date order whose time came.
    Expired,
}

impl From<CoreSide> for Side {
    fn from(side: CoreSide) -> Side {
        match side {
            CoreSide::Buy => Side::Buy,
            CoreSide::Sell => Side::Sell,
        }
    }
}

fn api_status(record: &OrderRecord) -> OrderStatus {
    match record.status {
        // Held and on its way to matching, or a stop armed there (its
        // triggeredAt is null): it rests or trades next.
        LedgerStatus::Pending | LedgerStatus::Open | LedgerStatus::Armed => OrderStatus::Open,
        LedgerStatus::PartiallyFilled => OrderStatus::PartiallyFilled,
        LedgerStatus::Filled => OrderStatus::Filled,
        LedgerStatus::Cancelled => OrderStatus::Cancelled,
        LedgerStatus::Rejected => OrderStatus::Rejected,
        LedgerStatus::Expired => OrderStatus::Expired,
    }
}

fn ledger_status(status: OrderStatus) -> Vec<LedgerStatus> {
    match status {
        OrderStatus::Open => vec![LedgerStatus::Pending, LedgerStatus::Open, LedgerStatus::Armed],
        OrderStatus::PartiallyFilled => vec![LedgerStatus::PartiallyFilled],
        OrderStatus::Filled => vec![LedgerStatus::Filled],
        OrderStatus::Cancelled => vec![LedgerStatus::Cancelled],
        OrderStatus::Rejected => vec![LedgerStatus::Rejected],
        OrderStatus::Expired => vec![LedgerStatus::Expired],
    }
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct Market {
    pub id: ID,
    pub base: Asset,
    pub quote: Asset,
    pub tick_size: Dec,
    pub lot_size: Dec,
    pub maker_fee_rate: Dec,
    pub taker_fee_rate: Dec,
    /// False while the operators have the market halted: new orders are
    /// refused with MARKET_CLOSED, cancels are still allowed.
    pub trading: bool,
    /// How far a limit price may be from the last trade (before the first,
    /// from the best opposite price), as a fraction: 0.1 is 10%. Further is
    /// refused with PRICE_OUT_OF_BAND. Null: no band.
    pub price_band: Option<Dec>,
}

#[async_graphql::ComplexObject]
impl Market {
    /// The price of the market's last trade; null before its first.
    async fn last_price(&self, ctx: &Context<'_>) -> Result<Option<Dec>, Error> {
        let catalog = Catalog::covering(ctx, |c| c.market_by_name(&self.id).is_ok()).await?;
        let (market, terms, ..) = catalog.market_by_name(&self.id)?;
        Ok(last_trade_price(ctx, market.id(), &terms).await?.map(Dec))
    }
}

async fn last_trade_price(ctx: &Context<'_>, market: u32, terms: &MarketTerms) -> Result<Option<Decimal>, Error> {
    let api::Answer::Trades(trades) = ask_spot(ctx, api::Query::MarketTrades { market, limit: 1 }).await? else { return Err(unexpected("trades")) };
    Ok(trades.first().map(|t| units::times(t.fill.price, terms.tick_size)))
}

/// Trades looked at to value an asset for withdrawal limits.
const VALUATION_TRADES: u32 = 20;

/// The lowest and highest price of a market's last [`VALUATION_TRADES`] trades.
async fn recent_price_range(ctx: &Context<'_>, market: u32, terms: &MarketTerms) -> Result<Option<(Decimal, Decimal)>, Error> {
    let api::Answer::Trades(trades) = ask_spot(ctx, api::Query::MarketTrades { market, limit: VALUATION_TRADES }).await? else {
        return Err(unexpected("trades"));
    };
    let prices = trades.iter().map(|t| units::times(t.fill.price, terms.tick_size));
    Ok(prices.clone().min().zip(prices.max()))
}

/// What one unit of `asset` is worth in `reference`, by the recent trades
/// of a market between them (either way round), taken at its highest: one
/// trade at a low price (a user trading with themselves) cannot shrink a
/// withdrawal's value. None when no such market has traded.
pub(crate) async fn reference_price(ctx: &Context<'_>, catalog: &Catalog, asset: u32, reference: u32) -> Result<Option<Decimal>, Error> {
    if asset == reference {
        return Ok(Some(Decimal::ONE));
    }
    for market in &catalog.markets {
        let Some((terms, ..)) = catalog.terms(market) else { continue };
        let price = match (market.base, market.quote) {
            (base, quote) if base == asset && quote == reference => recent_price_range(ctx, market.id(), &terms).await?.map(|(_, high)| high),
            (base, quote) if base == reference && quote == asset => {
                recent_price_range(ctx, market.id(), &terms).await?.map(|(low, _)| low).filter(|p| !p.is_zero()).and_then(|p| Decimal::ONE.checked_div(p))
            }
            _ => continue,
        };
        if price.is_some() {
            return Ok(price);
        }
    }
    Ok(None)
}

#[derive(SimpleObject)]
pub struct PriceLevel {
    pub price: Dec,
    pub quantity: Dec,
}

#[derive(SimpleObject)]
pub struct OrderBook {
    pub market: ID,
    /// Matching's output sequence the book is as of: later updates carry higher ones.
    pub sequence: String,
    pub bids: Vec<PriceLevel>,
    pub asks: Vec<PriceLevel>,
}

#[derive(SimpleObject)]
pub struct Order {
    pub id: ID,
    pub client_order_id: Option<String>,
    pub market: ID,
    pub side: Side,
    #[graphql(name = "type")]
    pub order_type: OrderType,
    pub time_in_force: TimeInForce,
    pub post_only: bool,
    pub self_trade_prevention: SelfTradePreventionMode,
    pub price: Option<Dec>,
    pub quantity: Dec,
    pub filled_quantity: Dec,
    pub average_price: Option<Dec>,
    pub status: OrderStatus,
    pub reject_reason: Option<String>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    /// A GTD order's expiry.
    pub expires_at: Option<DateTime>,
    /// Why matching refused this order's last amend (its code), if it did.
    pub amend_refused: Option<String>,
    /// A stop's or take-profit's trigger price and the price it watches.
    pub trigger_price: Option<Dec>,
    pub trigger_source: Option<TriggerSource>,
    /// When the stop fired and the order was placed; null while it waits.
    pub triggered_at: Option<DateTime>,
    /// The other order of its OCO list: cancelling either cancels both.
    pub oco_with: Option<ID>,
    /// It may only shrink a perpetual position (placeOrder's reduceOnly).
    pub reduce_only: bool,
}

/// An OCO list's two orders: the limit order (type LIMIT, post-only) and
/// the stop (STOP_LOSS or STOP_LOSS_LIMIT).
#[derive(SimpleObject)]
pub struct OcoOrders {
    pub limit_order: Order,
    pub stop_order: Order,
}

/// One-cancels-the-other: a limit order that rests and a stop-loss for the
/// same quantity. Any fill of the limit order cancels the stop; the stop
/// firing cancels the limit order; cancelling either cancels both. A sell's
/// limit price is above the trigger price, a buy's below.
#[derive(InputObject)]
pub struct PlaceOcoOrderInput {
    pub market: ID,
    pub side: Side,
    pub quantity: Dec,
    /// The limit order's price: it rests (post-only), refused with
    /// POST_ONLY_WOULD_TAKE if it would trade at once.
    pub price: Dec,
    pub trigger_price: Dec,
    /// STOP_LOSS (a market order once it fires) or STOP_LOSS_LIMIT.
    pub stop_type: OrderType,
    /// The stop-limit's price, or a STOP_LOSS buy's protection price.
    pub stop_price: Option<Dec>,
    pub client_order_id: Option<String>,
    /// Null is CANCEL_TAKER.
    #[graphql(default_with = "Some(SelfTradePreventionMode::CancelTaker)")]
    pub self_trade_prevention: Option<SelfTradePreventionMode>,
}

#[derive(SimpleObject)]
pub struct Trade {
    pub id: ID,
    pub market: ID,
    pub price: Dec,
    pub quantity: Dec,
    pub taker_side: Side,
    pub created_at: DateTime,
    pub order_id: Option<ID>,
    pub side: Option<Side>,
    pub fee: Option<Dec>,
    pub fee_asset: Option<String>,
}

#[derive(SimpleObject, InputObject)]
pub struct PlaceOrderInput {
    pub market: ID,
    pub side: Side,
    #[graphql(name = "type")]
    pub order_type: OrderType,
    pub quantity: Dec,
    pub price: Option<Dec>,
    /// Nullable with a default, as the contract has it: null is GTC.
    #[graphql(default_with = "Some(TimeInForce::Gtc)")]
    pub time_in_force: Option<TimeInForce>,
    /// Null is false.
    #[graphql(default_with = "Some(false)")]
    pub post_only: Option<bool>,
    pub client_order_id: Option<String>,
    /// Null is CANCEL_TAKER.
    #[graphql(default_with = "Some(SelfTradePreventionMode::CancelTaker)")]
    pub self_trade_prevention: Option<SelfTradePreventionMode>,
    /// When a GTD order expires (RFC 3339); required with GTD, refused otherwise.
    pub expires_at: Option<DateTime>,
    /// Where a stop or take-profit fires (required with those types, refused with others).
    pub trigger_price: Option<Dec>,
    /// The price the trigger watches; null is LAST_PRICE.
    #[graphql(default_with = "Some(TriggerSource::LastPrice)")]
    pub trigger_source: Option<TriggerSource>,
    /// Perpetual markets only: the order may only shrink the position
    /// (with the caller's other reduce-only orders on its side, no more
    /// than it holds); refused otherwise, and cancelled when the position
    /// changes so that it would no longer reduce it. Null is false.
    #[graphql(default_with = "Some(false)")]
    pub reduce_only: Option<bool>,
}

#[derive(InputObject)]
pub struct CreateMarketInput {
    pub base: String,
    pub quote: String,
    pub tick_size: Dec,
    pub lot_size: Dec,
    pub maker_fee_rate: Dec,
    pub taker_fee_rate: Dec,
    /// How far a limit price may be from the last trade, as a fraction
    /// above 0 and at most 1 (0.1 is 10%); none for no band.
    pub price_band: Option<Dec>,
}

// ---- the catalog's markets ----

impl Catalog {
    fn has_market(&self, id: MarketId) -> bool {
        self.markets.iter().any(|m| m.id() == id)
    }

    pub(super) fn terms(&self, market: &LedgerMarket) -> Option<(MarketTerms, &AssetSpec, &AssetSpec)> {
        let (base, quote) = (self.asset(market.base)?, self.asset(market.quote)?);
        let mut terms = units::market_terms(market, base, quote);
        if self.is_perpetual(market.id()) {
            terms.name.push_str("-PERP");
        }
        Some((terms, base, quote))
    }

    pub(super) fn market_by_name(&self, name: &str) -> Result<(&LedgerMarket, MarketTerms, &AssetSpec, &AssetSpec), Error> {
        self.markets
            .iter()
            .filter_map(|m| self.terms(m).map(|(terms, base, quote)| (m, terms, base, quote)))
            .find(|(_, terms, ..)| terms.name == name)
            .ok_or_else(|| coded("NOT_FOUND", format!("no market {name}")))
    }

    fn market_name(&self, id: u32) -> String {
        self.markets.iter().find(|m| m.id() == id).and_then(|m| self.terms(m)).map(|(terms, ..)| terms.name).unwrap_or_else(|| id.to_string())
    }

    fn api_market(&self, market: &LedgerMarket) -> Option<Market> {
        let (terms, base, quote) = self.terms(market)?;
        Some(Market {
            id: ID(terms.name.clone()),
            base: base.into(),
            quote: quote.into(),
            tick_size: Dec(terms.tick_size),
            lot_size: Dec(terms.lot_size),
            maker_fee_rate: Dec(terms.maker_fee_rate),
            taker_fee_rate: Dec(terms.taker_fee_rate),
            trading: market.trading,
            price_band: (market.spec.price_band_ppm > 0).then(|| Dec(Decimal::new(market.spec.price_band_ppm.into(), 6).normalize())),
        })
    }

    fn api_order(&self, record: &OrderRecord) -> Order {
        let order = &record.order;
        let market = self.markets.iter().find(|m| m.id() == order.market);
        let terms = market.and_then(|m| self.terms(m));
        let (tick, lot) = terms.as_ref().map(|(t, ..)| (t.tick_size, t.lot_size)).unwrap_or((Decimal::ONE, Decimal::ONE));
        let average = average_price(record.filled_tick_lots, record.filled, tick).map(Dec);
        Order {
            id: ID(units::order_uuid(order.order_id)),
            client_order_id: record.client_order_id.clone(),
            market: ID(self.market_name(order.market)),
            side: order.side.into(),
            order_type: OrderType::of(order.kind, order.side, record.trigger.as_ref()),
            time_in_force: match order.time_in_force {
                CoreTif::Gtc if record.expires_at_ms.is_some() => TimeInForce::Gtd,
                CoreTif::Gtc => TimeInForce::Gtc,
                CoreTif::Ioc => TimeInForce::Ioc,
                CoreTif::Fok => TimeInForce::Fok,
            },
            post_only: order.post_only,
            self_trade_prevention: order.self_trade.into(),
            price: order.price.map(|p| Dec(units::times(p, tick))),
            quantity: Dec(units::times(order.quantity, lot)),
            filled_quantity: Dec(units::times(record.filled, lot)),
            average_price: average,
            status: api_status(record),
            reject_reason: record.reject_reason.clone(),
            created_at: at(record.created_ms),
            updated_at: at(record.updated_ms),
            expires_at: record.expires_at_ms.map(at),
            amend_refused: record.amend_refused.clone(),
            trigger_price: record.trigger.map(|t| Dec(units::times(t.price, tick))),
            trigger_source: record.trigger.map(|t| t.source.into()),
            triggered_at: record.triggered_ms.map(at),
            oco_with: record.oco_with.map(|other| ID(units::order_uuid(other))),
            reduce_only: record.reduce_only,
        }
    }
}

async fn order_by_id(ctx: &Context<'_>, order_id: u64) -> Result<Option<OrderRecord>, Error> {
    match ask_spot(ctx, api::Query::Order { order_id }).await? {
        api::Answer::Order(order) => Ok(order),
        other => Err(unexpected(other)),
    }
}

/// A user's kill switch: while engaged their new orders are refused
/// (KILL_SWITCH_ENGAGED). The user and the operators each hold their own
/// side and lift only that.
#[derive(SimpleObject)]
pub struct KillSwitch {
    pub engaged: bool,
    /// Engaged by the user (or one of their API keys): theirs to lift.
    pub engaged_by_user: bool,
    /// Engaged by the operators: only they lift it, under the
    /// `account_freeze` approvals.
    pub engaged_by_operators: bool,
    /// How many open orders engaging it cancelled; null when only read.
    pub orders_cancelled: Option<i32>,
}

impl KillSwitch {
    pub(super) fn of(state: ledger_api::operators::KillSwitch, orders_cancelled: Option<u32>) -> KillSwitch {
        KillSwitch {
            engaged: state.engaged(),
            engaged_by_user: state.by_user,
            engaged_by_operators: state.by_operators,
            orders_cancelled: orders_cancelled.map(|n| i32::try_from(n).unwrap_or(i32::MAX)),
        }
    }
}

pub(super) async fn kill_switch_of(ctx: &Context<'_>, user: u64) -> Result<KillSwitch, Error> {
    match ask(ctx, Query::Operators(ledger_api::operators::Query::KillSwitch { user })).await? {
        Answer::Operators(ledger_api::operators::Answer::KillSwitch(state)) => Ok(KillSwitch::of(state, None)),
        other => Err(unexpected(other)),
    }
}

/// Answers once the orders the switch cancelled have ended (or, past
/// order_settle_timeout_ms, while their cancels are on the way), so that
/// what the caller reads next no longer holds money for them.
async fn set_own_kill_switch(ctx: &Context<'_>, engaged: bool) -> Result<KillSwitch, Error> {
    let user = caller_id(ctx)?;
    // Subscribed before the open orders are read, so that none of them ends unseen.
    let mut updates = services(ctx).ledger.order_updates();
    let mut pending = std::collections::BTreeSet::new();
    if engaged {
        for status in [LedgerStatus::Pending, LedgerStatus::Open, LedgerStatus::PartiallyFilled, LedgerStatus::Armed] {
            let query = api::Query::Orders { user, market: None, status: Some(status), limit: ledger_api::QUERY_LIMIT_MAX };
            let api::Answer::Orders(open) = ask_spot(ctx, query).await? else { return Err(unexpected("orders")) };
            pending.extend(open.iter().map(|o| o.order.order_id));
        }
    }
    match run(ctx, ledger_api::Command::Operators(ledger_api::operators::Command::KillSwitch { user, engaged })).await? {
        Outcome::Operators(ledger_api::operators::Outcome::KillSwitchSet { state, orders_cancelled, .. }) => {
            tracing::info!(event = "kill_switch", user, engaged, orders_cancelled, "a user set their own kill switch");
            let deadline = tokio::time::Instant::now() + services(ctx).order_settle_timeout;
            while !pending.is_empty() {
                match tokio::time::timeout_at(deadline, updates.recv()).await {
                    Ok(Ok(batch)) => {
                        for record in batch.iter().filter(|o| o.status.is_final()) {
                            pending.remove(&record.order.order_id);
                        }
                    }
                    // Updates skipped: wait on for the rest, to the deadline at most.
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Lagged(_))) => {}
                    Ok(Err(tokio::sync::broadcast::error::RecvError::Closed)) | Err(_) => break,
                }
            }
            Ok(KillSwitch::of(state, Some(orders_cancelled)))
        }
        other => Err(unexpected(other)),
    }
}

#[derive(Default)]
pub struct SpotQuery;

#[Object]
impl SpotQuery {
    /// The caller's kill switch.
    async fn kill_switch(&self, ctx: &Context<'_>) -> Result<KillSwitch, Error> {
        kill_switch_of(ctx, caller_id(ctx)?).await
    }

    async fn markets(&self, ctx: &Context<'_>) -> Result<Vec<Market>, Error> {
        let catalog = Catalog::load(ctx).await?;
        Ok(catalog.markets.iter().filter_map(|m| catalog.api_market(m)).collect())
    }

    async fn market(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Market>, Error> {
        let catalog = Catalog::load(ctx).await?;
        Ok(catalog.market_by_name(&id).ok().and_then(|(market, ..)| catalog.api_market(market)))
    }

    async fn order_book(&self, ctx: &Context<'_>, market: ID, #[graphql(default_with = "Some(DEPTH_DEFAULT)")] depth: Option<i32>) -> Result<OrderBook, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, terms, ..) = catalog.market_by_name(&market)?;
        let depth = checked_depth(depth.unwrap_or(DEPTH_DEFAULT))?;
        let book = services(ctx).matching.depth(ledger_market.id(), depth).await.map_err(link_error)?;
        // A market the ledger has but matching has not yet added is an empty book.
        Ok(match book {
            Some(book) => api_book(&terms, &book, &book.bids, &book.asks),
            None => OrderBook { market: ID(terms.name.clone()), sequence: "0".into(), bids: Vec::new(), asks: Vec::new() },
        })
    }

    async fn trades(
        &self,
        ctx: &Context<'_>,
        market: ID,
        #[graphql(default_with = "Some(LIST_LIMIT_DEFAULT)")] limit: Option<i32>,
    ) -> Result<Vec<Trade>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, terms, ..) = catalog.market_by_name(&market)?;
        let api::Answer::Trades(trades) = ask_spot(ctx, api::Query::MarketTrades { market: ledger_market.id(), limit: list_limit(limit) }).await? else {
            return Err(unexpected("trades"));
        };
        Ok(trades.iter().map(|t| public_trade(t, &terms)).collect())
    }

    /// The caller's order; null for an unknown id and for anyone else's (the
    /// answer does not reveal that the order exists).
    async fn user_order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>, Error> {
        let user = caller_id(ctx)?;
        let Some(order_id) = units::parse_order_uuid(&id) else { return Ok(None) };
        let Some(record) = order_by_id(ctx, order_id).await?.filter(|r| r.order.user == user) else { return Ok(None) };
        Ok(Some(Catalog::covering(ctx, |c| c.has_market(record.order.market)).await?.api_order(&record)))
    }

    async fn user_orders(
        &self,
        ctx: &Context<'_>,
        market: Option<ID>,
        status: Option<OrderStatus>,
        #[graphql(default_with = "Some(LIST_LIMIT_DEFAULT)")] limit: Option<i32>,
    ) -> Result<Vec<Order>, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let market = market.map(|m| catalog.market_by_name(&m).map(|(m, ..)| m.id())).transpose()?;
        let limit = list_limit(limit);
        // OPEN covers two ledger states; one query each keeps the limit exact per state.
        let mut records = Vec::new();
        let statuses: Vec<Option<LedgerStatus>> = match status {
            Some(status) => ledger_status(status).into_iter().map(Some).collect(),
            None => vec![None],
        };
        for status in statuses {
            let api::Answer::Orders(found) = ask_spot(ctx, api::Query::Orders { user, market, status, limit }).await? else { return Err(unexpected("orders")) };
            records.extend(found);
        }
        records.sort_by_key(|record| std::cmp::Reverse(record.order.order_id));
        records.truncate(limit as usize);
        Ok(records.iter().map(|r| catalog.api_order(r)).collect())
    }

    async fn user_trades(
        &self,
        ctx: &Context<'_>,
        market: Option<ID>,
        #[graphql(default_with = "Some(LIST_LIMIT_DEFAULT)")] limit: Option<i32>,
    ) -> Result<Vec<Trade>, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let market = market.map(|m| catalog.market_by_name(&m).map(|(m, ..)| m.id())).transpose()?;
        let api::Answer::Trades(trades) = ask_spot(ctx, api::Query::UserTrades { user, market, limit: list_limit(limit) }).await? else {
            return Err(unexpected("trades"));
        };
        Ok(trades
            .iter()
            .filter_map(|t| {
                let ledger_market = catalog.markets.iter().find(|m| m.id() == t.fill.market)?;
                let (terms, _, quote) = catalog.terms(ledger_market)?;
                let mut trade = public_trade(t, &terms);
                let taker = t.fill.taker_user == user;
                let (order, side, fee) = if taker {
                    (t.fill.taker_order, t.fill.taker_side, t.fill.taker_fee)
                } else {
                    (t.fill.maker_order, opposite(t.fill.taker_side), t.fill.maker_fee)
                };
                trade.order_id = Some(ID(units::order_uuid(order)));
                trade.side = Some(side.into());
                trade.fee = Some(Dec(units::to_decimal(fee as i128, quote.scale)));
                trade.fee_asset = Some(quote.symbol.clone());
                Some(trade)
            })
            .collect())
    }
}

fn opposite(side: CoreSide) -> CoreSide {
    match side {
        CoreSide::Buy => CoreSide::Sell,
        CoreSide::Sell => CoreSide::Buy,
    }
}

/// An order's average fill price: `filled_tick_lots` (price x quantity
/// over its fills) over `filled` lots, in ticks of `tick`: exact, whatever
/// rounding moved the money. None where a decimal cannot hold it (beyond
/// 2^96 ticks x lots): an answer without the average, where the plain
/// operators would panic and take the gateway down each time the order is
/// shown.
fn average_price(filled_tick_lots: u128, filled: u64, tick: Decimal) -> Option<Decimal> {
    let tick_lots = Decimal::try_from_i128_with_scale(i128::try_from(filled_tick_lots).ok()?, 0).ok()?;
    let ticks = tick_lots.checked_div(Decimal::from(filled))?;
    Some(ticks.checked_mul(tick)?.normalize())
}

fn public_trade(trade: &TradeRecord, terms: &MarketTerms) -> Trade {
    Trade {
        id: ID(trade.id.to_string()),
        market: ID(terms.name.clone()),
        price: Dec(units::times(trade.fill.price, terms.tick_size)),
        quantity: Dec(units::times(trade.fill.quantity, terms.lot_size)),
        taker_side: trade.fill.taker_side.into(),
        created_at: at(trade.at_ms),
        order_id: None,
        side: None,
        fee: None,
        fee_asset: None,
    }
}

#[derive(Default)]
pub struct SpotMutation;

#[Object]
impl SpotMutation {
    /// Stops the caller's trading at once: every open order is cancelled
    /// and new ones are refused (KILL_SWITCH_ENGAGED) until the caller lifts
    /// it. Answers once the orders are cancelled (or, past
    /// order_settle_timeout_ms, once their cancels are on the way). An API
    /// key with the TRADE scope may engage it; lifting needs a login.
    async fn engage_kill_switch(&self, ctx: &Context<'_>) -> Result<KillSwitch, Error> {
        set_own_kill_switch(ctx, true).await
    }

    /// Lifts the caller's own kill switch; one the operators engaged stays
    /// until they lift it.
    async fn lift_kill_switch(&self, ctx: &Context<'_>) -> Result<KillSwitch, Error> {
        set_own_kill_switch(ctx, false).await
    }

    async fn place_order(&self, ctx: &Context<'_>, input: PlaceOrderInput) -> Result<Order, Error> {
        place(ctx, input).await
    }

    /// Places an OCO list (see PlaceOcoOrderInput) and answers both orders
    /// once matching has taken them (or, past order_settle_timeout_ms, as
    /// they are); refused whole with matching's code (POST_ONLY_WOULD_TAKE,
    /// WOULD_TRIGGER_NOW, ...) when either order is.
    async fn place_oco_order(&self, ctx: &Context<'_>, input: PlaceOcoOrderInput) -> Result<OcoOrders, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::covering(ctx, |c| c.market_by_name(&input.market).is_ok()).await?;
        let (market, terms, ..) = catalog.market_by_name(&input.market)?;
        let refuse = |(code, message): units::Refusal| coded(code, message);
        let stop_kind = match input.stop_type {
            OrderType::StopLoss => OrderKind::Market,
            OrderType::StopLossLimit => OrderKind::Limit,
            _ => return Err(coded("BAD_USER_INPUT", "an OCO list's stop is STOP_LOSS or STOP_LOSS_LIMIT")),
        };
        let request = api::OcoRequest {
            market: market.id(),
            side: match input.side {
                Side::Buy => CoreSide::Buy,
                Side::Sell => CoreSide::Sell,
            },
            quantity: units::to_lots(input.quantity.0, &terms).map_err(refuse)?,
            price: units::to_ticks(input.price.0, &terms).map_err(refuse)?,
            stop_kind,
            stop_price: input.stop_price.map(|p| units::to_ticks(p.0, &terms)).transpose().map_err(refuse)?,
            trigger_price: units::to_ticks(input.trigger_price.0, &terms).map_err(refuse)?,
            self_trade: input.self_trade_prevention.unwrap_or(SelfTradePreventionMode::CancelTaker).into(),
        };
        let services = services(ctx);
        let command = ledger_api::Command::Spot(Command::PlaceOco { user, request, client_order_id: input.client_order_id.clone() });
        let (outcome, settlement) = services.ledger.place_order(command).await.map_err(super::link_error)?;
        let (limit, stop) = match outcome.map_err(super::ledger_error)? {
            Outcome::Spot(api::Outcome::OcoPlaced { limit, stop }) => (limit, stop),
            other => return Err(unexpected(other)),
        };
        // Settled when the stop is (matching answers for the limit order first); a replayed
        // request's stop settled long ago and is not waited for.
        if order_by_id(ctx, stop).await?.is_some_and(|r| r.status == LedgerStatus::Pending) {
            let _ = tokio::time::timeout(services.order_settle_timeout, settlement).await;
        }
        let read = |id| async move { order_by_id(ctx, id).await?.ok_or_else(|| unexpected("the placed order is missing")) };
        let (limit, stop) = (read(limit).await?, read(stop).await?);
        for record in [&limit, &stop] {
            if record.status == LedgerStatus::Rejected {
                if let Some(error) = matching_refusal(market, "the OCO list", record.reject_reason.as_deref().unwrap_or_default()) {
                    return Err(error);
                }
            }
        }
        Ok(OcoOrders { limit_order: catalog.api_order(&limit), stop_order: catalog.api_order(&stop) })
    }

    /// Amends a resting order: a new price, a new total quantity (what has
    /// filled included), or both; what is left out stays. A smaller quantity
    /// at the same price keeps the order's place in the queue; a new price
    /// or a larger quantity loses it, and the order may trade at once. A
    /// total at or below what has filled cancels the rest. Answers once
    /// matching has taken the amend (or, past order_settle_timeout_ms,
    /// while it is on its way); a refused amend is an error with matching's
    /// code and leaves the order as it was.
    async fn amend_order(&self, ctx: &Context<'_>, id: ID, price: Option<Dec>, quantity: Option<Dec>) -> Result<Order, Error> {
        let user = caller_id(ctx)?;
        let not_found = || coded("NOT_FOUND", "no such open order");
        let order_id = units::parse_order_uuid(&id).ok_or_else(not_found)?;
        let record = order_by_id(ctx, order_id).await?.filter(|r| r.order.user == user && !r.status.is_final()).ok_or_else(not_found)?;
        if price.is_none() && quantity.is_none() {
            return Err(coded("BAD_USER_INPUT", "give the order a new price, a new quantity, or both"));
        }
        let catalog = Catalog::covering(ctx, |c| c.has_market(record.order.market)).await?;
        let market = catalog.markets.iter().find(|m| m.id() == record.order.market).ok_or_else(|| unexpected("the order's market"))?;
        let (terms, ..) = catalog.terms(market).ok_or_else(|| unexpected("the order's market terms"))?;
        let refuse = |(code, message): units::Refusal| coded(code, message);
        let price = match price {
            Some(price) => units::to_ticks(price.0, &terms).map_err(refuse)?,
            None => record.order.price.ok_or_else(|| coded("BAD_USER_INPUT", "only a resting (GTC limit) order can be amended"))?,
        };
        let quantity = match quantity {
            Some(quantity) => units::to_lots(quantity.0, &terms).map_err(refuse)?,
            None => record.order.quantity,
        };
        let mut updates = services(ctx).ledger.order_updates();
        match run_spot(ctx, Command::AmendOrder { user, order_id, price, quantity }).await? {
            api::Outcome::AmendRequested(_) => {}
            other => return Err(unexpected(other)),
        }
        let deadline = tokio::time::Instant::now() + services(ctx).order_settle_timeout;
        while let Ok(Ok(batch)) = tokio::time::timeout_at(deadline, updates.recv()).await {
            if batch.iter().any(|o| o.order.order_id == order_id && (o.amending.is_none() || o.status.is_final())) {
                break;
            }
        }
        let record = order_by_id(ctx, order_id).await?.ok_or_else(not_found)?;
        if record.amending.is_none() && !record.status.is_final() {
            if let Some(reason) = record.amend_refused.as_deref() {
                return Err(matching_refusal(market, "the amend", reason).unwrap_or_else(|| match reason {
                    "UNKNOWN_ORDER" => coded("NOT_FOUND", "the amend was refused: the order left the book first (filled or cancelled)"),
                    "PRICE_LEVEL_LIMIT" => {
                        coded("PRICE_LEVEL_LIMIT", "the amend was refused: the book side has its most price levels; choose a price with orders at it")
                    }
                    other => coded("BAD_USER_INPUT", format!("the amend was refused: {other}")),
                }));
            }
        }
        Ok(catalog.api_order(&record))
    }

    async fn cancel_order(&self, ctx: &Context<'_>, id: ID) -> Result<Order, Error> {
        let user = caller_id(ctx)?;
        let not_found = || coded("NOT_FOUND", "no such order");
        let order_id = units::parse_order_uuid(&id).ok_or_else(not_found)?;
        // Another user's order is "not found", not "forbidden": its existence is not revealed.
        let record = order_by_id(ctx, order_id).await?.filter(|r| r.order.user == user).ok_or_else(not_found)?;
        let mut updates = services(ctx).ledger.order_updates();
        if !record.status.is_final() {
            run_spot(ctx, Command::CancelOrder { user, order_id }).await?;
            let deadline = tokio::time::Instant::now() + services(ctx).order_settle_timeout;
            while let Ok(Ok(batch)) = tokio::time::timeout_at(deadline, updates.recv()).await {
                if batch.iter().any(|o| o.order.order_id == order_id && o.status.is_final()) {
                    break;
                }
            }
        }
        let record = order_by_id(ctx, order_id).await?.ok_or_else(not_found)?;
        Ok(Catalog::covering(ctx, |c| c.has_market(record.order.market)).await?.api_order(&record))
    }

    /// Cancels every open order of the caller's, in `market` or in every
    /// market, and answers how many there were once they are cancelled (or,
    /// past order_settle_timeout_ms, once their cancels are on the way).
    async fn cancel_all_orders(&self, ctx: &Context<'_>, market: Option<ID>) -> Result<i32, Error> {
        let user = caller_id(ctx)?;
        let markets: Vec<MarketId> = {
            let catalog = Catalog::load(ctx).await?;
            match &market {
                Some(name) => vec![catalog.market_by_name(name)?.0.id()],
                None => catalog.markets.iter().map(|m| m.id()).collect(),
            }
        };
        let mut updates = services(ctx).ledger.order_updates();
        let mut pending = std::collections::BTreeSet::new();
        for market in markets {
            match run_spot(ctx, Command::CancelAll { user, market }).await? {
                api::Outcome::CancelAllRequested { orders, .. } => pending.extend(orders),
                other => return Err(unexpected(other)),
            }
        }
        let count = i32::try_from(pending.len()).unwrap_or(i32::MAX);
        let deadline = tokio::time::Instant::now() + services(ctx).order_settle_timeout;
        while !pending.is_empty() {
            let Ok(Ok(batch)) = tokio::time::timeout_at(deadline, updates.recv()).await else { break };
            for record in batch.iter().filter(|record| record.status.is_final()) {
                pending.remove(&record.order.order_id);
            }
        }
        Ok(count)
    }

    /// Halts a market: no new orders (MARKET_CLOSED) until it is resumed;
    /// users may still cancel. An operator's action under the approval
    /// rules for markets (`market` in ledger.toml's `[approvals]`).
    async fn halt_market(&self, ctx: &Context<'_>, market: ID) -> Result<Market, Error> {
        operator(ctx)?;
        Self::set_trading(ctx, &market, false).await
    }

    /// Lets a halted market take orders again; the same approval rules.
    async fn resume_market(&self, ctx: &Context<'_>, market: ID) -> Result<Market, Error> {
        operator(ctx)?;
        Self::set_trading(ctx, &market, true).await
    }

    async fn create_market(&self, ctx: &Context<'_>, input: CreateMarketInput) -> Result<Market, Error> {
        operator(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let base = catalog.asset_by_symbol(&input.base)?.clone();
        let quote = catalog.asset_by_symbol(&input.quote)?.clone();
        let name = format!("{}-{}", base.symbol, quote.symbol);
        if catalog.market_by_name(&name).is_ok() {
            return Err(coded("DUPLICATE", format!("the market {name} exists")));
        }
        let bad = |message: String| coded("BAD_USER_INPUT", message);
        let units = units::market_units(input.tick_size.0, input.lot_size.0, base.scale, quote.scale).map_err(|(code, message)| coded(code, message))?;
        let ppm = |rate: Decimal, field: &str| -> Result<u32, Error> {
            let ppm = units::to_units(rate, 6, field).map_err(|(_, m)| bad(m))?;
            u32::try_from(ppm).map_err(|_| bad(format!("{field} must be 0 to 1")))
        };
        let spec = MarketSpec {
            id: catalog.markets.iter().map(|m| m.id()).max().unwrap_or(0) + 1,
            quote_units_per_tick_lot: units.quote_units_per_tick_lot,
            tick_lot_scale: units.tick_lot_scale,
            maker_fee_ppm: ppm(input.maker_fee_rate.0, "makerFeeRate")?,
            taker_fee_ppm: ppm(input.taker_fee_rate.0, "takerFeeRate")?,
            price_ticks_max: 1_000_000_000,
            quantity_lots_max: 1_000_000_000,
            price_band_ppm: match input.price_band {
                None => 0,
                Some(band) => match ppm(band.0, "priceBand")? {
                    0 => return Err(bad("priceBand must be above 0 (leave it out for no band)".into())),
                    ppm if ppm > matching_api::PRICE_BAND_PPM_MAX => return Err(bad("priceBand must be at most 1 (100%)".into())),
                    ppm => ppm,
                },
            },
        };
        let market = LedgerMarket { base: base.id, quote: quote.id, base_units_per_lot: units.base_units_per_lot, spec, trading: true };
        super::operators::operate(ctx, ledger_api::Command::Spot(Command::CreateMarket(market))).await?;
        let catalog = Catalog { assets: catalog.assets.clone(), markets: vec![market], perpetuals: Vec::new() };
        catalog.api_market(&market).ok_or_else(|| unexpected("the new market"))
    }
}

/// The API's error for matching's refusal of an order or an amend (`what`),
/// by its reject code; None for one that is not an error of the caller's.
fn matching_refusal(market: &LedgerMarket, what: &str, reason: &str) -> Option<Error> {
    Some(match reason {
        "POST_ONLY_WOULD_TAKE" => coded("POST_ONLY_WOULD_TAKE", format!("{what} was refused: a post-only order would have taken liquidity")),
        "MARKET_CLOSED" => coded("MARKET_CLOSED", format!("{what} was refused: the market is not trading")),
        "WOULD_TRIGGER_NOW" => coded(
            "WOULD_TRIGGER_NOW",
            format!("{what} was refused: the last trade already reached its trigger price; place it as a plain order, or trigger it beyond the last price"),
        ),
        "PRICE_OUT_OF_BAND" => {
            let band = Decimal::new(market.spec.price_band_ppm.into(), 4).normalize();
            coded(
                "PRICE_OUT_OF_BAND",
                format!(
                    "{what} was refused: its price is more than {band}% from the last trade (before the first, from the best opposite price); price it closer"
                ),
            )
        }
        _ => return None,
    })
}

impl SpotMutation {
    async fn set_trading(ctx: &Context<'_>, market: &str, trading: bool) -> Result<Market, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (listed, ..) = catalog.market_by_name(market)?;
        let id = listed.id();
        super::operators::operate(ctx, ledger_api::Command::Spot(Command::SetTrading { market: id, trading })).await?;
        let catalog = Catalog::read(&services(ctx).ledger).await?;
        catalog.markets.iter().find(|m| m.id() == id).and_then(|m| catalog.api_market(m)).ok_or_else(|| unexpected("the market"))
    }
}

#[derive(Default)]
pub struct SpotSubscription;

/// How many of the market's latest trades a trades subscription starts with.
const TRADES_SNAPSHOT: u32 = 50;

#[SubscriptionObject]
impl SpotSubscription {
    /// The caller's orders, each time matching or a settlement changes one.
    async fn user_orders(&self, ctx: &Context<'_>) -> Result<impl Stream<Item = Result<Order, Error>>, Error> {
        let user = caller_id(ctx)?;
        let slot = take_slot(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let ledger = services(ctx).ledger.clone();
        let updates = ledger.order_updates();
        Ok(stream::unfold(Some((updates, catalog, slot)), move |state| {
            let ledger = ledger.clone();
            async move {
                let (mut updates, mut catalog, slot) = state?;
                loop {
                    match updates.recv().await {
                        Ok(batch) => {
                            // A held order waiting for matching's verdict reads as OPEN too; its verdict follows.
                            let decided = |o: &&OrderRecord| o.order.user == user && o.status != LedgerStatus::Pending;
                            // A market created since the subscription started: read the catalog again.
                            if batch.iter().filter(decided).any(|o| !catalog.has_market(o.order.market)) {
                                catalog = Catalog::read(&ledger).await.unwrap_or(catalog);
                            }
                            let mine: Vec<Result<Order, Error>> = batch.iter().filter(decided).map(|o| Ok(catalog.api_order(o))).collect();
                            if !mine.is_empty() {
                                return Some((stream::iter(mine), Some((updates, catalog, slot))));
                            }
                        }
                        // A missed update would leave the client with a wrong order state: end instead.
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return Some((stream::iter(vec![Err(fell_behind())]), None)),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        })
        .flatten())
    }

    /// The book now, then each time it changes (levels best first, at most `depth` a side).
    async fn order_book(
        &self,
        ctx: &Context<'_>,
        market: ID,
        #[graphql(default_with = "Some(DEPTH_DEFAULT)")] depth: Option<i32>,
    ) -> Result<impl Stream<Item = OrderBook>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, terms, ..) = catalog.market_by_name(&market)?;
        let depth = checked_depth(depth.unwrap_or(DEPTH_DEFAULT))?;
        let slot = take_slot(ctx)?;
        let feed = services(ctx).feeds.market(ledger_market.id()).await.map_err(link_error)?;
        let mut books = feed.book.clone();
        // The value now first; after that, each change. A slow client skips to the newest book.
        books.mark_changed();
        let depth = depth as usize;
        // (the receiver, the levels last sent, what keeps the feed and the slot)
        let state = (books, None::<(Vec<matching_api::PriceLevel>, Vec<matching_api::PriceLevel>)>, (feed, slot));
        Ok(stream::unfold(state, move |(mut books, mut last, held)| {
            let terms = terms.clone();
            async move {
                loop {
                    books.changed().await.ok()?;
                    let Some(book) = books.borrow_and_update().clone() else { continue };
                    let cut = |levels: &[matching_api::PriceLevel]| levels[..levels.len().min(depth)].to_vec();
                    let levels = (cut(&book.bids), cut(&book.asks));
                    if last.as_ref() == Some(&levels) {
                        continue;
                    }
                    let answer = api_book(&terms, &book, &levels.0, &levels.1);
                    last = Some(levels);
                    return Some((answer, (books, last, held)));
                }
            }
        }))
    }

    /// The market's latest trades, oldest first, then each new one as it settles.
    async fn trades(&self, ctx: &Context<'_>, market: ID) -> Result<impl Stream<Item = Result<Trade, Error>>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, terms, ..) = catalog.market_by_name(&market)?;
        let slot = take_slot(ctx)?;
        let feed = services(ctx).feeds.market(ledger_market.id()).await.map_err(link_error)?;
        // Listening before the snapshot is read, so no trade falls between the two.
        let new_trades = feed.trades.subscribe();
        let api::Answer::Trades(mut snapshot) = ask_spot(ctx, api::Query::MarketTrades { market: ledger_market.id(), limit: TRADES_SNAPSHOT }).await? else {
            return Err(unexpected("trades"));
        };
        snapshot.sort_by_key(|t| t.id);
        let seen = snapshot.last().map_or(0, |t| t.id);
        let first: Vec<Result<Trade, Error>> = snapshot.iter().map(|t| Ok(public_trade(t, &terms))).collect();
        let later = stream::unfold(Some((new_trades, (feed, slot))), move |state| {
            let terms = terms.clone();
            async move {
                let (mut new_trades, held) = state?;
                loop {
                    match new_trades.recv().await {
                        Ok(trade) if trade.id <= seen => continue,
                        Ok(trade) => return Some((Ok(public_trade(&trade, &terms)), Some((new_trades, held)))),
                        Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => return Some((Err(fell_behind()), None)),
                        Err(tokio::sync::broadcast::error::RecvError::Closed) => return None,
                    }
                }
            }
        });
        Ok(stream::iter(first).chain(later))
    }
}

/// An `orderBook` depth argument, checked.
fn checked_depth(depth: i32) -> Result<u32, Error> {
    match u32::try_from(depth) {
        Ok(depth @ 1..=wire::DEPTH_LEVELS_MAX) => Ok(depth),
        _ => Err(coded("BAD_USER_INPUT", format!("depth is 1 to {}", wire::DEPTH_LEVELS_MAX))),
    }
}

fn api_book(terms: &MarketTerms, book: &wire::BookDepth, bids: &[matching_api::PriceLevel], asks: &[matching_api::PriceLevel]) -> OrderBook {
    let levels = |levels: &[matching_api::PriceLevel]| {
        levels
            .iter()
            .map(|l| PriceLevel { price: Dec(units::times(l.price, terms.tick_size)), quantity: Dec(units::times(l.quantity, terms.lot_size)) })
            .collect()
    };
    OrderBook { market: ID(terms.name.clone()), sequence: book.output_last.to_string(), bids: levels(bids), asks: levels(asks) }
}

async fn run_spot(ctx: &Context<'_>, command: Command) -> Result<api::Outcome, Error> {
    match run(ctx, ledger_api::Command::Spot(command)).await? {
        Outcome::Spot(outcome) => Ok(outcome),
        other => Err(unexpected(other)),
    }
}

async fn ask_spot(ctx: &Context<'_>, query: api::Query) -> Result<api::Answer, Error> {
    match ask(ctx, Query::Spot(query)).await? {
        Answer::Spot(answer) => Ok(answer),
        other => Err(unexpected(other)),
    }
}

/// Places an order for the caller: placeOrder's, and closePosition's
/// reduce-only order.
pub(crate) async fn place(ctx: &Context<'_>, input: PlaceOrderInput) -> Result<Order, Error> {
    let user = caller_id(ctx)?;
    let catalog = Catalog::covering(ctx, |c| c.market_by_name(&input.market).is_ok()).await?;
    let (market, terms, ..) = catalog.market_by_name(&input.market)?;
    let refuse = |(code, message): units::Refusal| coded(code, message);
    let quantity = units::to_lots(input.quantity.0, &terms).map_err(refuse)?;
    let price = input.price.map(|p| units::to_ticks(p.0, &terms)).transpose().map_err(refuse)?;
    let side = match input.side {
        Side::Buy => CoreSide::Buy,
        Side::Sell => CoreSide::Sell,
    };
    let bad = |message: &str| coded("BAD_USER_INPUT", message.to_string());
    let (kind, direction) = input.order_type.parts(side);
    let trigger = match (direction, &input.trigger_price) {
        (Some(direction), Some(trigger_price)) => Some(Trigger {
            source: input.trigger_source.unwrap_or(TriggerSource::LastPrice).into(),
            direction,
            price: units::to_ticks(trigger_price.0, &terms).map_err(refuse)?,
        }),
        (Some(_), None) => return Err(bad("a stop or take-profit order needs triggerPrice")),
        (None, Some(_)) => return Err(bad("triggerPrice goes with the STOP_LOSS, STOP_LOSS_LIMIT, TAKE_PROFIT and TAKE_PROFIT_LIMIT types")),
        (None, None) => None,
    };
    let asked = input.time_in_force.unwrap_or(TimeInForce::Gtc);
    let expires_at_ms = match (asked, &input.expires_at) {
        (TimeInForce::Gtd, Some(at)) => Some(units::parse_rfc3339(&at.0).ok_or_else(|| bad("expiresAt is not an RFC 3339 time"))?),
        (TimeInForce::Gtd, None) => return Err(bad("a GTD order needs expiresAt")),
        (_, Some(_)) => return Err(bad("expiresAt goes with timeInForce GTD")),
        (_, None) => None,
    };
    let time_in_force = match (input.order_type, asked) {
        (_, TimeInForce::Gtc) if kind == OrderKind::Market => CoreTif::Ioc,
        (_, TimeInForce::Gtc | TimeInForce::Gtd) => CoreTif::Gtc,
        (_, TimeInForce::Ioc) => CoreTif::Ioc,
        (_, TimeInForce::Fok) => CoreTif::Fok,
    };
    let request = OrderRequest {
        market: market.id(),
        side,
        kind,
        time_in_force,
        post_only: input.post_only.unwrap_or(false),
        price,
        quantity,
        self_trade: input.self_trade_prevention.unwrap_or(SelfTradePreventionMode::CancelTaker).into(),
        expires_at_ms,
        trigger,
        reduce_only: input.reduce_only.unwrap_or(false),
    };
    let services = services(ctx);
    let times = &services.order_times;
    let sent = std::time::Instant::now();
    let command = ledger_api::Command::Spot(Command::PlaceOrder { user, request, client_order_id: input.client_order_id.clone() });
    let (outcome, settlement) = services.ledger.place_order(command).await.map_err(super::link_error)?;
    let order_id = match outcome.map_err(super::ledger_error)? {
        Outcome::Spot(api::Outcome::OrderPlaced(order_id)) => order_id,
        other => return Err(unexpected(other)),
    };
    let held = std::time::Instant::now();
    times.hold_seconds.observe(held.duration_since(sent).as_secs_f64());
    let record = match tokio::time::timeout(services.order_settle_timeout, settlement).await {
        Ok(Ok(record)) => record,
        // A replayed request, matching slower than the wait, or the link
        // lost meanwhile: read its current state.
        _ => {
            times.settled_by_read.inc();
            order_by_id(ctx, order_id).await?.ok_or_else(|| unexpected("the placed order is missing"))?
        }
    };
    times.settle_seconds.observe(held.elapsed().as_secs_f64());
    if record.status == LedgerStatus::Rejected {
        if let Some(error) = matching_refusal(market, "the order", record.reject_reason.as_deref().unwrap_or_default()) {
            return Err(error);
        }
    }
    Ok(catalog.api_order(&record))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_average_price_is_exact_and_absent_where_a_decimal_cannot_hold_it() {
        // 2 lots at 150 and 2 at 151 (ticks of 0.01): 602 ticks x lots over 4 lots, 150.5 ticks.
        assert_eq!(average_price(602, 4, Decimal::new(1, 2)), Some(Decimal::new(1505, 3)));
        assert_eq!(average_price(1 << 97, 1, Decimal::ONE), None, "beyond 2^96 ticks x lots");
        assert_eq!(average_price(u128::MAX, 1, Decimal::ONE), None);
        assert_eq!(average_price((1 << 95) + 1, 1, Decimal::from(10)), None, "the price overflows");
        assert_eq!(average_price(10, 0, Decimal::ONE), None, "nothing filled");
    }
}
