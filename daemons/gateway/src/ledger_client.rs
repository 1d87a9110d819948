//! The gateway's connection to the ledger: one socket, many requests in
//! flight. Commands carry this gateway's sequence (the ledger applies each
//! once); reads carry a request id; both are matched to their answers here.
//! Order updates are broadcast to whoever follows them (the userOrders
//! subscription, cancelOrder); placeOrder's own waiter is found by its order
//! id instead, so that a thousand orders in flight do not each read every
//! update.
//!
//! A command whose connection drops before its outcome is answered
//! UNAVAILABLE: it may or may not have been applied, and the client retries
//! with its idempotency key (clientOrderId, deposit reference, withdrawal
//! key), which the ledger answers with the first result.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use ledger_api::spot::{OrderRecord, OrderStatus, Outcome as SpotOutcome};
use ledger_api::{Answer, Command as LedgerCommand, LedgerError, Outcome, Query, QueryError};
use link::{CertifiedRole, LinkTls};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{broadcast, mpsc, oneshot};
use wire::{Message, Role};

use crate::config::LedgerLinkConfig;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("the ledger is not reachable; try again shortly")]
    Unavailable,
    #[error("the ledger did not answer in time; the request may still take effect, so retry with the same idempotency key")]
    Timeout,
    #[error("too many requests are waiting for the ledger")]
    Busy,
}

enum Request {
    /// `settled`, for a PlaceOrder: the order's first state after pending.
    Command {
        command: LedgerCommand,
        reply: oneshot::Sender<Result<Outcome, LedgerError>>,
        settled: Option<oneshot::Sender<OrderRecord>>,
    },
    Query {
        query: Query,
        reply: oneshot::Sender<Result<Answer, QueryError>>,
    },
}

#[derive(Clone)]
pub struct LedgerClient {
    requests: mpsc::Sender<Request>,
    updates: broadcast::Sender<Arc<Vec<OrderRecord>>>,
    connected: Arc<AtomicBool>,
    timeout: Duration,
}

impl LedgerClient {
    /// Starts the connection task; it reconnects for as long as the runtime lives.
    pub fn start(config: LedgerLinkConfig, tls: Option<LinkTls>) -> LedgerClient {
        let (requests, receiver) = mpsc::channel(config.in_flight_max);
        let (updates, _) = broadcast::channel(4_096);
        let connected = Arc::new(AtomicBool::new(false));
        let client =
            LedgerClient { requests, updates: updates.clone(), connected: connected.clone(), timeout: Duration::from_millis(config.request_timeout_ms) };
        tokio::spawn(run(config, tls, receiver, updates, connected));
        client
    }

    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Acquire)
    }

    /// Order updates from now on.
    pub fn order_updates(&self) -> broadcast::Receiver<Arc<Vec<OrderRecord>>> {
        self.updates.subscribe()
    }

    pub async fn command(&self, command: LedgerCommand) -> Result<Result<Outcome, LedgerError>, LinkError> {
        let (reply, answer) = oneshot::channel();
        self.requests.try_send(Request::Command { command, reply, settled: None }).map_err(|_| LinkError::Busy)?;
        self.wait(answer).await
    }

    /// A PlaceOrder command's outcome and, if it placed an order, where the
    /// order's first state after pending (matching's verdict, settled by the
    /// ledger) arrives. That receiver fails if the connection drops first; it
    /// never fires for an order settled before (a replayed client order id).
    pub async fn place_order(&self, command: LedgerCommand) -> Result<(Result<Outcome, LedgerError>, oneshot::Receiver<OrderRecord>), LinkError> {
        let (reply, answer) = oneshot::channel();
        let (settled, settlement) = oneshot::channel();
        self.requests.try_send(Request::Command { command, reply, settled: Some(settled) }).map_err(|_| LinkError::Busy)?;
        Ok((self.wait(answer).await?, settlement))
    }

    pub async fn query(&self, query: Query) -> Result<Result<Answer, QueryError>, LinkError> {
        let (reply, answer) = oneshot::channel();
        self.requests.try_send(Request::Query { query, reply }).map_err(|_| LinkError::Busy)?;
        self.wait(answer).await
    }

    async fn wait<T>(&self, answer: oneshot::Receiver<T>) -> Result<T, LinkError> {
        match tokio::time::timeout(self.timeout, answer).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(_)) => Err(LinkError::Unavailable),
            Err(_) => Err(LinkError::Timeout),
        }
    }
}

