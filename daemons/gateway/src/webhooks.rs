//! Signed webhooks to organisers: an event for each gift their campaigns
//! receive (`donation.received`) and each payout to them (`payout.made`),
//! posted to the endpoint they set, signed as the Standard Webhooks
//! specification says (`webhook-id`, `webhook-timestamp` and
//! `webhook-signature: v1,<base64 HMAC-SHA256>` over `id.timestamp.body`
//! with their `whsec_` secret), so that receivers can check them with that
//! specification's libraries.
//!
//! The outbox is durable: a task follows the ledger's gifts and payouts by
//! id and, for organisers with an endpoint, writes each event (its body
//! fixed then) in the same batch as the cursor past it, so that an event is
//! enqueued once across restarts and its id (`gift_42`, `payout_7`, from the
//! ledger's ids) always names the same bytes. Deliveries are retried with
//! exponential backoff until a 2xx or `attempts_max`; a delivery may be
//! repeated (a crash after the receiver answered and before the answer was
//! written), never changed: receivers drop repeats by id.
//!
//! Endpoints are https and on public addresses unless the configuration
//! allows otherwise: the gateway checks the addresses a name resolves to and
//! connects to the one it checked, so that an organiser cannot aim it at the
//! bank's own network.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use hmac::{Hmac, Mac};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use ledger_api::donations as api;
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use storage::{Batch, Durability, StorageError, Store, Table};

use crate::config::WebhooksConfig;
use crate::ledger_client::LedgerClient;
use crate::two_factor::Sealer;
use crate::users::{UserId, Users};

/// Organiser -> [`StoredEndpoint`].
pub const WEBHOOK_ENDPOINTS: Table = Table::new("webhook_endpoints");
/// (organiser, sequence) -> [`Delivery`]: every event enqueued, with how its delivery went.
pub const WEBHOOK_DELIVERIES: Table = Table::new("webhook_deliveries");
/// Sequence -> organiser, while the delivery is still to be made.
pub const WEBHOOK_PENDING: Table = Table::new("webhook_pending");
/// The ledger's last gift and payout looked at, and the next sequence.
pub const WEBHOOK_CURSORS: Table = Table::new("webhook_cursors");

const CURSOR_DONATIONS: &[u8] = b"donations";
const CURSOR_PAYOUTS: &[u8] = b"payouts";
const NEXT_SEQUENCE: &[u8] = b"next_sequence";
const SEALED_FOR: &[u8] = b"webhook secret";
/// Records asked of the ledger at once while following it.
const FOLLOW_PAGE: u32 = 256;
pub const URL_BYTES_MAX: usize = 2_048;
/// A receiver's answer is read up to this much, then dropped.
const RESPONSE_BYTES_MAX: usize = 64 * 1024;
const ERROR_CHARS_MAX: usize = 300;
/// Backoff doubles from `retry_base_ms` up to this.
const RETRY_WAIT_MAX_MS: u64 = 6 * 60 * 60 * 1_000;

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0}")]
    BadEndpoint(String),
    #[error("the webhook store: {0}")]
    Storage(#[from] StorageError),
    #[error("a stored webhook record does not decode: {0}")]
    Corrupt(String),
    #[error("a webhook secret does not open: is auth.keys_dir the one it was sealed under?")]
    Unsealable,
    #[error("no such delivery")]
    NotFound,
}

// ---- The pure core: endpoints, signatures, backoff, events ----

/// An endpoint as checked: where to connect and what to ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Endpoint {
    pub https: bool,
    pub host: String,
    pub port: u16,
    /// The path and query, at least "/".
    pub target: String,
}

/// Checks an organiser's URL: absolute, https (or http when allowed),
/// a host, no credentials, no fragment.
pub fn parse_endpoint(url: &str, plain_http_allowed: bool) -> Result<Endpoint, WebhookError> {
    let bad = |why: &str| WebhookError::BadEndpoint(format!("the webhook URL {why}"));
    if url.len() > URL_BYTES_MAX {
        return Err(bad(&format!("is longer than {URL_BYTES_MAX} bytes")));
    }
    if url.contains('#') {
        return Err(bad("may not have a fragment (#...)"));
    }
    let uri: hyper::Uri = url.parse().map_err(|_| bad("is not an absolute URL such as https://example.org/hooks/marionette"))?;
    let https = match uri.scheme_str() {
        Some("https") => true,
        Some("http") if plain_http_allowed => false,
        Some("http") => return Err(bad("must be https: donors' gifts are not sent in the clear")),
        _ => return Err(bad("must start with https://")),
    };
    let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
    if authority.as_str().contains('@') {
        return Err(bad("may not carry credentials (user@): check the signature instead"));
    }
    let host = authority.host().trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if host.is_empty() {
        return Err(bad("has no host"));
    }
    let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok(Endpoint { https, host, port, target: if target.is_empty() { "/".into() } else { target } })
}

