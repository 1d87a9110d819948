//! Token buckets per key (a client IP, a user id): `burst` requests at once,
//! refilled at `per_second`. Time is passed in, so the arithmetic is tested
//! without sleeping. Small enough to own: the gateway needs one keyed bucket
//! map with a bound on its size, nothing more.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

struct Bucket {
    tokens: f64,
    updated: Instant,
}

pub struct RateLimiter<K> {
    per_second: f64,
    burst: f64,
    keys_max: usize,
    buckets: Mutex<HashMap<K, Bucket>>,
}

impl<K: Hash + Eq + Clone> RateLimiter<K> {
    pub fn new(per_second: u32, burst: u32, keys_max: usize) -> RateLimiter<K> {
        RateLimiter { per_second: per_second as f64, burst: burst.max(1) as f64, keys_max: keys_max.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// One token back every `refill` (rates slower than one a second, such as login attempts).
    pub fn with_refill(refill: Duration, burst: u32, keys_max: usize) -> RateLimiter<K> {
        let per_second = if refill.is_zero() { f64::MAX } else { 1.0 / refill.as_secs_f64() };
        RateLimiter { per_second, burst: burst.max(1) as f64, keys_max: keys_max.max(1), buckets: Mutex::new(HashMap::new()) }
    }

    /// Takes one token for `key`, or says how long until one is available.
    pub fn check(&self, key: &K, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if !buckets.contains_key(key) && buckets.len() >= self.keys_max {
            // Forget the keys whose buckets have refilled: they are idle, and
            // a full bucket is what a forgotten key starts with anyway.
            let (per_second, burst) = (self.per_second, self.burst);
            let tokens = |b: &Bucket| (b.tokens + now.saturating_duration_since(b.updated).as_secs_f64() * per_second).min(burst);
            buckets.retain(|_, b| tokens(b) < burst);
            if buckets.len() >= self.keys_max {
                // Full of active keys (a flood from many addresses): forget
                // the eighth closest to full, never the ones being held back,
                // so that a flood cannot buy everyone a fresh burst.
                tracing::warn!(keys_max = self.keys_max, "rate limiter full of active keys; forgetting the least limited");
                let mut levels: Vec<f64> = buckets.values().map(tokens).collect();
                let at = levels.len() - (levels.len() / 8).max(1);
                let (_, threshold, _) = levels.select_nth_unstable_by(at, f64::total_cmp);
                let threshold = *threshold;
                let mut room = buckets.len() - at;
                buckets.retain(|_, b| {
                    let forget = room > 0 && tokens(b) >= threshold;
                    room -= usize::from(forget);
                    !forget
                });
            }
        }
        let bucket = buckets.entry(key.clone()).or_insert(Bucket { tokens: self.burst, updated: now });
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            Ok(())
        } else if self.per_second > 0.0 {
            Err(Duration::from_secs_f64((1.0 - bucket.tokens) / self.per_second))
        } else {
            Err(Duration::from_secs(3_600))
        }
    }

    pub fn keys(&self) -> usize {
        self.buckets.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_then_the_refill_rate_and_keys_apart() {
        let limiter = RateLimiter::new(2, 3, 100);
        let start = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.check(&"a", start), Ok(()));
        }
        let wait = limiter.check(&"a", start).unwrap_err();
        assert!(wait > Duration::from_millis(400) && wait <= Duration::from_millis(500), "{wait:?}");
        assert_eq!(limiter.check(&"b", start), Ok(()), "another key has its own bucket");
        assert_eq!(limiter.check(&"a", start + Duration::from_millis(500)), Ok(()), "one token back after 1/rate");
        assert!(limiter.check(&"a", start + Duration::from_millis(500)).is_err());
        // Idle for long: back to a full burst, never more.
        let later = start + Duration::from_secs(60);
        for _ in 0..3 {
            assert_eq!(limiter.check(&"a", later), Ok(()));
        }
        assert!(limiter.check(&"a", later).is_err());
    }

    #[test]
    fn the_key_map_stays_bounded() {
        let limiter = RateLimiter::new(1, 1, 10);
        let start = Instant::now();
        for key in 0..1_000 {
            let _ = limiter.check(&key, start);
            assert!(limiter.keys() <= 10);
        }
        // Keys whose buckets refilled are forgotten first.
        let later = start + Duration::from_secs(5);
        assert_eq!(limiter.check(&5_000, later), Ok(()));
        assert_eq!(limiter.keys(), 1);
    }

    #[test]
    fn a_flood_of_new_keys_never_frees_the_ones_held_back() {
        // One second per token, a burst of 5: the attacker spends its burst.
        let limiter = RateLimiter::new(1, 5, 100);
        let start = Instant::now();
        for _ in 0..5 {
            assert_eq!(limiter.check(&u32::MAX, start), Ok(()));
        }
        assert!(limiter.check(&u32::MAX, start).is_err());
        // Then floods the table from ten thousand other addresses, each spending one token.
        for key in 0..10_000 {
            let _ = limiter.check(&key, start);
            assert!(limiter.keys() <= 100);
        }
        assert!(limiter.check(&u32::MAX, start).is_err(), "the flood bought the held-back key a fresh burst");
    }
}
