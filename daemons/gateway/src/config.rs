//! `gateway.toml`: every key has a documented default, unknown keys are an
//! error that names the key, and the whole file is validated once at start.

use std::path::{Path, PathBuf};

use serde::Deserialize;

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewayConfig {
    pub listen: ListenConfig,
    pub ledger: LedgerLinkConfig,
    pub matching: MatchingLinkConfig,
    pub admin: AdminConfig,
    pub auth: AuthConfig,
    pub storage: StorageConfig,
    pub limits: LimitsConfig,
    pub api_keys: ApiKeysConfig,
    pub withdrawals: WithdrawalsConfig,
    pub console: ConsoleConfig,
    pub convert: ConvertConfig,
    pub webhooks: WebhooksConfig,
    /// The certificates for `tcp:` links to the ledger and matching.
    pub link: link::LinkConfig,
    pub log: LogConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ListenConfig {
    /// `host:port` for HTTP: POST/GET /graphql, GET /markets, /healthz, /readyz.
    pub address: String,
    /// `host:port` for Prometheus GET /metrics (and /healthz), apart from the
    /// API so that it need not be public; "" serves no metrics.
    pub metrics_address: String,
    /// HTTP connections open at once; more wait in the kernel's backlog.
    pub connections_max: usize,
    /// Connections open at once from one client address (at most
    /// connections_max); more are closed at once.
    pub connections_per_ip_max: usize,
    /// How long a client may take to send a request's headers, and its body,
    /// before the connection is closed (the headers) or answered 408 (the body).
    pub header_read_timeout_seconds: u64,
    pub body_read_timeout_seconds: u64,
    /// Web origins (`https://console.example.com`) whose pages may open a
    /// WebSocket, besides the gateway's own; a browser always sends Origin.
    pub websocket_origins: Vec<String>,
    /// HTTPS: the certificate chain and its private key, PEM files read at
    /// start and again on SIGHUP. Both empty: plain HTTP.
    pub tls_certificate_file: PathBuf,
    pub tls_private_key_file: PathBuf,
    /// Reverse proxies (addresses or networks) whose X-Forwarded-For names
    /// the client; from anyone else the header is ignored.
    pub trusted_proxies: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConsoleConfig {
    /// The built web console (the marionette-console package's files),
    /// served at `/`. Read once at start; absent, the gateway serves the
    /// API alone and its pages say what to install.
    pub directory: PathBuf,
}

impl Default for ConsoleConfig {
    fn default() -> Self {
        ConsoleConfig { directory: "/usr/share/marionette/console".into() }
    }
}

/// Convert's quotes: each sets the house's inventory aside until it
/// expires, so a user may ask for only so many (a free option must not be
/// free to farm); the ledger also bounds the open ones per user.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ConvertConfig {
    /// Quotes a user may ask for a minute, after the burst.
    pub quotes_per_minute: u32,
    pub quotes_burst: u32,
}

impl Default for ConvertConfig {
    fn default() -> Self {
        ConvertConfig { quotes_per_minute: 60, quotes_burst: 10 }
    }
}

/// Signed webhooks to organisers (`[webhooks]` in gateway.toml).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WebhooksConfig {
    /// The certificate authorities https endpoints are checked against (PEM).
    pub roots_file: PathBuf,
    /// Endpoints over plain http: for a receiver on a trusted network only.
    pub plain_http_allowed: bool,
    /// Endpoints on private, loopback, link-local or reserved addresses:
    /// off, so that an organiser cannot aim the gateway at the bank's network.
    pub private_networks_allowed: bool,
    /// How often the outbox looks for new gifts and payouts and for deliveries due.
    pub poll_ms: u64,
    /// How long an attempt may take, connecting to the receiver's answer.
    pub timeout_ms: u64,
    /// Attempts before a delivery is given up (the organiser may ask for it again).
    pub attempts_max: u32,
    /// The first retry's wait; it doubles with each failure, up to six hours.
    pub retry_base_ms: u64,
    /// Deliveries attempted at once.
    pub concurrent_max: usize,
}

