//! A seeded, deterministic simulation of the ledger and matching engines and
//! the protocol between them and the gateway (issue 5, test 1).
//!
//! One random number generator, seeded, chooses every step: a trader's next
//! request, which frame is delivered next, when an engine commits a batch,
//! and every fault: a process killed or the power lost at any step (also
//! between a batch's write and its fdatasync), the unsynced part of a journal
//! lost, cut short, written with holes (sectors reach the disk in any order)
//! or with a bit flipped, a bit flipped in synced data (which recovery must
//! refuse), RocksDB losing what it had not flushed, and frames duplicated,
//! reordered, damaged or lost with their connection. The same seed gives the
//! same run, so every failure reproduces from its seed.
//!
//! Real code: the ledger core, the matching core, the journal's record
//! format and its recovery scan, the wire frames and the admission rule both
//! engines use, the daemons' journal entries and the ledger's forwarding
//! rule. Simulated: the disk (one segment per engine), RocksDB (the ledger's
//! last written and last flushed state), the network and the engines' I/O
//! shells, which follow `daemons/ledger/src/engine.rs` and
//! `daemons/matching/src/service.rs` step for step.
//!
//! What is checked, against a model of what the traders saw acknowledged:
//! after every recovery, every acknowledged deposit, withdrawal and order is
//! in the recovered ledger (a copy of it answers each one `Replayed`), every
//! forward matching confirmed and every output the ledger applied survived
//! in matching, and the ledger's invariants hold; at the end, with the
//! network healed and every request answered, custody and pending
//! withdrawals equal the acknowledged deposits and withdrawals exactly, every
//! order was placed once, every acknowledged cancel took its order off both
//! books, the ledger's open orders are matching's book, and replaying each
//! journal from scratch gives the same state hash.

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;

use ledger::engine::MATCHING_PEER;
use ledger::service::JournalEntry as LedgerEntry;
use ledger_api::spot::{Market as LedgerMarket, OrderRequest};
use ledger_api::{convert, house, spot, wallet, AssetSpec, Command as LedgerCommand, LedgerError, Outcome};
use ledger_core::AccountId;
use matching::service::JournalEntry as MatchingEntry;
use matching_core::{
    Command, EngineLimits, Event, FastEngine, MarketSpec, OrderKind, SelfTradePrevention, Side, TimeInForce, Trigger, TriggerDirection, TriggerSource,
};
use products::{Ledger, LedgerLimits, LedgerState};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use wire::{Admission, Message, PeerId, Role};

/// The gateway's peer id at the ledger, and the ledger's at matching.
const GATEWAY_PEER: PeerId = 7;
const LEDGER_PEER: PeerId = 1;
const USERS: u64 = 4;
const BTC: u32 = 1;
const USD: u32 = 2;
/// What the house's inventory is funded with, in each asset, for convert.
const HOUSE_FUNDED: i128 = 1_000_000_000_000;
const MARKET: u32 = 1;
/// Outcomes the ledger keeps per peer for resends; small, so that the
/// "applied, outcome no longer retained" answer is exercised too.
const RETAINED_OUTCOMES: usize = 8;
/// Requests in flight at once from all traders.
const OPEN_REQUESTS_MAX: usize = 12;
/// The unit in which unsynced writes reach the disk, in any order.
const SECTOR_BYTES: usize = 512;
const FRAME_BYTES_MAX: u32 = 1 << 20;

#[derive(Clone, Copy, Debug)]
pub struct Config {
    /// Steps with faults; then the network heals and every request is answered.
    pub steps: u32,
    /// 0 turns every fault off (a control run).
    pub fault_percent: u32,
    /// A bug planted on purpose, to show that the checks catch it.
    pub sabotage: Option<Sabotage>,
}

impl Default for Config {
    fn default() -> Self {
        Config { steps: 2_000, fault_percent: 4, sabotage: None }
    }
}

/// Bugs the checks must catch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sabotage {
    /// The ledger answers without its journal's fdatasync.
    LedgerSkipsSync,
    /// Matching publishes outputs without its journal's fdatasync.
    MatchingSkipsSync,
    /// The ledger's start-up forgets the forwards matching had not confirmed.
    LedgerForgetsItsOutbox,
}

/// What a run did, summed over runs by the caller.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    pub steps: u64,
    pub requests_acknowledged: u64,
    pub fills: u64,
    /// Stops matching armed and fired, by its journal at the end.
    pub stops_armed: u64,
    pub stops_fired: u64,
    pub ledger_crashes: u64,
    pub matching_crashes: u64,
    pub gateway_crashes: u64,
    pub power_losses: u64,
    pub unsynced_lost: u64,
    pub torn_tails_truncated: u64,
    pub sector_holes: u64,
    pub unsynced_bit_flips: u64,
    pub synced_bit_flips_refused: u64,
    pub store_rollbacks: u64,
    pub frames_duplicated: u64,
    pub frames_reordered: u64,
    pub frames_damaged: u64,
    pub connections_dropped: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.steps += other.steps;
        self.requests_acknowledged += other.requests_acknowledged;
        self.fills += other.fills;
        self.stops_armed += other.stops_armed;
        self.stops_fired += other.stops_fired;
        self.ledger_crashes += other.ledger_crashes;
        self.matching_crashes += other.matching_crashes;
        self.gateway_crashes += other.gateway_crashes;
        self.power_losses += other.power_losses;
        self.unsynced_lost += other.unsynced_lost;
        self.torn_tails_truncated += other.torn_tails_truncated;
        self.sector_holes += other.sector_holes;
        self.unsynced_bit_flips += other.unsynced_bit_flips;
        self.synced_bit_flips_refused += other.synced_bit_flips_refused;
        self.store_rollbacks += other.store_rollbacks;
        self.frames_duplicated += other.frames_duplicated;
        self.frames_reordered += other.frames_reordered;
        self.frames_damaged += other.frames_damaged;
        self.connections_dropped += other.connections_dropped;
    }
}

/// A broken property, with the seed that reproduces it and the steps before it.
#[derive(Debug)]
pub struct Failure {
    pub seed: u64,
    pub step: u64,
    pub detail: String,
    pub trace: Vec<String>,
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "seed {} step {}: {}", self.seed, self.step, self.detail)?;
        writeln!(f, "last steps:")?;
        for line in &self.trace {
            writeln!(f, "  {line}")?;
        }
        write!(f, "replay: MARIONETTE_SIM_SEED={} cargo test --workspace --test simulation", self.seed)
    }
}

type Check = Result<(), String>;

// ---------------------------------------------------------------- the disk

/// One journal segment: what was written, and how much of it fdatasync made durable.
#[derive(Clone, Default)]
struct Disk {
    bytes: Vec<u8>,
    synced: usize,
    /// Where each batch starts, for damage placed inside synced batches.
    batch_starts: Vec<usize>,
}

impl Disk {
    fn append(&mut self, sequence: u64, batch_index: usize, payload: &[u8]) {
        if batch_index == 0 {
            self.batch_starts.push(self.bytes.len());
        }
        journal::encode_record(sequence, batch_index as u32, 0, payload, &mut self.bytes);
    }

    fn sync(&mut self) {
        self.synced = self.bytes.len();
    }

