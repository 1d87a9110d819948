//! The wallet: balances, deposits, withdrawals and their approval.

use async_graphql::{ComplexObject, Context, Enum, Error, Object, SimpleObject, ID};
use ledger_api::wallet::{self as api, Command};
use ledger_api::{Answer, Outcome, Query, QUERY_LIMIT_MAX};
use rust_decimal::Decimal;

use super::kernel::LedgerEntry;
use super::{ask, at, caller, caller_id, coded, now_ms, operator, run, services, unexpected, user_error, Catalog, DateTime, Dec};
use crate::units;
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
#[graphql(complex)]
pub struct Withdrawal {
    pub id: ID,
    pub asset: String,
    pub amount: Dec,
    pub destination: String,
    pub status: WithdrawalStatus,
    pub created_at: DateTime,
}

#[ComplexObject]
impl Withdrawal {
    /// Why it waits for an operator's review beyond the usual approval (over
    /// the owner's tier's limits); null for a withdrawal within them.
    async fn review_reason(&self, ctx: &Context<'_>) -> Result<Option<String>, Error> {
        let id: u64 = self.id.parse().map_err(|_| coded("UNAVAILABLE", "a withdrawal id is not a number"))?;
        Ok(services(ctx).reviews.get(id).map_err(review_error)?.map(|review| review.reason))
    }
}

fn review_error(error: crate::limits::ReviewError) -> Error {
    tracing::error!(%error, "the review store failed");
    coded("UNAVAILABLE", "the withdrawal reviews are unavailable; try again")
}

/// One rolling window of a user's withdrawal limit, in the reference asset.
#[derive(SimpleObject)]
pub struct WithdrawalWindow {
    pub hours: i32,
    pub limit: Dec,
    pub used: Dec,
    pub remaining: Dec,
}

#[derive(SimpleObject)]
pub struct WithdrawalLimits {
    /// The caller's verification tier (0 for a new user), and its name.
    pub tier: i32,
    pub tier_name: String,
    /// What the limits are counted in; other assets are valued at their market's last trade price.
    pub reference_asset: String,
    pub daily: WithdrawalWindow,
    pub monthly: WithdrawalWindow,
}

fn window(w: &crate::limits::Window) -> WithdrawalWindow {
    WithdrawalWindow {
        hours: (w.window_ms / 3_600_000) as i32,
        limit: Dec(w.limit.normalize()),
        used: Dec(w.used.normalize()),
        remaining: Dec(w.remaining().normalize()),
    }
}

/// The user's tier, as the ledger has it.
async fn tier_of(ctx: &Context<'_>, user: u64) -> Result<u8, Error> {
    match ask(ctx, Query::Operators(ledger_api::operators::Query::Tier { user })).await? {
        Answer::Operators(ledger_api::operators::Answer::Tier(tier)) => Ok(tier),
        other => Err(unexpected(other)),
    }
}

/// `units` of `asset` in the reference asset; None without a price (or a reference asset).
async fn value(
    ctx: &Context<'_>,
    catalog: &Catalog,
    asset: u32,
    units: i128,
    reference: Option<u32>,
    prices: &mut Vec<(u32, Option<Decimal>)>,
) -> Result<Option<Decimal>, Error> {
    let Some(reference) = reference else { return Ok(None) };
    let price = match prices.iter().find(|(a, _)| *a == asset) {
        Some((_, price)) => *price,
        None => {
            let price = super::spot::reference_price(ctx, catalog, asset, reference).await?;
            prices.push((asset, price));
            price
        }
    };
    Ok(price.and_then(|p| catalog.amount(asset, units).0.checked_mul(p)))
}

/// A user's standing against their tier's limits.
struct Standing {
    tier: u8,
    limits: crate::limits::Tier,
    reference: String,
    day: crate::limits::Window,
    month: crate::limits::Window,
    /// The value of the withdrawal being added, if it has one.
    adding: Option<Decimal>,
    /// The withdrawals counted (a retried request's own is among them).
    counted: Vec<u64>,
}

