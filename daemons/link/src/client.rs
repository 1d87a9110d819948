//! A blocking client for a daemon's peer socket: what the ledger uses to
//! reach matching, and what the gateway, the tests and the benchmark use.

use std::io::{self, Write};

use matching_api::Command;
use wire::{Frame, Message, PeerId, ProtocolErrorCode, Role};

use crate::net::Stream;
use crate::reader::FrameReader;
use crate::{Address, CertifiedRole, LinkTls};

pub struct Client {
    stream: Stream,
    reader: FrameReader,
    outgoing: Vec<u8>,
}

/// What the server said on connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    /// The last command sequence the server applied from this peer.
    pub commands_applied: u64,
    /// The server's last durable output sequence.
    pub outputs_last: u64,
}

/// Frames larger than this from a server are refused.
const FRAME_BYTES_MAX: u32 = 64 << 20;

/// A ledger replica that does not lead its cluster turned the connection
/// away: `leader` is the leading replica's address (`tcp:host:port`),
/// empty while an election runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotLeader {
    pub leader: String,
}

impl std::fmt::Display for NotLeader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.leader.is_empty() {
            true => write!(f, "this ledger replica does not lead its cluster, and no leader is known yet (an election runs): try again shortly"),
            false => write!(f, "this ledger replica does not lead its cluster: the leader serves at {}", self.leader),
        }
    }
}

impl std::error::Error for NotLeader {}

impl NotLeader {
    /// The refusal in `error`, if it is one.
    pub fn of(error: &io::Error) -> Option<&NotLeader> {
        error.get_ref()?.downcast_ref::<NotLeader>()
    }
}

fn protocol_error(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

impl Client {
    /// Connects and says Hello. `outputs_applied` is the last server output
    /// this peer durably applied; with `subscribe` the server replays what
    /// follows it and then streams every new output.
    pub fn connect(address: &Address, peer: PeerId, role: Role, outputs_applied: u64, subscribe: bool) -> io::Result<(Client, Welcome)> {
        Client::greet(Stream::connect(address)?, peer, role, outputs_applied, subscribe)
    }

    /// [`Client::connect`] to a `tcp:` address over mutual TLS, or to a Unix
    /// one as usual; `server` is the role the server's certificate must name.
    pub fn connect_tls(
        address: &Address,
        tls: Option<&LinkTls>,
        server: CertifiedRole,
        peer: PeerId,
        role: Role,
        outputs_applied: u64,
        subscribe: bool,
    ) -> io::Result<(Client, Welcome)> {
        let stream = match (address, tls) {
            (Address::Tcp(host_port), Some(tls)) => tls.connect(host_port, server)?,
            (Address::Tcp(_), None) => return Err(io::Error::other(crate::PeerError::TlsNotConfigured)),
            (Address::Unix(_), _) => Stream::connect(address)?,
        };
        Client::greet(stream, peer, role, outputs_applied, subscribe)
    }

    /// Says Hello over a connected stream.
    pub fn greet(stream: Stream, peer: PeerId, role: Role, outputs_applied: u64, subscribe: bool) -> io::Result<(Client, Welcome)> {
        let mut client = Client { stream, reader: FrameReader::new(FRAME_BYTES_MAX), outgoing: Vec::new() };
        client.queue(0, &Message::Hello { peer, role, outputs_applied, subscribe });
        if let Err(write_error) = client.flush() {
            // A refusing server writes its reason and closes before reading: say why.
            return Err(client.recv().err().unwrap_or(write_error));
        }
        match client.recv()?.message {
            Message::Welcome { commands_applied, outputs_last } => Ok((client, Welcome { commands_applied, outputs_last })),
            other => Err(protocol_error(format!("expected Welcome, got {other:?}"))),
        }
    }

    /// A second handle on the same connection, e.g. to receive on one thread
    /// while sending on another.
    pub fn try_clone(&self) -> io::Result<Client> {
        Ok(Client { stream: self.stream.try_clone()?, reader: FrameReader::new(FRAME_BYTES_MAX), outgoing: Vec::new() })
    }

    /// Queues a frame; [`Client::flush`] sends what is queued in one write.
    pub fn queue(&mut self, sequence: u64, message: &Message) {
        wire::encode_frame(sequence, message, &mut self.outgoing);
    }

    pub fn queue_command(&mut self, sequence: u64, command: &Command) {
        self.queue(sequence, &Message::Command(*command));
    }

    pub fn send(&mut self, sequence: u64, message: &Message) -> io::Result<()> {
        self.queue(sequence, message);
        self.flush()
    }

    pub fn send_command(&mut self, sequence: u64, command: &Command) -> io::Result<()> {
        self.queue_command(sequence, command);
        self.flush()
    }

    /// Whether frames are queued and not yet sent.
    pub fn has_queued(&self) -> bool {
        !self.outgoing.is_empty()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.outgoing)?;
        self.outgoing.clear();
        Ok(())
    }

    /// The next frame from the server; an `Error` frame comes back as an error.
    pub fn recv(&mut self) -> io::Result<Frame> {
        let frame = self.reader.next(&mut self.stream)?;
        match &frame.message {
            Message::Error { code: ProtocolErrorCode::NotLeader, detail } => Err(io::Error::other(NotLeader { leader: detail.clone() })),
            Message::Error { code, detail } => Err(protocol_error(format!("{code}: {detail}"))),
            _ => Ok(frame),
        }
    }

    /// Closes both directions, waking a thread blocked in [`Client::recv`] on a clone.
    pub fn shutdown(&self) {
        self.stream.shutdown();
    }

    /// Bounds how long [`Client::recv`] waits; `None` waits forever.
    pub fn set_read_timeout(&self, timeout: Option<std::time::Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }
}
