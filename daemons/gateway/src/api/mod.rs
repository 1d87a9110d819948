//! The GraphQL schema of `contract.graphql` and what Marionette adds to it:
//! one file per product, merged here. Each file holds its product's types,
//! queries, mutations and subscriptions, who may call them, and the mapping
//! between the API's vocabulary and the ledger's (`ledger-api`).
//!
//! This file is the registry (the merge of every product's objects, one line
//! each) and what they share: the services, the caller, errors with their
//! codes, the scalars, and the catalog of assets and markets. The schema it
//! builds is committed as `daemons/gateway/schema.graphql`; a test keeps the
//! two equal, so every change to the API shows in review.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use async_graphql::{Context, Error, ErrorExtensions, InputValueError, InputValueResult, MergedObject, MergedSubscription, Scalar, ScalarType, Schema, Value};
use ledger_api::spot::Market as LedgerMarket;
use ledger_api::{Answer, AssetSpec, Command, LedgerError, Outcome, Query as LedgerQuery};
use rust_decimal::Decimal;

use crate::auth::{Auth, Claims};
use crate::feed::Feeds;
use crate::ledger_client::{LedgerClient, LinkError};
use crate::matching_client::MatchingClient;
use crate::units;
use crate::users::{self, UserError, Users};

pub mod accounts;
pub mod address_book;
pub mod api_keys;
pub mod convert;
pub mod distributions;
pub mod donations;
pub mod house;
pub mod kernel;
pub mod market_data;
pub mod operators;
pub mod oversight;
pub mod parse_cache;
pub mod perpetual;
pub mod spot;
pub mod token_agent;
pub mod tokenization;
pub mod two_factor;
pub mod wallet;
pub mod webhooks;

/// Every product's queries: one line each.
#[derive(MergedObject, Default)]
pub struct Query(
    accounts::AccountsQuery,
    api_keys::ApiKeysQuery,
    address_book::AddressBookQuery,
    kernel::KernelQuery,
    wallet::WalletQuery,
    spot::SpotQuery,
    market_data::MarketDataQuery,
    house::HouseQuery,
    convert::ConvertQuery,
    perpetual::PerpetualQuery,
    tokenization::TokenizationQuery,
    distributions::DistributionsQuery,
    donations::DonationsQuery,
    webhooks::WebhooksQuery,
    operators::OperatorsQuery,
    oversight::OversightQuery,
);

/// Every product's mutations: one line each.
#[derive(MergedObject, Default)]
pub struct Mutation(
    accounts::AccountsMutation,
    two_factor::TwoFactorMutation,
    api_keys::ApiKeysMutation,
    address_book::AddressBookMutation,
    kernel::KernelMutation,
    wallet::WalletMutation,
    spot::SpotMutation,
    house::HouseMutation,
    convert::ConvertMutation,
    perpetual::PerpetualMutation,
    tokenization::TokenizationMutation,
    distributions::DistributionsMutation,
    token_agent::TokenAgentMutation,
    donations::DonationsMutation,
    webhooks::WebhooksMutation,
    operators::OperatorsMutation,
);

/// Every product's subscriptions: one line each.
#[derive(MergedSubscription, Default)]
pub struct Subscription(spot::SpotSubscription, market_data::MarketDataSubscription, perpetual::PerpetualSubscription);

pub type ApiSchema = Schema<Query, Mutation, Subscription>;

/// Directives one field may carry: the API defines none beyond @skip and
/// @include, and a thousand repeated ones cost parsing and validation.
const DIRECTIVES_PER_FIELD_MAX: usize = 4;

pub fn schema(services: Services, limits: &crate::config::LimitsConfig) -> ApiSchema {
    let builder = Schema::build(Query::default(), Mutation::default(), Subscription::default())
        .data(services)
        .limit_depth(limits.query_depth_max)
        .limit_complexity(limits.query_complexity_max)
        .limit_directives(DIRECTIVES_PER_FIELD_MAX)
        // What a request signed with an API key may call, at every root field.
        .extension(api_keys::KeyScopes)
        .extension(parse_cache::ParseCache::default())
        // A probe learns nothing from a misspelt field: no "did you mean".
        .disable_suggestions();
    // The schema is public (daemons/gateway/schema.graphql); serving it is a choice.
    if limits.introspection { builder } else { builder.disable_introspection() }.finish()
}

