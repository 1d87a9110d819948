//! The daemon's entry point: load config, open the account store, connect
//! to the ledger, serve HTTP until SIGTERM.

use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use gateway::api::{self, Services};
use gateway::auth::Auth;
use gateway::config::GatewayConfig;
use gateway::http::{self, App, Metrics};
use gateway::ledger_client::LedgerClient;
use gateway::users::{Role, Users};
use hyper_util::rt::TokioIo;

const USAGE: &str = "usage: marionette-gateway [--config PATH] [--check-config]\n\
    \x20      marionette-gateway [--config PATH] create-operator EMAIL   (reads the password from stdin; the gateway must be stopped)\n\
    Runs the Marionette GraphQL gateway. PATH defaults to /etc/marionette/gateway.toml.";

fn main() {
    shell::exit_on_error("marionette-gateway", run());
}

fn run() -> anyhow::Result<()> {
    let Some(args) = shell::parse_args(std::env::args().skip(1), "/etc/marionette/gateway.toml", USAGE).map_err(anyhow::Error::msg)? else { return Ok(()) };
    let create_operator = match args.rest.as_slice() {
        [] => None,
        [command, email] if command == "create-operator" => Some(email.clone()),
        other => bail!("unexpected arguments {other:?}\n{USAGE}"),
    };
    let (config_path, check_only) = (args.config, args.check_only);
    let config = GatewayConfig::load(&config_path).with_context(|| format!("loading {}", config_path.display()))?;
    if check_only {
        println!("{}: ok", config_path.display());
        return Ok(());
    }
    shell::init_logging(&config.log.format, &config.log.filter);
    std::fs::create_dir_all(&config.storage.data_dir).with_context(|| format!("creating {}", config.storage.data_dir.display()))?;
    let users = Arc::new(Users::open(&config.storage.data_dir).context("opening the account store (is another gateway running on it?)")?);
    let auth = Arc::new(Auth::new(&config.auth).context("loading the JWT signing keys")?);
    if let Some(email) = create_operator {
        return create_operator_account(&users, &auth, &email);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("gateway").build()?;
    runtime.block_on(serve(config, users, auth))
}

fn create_operator_account(users: &Users, auth: &Auth, email: &str) -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin().read_line(&mut password)?;
    let password = password.trim_end_matches(['\r', '\n']);
    if password.len() < gateway::auth::PASSWORD_BYTES_MIN {
        bail!("the password must be at least {} bytes", gateway::auth::PASSWORD_BYTES_MIN);
    }
    if let Some(existing) = users.by_email(email)? {
        if existing.role == Role::Operator && auth.verify_password(password, Some(&existing.password_hash)) {
            println!("operator {} exists", existing.email);
            return Ok(());
        }
        bail!("an account with email {email} exists already (with another role or password)");
    }
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_millis() as u64;
    let user = users.create(email, auth.hash_password(password)?, Role::Operator, now)?;
    println!("operator {} created (id {})", user.email, user.id);
    Ok(())
}

async fn serve(config: GatewayConfig, users: Arc<Users>, auth: Arc<Auth>) -> anyhow::Result<()> {
    let ledger = LedgerClient::start(config.ledger.clone());
    let services = Services {
        users,
        auth: auth.clone(),
        ledger: ledger.clone(),
        order_settle_timeout: Duration::from_millis(config.ledger.order_settle_timeout_ms),
        cookie_secure: config.auth.cookie_secure,
    };
    let schema = api::schema(services, config.limits.query_depth_max, config.limits.query_complexity_max);
    let app = Arc::new(App { schema, auth: auth.clone(), ledger, metrics: Metrics::new(), body_bytes_max: config.limits.body_bytes_max });
    let listener = tokio::net::TcpListener::bind(&config.listen.address).await.with_context(|| format!("binding {}", config.listen.address))?;
    let permits = Arc::new(tokio::sync::Semaphore::new(config.listen.connections_max));
    tracing::info!(address = %config.listen.address, ledger = %config.ledger.address, signing_key = auth.signing_key_id(), "ready: POST http://{}/graphql", config.listen.address);
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        // Over the cap, connections wait in the kernel's backlog until one closes.
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
            _ = terminate.recv() => break,
            _ = tokio::signal::ctrl_c() => break,
        };
        let (stream, _) = tokio::select! {
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
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        app.metrics.connections.inc();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(|request| http::handle(app.clone(), request));
            if let Err(error) = hyper::server::conn::http1::Builder::new().timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(Duration::from_secs(30)).serve_connection(TokioIo::new(stream), service).await {
                tracing::debug!(%error, "connection ended with an error");
            }
            app.metrics.connections.dec();
            drop(permit);
        });
    }
    tracing::info!("stopping");
    Ok(())
}
