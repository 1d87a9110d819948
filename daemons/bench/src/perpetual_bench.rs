//! `marionette-bench perpetual`: a mark-to-market over many open positions
//! (beside the kernel's transfers, measured in the same run), and the same
//! order stream through the ledger core and matching on a perpetual market
//! beside a spot one. Both as the ledger daemon runs them: every command
//! through [`Ledger::apply`], every forward through a [`FastEngine`] and its
//! events back, on one thread, no journal (the ledger benchmark measures that).

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use hdrhistogram::Histogram;
use ledger_api::perpetual::{self as api, MarginTier, PerpetualSpec};
use ledger_api::spot::{Market, OrderRequest};
use ledger_api::{spot, wallet, AssetSpec, Command, LedgerError, Outcome};
use matching_core::{EngineLimits, Event, FastEngine, MarketSpec, OrderKind, SelfTradePrevention, Side, TimeInForce};
use products::perpetual::settlement;
use products::{Ledger, LedgerLimits};
use rand::{rngs::SmallRng, Rng, SeedableRng};

use crate::{micros, new_histogram};

const USAGE: &str = "usage: marionette-bench perpetual [--positions N] [--marks N] [--orders N] [--users N] [--only mark,orders]";

const BTC: u32 = 1;
const USD: u32 = 2;
const SPOT: u32 = 5;
const PERP: u32 = 7;
const ORACLE: u64 = 1 << 40;
const MAKER: u64 = ORACLE + 1;
const SEED: u64 = 42;
/// 60,000.0 USD in ticks of 0.1.
const MID_TICKS: u64 = 600_000;
/// The changes the service would hand to storage, taken this often.
const BATCH: usize = 1_024;

struct Options {
    positions: u64,
    marks: usize,
    orders: usize,
    users: u64,
    only: Vec<String>,
}

