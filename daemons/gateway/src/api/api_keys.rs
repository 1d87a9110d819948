//! API keys for the caller's bots: create (with a fresh two-factor code when
//! two-factor is on), list (never a secret), revoke. What a signed request
//! may call is [`KeyScopes`]'s to say; how it is signed, `crate::api_keys`.

use std::sync::Arc;

use async_graphql::extensions::{Extension, ExtensionContext, ExtensionFactory, NextResolve, ResolveInfo};
use async_graphql::{Context, Enum, Error, InputObject, Object, ServerResult, SimpleObject, Value, ID};

use super::{at, caller, caller_id, coded, now_ms, services, Caller, DateTime};
use crate::api_keys::{self as keys, ApiKeyError, Credential, KeyId, Scopes};
use crate::users::Role;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ApiKeyScope {
    /// Queries and subscriptions of the key owner's own data and the markets.
    Read,
    /// placeOrder, amendOrder, cancelOrder, cancelAllOrders, engageKillSwitch.
    Trade,
    /// requestWithdrawal, to the address book only.
    Withdraw,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ApiKeyKind {
    /// Signed with the client's own Ed25519 private key.
    #[graphql(name = "ED25519")]
    Ed25519,
    /// Signed with the HMAC-SHA256 secret the server showed once.
    Hmac,
}

#[derive(SimpleObject)]
pub struct ApiKey {
    /// What a request names in X-Marionette-Key.
    pub id: ID,
    pub name: String,
    pub kind: ApiKeyKind,
    pub scopes: Vec<ApiKeyScope>,
    /// Addresses and networks requests may come from; empty: any.
    pub ip_allowlist: Vec<String>,
    pub expires_at: Option<DateTime>,
    pub created_at: DateTime,
}

#[derive(SimpleObject)]
pub struct CreatedApiKey {
    pub key: ApiKey,
    /// The HMAC secret, shown this once (null for an Ed25519 key): the
    /// server keeps it only encrypted and never shows it again.
    pub secret: Option<String>,
}

#[derive(InputObject)]
pub struct CreateApiKeyInput {
    /// 1 to 64 bytes, for the owner to tell keys apart.
    pub name: String,
    pub scopes: Vec<ApiKeyScope>,
    /// Addresses or networks ("203.0.113.7", "203.0.113.0/24"); required with WITHDRAW.
    #[graphql(default)]
    pub ip_allowlist: Vec<String>,
    /// RFC 3339; none: the key lives until revoked.
    pub expires_at: Option<DateTime>,
    /// The client's Ed25519 public key (base64 of 32 bytes, or PEM). None:
    /// the server makes an HMAC-SHA256 secret and shows it once.
    pub public_key: Option<String>,
}

fn api_key(key: &keys::ApiKey) -> ApiKey {
    let mut scopes = Vec::new();
    for (on, scope) in [(key.scopes.read, ApiKeyScope::Read), (key.scopes.trade, ApiKeyScope::Trade), (key.scopes.withdraw, ApiKeyScope::Withdraw)] {
        if on {
            scopes.push(scope);
        }
    }
    ApiKey {
        id: ID(key.id.to_string()),
        name: key.name.clone(),
        kind: match key.credential {
            Credential::Ed25519 { .. } => ApiKeyKind::Ed25519,
            Credential::Hmac { .. } => ApiKeyKind::Hmac,
        },
        scopes,
        ip_allowlist: key
            .ip_allowlist
            .iter()
            .map(|net| if net.prefix_len() == net.max_prefix_len() { net.addr().to_string() } else { net.to_string() })
            .collect(),
        expires_at: key.expires_ms.map(at),
        created_at: at(key.created_ms),
    }
}

fn key_error(error: ApiKeyError) -> Error {
    match error {
        ApiKeyError::BadInput(reason) => coded("BAD_USER_INPUT", reason),
        ApiKeyError::TooMany(_) => coded("LIMIT_EXCEEDED", error.to_string()),
        other => {
            tracing::error!(error = %other, "API key store failed");
            coded("UNAVAILABLE", "the API key store is unavailable; try again")
        }
    }
}

#[derive(Default)]
pub struct ApiKeysQuery;

#[Object]
impl ApiKeysQuery {
    /// The caller's API keys, oldest first, without their secrets.
    async fn api_keys(&self, ctx: &Context<'_>) -> Result<Vec<ApiKey>, Error> {
        let user = caller_id(ctx)?;
        Ok(services(ctx).api_keys.list(user).map_err(key_error)?.iter().map(api_key).collect())
    }
}

#[derive(Default)]
pub struct ApiKeysMutation;

#[Object]
impl ApiKeysMutation {
    /// A key for a bot to sign requests with. Needs a fresh two-factor code
    /// when two-factor is on. An HMAC key's secret is in the answer, once.
    async fn create_api_key(
        &self,
        ctx: &Context<'_>,
        input: CreateApiKeyInput,
        #[graphql(desc = "The app's code (or a recovery code), needed when two-factor authentication is on.")] two_factor_code: Option<String>,
    ) -> Result<CreatedApiKey, Error> {
        let claims = caller(ctx)?;
        if claims.role == Role::Operator {
            return Err(coded("FORBIDDEN", "operators act through their login, under four-eyes; API keys are for users' bots"));
        }
        let user = caller_id(ctx)?;
        super::two_factor::require_code(ctx, user, two_factor_code.as_deref()).await?;
        let expires_ms = match &input.expires_at {
            Some(text) => {
                Some(crate::units::parse_rfc3339(&text.0).ok_or_else(|| coded("BAD_USER_INPUT", "expiresAt is an RFC 3339 time, e.g. 2027-01-31T00:00:00Z"))?)
            }
            None => None,
        };
        let scopes = Scopes {
            read: input.scopes.contains(&ApiKeyScope::Read),
            trade: input.scopes.contains(&ApiKeyScope::Trade),
            withdraw: input.scopes.contains(&ApiKeyScope::Withdraw),
        };
        let new = keys::NewKey { name: input.name, scopes, ip_allowlist: input.ip_allowlist, expires_ms, public_key: input.public_key };
        let (key, secret) = services(ctx).api_keys.create(user, new, now_ms()).map_err(key_error)?;
        tracing::info!(event = "api_key_created", user, key = %key.id, ?scopes, "an API key was created");
        Ok(CreatedApiKey { key: api_key(&key), secret })
    }

    /// Revokes one of the caller's keys at once: its next request is
    /// refused and the subscriptions it opened close.
    async fn revoke_api_key(&self, ctx: &Context<'_>, id: ID) -> Result<bool, Error> {
        let user = caller_id(ctx)?;
        let not_found = || coded("NOT_FOUND", "you have no API key with this id");
        let id = KeyId::parse(&id).ok_or_else(not_found)?;
        if !services(ctx).api_keys.revoke(user, id).map_err(key_error)? {
            return Err(not_found());
        }
        tracing::info!(event = "api_key_revoked", user, key = %id, "an API key was revoked");
        Ok(true)
    }
}

/// What a request signed with an API key may call: queries with READ (not
/// the account's sessions or keys), the order mutations, a perpetual
/// position's leverage, margin mode and margin, and an oracle's price with TRADE,
/// requestWithdrawal with WITHDRAW, and nothing that manages the account.
/// Checked at every root field, so a fragment cannot hide one.
pub struct KeyScopes;

impl ExtensionFactory for KeyScopes {
    fn create(&self) -> Arc<dyn Extension> {
        Arc::new(KeyScopes)
    }
}

/// The scope a root field needs from a key, or why no key may call it.
pub fn needed_scope(parent_type: &str, field: &str) -> Result<fn(&Scopes) -> bool, &'static str> {
    match (parent_type, field) {
        ("Query", "sessions" | "apiKeys") => Err("a key cannot read the account's sessions or keys; log in"),
        ("Query", _) => Ok(|s| s.read),
        // Each product's subscriptions resolve under its own type (SpotSubscription).
        (subscription, _) if subscription.ends_with("Subscription") => Ok(|s| s.read),
        // A bot may pull its own plug; lifting the kill switch needs a login.
        (
            "Mutation",
            "placeOrder" | "placeOcoOrder" | "amendOrder" | "cancelOrder" | "cancelAllOrders" | "engageKillSwitch" | "setLeverage" | "setMarginMode"
            | "addMargin" | "reduceMargin" | "submitOraclePrice" | "closePosition",
        ) => Ok(|s| s.trade),
        ("Mutation", "requestWithdrawal") => Ok(|s| s.withdraw),
        _ => Err("API keys place and cancel orders and engage the kill switch (TRADE) and request withdrawals (WITHDRAW); everything else needs a login"),
    }
}

