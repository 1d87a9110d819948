//! The local admin socket `marionettectl` talks to. A Unix socket created
//! with mode 0600 (and its directory's permissions): whoever can open it is
//! the host's administrator, so it needs no token. One JSON object a line
//! each way.
//!
//! Requests: `{"op":"create-operator","email":…,"password":…}` (idempotent
//! when the same operator and password exist), `{"op":"graphql","query":…,
//! "variables":…}` run with operator rights, and `{"op":"status"}`.
//! Answers: `{"ok":…}` or `{"error":…,"code":…}`.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

use crate::api::{ApiSchema, Caller};
use crate::auth::{Auth, Claims, PASSWORD_BYTES_MIN};
use crate::ledger_client::LedgerClient;
use crate::users::{Role, UserError, Users};

/// The most bytes one admin connection may send.
const LINE_BYTES_MAX: u64 = 1 << 20;

#[derive(Deserialize)]
#[serde(tag = "op", rename_all = "kebab-case", deny_unknown_fields)]
enum AdminRequest {
    CreateOperator {
        email: String,
        password: String,
    },
    Graphql {
        query: String,
        #[serde(default)]
        variables: Value,
    },
    Status,
}

pub struct Admin {
    pub schema: ApiSchema,
    pub users: Arc<Users>,
    pub auth: Arc<Auth>,
    pub ledger: LedgerClient,
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
    async fn handle(&self, request: AdminRequest) -> Value {
        match request {
            AdminRequest::CreateOperator { email, password } => self.create_operator(email, password).await,
            AdminRequest::Graphql { query, variables } => {
                // The admin acts as an operator that is no account: user id 0.
                let claims = Claims { sub: "0".into(), role: Role::Operator, iat: 0, exp: u64::MAX };
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
                    }),
                    _ => json!({ "reachable": false }),
                };
                // null when the accounts cannot be read: status reports, it does not fail.
                let operator_exists = self.users.operator_exists().ok();
                json!({ "ok": { "gateway": { "signing_key": self.auth.signing_key_id(), "operator_exists": operator_exists }, "ledger": ledger } })
            }
        }
    }

    async fn create_operator(&self, email: String, password: String) -> Value {
        if password.len() < PASSWORD_BYTES_MIN {
            return json!({ "error": format!("the password must be at least {PASSWORD_BYTES_MIN} bytes"), "code": "BAD_USER_INPUT" });
        }
        let existing = match self.users.by_email(&email) {
            Ok(existing) => existing,
            Err(error) => return json!({ "error": error.to_string(), "code": "UNAVAILABLE" }),
        };
        let auth = self.auth.clone();
        if let Some(user) = existing {
            let hash = user.password_hash.clone();
            let same = tokio::task::spawn_blocking(move || auth.verify_password(&password, Some(&hash))).await.unwrap_or(false);
            if user.role == Role::Operator && same {
                return json!({ "ok": { "id": user.id.to_string(), "email": user.email, "created": false } });
            }
            return json!({ "error": "an account with this email exists with another role or password", "code": "DUPLICATE" });
        }
        let hash = match tokio::task::spawn_blocking(move || auth.hash_password(&password)).await {
            Ok(Ok(hash)) => hash,
            _ => return json!({ "error": "password hashing failed", "code": "UNAVAILABLE" }),
        };
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        match self.users.create(&email, hash, Role::Operator, now) {
            Ok(user) => json!({ "ok": { "id": user.id.to_string(), "email": user.email, "created": true } }),
            Err(UserError::BadInput(reason)) => json!({ "error": reason, "code": "BAD_USER_INPUT" }),
            Err(UserError::EmailTaken) => json!({ "error": "an account with this email exists", "code": "DUPLICATE" }),
            Err(error) => json!({ "error": error.to_string(), "code": "UNAVAILABLE" }),
        }
    }
}