    /// What a power loss leaves of the writes fdatasync had not covered.
    fn lose_power(&mut self, rng: &mut SmallRng, stats: &mut Stats) {
        stats.power_losses += 1;
        let length = self.bytes.len();
        if self.synced == length {
            return;
        }
        match rng.random_range(0..5) {
            0 => {
                stats.unsynced_lost += 1;
                self.bytes.truncate(self.synced);
            }
            1 => {} // all of it made it
            2 => {
                let cut = rng.random_range(self.synced..length);
                self.bytes.truncate(cut);
            }
            3 => {
                stats.sector_holes += 1;
                for sector in self.synced / SECTOR_BYTES..=(length - 1) / SECTOR_BYTES {
                    if rng.random_bool(0.5) {
                        let start = (sector * SECTOR_BYTES).max(self.synced);
                        let end = ((sector + 1) * SECTOR_BYTES).min(length);
                        self.bytes[start..end].fill(0);
                    }
                }
            }
            _ => {
                stats.unsynced_bit_flips += 1;
                let at = rng.random_range(self.synced..length);
                self.bytes[at] ^= 1 << rng.random_range(0..8);
            }
        }
    }

    /// Scans the segment as start-up does. Damage inside what was synced is
    /// refused; a torn tail is cut off. Returns the records' payloads.
    fn recover(&mut self, stats: &mut Stats) -> Result<Vec<(u64, Vec<u8>)>, Refused> {
        let scan = journal::scan_segment(&self.bytes, 1);
        match scan.damage {
            None => {}
            Some(journal::Damage::TornTail { offset }) => {
                let offset = offset as usize;
                if offset < self.synced {
                    return Err(Refused::LostSynced(format!("recovery cut the journal at byte {offset}, inside the {} synced bytes", self.synced)));
                }
                self.bytes.truncate(offset);
                stats.torn_tails_truncated += 1;
            }
            Some(journal::Damage::Corrupt { offset, detail }) => return Err(Refused::Corrupt { offset: offset as usize, detail }),
        }
        self.synced = self.bytes.len();
        self.batch_starts.retain(|&start| start < self.bytes.len());
        Ok(scan.records.into_iter().map(|r| (r.sequence, r.payload)).collect())
    }
}

#[derive(Debug)]
enum Refused {
    Corrupt { offset: usize, detail: &'static str },
    LostSynced(String),
}

impl fmt::Display for Refused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refused::Corrupt { offset, detail } => write!(f, "journal corrupt at byte {offset}: {detail}"),
            Refused::LostSynced(detail) => f.write_str(detail),
        }
    }
}

// ---------------------------------------------------------------- the network

/// One connection: frames each way, in order unless a fault reorders them.
#[derive(Default)]
struct Connection {
    to_server: VecDeque<Vec<u8>>,
    to_client: VecDeque<Vec<u8>>,
}

fn frame(sequence: u64, message: &Message) -> Vec<u8> {
    let mut bytes = Vec::new();
    wire::encode_frame(sequence, message, &mut bytes);
    bytes
}

// ---------------------------------------------------------------- matching

struct MatchingNode {
    up: bool,
    disk: Disk,
    engine: FastEngine,
    peers_applied: BTreeMap<PeerId, u64>,
    /// Every output frame, by output sequence - 1 (the daemon keeps a window).
    outputs: Vec<Vec<u8>>,
    pending: Vec<MatchingEntry>,
    /// Written to the journal, not yet synced.
    in_flight: Vec<MatchingEntry>,
    subscribed: bool,
    /// Counted as the journal's commands run, so a recovery counts afresh.
    stops_armed: u64,
    stops_fired: u64,
}

impl MatchingNode {
    fn new() -> MatchingNode {
        MatchingNode {
            up: true,
            disk: Disk::default(),
            engine: FastEngine::new(EngineLimits::default()),
            peers_applied: BTreeMap::new(),
            outputs: Vec::new(),
            pending: Vec::new(),
            in_flight: Vec::new(),
            subscribed: false,
            stops_armed: 0,
            stops_fired: 0,
        }
    }

    /// Start-up: the whole journal replayed into a fresh engine.
    fn recover(disk: Disk, stats: &mut Stats) -> Result<MatchingNode, Refused> {
        let mut node = MatchingNode { disk, ..MatchingNode::new() };
        for (sequence, payload) in node.disk.recover(stats)? {
            let entry: MatchingEntry = postcard::from_bytes(&payload).map_err(|_| Refused::Corrupt { offset: 0, detail: "undecodable" })?;
            node.execute(sequence, &entry);
        }
        Ok(node)
    }

    fn execute(&mut self, sequence: u64, entry: &MatchingEntry) -> Vec<u8> {
        let mut events = Vec::new();
        self.engine.execute(&entry.command, &mut events);
        for event in &events {
            match event {
                Event::StopArmed { .. } => self.stops_armed += 1,
                Event::StopTriggered { .. } => self.stops_fired += 1,
                _ => {}
            }
        }
        self.peers_applied.insert(entry.peer, entry.peer_sequence);
        let output = frame(sequence, &Message::Events { peer: entry.peer, peer_sequence: entry.peer_sequence, events });
        self.outputs.push(output.clone());
        output
    }

    fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }
}

// ---------------------------------------------------------------- the ledger

/// What the ledger's RocksDB holds: the state after a prefix of the journal.
#[derive(Clone, Default)]
struct Stored {
    state: Option<LedgerState>,
    peers_applied: BTreeMap<PeerId, u64>,
    outbox: VecDeque<(u64, Command)>,
    forwarded_last: u64,
    journal_applied: u64,
}

type Answer = Result<Outcome, LedgerError>;

struct LedgerNode {
    up: bool,
    disk: Disk,
    /// Written without RocksDB's log: lost at a crash unless flushed.
    written: Stored,
    flushed: Stored,
    ledger: Ledger,
    peers_applied: BTreeMap<PeerId, u64>,
    admitted: BTreeMap<PeerId, u64>,
    retained: VecDeque<(u64, Answer)>,
    matching_seen: u64,
    outbox: VecDeque<(u64, Command)>,
    forwarded_last: u64,
    /// Set while the link to matching is up: the newest forward handed to it.
    forwarded_sent: Option<u64>,
    journal_applied: u64,
    pending: Vec<LedgerEntry>,
    in_flight: Vec<LedgerEntry>,
    /// Whether the gateway's connection said Hello (its commands are taken).
    gateway_connected: bool,
}

fn limits() -> LedgerLimits {
    LedgerLimits { open_orders_per_user_max: 12, pending_withdrawals_max: 40, ..LedgerLimits::default() }
}

impl LedgerNode {
    /// Start-up: RocksDB's flushed state, then the journal after it.
    fn recover(disk: Disk, flushed: Stored, stats: &mut Stats) -> Result<LedgerNode, Refused> {
        let ledger = match &flushed.state {
            Some(state) => Ledger::restore(limits(), state.clone()),
            None => Ledger::new(limits()),
        };
        let mut node = LedgerNode {
            up: true,
            disk,
            written: flushed.clone(),
            flushed: flushed.clone(),
            ledger,
            peers_applied: flushed.peers_applied.clone(),
            admitted: BTreeMap::new(),
            retained: VecDeque::new(),
            matching_seen: 0,
            outbox: flushed.outbox.clone(),
            forwarded_last: flushed.forwarded_last,
            forwarded_sent: None,
            journal_applied: flushed.journal_applied,
            pending: Vec::new(),
            in_flight: Vec::new(),
            gateway_connected: false,
        };
        let records = node.disk.recover(stats)?;
        let end = records.last().map(|r| r.0).unwrap_or(0);
        if end < node.journal_applied {
            return Err(Refused::LostSynced(format!("RocksDB holds journal sequence {} but the journal ends at {end}", node.journal_applied)));
        }
        for (sequence, payload) in records.into_iter().filter(|r| r.0 > flushed.journal_applied) {
            let entry: LedgerEntry = postcard::from_bytes(&payload).map_err(|_| Refused::Corrupt { offset: 0, detail: "undecodable" })?;
            let _ = node.apply(&entry);
            node.journal_applied = sequence;
        }
        // Replay writes RocksDB without flushing it, like any batch.
        node.persist();
        node.matching_seen = node.ledger.spot().counters().matching_applied;
        node.admitted = node.peers_applied.clone();
        Ok(node)
    }

