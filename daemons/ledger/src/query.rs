//! Reads, answered on each connection's query thread straight from RocksDB:
//! the engine thread writes each batch atomically before it acknowledges
//! it, so a reader sees every acknowledged command and never half a batch.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use ledger_api::{Answer, LedgerStatus, Query, QueryError, QUERY_LIMIT_MAX};
use storage::Store;

use crate::schema::{self, SchemaError};

/// What the engine and the matching link publish for status queries.
#[derive(Debug, Default)]
pub struct Progress {
    pub journal_applied: AtomicU64,
    pub matching_applied: AtomicU64,
    pub matching_connected: AtomicBool,
    pub outbox_pending: AtomicU64,
    /// Whether this ledger serves peers and links to matching: always with
    /// its own journal; a replica while it leads.
    pub leading: AtomicBool,
    /// Set when the engine stops the link to matching; the link stays down.
    pub matching_alarm: std::sync::Mutex<Option<String>>,
}

impl Progress {
    pub fn status(&self) -> LedgerStatus {
        LedgerStatus {
            journal_applied: self.journal_applied.load(Ordering::Acquire),
            matching_applied: self.matching_applied.load(Ordering::Acquire),
            matching_connected: self.matching_connected.load(Ordering::Acquire),
            outbox_pending: self.outbox_pending.load(Ordering::Acquire),
            matching_alarm: self.alarm(),
        }
    }

    pub fn alarm(&self) -> Option<String> {
        self.matching_alarm.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).clone()
    }
}

pub fn answer(store: &Store, progress: &Progress, query: &Query) -> Result<Answer, QueryError> {
    read(store, progress, query).map_err(|error| match error {
        Read::Bad(detail) => QueryError::BadRequest(detail),
        Read::Schema(error) => {
            tracing::error!(%error, ?query, "a query could not read the store");
            QueryError::Unavailable
        }
    })
}

/// Why a read failed: the query, or the store.
pub enum Read {
    Bad(String),
    Schema(SchemaError),
}

impl From<SchemaError> for Read {
    fn from(error: SchemaError) -> Read {
        Read::Schema(error)
    }
}

pub(crate) fn limit(limit: u32) -> Result<usize, Read> {
    if limit == 0 || limit > QUERY_LIMIT_MAX {
        return Err(Read::Bad(format!("limit must be 1 to {QUERY_LIMIT_MAX}, got {limit}")));
    }
    Ok(limit as usize)
}

/// The dispatch: each product's reads in its schema file, the kernel's here.
fn read(store: &Store, progress: &Progress, query: &Query) -> Result<Answer, Read> {
    let query = match schema::answer_product(store, query) {
        Ok(answer) => return answer,
        Err(query) => query,
    };
    Ok(match query {
        Query::Assets => Answer::Assets(schema::kernel::assets(store)?),
        Query::Transfers { user, asset, limit: n } => Answer::Transfers(schema::kernel::transfers_of_user(store, *user, *asset, limit(*n)?)?),
        Query::Status => Answer::Status(progress.status()),
        Query::Reserves => Answer::Reserves(schema::kernel::reserves(store)?),
        // The products' queries, all answered above.
        _ => return Err(Read::Bad("no part of this ledger answers that query".into())),
    })
}