pub fn run(mut args: impl Iterator<Item = String>) -> anyhow::Result<String> {
    let mut options = Options { positions: 100_000, marks: 20, orders: 300_000, users: 1_000, only: vec!["mark".into(), "orders".into()] };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--positions" => options.positions = value("--positions")?.parse()?,
            "--marks" => options.marks = value("--marks")?.parse()?,
            "--orders" => options.orders = value("--orders")?.parse()?,
            "--users" => options.users = value("--users")?.parse()?,
            "--only" => {
                options.only = value("--only")?.split(',').map(String::from).collect();
                if let Some(unknown) = options.only.iter().find(|s| !["mark", "orders"].contains(&s.as_str())) {
                    bail!("--only: unknown part {unknown:?}, expected some of mark,orders\n{USAGE}");
                }
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    // Half the positions long and half short against one maker, who must end flat.
    ensure!(
        options.positions >= 2 && options.positions % 2 == 0 && options.positions <= 2_000_000,
        "--positions takes an even number from 2 to 2,000,000\n{USAGE}"
    );
    ensure!(options.marks > 0 && options.orders > 0 && options.users >= 2, "need a mark, an order and 2 users\n{USAGE}");
    let mut report = String::new();
    if options.only.iter().any(|s| s == "mark") {
        mark_to_market(&options, &mut report)?;
    }
    if options.only.iter().any(|s| s == "orders") {
        orders(&options, &mut report)?;
    }
    Ok(report)
}

fn market(id: u32) -> Market {
    // A tick of 0.1 USD on a lot of 0.001 BTC: 0.01 cent, one unit at scale 2.
    Market {
        base: BTC,
        quote: USD,
        base_units_per_lot: 100_000,
        trading: true,
        spec: MarketSpec {
            id,
            quote_units_per_tick_lot: 1,
            tick_lot_scale: 2,
            maker_fee_ppm: 200,
            taker_fee_ppm: 500,
            price_ticks_max: 10_000_000,
            quantity_lots_max: 1_000_000,
            price_band_ppm: 0,
        },
    }
}

/// Binance's first BTCUSDT bracket and dYdX's funding terms, an 8-hour
/// interval that never comes due within a run.
fn terms() -> PerpetualSpec {
    PerpetualSpec {
        market: PERP,
        collateral: USD,
        units_per_tick_lot: 1,
        tick_lot_scale: 2,
        price_ticks_max: 10_000_000,
        position_lots_max: 10_000_000,
        tiers: vec![MarginTier { notional_max: 100_000_000_000, initial_ppm: 10_000, maintenance_ppm: 4_000 }],
        leverage_default: 20,
        liquidation_penalty_ppm: 10_000,
        funding_interval_ms: 8 * 3_600_000,
        funding_interest_ppb: 100_000,
        funding_clamp_ppb: 500_000,
        funding_cap_ppb: 3_750_000,
        oracle_staleness_ms: 60_000,
        oracle_sources_min: 1,
        basis_window_ms: 600_000,
        mark_interval_ms: 1_000,
    }
}

fn perpetual(command: api::Command) -> Command {
    Command::Spot(spot::Command::Perpetual(command))
}

fn order(market: u32, side: Side, price: u64, quantity: u64, time_in_force: TimeInForce) -> OrderRequest {
    OrderRequest {
        market,
        side,
        kind: OrderKind::Limit,
        time_in_force,
        post_only: false,
        price: Some(price),
        quantity,
        self_trade: SelfTradePrevention::CancelTaker,
        expires_at_ms: None,
        trigger: None,
        reduce_only: false,
    }
}

/// The ledger core and matching, wired as the daemons are.
struct Exchange {
    ledger: Ledger,
    matching: FastEngine,
    sequence: u64,
    applied: usize,
    /// Time spent in matching, of all the time commands took.
    matching_time: Duration,
    /// Fills matching reported.
    fills: u64,
}

impl Exchange {
    fn new() -> anyhow::Result<Exchange> {
        let limits = EngineLimits::default();
        let mut exchange = Exchange {
            ledger: Ledger::new(LedgerLimits::default()),
            matching: FastEngine::new(limits),
            sequence: 0,
            applied: 0,
            matching_time: Duration::ZERO,
            fills: 0,
        };
        exchange.ledger.touch_reserved();
        exchange.ok(&Command::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }), 0)?;
        exchange.ok(&Command::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }), 0)?;
        Ok(exchange)
    }

    /// `command` at `at_ms`, then every forward it and what follows bring,
    /// through matching and back.
    fn apply(&mut self, command: &Command, at_ms: u64) -> Result<Outcome, LedgerError> {
        let applied = self.ledger.apply(command, at_ms);
        // Breadth first, as the ledger's link to matching sends them.
        let mut forwards: VecDeque<matching_core::Command> = applied.forward.into_iter().chain(applied.forward_more).collect();
        let mut events = Vec::new();
        while let Some(forward) = forwards.pop_front() {
            events.clear();
            let started = Instant::now();
            self.matching.execute(&forward, &mut events);
            self.matching_time += started.elapsed();
            self.fills += events.iter().filter(|event| matches!(event, Event::Fill(_))).count() as u64;
            self.sequence += 1;
            let back = self.ledger.apply(&Command::Spot(spot::Command::ApplyMatching { sequence: self.sequence, events: std::mem::take(&mut events) }), at_ms);
            if let Err(error) = back.outcome {
                // The ledger refusing matching's own events is a fault in the
                // system under test, not a slow path to be measured.
                panic!("the ledger refused matching's events: {error}");
            }
            forwards.extend(back.forward.into_iter().chain(back.forward_more));
        }
        self.applied += 1;
        if self.applied % BATCH == 0 {
            self.hand_over_changes();
        }
        applied.outcome
    }

    /// What the service does after each batch: the changes to storage, and
    /// their buffers back. A batch's first change to an account records it.
    fn hand_over_changes(&mut self) {
        let changes = self.ledger.take_changes();
        self.ledger.recycle(changes);
    }

    /// The ledger's tick (the book's sample, the mark, funding when due),
    /// as the daemon journals one each `mark_interval_ms`.
    fn tick_if_due(&mut self, at_ms: u64) -> anyhow::Result<()> {
        if self.ledger.spot().next_perpetual_tick().is_some_and(|due| due <= at_ms) {
            self.ok(&perpetual(api::Command::Tick), at_ms)?;
        }
        Ok(())
    }

    fn ok(&mut self, command: &Command, at_ms: u64) -> anyhow::Result<Outcome> {
        self.apply(command, at_ms).map_err(|error| anyhow::anyhow!("setting up the benchmark: {command:?} refused: {error}"))
    }

    fn deposit(&mut self, user: u64, asset: u32, amount: i128, at_ms: u64) -> anyhow::Result<()> {
        self.ok(&Command::Wallet(wallet::Command::Deposit { user, asset, amount, reference: format!("opening-{user}-{asset}") }), at_ms).map(drop)
    }

    fn list_perpetual(&mut self, at_ms: u64) -> anyhow::Result<()> {
        self.ok(&perpetual(api::Command::CreateMarket { market: market(PERP), perpetual: Box::new(terms()) }), at_ms)?;
        self.ok(&perpetual(api::Command::SetOracle { market: PERP, user: ORACLE, source: Some(1) }), at_ms)?;
        self.price(MID_TICKS, at_ms).map(drop)
    }

    /// The oracle's price; the new mark, if it moved.
    fn price(&mut self, price: u64, at_ms: u64) -> anyhow::Result<Option<u64>> {
        match self.ok(&perpetual(api::Command::SubmitPrice { user: ORACLE, market: PERP, price }), at_ms)? {
            Outcome::Spot(spot::Outcome::Perpetual(api::Outcome::PriceSubmitted { mark, .. })) => Ok(mark),
            other => bail!("a price answered {other:?}"),
        }
    }

    /// The ledger's invariants, and the perpetual's settlement account at
    /// zero (on a spot ledger it does not exist: zero too).
    fn check(&self) -> anyhow::Result<()> {
        self.ledger.check_invariants().map_err(|error| anyhow::anyhow!("after the run: {error}"))?;
        let settled = self.ledger.kernel().balance(settlement(PERP, USD));
        ensure!(settled == 0, "the settlement account holds {settled} after the run");
        Ok(())
    }

    /// Positions open on the perpetual market.
    fn open_positions(&self) -> u64 {
        let perpetuals = self.ledger.spot().perpetuals();
        perpetuals.holders(PERP).filter(|user| perpetuals.position(*user, PERP).is_some_and(|p| p.holding.size != 0)).count() as u64
    }
}

