//! The GraphQL schema of `contract.graphql`: who may call what, and the
//! mapping between the API's vocabulary and the ledger's.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_graphql::{
    Context, Enum, Error, ErrorExtensions, InputObject, InputValueError, InputValueResult, Object, Scalar, ScalarType, Schema, SimpleObject,
    Subscription as SubscriptionObject, Value, ID,
};
use futures_util::stream::{self, Stream, StreamExt};
use ledger_core::{
    AssetSpec, LedgerCommand, LedgerError, LedgerMarket, OrderRecord, OrderRequest, OrderStatus as LedgerStatus, Outcome, Recorded, TransferKind,
    WithdrawalStatus as LedgerWithdrawalStatus,
};
use matching_core::{MarketId, MarketSpec, OrderKind, SelfTradePrevention, Side as CoreSide, TimeInForce as CoreTif};
use rust_decimal::Decimal;
use wire::{LedgerQuery, QueryAnswer};

use crate::auth::{Auth, Claims, PASSWORD_BYTES_MAX, PASSWORD_BYTES_MIN};
use crate::convert::{self, MarketTerms};
use crate::feed::Feeds;
use crate::ledger_client::{LedgerClient, LinkError};
use crate::matching_client::MatchingClient;
use crate::users::{self, UserError, Users};

pub type ApiSchema = Schema<Query, Mutation, Subscription>;

/// What every resolver can reach.
pub struct Services {
    pub users: Arc<Users>,
    pub auth: Arc<Auth>,
    pub ledger: LedgerClient,
    pub matching: MatchingClient,
    pub order_settle_timeout: Duration,
    pub cookie_secure: bool,
    /// See [`Catalog`].
    pub catalog: std::sync::RwLock<Arc<Catalog>>,
    /// Market data for the subscriptions.
    pub feeds: Feeds,
    /// Subscriptions open now, and at most.
    pub subscriptions: Arc<AtomicUsize>,
    pub subscriptions_max: usize,
}

/// Who is calling: the verified claims of the request's token, if any.
#[derive(Clone, Default)]
pub struct Caller(pub Option<Claims>);

pub const TOKEN_COOKIE: &str = "marionette_token";

fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, extensions| extensions.set("code", code))
}

fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

fn link_error(error: LinkError) -> Error {
    coded("UNAVAILABLE", error.to_string())
}

fn ledger_error(error: LedgerError) -> Error {
    coded(error.code(), error.to_string())
}

fn user_error(error: UserError) -> Error {
    match error {
        UserError::EmailTaken => coded("DUPLICATE", "an account with this email exists"),
        UserError::BadInput(reason) => coded("BAD_USER_INPUT", reason),
        other => {
            tracing::error!(error = %other, "user store failed");
            coded("UNAVAILABLE", "the account store is unavailable; try again")
        }
    }
}

fn caller(ctx: &Context<'_>) -> Result<Claims, Error> {
    ctx.data_unchecked::<Caller>().0.clone().ok_or_else(|| coded("UNAUTHENTICATED", "log in first: send Authorization: Bearer <token> or the login cookie"))
}

fn caller_id(ctx: &Context<'_>) -> Result<u64, Error> {
    caller(ctx)?.sub.parse().map_err(|_| coded("UNAUTHENTICATED", "the token names no user"))
}

fn operator(ctx: &Context<'_>) -> Result<Claims, Error> {
    let claims = caller(ctx)?;
    if claims.role != users::Role::Operator {
        return Err(coded("FORBIDDEN", "this operation is for operators"));
    }
    Ok(claims)
}

fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

async fn ask(ctx: &Context<'_>, query: LedgerQuery) -> Result<QueryAnswer, Error> {
    ask_ledger(&services(ctx).ledger, query).await
}

async fn ask_ledger(ledger: &LedgerClient, query: LedgerQuery) -> Result<QueryAnswer, Error> {
    match ledger.query(query).await.map_err(link_error)? {
        Ok(answer) => Ok(answer),
        Err(wire::QueryError::BadRequest(reason)) => Err(coded("BAD_USER_INPUT", reason)),
        Err(wire::QueryError::Unavailable) => Err(coded("UNAVAILABLE", "the ledger could not read its store; try again")),
    }
}

async fn run(ctx: &Context<'_>, command: LedgerCommand) -> Result<Outcome, Error> {
    services(ctx).ledger.command(command).await.map_err(link_error)?.map_err(ledger_error)
}

fn unexpected(answer: impl std::fmt::Debug) -> Error {
    tracing::error!(?answer, "the ledger answered with something unexpected");
    coded("UNAVAILABLE", "the ledger gave an unexpected answer")
}

// ---- scalars ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dec(pub Decimal);

#[Scalar(name = "Decimal")]
impl ScalarType for Dec {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => text.trim().parse::<Decimal>().map(Dec).map_err(|_| InputValueError::custom(format!("{text:?} is not a decimal number"))),
            _ => Err(InputValueError::custom("a Decimal is a JSON string such as \"0.001\", never a float")),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.to_string())
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DateTime(pub String);