    /// As `LedgerService::apply`: the peer's sequence, the core, the forward.
    fn apply(&mut self, entry: &LedgerEntry) -> Answer {
        let applied = self.peers_applied.entry(entry.peer).or_default();
        *applied = (*applied).max(entry.peer_sequence);
        let applied = self.ledger.apply(&entry.command, entry.at_ms);
        if let Some(command) = applied.forward {
            self.forwarded_last += 1;
            self.outbox.push_back((self.forwarded_last, command));
        }
        applied.outcome
    }

    fn persist(&mut self) {
        self.written = Stored {
            state: Some(self.ledger.state()),
            peers_applied: self.peers_applied.clone(),
            outbox: self.outbox.clone(),
            forwarded_last: self.forwarded_last,
            journal_applied: self.journal_applied,
        };
    }

    fn confirm_forwarded(&mut self, through: u64) {
        while self.outbox.front().is_some_and(|(sequence, _)| *sequence <= through.min(self.forwarded_last)) {
            self.outbox.pop_front();
        }
    }

    fn peer_applied(&self, peer: PeerId) -> u64 {
        self.peers_applied.get(&peer).copied().unwrap_or(0)
    }

    fn busy(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// Orders that matching confirmed and the ledger has not been asked to resend.
    fn confirmed_through(&self) -> u64 {
        self.outbox.front().map(|(sequence, _)| sequence - 1).unwrap_or(self.forwarded_last)
    }
}

// ---------------------------------------------------------------- traders and the gateway

#[derive(Clone, Debug, PartialEq, Eq)]
// One per request of a test run: the size costs nothing, and a box would
// hide the answers from the pattern matches below.
#[allow(clippy::large_enum_variant)]
enum RequestState {
    /// Not sent, or sent on a connection that is gone: send (again).
    Ready,
    Sent {
        sequence: u64,
    },
    Answered(Answer),
}

struct Request {
    command: LedgerCommand,
    state: RequestState,
}

/// The gateway: stateless but for its connection to the ledger and the
/// sequence numbers on it, like `daemons/gateway/src/ledger_client.rs`.
struct Gateway {
    up: bool,
    /// Set once the ledger's Welcome arrived: the next command sequence.
    next_sequence: Option<u64>,
    waiting: BTreeMap<u64, usize>,
}

// ---------------------------------------------------------------- the world

struct World {
    seed: u64,
    rng: SmallRng,
    config: Config,
    step: u64,
    stats: Stats,
    trace: VecDeque<String>,
    matching: MatchingNode,
    ledger: LedgerNode,
    gateway: Gateway,
    /// gateway (client) to ledger (server).
    front: Option<Connection>,
    /// ledger (client) to matching (server).
    back: Option<Connection>,
    requests: Vec<Request>,
    next_key: u64,
    /// Every request a trader issued, answered or not, by kind: the model.
    placed: BTreeMap<String, Option<u64>>,
}

const TRACE_LINES: usize = 40;

fn btc_usd() -> LedgerMarket {
    LedgerMarket {
        base: BTC,
        quote: USD,
        base_units_per_lot: 100_000,
        trading: true,
        spec: MarketSpec {
            id: MARKET,
            // 0.7 quote units per tick on a lot: most notionals fall
            // between units, so settlement's rounding is in every run.
            quote_units_per_tick_lot: 7,
            tick_lot_scale: 1,
            maker_fee_ppm: 1_000,
            taker_fee_ppm: 2_000,
            price_ticks_max: 1_000_000,
            quantity_lots_max: 1_000_000,
            // Prices are drawn from 95 to 105: a 5% band refuses some, so
            // replays must restore the last trade price the band measures from.
            price_band_ppm: 50_000,
        },
    }
}

impl World {
    fn new(seed: u64, config: Config) -> World {
        let setup = [
            LedgerCommand::CreateAsset(AssetSpec { id: BTC, symbol: "BTC".into(), scale: 8 }),
            LedgerCommand::CreateAsset(AssetSpec { id: USD, symbol: "USD".into(), scale: 6 }),
            LedgerCommand::Spot(spot::Command::CreateMarket(btc_usd())),
            LedgerCommand::House(house::Command::Fund { asset: BTC, amount: HOUSE_FUNDED, reference: "house-btc".into() }),
            LedgerCommand::House(house::Command::Fund { asset: USD, amount: HOUSE_FUNDED, reference: "house-usd".into() }),
            LedgerCommand::Convert(convert::Command::SetPair(convert::PairSpec {
                base: BTC,
                quote: USD,
                price: convert::PriceSource::Set { quote_units: 100, base_units: 1 },
                spread_bps: 10,
                fee_bps: 10,
                base_min: 1,
                base_max: HOUSE_FUNDED,
                base_step: 1,
                quote_ttl_ms: 5_000,
                paused: false,
                exposure_max_base: HOUSE_FUNDED,
                exposure_max_quote: HOUSE_FUNDED,
            })),
        ];
        World {
            seed,
            rng: SmallRng::seed_from_u64(seed),
            config,
            step: 0,
            stats: Stats::default(),
            trace: VecDeque::new(),
            matching: MatchingNode::new(),
            ledger: LedgerNode::recover(Disk::default(), Stored::default(), &mut Stats::default())
                .unwrap_or_else(|_| unreachable!("an empty journal recovers")),
            gateway: Gateway { up: true, next_sequence: None, waiting: BTreeMap::new() },
            front: None,
            back: None,
            requests: setup.into_iter().map(|command| Request { command, state: RequestState::Ready }).collect(),
            next_key: 0,
            placed: BTreeMap::new(),
        }
    }

    fn note(&mut self, line: String) {
        if self.trace.len() == TRACE_LINES {
            self.trace.pop_front();
        }
        self.trace.push_back(format!("{}: {line}", self.step));
    }

    fn fail(&self, detail: String) -> Failure {
        Failure { seed: self.seed, step: self.step, detail, trace: self.trace.iter().cloned().collect() }
    }

    fn fault(&mut self) -> bool {
        self.config.fault_percent > 0 && self.rng.random_range(0..100) < self.config.fault_percent
    }

    // ------------------------------------------------------------ traders

