//! The real `marionette-ledger` and `marionette-matching` binaries on a
//! temporary directory, driven over their Unix sockets: orders held,
//! matched and settled across the two processes; kill -9 of either at any
//! moment loses nothing acknowledged and applies nothing twice; bad input
//! is refused with a code and the daemon stays up.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command as Process, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use ::ledger::service::LedgerService;
use ledger_api::spot::{Market as LedgerMarket, OrderRecord, OrderRequest, OrderStatus};
use ledger_api::wallet::Balance;
use ledger_api::{
    operators, spot, wallet, Answer as QueryAnswer, AssetId, AssetSpec, Command as LedgerCommand, LedgerError, LedgerStatus, MarketId, OrderId, Outcome,
    Query as LedgerQuery, UserId,
};
use link::{Address, Client};
use matching_core::{MarketSpec, OrderKind, SelfTradePrevention, Side, TimeInForce};
use products::LedgerLimits;
use rand::{rngs::SmallRng, Rng, SeedableRng};
use wire::{Message, Role};

const BTC: AssetId = 1;
const USD: AssetId = 2;
const MARKET: MarketId = 1;

/// marionette-matching is another package's binary: build it once per test run.
fn matching_binary() -> PathBuf {
    static BUILT: OnceLock<PathBuf> = OnceLock::new();
    BUILT
        .get_or_init(|| {
            let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
            let status = Process::new(cargo).args(["build", "--quiet", "-p", "matching", "--bin", "marionette-matching"]).status().unwrap();
            assert!(status.success(), "building marionette-matching failed");
            Path::new(env!("CARGO_BIN_EXE_marionette-ledger")).with_file_name("marionette-matching")
        })
        .clone()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

struct Daemon {
    child: Child,
    metrics_port: u16,
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, signal: i32) -> i32;
}

