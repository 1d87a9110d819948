//! Donations: verified organisers, campaigns, gifts with their receipts,
//! sponsors' matching pools, payouts and refunds.
//!
//! Accounts, all the kernel's: a campaign's CAMPAIGN account
//! (`Owner::Entity(campaign)`, one per asset) holds every gift, tip and
//! match it received that was neither paid out nor refunded; a pool's
//! MATCH_POOL account (`Owner::Entity(pool)`) what its sponsor put in and
//! no gift has reserved yet. A gift is a plain transfer from the donor's
//! AVAILABLE (after the deposit's from custody, when it came from outside),
//! its tip beside it, and each match a transfer from its pool, all in one
//! `transfer_all`: a match is reserved with its gift or not at all. A
//! refund gives a gift and its tip back to the donor and each match back to
//! its pool (to the sponsor once the pool closed); a payout pays the held
//! gifts less the platform's fee, and the matches, to the organiser, and
//! the fees and tips to the house's revenue.
//!
//! A gift's value in the reference asset is fixed when it arrives, at the
//! last trade price the ledger's dispatch hands in ([`Prices`], spot's).

use std::collections::{BTreeMap, BTreeSet};

use compact_str::format_compact;
use ids::{Amount, AssetId, TimestampMs, UserId};
use ledger_api::convert::{Quote, QuoteId};
use ledger_api::donations::{
    self as api, fee_of, year_of, AssetTotals, Campaign, CampaignId, CampaignSpec, CampaignStatus, Command, Converted, Display, Donation, DonationId,
    DonationStatus, FundingModel, Gift, Match, Organiser, Outcome, Payout, PayoutKind, PayoutLine, Pool, PoolId, PoolSpec, ReceiptNumber, Source, ACCEPTED_MAX,
    AMOUNT_BOUND, FEE_BPS_MAX, MESSAGE_BYTES_MAX, NAME_BYTES_MAX, PAYOUT_EVERY_MS_MIN, POOLS_PER_CAMPAIGN_MAX, RATIO_BPS_MAX, STORY_BYTES_MAX, TITLE_BYTES_MAX,
};
use ledger_api::LedgerError;
use ledger_core::{AccountId, Digest, Idempotent, Kernel, Leg, Owner, Purpose, PurposeSpec, Recorded, TransferCode};
use serde::{Deserialize, Serialize};

use crate::house::revenue;
use crate::wallet::{available, custody};
use crate::{key_digest, refusal, ChangeSet, Forward, LedgerLimits, Product};

pub const CAMPAIGN: Purpose = Purpose(api::CAMPAIGN);
pub const MATCH_POOL: Purpose = Purpose(api::MATCH_POOL);

pub const PURPOSES: &[PurposeSpec] = &[
    PurposeSpec { purpose: CAMPAIGN, name: "campaign", may_go_negative: false, holds_only: false },
    PurposeSpec { purpose: MATCH_POOL, name: "match pool", may_go_negative: false, holds_only: false },
];

const DONATION_RECORD: u8 = 10;
const POOL_RECORD: u8 = 11;

/// How a gift converted at receipt settles its quote (convert's, handed in).
type Settle = fn(&mut Kernel) -> Result<(), LedgerError>;

/// `donate`'s conversion argument for a gift taken as it is.
const NOT_CONVERTED: Option<(&Quote, Settle)> = None;

/// Campaigns not yet paid out or refunded, in all and per organiser; gifts
/// held in all: bounded state, as every other product's.
pub const CAMPAIGNS_OPEN_MAX: usize = 100_000;
pub const CAMPAIGNS_OPEN_PER_ORGANISER_MAX: u32 = 100;
pub const DONATIONS_HELD_MAX: usize = 1_000_000;
/// Campaigns one tick ends at most (an all-or-nothing miss refunds every
/// gift), and pools it closes.
const CAMPAIGNS_ENDED_PER_TICK: usize = 4;
const POOLS_CLOSED_PER_TICK: usize = 100;

/// The names of its storage tables; the ledger daemon's
/// `schema/donations.rs` says what they hold.
pub mod tables {
    pub const ORGANISERS: &str = "donations.organisers";
    pub const CAMPAIGNS: &str = "donations.campaigns";
    pub const OPEN_CAMPAIGNS: &str = "donations.open_campaigns";
    pub const DONATIONS: &str = "donations.donations";
    pub const DONATIONS_BY_CAMPAIGN: &str = "donations.donations_by_campaign";
    pub const DONATIONS_BY_DONOR: &str = "donations.donations_by_donor";
    pub const RECEIPTS: &str = "donations.receipts";
    pub const RECEIPT_SEQUENCES: &str = "donations.receipt_sequences";
    pub const POOLS: &str = "donations.pools";
    pub const POOLS_BY_CAMPAIGN: &str = "donations.pools_by_campaign";
    pub const PAYOUTS: &str = "donations.payouts";
    pub const PAYOUTS_BY_CAMPAIGN: &str = "donations.payouts_by_campaign";
}

pub fn campaign_account(campaign: CampaignId, asset: AssetId) -> AccountId {
    AccountId { owner: Owner::Entity(campaign), asset, purpose: CAMPAIGN }
}

pub fn pool_account(pool: PoolId, asset: AssetId) -> AccountId {
    AccountId { owner: Owner::Entity(pool), asset, purpose: MATCH_POOL }
}

fn donate_key(donor: UserId, key: &str) -> Option<Digest> {
    key_digest(b"donate", &donor.to_le_bytes(), key)
}

fn pool_key(sponsor: UserId, key: &str) -> Option<Digest> {
    key_digest(b"match-pool", &sponsor.to_le_bytes(), key)
}

/// A last trade price as a fraction: `amount` of an asset is worth
/// `amount * num / den` of the reference asset.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Price {
    pub num: Amount,
    pub den: Amount,
}

impl Price {
    /// The value of `amount`, rounded down; None when it overflows.
    pub fn value(&self, amount: Amount) -> Option<Amount> {
        amount.checked_mul(self.num).map(|product| product / self.den)
    }
}

/// Where a gift's value comes from: the spot exchange's last trade price
/// between an asset and the reference asset, in either direction.
pub trait Prices {
    fn last_price(&self, asset: AssetId, reference: AssetId) -> Option<Price>;
}

