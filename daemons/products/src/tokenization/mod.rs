//! Tokenization and investment: issuers, investors' claims, tokens and
//! their transfer rules, offerings, subscriptions held in escrow, the
//! close that allocates or refunds in one command, and vesting.
//!
//! Accounts, all the kernel's: a token is a kernel asset whose supply is
//! its ISSUED account (`Owner::Entity(asset)`, below zero by what was
//! issued, so the asset still sums to zero); a subscription is a hold of
//! the payment from the investor's AVAILABLE into the offering's ESCROW
//! (`Owner::Entity(offering)`); an unvested tranche is a hold of the
//! investor's tokens into their VESTING account, so that it can be neither
//! sold nor withdrawn until the ledger's clock releases it. The proceeds go
//! to the issuer's AVAILABLE, the platform's fee from there to the house's
//! revenue. A distribution's pool waits in its DISTRIBUTION account, the
//! tax withheld in the house's WITHHELD; tokens the token's agent froze in
//! their holder's FROZEN account, still theirs.
//!
//! The token's rules (`rules.rs`) decide subscriptions and the other
//! products' movements of a token (transfers, withdrawals, orders) in the
//! ledger's dispatch before they apply (`Tokenization::check_movement`,
//! counting what is on its way), and who is still eligible at a close here.

pub mod allocation;
pub mod distribution;
pub mod rules;

use std::collections::{BTreeMap, BTreeSet};

use compact_str::format_compact;
use ids::{Amount, AssetId, TimestampMs, UserId};
use ledger_api::spot::Market;
use ledger_api::tokenization::{
    self as api, Claims, Command, ComplianceRefusal, Distribution, DistributionId, DistributionSpec, DistributionStatus, Entitlement, Offering, OfferingId,
    OfferingSpec, OfferingStatus, Outcome, Subscription, SubscriptionId, SubscriptionStatus, Token, TokenSpec, Tranche, TransferRules, AMOUNT_BOUND,
    FEE_BPS_MAX, TRANCHES_MAX, URL_BYTES_MAX, WITHHOLDING_BPS_MAX,
};
use ledger_api::LedgerError;
use ledger_core::{AccountId, AssetSpec, Digest, HoldId, Idempotent, Kernel, Leg, Owner, Payout, Purpose, PurposeSpec, Recorded, TransferCode};
use serde::{Deserialize, Serialize};

use crate::wallet::{available, locked};
use crate::{key_digest, refusal, ChangeSet, Forward, LedgerLimits, Product};

pub const ISSUED: Purpose = Purpose(api::ISSUED);
pub const ESCROW: Purpose = Purpose(api::ESCROW);
pub const VESTING: Purpose = Purpose(api::VESTING);
pub const DISTRIBUTION: Purpose = Purpose(api::DISTRIBUTION);
pub const WITHHELD: Purpose = Purpose(api::WITHHELD);
pub const FROZEN: Purpose = Purpose(api::FROZEN);

pub const PURPOSES: &[PurposeSpec] = &[
    // A token's supply: below zero by every unit issued, like custody by what came in.
    PurposeSpec { purpose: ISSUED, name: "issued", may_go_negative: true, holds_only: false },
    PurposeSpec { purpose: ESCROW, name: "escrow", may_go_negative: false, holds_only: true },
    PurposeSpec { purpose: VESTING, name: "vesting", may_go_negative: false, holds_only: true },
    PurposeSpec { purpose: DISTRIBUTION, name: "distribution", may_go_negative: false, holds_only: false },
    PurposeSpec { purpose: WITHHELD, name: "withheld", may_go_negative: false, holds_only: false },
    // Not holds-only: a freeze is the agent's plain transfer, with no hold to capture.
    PurposeSpec { purpose: FROZEN, name: "frozen", may_go_negative: false, holds_only: false },
];

const SUBSCRIPTION_RECORD: u8 = 8;
const DISTRIBUTION_RECORD: u8 = 9;
const SUBSCRIPTION_HOLD: u8 = 4;
const VESTING_HOLD: u8 = 5;

/// The most offerings open at once and subscriptions open in all: bounded
/// state, as every other product's.
pub const OFFERINGS_OPEN_MAX: usize = 1_000;
pub const SUBSCRIPTIONS_OPEN_MAX: usize = 1_000_000;
/// Offerings one tick closes at most: a close moves every subscription's
/// money, so a tick with many due leaves the rest to the next.
const OFFERINGS_CLOSED_PER_TICK: usize = 4;
/// Tranches one tick vests at most.
const TRANCHES_VESTED_PER_TICK: usize = 10_000;
/// The most distributions declared or open for claims at once, and
/// unclaimed entitlements in all (a declaration is refused when the
/// token's holders now would not fit).
pub const DISTRIBUTIONS_OPEN_MAX: usize = 1_000;
pub const ENTITLEMENTS_OPEN_MAX: usize = 1_000_000;
/// Records one tick takes at most: each moves money for every holder.
const DISTRIBUTIONS_RECORDED_PER_TICK: usize = 1;

/// The names of its storage tables; the ledger daemon's
/// `schema/tokenization.rs` says what they hold.
pub mod tables {
    pub const ISSUERS: &str = "tokenization.issuers";
    pub const CLAIMS: &str = "tokenization.claims";
    pub const TOKENS: &str = "tokenization.tokens";
    pub const OFFERINGS: &str = "tokenization.offerings";
    pub const SUBSCRIPTIONS: &str = "tokenization.subscriptions";
    pub const SUBSCRIPTIONS_BY_OFFERING: &str = "tokenization.subscriptions_by_offering";
    pub const SUBSCRIPTIONS_BY_INVESTOR: &str = "tokenization.subscriptions_by_investor";
    pub const TRANCHES: &str = "tokenization.tranches";
    pub const DISTRIBUTIONS: &str = "tokenization.distributions";
    pub const ENTITLEMENTS: &str = "tokenization.entitlements";
    pub const ENTITLEMENTS_BY_HOLDER: &str = "tokenization.entitlements_by_holder";
}

pub fn issued(token: AssetId) -> AccountId {
    AccountId { owner: Owner::Entity(u64::from(token)), asset: token, purpose: ISSUED }
}

pub fn escrow(offering: OfferingId, payment_asset: AssetId) -> AccountId {
    AccountId { owner: Owner::Entity(offering), asset: payment_asset, purpose: ESCROW }
}

pub fn vesting(user: UserId, token: AssetId) -> AccountId {
    AccountId::user(user, token, VESTING)
}

pub fn pool(distribution: DistributionId, payment_asset: AssetId) -> AccountId {
    AccountId { owner: Owner::Entity(distribution), asset: payment_asset, purpose: DISTRIBUTION }
}

pub fn withheld(payment_asset: AssetId) -> AccountId {
    AccountId::house(payment_asset, WITHHELD)
}

/// The holder's tokens the token's agent froze.
pub fn frozen(user: UserId, token: AssetId) -> AccountId {
    AccountId::user(user, token, FROZEN)
}

/// Everything `user` holds of `token` in their accounts: free, held for
/// orders, unvested and frozen.
pub fn held_by(kernel: &Kernel, user: UserId, token: AssetId) -> Amount {
    kernel.balance(available(user, token)) + kernel.balance(locked(user, token)) + kernel.balance(vesting(user, token)) + kernel.balance(frozen(user, token))
}

fn subscription_hold(id: SubscriptionId) -> HoldId {
    HoldId { kind: SUBSCRIPTION_HOLD, id }
}

fn tranche_hold(subscription: SubscriptionId, index: u32) -> HoldId {
    HoldId { kind: VESTING_HOLD, id: subscription * u64::from(TRANCHES_MAX) + u64::from(index) }
}

fn subscribe_key(investor: UserId, key: &str) -> Option<Digest> {
    key_digest(b"subscribe", &investor.to_le_bytes(), key)
}

fn distribute_key(issuer: UserId, key: &str) -> Option<Digest> {
    key_digest(b"distribute", &issuer.to_le_bytes(), key)
}

/// Everything the product keeps, in canonical order. Closed offerings,
/// finished subscriptions and vested tranches are in the store only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenizationState {
    pub issuers: BTreeSet<UserId>,
    pub claims: BTreeMap<UserId, Claims>,
    pub tokens: BTreeMap<AssetId, Token>,
    pub open_offerings: BTreeMap<OfferingId, Offering>,
    pub open_subscriptions: BTreeMap<SubscriptionId, Subscription>,
    /// Unvested tranches by (subscription, index).
    pub tranches: BTreeMap<(SubscriptionId, u32), Tranche>,
    pub next_offering: OfferingId,
    pub next_subscription: SubscriptionId,
    /// The platform's fee on new offerings, in basis points.
    pub offering_fee_bps: u32,
    /// The fees of the markets tokens list on at their close, in millionths.
    pub listing_maker_fee_ppm: u32,
    pub listing_taker_fee_ppm: u32,
    /// Distributions declared (waiting for their record) or open for claims.
    pub open_distributions: BTreeMap<DistributionId, Distribution>,
    /// Their unclaimed entitlements (none of nothing), by (distribution, holder).
    pub entitlements: BTreeMap<(DistributionId, UserId), Entitlement>,
    pub next_distribution: DistributionId,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TokenizationChanges {
    pub issuers: Vec<(UserId, bool)>,
    pub claims: Vec<(UserId, Option<Claims>)>,
    /// Tokens created or changed (rules, supply), in their state after it.
    pub tokens: Vec<Token>,
    pub offerings: Vec<Offering>,
    pub subscriptions: Vec<Subscription>,
    pub tranches: Vec<Tranche>,
    /// Tranches recovered to a new account, as they were: their rows under
    /// the old investor go.
    pub tranches_moved: Vec<Tranche>,
    pub distributions: Vec<Distribution>,
    pub entitlements: Vec<Entitlement>,
    /// Whether the counters or the offering fee moved.
    pub counters: bool,
}

