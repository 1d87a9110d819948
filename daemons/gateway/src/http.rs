//! GraphQL over HTTP on hyper: POST /graphql (JSON), GET /graphql (queries
//! only), and the REST endpoints GET /markets, /healthz, /readyz; Prometheus
//! GET /metrics on a listener of its own ([`serve_metrics`]).
//!
//! Following the GraphQL-over-HTTP specification: a client that accepts
//! `application/graphql-response+json` gets it, with 400 for a request that
//! could not run (it does not parse or validate) and 200 otherwise; plain
//! `application/json` clients get 200. Mutations are refused over GET (405)
//! and a POST body must be JSON (415): a browser form cannot send either, so
//! the login cookie cannot be used across sites.

use std::convert::Infallible;
use std::net::IpAddr;
use std::sync::atomic::AtomicI64;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::parser::types::{DocumentOperations, OperationType};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, AUTHORIZATION, CONTENT_TYPE, COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::api::{ApiSchema, Caller, TOKEN_COOKIE};
use crate::auth::Auth;
use crate::ledger_client::LedgerClient;
use crate::logins::RequestOrigin;
use crate::ratelimit::RateLimiter;
use crate::ws;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

pub struct Metrics {
    registry: Registry,
    pub requests: Counter,
    pub client_errors: Counter,
    pub rate_limited: Counter,
    /// WebSockets that asked for cancel-on-disconnect and ended.
    pub cancels_on_disconnect: Counter,
    pub connections_refused: Counter,
    pub connections: Gauge<i64, AtomicI64>,
    pub websockets: Gauge<i64, AtomicI64>,
    /// Set from the session table at each scrape.
    pub sessions: Gauge<i64, AtomicI64>,
    /// Requests signed with an API key and refused (bad signature, replay, stale, address).
    pub signed_refused: Counter,
    /// Set at each scrape: signatures remembered against replays.
    pub signatures_remembered: Gauge<i64, AtomicI64>,
    pub request_seconds: Histogram,
    /// Verifying a request's token and its session.
    pub auth_seconds: Histogram,
    pub order_times: crate::api::OrderTimes,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("marionette_gateway");
        let metrics = Metrics {
            requests: Counter::default(),
            client_errors: Counter::default(),
            rate_limited: Counter::default(),
            cancels_on_disconnect: Counter::default(),
            connections_refused: Counter::default(),
            connections: Gauge::default(),
            websockets: Gauge::default(),
            sessions: Gauge::default(),
            signed_refused: Counter::default(),
            signatures_remembered: Gauge::default(),
            request_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            auth_seconds: Histogram::new(exponential_buckets(0.000_001, 2.0, 20)),
            order_times: crate::api::OrderTimes::default(),
            registry: Registry::default(),
        };
        registry.register("requests", "HTTP requests served", metrics.requests.clone());
        registry.register("client_errors", "Requests answered 4xx", metrics.client_errors.clone());
        registry.register("rate_limited", "Requests refused with 429 RATE_LIMITED", metrics.rate_limited.clone());
        registry.register("sessions", "Live sessions (logins not ended or expired)", metrics.sessions.clone());
        registry.register(
            "cancels_on_disconnect",
            "API-key WebSockets with cancel-on-disconnect that ended, their owner's open orders then cancelled",
            metrics.cancels_on_disconnect.clone(),
        );
        registry.register("signed_requests_refused", "Requests signed with an API key and refused", metrics.signed_refused.clone());
        registry.register(
            "api_key_signatures_remembered",
            "Signatures of API-key requests remembered within their receive window, against replays",
            metrics.signatures_remembered.clone(),
        );
        registry.register(
            "connections_refused",
            "Connections closed at once: their address had connections_per_ip_max open",
            metrics.connections_refused.clone(),
        );
        registry.register("connections", "Open HTTP connections, WebSockets included", metrics.connections.clone());
        registry.register("websockets", "Open subscription WebSockets", metrics.websockets.clone());
        registry.register("request_seconds", "Time to answer a request", metrics.request_seconds.clone());
        registry.register("auth_seconds", "Verifying a request's token and its session", metrics.auth_seconds.clone());
        registry.register(
            "order_hold_seconds",
            "placeOrder: from sending the order to the ledger until its outcome (the hold, durable)",
            metrics.order_times.hold_seconds.clone(),
        );
        registry.register(
            "order_settle_seconds",
            "placeOrder: from the ledger's outcome until the order's state after matching (matching's commit, the ledger's settlement)",
            metrics.order_times.settle_seconds.clone(),
        );
        registry.register(
            "order_settled_by_read",
            "placeOrder answers read from the order's state because its settlement did not come within order_settle_timeout_ms",
            metrics.order_times.settled_by_read.clone(),
        );
        Metrics { registry, ..metrics }
    }

    /// The webhook outbox's counters, served with the rest.
    pub fn with_webhooks(mut self, webhooks: &crate::webhooks::WebhookMetrics) -> Metrics {
        let registry = &mut self.registry;
        registry.register("webhooks_delivered", "Webhooks to organisers answered 2xx", webhooks.delivered.clone());
        registry.register("webhook_attempts_failed", "Webhook attempts without a 2xx, to be retried", webhooks.attempts_failed.clone());
        registry.register("webhooks_given_up", "Webhooks given up after webhooks.attempts_max attempts (or their endpoint removed)", webhooks.given_up.clone());
        registry.register("webhooks_enqueued", "Webhook events written to the outbox", webhooks.enqueued.clone());
        registry.register("webhooks_pending", "Webhooks in the outbox still to be delivered", webhooks.pending.clone());
        self
    }

    fn render(&self) -> String {
        let mut text = String::new();
        encode(&mut text, &self.registry).expect("writing to a String cannot fail");
        text
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

pub struct App {
    pub schema: ApiSchema,
    pub auth: Arc<Auth>,
    pub ledger: LedgerClient,
    pub metrics: Metrics,
    pub body_bytes_max: usize,
    /// How long a request body may take to arrive (408 beyond it).
    pub body_read_timeout: Duration,
    /// Pages of these origins, besides the gateway's own, may open WebSockets.
    pub websocket_origins: Vec<crate::origin::Origin>,
    /// Proxies whose X-Forwarded-For names the client (see [`crate::forwarded`]).
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub ip_limiter: RateLimiter<IpAddr>,
    pub user_limiter: RateLimiter<String>,
    /// Signed requests per API key.
    pub key_limiter: RateLimiter<crate::api_keys::KeyId>,
    pub api_keys: Arc<crate::api_keys::ApiKeys>,
    pub websocket: WebSocketTimes,
    /// The web console's files, served at `/`.
    pub console: crate::console::Console,
}

/// How long a WebSocket may stay quiet.
#[derive(Clone, Copy, Debug)]
pub struct WebSocketTimes {
    /// Between the server's pings; a client that answers none of two is closed (1001).
    pub ping: Duration,
    /// With no subscription running and no message from the client (1000).
    pub idle: Duration,
}

type Reply = Response<Full<Bytes>>;

fn reply(status: StatusCode, content_type: &str, body: impl Into<Bytes>) -> Reply {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_str(content_type).expect("static content types are valid"));
    response
}

