//! Operators, their proposals and the audit log: the state and its rules.
//!
//! This is the ledger's own part, not a product: it applies other parts'
//! commands once enough operators approved them, so [`crate::Ledger`]
//! drives it (`Ledger::apply_operators`), asking the products who an action
//! benefits and applying the action through the same dispatch as any
//! command. What is here decides who may do what and keeps the records.

use std::collections::{BTreeMap, BTreeSet};

use ids::{TimestampMs, UserId};
use ledger_api::operators::{
    Action, ActionKind, AuditEvent, AuditHead, AuditRecord, KillSwitch, Outcome, Proposal, ProposalId, ProposalStatus, SecurityEvent, Thresholds,
    TEXT_BYTES_MAX,
};
use ledger_api::LedgerError;
use serde::{Deserialize, Serialize};

use crate::ChangeSet;

/// The table names the store gives this part.
pub mod tables {
    pub const PROPOSALS: &str = "operators.proposals";
    pub const PENDING_PROPOSALS: &str = "operators.pending_proposals";
    pub const AUDIT: &str = "operators.audit";
    pub const TIERS: &str = "operators.tiers";
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorsState {
    pub operators: BTreeSet<UserId>,
    /// The thresholds in force: the config's, once the daemon journaled them.
    pub thresholds: Thresholds,
    pub pending: BTreeMap<ProposalId, Proposal>,
    pub next_proposal: ProposalId,
    pub head: AuditHead,
    /// Accounts the operators froze.
    pub frozen: BTreeSet<UserId>,
    /// Users' verification tiers; a user not here is at tier 0.
    pub tiers: BTreeMap<UserId, u8>,
    /// Users whose kill switch is engaged (never one with neither holder).
    pub kill_switches: BTreeMap<UserId, KillSwitch>,
}

impl Default for OperatorsState {
    fn default() -> Self {
        OperatorsState {
            operators: BTreeSet::new(),
            thresholds: Thresholds::default(),
            pending: BTreeMap::new(),
            next_proposal: 1,
            head: AuditHead::default(),
            frozen: BTreeSet::new(),
            tiers: BTreeMap::new(),
            kill_switches: BTreeMap::new(),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OperatorsChanges {
    /// Proposals made or changed, in their state after it.
    pub proposals: Vec<Proposal>,
    /// New audit records, in order.
    pub audit: Vec<AuditRecord>,
    /// Whether the operators, the thresholds or the counters changed.
    pub touched: bool,
    /// Users whose tier changed, with the new one (0: the row goes).
    pub tiers: Vec<(UserId, u8)>,
}

impl ChangeSet for OperatorsChanges {
    fn clear(&mut self) {
        self.proposals.clear();
        self.audit.clear();
        self.touched = false;
        self.tiers.clear();
    }
}

#[derive(Default)]
pub struct Operators {
    state: OperatorsState,
    changes: OperatorsChanges,
}

pub(crate) fn forbidden(reason: impl Into<String>) -> LedgerError {
    LedgerError::Forbidden(reason.into())
}

impl Operators {
    pub fn restore(mut state: OperatorsState) -> Operators {
        state.next_proposal = state.next_proposal.max(1);
        Operators { state, changes: OperatorsChanges::default() }
    }

    pub fn state(&self) -> &OperatorsState {
        &self.state
    }

    pub fn changes_mut(&mut self) -> &mut OperatorsChanges {
        &mut self.changes
    }

    pub fn take_changes(&mut self) -> OperatorsChanges {
        std::mem::take(&mut self.changes)
    }

    pub fn recycle(&mut self, mut changes: OperatorsChanges) {
        changes.clear();
        if self.changes == OperatorsChanges::default() {
            self.changes = changes;
        }
    }

    pub fn is_operator(&self, user: UserId) -> bool {
        self.state.operators.contains(&user)
    }

    pub fn is_frozen(&self, user: UserId) -> bool {
        self.state.frozen.contains(&user)
    }

    /// Whether any account is frozen: the check every command makes first.
    #[inline]
    pub fn any_frozen(&self) -> bool {
        !self.state.frozen.is_empty()
    }

    pub fn frozen(&self) -> &BTreeSet<UserId> {
        &self.state.frozen
    }

    /// Whether any kill switch is engaged: the check every order makes first.
    #[inline]
    pub fn any_kill_switch(&self) -> bool {
        !self.state.kill_switches.is_empty()
    }

    pub fn kill_switch(&self, user: UserId) -> KillSwitch {
        self.state.kill_switches.get(&user).copied().unwrap_or_default()
    }

    pub(crate) fn set_kill_switch(&mut self, user: UserId, state: KillSwitch) {
        if state.engaged() {
            self.state.kill_switches.insert(user, state);
        } else {
            self.state.kill_switches.remove(&user);
        }
        self.changes.touched = true;
    }

    /// Applies an approved freeze or unfreeze (its proposal's records say who and why).
    pub(crate) fn freeze(&mut self, user: UserId, frozen: bool) {
        if frozen {
            self.state.frozen.insert(user);
        } else {
            self.state.frozen.remove(&user);
        }
        self.changes.touched = true;
    }

    /// `user`'s verification tier (0 when never set).
    pub fn tier(&self, user: UserId) -> u8 {
        self.state.tiers.get(&user).copied().unwrap_or(0)
    }

    /// Applies an approved change of tier (0 is kept as no entry).
    pub(crate) fn set_tier(&mut self, user: UserId, tier: u8) {
        if tier == 0 {
            self.state.tiers.remove(&user);
        } else {
            self.state.tiers.insert(user, tier);
        }
        self.changes.tiers.push((user, tier));
    }

    pub fn thresholds(&self) -> Thresholds {
        self.state.thresholds
    }

    pub fn pending(&self, id: ProposalId) -> Option<&Proposal> {
        self.state.pending.get(&id)
    }

    pub(crate) fn check_operator(&self, user: UserId) -> Result<(), LedgerError> {
        if self.is_operator(user) {
            Ok(())
        } else {
            Err(forbidden(format!("user {user} is not an operator")))
        }
    }

    /// Approvals a new proposal of `kind` needs: its threshold, and for a
    /// new operator no more than there are operators to give them.
    pub(crate) fn required(&self, kind: ActionKind) -> u8 {
        let threshold = self.state.thresholds.of(kind);
        if kind == ActionKind::Operator {
            let operators = u8::try_from(self.state.operators.len()).unwrap_or(u8::MAX);
            threshold.min(operators).max(1)
        } else {
            threshold
        }
    }

    /// The pending proposal of this very action, if any.
    pub(crate) fn pending_with(&self, action: &Action) -> Option<ProposalId> {
        self.state.pending.values().find(|p| p.action == *action).map(|p| p.id)
    }

    pub(crate) fn next_proposal(&self) -> ProposalId {
        self.state.next_proposal
    }

    pub(crate) fn pending_count(&self) -> usize {
        self.state.pending.len()
    }

    /// The pending proposals `user` made.
    pub(crate) fn pending_by(&self, user: UserId) -> usize {
        self.state.pending.values().filter(|p| p.proposer() == user).count()
    }

    fn audit(&mut self, at_ms: TimestampMs, event: AuditEvent) {
        let head = &mut self.state.head;
        let record = AuditRecord::new(head.last_sequence + 1, at_ms, event, head.last_hash);
        *head = AuditHead { last_sequence: record.sequence, last_hash: record.hash };
        self.changes.audit.push(record);
        self.changes.touched = true;
    }

    pub(crate) fn bootstrap(&mut self, operator: UserId, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        if self.state.operators.len() == 1 && self.is_operator(operator) {
            // The same first operator again: done already.
            return Ok(Outcome::Bootstrapped(operator));
        }
        if !self.state.operators.is_empty() {
            return Err(forbidden("this ledger has operators: a new one is proposed by an operator and approved by others"));
        }
        self.state.operators.insert(operator);
        self.audit(at_ms, AuditEvent::OperatorBootstrapped { operator });
        Ok(Outcome::Bootstrapped(operator))
    }

    /// A new proposal with the proposer's approval, waiting for more.
    pub(crate) fn open(&mut self, proposal: Proposal, at_ms: TimestampMs) -> Outcome {
        self.state.next_proposal = proposal.id + 1;
        self.audit(
            at_ms,
            AuditEvent::Proposed {
                proposal: proposal.id,
                operator: proposal.proposer(),
                kind: proposal.kind,
                action: proposal.action.clone(),
                required: proposal.required,
            },
        );
        self.state.pending.insert(proposal.id, proposal.clone());
        self.changes.proposals.push(proposal.clone());
        Outcome::Proposal(proposal)
    }

    /// One more approval that is not yet enough.
    pub(crate) fn approve(&mut self, id: ProposalId, operator: UserId, at_ms: TimestampMs) -> Outcome {
        let proposal = self.state.pending.get_mut(&id).expect("the caller found it pending");
        proposal.approvals.push(operator);
        proposal.updated_ms = at_ms;
        let proposal = proposal.clone();
        self.audit(at_ms, AuditEvent::Approved { proposal: id, operator, approvals: proposal.approvals.len() as u8, required: proposal.required });
        self.changes.proposals.push(proposal.clone());
        Outcome::Proposal(proposal)
    }

    /// The last approval, after its action was applied: `proposal` holds
    /// every approval. A proposal executed at once (one approval needed)
    /// is recorded as proposed first.
    pub(crate) fn executed(&mut self, mut proposal: Proposal, at_ms: TimestampMs) -> Proposal {
        let operator = *proposal.approvals.last().expect("a proposal has its proposer's approval");
        if proposal.approvals.len() == 1 {
            self.state.next_proposal = proposal.id + 1;
            self.audit(
                at_ms,
                AuditEvent::Proposed { proposal: proposal.id, operator, kind: proposal.kind, action: proposal.action.clone(), required: proposal.required },
            );
        } else {
            self.audit(at_ms, AuditEvent::Approved { proposal: proposal.id, operator, approvals: proposal.approvals.len() as u8, required: proposal.required });
        }
        self.state.pending.remove(&proposal.id);
        proposal.status = ProposalStatus::Executed;
        proposal.updated_ms = at_ms;
        self.audit(at_ms, AuditEvent::Executed { proposal: proposal.id });
        self.changes.proposals.push(proposal.clone());
        proposal
    }

    /// Applies an approved [`Action::AddOperator`] (the caller checked the user is not one).
    pub(crate) fn add_operator(&mut self, user: UserId, proposal: ProposalId, at_ms: TimestampMs) {
        self.state.operators.insert(user);
        self.audit(at_ms, AuditEvent::OperatorAdded { operator: user, proposal });
    }

    pub(crate) fn reject(&mut self, operator: UserId, id: ProposalId, reason: &str, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        self.check_operator(operator)?;
        if reason.trim().is_empty() || reason.len() > TEXT_BYTES_MAX {
            return Err(LedgerError::BadInput(format!("say why in 1 to {TEXT_BYTES_MAX} bytes")));
        }
        let Some(mut proposal) = self.state.pending.remove(&id) else {
            return Err(LedgerError::BadInput(format!("proposal {id} is not pending (unknown, executed or rejected)")));
        };
        proposal.status = ProposalStatus::Rejected;
        proposal.updated_ms = at_ms;
        proposal.rejection = Some((operator, reason.to_string()));
        self.audit(at_ms, AuditEvent::Rejected { proposal: id, operator, reason: reason.to_string() });
        self.changes.proposals.push(proposal.clone());
        Ok(Outcome::Proposal(proposal))
    }

    pub(crate) fn record(&mut self, event: &SecurityEvent, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        if event.texts().iter().any(|text| text.len() > TEXT_BYTES_MAX) {
            return Err(LedgerError::BadInput(format!("each text of a security event is at most {TEXT_BYTES_MAX} bytes")));
        }
        self.audit(at_ms, AuditEvent::Security(event.clone()));
        Ok(Outcome::Recorded { sequence: self.state.head.last_sequence })
    }

    pub(crate) fn configure(&mut self, thresholds: Thresholds, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        thresholds.validate().map_err(LedgerError::BadInput)?;
        let from = self.state.thresholds;
        if from != thresholds {
            self.state.thresholds = thresholds;
            self.audit(at_ms, AuditEvent::ThresholdsChanged { from, to: thresholds });
        }
        Ok(Outcome::Configured)
    }

    pub fn check_invariants(&self) -> Result<(), String> {
        for (id, proposal) in &self.state.pending {
            let approvals: BTreeSet<_> = proposal.approvals.iter().collect();
            if proposal.id != *id || proposal.status != ProposalStatus::Pending || *id >= self.state.next_proposal {
                return Err(format!("pending proposal {id} is not as filed: {proposal:?}"));
            }
            if approvals.is_empty() || approvals.len() != proposal.approvals.len() || proposal.approvals.len() >= usize::from(proposal.required) {
                return Err(format!("pending proposal {id} has approvals {:?} of {}: none, repeated, or enough", proposal.approvals, proposal.required));
            }
            // A token agent's action may be its issuer's proposal; every approval after the proposer's is an operator's.
            let proposer_may_be_outsider = usize::from(proposal.kind == ActionKind::TokenAgent);
            if let Some(outsider) = proposal.approvals.iter().skip(proposer_may_be_outsider).find(|user| !self.is_operator(**user)) {
                return Err(format!("pending proposal {id} is approved by user {outsider}, who is no operator"));
            }
        }
        if let Some((user, _)) = self.state.kill_switches.iter().find(|(_, state)| !state.engaged()) {
            return Err(format!("user {user}'s kill switch is kept though nobody holds it engaged"));
        }
        Ok(())
    }
}