type Waiting<T> = Arc<Mutex<HashMap<u64, oneshot::Sender<T>>>>;

/// A command's reply, and for a PlaceOrder where its settlement goes.
type CommandWaiter = (oneshot::Sender<Result<Outcome, LedgerError>>, Option<oneshot::Sender<OrderRecord>>);

/// Placed orders whose settlement someone awaits, by order id.
type Settling = HashMap<u64, oneshot::Sender<OrderRecord>>;

/// Past this many (and past twice the live ones after a sweep), the
/// waiters that gave up (timed out) are forgotten.
const SETTLING_SWEEP_AT: usize = 4_096;

async fn run(
    config: LedgerLinkConfig,
    tls: Option<LinkTls>,
    mut requests: mpsc::Receiver<Request>,
    updates: broadcast::Sender<Arc<Vec<OrderRecord>>>,
    connected: Arc<AtomicBool>,
) {
    let mut warned = false;
    let mut replicas = Replicas::new(&config);
    // Hints followed without a pause: two replicas with stale views may
    // name each other for the moment of an election.
    let mut hops = 0;
    loop {
        let address = replicas.current().to_string();
        match connect(&address, tls.as_ref(), CertifiedRole::Ledger).await {
            Ok(stream) => {
                warned = false;
                let error = serve(&config, &address, stream, &mut requests, &updates, &connected).await;
                connected.store(false, Ordering::Release);
                match link::NotLeader::of(&error) {
                    Some(refusal) => {
                        replicas.follow(&refusal.leader);
                        tracing::info!(%address, leader = %refusal.leader, next = %replicas.current(), "this ledger replica does not lead; going to the leader");
                        // Straight to the leader it named; a wait while none is named,
                        // and after a few hops.
                        hops += 1;
                        if !refusal.leader.is_empty() && hops <= 2 {
                            continue;
                        }
                    }
                    None => {
                        tracing::warn!(%address, %error, "ledger connection lost; reconnecting");
                        replicas.next();
                    }
                }
            }
            Err(error) => {
                if !warned {
                    tracing::warn!(%address, %error, "cannot reach the ledger; requests answer UNAVAILABLE until it is back");
                    warned = true;
                }
                replicas.next();
                // Nothing can be answered while down: fail what is queued.
                while let Ok(request) = requests.try_recv() {
                    drop(request);
                }
            }
        }
        hops = 0;
        tokio::time::sleep(Duration::from_millis(config.reconnect_ms)).await;
    }
}

/// The ledger's addresses: one host's, or a cluster's replicas, the one
/// to try now first.
struct Replicas {
    addresses: Vec<String>,
    current: usize,
}

impl Replicas {
    fn new(config: &LedgerLinkConfig) -> Replicas {
        let mut addresses = vec![config.address.clone()];
        for replica in &config.replicas {
            if !addresses.contains(replica) {
                addresses.push(replica.clone());
            }
        }
        Replicas { addresses, current: 0 }
    }

    fn current(&self) -> &str {
        &self.addresses[self.current]
    }

    fn next(&mut self) {
        self.current = (self.current + 1) % self.addresses.len();
    }

