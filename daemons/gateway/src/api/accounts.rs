//! Accounts: who may log in, with which role. They live in the gateway
//! (`users`), not in the ledger.

use std::net::{IpAddr, Ipv6Addr};
use std::time::Instant;

use async_graphql::{Context, Enum, Error, ErrorExtensions, Object, SimpleObject, ID};
use ledger_api::operators::SecurityEvent;

use super::{at, caller_id, coded, now_ms, services, user_error, DateTime, TOKEN_COOKIE};
use crate::auth::{PASSWORD_BYTES_MAX, PASSWORD_BYTES_MIN};
use crate::logins::{Refusal, RequestOrigin};
use crate::users;

/// A login or registration not tried: RATE_LIMITED, with when to come back.
fn refused(refusal: Refusal) -> Error {
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
pub struct User {
    pub id: ID,
    pub email: String,
    pub role: ApiRole,
    pub created_at: DateTime,
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
}

#[derive(Default)]
pub struct AccountsMutation;

#[Object]
impl AccountsMutation {
    async fn register(&self, ctx: &Context<'_>, email: String, password: String) -> Result<User, Error> {
        let services = services(ctx);
        if !(PASSWORD_BYTES_MIN..=PASSWORD_BYTES_MAX).contains(&password.len()) {
            return Err(coded("BAD_USER_INPUT", format!("a password is {PASSWORD_BYTES_MIN} to {PASSWORD_BYTES_MAX} bytes")));
        }
        users::normalize_email(&email).map_err(user_error)?;
        let ip = ctx.data_opt::<RequestOrigin>().map_or(IpAddr::V6(Ipv6Addr::UNSPECIFIED), |o| o.ip);
        services.logins.registration(ip, Instant::now()).map_err(refused)?;
        let slot = services.logins.argon2_slot().map_err(refused)?;
        let auth = services.auth.clone();
        // argon2 is deliberately slow: keep it off the async workers.
        let hash = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            auth.hash_password(&password)
        })
        .await
        .map_err(|_| coded("UNAVAILABLE", "hashing failed"))?
        .map_err(|error| {
            tracing::error!(%error, "password hashing failed");
            coded("UNAVAILABLE", "hashing failed")
        })?;
        let user = services.users.create(&email, hash, users::Role::User, now_ms()).map_err(user_error)?;
        Ok((&user).into())
    }

    async fn login(&self, ctx: &Context<'_>, email: String, password: String) -> Result<AuthPayload, Error> {
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
        let slot = services.logins.argon2_slot().map_err(refused)?;
        let (auth, stored) = (services.auth.clone(), user.as_ref().map(|u| u.password_hash.clone()));
        let valid = tokio::task::spawn_blocking(move || {
            let _slot = slot;
            auth.verify_password(&password, stored.as_deref())
        })
        .await
        .unwrap_or(false);
        let Some(mut user) = user.filter(|_| valid) else {
            tracing::warn!(event = "login_failed", %ip, account = %account, "wrong email or password");
            let email: String = account.chars().take(ledger_api::operators::TEXT_BYTES_MAX / 4).collect();
            let event = SecurityEvent::LoginFailed { email, address: ip.to_string(), reason: "wrong email or password".into() };
            super::operators::record(&services.ledger, event);
            return Err(coded("UNAUTHENTICATED", "wrong email or password"));
        };
        // The ledger says who the operators are: a user other operators
        // made one logs in as one from now on.
        if user.role == users::Role::User && super::operators::is_operator(&services.ledger, user.id).await == Some(true) {
            user = services.users.set_role(user.id, users::Role::Operator).map_err(user_error)?;
        }
        super::operators::record(&services.ledger, SecurityEvent::Login { user: user.id, address: ip.to_string() });
        let (token, expires) = services.auth.issue(user.id, user.role, now_ms() / 1_000);
        ctx.append_http_header("Set-Cookie", cookie(&token, services.auth.token_ttl_seconds, services.cookie_secure));
        Ok(AuthPayload { token, expires_at: at(expires * 1_000), user: (&user).into() })
    }

    async fn logout(&self, ctx: &Context<'_>) -> bool {
        ctx.append_http_header("Set-Cookie", cookie("", 0, services(ctx).cookie_secure));
        true
    }
}