/// A request-level GraphQL error (nothing ran), in the spec's shape.
fn request_error(status: StatusCode, code: &str, message: &str) -> Reply {
    let body = serde_json::json!({ "errors": [{ "message": message, "extensions": { "code": code } }] });
    reply(status, GRAPHQL_RESPONSE, body.to_string())
}

/// 429 with the contract's code and when to come back.
fn rate_limited(app: &App, wait: std::time::Duration) -> Reply {
    app.metrics.rate_limited.inc();
    let mut response = request_error(StatusCode::TOO_MANY_REQUESTS, "RATE_LIMITED", "too many requests; retry after the Retry-After seconds");
    response.headers_mut().insert("retry-after", HeaderValue::from(retry_after_seconds(wait)));
    response
}

/// A limiter's wait as the whole seconds a client is told (at least one).
fn retry_after_seconds(wait: std::time::Duration) -> u64 {
    wait.as_secs_f64().ceil().max(1.0) as u64
}

/// A connection's place under `listen.connections_max`; a WebSocket upgrade takes it over from the HTTP connection.
pub type ConnectionPermit = Arc<std::sync::Mutex<Option<tokio::sync::OwnedSemaphorePermit>>>;

pub async fn handle(app: Arc<App>, peer: IpAddr, permit: ConnectionPermit, request: Request<Incoming>) -> Result<Reply, Infallible> {
    let started = Instant::now();
    // Every limit keyed by address counts the client, behind a trusted proxy too.
    let remote = if app.trusted_proxies.is_empty() {
        peer
    } else {
        let forwarded_for = request.headers().get_all("x-forwarded-for").into_iter().filter_map(|v| v.to_str().ok());
        crate::forwarded::client_address(peer, forwarded_for, &app.trusted_proxies)
    };
    // Every path but the liveness probe costs the gateway something (/readyz
    // and /markets ask the ledger), so each counts against its address's limit.
    let limited = if request.uri().path() == "/healthz" { Ok(()) } else { app.ip_limiter.check(&remote, Instant::now()) };
    let response = match limited {
        Ok(()) if request.uri().path() == "/graphql" && request.method() == Method::GET && request.headers().contains_key("sec-websocket-key") => {
            websocket(app.clone(), remote, permit, request)
        }
        Ok(()) => route(&app, remote, request).await,
        Err(wait) => rate_limited(&app, wait),
    };
    app.metrics.requests.inc();
    if response.status().is_client_error() {
        app.metrics.client_errors.inc();
    }
    app.metrics.request_seconds.observe(started.elapsed().as_secs_f64());
    Ok(response)
}