    /// Goes to `leader`, the address a replica's refusal named (a leader
    /// the config does not list is tried too: the cluster knows better);
    /// to the next replica when it named none.
    fn follow(&mut self, leader: &str) {
        if leader.is_empty() {
            return self.next();
        }
        match self.addresses.iter().position(|address| address == leader) {
            Some(index) => self.current = index,
            None => {
                tracing::warn!(%leader, "the leader's address is not in ledger.address or ledger.replicas; add it there");
                self.addresses.push(leader.to_string());
                self.current = self.addresses.len() - 1;
            }
        }
    }
}

pub(crate) trait Duplex: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Duplex for T {}

/// A Unix socket, or mutual TLS over TCP with a server whose certificate
/// names `server` (see `link::tls`).
pub(crate) async fn connect(address: &str, tls: Option<&LinkTls>, server: CertifiedRole) -> std::io::Result<Box<dyn Duplex>> {
    if let Some(path) = address.strip_prefix("unix:") {
        return Ok(Box::new(tokio::net::UnixStream::connect(path).await?));
    }
    let host_port = address.trim_start_matches("tcp:");
    let Some(tls) = tls else {
        return Err(std::io::Error::other(link::PeerError::TlsNotConfigured));
    };
    let stream = tokio::net::TcpStream::connect(host_port).await?;
    stream.set_nodelay(true)?;
    Ok(Box::new(tls.connect_async(stream, host_port, server).await?))
}

type Reader = tokio::io::ReadHalf<Box<dyn Duplex>>;
type Writer = tokio::io::WriteHalf<Box<dyn Duplex>>;

/// A connection that said Hello (as a gateway) and got its Welcome:
/// `commands_applied` is the last command of ours the daemon applied, and
/// `buffer` holds what was read past the Welcome.
pub(crate) struct Greeted {
    pub reader: Reader,
    pub writer: Writer,
    pub buffer: Vec<u8>,
    pub commands_applied: u64,
}

pub(crate) async fn greet(stream: Box<dyn Duplex>, peer: wire::PeerId, subscribe: bool) -> std::io::Result<Greeted> {
    let (mut reader, mut writer) = tokio::io::split(stream);
    let mut hello = Vec::new();
    wire::encode_frame(0, &Message::Hello { peer, role: Role::Gateway, outputs_applied: 0, subscribe }, &mut hello);
    writer.write_all(&hello).await?;
    let mut buffer = Vec::new();
    match read_sequenced(&mut reader, &mut buffer).await? {
        (_, Message::Welcome { commands_applied, .. }) => Ok(Greeted { reader, writer, buffer, commands_applied }),
        (_, Message::Error { code: wire::ProtocolErrorCode::NotLeader, detail }) => Err(std::io::Error::other(link::NotLeader { leader: detail })),
        (_, Message::Error { code, detail }) => Err(std::io::Error::other(format!("refused: {code}: {detail}"))),
        (_, other) => Err(std::io::Error::other(format!("expected Welcome, got {other:?}"))),
    }
}

