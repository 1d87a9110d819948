//! `marionette-bench ledger`: transfers between user accounts through the pure
//! ledger core, the durable ledger service, raw RocksDB synced WriteBatches,
//! and a double-entry ledger in PostgreSQL, on the same machine in one run.

use std::fmt::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use hdrhistogram::Histogram;
use ledger::service::{JournalEntry, LedgerService};
use ledger_api::{operators, wallet, AssetSpec, Command as LedgerCommand, LedgerError, Outcome};
use link::{Address, Client};
use products::{Ledger, LedgerLimits};
use rand::{rngs::SmallRng, Rng, SeedableRng};
use storage::{Batch, Durability, Store, Table};
use wire::{Message, Role};

/// The raw RocksDB peer's tables: what a minimal ledger on RocksDB writes.
const BALANCES: Table = Table::new("balances");
const TRANSFERS: Table = Table::new("transfers");

use crate::daemon::{daemon_binary, wait_for_socket, Daemon};
use crate::{micros, new_histogram};

const USAGE: &str = "usage: marionette-bench ledger [--transfers N] [--accounts N] [--batch N] [--postgres-seconds N] [--postgres-clients N] [--skip-postgres] [--only core,daemon,service,rocksdb,postgres] [--skew uniform,hot]";

/// What `--only` may name, in the order they run.
const SYSTEMS: [&str; 5] = ["core", "daemon", "service", "rocksdb", "postgres"];

const USD: u32 = 1;
const OPENING_BALANCE: i128 = 1_000_000_000_000;
const HOT_ACCOUNTS: u64 = 10;
const SEED: u64 = 42;

struct Options {
    transfers: usize,
    accounts: u64,
    batch: usize,
    postgres_seconds: u64,
    postgres_clients: u32,
    postgres: bool,
    /// The systems measured: all of [`SYSTEMS`] unless `--only` names some (to profile one).
    only: Vec<String>,
    /// The workloads: both unless `--skew` names one (to profile it alone).
    skews: Vec<Skew>,
}

