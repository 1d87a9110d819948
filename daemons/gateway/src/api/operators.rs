//! Operators' proposals: every operator mutation (a deposit, a withdrawal's
//! decision, the house's inventory, an asset, a market, a new operator,
//! freezing an account) goes
//! to the ledger as the calling operator's proposal, and is applied once as
//! many different operators as its kind needs have approved it. A second
//! operator approves by `approveProposal`, or by calling the same mutation
//! with the same arguments; until then the mutation answers
//! APPROVAL_PENDING with the proposal's id. The ledger keeps the rules (who
//! may approve, how many) and the audit log; this file speaks them in the
//! API's words.

use async_graphql::{Context, Enum, Error, ErrorExtensions, Object, SimpleObject, ID};
use ledger_api::operators::{self as api, Action, ActionKind, Proposal as LedgerProposal, ProposalStatus as LedgerStatus};
use ledger_api::{convert, donations, house, spot, tokenization, wallet, ActionCommand, Answer, Command, Outcome, Query};

use super::{ask, at, coded, list_limit, operator, run, services, unexpected, Catalog, DateTime};

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ProposalKind {
    Deposit,
    WithdrawalApproval,
    WithdrawalRejection,
    HouseInventory,
    Asset,
    Market,
    Operator,
    AccountFreeze,
    /// A user's verification tier (their withdrawal limits).
    Tier,
    /// A conversion pair: its price, spread, bounds, pause.
    ConvertPair,
    /// Making a user an issuer of tokens, or no longer one.
    Issuer,
    /// An investor's claims: country, category, expiry.
    InvestorClaims,
    /// A token agent's action: a partial freeze, a forced transfer, a recovery.
    TokenAgent,
    /// Verifying a campaign organiser, the fee on gifts, stopping a campaign.
    Organiser,
    /// Paying a campaign's gifts out to its organiser.
    DonationPayout,
}

