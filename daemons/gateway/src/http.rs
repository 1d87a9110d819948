//! GraphQL over HTTP on hyper: POST /graphql (JSON), GET /graphql (queries
//! only), and the REST endpoints GET /markets, /healthz, /readyz, /metrics.
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
use std::time::Instant;

use async_graphql::parser::types::{DocumentOperations, OperationType};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::{Bytes, Incoming};
use hyper::header::{HeaderValue, ACCEPT, ALLOW, AUTHORIZATION, CONTENT_TYPE, COOKIE};
use hyper::{Method, Request, Response, StatusCode};
use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::api::{ApiSchema, Caller, TOKEN_COOKIE};
use crate::auth::Auth;
use crate::ledger_client::LedgerClient;
use crate::ratelimit::RateLimiter;

const GRAPHQL_RESPONSE: &str = "application/graphql-response+json";

pub struct Metrics {
    registry: Registry,
    pub requests: Counter,
    pub client_errors: Counter,
    pub rate_limited: Counter,
    pub connections: Gauge<i64, AtomicI64>,
    pub request_seconds: Histogram,
}

impl Metrics {
    pub fn new() -> Metrics {
        let mut registry = Registry::with_prefix("marionette_gateway");
        let metrics = Metrics {
            requests: Counter::default(),
            client_errors: Counter::default(),
            rate_limited: Counter::default(),
            connections: Gauge::default(),
            request_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 18)),
            registry: Registry::default(),
        };
        registry.register("requests", "HTTP requests served", metrics.requests.clone());
        registry.register("client_errors", "Requests answered 4xx", metrics.client_errors.clone());
        registry.register("rate_limited", "Requests refused with 429 RATE_LIMITED", metrics.rate_limited.clone());
        registry.register("connections", "Open HTTP connections", metrics.connections.clone());
        registry.register("request_seconds", "Time to answer a request", metrics.request_seconds.clone());
        Metrics { registry, ..metrics }
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
    pub ip_limiter: RateLimiter<IpAddr>,
    pub user_limiter: RateLimiter<String>,
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
    let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
    response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
    response
}

pub async fn handle(app: Arc<App>, remote: IpAddr, request: Request<Incoming>) -> Result<Reply, Infallible> {
    let started = Instant::now();
    let response = if request.uri().path() == "/graphql" {
        match app.ip_limiter.check(&remote, Instant::now()) {
            Ok(()) => route(&app, request).await,
            Err(wait) => rate_limited(&app, wait),
        }
    } else {
        route(&app, request).await
    };
    app.metrics.requests.inc();
    if response.status().is_client_error() {
        app.metrics.client_errors.inc();
    }
    app.metrics.request_seconds.observe(started.elapsed().as_secs_f64());
    Ok(response)
}

async fn route(app: &App, request: Request<Incoming>) -> Reply {
    match (request.method(), request.uri().path()) {
        (&Method::GET, "/healthz") => reply(StatusCode::OK, "text/plain", "ok\n"),
        (&Method::GET, "/readyz") => readyz(app).await,
        (&Method::GET, "/metrics") => reply(StatusCode::OK, "application/openmetrics-text; version=1.0.0; charset=utf-8", app.metrics.render()),
        (&Method::GET, "/markets") => markets(app).await,
        (&Method::POST, "/graphql") => post_graphql(app, request).await,
        (&Method::GET, "/graphql") => get_graphql(app, request).await,
        (_, "/graphql") => {
            let mut response = request_error(StatusCode::METHOD_NOT_ALLOWED, "BAD_REQUEST", "use POST (or GET for queries)");
            response.headers_mut().insert(ALLOW, HeaderValue::from_static("GET, POST"));
            response
        }
        _ => reply(StatusCode::NOT_FOUND, "text/plain", "not found: the API is POST /graphql\n"),
    }
}

/// Ready when the ledger answers and its link to matching is up.
async fn readyz(app: &App) -> Reply {
    match app.ledger.query(wire::LedgerQuery::Status).await {
        Ok(Ok(wire::QueryAnswer::Status(status))) if status.matching_connected => reply(StatusCode::OK, "text/plain", "ready\n"),
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
        headers.get_all(COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|pair| pair.trim().strip_prefix(TOKEN_COOKIE)?.strip_prefix('='))
    };
    Caller(bearer.or_else(cookie).filter(|t| !t.is_empty()).and_then(|token| app.auth.verify(token)))
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

async fn post_graphql(app: &App, request: Request<Incoming>) -> Reply {
    let is_json = request.headers().get(CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json")));
    if !is_json {
        return request_error(StatusCode::UNSUPPORTED_MEDIA_TYPE, "BAD_REQUEST", "POST /graphql takes Content-Type: application/json");
    }
    let (caller, modern) = (caller(app, &request), wants_graphql_response(&request));
    if let Err(wait) = check_user(app, &caller) {
        return rate_limited(app, wait);
    }
    let body = match Limited::new(request.into_body(), app.body_bytes_max).collect().await {
        Ok(body) => body.to_bytes(),
        Err(_) => return request_error(StatusCode::PAYLOAD_TOO_LARGE, "BAD_REQUEST", &format!("the request body is over {} bytes", app.body_bytes_max)),
    };
    let graphql: async_graphql::Request = match serde_json::from_slice(&body) {
        Ok(graphql) => graphql,
        Err(error) => return request_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &format!("the body is not a GraphQL request: {error}")),
    };
    execute(app, graphql.data(caller), modern).await
}

async fn get_graphql(app: &App, request: Request<Incoming>) -> Reply {
    let (caller, modern) = (caller(app, &request), wants_graphql_response(&request));
    if let Err(wait) = check_user(app, &caller) {
        return rate_limited(app, wait);
    }
    let graphql = match async_graphql::http::parse_query_string(request.uri().query().unwrap_or("")) {
        Ok(graphql) => graphql,
        Err(error) => return request_error(StatusCode::BAD_REQUEST, "BAD_REQUEST", &error.to_string()),
    };
    if is_mutation(&graphql) {
        let mut response = request_error(StatusCode::METHOD_NOT_ALLOWED, "BAD_REQUEST", "mutations must be sent with POST");
        response.headers_mut().insert(ALLOW, HeaderValue::from_static("POST"));
        return response;
    }
    execute(app, graphql.data(caller), modern).await
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
    let response = app.schema.execute(request).await;
    // Nothing ran: the document did not parse or validate (errors have no path).
    let not_run = response.data == async_graphql::Value::Null && !response.errors.is_empty() && response.errors.iter().all(|e| e.path.is_empty());
    let status = if modern && not_run { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let headers = response.http_headers.clone();
    let mut http = reply(status, if modern { GRAPHQL_RESPONSE } else { "application/json" }, serde_json::to_vec(&response).expect("a GraphQL response serializes"));
    for (name, value) in headers.iter() {
        http.headers_mut().append(name, value.clone());
    }
    http
}
