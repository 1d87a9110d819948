//! Operators, the four-eyes rule over what they do, and the audit log.
//!
//! Every operator action (a deposit, a withdrawal's decision, the house's
//! inventory, an asset, a market, a new operator, freezing an account) reaches the ledger as a
//! [`Command::Propose`] naming the operator. It is applied once as many
//! different operators as its kind needs ([`Thresholds`], the proposer
//! included) have approved it; no operator may propose or approve an action
//! that benefits them (a deposit to them, the decision on their own
//! withdrawal, making them an operator). Every proposal, approval, rejection,
//! change of thresholds and security event the gateways report becomes an
//! [`AuditRecord`] that carries the hash of the one before it.

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::{ActionCommand, ActionOutcome, TimestampMs, UserId};

pub type ProposalId = u64;

/// The most bytes of a rejection's reason and of each text of a security event.
pub const TEXT_BYTES_MAX: usize = 256;

/// The kinds of operator action, each with its own number of approvals.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum ActionKind {
    Deposit,
    WithdrawalApproval,
    WithdrawalRejection,
    HouseInventory,
    Asset,
    Market,
    Operator,
    /// Freezing or unfreezing a user's account.
    AccountFreeze,
    /// A user's verification tier, which sets their withdrawal limits.
    Tier,
    /// Adding or changing a conversion pair (its price, spread, bounds, pause).
    ConvertPair,
    /// Making a user an issuer of tokens, or no longer one.
    Issuer,
    /// A user's investor claims (country, category, expiry).
    InvestorClaims,
    /// A token agent's action (a partial freeze, a forced transfer, a
    /// recovery), which the token's issuer may propose.
    TokenAgent,
    /// Verifying an organiser of donation campaigns, the platform's fee on
    /// gifts, stopping a campaign.
    Organiser,
    /// Paying a campaign's gifts out to its organiser.
    DonationPayout,
}

impl ActionKind {
    /// The name in `[approvals]` of ledger.toml and in the API.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Deposit => "deposit",
            ActionKind::WithdrawalApproval => "withdrawal_approval",
            ActionKind::WithdrawalRejection => "withdrawal_rejection",
            ActionKind::HouseInventory => "house_inventory",
            ActionKind::Asset => "asset",
            ActionKind::Market => "market",
            ActionKind::Operator => "operator",
            ActionKind::AccountFreeze => "account_freeze",
            ActionKind::Tier => "tier",
            ActionKind::ConvertPair => "convert_pair",
            ActionKind::Issuer => "issuer",
            ActionKind::InvestorClaims => "investor_claims",
            ActionKind::TokenAgent => "token_agent",
            ActionKind::Organiser => "organiser",
            ActionKind::DonationPayout => "donation_payout",
        }
    }

    /// Whether the action moves money.
    pub fn moves_money(self) -> bool {
        matches!(self, ActionKind::Deposit | ActionKind::WithdrawalApproval | ActionKind::HouseInventory | ActionKind::TokenAgent | ActionKind::DonationPayout)
    }
}

/// Approvals each kind of action needs, the proposer's included: the
/// `[approvals]` section of ledger.toml (every key optional, unknown keys
/// refused). Two for everything but rejecting a withdrawal, which gives the
/// money back to its owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Thresholds {
    pub deposit: u8,
    pub withdrawal_approval: u8,
    pub withdrawal_rejection: u8,
    pub house_inventory: u8,
    pub asset: u8,
    pub market: u8,
    /// While the ledger has fewer operators than this, adding one needs
    /// all of them: the first operator of a fresh install adds the second.
    pub operator: u8,
    pub account_freeze: u8,
    pub tier: u8,
    pub convert_pair: u8,
    pub issuer: u8,
    pub investor_claims: u8,
    pub token_agent: u8,
    pub organiser: u8,
    pub donation_payout: u8,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            deposit: 2,
            withdrawal_approval: 2,
            withdrawal_rejection: 1,
            house_inventory: 2,
            asset: 2,
            market: 2,
            operator: 2,
            account_freeze: 2,
            tier: 2,
            convert_pair: 2,
            issuer: 2,
            investor_claims: 2,
            token_agent: 2,
            organiser: 2,
            donation_payout: 2,
        }
    }
}

/// The most approvals a kind may need.
pub const THRESHOLD_MAX: u8 = 9;