impl Options {
    fn measures(&self, system: &str) -> bool {
        self.only.iter().any(|s| s == system) && (system != "postgres" || self.postgres)
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Skew {
    Uniform,
    /// Each side of a transfer is one of the 10 hot accounts half of the time.
    Hot,
}

impl Skew {
    fn describe(self) -> &'static str {
        match self {
            Skew::Uniform => "uniform over all accounts",
            Skew::Hot => "hot accounts: each side is one of 10 hot accounts with probability 1/2, else uniform",
        }
    }

    fn pick(self, rng: &mut SmallRng, accounts: u64) -> u64 {
        match self {
            Skew::Hot if rng.random_bool(0.5) => rng.random_range(1..=HOT_ACCOUNTS),
            _ => rng.random_range(1..=accounts),
        }
    }

    /// The same choice as a pgbench expression.
    fn pgbench(self, accounts: u64) -> String {
        match self {
            Skew::Uniform => format!("random(1, {accounts})"),
            Skew::Hot => format!("CASE WHEN random(0, 1) = 0 THEN random(1, {HOT_ACCOUNTS}) ELSE random(1, {accounts}) END"),
        }
    }
}

struct Measured {
    name: &'static str,
    note: String,
    transfers_per_second: f64,
    latency: Histogram<u64>,
}

pub fn run(mut args: impl Iterator<Item = String>) -> anyhow::Result<String> {
    let mut options = Options {
        transfers: 1_000_000,
        accounts: 10_000,
        batch: 1_024,
        postgres_seconds: 20,
        postgres_clients: 16,
        postgres: true,
        only: SYSTEMS.map(String::from).to_vec(),
        skews: vec![Skew::Uniform, Skew::Hot],
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--transfers" => options.transfers = value("--transfers")?.parse()?,
            "--accounts" => options.accounts = value("--accounts")?.parse()?,
            "--batch" => options.batch = value("--batch")?.parse()?,
            "--postgres-seconds" => options.postgres_seconds = value("--postgres-seconds")?.parse()?,
            "--postgres-clients" => options.postgres_clients = value("--postgres-clients")?.parse()?,
            "--skip-postgres" => options.postgres = false,
            "--only" => {
                options.only = value("--only")?.split(',').map(String::from).collect();
                if let Some(unknown) = options.only.iter().find(|s| !SYSTEMS.contains(&s.as_str())) {
                    bail!("--only: unknown system {unknown:?}, expected some of {}\n{USAGE}", SYSTEMS.join(","));
                }
            }
            "--skew" => {
                options.skews = value("--skew")?
                    .split(',')
                    .map(|name| match name {
                        "uniform" => Ok(Skew::Uniform),
                        "hot" => Ok(Skew::Hot),
                        other => bail!("--skew: unknown workload {other:?}, expected some of uniform,hot\n{USAGE}"),
                    })
                    .collect::<anyhow::Result<_>>()?;
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    ensure!(options.accounts > HOT_ACCOUNTS && options.batch > 0 && options.transfers > 0, "need more than {HOT_ACCOUNTS} accounts, a batch and transfers");
    let mut report = String::new();
    for &skew in &options.skews {
        let transfers = generate(&options, skew);
        let mut measured = Vec::new();
        for system in SYSTEMS.into_iter().filter(|s| options.measures(s)) {
            // The disk writes the system before left in the page cache
            // would otherwise be written back during this one's run.
            let synced = Command::new("sync").status().context("running sync")?;
            ensure!(synced.success(), "sync failed: {synced}");
            measured.push((
                system,
                match system {
                    "core" => measure_core(&options, &transfers)?,
                    "daemon" => measure_daemon(&options, &transfers)?,
                    "service" => measure_service(&options, &transfers)?,
                    "rocksdb" => measure_rocksdb(&options, &transfers)?,
                    _ => postgres::measure(&options, skew).context("measuring PostgreSQL (skip it with --skip-postgres)")?,
                },
            ));
        }
        write_section(&mut report, &options, skew, &measured)?;
    }
    Ok(report)
}

fn generate(options: &Options, skew: Skew) -> Vec<LedgerCommand> {
    let mut rng = SmallRng::seed_from_u64(SEED);
    (0..options.transfers)
        .map(|i| {
            let from = skew.pick(&mut rng, options.accounts);
            let mut to = skew.pick(&mut rng, options.accounts);
            if to == from {
                to = to % options.accounts + 1;
            }
            LedgerCommand::Wallet(wallet::Command::Transfer { from, to, asset: USD, amount: rng.random_range(1..10_000), key: format!("bench-{i}") })
        })
        .collect()
}

fn opening(options: &Options) -> Vec<LedgerCommand> {
    let mut commands = vec![LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 2 })];
    commands.extend(
        (1..=options.accounts)
            .map(|user| LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: USD, amount: OPENING_BALANCE, reference: format!("opening-{user}") })),
    );
    commands
}

fn check_transferred(outcome: Result<Outcome, LedgerError>) -> anyhow::Result<()> {
    match outcome {
        Ok(Outcome::Wallet(wallet::Outcome::Transferred(_))) => Ok(()),
        other => bail!("a benchmark transfer was not applied: {other:?}"),
    }
}

