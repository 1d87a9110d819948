//! `marionette-bench gateway`: orders placed through the GraphQL API over
//! HTTP/1.1 keep-alive, against the three real daemons; and, in the same run,
//! the same client against a plain hyper endpoint that answers a fixed body,
//! the ceiling for this HTTP stack on this machine.

use std::fmt::Write as _;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use hdrhistogram::Histogram;

use crate::daemon::{daemon_binary, Daemon};
use crate::{micros, new_histogram};

const USAGE: &str = "usage: marionette-bench gateway [--orders N] [--clients N]";
const PASSWORD: &str = "bench: tulip quarry lantern";

struct Options {
    orders: usize,
    clients: usize,
}

struct Measured {
    name: &'static str,
    note: String,
    per_second: f64,
    latency: Histogram<u64>,
}

pub fn run(mut args: impl Iterator<Item = String>) -> anyhow::Result<String> {
    let mut options = Options { orders: 20_000, clients: 8 };
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().with_context(|| format!("{name} needs a value\n{USAGE}"));
        match arg.as_str() {
            "--orders" => options.orders = value("--orders")?.parse()?,
            "--clients" => options.clients = value("--clients")?.parse()?,
            other => bail!("unknown argument {other:?}\n{USAGE}"),
        }
    }
    ensure!(options.orders > 0 && options.clients > 0, "need orders and clients");
    let dir = tempfile::Builder::new().prefix("bench-gateway-").tempdir_in(crate::ledger_bench::bench_dir()?)?;
    let port = free_port()?;
    let _daemons = start(dir.path(), port)?;
    let tokens = setup(port, options.clients)?;
    eprintln!("  placeOrder through marionette-gateway ({} clients, {} orders)", options.clients, options.orders);
    let graphql = drive(port, &tokens, options.orders, |i| {
        // Alternate sides at one price so that about half the orders trade.
        let side = if i % 2 == 0 { "SELL" } else { "BUY" };
        format!(
            r#"{{"query":"mutation {{ placeOrder(input: {{ market: \"BTC-USD\", side: {side}, type: LIMIT, price: \"100\", quantity: \"0.01\" }}) {{ id status }} }}"}}"#
        )
    })?;
    eprintln!("  plain hyper endpoint (the same client, a fixed answer)");
    let ceiling_port = free_port()?;
    let _ceiling = ceiling_server(ceiling_port)?;
    let ceiling = drive(ceiling_port, &tokens, options.orders, |_| r#"{"query":"{ ping }"}"#.to_string())?;
    let measured = [
        Measured {
            name: "marionette-gateway placeOrder",
            note: "GraphQL over HTTP/1.1 keep-alive; each answer after the ledger's group commit and matching's verdict".into(),
            per_second: graphql.0,
            latency: graphql.1,
        },
        Measured {
            name: "plain hyper",
            note: "hyper 1 HTTP/1.1, a fixed 40-byte JSON answer, no GraphQL, no daemons".into(),
            per_second: ceiling.0,
            latency: ceiling.1,
        },
    ];
    let mut report = String::new();
    writeln!(report, "### placeOrder over HTTP\n")?;
    writeln!(
        report,
        "Workload: {} limit orders on BTC-USD from {} keep-alive connections (one user each), alternating sides at one price.\n",
        options.orders, options.clients
    )?;
    writeln!(report, "| system | requests/s | vs plain hyper | p50 µs | p99 µs | max µs |")?;
    writeln!(report, "|---|---:|---:|---:|---:|---:|")?;
    for m in &measured {
        let l = &m.latency;
        writeln!(
            report,
            "| {} ({}) | {:.0} | {:.3}x | {} | {} | {} |",
            m.name,
            m.note,
            m.per_second,
            m.per_second / ceiling.0,
            micros(l.value_at_quantile(0.5)),
            micros(l.value_at_quantile(0.99)),
            micros(l.max())
        )?;
    }
    Ok(report)
}

fn free_port() -> anyhow::Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}

