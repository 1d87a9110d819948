//! Split votes broken by a pause drawn afresh at every try.
//!
//! openraft 0.9 draws a replica's election timeout once, when it starts,
//! and checks it on a tick of one and a half heartbeats. Two replicas that
//! drew timeouts within one tick of each other and started together call
//! their elections on the same tick every time, each voting for itself,
//! for as long as they run: seen here as 45 terms in 30 s with no leader.
//! [`break_split_votes`] watches a replica, and once it has known no leader
//! for longer than the longest election timeout, calls an election after a
//! pause drawn at random each time, so that one of the two goes first.

use std::time::{Duration, Instant};

use openraft::{Raft, RaftTypeConfig, ServerState};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use crate::NodeId;

/// Runs until the replica stops; spawn it beside each `Raft` and abort it with it.
pub async fn break_split_votes<C>(raft: Raft<C>, config: &openraft::Config, id: NodeId)
where
    C: RaftTypeConfig<NodeId = NodeId>,
{
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    let mut rng = SmallRng::seed_from_u64(nanos ^ id.rotate_left(32));
    let (min, max) = (config.election_timeout_min, config.election_timeout_max.max(config.election_timeout_min + 1));
    let mut leaderless_since: Option<Instant> = None;
    loop {
        tokio::time::sleep(Duration::from_millis(rng.random_range(min..max))).await;
        let (leader, state) = {
            let metrics = raft.metrics();
            let metrics = metrics.borrow();
            (metrics.current_leader, metrics.state)
        };
        if state == ServerState::Shutdown {
            return;
        }
        if leader.is_some() || state == ServerState::Learner {
            leaderless_since = None;
            continue;
        }
        let since = *leaderless_since.get_or_insert_with(Instant::now);
        if since.elapsed() > Duration::from_millis(max) {
            tracing::info!(
                id,
                leaderless_ms = since.elapsed().as_millis() as u64,
                "no leader for longer than the election timeout; calling an election after a pause of its own"
            );
            if raft.trigger().elect().await.is_err() {
                return; // the replica stopped
            }
        }
    }
}
