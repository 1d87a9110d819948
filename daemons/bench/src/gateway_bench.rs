//! `marionette-bench gateway`: orders placed through the GraphQL API over
//! HTTP/1.1 keep-alive against the three real daemons, beside two ceilings
//! driven by the same client with the same requests in the same run: the
//! same GraphQL request through async-graphql with a resolver that answers
//! at once (what GraphQL costs), and a plain hyper endpoint with a fixed
//! answer (what HTTP costs).
//!
//! Three scenarios, each for the three systems:
//! - **throughput**: many keep-alive connections, each sending its next
//!   request as soon as the last is answered;
//! - **rate**: open loop at a fixed offered rate over those connections. A
//!   pacer thread releases request `i` at `i / rate` seconds; a request is
//!   timed from that intended time whenever its connection was still busy
//!   then (so a stall cannot hide the requests it delayed), and from its
//!   send otherwise (so the client's own lateness is not charged to the server);
//! - **single**: one connection, closed loop: an order's latency alone;
//! - **convert**: conversions through the API (convertQuote, then
//!   acceptConvertQuote of the quote it answered, each accepted and
//!   settled durably) beside placeOrder, both closed loop over the same
//!   connections in the same run.
//!
//! Around each placeOrder run the daemons' metrics are read, and the
//! difference gives where an order's time went (the stage breakdown).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use hdrhistogram::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::daemon::{daemon_binary, Daemon};
use crate::{micros, new_histogram};

const USAGE: &str =
    "usage: marionette-bench gateway [--orders N] [--connections N] [--rate ORDERS_PER_SECOND] [--single-orders N] [--users N] [--conversions N] [--only throughput,rate,single,convert]";
const PASSWORD: &str = "bench: tulip quarry lantern";

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Scenario {
    Throughput,
    Rate,
    Single,
    Convert,
}

struct Options {
    /// Requests per system in the throughput and rate scenarios.
    orders: usize,
    connections: usize,
    /// The rate scenario's offered requests per second.
    rate: f64,
    /// Requests per system in the single-connection scenario.
    single_orders: usize,
    /// Traders: user `i % users` sends request `i`, even users selling and
    /// odd ones buying at one price, so that about half the orders trade.
    users: usize,
    /// Conversions (and placeOrders beside them) in the convert scenario,
    /// over one connection per trader.
    conversions: usize,
    scenarios: Vec<Scenario>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum System {
    PlaceOrder,
    GraphqlCeiling,
    PlainHyper,
}

impl System {
    const ALL: [System; 3] = [System::PlaceOrder, System::GraphqlCeiling, System::PlainHyper];

    fn describe(self) -> &'static str {
        match self {
            System::PlaceOrder => {
                "marionette-gateway placeOrder (each answer after the ledger's hold, matching's verdict and the ledger's settlement, all durable)"
            }
            System::GraphqlCeiling => "GraphQL ceiling (the same request through async-graphql 7 on hyper, a resolver that answers at once, no daemons)",
            System::PlainHyper => "plain hyper (hyper 1 HTTP/1.1, a fixed 40-byte JSON answer, no GraphQL, no daemons)",
        }
    }
}

/// One system's figures in one scenario.
struct Run {
    per_second: f64,
    latency: Histogram<u64>,
}