/// Networks an endpoint may not be on unless `private_networks_allowed`:
/// the host's own, private, shared, link-local (cloud metadata) and
/// reserved ones.
const PRIVATE_NETWORKS: &[&str] = &[
    "0.0.0.0/8",
    "10.0.0.0/8",
    "100.64.0.0/10",
    "127.0.0.0/8",
    "169.254.0.0/16",
    "172.16.0.0/12",
    "192.0.0.0/24",
    "192.168.0.0/16",
    "198.18.0.0/15",
    "224.0.0.0/3",
    "::/128",
    "::1/128",
    "fc00::/7",
    "fe80::/10",
    "ff00::/8",
];

pub fn address_allowed(ip: IpAddr, private_networks_allowed: bool) -> bool {
    if private_networks_allowed {
        return true;
    }
    // An IPv4 address written as IPv6 is judged as itself.
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    !PRIVATE_NETWORKS.iter().any(|net| net.parse::<ipnet::IpNet>().is_ok_and(|net| net.contains(&ip)))
}

/// A new secret: `whsec_` and 32 random bytes in base64, as Standard Webhooks' libraries take it.
pub fn new_secret() -> String {
    let mut key = [0u8; 32];
    OsRng.fill_bytes(&mut key);
    format!("whsec_{}", BASE64.encode(key))
}

/// The `webhook-signature` header's value: `v1,` and the base64 of
/// HMAC-SHA256 under the secret's key of `id.timestamp.body`.
pub fn signature(secret: &str, id: &str, timestamp_s: u64, body: &[u8]) -> Option<String> {
    let key = BASE64.decode(secret.strip_prefix("whsec_")?).ok()?;
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).ok()?;
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    Some(format!("v1,{}", BASE64.encode(mac.finalize().into_bytes())))
}

/// How long to wait after the `attempts`th failed attempt: `base_ms`
/// doubled each time up to six hours, less up to a fifth at random
/// (`jitter` in 0..1) so that a receiver back from an outage is not hit by
/// every retry at once.
pub fn retry_wait_ms(attempts: u32, base_ms: u64, jitter: f64) -> u64 {
    let doubled = base_ms.saturating_mul(1u64.checked_shl(attempts.saturating_sub(1)).unwrap_or(u64::MAX));
    let wait = doubled.min(RETRY_WAIT_MAX_MS);
    let less = (wait as f64 * 0.2 * jitter.clamp(0.0, 1.0)) as u64;
    (wait - less).max(1)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum EventKind {
    DonationReceived,
    PayoutMade,
}

impl EventKind {
    pub fn name(self) -> &'static str {
        match self {
            EventKind::DonationReceived => "donation.received",
            EventKind::PayoutMade => "payout.made",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryState {
    Pending,
    Delivered,
    /// Given up after `attempts_max`; the organiser may ask for it again.
    Failed,
}

/// An event enqueued for an organiser, and how its delivery went.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub sequence: u64,
    pub organiser: UserId,
    /// `gift_<donation id>` or `payout_<payout id>`: the same event always.
    pub event_id: String,
    pub kind: EventKind,
    /// The JSON posted, fixed when enqueued.
    pub body: Vec<u8>,
    pub created_ms: u64,
    pub attempts: u32,
    pub next_attempt_ms: u64,
    pub state: DeliveryState,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub delivered_ms: Option<u64>,
}

/// What an attempt came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Attempt {
    /// The receiver answered with this status.
    Answered(u16),
    /// No answer: refused, unreachable, a TLS failure, a timeout.
    NoAnswer(String),
}

impl Delivery {
    /// The delivery after an attempt at `now_ms`: delivered on a 2xx, else
    /// retried later, or given up after `attempts_max`.
    pub fn after(&mut self, attempt: Attempt, now_ms: u64, attempts_max: u32, base_ms: u64, jitter: f64) {
        self.attempts = self.attempts.saturating_add(1);
        let (status, error) = match attempt {
            Attempt::Answered(status) if (200..300).contains(&status) => {
                self.state = DeliveryState::Delivered;
                self.last_status = Some(status);
                self.last_error = None;
                self.delivered_ms = Some(now_ms);
                return;
            }
            Attempt::Answered(status) => (Some(status), format!("the receiver answered {status}")),
            Attempt::NoAnswer(error) => (None, error),
        };
        self.last_status = status;
        self.last_error = Some(error.chars().take(ERROR_CHARS_MAX).collect());
        if self.attempts >= attempts_max {
            self.state = DeliveryState::Failed;
        } else {
            self.next_attempt_ms = now_ms.saturating_add(retry_wait_ms(self.attempts, base_ms, jitter));
        }
    }
}

/// What the ledger's records are shown as: the catalogue's symbols and
/// decimals, and the donor's email when they agreed to be known.
pub struct EventContext<'a> {
    pub symbol: &'a dyn Fn(u32) -> String,
    pub amount: &'a dyn Fn(u32, i128) -> String,
    pub campaign_title: &'a str,
    pub reference_asset: u32,
    pub donor_email: Option<String>,
}

