//! A token agent's actions (ERC-3643's agent role): freezing part of a
//! holder's tokens and unfreezing it, a forced transfer, a recovery to a
//! holder's new account. The token's issuer or an operator proposes one;
//! operators approve it (`approvals.token_agent`, and at least one
//! operator after an issuer), and the audit log keeps every step. The
//! ledger decides who may and what holds; this file maps symbols, emails
//! and decimals.

use async_graphql::{Context, Error, Object, SimpleObject};
use ledger_api::tokenization::{self as api, Command};

use super::operators::{operate_as, user_by_email};
use super::tokenization::{amount_units, issuer_or_operator, tokens};
use super::{caller_id, coded, unexpected, Catalog, Dec};
use crate::units::to_decimal;

/// What an agent's action did, once approved.
#[derive(SimpleObject)]
pub struct TokenAgentResult {
    pub token: String,
    /// The holder's frozen tokens after a freeze or an unfreeze.
    pub frozen: Option<Dec>,
    /// What a forced transfer or a recovery moved.
    pub moved: Option<Dec>,
    /// Of a forced transfer, what came out of frozen tokens.
    pub from_frozen: Option<Dec>,
    /// The unvested tranches a recovery moved, which keep their schedule.
    pub tranches: Option<i32>,
}

#[derive(Default)]
pub struct TokenAgentMutation;

/// The token's asset and scale, once the caller is its issuer or an operator.
async fn agent_token(ctx: &Context<'_>, symbol: &str) -> Result<(u32, u8), Error> {
    let catalog = Catalog::load(ctx).await?;
    let asset = catalog.asset_by_symbol(symbol)?.clone();
    let token = tokens(ctx).await?.into_iter().find(|t| t.asset == asset.id).ok_or_else(|| coded("NOT_FOUND", format!("{symbol} is not a token")))?;
    // Before any email is looked up: no one else learns which accounts exist.
    issuer_or_operator(ctx, token.issuer)?;
    Ok((asset.id, asset.scale))
}

/// Proposes the action as the caller and maps what it did, once approved
/// (APPROVAL_PENDING until then, with the proposal's id).
async fn act(ctx: &Context<'_>, symbol: String, scale: u8, command: Command) -> Result<TokenAgentResult, Error> {
    let outcome = operate_as(ctx, caller_id(ctx)?, ledger_api::Command::Tokenization(command)).await?;
    let decimal = |units: i128| Dec(to_decimal(units, scale));
    let none = TokenAgentResult { token: symbol, frozen: None, moved: None, from_frozen: None, tranches: None };
    match outcome {
        ledger_api::Outcome::Tokenization(api::Outcome::TokensFrozen { frozen, .. }) => Ok(TokenAgentResult { frozen: Some(decimal(frozen)), ..none }),
        ledger_api::Outcome::Tokenization(api::Outcome::ForcedTransfer { amount, from_frozen, .. }) => {
            Ok(TokenAgentResult { moved: Some(decimal(amount)), from_frozen: Some(decimal(from_frozen)), ..none })
        }
        ledger_api::Outcome::Tokenization(api::Outcome::TokensRecovered { amount, tranches, .. }) => {
            Ok(TokenAgentResult { moved: Some(decimal(amount)), tranches: Some(i32::try_from(tranches).unwrap_or(i32::MAX)), ..none })
        }
        other => Err(unexpected(other)),
    }
}

#[Object]
impl TokenAgentMutation {
    /// Proposes to freeze `amount` of what the holder has available: it
    /// stays theirs (cap table, distributions) but can be neither sent,
    /// sold nor withdrawn. The token's issuer or an operator.
    async fn freeze_tokens(&self, ctx: &Context<'_>, token: String, email: String, amount: Dec) -> Result<TokenAgentResult, Error> {
        let (asset, scale) = agent_token(ctx, &token).await?;
        let holder = user_by_email(ctx, &email)?;
        let amount = amount_units(amount, scale, "amount")?;
        act(ctx, token, scale, Command::FreezeTokens { token: asset, holder, amount }).await
    }

    /// Proposes to give `amount` of the holder's frozen tokens back to them.
    async fn unfreeze_tokens(&self, ctx: &Context<'_>, token: String, email: String, amount: Dec) -> Result<TokenAgentResult, Error> {
        let (asset, scale) = agent_token(ctx, &token).await?;
        let holder = user_by_email(ctx, &email)?;
        let amount = amount_units(amount, scale, "amount")?;
        act(ctx, token, scale, Command::UnfreezeTokens { token: asset, holder, amount }).await
    }

    /// Proposes a forced transfer (a court order, an estate): from what
    /// `fromEmail` has available, then from what is frozen, to a verified
    /// investor or the issuer. The token's other rules do not apply.
    async fn force_transfer(&self, ctx: &Context<'_>, token: String, from_email: String, to_email: String, amount: Dec) -> Result<TokenAgentResult, Error> {
        let (asset, scale) = agent_token(ctx, &token).await?;
        let (from, to) = (user_by_email(ctx, &from_email)?, user_by_email(ctx, &to_email)?);
        let amount = amount_units(amount, scale, "amount")?;
        act(ctx, token, scale, Command::ForceTransfer { token: asset, from, to, amount }).await
    }

    /// Proposes to move everything a holder who lost their account holds
    /// of the token (available, frozen, unvested tranches) to their new,
    /// verified account. Freeze the lost account with its orders cancelled first.
    async fn recover_tokens(&self, ctx: &Context<'_>, token: String, lost_email: String, to_email: String) -> Result<TokenAgentResult, Error> {
        let (asset, scale) = agent_token(ctx, &token).await?;
        let (lost, to) = (user_by_email(ctx, &lost_email)?, user_by_email(ctx, &to_email)?);
        act(ctx, token, scale, Command::RecoverTokens { token: asset, lost, to }).await
    }
}
