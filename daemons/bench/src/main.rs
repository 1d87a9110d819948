//! `marionette-bench`: the measurements behind `scripts/bench`. Prints a
//! Markdown report (machine, command, workload, and every engine measured in
//! the same run) for BENCHMARKS.md.

mod daemon;
mod gateway_bench;
mod generator;
mod ledger_bench;
mod peers;
mod perpetual_bench;

use std::fmt::Write as _;
use std::time::Instant;

use anyhow::{bail, Context};
use hdrhistogram::Histogram;
use matching_core::{BookLimits, Command, EngineLimits, Event, FastEngine, Side};

use generator::{GeneratorConfig, Kind, Workload};
use peers::{Lobster, OrderbookRs, Peer};

const USAGE: &str = "usage: marionette-bench matching [--commands N] [--runs N] [--skip-daemon] [--skip-peers] [--markets 1,100]\n       marionette-bench ledger [--transfers N] [--accounts N] [--batch N] [--postgres-seconds N] [--postgres-clients N] [--skip-postgres] [--only SYSTEMS] [--skew uniform,hot]\n       marionette-bench gateway [--orders N] [--connections N] [--rate ORDERS_PER_SECOND] [--single-orders N] [--users N] [--only throughput,rate,single]\n       marionette-bench perpetual [--positions N] [--marks N] [--orders N] [--users N] [--only mark,orders]";

/// One engine's figures on one workload.
pub struct Measured {
    pub name: String,
    pub commands_per_second: f64,
    pub latency: Histogram<u64>,
    pub trades: u64,
    pub note: String,
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let Some(what) = args.next() else { bail!("{USAGE}") };
    if what == "gateway" {
        let report = gateway_bench::run(args)?;
        print!("{}\n{report}", machine_line());
        return Ok(());
    }
    if what == "ledger" {
        let report = ledger_bench::run(args)?;
        print!("{}\n{report}", machine_line());
        return Ok(());
    }
    if what == "perpetual" {
        let report = perpetual_bench::run(args)?;
        print!("{}\n{report}", machine_line());
        return Ok(());
    }
    if what != "matching" {
        bail!("unknown benchmark {what:?}\n{USAGE}");
    }
    let mut commands = 3_000_000;
    let mut runs = 3;
    let mut daemon = true;
    let mut with_peers = true;
    let mut markets = vec![1, 100];
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--commands" => commands = args.next().context("--commands N")?.parse()?,
            "--runs" => runs = args.next().context("--runs N")?.parse()?,
            "--skip-daemon" => daemon = false,
            "--skip-peers" => with_peers = false,
            // One workload alone, e.g. to profile it: 1 (one market) or 100 (the hundred-market mix).
            "--markets" => {
                markets =
                    args.next().context("--markets 1,100")?.split(',').map(str::parse).collect::<Result<_, _>>().context("--markets takes 1, 100 or 1,100")?;
                if markets.iter().any(|m| ![1, 100].contains(m)) {
                    bail!("--markets takes 1, 100 or 1,100\n{USAGE}");
                }
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    let mut report = String::new();
    writeln!(report, "{}", machine_line())?;
    // The one-market mix again with 10% of its commands arming stops:
    // only our core runs it (the peers have no stops), and its throughput
    // is compared with the mix without them measured in this run.
    let configs =
        [GeneratorConfig::single_market(commands), GeneratorConfig::single_market(commands).with_stops(10), GeneratorConfig::hundred_markets(commands)];
    let mut without_stops: Option<f64> = None;
    for config in configs.into_iter().filter(|c| markets.contains(&c.markets)) {
        eprintln!("generating {} markets x {} commands (seed {}, {}% stops)", config.markets, config.commands, config.seed, config.stop_percent);
        let workload = generator::generate(&config);
        let mut measured = vec![measure_core(&workload, runs)];
        let ours = measured[0].commands_per_second;
        if config.stop_percent > 0 {
            write_section(&mut report, &workload, &measured)?;
            if let Some(plain) = without_stops {
                writeln!(
                    report,
                    "With {}% stops the core runs at {:.1}% of the one-market mix without them, measured in this run.\n",
                    config.stop_percent,
                    ours * 100.0 / plain
                )?;
            }
            continue;
        }
        if config.markets == 1 {
            without_stops = Some(ours);
        }
        if with_peers {
            measured.push(measure_peer::<Lobster>(&workload, runs));
            measured.push(measure_peer::<OrderbookRs>(&workload, runs));
        }
        if daemon {
            measured.push(daemon::measure(&workload).context("measuring the daemon")?);
        }
        write_section(&mut report, &workload, &measured)?;
    }
    print!("{report}");
    Ok(())
}

fn limits() -> EngineLimits {
    EngineLimits { markets_max: 1_024, book: BookLimits { resting_orders_max: 1 << 22, orders_per_user_max: 1 << 20, price_levels_per_side_max: 1 << 20 } }
}

fn prefilled_engine(workload: &Workload) -> FastEngine {
    let mut engine = FastEngine::new(limits());
    let mut events = Vec::new();
    for command in &workload.prefill {
        events.clear();
        engine.execute(command, &mut events);
    }
    engine
}

pub fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("valid bounds")
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.partial_cmp(b).expect("no NaN"));
    values[values.len() / 2]
}