fn scope_name(parent_type: &str, field: &str) -> &'static str {
    match (parent_type, field) {
        (
            "Mutation",
            "placeOrder" | "placeOcoOrder" | "amendOrder" | "cancelOrder" | "cancelAllOrders" | "engageKillSwitch" | "setLeverage" | "setMarginMode"
            | "addMargin" | "reduceMargin" | "submitOraclePrice" | "closePosition",
        ) => "TRADE",
        ("Mutation", _) => "WITHDRAW",
        _ => "READ",
    }
}

#[async_trait::async_trait]
impl Extension for KeyScopes {
    async fn resolve(&self, ctx: &ExtensionContext<'_>, info: ResolveInfo<'_>, next: NextResolve<'_>) -> ServerResult<Option<Value>> {
        let root = info.path_node.parent.is_none();
        if root && !info.is_for_introspection {
            if let Some(grant) = ctx.data_opt::<Caller>().and_then(|caller| caller.0.as_ref()).and_then(|claims| claims.key.as_ref()) {
                let position = info.field.name.pos;
                match needed_scope(info.parent_type, info.name) {
                    Ok(has) if has(&grant.scopes) => {}
                    Ok(_) => {
                        let message = format!("this API key lacks the {} scope that {} needs", scope_name(info.parent_type, info.name), info.name);
                        return Err(coded("FORBIDDEN", message).into_server_error(position));
                    }
                    Err(reason) => return Err(coded("FORBIDDEN", reason).into_server_error(position)),
                }
            }
        }
        next.run(ctx, info).await
    }
}