    fn new_request(&mut self) {
        self.next_key += 1;
        let key = self.next_key;
        let user = self.rng.random_range(1..=USERS);
        let command = match self.rng.random_range(0..12) {
            10 => {
                // A quote for dollars into bitcoin, as the gateway would price it at 100.
                let pay = self.rng.random_range(100..100_000);
                let leg = convert::QuoteLeg { base: BTC, quote: USD, sell_base: false, pay, receive: pay / 100, spread: 1 };
                LedgerCommand::Convert(convert::Command::Quote(convert::QuoteRequest { user, legs: vec![leg], fee: 0 }))
            }
            11 => {
                // Accept one of this user's quotes, maybe one accepted or expired already.
                let quotes: Vec<u64> = self
                    .requests
                    .iter()
                    .filter_map(|r| match (&r.command, &r.state) {
                        (
                            LedgerCommand::Convert(convert::Command::Quote(request)),
                            RequestState::Answered(Ok(Outcome::Convert(convert::Outcome::Quoted(quote)))),
                        ) if request.user == user => Some(quote.id),
                        _ => None,
                    })
                    .collect();
                if quotes.is_empty() {
                    return;
                }
                LedgerCommand::Convert(convert::Command::Accept { user, quote: quotes[self.rng.random_range(0..quotes.len())], key: format!("accept-{key}") })
            }
            0..=1 => {
                let asset = if self.rng.random_bool(0.5) { BTC } else { USD };
                LedgerCommand::Wallet(wallet::Command::Deposit {
                    user,
                    asset,
                    amount: self.rng.random_range(1..5_000_000),
                    reference: format!("deposit-{key}"),
                })
            }
            2 => {
                let asset = if self.rng.random_bool(0.5) { BTC } else { USD };
                LedgerCommand::Wallet(wallet::Command::RequestWithdrawal {
                    user,
                    asset,
                    amount: self.rng.random_range(1..200_000),
                    destination: "DE89 3704".into(),
                    key: format!("withdrawal-{key}"),
                })
            }
            3 => {
                // Cancel one of this user's acknowledged orders.
                let orders: Vec<u64> = self
                    .requests
                    .iter()
                    .filter_map(|r| match (&r.command, &r.state) {
                        (
                            LedgerCommand::Spot(spot::Command::PlaceOrder { user: owner, .. } | spot::Command::PlaceOco { user: owner, .. }),
                            RequestState::Answered(Ok(outcome)),
                        ) if *owner == user => order_of(outcome),
                        _ => None,
                    })
                    .collect();
                if orders.is_empty() {
                    return;
                }
                LedgerCommand::Spot(spot::Command::CancelOrder { user, order_id: orders[self.rng.random_range(0..orders.len())] })
            }
            4 => {
                // An OCO list: a limit order a few ticks beyond the trigger, a stop-limit a few past it.
                let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
                let (trigger_price, gap) = (self.rng.random_range(96..105), self.rng.random_range(1..4));
                let (price, stop_price) = match side {
                    Side::Buy => (trigger_price - gap, trigger_price + gap),
                    Side::Sell => (trigger_price + gap, trigger_price - gap),
                };
                let request = spot::OcoRequest {
                    market: MARKET,
                    side,
                    quantity: self.rng.random_range(1..6),
                    price,
                    stop_kind: OrderKind::Limit,
                    stop_price: Some(stop_price),
                    trigger_price,
                    self_trade: SelfTradePrevention::CancelTaker,
                };
                let client_order_id = format!("order-{key}");
                self.placed.insert(client_order_id.clone(), None);
                LedgerCommand::Spot(spot::Command::PlaceOco { user, request, client_order_id: Some(client_order_id) })
            }
            _ => {
                let side = if self.rng.random_bool(0.5) { Side::Buy } else { Side::Sell };
                let time_in_force = if self.rng.random_range(0..4) == 0 { TimeInForce::Ioc } else { TimeInForce::Gtc };
                // One in four a stop, either way from a trigger among the prices traded.
                let trigger = self.rng.random_bool(0.25).then(|| Trigger {
                    source: TriggerSource::LastTrade,
                    direction: if self.rng.random_bool(0.5) { TriggerDirection::AtOrAbove } else { TriggerDirection::AtOrBelow },
                    price: self.rng.random_range(95..106),
                });
                let request = OrderRequest {
                    market: MARKET,
                    side,
                    kind: OrderKind::Limit,
                    time_in_force,
                    post_only: false,
                    price: Some(self.rng.random_range(95..106)),
                    quantity: self.rng.random_range(1..6),
                    self_trade: SelfTradePrevention::CancelTaker,
                    expires_at_ms: None,
                    trigger,
                    reduce_only: false,
                };
                let client_order_id = format!("order-{key}");
                self.placed.insert(client_order_id.clone(), None);
                LedgerCommand::Spot(spot::Command::PlaceOrder { user, request, client_order_id: Some(client_order_id) })
            }
        };
        self.requests.push(Request { command, state: RequestState::Ready });
    }

    /// Sends one ready request over the gateway's connection.
    fn send_request(&mut self, index: usize) {
        let (Some(sequence), Some(connection)) = (self.gateway.next_sequence, self.front.as_mut()) else { return };
        connection.to_server.push_back(frame(sequence, &Message::LedgerCommand(self.requests[index].command.clone())));
        self.requests[index].state = RequestState::Sent { sequence };
        self.gateway.waiting.insert(sequence, index);
        self.gateway.next_sequence = Some(sequence + 1);
        self.note(format!("gateway sends request {index} as {sequence}"));
    }

    fn answered(&mut self, sequence: u64, outcome: Option<Answer>) -> Check {
        let Some(index) = self.gateway.waiting.remove(&sequence) else { return Ok(()) };
        let Some(answer) = outcome else {
            // Applied long ago, outcome not retained: ask again by its key.
            self.requests[index].state = RequestState::Ready;
            return Ok(());
        };
        if let (
            LedgerCommand::Spot(spot::Command::PlaceOrder { client_order_id: Some(id), .. } | spot::Command::PlaceOco { client_order_id: Some(id), .. }),
            Ok(outcome),
        ) = (&self.requests[index].command, &answer)
        {
            let order = order_of(outcome);
            let first = self.placed.get_mut(id).expect("recorded when issued");
            match (*first, order) {
                (Some(before), Some(now)) if before != now => return Err(format!("client order id {id} answered order {before}, then {now}")),
                (None, Some(now)) => *first = Some(now),
                _ => {}
            }
        }
        self.stats.requests_acknowledged += 1;
        self.note(format!("gateway: request {index} answered {answer:?}"));
        self.requests[index].state = RequestState::Answered(answer);
        Ok(())
    }

    /// The gateway's connection is gone: requests in flight answer
    /// UNAVAILABLE and their traders will send them again.
    fn gateway_disconnected(&mut self) {
        for (_, index) in std::mem::take(&mut self.gateway.waiting) {
            self.requests[index].state = RequestState::Ready;
        }
        self.gateway.next_sequence = None;
    }

    // ------------------------------------------------------------ connections

    fn drop_front(&mut self) {
        if self.front.take().is_some() {
            self.note("gateway-ledger connection closed".into());
        }
        self.gateway_disconnected();
        self.ledger.gateway_connected = false;
    }

    fn drop_back(&mut self) {
        if self.back.take().is_some() {
            self.note("ledger-matching connection closed".into());
        }
        self.ledger.forwarded_sent = None;
        self.matching.subscribed = false;
    }

    /// Takes the next whole frame off a direction, or says the stream is bad.
    fn take_frame(queue: &mut VecDeque<Vec<u8>>) -> Option<Result<(u64, Message), ()>> {
        let bytes = queue.pop_front()?;
        Some(match wire::decode_frame(&bytes, FRAME_BYTES_MAX) {
            Ok(Some((frame, used))) if used == bytes.len() => Ok((frame.sequence, frame.message)),
            _ => Err(()),
        })
    }

