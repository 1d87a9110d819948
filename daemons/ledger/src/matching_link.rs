//! The ledger's connection to matching, kept up for the daemon's lifetime.
//!
//! On connect the ledger says how far it applied matching's outputs (its
//! durable `matching_applied`), so matching replays what follows; matching
//! answers how far it applied the ledger's forwarded commands, so the engine
//! resends the outbox after that. Both sides drop what they already applied,
//! so a reconnect at any instant loses and doubles nothing. A replica of a
//! cluster links only while it leads.

use std::sync::atomic::Ordering;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::sync::Arc;
use std::time::Duration;

use link::{Address, CertifiedRole, Client, LinkTls};
use wire::{Message, Role};

use crate::config::MatchingLinkConfig;
use crate::engine::{Forwards, Inbound};
use crate::metrics::Metrics;
use crate::query::Progress;

pub fn run(config: MatchingLinkConfig, tls: Option<LinkTls>, inbox: SyncSender<Inbound>, progress: Arc<Progress>, metrics: Arc<Metrics>) {
    let address = Address::parse(&config.address).expect("validated at start");
    let mut failures = 0u64;
    loop {
        if let Some(alarm) = progress.alarm() {
            if failures % (60_000 / config.reconnect_ms).max(1) == 0 {
                tracing::error!(alarm = true, %alarm, "the link to matching stays stopped until the ledger restarts");
            }
            failures += 1;
            std::thread::sleep(Duration::from_millis(config.reconnect_ms));
            continue;
        }
        if !progress.leading.load(Ordering::Acquire) {
            // A follower: matching follows the leader's forwards only.
            std::thread::sleep(Duration::from_millis(config.reconnect_ms));
            continue;
        }
        let outputs_applied = progress.matching_applied.load(Ordering::Acquire);
        match Client::connect_tls(&address, tls.as_ref(), CertifiedRole::Matching, config.peer_id, Role::Ledger, outputs_applied, true) {
            Err(error) => {
                // Say it once, then every minute or so: matching may simply be starting.
                if failures % (60_000 / config.reconnect_ms).max(1) == 0 {
                    tracing::warn!(address = %address, %error, "cannot reach matching; orders wait in the outbox until it is back");
                }
                failures += 1;
            }
            Ok((client, welcome)) if welcome.outputs_last < outputs_applied => {
                // Forwards whose outputs the ledger applied have left its outbox,
                // so a matching that lost those outputs cannot be brought back by
                // resending: linking up would leave the two books different.
                if failures % (60_000 / config.reconnect_ms).max(1) == 0 {
                    tracing::error!(
                        address = %address,
                        outputs_applied,
                        outputs_last = welcome.outputs_last,
                        "matching's journal ends before outputs this ledger applied: it lost acknowledged records. Orders wait in \
                         the outbox; restore matching's data directory from the backup or replica that has them"
                    );
                }
                failures += 1;
                client.shutdown();
            }
            Ok((client, welcome)) => {
                failures = 0;
                tracing::info!(address = %address, outputs_applied, outputs_last = welcome.outputs_last, "connected to matching");
                let (sender, forwards) = mpsc::sync_channel(config.send_queue_max);
                if start_writer(&client, forwards).is_err() || inbox.send(Inbound::MatchingUp { commands_applied: welcome.commands_applied, sender }).is_err() {
                    client.shutdown();
                    return;
                }
                progress.matching_connected.store(true, Ordering::Release);
                metrics.matching_connected.set(1);
                let error = receive(client, &inbox);
                progress.matching_connected.store(false, Ordering::Release);
                metrics.matching_connected.set(0);
                tracing::warn!(%error, "link to matching lost; reconnecting");
                if inbox.send(Inbound::MatchingDown).is_err() {
                    return;
                }
            }
        }
        std::thread::sleep(Duration::from_millis(config.reconnect_ms));
    }
}

/// Sends forwarded commands until the engine drops the sender or a write fails.
fn start_writer(client: &Client, forwards: Receiver<Forwards>) -> std::io::Result<()> {
    let mut writer = client.try_clone()?;
    std::thread::Builder::new().name("matching-writer".into()).spawn(move || {
        for batch in forwards {
            for (sequence, command) in &batch {
                writer.queue_command(*sequence, command);
            }
            if writer.flush().is_err() {
                break;
            }
        }
        // Wakes the receiving side, which reconnects.
        writer.shutdown();
    })?;
    Ok(())
}

/// Hands matching's outputs to the engine until the connection fails.
fn receive(mut client: Client, inbox: &SyncSender<Inbound>) -> std::io::Error {
    loop {
        let frame = match client.recv() {
            Ok(frame) => frame,
            Err(error) => return error,
        };
        if let Message::Events { peer, peer_sequence, events } = frame.message {
            if inbox.send(Inbound::MatchingOutput { sequence: frame.sequence, peer, peer_sequence, events }).is_err() {
                return std::io::Error::other("the engine stopped");
            }
        }
    }
}