impl Thresholds {
    pub fn of(&self, kind: ActionKind) -> u8 {
        match kind {
            ActionKind::Deposit => self.deposit,
            ActionKind::WithdrawalApproval => self.withdrawal_approval,
            ActionKind::WithdrawalRejection => self.withdrawal_rejection,
            ActionKind::HouseInventory => self.house_inventory,
            ActionKind::Asset => self.asset,
            ActionKind::Market => self.market,
            ActionKind::Operator => self.operator,
            ActionKind::AccountFreeze => self.account_freeze,
            ActionKind::Tier => self.tier,
            ActionKind::ConvertPair => self.convert_pair,
            ActionKind::Issuer => self.issuer,
            ActionKind::InvestorClaims => self.investor_claims,
            ActionKind::TokenAgent => self.token_agent,
            ActionKind::Organiser => self.organiser,
            ActionKind::DonationPayout => self.donation_payout,
        }
    }

    /// Every threshold: 1 to [`THRESHOLD_MAX`], or which is not.
    pub fn validate(&self) -> Result<(), String> {
        for kind in ALL_KINDS {
            let n = self.of(kind);
            if !(1..=THRESHOLD_MAX).contains(&n) {
                return Err(format!("approvals.{} is {n}; it must be 1 to {THRESHOLD_MAX}", kind.name()));
            }
        }
        Ok(())
    }

    /// One threshold for every kind (for test systems that are not about four-eyes).
    pub fn all(n: u8) -> Thresholds {
        Thresholds {
            deposit: n,
            withdrawal_approval: n,
            withdrawal_rejection: n,
            house_inventory: n,
            asset: n,
            market: n,
            operator: n,
            account_freeze: n,
            tier: n,
            convert_pair: n,
            issuer: n,
            investor_claims: n,
            token_agent: n,
            organiser: n,
            donation_payout: n,
        }
    }
}

/// The highest verification tier; 0 is a new user's.
pub const TIER_MAX: u8 = 9;

pub const ALL_KINDS: [ActionKind; 15] = [
    ActionKind::Deposit,
    ActionKind::WithdrawalApproval,
    ActionKind::WithdrawalRejection,
    ActionKind::HouseInventory,
    ActionKind::Asset,
    ActionKind::Market,
    ActionKind::Operator,
    ActionKind::AccountFreeze,
    ActionKind::Tier,
    ActionKind::ConvertPair,
    ActionKind::Issuer,
    ActionKind::InvestorClaims,
    ActionKind::TokenAgent,
    ActionKind::Organiser,
    ActionKind::DonationPayout,
];

/// What a proposal would do.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Action {
    /// A ledger command only operators may give ([`crate::Command::operator_action`]).
    Ledger(ActionCommand),
    /// Makes a user an operator.
    AddOperator {
        user: UserId,
    },
    /// Stops a user's account: no new orders, no withdrawals (the gateway
    /// lets them not log in); with `cancel_orders`, their open orders are
    /// cancelled too. Deposits still arrive.
    Freeze {
        user: UserId,
        cancel_orders: bool,
    },
    Unfreeze {
        user: UserId,
    },
    /// Sets a user's verification tier (0, the default, is the lowest).
    SetTier {
        user: UserId,
        tier: u8,
    },
    /// Engages the operators' kill switch on a user's trading (their open
    /// orders are cancelled, new ones refused) or lifts it. The user's own
    /// switch ([`Command::KillSwitch`]) is theirs to lift.
    KillSwitch {
        user: UserId,
        engaged: bool,
    },
}

/// Who holds a user's kill switch engaged: new orders are refused while
/// either does, and each lifts only their own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct KillSwitch {
    pub by_user: bool,
    pub by_operators: bool,
}

impl KillSwitch {
    pub fn engaged(&self) -> bool {
        self.by_user || self.by_operators
    }
}