async fn route(app: &App, remote: IpAddr, request: Request<Incoming>) -> Reply {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => readyz(app).await,
        (&Method::GET, "/markets") => markets(app).await,
        (&Method::GET, path) if path.starts_with("/markets/") => market_data(app, path, request.uri().query()).await,
        (&Method::GET, path) if path.starts_with("/donations/") => donation_document(app, &request).await,
        (&Method::POST, "/graphql") => post_graphql(app, remote, request).await,
        (&Method::GET, "/graphql") => get_graphql(app, remote, request).await,
        (_, "/graphql") => {
            let mut response = request_error(StatusCode::METHOD_NOT_ALLOWED, "BAD_REQUEST", "use POST (or GET for queries)");
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, POST"));
            response
        }
        (method @ (&Method::GET | &Method::HEAD), path) => match app.console.serve(path, request.headers()) {
            Some(served) => {
                let body = if method == Method::HEAD { Bytes::new() } else { served.body };
                let mut response = Response::new(Full::new(body));
                *response.status_mut() = served.status;
                *response.headers_mut() = served.headers;
                response
            }
            None => reply(StatusCode::NOT_FOUND, "text/plain", "not found: the API is POST /graphql\n"),
        },
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: the API is POST /graphql\n"),
    }
}

/// GET /markets/{market}/ticker, /book, /trades, /candles (`crate::rest`).
async fn market_data(app: &App, path: &str, query: Option<&str>) -> Reply {
    let (market, request) = match crate::rest::parse(path, query) {
        None => return reply(StatusCode::NOT_FOUND, "text/plain", "not found: market data is /markets/{market}/ticker, /book, /trades or /candles\n"),
        Some(Err(reason)) => return request_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &reason),
        Some(Ok(parsed)) => parsed,
    };
    let (document, variables) = crate::rest::graphql(&market, &request);
    let graphql = async_graphql::Request::new(document).variables(async_graphql::Variables::from_json(variables)).data(Caller(None));
    let mut response = app.schema.execute(graphql).await;
    if !response.errors.is_empty() {
        with_codes(&mut response.errors, document);
        let code = response.errors[0].extensions.as_ref().and_then(|e| e.get("code")).and_then(|code| match code {
            async_graphql::Value::String(code) => Some(code.clone()),
            _ => None,
        });
        let status = StatusCode::from_u16(crate::rest::status_of(code.as_deref())).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return reply(status, "application/json", serde_json::json!({ "errors": response.errors }).to_string());
    }
    let data = response.data.into_json().unwrap_or_default();
    reply(StatusCode::OK, "application/json", crate::rest::reshape(&request, data).to_string())
}

/// GET /donations/{id}/receipt.pdf and /donations/statements/{year}.pdf (`crate::documents`).
async fn donation_document(app: &App, request: &Request<Incoming>) -> Reply {
    let Some(document) = crate::documents::parse(request.uri().path()) else {
        return reply(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found: donors' documents are /donations/{id}/receipt.pdf and /donations/statements/{year}.pdf\n",
        );
    };
    let caller = caller(app, request);
    if let Err(wait) = check_user(app, &caller) {
        return rate_limited(app, wait);
    }
    let (query, variables) = crate::documents::graphql(document);
    let graphql = async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(variables)).data(caller);
    let mut response = app.schema.execute(graphql).await;
    if !response.errors.is_empty() {
        with_codes(&mut response.errors, query);
        let code = response.errors[0].extensions.as_ref().and_then(|e| e.get("code")).and_then(|code| match code {
            async_graphql::Value::String(code) => Some(code.clone()),
            _ => None,
        });
        let status = StatusCode::from_u16(crate::documents::status_of(code.as_deref())).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
        return reply(status, "application/json", serde_json::json!({ "errors": response.errors }).to_string());
    }
    let data = response.data.into_json().unwrap_or_default();
    let Some((pdf, name)) = crate::documents::render(document, &data) else {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "the document could not be read; try again\n");
    };
    let mut response = reply(StatusCode::OK, "application/pdf", pdf);
    if let Ok(disposition) = HeaderValue::from_str(&format!("inline; filename=\"{name}\"")) {
        response.headers_mut().insert(hyper::header::CONTENT_DISPOSITION, disposition);
    }
    response.headers_mut().insert(hyper::header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    response
}

/// Ready when the ledger answers and its link to matching is up.
async fn readyz(app: &App) -> Reply {
    match app.ledger.query(ledger_api::Query::Status).await {
        Ok(Ok(ledger_api::Answer::Status(status))) if status.matching_connected => reply(StatusCode::OK, "text/plain", "ready\n"),
        Ok(Ok(_)) => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "the ledger is up but cannot reach matching\n"),
        _ => reply(StatusCode::SERVICE_UNAVAILABLE, "text/plain", "the ledger is not reachable\n"),
    }
}

