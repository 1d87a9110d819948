//! Operators' tables: every proposal by id, the pending ones, and the audit
//! log by sequence. The operators, the thresholds in force, the next
//! proposal id, the audit head, the frozen accounts and the engaged kill
//! switches are in META.

use ledger_api::operators::{Answer, AuditHead, AuditRecord, KillSwitch, Proposal, ProposalStatus, Query, Thresholds};
use products::operators::{tables, Operators, OperatorsChanges, OperatorsState};
use storage::{Batch, Store, Table};

use super::{by_id, corrupt, decode, exact, meta, put_encoded, SchemaError, FILTER_SCAN_MAX, META};
use crate::query::{limit, Read};

pub const PROPOSALS: Table = Table::new(tables::PROPOSALS);
/// Proposals waiting for approvals (id -> ()): start-up loads these.
pub const PENDING_PROPOSALS: Table = Table::new(tables::PENDING_PROPOSALS);
/// sequence -> [`AuditRecord`], written once.
pub const AUDIT: Table = Table::new(tables::AUDIT);

/// user -> tier (u8), for users above tier 0.
pub const TIERS: Table = Table::new(tables::TIERS);

pub const TABLES: &[Table] = &[PROPOSALS, PENDING_PROPOSALS, AUDIT, TIERS];

const META_OPERATORS: &[u8] = b"operators.operators";
const META_THRESHOLDS: &[u8] = b"operators.thresholds";
const META_NEXT_PROPOSAL: &[u8] = b"operators.next_proposal";
const META_AUDIT_HEAD: &[u8] = b"operators.audit_head";
const META_FROZEN: &[u8] = b"operators.frozen";
const META_KILL_SWITCHES: &[u8] = b"operators.kill_switches";

pub fn write(batch: &mut Batch, operators: &Operators, changes: &OperatorsChanges) {
    for &(user, tier) in &changes.tiers {
        match tier {
            0 => batch.delete(TIERS, &user.to_be_bytes()),
            tier => batch.put(TIERS, &user.to_be_bytes(), &[tier]),
        }
    }
    if !changes.touched && changes.proposals.is_empty() {
        return;
    }
    for proposal in &changes.proposals {
        let id = proposal.id.to_be_bytes();
        put_encoded(batch, PROPOSALS, &id, proposal);
        if proposal.status == ProposalStatus::Pending {
            batch.put(PENDING_PROPOSALS, &id, &[]);
        } else {
            batch.delete(PENDING_PROPOSALS, &id);
        }
    }
    for record in &changes.audit {
        put_encoded(batch, AUDIT, &record.sequence.to_be_bytes(), record);
    }
    let state = operators.state();
    put_encoded(batch, META, META_OPERATORS, &state.operators);
    put_encoded(batch, META, META_THRESHOLDS, &state.thresholds);
    put_encoded(batch, META, META_NEXT_PROPOSAL, &state.next_proposal);
    put_encoded(batch, META, META_AUDIT_HEAD, &state.head);
    put_encoded(batch, META, META_FROZEN, &state.frozen);
    put_encoded(batch, META, META_KILL_SWITCHES, &state.kill_switches);
}

pub fn load(store: &Store) -> Result<OperatorsState, SchemaError> {
    let mut state = OperatorsState {
        operators: meta(store, META_OPERATORS)?.unwrap_or_default(),
        thresholds: meta(store, META_THRESHOLDS)?.unwrap_or_default(),
        next_proposal: meta(store, META_NEXT_PROPOSAL)?.unwrap_or(1),
        head: meta(store, META_AUDIT_HEAD)?.unwrap_or_default(),
        frozen: meta(store, META_FROZEN)?.unwrap_or_default(),
        kill_switches: meta(store, META_KILL_SWITCHES)?.unwrap_or_default(),
        ..OperatorsState::default()
    };
    for item in store.scan_all(PENDING_PROPOSALS) {
        let (key, _) = item?;
        let id = u64::from_be_bytes(exact(PENDING_PROPOSALS, &key)?);
        let proposal: Proposal = by_id(store, PROPOSALS, id)?.ok_or_else(|| corrupt(PENDING_PROPOSALS, &key, "a pending proposal has no record"))?;
        state.pending.insert(id, proposal);
    }
    for item in store.scan_all(TIERS) {
        let (key, value) = item?;
        let user = u64::from_be_bytes(exact(TIERS, &key)?);
        let [tier] = exact::<1>(TIERS, &value)?;
        state.tiers.insert(user, tier);
    }
    Ok(state)
}

/// Newest first (the newest [`FILTER_SCAN_MAX`] looked at).
fn proposals_where(store: &Store, limit: usize, status: Option<ProposalStatus>) -> Result<Vec<Proposal>, SchemaError> {
    let mut out = Vec::new();
    for (key, value) in store.scan_prefix(PROPOSALS, &[], FILTER_SCAN_MAX, true)? {
        let proposal: Proposal = decode(PROPOSALS, &key, &value)?;
        if status.is_none_or(|s| proposal.status == s) {
            out.push(proposal);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

/// Records `from` on, oldest first, at most `limit`: the sequences are
/// dense, so the first one absent is the end.
pub fn audit(store: &Store, from: u64, limit: usize) -> Result<Vec<AuditRecord>, SchemaError> {
    let mut out = Vec::with_capacity(limit.min(1024));
    for sequence in from.max(1)..from.max(1).saturating_add(limit as u64) {
        match by_id(store, AUDIT, sequence)? {
            Some(record) => out.push(record),
            None => break,
        }
    }
    Ok(out)
}

pub fn audit_head(store: &Store) -> Result<AuditHead, SchemaError> {
    Ok(meta(store, META_AUDIT_HEAD)?.unwrap_or_default())
}

pub fn answer(store: &Store, query: &Query) -> Result<Answer, Read> {
    Ok(match *query {
        Query::Proposal { id } => Answer::Proposal(by_id(store, PROPOSALS, id)?),
        Query::Proposals { status, limit: n } => Answer::Proposals(proposals_where(store, limit(n)?, status)?),
        Query::Operators => Answer::Operators {
            operators: meta::<std::collections::BTreeSet<u64>>(store, META_OPERATORS)?.unwrap_or_default().into_iter().collect(),
            thresholds: meta::<Thresholds>(store, META_THRESHOLDS)?.unwrap_or_default(),
            frozen: meta::<std::collections::BTreeSet<u64>>(store, META_FROZEN)?.unwrap_or_default().into_iter().collect(),
        },
        Query::Audit { from, limit: n } => Answer::Audit(audit(store, from, limit(n)?)?),
        Query::AuditHead => Answer::AuditHead(audit_head(store)?),
        Query::KillSwitch { user } => Answer::KillSwitch(
            meta::<std::collections::BTreeMap<u64, KillSwitch>>(store, META_KILL_SWITCHES)?.unwrap_or_default().get(&user).copied().unwrap_or_default(),
        ),
        Query::Tier { user } => {
            Answer::Tier(store.get(TIERS, &user.to_be_bytes()).map_err(SchemaError::from)?.and_then(|value| value.first().copied()).unwrap_or(0))
        }
    })
}