fn rfc3339(ms: u64) -> String {
    chrono::DateTime::from_timestamp_millis(i64::try_from(ms).unwrap_or(i64::MAX))
        .map_or_else(|| ms.to_string(), |at| at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
}

/// A gift's event: what the organiser may know of it (the donor only when
/// they agreed), from fields the gift never changes.
pub fn donation_event(d: &api::Donation, cx: &EventContext<'_>) -> (String, Vec<u8>) {
    let id = format!("gift_{}", d.id);
    let (asset, reference) = (d.gift.asset, cx.reference_asset);
    let matches: Vec<_> = d
        .matches
        .iter()
        .map(|m| {
            serde_json::json!({
                "pool_id": m.pool.to_string(),
                "asset": (cx.symbol)(m.asset),
                "amount": (cx.amount)(m.asset, m.amount),
                "value": (cx.amount)(reference, m.value),
            })
        })
        .collect();
    let body = serde_json::json!({
        "id": id,
        "type": EventKind::DonationReceived.name(),
        "created_at": rfc3339(d.created_ms),
        "data": {
            "donation_id": d.id.to_string(),
            "campaign_id": d.gift.campaign.to_string(),
            "campaign_title": cx.campaign_title,
            "receipt_number": d.receipt.to_string(),
            "asset": (cx.symbol)(asset),
            "gross": (cx.amount)(asset, d.gift.gross),
            "fee": (cx.amount)(d.received().0, d.fee),
            "net": (cx.amount)(d.received().0, d.net),
            "received_asset": (cx.symbol)(d.received().0),
            "received": (cx.amount)(d.received().0, d.received().1),
            "tip": (cx.amount)(asset, d.gift.tip),
            "reference_asset": (cx.symbol)(reference),
            "value": (cx.amount)(reference, d.value),
            "matches": matches,
            "message": d.gift.message,
            "public_name": d.gift.display.name,
            "amount_shown": d.gift.display.amount_shown,
            "donor_email": if d.gift.display.known_to_organiser { cx.donor_email.clone() } else { None },
            "source": match d.source { api::Source::Balance => "balance", api::Source::Deposit { .. } => "deposit" },
        },
    });
    (id, serde_json::to_vec(&body).unwrap_or_default())
}

pub fn payout_event(p: &api::Payout, cx: &EventContext<'_>) -> (String, Vec<u8>) {
    let id = format!("payout_{}", p.id);
    let lines: Vec<_> = p
        .lines
        .iter()
        .map(|l| {
            serde_json::json!({
                "asset": (cx.symbol)(l.asset),
                "net": (cx.amount)(l.asset, l.net),
                "fees": (cx.amount)(l.asset, l.fees),
                "tips": (cx.amount)(l.asset, l.tips),
            })
        })
        .collect();
    let body = serde_json::json!({
        "id": id,
        "type": EventKind::PayoutMade.name(),
        "created_at": rfc3339(p.at_ms),
        "data": {
            "payout_id": p.id.to_string(),
            "campaign_id": p.campaign.to_string(),
            "campaign_title": cx.campaign_title,
            "donations": p.donations,
            "last": p.last,
            "lines": lines,
        },
    });
    (id, serde_json::to_vec(&body).unwrap_or_default())
}

// ---- The store ----

#[derive(Clone, Debug, Serialize, Deserialize)]
struct StoredEndpoint {
    url: String,
    secret_sealed: Vec<u8>,
    created_ms: u64,
}

/// An organiser's endpoint as the API shows it (never the secret).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EndpointInfo {
    pub url: String,
    pub created_ms: u64,
}

fn key2(a: u64, b: u64) -> [u8; 16] {
    let mut key = [0; 16];
    key[..8].copy_from_slice(&a.to_be_bytes());
    key[8..].copy_from_slice(&b.to_be_bytes());
    key
}

fn decode<T: for<'de> Deserialize<'de>>(bytes: &[u8]) -> Result<T, WebhookError> {
    postcard::from_bytes(bytes).map_err(|e| WebhookError::Corrupt(e.to_string()))
}

fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    postcard::to_allocvec(value).unwrap_or_default()
}

fn u64_of(bytes: Option<Vec<u8>>) -> u64 {
    bytes.and_then(|b| <[u8; 8]>::try_from(b.as_slice()).ok()).map_or(0, u64::from_be_bytes)
}

/// Counters for `/metrics`.
#[derive(Clone, Default)]
pub struct WebhookMetrics {
    pub delivered: prometheus_client::metrics::counter::Counter,
    pub attempts_failed: prometheus_client::metrics::counter::Counter,
    pub given_up: prometheus_client::metrics::counter::Counter,
    pub enqueued: prometheus_client::metrics::counter::Counter,
    pub pending: prometheus_client::metrics::gauge::Gauge,
}

pub struct Webhooks {
    store: Arc<Store>,
    sealer: Arc<Sealer>,
    config: WebhooksConfig,
    /// Pending deliveries by when they are due: (next attempt, sequence, organiser).
    due: Mutex<BTreeSet<(u64, u64, UserId)>>,
    tls: Option<tokio_rustls::TlsConnector>,
    pub metrics: WebhookMetrics,
}

