//! Accounts: who may log in, with which role. They live in the gateway
//! (`users`), not in the ledger.

use async_graphql::{Context, Enum, Error, Object, SimpleObject, ID};

use super::{at, caller_id, coded, now_ms, services, user_error, DateTime, TOKEN_COOKIE};
use crate::auth::{PASSWORD_BYTES_MAX, PASSWORD_BYTES_MIN};
use crate::users;

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
        let auth = services.auth.clone();
        // argon2 is deliberately slow: keep it off the async workers.
        let hash =
            tokio::task::spawn_blocking(move || auth.hash_password(&password)).await.map_err(|_| coded("UNAVAILABLE", "hashing failed"))?.map_err(|error| {
                tracing::error!(%error, "password hashing failed");
                coded("UNAVAILABLE", "hashing failed")
            })?;
        let user = services.users.create(&email, hash, users::Role::User, now_ms()).map_err(user_error)?;
        Ok((&user).into())
    }

    async fn login(&self, ctx: &Context<'_>, email: String, password: String) -> Result<AuthPayload, Error> {
        let services = services(ctx);
        let user = services.users.by_email(&email).map_err(user_error)?;
        let (auth, stored) = (services.auth.clone(), user.as_ref().map(|u| u.password_hash.clone()));
        let valid = tokio::task::spawn_blocking(move || auth.verify_password(&password, stored.as_deref())).await.unwrap_or(false);
        let Some(user) = user.filter(|_| valid) else { return Err(coded("UNAUTHENTICATED", "wrong email or password")) };
        let (token, expires) = services.auth.issue(user.id, user.role, now_ms() / 1_000);
        ctx.append_http_header("Set-Cookie", cookie(&token, services.auth.token_ttl_seconds, services.cookie_secure));
        Ok(AuthPayload { token, expires_at: at(expires * 1_000), user: (&user).into() })
    }

    async fn logout(&self, ctx: &Context<'_>) -> bool {
        ctx.append_http_header("Set-Cookie", cookie("", 0, services(ctx).cookie_secure));
        true
    }
}
