//! The link to matching: each peer's last applied command sequence, and the
//! outbox of commands for matching kept until it confirms them.

use rustc_hash::FxHashMap;
use storage::{Batch, Store, Table};

use super::{decode, exact, fixed, put_encoded, SchemaError, META};

/// Commands for matching, by forward sequence, kept until matching confirms
/// it applied them (`matching_api::Command`, its own versioned format).
pub const OUTBOX: Table = Table::new("link.outbox");

pub const TABLES: &[Table] = &[OUTBOX];

const META_FORWARDED_LAST: &[u8] = b"link.forwarded_last";
const META_PEER_PREFIX: &[u8] = b"peer/";

fn peer_key(peer: u32) -> [u8; 9] {
    let mut key = [0; 9];
    key[..5].copy_from_slice(META_PEER_PREFIX);
    key[5..].copy_from_slice(&peer.to_be_bytes());
    key
}

/// Records each peer's last applied command sequence (in the batch that applied it).
pub fn write_peers(batch: &mut Batch, peers: &FxHashMap<u32, u64>) {
    for (&peer, &applied) in peers {
        batch.put(META, &peer_key(peer), &applied.to_be_bytes());
    }
}

pub fn load_peers(store: &Store) -> Result<FxHashMap<u32, u64>, SchemaError> {
    let mut peers = FxHashMap::default();
    for (key, value) in store.scan_prefix(META, META_PEER_PREFIX, usize::MAX, false)? {
        let key: [u8; 9] = exact(META, &key)?;
        peers.insert(u32::from_be_bytes(key[5..].try_into().expect("4 bytes")), u64::from_be_bytes(exact(META, &value)?));
    }
    Ok(peers)
}

/// Adds commands for matching to the outbox, by their forward sequence, and
/// removes those matching confirmed; `forwarded_last` is the newest sequence
/// ever assigned (kept even when the outbox is empty).
pub fn write_outbox(batch: &mut Batch, added: &[(u64, matching_api::Command)], confirmed: std::ops::RangeInclusive<u64>, forwarded_last: u64) {
    for (sequence, command) in added {
        put_encoded(batch, OUTBOX, &sequence.to_be_bytes(), command);
    }
    for sequence in confirmed {
        batch.delete(OUTBOX, &sequence.to_be_bytes());
    }
    batch.put(META, META_FORWARDED_LAST, &forwarded_last.to_be_bytes());
}

/// The unconfirmed commands for matching, oldest first, and the newest forward sequence.
pub fn load_outbox(store: &Store) -> Result<(Vec<(u64, matching_api::Command)>, u64), SchemaError> {
    let forwarded_last = fixed::<8>(store, META, META_FORWARDED_LAST)?.map(u64::from_be_bytes).unwrap_or(0);
    let mut outbox = Vec::new();
    for item in store.scan_all(OUTBOX) {
        let (key, value) = item?;
        outbox.push((u64::from_be_bytes(exact(OUTBOX, &key)?), decode(OUTBOX, &key, &value)?));
    }
    Ok((outbox, forwarded_last))
}
