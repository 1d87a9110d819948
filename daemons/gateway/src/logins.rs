//! Password guessing held back: every login attempt takes a token from its
//! client address's bucket and from its account's, before any password is
//! checked, so that neither one address trying many accounts nor many
//! addresses trying one account get more than a few guesses a minute. The
//! argon2 work itself is bounded too: beyond `argon2_concurrent_max` hashes
//! at once, logins and registrations answer RATE_LIMITED instead of queueing
//! until the machine stalls.

use std::net::IpAddr;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::ratelimit::RateLimiter;

/// One request (or one WebSocket subscription): where it came from, as the
/// gateway saw its connection, and how many logins it has tried.
#[derive(Debug)]
pub struct RequestOrigin {
    pub ip: IpAddr,
    /// The client's User-Agent header, for the sessions it logs in.
    pub user_agent: String,
    logins: AtomicU32,
}

impl RequestOrigin {
    pub fn new(ip: IpAddr, user_agent: &str) -> RequestOrigin {
        let mut end = user_agent.len().min(crate::sessions::USER_AGENT_BYTES_MAX);
        while !user_agent.is_char_boundary(end) {
            end -= 1;
        }
        RequestOrigin { ip, user_agent: user_agent[..end].to_string(), logins: AtomicU32::new(0) }
    }

    /// Counts a login field of this request; how many came before it.
    pub fn one_more_login(&self) -> u32 {
        self.logins.fetch_add(1, Ordering::Relaxed)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct LoginLimits {
    /// Attempts a client address may make at once, then one per `ip_refill`.
    pub ip_burst: u32,
    pub ip_refill: Duration,
    /// Attempts on one account at once, whatever the address, then one per `account_refill`.
    pub account_burst: u32,
    pub account_refill: Duration,
    pub keys_max: usize,
    pub argon2_concurrent_max: usize,
}

pub struct Logins {
    by_ip: RateLimiter<IpAddr>,
    by_account: RateLimiter<String>,
    argon2: Arc<Semaphore>,
}

/// Why an attempt is not even tried.
#[derive(Debug, PartialEq, Eq)]
pub enum Refusal {
    /// Too many attempts from this address or on this account: try again after this long.
    Throttled(Duration),
    /// Every password check slot is busy.
    Busy,
}

impl Logins {
    pub fn new(limits: LoginLimits) -> Logins {
        Logins {
            by_ip: RateLimiter::with_refill(limits.ip_refill, limits.ip_burst, limits.keys_max),
            by_account: RateLimiter::with_refill(limits.account_refill, limits.account_burst, limits.keys_max),
            argon2: Arc::new(Semaphore::new(limits.argon2_concurrent_max.max(1))),
        }
    }

    /// Counts one attempt on `account` (a normalized email) from `ip`.
    /// Both buckets are charged even when the first refuses, so that a
    /// throttled address keeps paying for the guesses it keeps sending.
    pub fn attempt(&self, ip: IpAddr, account: &str, now: Instant) -> Result<(), Refusal> {
        let by_ip = self.by_ip.check(&ip, now);
        let by_account = self.by_account.check(&account.to_string(), now);
        match (by_ip, by_account) {
            (Ok(()), Ok(())) => Ok(()),
            (Err(wait), Ok(())) | (Ok(()), Err(wait)) => Err(Refusal::Throttled(wait)),
            (Err(a), Err(b)) => Err(Refusal::Throttled(a.max(b))),
        }
    }

    /// Counts one registration from `ip` (it costs a hash, as a guess does).
    pub fn registration(&self, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        self.by_ip.check(&ip, now).map_err(Refusal::Throttled)
    }

    /// A slot for one argon2 hash or verification, or Busy at once.
    pub fn argon2_slot(&self) -> Result<OwnedSemaphorePermit, Refusal> {
        self.argon2.clone().try_acquire_owned().map_err(|_| Refusal::Busy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits() -> LoginLimits {
        LoginLimits {
            ip_burst: 10,
            ip_refill: Duration::from_secs(6),
            account_burst: 5,
            account_refill: Duration::from_secs(60),
            keys_max: 1_000,
            argon2_concurrent_max: 2,
        }
    }

    #[test]
    fn one_address_trying_many_accounts_is_held_back() {
        let logins = Logins::new(limits());
        let (ip, now) = ("192.0.2.1".parse().unwrap(), Instant::now());
        for n in 0..10 {
            assert_eq!(logins.attempt(ip, &format!("victim{n}@bank.example"), now), Ok(()));
        }
        assert!(matches!(logins.attempt(ip, "victim10@bank.example", now), Err(Refusal::Throttled(_))));
        assert_eq!(logins.attempt("192.0.2.2".parse().unwrap(), "victim10@bank.example", now), Ok(()), "another address is not");
        assert_eq!(logins.attempt(ip, "victim11@bank.example", now + Duration::from_secs(6)), Ok(()), "one more after the refill");
    }

    #[test]
    fn many_addresses_trying_one_account_are_held_back() {
        let logins = Logins::new(limits());
        let now = Instant::now();
        for n in 0..5u8 {
            assert_eq!(logins.attempt(IpAddr::from([198, 51, 100, n]), "alice@bank.example", now), Ok(()));
        }
        let wait = match logins.attempt(IpAddr::from([198, 51, 100, 99]), "alice@bank.example", now) {
            Err(Refusal::Throttled(wait)) => wait,
            other => panic!("a sixth guess on one account: {other:?}"),
        };
        assert!(wait > Duration::from_secs(50), "{wait:?}");
        assert_eq!(logins.attempt(IpAddr::from([198, 51, 100, 99]), "bob@bank.example", now), Ok(()), "another account is not");
    }

    #[test]
    fn argon2_work_is_bounded() {
        let logins = Logins::new(limits());
        let (a, b) = (logins.argon2_slot().unwrap(), logins.argon2_slot().unwrap());
        assert_eq!(logins.argon2_slot().err(), Some(Refusal::Busy));
        drop(a);
        assert!(logins.argon2_slot().is_ok(), "a finished hash frees its slot");
        drop(b);
    }
}