impl Action {
    /// Its kind, or None for a command that is not an operator's.
    pub fn kind(&self) -> Option<ActionKind> {
        match self {
            Action::Ledger(command) => command.kind(),
            Action::AddOperator { .. } => Some(ActionKind::Operator),
            // Stopping an account's trading is a lesser freeze: the same approvals.
            Action::Freeze { .. } | Action::Unfreeze { .. } | Action::KillSwitch { .. } => Some(ActionKind::AccountFreeze),
            Action::SetTier { .. } => Some(ActionKind::Tier),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum ProposalStatus {
    Pending,
    Executed,
    Rejected,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Proposal {
    pub id: ProposalId,
    pub kind: ActionKind,
    pub action: Action,
    /// The operators who approved it, the proposer first.
    pub approvals: Vec<UserId>,
    /// Approvals it needs: its kind's threshold when it was proposed.
    pub required: u8,
    pub status: ProposalStatus,
    pub created_ms: TimestampMs,
    pub updated_ms: TimestampMs,
    /// Who rejected it, and why.
    pub rejection: Option<(UserId, String)>,
}

impl Proposal {
    pub fn proposer(&self) -> UserId {
        self.approvals[0]
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// The first operator of a fresh ledger; refused once it has one.
    Bootstrap {
        operator: UserId,
    },
    /// Proposes an action, the proposer's approval counted. Proposing an
    /// action that is already pending approves that proposal instead.
    Propose {
        operator: UserId,
        action: Action,
    },
    Approve {
        operator: UserId,
        proposal: ProposalId,
    },
    Reject {
        operator: UserId,
        proposal: ProposalId,
        reason: String,
    },
    /// A security event a gateway saw, for the audit log.
    Record(SecurityEvent),
    /// The ledger's own, journaled at start when its config's thresholds
    /// differ from the ones in force; peers may not send it.
    Configure(Thresholds),
    /// A user engages or lifts their own kill switch (the gateway sends it
    /// for the caller): engaging cancels their open orders and refuses new
    /// ones until they lift it.
    KillSwitch {
        user: UserId,
        engaged: bool,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    Bootstrapped(UserId),
    /// Waiting for approvals, or rejected.
    Proposal(Proposal),
    /// Approved by enough operators and applied: the proposal, and what the action did.
    Executed {
        proposal: Proposal,
        outcome: ActionOutcome,
    },
    /// Not a command's outcome: [`ActionOutcome::OperatorAdded`] as a ledger outcome.
    OperatorAdded(UserId),
    Recorded {
        sequence: u64,
    },
    Configured,
    /// Not a command's outcome: [`ActionOutcome::AccountFrozen`] as a ledger outcome.
    AccountFrozen {
        user: UserId,
        orders_cancelled: u32,
    },
    AccountUnfrozen(UserId),
    TierSet {
        user: UserId,
        tier: u8,
    },
    /// A kill switch engaged or lifted: the user's switch as it is now, and
    /// how many open orders went to matching to be cancelled.
    KillSwitchSet {
        user: UserId,
        state: KillSwitch,
        orders_cancelled: u32,
    },
}

/// A security event outside the ledger's own commands.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum SecurityEvent {
    Login {
        user: UserId,
        address: String,
    },
    LoginFailed {
        email: String,
        address: String,
        reason: String,
    },
    /// A daemon loaded a key, a certificate or its configuration.
    Loaded {
        daemon: String,
        what: String,
        fingerprint: String,
    },
    /// An operator turned two-factor authentication on or off: what the
    /// others look for when an operator's password may have leaked.
    TwoFactor {
        user: UserId,
        enabled: bool,
    },
}

impl SecurityEvent {
    pub fn texts(&self) -> Vec<&str> {
        match self {
            SecurityEvent::Login { address, .. } => vec![address],
            SecurityEvent::LoginFailed { email, address, reason } => vec![email, address, reason],
            SecurityEvent::Loaded { daemon, what, fingerprint } => vec![daemon, what, fingerprint],
            SecurityEvent::TwoFactor { .. } => vec![],
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AuditEvent {
    OperatorBootstrapped { operator: UserId },
    Proposed { proposal: ProposalId, operator: UserId, kind: ActionKind, action: Action, required: u8 },
    Approved { proposal: ProposalId, operator: UserId, approvals: u8, required: u8 },
    Executed { proposal: ProposalId },
    Rejected { proposal: ProposalId, operator: UserId, reason: String },
    OperatorAdded { operator: UserId, proposal: ProposalId },
    ThresholdsChanged { from: Thresholds, to: Thresholds },
    Security(SecurityEvent),
}

/// A blake3 digest: bytes in the ledger's formats, hex in JSON.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Digest(pub [u8; 32]);

impl Digest {
    pub fn hex(&self) -> String {
        self.0.iter().map(|b| format!("{b:02x}")).collect()
    }

    pub fn from_hex(text: &str) -> Option<Digest> {
        if text.len() != 64 || !text.is_ascii() {
            return None;
        }
        let mut out = [0; 32];
        for (i, byte) in out.iter_mut().enumerate() {
            *byte = u8::from_str_radix(&text[2 * i..2 * i + 2], 16).ok()?;
        }
        Some(Digest(out))
    }
}

impl Serialize for Digest {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        if serializer.is_human_readable() {
            serializer.serialize_str(&self.hex())
        } else {
            self.0.serialize(serializer)
        }
    }
}

impl<'de> Deserialize<'de> for Digest {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Digest, D::Error> {
        if deserializer.is_human_readable() {
            let text = String::deserialize(deserializer)?;
            Digest::from_hex(&text).ok_or_else(|| serde::de::Error::custom("a digest is 64 hex digits"))
        } else {
            <[u8; 32]>::deserialize(deserializer).map(Digest)
        }
    }
}

/// One record of the audit log. `hash` covers the record's sequence, time,
/// event and `previous`, the hash of the record before it (zeros for the
/// first), so a changed, removed or reordered record breaks the chain.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuditRecord {
    pub sequence: u64,
    pub at_ms: TimestampMs,
    pub event: AuditEvent,
    pub previous: Digest,
    pub hash: Digest,
}

const AUDIT_DOMAIN: &[u8] = b"marionette audit record v1";

impl AuditRecord {
    pub fn new(sequence: u64, at_ms: TimestampMs, event: AuditEvent, previous: Digest) -> AuditRecord {
        let hash = AuditRecord::digest(sequence, at_ms, &event, &previous);
        AuditRecord { sequence, at_ms, event, previous, hash }
    }

    pub fn digest(sequence: u64, at_ms: TimestampMs, event: &AuditEvent, previous: &Digest) -> Digest {
        let mut hasher = blake3::Hasher::new();
        hasher.update(AUDIT_DOMAIN);
        hasher.update(&previous.0);
        hasher.update(&postcard::to_stdvec(&(sequence, at_ms, event)).expect("encoding into a vector cannot fail"));
        Digest(*hasher.finalize().as_bytes())
    }
}

/// Where a chain of audit records breaks, and how.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ChainBreak {
    #[error("record {sequence}: its hash does not match its contents (the record was changed)")]
    Changed { sequence: u64 },
    #[error("record {sequence} follows record {after}: records are missing or out of order")]
    OutOfOrder { sequence: u64, after: u64 },
    #[error("record {sequence}: it does not carry the hash of the record before it (a record before it was changed, removed or reordered)")]
    Unlinked { sequence: u64 },
    #[error("the log ends at record {last}, but the ledger's head says {head}: records at the end were removed")]
    Truncated { last: u64, head: u64 },
    #[error("the last record's hash is not the ledger's head hash")]
    HeadMismatch,
}

/// Checks records in order, from the start of the log or after a record
/// already checked; keeps what it needs to check the next.
#[derive(Clone, Debug, Default)]
pub struct ChainCheck {
    pub last_sequence: u64,
    pub last_hash: Digest,
}

impl ChainCheck {
    pub fn next(&mut self, record: &AuditRecord) -> Result<(), ChainBreak> {
        if record.sequence != self.last_sequence + 1 {
            return Err(ChainBreak::OutOfOrder { sequence: record.sequence, after: self.last_sequence });
        }
        if AuditRecord::digest(record.sequence, record.at_ms, &record.event, &record.previous) != record.hash {
            return Err(ChainBreak::Changed { sequence: record.sequence });
        }
        if record.previous != self.last_hash {
            return Err(ChainBreak::Unlinked { sequence: record.sequence });
        }
        self.last_sequence = record.sequence;
        self.last_hash = record.hash;
        Ok(())
    }

    /// After the last record: the ledger's head must be where the chain ended.
    pub fn finish(&self, head: &AuditHead) -> Result<(), ChainBreak> {
        if self.last_sequence != head.last_sequence {
            return Err(ChainBreak::Truncated { last: self.last_sequence, head: head.last_sequence });
        }
        if self.last_hash != head.last_hash {
            return Err(ChainBreak::HeadMismatch);
        }
        Ok(())
    }
}

/// The newest audit record: its sequence (0 for none) and hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AuditHead {
    pub last_sequence: u64,
    pub last_hash: Digest,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Proposal {
        id: ProposalId,
    },
    /// Newest first.
    Proposals {
        status: Option<ProposalStatus>,
        limit: u32,
    },
    /// Who the operators are, the thresholds in force, and the frozen accounts.
    Operators,
    /// Audit records from sequence `from`, oldest first.
    Audit {
        from: u64,
        limit: u32,
    },
    AuditHead,
    /// A user's verification tier (0 when never set).
    Tier {
        user: UserId,
    },
    /// A user's kill switch.
    KillSwitch {
        user: UserId,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Proposal(Option<Proposal>),
    Proposals(Vec<Proposal>),
    Operators { operators: Vec<UserId>, thresholds: Thresholds, frozen: Vec<UserId> },
    Audit(Vec<AuditRecord>),
    AuditHead(AuditHead),
    Tier(u8),
    KillSwitch(KillSwitch),
}