async fn markets(app: &App) -> Reply {
    let query = "{ markets { id base { id symbol scale } quote { id symbol scale } tickSize lotSize makerFeeRate takerFeeRate lastPrice } }";
    let response = app.schema.execute(async_graphql::Request::new(query).data(Caller(None))).await;
    if response.is_err() {
        return reply(StatusCode::SERVICE_UNAVAILABLE, "application/json", serde_json::json!({ "errors": response.errors }).to_string());
    }
    let data = response.data.into_json().unwrap_or_default();
    reply(StatusCode::OK, "application/json", data.get("markets").cloned().unwrap_or_default().to_string())
}

/// The caller from `Authorization: Bearer` or, failing that, the login cookie.
fn caller(app: &App, request: &Request<Incoming>) -> Caller {
    let headers = request.headers();
    let bearer = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
    let cookie = || {
        headers
            .get_all(COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .find_map(|pair| pair.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
    };
    let token = bearer.or_else(cookie).filter(|t| !t.is_empty());
    let started = Instant::now();
    let caller = Caller(token.and_then(|token| app.auth.verify(token)));
    if token.is_some() {
        app.metrics.auth_seconds.observe(started.elapsed().as_secs_f64());
    }
    caller
}

/// The three headers of a request signed with an API key, when it has them.
struct SignedHeaders {
    key: String,
    timestamp: String,
    signature: String,
}

fn signed_headers(request: &Request<Incoming>) -> Option<Result<SignedHeaders, Box<Reply>>> {
    use crate::api_keys::{HEADER_KEY, HEADER_SIGNATURE, HEADER_TIMESTAMP};
    let headers = request.headers();
    let key = headers.get(HEADER_KEY)?;
    let text = |name| headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).map(str::to_string);
    Some(match (key.to_str().ok(), text(HEADER_TIMESTAMP), text(HEADER_SIGNATURE)) {
        (Some(key), Some(timestamp), Some(signature)) => Ok(SignedHeaders { key: key.to_string(), timestamp, signature }),
        _ => Err(Box::new(request_error(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "a signed request has X-Marionette-Key, X-Marionette-Timestamp and X-Marionette-Signature, all three",
        ))),
    })
}

/// The caller of a request signed with an API key, or the answer that
/// refuses it; counted against the key's own rate limit and its owner's.
fn key_caller(app: &App, remote: IpAddr, signed: &SignedHeaders, method: &str, path_and_query: &str, body: &[u8]) -> Result<Caller, Box<Reply>> {
    let headers = crate::api_keys::Signed { key: &signed.key, timestamp: &signed.timestamp, signature: &signed.signature };
    let key = app.api_keys.authenticate(&headers, method, path_and_query, body, remote, crate::api::now_ms()).map_err(|refusal| {
        app.metrics.signed_refused.inc();
        tracing::info!(event = "signed_request_refused", key = %signed.key, %remote, code = refusal.code(), %refusal, "a signed request was refused");
        let status = match refusal {
            crate::api_keys::Refusal::Malformed(_) => StatusCode::BAD_REQUEST,
            crate::api_keys::Refusal::AddressNotAllowed(_) => StatusCode::FORBIDDEN,
            crate::api_keys::Refusal::Busy => StatusCode::TOO_MANY_REQUESTS,
            crate::api_keys::Refusal::Starting { .. } => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        let mut response = request_error(status, refusal.code(), &refusal.to_string());
        if let crate::api_keys::Refusal::Starting { wait_ms } = refusal {
            response.headers_mut().insert("retry-after", HeaderValue::from(wait_ms.div_ceil(1_000)));
        }
        Box::new(response)
    })?;
    app.key_limiter.check(&key.id, Instant::now()).map_err(|wait| Box::new(rate_limited(app, wait)))?;
    let caller = Caller(Some(crate::auth::Claims::for_key(&key)));
    check_user(app, &caller).map_err(|wait| Box::new(rate_limited(app, wait)))?;
    Ok(caller)
}

fn path_and_query(request: &Request<Incoming>) -> String {
    request.uri().path_and_query().map_or_else(|| request.uri().path().to_string(), |p| p.as_str().to_string())
}

/// Whether a socket's caller may start one more subscription now: the
/// limits a request of theirs would meet, by key, by user or by address.
fn subscription_allowed(app: &App, caller: &Caller, remote: IpAddr) -> Result<(), std::time::Duration> {
    match caller.0.as_ref() {
        Some(claims) => {
            if let Some(grant) = &claims.key {
                app.key_limiter.check(&grant.id, Instant::now())?;
            }
            check_user(app, caller)
        }
        None => app.ip_limiter.check(&remote, Instant::now()),
    }
}

fn check_user(app: &App, caller: &Caller) -> Result<(), std::time::Duration> {
    match &caller.0 {
        Some(claims) => app.user_limiter.check(&claims.sub, Instant::now()),
        None => Ok(()),
    }
}

fn wants_graphql_response(request: &Request<Incoming>) -> bool {
    request.headers().get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains(GRAPHQL_RESPONSE))
}

async fn post_graphql(app: &App, remote: IpAddr, request: Request<Incoming>) -> Reply {
    let is_json = request
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return request_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "BAD_REQUEST", "POST /graphql takes Content-Type: application/json");
    }
    let modern = wants_graphql_response(&request);
    let signed = match signed_headers(&request).transpose() {
        Ok(signed) => signed,
        Err(reply) => return *reply,
    };
    // A signed request's caller is known once its body (signed too) is in.
    let caller = if signed.is_none() { caller(app, &request) } else { Caller(None) };
    if let Err(wait) = check_user(app, &caller) {
        return rate_limited(app, wait);
    }
    let (user_agent, path) = (user_agent(&request), path_and_query(&request));
    // A body trickled in a byte at a time would hold its connection open for
    // as long as the client likes: it has body_read_timeout to arrive whole.
    let body = match tokio::time::timeout(app.body_read_timeout, Limited::new(request.into_body(), app.body_bytes_max).collect()).await {
        Ok(Ok(body)) => body.to_bytes(),
        Ok(Err(_)) => return request_error(StatusCode::PAYLOAD_TOO_LARGE, "BAD_REQUEST", &format!("the request body is over {} bytes", app.body_bytes_max)),
        Err(_) => {
            let mut response = request_error(
                StatusCode::REQUEST_TIMEOUT,
                "BAD_REQUEST",
                &format!("the request body took over {} s to arrive; send it whole", app.body_read_timeout.as_secs()),
            );
            // What is left of the body is never read: the connection cannot carry another request.
            response.headers_mut().insert(hyper::header::CONNECTION, HeaderValue::from_static("close"));
            return response;
        }
    };
    let caller = match &signed {
        Some(signed) => match key_caller(app, remote, signed, "POST", &path, &body) {
            Ok(caller) => caller,
            Err(reply) => return *reply,
        },
        None => caller,
    };
    let graphql: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(graphql) => graphql,
        Err(error) => return request_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &format!("the body is not a GraphQL request: {error}")),
    };
    execute(app, graphql.data(caller).data(RequestOrigin::new(remote, &user_agent)), modern).await
}

