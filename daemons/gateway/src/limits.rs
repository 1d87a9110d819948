//! Withdrawal limits by verification tier: each tier allows so much in a
//! rolling 24 hours and a rolling 30 days, counted in a reference asset
//! (withdrawals of other assets valued at their market's last trade price).
//! A withdrawal over a limit is not refused: it is taken and marked for an
//! operator's review ([`Reviews`]), with the figures that put it there.

use std::sync::Arc;

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use storage::{Batch, Durability, StorageError, Store, Table};

/// Withdrawal id -> the [`Review`] it waits for.
pub const WITHDRAWAL_REVIEWS: Table = Table::new("withdrawal_reviews");

pub const DAY_MS: u64 = 24 * 3_600 * 1_000;
pub const MONTH_MS: u64 = 30 * DAY_MS;

/// One tier's limits, in the reference asset.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    pub daily_limit: Decimal,
    pub monthly_limit: Decimal,
}

/// A window's limit, what was used of it and what is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Window {
    pub window_ms: u64,
    pub limit: Decimal,
    pub used: Decimal,
}

impl Window {
    pub fn remaining(&self) -> Decimal {
        (self.limit - self.used).max(Decimal::ZERO)
    }
}

/// A user's two windows, from the value of each withdrawal still counted
/// (not rejected) and when it was made. A withdrawal whose value is
/// unknown (`None`, no price) adds nothing here: the caller sends the new
/// withdrawal to review instead of judging it on a partial sum.
pub fn windows(tier: &Tier, withdrawals: &[(u64, Option<Decimal>)], now_ms: u64) -> (Window, Window) {
    let used = |window_ms: u64| {
        withdrawals
            .iter()
            .filter(|(at, _)| now_ms.saturating_sub(*at) < window_ms)
            .filter_map(|(_, value)| *value)
            .fold(Decimal::ZERO, |sum, v| sum.saturating_add(v))
    };
    (Window { window_ms: DAY_MS, limit: tier.daily_limit, used: used(DAY_MS) }, Window { window_ms: MONTH_MS, limit: tier.monthly_limit, used: used(MONTH_MS) })
}

/// Why a new withdrawal worth `value` (None: it cannot be valued) goes
/// to review, or None when it is within both windows.
pub fn over_limit(day: &Window, month: &Window, value: Option<Decimal>, reference: &str) -> Option<String> {
    let Some(value) = value else {
        return Some(format!("it cannot be valued in {reference}: no market between them has traded"));
    };
    for (window, name) in [(day, "24 hours"), (month, "30 days")] {
        if window.used.saturating_add(value) > window.limit {
            return Some(format!(
                "{} {reference} would make {} {reference} withdrawn in {name}, over the tier's limit of {} {reference}",
                value.normalize(),
                window.used.saturating_add(value).normalize(),
                window.limit.normalize()
            ));
        }
    }
    None
}

/// What an operator reviewing a withdrawal is told.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Review {
    pub reason: String,
    pub at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ReviewError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("a review record does not decode: {0}")]
    Corrupt(String),
}

/// A verdict's key: "v", the user, then SHA-256 of the idempotency key
/// (apart from the 8-byte withdrawal ids in the same table).
fn verdict_key(user: u64, idempotency_key: &str) -> Vec<u8> {
    use sha2::Digest;
    let digest = sha2::Sha256::digest(idempotency_key.as_bytes());
    [b"v".as_slice(), &user.to_be_bytes(), &digest[..]].concat()
}

/// The withdrawals waiting for review, in the gateway's store.
pub struct Reviews {
    store: Arc<Store>,
}

impl Reviews {
    pub fn new(store: Arc<Store>) -> Reviews {
        Reviews { store }
    }

    pub fn mark(&self, withdrawal: u64, review: &Review) -> Result<(), ReviewError> {
        let mut batch = Batch::default();
        batch.put(WITHDRAWAL_REVIEWS, &withdrawal.to_be_bytes(), &postcard::to_stdvec(review).expect("encoding into a vector cannot fail"));
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(())
    }