impl Webhooks {
    /// Opens the outbox: the pending deliveries come back due as they were.
    pub fn open(store: Arc<Store>, sealer: Arc<Sealer>, config: WebhooksConfig) -> Result<Webhooks, WebhookError> {
        let mut due = BTreeSet::new();
        for row in store.scan_all(WEBHOOK_PENDING) {
            let (key, value) = row?;
            let sequence = u64_of(Some(key.to_vec()));
            let organiser = u64_of(Some(value.to_vec()));
            let delivery = store
                .get(WEBHOOK_DELIVERIES, &key2(organiser, sequence))?
                .ok_or_else(|| WebhookError::Corrupt(format!("pending {sequence} without its delivery")))?;
            let delivery: Delivery = decode(&delivery)?;
            due.insert((delivery.next_attempt_ms, sequence, organiser));
        }
        let tls = roots(&config.roots_file).map(|roots| {
            let provider = Arc::new(rustls::crypto::ring::default_provider());
            let config = rustls::ClientConfig::builder_with_provider(provider)
                .with_safe_default_protocol_versions()
                .map(|builder| builder.with_root_certificates(roots).with_no_client_auth());
            config.map(|config| tokio_rustls::TlsConnector::from(Arc::new(config)))
        });
        let tls = match tls {
            Some(Ok(connector)) => Some(connector),
            Some(Err(error)) => return Err(WebhookError::BadEndpoint(format!("TLS for webhooks: {error}"))),
            None => None,
        };
        let metrics = WebhookMetrics::default();
        metrics.pending.set(i64::try_from(due.len()).unwrap_or(i64::MAX));
        Ok(Webhooks { store, sealer, config, due: Mutex::new(due), tls, metrics })
    }

    pub fn config(&self) -> &WebhooksConfig {
        &self.config
    }

    /// Sets the organiser's endpoint with a new secret, returned this once.
    pub fn set_endpoint(&self, organiser: UserId, url: &str, now_ms: u64) -> Result<String, WebhookError> {
        parse_endpoint(url, self.config.plain_http_allowed)?;
        let secret = new_secret();
        let stored = StoredEndpoint { url: url.to_string(), secret_sealed: self.sealer.seal(&sealed_for(organiser), secret.as_bytes()), created_ms: now_ms };
        let mut batch = Batch::default();
        batch.put(WEBHOOK_ENDPOINTS, &organiser.to_be_bytes(), &encode(&stored));
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(secret)
    }

    /// Removes the endpoint: what is pending is given up as it comes due.
    pub fn remove_endpoint(&self, organiser: UserId) -> Result<bool, WebhookError> {
        let had = self.store.get(WEBHOOK_ENDPOINTS, &organiser.to_be_bytes())?.is_some();
        let mut batch = Batch::default();
        batch.delete(WEBHOOK_ENDPOINTS, &organiser.to_be_bytes());
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(had)
    }

    pub fn endpoint(&self, organiser: UserId) -> Result<Option<EndpointInfo>, WebhookError> {
        Ok(self.stored_endpoint(organiser)?.map(|e| EndpointInfo { url: e.url, created_ms: e.created_ms }))
    }

    fn stored_endpoint(&self, organiser: UserId) -> Result<Option<StoredEndpoint>, WebhookError> {
        self.store.get(WEBHOOK_ENDPOINTS, &organiser.to_be_bytes())?.map(|bytes| decode(&bytes)).transpose()
    }

    /// The organiser's deliveries, newest first.
    pub fn deliveries(&self, organiser: UserId, limit: usize) -> Result<Vec<Delivery>, WebhookError> {
        self.store.scan_prefix(WEBHOOK_DELIVERIES, &organiser.to_be_bytes(), limit, true)?.iter().map(|(_, value)| decode(value)).collect()
    }

    /// Sends a given-up (or delivered) event again, as it was, from now.
    pub fn redeliver(&self, organiser: UserId, event_id: &str, now_ms: u64) -> Result<Delivery, WebhookError> {
        // An organiser's deliveries are few enough to look through; the id says which record it is.
        let found = self
            .store
            .scan_prefix(WEBHOOK_DELIVERIES, &organiser.to_be_bytes(), usize::MAX, true)?
            .iter()
            .map(|(_, value)| decode::<Delivery>(value))
            .find(|d| !matches!(d, Ok(d) if d.event_id != event_id))
            .ok_or(WebhookError::NotFound)??;
        if found.state == DeliveryState::Pending {
            return Ok(found);
        }
        let delivery = Delivery { attempts: 0, next_attempt_ms: now_ms, state: DeliveryState::Pending, ..found };
        let mut batch = Batch::default();
        batch.put(WEBHOOK_DELIVERIES, &key2(organiser, delivery.sequence), &encode(&delivery));
        batch.put(WEBHOOK_PENDING, &delivery.sequence.to_be_bytes(), &organiser.to_be_bytes());
        self.store.write(&mut batch, Durability::Synced)?;
        self.lock_due().insert((now_ms, delivery.sequence, organiser));
        self.metrics.pending.inc();
        Ok(delivery)
    }