/// The schema in SDL, as committed in `daemons/gateway/schema.graphql`.
pub fn sdl() -> String {
    Schema::build(Query::default(), Mutation::default(), Subscription::default()).finish().sdl()
}

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
    /// Subscriptions open per client address, each under its own cap.
    pub subscriptions_per_ip: Arc<crate::per_ip::PlacesPerIp>,
    /// Login throttling and the bound on argon2 work.
    pub logins: crate::logins::Logins,
    /// The least zxcvbn score a new password must have.
    pub password_score_min: u8,
    /// See [`crate::config::AuthConfig::operators_two_factor_required`].
    pub operators_two_factor_required: bool,
    pub two_factor: Arc<crate::two_factor::TwoFactor>,
    pub api_keys: Arc<crate::api_keys::ApiKeys>,
    pub address_book: Arc<crate::address_book::AddressBook>,
    pub limits: WithdrawalLimitsConfig,
    pub reviews: crate::limits::Reviews,
    /// One withdrawal request per user at a time: its limit check and its
    /// request are one step, so two at once cannot both pass.
    pub withdrawing: std::sync::Mutex<std::collections::HashMap<u64, Arc<tokio::sync::Mutex<()>>>>,
    pub order_times: OrderTimes,
    /// Convert's quotes per user (`[convert]` in gateway.toml).
    pub convert_quotes: crate::ratelimit::RateLimiter<u64>,
    /// Organisers' webhook endpoints and the outbox to them.
    pub webhooks: Arc<crate::webhooks::Webhooks>,
}

/// How long placeOrder waits on the daemons, for the order path's
/// breakdown (`scripts/bench gateway`); served as metrics by `http.rs`.
#[derive(Clone)]
pub struct OrderTimes {
    /// From sending PlaceOrder to the ledger until its outcome: the hold, durable.
    pub hold_seconds: prometheus_client::metrics::histogram::Histogram,
    /// From that outcome until the order's state after matching: matching's
    /// group commit and the ledger's settlement of its output.
    pub settle_seconds: prometheus_client::metrics::histogram::Histogram,
    /// Answers read from the order's state because its settlement did not
    /// come within the wait: matching slow or away, or a replayed request.
    pub settled_by_read: prometheus_client::metrics::counter::Counter,
}

impl Default for OrderTimes {
    fn default() -> Self {
        use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
        OrderTimes {
            hold_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            settle_seconds: Histogram::new(exponential_buckets(0.000_01, 2.0, 20)),
            settled_by_read: Default::default(),
        }
    }
}

/// The reference asset and the tiers, or None: no limits.
#[derive(Clone, Debug, Default)]
pub struct WithdrawalLimitsConfig {
    pub reference_asset: String,
    pub tiers: Vec<crate::limits::Tier>,
}

impl Services {
    /// `user`'s place in line to request a withdrawal.
    pub(crate) fn withdrawal_lock(&self, user: u64) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.withdrawing.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Forget the locks nobody holds or waits for.
        locks.retain(|_, lock| Arc::strong_count(lock) > 1);
        locks.entry(user).or_default().clone()
    }
}

/// Who is calling: the verified claims of the request's token, if any.
#[derive(Clone, Default)]
pub struct Caller(pub Option<Claims>);

pub const TOKEN_COOKIE: &str = "marionette_token";

pub(crate) fn coded(code: &'static str, message: impl Into<String>) -> Error {
    Error::new(message.into()).extend_with(|_, extensions| extensions.set("code", code))
}

pub fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}

pub(crate) fn link_error(error: LinkError) -> Error {
    coded("UNAVAILABLE", error.to_string())
}

pub(crate) fn ledger_error(error: LedgerError) -> Error {
    coded(error.code(), error.to_string())
}

pub(crate) fn user_error(error: UserError) -> Error {
    match error {
        UserError::EmailTaken => coded("DUPLICATE", "an account with this email exists"),
        UserError::EmailLookalike => coded("DUPLICATE", "an account with an email that looks the same exists; choose another address"),
        UserError::BadInput(reason) => coded("BAD_USER_INPUT", reason),
        other => {
            tracing::error!(error = %other, "user store failed");
            coded("UNAVAILABLE", "the account store is unavailable; try again")
        }
    }
}

pub(crate) fn caller(ctx: &Context<'_>) -> Result<Claims, Error> {
    ctx.data_unchecked::<Caller>().0.clone().ok_or_else(|| coded("UNAUTHENTICATED", "log in first: send Authorization: Bearer <token> or the login cookie"))
}

pub(crate) fn caller_id(ctx: &Context<'_>) -> Result<u64, Error> {
    caller(ctx)?.sub.parse().map_err(|_| coded("UNAUTHENTICATED", "the token names no user"))
}