impl Daemon {
    fn spawn(binary: &Path, config: &Path, metrics_port: u16) -> Daemon {
        let child = Process::new(binary)
            .arg("--config")
            .arg(config)
            .stdout(Stdio::null())
            .stderr(if std::env::var_os("SHOW_DAEMON_LOG").is_some() { Stdio::inherit() } else { Stdio::null() })
            .spawn()
            .unwrap();
        let daemon = Daemon { child, metrics_port };
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // The metrics port is bound after recovery and the peer socket.
            if std::net::TcpStream::connect(("127.0.0.1", metrics_port)).is_ok() {
                return daemon;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{} did not become ready", binary.display());
    }

    fn kill_9(mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }

    fn stop(mut self) {
        // SAFETY: kill(2) on our own child process, by its pid; it touches no memory of ours.
        unsafe { libc_kill(self.child.id() as i32, 15) };
        let status = self.child.wait().unwrap();
        assert!(status.success(), "SIGTERM must stop the daemon cleanly: {status}");
    }

    fn metrics(&self) -> String {
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", self.metrics_port)).unwrap();
        stream.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Both daemons' configs in one directory.
struct System {
    dir: PathBuf,
    ledger_metrics: u16,
    matching_metrics: u16,
}

impl System {
    fn new(dir: &Path) -> System {
        let system = System { dir: dir.into(), ledger_metrics: free_port(), matching_metrics: free_port() };
        std::fs::write(
            dir.join("matching.toml"),
            format!(
                "[listen]\naddress = \"unix:{}\"\nmetrics_address = \"127.0.0.1:{}\"\n[storage]\ndata_dir = \"{}\"\n[log]\nformat = \"text\"\n",
                dir.join("matching.sock").display(),
                system.matching_metrics,
                dir.join("matching").display()
            ),
        )
        .unwrap();
        std::fs::write(
            dir.join("ledger.toml"),
            format!(
                "[listen]\naddress = \"unix:{}\"\nmetrics_address = \"127.0.0.1:{}\"\n[matching]\naddress = \"unix:{}\"\nreconnect_ms = 50\n[storage]\ndata_dir = \"{}\"\n[approvals]\n{APPROVALS_OF_ONE}[log]\nformat = \"text\"\n",
                system.ledger_socket().display(),
                system.ledger_metrics,
                dir.join("matching.sock").display(),
                system.ledger_dir().display()
            ),
        )
        .unwrap();
        system
    }

    fn ledger_socket(&self) -> PathBuf {
        self.dir.join("ledger.sock")
    }

    fn ledger_dir(&self) -> PathBuf {
        self.dir.join("ledger")
    }

    fn start_ledger(&self) -> Daemon {
        Daemon::spawn(Path::new(env!("CARGO_BIN_EXE_marionette-ledger")), &self.dir.join("ledger.toml"), self.ledger_metrics)
    }

    fn start_matching(&self) -> Daemon {
        Daemon::spawn(&matching_binary(), &self.dir.join("matching.toml"), self.matching_metrics)
    }

    fn connect(&self, peer: u32) -> Peer {
        let (client, welcome) = Client::connect(&Address::Unix(self.ledger_socket()), peer, Role::Test, 0, false).unwrap();
        Peer { client, next: welcome.commands_applied + 1, request: 0, bootstrapped: false }
    }
}

/// These tests are not about four-eyes (products/tests/operators.rs and
/// the security suite are): one operator's approval is enough here.
const APPROVALS_OF_ONE: &str = "deposit = 1\nwithdrawal_approval = 1\nhouse_inventory = 1\nasset = 1\nmarket = 1\noperator = 1\n";

/// The operator the peers' operator actions name.
const OPERATOR: UserId = 1_000_000;

/// A peer of the ledger, sending commands in sequence and reading.
struct Peer {
    client: Client,
    next: u64,
    request: u64,
    bootstrapped: bool,
}

impl Peer {
    /// An operator's action goes as the operator's proposal (the first
    /// operator made on the way), and its outcome is the action's.
    fn command(&mut self, command: LedgerCommand) -> Result<Outcome, LedgerError> {
        if command.operator_action().is_none() {
            return self.send(command);
        }
        if !self.bootstrapped {
            self.send(LedgerCommand::Operators(operators::Command::Bootstrap { operator: OPERATOR }))?;
            self.bootstrapped = true;
        }
        match self.send(LedgerCommand::Operators(operators::Command::Propose {
            operator: OPERATOR,
            action: operators::Action::Ledger(command.to_action().unwrap()),
        }))? {
            Outcome::Operators(operators::Outcome::Executed { outcome, .. }) => Ok(outcome.into()),
            other => panic!("one approval is enough here, got {other:?}"),
        }
    }

    fn send(&mut self, command: LedgerCommand) -> Result<Outcome, LedgerError> {
        let sequence = self.next;
        self.client.send(sequence, &Message::LedgerCommand(command)).unwrap();
        self.next += 1;
        loop {
            match self.client.recv().unwrap().message {
                Message::LedgerOutcome { peer_sequence, outcome } if peer_sequence == sequence => return outcome.expect("a fresh command's outcome"),
                Message::LedgerOutcome { .. } => continue,
                other => panic!("expected an outcome, got {other:?}"),
            }
        }
    }

    fn query(&mut self, query: LedgerQuery) -> QueryAnswer {
        self.request += 1;
        self.client.send(self.request, &Message::LedgerQuery(query)).unwrap();
        loop {
            let frame = self.client.recv().unwrap();
            match frame.message {
                Message::LedgerAnswer(answer) if frame.sequence == self.request => return answer.unwrap(),
                Message::LedgerOutcome { .. } | Message::LedgerAnswer(_) => continue,
                other => panic!("expected an answer, got {other:?}"),
            }
        }
    }

    fn status(&mut self) -> LedgerStatus {
        match self.query(LedgerQuery::Status) {
            QueryAnswer::Status(status) => status,
            other => panic!("{other:?}"),
        }
    }

    fn order(&mut self, order_id: OrderId) -> OrderRecord {
        match self.query(LedgerQuery::Spot(spot::Query::Order { order_id })) {
            QueryAnswer::Spot(spot::Answer::Order(Some(order))) => order,
            other => panic!("order {order_id}: {other:?}"),
        }
    }

    fn balances(&mut self, user: UserId) -> Vec<(AssetId, Balance)> {
        match self.query(LedgerQuery::Wallet(wallet::Query::Balances { user })) {
            QueryAnswer::Wallet(wallet::Answer::Balances(balances)) => balances,
            other => panic!("{other:?}"),
        }
    }

    /// Waits until everything forwarded was confirmed and no output is pending.
    fn wait_settled(&mut self, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.status();
            if status.matching_connected && status.outbox_pending == 0 {
                std::thread::sleep(Duration::from_millis(100));
                if self.status() == status {
                    return;
                }
            }
            assert!(Instant::now() < deadline, "{what}: never settled: {status:?}");
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

fn market() -> LedgerMarket {
    LedgerMarket {
        base: BTC,
        quote: USD,
        base_units_per_lot: 100_000,
        trading: true,
        spec: MarketSpec {
            id: MARKET,
            quote_units_per_tick_lot: 10,
            tick_lot_scale: 0,
            maker_fee_ppm: 1_000,
            taker_fee_ppm: 2_000,
            price_ticks_max: 1_000_000,
            quantity_lots_max: 1_000,
            price_band_ppm: 0,
        },
    }
}

fn setup(peer: &mut Peer, users: u64) {
    let mut commands = vec![
        LedgerCommand::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }),
        LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 2 }),
        LedgerCommand::Spot(spot::Command::CreateMarket(market())),
    ];
    for user in 1..=users {
        commands.push(LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: USD, amount: 100_000_000, reference: format!("usd-{user}") }));
        commands.push(LedgerCommand::Wallet(wallet::Command::Deposit { user, asset: BTC, amount: 100_000_000, reference: format!("btc-{user}") }));
    }
    for command in commands {
        peer.command(command).unwrap();
    }
}