pub fn run(mut args: impl Iterator<Item = String>) -> anyhow::Result<String> {
    let mut options = Options {
        orders: 30_000,
        connections: 256,
        rate: 10_000.0,
        single_orders: 3_000,
        users: 32,
        conversions: 10_000,
        scenarios: vec![Scenario::Throughput, Scenario::Rate, Scenario::Single, Scenario::Convert],
    };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--orders" => options.orders = value("--orders")?.parse()?,
            // The name before the scenarios came.
            "--connections" | "--clients" => options.connections = value("--connections")?.parse()?,
            "--rate" => options.rate = value("--rate")?.parse()?,
            "--single-orders" => options.single_orders = value("--single-orders")?.parse()?,
            "--users" => options.users = value("--users")?.parse()?,
            "--conversions" => options.conversions = value("--conversions")?.parse()?,
            "--only" => {
                options.scenarios = value("--only")?
                    .split(',')
                    .map(|name| match name {
                        "throughput" => Ok(Scenario::Throughput),
                        "rate" => Ok(Scenario::Rate),
                        "single" => Ok(Scenario::Single),
                        "convert" => Ok(Scenario::Convert),
                        other => bail!("unknown scenario {other:?}\n{USAGE}"),
                    })
                    .collect::<anyhow::Result<_>>()?
            }
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    ensure!(
        options.orders > 0 && options.single_orders > 0 && options.connections > 0 && options.conversions > 0,
        "need orders, conversions and connections\n{USAGE}"
    );
    ensure!(options.rate > 0.0 && options.rate.is_finite(), "--rate must be a positive number of orders per second");
    ensure!(options.users >= 2 && options.users % 2 == 0, "--users must be even and at least 2 (half sell, half buy)");

    let dir = tempfile::Builder::new().prefix("bench-gateway-").tempdir_in(crate::ledger_bench::bench_dir()?)?;
    let ports = Ports { gateway: free_port()?, gateway_metrics: free_port()?, ledger_metrics: free_port()?, matching_metrics: free_port()? };
    let daemons = start(dir.path(), &ports)?;
    // matching, ledger, gateway, as started.
    let pids = [daemons[2].0.id(), daemons[1].0.id(), daemons[0].0.id()];
    eprintln!("  setting up the market and {} traders", options.users);
    let tokens = setup(ports.gateway, options.users)?;
    let requests = Arc::new(order_requests(&tokens));
    let ceilings = [(System::GraphqlCeiling, free_port()?), (System::PlainHyper, free_port()?)];
    let _graphql_ceiling = serve_ceiling(ceilings[0].1, Ceiling::Graphql)?;
    let _plain_ceiling = serve_ceiling(ceilings[1].1, Ceiling::Plain)?;
    let port_of = |system: System| match system {
        System::PlaceOrder => ports.gateway,
        other => ceilings.iter().find(|(s, _)| *s == other).map(|(_, port)| *port).expect("every ceiling has a port"),
    };
    let client = tokio::runtime::Builder::new_current_thread().enable_all().build()?;

    let mut report = String::new();
    let mut breakdowns: Vec<(String, Breakdown)> = Vec::new();
    let mut targets = Targets::default();
    for &scenario in &options.scenarios {
        if scenario == Scenario::Convert {
            eprintln!("  convert: {} conversions beside as many placeOrders over {} connections", options.conversions, tokens.len());
            let connections = tokens.len();
            client.block_on(drive(ports.gateway, requests.clone(), connections * 10, connections, None))?;
            let orders = client.block_on(drive(ports.gateway, requests.clone(), options.conversions, connections, None))?;
            client.block_on(drive_conversions(ports.gateway, &tokens, connections * 10))?;
            let conversions = client.block_on(drive_conversions(ports.gateway, &tokens, options.conversions))?;
            write_conversions(&mut report, options.conversions, connections, &orders, &conversions)?;
            continue;
        }
        let (title, orders, connections, rate) = match scenario {
            Scenario::Throughput => (format!("{} connections, each as fast as it is answered", options.connections), options.orders, options.connections, None),
            Scenario::Rate => (
                format!("an offered {:.0} requests/s, open loop over {} connections", options.rate, options.connections),
                options.orders,
                options.connections,
                Some(options.rate),
            ),
            Scenario::Single => ("one connection, as fast as it is answered".to_string(), options.single_orders, 1, None),
            Scenario::Convert => unreachable!("run above"),
        };
        let mut runs = Vec::new();
        for system in System::ALL {
            let port = port_of(system);
            eprintln!("  {title}: {}", system.describe().split(" (").next().unwrap_or_default());
            // Connections opened, caches and the daemons' batches warm.
            client.block_on(drive(port, requests.clone(), (orders / 10).max(connections), connections, rate))?;
            let before = (system == System::PlaceOrder).then(|| Scrape::all(&ports, pids)).transpose()?;
            let run = client.block_on(drive(port, requests.clone(), orders, connections, rate))?;
            if let Some(before) = before {
                breakdowns.push((title.clone(), Breakdown::between(&before, &Scrape::all(&ports, pids)?)));
            }
            runs.push((system, run));
        }
        let of = |system: System| &runs.iter().find(|(s, _)| *s == system).expect("every system ran").1;
        match scenario {
            Scenario::Throughput => targets.throughput_ratio = Some(of(System::PlaceOrder).per_second / of(System::PlainHyper).per_second),
            Scenario::Rate => targets.rate_p99_us = Some(of(System::PlaceOrder).latency.value_at_quantile(0.99) as f64 / 1_000.0),
            Scenario::Single => targets.single_p50_us = Some(of(System::PlaceOrder).latency.value_at_quantile(0.5) as f64 / 1_000.0),
            Scenario::Convert => {}
        }
        write_scenario(&mut report, &title, orders, &runs)?;
    }
    write_breakdown(&mut report, &breakdowns)?;
    targets.write(&mut report, &options)?;
    Ok(report)
}

