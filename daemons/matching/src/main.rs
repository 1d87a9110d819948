//! The daemon's entry point: load config, recover, serve, stop on SIGTERM.

use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{bail, Context};
use link::Listener;
use matching::config::{Address, MatchingConfig};
use matching::metrics::{self, Metrics};
use matching::server;
use matching::service::{EngineService, Inbound};
use signal_hook::consts::{SIGINT, SIGTERM};

const USAGE: &str = "usage: marionette-matching [--config PATH] [--check-config]\n\
    Runs the Marionette matching engine. PATH defaults to /etc/marionette/matching.toml.";

fn main() {
    shell::exit_on_error("marionette-matching", run());
}

fn run() -> anyhow::Result<()> {
    let Some(args) = shell::parse_args(std::env::args().skip(1), "/etc/marionette/matching.toml", USAGE).map_err(anyhow::Error::msg)? else { return Ok(()) };
    if let Some(extra) = args.rest.first() {
        bail!("unexpected argument {extra:?}\n{USAGE}");
    }
    let config_path = args.config;
    let check_only = args.check_only;
    let config = MatchingConfig::load(&config_path).with_context(|| format!("loading {}", config_path.display()))?;
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
    tracing::info!(data_dir = %config.storage.data_dir.display(), "recovering");
    shell::service_manager::status("loading the snapshot and replaying the journal");
    let (service, report) = EngineService::recover(&config, metrics.clone()).context("recovery failed; nothing was changed")?;
    tracing::info!(
        snapshot_sequence = report.snapshot_sequence,
        replayed_commands = report.replayed_commands,
        truncated_tail_bytes = report.truncated_tail_bytes,
        next_sequence = report.next_sequence,
        state_hash = %report.state_hash,
        "recovered"
    );
    let address = Address::parse(&config.listen.address).expect("validated");
    let listener = Listener::bind(&address).with_context(|| format!("binding {}", config.listen.address))?;
    if !config.listen.metrics_address.is_empty() {
        let metrics_listener = std::net::TcpListener::bind(&config.listen.metrics_address)
            .with_context(|| format!("binding the metrics address {}", config.listen.metrics_address))?;
        let metrics = metrics.clone();
        std::thread::Builder::new().name("metrics".into()).spawn(move || metrics::serve(metrics_listener, metrics))?;
    }
    let (inbox, receiver) = mpsc::sync_channel(config.engine.inbound_queue_max);
    let cpu = config.engine.cpu;
    // The CPUs this process may use (the systemd drop-in's CPUAffinity), read before pinning.
    let process_cpus: Vec<usize> = core_affinity::get_core_ids().unwrap_or_default().into_iter().map(|c| c.id).collect();
    let mut service = service;
    let engine = std::thread::Builder::new().name("engine".into()).spawn(move || {
        if let Some(cpu) = cpu {
            if core_affinity::set_for_current(core_affinity::CoreId { id: cpu }) {
                tracing::info!(cpu, "engine thread pinned");
                let others: Vec<usize> = process_cpus.into_iter().filter(|&c| c != cpu).collect();
                match service.set_journal_worker_cpus(&others) {
                    Ok(()) => tracing::info!(cpus = ?others, "journal I/O workers kept off the engine CPU"),
                    Err(error) => tracing::warn!(%error, "journal I/O workers will share the engine CPU"),
                }
            } else {
                tracing::warn!(cpu, "could not pin the engine thread; running unpinned");
            }
        }
        service.run(receiver, shell::service_manager::Watchdog::from_env())
    })?;
    {
        let (config, inbox, metrics) = (config.clone(), inbox.clone(), metrics.clone());
        std::thread::Builder::new().name("accept".into()).spawn(move || server::accept_loop(listener, admission, config, inbox, metrics))?;
    }
    let mut signals = signal_hook::iterator::Signals::new([SIGTERM, SIGINT])?;
    std::thread::Builder::new().name("signals".into()).spawn(move || {
        if let Some(signal) = signals.forever().next() {
            shell::service_manager::stopping();
            let _ = inbox.send(Inbound::Shutdown);
            tracing::info!(signal, "stopping");
        }
    })?;
    tracing::info!(address = %config.listen.address, metrics = %config.listen.metrics_address, "ready");
    shell::service_manager::ready(&format!("serving on {}", config.listen.address));
    match engine.join() {
        Ok(Ok(())) => Ok(()),
        Ok(Err(error)) => Err(error).with_context(|| {
            format!(
                "matching stopped without publishing what it could not persist; if the cause is a full or failing disk under {}, \
                 fix that, then start it again: start-up recovers everything acknowledged from the snapshot and the journal",
                config.storage.data_dir.display()
            )
        }),
        Err(_) => bail!("the engine thread panicked"),
    }
}