/// Two passes over fresh ledgers: the throughput from one that reads no
/// clock, the latency from one that times each transfer (two clock reads
/// and a histogram record each, a sizeable share of a sub-microsecond step).
fn measure_core(options: &Options, transfers: &[LedgerCommand]) -> anyhow::Result<Measured> {
    eprintln!("  ledger core");
    let opened = || -> anyhow::Result<Ledger> {
        let mut ledger = Ledger::new(LedgerLimits::default());
        // As the daemon does at start.
        ledger.touch_reserved();
        for command in opening(options) {
            ledger.apply(&command, 0).outcome.map_err(|e| anyhow::anyhow!("opening: {e}"))?;
        }
        ledger.take_changes();
        Ok(ledger)
    };
    let mut ledger = opened()?;
    let started = Instant::now();
    for chunk in transfers.chunks(options.batch) {
        // As the service applies a batch.
        let mut refused = None;
        ledger.apply_all(chunk.iter().map(|command| (command, 1)), |_, applied| {
            if !matches!(applied.outcome, Ok(Outcome::Wallet(wallet::Outcome::Transferred(_)))) {
                refused.get_or_insert(applied.outcome);
            }
        });
        refused.map_or(Ok(()), check_transferred)?;
        // What the service hands to storage per batch, and back once written.
        let changes = ledger.take_changes();
        ledger.recycle(changes);
    }
    let seconds = started.elapsed().as_secs_f64();
    ledger.check_invariants().map_err(|e| anyhow::anyhow!(e))?;
    drop(ledger);

    // A transfer's latency is the time since the one before it in its
    // batch; the first one's includes the batch's hashing of every key.
    let mut ledger = opened()?;
    let mut latency = new_histogram();
    for chunk in transfers.chunks(options.batch) {
        let mut refused = None;
        let mut before = Instant::now();
        ledger.apply_all(chunk.iter().map(|command| (command, 1)), |_, applied| {
            let now = Instant::now();
            if !matches!(applied.outcome, Ok(Outcome::Wallet(wallet::Outcome::Transferred(_)))) {
                refused.get_or_insert(applied.outcome);
            }
            latency.saturating_record((now - before).as_nanos() as u64);
            before = now;
        });
        refused.map_or(Ok(()), check_transferred)?;
        let changes = ledger.take_changes();
        ledger.recycle(changes);
    }
    Ok(Measured {
        name: "Marionette ledger core",
        note: "pure, in memory, idempotency keys kept".into(),
        transfers_per_second: transfers.len() as f64 / seconds,
        latency,
    })
}

/// Batches of `batch` transfers through journal (fdatasync) then RocksDB; a
/// transfer's latency is its batch's, the time until it could be acknowledged.
fn measure_service(options: &Options, transfers: &[LedgerCommand]) -> anyhow::Result<Measured> {
    eprintln!("  ledger service (journal + RocksDB)");
    let dir = tempfile::tempdir_in(bench_dir()?)?;
    let (mut service, _) = LedgerService::open(dir.path(), LedgerLimits::default())?;
    service.touch_reserved();
    let mut sequence = 0;
    let mut entry = |command: LedgerCommand| {
        sequence += 1;
        JournalEntry { peer: 1, peer_sequence: sequence, at_ms: sequence, command }
    };
    let opening: Vec<_> = opening(options).into_iter().map(&mut entry).collect();
    for chunk in opening.chunks(options.batch) {
        service.execute(chunk)?;
    }
    let entries: Vec<_> = transfers.iter().cloned().map(&mut entry).collect();
    let mut latency = new_histogram();
    let started = Instant::now();
    // As the engine does: a batch is applied while the one before is
    // written, and may be acknowledged once the next submit (or the last
    // wait) returns.
    let mut unanswered: Option<(Instant, usize)> = None;
    for chunk in entries.chunks(options.batch) {
        let before = Instant::now();
        for outcome in service.submit(chunk)?.outcomes {
            check_transferred(outcome)?;
        }
        if let Some((submitted, count)) = unanswered.replace((before, chunk.len())) {
            latency.record_n(submitted.elapsed().as_nanos() as u64, count as u64)?;
        }
    }
    service.wait_written()?;
    if let Some((submitted, count)) = unanswered {
        latency.record_n(submitted.elapsed().as_nanos() as u64, count as u64)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measured {
        name: "Marionette ledger service",
        note: format!(
            "in process, no socket: io_uring journal + fdatasync, then one RocksDB WriteBatch without its own log, written by its own thread while the next batch is applied, per {} transfers",
            options.batch
        ),
        transfers_per_second: transfers.len() as f64 / seconds,
        latency,
    })
}

/// Commands in flight at most from the daemon's client (sent, outcome not yet received).
const WINDOW: u64 = 16_384;

/// The outcomes received, and a sender blocked on a full window. The sender
/// sleeps instead of spinning: on two cores a spinning client takes CPU
/// from the daemon it measures.
struct Window {
    received: AtomicU64,
    /// The receiver stopped (all received, or an error the join reports).
    closed: AtomicBool,
    /// The count of outcomes the sleeping sender waits for; u64::MAX when awake.
    wake_at: AtomicU64,
    lock: Mutex<()>,
    wake: Condvar,
}