/// Everything the product keeps, in canonical order. Campaigns paid out or
/// refunded, gifts settled and the pools of closed campaigns are in the
/// store only.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DonationsState {
    pub organisers: BTreeMap<UserId, Organiser>,
    /// The platform's fee on new campaigns' gifts, in basis points.
    pub fee_bps: u32,
    /// Draft, active and ended campaigns.
    pub campaigns: BTreeMap<CampaignId, Campaign>,
    /// Gifts in their campaign's account.
    pub held: BTreeMap<DonationId, Donation>,
    /// The pools of the campaigns above, open or closed.
    pub pools: BTreeMap<PoolId, Pool>,
    /// What each donor's gifts reserved of each pool.
    pub matched: BTreeMap<(PoolId, UserId), Amount>,
    /// The last receipt number per organiser and year.
    pub receipts: BTreeMap<(UserId, u16), u32>,
    pub next_campaign: CampaignId,
    pub next_donation: DonationId,
    pub next_pool: PoolId,
    pub next_payout: api::PayoutId,
}

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct DonationsChanges {
    pub organisers: Vec<(UserId, Option<Organiser>)>,
    /// Campaigns, gifts and pools created or changed, in their state after it.
    pub campaigns: Vec<Campaign>,
    pub donations: Vec<Donation>,
    pub pools: Vec<Pool>,
    pub payouts: Vec<Payout>,
    /// Whether the counters, the fee or a receipt sequence moved.
    pub counters: bool,
}

impl ChangeSet for DonationsChanges {
    fn clear(&mut self) {
        self.organisers.clear();
        self.campaigns.clear();
        self.donations.clear();
        self.pools.clear();
        self.payouts.clear();
        self.counters = false;
    }
}

#[derive(Default)]
pub struct Donations {
    state: DonationsState,
    /// Active campaigns by deadline, open pools by the end of their window.
    deadlines: BTreeSet<(TimestampMs, CampaignId)>,
    pool_ends: BTreeSet<(TimestampMs, PoolId)>,
    /// Held gifts and pools by campaign; campaigns open per organiser.
    by_campaign: BTreeSet<(CampaignId, DonationId)>,
    pools_by_campaign: BTreeSet<(CampaignId, PoolId)>,
    per_organiser: BTreeMap<UserId, u32>,
    /// The prices the dispatch handed in for the command being applied.
    prices: Vec<(AssetId, Option<Price>)>,
    changes: DonationsChanges,
}

impl Product for Donations {
    type Command = Command;
    type Outcome = Outcome;
    type State = DonationsState;
    type Changes = DonationsChanges;
    const PURPOSES: &'static [PurposeSpec] = PURPOSES;
    const RECORD_KINDS: &'static [u8] = &[DONATION_RECORD, POOL_RECORD];

    fn restore(mut state: DonationsState) -> Donations {
        state.next_campaign = state.next_campaign.max(1);
        state.next_donation = state.next_donation.max(1);
        state.next_pool = state.next_pool.max(1);
        state.next_payout = state.next_payout.max(1);
        let deadlines = state.campaigns.values().filter(|c| c.status == CampaignStatus::Active).map(|c| (c.spec.deadline_ms, c.id)).collect();
        let pool_ends = state.pools.values().filter(|p| p.closed_ms.is_none()).map(|p| (p.spec.ends_ms, p.id)).collect();
        let by_campaign = state.held.values().map(|d| (d.gift.campaign, d.id)).collect();
        let pools_by_campaign = state.pools.values().map(|p| (p.spec.campaign, p.id)).collect();
        let mut per_organiser = BTreeMap::new();
        for campaign in state.campaigns.values() {
            *per_organiser.entry(campaign.organiser).or_default() += 1;
        }
        Donations { state, deadlines, pool_ends, by_campaign, pools_by_campaign, per_organiser, prices: Vec::new(), changes: DonationsChanges::default() }
    }

    fn state(&self) -> DonationsState {
        self.state.clone()
    }

    fn changes_mut(&mut self) -> &mut DonationsChanges {
        &mut self.changes
    }

    fn idempotency_key(command: &Command) -> Option<Digest> {
        match command {
            Command::Donate { donor, key, .. } | Command::DonateConverted { donor, key, .. } => donate_key(*donor, key),
            Command::DepositDonation { gift, reference, .. } => crate::wallet::deposit_key(gift.asset, reference),
            Command::FundPool { sponsor, key, .. } => pool_key(*sponsor, key),
            _ => None,
        }
    }