impl From<ActionKind> for ProposalKind {
    fn from(kind: ActionKind) -> ProposalKind {
        match kind {
            ActionKind::Deposit => ProposalKind::Deposit,
            ActionKind::WithdrawalApproval => ProposalKind::WithdrawalApproval,
            ActionKind::WithdrawalRejection => ProposalKind::WithdrawalRejection,
            ActionKind::HouseInventory => ProposalKind::HouseInventory,
            ActionKind::Asset => ProposalKind::Asset,
            ActionKind::Market => ProposalKind::Market,
            ActionKind::Operator => ProposalKind::Operator,
            ActionKind::AccountFreeze => ProposalKind::AccountFreeze,
            ActionKind::Tier => ProposalKind::Tier,
            ActionKind::ConvertPair => ProposalKind::ConvertPair,
            ActionKind::Issuer => ProposalKind::Issuer,
            ActionKind::InvestorClaims => ProposalKind::InvestorClaims,
            ActionKind::TokenAgent => ProposalKind::TokenAgent,
            ActionKind::Organiser => ProposalKind::Organiser,
            ActionKind::DonationPayout => ProposalKind::DonationPayout,
        }
    }
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum ProposalStatus {
    Pending,
    Executed,
    Rejected,
}

impl From<LedgerStatus> for ProposalStatus {
    fn from(status: LedgerStatus) -> ProposalStatus {
        match status {
            LedgerStatus::Pending => ProposalStatus::Pending,
            LedgerStatus::Executed => ProposalStatus::Executed,
            LedgerStatus::Rejected => ProposalStatus::Rejected,
        }
    }
}

impl From<ProposalStatus> for LedgerStatus {
    fn from(status: ProposalStatus) -> LedgerStatus {
        match status {
            ProposalStatus::Pending => LedgerStatus::Pending,
            ProposalStatus::Executed => LedgerStatus::Executed,
            ProposalStatus::Rejected => LedgerStatus::Rejected,
        }
    }
}

/// An operator action waiting for, or done by, enough operators' approvals.
#[derive(SimpleObject)]
pub struct Proposal {
    pub id: ID,
    pub kind: ProposalKind,
    /// What it does, in words: "deposit 100.00 USD to user 7 (reference wire-1)".
    pub description: String,
    pub status: ProposalStatus,
    /// The operators (user ids) who approved it, the proposer first.
    pub approvals: Vec<ID>,
    /// Approvals it needs, the proposer's included.
    pub required: i32,
    pub created_at: DateTime,
    pub updated_at: DateTime,
    pub rejected_by: Option<ID>,
    pub rejection_reason: Option<String>,
}

/// What the operators deciding a proposal must see: its action in words,
/// and for a withdrawal under review why (an approver looks at the limit it
/// went over before the money leaves).
fn describe(catalog: &Catalog, reviews: &crate::limits::Reviews, action: &Action) -> String {
    let described = describe_action(catalog, action);
    let Action::Ledger(ActionCommand::Wallet(wallet::Command::DecideWithdrawal { id, approve: true })) = action else { return described };
    match reviews.get(*id) {
        Ok(Some(review)) => format!("{described}, under review: {}", review.reason),
        Ok(None) => described,
        Err(error) => {
            tracing::error!(%error, withdrawal = id, "the withdrawal reviews could not be read");
            format!("{described} (whether it is under review could not be read: see the withdrawal's reviewReason)")
        }
    }
}

pub(crate) fn describe_action(catalog: &Catalog, action: &Action) -> String {
    let amount = |asset: u32, units: i128| format!("{} {}", catalog.amount(asset, units).0, catalog.symbol(asset));
    match action {
        Action::AddOperator { user } => format!("make user {user} an operator"),
        Action::Freeze { user, cancel_orders: true } => format!("freeze user {user}'s account and cancel its open orders"),
        Action::Freeze { user, cancel_orders: false } => format!("freeze user {user}'s account"),
        Action::Unfreeze { user } => format!("unfreeze user {user}'s account"),
        Action::SetTier { user, tier } => format!("set user {user}'s verification tier to {tier}"),
        Action::KillSwitch { user, engaged: true } => format!("engage the kill switch on user {user}'s trading (cancel their open orders, refuse new ones)"),
        Action::KillSwitch { user, engaged: false } => format!("lift the operators' kill switch on user {user}'s trading"),
        Action::Ledger(command) => match command {
            ActionCommand::CreateAsset(spec) => format!("create asset {} with {} decimals", spec.symbol, spec.scale),
            ActionCommand::Wallet(wallet::Command::Deposit { user, asset, amount: units, reference }) => {
                format!("deposit {} to user {user} (reference {reference})", amount(*asset, *units))
            }
            ActionCommand::Wallet(wallet::Command::DecideWithdrawal { id, approve: true }) => format!("approve withdrawal {id}"),
            ActionCommand::Wallet(wallet::Command::DecideWithdrawal { id, approve: false }) => format!("reject withdrawal {id}"),
            ActionCommand::House(house::Command::Fund { asset, amount: units, reference }) => {
                format!("fund the house's inventory with {} (reference {reference})", amount(*asset, *units))
            }
            ActionCommand::House(house::Command::Defund { asset, amount: units, reference }) => {
                format!("take {} out of the house's inventory (reference {reference})", amount(*asset, *units))
            }
            ActionCommand::Spot(spot::Command::CreateMarket(market)) => {
                format!("create market {} {}-{}", market.spec.id, catalog.symbol(market.base), catalog.symbol(market.quote))
            }
            ActionCommand::Spot(spot::Command::SetTrading { market, trading }) => {
                let name = catalog
                    .markets
                    .iter()
                    .find(|m| m.id() == *market)
                    .map_or_else(|| format!("market {market}"), |m| format!("market {}-{}", catalog.symbol(m.base), catalog.symbol(m.quote)));
                format!("{} {name}", if *trading { "resume trading on" } else { "halt" })
            }
            ActionCommand::Convert(convert::Command::SetPair(spec)) => {
                let pair = format!("{}/{}", catalog.symbol(spec.base), catalog.symbol(spec.quote));
                let price = match spec.price {
                    convert::PriceSource::Book(market) => format!("priced from market {market}'s book"),
                    convert::PriceSource::Set { quote_units, base_units } => {
                        format!("at {quote_units} {} minor units per {base_units} {} minor units", catalog.symbol(spec.quote), catalog.symbol(spec.base))
                    }
                };
                format!(
                    "set conversion pair {pair} {price}, spread {} bps, fee {} bps, {} to {} by {}, quotes for {} ms, exposure at most {} and {}{}",
                    spec.spread_bps,
                    spec.fee_bps,
                    amount(spec.base, spec.base_min),
                    amount(spec.base, spec.base_max),
                    amount(spec.base, spec.base_step),
                    spec.quote_ttl_ms,
                    amount(spec.base, spec.exposure_max_base),
                    amount(spec.quote, spec.exposure_max_quote),
                    if spec.paused { ", paused" } else { "" }
                )
            }
            ActionCommand::Tokenization(tokenization::Command::SetIssuer { user, issuer: true }) => format!("make user {user} an issuer of tokens"),
            ActionCommand::Tokenization(tokenization::Command::SetIssuer { user, issuer: false }) => format!("make user {user} no longer an issuer of tokens"),
            ActionCommand::Tokenization(tokenization::Command::SetClaims { user, claims: Some(claims) }) => {
                format!("set user {user}'s investor claims: country {}, {:?} investor, until {}", claims.country, claims.category, at(claims.expires_at_ms).0)
            }
            ActionCommand::Tokenization(tokenization::Command::SetClaims { user, claims: None }) => format!("remove user {user}'s investor claims"),
            ActionCommand::Tokenization(tokenization::Command::SetOfferingFee { fee_bps }) => {
                format!("set the platform's fee on new offerings to {fee_bps} basis points of what they raise")
            }
            ActionCommand::Tokenization(tokenization::Command::SetListingFees { maker_fee_ppm, taker_fee_ppm }) => format!(
                "set the fees of the markets tokens list on at their offerings' close to {maker_fee_ppm} (maker) and {taker_fee_ppm} (taker) millionths of a trade's value"
            ),
            ActionCommand::Tokenization(tokenization::Command::FreezeTokens { token, holder, amount: units }) => {
                format!("freeze {} of user {holder}'s tokens", amount(*token, *units))
            }
            ActionCommand::Tokenization(tokenization::Command::UnfreezeTokens { token, holder, amount: units }) => {
                format!("unfreeze {} of user {holder}'s tokens", amount(*token, *units))
            }
            ActionCommand::Tokenization(tokenization::Command::ForceTransfer { token, from, to, amount: units }) => {
                format!("force a transfer of {} from user {from} to user {to}", amount(*token, *units))
            }
            ActionCommand::Tokenization(tokenization::Command::RecoverTokens { token, lost, to }) => {
                format!("recover everything user {lost} holds of {} to their new account, user {to}", catalog.symbol(*token))
            }
            ActionCommand::Donations(donations::Command::SetOrganiser { user, organiser: Some(organiser) }) => {
                format!("verify user {user} as a campaign organiser: {} ({:?}, country {})", organiser.name, organiser.kind, organiser.country)
            }
            ActionCommand::Donations(donations::Command::SetOrganiser { user, organiser: None }) => format!("make user {user} no longer a campaign organiser"),
            ActionCommand::Donations(donations::Command::SetDonationFee { fee_bps }) => {
                format!("set the platform's fee on the gifts of new campaigns to {fee_bps} basis points")
            }
            ActionCommand::Donations(donations::Command::StopCampaign { campaign }) => format!("stop campaign {campaign} and refund its gifts"),
            ActionCommand::Donations(donations::Command::DepositDonation { donor, gift, reference }) => {
                format!("credit deposit {reference} of {} from user {donor} as a gift to campaign {}", amount(gift.asset, gift.gross), gift.campaign)
            }
            ActionCommand::Donations(donations::Command::PayOut { campaign }) => format!("pay campaign {campaign}'s gifts out to its organiser"),
            other => format!("{other:?}"),
        },
    }
}

pub(crate) fn api_proposal(catalog: &Catalog, reviews: &crate::limits::Reviews, p: &LedgerProposal) -> Proposal {
    Proposal {
        id: ID(p.id.to_string()),
        kind: p.kind.into(),
        description: describe(catalog, reviews, &p.action),
        status: p.status.into(),
        approvals: p.approvals.iter().map(|id| ID(id.to_string())).collect(),
        required: i32::from(p.required),
        created_at: at(p.created_ms),
        updated_at: at(p.updated_ms),
        rejected_by: p.rejection.as_ref().map(|(id, _)| ID(id.to_string())),
        rejection_reason: p.rejection.as_ref().map(|(_, reason)| reason.clone()),
    }
}

/// A proposal that needs more approvals, as the error of the mutation that made or approved it.
fn approval_pending(catalog: &Catalog, reviews: &crate::limits::Reviews, p: &LedgerProposal) -> Error {
    let message = format!(
        "proposal {}: {} waits for {} more approval(s) by other operators (approveProposal(id: \"{}\"), or the same request from another operator)",
        p.id,
        describe(catalog, reviews, &p.action),
        usize::from(p.required).saturating_sub(p.approvals.len()),
        p.id
    );
    let (id, approvals, required) = (p.id.to_string(), p.approvals.len() as i32, i32::from(p.required));
    coded("APPROVAL_PENDING", message).extend_with(move |_, e| {
        e.set("proposal", id.clone());
        e.set("approvals", approvals);
        e.set("required", required);
    })
}

/// Runs an operator's action as the caller's proposal: its outcome once
/// approved by enough operators, APPROVAL_PENDING until then.
pub(crate) async fn operate(ctx: &Context<'_>, command: Command) -> Result<Outcome, Error> {
    operate_as(ctx, operator_id(ctx)?, command).await
}

/// [`operate`] with the proposer named: an operator, or a token's issuer
/// proposing its agent's action (the ledger decides who may).
pub(crate) async fn operate_as(ctx: &Context<'_>, operator_id: u64, command: Command) -> Result<Outcome, Error> {
    let action = command.to_action().ok_or_else(|| unexpected("an operator mutation whose command is no operator's action"))?;
    let propose = Command::Operators(api::Command::Propose { operator: operator_id, action: Action::Ledger(action) });
    match run(ctx, propose).await? {
        Outcome::Operators(api::Outcome::Executed { outcome, .. }) => Ok(outcome.into()),
        Outcome::Operators(api::Outcome::Proposal(p)) => Err(approval_pending(&*Catalog::load(ctx).await?, &services(ctx).reviews, &p)),
        other => Err(unexpected(other)),
    }
}

fn operator_id(ctx: &Context<'_>) -> Result<u64, Error> {
    operator(ctx)?.sub.parse().map_err(|_| coded("FORBIDDEN", "operator actions need an operator's account: log in as one"))
}

async fn proposal_by_id(ctx: &Context<'_>, id: u64) -> Result<Option<LedgerProposal>, Error> {
    match ask(ctx, Query::Operators(api::Query::Proposal { id })).await? {
        Answer::Operators(api::Answer::Proposal(p)) => Ok(p),
        other => Err(unexpected(other)),
    }
}

fn parse_id(id: &ID) -> Result<u64, Error> {
    id.parse().map_err(|_| coded("NOT_FOUND", "no such proposal"))
}

#[derive(Default)]
pub struct OperatorsQuery;

#[Object]
impl OperatorsQuery {
    /// Operators' proposals, newest first (operators only).
    async fn proposals(&self, ctx: &Context<'_>, status: Option<ProposalStatus>, limit: Option<i32>) -> Result<Vec<Proposal>, Error> {
        operator(ctx)?;
        let query = api::Query::Proposals { status: status.map(Into::into), limit: list_limit(limit) };
        let Answer::Operators(api::Answer::Proposals(list)) = ask(ctx, Query::Operators(query)).await? else { return Err(unexpected("proposals")) };
        let catalog = Catalog::load(ctx).await?;
        Ok(list.iter().map(|p| api_proposal(&catalog, &services(ctx).reviews, p)).collect())
    }

