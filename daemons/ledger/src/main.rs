//! The daemon's entry point: load config, recover, serve, stop on SIGTERM.

use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{bail, Context};
use ledger::config::LedgerConfig;
use ledger::engine::{Engine, Inbound};
use ledger::metrics::Metrics;
use ledger::query::Progress;
use ledger::server::{self, Shared};
use ledger::service::LedgerService;
use link::{Address, Listener};
use signal_hook::consts::{SIGINT, SIGTERM};

const USAGE: &str = "usage: marionette-ledger [--config PATH] [--check-config]\n\
    Runs the Marionette ledger. PATH defaults to /etc/marionette/ledger.toml.";

fn main() {
    shell::exit_on_error("marionette-ledger", run());
}

fn run() -> anyhow::Result<()> {
    let Some(args) = shell::parse_args(std::env::args().skip(1), "/etc/marionette/ledger.toml", USAGE).map_err(anyhow::Error::msg)? else { return Ok(()) };
    if let Some(extra) = args.rest.first() {
        bail!("unexpected argument {extra:?}\n{USAGE}");
    }
    let config_path = args.config;
    let check_only = args.check_only;
    let config = LedgerConfig::load(&config_path).with_context(|| format!("loading {}", config_path.display()))?;
    // An unreadable certificate or key is a config error.
    let admission = || link::Admission::from_config(&config.link).with_context(|| format!("the [link] section of {}", config_path.display()));
    if check_only {
        admission()?;
        println!("{}: ok", config_path.display());
        return Ok(());
    }
    shell::init_logging(&config.log);
    let admission = admission()?;
    let metrics = Arc::new(Metrics::new());
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    tracing::info!(data_dir = %data_dir.display(), "opening RocksDB and replaying the journal");
    shell::service_manager::status("opening RocksDB and replaying the journal");
    let (mut service, report) = LedgerService::open(data_dir, config.limits).context("start-up failed; nothing was changed")?;
    service.set_segment_records_max(config.storage.segment_records_max);
    tracing::info!(
        created = report.created,
        store_applied = report.store_applied,
        replayed = report.replayed,
        truncated_tail = report.truncated_tail.as_deref().unwrap_or("none"),
        matching_applied = service.ledger().spot().counters().matching_applied,
        outbox = service.outbox_len(),
        state_hash = %hex(&service.ledger().state_hash()),
        "recovered"
    );
    // Before serving: the first keys of each page would otherwise fault
    // it in mid-batch.
    let touching = std::time::Instant::now();
    let reserved_bytes = service.touch_reserved();
    // Whether the huge pages it asked for came: the host's transparent huge pages may be off.
    let huge_page_bytes = anon_huge_page_bytes().unwrap_or(0);
    tracing::info!(reserved_bytes, huge_page_bytes, elapsed_ms = touching.elapsed().as_millis() as u64, "idempotency table mapped in");
    let address = Address::parse(&config.listen.address).expect("validated");
    let listener = Listener::bind(&address).with_context(|| format!("binding {}", config.listen.address))?;
    if !config.listen.metrics_address.is_empty() {
        let metrics_listener = std::net::TcpListener::bind(&config.listen.metrics_address)
            .with_context(|| format!("binding the metrics address {}", config.listen.metrics_address))?;
        let metrics = metrics.clone();
        std::thread::Builder::new().name("metrics".into()).spawn(move || link::http::serve(metrics_listener, || metrics.render()))?;
    }
    let progress = Arc::new(Progress::default());
    let (inbox, receiver) = mpsc::sync_channel(config.engine.inbound_queue_max);
    let shared =
        Arc::new(Shared { config: config.clone(), inbox: inbox.clone(), store: service.shared_store(), progress: progress.clone(), metrics: metrics.clone() });
    let mut engine = Engine::new(config.clone(), service, metrics.clone(), progress.clone());
    engine.configure().context("journaling the approval thresholds of the config")?;
    let cpu = config.engine.cpu;
    let engine = std::thread::Builder::new().name("engine".into()).spawn(move || {
        if let Some(cpu) = cpu {
            if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                tracing::info!(cpu, "engine thread pinned");
            } else {
                tracing::warn!(cpu, "could not pin the engine thread; running unpinned");
            }
        }
        engine.run(receiver, shell::service_manager::Watchdog::from_env())
    })?;
    {
        let (link_config, tls, inbox, progress, metrics) = (config.matching.clone(), admission.tls.clone(), inbox.clone(), progress.clone(), metrics.clone());
        std::thread::Builder::new().name("matching-link".into()).spawn(move || ledger::matching_link::run(link_config, tls, inbox, progress, metrics))?;
    }
    std::thread::Builder::new().name("accept".into()).spawn(move || server::accept_loop(listener, admission, shared))?;
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            tracing::info!(signal, "stopping");
            shell::service_manager::stopping();
            let _ = inbox.send(Inbound::Shutdown);
        }
    })?;
    tracing::info!(address = %config.listen.address, matching = %config.matching.address, metrics = %config.listen.metrics_address, "ready");
    shell::service_manager::ready(&format!("serving on {}", config.listen.address));
    match engine.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error).with_context(|| {
            format!(
                "the ledger stopped without answering what it could not persist; if the cause is a full or failing disk under {}, \
                 fix that, then start it again: start-up recovers everything acknowledged from the journal",
                data_dir.display()
            )
        }),
        Err(_) => bail!("the engine thread panicked"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The process's anonymous memory in transparent huge pages.
fn anon_huge_page_bytes() -> Option<u64> {
    let rollup = std::fs::read_to_string("/proc/self/smaps_rollup").ok()?;
    let kib = rollup.lines().find_map(|line| line.strip_prefix("AnonHugePages:"))?;
    kib.trim().trim_end_matches("kB").trim().parse::<u64>().ok().map(|kib| kib << 10)
}
