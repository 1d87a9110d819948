//! What the consensus tests share: a type config of numbers and a state
//! machine that sums them, with what openraft asks of any (the last applied
//! id, the membership, snapshots).

#![allow(dead_code)]

use std::io::Cursor;
use std::sync::{Arc, Mutex};

use consensus::cluster::ClusterConfig;

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder, SnapshotMeta, StorageError, StorageIOError, StoredMembership};

openraft::declare_raft_types!(
    pub Config:
        D = u64,
        R = u64,
        NodeId = u64,
        Node = BasicNode,
        Entry = Entry<Config>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// A state machine for the tests: the sum of the numbers applied, with
/// what openraft asks of any (the last applied id, the membership, snapshots).
#[derive(Clone, Default)]
pub struct Machine {
    inner: Arc<Mutex<MachineState>>,
}

#[derive(Default, Clone, serde::Serialize, serde::Deserialize)]
pub struct MachineState {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    sum: u64,
    applied: Vec<u64>,
    #[serde(skip)]
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
}

impl Machine {
    pub fn applied(&self) -> Vec<u64> {
        self.inner.lock().unwrap().applied.clone()
    }
}

impl RaftSnapshotBuilder<Config> for Machine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<Config>, StorageError<u64>> {
        let mut state = self.inner.lock().unwrap();
        let bytes = postcard::to_stdvec(&*state).unwrap();
        let meta =
            SnapshotMeta { last_log_id: state.last_applied, last_membership: state.membership.clone(), snapshot_id: format!("{:?}", state.last_applied) };
        state.snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) })
    }
}

impl RaftStateMachine<Config> for Machine {
    type SnapshotBuilder = Machine;

    async fn applied_state(&mut self) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let state = self.inner.lock().unwrap();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<u64>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<Config>> + OptionalSend,
    {
        let mut state = self.inner.lock().unwrap();
        let mut responses = Vec::new();
        for entry in entries {
            state.last_applied = Some(entry.log_id);
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(number) => {
                    state.sum += number;
                    state.applied.push(number);
                }
                EntryPayload::Membership(membership) => state.membership = StoredMembership::new(Some(entry.log_id), membership),
            }
            responses.push(state.sum);
        }
        Ok(responses)
    }

    async fn get_snapshot_builder(&mut self) -> Machine {
        self.clone()
    }

    async fn begin_receiving_snapshot(&mut self) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(&mut self, meta: &SnapshotMeta<u64, BasicNode>, snapshot: Box<Cursor<Vec<u8>>>) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let mut installed: MachineState = postcard::from_bytes(&bytes).map_err(|e| StorageIOError::read_snapshot(None, &e))?;
        installed.snapshot = Some((meta.clone(), bytes));
        *self.inner.lock().unwrap() = installed;
        Ok(())
    }

    async fn get_current_snapshot(&mut self) -> Result<Option<Snapshot<Config>>, StorageError<u64>> {
        let state = self.inner.lock().unwrap();
        Ok(state.snapshot.clone().map(|(meta, bytes)| Snapshot { meta, snapshot: Box::new(Cursor::new(bytes)) }))
    }
}

/// openraft's settings with the timeouts a replica ships with
/// (cluster.toml's defaults): shorter ones start elections whenever an
/// fsync stalls on a machine other suites share, and a vote needs a synced
/// state file on both ends.
pub fn shipped_raft_config(cluster: &str) -> Arc<openraft::Config> {
    let mut config = ClusterConfig::single("unused");
    config.cluster = cluster.to_string();
    Arc::new(config.raft_config().unwrap())
}

/// How long a test waits for an election or for replicas to catch up, in
/// polls of 25 ms: a bound against a hang, far above what they take.
pub const PATIENCE_POLLS: usize = 1_200;
