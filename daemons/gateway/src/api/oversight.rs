//! What operators read to oversee the site (the console's dashboard, users
//! and audit pages): each daemon's state as this gateway sees it, a user's
//! standing, and the ledger's audit log with its hash chain checked here,
//! a page at a time so that a long log shows its progress.

use async_graphql::{Context, Error, Object, SimpleObject, ID};
use ledger_api::operators::{self as api, ActionKind, AuditEvent, AuditHead, AuditRecord as LedgerRecord, ChainCheck, Digest, SecurityEvent};
use ledger_api::{Answer, Query};

use super::{ask, at, coded, operator, services, unexpected, Catalog, DateTime};

/// Records read from the ledger at once, as `marionettectl audit verify` does.
const AUDIT_PAGE: u64 = 1_000;
/// Records one `verifyAuditLog` call checks at most.
const VERIFY_LIMIT_MAX: i32 = 20_000;

/// The daemons as this gateway sees them.
#[derive(SimpleObject)]
pub struct SystemStatus {
    pub gateway: GatewayStatus,
    pub ledger: LedgerStatus,
    pub matching: MatchingStatus,
}

#[derive(SimpleObject)]
pub struct GatewayStatus {
    /// The package version this gateway runs.
    pub version: String,
    /// The id of the key it signs session tokens with.
    pub signing_key: String,
}

#[derive(SimpleObject)]
pub struct LedgerStatus {
    /// Whether the ledger answered.
    pub reachable: bool,
    /// The last journal sequence durable and applied (null when unreachable).
    pub journal_applied: Option<String>,
    /// The last output of matching's the ledger applied.
    pub matching_applied: Option<String>,
    /// Commands sent to matching that it has not confirmed yet.
    pub outbox_pending: Option<String>,
    /// Why the ledger stopped its link to matching (an output it could not
    /// settle): trading waits for an operator until it is resolved.
    pub matching_alarm: Option<String>,
}

#[derive(SimpleObject)]
pub struct MatchingStatus {
    /// Whether the ledger's link to matching is up (orders flow through it).
    pub connected_to_ledger: bool,
    /// Whether matching answers this gateway's book reads.
    pub reachable_from_gateway: bool,
}

/// One record of the audit log, in words.
#[derive(SimpleObject)]
pub struct AuditRecord {
    /// 1 for the first; dense.
    pub sequence: String,
    pub at: DateTime,
    /// PROPOSED, APPROVED, EXECUTED, REJECTED, OPERATOR_ADDED,
    /// OPERATOR_BOOTSTRAPPED, THRESHOLDS_CHANGED, LOGIN, LOGIN_FAILED,
    /// LOADED or TWO_FACTOR.
    pub kind: String,
    /// What happened: "operator 1 proposed deposit 100.00 USD to user 7 …".
    pub description: String,
    /// The operator or user who acted, when one did.
    pub actor: Option<ID>,
    pub proposal: Option<ID>,
    /// Its blake3 hash (hex), which the next record carries as `previous`.
    pub hash: String,
    pub previous: String,
}

/// A page of the audit log, newest first.
#[derive(SimpleObject)]
pub struct AuditLogPage {
    /// The newest record's sequence ("0" for an empty log) and hash.
    pub head_sequence: String,
    pub head_hash: String,
    pub records: Vec<AuditRecord>,
}

/// One step of checking the audit log's hash chain.
#[derive(SimpleObject)]
pub struct AuditChainCheck {
    /// The last record checked ("0" when none was), and its hash: pass
    /// them as `after` and `afterHash` to go on.
    pub checked_through: String,
    pub last_hash: String,
    /// The ledger's newest record when this step began.
    pub head_sequence: String,
    /// Nothing is left to check: the log is checked up to `headSequence`,
    /// or it broke.
    pub complete: bool,
    /// Where the chain breaks, in words; null while every record checked is linked.
    pub broken: Option<String>,
}

/// A user as operators see them.
#[derive(SimpleObject)]
pub struct UserStanding {
    pub user: super::accounts::User,
    /// Their verification tier (0 for a new user).
    pub tier: i32,
    pub frozen: bool,
    pub kill_switch: super::spot::KillSwitch,
}

#[derive(Default)]
pub struct OversightQuery;

#[Object]
impl OversightQuery {
    /// Each daemon's state as this gateway sees it (operators only).
    async fn system_status(&self, ctx: &Context<'_>) -> Result<SystemStatus, Error> {
        operator(ctx)?;
        let services = services(ctx);
        let status = match services.ledger.query(Query::Status).await {
            Ok(Ok(Answer::Status(status))) => Some(status),
            _ => None,
        };
        // Any market id: a reachable matching answers, with a book or with none.
        let reachable_from_gateway = services.matching.depth(0, 1).await.is_ok();
        Ok(SystemStatus {
            gateway: GatewayStatus { version: env!("CARGO_PKG_VERSION").to_string(), signing_key: services.auth.signing_key_id().to_string() },
            matching: MatchingStatus { connected_to_ledger: status.as_ref().is_some_and(|s| s.matching_connected), reachable_from_gateway },
            ledger: LedgerStatus {
                reachable: status.is_some(),
                journal_applied: status.as_ref().map(|s| s.journal_applied.to_string()),
                matching_applied: status.as_ref().map(|s| s.matching_applied.to_string()),
                outbox_pending: status.as_ref().map(|s| s.outbox_pending.to_string()),
                matching_alarm: status.and_then(|s| s.matching_alarm),
            },
        })
    }