/// The caller's tier's windows and what they have used, with the value of
/// `adding` (a new withdrawal's asset and units), when the site sets limits.
async fn limits_of(ctx: &Context<'_>, catalog: &Catalog, user: u64, adding: Option<(u32, i128)>) -> Result<Option<Standing>, Error> {
    let config = &services(ctx).limits;
    if config.tiers.is_empty() {
        return Ok(None);
    }
    // A reference asset the ledger lacks values nothing: every withdrawal goes to review, none fails.
    let reference = catalog.asset_by_symbol(&config.reference_asset).ok().map(|spec| spec.id);
    if reference.is_none() {
        tracing::error!(reference_asset = %config.reference_asset, "withdrawals.reference_asset is no asset of the ledger's: create it, or fix the config");
    }
    let tier = tier_of(ctx, user).await?;
    // A tier beyond the configured ones has the highest configured limits.
    let limits = config.tiers[usize::from(tier).min(config.tiers.len() - 1)].clone();
    let now = now_ms();
    let query = api::Query::Withdrawals { user: Some(user), status: None, limit: QUERY_LIMIT_MAX };
    let api::Answer::Withdrawals(found) = ask_wallet(ctx, query).await? else { return Err(unexpected("withdrawals")) };
    let mut prices = Vec::new();
    let (mut history, mut counted) = (Vec::with_capacity(found.len()), Vec::with_capacity(found.len()));
    for w in found.iter().filter(|w| w.status != api::WithdrawalStatus::Rejected && now.saturating_sub(w.created_ms) < crate::limits::MONTH_MS) {
        history.push((w.created_ms, value(ctx, catalog, w.asset, w.amount, reference, &mut prices).await?));
        counted.push(w.id);
    }
    let (day, month) = crate::limits::windows(&limits, &history, now);
    // Judged on what is known only: a past withdrawal that cannot be valued,
    // or more of them in 30 days than one read returns, sends the new one to review.
    let complete = history.iter().all(|(_, value)| value.is_some()) && found.len() < QUERY_LIMIT_MAX as usize;
    let adding = match adding {
        Some((asset, units)) if complete => value(ctx, catalog, asset, units, reference, &mut prices).await?,
        _ => None,
    };
    Ok(Some(Standing { tier, limits, reference: config.reference_asset.clone(), day, month, adding, counted }))
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
    /// The caller's withdrawal limits: their tier's rolling 24 h and 30 day
    /// windows, with what is used and left; null when the site sets none.
    /// A withdrawal over them waits for an operator's review.
    async fn withdrawal_limits(&self, ctx: &Context<'_>) -> Result<Option<WithdrawalLimits>, Error> {
        let user = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        Ok(limits_of(ctx, &catalog, user, None).await?.map(|standing| WithdrawalLimits {
            tier: i32::from(standing.tier),
            tier_name: standing.limits.name,
            reference_asset: standing.reference,
            daily: window(&standing.day),
            monthly: window(&standing.month),
        }))
    }

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
        let user = if claims.role == users::Role::Operator {
            // Everyone's, only to an operator who may act as one.
            operator(ctx)?;
            None
        } else {
            Some(caller_id(ctx)?)
        };
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
    // Each argument is a field of the API's mutation: the contract's four and the optional ones added since.
    #[allow(clippy::too_many_arguments)]
    async fn request_withdrawal(
        &self,
        ctx: &Context<'_>,
        asset: String,
        amount: Dec,
        destination: String,
        idempotency_key: String,
        #[graphql(desc = "The app's code (or a recovery code), needed when two-factor authentication is on; a retry needs a fresh one.")]
        two_factor_code: Option<String>,
        #[graphql(desc = "The address book entry to withdraw to, when several have this address (their memos differ).")] address_book_entry: Option<ID>,
    ) -> Result<Withdrawal, Error> {
        let user = caller_id(ctx)?;
        let by_key = caller(ctx)?.key.is_some();
        // A bot's key was made with a fresh code, is bound to its IP
        // allowlist, and withdraws only to the address book.
        if !by_key {
            super::two_factor::require_code(ctx, user, two_factor_code.as_deref()).await?;
        }
        let catalog = Catalog::load(ctx).await?;
        let (spec, units) = catalog.units(&asset, amount)?;
        let entry = match &address_book_entry {
            Some(id) => Some(id.parse::<u64>().map_err(|_| coded("NOT_FOUND", "you have no address book entry with this id"))?),
            None => None,
        };
        let checked = services(ctx).address_book.check_destination(user, &spec.symbol, &destination, entry, by_key, now_ms());
        let destination = match checked.map_err(super::address_book::book_error)? {
            // Whoever pays it out needs the network and the memo (an exchange's deposit tag) too.
            Ok(Some(entry)) => match entry.memo {
                Some(memo) => format!("{}:{} memo:{memo}", entry.network, entry.address),
                None => format!("{}:{}", entry.network, entry.address),
            },
            Ok(None) => services(ctx).address_book.checked_address(&spec.symbol, None, &destination).map(|(_, a)| a).unwrap_or(destination),
            Err(refusal) => {
                tracing::info!(event = "withdrawal_destination_refused", user, asset = %spec.symbol, code = refusal.code(), %refusal, "a withdrawal's destination was refused");
                return Err(coded(refusal.code(), refusal.to_string()));
            }
        };
        // The limit check and the request are one step per user.
        let lock = services(ctx).withdrawal_lock(user);
        let _turn = lock.lock().await;
        let standing = limits_of(ctx, &catalog, user, Some((spec.id, units))).await?;
        let reviews = &services(ctx).reviews;
        // An over-limit verdict is written before the ledger sees the request,
        // so that a retry (the same idempotency key) after a failure in
        // between is marked all the same.
        let stored = reviews.verdict(user, &idempotency_key).map_err(review_error)?;
        let verdict = match &stored {
            Some(review) => Some(review.clone()),
            None => standing
                .as_ref()
                .and_then(|s| crate::limits::over_limit(&s.day, &s.month, s.adding, &s.reference))
                .map(|reason| crate::limits::Review { reason, at_ms: now_ms() }),
        };
        if stored.is_none() {
            reviews.remember_verdict(user, &idempotency_key, verdict.as_ref()).map_err(review_error)?;
        }
        let key = idempotency_key.clone();
        let id = match run_wallet(ctx, Command::RequestWithdrawal { user, asset: spec.id, amount: units, destination, key: idempotency_key }).await? {
            api::Outcome::WithdrawalRequested(id) => id,
            other => return Err(unexpected(other)),
        };
        // A retry of a request taken within its limit counts itself twice above: not a verdict.
        let retried = standing.as_ref().is_some_and(|s| s.counted.contains(&id));
        match (stored, verdict) {
            (Some(review), _) if reviews.get(id).map_err(review_error)?.is_none() => reviews.mark(id, &review).map_err(review_error)?,
            (None, Some(review)) if !retried => {
                // Over the limit: taken all the same (the money is held), marked for the operators' review.
                reviews.mark(id, &review).map_err(review_error)?;
                tracing::warn!(event = "withdrawal_over_limit", user, withdrawal = id, reason = %review.reason, "a withdrawal over its limit waits for review");
            }
            (None, Some(_)) => reviews.forget_verdict(user, &key).map_err(review_error)?,
            _ => {}
        }
        withdrawal_by_id(ctx, &catalog, id).await
    }

    /// Sends `amount` of a token from the caller's available balance to
    /// another user's, at once, under the token's transfer rules
    /// (COMPLIANCE_REFUSED says which one refused); the same
    /// `idempotencyKey` again answers the same transfer. Money leaves an
    /// account only by withdrawal, under its limits and reviews. With
    /// two-factor authentication on, a transfer needs the app's code, and
    /// with allowlist-only withdrawals on it is refused, as a withdrawal to
    /// an address outside the book is: a stolen session moves nothing.
    async fn transfer(
        &self,
        ctx: &Context<'_>,
        asset: String,
        to_email: String,
        amount: Dec,
        idempotency_key: String,
        #[graphql(desc = "The app's code (or a recovery code), needed when two-factor authentication is on; a retry needs a fresh one.")]
        two_factor_code: Option<String>,
    ) -> Result<LedgerEntry, Error> {
        let user = caller_id(ctx)?;
        super::two_factor::require_code(ctx, user, two_factor_code.as_deref()).await?;
        let settings = services(ctx).address_book.settings(user).map_err(super::address_book::book_error)?;
        if settings.allowlist_only_at(now_ms()) {
            return Err(coded(
                "FORBIDDEN",
                "allowlist-only withdrawals are on: nothing leaves the account but to the address book; turn them off (it takes the cooldown) to transfer",
            ));
        }
        let to = services(ctx).users.by_email(&to_email).map_err(user_error)?.ok_or_else(|| coded("NOT_FOUND", "no account with this email"))?;
        let catalog = Catalog::load(ctx).await?;
        let (spec, units) = catalog.units(&asset, amount)?;
        if units <= 0 {
            return Err(coded("BAD_USER_INPUT", "amount is positive"));
        }
        if !super::tokenization::is_token(ctx, spec.id).await? {
            return Err(coded("BAD_USER_INPUT", format!("{} is not a token: money leaves an account by requestWithdrawal", spec.symbol)));
        }
        // One money-out step at a time per user, as withdrawals.
        let lock = services(ctx).withdrawal_lock(user);
        let _turn = lock.lock().await;
        let command = Command::Transfer { from: user, to: to.id, asset: spec.id, amount: units, key: idempotency_key.clone() };
        let id = match run_wallet(ctx, command).await? {
            api::Outcome::Transferred(id) => id,
            other => return Err(unexpected(other)),
        };
        // The caller's side of it, as ledgerEntries lists it.
        Ok(LedgerEntry {
            id: ID(id.to_string()),
            asset: spec.symbol.clone(),
            amount: Dec(-units::to_decimal(units, spec.scale)),
            kind: ledger_api::transfer_kind(api::TRANSFER).into(),
            reference: Some(idempotency_key),
            // When this gateway answered: a repeat under the same key answers the same transfer, at its own time.
            created_at: at(now_ms()),
        })
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
            amount: Dec(units::to_decimal(units, spec.scale)),
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
