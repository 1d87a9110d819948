//! Accounts: who may log in, with which role. They live in the gateway
//! (`users`), not in the ledger.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use async_graphql::{ComplexObject, Context, Enum, Error, ErrorExtensions, Object, SimpleObject, ID};
use ledger_api::operators::SecurityEvent;

use super::{at, caller, caller_id, coded, now_ms, services, user_error, DateTime, Services, TOKEN_COOKIE};
use crate::auth::{check_new_password, WeakPassword, PASSWORD_BYTES_MAX};
use crate::logins::{Refusal, RequestOrigin};
use crate::sessions::{self, SessionId};
use crate::users;

/// A login or registration not tried: RATE_LIMITED, with when to come back.
pub(crate) fn refused(refusal: Refusal) -> Error {
    match refusal {
        Refusal::Throttled(wait) => {
            let seconds = wait.as_secs_f64().ceil().max(1.0) as u64;
            coded("RATE_LIMITED", format!("too many login attempts; try again in {seconds} s")).extend_with(|_, e| e.set("retryAfterSeconds", seconds))
        }
        Refusal::Busy => {
            coded("RATE_LIMITED", "the server is busy checking passwords; try again in a moment").extend_with(|_, e| e.set("retryAfterSeconds", 1))
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(name = "Role")]
pub enum ApiRole {
    User,
    Operator,
}

#[derive(SimpleObject, Clone)]
#[graphql(complex)]
pub struct User {
    pub id: ID,
    pub email: String,
    pub role: ApiRole,
    pub created_at: DateTime,
}

#[ComplexObject]
impl User {
    /// Whether login and withdrawals need a two-factor code.
    async fn two_factor_enabled(&self, ctx: &Context<'_>) -> Result<bool, Error> {
        let id: u64 = self.id.parse().map_err(|_| coded("UNAVAILABLE", "a user id is not a number"))?;
        services(ctx).two_factor.enabled(id).map_err(super::two_factor::two_factor_error)
    }
}

impl From<&users::User> for User {
    fn from(user: &users::User) -> User {
        User {
            id: ID(user.id.to_string()),
            email: user.email.clone(),
            role: match user.role {
                users::Role::User => ApiRole::User,
                users::Role::Operator => ApiRole::Operator,
            },
            created_at: at(user.created_ms),
        }
    }
}

/// A login: where and when it was made, and when it was last used.
#[derive(SimpleObject)]
pub struct Session {
    pub id: ID,
    pub created_at: DateTime,
    pub last_seen_at: DateTime,
    pub expires_at: DateTime,
    /// The client's address when it logged in.
    pub address: String,
    pub user_agent: String,
    /// Whether this is the session of the request's own token.
    pub current: bool,
}

fn session_error(error: sessions::SessionError) -> Error {
    tracing::error!(%error, "session store failed");
    coded("UNAVAILABLE", "the session store is unavailable; try again")
}

fn weak(error: WeakPassword) -> Error {
    match error {
        WeakPassword::Length => coded("BAD_USER_INPUT", error.to_string()),
        WeakPassword::Guessable { .. } => coded("WEAK_PASSWORD", error.to_string()),
    }
}

/// Runs an argon2 hash off the async workers, in one of the bounded slots.
async fn hash_password(services: &Services, password: String) -> Result<String, Error> {
    let slot = services.logins.argon2_slot().map_err(refused)?;
    let auth = services.auth.clone();
    // argon2 is deliberately slow: keep it off the async workers.
    tokio::task::spawn_blocking(move || {
        let _slot = slot;
        auth.hash_password(&password)
    })
    .await
    .map_err(|_| coded("UNAVAILABLE", "hashing failed"))?
    .map_err(|error| {
        tracing::error!(%error, "password hashing failed");
        coded("UNAVAILABLE", "hashing failed")
    })
}

/// Checks the caller's password again (before a sensitive change),
/// throttled like a login's guess.
pub(crate) async fn check_password(ctx: &Context<'_>, user: &users::User, password: String) -> Result<(), Error> {
    let services = services(ctx);
    let ip = client_ip(ctx);
    services.logins.attempt(ip, &user.email, Instant::now()).map_err(refused)?;
    if password.len() > PASSWORD_BYTES_MAX || !password_matches(services, password, Some(user.password_hash.clone())).await? {
        tracing::warn!(event = "password_check_failed", user = user.id, %ip, "wrong password for a sensitive change");
        return Err(coded("UNAUTHENTICATED", "the password is wrong"));
    }
    Ok(())
}

/// Checks `password` against a stored hash (or a decoy) in a bounded slot.
async fn password_matches(services: &Services, password: String, stored: Option<String>) -> Result<bool, Error> {
    let slot = services.logins.argon2_slot().map_err(refused)?;
    let auth = services.auth.clone();
    Ok(tokio::task::spawn_blocking(move || {
        let _slot = slot;
        auth.verify_password(&password, stored.as_deref())
    })
    .await
    .unwrap_or(false))
}

pub(crate) fn client_ip(ctx: &Context<'_>) -> IpAddr {
    ctx.data_opt::<RequestOrigin>().map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |o| o.ip)
}

#[derive(SimpleObject)]
pub struct AuthPayload {
    pub token: String,
    pub expires_at: DateTime,
    pub user: User,
}

fn cookie(token: &str, max_age: u64, secure: bool) -> String {
    format!("{TOKEN_COOKIE}={token}; Path=/; Max-Age={max_age}; HttpOnly;{} SameSite=Strict", if secure { " Secure;" } else { "" })
}

#[derive(Default)]
pub struct AccountsQuery;

#[Object]
impl AccountsQuery {
    async fn me(&self, ctx: &Context<'_>) -> Result<User, Error> {
        let id = caller_id(ctx)?;
        let user = services(ctx).users.by_id(id).map_err(user_error)?.ok_or_else(|| coded("UNAUTHENTICATED", "the account no longer exists"))?;
        Ok((&user).into())
    }

    /// The caller's live sessions (logins), newest first.
    async fn sessions(&self, ctx: &Context<'_>) -> Result<Vec<Session>, Error> {
        let claims = caller(ctx)?;
        let user = caller_id(ctx)?;
        let current = claims.session();
        Ok(services(ctx)
            .auth
            .sessions()
            .list(user, now_ms())
            .into_iter()
            .map(|session| Session {
                id: ID(session.id.to_string()),
                created_at: at(session.created_ms),
                last_seen_at: at(session.last_seen_ms),
                expires_at: at(session.expires_ms),
                address: session.address,
                user_agent: session.user_agent,
                current: Some(session.id) == current,
            })
            .collect())
    }
}

#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    async fn register(&self, ctx: &Context<'_>, email: String, password: String) -> Result<User, Error> {
        let services = services(ctx);
        let normalized = users::normalize_email(&email).map_err(user_error)?;
        check_new_password(&password, &normalized, services.password_score_min).map_err(weak)?;
        services.logins.registration(client_ip(ctx), Instant::now()).map_err(refused)?;
        let hash = hash_password(services, password).await?;
        let user = services.users.create(&email, hash, users::Role::User, now_ms()).map_err(user_error)?;
        Ok((&user).into())
    }

    /// A session and its token. An account with two-factor authentication
    /// needs `twoFactorCode` too (the app's code, or a recovery code):
    /// without it the answer is TWO_FACTOR_REQUIRED and no session opens.
    async fn login(&self, ctx: &Context<'_>, email: String, password: String, two_factor_code: Option<String>) -> Result<AuthPayload, Error> {
        let services = services(ctx);
        let origin = ctx.data_opt::<RequestOrigin>();
        let ip = origin.map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |o| o.ip);
        // The account as it is stored, so that case and spaces are no new account to guess at.
        let account = users::normalize_email(&email).unwrap_or_else(|_| email.trim().to_lowercase().chars().take(users::EMAIL_BYTES_MAX).collect());
        // Counted before anything else, so that every guess costs, refused ones included.
        services.logins.attempt(ip, &account, Instant::now()).map_err(|refusal| {
            tracing::warn!(event = "login_throttled", %ip, account = %account, "login attempt refused: too many");
            refused(refusal)
        })?;
        // Aliased login fields would be that many guesses in one request.
        if origin.is_some_and(|o| o.one_more_login() > 0) {
            return Err(coded("BAD_USER_INPUT", "one login per request"));
        }
        if password.len() > PASSWORD_BYTES_MAX || email.len() > users::EMAIL_BYTES_MAX {
            return Err(coded("UNAUTHENTICATED", "wrong email or password"));
        }
        let user = services.users.by_email(&email).map_err(user_error)?;
        let valid = password_matches(services, password, user.as_ref().map(|u| u.password_hash.clone())).await?;
        let Some(mut user) = user.filter(|_| valid) else {
            tracing::warn!(event = "login_failed", %ip, account = %account, "wrong email or password");
            let email: String = account.chars().take(ledger_api::operators::TEXT_BYTES_MAX / 4).collect();
            let event = SecurityEvent::LoginFailed { email, address: ip.to_string(), reason: "wrong email or password".into() };
            super::operators::record(&services.ledger, event);
            return Err(coded("UNAUTHENTICATED", "wrong email or password"));
        };
        // The ledger says which accounts are frozen, and who the operators
        // are: a user other operators made one logs in as one from now on.
        // A ledger that cannot say lets the login through: it refuses a
        // frozen account's orders and withdrawals itself.
        let standing = super::operators::standing(&services.ledger).await;
        if standing.as_ref().is_some_and(|standing| standing.frozen.contains(&user.id)) {
            tracing::warn!(event = "login_refused_frozen", %ip, user = user.id, "a frozen account tried to log in");
            let email: String = account.chars().take(ledger_api::operators::TEXT_BYTES_MAX / 4).collect();
            super::operators::record(&services.ledger, SecurityEvent::LoginFailed { email, address: ip.to_string(), reason: "account frozen".into() });
            return Err(coded("ACCOUNT_FROZEN", "this account is frozen by the operators: contact them to have it unfrozen"));
        }
        if user.role == users::Role::User && standing.is_some_and(|standing| standing.operators.contains(&user.id)) {
            user = services.users.set_role(user.id, users::Role::Operator).map_err(user_error)?;
        }
        // A right password without its code is worth an alarm: someone may have it.
        if let Err(error) = super::two_factor::require_code(ctx, user.id, two_factor_code.as_deref()).await {
            let email: String = account.chars().take(ledger_api::operators::TEXT_BYTES_MAX / 4).collect();
            let event = SecurityEvent::LoginFailed { email, address: ip.to_string(), reason: "two-factor code missing or refused".into() };
            super::operators::record(&services.ledger, event);
            return Err(error);
        }
        super::operators::record(&services.ledger, SecurityEvent::Login { user: user.id, address: ip.to_string() });
        let session_origin = sessions::Origin { address: ip.to_string(), user_agent: origin.map(|o| o.user_agent.clone()).unwrap_or_default() };
        let issued = services.auth.issue(user.id, user.role, &session_origin, now_ms()).map_err(|error| {
            tracing::error!(%error, "could not open a session");
            coded("UNAVAILABLE", "the session store is unavailable; try again")
        })?;
        ctx.append_http_header("Set-Cookie", cookie(&issued.token, services.auth.token_ttl_seconds, services.cookie_secure));
        Ok(AuthPayload { token: issued.token, expires_at: at(issued.expires * 1_000), user: (&user).into() })
    }

    /// Ends the caller's session at once: its token is refused from now on,
    /// on HTTP and on the subscriptions it opened. Without a valid token,
    /// only the cookie is cleared.
    async fn logout(&self, ctx: &Context<'_>) -> Result<bool, Error> {
        let services = services(ctx);
        ctx.append_http_header("Set-Cookie", cookie("", 0, services.cookie_secure));
        if let (Ok(claims), Ok(user)) = (caller(ctx), caller_id(ctx)) {
            if let Some(id) = claims.session() {
                services.auth.sessions().revoke(user, id).map_err(session_error)?;
                tracing::info!(event = "logout", user, session = %id, "logged out");
            }
        }
        Ok(true)
    }

    /// Ends one of the caller's sessions (see `sessions`); NOT_FOUND if it is not the caller's or has ended.
    async fn revoke_session(&self, ctx: &Context<'_>, id: ID) -> Result<bool, Error> {
        let user = caller_id(ctx)?;
        let id = SessionId::parse(&id).ok_or_else(|| coded("BAD_USER_INPUT", "a session id is 32 hex digits, as sessions lists them"))?;
        if !services(ctx).auth.sessions().revoke(user, id).map_err(session_error)? {
            return Err(coded("NOT_FOUND", "you have no such live session"));
        }
        tracing::info!(event = "session_revoked", user, session = %id, "a session was revoked by its user");
        Ok(true)
    }

    /// Ends every session of the caller's but the one making this request; how many ended.
    async fn revoke_other_sessions(&self, ctx: &Context<'_>) -> Result<i32, Error> {
        let claims = caller(ctx)?;
        let user = caller_id(ctx)?;
        let ended = services(ctx).auth.sessions().revoke_others(user, claims.session()).map_err(session_error)?;
        tracing::info!(event = "sessions_revoked", user, ended, "a user ended their other sessions");
        Ok(ended as i32)
    }

    /// Replaces the caller's password, given the current one; every other
    /// session of the caller's ends. The new one is judged as at registration.
    async fn change_password(&self, ctx: &Context<'_>, current_password: String, new_password: String) -> Result<bool, Error> {
        let services = services(ctx);
        let claims = caller(ctx)?;
        let id = caller_id(ctx)?;
        let user = services.users.by_id(id).map_err(user_error)?.ok_or_else(|| coded("UNAUTHENTICATED", "the account no longer exists"))?;
        check_password(ctx, &user, current_password).await?;
        check_new_password(&new_password, &user.email, services.password_score_min).map_err(weak)?;
        let hash = hash_password(services, new_password).await?;
        services.users.set_password(id, hash).map_err(user_error)?;
        let ended = services.auth.sessions().revoke_others(id, claims.session()).map_err(session_error)?;
        tracing::info!(event = "password_changed", user = id, sessions_ended = ended, "a user changed their password");
        Ok(true)
    }
}