    fn apply(
        &mut self,
        kernel: &mut Kernel,
        _limits: &LedgerLimits,
        command: &Command,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> (Result<Outcome, LedgerError>, Forward) {
        let outcome = match command {
            Command::SetOrganiser { user, organiser } => self.set_organiser(*user, organiser.as_ref()),
            &Command::SetDonationFee { fee_bps } => self.set_fee(fee_bps),
            Command::CreateCampaign { organiser, spec } => self.create(kernel, *organiser, spec, at_ms),
            &Command::PublishCampaign { organiser, campaign } => self.publish(organiser, campaign, at_ms),
            &Command::CancelCampaign { organiser, campaign } => match self.campaign(campaign) {
                Ok(found) if found.organiser != organiser => Err(LedgerError::Forbidden(format!("campaign {campaign} is not user {organiser}'s"))),
                Ok(_) => self.cancel(kernel, campaign, at_ms),
                Err(error) => Err(error),
            },
            &Command::StopCampaign { campaign } => self.cancel(kernel, campaign, at_ms),
            Command::Donate { donor, gift, key } => {
                let digest =
                    ledger_core::check_key(key).map_err(refusal).map(|()| known_key.or_else(|| donate_key(*donor, key)).expect("a checked key has a digest"));
                digest.and_then(|digest| self.donate(kernel, *donor, gift, Source::Balance, digest, at_ms, NOT_CONVERTED))
            }
            // The ledger's dispatch takes it first: it settles the quote with convert.
            Command::DonateConverted { .. } => Err(bad("a gift converted at receipt is settled by the ledger's dispatch")),
            Command::DepositDonation { donor, gift, reference } => {
                let digest = ledger_core::check_key(reference)
                    .map_err(refusal)
                    .map(|()| known_key.or_else(|| crate::wallet::deposit_key(gift.asset, reference)).expect("a checked key has a digest"));
                digest.and_then(|digest| self.donate(kernel, *donor, gift, Source::Deposit { reference: reference.clone() }, digest, at_ms, NOT_CONVERTED))
            }
            Command::FundPool { sponsor, spec, key } => self.fund_pool(kernel, *sponsor, spec, key, at_ms, known_key),
            &Command::PayOut { campaign } => self.pay_out(kernel, campaign, at_ms),
            Command::Tick => self.tick(kernel, at_ms),
        };
        self.prices.clear();
        (outcome, None)
    }

    fn beneficiary(&self, command: &Command) -> Result<Option<UserId>, LedgerError> {
        Ok(match command {
            Command::SetOrganiser { user, .. } => Some(*user),
            // The organiser is paid: neither proposes nor approves their payout,
            // nor the crediting of money given to their campaign.
            Command::PayOut { campaign } => Some(self.campaign(*campaign)?.organiser),
            Command::DepositDonation { gift, .. } => Some(self.campaign(gift.campaign)?.organiser),
            _ => None,
        })
    }

    fn frozen_subject(&self, command: &Command) -> Option<UserId> {
        match command {
            Command::Donate { donor, .. } | Command::DepositDonation { donor, .. } | Command::DonateConverted { donor, .. } => Some(*donor),
            Command::FundPool { sponsor, .. } => Some(*sponsor),
            Command::CreateCampaign { organiser, .. } | Command::PublishCampaign { organiser, .. } => Some(*organiser),
            _ => None,
        }
    }

    /// Converting at receipt is a trade: a donor's kill switch stops it.
    fn order_subject(&self, command: &Command) -> Option<UserId> {
        match command {
            Command::DonateConverted { donor, .. } => Some(*donor),
            _ => None,
        }
    }

    fn check_invariants(&self, kernel: &Kernel) -> Result<(), String> {
        // Each campaign's account holds exactly its held gifts, tips and
        // matches, and its totals say the same.
        let mut held: BTreeMap<(CampaignId, AssetId), Amount> = BTreeMap::new();
        for donation in self.state.held.values() {
            if donation.status != DonationStatus::Held || !self.by_campaign.contains(&(donation.gift.campaign, donation.id)) {
                return Err(format!("donation {} is in memory but not held and indexed", donation.id));
            }
            let (asset, amount) = donation.received();
            *held.entry((donation.gift.campaign, asset)).or_default() += amount;
            *held.entry((donation.gift.campaign, donation.gift.asset)).or_default() += donation.gift.tip;
            if donation.net + donation.fee != amount || donation.converted.is_some_and(|converted| converted.amount != donation.value) {
                return Err(format!("donation {}'s fee and net are not of the {amount} its campaign received", donation.id));
            }
            for matched in &donation.matches {
                *held.entry((donation.gift.campaign, matched.asset)).or_default() += matched.amount;
            }
        }
        if self.by_campaign.len() != self.state.held.len() {
            return Err("the index of held gifts by campaign has gifts that are not held".into());
        }
        for campaign in self.state.campaigns.values() {
            for totals in &campaign.totals {
                let in_account = kernel.balance(campaign_account(campaign.id, totals.asset));
                let expected = held.get(&(campaign.id, totals.asset)).copied().unwrap_or(0);
                if in_account != expected || totals.held() != expected {
                    return Err(format!(
                        "campaign {} holds {in_account} of asset {}, its totals say {}, its held gifts and matches {expected}",
                        campaign.id,
                        totals.asset,
                        totals.held()
                    ));
                }
            }
            if campaign.raised < 0 {
                return Err(format!("campaign {} raised {} below zero", campaign.id, campaign.raised));
            }
        }
        // Each pool's account holds what it has left, nothing once closed,
        // and its reservations are its donors'.
        let mut reserved: BTreeMap<PoolId, Amount> = BTreeMap::new();
        for (&(pool, _), amount) in &self.state.matched {
            *reserved.entry(pool).or_default() += amount;
        }
        for pool in self.state.pools.values() {
            let in_account = kernel.balance(pool_account(pool.id, pool.spec.asset));
            let expected = if pool.closed_ms.is_some() { 0 } else { pool.left() };
            if in_account != expected || pool.left() < 0 || pool.reserved < 0 {
                return Err(format!(
                    "pool {} holds {in_account}; it has {} left of {} (closed: {})",
                    pool.id,
                    pool.left(),
                    pool.spec.total,
                    pool.closed_ms.is_some()
                ));
            }
            if reserved.get(&pool.id).copied().unwrap_or(0) != pool.reserved {
                return Err(format!("pool {}'s reservations by donor do not sum to its {} reserved", pool.id, pool.reserved));
            }
            if !self.state.campaigns.contains_key(&pool.spec.campaign) {
                return Err(format!("pool {} is in memory without its campaign {}", pool.id, pool.spec.campaign));
            }
            if !self.pools_by_campaign.contains(&(pool.spec.campaign, pool.id)) {
                return Err(format!("pool {} is missing from its campaign's index", pool.id));
            }
        }
        if self.pools_by_campaign.len() != self.state.pools.len() {
            return Err(format!("{} pools indexed by campaign, {} in memory", self.pools_by_campaign.len(), self.state.pools.len()));
        }
        for (&(pool, donor), amount) in &self.state.matched {
            let cap = self.state.pools.get(&pool).map_or(0, |p| p.spec.per_donor_max);
            if *amount < 0 || *amount > cap {
                return Err(format!("donor {donor} reserved {amount} of pool {pool}, beyond its per-donor cap {cap}"));
            }
        }
        Ok(())
    }
}

fn bad(reason: impl Into<String>) -> LedgerError {
    LedgerError::BadInput(reason.into())
}

/// Text a person reads: within `max` bytes, no control characters (a
/// story's line breaks aside).
fn check_text(what: &str, text: &str, min: usize, max: usize, newlines: bool) -> Result<(), LedgerError> {
    if !(min..=max).contains(&text.len()) {
        return Err(bad(format!("{what} is {min} to {max} bytes")));
    }
    if text.chars().any(|c| c.is_control() && !(newlines && c == '\n')) {
        return Err(bad(format!("{what} has a control character")));
    }
    Ok(())
}

impl Donations {
    pub fn organiser(&self, user: UserId) -> Option<&Organiser> {
        self.state.organisers.get(&user)
    }

    pub fn fee_bps(&self) -> u32 {
        self.state.fee_bps
    }

    pub fn open_campaign(&self, id: CampaignId) -> Option<&Campaign> {
        self.state.campaigns.get(&id)
    }

    pub fn open_campaigns(&self) -> impl Iterator<Item = &Campaign> {
        self.state.campaigns.values()
    }

    pub fn held(&self, id: DonationId) -> Option<&Donation> {
        self.state.held.get(&id)
    }

    pub fn held_gifts(&self) -> impl Iterator<Item = &Donation> {
        self.state.held.values()
    }

    pub fn pools(&self) -> impl Iterator<Item = &Pool> {
        self.state.pools.values()
    }

    /// The last receipt number of `organiser`'s `year`.
    pub fn receipts(&self, organiser: UserId, year: u16) -> u32 {
        self.state.receipts.get(&(organiser, year)).copied().unwrap_or(0)
    }

    /// The next campaign, donation, pool and payout ids.
    pub fn counters(&self) -> (CampaignId, DonationId, PoolId, api::PayoutId) {
        (self.state.next_campaign, self.state.next_donation, self.state.next_pool, self.state.next_payout)
    }

    pub fn next_campaign(&self) -> CampaignId {
        self.state.next_campaign
    }

    pub fn next_donation(&self) -> DonationId {
        self.state.next_donation
    }

    /// The campaigns whose payout the operators may make at `at_ms`:
    /// ended (keeping what they raised, or their goal met), or due an
    /// interim payout on their schedule; oldest first.
    pub fn payouts_due(&self, at_ms: TimestampMs) -> Vec<&Campaign> {
        self.state.campaigns.values().filter(|campaign| payout_kind(campaign, at_ms).is_ok()).collect()
    }

