//! Donations (the white paper's fifth use case): organisers the operators
//! verify open campaigns with a goal in a reference asset and a deadline,
//! keeping what they raise or all or nothing; donors give from their
//! balance or from outside (a deposit naming the campaign), each gift
//! valued in the reference asset at the last trade price when it arrives,
//! receipted with a number in its organiser's sequence for the year, and
//! matched by sponsors' pools. What a campaign received waits in its own
//! account until the operators pay it out (four-eyes) or it is refunded
//! (an all-or-nothing goal missed, a cancellation), donation by donation.
//!
//! Amounts are minor units of their asset; the goal and reference values
//! are minor units of the campaign's reference asset.

use serde::{Deserialize, Serialize};

use crate::convert::QuoteId;
use crate::operators::ActionKind;
use crate::{Amount, AssetId, TimestampMs, UserId};

pub type CampaignId = u64;
pub type DonationId = u64;
pub type PoolId = u64;
pub type PayoutId = u64;

/// A campaign's (`Entity(campaign)`): what its donations and matches
/// brought and what was neither paid out nor refunded yet.
pub const CAMPAIGN: u8 = 18;
/// A matching pool's (`Entity(pool)`): the sponsor's money not yet
/// reserved by a match nor given back.
pub const MATCH_POOL: u8 = 19;

pub(crate) fn purpose_name(purpose: u8) -> Option<&'static str> {
    Some(match purpose {
        CAMPAIGN => "campaign",
        MATCH_POOL => "match pool",
        _ => return None,
    })
}

/// A gift, from the donor to the campaign.
pub const DONATION: u16 = 701;
/// A donor's tip to the platform: to the campaign with the gift, to the
/// house's revenue with its payout.
pub const PLATFORM_TIP: u16 = 702;
/// A sponsor's match, from its pool to the campaign.
pub const MATCH: u16 = 703;
/// A gift and its tip back to the donor.
pub const DONATION_REFUND: u16 = 704;
/// A refunded gift's match, back to its pool (or its sponsor, the pool closed).
pub const MATCH_RELEASE: u16 = 705;
/// What the campaign raised, less the platform's fee, to its organiser.
pub const PAYOUT: u16 = 706;
/// The platform's fee on the gifts paid out, to the house's revenue.
pub const DONATION_FEE: u16 = 707;
/// A sponsor's money into its matching pool.
pub const POOL_FUNDING: u16 = 708;
/// What a closed pool did not match, back to its sponsor.
pub const POOL_RETURN: u16 = 709;

pub(crate) fn code_name(code: u16) -> Option<&'static str> {
    Some(match code {
        DONATION => "DONATION",
        PLATFORM_TIP => "PLATFORM_TIP",
        MATCH => "MATCH",
        DONATION_REFUND => "DONATION_REFUND",
        MATCH_RELEASE => "MATCH_RELEASE",
        PAYOUT => "DONATION_PAYOUT",
        DONATION_FEE => "DONATION_FEE",
        POOL_FUNDING => "MATCH_POOL_FUNDING",
        POOL_RETURN => "MATCH_POOL_RETURN",
        _ => return None,
    })
}

/// The platform's fee is at most 10% of a gift.
pub const FEE_BPS_MAX: u32 = 1_000;
/// A match is at most ten times the gift (100,000 basis points).
pub const RATIO_BPS_MAX: u32 = 100_000;
/// The most assets a campaign accepts, pools it has, bytes of a title,
/// a story, a name and a message.
pub const ACCEPTED_MAX: usize = 16;
pub const POOLS_PER_CAMPAIGN_MAX: usize = 8;
pub const TITLE_BYTES_MAX: usize = 120;
pub const STORY_BYTES_MAX: usize = 20_000;
pub const NAME_BYTES_MAX: usize = 64;
pub const MESSAGE_BYTES_MAX: usize = 500;
/// Interim payouts no more often than daily.
pub const PAYOUT_EVERY_MS_MIN: u64 = 86_400_000;
/// The largest goal, gift, tip or pool (10^30 minor units): sums and
/// products with a ratio stay inside `Amount`.
pub const AMOUNT_BOUND: Amount = 1_000_000_000_000_000_000_000_000_000_000;