/// The caller, if an operator who may act as one now: with two-factor
/// authentication on when the gateway requires it of operators.
pub(crate) fn operator(ctx: &Context<'_>) -> Result<Claims, Error> {
    let claims = caller(ctx)?;
    if claims.role != users::Role::Operator {
        return Err(coded("FORBIDDEN", "this operation is for operators"));
    }
    let services = services(ctx);
    let user = claims.user().ok_or_else(|| coded("UNAUTHENTICATED", "the token names no user"))?;
    operator_enrolled(services.operators_two_factor_required, &services.two_factor, user)?;
    Ok(claims)
}

/// TWO_FACTOR_ENROLMENT_REQUIRED unless `operator` has two-factor
/// authentication on, or operators need not (`required` off).
pub(crate) fn operator_enrolled(required: bool, two_factor: &crate::two_factor::TwoFactor, operator: u64) -> Result<(), Error> {
    if !required || two_factor.enabled(operator).map_err(two_factor::two_factor_error)? {
        return Ok(());
    }
    Err(coded(
        TWO_FACTOR_ENROLMENT_REQUIRED,
        "operators must use two-factor authentication: enrol first (enrolTwoFactor, then confirmTwoFactor with the app's code; or marionettectl two-factor enrol, then two-factor confirm CODE)",
    ))
}

/// The code of [`operator_enrolled`]'s refusal.
pub(crate) const TWO_FACTOR_ENROLMENT_REQUIRED: &str = "TWO_FACTOR_ENROLMENT_REQUIRED";

pub(crate) fn services<'a>(ctx: &Context<'a>) -> &'a Services {
    ctx.data_unchecked::<Services>()
}

pub(crate) async fn ask(ctx: &Context<'_>, query: LedgerQuery) -> Result<Answer, Error> {
    ask_ledger(&services(ctx).ledger, query).await
}

pub(crate) async fn ask_ledger(ledger: &LedgerClient, query: LedgerQuery) -> Result<Answer, Error> {
    match ledger.query(query).await.map_err(link_error)? {
        Ok(answer) => Ok(answer),
        Err(ledger_api::QueryError::BadRequest(reason)) => Err(coded("BAD_USER_INPUT", reason)),
        Err(ledger_api::QueryError::Unavailable) => Err(coded("UNAVAILABLE", "the ledger could not read its store; try again")),
    }
}

pub(crate) async fn run(ctx: &Context<'_>, command: Command) -> Result<Outcome, Error> {
    services(ctx).ledger.command(command).await.map_err(link_error)?.map_err(ledger_error)
}

pub(crate) fn unexpected(answer: impl std::fmt::Debug) -> Error {
    tracing::error!(?answer, "the ledger answered with something unexpected");
    coded("UNAVAILABLE", "the ledger gave an unexpected answer")
}

/// What a list query's `limit` is when the client sends none, or null.
pub(crate) const LIST_LIMIT_DEFAULT: i32 = 100;
/// What an order book's `depth` is when the client sends none, or null.
pub(crate) const DEPTH_DEFAULT: i32 = 50;

/// A list query's `limit` argument, as the ledger takes it (it refuses 0).
pub(crate) fn list_limit(limit: Option<i32>) -> u32 {
    limit.unwrap_or(LIST_LIMIT_DEFAULT).max(0) as u32
}

// ---- scalars ----

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dec(pub Decimal);