struct Ports {
    gateway: u16,
    gateway_metrics: u16,
    ledger_metrics: u16,
    matching_metrics: u16,
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start(dir: &Path, ports: &Ports) -> anyhow::Result<Vec<Daemon>> {
    let d = dir.display();
    let Ports { gateway, gateway_metrics, ledger_metrics, matching_metrics } = ports;
    std::fs::write(
        dir.join("matching.toml"),
        format!("[listen]\naddress = \"unix:{d}/matching.sock\"\nmetrics_address = \"127.0.0.1:{matching_metrics}\"\n[storage]\ndata_dir = \"{d}/matching\"\n[log]\nformat = \"text\"\nfilter = \"warn\"\n"),
    )?;
    std::fs::write(
        dir.join("ledger.toml"),
        format!("[listen]\naddress = \"unix:{d}/ledger.sock\"\nmetrics_address = \"127.0.0.1:{ledger_metrics}\"\n[matching]\naddress = \"unix:{d}/matching.sock\"\nreconnect_ms = 50\n[storage]\ndata_dir = \"{d}/ledger\"\n# Measured: orders, not four-eyes.\n[approvals]\ndeposit = 1\nwithdrawal_approval = 1\nhouse_inventory = 1\nasset = 1\nmarket = 1\noperator = 1\nconvert_pair = 1\n[log]\nformat = \"text\"\nfilter = \"warn\"\n"),
    )?;
    std::fs::write(
        dir.join("gateway.toml"),
        format!("[listen]\naddress = \"127.0.0.1:{gateway}\"\nmetrics_address = \"127.0.0.1:{gateway_metrics}\"\nconnections_per_ip_max = 1000000\n[ledger]\naddress = \"unix:{d}/ledger.sock\"\nreconnect_ms = 50\n[matching]\naddress = \"unix:{d}/matching.sock\"\n[admin]\nsocket = \"{d}/admin.sock\"\n[auth]\nkeys_dir = \"{d}/keys\"\ncookie_secure = false\n# Measured: orders; its operator sets the market up with a password alone,\n# and the traders' logins need not resist offline guessing.\noperators_two_factor_required = false\nargon2_memory_kib = 8192\nargon2_passes = 1\n[storage]\ndata_dir = \"{d}/gateway\"\n[limits]\nip_requests_per_second = 1000000\nip_burst = 1000000\nuser_requests_per_second = 1000000\nuser_burst = 1000000\nlogin_ip_burst = 1000000\nlogin_account_burst = 1000000\n[convert]\nquotes_per_minute = 1000000000\nquotes_burst = 1000000\n[log]\nformat = \"text\"\nfilter = \"warn\"\n"),
    )?;
    let mut daemons = Vec::new();
    for name in ["matching", "ledger", "gateway"] {
        daemons.push(Daemon(
            Command::new(daemon_binary(name)?).arg("--config").arg(dir.join(format!("{name}.toml"))).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?,
        ));
        std::thread::sleep(Duration::from_millis(300));
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(mut connection) = Connection::open(*gateway) {
            if connection.request("GET", "/readyz", "", "")?.0 == 200 {
                let mut create = Command::new(crate::daemon::daemon_binary_named("marionettectl")?)
                    .arg("--socket")
                    .arg(dir.join("admin.sock"))
                    .args(["create-operator", "bench@marionette.local"])
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .spawn()?;
                create.stdin.take().context("stdin")?.write_all(format!("{PASSWORD}\n").as_bytes())?;
                ensure!(create.wait()?.success(), "marionettectl create-operator failed");
                return Ok(daemons);
            }
        }
        ensure!(Instant::now() < deadline, "the gateway did not become ready");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The market, the operator, and `users` funded traders; their tokens.
fn setup(port: u16, users: usize) -> anyhow::Result<Vec<String>> {
    let mut connection = Connection::open(port)?;
    let mut graphql = |token: &str, query: &str| -> anyhow::Result<String> {
        let body = format!("{{\"query\": {}}}", json_string(query));
        let (status, answer) = connection.request("POST", "/graphql", token, &body)?;
        ensure!(status == 200 && !answer.contains("\"errors\""), "{query}: {status} {answer}");
        Ok(answer)
    };
    let token_of =
        |answer: &str| answer.split("\"token\":\"").nth(1).and_then(|rest| rest.split('"').next()).map(str::to_string).context("no token in the answer");
    let operator = token_of(&graphql("", &format!("mutation {{ login(email: \"bench@marionette.local\", password: \"{PASSWORD}\") {{ token }} }}"))?)?;
    graphql(&operator, "mutation { createAsset(symbol: \"BTC\", scale: 8) { id } }")?;
    graphql(&operator, "mutation { createAsset(symbol: \"USD\", scale: 2) { id } }")?;
    graphql(&operator, "mutation { createMarket(input: { base: \"BTC\", quote: \"USD\", tickSize: \"1\", lotSize: \"0.01\", makerFeeRate: \"0.001\", takerFeeRate: \"0.002\" }) { id } }")?;
    // Convert: BTC/USD at the market's price, the house funded to take either side.
    graphql(&operator, "mutation { fundHouse(asset: \"BTC\", amount: \"1000000\", reference: \"bench-btc\") { inventory } }")?;
    graphql(&operator, "mutation { fundHouse(asset: \"USD\", amount: \"100000000\", reference: \"bench-usd\") { inventory } }")?;
    graphql(
        &operator,
        "mutation { setConvertPair(base: \"BTC\", quote: \"USD\", price: \"100\", spreadBps: 10, feeBps: 10, minAmount: \"0.00000001\", maxAmount: \"1000\", stepSize: \"0.00000001\", exposureLimitBase: \"1000000\", exposureLimitQuote: \"100000000\") { base } }",
    )?;
    let mut tokens = Vec::new();
    for user in 0..users {
        let email = format!("trader{user}@bench.local");
        graphql("", &format!("mutation {{ register(email: \"{email}\", password: \"{PASSWORD}\") {{ id }} }}"))?;
        for (asset, amount) in [("USD", "100000000"), ("BTC", "100000")] {
            graphql(
                &operator,
                &format!("mutation {{ deposit(email: \"{email}\", asset: \"{asset}\", amount: \"{amount}\", reference: \"{email}-{asset}\") {{ id }} }}"),
            )?;
        }
        tokens.push(token_of(&graphql("", &format!("mutation {{ login(email: \"{email}\", password: \"{PASSWORD}\") {{ token }} }}"))?)?);
    }
    Ok(tokens)
}

/// One whole HTTP request per trader: even ones sell, odd ones buy, at one
/// price. The ceilings get the same bytes (they ignore the token).
fn order_requests(tokens: &[String]) -> Vec<Vec<u8>> {
    tokens
        .iter()
        .enumerate()
        .map(|(user, token)| {
            let side = if user % 2 == 0 { "SELL" } else { "BUY" };
            let body = format!(
                r#"{{"query":"mutation {{ placeOrder(input: {{ market: \"BTC-USD\", side: {side}, type: LIMIT, price: \"100\", quantity: \"0.01\" }}) {{ id status }} }}"}}"#
            );
            format!("POST /graphql HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}", body.len())
                .into_bytes()
        })
        .collect()
}

/// Sends `orders` requests over `connections` keep-alive connections, request
/// `i` on connection `i % connections` as trader `i % requests.len()`; closed
/// loop without a rate, else open loop (see the module's comment).
async fn drive(port: u16, requests: Arc<Vec<Vec<u8>>>, orders: usize, connections: usize, rate: Option<f64>) -> anyhow::Result<Run> {
    let connections = connections.clamp(1, orders);
    let mut clients = Vec::with_capacity(connections);
    for _ in 0..connections {
        clients.push(Client::open(port).await?);
    }
    // The pacer's channels: request numbers, released at their intended times.
    let (releases, mut paced): (Vec<_>, Vec<_>) = (0..connections).map(|_| tokio::sync::mpsc::unbounded_channel::<usize>()).map(|(s, r)| (s, Some(r))).unzip();
    let start = Instant::now() + Duration::from_millis(5);
    let pacer = rate.map(|rate| {
        std::thread::spawn(move || {
            for i in 0..orders {
                let intended = start + Duration::from_secs_f64(i as f64 / rate);
                let now = Instant::now();
                if intended > now {
                    std::thread::sleep(intended - now);
                }
                if releases[i % connections].send(i).is_err() {
                    return;
                }
            }
        })
    });
    let mut tasks = tokio::task::JoinSet::new();
    for (connection, mut client) in clients.into_iter().enumerate() {
        let requests = requests.clone();
        let mut released = if rate.is_some() { paced[connection].take() } else { None };
        tasks.spawn(async move {
            let mut latency = new_histogram();
            let mut free_at = start;
            let mut next = connection;
            tokio::time::sleep_until(start.into()).await;
            loop {
                let i = match released.as_mut() {
                    Some(released) => match released.recv().await {
                        Some(i) => i,
                        None => break,
                    },
                    None if next < orders => {
                        next += connections;
                        next - connections
                    }
                    None => break,
                };
                let sent = Instant::now();
                let origin = match rate {
                    Some(rate) => {
                        let intended = start + Duration::from_secs_f64(i as f64 / rate);
                        if free_at > intended {
                            intended
                        } else {
                            sent
                        }
                    }
                    None => sent,
                };
                client.exchange(&requests[i % requests.len()]).await.with_context(|| format!("request {i} on connection {connection}"))?;
                free_at = Instant::now();
                latency.saturating_record(free_at.duration_since(origin).as_nanos() as u64);
            }
            anyhow::Ok((latency, free_at))
        });
    }
    drop(paced);
    let mut latency = new_histogram();
    let mut last = start;
    while let Some(joined) = tasks.join_next().await {
        let (histogram, done) = joined.context("a client task failed")??;
        latency.add(&histogram)?;
        last = last.max(done);
    }
    if let Some(pacer) = pacer {
        pacer.join().map_err(|_| anyhow::anyhow!("the pacer thread panicked"))?;
    }
    Ok(Run { per_second: orders as f64 / last.duration_since(start).as_secs_f64(), latency })
}

/// A keep-alive connection of the measuring client: one request at a time,
/// answers read by Content-Length, anything but a 200 without GraphQL
/// errors ends the benchmark.
struct Client {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl Client {
    async fn open(port: u16) -> anyhow::Result<Client> {
        let stream = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.with_context(|| format!("connecting to 127.0.0.1:{port}"))?;
        stream.set_nodelay(true)?;
        Ok(Client { stream, buffer: Vec::with_capacity(4_096) })
    }

    /// Sends `request` and returns the answer's body.
    async fn exchange(&mut self, request: &[u8]) -> anyhow::Result<&[u8]> {
        self.stream.write_all(request).await?;
        self.buffer.clear();
        loop {
            if let Some((status, head_bytes, body_bytes)) = response_head(&self.buffer)? {
                if self.buffer.len() >= head_bytes + body_bytes {
                    let body = &self.buffer[head_bytes..head_bytes + body_bytes];
                    ensure!(status == 200 && !body.windows(8).any(|w| w == b"\"errors\""), "answered {status}: {}", String::from_utf8_lossy(body));
                    ensure!(self.buffer.len() == head_bytes + body_bytes, "an answer came that was not asked for");
                    return Ok(&self.buffer[head_bytes..]);
                }
            }
            let read = self.stream.read_buf(&mut self.buffer).await?;
            ensure!(read > 0, "the server closed the connection");
        }
    }
}

fn graphql_request(token: &str, body: &str) -> Vec<u8> {
    format!(
        "POST /graphql HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nAuthorization: Bearer {token}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// `conversions` conversions, closed loop, one connection per trader:
/// each asks for a quote (even traders give 1 USD for bitcoin, odd ones
/// 0.01 BTC for dollars, so that the house's position stays level) and
/// accepts the quote it got. Timed from the quote's request to the accept's
/// answer.
async fn drive_conversions(port: u16, tokens: &[String], conversions: usize) -> anyhow::Result<Run> {
    let connections = tokens.len().clamp(1, conversions);
    let start = Instant::now();
    let mut tasks = tokio::task::JoinSet::new();
    for (connection, token) in tokens.iter().take(connections).enumerate() {
        let token = token.clone();
        let mut client = Client::open(port).await?;
        let (from, to, amount) = if connection % 2 == 0 { ("USD", "BTC", "1") } else { ("BTC", "USD", "0.01") };
        let quote = graphql_request(
            &token,
            &format!(r#"{{"query":"mutation {{ convertQuote(from: \"{from}\", to: \"{to}\", fromAmount: \"{amount}\") {{ id }} }}"}}"#),
        );
        tasks.spawn(async move {
            let mut latency = new_histogram();
            let mut done = 0;
            for n in (connection..conversions).step_by(connections) {
                let sent = Instant::now();
                let answer = client.exchange(&quote).await.with_context(|| format!("quote {n}"))?;
                let text = std::str::from_utf8(answer).context("the quote's answer is not text")?;
                let id = text.split("\"id\":\"").nth(1).and_then(|rest| rest.split('"').next()).with_context(|| format!("no quote id in {text}"))?.to_string();
                let accept = graphql_request(
                    &token,
                    &format!(r#"{{"query":"mutation {{ acceptConvertQuote(quoteId: \"{id}\", idempotencyKey: \"bench-{n}-{id}\") {{ id toAmount }} }}"}}"#),
                );
                client.exchange(&accept).await.with_context(|| format!("accept {n}"))?;
                latency.saturating_record(sent.elapsed().as_nanos() as u64);
                done += 1;
            }
            anyhow::Ok((latency, done))
        });
    }
    let mut latency = new_histogram();
    let mut done = 0;
    while let Some(joined) = tasks.join_next().await {
        let (histogram, count) = joined.context("a client task failed")??;
        latency.add(&histogram)?;
        done += count;
    }
    ensure!(done == conversions, "{done} of {conversions} conversions done");
    Ok(Run { per_second: conversions as f64 / start.elapsed().as_secs_f64(), latency })
}

fn write_conversions(report: &mut String, count: usize, connections: usize, orders: &Run, conversions: &Run) -> std::fmt::Result {
    writeln!(report, "### Convert over HTTP: accepted conversions beside placeOrder\n")?;
    writeln!(
        report,
        "{count} of each, closed loop over {connections} connections (one per trader), one after the other on the same daemons, after a warm-up. A conversion is two requests: convertQuote (priced from the pair's set price, the house's inventory held by the ledger) and acceptConvertQuote (settled and durable); its latency is from the quote's request to the accept's answer.\n"
    )?;
    writeln!(report, "| requests | per second | vs placeOrder | p50 µs | p90 µs | p99 µs | max µs |")?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|")?;
    for (name, run) in [("placeOrder (each answered after matching and settlement)", orders), ("conversions (convertQuote + acceptConvertQuote)", conversions)]
    {
        let l = &run.latency;
        writeln!(
            report,
            "| {name} | {:.0} | {:.3}x | {} | {} | {} | {} |",
            run.per_second,
            run.per_second / orders.per_second,
            micros(l.value_at_quantile(0.5)),
            micros(l.value_at_quantile(0.9)),
            micros(l.value_at_quantile(0.99)),
            micros(l.max())
        )?;
    }
    writeln!(report)
}

/// The status, the head's length and the body's, once the head is whole.
fn response_head(buffer: &[u8]) -> anyhow::Result<Option<(u16, usize, usize)>> {
    let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else { return Ok(None) };
    let head = std::str::from_utf8(&buffer[..end]).context("the answer's head is not text")?;
    let status = head.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no status line")?;
    let length = head
        .lines()
        .find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim().eq_ignore_ascii_case("content-length").then(|| value.trim().parse::<usize>().ok()).flatten()
        })
        .context("an answer without Content-Length")?;
    Ok(Some((status, end + 4, length)))
}

fn write_scenario(report: &mut String, title: &str, orders: usize, runs: &[(System, Run)]) -> std::fmt::Result {
    let hyper = runs.iter().find(|(s, _)| *s == System::PlainHyper).map(|(_, r)| r.per_second).unwrap_or(f64::NAN);
    writeln!(report, "### placeOrder over HTTP: {title}\n")?;
    writeln!(report, "{orders} limit orders on BTC-USD per system, after a warm-up of a tenth as many.\n")?;
    writeln!(report, "| system | requests/s | vs plain hyper | p50 µs | p90 µs | p99 µs | p99.9 µs | max µs |")?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|---:|---:|")?;
    for (system, run) in runs {
        let l = &run.latency;
        writeln!(
            report,
            "| {} | {:.0} | {:.3}x | {} | {} | {} | {} | {} |",
            system.describe(),
            run.per_second,
            run.per_second / hyper,
            micros(l.value_at_quantile(0.5)),
            micros(l.value_at_quantile(0.9)),
            micros(l.value_at_quantile(0.99)),
            micros(l.value_at_quantile(0.999)),
            micros(l.max())
        )?;
    }
    writeln!(report)
}

/// The three daemons' metrics at one moment: every sample by its name;
/// and the CPU seconds the gateway, the ledger, matching and this process
/// (the measuring client; the ceilings idle meanwhile) have used.
struct Scrape {
    gateway: HashMap<String, f64>,
    ledger: HashMap<String, f64>,
    matching: HashMap<String, f64>,
    cpu_seconds: [f64; 4],
}

impl Scrape {
    /// `pids`: the gateway's, the ledger's and matching's.
    fn all(ports: &Ports, pids: [u32; 3]) -> anyhow::Result<Scrape> {
        let cpu_seconds = [cpu_seconds(&pids[0].to_string())?, cpu_seconds(&pids[1].to_string())?, cpu_seconds(&pids[2].to_string())?, cpu_seconds("self")?];
        Ok(Scrape { gateway: scrape(ports.gateway_metrics)?, ledger: scrape(ports.ledger_metrics)?, matching: scrape(ports.matching_metrics)?, cpu_seconds })
    }
}

/// User and system CPU seconds of `/proc/<process>` (all its threads).
fn cpu_seconds(process: &str) -> anyhow::Result<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{process}/stat"))?;
    // The name in parentheses may hold spaces; the fields after it are fixed:
    // state is field 3, utime 14 and stime 15.
    let fields: Vec<&str> = stat.rsplit_once(')').context("a /proc stat line without its name")?.1.split_whitespace().collect();
    let ticks = |field: usize| fields.get(field - 3).and_then(|v| v.parse::<f64>().ok()).context("a /proc stat line too short");
    // SAFETY: sysconf reads a constant of the running system; it has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok((ticks(14)? + ticks(15)?) / per_second.max(1.0))
}

fn scrape(port: u16) -> anyhow::Result<HashMap<String, f64>> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).with_context(|| format!("reading the metrics on 127.0.0.1:{port}"))?;
    write!(stream, "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n")?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let (_, body) = text.split_once("\r\n\r\n").context("a metrics answer without a body")?;
    Ok(body
        .lines()
        .filter(|line| !line.starts_with('#'))
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(' ')?;
            Some((name.to_string(), value.parse().ok()?))
        })
        .collect())
}

/// Mean microseconds per observation of each stage between two scrapes,
/// and the group commits' sizes.
struct Breakdown {
    rows: Vec<(&'static str, Option<f64>)>,
}

impl Breakdown {
    fn between(before: &Scrape, after: &Scrape) -> Breakdown {
        let delta = |side: fn(&Scrape) -> &HashMap<String, f64>, name: &str| {
            side(after).get(name).copied().unwrap_or(0.0) - side(before).get(name).copied().unwrap_or(0.0)
        };
        let mean_us = |side: fn(&Scrape) -> &HashMap<String, f64>, name: &str| {
            let count = delta(side, &format!("{name}_count"));
            (count > 0.0).then(|| delta(side, &format!("{name}_sum")) / count * 1e6)
        };
        fn gateway(s: &Scrape) -> &HashMap<String, f64> {
            &s.gateway
        }
        fn ledger(s: &Scrape) -> &HashMap<String, f64> {
            &s.ledger
        }
        fn matching(s: &Scrape) -> &HashMap<String, f64> {
            &s.matching
        }
        let request = mean_us(gateway, "marionette_gateway_request_seconds");
        let auth = mean_us(gateway, "marionette_gateway_auth_seconds");
        let hold = mean_us(gateway, "marionette_gateway_order_hold_seconds");
        let settle = mean_us(gateway, "marionette_gateway_order_settle_seconds");
        let ledger_command = mean_us(ledger, "marionette_ledger_command_seconds");
        let ledger_output = mean_us(ledger, "marionette_ledger_matching_output_seconds");
        let matching_command = mean_us(matching, "marionette_matching_command_seconds");
        let minus = |a: Option<f64>, parts: &[Option<f64>]| Some(a? - parts.iter().map(|p| p.unwrap_or(0.0)).sum::<f64>());
        let per_batch = |side: fn(&Scrape) -> &HashMap<String, f64>, commands: &[&str], batches: &str| {
            let batches = delta(side, batches);
            (batches > 0.0).then(|| commands.iter().map(|c| delta(side, c)).sum::<f64>() / batches)
        };
        let requests = delta(gateway, "marionette_gateway_requests_total");
        let cpu = |process: usize| (requests > 0.0).then(|| (after.cpu_seconds[process] - before.cpu_seconds[process]) / requests * 1e6);
        Breakdown {
            rows: vec![
                ("the whole request, as the gateway's HTTP server sees it", request),
                ("- the token and its session checked", auth),
                ("- the hold: PlaceOrder to the ledger until its outcome", hold),
                ("  - in the ledger: from its engine taking the command to sending the outcome", ledger_command),
                ("  - the rest: the socket both ways, the ledger's reader and inbox, the gateway's wake-up", minus(hold, &[ledger_command])),
                ("- the settlement: the outcome until the order's state after matching", settle),
                ("  - in matching: from its engine taking the order to publishing the output", matching_command),
                ("  - in the ledger: from taking matching's output to sending the order updates", ledger_output),
                ("  - the rest: the ledger's forward, the sockets, the inboxes, the gateway's wake-up", minus(settle, &[matching_command, ledger_output])),
                ("- the rest: HTTP, GraphQL parsing, validation and execution, the catalog, the answer", minus(request, &[auth, hold, settle])),
                ("ledger, per group commit: journal write and fdatasync (the apply runs meanwhile)", mean_us(ledger, "marionette_ledger_journal_seconds")),
                ("ledger, per group commit: apply", mean_us(ledger, "marionette_ledger_apply_seconds")),
                ("ledger, per group commit: invariants and the RocksDB batch encoded", mean_us(ledger, "marionette_ledger_encode_seconds")),
                ("ledger, per group commit: waiting for the previous RocksDB write", mean_us(ledger, "marionette_ledger_store_wait_seconds")),
                ("ledger, per group commit: the RocksDB write (store writer thread)", mean_us(ledger, "marionette_ledger_store_write_seconds")),
                (
                    "ledger: commands and matching outputs per group commit",
                    per_batch(ledger, &["marionette_ledger_commands_total", "marionette_ledger_matching_outputs_total"], "marionette_ledger_batches_total"),
                ),
                ("matching, per group commit: encoding and matching its commands", mean_us(matching, "marionette_matching_apply_seconds")),
                ("matching, per group commit: then waiting for the journal's fdatasync", mean_us(matching, "marionette_matching_journal_sync_wait_seconds")),
                ("matching: commands per group commit", per_batch(matching, &["marionette_matching_commands_total"], "marionette_matching_batches_total")),
                ("CPU per request: the gateway", cpu(0)),
                ("CPU per request: the ledger", cpu(1)),
                ("CPU per request: matching", cpu(2)),
                ("CPU per request: the measuring client", cpu(3)),
            ],
        }
    }
}

fn write_breakdown(report: &mut String, breakdowns: &[(String, Breakdown)]) -> std::fmt::Result {
    let Some((_, first)) = breakdowns.first() else { return Ok(()) };
    writeln!(report, "### Where a placeOrder's time goes\n")?;
    writeln!(
        report,
        "Mean µs per request (per group commit where the row says so) over each placeOrder run above, from the daemons' metrics read before and after it.\n"
    )?;
    write!(report, "| stage |")?;
    for (title, _) in breakdowns {
        write!(report, " {title} |")?;
    }
    writeln!(report)?;
    writeln!(report, "|---|{}", "---:|".repeat(breakdowns.len()))?;
    for (row, (stage, _)) in first.rows.iter().enumerate() {
        write!(report, "| {stage} |")?;
        for (_, breakdown) in breakdowns {
            match breakdown.rows[row].1 {
                // A count of commands, not a time.
                Some(value) if stage.ends_with("per group commit") => write!(report, " {value:.1} |")?,
                Some(value) => write!(report, " {value:.0} |")?,
                None => write!(report, " - |")?,
            }
        }
        writeln!(report)?;
    }
    writeln!(report)
}

/// The issue's targets, as ratios and percentiles of this run.
#[derive(Default)]
struct Targets {
    throughput_ratio: Option<f64>,
    rate_p99_us: Option<f64>,
    single_p50_us: Option<f64>,
}

impl Targets {
    fn write(&self, report: &mut String, options: &Options) -> std::fmt::Result {
        if self.throughput_ratio.is_none() && self.rate_p99_us.is_none() && self.single_p50_us.is_none() {
            return Ok(());
        }
        writeln!(report, "### Against the targets\n")?;
        writeln!(report, "| target | this run | met |")?;
        writeln!(report, "|---|---:|---|")?;
        let met = |ok: bool| if ok { "yes" } else { "no" };
        if let Some(ratio) = self.throughput_ratio {
            writeln!(report, "| placeOrder with {} connections at least 0.25x plain hyper | {ratio:.3}x | {} |", options.connections, met(ratio >= 0.25))?;
        }
        if let Some(p99) = self.rate_p99_us {
            writeln!(report, "| p99 at most 2,000 µs at an offered {:.0}/s | {p99:.0} µs | {} |", options.rate, met(p99 <= 2_000.0))?;
        }
        if let Some(p50) = self.single_p50_us {
            writeln!(report, "| p50 at most 1,000 µs on one connection | {p50:.0} µs | {} |", met(p50 <= 1_000.0))?;
        }
        writeln!(report)
    }
}

fn json_string(text: &str) -> String {
    let mut out = String::from("\"");
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A blocking keep-alive HTTP/1.1 connection for the setup; bodies are read by Content-Length.
struct Connection {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
}

impl Connection {
    fn open(port: u16) -> anyhow::Result<Connection> {
        let stream = TcpStream::connect(("127.0.0.1", port))?;
        stream.set_nodelay(true)?;
        Ok(Connection { writer: stream.try_clone()?, reader: BufReader::new(stream) })
    }

    fn request(&mut self, method: &str, path: &str, token: &str, body: &str) -> anyhow::Result<(u16, String)> {
        let auth = if token.is_empty() { String::new() } else { format!("Authorization: Bearer {token}\r\n") };
        write!(self.writer, "{method} {path} HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n{auth}Content-Length: {}\r\n\r\n{body}", body.len())?;
        let mut line = String::new();
        self.reader.read_line(&mut line)?;
        let status = line.split(' ').nth(1).and_then(|s| s.parse().ok()).context("no status line")?;
        let mut length = 0;
        loop {
            line.clear();
            self.reader.read_line(&mut line)?;
            if line == "\r\n" || line.is_empty() {
                break;
            }
            if let Some((name, value)) = line.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                }
            }
        }
        let mut answer = vec![0; length];
        self.reader.read_exact(&mut answer)?;
        Ok((status, String::from_utf8_lossy(&answer).into_owned()))
    }
}

/// The GraphQL ceiling's schema: placeOrder's shape, answered at once.
mod ceiling_schema {
    use async_graphql::{EmptySubscription, Enum, InputObject, Object, Schema, SimpleObject, ID};