/// A mark-to-market over `positions` open positions: one user each, half
/// long and half short one lot against a maker who ends flat, then
/// `marks` oracle prices, each moving the mark 0.05% (every position paid
/// or charged through the settlement account, then checked for
/// liquidation). Beside it, the kernel's transfers one at a time.
fn mark_to_market(options: &Options, report: &mut String) -> anyhow::Result<()> {
    let positions = options.positions;
    eprintln!("opening {positions} positions");
    let mut exchange = Exchange::new()?;
    let at_ms = 1_000;
    exchange.list_perpetual(at_ms)?;
    exchange.deposit(MAKER, USD, 1_000_000_000_000, at_ms)?;
    let half = positions / 2;
    let spread = 5;
    let place = |exchange: &mut Exchange, user, request| {
        exchange.ok(&Command::Spot(spot::Command::PlaceOrder { user, request, client_order_id: None }), at_ms).map(drop)
    };
    place(&mut exchange, MAKER, order(PERP, Side::Sell, MID_TICKS + spread, positions - half, TimeInForce::Gtc))?;
    place(&mut exchange, MAKER, order(PERP, Side::Buy, MID_TICKS - spread, half, TimeInForce::Gtc))?;
    let progress = (positions / 10).max(1);
    for user in 1..=positions {
        exchange.deposit(user, USD, 100_000, at_ms)?;
        let (side, price) = if user % 2 == 0 { (Side::Sell, MID_TICKS - spread) } else { (Side::Buy, MID_TICKS + spread) };
        place(&mut exchange, user, order(PERP, side, price, 1, TimeInForce::Ioc))?;
        if user % progress == 0 {
            eprintln!("  {user} of {positions}");
        }
    }
    let open = exchange.open_positions();
    ensure!(open == positions, "{open} positions open where {positions} were traded (the maker should be flat)");

    eprintln!("{} marks over {positions} positions", options.marks);
    let mut latency = new_histogram();
    let mut at_ms = at_ms;
    let mut mark = None;
    // Each mark in a batch of its own, as in the daemon under a steady load.
    exchange.hand_over_changes();
    let started = Instant::now();
    for step in 0..options.marks {
        // The index 30 USD over and under 60,000, far from any liquidation.
        let price = if step % 2 == 0 { MID_TICKS + 300 } else { MID_TICKS - 300 };
        at_ms += 1_000;
        let before = Instant::now();
        let moved = exchange.price(price, at_ms)?;
        exchange.hand_over_changes();
        latency.saturating_record(before.elapsed().as_nanos() as u64);
        ensure!(moved.is_some() && moved != mark, "the price {price} did not move the mark (still {mark:?}): nothing was marked to market");
        mark = moved;
    }
    let seconds = started.elapsed().as_secs_f64();
    exchange.check()?;
    let still = exchange.open_positions();
    ensure!(still == positions, "{} positions were liquidated by marks within 0.1%", positions - still);
    drop(exchange);

    // The peer: transfers between the same number of users, one command each.
    eprintln!("{positions} kernel transfers");
    let mut ledger = Ledger::new(LedgerLimits::default());
    ledger.touch_reserved();
    ledger.apply(&Command::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }), 0).outcome?;
    for user in 1..=positions {
        ledger.apply(&Command::Wallet(wallet::Command::Deposit { user, asset: USD, amount: 100_000, reference: format!("opening-{user}") }), 0).outcome?;
    }
    ledger.take_changes();
    let transfers: Vec<Command> = (1..=positions)
        .map(|from| Command::Wallet(wallet::Command::Transfer { from, to: from % positions + 1, asset: USD, amount: 1, key: format!("bench-{from}") }))
        .collect();
    let transfers_started = Instant::now();
    for (i, transfer) in transfers.iter().enumerate() {
        ledger.apply(transfer, 1).outcome?;
        if (i + 1) % BATCH == 0 {
            let changes = ledger.take_changes();
            ledger.recycle(changes);
        }
    }
    let transfer_seconds = transfers_started.elapsed().as_secs_f64();
    ledger.check_invariants().map_err(|error| anyhow::anyhow!(error))?;

    let median_ns = latency.value_at_quantile(0.5);
    writeln!(report, "### Mark-to-market over {positions} open positions\n")?;
    writeln!(
        report,
        "Workload: {positions} users each long or short one lot (0.001 BTC) of BTC-USD-PERP at 60,000 USD, at 20x, against a maker left flat; then {} oracle prices 30 USD over and under 60,000, each a new mark (0.05% to 0.09% from the last): every position's profit or loss through the settlement account, then each checked against maintenance margin (none liquidated), and the mark to matching; each mark's changes handed over as the service does after a batch. The peer, in the same run: {positions} transfers between as many users through the ledger core, one command each, changes handed over every {BATCH}.\n",
        options.marks
    )?;
    writeln!(report, "| what | per run | p50 ms | max ms | positions (transfers)/s |")?;
    writeln!(report, "|---|---:|---:|---:|---:|")?;
    writeln!(
        report,
        "| a mark-to-market of {positions} positions (one oracle price) | {:.0} marks/s | {} | {} | {:.0} |",
        options.marks as f64 / seconds,
        millis(median_ns),
        millis(latency.max()),
        positions as f64 * 1e9 / median_ns.max(1) as f64
    )?;
    writeln!(
        report,
        "| {positions} kernel transfers, one command each | {:.1} runs/s | {} (all) | - | {:.0} |\n",
        1.0 / transfer_seconds,
        millis((transfer_seconds * 1e9) as u64),
        positions as f64 / transfer_seconds
    )?;
    writeln!(
        report,
        "A mark-to-market of {positions} positions takes as long as {:.2}x that many single transfers, measured in this run (it posts one transfer per position, in one command, and checks each against maintenance margin).\n",
        median_ns as f64 / 1e9 / transfer_seconds
    )?;
    Ok(())
}