fn limit(user: UserId, side: Side, price: u64, quantity: u64) -> LedgerCommand {
    LedgerCommand::Spot(spot::Command::PlaceOrder {
        user,
        request: OrderRequest {
            market: MARKET,
            side,
            kind: OrderKind::Limit,
            time_in_force: TimeInForce::Gtc,
            post_only: false,
            price: Some(price),
            quantity,
            self_trade: SelfTradePrevention::CancelTaker,
            expires_at_ms: None,
            trigger: None,
            reduce_only: false,
        },
        client_order_id: None,
    })
}

fn placed(outcome: Result<Outcome, LedgerError>) -> OrderId {
    match outcome {
        Ok(Outcome::Spot(spot::Outcome::OrderPlaced(order_id))) => order_id,
        other => panic!("expected OrderPlaced, got {other:?}"),
    }
}

/// Opens the stopped ledger's data directory the way start-up does and
/// checks every invariant: per-asset sums zero, nothing negative, LOCKED
/// equal to the open holds.
fn audit(dir: &Path) -> LedgerService {
    let (service, _) = LedgerService::open(dir, LedgerLimits::default()).unwrap();
    service.ledger().check_invariants().unwrap();
    service
}

#[test]
fn an_order_is_held_matched_and_settled_across_the_two_daemons() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(dir.path());
    let matching = system.start_matching();
    let ledger = system.start_ledger();
    let mut peer = system.connect(7);
    setup(&mut peer, 2);
    // A gateway-like subscriber of order updates.
    let (mut watcher, _) = Client::connect(&Address::Unix(system.ledger_socket()), 8, Role::Test, 0, true).unwrap();

    let sell = placed(peer.command(limit(1, Side::Sell, 50, 4)));
    let buy = placed(peer.command(limit(2, Side::Buy, 55, 3)));
    peer.wait_settled("the crossing orders");
    watcher.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let mut seen: Vec<(OrderId, OrderStatus, u64)> = Vec::new();
    while let Ok(frame) = watcher.recv() {
        if let Message::OrderUpdates(orders) = frame.message {
            seen.extend(orders.iter().map(|o| (o.order.order_id, o.status, o.filled)));
        }
    }
    let of = |id| seen.iter().filter(|(o, ..)| *o == id).map(|(_, status, filled)| (*status, *filled)).collect::<Vec<_>>();
    assert_eq!(of(buy).first(), Some(&(OrderStatus::Pending, 0)), "held before matching: {seen:?}");
    assert_eq!(of(buy).last(), Some(&(OrderStatus::Filled, 3)), "{seen:?}");
    assert_eq!(of(sell).last(), Some(&(OrderStatus::PartiallyFilled, 3)), "{seen:?}");
    let (sell, buy) = (peer.order(sell), peer.order(buy));
    assert_eq!((sell.status, sell.filled), (OrderStatus::PartiallyFilled, 3), "{sell:?}");
    assert_eq!((buy.status, buy.filled), (OrderStatus::Filled, 3), "{buy:?}");

    // 3 lots at 50 ticks, 10 quote units per tick-lot: 1,500 USD units; the
    // buyer (taker) pays 0.2% = 3, the seller (maker) 0.1% = 2 (both rounded up).
    let buyer: Vec<_> = peer.balances(2);
    let seller: Vec<_> = peer.balances(1);
    assert_eq!(buyer, vec![(BTC, Balance { available: 100_000_000 + 300_000, locked: 0 }), (USD, Balance { available: 100_000_000 - 1_500 - 3, locked: 0 })]);
    // The seller's last lot is still held.
    assert_eq!(
        seller,
        vec![(BTC, Balance { available: 100_000_000 - 400_000, locked: 100_000 }), (USD, Balance { available: 100_000_000 + 1_500 - 2, locked: 0 })]
    );
    match peer.query(LedgerQuery::Spot(spot::Query::UserTrades { user: 2, market: None, limit: 10 })) {
        QueryAnswer::Spot(spot::Answer::Trades(trades)) => assert_eq!(trades.len(), 1, "{trades:?}"),
        other => panic!("{other:?}"),
    }

    // Cancel releases the rest of the hold once matching confirms it.
    assert!(matches!(
        peer.command(LedgerCommand::Spot(spot::Command::CancelOrder { user: 1, order_id: sell.order.order_id })),
        Ok(Outcome::Spot(spot::Outcome::CancelRequested(_)))
    ));
    peer.wait_settled("the cancel");
    assert_eq!(peer.order(sell.order.order_id).status, OrderStatus::Cancelled);
    assert_eq!(peer.balances(1)[0], (BTC, Balance { available: 100_000_000 - 300_000, locked: 0 }));
    // Someone else's cancel is refused and changes nothing.
    let other = placed(peer.command(limit(1, Side::Sell, 60, 1)));
    assert!(peer.command(LedgerCommand::Spot(spot::Command::CancelOrder { user: 2, order_id: other })).is_err());

    let metrics = ledger.metrics();
    assert!(metrics.contains("marionette_ledger_matching_connected 1"), "{metrics}");
    // 8 to set up (the operator's bootstrap first), 3 orders, 2 cancels
    // (one refused): each counted once, the refusal too.
    assert!(metrics.lines().any(|l| l == "marionette_ledger_commands_total 13"), "{metrics}");
    assert!(metrics.lines().any(|l| l == "marionette_ledger_rejections_total 1"), "{metrics}");
    ledger.stop();
    matching.stop();
    let audited = audit(&system.ledger_dir());
    assert_eq!(products::house::balances(audited.ledger().kernel(), USD).1, 5, "fee revenue is the two fees");
}

