//! The wallet: balances, deposits, withdrawals and their approval.

use async_graphql::{Context, Enum, Error, Object, SimpleObject, ID};
use ledger_api::wallet::{self as api, Command};
use ledger_api::{Answer, Outcome, Query, QUERY_LIMIT_MAX};

use super::kernel::LedgerEntry;
use super::{ask, at, caller, caller_id, coded, now_ms, operator, run, services, unexpected, user_error, Catalog, DateTime, Dec};
use crate::convert;
use crate::users;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum WithdrawalStatus {
    Pending,
    Approved,
    Rejected,
}

impl From<api::WithdrawalStatus> for WithdrawalStatus {
    fn from(status: api::WithdrawalStatus) -> WithdrawalStatus {
        match status {
            api::WithdrawalStatus::Pending => WithdrawalStatus::Pending,
            api::WithdrawalStatus::Approved => WithdrawalStatus::Approved,
            api::WithdrawalStatus::Rejected => WithdrawalStatus::Rejected,
        }
    }
}

impl From<WithdrawalStatus> for api::WithdrawalStatus {
    fn from(status: WithdrawalStatus) -> api::WithdrawalStatus {
        match status {
            WithdrawalStatus::Pending => api::WithdrawalStatus::Pending,
            WithdrawalStatus::Approved => api::WithdrawalStatus::Approved,
            WithdrawalStatus::Rejected => api::WithdrawalStatus::Rejected,
        }
    }
}

#[derive(SimpleObject)]
pub struct Balance {
    pub asset: String,
    pub available: Dec,
    pub locked: Dec,
}

#[derive(SimpleObject)]
pub struct Withdrawal {
    pub id: ID,
    pub asset: String,
    pub amount: Dec,
    pub destination: String,
    pub status: WithdrawalStatus,
    pub created_at: DateTime,
}

fn api_withdrawal(catalog: &Catalog, w: &api::Withdrawal) -> Withdrawal {
    Withdrawal {
        id: ID(w.id.to_string()),
        asset: catalog.symbol(w.asset),
        amount: catalog.amount(w.asset, w.amount),
        destination: w.destination.clone(),
        status: w.status.into(),
        created_at: at(w.created_ms),
    }
}

async fn run_wallet(ctx: &Context<'_>, command: Command) -> Result<api::Outcome, Error> {
    match run(ctx, ledger_api::Command::Wallet(command)).await? {
        Outcome::Wallet(outcome) => Ok(outcome),
        other => Err(unexpected(other)),
    }
}

async fn ask_wallet(ctx: &Context<'_>, query: api::Query) -> Result<api::Answer, Error> {
    match ask(ctx, Query::Wallet(query)).await? {
        Answer::Wallet(answer) => Ok(answer),
        other => Err(unexpected(other)),
    }
}

async fn withdrawal_by_id(ctx: &Context<'_>, catalog: &Catalog, id: u64) -> Result<Withdrawal, Error> {
    match ask_wallet(ctx, api::Query::Withdrawal { id }).await? {
        api::Answer::Withdrawal(Some(w)) => Ok(api_withdrawal(catalog, &w)),
        api::Answer::Withdrawal(None) => Err(coded("NOT_FOUND", "no such withdrawal")),
        other => Err(unexpected(other)),
    }
}

#[derive(Default)]
pub struct WalletQuery;

#[Object]
impl WalletQuery {
    async fn balances(&self, ctx: &Context<'_>) -> Result<Vec<Balance>, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let api::Answer::Balances(balances) = ask_wallet(ctx, api::Query::Balances { user }).await? else { return Err(unexpected("balances")) };
        Ok(balances
            .iter()
            .map(|(asset, balance)| Balance {
                asset: catalog.symbol(*asset),
                available: catalog.amount(*asset, balance.available),
                locked: catalog.amount(*asset, balance.locked),
            })
            .collect())
    }

    /// The caller's withdrawals; an operator sees everyone's.
    async fn withdrawals(&self, ctx: &Context<'_>, status: Option<WithdrawalStatus>) -> Result<Vec<Withdrawal>, Error> {
        let claims = caller(ctx)?;
        let user = if claims.role == users::Role::Operator { None } else { Some(caller_id(ctx)?) };
        let catalog = Catalog::load(ctx).await?;
        let query = api::Query::Withdrawals { user, status: status.map(Into::into), limit: QUERY_LIMIT_MAX };
        let api::Answer::Withdrawals(found) = ask_wallet(ctx, query).await? else { return Err(unexpected("withdrawals")) };
        Ok(found.iter().map(|w| api_withdrawal(&catalog, w)).collect())
    }
}

#[derive(Default)]
pub struct WalletMutation;

#[Object]
impl WalletMutation {
    async fn request_withdrawal(
        &self,
        ctx: &Context<'_>,
        asset: String,
        amount: Dec,
        destination: String,
        idempotency_key: String,
        #[graphql(desc = "The app's code (or a recovery code), needed when two-factor authentication is on; a retry needs a fresh one.")]
        two_factor_code: Option<String>,
    ) -> Result<Withdrawal, Error> {
        let user = caller_id(ctx)?;
        super::two_factor::require_code(ctx, user, two_factor_code.as_deref()).await?;
        let catalog = Catalog::load(ctx).await?;
        let (spec, units) = catalog.units(&asset, amount)?;
        let id = match run_wallet(ctx, Command::RequestWithdrawal { user, asset: spec.id, amount: units, destination, key: idempotency_key }).await? {
            api::Outcome::WithdrawalRequested(id) => id,
            other => return Err(unexpected(other)),
        };
        withdrawal_by_id(ctx, &catalog, id).await
    }

    async fn deposit(&self, ctx: &Context<'_>, email: String, asset: String, amount: Dec, reference: String) -> Result<LedgerEntry, Error> {
        operator(ctx)?;
        let user = services(ctx).users.by_email(&email).map_err(user_error)?.ok_or_else(|| coded("NOT_FOUND", "no account with this email"))?;
        let catalog = Catalog::load(ctx).await?;
        let (spec, units) = catalog.units(&asset, amount)?;
        let command = Command::Deposit { user: user.id, asset: spec.id, amount: units, reference: reference.clone() };
        let id = match super::operators::operate(ctx, ledger_api::Command::Wallet(command)).await? {
            Outcome::Wallet(api::Outcome::Deposited(id)) => id,
            other => return Err(unexpected(other)),
        };
        Ok(LedgerEntry {
            id: ID(id.to_string()),
            asset: spec.symbol.clone(),
            amount: Dec(convert::to_decimal(units, spec.scale)),
            kind: "DEPOSIT".into(),
            reference: Some(reference),
            created_at: at(now_ms()),
        })
    }

    async fn approve_withdrawal(&self, ctx: &Context<'_>, id: ID) -> Result<Withdrawal, Error> {
        decide(ctx, id, true).await
    }

    async fn reject_withdrawal(&self, ctx: &Context<'_>, id: ID) -> Result<Withdrawal, Error> {
        decide(ctx, id, false).await
    }
}

async fn decide(ctx: &Context<'_>, id: ID, approve: bool) -> Result<Withdrawal, Error> {
    operator(ctx)?;
    let id: u64 = id.parse().map_err(|_| coded("NOT_FOUND", "no such withdrawal"))?;
    super::operators::operate(ctx, ledger_api::Command::Wallet(Command::DecideWithdrawal { id, approve })).await?;
    withdrawal_by_id(ctx, &*Catalog::load(ctx).await?, id).await
}