impl Default for Window {
    fn default() -> Self {
        Window { received: AtomicU64::new(0), closed: AtomicBool::new(false), wake_at: AtomicU64::new(u64::MAX), lock: Mutex::new(()), wake: Condvar::new() }
    }
}

impl Window {
    fn advance(&self, received: u64) {
        self.received.store(received, Ordering::SeqCst);
        if received >= self.wake_at.load(Ordering::SeqCst) {
            let _held = self.lock.lock().unwrap();
            self.wake.notify_one();
        }
    }

    fn close(&self) {
        self.closed.store(true, Ordering::SeqCst);
        let _held = self.lock.lock().unwrap();
        self.wake.notify_one();
    }

    /// Blocks until `sent` commands leave room for `room` more in the window
    /// (a chunk: not a wake-up and a write per command). False if the
    /// receiver stopped.
    fn wait_for_room(&self, sent: u64, room: u64) -> bool {
        let needed = (sent + room).saturating_sub(WINDOW);
        loop {
            if self.closed.load(Ordering::SeqCst) {
                return false;
            }
            if self.received.load(Ordering::SeqCst) >= needed {
                return true;
            }
            let held = self.lock.lock().unwrap();
            self.wake_at.store(needed, Ordering::SeqCst);
            // Checked again after saying so: an outcome in between is either seen here or wakes us.
            if self.received.load(Ordering::SeqCst) < needed && !self.closed.load(Ordering::SeqCst) {
                drop(self.wake.wait_timeout(held, Duration::from_millis(10)).unwrap());
            }
            self.wake_at.store(u64::MAX, Ordering::SeqCst);
        }
    }
}

/// The real `marionette-ledger` process over its Unix socket: a pipelined
/// client (one thread sends, one receives); every outcome arrives after its
/// transfer is in the fdatasync'd journal and in RocksDB. Matching is not
/// running: transfers do not need it, and the daemon keeps trying to reach it.
fn measure_daemon(options: &Options, transfers: &[LedgerCommand]) -> anyhow::Result<Measured> {
    eprintln!("  marionette-ledger daemon (Unix socket, journal + RocksDB per group commit)");
    let dir = tempfile::tempdir_in(bench_dir()?)?;
    let socket = dir.path().join("ledger.sock");
    let config = dir.path().join("ledger.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"unix:{}\"\nmetrics_address = \"\"\n[matching]\naddress = \"unix:{}\"\nreconnect_ms = 60000\n[storage]\ndata_dir = \"{}\"\n[approvals]\ndeposit = 1\nwithdrawal_approval = 1\nhouse_inventory = 1\nasset = 1\nmarket = 1\noperator = 1\n[log]\nformat = \"text\"\nfilter = \"error\"\n",
            socket.display(),
            dir.path().join("no-matching.sock").display(),
            dir.path().join("data").display()
        ),
    )?;
    let binary = daemon_binary("ledger")?;
    let _daemon = Daemon(std::process::Command::new(binary).arg("--config").arg(&config).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?);
    wait_for_socket(&socket)?;
    let (mut sender, _) = Client::connect(&Address::Unix(socket), 1, Role::Test, 0, false).context("connecting to marionette-ledger")?;
    let mut receiver = sender.try_clone()?;
    // Over the wire an operator's action is an operator's proposal (one
    // approval is enough in this config).
    let operator = u64::MAX;
    let mut opening: Vec<LedgerCommand> = vec![LedgerCommand::Operators(operators::Command::Bootstrap { operator })];
    opening.extend(self::opening(options).into_iter().map(|command| {
        LedgerCommand::Operators(operators::Command::Propose {
            operator,
            action: operators::Action::Ledger(command.to_action().expect("an operator's command")),
        })
    }));
    for (i, command) in opening.iter().enumerate() {
        sender.queue(i as u64 + 1, &Message::LedgerCommand(command.clone()));
    }
    sender.flush()?;
    for _ in 0..opening.len() {
        match receiver.recv()?.message {
            Message::LedgerOutcome { outcome: Some(Ok(_)), .. } => {}
            other => bail!("opening: {other:?}"),
        }
    }
    let first = opening.len() as u64 + 1;
    let total = transfers.len() as u64;
    let window = Arc::new(Window::default());
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    let receiving = {
        let (window, sent_at) = (window.clone(), sent_at.clone());
        std::thread::spawn(move || -> anyhow::Result<(Histogram<u64>, Duration)> {
            let mut receive = || {
                let mut latency = new_histogram();
                for i in 0..total {
                    match receiver.recv()?.message {
                        Message::LedgerOutcome { peer_sequence, outcome: Some(outcome) } if peer_sequence == first + i => check_transferred(outcome)?,
                        other => bail!("expected the outcome of command {}, got {other:?}", first + i),
                    }
                    latency.saturating_record(started.elapsed().as_nanos() as u64 - sent_at[i as usize].load(Ordering::Relaxed));
                    window.advance(i + 1);
                }
                Ok((latency, started.elapsed()))
            };
            let received = receive();
            window.close();
            received
        })
    };
    let mut next = 0u64;
    while next < total {
        let chunk_end = (next + 256).min(total);
        if !window.wait_for_room(next, chunk_end - next) {
            break; // the join below says why
        }
        let now = started.elapsed().as_nanos() as u64;
        for i in next..chunk_end {
            sent_at[i as usize].store(now, Ordering::Relaxed);
            sender.queue(first + i, &Message::LedgerCommand(transfers[i as usize].clone()));
        }
        sender.flush()?;
        next = chunk_end;
    }
    let (latency, elapsed) = receiving.join().map_err(|_| anyhow::anyhow!("the receiving thread panicked"))??;
    Ok(Measured {
        name: "Marionette ledger daemon",
        note: format!("marionette-ledger over its Unix socket, default config; latency is send to durable outcome with up to {WINDOW} in flight"),
        transfers_per_second: total as f64 / elapsed.as_secs_f64(),
        latency,
    })
}