#[test]
fn a_resent_command_gets_its_first_outcome_and_is_not_applied_again() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(dir.path());
    let _matching = system.start_matching();
    let _ledger = system.start_ledger();
    let mut peer = system.connect(7);
    setup(&mut peer, 1);
    let first = placed(peer.command(limit(1, Side::Buy, 10, 1)));
    drop(peer);

    // A reconnect: the ledger says how far it applied; resending the last one is answered, not applied.
    let (mut client, welcome) = Client::connect(&Address::Unix(system.ledger_socket()), 7, Role::Test, 0, false).unwrap();
    assert_eq!(welcome.commands_applied, 7);
    client.send(7, &Message::LedgerCommand(limit(1, Side::Buy, 10, 1))).unwrap();
    match client.recv().unwrap().message {
        Message::LedgerOutcome { peer_sequence: 7, outcome: Some(Ok(Outcome::Spot(spot::Outcome::OrderPlaced(order_id)))) } => assert_eq!(order_id, first),
        other => panic!("{other:?}"),
    }
    let mut peer = Peer { client, next: 8, request: 0, bootstrapped: true };
    let second = placed(peer.command(limit(1, Side::Buy, 10, 1)));
    assert_eq!(second, first + 1, "the resend did not place an order");
    peer.wait_settled("two orders");
    assert_eq!(peer.balances(1)[1].1.locked, 2 * products::spot::buy_hold(&market(), 10, 1));
}