impl ChangeSet for TokenizationChanges {
    fn clear(&mut self) {
        self.issuers.clear();
        self.claims.clear();
        self.tokens.clear();
        self.offerings.clear();
        self.subscriptions.clear();
        self.tranches.clear();
        self.tranches_moved.clear();
        self.distributions.clear();
        self.entitlements.clear();
        self.counters = false;
    }
}

/// A movement of some asset another product's command asks for, which the
/// asset's rules decide first when it is a token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Movement {
    /// From a user to someone not yet known (a sell order) or outside (a withdrawal).
    Send {
        user: UserId,
    },
    /// To a user from someone not yet known (a buy order, an allocation):
    /// `amount` more than they hold and have on its way ([`Incoming`]).
    Receive {
        user: UserId,
        amount: Amount,
    },
    Transfer {
        from: UserId,
        to: UserId,
        amount: Amount,
    },
    /// From outside.
    Deposit,
}

/// What other products have on its way to users of an asset (the spot
/// exchange's open buy orders), which a token's balance and holder limits
/// count as they count open subscriptions: an order let in under the
/// limits keeps its place, and no fill can break them.
pub trait Incoming {
    /// The minor units of `asset` `user`'s open buys may still bring them.
    fn incoming(&self, asset: AssetId, user: UserId) -> Amount;
    /// The users with some of `asset` on its way, ascending.
    fn receivers(&self, asset: AssetId) -> Vec<UserId>;
}

/// A side of a user's resting orders on a token's market that the token's
/// rules no longer let rest.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Unfit {
    pub user: UserId,
    pub buys: bool,
    pub sells: bool,
}

#[derive(Default)]
pub struct Tokenization {
    state: TokenizationState,
    /// The operators' tiers, mirrored (the Ledger keeps it in step).
    tiers: BTreeMap<UserId, u8>,
    /// When the clock next has something to do: offerings' ends, tranches' times.
    ends: BTreeSet<(TimestampMs, OfferingId)>,
    vests: BTreeSet<(TimestampMs, SubscriptionId, u32)>,
    /// The declared distributions' record times.
    records: BTreeSet<(TimestampMs, DistributionId)>,
    /// The open subscriptions by offering and investor, and per (token,
    /// investor) what they ask for in all: subscribing and a token's rules
    /// read these instead of every open subscription.
    by_offering: BTreeSet<(OfferingId, UserId, SubscriptionId)>,
    subscribers: BTreeMap<(AssetId, UserId), Amount>,
    changes: TokenizationChanges,
    /// The markets the last tick's closes list (their ids for the ledger to choose).
    listings: Vec<Market>,
}

impl Product for Tokenization {
    type Command = Command;
    type Outcome = Outcome;
    type State = TokenizationState;
    type Changes = TokenizationChanges;
    const PURPOSES: &'static [PurposeSpec] = PURPOSES;
    const RECORD_KINDS: &'static [u8] = &[SUBSCRIPTION_RECORD, DISTRIBUTION_RECORD];
    const HOLD_KINDS: &'static [u8] = &[SUBSCRIPTION_HOLD, VESTING_HOLD];

    fn restore(mut state: TokenizationState) -> Tokenization {
        state.next_offering = state.next_offering.max(1);
        state.next_subscription = state.next_subscription.max(1);
        state.next_distribution = state.next_distribution.max(1);
        let records = state
            .open_distributions
            .values()
            .filter(|distribution| distribution.status == DistributionStatus::Declared)
            .map(|distribution| (distribution.spec.record_at_ms, distribution.id))
            .collect();
        let ends = state.open_offerings.values().map(|offering| (offering.spec.ends_at_ms, offering.id)).collect();
        let vests = state.tranches.values().map(|tranche| (tranche.vests_at_ms, tranche.subscription, tranche.index)).collect();
        let mut tokenization = Tokenization {
            state: TokenizationState::default(),
            tiers: BTreeMap::new(),
            ends,
            vests,
            records,
            by_offering: BTreeSet::new(),
            subscribers: BTreeMap::new(),
            changes: TokenizationChanges::default(),
            listings: Vec::new(),
        };
        for subscription in state.open_subscriptions.values() {
            let token = state.open_offerings.get(&subscription.offering).map_or(0, |offering| offering.spec.token);
            tokenization.index(token, subscription, true);
        }
        tokenization.state = state;
        tokenization
    }

    fn state(&self) -> TokenizationState {
        self.state.clone()
    }

    fn changes_mut(&mut self) -> &mut TokenizationChanges {
        &mut self.changes
    }

    fn idempotency_key(command: &Command) -> Option<Digest> {
        match command {
            Command::Subscribe { investor, key, .. } => subscribe_key(*investor, key),
            Command::Distribute { issuer, key, .. } => distribute_key(*issuer, key),
            _ => None,
        }
    }

    fn apply(
        &mut self,
        kernel: &mut Kernel,
        limits: &LedgerLimits,
        command: &Command,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> (Result<Outcome, LedgerError>, Forward) {
        let outcome = match command {
            &Command::SetIssuer { user, issuer } => self.set_issuer(user, issuer),
            &Command::SetClaims { user, claims } => self.set_claims(user, claims),
            &Command::SetOfferingFee { fee_bps } => self.set_offering_fee(fee_bps),
            &Command::SetListingFees { maker_fee_ppm, taker_fee_ppm } => self.set_listing_fees(maker_fee_ppm, taker_fee_ppm),
            Command::CreateToken { issuer, spec } => self.create_token(kernel, limits, *issuer, spec, at_ms),
            Command::SetRules { issuer, token, rules } => self.set_rules(*issuer, *token, rules),
            Command::CreateOffering { issuer, spec } => self.create_offering(kernel, *issuer, spec, at_ms),
            Command::Subscribe { investor, offering, amount, key } => self.subscribe(kernel, *investor, *offering, *amount, key, at_ms, known_key),
            &Command::CancelSubscription { investor, subscription } => self.cancel(kernel, investor, subscription, at_ms),
            Command::Distribute { issuer, spec, key } => self.distribute(kernel, *issuer, spec, key, at_ms, known_key),
            &Command::ClaimDistribution { holder, distribution } => self.claim(kernel, holder, distribution, at_ms),
            &Command::ReclaimDistribution { issuer, distribution } => self.reclaim(kernel, issuer, distribution, at_ms),
            &Command::FreezeTokens { token, holder, amount } => self.freeze(kernel, token, holder, amount, at_ms),
            &Command::UnfreezeTokens { token, holder, amount } => self.unfreeze(kernel, token, holder, amount, at_ms),
            &Command::ForceTransfer { token, from, to, amount } => self.force_transfer(kernel, token, from, to, amount, at_ms),
            &Command::RecoverTokens { token, lost, to } => self.recover(kernel, token, lost, to, at_ms),
            Command::Tick => self.tick(kernel, at_ms),
        };
        (outcome, None)
    }

    /// Making a user an issuer benefits them, as setting their own claims
    /// does, unfreezing their tokens, or tokens forced or recovered to them.
    fn beneficiary(&self, command: &Command) -> Result<Option<UserId>, LedgerError> {
        Ok(match command {
            Command::SetIssuer { user, .. }
            | Command::SetClaims { user, .. }
            | Command::UnfreezeTokens { holder: user, .. }
            | Command::ForceTransfer { to: user, .. }
            | Command::RecoverTokens { to: user, .. } => Some(*user),
            _ => None,
        })
    }

    /// A subscription is checked as a receipt of its tokens, open buys counted.
    fn token_movement(&self, _: &Kernel, command: &Command) -> Option<(AssetId, Movement)> {
        match command {
            Command::Subscribe { investor, offering, amount, .. } => {
                self.state.open_offerings.get(offering).map(|offering| (offering.spec.token, Movement::Receive { user: *investor, amount: *amount }))
            }
            _ => None,
        }
    }

    /// A frozen account subscribes to nothing, and pays or is paid no distribution.
    fn frozen_subject(&self, command: &Command) -> Option<UserId> {
        match command {
            Command::Subscribe { investor: user, .. }
            | Command::Distribute { issuer: user, .. }
            | Command::ClaimDistribution { holder: user, .. }
            | Command::ReclaimDistribution { issuer: user, .. } => Some(*user),
            _ => None,
        }
    }

    fn check_invariants(&self, kernel: &Kernel) -> Result<(), String> {
        for token in self.state.tokens.values() {
            let supply = -kernel.balance(issued(token.asset));
            if supply != token.supply || supply > token.spec.supply_max {
                return Err(format!(
                    "token {} records a supply of {} (at most {}) but its issued account says {supply}",
                    token.asset, token.supply, token.spec.supply_max
                ));
            }
        }
        let mut escrowed: BTreeMap<OfferingId, (Amount, Amount, u32)> = BTreeMap::new();
        for subscription in self.state.open_subscriptions.values() {
            let Some(offering) = self.state.open_offerings.get(&subscription.offering) else {
                return Err(format!("open subscription {} is of offering {}, which is not open", subscription.id, subscription.offering));
            };
            let expected_origin = available(subscription.investor, offering.spec.payment_asset);
            match kernel.hold_of(subscription_hold(subscription.id)) {
                Some(hold) if hold.remaining == subscription.payment && hold.origin == expected_origin => {}
                other => return Err(format!("open subscription {} of {} is held as {other:?}", subscription.id, subscription.payment)),
            }
            let entry = escrowed.entry(subscription.offering).or_default();
            entry.0 += subscription.payment;
            entry.1 += subscription.amount;
            entry.2 += 1;
        }
        // The derived indexes say what the open subscriptions do.
        let mut subscribers: BTreeMap<(AssetId, UserId), Amount> = BTreeMap::new();
        let mut by_offering = BTreeSet::new();
        for subscription in self.state.open_subscriptions.values() {
            let token = self.state.open_offerings[&subscription.offering].spec.token;
            *subscribers.entry((token, subscription.investor)).or_insert(0) += subscription.amount;
            by_offering.insert((subscription.offering, subscription.investor, subscription.id));
        }
        if subscribers != self.subscribers || by_offering != self.by_offering {
            return Err("the index of open subscriptions by offering and investor is not what the subscriptions say".into());
        }
        for offering in self.state.open_offerings.values() {
            let (payment, amount, count) = escrowed.get(&offering.id).copied().unwrap_or_default();
            let in_escrow = kernel.balance(escrow(offering.id, offering.spec.payment_asset));
            if in_escrow != payment || offering.subscribed != amount || offering.subscriptions_open != count {
                return Err(format!(
                    "offering {}: escrow {in_escrow}, open subscriptions' payments {payment}; subscribed {} of {amount} in {count} subscriptions",
                    offering.id, offering.subscribed
                ));
            }
        }
        for tranche in self.state.tranches.values() {
            match kernel.hold_of(tranche_hold(tranche.subscription, tranche.index)) {
                Some(hold) if hold.remaining == tranche.amount && hold.origin == available(tranche.investor, tranche.token) => {}
                other => return Err(format!("tranche {} of subscription {} ({}) is held as {other:?}", tranche.index, tranche.subscription, tranche.amount)),
            }
        }
        for (id, _) in kernel.holds() {
            let known = match id.kind {
                SUBSCRIPTION_HOLD => self.state.open_subscriptions.contains_key(&id.id),
                VESTING_HOLD => {
                    let (subscription, index) = (id.id / u64::from(TRANCHES_MAX), (id.id % u64::from(TRANCHES_MAX)) as u32);
                    self.state.tranches.contains_key(&(subscription, index))
                }
                _ => true,
            };
            if !known {
                return Err(format!("hold {id:?} is neither an open subscription's nor an unvested tranche's"));
            }
        }
        self.check_distributions(kernel)
    }
}

impl Tokenization {
    pub fn tokens(&self) -> &BTreeMap<AssetId, Token> {
        &self.state.tokens
    }

