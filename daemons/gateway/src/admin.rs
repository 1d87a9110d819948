//! The local admin socket `marionettectl` talks to. A Unix socket created
//! with mode 0600 (and its directory's permissions), so only the host's
//! administrators reach it; even they act as a named operator: every
//! request but `status`, `login` and a fresh install's first
//! `create-operator` carries an operator's `token` (from `login`), so the
//! ledger's four-eyes rule and audit log name who did what. One JSON object
//! a line each way.
//!
//! Requests: `{"op":"login","email":…,"password":…}` (an operator's token);
//! `{"op":"create-operator","email":…,"password":…}`: without a token only
//! while the ledger has no operator (the first one, idempotent when the same
//! operator and password exist), with one a proposal to make that account an
//! operator; `{"op":"graphql","query":…,"variables":…}` run as the token's
//! operator; `{"op":"audit","from":…,"limit":…}` and `{"op":"audit-head"}`
//! (the audit log, for `marionettectl audit`); `{"op":"status"}`.
//! Answers: `{"ok":…}` or `{"error":…,"code":…}`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::api::{ApiSchema, Caller};
use crate::auth::{Auth, Claims};
use crate::ledger_client::LedgerClient;
use crate::users::{Role, UserError, Users};
use ledger_api::operators::SecurityEvent;

/// The most bytes one admin connection may send.
const LINE_BYTES_MAX: u64 = 1 << 20;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
enum AdminRequest {
    Login {
        email: String,
        password: String,
        /// The two-factor code, when the operator has it on.
        #[serde(default)]
        code: Option<String>,
    },
    CreateOperator {
        email: String,
        password: String,
        #[serde(default)]
        token: Option<String>,
    },
    Graphql {
        query: String,
        #[serde(default)]
        variables: Value,
        #[serde(default)]
        token: Option<String>,
    },
    Audit {
        from: u64,
        limit: u32,
        #[serde(default)]
        token: Option<String>,
    },
    AuditHead {
        #[serde(default)]
        token: Option<String>,
    },
    Status,
}

fn refusal(code: &str, error: impl std::fmt::Display) -> Value {
    json!({ "error": error.to_string(), "code": code })
}

pub struct Admin {
    pub schema: ApiSchema,
    pub users: Arc<Users>,
    pub auth: Arc<Auth>,
    pub ledger: LedgerClient,
    /// The least zxcvbn score of a new account's password.
    pub password_score_min: u8,
    pub two_factor: Arc<crate::two_factor::TwoFactor>,
    /// See [`crate::config::AuthConfig::operators_two_factor_required`].
    pub operators_two_factor_required: bool,
}