    fn lock_due(&self) -> std::sync::MutexGuard<'_, BTreeSet<(u64, u64, UserId)>> {
        self.due.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Enqueues, in one batch with the cursors past them, the events of the
    /// records given for organisers with an endpoint. `events` are
    /// (organiser, kind, id, body) in the ledger's order.
    pub fn enqueue(&self, events: &[(UserId, EventKind, String, Vec<u8>)], cursor: (&[u8], u64), now_ms: u64) -> Result<usize, WebhookError> {
        let mut batch = Batch::default();
        let mut sequence = u64_of(self.store.get(WEBHOOK_CURSORS, NEXT_SEQUENCE)?).max(1);
        let mut added = Vec::new();
        let mut endpoints: HashMap<UserId, bool> = HashMap::new();
        for (organiser, kind, event_id, body) in events {
            let has = match endpoints.get(organiser) {
                Some(has) => *has,
                None => {
                    let has = self.store.get(WEBHOOK_ENDPOINTS, &organiser.to_be_bytes())?.is_some();
                    endpoints.insert(*organiser, has);
                    has
                }
            };
            if !has {
                continue;
            }
            let delivery = Delivery {
                sequence,
                organiser: *organiser,
                event_id: event_id.clone(),
                kind: *kind,
                body: body.clone(),
                created_ms: now_ms,
                attempts: 0,
                next_attempt_ms: now_ms,
                state: DeliveryState::Pending,
                last_status: None,
                last_error: None,
                delivered_ms: None,
            };
            batch.put(WEBHOOK_DELIVERIES, &key2(*organiser, sequence), &encode(&delivery));
            batch.put(WEBHOOK_PENDING, &sequence.to_be_bytes(), &organiser.to_be_bytes());
            added.push((now_ms, sequence, *organiser));
            sequence += 1;
        }
        batch.put(WEBHOOK_CURSORS, NEXT_SEQUENCE, &sequence.to_be_bytes());
        batch.put(WEBHOOK_CURSORS, cursor.0, &cursor.1.to_be_bytes());
        self.store.write(&mut batch, Durability::Synced)?;
        let count = added.len();
        self.lock_due().extend(added);
        self.metrics.enqueued.inc_by(count as u64);
        self.metrics.pending.inc_by(i64::try_from(count).unwrap_or(i64::MAX));
        Ok(count)
    }

    fn cursor(&self, name: &[u8]) -> Result<u64, WebhookError> {
        Ok(u64_of(self.store.get(WEBHOOK_CURSORS, name)?))
    }