/// Raw RocksDB: per transfer, two balance puts and a transfer record, `batch`
/// transfers per synced WriteBatch. No ledger logic: the storage floor.
fn measure_rocksdb(options: &Options, transfers: &[LedgerCommand]) -> anyhow::Result<Measured> {
    eprintln!("  raw RocksDB synced WriteBatches");
    let dir = tempfile::tempdir_in(bench_dir()?)?;
    let store = Store::open(dir.path(), &[BALANCES, TRANSFERS])?;
    let mut balances = vec![OPENING_BALANCE; options.accounts as usize + 1];
    let mut latency = new_histogram();
    let started = Instant::now();
    for (index, chunk) in transfers.chunks(options.batch).enumerate() {
        let before = Instant::now();
        let mut batch = Batch::default();
        for (offset, command) in chunk.iter().enumerate() {
            let LedgerCommand::Wallet(wallet::Command::Transfer { from, to, amount, .. }) = *command else { unreachable!("only transfers are generated") };
            balances[from as usize] -= amount;
            balances[to as usize] += amount;
            batch.put(BALANCES, &from.to_be_bytes(), &balances[from as usize].to_le_bytes());
            batch.put(BALANCES, &to.to_be_bytes(), &balances[to as usize].to_le_bytes());
            let id = (index * options.batch + offset) as u64;
            let mut record = [0u8; 40];
            record[..8].copy_from_slice(&from.to_le_bytes());
            record[8..16].copy_from_slice(&to.to_le_bytes());
            record[16..32].copy_from_slice(&amount.to_le_bytes());
            batch.put(TRANSFERS, &id.to_be_bytes(), &record);
        }
        store.write(&mut batch, Durability::Synced)?;
        latency.record_n(before.elapsed().as_nanos() as u64, chunk.len() as u64)?;
    }
    let seconds = started.elapsed().as_secs_f64();
    Ok(Measured {
        name: "raw RocksDB",
        note: format!("3 puts per transfer, one synced WriteBatch per {} transfers", options.batch),
        transfers_per_second: transfers.len() as f64 / seconds,
        latency,
    })
}