    /// A user's kill switch (operators only).
    async fn kill_switch_of(&self, ctx: &Context<'_>, email: String) -> Result<super::spot::KillSwitch, Error> {
        operator(ctx)?;
        super::spot::kill_switch_of(ctx, user_by_email(ctx, &email)?).await
    }

    /// The accounts operators froze (operators only).
    async fn frozen_accounts(&self, ctx: &Context<'_>) -> Result<Vec<super::accounts::User>, Error> {
        operator(ctx)?;
        let services = super::services(ctx);
        let standing = standing(&services.ledger).await.ok_or_else(|| coded("UNAVAILABLE", "the ledger is unreachable; try again"))?;
        let mut users = Vec::with_capacity(standing.frozen.len());
        for id in standing.frozen {
            if let Some(user) = services.users.by_id(id).map_err(super::user_error)? {
                users.push((&user).into());
            }
        }
        Ok(users)
    }

    /// One proposal, whatever its status (operators only).
    async fn proposal(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Proposal>, Error> {
        operator(ctx)?;
        let found = proposal_by_id(ctx, parse_id(&id)?).await?;
        let catalog = Catalog::load(ctx).await?;
        Ok(found.map(|p| api_proposal(&catalog, &services(ctx).reviews, &p)))
    }
}

#[derive(Default)]
pub struct OperatorsMutation;

#[Object]
impl OperatorsMutation {
    /// Approves another operator's proposal; the last approval it needs
    /// applies it (status EXECUTED). Never one's own, nor one that benefits oneself.
    async fn approve_proposal(&self, ctx: &Context<'_>, id: ID) -> Result<Proposal, Error> {
        let operator = operator_id(ctx)?;
        let proposal = parse_id(&id)?;
        let done = proposed(ctx, run(ctx, Command::Operators(api::Command::Approve { operator, proposal })).await?)?;
        Ok(api_proposal(&*Catalog::load(ctx).await?, &services(ctx).reviews, &done))
    }