fn millis(nanos: u64) -> String {
    format!("{:.1}", nanos as f64 / 1e6)
}

/// One command of the order stream.
#[derive(Clone, Copy)]
enum Step {
    Place {
        user: u64,
        side: Side,
        price: u64,
        quantity: u64,
        time_in_force: TimeInForce,
    },
    /// The user's oldest order still open, as far as the driver knows.
    CancelOldest {
        user: u64,
    },
}

/// The same stream for both markets: 70% limit orders within 3.5 USD of
/// 60,000 (a fifth of them IOC), 30% cancels, over `users` users.
fn order_stream(options: &Options) -> Vec<Step> {
    let mut rng = SmallRng::seed_from_u64(SEED);
    (0..options.orders)
        .map(|_| {
            let user = rng.random_range(1..=options.users);
            if rng.random_range(0..10) < 3 {
                return Step::CancelOldest { user };
            }
            let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
            let offset = rng.random_range(0..=50);
            // Buyers bid from 3.5 USD under the middle to 1.5 over it,
            // sellers the other way round: the fills column says how many cross.
            let price = match side {
                Side::Buy => MID_TICKS + 15 - offset,
                Side::Sell => MID_TICKS - 15 + offset,
            };
            let time_in_force = if rng.random_range(0..5) == 0 { TimeInForce::Ioc } else { TimeInForce::Gtc };
            Step::Place { user, side, price, quantity: rng.random_range(1..=10), time_in_force }
        })
        .collect()
}