    /// The over-limit verdict on a user's request (by its idempotency key),
    /// written before the request goes to the ledger, so that a retry after
    /// a failure in between is marked all the same.
    pub fn verdict(&self, user: u64, idempotency_key: &str) -> Result<Option<Review>, ReviewError> {
        self.store
            .get(WITHDRAWAL_REVIEWS, &verdict_key(user, idempotency_key))?
            .map(|bytes| postcard::from_bytes(&bytes).map_err(|e| ReviewError::Corrupt(e.to_string())))
            .transpose()
    }

    pub fn remember_verdict(&self, user: u64, idempotency_key: &str, review: Option<&Review>) -> Result<(), ReviewError> {
        let Some(review) = review else { return Ok(()) };
        let mut batch = Batch::default();
        batch.put(WITHDRAWAL_REVIEWS, &verdict_key(user, idempotency_key), &postcard::to_stdvec(review).expect("encoding into a vector cannot fail"));
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(())
    }

    pub fn forget_verdict(&self, user: u64, idempotency_key: &str) -> Result<(), ReviewError> {
        let mut batch = Batch::default();
        batch.delete(WITHDRAWAL_REVIEWS, &verdict_key(user, idempotency_key));
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(())
    }

    pub fn get(&self, withdrawal: u64) -> Result<Option<Review>, ReviewError> {
        self.store
            .get(WITHDRAWAL_REVIEWS, &withdrawal.to_be_bytes())?
            .map(|bytes| postcard::from_bytes(&bytes).map_err(|e| ReviewError::Corrupt(e.to_string())))
            .transpose()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn tier() -> Tier {
        Tier { name: "basic".into(), daily_limit: Decimal::from(500), monthly_limit: Decimal::from(1_000) }
    }

    #[test]
    fn the_windows_roll_and_a_withdrawal_over_either_goes_to_review() {
        let now = 100 * DAY_MS;
        let history = [(now - DAY_MS, Some(Decimal::from(300))), (now - DAY_MS + 1, Some(Decimal::from(200))), (now - 31 * DAY_MS, Some(Decimal::from(900)))];
        let (day, month) = windows(&tier(), &history, now);
        assert_eq!((day.used, month.used), (Decimal::from(200), Decimal::from(500)), "24 h ago is out of the day; 31 days ago out of both");
        assert_eq!((day.remaining(), month.remaining()), (Decimal::from(300), Decimal::from(500)));
        assert_eq!(over_limit(&day, &month, Some(Decimal::from(300)), "USD"), None, "up to the limit exactly");
        let reason = over_limit(&day, &month, Some(Decimal::new(30001, 2)), "USD").expect("a cent over");
        assert!(reason.contains("24 hours") && reason.contains("500 USD"), "{reason}");
        let (day, month) = windows(&tier(), &[(now, Some(Decimal::from(100))), (now - 2 * DAY_MS, Some(Decimal::from(800)))], now);
        assert!(over_limit(&day, &month, Some(Decimal::from(150)), "USD").expect("the month").contains("30 days"));
        assert!(over_limit(&day, &month, None, "USD").expect("no price").contains("cannot be valued"));
    }

    proptest! {
        #[test]
        fn what_passes_never_takes_a_window_over_its_limit(values in proptest::collection::vec((0u64..60, 0i64..400), 0..40), next in 0i64..400) {
            let now = 60 * DAY_MS;
            let history: Vec<(u64, Option<Decimal>)> = values.iter().map(|(days, v)| (now - days * DAY_MS, Some(Decimal::from(*v)))).collect();
            let (day, month) = windows(&tier(), &history, now);
            prop_assert!(day.used <= month.used);
            if over_limit(&day, &month, Some(Decimal::from(next)), "USD").is_none() {
                prop_assert!(day.used + Decimal::from(next) <= day.limit);
                prop_assert!(month.used + Decimal::from(next) <= month.limit);
            }
        }
    }
}