    /// When the clock next has something to do: a deadline, a pool's window's end.
    pub fn next_tick(&self) -> Option<TimestampMs> {
        [self.deadlines.first().map(|(at, _)| *at), self.pool_ends.first().map(|(at, _)| *at)].into_iter().flatten().min()
    }

    /// The assets a command's gifts are valued in and against: the dispatch
    /// asks the prices of these before [`Self::apply`].
    pub fn to_value(&self, command: &Command) -> Option<(AssetId, Vec<AssetId>)> {
        let gift = match command {
            Command::Donate { gift, .. } | Command::DepositDonation { gift, .. } | Command::DonateConverted { gift, .. } => gift,
            _ => return None,
        };
        let campaign = self.state.campaigns.get(&gift.campaign)?;
        let reference = campaign.spec.reference_asset;
        let mut assets: Vec<AssetId> =
            std::iter::once(gift.asset).chain(self.campaign_pools(campaign.id).map(|pool| pool.spec.asset)).filter(|asset| *asset != reference).collect();
        assets.sort_unstable();
        assets.dedup();
        Some((reference, assets))
    }

    pub fn set_prices(&mut self, prices: Vec<(AssetId, Option<Price>)>) {
        self.prices = prices;
    }

    /// `amount` of `asset` in the reference asset, at the handed-in price.
    fn value(&self, asset: AssetId, amount: Amount, reference: AssetId) -> Result<Amount, LedgerError> {
        if asset == reference {
            return Ok(amount);
        }
        let price = self.prices.iter().find(|(a, _)| *a == asset).and_then(|(_, price)| *price).ok_or(LedgerError::NoPrice { asset, reference })?;
        // Bounded as every amount is, so that a campaign's sums stay in range.
        price.value(amount).filter(|value| *value <= AMOUNT_BOUND).ok_or_else(|| bad("the gift is too large to value at the last trade price"))
    }

    /// A campaign's pools, open or closed, in the order they were funded.
    fn campaign_pools(&self, campaign: CampaignId) -> impl Iterator<Item = &Pool> + '_ {
        self.pools_by_campaign.range((campaign, PoolId::MIN)..=(campaign, PoolId::MAX)).map(|(_, id)| &self.state.pools[id])
    }

    fn campaign(&self, id: CampaignId) -> Result<&Campaign, LedgerError> {
        match self.state.campaigns.get(&id) {
            Some(campaign) => Ok(campaign),
            None if id > 0 && id < self.state.next_campaign => Err(bad(format!("campaign {id} is closed: paid out or refunded"))),
            None => Err(LedgerError::NotFound),
        }
    }

    fn set_organiser(&mut self, user: UserId, organiser: Option<&Organiser>) -> Result<Outcome, LedgerError> {
        if let Some(organiser) = organiser {
            check_text("an organiser's name", &organiser.name, 1, TITLE_BYTES_MAX, false)?;
            check_text("a registration number", &organiser.registration, 0, NAME_BYTES_MAX, false)?;
            if !(1..=999).contains(&organiser.country) {
                return Err(bad("a country is its ISO 3166-1 numeric code, 1 to 999"));
            }
            self.state.organisers.insert(user, organiser.clone());
        } else if self.state.organisers.remove(&user).is_none() {
            return Err(bad(format!("user {user} is not an organiser")));
        }
        self.changes.organisers.push((user, organiser.cloned()));
        Ok(Outcome::OrganiserSet { user, organiser: organiser.is_some() })
    }

    fn set_fee(&mut self, fee_bps: u32) -> Result<Outcome, LedgerError> {
        if fee_bps > FEE_BPS_MAX {
            return Err(bad(format!("the platform's fee on gifts is at most {FEE_BPS_MAX} basis points")));
        }
        self.state.fee_bps = fee_bps;
        self.changes.counters = true;
        Ok(Outcome::DonationFeeSet(fee_bps))
    }

    fn create(&mut self, kernel: &Kernel, organiser: UserId, spec: &CampaignSpec, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        if !self.state.organisers.contains_key(&organiser) {
            return Err(LedgerError::Forbidden(format!("user {organiser} is not a verified organiser: the operators verify organisers")));
        }
        check_text("a campaign's title", &spec.title, 1, TITLE_BYTES_MAX, false)?;
        check_text("a campaign's story", &spec.story, 0, STORY_BYTES_MAX, true)?;
        if !(1..=AMOUNT_BOUND).contains(&spec.goal) {
            return Err(bad(format!("a campaign's goal is 1 to {AMOUNT_BOUND} minor units of its reference asset")));
        }
        if spec.deadline_ms <= at_ms {
            return Err(bad("a campaign's deadline is in the future"));
        }
        if spec.accepted.is_empty() || spec.accepted.len() > ACCEPTED_MAX || !spec.accepted.windows(2).all(|w| w[0] < w[1]) {
            return Err(bad(format!("a campaign accepts 1 to {ACCEPTED_MAX} assets, ascending, each once")));
        }
        if !spec.accepted.contains(&spec.reference_asset) {
            return Err(bad("a campaign accepts its reference asset"));
        }
        for asset in &spec.accepted {
            kernel.known_asset(*asset).map_err(refusal)?;
        }
        match (spec.model, spec.payout_every_ms) {
            (_, None) => {}
            (FundingModel::AllOrNothing, Some(_)) => return Err(bad("an all-or-nothing campaign is paid out once, after its deadline")),
            (FundingModel::KeepWhatYouRaise, Some(every)) if every < PAYOUT_EVERY_MS_MIN => {
                return Err(bad(format!("interim payouts are at most daily (every {PAYOUT_EVERY_MS_MIN} ms or more)")));
            }
            (FundingModel::KeepWhatYouRaise, Some(_)) => {}
        }
        if self.state.campaigns.len() >= CAMPAIGNS_OPEN_MAX {
            return Err(LedgerError::LimitReached(format!("{CAMPAIGNS_OPEN_MAX} campaigns open")));
        }
        if self.per_organiser.get(&organiser).copied().unwrap_or(0) >= CAMPAIGNS_OPEN_PER_ORGANISER_MAX {
            return Err(LedgerError::LimitReached(format!("{CAMPAIGNS_OPEN_PER_ORGANISER_MAX} open campaigns per organiser: close or cancel one first")));
        }
        let id = self.state.next_campaign;
        self.state.next_campaign += 1;
        self.changes.counters = true;
        let campaign = Campaign {
            id,
            organiser,
            spec: spec.clone(),
            status: CampaignStatus::Draft,
            fee_bps: self.state.fee_bps,
            raised: 0,
            donations: 0,
            totals: spec.accepted.iter().map(|asset| AssetTotals { asset: *asset, ..AssetTotals::default() }).collect(),
            created_ms: at_ms,
            published_ms: None,
            ended_ms: None,
            closed_ms: None,
            cancelled: false,
            last_payout_ms: None,
        };
        *self.per_organiser.entry(organiser).or_default() += 1;
        self.changes.campaigns.push(campaign.clone());
        self.state.campaigns.insert(id, campaign);
        Ok(Outcome::CampaignCreated(id))
    }

