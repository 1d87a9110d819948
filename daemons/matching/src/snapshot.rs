//! Snapshot files: `snapshot-<sequence>.bin`, the engine's canonical snapshot
//! plus the last command sequence applied from each peer, checksummed, written
//! to a temporary file, synced and renamed into place.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use matching_api::EngineSnapshot;
use serde::{Deserialize, Serialize};
use wire::PeerId;

const MAGIC: &[u8; 8] = b"MRNTSNAP";
/// The snapshot's body is `matching-api`'s, so its version is that crate's
/// (1 was the unversioned encoding of the core's own types).
pub const FORMAT_VERSION: u32 = matching_api::FORMAT_VERSION as u32;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotFile {
    /// The last journal sequence the snapshot includes.
    pub sequence: u64,
    pub peers_applied: BTreeMap<PeerId, u64>,
    pub engine: EngineSnapshot,
}

#[derive(Debug, thiserror::Error)]
pub enum SnapshotFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{path}: not a snapshot, or damaged ({detail})")]
    Damaged { path: PathBuf, detail: String },
    #[error(
        "{path} is a snapshot of format {found}; this release reads format {FORMAT_VERSION}. Run the release that wrote this data \
         directory, or move the directory aside to start empty; the daemons of one release must all be upgraded together"
    )]
    Version { path: PathBuf, found: u32 },
}

fn path_for(dir: &Path, sequence: u64) -> PathBuf {
    dir.join(format!("snapshot-{sequence:020}.bin"))
}

/// Snapshot files in `dir`, newest first.
pub fn list(dir: &Path) -> Result<Vec<(u64, PathBuf)>, SnapshotFileError> {
    let io = |source| SnapshotFileError::Io { path: dir.into(), source };
    let mut found = Vec::new();
    for entry in fs::read_dir(dir).map_err(io)? {
        let entry = entry.map_err(io)?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if let Some(sequence) = name.strip_prefix("snapshot-").and_then(|n| n.strip_suffix(".bin")).and_then(|n| n.parse::<u64>().ok()) {
            found.push((sequence, entry.path()));
        }
    }
    found.sort_by_key(|f| std::cmp::Reverse(f.0));
    Ok(found)
}

pub fn write(dir: &Path, snapshot: &SnapshotFile) -> Result<PathBuf, SnapshotFileError> {
    let body = postcard::to_stdvec(snapshot).expect("encoding into a vector cannot fail");
    let mut bytes = Vec::with_capacity(body.len() + 16);
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(&body).to_le_bytes());
    bytes.extend_from_slice(&body);
    let path = path_for(dir, snapshot.sequence);
    let temporary = path.with_extension("tmp");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| SnapshotFileError::Io { path, source }
    };
    let mut file = fs::File::create(&temporary).map_err(io(&temporary))?;
    file.write_all(&bytes).map_err(io(&temporary))?;
    file.sync_all().map_err(io(&temporary))?;
    fs::rename(&temporary, &path).map_err(io(&path))?;
    fs::File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    Ok(path)
}

pub fn read(path: &Path) -> Result<SnapshotFile, SnapshotFileError> {
    let bytes = fs::read(path).map_err(|source| SnapshotFileError::Io { path: path.into(), source })?;
    let damaged = |detail: &str| SnapshotFileError::Damaged { path: path.into(), detail: detail.into() };
    if bytes.len() < 16 || &bytes[..8] != MAGIC {
        return Err(damaged("bad magic"));
    }
    let found = u32::from_le_bytes(bytes[8..12].try_into().expect("4 bytes"));
    if found != FORMAT_VERSION {
        return Err(SnapshotFileError::Version { path: path.into(), found });
    }
    let body = &bytes[16..];
    if crc32c::crc32c(body) != u32::from_le_bytes(bytes[12..16].try_into().expect("4 bytes")) {
        return Err(damaged("checksum mismatch"));
    }
    postcard::from_bytes(body).map_err(|e| damaged(&e.to_string()))
}

/// Keeps the newest `keep` snapshots and removes the rest.
pub fn prune(dir: &Path, keep: usize) -> Result<(), SnapshotFileError> {
    for (_, path) in list(dir)?.into_iter().skip(keep) {
        fs::remove_file(&path).map_err(|source| SnapshotFileError::Io { path, source })?;
    }
    Ok(())
}