#[test]
fn bad_input_is_refused_with_a_code_and_the_daemon_stays_up() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(dir.path());
    let _matching = system.start_matching();
    let _ledger = system.start_ledger();
    let address = Address::Unix(system.ledger_socket());

    // Garbage instead of a frame.
    let mut raw = std::os::unix::net::UnixStream::connect(system.ledger_socket()).unwrap();
    raw.write_all(b"GET / HTTP/1.1\r\n\r\n").unwrap();
    let mut reply = Vec::new();
    raw.read_to_end(&mut reply).unwrap();
    let (frame, _) = wire::decode_frame(&reply, 1 << 20).unwrap().unwrap();
    assert!(matches!(frame.message, Message::Error { code: wire::ProtocolErrorCode::MalformedFrame, .. }), "{frame:?}");

    // Matching's outputs are not a peer's to send.
    let (mut client, _) = Client::connect(&address, 8, Role::Test, 0, false).unwrap();
    client.send(1, &Message::LedgerCommand(LedgerCommand::Spot(spot::Command::ApplyMatching { sequence: 1, events: Vec::new() }))).unwrap();
    let error = client.recv().unwrap_err().to_string();
    assert!(error.contains("role may not send"), "{error}");

    // Nor an operator's action outside a proposal (nothing would name the
    // operator or count approvals), nor the ledger's own thresholds.
    let bare = [
        LedgerCommand::Wallet(wallet::Command::Deposit { user: 1, asset: USD, amount: 100_000_000, reference: "bare".into() }),
        LedgerCommand::Operators(operators::Command::Configure(operators::Thresholds::all(1))),
    ];
    for (peer, command) in [12, 13].into_iter().zip(bare) {
        let (mut client, _) = Client::connect(&address, peer, Role::Test, 0, false).unwrap();
        client.send(1, &Message::LedgerCommand(command)).unwrap();
        let error = client.recv().unwrap_err().to_string();
        assert!(error.contains("role may not send"), "{error}");
    }

    // A sequence gap, and the reserved role.
    let (mut client, _) = Client::connect(&address, 9, Role::Test, 0, false).unwrap();
    let transfer = wallet::Command::Transfer { from: 1, to: 2, asset: USD, amount: 1, key: "gap".into() };
    client.send(5, &Message::LedgerCommand(LedgerCommand::Wallet(transfer))).unwrap();
    let error = client.recv().unwrap_err().to_string();
    assert!(error.contains("sequence"), "{error}");
    assert!(Client::connect(&address, 10, Role::Ledger, 0, false).is_err());

    // A business refusal is an outcome with a code; a bad query is an answer with a reason.
    let mut peer = system.connect(11);
    let refused = peer.command(LedgerCommand::Wallet(wallet::Command::Deposit { user: 1, asset: 99, amount: 5, reference: "r".into() })).unwrap_err();
    assert_eq!(refused.code(), "NOT_FOUND");
    peer.request += 1;
    peer.client.send(peer.request, &Message::LedgerQuery(LedgerQuery::Spot(spot::Query::Orders { user: 1, market: None, status: None, limit: 0 }))).unwrap();
    assert!(matches!(peer.client.recv().unwrap().message, Message::LedgerAnswer(Err(ledger_api::QueryError::BadRequest(_)))));

    // Still serving, and nothing the refused peers sent was applied.
    setup(&mut peer, 1);
    assert_eq!(peer.balances(1).len(), 2);
    for refused_peer in [8, 9, 12, 13] {
        let (_, welcome) = Client::connect(&address, refused_peer, Role::Test, 0, false).unwrap();
        assert_eq!(welcome.commands_applied, 0, "peer {refused_peer}");
    }
    // The config's thresholds were journaled at start, the first audit record.
    match peer.query(LedgerQuery::Operators(operators::Query::Audit { from: 1, limit: 10 })) {
        QueryAnswer::Operators(operators::Answer::Audit(records)) => {
            assert!(matches!(&records[0].event, operators::AuditEvent::ThresholdsChanged { to, .. } if to.deposit == 1), "{records:?}");
            assert!(matches!(records[1].event, operators::AuditEvent::OperatorBootstrapped { operator: OPERATOR }), "{records:?}");
        }
        other => panic!("{other:?}"),
    }
}