async fn get_graphql(app: &App, remote: IpAddr, request: Request<Incoming>) -> Reply {
    let modern = wants_graphql_response(&request);
    let caller = match signed_headers(&request) {
        Some(Ok(signed)) => match key_caller(app, remote, &signed, "GET", &path_and_query(&request), b"") {
            Ok(caller) => caller,
            Err(reply) => return *reply,
        },
        Some(Err(reply)) => return *reply,
        None => {
            let caller = caller(app, &request);
            if let Err(wait) = check_user(app, &caller) {
                return rate_limited(app, wait);
            }
            caller
        }
    };
    let graphql = match async_graphql::http::parse_query_string(request.uri().query().unwrap_or("")) {
        Ok(graphql) => graphql,
        Err(error) => return request_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &error.to_string()),
    };
    if is_mutation(&graphql) {
        let mut response = request_error(StatusCode::METHOD_NOT_ALLOWED, "BAD_REQUEST", "mutations must be sent with POST");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(app, graphql.data(caller).data(RequestOrigin::new(remote, &user_agent(&request))), modern).await
}

fn user_agent(request: &Request<Incoming>) -> String {
    request.headers().get(hyper::header::USER_AGENT).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string()
}

/// Resolves when the caller's session ends (logout, revocation, expiry);
/// never without one.
async fn session_ends(ended: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match ended {
        // An error is the session dropped: ended too.
        Some(ended) => drop(ended.wait_for(|ended| *ended).await),
        None => std::future::pending().await,
    }
}

fn is_mutation(request: &async_graphql::Request) -> bool {
    let Ok(document) = async_graphql::parser::parse_query(&request.query) else { return false };
    match &document.operations {
        DocumentOperations::Single(operation) => operation.node.ty == OperationType::Mutation,
        DocumentOperations::Multiple(operations) => match &request.operation_name {
            Some(name) => operations.iter().any(|(n, op)| n.as_str() == name && op.node.ty == OperationType::Mutation),
            None => operations.values().any(|op| op.node.ty == OperationType::Mutation),
        },
    }
}