    pub fn is_token(&self, asset: AssetId) -> bool {
        self.state.tokens.contains_key(&asset)
    }

    pub fn has_tokens(&self) -> bool {
        !self.state.tokens.is_empty()
    }

    pub fn claims(&self, user: UserId) -> Option<&Claims> {
        self.state.claims.get(&user)
    }

    pub fn open_offerings(&self) -> &BTreeMap<OfferingId, Offering> {
        &self.state.open_offerings
    }

    pub fn open_subscriptions(&self) -> &BTreeMap<SubscriptionId, Subscription> {
        &self.state.open_subscriptions
    }

    /// The next offering's and the next subscription's ids.
    pub fn counters(&self) -> (OfferingId, SubscriptionId) {
        (self.state.next_offering, self.state.next_subscription)
    }

    pub fn next_distribution(&self) -> DistributionId {
        self.state.next_distribution
    }

    pub fn unvested(&self) -> impl Iterator<Item = &Tranche> {
        self.state.tranches.values()
    }

    /// When the ledger's clock next has a Tick to give: an offering's end,
    /// a tranche's time or a distribution's record.
    pub fn next_tick(&self) -> Option<TimestampMs> {
        [self.ends.first().map(|(at, _)| *at), self.vests.first().map(|(at, ..)| *at), self.records.first().map(|(at, _)| *at)].into_iter().flatten().min()
    }

    pub fn open_distributions(&self) -> &BTreeMap<DistributionId, Distribution> {
        &self.state.open_distributions
    }

    pub fn unclaimed(&self) -> impl Iterator<Item = &Entitlement> {
        self.state.entitlements.values()
    }

    /// The operators' tiers, as they stand: at start and after each change.
    pub(crate) fn mirror_tiers(&mut self, tiers: &BTreeMap<UserId, u8>) {
        self.tiers.clone_from(tiers);
    }

    pub(crate) fn note_tier(&mut self, user: UserId, tier: u8) {
        if tier == 0 {
            self.tiers.remove(&user);
        } else {
            self.tiers.insert(user, tier);
        }
    }

    /// The kernel follows every token's holders (they are counted by the
    /// rules, listed by the cap table): asked again at every start.
    pub(crate) fn attach(&self, kernel: &mut Kernel) {
        for asset in self.state.tokens.keys() {
            kernel.follow_holders(*asset);
        }
    }

    fn tier(&self, user: UserId) -> u8 {
        self.tiers.get(&user).copied().unwrap_or(0)
    }

    fn set_issuer(&mut self, user: UserId, issuer: bool) -> Result<Outcome, LedgerError> {
        let changed = if issuer { self.state.issuers.insert(user) } else { self.state.issuers.remove(&user) };
        if !changed {
            return Err(LedgerError::BadInput(format!("user {user} is {}an issuer already", if issuer { "" } else { "not " })));
        }
        self.changes.issuers.push((user, issuer));
        Ok(Outcome::IssuerSet { user, issuer })
    }

    fn set_claims(&mut self, user: UserId, claims: Option<Claims>) -> Result<Outcome, LedgerError> {
        match claims {
            Some(claims) => {
                if !(1..=999).contains(&claims.country) {
                    return Err(LedgerError::BadInput("a country is an ISO 3166-1 numeric code, 1 to 999".into()));
                }
                self.state.claims.insert(user, claims);
            }
            None => {
                if self.state.claims.remove(&user).is_none() {
                    return Err(LedgerError::BadInput(format!("user {user} has no claims to remove")));
                }
            }
        }
        self.changes.claims.push((user, claims));
        Ok(Outcome::ClaimsSet(user))
    }

    fn set_offering_fee(&mut self, fee_bps: u32) -> Result<Outcome, LedgerError> {
        if fee_bps > FEE_BPS_MAX {
            return Err(LedgerError::BadInput(format!("the platform's fee is at most {FEE_BPS_MAX} basis points")));
        }
        self.state.offering_fee_bps = fee_bps;
        self.changes.counters = true;
        Ok(Outcome::OfferingFeeSet(fee_bps))
    }

    pub fn offering_fee_bps(&self) -> u32 {
        self.state.offering_fee_bps
    }

    fn set_listing_fees(&mut self, maker_fee_ppm: u32, taker_fee_ppm: u32) -> Result<Outcome, LedgerError> {
        if maker_fee_ppm > matching_api::FEE_RATE_PPM_MAX || taker_fee_ppm > matching_api::FEE_RATE_PPM_MAX {
            return Err(LedgerError::BadInput(format!("a market's fee is at most {} millionths", matching_api::FEE_RATE_PPM_MAX)));
        }
        self.state.listing_maker_fee_ppm = maker_fee_ppm;
        self.state.listing_taker_fee_ppm = taker_fee_ppm;
        self.changes.counters = true;
        Ok(Outcome::ListingFeesSet { maker_fee_ppm, taker_fee_ppm })
    }

    /// The fees of the markets tokens list on, in millionths: maker, taker.
    pub fn listing_fees(&self) -> (u32, u32) {
        (self.state.listing_maker_fee_ppm, self.state.listing_taker_fee_ppm)
    }

    /// The markets the last tick's closes list, for the ledger to number and
    /// list (its spot exchange's): taken once.
    pub(crate) fn take_listings(&mut self) -> Vec<Market> {
        std::mem::take(&mut self.listings)
    }

    fn issuer_of(&self, issuer: UserId, token: AssetId) -> Result<&Token, LedgerError> {
        let token = self.state.tokens.get(&token).ok_or(LedgerError::UnknownAsset(token))?;
        if token.issuer != issuer {
            return Err(LedgerError::Forbidden(format!("user {issuer} is not token {}'s issuer", token.asset)));
        }
        Ok(token)
    }

    fn create_token(
        &mut self,
        kernel: &mut Kernel,
        limits: &LedgerLimits,
        issuer: UserId,
        spec: &TokenSpec,
        at_ms: TimestampMs,
    ) -> Result<Outcome, LedgerError> {
        if !self.state.issuers.contains(&issuer) {
            return Err(LedgerError::Forbidden(format!("user {issuer} is not an issuer: the operators make a user one")));
        }
        validate_token(spec)?;
        if kernel.assets().count() >= limits.assets_max as usize {
            return Err(LedgerError::LimitReached("assets_max".into()));
        }
        let asset = kernel.assets().map(|asset| asset.id).max().unwrap_or(0).checked_add(1).ok_or(LedgerError::LimitReached("asset ids".into()))?;
        kernel.create_asset(&AssetSpec { id: asset, symbol: spec.symbol.clone(), scale: spec.scale }).map_err(refusal)?;
        kernel.follow_holders(asset);
        let token = Token { asset, issuer, spec: spec.clone(), supply: 0, created_ms: at_ms };
        self.changes.tokens.push(token.clone());
        self.state.tokens.insert(asset, token);
        Ok(Outcome::TokenCreated(asset))
    }