/// Random orders and cancels from several users while either daemon is
/// killed with SIGKILL at random moments; every acknowledged order exists
/// exactly once, the ledger's trades are matching's fills, and the books balance.
#[test]
fn kill_9_of_either_daemon_loses_nothing_acknowledged_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(dir.path());
    let mut matching = Some(system.start_matching());
    let mut ledger = Some(system.start_ledger());
    let mut rng = SmallRng::seed_from_u64(0x5eed_0009);
    let users = 8;
    let mut peer = system.connect(7);
    setup(&mut peer, users);
    let mut acknowledged_orders = Vec::new();
    let mut kills = (0, 0);
    for round in 0..12 {
        for _ in 0..rng.random_range(20..60) {
            let user = rng.random_range(1..=users);
            let command = if rng.random_bool(0.2) && !acknowledged_orders.is_empty() {
                LedgerCommand::Spot(spot::Command::CancelOrder { user, order_id: acknowledged_orders[rng.random_range(0..acknowledged_orders.len())] })
            } else {
                let side = if rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
                limit(user, side, rng.random_range(95..105), rng.random_range(1..5))
            };
            if let Ok(Outcome::Spot(spot::Outcome::OrderPlaced(order_id))) = peer.command(command) {
                acknowledged_orders.push(order_id);
            }
        }
        if round % 3 == 2 {
            matching.take().unwrap().kill_9();
            kills.1 += 1;
            std::thread::sleep(Duration::from_millis(rng.random_range(0..100)));
            matching = Some(system.start_matching());
        } else {
            ledger.take().unwrap().kill_9();
            kills.0 += 1;
            ledger = Some(system.start_ledger());
            let next = peer.next;
            peer = system.connect(7);
            assert_eq!(peer.next, next, "every acknowledged command is durable, and nothing more");
        }
    }
    peer.wait_settled("after the kills");
    let status = peer.status();
    let trades = match peer.query(LedgerQuery::Spot(spot::Query::MarketTrades { market: MARKET, limit: 1_000 })) {
        QueryAnswer::Spot(spot::Answer::Trades(trades)) => trades,
        other => panic!("{other:?}"),
    };
    ledger.take().unwrap().stop();

    // Matching's own record of every fill, read from the start of its outputs.
    let (mut observer, welcome) = Client::connect(&Address::Unix(dir.path().join("matching.sock")), 99, Role::Test, 0, true).unwrap();
    assert_eq!(welcome.outputs_last, status.matching_applied, "the ledger applied every output matching has");
    let mut fills = Vec::new();
    for _ in 0..welcome.outputs_last {
        if let Message::Events { events, .. } = observer.recv().unwrap().message {
            fills.extend(events.into_iter().filter_map(|e| if let matching_core::Event::Fill(fill) = e { Some(fill) } else { None }));
        }
    }
    matching.take().unwrap().stop();
    assert!(!fills.is_empty(), "the scenario produced trades");
    let mut ledger_fills: Vec<_> = trades.iter().map(|t| t.fill).collect();
    ledger_fills.reverse();
    assert_eq!(ledger_fills, fills, "the ledger settled each of matching's fills exactly once, in order");

    let audited = audit(&system.ledger_dir());
    assert_eq!(audited.ledger().spot().counters().next_order - 1, acknowledged_orders.len() as u64, "every acknowledged order exists exactly once");
    eprintln!("kills: ledger {}, matching {}; orders {}; fills {}", kills.0, kills.1, acknowledged_orders.len(), fills.len());
}