    fn deliver_to_ledger_from_gateway(&mut self) -> Check {
        let Some(connection) = self.front.as_mut() else { return Ok(()) };
        let Some(received) = World::take_frame(&mut connection.to_server) else { return Ok(()) };
        let Ok((sequence, message)) = received else {
            self.note("ledger: damaged frame from the gateway; closing".into());
            self.drop_front();
            return Ok(());
        };
        match message {
            Message::Hello { peer, .. } if !self.ledger.gateway_connected => {
                // The Welcome must not promise what is still pending.
                self.ledger_commit_all()?;
                let commands_applied = self.ledger.peer_applied(peer);
                self.ledger.admitted.insert(peer, commands_applied);
                self.ledger.gateway_connected = true;
                let welcome = frame(0, &Message::Welcome { commands_applied, outputs_last: self.ledger.journal_applied });
                if let Some(connection) = self.front.as_mut() {
                    connection.to_client.push_back(welcome);
                }
            }
            Message::LedgerCommand(command) if self.ledger.gateway_connected => {
                let admitted = self.ledger.admitted.get(&GATEWAY_PEER).copied().unwrap_or(0);
                match wire::admission(admitted, sequence) {
                    Admission::Next => {
                        self.ledger.admitted.insert(GATEWAY_PEER, sequence);
                        self.ledger.pending.push(LedgerEntry { peer: GATEWAY_PEER, peer_sequence: sequence, at_ms: self.step, command });
                    }
                    Admission::Duplicate if sequence <= self.ledger.peer_applied(GATEWAY_PEER) => {
                        let answer = self.ledger.retained.iter().find(|(s, _)| *s == sequence).map(|(_, a)| a.clone());
                        let bytes = frame(0, &Message::LedgerOutcome { peer_sequence: sequence, outcome: answer });
                        if let Some(connection) = self.front.as_mut() {
                            connection.to_client.push_back(bytes);
                        }
                    }
                    Admission::Duplicate => {}
                    Admission::Gap { expected } => {
                        self.note(format!("ledger: gateway sequence gap (expected {expected}, got {sequence}); closing"));
                        self.drop_front();
                    }
                }
            }
            // A command before Hello, or a second Hello (frames reordered or
            // duplicated): the server refuses the connection.
            _ => {
                self.note("ledger: unexpected frame from the gateway; closing".into());
                self.drop_front();
            }
        }
        Ok(())
    }

    fn deliver_to_gateway(&mut self) -> Check {
        let Some(connection) = self.front.as_mut() else { return Ok(()) };
        let Some(received) = World::take_frame(&mut connection.to_client) else { return Ok(()) };
        let Ok((_, message)) = received else {
            self.note("gateway: damaged frame from the ledger; closing".into());
            self.drop_front();
            return Ok(());
        };
        match message {
            Message::Welcome { commands_applied, .. } if self.gateway.next_sequence.is_none() => {
                self.gateway.next_sequence = Some(commands_applied + 1);
                Ok(())
            }
            Message::LedgerOutcome { peer_sequence, outcome } if self.gateway.next_sequence.is_some() => self.answered(peer_sequence, outcome),
            // A duplicated Welcome is ignored, as the gateway's reader does.
            Message::Welcome { .. } => Ok(()),
            // An outcome before the Welcome: the greeting failed.
            _ => {
                self.note("gateway: unexpected frame before Welcome; closing".into());
                self.drop_front();
                Ok(())
            }
        }
    }

    fn deliver_to_matching(&mut self) -> Check {
        let Some(connection) = self.back.as_mut() else { return Ok(()) };
        let Some(received) = World::take_frame(&mut connection.to_server) else { return Ok(()) };
        let Ok((sequence, message)) = received else {
            self.note("matching: damaged frame from the ledger; closing".into());
            self.drop_back();
            return Ok(());
        };
        match message {
            Message::Hello { peer, outputs_applied, .. } if !self.matching.subscribed => {
                self.matching_commit_all();
                let commands_applied = self.matching.peers_applied.get(&peer).copied().unwrap_or(0);
                let outputs_last = self.matching.outputs.len() as u64;
                let connection = self.back.as_mut().expect("checked above");
                connection.to_client.push_back(frame(0, &Message::Welcome { commands_applied, outputs_last }));
                for output in &self.matching.outputs[(outputs_applied as usize).min(self.matching.outputs.len())..] {
                    connection.to_client.push_back(output.clone());
                }
                self.matching.subscribed = true;
            }
            Message::Command(command) if self.matching.subscribed => {
                let applied = self.matching.peers_applied.get(&LEDGER_PEER).copied().unwrap_or(0);
                match wire::admission(applied, sequence) {
                    Admission::Next => {
                        self.matching.peers_applied.insert(LEDGER_PEER, sequence);
                        self.matching.pending.push(MatchingEntry { peer: LEDGER_PEER, peer_sequence: sequence, command });
                    }
                    Admission::Duplicate => {}
                    Admission::Gap { expected } => {
                        self.note(format!("matching: forward sequence gap (expected {expected}, got {sequence}); closing"));
                        self.drop_back();
                    }
                }
            }
            _ => {
                self.note("matching: unexpected frame from the ledger; closing".into());
                self.drop_back();
            }
        }
        Ok(())
    }

    fn deliver_to_ledger_from_matching(&mut self) -> Check {
        let Some(connection) = self.back.as_mut() else { return Ok(()) };
        let Some(received) = World::take_frame(&mut connection.to_client) else { return Ok(()) };
        let Ok((sequence, message)) = received else {
            self.note("ledger: damaged frame from matching; closing".into());
            self.drop_back();
            return Ok(());
        };
        match message {
            Message::Welcome { commands_applied, .. } if self.ledger.forwarded_sent.is_none() => {
                self.ledger_commit_all()?;
                self.ledger.confirm_forwarded(commands_applied);
                self.ledger.forwarded_sent = Some(commands_applied);
                self.send_forwards();
            }
            Message::Events { peer, peer_sequence, events } if self.ledger.forwarded_sent.is_some() => {
                if peer == LEDGER_PEER {
                    self.ledger.confirm_forwarded(peer_sequence);
                }
                match wire::admission(self.ledger.matching_seen, sequence) {
                    Admission::Next => {
                        self.ledger.matching_seen = sequence;
                        let command = LedgerCommand::Spot(spot::Command::ApplyMatching { sequence, events });
                        self.ledger.pending.push(LedgerEntry { peer: MATCHING_PEER, peer_sequence: sequence, at_ms: self.step, command });
                    }
                    Admission::Duplicate => {}
                    Admission::Gap { expected } => {
                        self.note(format!("ledger: matching output gap (expected {expected}, got {sequence}); closing"));
                        self.drop_back();
                    }
                }
            }
            Message::Welcome { .. } => {} // duplicated
            _ => {
                self.note("ledger: output before matching's Welcome; closing".into());
                self.drop_back();
            }
        }
        Ok(())
    }

    fn send_forwards(&mut self) {
        let (Some(sent), Some(connection)) = (self.ledger.forwarded_sent, self.back.as_mut()) else { return };
        let mut last = sent;
        for (sequence, command) in self.ledger.outbox.iter().filter(|(s, _)| *s > sent) {
            connection.to_server.push_back(frame(*sequence, &Message::Command(*command)));
            last = *sequence;
        }
        self.ledger.forwarded_sent = Some(last);
    }

    // ------------------------------------------------------------ group commits