#[Scalar(name = "Decimal")]
impl ScalarType for Dec {
    fn parse(value: Value) -> InputValueResult<Self> {
        match &value {
            Value::String(text) => units::parse_decimal(text).map(Dec).map_err(InputValueError::custom),
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

pub(crate) fn at(ms: u64) -> DateTime {
    DateTime(units::rfc3339(ms))
}

// ---- reference data: assets and markets ----

/// Assets and markets as the ledger holds them. Neither is ever changed
/// once created, only added to, so the copy the gateway keeps is right for
/// everything it holds: the order path uses it and reads the ledger again
/// only when a request names something the copy lacks (one another gateway
/// created). Listings always read afresh. The spot file adds its markets'
/// methods.
#[derive(Default)]
pub struct Catalog {
    assets: Vec<AssetSpec>,
    markets: Vec<LedgerMarket>,
    /// The ids of the markets that are perpetual (named BASE-COLLATERAL-PERP).
    perpetuals: Vec<u32>,
}

impl Catalog {
    /// Read from the ledger, and kept for the requests after this one.
    pub(crate) async fn load(ctx: &Context<'_>) -> Result<Arc<Catalog>, Error> {
        let catalog = Catalog::read(&services(ctx).ledger).await?;
        *services(ctx).catalog.write().unwrap_or_else(|poisoned| poisoned.into_inner()) = catalog.clone();
        Ok(catalog)
    }

    /// Read from the ledger.
    pub(crate) async fn read(ledger: &LedgerClient) -> Result<Arc<Catalog>, Error> {
        let Answer::Assets(assets) = ask_ledger(ledger, LedgerQuery::Assets).await? else { return Err(unexpected("assets")) };
        let Answer::Spot(ledger_api::spot::Answer::Markets(markets)) = ask_ledger(ledger, LedgerQuery::Spot(ledger_api::spot::Query::Markets)).await? else {
            return Err(unexpected("markets"));
        };
        let perpetuals = LedgerQuery::Spot(ledger_api::spot::Query::Perpetual(ledger_api::perpetual::Query::Markets { now_ms: now_ms() }));
        let Answer::Spot(ledger_api::spot::Answer::Perpetual(ledger_api::perpetual::Answer::Markets(perpetuals))) = ask_ledger(ledger, perpetuals).await?
        else {
            return Err(unexpected("perpetual markets"));
        };
        let perpetuals = perpetuals.iter().map(|view| view.record.spec.market).collect();
        Ok(Arc::new(Catalog { assets, markets, perpetuals }))
    }

    /// The kept copy when it has what `covers` asks for, else a fresh one.
    pub(crate) async fn covering(ctx: &Context<'_>, covers: impl Fn(&Catalog) -> bool) -> Result<Arc<Catalog>, Error> {
        let kept = services(ctx).catalog.read().unwrap_or_else(|poisoned| poisoned.into_inner()).clone();
        if covers(&kept) {
            return Ok(kept);
        }
        Catalog::load(ctx).await
    }

    pub(crate) fn assets(&self) -> &[AssetSpec] {
        &self.assets
    }

    pub(crate) fn asset(&self, id: u32) -> Option<&AssetSpec> {
        self.assets.iter().find(|a| a.id == id)
    }

    pub(crate) fn asset_by_symbol(&self, symbol: &str) -> Result<&AssetSpec, Error> {
        self.assets.iter().find(|a| a.symbol == symbol).ok_or_else(|| coded("NOT_FOUND", format!("no asset {symbol}")))
    }

    pub(crate) fn symbol(&self, asset: u32) -> String {
        self.asset(asset).map(|a| a.symbol.clone()).unwrap_or_else(|| asset.to_string())
    }

    pub(crate) fn amount(&self, asset: u32, units: i128) -> Dec {
        Dec(units::to_decimal(units, self.asset(asset).map(|a| a.scale).unwrap_or(0)))
    }

    /// `amount` of the asset `symbol` in its minor units, refused off its scale.
    pub(crate) fn units(&self, symbol: &str, amount: Dec) -> Result<(&AssetSpec, i128), Error> {
        let spec = self.asset_by_symbol(symbol)?;
        let units = units::to_units(amount.0, spec.scale, "amount").map_err(|(code, message)| coded(code, message))?;
        Ok((spec, units))
    }
}

// ---- subscriptions ----

/// Counts an open subscription, overall and at its client's address; the
/// counts drop with the stream.
pub(crate) struct SubscriptionSlot(Arc<AtomicUsize>, Option<crate::per_ip::IpSlot>);

impl Drop for SubscriptionSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

pub(crate) fn take_slot(ctx: &Context<'_>) -> Result<SubscriptionSlot, Error> {
    let services = services(ctx);
    let open = services.subscriptions.fetch_add(1, Ordering::AcqRel);
    let mut slot = SubscriptionSlot(services.subscriptions.clone(), None);
    if open >= services.subscriptions_max {
        return Err(coded("RATE_LIMITED", format!("at most {} subscriptions are open at once; close one or try again later", services.subscriptions_max)));
    }
    // Subscriptions come over the WebSocket, whose handler always says where from.
    if let Some(origin) = ctx.data_opt::<crate::logins::RequestOrigin>() {
        let per_ip = &services.subscriptions_per_ip;
        slot.1 = Some(
            per_ip
                .take(origin.ip)
                .ok_or_else(|| coded("RATE_LIMITED", format!("at most {} subscriptions are open at once from one address; close one first", per_ip.max())))?,
        );
    }
    Ok(slot)
}

/// Ends a subscription whose client read too slowly to keep up.
pub(crate) fn fell_behind() -> Error {
    coded("UNAVAILABLE", "this subscription fell behind and was ended; read the current state and subscribe again")
}