    #[derive(Enum, Clone, Copy, PartialEq, Eq)]
    pub enum Side {
        Buy,
        Sell,
    }

    #[derive(Enum, Clone, Copy, PartialEq, Eq)]
    pub enum OrderType {
        Limit,
        Market,
    }

    #[derive(Enum, Clone, Copy, PartialEq, Eq)]
    pub enum OrderStatus {
        Open,
        Filled,
    }

    #[derive(InputObject)]
    pub struct PlaceOrderInput {
        market: String,
        side: Side,
        #[graphql(name = "type")]
        order_type: OrderType,
        price: Option<String>,
        quantity: String,
    }

    #[derive(SimpleObject)]
    pub struct Order {
        id: ID,
        status: OrderStatus,
    }

    pub struct Query;

    #[Object]
    impl Query {
        async fn ping(&self) -> &'static str {
            "pong"
        }
    }

    pub struct Mutation;

    #[Object]
    impl Mutation {
        async fn place_order(&self, input: PlaceOrderInput) -> Order {
            let PlaceOrderInput { market, side, order_type, price, quantity } = input;
            let known = !market.is_empty() && order_type == OrderType::Limit && price.is_some() && !quantity.is_empty();
            let status = if side == Side::Buy && known { OrderStatus::Filled } else { OrderStatus::Open };
            Order { id: ID::from("019361a2-7c4e-7000-8000-000000000001"), status }
        }
    }

