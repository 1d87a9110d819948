//! The daemon's entry point: load config, recover, serve, stop on SIGTERM.

use std::sync::mpsc;
use std::sync::Arc;

use anyhow::{bail, Context};
use consensus::cluster::ClusterConfig;
use consensus::replica::{Formed, Replica};
use ledger::config::LedgerConfig;
use ledger::engine::{Engine, Inbound, ReplicaLedger};
use ledger::metrics::Metrics;
use ledger::query::Progress;
use ledger::replicated::{LedgerMachine, LedgerRaft, RAFT_LOG_CONTENT};
use ledger::server::{self, Shared};
use ledger::service::{LedgerService, StoreHandle};
use link::{Address, Listener};
use signal_hook::consts::{SIGINT, SIGTERM};

const USAGE: &str = "usage: marionette-ledger [--config PATH] [--check-config] [form-cluster]\n\
    Runs the Marionette ledger. PATH defaults to /etc/marionette/ledger.toml.\n\
    form-cluster: once, on one replica of a new cluster, with its daemon stopped: makes the\n\
    replicas of the cluster's file (ledger.toml's cluster.file) its voters; then start the\n\
    daemon on every replica. A formed cluster is left as it is.";

fn main() {
    shell::exit_on_error("marionette-ledger", run());
}