/// Binds the socket (replacing a stale one) with mode 0600 and serves it.
pub async fn serve(path: &Path, admin: Arc<Admin>) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    match std::fs::remove_file(path) {
        Err(error) if error.kind() != std::io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let listener = tokio::net::UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    tracing::info!(path = %path.display(), "admin socket listening");
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else { continue };
            let admin = admin.clone();
            tokio::spawn(async move {
                let (reader, mut writer) = stream.into_split();
                let mut lines = BufReader::new(reader.take(LINE_BYTES_MAX)).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    let answer = match serde_json::from_str::<AdminRequest>(&line) {
                        Ok(request) => admin.handle(request).await,
                        Err(error) => json!({ "error": format!("not an admin request: {error}"), "code": "BAD_USER_INPUT" }),
                    };
                    if writer.write_all(format!("{answer}\n").as_bytes()).await.is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(())
}

impl Admin {
    /// The operator a request's token names.
    fn operator(&self, token: Option<&str>) -> Result<Claims, Value> {
        let Some(token) = token else {
            return Err(refusal("UNAUTHENTICATED", "log in as an operator first: marionettectl login EMAIL (the password on stdin)"));
        };
        match self.auth.verify(token) {
            Some(claims) if claims.role == Role::Operator => Ok(claims),
            Some(_) => Err(refusal("FORBIDDEN", "this token is not an operator's")),
            None => Err(refusal("UNAUTHENTICATED", "the session expired or is not valid: marionettectl login EMAIL again")),
        }
    }

    /// As [`Admin::operator`], for an operator who may act as one now: with
    /// two-factor authentication on when operators must have it. (Their
    /// GraphQL goes through [`Admin::operator`] alone: enrolment is GraphQL,
    /// and its operator-only fields check for themselves.)
    fn acting_operator(&self, token: Option<&str>) -> Result<Claims, Value> {
        let claims = self.operator(token)?;
        let Some(user) = claims.user() else { return Err(refusal("UNAUTHENTICATED", "the token names no user")) };
        match crate::api::operator_enrolled(self.operators_two_factor_required, &self.two_factor, user) {
            Ok(()) => Ok(claims),
            Err(error) => Err(refusal(crate::api::TWO_FACTOR_ENROLMENT_REQUIRED, error.message)),
        }
    }

    async fn handle(&self, request: AdminRequest) -> Value {
        match request {
            AdminRequest::Login { email, password, code } => self.login(email, password, code).await,
            AdminRequest::CreateOperator { email, password, token: None } => self.create_first_operator(email, password).await,
            // A session that is no operator's (expired, or from another
            // install) proposes nothing: only a fresh install's first operator
            // is made without one.
            AdminRequest::CreateOperator { email, password, token: Some(token) } => match self.operator(Some(&token)) {
                Ok(_) => match self.acting_operator(Some(&token)) {
                    Ok(claims) => self.propose_operator(claims, email, password).await,
                    Err(refused) => refused,
                },
                Err(_) => self.create_first_operator(email, password).await,
            },
            AdminRequest::Audit { from, limit, token } => match self.acting_operator(token.as_deref()) {
                Ok(_) => self.ask_operators(ledger_api::operators::Query::Audit { from, limit }).await,
                Err(refused) => refused,
            },
            AdminRequest::AuditHead { token } => match self.acting_operator(token.as_deref()) {
                Ok(_) => self.ask_operators(ledger_api::operators::Query::AuditHead).await,
                Err(refused) => refused,
            },
            AdminRequest::Graphql { query, variables, token } => {
                let claims = match self.operator(token.as_deref()) {
                    Ok(claims) => claims,
                    Err(refused) => return refused,
                };
                let request = async_graphql::Request::new(query).variables(async_graphql::Variables::from_json(variables)).data(Caller(Some(claims)));
                let response = self.schema.execute(request).await;
                match response.errors.first() {
                    None => json!({ "ok": response.data.into_json().unwrap_or_default() }),
                    Some(error) => {
                        let code = error
                            .extensions
                            .as_ref()
                            .and_then(|e| e.get("code"))
                            .map(|c| c.to_string().trim_matches('"').to_string())
                            .unwrap_or_else(|| "BAD_USER_INPUT".into());
                        json!({ "error": error.message, "code": code })
                    }
                }
            }
            AdminRequest::Status => {
                let ledger = match self.ledger.query(ledger_api::Query::Status).await {
                    Ok(Ok(ledger_api::Answer::Status(status))) => json!({
                        "reachable": true,
                        "journal_applied": status.journal_applied,
                        "matching_applied": status.matching_applied,
                        "matching_connected": status.matching_connected,
                        "outbox_pending": status.outbox_pending,
                        "matching_alarm": status.matching_alarm,
                    }),
                    _ => json!({ "reachable": false }),
                };
                // null when the accounts cannot be read: status reports, it does not fail.
                let operator_exists = self.users.operator_exists().ok();
                json!({ "ok": { "gateway": { "signing_key": self.auth.signing_key_id(), "operator_exists": operator_exists }, "ledger": ledger } })
            }
        }
    }

    async fn ask_operators(&self, query: ledger_api::operators::Query) -> Value {
        match self.ledger.query(ledger_api::Query::Operators(query)).await {
            Ok(Ok(ledger_api::Answer::Operators(answer))) => match answer {
                ledger_api::operators::Answer::Audit(records) => json!({ "ok": records }),
                ledger_api::operators::Answer::AuditHead(head) => json!({ "ok": head }),
                other => refusal("UNAVAILABLE", format!("unexpected answer {other:?}")),
            },
            Ok(Ok(other)) => refusal("UNAVAILABLE", format!("unexpected answer {other:?}")),
            Ok(Err(error)) => refusal("BAD_USER_INPUT", error),
            Err(error) => refusal("UNAVAILABLE", error),
        }
    }

    /// An operator's token for the password, checked like a login (and in the audit log).
    async fn login(&self, email: String, password: String, code: Option<String>) -> Value {
        let user = match self.checked_account(&email, password).await {
            Ok(Some(user)) => user,
            Ok(None) => {
                let event = SecurityEvent::LoginFailed {
                    email: email.chars().take(64).collect(),
                    address: "admin socket".into(),
                    reason: "wrong email or password".into(),
                };
                crate::api::operators::record(&self.ledger, event);
                return refusal("UNAUTHENTICATED", "wrong email or password");
            }
            Err(refused) => return refused,
        };
        let standing = crate::api::operators::standing(&self.ledger).await;
        if standing.as_ref().is_some_and(|standing| standing.frozen.contains(&user.id)) {
            return refusal("ACCOUNT_FROZEN", "this account is frozen by the operators: others must unfreeze it");
        }
        let operator = user.role == Role::Operator || standing.is_some_and(|standing| standing.operators.contains(&user.id));
        if !operator {
            return refusal("FORBIDDEN", "this account is not an operator's");
        }
        match self.two_factor.enabled(user.id) {
            Ok(false) => {}
            Ok(true) => match code.as_deref().map(|code| self.two_factor.verify(user.id, code, now_ms() / 1_000)) {
                None => {
                    return refusal("TWO_FACTOR_REQUIRED", "this operator has two-factor authentication: give the app's code on the line after the password")
                }
                Some(Ok(Ok(()))) => {}
                Some(Ok(Err(refused))) => return refusal("UNAUTHENTICATED", refused),
                Some(Err(error)) => return refusal("UNAVAILABLE", error),
            },
            Err(error) => return refusal("UNAVAILABLE", error),
        }
        crate::api::operators::record(&self.ledger, SecurityEvent::Login { user: user.id, address: "admin socket".into() });
        let origin = crate::sessions::Origin { address: "admin socket".into(), user_agent: "marionettectl".into() };
        match self.auth.issue(user.id, Role::Operator, &origin, now_ms()) {
            Ok(issued) => json!({ "ok": { "token": issued.token, "operator": user.id.to_string(), "email": user.email, "expires": issued.expires } }),
            Err(error) => refusal("UNAVAILABLE", format!("could not open a session: {error}")),
        }
    }

    /// The account, if the password is its own.
    async fn checked_account(&self, email: &str, password: String) -> Result<Option<crate::users::User>, Value> {
        let existing = self.users.by_email(email).map_err(|error| refusal("UNAVAILABLE", error))?;
        let auth = self.auth.clone();
        let hash = existing.as_ref().map(|user| user.password_hash.clone());
        let same = tokio::task::spawn_blocking(move || auth.verify_password(&password, hash.as_deref())).await.unwrap_or(false);
        Ok(existing.filter(|_| same))
    }

    /// The account for `email` with this password: made with `role` if
    /// there is none; None if it exists with another password.
    async fn account(&self, email: &str, password: String, role: Role) -> Result<(crate::users::User, bool), Value> {
        if self.users.by_email(email).map_err(|error| refusal("UNAVAILABLE", error))?.is_some() {
            return match self.checked_account(email, password).await? {
                Some(user) => Ok((user, false)),
                None => Err(refusal("DUPLICATE", "an account with this email exists with another password")),
            };
        }
        // A new account's password is judged as a registration's: an operator's above all.
        let normalized = crate::users::normalize_email(email).map_err(|error| refusal("BAD_USER_INPUT", error))?;
        if let Err(weak) = crate::auth::check_new_password(&password, &normalized, self.password_score_min) {
            let code = if weak == crate::auth::WeakPassword::Length { "BAD_USER_INPUT" } else { "WEAK_PASSWORD" };
            return Err(refusal(code, weak));
        }
        let auth = self.auth.clone();
        let hash = match tokio::task::spawn_blocking(move || auth.hash_password(&password)).await {
            Ok(Ok(hash)) => hash,
            _ => return Err(refusal("UNAVAILABLE", "password hashing failed")),
        };
        match self.users.create(email, hash, role, now_ms()) {
            Ok(user) => Ok((user, true)),
            Err(UserError::BadInput(reason)) => Err(refusal("BAD_USER_INPUT", reason)),
            Err(error @ (UserError::EmailTaken | UserError::EmailLookalike)) => Err(refusal("DUPLICATE", error)),
            Err(error) => Err(refusal("UNAVAILABLE", error)),
        }
    }

    /// A fresh install's first operator: the one operator made without another's approval.
    async fn create_first_operator(&self, email: String, password: String) -> Value {
        let operators = match self.ledger.query(ledger_api::Query::Operators(ledger_api::operators::Query::Operators)).await {
            Ok(Ok(ledger_api::Answer::Operators(ledger_api::operators::Answer::Operators { operators, .. }))) => operators,
            _ => return refusal("UNAVAILABLE", "the ledger cannot say whether an operator exists: is marionette-ledger running? (marionettectl status)"),
        };
        if !operators.is_empty() {
            // Only the same operator again (a setup run again); nothing is made.
            return match self.checked_account(&email, password).await {
                Ok(Some(user)) if operators.contains(&user.id) => json!({ "ok": { "id": user.id.to_string(), "email": user.email, "created": false } }),
                Ok(_) => refusal(
                    "FORBIDDEN",
                    "this install has operators: log in as one (marionettectl login EMAIL) and create-operator proposes the new one for others to approve",
                ),
                Err(refused) => refused,
            };
        }
        let (user, created) = match self.account(&email, password, Role::Operator).await {
            Ok(account) => account,
            Err(refused) => return refused,
        };
        if user.role != Role::Operator {
            return refusal("FORBIDDEN", "a user's account cannot be the first operator: create-operator takes a new email");
        }
        match self.ledger.command(ledger_api::Command::Operators(ledger_api::operators::Command::Bootstrap { operator: user.id })).await {
            Ok(Ok(_)) => json!({ "ok": { "id": user.id.to_string(), "email": user.email, "created": created } }),
            Ok(Err(error)) => refusal(error.code(), error),
            Err(error) => refusal("UNAVAILABLE", error),
        }
    }

    /// Makes (or finds) a user account and proposes it as an operator.
    async fn propose_operator(&self, claims: Claims, email: String, password: String) -> Value {
        let Ok(operator) = claims.sub.parse::<u64>() else { return refusal("FORBIDDEN", "the token names no operator") };
        let (user, _) = match self.account(&email, password, Role::User).await {
            Ok(account) => account,
            Err(refused) => return refused,
        };
        if crate::api::operators::is_operator(&self.ledger, user.id).await == Some(true) {
            return json!({ "ok": { "id": user.id.to_string(), "email": user.email, "created": false } });
        }
        let propose = ledger_api::operators::Command::Propose { operator, action: ledger_api::operators::Action::AddOperator { user: user.id } };
        match self.ledger.command(ledger_api::Command::Operators(propose)).await {
            Ok(Ok(ledger_api::Outcome::Operators(outcome))) => {
                let (proposal, status) = match &outcome {
                    ledger_api::operators::Outcome::Executed { proposal, .. } => (proposal.id, "executed"),
                    ledger_api::operators::Outcome::Proposal(proposal) => (proposal.id, "pending"),
                    _ => (0, "unknown"),
                };
                json!({ "ok": { "id": user.id.to_string(), "email": user.email, "proposal": proposal.to_string(), "status": status } })
            }
            Ok(Ok(other)) => refusal("UNAVAILABLE", format!("unexpected outcome {other:?}")),
            Ok(Err(error)) => refusal(error.code(), error),
            Err(error) => refusal("UNAVAILABLE", error),
        }
    }
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0)
}