    /// Follows the ledger and delivers, until the process ends.
    pub async fn run(self: Arc<Self>, ledger: LedgerClient, users: Arc<Users>) {
        let mut every = tokio::time::interval(Duration::from_millis(self.config.poll_ms.max(10)));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            if !ledger.is_connected() {
                continue;
            }
            if let Err(error) = self.follow(&ledger, &users).await {
                tracing::warn!(%error, "webhooks: could not follow the ledger's gifts and payouts; will try again");
            }
            self.deliver_due().await;
        }
    }

    /// Enqueues the events of the gifts and payouts made since the cursors.
    async fn follow(&self, ledger: &LedgerClient, users: &Users) -> anyhow::Result<()> {
        let mut titles: HashMap<u64, (UserId, String, u32)> = HashMap::new();
        let mut catalog = None;
        loop {
            let after = self.cursor(CURSOR_DONATIONS)?;
            let api::Answer::Donations(gifts) = ask(ledger, api::Query::DonationsAfter { after, limit: FOLLOW_PAGE }).await? else {
                anyhow::bail!("the ledger answered DonationsAfter with something else");
            };
            let Some(last) = gifts.last().map(|d| d.id) else { break };
            let catalog = match &catalog {
                Some(catalog) => catalog,
                None => catalog.insert(crate::api::Catalog::read(ledger).await.map_err(|e| anyhow::anyhow!("{}", e.message))?),
            };
            let mut events = Vec::with_capacity(gifts.len());
            for gift in &gifts {
                let (organiser, title, reference) = campaign_of(ledger, &mut titles, gift.gift.campaign).await?;
                let donor_email = if gift.gift.display.known_to_organiser { users.by_id(gift.donor).ok().flatten().map(|u| u.email) } else { None };
                let (symbol, amount) = (|asset| catalog.symbol(asset), |asset, units| catalog.amount(asset, units).0.to_string());
                let cx = EventContext { symbol: &symbol, amount: &amount, campaign_title: &title, reference_asset: reference, donor_email };
                let (id, body) = donation_event(gift, &cx);
                events.push((organiser, EventKind::DonationReceived, id, body));
            }
            self.enqueue(&events, (CURSOR_DONATIONS, last), crate::api::now_ms())?;
            if gifts.len() < FOLLOW_PAGE as usize {
                break;
            }
        }
        loop {
            let after = self.cursor(CURSOR_PAYOUTS)?;
            let api::Answer::Payouts(payouts) = ask(ledger, api::Query::PayoutsAfter { after, limit: FOLLOW_PAGE }).await? else {
                anyhow::bail!("the ledger answered PayoutsAfter with something else");
            };
            let Some(last) = payouts.last().map(|p| p.id) else { break };
            let catalog = match &catalog {
                Some(catalog) => catalog,
                None => catalog.insert(crate::api::Catalog::read(ledger).await.map_err(|e| anyhow::anyhow!("{}", e.message))?),
            };
            let mut events = Vec::with_capacity(payouts.len());
            for payout in &payouts {
                let (_, title, reference) = campaign_of(ledger, &mut titles, payout.campaign).await?;
                let (symbol, amount) = (|asset| catalog.symbol(asset), |asset, units| catalog.amount(asset, units).0.to_string());
                let cx = EventContext { symbol: &symbol, amount: &amount, campaign_title: &title, reference_asset: reference, donor_email: None };
                let (id, body) = payout_event(payout, &cx);
                events.push((payout.organiser, EventKind::PayoutMade, id, body));
            }
            self.enqueue(&events, (CURSOR_PAYOUTS, last), crate::api::now_ms())?;
            if payouts.len() < FOLLOW_PAGE as usize {
                break;
            }
        }
        Ok(())
    }

    /// Attempts the deliveries due now, `concurrent_max` at a time.
    async fn deliver_due(&self) {
        loop {
            let now = crate::api::now_ms();
            let batch: Vec<(u64, u64, UserId)> = {
                let mut due = self.lock_due();
                let ready: Vec<_> = due.iter().take_while(|(at, _, _)| *at <= now).take(self.config.concurrent_max.max(1)).copied().collect();
                for entry in &ready {
                    due.remove(entry);
                }
                ready
            };
            if batch.is_empty() {
                return;
            }
            let attempts = batch.iter().map(|&(_, sequence, organiser)| self.attempt(sequence, organiser));
            futures_util::future::join_all(attempts).await;
        }
    }

    /// One attempt at one delivery, and its outcome written.
    async fn attempt(&self, sequence: u64, organiser: UserId) {
        if let Err(error) = self.try_attempt(sequence, organiser).await {
            tracing::error!(%error, sequence, organiser, "webhooks: a delivery's record could not be read or written; it is tried again at the next start");
        }
    }

    async fn try_attempt(&self, sequence: u64, organiser: UserId) -> Result<(), WebhookError> {
        let Some(bytes) = self.store.get(WEBHOOK_DELIVERIES, &key2(organiser, sequence))? else {
            return Err(WebhookError::Corrupt(format!("pending {sequence} without its delivery")));
        };
        let mut delivery: Delivery = decode(&bytes)?;
        let outcome = match self.stored_endpoint(organiser)? {
            None => Attempt::NoAnswer("the organiser removed their webhook endpoint".into()),
            Some(endpoint) => {
                let secret = self.sealer.open(&sealed_for(organiser), &endpoint.secret_sealed).ok_or(WebhookError::Unsealable)?;
                let secret = String::from_utf8(secret).map_err(|_| WebhookError::Unsealable)?;
                self.post(&endpoint.url, &secret, &delivery).await
            }
        };
        let now = crate::api::now_ms();
        let no_endpoint = matches!(&outcome, Attempt::NoAnswer(why) if why.starts_with("the organiser removed"));
        let attempts_max = if no_endpoint { 0 } else { self.config.attempts_max };
        let jitter = f64::from(OsRng.next_u32()) / f64::from(u32::MAX);
        delivery.after(outcome.clone(), now, attempts_max, self.config.retry_base_ms, jitter);
        let mut batch = Batch::default();
        batch.put(WEBHOOK_DELIVERIES, &key2(organiser, sequence), &encode(&delivery));
        if delivery.state != DeliveryState::Pending {
            batch.delete(WEBHOOK_PENDING, &sequence.to_be_bytes());
        }
        self.store.write(&mut batch, Durability::Synced)?;
        match delivery.state {
            DeliveryState::Pending => {
                self.metrics.attempts_failed.inc();
                tracing::info!(event = %delivery.event_id, organiser, attempts = delivery.attempts, next_attempt_ms = delivery.next_attempt_ms, error = ?delivery.last_error, "webhook not delivered; will retry");
                self.lock_due().insert((delivery.next_attempt_ms, sequence, organiser));
            }
            DeliveryState::Delivered => {
                self.metrics.delivered.inc();
                self.metrics.pending.dec();
                tracing::debug!(event = %delivery.event_id, organiser, attempts = delivery.attempts, "webhook delivered");
            }
            DeliveryState::Failed => {
                self.metrics.given_up.inc();
                self.metrics.pending.dec();
                tracing::warn!(event = %delivery.event_id, organiser, attempts = delivery.attempts, error = ?delivery.last_error, "webhook given up; the organiser may redeliver it");
            }
        }
        Ok(())
    }

    /// POSTs the delivery's body, signed, and says what came of it.
    async fn post(&self, url: &str, secret: &str, delivery: &Delivery) -> Attempt {
        let timeout = Duration::from_millis(self.config.timeout_ms.max(1));
        match tokio::time::timeout(timeout, self.post_within(url, secret, delivery)).await {
            Ok(Ok(status)) => Attempt::Answered(status),
            Ok(Err(error)) => Attempt::NoAnswer(error),
            Err(_) => Attempt::NoAnswer(format!("no answer within {} ms", self.config.timeout_ms)),
        }
    }

    async fn post_within(&self, url: &str, secret: &str, delivery: &Delivery) -> Result<u16, String> {
        let endpoint = parse_endpoint(url, self.config.plain_http_allowed).map_err(|e| e.to_string())?;
        let addresses: Vec<SocketAddr> =
            tokio::net::lookup_host((endpoint.host.as_str(), endpoint.port)).await.map_err(|e| format!("{} does not resolve: {e}", endpoint.host))?.collect();
        let address = addresses
            .iter()
            .find(|a| address_allowed(a.ip(), self.config.private_networks_allowed))
            .ok_or_else(|| format!("{} resolves only to private or reserved addresses (webhooks.private_networks_allowed is off)", endpoint.host))?;
        let tcp = tokio::net::TcpStream::connect(address).await.map_err(|e| format!("connecting to {address}: {e}"))?;
        let _ = tcp.set_nodelay(true);
        let timestamp_s = crate::api::now_ms() / 1_000;
        let signed = signature(secret, &delivery.event_id, timestamp_s, &delivery.body).ok_or("the secret is not a whsec_ key")?;
        let host = if (endpoint.https && endpoint.port == 443) || (!endpoint.https && endpoint.port == 80) {
            endpoint.host.clone()
        } else if endpoint.host.contains(':') {
            format!("[{}]:{}", endpoint.host, endpoint.port)
        } else {
            format!("{}:{}", endpoint.host, endpoint.port)
        };
        let request = hyper::Request::post(endpoint.target.as_str())
            .header(hyper::header::HOST, host)
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::USER_AGENT, concat!("Marionette-Webhooks/", env!("CARGO_PKG_VERSION")))
            .header("webhook-id", delivery.event_id.as_str())
            .header("webhook-timestamp", timestamp_s.to_string())
            .header("webhook-signature", signed)
            .body(Full::new(Bytes::from(delivery.body.clone())))
            .map_err(|e| format!("building the request: {e}"))?;
        if endpoint.https {
            let connector = self
                .tls
                .as_ref()
                .ok_or_else(|| format!("no certificate authorities to check https endpoints: webhooks.roots_file {}", self.config.roots_file.display()))?;
            let name = rustls::pki_types::ServerName::try_from(endpoint.host.clone()).map_err(|e| format!("{}: {e}", endpoint.host))?;
            let tls = connector.connect(name, tcp).await.map_err(|e| format!("TLS with {}: {e}", endpoint.host))?;
            send(tls, request).await
        } else {
            send(tcp, request).await
        }
    }
}