    /// The audit log newest first: `limit` records before `before` (by
    /// default, up to the newest) (operators only).
    async fn audit_log(&self, ctx: &Context<'_>, before: Option<String>, #[graphql(default = 50)] limit: i32) -> Result<AuditLogPage, Error> {
        operator(ctx)?;
        let limit =
            u64::try_from(limit).ok().filter(|l| (1..=AUDIT_PAGE).contains(l)).ok_or_else(|| coded("BAD_USER_INPUT", format!("limit is 1 to {AUDIT_PAGE}")))?;
        let head = audit_head(ctx).await?;
        let before = match before {
            Some(text) => sequence(&text)?,
            None => head.last_sequence.saturating_add(1),
        };
        let from = before.saturating_sub(limit).max(1);
        let mut records = if before > 1 { audit_records(ctx, from, before - from).await? } else { Vec::new() };
        records.reverse();
        let catalog = Catalog::load(ctx).await?;
        Ok(AuditLogPage {
            head_sequence: head.last_sequence.to_string(),
            head_hash: head.last_hash.hex(),
            records: records.iter().map(|r| record(&catalog, r)).collect(),
        })
    }

    /// Checks the audit log's hash chain for up to `limit` records after
    /// record `after` (0, the start, by default), whose hash is `afterHash`
    /// (zeros for the start): each record's hash must match its contents
    /// and carry the one before it, and the last must be the ledger's head.
    /// Call again with `checkedThrough` and `lastHash` until `complete`
    /// (operators only; `marionettectl audit verify` does the same).
    async fn verify_audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default_with = "\"0\".to_string()")] after: String,
        after_hash: Option<String>,
        #[graphql(default = 5000)] limit: i32,
    ) -> Result<AuditChainCheck, Error> {
        operator(ctx)?;
        // Clamped to 1..=VERIFY_LIMIT_MAX, so the conversion cannot fail.
        let limit = u64::try_from(limit.clamp(1, VERIFY_LIMIT_MAX)).unwrap_or(1);
        let after = sequence(&after)?;
        let last_hash = match after_hash {
            Some(hex) => Digest::from_hex(&hex).ok_or_else(|| coded("BAD_USER_INPUT", "afterHash is a record's hash: 64 hex digits"))?,
            None if after == 0 => Digest::default(),
            None => return Err(coded("BAD_USER_INPUT", "afterHash is needed to go on after a record: the lastHash of the step before")),
        };
        let head = audit_head(ctx).await?;
        if after > head.last_sequence {
            return Err(coded("BAD_USER_INPUT", format!("the log has {} records: start at 0, or after one of them", head.last_sequence)));
        }
        let mut chain = ChainCheck { last_sequence: after, last_hash };
        let end = head.last_sequence.min(after.saturating_add(limit));
        let mut broken = None;
        while chain.last_sequence < end && broken.is_none() {
            let page = audit_records(ctx, chain.last_sequence + 1, AUDIT_PAGE.min(end - chain.last_sequence)).await?;
            if page.is_empty() {
                break;
            }
            broken = page.iter().find_map(|r| chain.next(r).err());
        }
        let complete = broken.is_none() && chain.last_sequence >= head.last_sequence;
        if complete {
            broken = chain.finish(&head).err();
        } else if broken.is_none() && chain.last_sequence < end {
            // Fewer records than the head promised: the log's end is missing.
            broken = Some(api::ChainBreak::Truncated { last: chain.last_sequence, head: head.last_sequence });
        }
        Ok(AuditChainCheck {
            checked_through: chain.last_sequence.to_string(),
            last_hash: chain.last_hash.hex(),
            head_sequence: head.last_sequence.to_string(),
            complete: complete || broken.is_some(),
            broken: broken.map(|b| b.to_string()),
        })
    }

    /// A user's standing: tier, whether frozen, kill switch; null for an
    /// unknown email (operators only).
    async fn user_standing(&self, ctx: &Context<'_>, email: String) -> Result<Option<UserStanding>, Error> {
        operator(ctx)?;
        let services = services(ctx);
        let Some(user) = services.users.by_email(&email).map_err(super::user_error)? else { return Ok(None) };
        let standing = super::operators::standing(&services.ledger).await.ok_or_else(|| coded("UNAVAILABLE", "the ledger is unreachable; try again"))?;
        let tier = match ask(ctx, Query::Operators(api::Query::Tier { user: user.id })).await? {
            Answer::Operators(api::Answer::Tier(tier)) => i32::from(tier),
            other => return Err(unexpected(other)),
        };
        Ok(Some(UserStanding {
            tier,
            frozen: standing.frozen.contains(&user.id),
            kill_switch: super::spot::kill_switch_of(ctx, user.id).await?,
            user: (&user).into(),
        }))
    }
}