/// The platform's fee on a gift of `gross` at `fee_bps`, rounded down (in
/// the donor's favour): what the console shows before giving and what the
/// ledger takes are this one function.
pub fn fee_of(gross: Amount, fee_bps: u32) -> Amount {
    gross * Amount::from(fee_bps) / 10_000
}

/// The UTC calendar year of a time: receipts are numbered per organiser and year.
pub fn year_of(at_ms: TimestampMs) -> u16 {
    // Howard Hinnant's civil_from_days, on days since 1970-01-01.
    let days = (at_ms / 86_400_000) as i64;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    u16::try_from(year).unwrap_or(u16::MAX)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum OrganiserKind {
    /// A charity, association or foundation (its registration number given).
    Organisation,
    /// A person raising for themselves or someone they name.
    Person,
}

/// A beneficiary the operators verified, as receipts name it.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Organiser {
    pub name: String,
    pub kind: OrganiserKind,
    /// ISO 3166-1 numeric.
    pub country: u16,
    /// The charity's registration number; empty for a person.
    pub registration: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum FundingModel {
    /// The organiser is paid what was given, goal met or not.
    KeepWhatYouRaise,
    /// Gifts wait until the deadline: paid out if the goal is met, refunded otherwise.
    AllOrNothing,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct CampaignSpec {
    pub title: String,
    pub story: String,
    /// What the goal and every gift's value are counted in.
    pub reference_asset: AssetId,
    pub goal: Amount,
    pub deadline_ms: TimestampMs,
    /// The assets it takes (ascending, no repeats), the reference among them.
    pub accepted: Vec<AssetId>,
    pub model: FundingModel,
    /// Keep-what-you-raise only: interim payouts may be made this often
    /// before the deadline (at least daily).
    pub payout_every_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum CampaignStatus {
    /// Its organiser prepares it: no gifts yet.
    Draft,
    /// Taking gifts until its deadline.
    Active,
    /// Past its deadline (goal met, or keeping what it raised): waiting for its payout.
    Ended,
    /// Its organiser was paid what it raised.
    PaidOut,
    /// Its all-or-nothing goal was missed, or it was cancelled: every gift
    /// not paid out went back.
    Refunded,
}

/// One asset's money through a campaign. What it holds now is
/// `given + tips + matched - refunded - released - paid_out - fees`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct AssetTotals {
    pub asset: AssetId,
    /// Gifts received (gross), their tips, and sponsors' matches.
    pub given: Amount,
    pub tips: Amount,
    pub matched: Amount,
    /// Gifts and tips given back, and matches released to their pools.
    pub refunded: Amount,
    pub released: Amount,
    /// To the organiser; to the house's revenue (fees and tips).
    pub paid_out: Amount,
    pub fees: Amount,
}

impl AssetTotals {
    pub fn held(&self) -> Amount {
        self.given + self.tips + self.matched - self.refunded - self.released - self.paid_out - self.fees
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Campaign {
    pub id: CampaignId,
    pub organiser: UserId,
    pub spec: CampaignSpec,
    pub status: CampaignStatus,
    /// The platform's fee on its gifts, in basis points: the operators'
    /// setting when it was created.
    pub fee_bps: u32,
    /// Gifts and matches at their reference values, less those refunded:
    /// what counts towards the goal.
    pub raised: Amount,
    /// Gifts received and not refunded.
    pub donations: u32,
    /// Per accepted asset, in `spec.accepted`'s order.
    pub totals: Vec<AssetTotals>,
    pub created_ms: TimestampMs,
    pub published_ms: Option<TimestampMs>,
    pub ended_ms: Option<TimestampMs>,
    /// Paid out or refunded in full.
    pub closed_ms: Option<TimestampMs>,
    /// Cancelled by its organiser or stopped by the operators.
    pub cancelled: bool,
    /// The last payout, and when the next interim one may be made.
    pub last_payout_ms: Option<TimestampMs>,
}

impl Campaign {
    /// Whether a payout may be made at `at_ms`: after the deadline when
    /// it kept what it raised or met its all-or-nothing goal (the last
    /// payout), or on its interim schedule.
    pub fn payout_due(&self, at_ms: TimestampMs) -> Option<PayoutKind> {
        match self.status {
            CampaignStatus::Ended if self.spec.model == FundingModel::KeepWhatYouRaise || self.goal_met() => Some(PayoutKind::Last),
            CampaignStatus::Active if self.next_payout_ms().is_some_and(|next| next <= at_ms) => Some(PayoutKind::Interim),
            _ => None,
        }
    }

    pub fn goal_met(&self) -> bool {
        self.raised >= self.spec.goal
    }

    pub fn totals(&self, asset: AssetId) -> Option<&AssetTotals> {
        self.totals.iter().find(|totals| totals.asset == asset)
    }

    /// When an interim payout may next be made (keep-what-you-raise with a schedule).
    pub fn next_payout_ms(&self) -> Option<TimestampMs> {
        let every = self.spec.payout_every_ms?;
        Some(self.last_payout_ms.or(self.published_ms)?.saturating_add(every))
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PayoutKind {
    /// Before the deadline, on the campaign's schedule.
    Interim,
    /// After the deadline: the campaign is then paid out.
    Last,
}

/// How the public sees a gift on the campaign's wall. The organiser sees
/// the donor's name unless they are anonymous to it too; compliance
/// always knows the donor.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Display {
    /// The name shown; None is "Anonymous".
    pub name: Option<String>,
    pub amount_shown: bool,
    /// Whether the organiser may see who gave (their account's name and email).
    pub known_to_organiser: bool,
}

/// What a donor gives: `gross` to the campaign, of which the platform's
/// fee is taken at payout, and a `tip` to the platform on top (never
/// preselected: the console starts it at zero).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Gift {
    pub campaign: CampaignId,
    pub asset: AssetId,
    pub gross: Amount,
    pub tip: Amount,
    pub message: String,
    pub display: Display,
}

/// A receipt's number: the `number`th gift of `year` to `organiser`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ReceiptNumber {
    pub organiser: UserId,
    pub year: u16,
    pub number: u32,
}

impl std::fmt::Display for ReceiptNumber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}-{}-{:06}", self.organiser, self.year, self.number)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Source {
    /// From the donor's balance.
    Balance,
    /// From outside: the deposit the operators credited, by its reference.
    Deposit { reference: String },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum DonationStatus {
    /// In the campaign's account.
    Held,
    PaidOut,
    Refunded,
}

/// A sponsor's match of a gift.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Match {
    pub pool: PoolId,
    pub asset: AssetId,
    pub amount: Amount,
    /// In the reference asset, at receipt.
    pub value: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Donation {
    pub id: DonationId,
    pub donor: UserId,
    pub gift: Gift,
    pub source: Source,
    /// The platform's fee on the gift (`fee_of`), and what the organiser gets.
    pub fee: Amount,
    pub net: Amount,
    /// The gift in the reference asset, at the last trade price when it came.
    pub value: Amount,
    pub matches: Vec<Match>,
    pub receipt: ReceiptNumber,
    pub status: DonationStatus,
    pub created_ms: TimestampMs,
    pub settled_ms: Option<TimestampMs>,
    /// What the gift's gross became, converted at receipt.
    pub converted: Option<Converted>,
}

/// A gift converted at receipt through convert: the quote accepted with it
/// (the donor's conversion of that id) and what the campaign received.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Converted {
    pub quote: QuoteId,
    /// The campaign's reference asset.
    pub asset: AssetId,
    pub amount: Amount,
}

impl Donation {
    /// The gift and its matches in the reference asset.
    pub fn value_with_matches(&self) -> Amount {
        self.value + self.matches.iter().map(|matched| matched.value).sum::<Amount>()
    }

    /// The asset and amount the campaign holds for the gift, its tip
    /// aside: what its gross became when converted at receipt, else the
    /// gross itself. The fee and the net are of this.
    pub fn received(&self) -> (AssetId, Amount) {
        match self.converted {
            Some(converted) => (converted.asset, converted.amount),
            None => (self.gift.asset, self.gift.gross),
        }
    }
}

/// A sponsor's matching pool for one campaign: each gift in its window is
/// matched at `ratio_bps` (10,000 is one for one) of the gift (in the
/// pool's asset: the gift itself, or its reference value when the pool is
/// in the reference asset), capped per gift, per donor and by what is left.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PoolSpec {
    pub campaign: CampaignId,
    pub asset: AssetId,
    pub ratio_bps: u32,
    pub per_gift_max: Amount,
    pub per_donor_max: Amount,
    /// What the sponsor puts in: the most it matches in all.
    pub total: Amount,
    pub starts_ms: TimestampMs,
    pub ends_ms: TimestampMs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Pool {
    pub id: PoolId,
    pub sponsor: UserId,
    pub spec: PoolSpec,
    /// Matched and not released (a refunded gift gives its match back).
    pub reserved: Amount,
    /// Given back to the sponsor when it closed.
    pub returned: Amount,
    pub created_ms: TimestampMs,
    /// Its window ended or its campaign did: what was left went back.
    pub closed_ms: Option<TimestampMs>,
}

impl Pool {
    pub fn left(&self) -> Amount {
        self.spec.total - self.reserved - self.returned
    }
}

/// One asset of a payout.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct PayoutLine {
    pub asset: AssetId,
    /// To the organiser: gifts less fees, and matches.
    pub net: Amount,
    /// The platform's fees and the donors' tips, to the house's revenue.
    pub fees: Amount,
    pub tips: Amount,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Payout {
    pub id: PayoutId,
    pub campaign: CampaignId,
    pub organiser: UserId,
    pub donations: u32,
    pub lines: Vec<PayoutLine>,
    /// The campaign's last: it had ended.
    pub last: bool,
    pub at_ms: TimestampMs,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Command {
    /// Verifies a user as an organiser (or with None, no longer one:
    /// campaigns they have go on).
    SetOrganiser { user: UserId, organiser: Option<Organiser> },
    /// The platform's fee on the gifts of campaigns created from now on.
    SetDonationFee { fee_bps: u32 },
    /// An organiser's new campaign, a draft.
    CreateCampaign { organiser: UserId, spec: Box<CampaignSpec> },
    /// The draft starts taking gifts.
    PublishCampaign { organiser: UserId, campaign: CampaignId },
    /// The organiser cancels: every gift not paid out goes back.
    CancelCampaign { organiser: UserId, campaign: CampaignId },
    /// The operators stop a campaign (fraud, a complaint): as a cancel.
    StopCampaign { campaign: CampaignId },
    /// A gift from the donor's balance; idempotent by the donor's `key`.
    Donate { donor: UserId, gift: Box<Gift>, key: String },
    /// A gift from outside: the operators credit the deposit (custody to
    /// the donor) and give it, in one step; idempotent by the asset's
    /// `reference`, as any deposit (a deposit credited once either way).
    DepositDonation { donor: UserId, gift: Box<Gift>, reference: String },
    /// A sponsor's matching pool, paid in from its balance; idempotent by
    /// the sponsor's `key`.
    FundPool { sponsor: UserId, spec: PoolSpec, key: String },
    /// Pays the campaign's held gifts to its organiser (after the
    /// deadline, or an interim payout on its schedule).
    PayOut { campaign: CampaignId },
    /// The ledger's own clock: ends campaigns at their deadline (refunding
    /// a missed all-or-nothing goal) and closes pools whose window passed.
    Tick,
    /// A gift from the donor's balance converted at receipt: the donor's
    /// open convert `quote`, from the gift's asset and for its `gross`
    /// into the campaign's reference asset, is accepted with it, and the
    /// campaign receives what the quote gives (the tip stays in the gift's
    /// asset); idempotent by the donor's `key`, as `Donate`.
    DonateConverted { donor: UserId, gift: Box<Gift>, quote: QuoteId, key: String },
}

/// Organisers and the fee are the operators'; so are stopping a campaign,
/// crediting a deposit given to one, and every payout.
pub(crate) fn operator_action(command: &Command) -> Option<ActionKind> {
    match command {
        Command::SetOrganiser { .. } | Command::SetDonationFee { .. } | Command::StopCampaign { .. } => Some(ActionKind::Organiser),
        Command::DepositDonation { .. } => Some(ActionKind::Deposit),
        Command::PayOut { .. } => Some(ActionKind::DonationPayout),
        _ => None,
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    OrganiserSet {
        user: UserId,
        organiser: bool,
    },
    DonationFeeSet(u32),
    CampaignCreated(CampaignId),
    CampaignPublished(CampaignId),
    /// Cancelled or stopped: the gifts refunded.
    CampaignCancelled {
        campaign: CampaignId,
        refunded: u32,
    },
    /// The gift received (its receipt and matches are in its record).
    Donated(DonationId),
    PoolFunded(PoolId),
    PaidOut(Box<Payout>),
    Ticked {
        ended: Vec<CampaignId>,
        refunded: Vec<CampaignId>,
        pools_closed: Vec<PoolId>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Query {
    Organiser(UserId),
    Organisers,
    DonationFee,
    /// Campaigns, of one organiser or all, of one status or any, newest first.
    Campaigns {
        organiser: Option<UserId>,
        status: Option<CampaignStatus>,
        limit: u32,
    },
    Campaign(CampaignId),
    /// A campaign's gifts, newest first, before id `before` (0: from the newest).
    CampaignDonations {
        campaign: CampaignId,
        before: DonationId,
        limit: u32,
    },
    Donation(DonationId),
    /// A donor's gifts, newest first, before id `before` (0: from the newest).
    DonorDonations {
        donor: UserId,
        before: DonationId,
        limit: u32,
    },
    Receipt(ReceiptNumber),
    Pools(CampaignId),
    /// A campaign's payouts, newest first.
    Payouts {
        campaign: CampaignId,
        limit: u32,
    },
    /// Campaigns whose payout the operators may make at `at_ms` (ended, or
    /// due an interim payout), oldest first.
    PayoutsDue {
        at_ms: TimestampMs,
    },
    /// Every campaign's gifts after id `after`, oldest first: what the
    /// gateway's webhook outbox follows.
    DonationsAfter {
        after: DonationId,
        limit: u32,
    },
    /// Every campaign's payouts after id `after`, oldest first.
    PayoutsAfter {
        after: PayoutId,
        limit: u32,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Answer {
    Organiser(Option<Organiser>),
    Organisers(Vec<(UserId, Organiser)>),
    DonationFee(u32),
    Campaigns(Vec<Campaign>),
    Campaign(Option<Box<Campaign>>),
    Donations(Vec<Donation>),
    Donation(Option<Box<Donation>>),
    Pools(Vec<Pool>),
    Payouts(Vec<Payout>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn years_turn_at_midnight_utc() {
        assert_eq!(year_of(0), 1970);
        // 2026-12-31T23:59:59.999Z and a millisecond later.
        assert_eq!(year_of(1_798_761_599_999), 2026);
        assert_eq!(year_of(1_798_761_600_000), 2027);
        // 2024 was a leap year: 29 February and 31 December.
        assert_eq!(year_of(1_709_164_800_000), 2024);
        assert_eq!(year_of(1_735_689_599_999), 2024);
        assert_eq!(year_of(1_735_689_600_000), 2025);
    }

    #[test]
    fn the_fee_is_rounded_down() {
        assert_eq!(fee_of(10_000, 250), 250);
        assert_eq!(fee_of(99, 250), 2);
        assert_eq!(fee_of(39, 250), 0);
        assert_eq!(fee_of(AMOUNT_BOUND, FEE_BPS_MAX), AMOUNT_BOUND / 10);
    }

    #[test]
    fn a_receipt_number_reads_organiser_year_sequence() {
        assert_eq!(ReceiptNumber { organiser: 42, year: 2026, number: 7 }.to_string(), "42-2026-000007");
    }
}
