//! The daemon's entry point: load config, open the account store, connect
//! to the ledger, serve HTTP until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use gateway::admin::{self, Admin};
use gateway::api::{self, Services};
use gateway::auth::Auth;
use gateway::config::GatewayConfig;
use gateway::feed::Feeds;
use gateway::http::{self, App, Metrics};
use gateway::ledger_client::LedgerClient;
use gateway::logins::{LoginLimits, Logins};
use gateway::matching_client::MatchingClient;
use gateway::per_ip::PlacesPerIp;
use gateway::ratelimit::RateLimiter;
use gateway::sessions::Sessions;
use gateway::tls::Certificate;
use gateway::users::Users;
use hyper_util::rt::TokioIo;
use ledger_api::operators::SecurityEvent;

const USAGE: &str = "usage: marionette-gateway [--config PATH] [--check-config] [init-keys | init-certificate [HOST...]]\n\
    Runs the Marionette GraphQL gateway. PATH defaults to /etc/marionette/gateway.toml.\n\
    init-keys: creates a JWT signing key in auth.keys_dir if there is none (mode 0600), prints the signing key's id and exits.\n\
    init-certificate: if listen.tls_certificate_file and tls_private_key_file do not exist, makes a self-signed\n\
    certificate for HOST... (DNS names or addresses; key mode 0600); prints the SHA-256 fingerprint of the\n\
    certificate the gateway serves, made now or before, and exits.";

enum Command {
    Serve,
    InitKeys,
    InitCertificate(Vec<String>),
}

fn main() {
    shell::exit_on_error("marionette-gateway", run());
}

fn run() -> anyhow::Result<()> {
    let Some(args) = shell::parse_args(std::env::args().skip(1), "/etc/marionette/gateway.toml", USAGE).map_err(anyhow::Error::msg)? else { return Ok(()) };
    let command = match args.rest.as_slice() {
        [] => Command::Serve,
        [command] if command == "init-keys" => Command::InitKeys,
        [command, hosts @ ..] if command == "init-certificate" => Command::InitCertificate(hosts.to_vec()),
        [extra, ..] => bail!("unexpected argument {extra:?}\n{USAGE}"),
    };
    let (config_path, check_only) = (args.config, args.check_only);
    let config = GatewayConfig::load(&config_path).with_context(|| format!("loading {}", config_path.display()))?;
    let link_tls = link::LinkTls::load(&config.link).with_context(|| format!("the [link] certificates of {}", config_path.display()))?;
    if check_only {
        println!("{}: ok", config_path.display());
        return Ok(());
    }
    match command {
        Command::Serve => {}
        Command::InitKeys => {
            // The package's postinst runs this, so that the secret exists before
            // the first start and is never part of the package.
            let kid = gateway::auth::init_keys(&config.auth).with_context(|| format!("creating a signing key in {}", config.auth.keys_dir.display()))?;
            println!("{kid}");
            return Ok(());
        }
        Command::InitCertificate(hosts) => {
            // The host image's first boot runs this, so that it serves HTTPS
            // from the start with a key that is this server's alone.
            let (certificate, key) = (&config.listen.tls_certificate_file, &config.listen.tls_private_key_file);
            if certificate.as_os_str().is_empty() {
                bail!("{} serves plain HTTP: set listen.tls_certificate_file and tls_private_key_file to where the certificate goes", config_path.display());
            }
            let (fingerprint, made) = gateway::tls::init_self_signed(certificate, key, &hosts)?;
            if made == gateway::tls::Made::Now {
                eprintln!("made a self-signed certificate for {} in {}", hosts.join(" "), certificate.display());
            }
            println!("{fingerprint}");
            return Ok(());
        }
    }
    shell::init_logging(&config.log);
    shell::service_manager::status("opening the account store and the signing keys");
    std::fs::create_dir_all(&config.storage.data_dir).with_context(|| format!("creating {}", config.storage.data_dir.display()))?;
    let store = gateway::users::open_store(&config.storage.data_dir).context("opening the account store (is another gateway running on it?)")?;
    let users = Arc::new(Users::new(store.clone()).context("reading the accounts")?);
    let sessions = Arc::new(Sessions::open(store.clone(), config.auth.sessions_per_user_max, api::now_ms()).context("reading the sessions")?);
    let sealer = Arc::new(gateway::two_factor::Sealer::load_or_create(&config.auth.keys_dir).context("loading the key for secrets at rest")?);
    let two_factor = Arc::new(gateway::two_factor::TwoFactor::new(store.clone(), sealer.clone()));
    let k = &config.api_keys;
    let w = &config.withdrawals;
    let address_book = Arc::new(gateway::address_book::AddressBook::new(store.clone(), w.address_cooldown_seconds * 1_000, w.address_book_max, w.networks()));
    let reviews = gateway::limits::Reviews::new(store.clone());
    let webhooks = Arc::new(gateway::webhooks::Webhooks::open(store.clone(), sealer.clone(), config.webhooks.clone()).context("opening the webhook outbox")?);
    let api_keys = Arc::new(gateway::api_keys::ApiKeys::new(store, sealer, k.receive_window_ms, k.per_user_max, k.replays_max, api::now_ms()));
    let auth = Arc::new(Auth::new(&config.auth, sessions).context("loading the JWT signing keys")?);
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("gateway").build()?;
    runtime.block_on(serve(config, link_tls, Opened { users, auth, two_factor, api_keys, address_book, reviews, webhooks }))
}