struct OrderRun {
    name: &'static str,
    commands_per_second: f64,
    latency: Histogram<u64>,
    matching_share: f64,
    /// Commands matching executed: the orders, cancels and marks forwarded.
    forwards: u64,
    fills: u64,
    /// Orders refused (none expected: every user holds plenty), and cancels
    /// of orders that had filled or been cancelled already.
    refused_orders: u64,
    late_cancels: u64,
}

/// The stream through the ledger and matching on one market, a command
/// each simulated millisecond; on the perpetual one the oracle's price (the
/// same every time) comes every 1,000 commands and the ledger's tick every
/// simulated second, as in the daemon, timed with the commands.
fn run_orders(options: &Options, stream: &[Step], perpetual_market: bool) -> anyhow::Result<OrderRun> {
    let mut exchange = Exchange::new()?;
    let mut at_ms = 1_000;
    let market_id = if perpetual_market { PERP } else { SPOT };
    if perpetual_market {
        exchange.list_perpetual(at_ms)?;
    } else {
        exchange.ok(&Command::Spot(spot::Command::CreateMarket(market(SPOT))), at_ms)?;
    }
    for user in 1..=options.users {
        exchange.deposit(user, USD, 100_000_000_000, at_ms)?;
        if !perpetual_market {
            exchange.deposit(user, BTC, 1_000_000_000_000, at_ms)?;
        }
    }
    exchange.ledger.take_changes();
    exchange.matching_time = Duration::ZERO;
    let mut open: Vec<VecDeque<u64>> = vec![VecDeque::new(); options.users as usize + 1];
    let mut latency = new_histogram();
    let (mut refused_orders, mut late_cancels) = (0, 0);
    let (forwards_before, fills_before) = (exchange.sequence, exchange.fills);
    let started = Instant::now();
    for (i, step) in stream.iter().enumerate() {
        at_ms += 1;
        let before = Instant::now();
        if perpetual_market {
            if i % 1_000 == 999 {
                exchange.price(MID_TICKS, at_ms)?;
            }
            exchange.tick_if_due(at_ms)?;
        }
        match *step {
            Step::Place { user, side, price, quantity, time_in_force } => {
                let request = order(market_id, side, price, quantity, time_in_force);
                match exchange.apply(&Command::Spot(spot::Command::PlaceOrder { user, request, client_order_id: None }), at_ms) {
                    Ok(Outcome::Spot(spot::Outcome::OrderPlaced(id))) => open[user as usize].push_back(id),
                    Ok(other) => bail!("an order answered {other:?}"),
                    Err(_) => refused_orders += 1,
                }
            }
            Step::CancelOldest { user } => {
                // Filled or cancelled already: the ledger says so, and that is measured too.
                if let Some(order_id) = open[user as usize].pop_front() {
                    if exchange.apply(&Command::Spot(spot::Command::CancelOrder { user, order_id }), at_ms).is_err() {
                        late_cancels += 1;
                    }
                }
            }
        }
        latency.saturating_record(before.elapsed().as_nanos() as u64);
    }
    let seconds = started.elapsed().as_secs_f64();
    exchange.check()?;
    Ok(OrderRun {
        name: if perpetual_market { "BTC-USD-PERP (perpetual, cross margin at 20x)" } else { "BTC-USD (spot)" },
        commands_per_second: stream.len() as f64 / seconds,
        latency,
        matching_share: exchange.matching_time.as_secs_f64() / seconds,
        forwards: exchange.sequence - forwards_before,
        fills: exchange.fills - fills_before,
        refused_orders,
        late_cancels,
    })
}