async fn send<S>(stream: S, request: hyper::Request<Full<Bytes>>) -> Result<u16, String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(|e| format!("HTTP: {e}"))?;
    let driving = tokio::spawn(connection);
    let response = sender.send_request(request).await.map_err(|e| format!("HTTP: {e}"));
    let status = match response {
        Ok(response) => {
            let status = response.status().as_u16();
            // Read a little of the answer so that the receiver sees it taken, then drop the rest.
            let _ = http_body_util::Limited::new(response.into_body(), RESPONSE_BYTES_MAX).collect().await;
            Ok(status)
        }
        Err(error) => Err(error),
    };
    driving.abort();
    status
}

fn sealed_for(organiser: UserId) -> Vec<u8> {
    [SEALED_FOR, &organiser.to_be_bytes()].concat()
}

/// The certificate authorities in a PEM bundle, or None when it cannot be read.
fn roots(path: &Path) -> Option<rustls::RootCertStore> {
    use rustls::pki_types::pem::PemObject;
    let certificates = rustls::pki_types::CertificateDer::pem_file_iter(path).ok()?;
    let mut roots = rustls::RootCertStore::empty();
    for certificate in certificates.flatten() {
        let _ = roots.add(certificate);
    }
    if roots.is_empty() {
        tracing::warn!(file = %path.display(), "webhooks: no certificate authorities read; https endpoints cannot be reached");
        return None;
    }
    Some(roots)
}

async fn ask(ledger: &LedgerClient, query: api::Query) -> anyhow::Result<api::Answer> {
    match ledger.query(ledger_api::Query::Donations(query)).await {
        Ok(Ok(ledger_api::Answer::Donations(answer))) => Ok(answer),
        Ok(Ok(_)) => anyhow::bail!("the ledger answered a donations query with something else"),
        Ok(Err(error)) => anyhow::bail!("the ledger refused a donations query: {error:?}"),
        Err(error) => anyhow::bail!("the ledger is unreachable: {error}"),
    }
}