    fn ledger_begin(&mut self) {
        let entries = std::mem::take(&mut self.ledger.pending);
        for (i, entry) in entries.iter().enumerate() {
            let sequence = self.ledger.journal_applied + 1 + i as u64;
            self.ledger.disk.append(sequence, i, &postcard::to_stdvec(entry).expect("encodes"));
        }
        self.note(format!("ledger writes {} entries", entries.len()));
        self.ledger.in_flight = entries;
    }

    fn ledger_finish(&mut self) -> Check {
        if self.config.sabotage != Some(Sabotage::LedgerSkipsSync) {
            self.ledger.disk.sync();
        }
        let entries = std::mem::take(&mut self.ledger.in_flight);
        let mut answers = Vec::new();
        for entry in &entries {
            let outcome = self.ledger.apply(entry);
            if entry.peer == GATEWAY_PEER {
                answers.push((entry.peer_sequence, outcome));
            }
        }
        self.ledger.journal_applied += entries.len() as u64;
        self.ledger.ledger.check_invariants().map_err(|e| format!("ledger invariant after a batch: {e}"))?;
        self.ledger.persist();
        for (sequence, outcome) in answers {
            if self.ledger.retained.len() == RETAINED_OUTCOMES {
                self.ledger.retained.pop_front();
            }
            self.ledger.retained.push_back((sequence, outcome.clone()));
            if let (true, Some(connection)) = (self.ledger.gateway_connected, self.front.as_mut()) {
                connection.to_client.push_back(frame(0, &Message::LedgerOutcome { peer_sequence: sequence, outcome: Some(outcome) }));
            }
        }
        self.send_forwards();
        self.note(format!("ledger synced through {}", self.ledger.journal_applied));
        Ok(())
    }

    fn ledger_commit_all(&mut self) -> Check {
        if self.ledger.busy() {
            self.ledger_finish()?;
        }
        if !self.ledger.pending.is_empty() {
            self.ledger_begin();
            self.ledger_finish()?;
        }
        Ok(())
    }

    fn matching_begin(&mut self) {
        let entries = std::mem::take(&mut self.matching.pending);
        let first = self.matching.outputs.len() as u64 + 1;
        for (i, entry) in entries.iter().enumerate() {
            self.matching.disk.append(first + i as u64, i, &postcard::to_stdvec(entry).expect("encodes"));
        }
        self.note(format!("matching writes {} entries", entries.len()));
        self.matching.in_flight = entries;
    }

    fn matching_finish(&mut self) {
        if self.config.sabotage != Some(Sabotage::MatchingSkipsSync) {
            self.matching.disk.sync();
        }
        let entries = std::mem::take(&mut self.matching.in_flight);
        let first = self.matching.outputs.len() as u64 + 1;
        for (i, entry) in entries.iter().enumerate() {
            let output = self.matching.execute(first + i as u64, entry);
            if let (true, Some(connection)) = (self.matching.subscribed, self.back.as_mut()) {
                connection.to_client.push_back(output);
            }
        }
        self.note(format!("matching synced through {}", self.matching.outputs.len()));
    }

    fn matching_commit_all(&mut self) {
        if self.matching.busy() {
            self.matching_finish();
        }
        if !self.matching.pending.is_empty() {
            self.matching_begin();
            self.matching_finish();
        }
    }

    // ------------------------------------------------------------ crashes

    /// A bit flipped inside a synced batch other than the last (media
    /// damage) must stop start-up; it is then put right and start-up goes on.
    fn flip_synced_bit(&mut self, disk: &mut Disk) -> Check {
        let Some(&last_start) = disk.batch_starts.iter().rev().find(|&&start| start < disk.synced) else { return Ok(()) };
        if last_start == 0 {
            return Ok(());
        }
        let at = self.rng.random_range(0..last_start);
        let bit = 1 << self.rng.random_range(0..8);
        disk.bytes[at] ^= bit;
        let mut probe = disk.clone();
        match probe.recover(&mut Stats::default()) {
            Err(Refused::Corrupt { offset, .. }) if offset <= at => {}
            Err(refused) => return Err(format!("a bit flipped at synced byte {at} was refused for another reason: {refused}")),
            Ok(records) => return Err(format!("a bit flipped at synced byte {at} was not refused; {} records recovered", records.len())),
        }
        disk.bytes[at] ^= bit;
        self.stats.synced_bit_flips_refused += 1;
        Ok(())
    }

    fn crash_matching(&mut self) -> Check {
        self.stats.matching_crashes += 1;
        self.drop_back();
        let mut disk = std::mem::take(&mut self.matching.disk);
        let power = self.rng.random_bool(0.5);
        if power {
            disk.lose_power(&mut self.rng, &mut self.stats);
        }
        if self.rng.random_range(0..8) == 0 {
            self.flip_synced_bit(&mut disk)?;
        }
        self.note(format!("matching killed ({})", if power { "power lost" } else { "process" }));
        self.matching = MatchingNode::recover(disk, &mut self.stats).map_err(|e| format!("matching refused to start: {e}"))?;
        self.matching.up = self.rng.random_bool(0.5);
        self.check_matching_kept_acknowledged()
    }

    fn crash_ledger(&mut self) -> Check {
        self.stats.ledger_crashes += 1;
        self.drop_front();
        self.drop_back();
        let mut disk = std::mem::take(&mut self.ledger.disk);
        let power = self.rng.random_bool(0.5);
        if power {
            disk.lose_power(&mut self.rng, &mut self.stats);
        }
        if self.rng.random_range(0..8) == 0 {
            self.flip_synced_bit(&mut disk)?;
        }
        // RocksDB without its log keeps what it flushed, in the process or the power lost alike.
        let stored = self.ledger.flushed.clone();
        if stored.journal_applied < self.ledger.written.journal_applied {
            self.stats.store_rollbacks += 1;
        }
        self.note(format!("ledger killed ({}), RocksDB at {}", if power { "power lost" } else { "process" }, stored.journal_applied));
        self.ledger = LedgerNode::recover(disk, stored, &mut self.stats).map_err(|e| format!("the ledger refused to start: {e}"))?;
        if self.config.sabotage == Some(Sabotage::LedgerForgetsItsOutbox) {
            self.ledger.outbox.clear();
        }
        self.ledger.up = self.rng.random_bool(0.5);
        self.ledger.ledger.check_invariants().map_err(|e| format!("ledger invariant after recovery: {e}"))?;
        self.check_ledger_kept_acknowledged()?;
        self.check_matching_kept_acknowledged()
    }

    fn crash_gateway(&mut self) {
        self.stats.gateway_crashes += 1;
        self.note("gateway killed".into());
        self.drop_front();
        self.gateway.up = self.rng.random_bool(0.5);
    }

    // ------------------------------------------------------------ checks

    /// Every acknowledged deposit, withdrawal and order is in the ledger: a
    /// copy of it answers the same request with the same outcome, and the
    /// repeat changes nothing (a lost one would be applied anew, maybe under
    /// the same id, but never without a change).
    fn check_ledger_kept_acknowledged(&self) -> Check {
        let mut copy = Ledger::restore(limits(), self.ledger.ledger.state());
        for request in &self.requests {
            let RequestState::Answered(Ok(first)) = &request.state else { continue };
            let keyed = matches!(
                &request.command,
                LedgerCommand::Wallet(wallet::Command::Deposit { .. } | wallet::Command::RequestWithdrawal { .. })
                    | LedgerCommand::Spot(spot::Command::PlaceOrder { .. } | spot::Command::PlaceOco { .. })
                    | LedgerCommand::Convert(convert::Command::Accept { .. })
            );
            if !keyed {
                continue;
            }
            let before = copy.state_hash();
            let repeat = copy.apply(&request.command, 0);
            if repeat.outcome.as_ref() != Ok(first) || repeat.forward.is_some() || copy.state_hash() != before {
                return Err(format!("acknowledged {:?} ({first:?}) is not in the recovered ledger: a repeat answers {repeat:?}", request.command));
            }
        }
        Ok(())
    }

