//! Sessions: each login makes one, its id in the token (`sid`), and a token
//! is valid only while its session is. Logging out, revoking a session or
//! changing the password ends sessions at once, on HTTP and on the
//! WebSockets they opened (each socket watches its session).
//!
//! The records are in the gateway's store, written synced, so that a
//! revoked session stays revoked across a restart; when each was last seen
//! is kept apart (its own table, not synced, written at most once a minute
//! per session), so that a late "last seen" can never bring a revoked
//! session's record back. The sessions that are live are also held in
//! memory: checking a token costs a lock and a hash lookup, not a read.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use storage::{Batch, Durability, StorageError, Store, Table};
use tokio::sync::watch;

use crate::users::UserId;

pub const SESSIONS: Table = Table::new("sessions");
/// Session id -> when it was last seen (ms), best effort.
pub const SESSIONS_SEEN: Table = Table::new("sessions_seen");

/// How often a session's "last seen" is written, at most.
const SEEN_WRITE_EVERY_MS: u64 = 60_000;
/// What a session keeps of the client's User-Agent.
pub const USER_AGENT_BYTES_MAX: usize = 256;

/// 128 random bits, shown as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct SessionId(pub [u8; 16]);

impl SessionId {
    fn random() -> SessionId {
        let mut bytes = [0u8; 16];
        OsRng.fill_bytes(&mut bytes);
        SessionId(bytes)
    }

    pub fn parse(text: &str) -> Option<SessionId> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(SessionId(bytes))
    }
}

impl std::fmt::Display for SessionId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Session {
    pub id: SessionId,
    pub user: UserId,
    pub created_ms: u64,
    pub expires_ms: u64,
    /// The client's address as the gateway saw it (after trusted proxies).
    pub address: String,
    pub user_agent: String,
    /// Kept apart in [`SESSIONS_SEEN`]; here as of the last check.
    #[serde(skip)]
    pub last_seen_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("a session record does not decode: {0}")]
    Corrupt(String),
}

struct Live {
    session: Session,
    seen_written_ms: u64,
    /// Set to true when the session ends; dropped with it too.
    ended: watch::Sender<bool>,
}

#[derive(Default)]
struct State {
    live: HashMap<SessionId, Live>,
    /// Each user's live sessions, oldest first.
    by_user: HashMap<UserId, BTreeSet<(u64, SessionId)>>,
}

impl State {
    fn insert(&mut self, session: Session) {
        self.by_user.entry(session.user).or_default().insert((session.created_ms, session.id));
        let (ended, _) = watch::channel(false);
        self.live.insert(session.id, Live { seen_written_ms: session.last_seen_ms, session, ended });
    }

    fn remove(&mut self, id: SessionId) -> Option<Live> {
        let live = self.live.remove(&id)?;
        if let Some(sessions) = self.by_user.get_mut(&live.session.user) {
            sessions.remove(&(live.session.created_ms, id));
            if sessions.is_empty() {
                self.by_user.remove(&live.session.user);
            }
        }
        // Every socket watching it closes.
        live.ended.send_replace(true);
        Some(live)
    }
}

pub struct Sessions {
    store: Arc<Store>,
    state: Mutex<State>,
    per_user_max: usize,
}

/// Where a login came from, for the session list.
#[derive(Clone, Debug, Default)]
pub struct Origin {
    pub address: String,
    pub user_agent: String,
}