    pub type CeilingSchema = Schema<Query, Mutation, EmptySubscription>;

    pub fn schema() -> CeilingSchema {
        Schema::build(Query, Mutation, EmptySubscription).finish()
    }
}

enum Ceiling {
    /// async-graphql behind hyper, as in the gateway, with nothing behind the resolver.
    Graphql,
    /// hyper answering every request with a fixed body.
    Plain,
}

/// A ceiling server on its own runtime (as many workers as the gateway's),
/// stopped when dropped.
struct CeilingServer(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for CeilingServer {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

fn serve_ceiling(port: u16, kind: Ceiling) -> anyhow::Result<CeilingServer> {
    use http_body_util::{BodyExt, Full};
    use hyper::body::Bytes;
    use hyper::header::{HeaderValue, CONTENT_TYPE};

    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    let schema = Arc::new(ceiling_schema::schema());
    let graphql = matches!(kind, Ceiling::Graphql);
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let serve = async {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let _ = stream.set_nodelay(true);
                    let schema = schema.clone();
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(move |request: hyper::Request<hyper::body::Incoming>| {
                            let schema = schema.clone();
                            async move {
                                let body = request.into_body().collect().await.map(|b| b.to_bytes()).unwrap_or_default();
                                let answer = if graphql {
                                    match serde_json::from_slice::<async_graphql::Request>(&body) {
                                        Ok(graphql) => Bytes::from(serde_json::to_vec(&schema.execute(graphql).await).unwrap_or_default()),
                                        Err(error) => Bytes::from(format!(r#"{{"errors":[{{"message":"{error}"}}]}}"#)),
                                    }
                                } else {
                                    Bytes::from_static(br#"{"data":{"ping":"pong, a fixed answer."}}"#)
                                };
                                let mut response = hyper::Response::new(Full::new(answer));
                                response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                                Ok::<_, std::convert::Infallible>(response)
                            }
                        });
                        let _ = hyper::server::conn::http1::Builder::new().serve_connection(hyper_util::rt::TokioIo::new(stream), service).await;
                    });
                }
            };
            tokio::select! {
                _ = serve => {}
                _ = stopped => {}
            }
        });
    });
    Ok(CeilingServer(Some(stop)))
}