    /// What the ledger saw confirmed by matching, matching still has.
    fn check_matching_kept_acknowledged(&self) -> Check {
        let applied = self.matching.peers_applied.get(&LEDGER_PEER).copied().unwrap_or(0);
        if applied < self.ledger.confirmed_through() {
            return Err(format!("matching applied forwards through {applied} but had confirmed {}", self.ledger.confirmed_through()));
        }
        let outputs = self.matching.outputs.len() as u64;
        if outputs < self.ledger.ledger.spot().counters().matching_applied {
            return Err(format!("matching has {outputs} outputs but the ledger applied {}", self.ledger.ledger.spot().counters().matching_applied));
        }
        Ok(())
    }

    /// With everything delivered and answered: the model's figures, one
    /// order per client order id, cancels honoured, the two books equal, and
    /// replay from scratch reaching the same states.
    fn check_final(&self) -> Check {
        let ledger = &self.ledger.ledger;
        ledger.check_invariants().map_err(|e| format!("final ledger invariant: {e}"))?;
        let mut deposited: BTreeMap<u32, i128> = BTreeMap::new();
        let mut withdrawn: BTreeMap<u32, i128> = BTreeMap::new();
        let mut orders = BTreeSet::new();
        let mut cancelled = BTreeSet::new();
        let mut accepted = BTreeSet::new();
        for request in &self.requests {
            let RequestState::Answered(answer) = &request.state else { return Err(format!("request never answered: {:?}", request.command)) };
            match (&request.command, answer) {
                (LedgerCommand::Wallet(wallet::Command::Deposit { asset, amount, .. }), Ok(_)) => *deposited.entry(*asset).or_default() += amount,
                (LedgerCommand::Wallet(wallet::Command::RequestWithdrawal { asset, amount, .. }), Ok(_)) => *withdrawn.entry(*asset).or_default() += amount,
                (LedgerCommand::Spot(spot::Command::PlaceOrder { .. }), Ok(outcome)) => {
                    orders.insert(order_of(outcome).expect("a placement answers an order"));
                }
                (LedgerCommand::Spot(spot::Command::PlaceOco { .. }), Ok(Outcome::Spot(spot::Outcome::OcoPlaced { limit, stop }))) => {
                    orders.extend([*limit, *stop]);
                }
                (LedgerCommand::Spot(spot::Command::CancelOrder { order_id, .. }), Ok(Outcome::Spot(spot::Outcome::CancelRequested(_)))) => {
                    cancelled.insert(*order_id);
                }
                (LedgerCommand::Convert(convert::Command::Accept { .. }), Ok(Outcome::Convert(convert::Outcome::Accepted(id)))) if !accepted.insert(*id) => {
                    return Err(format!("quote {id} was accepted by two requests"));
                }
                _ => {}
            }
        }
        for asset in [BTC, USD] {
            let custody = ledger.kernel().balance(products::wallet::custody(asset));
            let pending = ledger.kernel().balance(AccountId::house(asset, products::wallet::PENDING_WITHDRAWALS));
            let (deposited, withdrawn) = (deposited.get(&asset).copied().unwrap_or(0), withdrawn.get(&asset).copied().unwrap_or(0));
            // The house's funding came out of custody too.
            if custody != -deposited - HOUSE_FUNDED || pending != withdrawn {
                return Err(format!("asset {asset}: custody {custody} and pending {pending} but {deposited} was deposited and {withdrawn} withdrawn"));
            }
            // Conservation over every account the products keep: users', custody, pending withdrawals, revenue, inventory, quoted.
            let sum: i128 = ledger.kernel().state().balances.iter().filter(|(account, _)| account.asset == asset).map(|(_, balance)| balance).sum();
            if sum != 0 {
                return Err(format!("asset {asset}: the accounts sum to {sum}, not zero"));
            }
        }
        let allocated = ledger.spot().counters().next_order - 1;
        if allocated != orders.len() as u64 {
            return Err(format!("{allocated} order ids allocated for {} acknowledged orders: an order was placed twice", orders.len()));
        }
        let state = ledger.state();
        let snapshot = self.matching.engine.snapshot();
        let book: BTreeMap<u64, (Side, u64, u64)> =
            snapshot.markets.iter().flat_map(|m| m.orders.iter().map(|o| (o.order_id, (o.side, o.price, o.remaining)))).collect();
        let (armed_in_ledger, open_in_ledger): (Vec<_>, Vec<_>) = state.spot.open_orders.values().partition(|r| r.status == spot::OrderStatus::Armed);
        let open: BTreeMap<u64, (Side, u64, u64)> =
            open_in_ledger.iter().map(|r| (r.order.order_id, (r.order.side, r.order.price.unwrap_or(0), r.order.quantity - r.filled))).collect();
        if book != open {
            return Err(format!("the ledger's open orders {open:?} are not matching's book {book:?}"));
        }
        let armed: BTreeMap<u64, Trigger> = snapshot.markets.iter().flat_map(|m| m.stops.iter().map(|s| (s.order.order_id, s.trigger))).collect();
        let armed_by_ledger: BTreeMap<u64, Trigger> = armed_in_ledger.iter().filter_map(|r| Some((r.order.order_id, r.trigger?))).collect();
        if armed != armed_by_ledger || armed_by_ledger.len() != armed_in_ledger.len() {
            return Err(format!("the ledger's armed stops {armed_by_ledger:?} are not matching's {armed:?}"));
        }
        // The lists matching links are those whose two orders the ledger holds open, listed with each other.
        let lists: Vec<(u64, u64)> = snapshot.markets.iter().flat_map(|m| m.lists.iter().map(|link| (link.limit, link.stop))).collect();
        let mut linked: Vec<(u64, u64)> = state
            .spot
            .open_orders
            .values()
            .filter_map(|r| {
                r.oco_with.filter(|other| *other > r.order.order_id && state.spot.open_orders.contains_key(other)).map(|other| (r.order.order_id, other))
            })
            .collect();
        linked.sort_unstable();
        if lists != linked {
            return Err(format!("the ledger's open OCO lists {linked:?} are not matching's {lists:?}"));
        }
        if let Some(order) = cancelled.iter().find(|id| open.contains_key(id) || armed.contains_key(id)) {
            return Err(format!("order {order} is open after its cancel was acknowledged"));
        }
        if !self.ledger.outbox.is_empty() || self.matching.peers_applied.get(&LEDGER_PEER).copied().unwrap_or(0) != self.ledger.forwarded_last {
            return Err("forwards not all applied by matching".into());
        }
        if ledger.spot().counters().matching_applied != self.matching.outputs.len() as u64 {
            return Err(format!("the ledger applied {} outputs of {}", ledger.spot().counters().matching_applied, self.matching.outputs.len()));
        }
        let replayed = LedgerNode::recover(self.ledger.disk.clone(), Stored::default(), &mut Stats::default())
            .map_err(|e| format!("ledger replay from scratch refused: {e}"))?;
        if replayed.ledger.state_hash() != ledger.state_hash() {
            return Err("the ledger replayed from its journal alone differs from the live one".into());
        }
        let replayed = MatchingNode::recover(self.matching.disk.clone(), &mut Stats::default()).map_err(|e| format!("matching replay refused: {e}"))?;
        if replayed.engine.state_hash() != self.matching.engine.state_hash() {
            return Err("matching replayed from its journal differs from the live one".into());
        }
        Ok(())
    }