async fn serve(
    config: &LedgerLinkConfig,
    address: &str,
    stream: Box<dyn Duplex>,
    requests: &mut mpsc::Receiver<Request>,
    updates: &broadcast::Sender<Arc<Vec<OrderRecord>>>,
    connected: &AtomicBool,
) -> std::io::Error {
    let Greeted { mut reader, mut writer, mut buffer, commands_applied } = match greet(stream, config.peer_id, true).await {
        Ok(greeted) => greeted,
        Err(error) => return error,
    };
    let mut next_sequence = commands_applied + 1;
    connected.store(true, Ordering::Release);
    tracing::info!(%address, next_sequence, "connected to the ledger");
    let commands: Arc<Mutex<HashMap<u64, CommandWaiter>>> = Arc::default();
    let queries: Waiting<Result<Answer, QueryError>> = Arc::default();
    let mut next_query = 1u64;
    let receiving = {
        let (commands, queries, updates) = (commands.clone(), queries.clone(), updates.clone());
        async move {
            let mut settling = Settling::new();
            let mut sweep_at = SETTLING_SWEEP_AT;
            loop {
                let (sequence, message) = match read_sequenced(&mut reader, &mut buffer).await {
                    Ok(frame) => frame,
                    Err(error) => return error,
                };
                match message {
                    Message::LedgerOutcome { peer_sequence, outcome } => {
                        let waiter = commands.lock().unwrap_or_else(|p| p.into_inner()).remove(&peer_sequence);
                        if let (Some((reply, settled)), Some(outcome)) = (waiter, outcome) {
                            // Before the next frame: the ledger sends an outcome before the updates of its batch, and the settlement comes later still.
                            // An OCO list settles with its stop, matching's last word on placing it.
                            if let (Some(settled), Ok(Outcome::Spot(SpotOutcome::OrderPlaced(order_id) | SpotOutcome::OcoPlaced { stop: order_id, .. }))) =
                                (settled, &outcome)
                            {
                                if settling.len() >= sweep_at {
                                    settling.retain(|_, waiter| !waiter.is_closed());
                                    // Live waiters stay: sweep again once as many more have come, not at every order.
                                    sweep_at = (settling.len() * 2).max(SETTLING_SWEEP_AT);
                                }
                                settling.insert(*order_id, settled);
                            }
                            let _ = reply.send(outcome);
                        }
                    }
                    Message::LedgerAnswer(answer) => {
                        if let Some(waiter) = queries.lock().unwrap_or_else(|p| p.into_inner()).remove(&sequence) {
                            let _ = waiter.send(answer);
                        }
                    }
                    Message::OrderUpdates(orders) => {
                        if !settling.is_empty() {
                            for record in orders.iter().filter(|record| record.status != OrderStatus::Pending) {
                                if let Some(waiter) = settling.remove(&record.order.order_id) {
                                    let _ = waiter.send(record.clone());
                                }
                            }
                        }
                        let _ = updates.send(Arc::new(orders));
                    }
                    // The replica stopped leading: it names the one that leads now.
                    Message::Error { code: wire::ProtocolErrorCode::NotLeader, detail } => return std::io::Error::other(link::NotLeader { leader: detail }),
                    Message::Error { code, detail } => return std::io::Error::other(format!("the ledger refused us: {code}: {detail}")),
                    _ => {}
                }
            }
        }
    };
    let sending = async {
        let mut frames = Vec::new();
        while let Some(request) = requests.recv().await {
            frames.clear();
            let mut request = Some(request);
            // Everything already queued goes in one write.
            while let Some(next) = request.take().or_else(|| requests.try_recv().ok()) {
                match next {
                    Request::Command { command, reply, settled } => {
                        commands.lock().unwrap_or_else(|p| p.into_inner()).insert(next_sequence, (reply, settled));
                        wire::encode_frame(next_sequence, &Message::LedgerCommand(command), &mut frames);
                        next_sequence += 1;
                    }
                    Request::Query { query, reply } => {
                        queries.lock().unwrap_or_else(|p| p.into_inner()).insert(next_query, reply);
                        wire::encode_frame(next_query, &Message::LedgerQuery(query), &mut frames);
                        next_query += 1;
                    }
                }
                if frames.len() > 1 << 20 {
                    break;
                }
            }
            if let Err(error) = writer.write_all(&frames).await {
                return error;
            }
        }
        std::io::Error::other("the gateway is stopping")
    };
    // Whichever side fails first ends the connection; the waiters are dropped,
    // so their requests answer UNAVAILABLE.
    tokio::select! {
        error = receiving => error,
        error = sending => error,
    }
}

