//! A blocking client for the matching daemon: what the ledger, the tests and
//! the benchmark use.

use std::io::{self, Read, Write};

use matching_core::Command;
use wire::{Frame, Message, PeerId, Role};

use crate::config::Address;
use crate::net::Stream;

pub struct MatchingClient {
    stream: Stream,
    buffer: Vec<u8>,
    start: usize,
    outgoing: Vec<u8>,
    frame_bytes_max: u32,
}

/// What the server said on connect.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Welcome {
    pub commands_applied: u64,
    pub outputs_last: u64,
}

fn protocol_error(detail: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, detail)
}

impl MatchingClient {
    pub fn connect(address: &Address, peer: PeerId, role: Role, outputs_applied: u64, subscribe: bool) -> io::Result<(MatchingClient, Welcome)> {
        let stream = Stream::connect(address)?;
        let mut client = MatchingClient { stream, buffer: Vec::new(), start: 0, outgoing: Vec::new(), frame_bytes_max: 64 << 20 };
        wire::encode_frame(0, &Message::Hello { peer, role, outputs_applied, subscribe }, &mut client.outgoing);
        if let Err(write_error) = client.flush() {
            // A refusing server writes its reason and closes before reading: say why.
            return Err(client.recv().err().unwrap_or(write_error));
        }
        match client.recv()?.message {
            Message::Welcome { commands_applied, outputs_last } => Ok((client, Welcome { commands_applied, outputs_last })),
            Message::Error { code, detail } => Err(protocol_error(format!("{code}: {detail}"))),
            other => Err(protocol_error(format!("expected Welcome, got {other:?}"))),
        }
    }

    /// A second handle on the same connection, e.g. to receive on one thread
    /// while sending on another.
    pub fn try_clone(&self) -> io::Result<MatchingClient> {
        Ok(MatchingClient { stream: self.stream.try_clone()?, buffer: Vec::new(), start: 0, outgoing: Vec::new(), frame_bytes_max: self.frame_bytes_max })
    }

    /// Queues a command; [`MatchingClient::flush`] sends what is queued in one write.
    pub fn queue(&mut self, sequence: u64, command: &Command) {
        wire::encode_frame(sequence, &Message::Command(*command), &mut self.outgoing);
    }

    pub fn send(&mut self, sequence: u64, command: &Command) -> io::Result<()> {
        self.queue(sequence, command);
        self.flush()
    }

    pub fn flush(&mut self) -> io::Result<()> {
        self.stream.write_all(&self.outgoing)?;
        self.outgoing.clear();
        Ok(())
    }

    /// The next frame from the server; an `Error` frame comes back as an error.
    pub fn recv(&mut self) -> io::Result<Frame> {
        loop {
            match wire::decode_frame(&self.buffer[self.start..], self.frame_bytes_max) {
                Ok(Some((frame, size))) => {
                    self.start += size;
                    if let Message::Error { code, detail } = &frame.message {
                        return Err(protocol_error(format!("{code}: {detail}")));
                    }
                    return Ok(frame);
                }
                Ok(None) => {}
                Err(error) => return Err(protocol_error(error.to_string())),
            }
            self.buffer.drain(..self.start);
            self.start = 0;
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the server closed the connection"));
            }
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}