fn orders(options: &Options, report: &mut String) -> anyhow::Result<()> {
    let stream = order_stream(options);
    eprintln!("{} commands on a spot market", stream.len());
    let spot = run_orders(options, &stream, false)?;
    eprintln!("{} commands on a perpetual market", stream.len());
    let perpetual = run_orders(options, &stream, true)?;
    writeln!(report, "### Orders on a perpetual market beside a spot one, through the ledger core and matching\n")?;
    writeln!(
        report,
        "Workload: {} commands (seed {SEED}) from {} users on one market: 70% limit orders of 1 to 10 lots within 3.5 USD of 60,000 (a fifth IOC), 30% cancels of the user's oldest order (refused when it has filled; nothing is sent for a user with none). The same stream, a command each simulated millisecond, on a spot market (each order holds its worst case) and on a perpetual one (each order checked against initial margin on the position it would leave, open orders included; every fill moves positions, margin and fees), where the oracle's price also comes every 1,000 commands and the ledger's tick (the book's sample for funding, the mark) every simulated second. Each command applied by the ledger core, its forwards executed by matching and the events applied back, one thread.\n",
        stream.len(),
        options.users
    )?;
    writeln!(report, "| market | commands/s | vs spot | p50 µs | p99 µs | max µs | of which matching | to matching | fills | orders refused | late cancels |")?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")?;
    for run in [&spot, &perpetual] {
        let l = &run.latency;
        writeln!(
            report,
            "| {} | {:.0} | {:.3}x | {} | {} | {} | {:.0}% | {} | {} | {} | {} |",
            run.name,
            run.commands_per_second,
            run.commands_per_second / spot.commands_per_second,
            micros(l.value_at_quantile(0.50)),
            micros(l.value_at_quantile(0.99)),
            micros(l.max()),
            run.matching_share * 100.0,
            run.forwards,
            run.fills,
            run.refused_orders,
            run.late_cancels
        )?;
    }
    writeln!(report)?;
    Ok(())
}