/// What `main` opened before the runtime started: the store's parts and the keys.
struct Opened {
    users: Arc<Users>,
    auth: Arc<Auth>,
    two_factor: Arc<gateway::two_factor::TwoFactor>,
    api_keys: Arc<gateway::api_keys::ApiKeys>,
    address_book: Arc<gateway::address_book::AddressBook>,
    reviews: gateway::limits::Reviews,
    webhooks: Arc<gateway::webhooks::Webhooks>,
}

async fn serve(config: GatewayConfig, link_tls: Option<link::LinkTls>, opened: Opened) -> anyhow::Result<()> {
    let Opened { users, auth, two_factor, api_keys, address_book, reviews, webhooks } = opened;
    let ledger = LedgerClient::start(config.ledger.clone(), link_tls.clone());
    let matching = MatchingClient::start(config.matching.clone(), link_tls);
    let metrics = Metrics::new().with_webhooks(&webhooks.metrics);
    tokio::spawn(webhooks.clone().run(ledger.clone(), users.clone()));
    let services = Services {
        users: users.clone(),
        auth: auth.clone(),
        ledger: ledger.clone(),
        feeds: Feeds::new(ledger.clone(), matching.clone()),
        matching,
        order_settle_timeout: Duration::from_millis(config.ledger.order_settle_timeout_ms),
        cookie_secure: config.auth.cookie_secure,
        catalog: Default::default(),
        subscriptions: Arc::default(),
        subscriptions_max: config.limits.subscriptions_max,
        subscriptions_per_ip: PlacesPerIp::new(config.limits.subscriptions_per_ip_max),
        logins: Logins::new(LoginLimits {
            ip_burst: config.limits.login_ip_burst,
            ip_refill: Duration::from_secs(config.limits.login_ip_refill_seconds),
            account_burst: config.limits.login_account_burst,
            account_refill: Duration::from_secs(config.limits.login_account_refill_seconds),
            keys_max: config.limits.rate_keys_max,
            argon2_concurrent_max: config.auth.argon2_concurrent_max,
        }),
        password_score_min: config.auth.password_score_min,
        operators_two_factor_required: config.auth.operators_two_factor_required,
        two_factor: two_factor.clone(),
        api_keys: api_keys.clone(),
        address_book,
        limits: api::WithdrawalLimitsConfig { reference_asset: config.withdrawals.reference_asset.clone(), tiers: config.withdrawals.tiers.clone() },
        reviews,
        withdrawing: Default::default(),
        order_times: metrics.order_times.clone(),
        convert_quotes: RateLimiter::with_refill(
            Duration::from_secs(60) / config.convert.quotes_per_minute,
            config.convert.quotes_burst,
            config.limits.rate_keys_max,
        ),
        webhooks,
    };
    let schema = api::schema(services, &config.limits);
    let admin = Arc::new(Admin {
        schema: schema.clone(),
        users: users.clone(),
        auth: auth.clone(),
        ledger: ledger.clone(),
        password_score_min: config.auth.password_score_min,
        two_factor,
        operators_two_factor_required: config.auth.operators_two_factor_required,
    });
    admin::serve(&config.admin.socket, admin).await.with_context(|| format!("binding the admin socket {}", config.admin.socket.display()))?;
    let console = load_console(&config.console.directory)?;
    let limits = &config.limits;
    let app = Arc::new(App {
        schema,
        auth: auth.clone(),
        ledger: ledger.clone(),
        metrics,
        body_bytes_max: limits.body_bytes_max,
        body_read_timeout: Duration::from_secs(config.listen.body_read_timeout_seconds),
        websocket_origins: config.listen.websocket_origins.iter().filter_map(|o| gateway::origin::parse_origin(o)).collect(),
        trusted_proxies: config.listen.trusted_proxies.iter().filter_map(|p| gateway::forwarded::parse_proxy(p)).collect(),
        ip_limiter: RateLimiter::new(limits.ip_requests_per_second, limits.ip_burst, limits.rate_keys_max),
        user_limiter: RateLimiter::new(limits.user_requests_per_second, limits.user_burst, limits.rate_keys_max),
        key_limiter: RateLimiter::new(config.api_keys.requests_per_second, config.api_keys.burst, limits.rate_keys_max),
        api_keys,
        websocket: http::WebSocketTimes { ping: Duration::from_secs(limits.websocket_ping_seconds), idle: Duration::from_secs(limits.websocket_idle_seconds) },
        console,
    });
    // One for each open connection, WebSockets included.
    let permits = Arc::new(tokio::sync::Semaphore::new(config.listen.connections_max));
    let per_ip = PlacesPerIp::new(config.listen.connections_per_ip_max);
    let listener = tokio::net::TcpListener::bind(&config.listen.address).await.with_context(|| format!("binding {}", config.listen.address))?;
    if !config.listen.metrics_address.is_empty() {
        let metrics = tokio::net::TcpListener::bind(&config.listen.metrics_address)
            .await
            .with_context(|| format!("binding the metrics address {}", config.listen.metrics_address))?;
        tokio::spawn(http::serve_metrics(metrics, app.clone()));
    }
    // The keys this gateway serves with, in the ledger's audit log.
    let loaded = |what: &str, fingerprint: String| SecurityEvent::Loaded { daemon: "gateway".into(), what: what.into(), fingerprint };
    gateway::api::operators::record_when_connected(&ledger, loaded("token signing key", auth.signing_key_id().to_string()));
    let tls = tls_acceptor(&config.listen, &ledger)?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    tracing::info!(address = %config.listen.address, ledger = %config.ledger.address, metrics = %config.listen.metrics_address, signing_key = auth.signing_key_id(), "ready: POST {scheme}://{}/graphql", config.listen.address);
    shell::service_manager::ready(&format!("serving GraphQL on {scheme}://{}", config.listen.address));
    // Expired sessions are forgotten, and the sockets they opened close.
    let sweeping = auth.clone();
    tokio::spawn(async move {
        let mut every = tokio::time::interval(Duration::from_secs(30));
        loop {
            every.tick().await;
            if let Err(error) = sweeping.sessions().sweep(api::now_ms()) {
                tracing::warn!(%error, "could not forget the expired sessions; will try again");
            }
        }
    });
    // The gateway has no engine thread: its heartbeats come from the runtime
    // that serves requests, so a stalled runtime is restarted.
    tokio::spawn(async {
        let mut watchdog = shell::service_manager::Watchdog::from_env();
        loop {
            watchdog.beat();
            tokio::time::sleep(watchdog.wait_max()).await;
        }
    });
    let header_read_timeout = Duration::from_secs(config.listen.header_read_timeout_seconds);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        // Over the cap, connections wait in the kernel's backlog until one closes.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) => {
                    tracing::warn!(%error, "accept failed");
                    continue;
                }
            },
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        // One address may not take every place: beyond its cap, closed at once (the permit goes back).
        let Some(ip_slot) = per_ip.take(remote.ip()) else {
            app.metrics.connections_refused.inc();
            tracing::debug!(%remote, "connection refused: connections_per_ip_max open from this address");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let tls = tls.clone();
        app.metrics.connections.inc();
        tokio::spawn(async move {
            // Held here until the connection ends, unless a WebSocket upgrade takes it over.
            let permit: http::ConnectionPermit = Arc::new(std::sync::Mutex::new(Some(permit)));
            match tls {
                // The handshake is part of the headers' time: a client stalling it holds its place no longer.
                Some(acceptor) => match tokio::time::timeout(header_read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(&app, stream, remote.ip(), permit, header_read_timeout).await,
                    Ok(Err(error)) => tracing::debug!(%remote, %error, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                },
                None => serve_connection(&app, stream, remote.ip(), permit, header_read_timeout).await,
            }
            app.metrics.connections.dec();
            drop(ip_slot);
        });
    }
    tracing::info!("stopping");
    shell::service_manager::stopping();
    Ok(())
}