    fn set_rules(&mut self, issuer: UserId, token: AssetId, rules: &TransferRules) -> Result<Outcome, LedgerError> {
        self.issuer_of(issuer, token)?;
        rules::validate(rules).map_err(LedgerError::BadInput)?;
        let token = self.state.tokens.get_mut(&token).expect("issuer_of found it");
        token.spec.rules = rules.clone();
        self.changes.tokens.push(token.clone());
        Ok(Outcome::RulesSet(token.asset))
    }

    fn create_offering(&mut self, kernel: &Kernel, issuer: UserId, spec: &OfferingSpec, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let token = self.issuer_of(issuer, spec.token)?;
        kernel.known_asset(spec.payment_asset).map_err(refusal)?;
        if self.is_token(spec.payment_asset) {
            return Err(LedgerError::BadInput("an offering is paid in money, not in a token".into()));
        }
        lot_price(token, spec.price).ok_or_else(|| LedgerError::BadInput("the price of a lot must be a whole number of the payment's minor units".into()))?;
        let lot = token.spec.lot;
        let whole_lots = |amount: Amount| amount > 0 && amount <= AMOUNT_BOUND && amount % lot == 0;
        if ![spec.soft_cap, spec.hard_cap, spec.investor_min, spec.investor_max].into_iter().all(whole_lots) {
            return Err(LedgerError::BadInput("caps and per-investor bounds are positive whole lots of the token".into()));
        }
        if spec.soft_cap > spec.hard_cap || spec.investor_min > spec.investor_max || spec.investor_max > spec.hard_cap {
            return Err(LedgerError::BadInput(
                "the target is at most the hard cap, and an investor's minimum at most their maximum, at most the hard cap".into(),
            ));
        }
        // Every payment is at most the hard cap's, which stays within the bound: no sum or fee of them overflows.
        let price_per_lot = lot_price(token, spec.price).expect("checked above");
        if (spec.hard_cap / lot).checked_mul(price_per_lot).is_none_or(|payment| payment > AMOUNT_BOUND) {
            return Err(LedgerError::BadInput(format!("the hard cap's price is above the largest amount ({AMOUNT_BOUND} minor units)")));
        }
        // The close's pro rata multiplies the hard cap by each subscription (at most the investor maximum), in lots.
        if (spec.hard_cap / lot).checked_mul(spec.investor_max / lot).is_none() {
            return Err(LedgerError::BadInput("the hard cap and the investor maximum, in lots, are too large to allocate exactly".into()));
        }
        let promised: Amount =
            self.state.open_offerings.values().filter(|offering| offering.spec.token == spec.token).map(|offering| offering.spec.hard_cap).sum();
        if token.supply + promised + spec.hard_cap > token.spec.supply_max {
            return Err(LedgerError::BadInput(format!(
                "the hard cap would let the token's supply pass its maximum of {} ({} issued, {promised} in open offerings)",
                token.spec.supply_max, token.supply
            )));
        }
        if spec.starts_at_ms >= spec.ends_at_ms || spec.ends_at_ms <= at_ms || spec.cancel_cutoff_ms > spec.ends_at_ms - spec.starts_at_ms {
            return Err(LedgerError::BadInput(
                "an offering starts before it ends, ends in the future, and its cancel cut-off fits between its start and end".into(),
            ));
        }
        if let Some(listing) = spec.listing {
            // Checked as the market it will be, under any id, with the highest fees it could have.
            let market = listing.market(spec.token, spec.payment_asset, 1, matching_api::FEE_RATE_PPM_MAX, matching_api::FEE_RATE_PPM_MAX);
            if listing.base_units_per_lot == 0 || i128::from(listing.base_units_per_lot) % lot != 0 || market.spec.validate().is_err() {
                return Err(LedgerError::BadInput(
                    "the listing's lot is a whole number of the token's lots, and its tick, lot and band are within a market's bounds".into(),
                ));
            }
        }
        if let Some(vesting) = spec.vesting {
            if !(1..=TRANCHES_MAX).contains(&vesting.count) || vesting.period_ms == 0 {
                return Err(LedgerError::BadInput(format!("a vesting has 1 to {TRANCHES_MAX} tranches and a period above zero")));
            }
            let last = u64::from(vesting.count).checked_mul(vesting.period_ms).and_then(|span| span.checked_add(vesting.start_ms));
            if last.is_none() {
                return Err(LedgerError::BadInput("the vesting's last tranche is beyond any date".into()));
            }
        }
        if self.state.open_offerings.len() >= OFFERINGS_OPEN_MAX {
            return Err(LedgerError::LimitReached(format!("{OFFERINGS_OPEN_MAX} open offerings")));
        }
        let id = self.state.next_offering;
        self.state.next_offering += 1;
        self.changes.counters = true;
        let offering = Offering {
            id,
            issuer,
            spec: spec.clone(),
            fee_bps: self.state.offering_fee_bps,
            status: OfferingStatus::Open,
            subscribed: 0,
            subscriptions_open: 0,
            issued: 0,
            raised: 0,
            fee: 0,
            created_ms: at_ms,
            closed_ms: None,
        };
        self.ends.insert((spec.ends_at_ms, id));
        self.changes.offerings.push(offering.clone());
        self.state.open_offerings.insert(id, offering);
        Ok(Outcome::OfferingCreated(id))
    }

    /// What `user` holds of `token` in every account, asks for in open
    /// subscriptions and has on its way; and whether they count among its
    /// holders already.
    fn holding(&self, kernel: &Kernel, incoming: &dyn Incoming, token: AssetId, user: UserId) -> (Amount, bool) {
        let held = held_by(kernel, user, token);
        let subscribed = self.subscribers.get(&(token, user)).copied().unwrap_or(0);
        let on_its_way = incoming.incoming(token, user);
        (held + subscribed + on_its_way, kernel.is_holder(token, user) || subscribed > 0 || on_its_way > 0)
    }

    /// Keeps the derived indexes as a subscription opens (or closes).
    fn index(&mut self, token: AssetId, subscription: &Subscription, open: bool) {
        let key = (subscription.offering, subscription.investor, subscription.id);
        let asked = self.subscribers.entry((token, subscription.investor)).or_insert(0);
        if open {
            self.by_offering.insert(key);
            *asked += subscription.amount;
        } else {
            self.by_offering.remove(&key);
            *asked -= subscription.amount;
            if *asked == 0 {
                self.subscribers.remove(&(token, subscription.investor));
            }
        }
    }

    /// The token's holders (the issuer not counted), and the users its open
    /// subscriptions and open buys would make holders: only when its rules
    /// limit them (0 otherwise, without counting).
    fn counted_holders(&self, kernel: &Kernel, incoming: &dyn Incoming, token: &Token) -> u64 {
        if token.spec.rules.holders_max.is_none() {
            return 0;
        }
        let mut count = kernel.holders(token.asset).map_or(0, |holders| holders.len() as u64);
        if kernel.is_holder(token.asset, token.issuer) {
            count -= 1;
        }
        count + self.newcomers(kernel, incoming, token).len() as u64
    }

    /// The users not holding the token whom open subscriptions or open buys would make holders.
    fn newcomers(&self, kernel: &Kernel, incoming: &dyn Incoming, token: &Token) -> BTreeSet<UserId> {
        let subscribers = self.subscribers.range((token.asset, 0)..=(token.asset, UserId::MAX)).map(|((_, investor), _)| *investor);
        subscribers.chain(incoming.receivers(token.asset)).filter(|user| *user != token.issuer && !kernel.is_holder(token.asset, *user)).collect()
    }

    fn check_receiver(
        &self,
        kernel: &Kernel,
        incoming: &dyn Incoming,
        token: &Token,
        user: UserId,
        amount: Amount,
        at_ms: TimestampMs,
    ) -> Result<(), ComplianceRefusal> {
        self.check_receiver_among(kernel, incoming, token, user, amount, self.counted_holders(kernel, incoming, token), at_ms)
    }

    /// [`Self::check_receiver`] with the holders counted already.
    #[allow(clippy::too_many_arguments)]
    fn check_receiver_among(
        &self,
        kernel: &Kernel,
        incoming: &dyn Incoming,
        token: &Token,
        user: UserId,
        amount: Amount,
        holders: u64,
        at_ms: TimestampMs,
    ) -> Result<(), ComplianceRefusal> {
        let (holding, counted) = self.holding(kernel, incoming, token.asset, user);
        let receiver = rules::Receiver { user, claims: self.state.claims.get(&user), tier: self.tier(user), holding, counted };
        rules::check_receiver(&token.spec.rules, token.issuer, &receiver, amount, holders, at_ms)
    }

    /// Whether a token's rules let a movement of `asset` go ahead, counting
    /// what `incoming` has on its way; any other asset passes.
    pub fn check_movement(&self, kernel: &Kernel, incoming: &dyn Incoming, asset: AssetId, movement: Movement, at_ms: TimestampMs) -> Result<(), LedgerError> {
        let Some(token) = self.state.tokens.get(&asset) else { return Ok(()) };
        let rules = &token.spec.rules;
        let result = match movement {
            Movement::Deposit => Err(ComplianceRefusal::NotDepositable),
            Movement::Send { user } => rules::check_sender(rules, token.issuer, user, at_ms),
            Movement::Receive { user, amount } => self.check_receiver(kernel, incoming, token, user, amount, at_ms),
            Movement::Transfer { from, to, amount } => {
                rules::check_sender(rules, token.issuer, from, at_ms).and_then(|()| self.check_receiver(kernel, incoming, token, to, amount, at_ms))
            }
        };
        result.map_err(LedgerError::Compliance)
    }