    /// Proposes to freeze a user's account: once approved (`approvals.account_freeze`
    /// operators) it cannot log in (its sessions end at once), place orders,
    /// send money or withdraw, and operators cannot pay out its pending
    /// withdrawals; deposits still arrive. With `cancelOpenOrders`, its open
    /// orders are cancelled too.
    async fn freeze_account(&self, ctx: &Context<'_>, email: String, #[graphql(default = true)] cancel_open_orders: bool) -> Result<Proposal, Error> {
        let user = user_by_email(ctx, &email)?;
        let done = propose(ctx, Action::Freeze { user, cancel_orders: cancel_open_orders }).await?;
        Ok(api_proposal(&*Catalog::load(ctx).await?, &services(ctx).reviews, &done))
    }

    /// Proposes to unfreeze a frozen account (`approvals.account_freeze` operators).
    async fn unfreeze_account(&self, ctx: &Context<'_>, email: String) -> Result<Proposal, Error> {
        let user = user_by_email(ctx, &email)?;
        let done = propose(ctx, Action::Unfreeze { user }).await?;
        Ok(api_proposal(&*Catalog::load(ctx).await?, &services(ctx).reviews, &done))
    }

    /// Proposes to engage the operators' kill switch on a user's trading:
    /// once approved (`approvals.account_freeze` operators) their open orders
    /// are cancelled and new ones refused until the operators lift it. Unlike
    /// a freeze, the user may still log in, read and withdraw.
    async fn engage_kill_switch_for(&self, ctx: &Context<'_>, email: String) -> Result<Proposal, Error> {
        let user = user_by_email(ctx, &email)?;
        let done = propose(ctx, Action::KillSwitch { user, engaged: true }).await?;
        Ok(api_proposal(&*Catalog::load(ctx).await?, &services(ctx).reviews, &done))
    }