/// HTTP/1.1 with upgrades on one connection, plain or TLS, until it ends.
async fn serve_connection<S>(app: &Arc<App>, stream: S, remote: std::net::IpAddr, permit: http::ConnectionPermit, header_read_timeout: Duration)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(|request| http::handle(app.clone(), remote, permit.clone(), request));
    if let Err(error) = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(header_read_timeout)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await
    {
        tracing::debug!(%error, "connection ended with an error");
    }
}

/// With a certificate configured, the TLS acceptor. Either way a task
/// handles SIGHUP (`systemctl reload`): it reads the certificate again, or,
/// with none, says there is nothing to reload (rather than the signal's
/// default, which would end the process).
fn tls_acceptor(listen: &gateway::config::ListenConfig, ledger: &LedgerClient) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    if listen.tls_certificate_file.as_os_str().is_empty() {
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                tracing::info!("SIGHUP: no certificate configured (listen.tls_certificate_file), nothing to reload");
            }
        });
        return Ok(None);
    }
    let certificate = Certificate::load(&listen.tls_certificate_file, &listen.tls_private_key_file)?;
    tracing::info!(sha256 = certificate.fingerprint(), file = %listen.tls_certificate_file.display(), "serving HTTPS");
    let loaded = |fingerprint: String| SecurityEvent::Loaded { daemon: "gateway".into(), what: "TLS certificate (sha256)".into(), fingerprint };
    gateway::api::operators::record_when_connected(ledger, loaded(certificate.fingerprint()));
    let reloaded = certificate.clone();
    let ledger = ledger.clone();
    tokio::spawn(async move {
        while hangup.recv().await.is_some() {
            match reloaded.reload() {
                Ok(sha256) => {
                    tracing::info!(%sha256, "SIGHUP: the certificate was read again and is served from now on");
                    gateway::api::operators::record(&ledger, loaded(sha256));
                }
                Err(error) => {
                    tracing::error!(%error, sha256 = reloaded.fingerprint(), "SIGHUP: the certificate was not reloaded; the one before is still served")
                }
            }
        }
    });
    Ok(Some(gateway::tls::acceptor(certificate)))
}

/// The web console, or none when its directory does not exist (the API
/// runs without it); a directory that exists but is not a built console is
/// an error to mend before starting.
fn load_console(directory: &std::path::Path) -> anyhow::Result<gateway::console::Console> {
    if !directory.exists() {
        tracing::warn!(event = "console_missing", directory = %directory.display(), "no web console: install marionette-console to serve it at /");
        return Ok(gateway::console::Console::none());
    }
    let console = gateway::console::Console::load(directory).with_context(|| format!("loading console.directory {}", directory.display()))?;
    tracing::info!(event = "console_loaded", directory = %directory.display(), files = console.files(), "serving the web console at /");
    Ok(console)
}