    /// Of the users with resting orders on `asset`'s markets (`resting`:
    /// user, has buys, has sells; ascending), those whose buys or sells the
    /// token's rules no longer let rest, as they stand after a change of
    /// the rules, a user's claims or tier. A buy must still pass as a
    /// receiver of nothing more (its claims, tier, country, allowlist, and
    /// what it holds with everything on its way within the largest
    /// balance); when the token has more holders and newcomers than it
    /// allows, every newcomer's buys go; a sell must still pass as a sender.
    pub fn unfit_orders(&self, kernel: &Kernel, incoming: &dyn Incoming, asset: AssetId, resting: &[(UserId, bool, bool)], at_ms: TimestampMs) -> Vec<Unfit> {
        let Some(token) = self.state.tokens.get(&asset) else { return Vec::new() };
        let rules = &token.spec.rules;
        // Counted once: every resting user is checked against the same count.
        let holders = self.counted_holders(kernel, incoming, token);
        let over_holders = rules.holders_max.is_some_and(|max| holders > u64::from(max));
        let newcomers = if over_holders { self.newcomers(kernel, incoming, token) } else { BTreeSet::new() };
        resting
            .iter()
            .filter_map(|&(user, buys, sells)| {
                let buys = buys && (newcomers.contains(&user) || self.check_receiver_among(kernel, incoming, token, user, 0, holders, at_ms).is_err());
                let sells = sells && rules::check_sender(rules, token.issuer, user, at_ms).is_err();
                (buys || sells).then_some(Unfit { user, buys, sells })
            })
            .collect()
    }

    /// When `user`'s claims stop counting for `token`, if they have any and
    /// are not its issuer (exempt): their resting buys of it expire then.
    pub fn claims_expiry(&self, user: UserId, token: AssetId) -> Option<TimestampMs> {
        let token = self.state.tokens.get(&token)?;
        (token.issuer != user).then(|| self.state.claims.get(&user).map(|claims| claims.expires_at_ms)).flatten()
    }