/// Where the systems keep their data while measured: one disk for all of
/// them, not a tmpfs, and reachable by the postgres user (so not under /root).
/// MARIONETTE_BENCH_DIR overrides it.
pub fn bench_dir() -> anyhow::Result<std::path::PathBuf> {
    let dir = std::env::var_os("MARIONETTE_BENCH_DIR").map(Into::into).unwrap_or_else(|| std::path::PathBuf::from("/var/tmp/marionette-bench"));
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

/// `measured` pairs each result with its name in [`SYSTEMS`]; the ratios are
/// to the daemon's, left out when `--only` did not measure it.
fn write_section(report: &mut String, options: &Options, skew: Skew, measured: &[(&str, Measured)]) -> std::fmt::Result {
    writeln!(report, "### Transfers, {}\n", skew.describe())?;
    writeln!(
        report,
        "Workload: {} accounts, {} transfers of one asset (seed {SEED}), each with its own idempotency key.\n",
        options.accounts, options.transfers
    )?;
    writeln!(report, "| system | transfers/s | vs Marionette daemon | p50 µs | p99 µs | max µs |")?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|")?;
    let daemon = measured.iter().find(|(system, _)| *system == "daemon").map(|(_, m)| m.transfers_per_second);
    for (_, m) in measured {
        let l = &m.latency;
        writeln!(
            report,
            "| {} ({}) | {:.0} | {} | {} | {} | {} |",
            m.name,
            m.note,
            m.transfers_per_second,
            daemon.map_or("-".into(), |daemon| format!("{:.3}x", m.transfers_per_second / daemon)),
            micros(l.value_at_quantile(0.50)),
            micros(l.value_at_quantile(0.99)),
            micros(l.max())
        )?;
    }
    writeln!(report)
}

mod postgres {
    //! PostgreSQL from Debian's packages, started on a temporary directory,
    //! driven by its own pgbench: one transaction per transfer that locks both
    //! balance rows, updates them and inserts the transfer.

    use super::*;

    const BIN: &str = "/usr/lib/postgresql/15/bin";

    /// Stops the server however the measurement ends.
    struct Server<'a> {
        data: &'a Path,
    }

    impl Drop for Server<'_> {
        fn drop(&mut self) {
            let _ = as_postgres(&format!("{BIN}/pg_ctl")).args(["-D"]).arg(self.data).args(["-m", "immediate", "stop"]).output();
        }
    }

    fn is_root() -> bool {
        // SAFETY: geteuid has no preconditions and cannot fail.
        unsafe { libc::geteuid() == 0 }
    }

    /// Runs a PostgreSQL tool, as the postgres user when we are root (initdb refuses root).
    fn as_postgres(program: &str) -> Command {
        if is_root() {
            let mut command = Command::new("runuser");
            command.args(["-u", "postgres", "--", program]);
            command
        } else {
            Command::new(program)
        }
    }

    fn checked(command: &mut Command, what: &str) -> anyhow::Result<String> {
        let output = command.output().with_context(|| format!("{what}: could not start it (is Debian's postgresql-15 installed?)"))?;
        ensure!(output.status.success(), "{what} failed: {}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    pub(super) fn measure(options: &Options, skew: Skew) -> anyhow::Result<Measured> {
        eprintln!("  PostgreSQL 15 via pgbench ({} clients, {} s)", options.postgres_clients, options.postgres_seconds);
        ensure!(Path::new(BIN).join("postgres").exists(), "{BIN}/postgres not found: apt install postgresql-15");
        let root = tempfile::tempdir_in(bench_dir()?)?;
        let data = root.path().join("data");
        let socket = root.path().to_path_buf();
        if is_root() {
            checked(Command::new("chown").args(["-R", "postgres:postgres"]).arg(root.path()), "chown")?;
        }
        checked(as_postgres(&format!("{BIN}/initdb")).args(["-D"]).arg(&data).args(["-A", "trust", "-U", "bench", "--no-sync"]), "initdb")?;
        // Durable like ours: fsync and synchronous commit stay at their defaults (on).
        let settings = format!("-c listen_addresses='' -c unix_socket_directories='{}' -c shared_buffers=512MB -c max_connections=64", socket.display());
        checked(
            as_postgres(&format!("{BIN}/pg_ctl"))
                .args(["-D"])
                .arg(&data)
                .args(["-w", "-l"])
                .arg(root.path().join("server.log"))
                .args(["-o", &settings, "start"]),
            "pg_ctl start",
        )?;
        let _server = Server { data: &data };
        let psql = |sql: &str| {
            checked(
                as_postgres(&format!("{BIN}/psql")).args(["-h"]).arg(&socket).args([
                    "-U",
                    "bench",
                    "-d",
                    "postgres",
                    "-v",
                    "ON_ERROR_STOP=1",
                    "-qAt",
                    "-c",
                    sql,
                ]),
                "psql",
            )
        };
        psql("CREATE TABLE balances (id bigint PRIMARY KEY, balance numeric(39,0) NOT NULL CHECK (balance >= 0))")?;
        psql("CREATE TABLE transfers (id bigserial PRIMARY KEY, debit bigint NOT NULL, credit bigint NOT NULL, amount numeric(39,0) NOT NULL CHECK (amount > 0), at timestamptz NOT NULL DEFAULT now())")?;
        psql(&format!("INSERT INTO balances SELECT g, {OPENING_BALANCE} FROM generate_series(1, {}) g", options.accounts))?;
        psql("VACUUM ANALYZE")?;
        let opening_sum = psql("SELECT sum(balance) FROM balances")?;
        // Rows are locked in id order so two transfers between the same pair cannot deadlock.
        let script = format!(
            "\\set from {pick}\n\\set to {pick}\n\\set to CASE WHEN :to = :from THEN :to % {accounts} + 1 ELSE :to END\n\\set amount random(1, 9999)\n\
             BEGIN;\n\
             SELECT balance FROM balances WHERE id IN (:from, :to) ORDER BY id FOR UPDATE;\n\
             UPDATE balances SET balance = balance - :amount WHERE id = :from;\n\
             UPDATE balances SET balance = balance + :amount WHERE id = :to;\n\
             INSERT INTO transfers (debit, credit, amount) VALUES (:from, :to, :amount);\n\
             COMMIT;\n",
            pick = skew.pgbench(options.accounts),
            accounts = options.accounts
        );
        let script_path = root.path().join("transfer.sql");
        std::fs::write(&script_path, script)?;
        let log_prefix = root.path().join("latency");
        if is_root() {
            checked(Command::new("chown").args(["-R", "postgres:postgres"]).arg(root.path()), "chown")?;
        }
        let clients = options.postgres_clients.to_string();
        let seconds = options.postgres_seconds.to_string();
        let output = checked(
            as_postgres(&format!("{BIN}/pgbench"))
                .args(["-h"])
                .arg(&socket)
                .args(["-U", "bench", "-n", "-M", "prepared", "-c", &clients, "-j", "2", "-T", &seconds, "-l", "--log-prefix"])
                .arg(&log_prefix)
                .arg("-f")
                .arg(&script_path)
                .arg("postgres")
                .current_dir(root.path()),
            "pgbench",
        )?;
        let committed: u64 = psql("SELECT count(*) FROM transfers")?.trim().parse().context("counting transfers")?;
        ensure!(psql("SELECT sum(balance) FROM balances")? == opening_sum, "PostgreSQL did not conserve money");
        let mut latency = new_histogram();
        for entry in std::fs::read_dir(root.path())? {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("latency")) {
                // Each line: client, transaction number, latency µs, script, epoch s, epoch µs.
                for line in std::fs::read_to_string(&path)?.lines() {
                    let micros: u64 = line.split_whitespace().nth(2).context("pgbench log line")?.parse()?;
                    latency.record(micros * 1_000)?;
                }
            }
        }
        ensure!(latency.len() == committed, "pgbench logged {} transactions but {committed} transfers are in the table", latency.len());
        let tps = output.lines().find(|l| l.starts_with("tps =")).context("pgbench printed no tps")?;
        let tps: f64 = tps.trim_start_matches("tps = ").split_whitespace().next().context("tps value")?.parse()?;
        Ok(Measured {
            name: "PostgreSQL 15",
            note: format!("pgbench, {} clients, one transaction per transfer with row locks, fsync and synchronous_commit on", options.postgres_clients),
            transfers_per_second: tps,
            latency,
        })
    }
}