    /// Proposes to lift the operators' kill switch on a user's trading (the
    /// user's own stays if they engaged it).
    async fn lift_kill_switch_for(&self, ctx: &Context<'_>, email: String) -> Result<Proposal, Error> {
        let user = user_by_email(ctx, &email)?;
        let done = propose(ctx, Action::KillSwitch { user, engaged: false }).await?;
        Ok(api_proposal(&*Catalog::load(ctx).await?, &services(ctx).reviews, &done))
    }

    /// Proposes a user's verification tier (0, a new user's, to 9), which
    /// sets their withdrawal limits (`[withdrawals] tiers` in the gateway's
    /// config); done once `approvals.tier` operators approve. A KYC
    /// provider's verdict will come this way too.
    async fn set_user_tier(&self, ctx: &Context<'_>, email: String, tier: i32) -> Result<Proposal, Error> {
        let user = user_by_email(ctx, &email)?;
        let tier = u8::try_from(tier)
            .ok()
            .filter(|t| *t <= ledger_api::operators::TIER_MAX)
            .ok_or_else(|| coded("BAD_USER_INPUT", format!("a tier is 0 to {}", ledger_api::operators::TIER_MAX)))?;
        let done = propose(ctx, Action::SetTier { user, tier }).await?;
        Ok(api_proposal(&*Catalog::load(ctx).await?, &services(ctx).reviews, &done))
    }

    /// Rejects a pending proposal (any operator, its proposer included), saying why.
    async fn reject_proposal(&self, ctx: &Context<'_>, id: ID, reason: String) -> Result<Proposal, Error> {
        let operator = operator_id(ctx)?;
        let proposal = parse_id(&id)?;
        let done = match run(ctx, Command::Operators(api::Command::Reject { operator, proposal, reason })).await? {
            Outcome::Operators(api::Outcome::Proposal(proposal)) => proposal,
            other => return Err(unexpected(other)),
        };
        Ok(api_proposal(&*Catalog::load(ctx).await?, &services(ctx).reviews, &done))
    }