    fn publish(&mut self, organiser: UserId, id: CampaignId, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let campaign = self.campaign(id)?;
        if campaign.organiser != organiser {
            return Err(LedgerError::Forbidden(format!("campaign {id} is not user {organiser}'s")));
        }
        if campaign.status != CampaignStatus::Draft {
            return Err(bad(format!("campaign {id} is published already")));
        }
        if campaign.spec.deadline_ms <= at_ms {
            return Err(bad(format!("campaign {id}'s deadline has passed: cancel it and create another")));
        }
        let campaign = self.state.campaigns.get_mut(&id).expect("found above");
        campaign.status = CampaignStatus::Active;
        campaign.published_ms = Some(at_ms);
        self.deadlines.insert((campaign.spec.deadline_ms, id));
        self.changes.campaigns.push(campaign.clone());
        Ok(Outcome::CampaignPublished(id))
    }

    /// The organiser's cancel or the operators' stop: every held gift back.
    fn cancel(&mut self, kernel: &mut Kernel, id: CampaignId, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        self.campaign(id)?;
        let refunded = self.refund_all(kernel, id, at_ms)?;
        self.close_campaign(kernel, id, CampaignStatus::Refunded, true, at_ms)?;
        Ok(Outcome::CampaignCancelled { campaign: id, refunded })
    }

    /// A gift converted at receipt (`Command::DonateConverted`): `quote` is
    /// the donor's, checked by convert for its acceptance at `at_ms`, and
    /// `settle` accepts it once every check of the gift passed, just before
    /// the gift moves: both or neither.
    #[allow(clippy::too_many_arguments)]
    pub fn donate_converted(
        &mut self,
        kernel: &mut Kernel,
        donor: UserId,
        gift: &Gift,
        key: &str,
        known_key: Option<Digest>,
        quote: &Quote,
        at_ms: TimestampMs,
        settle: impl FnOnce(&mut Kernel) -> Result<(), LedgerError>,
    ) -> Result<Outcome, LedgerError> {
        ledger_core::check_key(key).map_err(refusal)?;
        let digest = known_key.or_else(|| donate_key(donor, key)).expect("a checked key has a digest");
        self.donate(kernel, donor, gift, Source::Balance, digest, at_ms, Some((quote, settle)))
    }