impl Sessions {
    /// Loads the sessions that have not expired; deletes the ones that have.
    pub fn open(store: Arc<Store>, per_user_max: usize, now_ms: u64) -> Result<Sessions, SessionError> {
        let mut state = State::default();
        let mut expired = Batch::default();
        let mut seen: HashMap<SessionId, u64> = HashMap::new();
        for row in store.scan_all(SESSIONS_SEEN) {
            let (key, value) = row?;
            let (Ok(id), Ok(ms)) = (<[u8; 16]>::try_from(&*key), <[u8; 8]>::try_from(&*value)) else { continue };
            seen.insert(SessionId(id), u64::from_be_bytes(ms));
        }
        for row in store.scan_all(SESSIONS) {
            let (key, value) = row?;
            let mut session: Session = postcard::from_bytes(&value).map_err(|e| SessionError::Corrupt(e.to_string()))?;
            if session.expires_ms <= now_ms {
                expired.delete(SESSIONS, &key);
                expired.delete(SESSIONS_SEEN, &key);
                continue;
            }
            session.last_seen_ms = seen.remove(&session.id).unwrap_or(session.created_ms).max(session.created_ms);
            state.insert(session);
        }
        // "Last seen" of sessions that are gone: revoked before the write landed.
        for id in seen.keys() {
            expired.delete(SESSIONS_SEEN, &id.0);
        }
        if !expired.is_empty() {
            store.write(&mut expired, Durability::Synced)?;
        }
        Ok(Sessions { store, state: Mutex::new(state), per_user_max: per_user_max.max(1) })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// A new session for `user`, durable when this returns. Beyond
    /// `per_user_max` the user's oldest sessions end.
    pub fn create(&self, user: UserId, origin: &Origin, now_ms: u64, ttl_ms: u64) -> Result<Session, SessionError> {
        let mut user_agent = origin.user_agent.clone();
        truncate_at_char(&mut user_agent, USER_AGENT_BYTES_MAX);
        let session = Session {
            id: SessionId::random(),
            user,
            created_ms: now_ms,
            expires_ms: now_ms + ttl_ms,
            address: origin.address.clone(),
            user_agent,
            last_seen_ms: now_ms,
        };
        let mut state = self.state();
        let oldest: Vec<SessionId> = match state.by_user.get(&user) {
            Some(sessions) if sessions.len() >= self.per_user_max => sessions.iter().take(sessions.len() + 1 - self.per_user_max).map(|(_, id)| *id).collect(),
            _ => Vec::new(),
        };
        let mut batch = Batch::default();
        batch.put(SESSIONS, &session.id.0, &postcard::to_stdvec(&session).expect("encoding into a vector cannot fail"));
        for id in &oldest {
            batch.delete(SESSIONS, &id.0);
            batch.delete(SESSIONS_SEEN, &id.0);
        }
        self.store.write(&mut batch, Durability::Synced)?;
        for id in oldest {
            tracing::info!(user, session = %id, per_user_max = self.per_user_max, "a new login ended the user's oldest session");
            state.remove(id);
        }
        state.insert(session.clone());
        Ok(session)
    }

    /// Whether session `id` is live and `user`'s; marks it seen.
    pub fn check(&self, id: SessionId, user: UserId, now_ms: u64) -> bool {
        let mut state = self.state();
        let Some(live) = state.live.get_mut(&id) else { return false };
        if live.session.user != user {
            return false;
        }
        if live.session.expires_ms <= now_ms {
            return false;
        }
        live.session.last_seen_ms = live.session.last_seen_ms.max(now_ms);
        if now_ms.saturating_sub(live.seen_written_ms) >= SEEN_WRITE_EVERY_MS {
            live.seen_written_ms = now_ms;
            let mut batch = Batch::default();
            batch.put(SESSIONS_SEEN, &id.0, &now_ms.to_be_bytes());
            // Under the lock, so that it cannot land after the session is
            // revoked; a lost one only makes "last seen" older.
            if let Err(error) = self.store.write(&mut batch, Durability::Journaled) {
                tracing::warn!(%error, session = %id, "could not note when a session was last seen");
            }
        }
        true
    }

    /// A watch that turns true (or closes) when session `id` ends.
    pub fn watch(&self, id: SessionId) -> Option<watch::Receiver<bool>> {
        self.state().live.get(&id).map(|live| live.ended.subscribe())
    }

    /// `user`'s live sessions, newest first.
    pub fn list(&self, user: UserId, now_ms: u64) -> Vec<Session> {
        let state = self.state();
        let Some(ids) = state.by_user.get(&user) else { return Vec::new() };
        ids.iter().rev().filter_map(|(_, id)| state.live.get(id)).map(|live| live.session.clone()).filter(|s| s.expires_ms > now_ms).collect()
    }

    /// Ends session `id` if it is `user`'s; whether it was.
    pub fn revoke(&self, user: UserId, id: SessionId) -> Result<bool, SessionError> {
        let ended = self.revoke_where(user, |session| session == id)?;
        Ok(ended == 1)
    }

    /// Ends every session of `user` but `keep`; how many.
    pub fn revoke_others(&self, user: UserId, keep: Option<SessionId>) -> Result<usize, SessionError> {
        self.revoke_where(user, |session| Some(session) != keep)
    }

    fn revoke_where(&self, user: UserId, end: impl Fn(SessionId) -> bool) -> Result<usize, SessionError> {
        let mut state = self.state();
        let ids: Vec<SessionId> = state.by_user.get(&user).map(|ids| ids.iter().map(|(_, id)| *id).filter(|id| end(*id)).collect()).unwrap_or_default();
        self.end(&mut state, &ids)
    }

    /// Deletes `ids` durably, then forgets them (their sockets close); how many.
    fn end(&self, state: &mut State, ids: &[SessionId]) -> Result<usize, SessionError> {
        if ids.is_empty() {
            return Ok(0);
        }
        let mut batch = Batch::default();
        for id in ids {
            batch.delete(SESSIONS, &id.0);
            batch.delete(SESSIONS_SEEN, &id.0);
        }
        // Durable before the caller is told: a restart does not bring them back.
        self.store.write(&mut batch, Durability::Synced)?;
        for id in ids {
            state.remove(*id);
        }
        Ok(ids.len())
    }

    /// Forgets the sessions that expired (their sockets close); how many.
    pub fn sweep(&self, now_ms: u64) -> Result<usize, SessionError> {
        let mut state = self.state();
        let expired: Vec<SessionId> = state.live.values().filter(|live| live.session.expires_ms <= now_ms).map(|live| live.session.id).collect();
        self.end(&mut state, &expired)
    }

    /// Sessions live now, for the metrics.
    pub fn live(&self) -> usize {
        self.state().live.len()
    }
}

fn truncate_at_char(text: &mut String, bytes_max: usize) {
    if text.len() > bytes_max {
        let mut end = bytes_max;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text.truncate(end);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINUTE_MS: u64 = 60_000;

    fn open(dir: &std::path::Path, now_ms: u64) -> Sessions {
        let store = Arc::new(Store::open(dir, &[SESSIONS, SESSIONS_SEEN]).unwrap());
        Sessions::open(store, 3, now_ms).unwrap()
    }

    fn origin() -> Origin {
        Origin { address: "192.0.2.7".into(), user_agent: "curl/8".into() }
    }

    #[test]
    fn a_revoked_session_stays_revoked_across_a_restart_and_others_stay_live() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b, c) = {
            let sessions = open(dir.path(), 0);
            let a = sessions.create(1, &origin(), 0, 15 * MINUTE_MS).unwrap();
            let b = sessions.create(1, &origin(), 1, 15 * MINUTE_MS).unwrap();
            let c = sessions.create(2, &origin(), 2, 15 * MINUTE_MS).unwrap();
            let mut watching_a = sessions.watch(a.id).unwrap();
            assert!(sessions.check(a.id, 1, 10) && !sessions.check(a.id, 2, 10), "a session is its user's only");
            assert!(sessions.revoke(1, a.id).unwrap());
            assert!(*watching_a.borrow_and_update(), "its socket is told");
            assert!(!sessions.check(a.id, 1, 11));
            assert!(!sessions.revoke(2, b.id).unwrap(), "another user's session is not revoked");
            assert!(sessions.check(b.id, 1, 2 * MINUTE_MS), "seen two minutes in: written");
            (a, b, c)
        };
        let sessions = open(dir.path(), 3 * MINUTE_MS);
        assert!(!sessions.check(a.id, 1, 3 * MINUTE_MS), "revoked before the restart");
        let listed = sessions.list(1, 3 * MINUTE_MS);
        assert_eq!(listed.iter().map(|s| s.id).collect::<Vec<_>>(), vec![b.id]);
        assert!(listed[0].last_seen_ms >= 2 * MINUTE_MS && listed[0].user_agent == "curl/8", "{listed:?}");
        assert_eq!(sessions.revoke_others(1, None).unwrap(), 1);
        assert!(sessions.check(c.id, 2, 3 * MINUTE_MS), "another user's sessions are untouched");
    }