fn run() -> anyhow::Result<()> {
    let Some(args) = shell::parse_args(std::env::args().skip(1), "/etc/marionette/ledger.toml", USAGE).map_err(anyhow::Error::msg)? else { return Ok(()) };
    let form = match args.rest.as_slice() {
        [] => false,
        [command] if command == "form-cluster" => true,
        [extra, ..] => bail!("unexpected argument {extra:?}\n{USAGE}"),
    };
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
    if form {
        return form_cluster(&config, admission.tls);
    }
    let metrics = Arc::new(Metrics::new());
    let data_dir = &config.storage.data_dir;
    std::fs::create_dir_all(data_dir).with_context(|| format!("creating the data directory {}", data_dir.display()))?;
    let progress = Arc::new(Progress::default());
    let (inbox, receiver) = mpsc::sync_channel(config.engine.inbound_queue_max);
    let (engine, store, replica) = match config.cluster.file.as_os_str().is_empty() {
        true => {
            let service = open_own(&config)?;
            let store = StoreHandle::new(service.shared_store());
            let mut engine = Engine::new(config.clone(), service, metrics.clone(), progress.clone());
            engine.configure().context("journaling the approval thresholds of the config")?;
            (engine, store, None)
        }
        false => {
            let Started { replica, runtime, ledger, .. } = start_replica(&config, admission.tls.clone())?;
            let store = ledger.machine.readers();
            let engine = Engine::replica(config.clone(), ledger, inbox.clone(), metrics.clone(), progress.clone());
            (engine, store, Some((replica, runtime)))
        }
    };
    let address = Address::parse(&config.listen.address).expect("validated");
    let listener = Listener::bind(&address).with_context(|| format!("binding {}", config.listen.address))?;
    if !config.listen.metrics_address.is_empty() {
        let metrics_listener = std::net::TcpListener::bind(&config.listen.metrics_address)
            .with_context(|| format!("binding the metrics address {}", config.listen.metrics_address))?;
        let metrics = metrics.clone();
        std::thread::Builder::new().name("metrics".into()).spawn(move || link::http::serve(metrics_listener, || metrics.render()))?;
    }
    let shared = Arc::new(Shared { config: config.clone(), inbox: inbox.clone(), store, progress: progress.clone(), metrics: metrics.clone() });
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
    let stopped = engine.join();
    if let Some((replica, runtime)) = replica {
        // Raft's log store finishes what it holds; the state machine's writes are done.
        runtime.block_on(replica.stop());
    }
    match stopped {
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

/// The ledger with its own journal (one host): RocksDB opened, the
/// journal replayed, the idempotency table mapped in.
fn open_own(config: &LedgerConfig) -> anyhow::Result<LedgerService> {
    let data_dir = &config.storage.data_dir;
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
    touch_reserved(&mut service);
    Ok(service)
}

/// Before serving: the first keys of each page would otherwise fault it in mid-batch.
fn touch_reserved(service: &mut LedgerService) {
    let touching = std::time::Instant::now();
    let reserved_bytes = service.touch_reserved();
    // Whether the huge pages it asked for came: the host's transparent huge pages may be off.
    let huge_page_bytes = anon_huge_page_bytes().unwrap_or(0);
    tracing::info!(reserved_bytes, huge_page_bytes, elapsed_ms = touching.elapsed().as_millis() as u64, "idempotency table mapped in");
}

/// `form-cluster`: Raft's first entry (the voters) and this replica's
/// vote, written to its log; the daemon, started, calls the election.
fn form_cluster(config: &LedgerConfig, tls: Option<link::LinkTls>) -> anyhow::Result<()> {
    if config.cluster.file.as_os_str().is_empty() {
        bail!("ledger.toml names no cluster file (cluster.file): a ledger alone has no cluster to form");
    }
    let Started { replica, runtime, cluster, .. } =
        start_replica(config, tls).context("opening this replica (if marionette-ledger runs, stop it first: systemctl stop marionette-ledger)")?;
    let formed = runtime.block_on(replica.form(&cluster));
    runtime.block_on(replica.stop());
    let voters = cluster.voters().iter().map(u64::to_string).collect::<Vec<_>>().join(", ");
    match formed.context("forming the cluster")? {
        Formed::Now => println!("formed the cluster {} of replicas {voters}; now start marionette-ledger on every replica", cluster.cluster),
        Formed::Already => println!("the cluster {} was formed before; nothing changed", cluster.cluster),
    }
    Ok(())
}

/// A replica started: Raft and the runtime it runs on, what the engine
/// drives, and the cluster's file.
struct Started {
    replica: Replica<LedgerRaft>,
    runtime: tokio::runtime::Runtime,
    ledger: ReplicaLedger,
    cluster: ClusterConfig,
}

/// A replica of the cluster in `cluster.file`: its database in
/// `data_dir/db`, its Raft log in `data_dir/raft`, Raft on a runtime of
/// its own; a cluster of one forms itself.
fn start_replica(config: &LedgerConfig, tls: Option<link::LinkTls>) -> anyhow::Result<Started> {
    let file = &config.cluster.file;
    let text = std::fs::read_to_string(file).with_context(|| format!("reading the cluster's file {} (ledger.toml's cluster.file)", file.display()))?;
    let cluster = ClusterConfig::parse(&text).with_context(|| format!("the cluster's file {}", file.display()))?;
    let own = &cluster.replicas[&cluster.id];
    if config.listen.address != format!("tcp:{}", own.ledger) {
        bail!(
            "{} gives this replica ({}) the ledger address {}, but ledger.toml listens on {}: peers sent here by the other replicas would not find it. \
             Make listen.address tcp:{}",
            file.display(),
            cluster.id,
            own.ledger,
            config.listen.address,
            own.ledger
        );
    }
    let data_dir = &config.storage.data_dir;
    tracing::info!(data_dir = %data_dir.display(), cluster = cluster.cluster, id = cluster.id, "opening RocksDB and the Raft log");
    shell::service_manager::status("opening RocksDB and the Raft log");
    let machine = LedgerMachine::open(data_dir, config.limits).context("start-up failed; nothing was changed")?;
    machine.with_service(touch_reserved)?;
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).thread_name("raft").enable_all().build().context("starting Raft's runtime")?;
    let (replica, opened) =
        runtime.block_on(Replica::start(&cluster, &data_dir.join("raft"), RAFT_LOG_CONTENT, machine.clone(), tls)).context("starting this replica's Raft")?;
    let applied = machine.with_service(|service| service.replication().and_then(|replication| replication.applied))?;
    tracing::info!(?opened, ?applied, raft = ?replica.listening, "replica started; it serves peers while it leads");
    let ledger = ReplicaLedger {
        machine,
        raft: replica.raft.clone(),
        id: cluster.id,
        ledger_addresses: cluster.replicas.iter().map(|(id, replica)| (*id, format!("tcp:{}", replica.ledger))).collect(),
        runtime: runtime.handle().clone(),
        commit_timeout: std::time::Duration::from_millis(config.cluster.commit_timeout_ms),
    };
    Ok(Started { replica, runtime, ledger, cluster })
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