/// A campaign's organiser, title and reference asset, asked once per pass.
async fn campaign_of(ledger: &LedgerClient, known: &mut HashMap<u64, (UserId, String, u32)>, id: u64) -> anyhow::Result<(UserId, String, u32)> {
    if let Some(found) = known.get(&id) {
        return Ok(found.clone());
    }
    let api::Answer::Campaign(Some(campaign)) = ask(ledger, api::Query::Campaign(id)).await? else {
        anyhow::bail!("campaign {id} of a gift is missing");
    };
    let found = (campaign.organiser, campaign.spec.title.clone(), campaign.spec.reference_asset);
    known.insert(id, found.clone());
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_with_a_host_and_no_credentials() {
        let endpoint = parse_endpoint("https://Hooks.Example.org/marionette?x=1", false).unwrap();
        assert_eq!(endpoint, Endpoint { https: true, host: "hooks.example.org".into(), port: 443, target: "/marionette?x=1".into() });
        assert_eq!(parse_endpoint("https://[2001:db8::1]:8443", false).unwrap().host, "2001:db8::1");
        assert_eq!(parse_endpoint("https://example.org", false).unwrap().target, "/");
        for bad in ["http://example.org/", "ftp://example.org/", "/relative", "https://user:pw@example.org/", "https://example.org/#top", ""] {
            assert!(matches!(parse_endpoint(bad, false), Err(WebhookError::BadEndpoint(_))), "{bad} was taken");
        }
        assert!(!parse_endpoint("http://example.org/", true).unwrap().https);
    }

    #[test]
    fn private_and_reserved_addresses_are_refused_unless_allowed() {
        for refused in
            ["127.0.0.1", "10.1.2.3", "172.16.0.1", "192.168.1.1", "169.254.169.254", "100.64.0.1", "0.0.0.0", "::1", "fd00::1", "fe80::1", "::ffff:127.0.0.1"]
        {
            let ip: IpAddr = refused.parse().unwrap();
            assert!(!address_allowed(ip, false), "{refused} was allowed");
            assert!(address_allowed(ip, true));
        }
        for allowed in ["93.184.216.34", "2606:2800:220:1::1", "172.32.0.1"] {
            assert!(address_allowed(allowed.parse().unwrap(), false), "{allowed} was refused");
        }
    }

    #[test]
    fn backoff_doubles_to_six_hours_and_jitter_only_shortens() {
        assert_eq!(retry_wait_ms(1, 5_000, 0.0), 5_000);
        assert_eq!(retry_wait_ms(2, 5_000, 0.0), 10_000);
        assert_eq!(retry_wait_ms(5, 5_000, 0.0), 80_000);
        assert_eq!(retry_wait_ms(40, 5_000, 0.0), RETRY_WAIT_MAX_MS);
        assert_eq!(retry_wait_ms(u32::MAX, u64::MAX, 1.0), RETRY_WAIT_MAX_MS - RETRY_WAIT_MAX_MS / 5);
        assert_eq!(retry_wait_ms(2, 5_000, 1.0), 8_000);
    }

    fn delivery() -> Delivery {
        Delivery {
            sequence: 1,
            organiser: 7,
            event_id: "gift_1".into(),
            kind: EventKind::DonationReceived,
            body: b"{}".to_vec(),
            created_ms: 0,
            attempts: 0,
            next_attempt_ms: 0,
            state: DeliveryState::Pending,
            last_status: None,
            last_error: None,
            delivered_ms: None,
        }
    }

    #[test]
    fn a_delivery_is_retried_until_a_2xx_or_its_last_attempt() {
        let mut d = delivery();
        d.after(Attempt::Answered(500), 1_000, 3, 100, 0.0);
        assert_eq!((d.state, d.attempts, d.next_attempt_ms, d.last_status), (DeliveryState::Pending, 1, 1_100, Some(500)));
        d.after(Attempt::NoAnswer("refused".into()), 2_000, 3, 100, 0.0);
        assert_eq!((d.state, d.next_attempt_ms, d.last_status, d.last_error.as_deref()), (DeliveryState::Pending, 2_200, None, Some("refused")));
        let mut delivered = d.clone();
        delivered.after(Attempt::Answered(204), 3_000, 3, 100, 0.0);
        assert_eq!((delivered.state, delivered.delivered_ms, delivered.last_error), (DeliveryState::Delivered, Some(3_000), None));
        d.after(Attempt::Answered(301), 3_000, 3, 100, 0.0);
        assert_eq!((d.state, d.attempts, d.delivered_ms), (DeliveryState::Failed, 3, None));
        assert_eq!(d.body, b"{}", "the body is never changed by an attempt");
    }

    proptest::proptest! {
        /// Any id, timestamp and body: the signature is v1, 32 bytes of
        /// MAC, and changes with each of them.
        #[test]
        fn signatures_cover_the_id_the_time_and_the_body(id in "[a-z_0-9]{1,20}", ts in 0u64..4_000_000_000, body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200)) {
            let secret = new_secret();
            let signed = signature(&secret, &id, ts, &body).unwrap();
            let mac = BASE64.decode(signed.strip_prefix("v1,").unwrap()).unwrap();
            proptest::prop_assert_eq!(mac.len(), 32);
            proptest::prop_assert_ne!(&signature(&secret, &format!("{id}x"), ts, &body).unwrap(), &signed);
            proptest::prop_assert_ne!(&signature(&secret, &id, ts + 1, &body).unwrap(), &signed);
            proptest::prop_assert_ne!(&signature(&secret, &id, ts, &[body.as_slice(), b"x"].concat()).unwrap(), &signed);
            proptest::prop_assert_ne!(&signature(&new_secret(), &id, ts, &body).unwrap(), &signed);
        }

        /// No URL makes the parser panic; what it takes is https with a host.
        #[test]
        fn any_url_is_parsed_or_refused(url in ".{0,80}") {
            if let Ok(endpoint) = parse_endpoint(&url, false) {
                proptest::prop_assert!(endpoint.https && !endpoint.host.is_empty() && endpoint.target.starts_with('/'));
            }
        }
    }
}