    #[test]
    fn sessions_end_when_they_expire_and_beyond_the_cap_the_oldest_ends() {
        let dir = tempfile::tempdir().unwrap();
        let sessions = open(dir.path(), 0);
        let first = sessions.create(1, &origin(), 0, MINUTE_MS).unwrap();
        let mut watching = sessions.watch(first.id).unwrap();
        let later: Vec<Session> = (1..=3).map(|n| sessions.create(1, &origin(), n, 10 * MINUTE_MS).unwrap()).collect();
        assert!(!sessions.check(first.id, 1, 5), "a fourth session beyond a cap of three ended the first");
        assert!(*watching.borrow_and_update());
        assert!(later.iter().all(|s| sessions.check(s.id, 1, 5)));
        let keep = later[2].id;
        assert_eq!(sessions.revoke_others(1, Some(keep)).unwrap(), 2);
        assert!(sessions.check(keep, 1, 6));
        assert!(!sessions.check(keep, 1, 10 * MINUTE_MS + 3), "expired");
        assert_eq!(sessions.sweep(10 * MINUTE_MS + 3).unwrap(), 1);
        assert_eq!(sessions.live(), 0);
        drop(sessions);
        assert_eq!(open(dir.path(), 0).live(), 0, "swept from the store too");
    }

    #[test]
    fn session_ids_round_trip_and_bad_ones_are_none() {
        let id = SessionId::random();
        assert_eq!(SessionId::parse(&id.to_string()), Some(id));
        assert_ne!(SessionId::random(), id);
        for bad in ["", "zz", &"g".repeat(32), &"é".repeat(16), &"0".repeat(31)] {
            assert_eq!(SessionId::parse(bad), None, "{bad}");
        }
    }
}