    /// Proposes to make a registered user an operator.
    async fn propose_operator(&self, ctx: &Context<'_>, email: String) -> Result<Proposal, Error> {
        let operator = operator_id(ctx)?;
        let services = super::services(ctx);
        let user =
            services.users.by_email(&email).map_err(super::user_error)?.ok_or_else(|| coded("NOT_FOUND", "no account with this email: register it first"))?;
        let propose = Command::Operators(api::Command::Propose { operator, action: Action::AddOperator { user: user.id } });
        let done = proposed(ctx, run(ctx, propose).await?)?;
        Ok(api_proposal(&*Catalog::load(ctx).await?, &services.reviews, &done))
    }
}

pub(crate) fn user_by_email(ctx: &Context<'_>, email: &str) -> Result<u64, Error> {
    let users = &super::services(ctx).users;
    Ok(users.by_email(email).map_err(super::user_error)?.ok_or_else(|| coded("NOT_FOUND", "no account with this email"))?.id)
}

/// Proposes one of the operators' own actions as the caller.
async fn propose(ctx: &Context<'_>, action: Action) -> Result<LedgerProposal, Error> {
    let operator = operator_id(ctx)?;
    proposed(ctx, run(ctx, Command::Operators(api::Command::Propose { operator, action })).await?)
}

/// The proposal a proposal or an approval left, once what its execution
/// asks of this gateway is done: a frozen account's sessions end here.
fn proposed(ctx: &Context<'_>, outcome: Outcome) -> Result<LedgerProposal, Error> {
    match outcome {
        Outcome::Operators(api::Outcome::Executed { proposal, outcome }) => {
            if let ledger_api::ActionOutcome::AccountFrozen { user, orders_cancelled } = outcome {
                let ended = super::services(ctx).auth.sessions().revoke_others(user, None).unwrap_or_else(|error| {
                    tracing::error!(%error, user, "could not end a frozen account's sessions");
                    0
                });
                tracing::warn!(event = "account_frozen", user, sessions_ended = ended, orders_cancelled, proposal = proposal.id, "an account was frozen");
            }
            Ok(proposal)
        }
        Outcome::Operators(api::Outcome::Proposal(proposal)) => Ok(proposal),
        other => Err(unexpected(other)),
    }
}

/// Puts a security event in the ledger's audit log, without making the
/// caller wait; a ledger that cannot take it is logged here instead.
pub fn record(ledger: &crate::ledger_client::LedgerClient, event: api::SecurityEvent) {
    let ledger = ledger.clone();
    tokio::spawn(async move {
        let command = Command::Operators(api::Command::Record(event.clone()));
        match ledger.command(command).await {
            Ok(Ok(_)) => {}
            Ok(Err(error)) => tracing::warn!(%error, ?event, "the ledger refused a security event for the audit log"),
            Err(error) => tracing::warn!(%error, ?event, "the ledger is unreachable; a security event is only in this log"),
        }
    });
}

/// As [`record`], once the link to the ledger is up (at start it may not be yet).
pub fn record_when_connected(ledger: &crate::ledger_client::LedgerClient, event: api::SecurityEvent) {
    let ledger = ledger.clone();
    tokio::spawn(async move {
        for _ in 0..600 {
            if ledger.is_connected() {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        record(&ledger, event);
    });
}

/// Who the ledger counts as operators, and the accounts they froze.
pub(crate) struct Standing {
    pub operators: Vec<u64>,
    pub frozen: Vec<u64>,
}

/// None when the ledger cannot say.
pub(crate) async fn standing(ledger: &crate::ledger_client::LedgerClient) -> Option<Standing> {
    match ledger.query(Query::Operators(api::Query::Operators)).await {
        Ok(Ok(Answer::Operators(api::Answer::Operators { operators, frozen, .. }))) => Some(Standing { operators, frozen }),
        _ => None,
    }
}

/// Whether the ledger counts `user` among its operators; None when it cannot say.
pub(crate) async fn is_operator(ledger: &crate::ledger_client::LedgerClient, user: u64) -> Option<bool> {
    standing(ledger).await.map(|standing| standing.operators.contains(&user))
}