/// A matching restored from an older backup lacks outputs the ledger already
/// applied; the forwards behind them have left the outbox, so linking up
/// would leave the two books different. The ledger refuses the link (orders
/// wait in the outbox) until matching's own data is back.
#[test]
fn a_matching_that_lost_applied_outputs_is_not_linked_until_its_data_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(dir.path());
    let matching = system.start_matching();
    let ledger = system.start_ledger();
    let mut peer = system.connect(7);
    setup(&mut peer, 2);
    placed(peer.command(limit(1, Side::Sell, 50, 2)));
    peer.wait_settled("the first order");
    let applied = peer.status().matching_applied;
    assert!(applied >= 2, "the market and the order came back from matching");

    matching.stop();
    let matching_dir = dir.path().join("matching");
    std::fs::rename(&matching_dir, dir.path().join("matching-kept")).unwrap();
    let empty = system.start_matching();
    let waiting = placed(peer.command(limit(2, Side::Buy, 40, 1)));
    std::thread::sleep(Duration::from_millis(1_000));
    let status = peer.status();
    assert!(!status.matching_connected, "linked to a matching without the outputs it applied: {status:?}");
    assert_eq!(status.matching_applied, applied, "nothing applied from the empty matching");
    assert_eq!(status.outbox_pending, 1, "the new order waits in the outbox");
    assert_eq!(peer.order(waiting).status, OrderStatus::Pending);
    assert!(ledger.metrics().contains("marionette_ledger_matching_connected 0"));

    empty.stop();
    std::fs::remove_dir_all(&matching_dir).unwrap();
    std::fs::rename(dir.path().join("matching-kept"), &matching_dir).unwrap();
    let _matching = system.start_matching();
    peer.wait_settled("the order that waited");
    assert_eq!(peer.order(waiting).status, OrderStatus::Open);
    assert_eq!(peer.status().matching_applied, applied + 1);
}

/// Plays matching on the socket the ledger's config names: answers each
/// Hello with a Welcome and then sends `output` as its output 1.
fn matching_impostor(socket: &Path, output: Vec<matching_core::Event>) -> std::thread::JoinHandle<()> {
    let listener = std::os::unix::net::UnixListener::bind(socket).unwrap();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut buffer = Vec::new();
            let mut chunk = [0u8; 4096];
            // The ledger's Hello first.
            loop {
                if let Ok(Some((frame, _))) = wire::decode_frame(&buffer, 1 << 20) {
                    assert!(matches!(frame.message, Message::Hello { role: Role::Ledger, .. }), "{frame:?}");
                    break;
                }
                match stream.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => buffer.extend_from_slice(&chunk[..n]),
                }
            }
            let mut frames = Vec::new();
            wire::encode_frame(0, &Message::Welcome { commands_applied: 0, outputs_last: 1 }, &mut frames);
            wire::encode_frame(1, &Message::Events { peer: 1, peer_sequence: 1, events: output.clone() }, &mut frames);
            if stream.write_all(&frames).is_err() {
                continue;
            }
            // Read until the ledger hangs up.
            while matches!(stream.read(&mut chunk), Ok(1..)) {}
        }
    })
}

/// A fill of orders the ledger never held, from "matching": the ledger
/// refuses it, stops its link to matching with an alarm that says what it
/// saw, and goes on serving; restarted, it refuses it again rather than
/// crash in a loop.
#[test]
fn a_matching_output_the_ledger_cannot_settle_stops_the_link_not_the_ledger() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(dir.path());
    let fill = matching_core::Fill {
        market: MARKET,
        maker_order: 77,
        maker_user: 1,
        taker_order: 78,
        taker_user: 2,
        taker_side: Side::Buy,
        price: 10,
        quantity: 1,
        notional: 100,
        notional_rounding: 0,
        maker_fee: 0,
        taker_fee: 0,
    };
    let _impostor = matching_impostor(&dir.path().join("matching.sock"), vec![matching_core::Event::Fill(fill)]);
    for run in 0..2 {
        let ledger = system.start_ledger();
        let mut peer = system.connect(7);
        let deadline = Instant::now() + Duration::from_secs(20);
        while peer.status().matching_alarm.is_none() {
            assert!(Instant::now() < deadline, "run {run}: no alarm; {}", ledger.metrics());
            std::thread::sleep(Duration::from_millis(20));
        }
        let alarm = peer.status().matching_alarm.unwrap();
        assert!(alarm.contains("matching output 1") && alarm.contains("order 77"), "{alarm}");
        assert!(ledger.metrics().contains("marionette_ledger_matching_halted 1"));
        // Still serving: money moves, reads answer, and the fill moved nothing.
        if run == 0 {
            setup(&mut peer, 2);
        }
        assert_eq!(peer.balances(1).len(), 2, "run {run}");
        assert_eq!(peer.status().matching_applied, 0, "the refused output is not applied");
        ledger.stop();
    }
}

