//! The inter-daemon protocol.
//!
//! A frame is a fixed 24-byte header and a postcard-encoded [`Message`]:
//!
//! ```text
//! offset size field
//!      0    4 magic "MRNT"
//!      4    1 protocol version (3)
//!      5    3 reserved, zero
//!      8    4 payload length in bytes (little endian)
//!     12    8 sender's sequence number (little endian)
//!     20    4 crc32c over bytes 0..20 and the payload
//! ```
//!
//! Parsing is a pure function over a byte buffer ([`decode_frame`]), separate
//! from any connection, so it is property-tested and fuzzed on its own.
//!
//! The messages carry the API crates' types (`matching-api`, `ledger-api`),
//! never a core's: the protocol version changes when they or [`Message`]
//! do, and the golden bytes in this crate's tests fail until it is bumped.

use ledger_api::{Answer, Command as LedgerCommand, LedgerError, Outcome, Query, QueryError};
use matching_api::{Command, Event, MarketId, PriceLevel};
use serde::{Deserialize, Serialize};

pub const MAGIC: [u8; 4] = *b"MRNT";
/// 1: the cores' own enums, unversioned. 2: the API crates' versioned types.
/// 3: the ledger's operators, proposals and audit log. 4: markets whose
/// tick on a lot is a fraction of a minor unit, and fills' rounding. 5:
/// halting and resuming a market, kill switches. 6: amending orders and
/// stop orders (matching-api 5, ledger-api 12). 7: OCO lists (matching-api
/// 6, ledger-api 13). 8: convert, perpetual markets and reduce-only orders
/// (ledger-api 14 to 16). 9: `NotLeader`, a ledger replica's refusal
/// naming the leader.
pub const PROTOCOL_VERSION: u8 = 9;
pub const HEADER_BYTES: usize = 24;
/// The default bound on one frame's payload; daemons take theirs from config.
pub const PAYLOAD_BYTES_MAX_DEFAULT: u32 = 1 << 20;

/// Who is on the other end of a connection. The id is what the receiver
/// records the last applied sequence number against.
pub type PeerId = u32;

/// What a peer says it is in Hello; the server checks it against who the
/// peer proved to be (see `link::Peer`). Lowercase in config files; postcard
/// encodes the variant's index, so the names are not on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Ledger,
    Gateway,
    Operator,
    Test,
}

/// A failure the server reports to a peer before it closes the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum ProtocolErrorCode {
    #[error("the first frame must be Hello")]
    HelloExpected,
    #[error("a command sequence number skipped ahead of the next expected one")]
    SequenceGap,
    #[error("the requested replay start is older than the retained outputs")]
    ReplayUnavailable,
    #[error("the server is at its connection limit")]
    TooManyConnections,
    #[error("the frame could not be decoded")]
    MalformedFrame,
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("this peer's role may not send that message")]
    Forbidden,
    /// The detail is the leading replica's address, empty while an election runs.
    #[error("this replica does not lead its cluster; connect to the leader (the detail names its address, if known)")]
    NotLeader,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// First frame from a client. `outputs_applied` is the last output sequence
    /// the client durably applied; the server replays everything after it.
    Hello {
        peer: PeerId,
        role: Role,
        outputs_applied: u64,
        subscribe: bool,
    },
    /// The server's answer: the last command sequence it applied from this
    /// peer, so the client resends from the one after it.
    Welcome {
        commands_applied: u64,
        outputs_last: u64,
    },
    /// A command; the frame's sequence is the sender's command sequence.
    Command(Command),
    /// The outcome of one journaled command; the frame's sequence is the
    /// server's output sequence. `peer` and `peer_sequence` say whose command.
    Events {
        peer: PeerId,
        peer_sequence: u64,
        events: Vec<Event>,
    },
    Heartbeat,
    Error {
        code: ProtocolErrorCode,
        detail: String,
    },
    /// A command for the ledger; the frame's sequence is the sender's command
    /// sequence, applied exactly once like matching's.
    LedgerCommand(LedgerCommand),
    /// The ledger's answer to the receiving peer's command `peer_sequence`.
    /// `None` answers a resent command that was applied long enough ago that
    /// its outcome is no longer retained: read the effect back with a query
    /// (orders by client order id, deposits and withdrawals by their key).
    LedgerOutcome {
        peer_sequence: u64,
        outcome: Option<Result<Outcome, LedgerError>>,
    },
    /// A read; the frame's sequence is a request id that the answer carries back.
    /// Reads are not journaled and see every acknowledged command.
    LedgerQuery(Query),
    LedgerAnswer(Result<Answer, QueryError>),
    /// To peers that said Hello with `subscribe`: the orders a group commit
    /// changed, each in its state after it; the frame's sequence is the
    /// ledger's journal position. Not replayed after a reconnect: read an
    /// order with a query to catch up.
    OrderUpdates(Vec<ledger_api::spot::OrderRecord>),
    /// To matching: the book's aggregated levels, at most `levels` a side;
    /// the frame's sequence is a request id that the answer carries back.
    DepthQuery {
        market: MarketId,
        levels: u32,
    },
    /// Matching's answer; `None` for a market it does not have.
    Depth(Option<BookDepth>),
}

