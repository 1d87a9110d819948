//! Talking to systemd (`Type=notify` units): READY once a daemon serves,
//! STATUS lines while it starts, STOPPING when asked to stop, and watchdog
//! heartbeats. Outside systemd (no `NOTIFY_SOCKET`) every call does nothing.
//!
//! A failure to notify is logged, never fatal: the daemon's work matters more
//! than telling systemd about it, and systemd's timeouts catch a daemon that
//! never says READY.

use std::time::{Duration, Instant};

use sd_notify::NotifyState;

fn send(states: &[NotifyState]) {
    if let Err(error) = sd_notify::notify(states) {
        tracing::warn!(%error, "cannot notify systemd");
    }
}

/// What a starting daemon is doing, for `systemctl status`.
pub fn status(text: &str) {
    send(&[NotifyState::Status(text)]);
}

/// Recovery is done and every socket is listening.
pub fn ready(text: &str) {
    send(&[NotifyState::Ready, NotifyState::Status(text)]);
}

pub fn stopping() {
    send(&[NotifyState::Stopping, NotifyState::Status("stopping")]);
}

/// Watchdog heartbeats, sent by the loop whose progress they vouch for (the
/// engine thread), at most every half of systemd's `WatchdogSec`.
pub struct Watchdog {
    /// None when systemd watches nothing.
    every: Option<Duration>,
    last: Option<Instant>,
}

impl Watchdog {
    pub fn from_env() -> Watchdog {
        Watchdog { every: sd_notify::watchdog_enabled().map(|timeout| timeout / 2), last: None }
    }

    /// How long the loop may wait for work before it must call [`Watchdog::beat`];
    /// a day when there is no watchdog.
    pub fn wait_max(&self) -> Duration {
        self.every.unwrap_or(Duration::from_secs(86_400))
    }

    /// Sends a heartbeat if one is due.
    pub fn beat(&mut self) {
        let Some(every) = self.every else { return };
        let now = Instant::now();
        if self.last.is_none_or(|last| now.duration_since(last) >= every) {
            send(&[NotifyState::Watchdog]);
            self.last = Some(now);
        }
    }
}