/// Heavy reads on a connection: answered apart from its commands, so an
/// order sent behind hundreds of them is settled before they are all
/// answered; and past the reads a connection may have waiting, the rest are
/// answered Unavailable at once, counted, and the ledger keeps serving.
#[test]
fn heavy_reads_do_not_hold_up_the_orders_behind_them() {
    let dir = tempfile::tempdir().unwrap();
    let system = System::new(dir.path());
    let matching = system.start_matching();
    let ledger = system.start_ledger();
    let mut peer = system.connect(7);
    setup(&mut peer, 2);
    const ORDERS: usize = 200;
    for _ in 0..ORDERS {
        placed(peer.command(limit(1, Side::Buy, 100, 1)));
    }
    let heavy = LedgerQuery::Spot(spot::Query::Orders { user: 1, market: None, status: None, limit: 1_000 });
    // Every read's answer and the order's outcome, in the order they arrive.
    let send_reads_then = |peer: &mut Peer, reads: u64, order: Option<LedgerCommand>| -> (Vec<Result<usize, ledger_api::QueryError>>, Option<usize>) {
        let first = peer.request + 1;
        for _ in 0..reads {
            peer.request += 1;
            peer.client.send(peer.request, &Message::LedgerQuery(heavy.clone())).unwrap();
        }
        let sequence = peer.next;
        if let Some(order) = &order {
            peer.client.send(sequence, &Message::LedgerCommand(order.clone())).unwrap();
            peer.next += 1;
        }
        let (mut answers, mut outcome_after) = (Vec::new(), None);
        while answers.len() < reads as usize || (order.is_some() && outcome_after.is_none()) {
            let frame = peer.client.recv().unwrap();
            match frame.message {
                Message::LedgerAnswer(answer) if (first..first + reads).contains(&frame.sequence) => answers.push(answer.map(|a| match a {
                    QueryAnswer::Spot(spot::Answer::Orders(orders)) => orders.len(),
                    other => panic!("{other:?}"),
                })),
                Message::LedgerOutcome { peer_sequence, outcome } if peer_sequence == sequence && order.is_some() => {
                    placed(outcome.expect("a fresh command's outcome"));
                    outcome_after = Some(answers.len());
                }
                _ => {}
            }
        }
        (answers, outcome_after)
    };

    let (answers, outcome_after) = send_reads_then(&mut peer, 300, Some(limit(2, Side::Sell, 200, 1)));
    assert!(answers.iter().all(|a| *a == Ok(ORDERS)), "every read answered in full");
    let outcome_after = outcome_after.unwrap();
    assert!(outcome_after < answers.len(), "the order's outcome came only after all {} reads sent before it were answered", answers.len());
    eprintln!("an order sent behind 300 reads of {ORDERS} orders each was settled after {outcome_after} of their answers");

    let refused_before = metric(&ledger.metrics(), "marionette_ledger_queries_refused_total");
    let (answers, _) = send_reads_then(&mut peer, 3_000, None);
    let refused = answers.iter().filter(|a| **a == Err(ledger_api::QueryError::Unavailable)).count();
    assert!(refused > 0, "3,000 heavy reads at once never reached the limit of {}", ::ledger::server::READS_WAITING_MAX);
    assert_eq!(answers.iter().filter(|a| **a == Ok(ORDERS)).count() + refused, answers.len(), "each read answered in full or refused");
    assert_eq!(metric(&ledger.metrics(), "marionette_ledger_queries_refused_total") - refused_before, refused as u64);
    eprintln!("of 3,000 heavy reads sent at once, {refused} were answered Unavailable");
    assert!(peer.status().matching_connected, "the ledger still serves");
    placed(peer.command(limit(2, Side::Sell, 200, 1)));
    ledger.stop();
    matching.stop();
    audit(&system.ledger_dir());
}

fn metric(metrics: &str, name: &str) -> u64 {
    metrics.lines().find_map(|l| l.strip_prefix(name)?.trim().parse().ok()).unwrap_or_else(|| panic!("no {name}:\n{metrics}"))
}
