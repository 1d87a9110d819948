//! A small file replaced whole and durably: what a Raft replica must never
//! forget between two starts (the vote it gave, the log it has promised to
//! keep), beside its journal.
//!
//! `MRNTSF`, the payload's length (u32), a crc32c of the payload, the
//! payload. It is written to a temporary file, synced, renamed over the old
//! one and the directory synced, so a crash leaves the old file or the new
//! one, never a mix; a file that fails its checksum has rotted, and is
//! refused rather than read as absent.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::Path;

use crate::{io_error, sync_dir, JournalError};

const MAGIC: &[u8; 6] = b"MRNTSF";
const HEADER_BYTES: usize = 14;

/// Replaces the file at `path` with `payload`; returns once it is durable.
pub fn write(path: &Path, payload: &[u8]) -> Result<(), JournalError> {
    let temporary = path.with_extension("tmp");
    let mut bytes = Vec::with_capacity(HEADER_BYTES + payload.len());
    bytes.extend_from_slice(MAGIC);
    bytes.extend_from_slice(&u32::try_from(payload.len()).map_err(|_| JournalError::RecordTooLarge { bytes: payload.len() })?.to_le_bytes());
    bytes.extend_from_slice(&crc32c::crc32c(payload).to_le_bytes());
    bytes.extend_from_slice(payload);
    let mut file = OpenOptions::new().write(true).create(true).truncate(true).open(&temporary).map_err(io_error("create", &temporary))?;
    file.write_all(&bytes).map_err(io_error("write", &temporary))?;
    file.sync_all().map_err(io_error("fsync", &temporary))?;
    drop(file);
    fs::rename(&temporary, path).map_err(io_error("rename into place", path))?;
    sync_dir(path.parent().unwrap_or(Path::new(".")))
}

/// The payload last written at `path`, or `None` when there is no file.
pub fn read(path: &Path) -> Result<Option<Vec<u8>>, JournalError> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(io_error("read", path)(error)),
    };
    let corrupt = |detail| JournalError::Corrupt { path: path.to_path_buf(), offset: 0, expected_sequence: 0, detail };
    if bytes.len() < HEADER_BYTES || &bytes[..6] != MAGIC {
        return Err(corrupt("the state file's header is damaged"));
    }
    let length = u32::from_le_bytes(bytes[6..10].try_into().expect("4 bytes")) as usize;
    let checksum = u32::from_le_bytes(bytes[10..14].try_into().expect("4 bytes"));
    let payload = &bytes[HEADER_BYTES..];
    if payload.len() != length || crc32c::crc32c(payload) != checksum {
        return Err(corrupt("the state file fails its checksum"));
    }
    Ok(Some(payload.to_vec()))
}

/// Whether a file is at `path` (for a caller that must tell a new replica from a wiped one).
pub fn exists(path: &Path) -> bool {
    File::open(path).is_ok()
}