impl Default for WebhooksConfig {
    fn default() -> Self {
        WebhooksConfig {
            roots_file: "/etc/ssl/certs/ca-certificates.crt".into(),
            plain_http_allowed: false,
            private_networks_allowed: false,
            poll_ms: 1_000,
            timeout_ms: 10_000,
            // 5 s doubling to 6 h: about two days of trying.
            attempts_max: 18,
            retry_base_ms: 5_000,
            concurrent_max: 8,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LedgerLinkConfig {
    /// The ledger's `listen.address`: `unix:/path` or `tcp:host:port`.
    pub address: String,
    /// A cluster's other replicas (`tcp:host:port`, their ledger
    /// addresses in cluster.toml): the gateway goes to the one that leads,
    /// as any replica's refusal names it, and tries them in turn when none is named.
    pub replicas: Vec<String>,
    /// This gateway's peer id at the ledger; each gateway of a site needs its own.
    pub peer_id: u32,
    pub reconnect_ms: u64,
    /// How long a request waits for the ledger before it answers UNAVAILABLE.
    pub request_timeout_ms: u64,
    /// How long placeOrder waits for matching's verdict before it answers with the held order.
    pub order_settle_timeout_ms: u64,
    /// Requests waiting for the ledger at once; more answer UNAVAILABLE.
    pub in_flight_max: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MatchingLinkConfig {
    /// The matching daemon's `listen.address`, for order book reads.
    pub address: String,
    /// This gateway's peer id at matching; each gateway of a site needs its own.
    pub peer_id: u32,
    pub reconnect_ms: u64,
    pub request_timeout_ms: u64,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    /// The Unix socket marionettectl talks to, created with mode 0600: its
    /// file permissions are what guards it.
    pub socket: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AuthConfig {
    /// Signing keys, one file `<key id>.ed25519` each (a 32-byte seed, hex). A
    /// new key is generated when the directory has none. The newest signs;
    /// every key present verifies, so a rotated-out key keeps its tokens valid
    /// until its file is removed.
    pub keys_dir: PathBuf,
    pub token_ttl_seconds: u64,
    /// The cookie's `Secure` attribute; turn it off only for plain-HTTP local runs.
    pub cookie_secure: bool,
    /// argon2id memory cost in KiB and passes.
    pub argon2_memory_kib: u32,
    pub argon2_passes: u32,
    /// Password hashes computed at once (logins and registrations); beyond
    /// it they answer RATE_LIMITED rather than queue.
    pub argon2_concurrent_max: usize,
    /// Sessions one user may have live; a login beyond it ends the oldest.
    pub sessions_per_user_max: usize,
    /// The least zxcvbn score (0 to 4) a new password must have.
    pub password_score_min: u8,
    /// Operators act only once they have two-factor authentication on;
    /// until then their sessions may only enrol. Off only for test suites
    /// that log operators in again and again.
    pub operators_two_factor_required: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiKeysConfig {
    /// How far a signed request's timestamp may be from the server's clock,
    /// either way; its signature is remembered this long to refuse a replay.
    pub receive_window_ms: u64,
    /// Signed requests per key: a burst, then this many per second.
    pub requests_per_second: u32,
    pub burst: u32,
    /// Keys one user may have.
    pub per_user_max: usize,
    /// Signatures remembered at once (each for a receive window); beyond
    /// it, signed requests answer RATE_LIMITED until some are forgotten.
    pub replays_max: usize,
}

impl Default for ApiKeysConfig {
    fn default() -> Self {
        ApiKeysConfig { receive_window_ms: 5_000, requests_per_second: 20, burst: 40, per_user_max: 20, replays_max: 1_000_000 }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WithdrawalsConfig {
    /// How long a new or changed address book entry waits before it can be withdrawn to.
    pub address_cooldown_seconds: u64,
    /// Entries one user's address book may hold.
    pub address_book_max: usize,
    /// Asset symbol -> the networks its withdrawal addresses are checked
    /// for (`bitcoin`, `bitcoin-testnet`, `ethereum`); an asset not named
    /// takes any address.
    pub asset_networks: std::collections::BTreeMap<String, Vec<String>>,
    /// The asset withdrawal limits are counted in ("" : no limits).
    pub reference_asset: String,
    /// Tier 0 first (a new user's), then 1, 2…: each tier's rolling 24 h
    /// and 30 day limits in the reference asset.
    pub tiers: Vec<crate::limits::Tier>,
}

impl Default for WithdrawalsConfig {
    fn default() -> Self {
        WithdrawalsConfig {
            address_cooldown_seconds: 86_400,
            address_book_max: 100,
            asset_networks: Default::default(),
            reference_asset: String::new(),
            tiers: Vec::new(),
        }
    }
}

impl WithdrawalsConfig {
    /// The declared networks, parsed (validate() has refused unknown names).
    pub fn networks(&self) -> std::collections::HashMap<String, Vec<crate::addresses::Network>> {
        self.asset_networks.iter().map(|(asset, names)| (asset.clone(), names.iter().filter_map(|n| crate::addresses::Network::parse(n)).collect())).collect()
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// Users and credentials (RocksDB).
    pub data_dir: PathBuf,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LimitsConfig {
    pub body_bytes_max: usize,
    pub query_depth_max: usize,
    pub query_complexity_max: usize,
    /// GraphQL requests per client IP: a burst, then this many per second.
    pub ip_requests_per_second: u32,
    pub ip_burst: u32,
    /// GraphQL requests per logged-in user: a burst, then this many per second.
    pub user_requests_per_second: u32,
    pub user_burst: u32,
    /// Clients (IPs, users) tracked at once by each limiter.
    pub rate_keys_max: usize,
    /// Subscriptions open at once over all WebSocket connections.
    pub subscriptions_max: usize,
    /// Subscriptions open at once from one client address.
    pub subscriptions_per_ip_max: usize,
    /// Seconds between the server's pings on a WebSocket; a client that
    /// answers none of two in a row is disconnected.
    pub websocket_ping_seconds: u64,
    /// Seconds a WebSocket may stay open with no subscription running and no
    /// message from its client.
    pub websocket_idle_seconds: u64,
    /// Login attempts (and registrations) per client address: a burst, then
    /// one every `login_ip_refill_seconds`. Counted before the password is
    /// checked, one per `login` field.
    pub login_ip_burst: u32,
    pub login_ip_refill_seconds: u64,
    /// Login attempts per account, from any address: a burst, then one every
    /// `login_account_refill_seconds`.
    pub login_account_burst: u32,
    pub login_account_refill_seconds: u64,
    /// Whether GraphQL introspection (`__schema`, `__type`) is served. Off:
    /// the schema is published as daemons/gateway/schema.graphql instead.
    pub introspection: bool,
}

impl Default for ListenConfig {
    fn default() -> Self {
        ListenConfig {
            address: "127.0.0.1:8080".into(),
            metrics_address: "127.0.0.1:9101".into(),
            connections_max: 1_024,
            connections_per_ip_max: 64,
            header_read_timeout_seconds: 30,
            body_read_timeout_seconds: 30,
            websocket_origins: Vec::new(),
            tls_certificate_file: PathBuf::new(),
            tls_private_key_file: PathBuf::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

impl Default for LedgerLinkConfig {
    fn default() -> Self {
        LedgerLinkConfig {
            address: "unix:/run/marionette/ledger.sock".into(),
            replicas: Vec::new(),
            peer_id: 100,
            reconnect_ms: 500,
            request_timeout_ms: 5_000,
            order_settle_timeout_ms: 2_000,
            in_flight_max: 65_536,
        }
    }
}

impl Default for MatchingLinkConfig {
    fn default() -> Self {
        MatchingLinkConfig { address: "unix:/run/marionette/matching.sock".into(), peer_id: 100, reconnect_ms: 500, request_timeout_ms: 2_000 }
    }
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { socket: "/run/marionette/gateway-admin.sock".into() }
    }
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            keys_dir: "/var/lib/marionette/gateway/keys".into(),
            token_ttl_seconds: 900,
            cookie_secure: true,
            argon2_memory_kib: 19_456,
            argon2_passes: 2,
            argon2_concurrent_max: 4,
            sessions_per_user_max: 20,
            password_score_min: 3,
            operators_two_factor_required: true,
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig { data_dir: "/var/lib/marionette/gateway/db".into() }
    }
}

impl Default for LimitsConfig {
    fn default() -> Self {
        LimitsConfig {
            body_bytes_max: 1 << 20,
            query_depth_max: 12,
            query_complexity_max: 500,
            ip_requests_per_second: 200,
            ip_burst: 400,
            user_requests_per_second: 100,
            user_burst: 200,
            rate_keys_max: 100_000,
            subscriptions_max: 10_000,
            subscriptions_per_ip_max: 100,
            websocket_ping_seconds: 30,
            websocket_idle_seconds: 300,
            login_ip_burst: 20,
            login_ip_refill_seconds: 6,
            login_account_burst: 5,
            login_account_refill_seconds: 60,
            introspection: false,
        }
    }
}

pub use shell::{ConfigError, LogConfig};

impl GatewayConfig {
    pub fn load(path: &Path) -> Result<GatewayConfig, ConfigError> {
        shell::load(path)
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        use shell::Validate as _;
        let invalid = |key, reason: &str| Err(ConfigError::Invalid { key, reason: reason.into() });
        if self.listen.address.parse::<std::net::SocketAddr>().is_err() {
            return invalid("listen.address", "must be host:port with a numeric host, e.g. 127.0.0.1:8080");
        }
        if self.listen.connections_max == 0 {
            return invalid("listen.connections_max", "must be at least 1");
        }
        if self.listen.connections_per_ip_max == 0 {
            return invalid("listen.connections_per_ip_max", "must be at least 1");
        }
        if !self.listen.metrics_address.is_empty() && self.listen.metrics_address.parse::<std::net::SocketAddr>().is_err() {
            return invalid("listen.metrics_address", "must be host:port with a numeric host, e.g. 127.0.0.1:9101, or \"\" for none");
        }
        if !(1..=3_600).contains(&self.listen.header_read_timeout_seconds) || !(1..=3_600).contains(&self.listen.body_read_timeout_seconds) {
            return invalid("listen", "header_read_timeout_seconds and body_read_timeout_seconds must be 1 to 3600");
        }
        if let Some(origin) = self.listen.websocket_origins.iter().find(|o| crate::origin::parse_origin(o).is_none()) {
            return Err(ConfigError::Invalid {
                key: "listen.websocket_origins",
                reason: format!("{origin:?} is not an origin: scheme://host[:port], nothing after it"),
            });
        }
        let (certificate, key) = (&self.listen.tls_certificate_file, &self.listen.tls_private_key_file);
        match (certificate.as_os_str().is_empty(), key.as_os_str().is_empty()) {
            (true, true) => {}
            (false, false) if certificate.is_absolute() && key.is_absolute() => {}
            _ => return invalid("listen", "tls_certificate_file and tls_private_key_file go together: both absolute paths for HTTPS, or both empty"),
        }
        if let Some(proxy) = self.listen.trusted_proxies.iter().find(|p| crate::forwarded::parse_proxy(p).is_none()) {
            return Err(ConfigError::Invalid {
                key: "listen.trusted_proxies",
                reason: format!("{proxy:?} is neither an address nor a network (10.0.0.5, 10.0.0.0/24)"),
            });
        }
        if !(self.ledger.address.starts_with("unix:") || self.ledger.address.starts_with("tcp:")) {
            return invalid("ledger.address", "must start with unix: or tcp:");
        }
        if let Some(replica) = self.ledger.replicas.iter().find(|replica| !replica.starts_with("tcp:")) {
            return Err(ConfigError::Invalid { key: "ledger.replicas", reason: format!("{replica:?}: a replica is on another host: tcp:host:port") });
        }
        if !self.ledger.replicas.is_empty() && !self.ledger.address.starts_with("tcp:") {
            return invalid("ledger.address", "with ledger.replicas, the ledger is a cluster: its address is tcp:host:port too");
        }
        if self.ledger.peer_id == 0 || self.ledger.peer_id == u32::MAX {
            return invalid("ledger.peer_id", "must be 1 to 4294967294");
        }
        if self.ledger.reconnect_ms == 0 || self.ledger.request_timeout_ms == 0 || self.ledger.in_flight_max == 0 {
            return invalid("ledger", "reconnect_ms, request_timeout_ms and in_flight_max must be at least 1");
        }
        if !(self.matching.address.starts_with("unix:") || self.matching.address.starts_with("tcp:")) {
            return invalid("matching.address", "must start with unix: or tcp:");
        }
        self.link
            .check_tcp_addresses(&[("ledger.address", &self.ledger.address), ("matching.address", &self.matching.address)])
            .map_err(|(key, reason)| ConfigError::Invalid { key, reason })?;
        if !self.link.unix_peers.is_empty() {
            return invalid("link.unix_peers", "the gateway serves no links (it is for the ledger's and matching's config)");
        }
        if self.matching.peer_id == 0 || self.matching.reconnect_ms == 0 || self.matching.request_timeout_ms == 0 {
            return invalid("matching", "peer_id, reconnect_ms and request_timeout_ms must be at least 1");
        }
        if self.admin.socket.as_os_str().is_empty() || self.admin.socket.is_relative() {
            return invalid("admin.socket", "must be an absolute path");
        }
        if self.auth.sessions_per_user_max == 0 {
            return invalid("auth.sessions_per_user_max", "must be at least 1");
        }
        if self.auth.password_score_min > 4 {
            return invalid("auth.password_score_min", "must be 0 to 4 (zxcvbn's scores; 3 is \"safely unguessable\" online)");
        }
        if !(60..=86_400).contains(&self.auth.token_ttl_seconds) {
            return invalid("auth.token_ttl_seconds", "must be 60 to 86400");
        }
        if self.auth.argon2_memory_kib < 8 * 1024 || self.auth.argon2_passes == 0 || self.auth.argon2_concurrent_max == 0 {
            return invalid("auth", "argon2_memory_kib must be at least 8192, argon2_passes and argon2_concurrent_max at least 1");
        }
        if self.limits.body_bytes_max < 1024 || self.limits.query_depth_max == 0 || self.limits.query_complexity_max == 0 {
            return invalid("limits", "body_bytes_max must be at least 1024, the query limits at least 1");
        }
        let l = &self.limits;
        if l.ip_requests_per_second == 0
            || l.ip_burst == 0
            || l.user_requests_per_second == 0
            || l.user_burst == 0
            || l.rate_keys_max == 0
            || l.subscriptions_max == 0
            || l.subscriptions_per_ip_max == 0
        {
            return invalid("limits", "the rate limits, rate_keys_max, subscriptions_max and subscriptions_per_ip_max must be at least 1");
        }
        if !(1..=3_600).contains(&l.websocket_ping_seconds) || !(1..=86_400).contains(&l.websocket_idle_seconds) {
            return invalid("limits", "websocket_ping_seconds must be 1 to 3600 and websocket_idle_seconds 1 to 86400");
        }
        if l.login_ip_burst == 0 || l.login_account_burst == 0 || l.login_ip_refill_seconds > 86_400 || l.login_account_refill_seconds > 86_400 {
            return invalid("limits", "login_ip_burst and login_account_burst must be at least 1, the refill times at most 86400 seconds");
        }
        if self.convert.quotes_per_minute == 0 || self.convert.quotes_burst == 0 {
            return invalid("convert", "quotes_per_minute and quotes_burst must be at least 1");
        }
        let k = &self.api_keys;
        if !(100..=60_000).contains(&k.receive_window_ms) {
            return invalid("api_keys.receive_window_ms", "must be 100 to 60000 (a minute); 5000 suits a client whose clock NTP keeps");
        }
        if k.requests_per_second == 0 || k.burst == 0 || k.per_user_max == 0 || k.replays_max == 0 {
            return invalid("api_keys", "requests_per_second, burst, per_user_max and replays_max must be at least 1");
        }
        let w = &self.withdrawals;
        if w.address_cooldown_seconds > 30 * 86_400 || w.address_book_max == 0 {
            return invalid("withdrawals", "address_cooldown_seconds must be at most 2592000 (30 days) and address_book_max at least 1");
        }
        for (asset, networks) in &w.asset_networks {
            if let Some(unknown) = networks.iter().find(|n| crate::addresses::Network::parse(n).is_none()) {
                return Err(ConfigError::Invalid {
                    key: "withdrawals.asset_networks",
                    reason: format!("{asset}: {unknown:?} is not a network the gateway checks (bitcoin, bitcoin-testnet, ethereum)"),
                });
            }
            if networks.is_empty() {
                return Err(ConfigError::Invalid {
                    key: "withdrawals.asset_networks",
                    reason: format!("{asset}: name at least one network, or leave the asset out"),
                });
            }
        }
        if w.reference_asset.is_empty() != w.tiers.is_empty() {
            return invalid("withdrawals", "reference_asset and tiers go together: both set for withdrawal limits, or both empty for none");
        }
        if w.tiers.len() > usize::from(ledger_api::operators::TIER_MAX) + 1 {
            return invalid("withdrawals.tiers", "at most 10 tiers (0 to 9)");
        }
        if let Some(tier) = w.tiers.iter().find(|t| t.daily_limit.is_sign_negative() || t.monthly_limit < t.daily_limit || t.name.trim().is_empty()) {
            return Err(ConfigError::Invalid {
                key: "withdrawals.tiers",
                reason: format!("tier {:?}: a name, and 0 <= daily_limit <= monthly_limit", tier.name),
            });
        }
        self.log.validate()?;
        Ok(())
    }
}

impl shell::Validate for GatewayConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        GatewayConfig::validate(self)
    }
}