/// One market's aggregated book as of matching's output `output_last`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct BookDepth {
    pub market: MarketId,
    pub output_last: u64,
    /// Best first.
    pub bids: Vec<PriceLevel>,
    pub asks: Vec<PriceLevel>,
}

/// The most levels a side a depth query returns.
pub const DEPTH_LEVELS_MAX: u32 = 1_000;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub sequence: u64,
    pub message: Message,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("bad magic bytes {0:02x?}: the peer does not speak this protocol")]
    BadMagic([u8; 4]),
    #[error("protocol version {0} is not supported (this build speaks {PROTOCOL_VERSION}); run the same release of every daemon")]
    UnsupportedVersion(u8),
    #[error("reserved header bytes are not zero")]
    ReservedNotZero,
    #[error("frame payload of {length} bytes exceeds the limit of {limit}")]
    TooLarge { length: u32, limit: u32 },
    #[error("checksum mismatch: the frame was damaged in transit")]
    Checksum,
    #[error("payload does not decode: {0}")]
    Payload(String),
}

/// Where a command numbered `sequence` stands against the last sequence
/// admitted from the same sender. Every receiver of numbered commands (both
/// engines, for commands and for matching's outputs) decides with this one
/// rule, so a resend is never applied twice and a skipped number never
/// applied at all.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Admission {
    /// Admitted before: answer again if needed, never apply again.
    Duplicate,
    /// The next one: apply it.
    Next,
    /// Numbers were skipped (lost or reordered in transit): refuse it and let
    /// the sender reconnect and resend from what the receiver has.
    Gap { expected: u64 },
}

pub fn admission(admitted: u64, sequence: u64) -> Admission {
    if sequence <= admitted {
        Admission::Duplicate
    } else if sequence == admitted + 1 {
        Admission::Next
    } else {
        Admission::Gap { expected: admitted + 1 }
    }
}

/// Appends one encoded frame to `out`.
pub fn encode_frame(sequence: u64, message: &Message, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[PROTOCOL_VERSION, 0, 0, 0]);
    out.extend_from_slice(&[0; 4]); // length, patched below
    out.extend_from_slice(&sequence.to_le_bytes());
    out.extend_from_slice(&[0; 4]); // checksum, patched below
    let payload_start = out.len();
    *out = postcard::to_extend(message, std::mem::take(out)).expect("encoding into a vector cannot fail");
    let length = (out.len() - payload_start) as u32;
    out[start + 8..start + 12].copy_from_slice(&length.to_le_bytes());
    let checksum = crc32c::crc32c_append(crc32c::crc32c(&out[start..start + 20]), &out[payload_start..]);
    out[start + 20..start + 24].copy_from_slice(&checksum.to_le_bytes());
}

/// One encoded `Error` frame, for a server to send before it closes a connection.
pub fn encode_error(code: ProtocolErrorCode, detail: impl Into<String>) -> Vec<u8> {
    let mut bytes = Vec::new();
    encode_frame(0, &Message::Error { code, detail: detail.into() }, &mut bytes);
    bytes
}

/// Decodes the first frame in `buffer`. Returns `Ok(None)` when the buffer
/// holds only part of a frame (read more), or the frame and the number of
/// bytes it used. Errors mean the stream is unusable and must be closed.
pub fn decode_frame(buffer: &[u8], payload_bytes_max: u32) -> Result<Option<(Frame, usize)>, WireError> {
    if buffer.len() < HEADER_BYTES {
        // Check what we can already, so garbage is refused before a full header.
        let seen = buffer.len().min(4);
        if buffer[..seen] != MAGIC[..seen] {
            return Err(WireError::BadMagic(magic_of(buffer)));
        }
        return Ok(None);
    }
    let header = &buffer[..HEADER_BYTES];
    if header[..4] != MAGIC {
        return Err(WireError::BadMagic(magic_of(buffer)));
    }
    if header[4] != PROTOCOL_VERSION {
        return Err(WireError::UnsupportedVersion(header[4]));
    }
    if header[5..8] != [0, 0, 0] {
        return Err(WireError::ReservedNotZero);
    }
    let length = u32::from_le_bytes(header[8..12].try_into().expect("4 bytes"));
    if length > payload_bytes_max {
        return Err(WireError::TooLarge { length, limit: payload_bytes_max });
    }
    let total = HEADER_BYTES + length as usize;
    if buffer.len() < total {
        return Ok(None);
    }
    let sequence = u64::from_le_bytes(header[12..20].try_into().expect("8 bytes"));
    let expected = u32::from_le_bytes(header[20..24].try_into().expect("4 bytes"));
    let payload = &buffer[HEADER_BYTES..total];
    if crc32c::crc32c_append(crc32c::crc32c(&header[..20]), payload) != expected {
        return Err(WireError::Checksum);
    }
    let message: Message = postcard::from_bytes(payload).map_err(|e| WireError::Payload(e.to_string()))?;
    Ok(Some((Frame { sequence, message }, total)))
}

fn magic_of(buffer: &[u8]) -> [u8; 4] {
    let mut magic = [0; 4];
    let n = buffer.len().min(4);
    magic[..n].copy_from_slice(&buffer[..n]);
    magic
}
