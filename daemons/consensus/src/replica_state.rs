//! What a replica must never forget between two starts, in its synced
//! state file beside the journal (`journal::state_file`): the vote it gave
//! (or it could vote twice in a term), the last log id it purged, the last
//! committed log id it has seen, and the index through which its journal is
//! durable (so that damage there is never cut off as a torn tail).

use std::path::Path;

use openraft::{LogId, Vote};
use serde::{Deserialize, Serialize};

use crate::NodeId;

/// The state file's own format, its first byte: a file of another is refused.
pub const STATE_FORMAT: u8 = 1;

/// The state file's name in the replica's journal directory.
pub const STATE_FILE: &str = "replica-state";

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplicaState {
    pub vote: Option<Vote<NodeId>>,
    pub committed: Option<LogId<NodeId>>,
    pub last_purged: Option<LogId<NodeId>>,
    /// The last log index this replica synced and so may have acknowledged
    /// to a leader: never taken for a torn tail, never given up but by a
    /// truncation its leader asks for.
    pub durable: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error(transparent)]
    File(#[from] journal::JournalError),
    #[error(
        "the replica's state file {path} is in format {found}; this release reads format {STATE_FORMAT}. Run the release that wrote it, \
         or move the data directory aside and rejoin the replica (marionettectl cluster rejoin)"
    )]
    Format { path: String, found: u8 },
    #[error(
        "the replica's state file {path} cannot be decoded ({detail}); move the data directory aside and rejoin the replica (marionettectl cluster rejoin)"
    )]
    Undecodable { path: String, detail: String },
}

impl ReplicaState {
    /// The state last written in `dir`, or `None` for a replica that never wrote one.
    pub fn read(dir: &Path) -> Result<Option<ReplicaState>, StateError> {
        let path = dir.join(STATE_FILE);
        let Some(bytes) = journal::state_file::read(&path)? else { return Ok(None) };
        let display = path.display().to_string();
        match bytes.split_first() {
            Some((&STATE_FORMAT, rest)) => {
                postcard::from_bytes(rest).map(Some).map_err(|error| StateError::Undecodable { path: display, detail: error.to_string() })
            }
            Some((&found, _)) => Err(StateError::Format { path: display, found }),
            None => Err(StateError::Undecodable { path: display, detail: "empty".into() }),
        }
    }

    /// Replaces the state file in `dir`; returns once it is durable.
    pub fn write(&self, dir: &Path) -> Result<(), StateError> {
        let mut bytes = vec![STATE_FORMAT];
        bytes = postcard::to_extend(self, bytes).expect("encoding into a vector cannot fail");
        journal::state_file::write(&dir.join(STATE_FILE), &bytes)?;
        Ok(())
    }
}
