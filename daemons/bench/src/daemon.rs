//! The real `marionette-matching` daemon, journaling to a file on this
//! machine's disk, driven over its Unix socket by a pipelined client: one
//! thread sends, one receives; every output is durable before it arrives.

use std::path::PathBuf;
use std::process::{Child, Command as Process, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use matching::client::MatchingClient;
use matching::config::Address;
use wire::{Message, Role};

use crate::generator::Workload;
use crate::{new_histogram, Measured};

/// Commands in flight at most (sent, output not yet received).
const WINDOW: u64 = 8_192;

/// A daemon process, killed when dropped however the measurement ends.
pub struct Daemon(pub Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// `marionette-<name>`, next to this binary (scripts/bench builds them all).
pub fn daemon_binary(name: &str) -> anyhow::Result<PathBuf> {
    daemon_binary_named(&format!("marionette-{name}"))
}

/// A binary next to this one.
pub fn daemon_binary_named(file: &str) -> anyhow::Result<PathBuf> {
    let binary = std::env::current_exe()?.with_file_name(file);
    if !binary.exists() {
        bail!("{} not found; build the workspace with cargo build --release --workspace --bins", binary.display());
    }
    Ok(binary)
}

/// Waits for a daemon's Unix socket to appear.
pub fn wait_for_socket(socket: &std::path::Path) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !socket.exists() {
        if Instant::now() > deadline {
            bail!("the daemon did not start (no {})", socket.display());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    std::thread::sleep(Duration::from_millis(100));
    Ok(())
}

pub fn measure(workload: &Workload) -> anyhow::Result<Measured> {
    eprintln!("  marionette-matching daemon (io_uring journal + fdatasync per group commit)");
    // On the disk the build lives on, not a tmpfs: the journal's fdatasync is part of what is measured.
    let base = std::env::var_os("CARGO_TARGET_DIR").map(PathBuf::from).unwrap_or_else(std::env::temp_dir);
    std::fs::create_dir_all(&base)?;
    let dir = tempfile::Builder::new().prefix("bench-matching-").tempdir_in(&base)?;
    let socket = dir.path().join("matching.sock");
    let config = dir.path().join("matching.toml");
    std::fs::write(
        &config,
        format!(
            "[listen]\naddress = \"unix:{}\"\nmetrics_address = \"\"\n[storage]\ndata_dir = \"{}\"\n[log]\nformat = \"text\"\nfilter = \"warn\"\n",
            socket.display(),
            dir.path().join("data").display()
        ),
    )?;
    let _daemon = Daemon(Process::new(daemon_binary("matching")?).arg("--config").arg(&config).stdout(Stdio::null()).stderr(Stdio::inherit()).spawn()?);
    wait_for_socket(&socket)?;
    let address = Address::Unix(socket);
    let (mut sender, _) = MatchingClient::connect(&address, 1, Role::Test, 0, true).context("connecting")?;
    let mut receiver = sender.try_clone()?;

    // The pre-fill, not measured.
    let prefill = workload.prefill.len() as u64;
    for (i, command) in workload.prefill.iter().enumerate() {
        sender.queue_command(i as u64 + 1, command);
    }
    sender.flush()?;
    for _ in 0..prefill {
        receiver.recv()?;
    }

    let total = workload.commands.len() as u64;
    let received = Arc::new(AtomicU64::new(0));
    let sent_at: Arc<Vec<AtomicU64>> = Arc::new((0..total).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    let receiving = {
        let (received, sent_at) = (received.clone(), sent_at.clone());
        std::thread::spawn(move || -> anyhow::Result<(hdrhistogram::Histogram<u64>, u64, Duration)> {
            let mut latency = new_histogram();
            let mut trades = 0;
            for i in 0..total {
                let frame = receiver.recv()?;
                let Message::Events { peer_sequence, events, .. } = frame.message else { bail!("unexpected frame") };
                if peer_sequence != prefill + i + 1 {
                    bail!("output {} answers command {peer_sequence}", prefill + i + 1);
                }
                trades += events.iter().filter(|e| matches!(e, matching_core::Event::Fill(_))).count() as u64;
                let now = started.elapsed().as_nanos() as u64;
                latency.saturating_record(now - sent_at[i as usize].load(Ordering::Relaxed));
                received.store(i + 1, Ordering::Release);
            }
            Ok((latency, trades, started.elapsed()))
        })
    };
    let mut next = 0u64;
    while next < total {
        while next - received.load(Ordering::Acquire) >= WINDOW {
            std::hint::spin_loop();
        }
        let chunk_end = (next + 256).min(total).min(received.load(Ordering::Acquire) + WINDOW);
        let now = started.elapsed().as_nanos() as u64;
        for i in next..chunk_end {
            sent_at[i as usize].store(now, Ordering::Relaxed);
            sender.queue_command(prefill + i + 1, &workload.commands[i as usize]);
        }
        sender.flush()?;
        next = chunk_end;
    }
    let (latency, trades, elapsed) = receiving.join().expect("receiver thread")?;
    Ok(Measured {
        name: "Marionette daemon".into(),
        commands_per_second: total as f64 / elapsed.as_secs_f64(),
        latency,
        trades,
        note: format!("Unix socket, durable group commit; latency is send to durable output with up to {WINDOW} in flight"),
    })
}