    // ------------------------------------------------------------ the loop

    /// One step: a fault, or some progress by one party.
    fn step(&mut self, faults: bool) -> Check {
        self.step += 1;
        self.stats.steps += 1;
        if faults && self.fault() {
            return self.inject_fault();
        }
        match self.rng.random_range(0..14) {
            0 | 12 | 13 => {
                let open = self.requests.iter().filter(|r| !matches!(r.state, RequestState::Answered(_))).count();
                let setup_done = self.requests.iter().take(3).all(|r| matches!(r.state, RequestState::Answered(_)));
                if faults && setup_done && open < OPEN_REQUESTS_MAX {
                    self.new_request();
                }
            }
            1 => {
                let ready: Vec<usize> = (0..self.requests.len()).filter(|&i| self.requests[i].state == RequestState::Ready).collect();
                if self.gateway.up {
                    for index in ready {
                        self.send_request(index);
                    }
                }
            }
            2 => {
                // Reconnect whatever is down and can be up.
                if self.front.is_none() && self.gateway.up && self.ledger.up {
                    let mut connection = Connection::default();
                    connection.to_server.push_back(frame(0, &Message::Hello { peer: GATEWAY_PEER, role: Role::Gateway, outputs_applied: 0, subscribe: true }));
                    self.front = Some(connection);
                }
                if self.back.is_none() && self.ledger.up && self.matching.up && !self.ledger.busy() {
                    let outputs_applied = self.ledger.ledger.spot().counters().matching_applied;
                    let mut connection = Connection::default();
                    connection.to_server.push_back(frame(0, &Message::Hello { peer: LEDGER_PEER, role: Role::Ledger, outputs_applied, subscribe: true }));
                    self.back = Some(connection);
                }
            }
            // A read off a socket takes whatever has arrived, a frame or several.
            3 => {
                for _ in 0..self.rng.random_range(1..=8) {
                    if self.ledger.up && !self.ledger.busy() {
                        self.deliver_to_ledger_from_gateway()?;
                    }
                }
            }
            4 => {
                for _ in 0..self.rng.random_range(1..=8) {
                    self.deliver_to_gateway()?;
                }
            }
            5 => {
                for _ in 0..self.rng.random_range(1..=8) {
                    if self.matching.up && !self.matching.busy() {
                        self.deliver_to_matching()?;
                    }
                }
            }
            6 => {
                for _ in 0..self.rng.random_range(1..=8) {
                    if self.ledger.up && !self.ledger.busy() {
                        self.deliver_to_ledger_from_matching()?;
                    }
                }
            }
            7 => {
                if self.ledger.busy() {
                    self.ledger_finish()?;
                } else if !self.ledger.pending.is_empty() && self.ledger.up {
                    self.ledger_begin();
                }
            }
            8 => {
                if self.matching.busy() {
                    self.matching_finish();
                } else if !self.matching.pending.is_empty() && self.matching.up {
                    self.matching_begin();
                }
            }
            9 => {
                // RocksDB flushes its memtable in the background.
                self.ledger.flushed = self.ledger.written.clone();
            }
            10 | 11 => {
                // Down daemons come back (systemd restarts them).
                self.ledger.up = true;
                self.matching.up = true;
                self.gateway.up = true;
            }
            _ => unreachable!("the range above"),
        }
        Ok(())
    }

    fn inject_fault(&mut self) -> Check {
        match self.rng.random_range(0..12) {
            0 => self.crash_ledger()?,
            1 => self.crash_matching()?,
            2 => self.crash_gateway(),
            3 | 4 => {
                self.stats.connections_dropped += 1;
                if self.rng.random_bool(0.5) {
                    self.drop_front();
                } else {
                    self.drop_back();
                }
            }
            fault => {
                let queue = match (self.rng.random_range(0..4), self.front.as_mut(), self.back.as_mut()) {
                    (0, Some(c), _) => &mut c.to_server,
                    (1, Some(c), _) => &mut c.to_client,
                    (2, _, Some(c)) => &mut c.to_server,
                    (3, _, Some(c)) => &mut c.to_client,
                    _ => return Ok(()),
                };
                if queue.is_empty() {
                    return Ok(());
                }
                let at = self.rng.random_range(0..queue.len());
                match fault {
                    5..=7 => {
                        let copy = queue[at].clone();
                        queue.insert(at + 1, copy);
                        self.stats.frames_duplicated += 1;
                    }
                    8..=10 if at + 1 < queue.len() => {
                        queue.swap(at, at + 1);
                        self.stats.frames_reordered += 1;
                    }
                    _ => {
                        // Any byte but the length field, whose damage a real
                        // stream would show only as a stall (see the crate docs).
                        let frame = &mut queue[at];
                        let mut byte = self.rng.random_range(0..frame.len() - 4);
                        if byte >= 8 {
                            byte += 4;
                        }
                        frame[byte] ^= 1 << self.rng.random_range(0..8);
                        self.stats.frames_damaged += 1;
                    }
                }
                self.note(format!("network fault {fault}"));
            }
        }
        Ok(())
    }

    /// Heals everything and runs until every request is answered and every
    /// forward and output is applied.
    fn settle(&mut self) -> Check {
        self.ledger.up = true;
        self.matching.up = true;
        self.gateway.up = true;
        for _ in 0..200_000 {
            let settled = self.requests.iter().all(|r| matches!(r.state, RequestState::Answered(_)))
                && self.ledger.outbox.is_empty()
                && self.ledger.pending.is_empty()
                && !self.ledger.busy()
                && self.matching.pending.is_empty()
                && !self.matching.busy()
                && self.back.as_ref().is_some_and(|c| c.to_client.is_empty() && c.to_server.is_empty())
                && self.ledger.ledger.spot().counters().matching_applied == self.matching.outputs.len() as u64;
            if settled {
                return Ok(());
            }
            self.step(false)?;
        }
        Err("the system did not settle with the network healed".into())
    }
}

/// The order a placement answered; of an OCO list, its limit order (a
/// cancel of which cancels both).
fn order_of(outcome: &Outcome) -> Option<u64> {
    match outcome {
        Outcome::Spot(spot::Outcome::OrderPlaced(order_id) | spot::Outcome::OcoPlaced { limit: order_id, .. }) => Some(*order_id),
        _ => None,
    }
}

/// Runs one seed: `config.steps` steps with faults, then heals the system
/// and checks every property.
pub fn run(seed: u64, config: Config) -> Result<Stats, Failure> {
    let mut world = World::new(seed, config);
    let result = (|| {
        for _ in 0..config.steps {
            world.step(true)?;
        }
        world.settle()?;
        world.check_final()
    })();
    match result {
        Ok(()) => {
            world.stats.fills = world.ledger.ledger.spot().counters().next_trade - 1;
            (world.stats.stops_armed, world.stats.stops_fired) = (world.matching.stops_armed, world.matching.stops_fired);
            Ok(world.stats)
        }
        Err(detail) => Err(world.fail(detail)),
    }
}