    #[allow(clippy::too_many_arguments)]
    fn subscribe(
        &mut self,
        kernel: &mut Kernel,
        investor: UserId,
        offering_id: OfferingId,
        amount: Amount,
        key: &str,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<Outcome, LedgerError> {
        ledger_core::check_key(key).map_err(refusal)?;
        let digest = known_key.or_else(|| subscribe_key(investor, key)).expect("a checked key has a digest");
        let fingerprint = match kernel.idempotent(&digest, &[&offering_id.to_le_bytes(), &amount.to_le_bytes()]).map_err(refusal)? {
            Idempotent::Replay(recorded) if recorded.kind == SUBSCRIPTION_RECORD => return Ok(Outcome::Subscribed(recorded.id)),
            Idempotent::Replay(_) => return Err(LedgerError::Duplicate),
            Idempotent::New(fingerprint) => fingerprint,
        };
        // Only open offerings are kept: one numbered before the next is closed.
        let offering = match self.state.open_offerings.get(&offering_id) {
            Some(offering) => offering,
            None if (1..self.state.next_offering).contains(&offering_id) => return Err(LedgerError::OfferingClosed(offering_id)),
            None => return Err(LedgerError::NotFound),
        };
        if at_ms < offering.spec.starts_at_ms || at_ms >= offering.spec.ends_at_ms {
            return Err(LedgerError::OfferingClosed(offering_id));
        }
        let token = &self.state.tokens[&offering.spec.token];
        if amount < offering.spec.investor_min || amount > offering.spec.investor_max || amount % token.spec.lot != 0 {
            return Err(LedgerError::BadInput(format!(
                "a subscription asks for whole lots of {} minor units, from {} to {}",
                token.spec.lot, offering.spec.investor_min, offering.spec.investor_max
            )));
        }
        if investor == offering.issuer {
            return Err(LedgerError::Forbidden("an issuer does not subscribe to its own offering".into()));
        }
        if self.by_offering.range((offering_id, investor, 0)..=(offering_id, investor, SubscriptionId::MAX)).next().is_some() {
            return Err(LedgerError::BadInput("you have an open subscription to this offering: cancel it to ask for another amount".into()));
        }
        if self.state.open_subscriptions.len() >= SUBSCRIPTIONS_OPEN_MAX {
            return Err(LedgerError::LimitReached(format!("{SUBSCRIPTIONS_OPEN_MAX} open subscriptions")));
        }
        // The token's rules decided it in the ledger's dispatch, open buys counted ([`Product::token_movement`]).
        // Within the hard cap's price, which the offering's creation bounded.
        let payment = (amount / token.spec.lot)
            .checked_mul(lot_price(token, offering.spec.price).expect("checked when the offering was made"))
            .ok_or_else(|| LedgerError::BadInput("the subscription's price is beyond the largest amount".into()))?;
        let id = self.state.next_subscription;
        kernel
            .hold(
                subscription_hold(id),
                available(investor, offering.spec.payment_asset),
                escrow(offering_id, offering.spec.payment_asset),
                payment,
                TransferCode(api::SUBSCRIPTION),
                format_compact!("subscription:{id}"),
                at_ms,
            )
            .map_err(refusal)?;
        kernel.remember(digest, fingerprint, Recorded { kind: SUBSCRIPTION_RECORD, id }).map_err(refusal)?;
        self.state.next_subscription += 1;
        self.changes.counters = true;
        let subscription = Subscription {
            id,
            offering: offering_id,
            investor,
            amount,
            payment,
            status: SubscriptionStatus::Open,
            allocated: 0,
            paid: 0,
            refunded: 0,
            created_ms: at_ms,
            updated_ms: at_ms,
        };
        let offering = self.state.open_offerings.get_mut(&offering_id).expect("looked up above");
        offering.subscribed += amount;
        offering.subscriptions_open += 1;
        self.changes.offerings.push(offering.clone());
        let token = offering.spec.token;
        self.changes.subscriptions.push(subscription.clone());
        self.index(token, &subscription, true);
        self.state.open_subscriptions.insert(id, subscription);
        Ok(Outcome::Subscribed(id))
    }

    fn cancel(&mut self, kernel: &mut Kernel, investor: UserId, id: SubscriptionId, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let subscription = self.state.open_subscriptions.get(&id).filter(|s| s.investor == investor).ok_or(LedgerError::NotFound)?;
        let offering = &self.state.open_offerings[&subscription.offering];
        let cutoff_ms = offering.spec.ends_at_ms - offering.spec.cancel_cutoff_ms;
        if at_ms >= cutoff_ms {
            return Err(LedgerError::CancelCutoffPassed { subscription: id, cutoff_ms });
        }
        let refunded =
            kernel.release(subscription_hold(id), TransferCode(api::SUBSCRIPTION_REFUND), format_compact!("subscription:{id}"), at_ms).map_err(refusal)?;
        let subscription = self.state.open_subscriptions.remove(&id).expect("looked up above");
        let offering = self.state.open_offerings.get_mut(&subscription.offering).expect("looked up above");
        offering.subscribed -= subscription.amount;
        offering.subscriptions_open -= 1;
        self.changes.offerings.push(offering.clone());
        let token = offering.spec.token;
        self.index(token, &subscription, false);
        self.changes.subscriptions.push(Subscription { status: SubscriptionStatus::Cancelled, refunded, updated_ms: at_ms, ..subscription });
        Ok(Outcome::SubscriptionCancelled(id))
    }

    fn tick(&mut self, kernel: &mut Kernel, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        self.listings.clear();
        let due: Vec<OfferingId> = self.ends.iter().take_while(|(end, _)| *end <= at_ms).take(OFFERINGS_CLOSED_PER_TICK).map(|(_, id)| *id).collect();
        for id in &due {
            self.close(kernel, *id, at_ms)?;
        }
        let vesting: Vec<(TimestampMs, SubscriptionId, u32)> =
            self.vests.iter().take_while(|(at, ..)| *at <= at_ms).take(TRANCHES_VESTED_PER_TICK).copied().collect();
        for (at, subscription, index) in &vesting {
            let reference = format_compact!("subscription:{subscription}");
            kernel.release(tranche_hold(*subscription, *index), TransferCode(api::VESTING_RELEASE), reference, at_ms).map_err(refusal)?;
            let tranche = self.state.tranches.remove(&(*subscription, *index)).expect("indexed");
            self.vests.remove(&(*at, *subscription, *index));
            self.changes.tranches.push(Tranche { vested: true, ..tranche });
        }
        let records: Vec<DistributionId> =
            self.records.iter().take_while(|(at, _)| *at <= at_ms).take(DISTRIBUTIONS_RECORDED_PER_TICK).map(|(_, id)| *id).collect();
        for id in &records {
            self.record(kernel, *id, at_ms)?;
        }
        // The ledger numbers and lists the closes' markets (`markets_listed`).
        Ok(Outcome::Ticked { offerings_closed: due, tranches_vested: vesting.len() as u32, markets_listed: Vec::new(), distributions_recorded: records })
    }

    /// Closes an offering whose end has passed, in this one command: the
    /// subscribers still eligible are allocated (or, below the target, all
    /// refunded); each hold pays the issuer for the lots allocated and
    /// gives back the rest; the tokens are issued (into vesting holds when
    /// the offering vests) and the platform's fee goes to the house.
    /// Every amount is computed before the first move, and none can fail
    /// (a hold pays at most what it holds; the supply account may go
    /// negative; the fee is at most what the issuer was just paid).
    fn close(&mut self, kernel: &mut Kernel, id: OfferingId, at_ms: TimestampMs) -> Result<(), LedgerError> {
        let offering = self.state.open_offerings.get(&id).ok_or(LedgerError::NotFound)?.clone();
        let token = self.state.tokens[&offering.spec.token].clone();
        let (lot, payment_asset) = (token.spec.lot, offering.spec.payment_asset);
        let price_per_lot = lot_price(&token, offering.spec.price).expect("checked when the offering was made");
        // Oldest first: equal remainders go to the earlier subscription.
        let mut ids: Vec<SubscriptionId> = self.by_offering.range((id, 0, 0)..=(id, UserId::MAX, SubscriptionId::MAX)).map(|(.., id)| *id).collect();
        ids.sort_unstable();
        let subscriptions: Vec<Subscription> = ids.iter().map(|id| self.state.open_subscriptions[id].clone()).collect();
        let eligible: Vec<bool> = subscriptions
            .iter()
            .map(|s| rules::check_identity(&token.spec.rules, s.investor, self.state.claims.get(&s.investor), self.tier(s.investor), at_ms).is_ok())
            .collect();
        let asked: Vec<Amount> = subscriptions.iter().zip(&eligible).filter(|(_, ok)| **ok).map(|(s, _)| s.amount / lot).collect();
        // The creation bounded the hard cap times a subscription; were it not,
        // everyone is refunded rather than anyone allocated wrongly, and the
        // clock does not come back to the offering.
        let outcome = allocation::close(offering.spec.soft_cap / lot, offering.spec.hard_cap / lot, &asked).unwrap_or(allocation::Close::Refunded);
        // From here on nothing fails: every amount was bounded when the offering was made.
        self.state.open_offerings.remove(&id);
        self.ends.remove(&(offering.spec.ends_at_ms, id));
        let mut lots_each = match &outcome {
            allocation::Close::Allocated(lots) => lots.iter(),
            allocation::Close::Refunded => [].iter(),
        };
        let reference = format_compact!("offering:{id}");
        let (mut issued_total, mut raised) = (0, 0);
        for (subscription, eligible) in subscriptions.into_iter().zip(eligible) {
            let lots = if eligible { lots_each.next().copied().unwrap_or(0) } else { 0 };
            let paid = lots * price_per_lot;
            let hold = subscription_hold(subscription.id);
            if paid > 0 {
                let proceeds = Payout { credit: available(offering.issuer, payment_asset), amount: paid, code: TransferCode(api::OFFERING_PROCEEDS) };
                kernel.capture(hold, &[proceeds], &reference, at_ms).map_err(refusal)?;
            }
            let refunded = kernel.release(hold, TransferCode(api::SUBSCRIPTION_REFUND), reference.clone(), at_ms).map_err(refusal)?;
            let tokens = lots * lot;
            if tokens > 0 {
                let leg = Leg {
                    debit: issued(token.asset),
                    credit: available(subscription.investor, token.asset),
                    amount: tokens,
                    code: TransferCode(api::ISSUANCE),
                };
                kernel.transfer(leg, reference.clone(), at_ms).map_err(refusal)?;
                if let Some(vesting_spec) = offering.spec.vesting {
                    for (index, part) in allocation::tranches(lots, vesting_spec.count).into_iter().enumerate().filter(|(_, part)| *part > 0) {
                        let index = index as u32;
                        let tranche = Tranche {
                            subscription: subscription.id,
                            index,
                            investor: subscription.investor,
                            token: token.asset,
                            amount: part * lot,
                            vests_at_ms: vesting_spec.start_ms + u64::from(index + 1) * vesting_spec.period_ms,
                            vested: false,
                        };
                        kernel
                            .hold(
                                tranche_hold(subscription.id, index),
                                available(subscription.investor, token.asset),
                                vesting(subscription.investor, token.asset),
                                tranche.amount,
                                TransferCode(api::VESTING_LOCK),
                                reference.clone(),
                                at_ms,
                            )
                            .map_err(refusal)?;
                        self.vests.insert((tranche.vests_at_ms, tranche.subscription, index));
                        self.changes.tranches.push(tranche);
                        self.state.tranches.insert((subscription.id, index), tranche);
                    }
                }
            }
            issued_total += tokens;
            raised += paid;
            let status =
                if eligible && matches!(outcome, allocation::Close::Allocated(_)) { SubscriptionStatus::Allocated } else { SubscriptionStatus::Refunded };
            self.state.open_subscriptions.remove(&subscription.id);
            self.index(token.asset, &subscription, false);
            self.changes.subscriptions.push(Subscription { status, allocated: tokens, paid, refunded, updated_ms: at_ms, ..subscription });
        }
        let fee = allocation::fee(raised, offering.fee_bps);
        if fee > 0 {
            let leg = Leg {
                debit: available(offering.issuer, payment_asset),
                credit: crate::house::revenue(payment_asset),
                amount: fee,
                code: TransferCode(api::OFFERING_FEE),
            };
            kernel.transfer(leg, reference.clone(), at_ms).map_err(refusal)?;
        }
        let status = match outcome {
            allocation::Close::Allocated(_) => OfferingStatus::Allocated,
            allocation::Close::Refunded => OfferingStatus::Refunded,
        };
        if let (OfferingStatus::Allocated, Some(listing)) = (status, offering.spec.listing) {
            let (maker, taker) = self.listing_fees();
            self.listings.push(listing.market(token.asset, payment_asset, 0, maker, taker));
        }
        let token = self.state.tokens.get_mut(&token.asset).expect("cloned above");
        token.supply += issued_total;
        self.changes.tokens.push(token.clone());
        self.changes.offerings.push(Offering {
            status,
            subscribed: 0,
            subscriptions_open: 0,
            issued: issued_total,
            raised,
            fee,
            closed_ms: Some(at_ms),
            ..offering
        });
        Ok(())
    }
}

/// Distributions: declared with their pool paid in, recorded by the clock,
/// claimed by the holders, what is left reclaimed by the issuer.
impl Tokenization {
    fn distribute(
        &mut self,
        kernel: &mut Kernel,
        issuer: UserId,
        spec: &DistributionSpec,
        key: &str,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<Outcome, LedgerError> {
        ledger_core::check_key(key).map_err(refusal)?;
        let digest = known_key.or_else(|| distribute_key(issuer, key)).expect("a checked key has a digest");
        // The same key again answers the first distribution; with another token or pool, DUPLICATE.
        let fingerprint = match kernel.idempotent(&digest, &[&spec.token.to_le_bytes(), &spec.pool.to_le_bytes()]).map_err(refusal)? {
            Idempotent::Replay(recorded) if recorded.kind == DISTRIBUTION_RECORD => return Ok(Outcome::Distributed(recorded.id)),
            Idempotent::Replay(_) => return Err(LedgerError::Duplicate),
            Idempotent::New(fingerprint) => fingerprint,
        };
        let token = self.issuer_of(issuer, spec.token)?;
        kernel.known_asset(spec.payment_asset).map_err(refusal)?;
        if self.is_token(spec.payment_asset) {
            return Err(LedgerError::BadInput("a distribution is paid in money, not in a token".into()));
        }
        if !(1..=AMOUNT_BOUND).contains(&spec.pool) {
            return Err(LedgerError::BadInput(format!("a distribution's pool is 1 to {AMOUNT_BOUND} minor units")));
        }
        if spec.record_at_ms < at_ms || spec.claim_until_ms <= spec.record_at_ms {
            return Err(LedgerError::BadInput(
                "a distribution's record time is now or later (holdings are recorded as they stand then), and its claims end after it".into(),
            ));
        }
        if spec.default_withholding_bps > WITHHOLDING_BPS_MAX {
            return Err(LedgerError::BadInput(format!("a withholding rate is at most {WITHHOLDING_BPS_MAX} basis points")));
        }
        // The record multiplies the pool by the lots each holder has, at most the whole supply.
        if spec.pool.checked_mul(token.spec.supply_max / token.spec.lot).is_none() {
            return Err(LedgerError::BadInput("the pool times the token's largest supply in lots is too large to share exactly".into()));
        }
        if self.state.open_distributions.len() >= DISTRIBUTIONS_OPEN_MAX {
            return Err(LedgerError::LimitReached(format!("{DISTRIBUTIONS_OPEN_MAX} open distributions")));
        }
        let holders = kernel.holders(spec.token).map_or(0, |holders| holders.len());
        if self.state.entitlements.len() + holders > ENTITLEMENTS_OPEN_MAX {
            return Err(LedgerError::LimitReached(format!("{ENTITLEMENTS_OPEN_MAX} unclaimed entitlements")));
        }
        let id = self.state.next_distribution;
        let leg = Leg {
            debit: available(issuer, spec.payment_asset),
            credit: pool(id, spec.payment_asset),
            amount: spec.pool,
            code: TransferCode(api::DISTRIBUTION_FUNDING),
        };
        kernel.transfer(leg, format_compact!("distribution:{id}"), at_ms).map_err(refusal)?;
        kernel.remember(digest, fingerprint, Recorded { kind: DISTRIBUTION_RECORD, id }).map_err(refusal)?;
        self.state.next_distribution += 1;
        self.changes.counters = true;
        let distribution = Distribution {
            id,
            issuer,
            spec: spec.clone(),
            status: DistributionStatus::Declared,
            created_ms: at_ms,
            recorded_ms: None,
            holders: 0,
            units: 0,
            entitled: 0,
            remainder: 0,
            claimed: 0,
            withheld: 0,
            reclaimed: 0,
            closed_ms: None,
        };
        self.records.insert((spec.record_at_ms, id));
        self.changes.distributions.push(distribution.clone());
        self.state.open_distributions.insert(id, distribution);
        Ok(Outcome::Distributed(id))
    }

    /// Takes a distribution's record: every holder of the token but its
    /// issuer, with what they hold in all their accounts, is entitled to
    /// their share of the pool, less the tax at their rate (their claims'
    /// if valid now, else the distribution's default); the rounding's
    /// remainder goes back to the issuer. Nothing here can fail once the
    /// shares are computed: the pool holds exactly what the shares and the
    /// remainder add up to.
    fn record(&mut self, kernel: &mut Kernel, id: DistributionId, at_ms: TimestampMs) -> Result<(), LedgerError> {
        let distribution = self.state.open_distributions.get(&id).ok_or(LedgerError::NotFound)?.clone();
        let spec = &distribution.spec;
        let token = &self.state.tokens[&spec.token];
        let lot = token.spec.lot;
        let held: Vec<(UserId, Amount)> = kernel
            .holders(spec.token)
            .map(|holders| holders.filter(|user| *user != distribution.issuer).map(|user| (user, held_by(kernel, user, spec.token))).collect())
            .unwrap_or_default();
        let lots: Vec<Amount> = held.iter().map(|(_, units)| units / lot).collect();
        // The declaration bounded the pool times the largest supply; were it
        // not, the whole pool goes back to the issuer rather than anyone
        // paid wrongly, and the tick (which may have closed offerings
        // already) still applies whole.
        let (shares, remainder) = distribution::shares(spec.pool, &lots).unwrap_or_else(|| (vec![0; lots.len()], spec.pool));
        self.records.remove(&(spec.record_at_ms, id));
        let reference = format_compact!("distribution:{id}");
        if remainder > 0 {
            let leg = Leg {
                debit: pool(id, spec.payment_asset),
                credit: available(distribution.issuer, spec.payment_asset),
                amount: remainder,
                code: TransferCode(api::DISTRIBUTION_REMAINDER),
            };
            kernel.transfer(leg, reference, at_ms).map_err(refusal)?;
        }
        let mut owed = false;
        for ((holder, units), gross) in held.iter().zip(shares) {
            let withholding_bps = self
                .state
                .claims
                .get(holder)
                .filter(|claims| at_ms < claims.expires_at_ms)
                .map_or(spec.default_withholding_bps, |claims| claims.withholding_bps);
            let withheld = distribution::withheld(gross, withholding_bps);
            let entitlement = Entitlement {
                distribution: id,
                holder: *holder,
                units: *units,
                gross,
                withholding_bps,
                withheld,
                net: gross - withheld,
                claimed_ms: None,
                reclaimed: false,
            };
            self.changes.entitlements.push(entitlement);
            if gross > 0 {
                owed = true;
                self.state.entitlements.insert((id, *holder), entitlement);
            }
        }
        let units = held.iter().map(|(_, units)| units).sum();
        let recorded = Distribution {
            status: if owed { DistributionStatus::Recorded } else { DistributionStatus::Closed },
            recorded_ms: Some(at_ms),
            holders: held.len() as u32,
            units,
            entitled: spec.pool - remainder,
            remainder,
            closed_ms: (!owed).then_some(at_ms),
            ..distribution
        };
        self.changes.distributions.push(recorded.clone());
        if owed {
            self.state.open_distributions.insert(id, recorded);
        } else {
            self.state.open_distributions.remove(&id);
        }
        Ok(())
    }

    fn claim(&mut self, kernel: &mut Kernel, holder: UserId, id: DistributionId, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let not_claimable = |why: String| LedgerError::NotClaimable { distribution: id, why };
        let Some(distribution) = self.state.open_distributions.get(&id) else {
            return Err(if (1..self.state.next_distribution).contains(&id) {
                not_claimable("it is closed: every entitlement was claimed or its issuer reclaimed the rest".into())
            } else {
                LedgerError::NotFound
            });
        };
        if distribution.status == DistributionStatus::Declared {
            return Err(not_claimable(format!("its record is at {} ms since the epoch; claim after it", distribution.spec.record_at_ms)));
        }
        if at_ms >= distribution.spec.claim_until_ms {
            return Err(not_claimable(format!("its claims ended at {} ms since the epoch", distribution.spec.claim_until_ms)));
        }
        let Some(entitlement) = self.state.entitlements.get(&(id, holder)).copied() else {
            return Err(not_claimable("you held none of the token at its record, or claimed your part already".into()));
        };
        let payment_asset = distribution.spec.payment_asset;
        let reference = format_compact!("distribution:{id}");
        let from = pool(id, payment_asset);
        if entitlement.net > 0 {
            let leg = Leg { debit: from, credit: available(holder, payment_asset), amount: entitlement.net, code: TransferCode(api::DISTRIBUTION_PAYMENT) };
            kernel.transfer(leg, reference.clone(), at_ms).map_err(refusal)?;
        }
        if entitlement.withheld > 0 {
            let leg = Leg { debit: from, credit: withheld(payment_asset), amount: entitlement.withheld, code: TransferCode(api::DISTRIBUTION_WITHHOLDING) };
            kernel.transfer(leg, reference, at_ms).map_err(refusal)?;
        }
        self.state.entitlements.remove(&(id, holder));
        self.changes.entitlements.push(Entitlement { claimed_ms: Some(at_ms), ..entitlement });
        let all_claimed = self.state.entitlements.range((id, 0)..=(id, UserId::MAX)).next().is_none();
        let distribution = self.state.open_distributions.get_mut(&id).expect("looked up above");
        distribution.claimed += entitlement.gross;
        distribution.withheld += entitlement.withheld;
        if all_claimed {
            distribution.status = DistributionStatus::Closed;
            distribution.closed_ms = Some(at_ms);
        }
        self.changes.distributions.push(distribution.clone());
        if all_claimed {
            self.state.open_distributions.remove(&id);
        }
        Ok(Outcome::DistributionClaimed { distribution: id, net: entitlement.net, withheld: entitlement.withheld })
    }

    fn reclaim(&mut self, kernel: &mut Kernel, issuer: UserId, id: DistributionId, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let Some(distribution) = self.state.open_distributions.get(&id) else {
            return Err(if (1..self.state.next_distribution).contains(&id) {
                LedgerError::NotClaimable { distribution: id, why: "it is closed: nothing is left to reclaim".into() }
            } else {
                LedgerError::NotFound
            });
        };
        if distribution.issuer != issuer {
            return Err(LedgerError::Forbidden(format!("user {issuer} is not distribution {id}'s issuer")));
        }
        if distribution.status == DistributionStatus::Declared || at_ms < distribution.spec.claim_until_ms {
            return Err(LedgerError::ClaimPeriodOpen { distribution: id, until_ms: distribution.spec.claim_until_ms });
        }
        let payment_asset = distribution.spec.payment_asset;
        let amount = kernel.balance(pool(id, payment_asset));
        if amount > 0 {
            let leg = Leg { debit: pool(id, payment_asset), credit: available(issuer, payment_asset), amount, code: TransferCode(api::DISTRIBUTION_RECLAIM) };
            kernel.transfer(leg, format_compact!("distribution:{id}"), at_ms).map_err(refusal)?;
        }
        let unclaimed: Vec<UserId> = self.state.entitlements.range((id, 0)..=(id, UserId::MAX)).map(|((_, holder), _)| *holder).collect();
        for holder in unclaimed {
            let entitlement = self.state.entitlements.remove(&(id, holder)).expect("listed above");
            self.changes.entitlements.push(Entitlement { reclaimed: true, ..entitlement });
        }
        let mut distribution = self.state.open_distributions.remove(&id).expect("looked up above");
        distribution.status = DistributionStatus::Closed;
        distribution.reclaimed = amount;
        distribution.closed_ms = Some(at_ms);
        self.changes.distributions.push(distribution);
        Ok(Outcome::DistributionReclaimed { distribution: id, amount })
    }

    /// The user besides the operators who may propose `command`: the
    /// token's issuer, for its agent's actions (ERC-3643's agent role).
    pub fn agent_of(&self, command: &Command) -> Option<UserId> {
        match command {
            Command::FreezeTokens { token, .. }
            | Command::UnfreezeTokens { token, .. }
            | Command::ForceTransfer { token, .. }
            | Command::RecoverTokens { token, .. } => self.state.tokens.get(token).map(|token| token.issuer),
            _ => None,
        }
    }

    /// The token and a checked amount of it for an agent's action: positive whole lots.
    fn agent_amount(&self, token: AssetId, amount: Amount) -> Result<&Token, LedgerError> {
        let token = self.state.tokens.get(&token).ok_or(LedgerError::UnknownAsset(token))?;
        if amount <= 0 || amount > AMOUNT_BOUND || amount % token.spec.lot != 0 {
            return Err(LedgerError::BadInput(format!(
                "an amount of token {} is a positive whole number of lots of {} minor units",
                token.asset, token.spec.lot
            )));
        }
        Ok(token)
    }

    /// Whether `user` may receive the token from its agent: the issuer, or
    /// a verified investor. The token's other rules do not bind its agent.
    fn check_agent_receiver(&self, token: &Token, user: UserId, at_ms: TimestampMs) -> Result<(), LedgerError> {
        let verified = self.state.claims.get(&user).is_some_and(|claims| at_ms < claims.expires_at_ms);
        if user == token.issuer || verified {
            Ok(())
        } else {
            Err(LedgerError::Compliance(ComplianceRefusal::NotVerified(user)))
        }
    }

    fn freeze(&mut self, kernel: &mut Kernel, token: AssetId, holder: UserId, amount: Amount, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        self.agent_amount(token, amount)?;
        let free = kernel.balance(available(holder, token));
        if free < amount {
            return Err(LedgerError::InsufficientFunds { needed: amount, available: free });
        }
        let leg = Leg { debit: available(holder, token), credit: frozen(holder, token), amount, code: TransferCode(api::TOKENS_FROZEN) };
        kernel.transfer(leg, format_compact!("agent:{token}"), at_ms).map_err(refusal)?;
        Ok(Outcome::TokensFrozen { token, holder, frozen: kernel.balance(frozen(holder, token)) })
    }

    fn unfreeze(&mut self, kernel: &mut Kernel, token: AssetId, holder: UserId, amount: Amount, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        self.agent_amount(token, amount)?;
        let held = kernel.balance(frozen(holder, token));
        if held < amount {
            return Err(LedgerError::BadInput(format!("user {holder} has {held} minor units of token {token} frozen, fewer than {amount}")));
        }
        let leg = Leg { debit: frozen(holder, token), credit: available(holder, token), amount, code: TransferCode(api::TOKENS_UNFROZEN) };
        kernel.transfer(leg, format_compact!("agent:{token}"), at_ms).map_err(refusal)?;
        Ok(Outcome::TokensFrozen { token, holder, frozen: kernel.balance(frozen(holder, token)) })
    }

    fn force_transfer(
        &mut self,
        kernel: &mut Kernel,
        token: AssetId,
        from: UserId,
        to: UserId,
        amount: Amount,
        at_ms: TimestampMs,
    ) -> Result<Outcome, LedgerError> {
        let token_spec = self.agent_amount(token, amount)?;
        if from == to {
            return Err(LedgerError::BadInput("a forced transfer goes to another user".into()));
        }
        self.check_agent_receiver(token_spec, to, at_ms)?;
        let (free, held) = (kernel.balance(available(from, token)), kernel.balance(frozen(from, token)));
        if free + held < amount {
            return Err(LedgerError::InsufficientFunds { needed: amount, available: free + held });
        }
        // What is free first, then what is frozen, as ERC-3643's forcedTransfer unfreezes only the shortfall.
        let from_free = free.min(amount);
        let from_frozen = amount - from_free;
        let code = TransferCode(api::FORCED_TRANSFER);
        let legs = [
            Leg { debit: available(from, token), credit: available(to, token), amount: from_free, code },
            Leg { debit: frozen(from, token), credit: available(to, token), amount: from_frozen, code },
        ];
        let legs: Vec<Leg> = legs.into_iter().filter(|leg| leg.amount > 0).collect();
        kernel.transfer_all(&legs, &format_compact!("agent:{token}"), at_ms).map_err(refusal)?;
        Ok(Outcome::ForcedTransfer { token, amount, from_frozen })
    }

    /// Moves everything `lost` holds of the token to `to`, frozen tokens
    /// staying frozen and unvested tranches keeping their schedule.
    fn recover(&mut self, kernel: &mut Kernel, token: AssetId, lost: UserId, to: UserId, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let token_spec = self.state.tokens.get(&token).ok_or(LedgerError::UnknownAsset(token))?;
        if lost == to {
            return Err(LedgerError::BadInput("a recovery goes to another account".into()));
        }
        self.check_agent_receiver(token_spec, to, at_ms)?;
        let in_orders = kernel.balance(locked(lost, token));
        if in_orders > 0 {
            return Err(LedgerError::BadInput(format!(
                "user {lost} has {in_orders} minor units of token {token} in open orders: freeze their account with its orders cancelled, then recover"
            )));
        }
        let (free, held) = (kernel.balance(available(lost, token)), kernel.balance(frozen(lost, token)));
        let tranches: Vec<(SubscriptionId, u32)> =
            self.state.tranches.iter().filter(|(_, tranche)| tranche.investor == lost && tranche.token == token).map(|(key, _)| *key).collect();
        if free == 0 && held == 0 && tranches.is_empty() {
            return Err(LedgerError::BadInput(format!("user {lost} holds none of token {token}")));
        }
        let reference = format_compact!("agent:{token}");
        let code = TransferCode(api::RECOVERY);
        let legs = [
            Leg { debit: available(lost, token), credit: available(to, token), amount: free, code },
            Leg { debit: frozen(lost, token), credit: frozen(to, token), amount: held, code },
        ];
        let legs: Vec<Leg> = legs.into_iter().filter(|leg| leg.amount > 0).collect();
        if !legs.is_empty() {
            kernel.transfer_all(&legs, &reference, at_ms).map_err(refusal)?;
        }
        let mut moved = free + held;
        for key in &tranches {
            // The hold is the old account's: released, the tokens cross, and the new account's hold takes its place under the same id.
            let tranche = self.state.tranches.get_mut(key).expect("listed above");
            let hold = tranche_hold(key.0, key.1);
            kernel.release(hold, TransferCode(api::VESTING_RELEASE), reference.clone(), at_ms).map_err(refusal)?;
            let leg = Leg { debit: available(lost, token), credit: available(to, token), amount: tranche.amount, code };
            kernel.transfer(leg, reference.clone(), at_ms).map_err(refusal)?;
            kernel
                .hold(hold, available(to, token), vesting(to, token), tranche.amount, TransferCode(api::VESTING_LOCK), reference.clone(), at_ms)
                .map_err(refusal)?;
            self.changes.tranches_moved.push(*tranche);
            tranche.investor = to;
            moved += tranche.amount;
            self.changes.tranches.push(*tranche);
        }
        Ok(Outcome::TokensRecovered { token, amount: moved, tranches: u32::try_from(tranches.len()).unwrap_or(u32::MAX) })
    }

    /// Each open distribution's pool holds what it owes: the whole pool
    /// before the record, the unclaimed entitlements after.
    fn check_distributions(&self, kernel: &Kernel) -> Result<(), String> {
        let mut owed: BTreeMap<DistributionId, Amount> = BTreeMap::new();
        for ((id, holder), entitlement) in &self.state.entitlements {
            let recorded = self.state.open_distributions.get(id).is_some_and(|d| d.status == DistributionStatus::Recorded);
            if !recorded || entitlement.holder != *holder || entitlement.gross <= 0 || entitlement.net + entitlement.withheld != entitlement.gross {
                return Err(format!("entitlement of {holder} to distribution {id} is {entitlement:?}, its distribution not open for claims"));
            }
            *owed.entry(*id).or_insert(0) += entitlement.gross;
        }
        let mut records = BTreeSet::new();
        for distribution in self.state.open_distributions.values() {
            let in_pool = kernel.balance(pool(distribution.id, distribution.spec.payment_asset));
            let expected = match distribution.status {
                DistributionStatus::Declared => {
                    records.insert((distribution.spec.record_at_ms, distribution.id));
                    distribution.spec.pool
                }
                DistributionStatus::Recorded => {
                    let unclaimed = owed.get(&distribution.id).copied().unwrap_or(0);
                    if distribution.entitled - distribution.claimed != unclaimed || distribution.entitled + distribution.remainder != distribution.spec.pool {
                        return Err(format!(
                            "distribution {}: entitled {} less claimed {} is not the unclaimed {unclaimed}",
                            distribution.id, distribution.entitled, distribution.claimed
                        ));
                    }
                    unclaimed
                }
                DistributionStatus::Closed => return Err(format!("distribution {} is closed but kept open", distribution.id)),
            };
            if in_pool != expected {
                return Err(format!("distribution {}'s pool holds {in_pool}, it owes {expected}", distribution.id));
            }
        }
        if records != self.records {
            return Err("the index of record times is not what the declared distributions say".into());
        }
        Ok(())
    }
}

/// The payment for one lot at `price` per whole token, if it is whole.
fn lot_price(token: &Token, price: Amount) -> Option<Amount> {
    if !(1..=AMOUNT_BOUND).contains(&price) {
        return None;
    }
    let whole = 10i128.pow(u32::from(token.spec.scale));
    let numerator = price.checked_mul(token.spec.lot)?;
    (numerator % whole == 0).then_some(numerator / whole).filter(|per_lot| *per_lot > 0)
}

fn validate_token(spec: &TokenSpec) -> Result<(), LedgerError> {
    if spec.scale > 18 {
        return Err(LedgerError::BadInput("a token's scale is 0 to 18".into()));
    }
    if !(1..=AMOUNT_BOUND).contains(&spec.lot) || !(1..=AMOUNT_BOUND).contains(&spec.supply_max) || spec.supply_max % spec.lot != 0 {
        return Err(LedgerError::BadInput("a token's lot and maximum supply are positive, the supply a whole number of lots".into()));
    }
    if spec.document_url.is_empty() || spec.document_url.len() > URL_BYTES_MAX {
        return Err(LedgerError::BadInput(format!("the offering document's link is 1 to {URL_BYTES_MAX} bytes")));
    }
    rules::validate(&spec.rules).map_err(LedgerError::BadInput)
}