/// Throughput: the whole stream untimed per command, median of `runs`.
/// Latency: a separate run timing each command (the clock reads would
/// otherwise slow the throughput runs).
fn measure_core(workload: &Workload, runs: usize) -> Measured {
    eprintln!("  marionette core");
    let mut throughputs = Vec::new();
    let mut trades = 0;
    for _ in 0..runs {
        let mut engine = prefilled_engine(workload);
        let mut events: Vec<Event> = Vec::with_capacity(64);
        let mut fills = 0u64;
        let started = Instant::now();
        for command in &workload.commands {
            events.clear();
            engine.execute(command, &mut events);
            fills += events.iter().filter(|e| matches!(e, Event::Fill(_))).count() as u64;
        }
        throughputs.push(workload.commands.len() as f64 / started.elapsed().as_secs_f64());
        trades = fills;
    }
    let mut engine = prefilled_engine(workload);
    let mut events: Vec<Event> = Vec::with_capacity(64);
    let mut latency = new_histogram();
    for command in &workload.commands {
        events.clear();
        let started = Instant::now();
        engine.execute(command, &mut events);
        latency.saturating_record(started.elapsed().as_nanos() as u64);
    }
    Measured { name: "**Marionette core** (FastBook)".into(), commands_per_second: median(throughputs), latency, trades, note: String::new() }
}

fn measure_peer<P: Peer>(workload: &Workload, runs: usize) -> Measured {
    eprintln!("  {}", P::NAME);
    let prefilled = |workload: &Workload| {
        let mut peer = P::new(workload);
        for command in &workload.prefill {
            let side = match command {
                Command::Place(o) => o.side,
                _ => Side::Buy,
            };
            peer.apply(command, side);
        }
        peer
    };
    let mut throughputs = Vec::new();
    let mut trades = 0;
    for _ in 0..runs {
        let mut peer = prefilled(workload);
        let before = peer.trades();
        let started = Instant::now();
        for (command, side) in workload.commands.iter().zip(&workload.sides) {
            peer.apply(command, *side);
        }
        throughputs.push(workload.commands.len() as f64 / started.elapsed().as_secs_f64());
        trades = peer.trades() - before;
    }
    let mut peer = prefilled(workload);
    let mut latency = new_histogram();
    for (command, side) in workload.commands.iter().zip(&workload.sides) {
        let started = Instant::now();
        peer.apply(command, *side);
        latency.saturating_record(started.elapsed().as_nanos() as u64);
    }
    Measured { name: P::NAME.into(), commands_per_second: median(throughputs), latency, trades, note: String::new() }
}

fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|info| info.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string()))
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("Machine: {cores} cores, {cpu}, Linux {}. One process, engines measured one after another on the same stream.\n", kernel.trim())
}

fn micros(nanos: u64) -> String {
    if nanos < 10_000 {
        format!("{:.2}", nanos as f64 / 1000.0)
    } else {
        format!("{:.0}", nanos as f64 / 1000.0)
    }
}

fn write_section(report: &mut String, workload: &Workload, measured: &[Measured]) -> std::fmt::Result {
    let config = &workload.config;
    let count = |kind| workload.kinds.iter().filter(|k| **k == kind).count() as f64 * 100.0 / workload.kinds.len() as f64;
    let stops = if config.stop_percent > 0 { format!(", {}% stops", config.stop_percent) } else { String::new() };
    writeln!(
        report,
        "### {} market{}, {} commands (seed {}{stops})\n",
        config.markets,
        if config.markets == 1 { "" } else { "s" },
        config.commands,
        config.seed
    )?;
    writeln!(
        report,
        "Workload: {} users; {} pre-filled resting orders over {} price levels{}; commands {:.1}% GTC, {:.1}% IOC, {:.1}% cancel, {:.1}% move, {:.1}% stop arm, {:.1}% stop cancel; {} stops fired; {} trades; book at the end: {} orders, {} levels, {} armed stops.\n",
        config.users,
        workload.book_after_prefill.0,
        workload.book_after_prefill.1,
        match config.pareto_shape {
            Some(shape) => format!(", load over markets Pareto-weighted (shape {shape})"),
            None => String::new(),
        },
        count(Kind::Gtc),
        count(Kind::Ioc),
        count(Kind::Cancel),
        count(Kind::Move),
        count(Kind::Stop),
        count(Kind::StopCancel),
        workload.stops_fired,
        workload.fills,
        workload.book_at_end.0,
        workload.book_at_end.1,
        workload.stops_at_end,
    )?;
    writeln!(report, "| engine | commands/s | vs Marionette core | p50 µs | p99 µs | p99.9 µs | max µs | trades |")?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    let ours = measured[0].commands_per_second;
    for m in measured {
        let l = &m.latency;
        writeln!(
            report,
            "| {}{} | {:.0} | {:.2}x | {} | {} | {} | {} | {} |",
            m.name,
            if m.note.is_empty() { String::new() } else { format!(" ({})", m.note) },
            m.commands_per_second,
            m.commands_per_second / ours,
            micros(l.value_at_quantile(0.50)),
            micros(l.value_at_quantile(0.99)),
            micros(l.value_at_quantile(0.999)),
            micros(l.max()),
            m.trades
        )?;
    }
    writeln!(report)
}