#[Scalar(name = "DateTime")]
impl ScalarType for DateTime {
    fn parse(value: Value) -> InputValueResult<Self> {
        match value {
            Value::String(text) => Ok(DateTime(text)),
            other => Err(InputValueError::expected_type(other)),
        }
    }

    fn to_value(&self) -> Value {
        Value::String(self.0.clone())
    }
}

fn at(ms: u64) -> DateTime {
    DateTime(convert::rfc3339(ms))
}

// ---- enums ----

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum Side {
    Buy,
    Sell,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OrderType {
    Limit,
    Market,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum TimeInForce {
    Gtc,
    Ioc,
    Fok,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OrderStatus {
    Open,
    PartiallyFilled,
    Filled,
    Cancelled,
    Rejected,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Role")]
pub enum ApiRole {
    User,
    Operator,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum WithdrawalStatus {
    Pending,
    Approved,
    Rejected,
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
        // Held and on its way to matching: it rests or trades next.
        LedgerStatus::Pending | LedgerStatus::Open => OrderStatus::Open,
        LedgerStatus::PartiallyFilled => OrderStatus::PartiallyFilled,
        LedgerStatus::Filled => OrderStatus::Filled,
        LedgerStatus::Cancelled => OrderStatus::Cancelled,
        LedgerStatus::Rejected => OrderStatus::Rejected,
    }
}

fn ledger_status(status: OrderStatus) -> Vec<LedgerStatus> {
    match status {
        OrderStatus::Open => vec![LedgerStatus::Pending, LedgerStatus::Open],
        OrderStatus::PartiallyFilled => vec![LedgerStatus::PartiallyFilled],
        OrderStatus::Filled => vec![LedgerStatus::Filled],
        OrderStatus::Cancelled => vec![LedgerStatus::Cancelled],
        OrderStatus::Rejected => vec![LedgerStatus::Rejected],
    }
}

fn api_withdrawal_status(status: LedgerWithdrawalStatus) -> WithdrawalStatus {
    match status {
        LedgerWithdrawalStatus::Pending => WithdrawalStatus::Pending,
        LedgerWithdrawalStatus::Approved => WithdrawalStatus::Approved,
        LedgerWithdrawalStatus::Rejected => WithdrawalStatus::Rejected,
    }
}

// ---- object types ----

#[derive(SimpleObject, Clone)]
pub struct User {
    pub id: ID,
    pub email: String,
    pub role: ApiRole,
    pub created_at: DateTime,
}

impl From<&users::User> for User {
    fn from(user: &users::User) -> User {
        User {
            id: ID(user.id.to_string()),
            email: user.email.clone(),
            role: match user.role {
                users::Role::User => ApiRole::User,
                users::Role::Operator => ApiRole::Operator,
            },
            created_at: at(user.created_ms),
        }
    }
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    pub token: String,
    pub expires_at: DateTime,
    pub user: User,
}

#[derive(SimpleObject, Clone)]
pub struct Asset {
    pub id: ID,
    pub symbol: String,
    pub scale: i32,
}

impl From<&AssetSpec> for Asset {
    fn from(asset: &AssetSpec) -> Asset {
        Asset { id: ID(asset.id.to_string()), symbol: asset.symbol.clone(), scale: asset.scale as i32 }
    }
}

#[derive(SimpleObject, Clone)]
pub struct Market {
    pub id: ID,
    pub base: Asset,
    pub quote: Asset,
    pub tick_size: Dec,
    pub lot_size: Dec,
    pub maker_fee_rate: Dec,
    pub taker_fee_rate: Dec,
    pub last_price: Option<Dec>,
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
    pub price: Option<Dec>,
    pub quantity: Dec,
    pub filled_quantity: Dec,
    pub average_price: Option<Dec>,
    pub status: OrderStatus,
    pub reject_reason: Option<String>,
    pub created_at: DateTime,
    pub updated_at: DateTime,
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

#[derive(SimpleObject)]
pub struct Balance {
    pub asset: String,
    pub available: Dec,
    pub locked: Dec,
}

/// One asset's books, for operators: what came in net of withdrawals paid
/// out, and where it is now.
#[derive(SimpleObject)]
pub struct Reserve {
    pub asset: String,
    /// Deposits minus withdrawals paid out.
    pub deposited: Dec,
    /// Every user's available plus locked, summed over all balances.
    pub users: Dec,
    pub fees: Dec,
    pub pending_withdrawals: Dec,
    /// deposited = users + fees + pendingWithdrawals: nothing created or lost.
    pub balanced: bool,
}

#[derive(SimpleObject)]
pub struct LedgerEntry {
    pub id: ID,
    pub asset: String,
    pub amount: Dec,
    pub kind: String,
    pub reference: Option<String>,
    pub created_at: DateTime,
}

#[derive(SimpleObject)]
pub struct Withdrawal {
    pub id: ID,
    pub asset: String,
    pub amount: Dec,
    pub destination: String,
    pub status: WithdrawalStatus,
    pub created_at: DateTime,
}

#[derive(InputObject)]
pub struct PlaceOrderInput {
    pub market: ID,
    pub side: Side,
    #[graphql(name = "type")]
    pub order_type: OrderType,
    pub quantity: Dec,
    pub price: Option<Dec>,
    #[graphql(default_with = "TimeInForce::Gtc")]
    pub time_in_force: TimeInForce,
    #[graphql(default)]
    pub post_only: bool,
    pub client_order_id: Option<String>,
}

#[derive(InputObject)]
pub struct CreateMarketInput {
    pub base: String,
    pub quote: String,
    pub tick_size: Dec,
    pub lot_size: Dec,
    pub maker_fee_rate: Dec,
    pub taker_fee_rate: Dec,
}

// ---- reference data: assets and markets ----

/// Assets and markets as the ledger holds them. Neither is ever changed
/// once created, only added to, so the copy the gateway keeps is right for
/// everything it holds: the order path uses it and reads the ledger again
/// only when a request names something the copy lacks (one another gateway
/// created). Listings always read afresh.
#[derive(Default)]
pub struct Catalog {
    assets: Vec<AssetSpec>,
    markets: Vec<LedgerMarket>,
}

impl Catalog {
    /// Read from the ledger, and kept for the requests after this one.
    async fn load(ctx: &Context<'_>) -> Result<Arc<Catalog>, Error> {
        let catalog = Catalog::read(&services(ctx).ledger).await?;
        *services(ctx).catalog.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = catalog.clone();
        Ok(catalog)
    }

    /// Read from the ledger.
    async fn read(ledger: &LedgerClient) -> Result<Arc<Catalog>, Error> {
        let QueryAnswer::Assets(assets) = ask_ledger(ledger, LedgerQuery::Assets).await? else { return Err(unexpected("assets")) };
        let QueryAnswer::Markets(markets) = ask_ledger(ledger, LedgerQuery::Markets).await? else { return Err(unexpected("markets")) };
        Ok(Arc::new(Catalog { assets, markets }))
    }

    /// The kept copy when it has what `covers` asks for, else a fresh one.
    async fn covering(ctx: &Context<'_>, covers: impl Fn(&Catalog) -> bool) -> Result<Arc<Catalog>, Error> {
        let kept = services(ctx).catalog.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if covers(&kept) {
            return Ok(kept);
        }
        Catalog::load(ctx).await
    }

    fn has_market(&self, id: MarketId) -> bool {
        self.markets.iter().any(|m| m.id() == id)
    }

    fn asset(&self, id: u32) -> Option<&AssetSpec> {
        self.assets.iter().find(|a| a.id == id)
    }

    fn asset_by_symbol(&self, symbol: &str) -> Result<&AssetSpec, Error> {
        self.assets.iter().find(|a| a.symbol == symbol).ok_or_else(|| coded("NOT_FOUND", format!("no asset {symbol}")))
    }

    fn terms(&self, market: &LedgerMarket) -> Option<(MarketTerms, &AssetSpec, &AssetSpec)> {
        let (base, quote) = (self.asset(market.base)?, self.asset(market.quote)?);
        Some((convert::market_terms(market, base, quote), base, quote))
    }

    fn market_by_name(&self, name: &str) -> Result<(&LedgerMarket, MarketTerms, &AssetSpec, &AssetSpec), Error> {
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
            last_price: None,
        })
    }

    fn api_order(&self, record: &OrderRecord) -> Order {
        let order = &record.order;
        let market = self.markets.iter().find(|m| m.id() == order.market);
        let terms = market.and_then(|m| self.terms(m));
        let (tick, lot) = terms.as_ref().map(|(t, ..)| (t.tick_size, t.lot_size)).unwrap_or((Decimal::ONE, Decimal::ONE));
        let average = (record.filled > 0).then(|| {
            let per_lot = market.map(|m| m.spec.quote_units_per_tick_lot).unwrap_or(1) as u128;
            // filled_notional / (filled x quote_units_per_tick_lot) ticks, as a price.
            Dec((Decimal::from_i128_with_scale(record.filled_notional as i128, 0)
                / Decimal::from(record.filled)
                / Decimal::from_i128_with_scale(per_lot as i128, 0)
                * tick)
                .normalize())
        });
        Order {
            id: ID(convert::order_uuid(order.order_id)),
            client_order_id: record.client_order_id.clone(),
            market: ID(self.market_name(order.market)),
            side: order.side.into(),
            order_type: match order.kind {
                OrderKind::Limit => OrderType::Limit,
                OrderKind::Market => OrderType::Market,
            },
            time_in_force: match order.time_in_force {
                CoreTif::Gtc => TimeInForce::Gtc,
                CoreTif::Ioc => TimeInForce::Ioc,
                CoreTif::Fok => TimeInForce::Fok,
            },
            post_only: order.post_only,
            price: order.price.map(|p| Dec((Decimal::from(p) * tick).normalize())),
            quantity: Dec((Decimal::from(order.quantity) * lot).normalize()),
            filled_quantity: Dec((Decimal::from(record.filled) * lot).normalize()),
            average_price: average,
            status: api_status(record),
            reject_reason: record.reject_reason.clone(),
            created_at: at(record.created_ms),
            updated_at: at(record.updated_ms),
        }
    }

    fn symbol(&self, asset: u32) -> String {
        self.asset(asset).map(|a| a.symbol.clone()).unwrap_or_else(|| asset.to_string())
    }

    fn amount(&self, asset: u32, units: i128) -> Dec {
        Dec(convert::to_decimal(units, self.asset(asset).map(|a| a.scale).unwrap_or(0)))
    }
}

async fn order_by_id(ctx: &Context<'_>, order_id: u64) -> Result<Option<OrderRecord>, Error> {
    match ask(ctx, LedgerQuery::Order { order_id }).await? {
        QueryAnswer::Order(order) => Ok(order),
        other => Err(unexpected(other)),
    }
}

// ---- queries ----

pub struct Query;

#[Object]
impl Query {
    async fn me(&self, ctx: &Context<'_>) -> Result<User, Error> {
        let id = caller_id(ctx)?;
        let user = services(ctx).users.by_id(id).map_err(user_error)?.ok_or_else(|| coded("UNAUTHENTICATED", "the account no longer exists"))?;
        Ok((&user).into())
    }

    async fn assets(&self, ctx: &Context<'_>) -> Result<Vec<Asset>, Error> {
        let catalog = Catalog::load(ctx).await?;
        Ok(catalog.assets.iter().map(Asset::from).collect())
    }

    async fn markets(&self, ctx: &Context<'_>) -> Result<Vec<Market>, Error> {
        let catalog = Catalog::load(ctx).await?;
        Ok(catalog.markets.iter().filter_map(|m| catalog.api_market(m)).collect())
    }

    async fn market(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Market>, Error> {
        let catalog = Catalog::load(ctx).await?;
        Ok(catalog.market_by_name(&id).ok().and_then(|(market, ..)| catalog.api_market(market)))
    }

    async fn order_book(&self, ctx: &Context<'_>, market: ID, #[graphql(default = 50)] depth: i32) -> Result<OrderBook, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, terms, ..) = catalog.market_by_name(&market)?;
        let depth = checked_depth(depth)?;
        let book = services(ctx).matching.depth(ledger_market.id(), depth).await.map_err(link_error)?;
        // A market the ledger has but matching has not yet added is an empty book.
        Ok(match book {
            Some(book) => api_book(&terms, &book, &book.bids, &book.asks),
            None => OrderBook { market: ID(terms.name.clone()), sequence: "0".into(), bids: Vec::new(), asks: Vec::new() },
        })
    }

    async fn trades(&self, ctx: &Context<'_>, market: ID, #[graphql(default = 100)] limit: i32) -> Result<Vec<Trade>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, terms, ..) = catalog.market_by_name(&market)?;
        let QueryAnswer::Trades(trades) = ask(ctx, LedgerQuery::MarketTrades { market: ledger_market.id(), limit: limit.max(0) as u32 }).await? else {
            return Err(unexpected("trades"));
        };
        Ok(trades.iter().map(|t| public_trade(t, &terms)).collect())
    }

    async fn balances(&self, ctx: &Context<'_>) -> Result<Vec<Balance>, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let QueryAnswer::Balances(balances) = ask(ctx, LedgerQuery::Balances { user }).await? else { return Err(unexpected("balances")) };
        Ok(balances
            .iter()
            .map(|(asset, balance)| Balance {
                asset: catalog.symbol(*asset),
                available: catalog.amount(*asset, balance.available),
                locked: catalog.amount(*asset, balance.locked),
            })
            .collect())
    }

    /// The caller's order; null for an unknown id and for anyone else's (the
    /// answer does not reveal that the order exists).
    async fn user_order(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Order>, Error> {
        let user = caller_id(ctx)?;
        let Some(order_id) = convert::parse_order_uuid(&id) else { return Ok(None) };
        let Some(record) = order_by_id(ctx, order_id).await?.filter(|r| r.order.user == user) else { return Ok(None) };
        Ok(Some(Catalog::covering(ctx, |c| c.has_market(record.order.market)).await?.api_order(&record)))
    }

    async fn user_orders(
        &self,
        ctx: &Context<'_>,
        market: Option<ID>,
        status: Option<OrderStatus>,
        #[graphql(default = 100)] limit: i32,
    ) -> Result<Vec<Order>, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let market = market.map(|m| catalog.market_by_name(&m).map(|(m, ..)| m.id())).transpose()?;
        let limit = limit.max(0) as u32;
        // OPEN covers two ledger states; one query each keeps the limit exact per state.
        let mut records = Vec::new();
        let statuses: Vec<Option<LedgerStatus>> = match status {
            Some(status) => ledger_status(status).into_iter().map(Some).collect(),
            None => vec![None],
        };
        for status in statuses {
            let QueryAnswer::Orders(found) = ask(ctx, LedgerQuery::Orders { user, market, status, limit }).await? else { return Err(unexpected("orders")) };
            records.extend(found);
        }
        records.sort_by(|a, b| b.order.order_id.cmp(&a.order.order_id));
        records.truncate(limit as usize);
        Ok(records.iter().map(|r| catalog.api_order(r)).collect())
    }

    async fn user_trades(&self, ctx: &Context<'_>, market: Option<ID>, #[graphql(default = 100)] limit: i32) -> Result<Vec<Trade>, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let market = market.map(|m| catalog.market_by_name(&m).map(|(m, ..)| m.id())).transpose()?;
        let QueryAnswer::Trades(trades) = ask(ctx, LedgerQuery::UserTrades { user, market, limit: limit.max(0) as u32 }).await? else {
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
                trade.order_id = Some(ID(convert::order_uuid(order)));
                trade.side = Some(side.into());
                trade.fee = Some(Dec(convert::to_decimal(fee as i128, quote.scale)));
                trade.fee_asset = Some(quote.symbol.clone());
                Some(trade)
            })
            .collect())
    }

    async fn ledger_entries(&self, ctx: &Context<'_>, asset: Option<String>, #[graphql(default = 100)] limit: i32) -> Result<Vec<LedgerEntry>, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let asset = asset.map(|symbol| catalog.asset_by_symbol(&symbol).map(|a| a.id)).transpose()?;
        let QueryAnswer::Transfers(transfers) = ask(ctx, LedgerQuery::Transfers { user, asset, limit: limit.max(0) as u32 }).await? else {
            return Err(unexpected("transfers"));
        };
        Ok(transfers
            .iter()
            .filter_map(|t| {
                // The signed change of the caller's total (AVAILABLE + LOCKED): moves between the two are zero.
                let sign = i128::from(t.credit.user() == Some(user)) - i128::from(t.debit.user() == Some(user));
                (sign != 0).then(|| LedgerEntry {
                    id: ID(t.id.to_string()),
                    asset: catalog.symbol(t.asset),
                    amount: catalog.amount(t.asset, sign * t.amount),
                    kind: entry_kind(t.kind).into(),
                    reference: Some(t.reference.to_string()),
                    created_at: at(t.at_ms),
                })
            })
            .collect())
    }

    /// The caller's withdrawals; an operator sees everyone's.
    async fn withdrawals(&self, ctx: &Context<'_>, status: Option<WithdrawalStatus>) -> Result<Vec<Withdrawal>, Error> {
        let claims = caller(ctx)?;
        let user = if claims.role == users::Role::Operator { None } else { Some(caller_id(ctx)?) };
        let status = status.map(|s| match s {
            WithdrawalStatus::Pending => LedgerWithdrawalStatus::Pending,
            WithdrawalStatus::Approved => LedgerWithdrawalStatus::Approved,
            WithdrawalStatus::Rejected => LedgerWithdrawalStatus::Rejected,
        });
        let catalog = Catalog::load(ctx).await?;
        let QueryAnswer::Withdrawals(found) = ask(ctx, LedgerQuery::Withdrawals { user, status, limit: wire::ledger::QUERY_LIMIT_MAX }).await? else {
            return Err(unexpected("withdrawals"));
        };
        Ok(found.iter().map(|w| api_withdrawal(&catalog, w)).collect())
    }

    /// Per asset, deposits net of paid-out withdrawals against where the money is (operators only).
    async fn reserves(&self, ctx: &Context<'_>) -> Result<Vec<Reserve>, Error> {
        operator(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let QueryAnswer::Reserves(reserves) = ask(ctx, LedgerQuery::Reserves).await? else { return Err(unexpected("reserves")) };
        Ok(reserves
            .iter()
            .map(|r| Reserve {
                asset: catalog.symbol(r.asset),
                deposited: catalog.amount(r.asset, r.deposited),
                users: catalog.amount(r.asset, r.users),
                fees: catalog.amount(r.asset, r.fees),
                pending_withdrawals: catalog.amount(r.asset, r.pending_withdrawals),
                balanced: r.deposited == r.users + r.fees + r.pending_withdrawals,
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

fn entry_kind(kind: TransferKind) -> &'static str {
    match kind {
        TransferKind::Deposit => "DEPOSIT",
        TransferKind::Transfer => "TRANSFER",
        TransferKind::WithdrawalRequest | TransferKind::WithdrawalApproval => "WITHDRAWAL",
        TransferKind::WithdrawalRejection => "WITHDRAWAL_REJECTED",
        TransferKind::Hold => "HOLD",
        TransferKind::Release => "RELEASE",
        TransferKind::Trade => "TRADE",
        TransferKind::Fee => "FEE",
    }
}

fn public_trade(trade: &ledger_core::TradeRecord, terms: &MarketTerms) -> Trade {
    Trade {
        id: ID(trade.id.to_string()),
        market: ID(terms.name.clone()),
        price: Dec((Decimal::from(trade.fill.price) * terms.tick_size).normalize()),
        quantity: Dec((Decimal::from(trade.fill.quantity) * terms.lot_size).normalize()),
        taker_side: trade.fill.taker_side.into(),
        created_at: at(trade.at_ms),
        order_id: None,
        side: None,
        fee: None,
        fee_asset: None,
    }
}

fn api_withdrawal(catalog: &Catalog, w: &ledger_core::Withdrawal) -> Withdrawal {
    Withdrawal {
        id: ID(w.id.to_string()),
        asset: catalog.symbol(w.asset),
        amount: catalog.amount(w.asset, w.amount),
        destination: w.destination.clone(),
        status: api_withdrawal_status(w.status),
        created_at: at(w.created_ms),
    }
}

// ---- mutations ----

pub struct Mutation;

fn cookie(token: &str, max_age: u64, secure: bool) -> String {
    format!("{TOKEN_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly;{} SameSite=Strict", if secure { " Secure;" } else { "" })
}

#[Object]
impl Mutation {
    async fn register(&self, ctx: &Context<'_>, email: String, password: String) -> Result<User, Error> {
        let services = services(ctx);
        if !(PASSWORD_BYTES_MIN..=PASSWORD_BYTES_MAX).contains(&password.len()) {
            return Err(coded("BAD_USER_INPUT", format!("a password is {PASSWORD_BYTES_MIN} to {PASSWORD_BYTES_MAX} bytes")));
        }
        users::normalize_email(&email).map_err(user_error)?;
        let auth = services.auth.clone();
        // argon2 is deliberately slow: keep it off the async workers.
        let hash =
            tokio::task::spawn_blocking(move || auth.hash_password(&password)).await.map_err(|_| coded("UNAVAILABLE", "hashing failed"))?.map_err(|error| {
                tracing::error!(%error, "password hashing failed");
                coded("UNAVAILABLE", "hashing failed")
            })?;
        let user = services.users.create(&email, hash, users::Role::User, now_ms()).map_err(user_error)?;
        Ok((&user).into())
    }

    async fn login(&self, ctx: &Context<'_>, email: String, password: String) -> Result<AuthPayload, Error> {
        let services = services(ctx);
        let user = services.users.by_email(&email).map_err(user_error)?;
        let (auth, stored) = (services.auth.clone(), user.as_ref().map(|u| u.password_hash.clone()));
        let valid = tokio::task::spawn_blocking(move || auth.verify_password(&password, stored.as_deref())).await.unwrap_or(false);
        let Some(user) = user.filter(|_| valid) else { return Err(coded("UNAUTHENTICATED", "wrong email or password")) };
        let (token, expires) = services.auth.issue(user.id, user.role, now_ms() / 1_000);
        ctx.append_http_header("Set-Cookie", cookie(&token, services.auth.token_ttl_seconds, services.cookie_secure));
        Ok(AuthPayload { token, expires_at: at(expires * 1_000), user: (&user).into() })
    }

    async fn logout(&self, ctx: &Context<'_>) -> bool {
        ctx.append_http_header("Set-Cookie", cookie("", 0, services(ctx).cookie_secure));
        true
    }

    async fn place_order(&self, ctx: &Context<'_>, input: PlaceOrderInput) -> Result<Order, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::covering(ctx, |c| c.market_by_name(&input.market).is_ok()).await?;
        let (market, terms, ..) = catalog.market_by_name(&input.market)?;
        let refuse = |(code, message): convert::Refusal| coded(code, message);
        let quantity = convert::to_lots(input.quantity.0, &terms).map_err(refuse)?;
        let price = input.price.map(|p| convert::to_ticks(p.0, &terms)).transpose().map_err(refuse)?;
        let kind = match input.order_type {
            OrderType::Limit => OrderKind::Limit,
            OrderType::Market => OrderKind::Market,
        };
        let time_in_force = match (input.order_type, input.time_in_force) {
            (_, TimeInForce::Gtc) if kind == OrderKind::Market => CoreTif::Ioc,
            (_, TimeInForce::Gtc) => CoreTif::Gtc,
            (_, TimeInForce::Ioc) => CoreTif::Ioc,
            (_, TimeInForce::Fok) => CoreTif::Fok,
        };
        let side = match input.side {
            Side::Buy => CoreSide::Buy,
            Side::Sell => CoreSide::Sell,
        };
        let request = OrderRequest {
            market: market.id(),
            side,
            kind,
            time_in_force,
            post_only: input.post_only,
            price,
            quantity,
            self_trade: SelfTradePrevention::CancelTaker,
        };
        // Listen before asking, so matching's verdict cannot slip past.
        let mut updates = services(ctx).ledger.order_updates();
        let order_id = match run(ctx, LedgerCommand::PlaceOrder { user, request, client_order_id: input.client_order_id.clone() }).await? {
            Outcome::OrderPlaced { order_id, .. } => order_id,
            Outcome::Replayed(Recorded::Order(order_id)) => order_id,
            other => return Err(unexpected(other)),
        };
        let deadline = tokio::time::Instant::now() + services(ctx).order_settle_timeout;
        let mut record = None;
        while let Ok(Ok(batch)) = tokio::time::timeout_at(deadline, updates.recv()).await {
            if let Some(found) = batch.iter().rev().find(|o| o.order.order_id == order_id) {
                record = Some(found.clone());
                if found.status != LedgerStatus::Pending {
                    break;
                }
            }
        }
        let record = match record.filter(|r| r.status != LedgerStatus::Pending) {
            Some(record) => record,
            // A replayed request, or matching slower than the wait: read its current state.
            None => order_by_id(ctx, order_id).await?.ok_or_else(|| unexpected("the placed order is missing"))?,
        };
        if record.status == LedgerStatus::Rejected {
            let reason = record.reject_reason.clone().unwrap_or_default();
            if matches!(reason.as_str(), "POST_ONLY_WOULD_TAKE" | "MARKET_CLOSED") {
                return Err(coded(
                    if reason == "MARKET_CLOSED" { "MARKET_CLOSED" } else { "POST_ONLY_WOULD_TAKE" },
                    format!("the order was refused: {reason}"),
                ));
            }
        }
        Ok(catalog.api_order(&record))
    }

    async fn cancel_order(&self, ctx: &Context<'_>, id: ID) -> Result<Order, Error> {
        let user = caller_id(ctx)?;
        let not_found = || coded("NOT_FOUND", "no such order");
        let order_id = convert::parse_order_uuid(&id).ok_or_else(not_found)?;
        // Another user's order is "not found", not "forbidden": its existence is not revealed.
        let record = order_by_id(ctx, order_id).await?.filter(|r| r.order.user == user).ok_or_else(not_found)?;
        let mut updates = services(ctx).ledger.order_updates();
        if !record.status.is_final() {
            run(ctx, LedgerCommand::CancelOrder { user, order_id }).await?;
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

    async fn request_withdrawal(
        &self,
        ctx: &Context<'_>,
        asset: String,
        amount: Dec,
        destination: String,
        idempotency_key: String,
    ) -> Result<Withdrawal, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let spec = catalog.asset_by_symbol(&asset)?;
        let units = convert::to_units(amount.0, spec.scale, "amount").map_err(|(code, message)| coded(code, message))?;
        let id = match run(ctx, LedgerCommand::RequestWithdrawal { user, asset: spec.id, amount: units, destination, key: idempotency_key }).await? {
            Outcome::WithdrawalRequested(id) | Outcome::Replayed(Recorded::Withdrawal(id)) => id,
            other => return Err(unexpected(other)),
        };
        withdrawal_by_id(ctx, &catalog, id).await
    }

    async fn create_asset(&self, ctx: &Context<'_>, symbol: String, scale: i32) -> Result<Asset, Error> {
        operator(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let scale = u8::try_from(scale).map_err(|_| coded("BAD_USER_INPUT", "scale is 0 to 18"))?;
        if catalog.asset_by_symbol(&symbol).is_ok() {
            return Err(coded("DUPLICATE", format!("the asset {symbol} exists")));
        }
        let id = catalog.assets.iter().map(|a| a.id).max().unwrap_or(0) + 1;
        let spec = AssetSpec { id, symbol, scale };
        run(ctx, LedgerCommand::CreateAsset(spec.clone())).await?;
        Ok((&spec).into())
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
        let positive = |value: Decimal, field: &str| if value > Decimal::ZERO { Ok(value) } else { Err(bad(format!("{field} must be positive"))) };
        let (tick, lot) = (positive(input.tick_size.0, "tickSize")?, positive(input.lot_size.0, "lotSize")?);
        let base_units_per_lot = convert::to_units(lot, base.scale, "lotSize").map_err(|(_, m)| bad(m))?;
        let quote_units_per_tick_lot = convert::to_units(tick * lot, quote.scale, "tickSize x lotSize")
            .map_err(|(_, m)| bad(format!("{m}: the quote amount of one tick on one lot must be a whole number of quote units")))?;
        let ppm = |rate: Decimal, field: &str| -> Result<u32, Error> {
            let ppm = convert::to_units(rate, 6, field).map_err(|(_, m)| bad(m))?;
            u32::try_from(ppm).map_err(|_| bad(format!("{field} must be 0 to 1")))
        };
        let spec = MarketSpec {
            id: catalog.markets.iter().map(|m| m.id()).max().unwrap_or(0) + 1,
            quote_units_per_tick_lot: u64::try_from(quote_units_per_tick_lot).map_err(|_| bad("tickSize x lotSize is too large".into()))?,
            maker_fee_ppm: ppm(input.maker_fee_rate.0, "makerFeeRate")?,
            taker_fee_ppm: ppm(input.taker_fee_rate.0, "takerFeeRate")?,
            price_ticks_max: 1_000_000_000,
            quantity_lots_max: 1_000_000_000,
        };
        let market = LedgerMarket {
            base: base.id,
            quote: quote.id,
            base_units_per_lot: u64::try_from(base_units_per_lot).map_err(|_| bad("lotSize is too large".into()))?,
            spec,
        };
        run(ctx, LedgerCommand::CreateMarket(market)).await?;
        let catalog = Catalog { assets: catalog.assets.clone(), markets: vec![market] };
        catalog.api_market(&market).ok_or_else(|| unexpected("the new market"))
    }

    async fn deposit(&self, ctx: &Context<'_>, email: String, asset: String, amount: Dec, reference: String) -> Result<LedgerEntry, Error> {
        operator(ctx)?;
        let user = services(ctx).users.by_email(&email).map_err(user_error)?.ok_or_else(|| coded("NOT_FOUND", "no account with this email"))?;
        let catalog = Catalog::load(ctx).await?;
        let spec = catalog.asset_by_symbol(&asset)?;
        let units = convert::to_units(amount.0, spec.scale, "amount").map_err(|(code, message)| coded(code, message))?;
        let id = match run(ctx, LedgerCommand::Deposit { user: user.id, asset: spec.id, amount: units, reference: reference.clone() }).await? {
            Outcome::Deposited(id) | Outcome::Replayed(Recorded::Deposit(id)) => id,
            other => return Err(unexpected(other)),
        };
        Ok(LedgerEntry {
            id: ID(id.to_string()),
            asset: spec.symbol.clone(),
            amount: Dec(convert::to_decimal(units, spec.scale)),
            kind: "DEPOSIT".into(),
            reference: Some(reference),
            created_at: at(now_ms()),
        })
    }

    async fn approve_withdrawal(&self, ctx: &Context<'_>, id: ID) -> Result<Withdrawal, Error> {
        decide(ctx, id, true).await
    }

    async fn reject_withdrawal(&self, ctx: &Context<'_>, id: ID) -> Result<Withdrawal, Error> {
        decide(ctx, id, false).await
    }
}

async fn decide(ctx: &Context<'_>, id: ID, approve: bool) -> Result<Withdrawal, Error> {
    operator(ctx)?;
    let id: u64 = id.parse().map_err(|_| coded("NOT_FOUND", "no such withdrawal"))?;
    run(ctx, LedgerCommand::DecideWithdrawal { id, approve }).await?;
    withdrawal_by_id(ctx, &*Catalog::load(ctx).await?, id).await
}

async fn withdrawal_by_id(ctx: &Context<'_>, catalog: &Catalog, id: u64) -> Result<Withdrawal, Error> {
    match ask(ctx, LedgerQuery::Withdrawal { id }).await? {
        QueryAnswer::Withdrawal(Some(w)) => Ok(api_withdrawal(catalog, &w)),
        QueryAnswer::Withdrawal(None) => Err(coded("NOT_FOUND", "no such withdrawal")),
        other => Err(unexpected(other)),
    }
}

// ---- subscriptions ----

/// Counts an open subscription; the count drops with the stream.
struct SubscriptionSlot(Arc<AtomicUsize>);

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

fn take_slot(ctx: &Context<'_>) -> Result<SubscriptionSlot, Error> {
    let services = services(ctx);
    let open = services.subscriptions.fetch_add(1, Ordering::AcqRel);
    let slot = SubscriptionSlot(services.subscriptions.clone());
    if open >= services.subscriptions_max {
        return Err(coded("RATE_LIMITED", format!("at most {} subscriptions are open at once; close one or try again later", services.subscriptions_max)));
    }
    Ok(slot)
}

/// Ends a subscription whose client read too slowly to keep up.
fn fell_behind() -> Error {
    coded("UNAVAILABLE", "this subscription fell behind and was ended; read the current state and subscribe again")
}

/// How many of the market's latest trades a trades subscription starts with.
const TRADES_SNAPSHOT: u32 = 50;

pub struct Subscription;

#[SubscriptionObject]
impl Subscription {
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
    async fn order_book(&self, ctx: &Context<'_>, market: ID, #[graphql(default = 50)] depth: i32) -> Result<impl Stream<Item = OrderBook>, Error> {
        let catalog = Catalog::load(ctx).await?;
        let (ledger_market, terms, ..) = catalog.market_by_name(&market)?;
        let depth = checked_depth(depth)?;
        let slot = take_slot(ctx)?;
        let feed = services(ctx).feeds.market(ledger_market.id()).await.map_err(link_error)?;
        let mut books = feed.book.clone();
        // The value now first; after that, each change. A slow client skips to the newest book.
        books.mark_changed();
        let depth = depth as usize;
        // (the receiver, the levels last sent, what keeps the feed and the slot)
        let state = (books, None::<(Vec<matching_core::PriceLevel>, Vec<matching_core::PriceLevel>)>, (feed, slot));
        Ok(stream::unfold(state, move |(mut books, mut last, held)| {
            let terms = terms.clone();
            async move {
                loop {
                    books.changed().await.ok()?;
                    let Some(book) = books.borrow_and_update().clone() else { continue };
                    let cut = |levels: &[matching_core::PriceLevel]| levels[..levels.len().min(depth)].to_vec();
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
        let QueryAnswer::Trades(mut snapshot) = ask(ctx, LedgerQuery::MarketTrades { market: ledger_market.id(), limit: TRADES_SNAPSHOT }).await? else {
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

fn api_book(terms: &MarketTerms, book: &wire::BookDepth, bids: &[matching_core::PriceLevel], asks: &[matching_core::PriceLevel]) -> OrderBook {
    let levels = |levels: &[matching_core::PriceLevel]| {
        levels
            .iter()
            .map(|l| PriceLevel {
                price: Dec((Decimal::from(l.price) * terms.tick_size).normalize()),
                quantity: Dec((Decimal::from(l.quantity) * terms.lot_size).normalize()),
            })
            .collect()
    };
    OrderBook { market: ID(terms.name.clone()), sequence: book.output_last.to_string(), bids: levels(bids), asks: levels(asks) }
}

pub fn schema(services: Services, depth_max: usize, complexity_max: usize) -> ApiSchema {
    Schema::build(Query, Mutation, Subscription).data(services).limit_depth(depth_max).limit_complexity(complexity_max).finish()
}