async fn execute(app: &App, request: async_graphql::Request, modern: bool) -> Reply {
    // Kept to tell, on an error, a document that does not parse from one that does not validate.
    let query = request.query.clone();
    let mut response = app.schema.execute(request).await;
    // Nothing ran: the document did not parse or validate (errors have no path).
    let not_run = response.data == async_graphql::Value::Null && !response.errors.is_empty() && response.errors.iter().all(|e| e.path.is_empty());
    with_codes(&mut response.errors, &query);
    let status = if modern && not_run { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let headers = response.http_headers.clone();
    let mut http =
        reply(status, if modern { GRAPHQL_RESPONSE } else { "application/json" }, serde_json::to_vec(&response).expect("a GraphQL response serializes"));
    for (name, value) in headers.iter() {
        http.headers_mut().append(name, value.clone());
    }
    http
}

/// Gives every error a code, those async-graphql raises included: the
/// resolvers' own errors all have one, so an error without one is the
/// request's (a decimal that does not parse, an unknown field), and clients
/// tell their mistakes from the server's by the code alone.
fn with_codes(errors: &mut [async_graphql::ServerError], query: &str) {
    if errors.iter().all(|error| error.extensions.as_ref().is_some_and(|e| e.get("code").is_some())) {
        return;
    }
    let code = if async_graphql::parser::parse_query(query).is_ok() { "BAD_USER_INPUT" } else { "GRAPHQL_PARSE_FAILED" };
    for error in errors {
        let extensions = error.extensions.get_or_insert_with(Default::default);
        if extensions.get("code").is_none() {
            extensions.set("code", code);
        }
    }
}

/// Subscriptions: GET /graphql upgraded to a WebSocket speaking
/// graphql-transport-ws. The caller is the upgrade request's (Bearer header
/// or cookie), or the token in `connection_init`'s payload
/// (`{"Authorization": "Bearer …"}`), which wins when both are there.
fn websocket(app: Arc<App>, remote: IpAddr, permit: ConnectionPermit, mut request: Request<Incoming>) -> Reply {
    let header = |name| request.headers().get(name).and_then(|v: &HeaderValue| v.to_str().ok());
    if !crate::origin::allowed(header(hyper::header::ORIGIN), header(hyper::header::HOST), &app.websocket_origins) {
        return request_error(
            StatusCode::FORBIDDEN,
            "FORBIDDEN",
            "pages of this origin may not open WebSockets here; an operator can add it to listen.websocket_origins",
        );
    }
    let offered = request.headers().get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !offered.split(',').any(|p| p.trim().eq_ignore_ascii_case("graphql-transport-ws")) {
        return request_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", "subscriptions speak Sec-WebSocket-Protocol: graphql-transport-ws");
    }
    // The connection's place under connections_max stays with the WebSocket it becomes.
    let permit = permit.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).take();
    let key = request.headers().get("sec-websocket-key").map(|k| k.as_bytes().to_vec()).unwrap_or_default();
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(&key);
    // A bot signs the upgrade request (GET, its path, no body) with a key that can read.
    let from_headers = match signed_headers(&request) {
        Some(Ok(signed)) => match key_caller(&app, remote, &signed, "GET", &path_and_query(&request), b"") {
            Ok(caller) if caller.0.as_ref().and_then(|c| c.key.as_ref()).is_some_and(|grant| grant.scopes.read) => caller,
            Ok(_) => return request_error(StatusCode::FORBIDDEN, "FORBIDDEN", "subscriptions need an API key with the READ scope"),
            Err(reply) => return *reply,
        },
        Some(Err(reply)) => return *reply,
        None => caller(&app, &request),
    };
    let user_agent = user_agent(&request);
    let upgrade = hyper::upgrade::on(&mut request);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        app.metrics.connections.inc();
        app.metrics.websockets.inc();
        serve_websocket(&app, upgraded, RequestOrigin::new(remote, &user_agent), from_headers).await;
        app.metrics.websockets.dec();
        app.metrics.connections.dec();
        drop(permit);
    });
    let mut response = reply(StatusCode::SWITCHING_PROTOCOLS, "text/plain", Bytes::new());
    let headers = response.headers_mut();
    headers.remove(CONTENT_TYPE);
    headers.insert(hyper::header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(hyper::header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert("sec-websocket-protocol", HeaderValue::from_static("graphql-transport-ws"));
    headers.insert("sec-websocket-accept", HeaderValue::from_str(&accept).expect("base64 is a valid header value"));
    response
}

/// One graphql-transport-ws socket until it ends: the protocol is
/// [`ws::Session`]'s, the subscriptions the schema's streams, and the timers
/// this loop's (connection_init within 10 s, pings, idleness, the token's
/// expiry, the end of its session).
async fn serve_websocket(app: &App, upgraded: hyper::upgrade::Upgraded, origin: RequestOrigin, from_headers: Caller) {
    use futures_util::stream::{AbortHandle, Abortable, SelectAll};
    use futures_util::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::protocol::{frame::coding::CloseCode, CloseFrame, Message, Role, WebSocketConfig};
    use ws::{close_code, Close, Step};

    // A message may be as large as a request body, no larger.
    let limits = WebSocketConfig::default().max_message_size(Some(app.body_bytes_max)).max_frame_size(Some(app.body_bytes_max));
    let socket = tokio_tungstenite::WebSocketStream::from_raw_socket(hyper_util::rt::TokioIo::new(upgraded), Role::Server, Some(limits)).await;
    let (mut sink, mut source) = socket.split();
    // Each running subscription keeps its serial and what stops its stream.
    let mut session: ws::Session<(u64, AbortHandle)> = ws::Session::new();
    let mut caller = from_headers;
    // Each subscription's responses tagged with its id and serial, then a None
    // when it ends. The serial tells a stopped stream's end from the end of a
    // new one the client started under the same id.
    type Tagged = futures_util::stream::BoxStream<'static, (String, u64, Option<async_graphql::Response>)>;
    let mut streams: SelectAll<Tagged> = SelectAll::new();
    let mut serials = 0u64;

    let started = tokio::time::Instant::now();
    let mut heard = started;
    let mut idle_since = Some(started);
    let mut pings = tokio::time::interval_at(started + app.websocket.ping, app.websocket.ping);
    // None: no token, or one that outlives any timer.
    let expiry = |caller: &Caller| {
        caller.0.as_ref().and_then(|claims| tokio::time::Instant::now().checked_add(Duration::from_secs(claims.exp).saturating_sub(unix_now())))
    };
    let mut expires = expiry(&caller);
    // A session that ended between the token's check and here reads as ended.
    let watching = |caller: &Caller| {
        let claims = caller.0.as_ref()?;
        // A key's sockets close when it is revoked.
        if let Some(grant) = &claims.key {
            return Some(app.api_keys.watch(grant.id));
        }
        let id = claims.session()?;
        app.auth.sessions().watch(id).or_else(|| Some(tokio::sync::watch::channel(true).1))
    };
    let mut ended = watching(&caller);
    // Asked for in connection_init by an API key with the TRADE scope: when
    // this socket ends, however it ends, its owner's open orders are cancelled.
    let mut cancel_on_disconnect = false;

    let close = loop {
        let init_deadline = started + WEBSOCKET_INIT_TIMEOUT;
        let idle_deadline = idle_since.map(|since| since + app.websocket.idle);
        let step = tokio::select! {
            message = source.next() => match message {
                Some(Ok(Message::Text(text))) => session.on_text(text.as_str()),
                Some(Ok(Message::Binary(bytes))) => session.on_binary(&bytes),
                // Alive, but not busy: a pong does not hold off the idle limit.
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    heard = tokio::time::Instant::now();
                    continue;
                }
                // The client closed, or the socket failed (a frame over the limit, a reset): nothing more to say.
                Some(Ok(Message::Close(_)) | Err(_)) | None => break None,
            },
            Some((id, serial, response)) = streams.next(), if !streams.is_empty() => {
                if session.get(&id).is_none_or(|(current, _)| *current != serial) {
                    // What is left of a subscription the client stopped.
                    continue;
                }
                let (message, finished) = match response {
                    // Nothing ran (a query that does not validate, a refused caller): one error and no complete.
                    Some(response) if response.data == async_graphql::Value::Null && !response.errors.is_empty() => {
                        (serde_json::json!({ "id": id, "type": "error", "payload": response.errors }), true)
                    }
                    Some(response) => (serde_json::json!({ "id": id, "type": "next", "payload": response }), false),
                    None => (serde_json::json!({ "id": id, "type": "complete" }), true),
                };
                if sink.send(Message::Text(message.to_string().into())).await.is_err() {
                    break None;
                }
                if finished {
                    if let Some((_, handle)) = session.finished(&id) {
                        handle.abort();
                    }
                }
                if session.running() == 0 {
                    idle_since = Some(tokio::time::Instant::now());
                }
                continue;
            }
            _ = tokio::time::sleep_until(init_deadline), if !session.acknowledged() => break Some(Close::new(close_code::INIT_TIMEOUT, "Connection initialisation timeout")),
            _ = pings.tick() => {
                if heard.elapsed() > app.websocket.ping * 2 {
                    break Some(Close::new(close_code::GOING_AWAY, "no answer to pings"));
                }
                if sink.send(Message::Ping(Bytes::new())).await.is_err() { break None; }
                continue;
            }
            _ = tokio::time::sleep_until(idle_deadline.unwrap_or(started)), if idle_deadline.is_some() => break Some(Close::new(close_code::NORMAL, "idle: no subscription and no message")),
            _ = tokio::time::sleep_until(expires.unwrap_or(started)), if expires.is_some() => break Some(Close::new(close_code::FORBIDDEN, "Forbidden: the token expired; connect again with a new one")),
            () = session_ends(&mut ended) => break Some(Close::new(close_code::FORBIDDEN, "Forbidden: the session ended (logged out or revoked) or the API key was revoked; log in again")),
        };
        heard = tokio::time::Instant::now();
        if session.running() == 0 {
            idle_since = Some(heard);
        }
        let answer = match step {
            Step::Nothing => continue,
            Step::Close(close) => break Some(close),
            Step::Pong(payload) => serde_json::json!({ "type": "pong", "payload": payload }),
            Step::Init(payload) => {
                // The token in the payload wins over the upgrade request's headers.
                let token = payload.get("Authorization").and_then(|v| v.as_str()).and_then(|v| v.strip_prefix("Bearer ")).map(str::trim);
                if let Some(token) = token {
                    caller = Caller(app.auth.verify(token));
                    expires = expiry(&caller);
                    ended = watching(&caller);
                }
                if payload.get("cancelOnDisconnect").and_then(|v| v.as_bool()) == Some(true) {
                    let trades = caller.0.as_ref().and_then(|claims| claims.key.as_ref()).is_some_and(|grant| grant.scopes.trade);
                    if !trades {
                        break Some(Close::new(close_code::FORBIDDEN, "Forbidden: cancelOnDisconnect is for API keys with the TRADE scope"));
                    }
                    cancel_on_disconnect = true;
                }
                session.acknowledge();
                serde_json::json!({ "type": "connection_ack" })
            }
            Step::Start { id, payload } => {
                // Each subscription started is a request: a socket is no way
                // around its key's, its user's or its address's rate limit.
                if let Err(wait) = subscription_allowed(app, &caller, origin.ip) {
                    app.metrics.rate_limited.inc();
                    let seconds = retry_after_seconds(wait);
                    let error = serde_json::json!({
                        "message": format!("too many requests; subscribe again in {seconds} s"),
                        "extensions": { "code": "RATE_LIMITED", "retryAfterSeconds": seconds },
                    });
                    serde_json::json!({ "id": id, "type": "error", "payload": [error] })
                } else {
                    let query = payload.query.clone();
                    let mut request = async_graphql::Request::new(payload.query).data(caller.clone()).data(RequestOrigin::new(origin.ip, &origin.user_agent));
                    if let Some(name) = payload.operation_name {
                        request = request.operation_name(name);
                    }
                    if let Some(variables) = payload.variables {
                        request = request.variables(async_graphql::Variables::from_json(variables));
                    }
                    let (handle, registration) = AbortHandle::new_pair();
                    serials += 1;
                    let (tag, serial) = (id.clone(), serials);
                    let responses = Abortable::new(app.schema.execute_stream(request), registration).map(move |mut response| {
                        with_codes(&mut response.errors, &query);
                        (tag.clone(), serial, Some(response))
                    });
                    let end = futures_util::stream::once(std::future::ready((id.clone(), serial, None)));
                    streams.push(responses.chain(end).boxed());
                    session.started(id, (serial, handle));
                    idle_since = None;
                    continue;
                }
            }
            Step::Stop { running: (_, handle), .. } => {
                // The client's complete: its stream ends without a complete sent back.
                handle.abort();
                continue;
            }
        };
        if sink.send(Message::Text(answer.to_string().into())).await.is_err() {
            break None;
        }
    };
    if let Some(Close { code, reason }) = close {
        let _ = sink.send(Message::Close(Some(CloseFrame { code: CloseCode::from(code), reason: reason.into() }))).await;
    }
    // Its subscriptions (and their slots) end before the socket stops being counted.
    drop(streams);
    if cancel_on_disconnect {
        cancel_all_on_disconnect(app, caller, origin).await;
    }
}