/// The next frame; `buffer` keeps what was read past it.
pub(crate) async fn read_sequenced<R: AsyncRead + Unpin>(reader: &mut R, buffer: &mut Vec<u8>) -> std::io::Result<(u64, Message)> {
    loop {
        match wire::decode_frame(buffer, 64 << 20) {
            Ok(Some((frame, used))) => {
                buffer.drain(..used);
                return Ok((frame.sequence, frame.message));
            }
            Ok(None) => {}
            Err(error) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, error.to_string())),
        }
        let mut chunk = [0u8; 64 * 1024];
        let n = reader.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "the daemon closed the connection"));
        }
        buffer.extend_from_slice(&chunk[..n]);
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use ledger_api::LedgerStatus;
    use tokio::net::UnixListener;

    use super::*;

    /// A replica that turns every peer away naming `leader`; counts them.
    fn follower(socket: &Path, leader: String) -> Arc<std::sync::atomic::AtomicUsize> {
        let listener = UnixListener::bind(socket).unwrap();
        let turned_away = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let count = turned_away.clone();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut buffer = Vec::new();
                if let Ok((_, Message::Hello { .. })) = read_sequenced(&mut stream, &mut buffer).await {
                    count.fetch_add(1, Ordering::Relaxed);
                    let _ = stream.write_all(&wire::encode_error(wire::ProtocolErrorCode::NotLeader, leader.clone())).await;
                }
            }
        });
        turned_away
    }

    /// The leading replica: welcomes, and answers every status query.
    fn leader(socket: &Path) {
        let listener = UnixListener::bind(socket).unwrap();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let (mut reader, mut writer) = tokio::io::split(stream);
                    let mut buffer = Vec::new();
                    let mut frames = Vec::new();
                    wire::encode_frame(0, &Message::Welcome { commands_applied: 0, outputs_last: 0 }, &mut frames);
                    while let Ok((sequence, message)) = read_sequenced(&mut reader, &mut buffer).await {
                        if let Message::LedgerQuery(_) = message {
                            let status = LedgerStatus { journal_applied: 42, ..LedgerStatus::default() };
                            wire::encode_frame(sequence, &Message::LedgerAnswer(Ok(Answer::Status(status))), &mut frames);
                        }
                        if writer.write_all(&frames).await.is_err() {
                            return;
                        }
                        frames.clear();
                    }
                });
            }
        });
    }

    async fn status_through(client: &LedgerClient) -> u64 {
        for _ in 0..400 {
            if let Ok(Ok(Answer::Status(status))) = client.query(Query::Status).await {
                return status.journal_applied;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("the gateway never reached the leading replica");
    }

    fn config(address: String, replicas: Vec<String>) -> LedgerLinkConfig {
        LedgerLinkConfig { address, replicas, reconnect_ms: 20, request_timeout_ms: 500, ..LedgerLinkConfig::default() }
    }

    #[tokio::test]
    async fn a_follower_s_refusal_sends_the_gateway_to_the_leader_it_names() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second, third) = (dir.path().join("1.sock"), dir.path().join("2.sock"), dir.path().join("3.sock"));
        let leading = format!("unix:{}", third.display());
        // Listed first, and second: both followers name the third.
        let turned_away = [follower(&first, leading.clone()), follower(&second, leading.clone())];
        leader(&third);
        let client = LedgerClient::start(config(format!("unix:{}", first.display()), vec![format!("unix:{}", second.display()), leading]), None);
        assert_eq!(status_through(&client).await, 42);
        assert_eq!(turned_away[0].load(Ordering::Relaxed), 1, "the first replica was asked once, then its hint followed");
        assert_eq!(turned_away[1].load(Ordering::Relaxed), 0, "the named leader was next, not the next in the list");
    }

    #[tokio::test]
    async fn a_leader_the_config_does_not_list_is_followed_and_no_hint_tries_the_next() {
        let dir = tempfile::tempdir().unwrap();
        let (first, second, third) = (dir.path().join("1.sock"), dir.path().join("2.sock"), dir.path().join("3.sock"));
        // The first knows no leader yet (an election): the gateway tries the
        // second, which names a leader missing from the config.
        follower(&first, String::new());
        follower(&second, format!("unix:{}", third.display()));
        leader(&third);
        let client = LedgerClient::start(config(format!("unix:{}", first.display()), vec![format!("unix:{}", second.display())]), None);
        assert_eq!(status_through(&client).await, 42);
    }
}