fn sequence(text: &str) -> Result<u64, Error> {
    text.parse().map_err(|_| coded("BAD_USER_INPUT", "an audit sequence is a whole number"))
}

async fn audit_head(ctx: &Context<'_>) -> Result<AuditHead, Error> {
    match ask(ctx, Query::Operators(api::Query::AuditHead)).await? {
        Answer::Operators(api::Answer::AuditHead(head)) => Ok(head),
        other => Err(unexpected(other)),
    }
}

async fn audit_records(ctx: &Context<'_>, from: u64, count: u64) -> Result<Vec<LedgerRecord>, Error> {
    let limit = u32::try_from(count.min(AUDIT_PAGE)).unwrap_or(1);
    match ask(ctx, Query::Operators(api::Query::Audit { from, limit })).await? {
        Answer::Operators(api::Answer::Audit(records)) => Ok(records),
        other => Err(unexpected(other)),
    }
}

/// "the approvals needed changed: deposit 2 to 1, market 2 to 1", as in ledger.toml's `[approvals]`.
fn thresholds_changed(from: &api::Thresholds, to: &api::Thresholds) -> String {
    // Every kind, by its name in ledger.toml.
    let changes: Vec<String> = api::ALL_KINDS
        .iter()
        .filter(|kind| from.of(**kind) != to.of(**kind))
        .map(|kind| format!("{} {} to {}", kind.name(), from.of(*kind), to.of(*kind)))
        .collect();
    if changes.is_empty() {
        "the approvals needed were set again, unchanged".to_string()
    } else {
        format!("the approvals needed changed: {}", changes.join(", "))
    }
}

fn record(catalog: &Catalog, r: &LedgerRecord) -> AuditRecord {
    let id = |n: u64| Some(ID(n.to_string()));
    let (kind, description, actor, proposal) = match &r.event {
        AuditEvent::OperatorBootstrapped { operator } => ("OPERATOR_BOOTSTRAPPED", format!("user {operator} became the first operator"), id(*operator), None),
        AuditEvent::Proposed { proposal, operator, kind, action, required } => (
            "PROPOSED",
            format!(
                "{} {operator} proposed to {} (proposal {proposal}, {required} approval(s) needed)",
                // A token agent's action may be its issuer's proposal.
                if *kind == ActionKind::TokenAgent { "user" } else { "operator" },
                super::operators::describe_action(catalog, action)
            ),
            id(*operator),
            id(*proposal),
        ),
        AuditEvent::Approved { proposal, operator, approvals, required } => {
            ("APPROVED", format!("operator {operator} approved proposal {proposal} ({approvals} of {required})"), id(*operator), id(*proposal))
        }
        AuditEvent::Executed { proposal } => ("EXECUTED", format!("proposal {proposal} was applied"), None, id(*proposal)),
        AuditEvent::Rejected { proposal, operator, reason } => {
            ("REJECTED", format!("operator {operator} rejected proposal {proposal}: {reason}"), id(*operator), id(*proposal))
        }
        AuditEvent::OperatorAdded { operator, proposal } => ("OPERATOR_ADDED", format!("user {operator} became an operator"), id(*operator), id(*proposal)),
        AuditEvent::ThresholdsChanged { from, to } => ("THRESHOLDS_CHANGED", thresholds_changed(from, to), None, None),
        AuditEvent::Security(SecurityEvent::Login { user, address }) => ("LOGIN", format!("user {user} logged in from {address}"), id(*user), None),
        AuditEvent::Security(SecurityEvent::LoginFailed { email, address, reason }) => {
            ("LOGIN_FAILED", format!("a login as {email:?} from {address} was refused: {reason}"), None, None)
        }
        AuditEvent::Security(SecurityEvent::Loaded { daemon, what, fingerprint }) => {
            ("LOADED", format!("{daemon} loaded its {what} ({fingerprint})"), None, None)
        }
        AuditEvent::Security(SecurityEvent::TwoFactor { user, enabled }) => {
            ("TWO_FACTOR", format!("user {user} turned two-factor authentication {}", if *enabled { "on" } else { "off" }), id(*user), None)
        }
    };
    AuditRecord {
        sequence: r.sequence.to_string(),
        at: at(r.at_ms),
        kind: kind.to_string(),
        description,
        actor,
        proposal,
        hash: r.hash.hex(),
        previous: r.previous.hex(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_thresholds_change_names_only_what_changed() {
        let from = api::Thresholds::default();
        let to = api::Thresholds { deposit: 1, tier: 3, ..from };
        assert_eq!(thresholds_changed(&from, &to), format!("the approvals needed changed: deposit {} to 1, tier {} to 3", from.deposit, from.tier));
        assert_eq!(thresholds_changed(&from, &from), "the approvals needed were set again, unchanged");
    }
}