/// Cancels the open orders of a socket's owner as the owner's own
/// cancelAllOrders would, through the schema, so the key's scope and
/// every check apply as to any request of theirs.
async fn cancel_all_on_disconnect(app: &App, caller: Caller, origin: RequestOrigin) {
    app.metrics.cancels_on_disconnect.inc();
    let user = caller.0.as_ref().map(|claims| claims.sub.clone()).unwrap_or_default();
    let request = async_graphql::Request::new("mutation { cancelAllOrders }").data(caller).data(origin);
    let response = app.schema.execute(request).await;
    match response.data.into_json().ok().and_then(|data| data["cancelAllOrders"].as_i64()) {
        Some(orders) => {
            tracing::info!(event = "cancel_on_disconnect", %user, orders, "a WebSocket that asked for it ended: its owner's open orders are cancelled")
        }
        None => {
            tracing::error!(event = "cancel_on_disconnect_failed", %user, errors = ?response.errors, "a WebSocket that asked for cancel-on-disconnect ended, and cancelling its owner's orders failed")
        }
    }
}

fn unix_now() -> Duration {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default()
}

/// How long a new WebSocket may take to send connection_init.
const WEBSOCKET_INIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Prometheus GET /metrics, and the probes GET /healthz and /readyz, on
/// `listen.metrics_address`: for the site's scraper and monitoring, neither
/// rate limited nor public.
pub async fn serve_metrics(listener: tokio::net::TcpListener, app: Arc<App>) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(error) => {
                // Out of file descriptors, most likely: the API's connections come first.
                tracing::warn!(%error, "metrics: accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let app = app.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request: Request<Incoming>| {
                let app = app.clone();
                async move {
                    Ok::<_, Infallible>(match (request.method(), request.uri().path()) {
                        (&Method::GET, "/metrics") => {
                            app.metrics.sessions.set(app.auth.sessions().live() as i64);
                            app.metrics.signatures_remembered.set(app.api_keys.remembered() as i64);
                            reply(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", app.metrics.render())
                        }
                        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
                        (&Method::GET, "/readyz") => readyz(&app).await,
                        _ => reply(StatusCode::NOT_FOUND, "text/plain", "try GET /metrics\n"),
                    })
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}
