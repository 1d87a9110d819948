//! Peer connections: a reader and a writer thread each, at most
//! `connections_max` of them. The reader decodes frames and hands commands to
//! the engine thread; the writer sends what the engine publishes.

use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;

use wire::{Message, ProtocolErrorCode};

use crate::config::MatchingConfig;
use crate::metrics::Metrics;
use crate::net::{Listener, Stream};
use crate::service::{ConnectionId, Inbound, Outgoing};

pub fn accept_loop(listener: Listener, config: MatchingConfig, inbox: SyncSender<Inbound>, metrics: Arc<Metrics>) {
    let open = Arc::new(AtomicUsize::new(0));
    let next_id = AtomicU64::new(1);
    loop {
        let mut stream = match listener.accept() {
            Ok(stream) => stream,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                std::thread::sleep(std::time::Duration::from_millis(50));
                continue;
            }
        };
        if open.load(Ordering::Acquire) >= config.listen.connections_max {
            tracing::warn!(limit = config.listen.connections_max, "connection refused: at listen.connections_max");
            let _ = stream.write_all(&wire::encode_error(ProtocolErrorCode::TooManyConnections, "the server is at its connection limit"));
            continue;
        }
        open.fetch_add(1, Ordering::AcqRel);
        metrics.connections.set(open.load(Ordering::Acquire) as i64);
        let connection = next_id.fetch_add(1, Ordering::Relaxed);
        let (config, inbox, open, metrics) = (config.clone(), inbox.clone(), open.clone(), metrics.clone());
        std::thread::Builder::new()
            .name(format!("peer-{connection}"))
            .spawn(move || {
                serve_connection(connection, stream, &config, &inbox);
                open.fetch_sub(1, Ordering::AcqRel);
                metrics.connections.set(open.load(Ordering::Acquire) as i64);
            })
            .expect("spawning a connection thread");
    }
}

fn serve_connection(connection: ConnectionId, mut stream: Stream, config: &MatchingConfig, inbox: &SyncSender<Inbound>) {
    let frame_bytes_max = config.listen.frame_bytes_max;
    let mut buffer = Vec::with_capacity(64 * 1024);
    let mut chunk = vec![0u8; 64 * 1024];
    let mut peer = None;
    'read: loop {
        let n = match stream.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        buffer.extend_from_slice(&chunk[..n]);
        let mut used = 0;
        loop {
            let frame = match wire::decode_frame(&buffer[used..], frame_bytes_max) {
                Ok(Some((frame, size))) => {
                    used += size;
                    frame
                }
                Ok(None) => break,
                Err(error) => {
                    tracing::warn!(connection, %error, "undecodable frame; closing the connection");
                    let _ = stream.write_all(&wire::encode_error(ProtocolErrorCode::MalformedFrame, error.to_string()));
                    break 'read;
                }
            };
            match (frame.message, peer) {
                (Message::Hello { peer: id, role, outputs_applied, subscribe }, None) => {
                    tracing::info!(connection, peer = id, ?role, outputs_applied, "peer connected");
                    let (outbox, outgoing) = mpsc::sync_channel::<Outgoing>(config.listen.peer_queue_batches_max);
                    let Ok(writer_stream) = stream.try_clone() else { break 'read };
                    std::thread::Builder::new()
                        .name(format!("peer-{connection}-writer"))
                        .spawn(move || {
                            let mut writer_stream = writer_stream;
                            for bytes in outgoing {
                                if writer_stream.write_all(&bytes).is_err() {
                                    break;
                                }
                            }
                            // The engine dropped us (or we failed): unblock the reader too.
                            writer_stream.shutdown();
                        })
                        .expect("spawning a writer thread");
                    if inbox.send(Inbound::Connect { connection, peer: id, outputs_applied, subscribe, outbox }).is_err() {
                        break 'read;
                    }
                    peer = Some(id);
                }
                (Message::Command(command), Some(id)) => {
                    if inbox.send(Inbound::Command { connection, peer: id, sequence: frame.sequence, command }).is_err() {
                        break 'read;
                    }
                }
                (Message::Heartbeat, _) => {}
                (_, None) => {
                    let _ = stream.write_all(&wire::encode_error(ProtocolErrorCode::HelloExpected, "send Hello first"));
                    break 'read;
                }
                (other, Some(_)) => {
                    tracing::warn!(connection, message = ?other, "unexpected message from a peer; ignoring it");
                }
            }
        }
        buffer.drain(..used);
    }
    stream.shutdown();
    let _ = inbox.send(Inbound::Disconnect { connection });
}