fn start(dir: &Path, port: u16) -> anyhow::Result<Vec<Daemon>> {
    let d = dir.display();
    std::fs::write(dir.join("matching.toml"), format!("[listen]\naddress = \"unix:{d}/matching.sock\"\nmetrics_address = \"\"\n[storage]\ndata_dir = \"{d}/matching\"\n[log]\nformat = \"text\"\nfilter = \"warn\"\n"))?;
    std::fs::write(
        dir.join("ledger.toml"),
        format!("[listen]\naddress = \"unix:{d}/ledger.sock\"\nmetrics_address = \"\"\n[matching]\naddress = \"unix:{d}/matching.sock\"\nreconnect_ms = 50\n[storage]\ndata_dir = \"{d}/ledger\"\n# Measured: orders, not four-eyes.\n[approvals]\ndeposit = 1\nwithdrawal_approval = 1\nhouse_inventory = 1\nasset = 1\nmarket = 1\noperator = 1\n[log]\nformat = \"text\"\nfilter = \"warn\"\n"),
    )?;
    std::fs::write(
        dir.join("gateway.toml"),
        format!("[listen]\naddress = \"127.0.0.1:{port}\"\nmetrics_address = \"\"\nconnections_per_ip_max = 1000000\n[ledger]\naddress = \"unix:{d}/ledger.sock\"\nreconnect_ms = 50\n[matching]\naddress = \"unix:{d}/matching.sock\"\n[admin]\nsocket = \"{d}/admin.sock\"\n[auth]\nkeys_dir = \"{d}/keys\"\ncookie_secure = false\n# Measured: orders; its operator sets the market up with a password alone.\noperators_two_factor_required = false\n[storage]\ndata_dir = \"{d}/gateway\"\n[limits]\nip_requests_per_second = 1000000\nip_burst = 1000000\nuser_requests_per_second = 1000000\nuser_burst = 1000000\nlogin_ip_burst = 1000000\nlogin_account_burst = 1000000\n[log]\nformat = \"text\"\nfilter = \"warn\"\n"),
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
        if let Ok(mut connection) = Connection::open(port) {
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

/// The market, the operator, and one funded user per client; their tokens.
fn setup(port: u16, clients: usize) -> anyhow::Result<Vec<String>> {
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
    let mut tokens = Vec::new();
    for client in 0..clients {
        let email = format!("trader{client}@bench.local");
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

/// `orders` POSTs split over one keep-alive connection per token; requests/s and latency.
fn drive(port: u16, tokens: &[String], orders: usize, body: impl Fn(usize) -> String + Sync) -> anyhow::Result<(f64, Histogram<u64>)> {
    let body = &body;
    let started = Instant::now();
    let histograms = std::thread::scope(|scope| -> anyhow::Result<Vec<Histogram<u64>>> {
        let workers: Vec<_> = tokens
            .iter()
            .enumerate()
            .map(|(client, token)| {
                scope.spawn(move || -> anyhow::Result<Histogram<u64>> {
                    let mut connection = Connection::open(port)?;
                    let mut latency = new_histogram();
                    for i in (client..orders).step_by(tokens.len()) {
                        let sent = Instant::now();
                        let (status, answer) = connection.request("POST", "/graphql", token, &body(i))?;
                        ensure!(status == 200 && !answer.contains("\"errors\""), "request {i}: {status} {answer}");
                        latency.record(sent.elapsed().as_nanos() as u64)?;
                    }
                    Ok(latency)
                })
            })
            .collect();
        workers.into_iter().map(|w| w.join().map_err(|_| anyhow::anyhow!("a client thread panicked"))?).collect()
    })?;
    let seconds = started.elapsed().as_secs_f64();
    let mut latency = new_histogram();
    for h in &histograms {
        latency.add(h)?;
    }
    Ok((orders as f64 / seconds, latency))
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

/// A keep-alive HTTP/1.1 connection; bodies are read by Content-Length.
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

/// The ceiling: hyper answering every request with a fixed body, on its own runtime thread.
struct Ceiling(Option<tokio::sync::oneshot::Sender<()>>);

impl Drop for Ceiling {
    fn drop(&mut self) {
        if let Some(stop) = self.0.take() {
            let _ = stop.send(());
        }
    }
}

fn ceiling_server(port: u16) -> anyhow::Result<Ceiling> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let listener = std::net::TcpListener::bind(("127.0.0.1", port))?;
    listener.set_nonblocking(true)?;
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a tokio runtime");
        runtime.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("a tokio listener");
            let serve = async {
                loop {
                    let Ok((stream, _)) = listener.accept().await else { continue };
                    let _ = stream.set_nodelay(true);
                    tokio::spawn(async move {
                        let service = hyper::service::service_fn(|request: hyper::Request<hyper::body::Incoming>| async move {
                            use http_body_util::BodyExt;
                            let _ = request.into_body().collect().await;
                            let mut response = hyper::Response::new(http_body_util::Full::new(hyper::body::Bytes::from_static(
                                br#"{"data":{"ping":"pong, a fixed answer."}}"#,
                            )));
                            response.headers_mut().insert(hyper::header::CONTENT_TYPE, hyper::header::HeaderValue::from_static("application/json"));
                            Ok::<_, std::convert::Infallible>(response)
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
    Ok(Ceiling(Some(stop)))
}