    /// What a repeat of a converted gift's key answers (the first gift, or
    /// DUPLICATE under other terms), or None for a new key: asked before
    /// convert looks at the quote, which the first gift accepted.
    pub fn replayed(
        &self,
        kernel: &Kernel,
        donor: UserId,
        gift: &Gift,
        quote: QuoteId,
        key: &str,
        known_key: Option<Digest>,
    ) -> Option<Result<Outcome, LedgerError>> {
        let digest = known_key.or_else(|| donate_key(donor, key))?;
        match kernel.idempotent(&digest, &gift_fields(donor, gift, Some(quote)).each()) {
            Ok(Idempotent::Replay(recorded)) if recorded.kind == DONATION_RECORD => Some(Ok(Outcome::Donated(recorded.id))),
            Ok(Idempotent::Replay(_)) | Err(_) => Some(Err(LedgerError::Duplicate)),
            Ok(Idempotent::New(_)) => None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn donate<F: FnOnce(&mut Kernel) -> Result<(), LedgerError>>(
        &mut self,
        kernel: &mut Kernel,
        donor: UserId,
        gift: &Gift,
        source: Source,
        digest: Digest,
        at_ms: TimestampMs,
        conversion: Option<(&Quote, F)>,
    ) -> Result<Outcome, LedgerError> {
        let fields = gift_fields(donor, gift, conversion.as_ref().map(|(quote, _)| quote.id));
        let fingerprint = match kernel.idempotent(&digest, &fields.each()).map_err(refusal)? {
            Idempotent::Replay(recorded) if recorded.kind == DONATION_RECORD => return Ok(Outcome::Donated(recorded.id)),
            // A deposit's reference credited as a plain deposit, or another kind under the same key.
            Idempotent::Replay(_) => return Err(LedgerError::Duplicate),
            Idempotent::New(fingerprint) => fingerprint,
        };
        let campaign = self.campaign(gift.campaign)?;
        if campaign.status != CampaignStatus::Active || campaign.spec.deadline_ms <= at_ms {
            let why = match campaign.status {
                CampaignStatus::Draft => "not published yet",
                _ => "its deadline has passed",
            };
            return Err(LedgerError::CampaignClosed { campaign: campaign.id, why: why.into() });
        }
        if campaign.organiser == donor {
            return Err(LedgerError::Forbidden("an organiser does not give to their own campaign".into()));
        }
        if !campaign.spec.accepted.contains(&gift.asset) {
            return Err(bad(format!("campaign {} does not accept asset {}", campaign.id, gift.asset)));
        }
        if !(1..=AMOUNT_BOUND).contains(&gift.gross) || !(0..=AMOUNT_BOUND).contains(&gift.tip) {
            return Err(bad(format!("a gift is 1 to {AMOUNT_BOUND} minor units, a tip 0 to as much")));
        }
        check_text("a message", &gift.message, 0, MESSAGE_BYTES_MAX, true)?;
        check_display(&gift.display)?;
        if self.state.held.len() >= DONATIONS_HELD_MAX {
            return Err(LedgerError::LimitReached(format!("{DONATIONS_HELD_MAX} gifts held")));
        }
        let reference = campaign.spec.reference_asset;
        // Converted, the campaign receives the quote's proceeds in the
        // reference asset: the gift's value, and the rate its matches in
        // the gift's asset are valued at.
        let converted = match &conversion {
            Some((quote, _)) => {
                if quote.from() != gift.asset || quote.from_amount() != gift.gross || quote.to() != reference {
                    return Err(bad(format!(
                        "quote {} converts {} of asset {} into asset {}: a gift converted at receipt takes a quote for its gross, from its asset into the campaign's reference asset {reference}",
                        quote.id,
                        quote.from_amount(),
                        quote.from(),
                        quote.to()
                    )));
                }
                if !(1..=AMOUNT_BOUND).contains(&quote.to_amount()) {
                    return Err(bad(format!("a gift converted at receipt gives the campaign 1 to {AMOUNT_BOUND} minor units")));
                }
                // Convert checked the gross; the tip is taken beside it.
                let has = kernel.balance(available(donor, gift.asset));
                if has < gift.gross + gift.tip {
                    return Err(LedgerError::InsufficientFunds { needed: gift.gross + gift.tip, available: has });
                }
                Some(Converted { quote: quote.id, asset: reference, amount: quote.to_amount() })
            }
            None => None,
        };
        let rate = converted.map(|converted| Price { num: converted.amount, den: gift.gross });
        let value_of = |asset: AssetId, amount: Amount| match rate {
            Some(rate) if asset == gift.asset => {
                rate.value(amount).filter(|value| *value <= AMOUNT_BOUND).ok_or_else(|| bad("the match is too large to value at the conversion's rate"))
            }
            _ => self.value(asset, amount, reference),
        };
        let (received, received_amount) = converted.map_or((gift.asset, gift.gross), |converted| (converted.asset, converted.amount));
        let value = value_of(received, received_amount)?;
        // Each pool in its window matches what is left of its caps, in pool order.
        let mut matches = Vec::new();
        for pool in self.campaign_pools(campaign.id) {
            if pool.closed_ms.is_some() || at_ms < pool.spec.starts_ms || at_ms >= pool.spec.ends_ms || pool.sponsor == donor {
                continue;
            }
            let base = if pool.spec.asset == gift.asset {
                gift.gross
            } else if pool.spec.asset == reference {
                value
            } else {
                continue;
            };
            let already = self.state.matched.get(&(pool.id, donor)).copied().unwrap_or(0);
            // Past Amount's range the caps decide (each is within AMOUNT_BOUND).
            let ratio = base.checked_mul(Amount::from(pool.spec.ratio_bps)).map_or(Amount::MAX, |product| product / 10_000);
            let amount = ratio.min(pool.spec.per_gift_max).min(pool.spec.per_donor_max - already).min(pool.left());
            if amount > 0 {
                let value = value_of(pool.spec.asset, amount)?;
                matches.push(Match { pool: pool.id, asset: pool.spec.asset, amount, value });
            }
        }
        let id = self.state.next_donation;
        let to_campaign = |asset| campaign_account(gift.campaign, asset);
        let mut legs = Vec::with_capacity(3 + matches.len());
        if let Source::Deposit { .. } = source {
            // What came in is the gift and its tip.
            let amount = gift.gross + gift.tip;
            legs.push(Leg { debit: custody(gift.asset), credit: available(donor, gift.asset), amount, code: TransferCode(ledger_api::wallet::DEPOSIT) });
        }
        legs.push(Leg { debit: available(donor, received), credit: to_campaign(received), amount: received_amount, code: TransferCode(api::DONATION) });
        if gift.tip > 0 {
            legs.push(Leg { debit: available(donor, gift.asset), credit: to_campaign(gift.asset), amount: gift.tip, code: TransferCode(api::PLATFORM_TIP) });
        }
        for matched in &matches {
            legs.push(Leg {
                debit: pool_account(matched.pool, matched.asset),
                credit: to_campaign(matched.asset),
                amount: matched.amount,
                code: TransferCode(api::MATCH),
            });
        }
        let (organiser, fee) = (campaign.organiser, fee_of(received_amount, campaign.fee_bps));
        if let Some((_, settle)) = conversion {
            // Every check made: the donor's side is there (convert checked
            // the gross, and the tip above), the house's is held.
            settle(kernel)?;
        }
        kernel.transfer_all(&legs, &format_compact!("donation:{id}"), at_ms).map_err(refusal)?;
        kernel.remember(digest, fingerprint, Recorded { kind: DONATION_RECORD, id }).map_err(refusal)?;
        // Nothing fails from here.
        self.state.next_donation += 1;
        self.changes.counters = true;
        let year = year_of(at_ms);
        let number = self.state.receipts.entry((organiser, year)).or_default();
        *number += 1;
        let receipt = ReceiptNumber { organiser, year, number: *number };
        let donation = Donation {
            id,
            donor,
            gift: gift.clone(),
            source,
            fee,
            net: received_amount - fee,
            value,
            matches,
            receipt,
            status: DonationStatus::Held,
            created_ms: at_ms,
            settled_ms: None,
            converted,
        };
        for matched in &donation.matches {
            let pool = self.state.pools.get_mut(&matched.pool).expect("matched from it");
            pool.reserved += matched.amount;
            *self.state.matched.entry((matched.pool, donor)).or_default() += matched.amount;
            self.changes.pools.push(*pool);
        }
        let campaign = self.state.campaigns.get_mut(&gift.campaign).expect("found above");
        campaign.raised = campaign.raised.saturating_add(donation.value_with_matches());
        campaign.donations = campaign.donations.saturating_add(1);
        totals_mut(campaign, received).given += received_amount;
        totals_mut(campaign, gift.asset).tips += gift.tip;
        for matched in &donation.matches {
            totals_mut(campaign, matched.asset).matched += matched.amount;
        }
        self.changes.campaigns.push(campaign.clone());
        self.changes.donations.push(donation.clone());
        self.by_campaign.insert((gift.campaign, id));
        self.state.held.insert(id, donation);
        Ok(Outcome::Donated(id))
    }

    fn fund_pool(
        &mut self,
        kernel: &mut Kernel,
        sponsor: UserId,
        spec: &PoolSpec,
        key: &str,
        at_ms: TimestampMs,
        known_key: Option<Digest>,
    ) -> Result<Outcome, LedgerError> {
        ledger_core::check_key(key).map_err(refusal)?;
        let digest = known_key.or_else(|| pool_key(sponsor, key)).expect("a checked key has a digest");
        // Every term of the pool: the key again with another ratio, cap or window is DUPLICATE.
        let fields: [&[u8]; 8] = [
            &spec.campaign.to_le_bytes(),
            &spec.asset.to_le_bytes(),
            &spec.ratio_bps.to_le_bytes(),
            &spec.per_gift_max.to_le_bytes(),
            &spec.per_donor_max.to_le_bytes(),
            &spec.total.to_le_bytes(),
            &spec.starts_ms.to_le_bytes(),
            &spec.ends_ms.to_le_bytes(),
        ];
        let fingerprint = match kernel.idempotent(&digest, &fields).map_err(refusal)? {
            Idempotent::Replay(recorded) if recorded.kind == POOL_RECORD => return Ok(Outcome::PoolFunded(recorded.id)),
            Idempotent::Replay(_) => return Err(LedgerError::Duplicate),
            Idempotent::New(fingerprint) => fingerprint,
        };
        let campaign = self.campaign(spec.campaign)?;
        if !matches!(campaign.status, CampaignStatus::Draft | CampaignStatus::Active) {
            return Err(LedgerError::CampaignClosed { campaign: campaign.id, why: "its deadline has passed".into() });
        }
        if !campaign.spec.accepted.contains(&spec.asset) {
            return Err(bad(format!("campaign {} does not accept asset {}: a pool matches in an asset the campaign takes", campaign.id, spec.asset)));
        }
        if !(1..=RATIO_BPS_MAX).contains(&spec.ratio_bps) {
            return Err(bad(format!("a match is 1 to {RATIO_BPS_MAX} basis points of a gift (10000 is one for one)")));
        }
        for (what, amount) in [("its total", spec.total), ("the most per gift", spec.per_gift_max), ("the most per donor", spec.per_donor_max)] {
            if !(1..=AMOUNT_BOUND).contains(&amount) {
                return Err(bad(format!("a pool's {what} is 1 to {AMOUNT_BOUND} minor units")));
            }
        }
        if spec.starts_ms >= spec.ends_ms || spec.ends_ms <= at_ms {
            return Err(bad("a pool's window starts before it ends, and ends in the future"));
        }
        if self.campaign_pools(campaign.id).count() >= POOLS_PER_CAMPAIGN_MAX {
            return Err(LedgerError::LimitReached(format!("{POOLS_PER_CAMPAIGN_MAX} matching pools per campaign")));
        }
        let id = self.state.next_pool;
        let leg =
            Leg { debit: available(sponsor, spec.asset), credit: pool_account(id, spec.asset), amount: spec.total, code: TransferCode(api::POOL_FUNDING) };
        kernel.transfer(leg, format_compact!("pool:{id}"), at_ms).map_err(refusal)?;
        kernel.remember(digest, fingerprint, Recorded { kind: POOL_RECORD, id }).map_err(refusal)?;
        self.state.next_pool += 1;
        self.changes.counters = true;
        let pool = Pool { id, sponsor, spec: *spec, reserved: 0, returned: 0, created_ms: at_ms, closed_ms: None };
        self.pool_ends.insert((spec.ends_ms, id));
        self.pools_by_campaign.insert((spec.campaign, id));
        self.changes.pools.push(pool);
        self.state.pools.insert(id, pool);
        Ok(Outcome::PoolFunded(id))
    }

    fn pay_out(&mut self, kernel: &mut Kernel, id: CampaignId, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let campaign = self.campaign(id)?;
        let last = payout_kind(campaign, at_ms)?;
        let organiser = campaign.organiser;
        let ids: Vec<DonationId> = self.by_campaign.range((id, 0)..=(id, DonationId::MAX)).map(|(_, donation)| *donation).collect();
        let mut lines: Vec<PayoutLine> = campaign.spec.accepted.iter().map(|asset| PayoutLine { asset: *asset, net: 0, fees: 0, tips: 0 }).collect();
        let line = |lines: &[PayoutLine], asset: AssetId| -> usize { lines.iter().position(|line| line.asset == asset).expect("an accepted asset") };
        for donation in ids.iter().map(|id| &self.state.held[id]) {
            let at = line(&lines, donation.received().0);
            lines[at].net += donation.net;
            lines[at].fees += donation.fee;
            let at = line(&lines, donation.gift.asset);
            lines[at].tips += donation.gift.tip;
            for matched in &donation.matches {
                let at = line(&lines, matched.asset);
                lines[at].net += matched.amount;
            }
        }
        lines.retain(|line| line.net + line.fees + line.tips > 0);
        let mut legs = Vec::with_capacity(lines.len() * 3);
        for line in &lines {
            let from = campaign_account(id, line.asset);
            for (to, amount, code) in [
                (available(organiser, line.asset), line.net, api::PAYOUT),
                (revenue(line.asset), line.fees, api::DONATION_FEE),
                (revenue(line.asset), line.tips, api::PLATFORM_TIP),
            ] {
                if amount > 0 {
                    legs.push(Leg { debit: from, credit: to, amount, code: TransferCode(code) });
                }
            }
        }
        let payout_id = self.state.next_payout;
        kernel.transfer_all(&legs, &format_compact!("payout:{payout_id}"), at_ms).map_err(refusal)?;
        self.state.next_payout += 1;
        self.changes.counters = true;
        for donation_id in &ids {
            let mut donation = self.state.held.remove(donation_id).expect("indexed");
            self.by_campaign.remove(&(id, *donation_id));
            donation.status = DonationStatus::PaidOut;
            donation.settled_ms = Some(at_ms);
            self.changes.donations.push(donation);
        }
        let campaign = self.state.campaigns.get_mut(&id).expect("found above");
        for line in &lines {
            let totals = totals_mut(campaign, line.asset);
            totals.paid_out += line.net;
            totals.fees += line.fees + line.tips;
        }
        campaign.last_payout_ms = Some(at_ms);
        self.changes.campaigns.push(campaign.clone());
        let payout = Payout { id: payout_id, campaign: id, organiser, donations: ids.len() as u32, lines, last, at_ms };
        self.changes.payouts.push(payout.clone());
        if last {
            self.close_campaign(kernel, id, CampaignStatus::PaidOut, false, at_ms)?;
        }
        Ok(Outcome::PaidOut(Box::new(payout)))
    }

    fn tick(&mut self, kernel: &mut Kernel, at_ms: TimestampMs) -> Result<Outcome, LedgerError> {
        let due: Vec<CampaignId> = self.deadlines.iter().take_while(|(at, _)| *at <= at_ms).take(CAMPAIGNS_ENDED_PER_TICK).map(|(_, id)| *id).collect();
        let (mut ended, mut refunded, mut pools_closed) = (Vec::new(), Vec::new(), Vec::new());
        for id in due {
            let campaign = self.state.campaigns.get_mut(&id).expect("indexed");
            self.deadlines.remove(&(campaign.spec.deadline_ms, id));
            campaign.status = CampaignStatus::Ended;
            campaign.ended_ms = Some(at_ms);
            let missed = campaign.spec.model == FundingModel::AllOrNothing && !campaign.goal_met();
            self.changes.campaigns.push(campaign.clone());
            if missed {
                self.refund_all(kernel, id, at_ms)?;
                pools_closed.extend(self.close_campaign(kernel, id, CampaignStatus::Refunded, false, at_ms)?);
                refunded.push(id);
            } else {
                // Its pools match nothing more: what they have left goes back now.
                let pools: Vec<PoolId> = self.campaign_pools(id).filter(|pool| pool.closed_ms.is_none()).map(|pool| pool.id).collect();
                for pool in pools {
                    self.close_pool(kernel, pool, at_ms)?;
                    pools_closed.push(pool);
                }
                ended.push(id);
            }
        }
        let pools: Vec<PoolId> = self.pool_ends.iter().take_while(|(at, _)| *at <= at_ms).take(POOLS_CLOSED_PER_TICK).map(|(_, id)| *id).collect();
        for pool in pools {
            self.close_pool(kernel, pool, at_ms)?;
            pools_closed.push(pool);
        }
        pools_closed.sort_unstable();
        Ok(Outcome::Ticked { ended, refunded, pools_closed })
    }

    /// Gives back every held gift of a campaign: each gift and its tip to
    /// its donor, each match to its pool (or its sponsor, the pool closed).
    fn refund_all(&mut self, kernel: &mut Kernel, id: CampaignId, at_ms: TimestampMs) -> Result<u32, LedgerError> {
        let ids: Vec<DonationId> = self.by_campaign.range((id, 0)..=(id, DonationId::MAX)).map(|(_, donation)| *donation).collect();
        for donation_id in &ids {
            let donation = &self.state.held[donation_id];
            let reference = format_compact!("donation:{donation_id}");
            // What the campaign received: converted at receipt, the proceeds
            // go back (the conversion stands), the tip in the gift's asset.
            let (received, amount) = donation.received();
            let (asset, tip) = (donation.gift.asset, donation.gift.tip);
            let backs = if received == asset { vec![(asset, amount + tip)] } else { vec![(received, amount), (asset, tip)] };
            for (asset, amount) in backs.into_iter().filter(|(_, amount)| *amount > 0) {
                let back =
                    Leg { debit: campaign_account(id, asset), credit: available(donation.donor, asset), amount, code: TransferCode(api::DONATION_REFUND) };
                // Each of these moves what the campaign's account holds for this gift (the invariant).
                kernel.transfer(back, reference.clone(), at_ms).map_err(refusal)?;
            }
            for matched in &donation.matches {
                let pool = &self.state.pools[&matched.pool];
                let to = if pool.closed_ms.is_some() { available(pool.sponsor, matched.asset) } else { pool_account(pool.id, matched.asset) };
                let leg = Leg { debit: campaign_account(id, matched.asset), credit: to, amount: matched.amount, code: TransferCode(api::MATCH_RELEASE) };
                kernel.transfer(leg, reference.clone(), at_ms).map_err(refusal)?;
            }
            let mut donation = self.state.held.remove(donation_id).expect("indexed");
            self.by_campaign.remove(&(id, *donation_id));
            let campaign = self.state.campaigns.get_mut(&id).expect("its gifts are held");
            campaign.raised -= donation.value_with_matches();
            campaign.donations -= 1;
            totals_mut(campaign, received).refunded += amount;
            totals_mut(campaign, asset).refunded += tip;
            for matched in &donation.matches {
                totals_mut(campaign, matched.asset).released += matched.amount;
                let pool = self.state.pools.get_mut(&matched.pool).expect("its pool");
                pool.reserved -= matched.amount;
                if pool.closed_ms.is_some() {
                    // Back to the sponsor directly: counted as returned.
                    pool.returned += matched.amount;
                }
                self.changes.pools.push(*pool);
                let key = (matched.pool, donation.donor);
                let reserved = self.state.matched.get_mut(&key).expect("reserved with the gift");
                *reserved -= matched.amount;
                if *reserved == 0 {
                    self.state.matched.remove(&key);
                }
            }
            donation.status = DonationStatus::Refunded;
            donation.settled_ms = Some(at_ms);
            self.changes.donations.push(donation);
        }
        Ok(ids.len() as u32)
    }

    /// What a closed pool has left goes back to its sponsor.
    fn close_pool(&mut self, kernel: &mut Kernel, id: PoolId, at_ms: TimestampMs) -> Result<(), LedgerError> {
        let pool = self.state.pools.get_mut(&id).expect("indexed");
        let left = pool.left();
        if left > 0 {
            let leg = Leg {
                debit: pool_account(id, pool.spec.asset),
                credit: available(pool.sponsor, pool.spec.asset),
                amount: left,
                code: TransferCode(api::POOL_RETURN),
            };
            kernel.transfer(leg, format_compact!("pool:{id}"), at_ms).map_err(refusal)?;
        }
        pool.returned += left;
        pool.closed_ms = Some(at_ms);
        self.pool_ends.remove(&(pool.spec.ends_ms, id));
        self.changes.pools.push(*pool);
        Ok(())
    }

    /// A campaign paid out or refunded leaves memory with its pools (each
    /// closed first: what is left back to its sponsor); the pools it closed.
    fn close_campaign(
        &mut self,
        kernel: &mut Kernel,
        id: CampaignId,
        status: CampaignStatus,
        cancelled: bool,
        at_ms: TimestampMs,
    ) -> Result<Vec<PoolId>, LedgerError> {
        let pools: Vec<PoolId> = self.campaign_pools(id).map(|pool| pool.id).collect();
        let mut closed = Vec::new();
        for pool in &pools {
            if self.state.pools[pool].closed_ms.is_none() {
                self.close_pool(kernel, *pool, at_ms)?;
                closed.push(*pool);
            }
        }
        for pool in &pools {
            self.state.pools.remove(pool);
            self.pools_by_campaign.remove(&(id, *pool));
            let donors: Vec<(PoolId, UserId)> = self.state.matched.range((*pool, UserId::MIN)..=(*pool, UserId::MAX)).map(|(key, _)| *key).collect();
            for key in donors {
                self.state.matched.remove(&key);
            }
        }
        let mut campaign = self.state.campaigns.remove(&id).expect("found by the caller");
        self.deadlines.remove(&(campaign.spec.deadline_ms, id));
        if let Some(count) = self.per_organiser.get_mut(&campaign.organiser) {
            *count -= 1;
            if *count == 0 {
                self.per_organiser.remove(&campaign.organiser);
            }
        }
        campaign.status = status;
        campaign.cancelled = cancelled;
        campaign.closed_ms = Some(at_ms);
        self.changes.campaigns.push(campaign);
        Ok(closed)
    }
}

/// Whether a payout of `campaign` may be made at `at_ms`, and if so
/// whether it is the last (the campaign has ended).
fn payout_kind(campaign: &Campaign, at_ms: TimestampMs) -> Result<bool, LedgerError> {
    match campaign.payout_due(at_ms) {
        Some(kind) => Ok(kind == PayoutKind::Last),
        None if campaign.status == CampaignStatus::Active && campaign.spec.payout_every_ms.is_some() => {
            Err(bad(format!("campaign {}'s next interim payout is at {} ms since the epoch", campaign.id, campaign.next_payout_ms().unwrap_or(0))))
        }
        None => Err(bad(format!("campaign {} is paid out after its deadline (and an all-or-nothing one only with its goal met)", campaign.id))),
    }
}

/// What a gift's idempotency key binds: the donor too (a deposit's
/// reference is the asset's, not the donor's), and the quote a gift
/// converted at receipt takes.
struct GiftFields(Vec<Vec<u8>>);

fn gift_fields(donor: UserId, gift: &Gift, quote: Option<QuoteId>) -> GiftFields {
    let mut fields =
        vec![donor.to_le_bytes().to_vec(), gift.campaign.to_le_bytes().to_vec(), gift.asset.to_le_bytes().to_vec(), gift.gross.to_le_bytes().to_vec()];
    fields.push(gift.tip.to_le_bytes().to_vec());
    fields.extend(quote.map(|quote| quote.to_le_bytes().to_vec()));
    GiftFields(fields)
}

impl GiftFields {
    fn each(&self) -> Vec<&[u8]> {
        self.0.iter().map(Vec::as_slice).collect()
    }
}

fn check_display(display: &Display) -> Result<(), LedgerError> {
    if let Some(name) = &display.name {
        check_text("the name shown", name, 1, NAME_BYTES_MAX, false)?;
    }
    Ok(())
}

fn totals_mut(campaign: &mut Campaign, asset: AssetId) -> &mut AssetTotals {
    campaign.totals.iter_mut().find(|totals| totals.asset == asset).expect("an accepted asset")
}
