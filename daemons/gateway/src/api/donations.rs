//! Donations: campaigns, gifts and their receipts, sponsors' matching
//! pools, payouts and refunds. The ledger decides every rule (who may
//! organise, the deadline, the caps, the fee, the receipt's number, the
//! value at the last trade price); this file maps decimals, emails and
//! times to the ledger's units and back, and keeps three views of a gift
//! apart: the public wall (the name the donor chose or "Anonymous", the
//! amount only when they show it), the organiser's (the donor's account
//! only when they agreed) and the donor's and the operators' (everything:
//! what compliance keeps).

use async_graphql::{Context, Enum, Error, Object, SimpleObject, ID};
use ledger_api::donations::{self as api, Command};
use ledger_api::{Answer, Outcome, Query};
use rust_decimal::Decimal;

use super::operators::{operate, user_by_email};
use super::tokenization::{amount_units, parse_id, time};
use super::{ask, at, caller, caller_id, coded, list_limit, now_ms, operator, run, services, unexpected, Catalog, DateTime, Dec};
use crate::users::Role;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum OrganiserKind {
    /// A charity, association or foundation.
    Organisation,
    /// A person raising for themselves or someone they name.
    Person,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum FundingModel {
    /// The organiser is paid what was given, goal met or not.
    KeepWhatYouRaise,
    /// Gifts wait for the deadline: paid out if the goal is met, refunded otherwise.
    AllOrNothing,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum CampaignStatus {
    Draft,
    Active,
    Ended,
    PaidOut,
    Refunded,
}

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
pub enum DonationStatus {
    /// In the campaign's account.
    Held,
    PaidOut,
    Refunded,
}

macro_rules! same_enum {
    ($from:ty => $to:ty { $($variant:ident),* }) => {
        impl From<$from> for $to {
            fn from(value: $from) -> $to {
                match value { $(<$from>::$variant => <$to>::$variant,)* }
            }
        }
    };
}

same_enum!(api::OrganiserKind => OrganiserKind { Organisation, Person });
same_enum!(OrganiserKind => api::OrganiserKind { Organisation, Person });
same_enum!(api::FundingModel => FundingModel { KeepWhatYouRaise, AllOrNothing });
same_enum!(FundingModel => api::FundingModel { KeepWhatYouRaise, AllOrNothing });
same_enum!(api::CampaignStatus => CampaignStatus { Draft, Active, Ended, PaidOut, Refunded });
same_enum!(CampaignStatus => api::CampaignStatus { Draft, Active, Ended, PaidOut, Refunded });
same_enum!(api::DonationStatus => DonationStatus { Held, PaidOut, Refunded });

/// A beneficiary the operators verified, as receipts name it.
#[derive(SimpleObject)]
pub struct Organiser {
    pub user: ID,
    pub name: String,
    pub kind: OrganiserKind,
    /// ISO 3166-1 numeric.
    pub country: i32,
    /// The charity's registration number; empty for a person.
    pub registration: String,
    /// The account's email: to the operators and the organiser themselves, never on a campaign's public page.
    pub email: Option<String>,
}

/// One asset's money through a campaign.
#[derive(SimpleObject)]
pub struct CampaignAsset {
    pub asset: String,
    /// Gifts received (before fees), tips to the platform, sponsors' matches.
    pub given: Dec,
    pub tips: Dec,
    pub matched: Dec,
    /// Gifts and tips given back, matches released to their pools.
    pub refunded: Dec,
    pub released: Dec,
    /// Paid to the organiser; fees and tips paid to the platform.
    pub paid_out: Dec,
    pub fees: Dec,
    /// What the campaign holds now.
    pub held: Dec,
}

#[derive(SimpleObject)]
pub struct Campaign {
    pub id: ID,
    pub organiser: Organiser,
    pub title: String,
    pub story: String,
    /// What the goal and every gift's value are counted in.
    pub reference_asset: String,
    pub goal: Dec,
    /// Gifts and matches at their value when they came, less those refunded.
    pub raised: Dec,
    /// `raised` over `goal`, from 0 (1 is the goal met; more when exceeded), 4 decimals.
    pub progress: Dec,
    pub deadline: DateTime,
    pub accepted_assets: Vec<String>,
    pub model: FundingModel,
    /// Keep-what-you-raise with interim payouts: how often, in seconds.
    pub payout_every_seconds: Option<i64>,
    pub status: CampaignStatus,
    pub cancelled: bool,
    /// The platform's fee on each gift, in basis points.
    pub fee_bps: i32,
    /// Gifts received and not refunded.
    pub donations: i32,
    pub assets: Vec<CampaignAsset>,
    pub created_at: DateTime,
    pub published_at: Option<DateTime>,
    pub ended_at: Option<DateTime>,
    pub closed_at: Option<DateTime>,
    pub last_payout_at: Option<DateTime>,
}

/// What a gift costs before it is given: the gift, the platform's fee out
/// of it, what the organiser gets, the tip on top, and the whole charge.
#[derive(SimpleObject)]
pub struct DonationTerms {
    pub asset: String,
    pub gross: Dec,
    pub fee: Dec,
    pub net: Dec,
    pub tip: Dec,
    /// Gross plus tip: what leaves the donor's balance.
    pub total: Dec,
    pub fee_bps: i32,
}

/// A sponsor's match of a gift.
#[derive(SimpleObject)]
pub struct DonationMatch {
    pub pool_id: ID,
    pub asset: String,
    pub amount: Dec,
    /// In the campaign's reference asset, at receipt.
    pub value: Dec,
}

/// A gift on the campaign's public wall.
#[derive(SimpleObject)]
pub struct WallEntry {
    pub id: ID,
    /// The name the donor chose; None is "Anonymous".
    pub name: Option<String>,
    /// None when the donor hid the amount.
    pub asset: Option<String>,
    pub amount: Option<Dec>,
    /// Matched by a sponsor (its size hidden with the gift's).
    pub matched: bool,
    pub message: String,
    pub at: DateTime,
}

/// A gift as its donor, the organiser or the operators see it.
#[derive(SimpleObject)]
pub struct Donation {
    pub id: ID,
    pub campaign_id: ID,
    pub campaign_title: String,
    /// The organisation (or person) the gift went to.
    pub organisation: String,
    /// Only when the donor agreed to be known to the organiser, or to the
    /// donor themselves and the operators.
    pub donor_email: Option<String>,
    /// The receipt's number: organiser, year, sequence (42-2026-000007).
    pub receipt_number: String,
    /// What the donor gave (`gross`) and tipped, in `asset`.
    pub asset: String,
    pub gross: Dec,
    /// What the campaign received for the gift, the tip aside: the gross,
    /// or what it became converted at receipt. The fee and net are of it.
    pub received_asset: String,
    pub received: Dec,
    pub fee: Dec,
    pub net: Dec,
    pub tip: Dec,
    /// Converted at receipt: the conversion's id (the donor's conversion,
    /// its quote's id).
    pub conversion_id: Option<ID>,
    /// The gift in the reference asset at the last trade price when it
    /// came, or what it was converted into.
    pub value: Dec,
    pub reference_asset: String,
    pub matches: Vec<DonationMatch>,
    pub message: String,
    pub public_name: Option<String>,
    pub amount_shown: bool,
    pub known_to_organiser: bool,
    /// From outside: the deposit's reference.
    pub deposit_reference: Option<String>,
    pub status: DonationStatus,
    pub at: DateTime,
    pub settled_at: Option<DateTime>,
}

/// A donor's gifts of one year, for their tax return.
#[derive(SimpleObject)]
pub struct DonationStatement {
    /// The donor's account.
    pub donor: String,
    pub year: i32,
    pub donations: Vec<Donation>,
    /// Per asset, the gifts not refunded.
    pub totals: Vec<StatementTotal>,
}

#[derive(SimpleObject)]
pub struct StatementTotal {
    pub asset: String,
    pub given: Dec,
}

#[derive(SimpleObject)]
pub struct MatchingPool {
    pub id: ID,
    pub campaign_id: ID,
    pub sponsor: ID,
    pub asset: String,
    /// The match per unit given (1 is one for one).
    pub ratio: Dec,
    pub per_gift_max: Dec,
    pub per_donor_max: Dec,
    pub total: Dec,
    /// Matched and not released; given back when it closed; what is left.
    pub reserved: Dec,
    pub returned: Dec,
    pub left: Dec,
    pub starts_at: DateTime,
    pub ends_at: DateTime,
    pub closed_at: Option<DateTime>,
}

#[derive(SimpleObject)]
pub struct PayoutLine {
    pub asset: String,
    /// To the organiser: gifts less fees, and matches.
    pub net: Dec,
    /// To the platform: fees and tips.
    pub fees: Dec,
    pub tips: Dec,
}

#[derive(SimpleObject)]
pub struct CampaignPayout {
    pub id: ID,
    pub campaign_id: ID,
    pub donations: i32,
    pub lines: Vec<PayoutLine>,
    /// The campaign's last: it had ended.
    pub last: bool,
    pub at: DateTime,
}

fn api_organiser(user: u64, organiser: &api::Organiser, email: Option<String>) -> Organiser {
    Organiser {
        email,
        user: ID(user.to_string()),
        name: organiser.name.clone(),
        kind: organiser.kind.into(),
        country: i32::from(organiser.country),
        registration: organiser.registration.clone(),
    }
}

fn api_campaign(catalog: &Catalog, organiser: &api::Organiser, c: &api::Campaign) -> Campaign {
    let reference = c.spec.reference_asset;
    let progress = if c.spec.goal > 0 { Decimal::from_i128_with_scale(c.raised.saturating_mul(10_000) / c.spec.goal, 4) } else { Decimal::ZERO };
    Campaign {
        id: ID(c.id.to_string()),
        organiser: api_organiser(c.organiser, organiser, None),
        title: c.spec.title.clone(),
        story: c.spec.story.clone(),
        reference_asset: catalog.symbol(reference),
        goal: catalog.amount(reference, c.spec.goal),
        raised: catalog.amount(reference, c.raised),
        progress: Dec(progress),
        deadline: at(c.spec.deadline_ms),
        accepted_assets: c.spec.accepted.iter().map(|asset| catalog.symbol(*asset)).collect(),
        model: c.spec.model.into(),
        payout_every_seconds: c.spec.payout_every_ms.map(|ms| (ms / 1_000) as i64),
        status: c.status.into(),
        cancelled: c.cancelled,
        fee_bps: c.fee_bps as i32,
        donations: i32::try_from(c.donations).unwrap_or(i32::MAX),
        assets: c
            .totals
            .iter()
            .map(|t| {
                let amount = |units| catalog.amount(t.asset, units);
                CampaignAsset {
                    asset: catalog.symbol(t.asset),
                    given: amount(t.given),
                    tips: amount(t.tips),
                    matched: amount(t.matched),
                    refunded: amount(t.refunded),
                    released: amount(t.released),
                    paid_out: amount(t.paid_out),
                    fees: amount(t.fees),
                    held: amount(t.held()),
                }
            })
            .collect(),
        created_at: at(c.created_ms),
        published_at: c.published_ms.map(at),
        ended_at: c.ended_ms.map(at),
        closed_at: c.closed_ms.map(at),
        last_payout_at: c.last_payout_ms.map(at),
    }
}

fn wall_entry(catalog: &Catalog, d: &api::Donation) -> WallEntry {
    let shown = d.gift.display.amount_shown;
    WallEntry {
        id: ID(d.id.to_string()),
        name: d.gift.display.name.clone(),
        asset: shown.then(|| catalog.symbol(d.gift.asset)),
        amount: shown.then(|| catalog.amount(d.gift.asset, d.gift.gross)),
        matched: !d.matches.is_empty(),
        message: d.gift.message.clone(),
        at: at(d.created_ms),
    }
}

/// Who reads a gift: its donor and the operators see who gave; the
/// organiser only when the donor agreed.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Viewer {
    DonorOrOperator,
    Organiser,
}

/// What a gift's record shows of its campaign.
#[derive(Clone)]
struct CampaignInfo {
    id: u64,
    reference: u32,
    title: String,
    organisation: String,
}

async fn campaign_info(ctx: &Context<'_>, campaign: &api::Campaign) -> Result<CampaignInfo, Error> {
    let organisation = organiser_of(ctx, campaign.organiser).await?.map_or_else(|| format!("user {}", campaign.organiser), |o| o.name);
    Ok(CampaignInfo { id: campaign.id, reference: campaign.spec.reference_asset, title: campaign.spec.title.clone(), organisation })
}

fn api_donation(ctx: &Context<'_>, catalog: &Catalog, campaign: &CampaignInfo, d: &api::Donation, viewer: Viewer) -> Result<Donation, Error> {
    let reference = campaign.reference;
    let asset = d.gift.asset;
    let amount = |units| catalog.amount(asset, units);
    let (received_asset, received) = d.received();
    let donor_email = if viewer == Viewer::DonorOrOperator || d.gift.display.known_to_organiser {
        services(ctx).users.by_id(d.donor).map_err(super::user_error)?.map(|user| user.email)
    } else {
        None
    };
    Ok(Donation {
        id: ID(d.id.to_string()),
        campaign_id: ID(d.gift.campaign.to_string()),
        campaign_title: campaign.title.clone(),
        organisation: campaign.organisation.clone(),
        donor_email,
        receipt_number: d.receipt.to_string(),
        asset: catalog.symbol(asset),
        gross: amount(d.gift.gross),
        received_asset: catalog.symbol(received_asset),
        received: catalog.amount(received_asset, received),
        fee: catalog.amount(received_asset, d.fee),
        net: catalog.amount(received_asset, d.net),
        tip: amount(d.gift.tip),
        conversion_id: d.converted.map(|converted| ID(converted.quote.to_string())),
        value: catalog.amount(reference, d.value),
        reference_asset: catalog.symbol(reference),
        matches: d
            .matches
            .iter()
            .map(|m| DonationMatch {
                pool_id: ID(m.pool.to_string()),
                asset: catalog.symbol(m.asset),
                amount: catalog.amount(m.asset, m.amount),
                value: catalog.amount(reference, m.value),
            })
            .collect(),
        message: d.gift.message.clone(),
        public_name: d.gift.display.name.clone(),
        amount_shown: d.gift.display.amount_shown,
        known_to_organiser: d.gift.display.known_to_organiser,
        deposit_reference: match &d.source {
            api::Source::Balance => None,
            api::Source::Deposit { reference } => Some(reference.clone()),
        },
        status: d.status.into(),
        at: at(d.created_ms),
        settled_at: d.settled_ms.map(at),
    })
}

fn api_pool(catalog: &Catalog, p: &api::Pool) -> MatchingPool {
    let amount = |units| catalog.amount(p.spec.asset, units);
    MatchingPool {
        id: ID(p.id.to_string()),
        campaign_id: ID(p.spec.campaign.to_string()),
        sponsor: ID(p.sponsor.to_string()),
        asset: catalog.symbol(p.spec.asset),
        ratio: Dec(Decimal::new(i64::from(p.spec.ratio_bps), 4).normalize()),
        per_gift_max: amount(p.spec.per_gift_max),
        per_donor_max: amount(p.spec.per_donor_max),
        total: amount(p.spec.total),
        reserved: amount(p.reserved),
        returned: amount(p.returned),
        left: amount(if p.closed_ms.is_some() { 0 } else { p.left() }),
        starts_at: at(p.spec.starts_ms),
        ends_at: at(p.spec.ends_ms),
        closed_at: p.closed_ms.map(at),
    }
}

fn api_payout(catalog: &Catalog, p: &api::Payout) -> CampaignPayout {
    CampaignPayout {
        id: ID(p.id.to_string()),
        campaign_id: ID(p.campaign.to_string()),
        donations: i32::try_from(p.donations).unwrap_or(i32::MAX),
        lines: p
            .lines
            .iter()
            .map(|l| PayoutLine {
                asset: catalog.symbol(l.asset),
                net: catalog.amount(l.asset, l.net),
                fees: catalog.amount(l.asset, l.fees),
                tips: catalog.amount(l.asset, l.tips),
            })
            .collect(),
        last: p.last,
        at: at(p.at_ms),
    }
}

async fn ask_donations(ctx: &Context<'_>, query: api::Query) -> Result<api::Answer, Error> {
    match ask(ctx, Query::Donations(query)).await? {
        Answer::Donations(answer) => Ok(answer),
        other => Err(unexpected(other)),
    }
}

async fn run_donations(ctx: &Context<'_>, command: Command) -> Result<api::Outcome, Error> {
    match run(ctx, ledger_api::Command::Donations(command)).await? {
        Outcome::Donations(outcome) => Ok(outcome),
        other => Err(unexpected(other)),
    }
}

pub(crate) async fn organiser_of(ctx: &Context<'_>, user: u64) -> Result<Option<api::Organiser>, Error> {
    match ask_donations(ctx, api::Query::Organiser(user)).await? {
        api::Answer::Organiser(organiser) => Ok(organiser),
        other => Err(unexpected(other)),
    }
}

async fn campaign_record(ctx: &Context<'_>, id: u64) -> Result<Option<api::Campaign>, Error> {
    match ask_donations(ctx, api::Query::Campaign(id)).await? {
        api::Answer::Campaign(campaign) => Ok(campaign.map(|c| *c)),
        other => Err(unexpected(other)),
    }
}

/// A campaign as the API shows it, with its organiser (who may have been
/// unverified since: the receipts' name stays the one on file).
async fn campaign_views(ctx: &Context<'_>, list: &[api::Campaign]) -> Result<Vec<Campaign>, Error> {
    let catalog = Catalog::load(ctx).await?;
    let mut out = Vec::with_capacity(list.len());
    for campaign in list {
        out.push(campaign_view(ctx, &catalog, campaign).await?);
    }
    Ok(out)
}

async fn campaign_view(ctx: &Context<'_>, catalog: &Catalog, c: &api::Campaign) -> Result<Campaign, Error> {
    let organiser = organiser_of(ctx, c.organiser).await?.unwrap_or_else(|| api::Organiser {
        name: format!("user {}", c.organiser),
        kind: api::OrganiserKind::Person,
        country: 0,
        registration: String::new(),
    });
    Ok(api_campaign(catalog, &organiser, c))
}

/// Whether the caller is the campaign's organiser or an operator.
fn organiser_or_operator(ctx: &Context<'_>, campaign: &api::Campaign) -> Result<Viewer, Error> {
    let claims = caller(ctx)?;
    if claims.role == Role::Operator {
        return Ok(Viewer::DonorOrOperator);
    }
    if caller_id(ctx)? == campaign.organiser {
        return Ok(Viewer::Organiser);
    }
    Err(coded("FORBIDDEN", "only the campaign's organiser and the operators see its gifts' details"))
}

/// The payment reference a donor writes on a transfer from outside:
/// `GIFT-<campaign>-<donor>-<check>`, the check two digits of ISO 7064
/// MOD 97-10 (an IBAN's) over both numbers, so that a mistyped or swapped
/// digit is caught before anything is credited.
pub(crate) fn deposit_reference(campaign: u64, donor: u64) -> String {
    format!("GIFT-{campaign}-{donor}-{:02}", 98 - mod97(campaign, donor, 0))
}

/// The campaign and donor a payment reference names, if its check holds.
pub(crate) fn parse_deposit_reference(text: &str) -> Option<(u64, u64)> {
    let mut parts = text.trim().strip_prefix("GIFT-")?.split('-');
    let (campaign, donor, check) = (parts.next()?, parts.next()?, parts.next()?);
    if parts.next().is_some() || check.len() != 2 || [campaign, donor, check].iter().any(|p| p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit())) {
        return None;
    }
    let (campaign, donor, check): (u64, u64, u64) = (campaign.parse().ok()?, donor.parse().ok()?, check.parse().ok()?);
    (mod97(campaign, donor, check) == 1).then_some((campaign, donor))
}

/// Both numbers as 20 digits each, then the two check digits, modulo 97.
fn mod97(campaign: u64, donor: u64, check: u64) -> u64 {
    format!("{campaign:020}{donor:020}{check:02}").bytes().fold(0, |rest, digit| (rest * 10 + u64::from(digit - b'0')) % 97)
}

/// A rate as basis points: 0.5 is 5000.
fn bps(rate: Dec, field: &str, max: u32) -> Result<u32, Error> {
    let bps = crate::units::to_units(rate.0, 4, field).map_err(|(code, message)| coded(code, message))?;
    u32::try_from(bps)
        .ok()
        .filter(|bps| (1..=max).contains(bps))
        .ok_or_else(|| coded("BAD_USER_INPUT", format!("{field} is above 0 and at most {}", Decimal::new(max.into(), 4).normalize())))
}

#[derive(Default)]
pub struct DonationsQuery;

#[Object]
impl DonationsQuery {
    /// Campaigns, newest first: of one status (ACTIVE unless named) and
    /// one organiser, or any. Public, as the campaigns' pages are; drafts
    /// only to their organiser and the operators.
    async fn campaigns(&self, ctx: &Context<'_>, status: Option<CampaignStatus>, organiser_id: Option<ID>, limit: Option<i32>) -> Result<Vec<Campaign>, Error> {
        let organiser = organiser_id.map(|id| parse_id(&id, "organiser")).transpose()?;
        let status = status.unwrap_or(CampaignStatus::Active);
        // Drafts are their organisers' (and the operators') until published.
        if status == CampaignStatus::Draft {
            let is_operator = caller(ctx).is_ok_and(|claims| claims.role == Role::Operator);
            if !is_operator && (organiser.is_none() || organiser != caller_id(ctx).ok()) {
                return Err(coded("FORBIDDEN", "drafts are listed to their organiser (organiserId: yours) and the operators"));
            }
        }
        let status = Some(status.into());
        let api::Answer::Campaigns(list) = ask_donations(ctx, api::Query::Campaigns { organiser, status, limit: list_limit(limit) }).await? else {
            return Err(unexpected("campaigns"));
        };
        campaign_views(ctx, &list).await
    }

    /// One campaign, whatever its status. A draft is its organiser's and the operators' only.
    async fn campaign(&self, ctx: &Context<'_>, id: ID) -> Result<Option<Campaign>, Error> {
        let Some(campaign) = campaign_record(ctx, parse_id(&id, "campaign")?).await? else { return Ok(None) };
        if campaign.status == api::CampaignStatus::Draft && organiser_or_operator(ctx, &campaign).is_err() {
            return Ok(None);
        }
        let catalog = Catalog::load(ctx).await?;
        Ok(Some(campaign_view(ctx, &catalog, &campaign).await?))
    }

    /// The campaign's public wall, newest first, before gift `before`:
    /// each donor's chosen name or anonymous, the amount unless hidden.
    async fn campaign_wall(&self, ctx: &Context<'_>, campaign_id: ID, before: Option<ID>, limit: Option<i32>) -> Result<Vec<WallEntry>, Error> {
        let campaign = parse_id(&campaign_id, "campaign")?;
        let before = before.map(|id| parse_id(&id, "gift")).transpose()?.unwrap_or(0);
        let api::Answer::Donations(list) = ask_donations(ctx, api::Query::CampaignDonations { campaign, before, limit: list_limit(limit) }).await? else {
            return Err(unexpected("donations"));
        };
        let catalog = Catalog::load(ctx).await?;
        Ok(list.iter().filter(|d| d.status != api::DonationStatus::Refunded).map(|d| wall_entry(&catalog, d)).collect())
    }

    /// The campaign's gifts in full, newest first (its organiser, who sees
    /// the donor only when they agreed, and the operators).
    async fn campaign_donations(&self, ctx: &Context<'_>, campaign_id: ID, before: Option<ID>, limit: Option<i32>) -> Result<Vec<Donation>, Error> {
        let id = parse_id(&campaign_id, "campaign")?;
        let campaign = campaign_record(ctx, id).await?.ok_or_else(|| coded("NOT_FOUND", "no such campaign"))?;
        let viewer = organiser_or_operator(ctx, &campaign)?;
        let before = before.map(|id| parse_id(&id, "gift")).transpose()?.unwrap_or(0);
        let api::Answer::Donations(list) = ask_donations(ctx, api::Query::CampaignDonations { campaign: id, before, limit: list_limit(limit) }).await? else {
            return Err(unexpected("donations"));
        };
        let catalog = Catalog::load(ctx).await?;
        let info = campaign_info(ctx, &campaign).await?;
        list.iter().map(|d| api_donation(ctx, &catalog, &info, d, viewer)).collect()
    }

    /// What giving `amount` (and a `tip`, none unless named) to the
    /// campaign costs: the gift, the platform's fee out of it, what the
    /// organiser gets and the total charged.
    async fn donation_terms(&self, ctx: &Context<'_>, campaign_id: ID, asset: String, amount: Dec, tip: Option<Dec>) -> Result<DonationTerms, Error> {
        let campaign = campaign_record(ctx, parse_id(&campaign_id, "campaign")?).await?.ok_or_else(|| coded("NOT_FOUND", "no such campaign"))?;
        let catalog = Catalog::load(ctx).await?;
        let spec = catalog.asset_by_symbol(&asset)?;
        if !campaign.spec.accepted.contains(&spec.id) {
            return Err(coded("BAD_USER_INPUT", format!("campaign {} does not accept {asset}", campaign.id)));
        }
        let gross = amount_units(amount, spec.scale, "amount")?;
        let tip = tip.map(|tip| amount_units(tip, spec.scale, "tip")).transpose()?.unwrap_or(0);
        let fee = api::fee_of(gross.min(api::AMOUNT_BOUND), campaign.fee_bps);
        let amount = |units| catalog.amount(spec.id, units);
        Ok(DonationTerms {
            asset,
            gross: amount(gross),
            fee: amount(fee),
            net: amount(gross - fee),
            tip: amount(tip),
            total: amount(gross.saturating_add(tip)),
            fee_bps: campaign.fee_bps as i32,
        })
    }

    /// The caller's gifts with their receipts, newest first, before gift `before`.
    async fn my_donations(&self, ctx: &Context<'_>, before: Option<ID>, limit: Option<i32>) -> Result<Vec<Donation>, Error> {
        let donor = caller_id(ctx)?;
        let before = before.map(|id| parse_id(&id, "gift")).transpose()?.unwrap_or(0);
        let api::Answer::Donations(list) = ask_donations(ctx, api::Query::DonorDonations { donor, before, limit: list_limit(limit) }).await? else {
            return Err(unexpected("donations"));
        };
        donations_with_references(ctx, &list).await
    }

    /// The caller's gifts of a year (UTC), oldest first, with the totals
    /// per asset of those not refunded: the annual statement (as PDF:
    /// `GET /donations/statements/{year}.pdf`).
    async fn my_donation_statement(&self, ctx: &Context<'_>, year: i32) -> Result<DonationStatement, Error> {
        let donor = caller_id(ctx)?;
        let year_u16 = u16::try_from(year).map_err(|_| coded("BAD_USER_INPUT", "year is a calendar year such as 2026"))?;
        let mut gifts = Vec::new();
        let mut before = 0;
        // Pages back from the newest until the gifts are older than the year.
        'pages: loop {
            let api::Answer::Donations(page) = ask_donations(ctx, api::Query::DonorDonations { donor, before, limit: ledger_api::QUERY_LIMIT_MAX }).await?
            else {
                return Err(unexpected("donations"));
            };
            for gift in &page {
                match api::year_of(gift.created_ms).cmp(&year_u16) {
                    std::cmp::Ordering::Greater => {}
                    std::cmp::Ordering::Equal => gifts.push(gift.clone()),
                    std::cmp::Ordering::Less => break 'pages,
                }
            }
            match page.last() {
                Some(last) if page.len() == ledger_api::QUERY_LIMIT_MAX as usize => before = last.id,
                _ => break,
            }
        }
        gifts.reverse();
        let catalog = Catalog::load(ctx).await?;
        let mut totals: Vec<(u32, i128)> = Vec::new();
        for gift in gifts.iter().filter(|g| g.status != api::DonationStatus::Refunded) {
            match totals.iter_mut().find(|(asset, _)| *asset == gift.gift.asset) {
                Some((_, sum)) => *sum += gift.gift.gross,
                None => totals.push((gift.gift.asset, gift.gift.gross)),
            }
        }
        let email = services(ctx).users.by_id(donor).map_err(super::user_error)?.map_or_else(|| format!("user {donor}"), |user| user.email);
        Ok(DonationStatement {
            donor: email,
            year,
            donations: donations_with_references(ctx, &gifts).await?,
            totals: totals.into_iter().map(|(asset, given)| StatementTotal { asset: catalog.symbol(asset), given: catalog.amount(asset, given) }).collect(),
        })
    }

    /// One of the caller's gifts as its receipt prints it (the donor and
    /// the operators); the PDF is `GET /donations/{id}/receipt.pdf`.
    async fn donation_receipt(&self, ctx: &Context<'_>, donation_id: ID) -> Result<DonationReceipt, Error> {
        receipt_of(ctx, parse_id(&donation_id, "gift")?).await
    }

    /// A campaign's matching pools (public: donors see what their gift would unlock).
    async fn matching_pools(&self, ctx: &Context<'_>, campaign_id: ID) -> Result<Vec<MatchingPool>, Error> {
        let api::Answer::Pools(pools) = ask_donations(ctx, api::Query::Pools(parse_id(&campaign_id, "campaign")?)).await? else {
            return Err(unexpected("pools"));
        };
        let catalog = Catalog::load(ctx).await?;
        Ok(pools.iter().map(|p| api_pool(&catalog, p)).collect())
    }

    /// A campaign's payouts, newest first (its organiser and the operators).
    async fn campaign_payouts(&self, ctx: &Context<'_>, campaign_id: ID, limit: Option<i32>) -> Result<Vec<CampaignPayout>, Error> {
        let id = parse_id(&campaign_id, "campaign")?;
        let campaign = campaign_record(ctx, id).await?.ok_or_else(|| coded("NOT_FOUND", "no such campaign"))?;
        organiser_or_operator(ctx, &campaign)?;
        let api::Answer::Payouts(payouts) = ask_donations(ctx, api::Query::Payouts { campaign: id, limit: list_limit(limit) }).await? else {
            return Err(unexpected("payouts"));
        };
        let catalog = Catalog::load(ctx).await?;
        Ok(payouts.iter().map(|p| api_payout(&catalog, p)).collect())
    }

    /// Campaigns whose payout the operators may make now (operators).
    async fn payouts_due(&self, ctx: &Context<'_>) -> Result<Vec<Campaign>, Error> {
        operator(ctx)?;
        let api::Answer::Campaigns(list) = ask_donations(ctx, api::Query::PayoutsDue { at_ms: now_ms() }).await? else {
            return Err(unexpected("campaigns"));
        };
        campaign_views(ctx, &list).await
    }

    /// The payment reference to write on a transfer from outside (a bank
    /// transfer's reference, a memo) so that the operators credit it to
    /// this campaign as the caller's gift.
    async fn my_donation_deposit_reference(&self, ctx: &Context<'_>, campaign_id: ID) -> Result<String, Error> {
        let donor = caller_id(ctx)?;
        let campaign = campaign_record(ctx, parse_id(&campaign_id, "campaign")?).await?.ok_or_else(|| coded("NOT_FOUND", "no such campaign"))?;
        if campaign.status != api::CampaignStatus::Active {
            return Err(coded("CAMPAIGN_CLOSED", format!("campaign {} is not taking gifts", campaign.id)));
        }
        Ok(deposit_reference(campaign.id, donor))
    }

    /// The caller as an organiser, if the operators verified them.
    async fn my_organiser(&self, ctx: &Context<'_>) -> Result<Option<Organiser>, Error> {
        let user = caller_id(ctx)?;
        let email = || services(ctx).users.by_id(user).ok().flatten().map(|u| u.email);
        Ok(organiser_of(ctx, user).await?.map(|o| api_organiser(user, &o, email())))
    }

    /// Every verified organiser (operators).
    async fn organisers(&self, ctx: &Context<'_>) -> Result<Vec<Organiser>, Error> {
        operator(ctx)?;
        let api::Answer::Organisers(list) = ask_donations(ctx, api::Query::Organisers).await? else { return Err(unexpected("organisers")) };
        let email = |user: u64| services(ctx).users.by_id(user).map_err(super::user_error).map(|found| found.map(|u| u.email));
        list.iter().map(|(user, o)| Ok(api_organiser(*user, o, email(*user)?))).collect()
    }

    /// The platform's fee on the gifts of new campaigns, in basis points.
    async fn donation_fee_bps(&self, ctx: &Context<'_>) -> Result<i32, Error> {
        match ask_donations(ctx, api::Query::DonationFee).await? {
            api::Answer::DonationFee(bps) => Ok(bps as i32),
            other => Err(unexpected(other)),
        }
    }
}

/// The caller's own gifts, each with its campaign's reference asset, title and organisation.
async fn donations_with_references(ctx: &Context<'_>, gifts: &[api::Donation]) -> Result<Vec<Donation>, Error> {
    let catalog = Catalog::load(ctx).await?;
    let mut campaigns: Vec<CampaignInfo> = Vec::new();
    let mut out = Vec::with_capacity(gifts.len());
    for gift in gifts {
        let info = match campaigns.iter().find(|info| info.id == gift.gift.campaign) {
            Some(info) => info.clone(),
            None => {
                let record = campaign_record(ctx, gift.gift.campaign).await?.ok_or_else(|| unexpected("a gift's campaign not found"))?;
                let info = campaign_info(ctx, &record).await?;
                campaigns.push(info.clone());
                info
            }
        };
        out.push(api_donation(ctx, &catalog, &info, gift, Viewer::DonorOrOperator)?);
    }
    Ok(out)
}

/// A gift's receipt as its PDF prints it (`GET /donations/{id}/receipt.pdf`).
#[derive(SimpleObject)]
pub struct DonationReceipt {
    pub number: String,
    /// The day it was received (UTC), 2026-12-07.
    pub date: String,
    pub organisation: String,
    /// Its registration number and country, as the operators verified them.
    pub organisation_detail: String,
    /// The donor's account.
    pub donor: String,
    pub campaign: String,
    pub asset: String,
    pub amount: Dec,
    pub value: Dec,
    pub reference_asset: String,
    /// A tip to the platform, not part of the gift.
    pub tip: Option<Dec>,
    pub deposit_reference: Option<String>,
    /// Converted at receipt: what the gift became in the reference asset,
    /// and the conversion's id.
    pub converted_amount: Option<Dec>,
    pub conversion_id: Option<ID>,
    /// The gift went back: the receipt is void.
    pub refunded: bool,
}

async fn receipt_of(ctx: &Context<'_>, id: u64) -> Result<DonationReceipt, Error> {
    let claims = caller(ctx)?;
    let api::Answer::Donation(found) = ask_donations(ctx, api::Query::Donation(id)).await? else { return Err(unexpected("a gift")) };
    let not_found = || coded("NOT_FOUND", "no such gift among yours");
    let gift = found.ok_or_else(not_found)?;
    // The donor's tax document: theirs and the operators' only.
    if claims.role != Role::Operator && caller_id(ctx)? != gift.donor {
        return Err(not_found());
    }
    let campaign = campaign_record(ctx, gift.gift.campaign).await?.ok_or_else(|| unexpected("a gift's campaign not found"))?;
    let organiser = organiser_of(ctx, campaign.organiser).await?;
    let organisation_detail = match &organiser {
        Some(o) if o.registration.is_empty() => format!("{:?}, country {}", o.kind, o.country),
        Some(o) => format!("{}, country {}", o.registration, o.country),
        None => "no longer a verified organiser".into(),
    };
    let catalog = Catalog::load(ctx).await?;
    let donor = services(ctx).users.by_id(gift.donor).map_err(super::user_error)?.map_or_else(|| format!("user {}", gift.donor), |user| user.email);
    let reference = campaign.spec.reference_asset;
    Ok(DonationReceipt {
        number: gift.receipt.to_string(),
        date: at(gift.created_ms).0.chars().take(10).collect(),
        organisation: organiser.map_or_else(|| format!("user {}", campaign.organiser), |o| o.name),
        organisation_detail,
        donor,
        campaign: campaign.spec.title.clone(),
        asset: catalog.symbol(gift.gift.asset),
        amount: catalog.amount(gift.gift.asset, gift.gift.gross),
        value: catalog.amount(reference, gift.value),
        reference_asset: catalog.symbol(reference),
        tip: (gift.gift.tip > 0).then(|| catalog.amount(gift.gift.asset, gift.gift.tip)),
        deposit_reference: match &gift.source {
            api::Source::Balance => None,
            api::Source::Deposit { reference } => Some(reference.clone()),
        },
        converted_amount: gift.converted.map(|converted| catalog.amount(converted.asset, converted.amount)),
        conversion_id: gift.converted.map(|converted| ID(converted.quote.to_string())),
        refunded: gift.status == api::DonationStatus::Refunded,
    })
}

#[derive(Default)]
pub struct DonationsMutation;

#[Object]
impl DonationsMutation {
    /// A verified organiser's new campaign, a draft until published: its
    /// goal in `referenceAsset` (which it accepts among `acceptedAssets`).
    #[allow(clippy::too_many_arguments)]
    async fn create_campaign(
        &self,
        ctx: &Context<'_>,
        title: String,
        story: String,
        reference_asset: String,
        goal: Dec,
        deadline: DateTime,
        accepted_assets: Vec<String>,
        model: FundingModel,
        payout_every_seconds: Option<i64>,
    ) -> Result<Campaign, Error> {
        let organiser = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let reference = catalog.asset_by_symbol(&reference_asset)?;
        let mut accepted = accepted_assets.iter().map(|symbol| catalog.asset_by_symbol(symbol).map(|a| a.id)).collect::<Result<Vec<u32>, Error>>()?;
        accepted.sort_unstable();
        if accepted.windows(2).any(|w| w[0] == w[1]) {
            return Err(coded("BAD_USER_INPUT", "acceptedAssets names an asset twice"));
        }
        let payout_every_ms = payout_every_seconds
            .map(|s| u64::try_from(s).ok().and_then(|s| s.checked_mul(1_000)).ok_or_else(|| coded("BAD_USER_INPUT", "payoutEverySeconds is positive")))
            .transpose()?;
        let spec = api::CampaignSpec {
            title,
            story,
            reference_asset: reference.id,
            goal: amount_units(goal, reference.scale, "goal")?,
            deadline_ms: time(&deadline, "deadline")?,
            accepted,
            model: model.into(),
            payout_every_ms,
        };
        let id = match run_donations(ctx, Command::CreateCampaign { organiser, spec: Box::new(spec) }).await? {
            api::Outcome::CampaignCreated(id) => id,
            other => return Err(unexpected(other)),
        };
        let campaign = campaign_record(ctx, id).await?.ok_or_else(|| unexpected("a campaign made and not found"))?;
        campaign_view(ctx, &catalog, &campaign).await
    }

    /// The organiser publishes a draft: it takes gifts until its deadline.
    async fn publish_campaign(&self, ctx: &Context<'_>, id: ID) -> Result<Campaign, Error> {
        let organiser = caller_id(ctx)?;
        let campaign = parse_id(&id, "campaign")?;
        match run_donations(ctx, Command::PublishCampaign { organiser, campaign }).await? {
            api::Outcome::CampaignPublished(_) => {}
            other => return Err(unexpected(other)),
        }
        let catalog = Catalog::load(ctx).await?;
        let record = campaign_record(ctx, campaign).await?.ok_or_else(|| unexpected("a campaign published and not found"))?;
        campaign_view(ctx, &catalog, &record).await
    }

    /// The organiser cancels: every gift not paid out goes back to its donor.
    async fn cancel_campaign(&self, ctx: &Context<'_>, id: ID) -> Result<Campaign, Error> {
        let organiser = caller_id(ctx)?;
        let campaign = parse_id(&id, "campaign")?;
        match run_donations(ctx, Command::CancelCampaign { organiser, campaign }).await? {
            api::Outcome::CampaignCancelled { .. } => {}
            other => return Err(unexpected(other)),
        }
        let catalog = Catalog::load(ctx).await?;
        let record = campaign_record(ctx, campaign).await?.ok_or_else(|| unexpected("a campaign cancelled and not found"))?;
        campaign_view(ctx, &catalog, &record).await
    }

    /// Gives `amount` of `asset` from the caller's balance (and a `tip` to
    /// the platform, none unless named), valued in the campaign's
    /// reference asset at the last trade price; matched by its sponsors'
    /// pools. `displayName` is shown on the wall (none: "Anonymous");
    /// `hideAmount` keeps the amount off it; `knownToOrganiser` lets the
    /// organiser see who gave. The same `idempotencyKey` again answers the
    /// same gift.
    ///
    /// With `convertQuoteId`, the gift is converted at receipt: your open
    /// quote (`convertQuote` from `asset` for `amount` into the campaign's
    /// reference asset) is accepted with the gift, in one step, and the
    /// campaign receives its `toAmount`; the tip stays in `asset`. Its fee
    /// and net are `donationTerms` of the reference asset and `toAmount`.
    /// A quote past its expiry is QUOTE_EXPIRED: ask another.
    #[allow(clippy::too_many_arguments)]
    async fn donate(
        &self,
        ctx: &Context<'_>,
        campaign_id: ID,
        asset: String,
        amount: Dec,
        tip: Option<Dec>,
        message: Option<String>,
        display_name: Option<String>,
        #[graphql(default)] hide_amount: bool,
        #[graphql(default)] known_to_organiser: bool,
        idempotency_key: String,
        convert_quote_id: Option<ID>,
    ) -> Result<Donation, Error> {
        let donor = caller_id(ctx)?;
        let campaign = parse_id(&campaign_id, "campaign")?;
        let catalog = Catalog::load(ctx).await?;
        let spec = catalog.asset_by_symbol(&asset)?;
        let gift = api::Gift {
            campaign,
            asset: spec.id,
            gross: amount_units(amount, spec.scale, "amount")?,
            tip: tip.map(|tip| amount_units(tip, spec.scale, "tip")).transpose()?.unwrap_or(0),
            message: message.unwrap_or_default(),
            display: api::Display { name: display_name.filter(|name| !name.trim().is_empty()), amount_shown: !hide_amount, known_to_organiser },
        };
        let gift = Box::new(gift);
        let command = match convert_quote_id {
            Some(quote) => {
                let quote = quote.parse().map_err(|_| coded("NOT_FOUND", format!("no quote {}", quote.as_str())))?;
                Command::DonateConverted { donor, gift, quote, key: idempotency_key }
            }
            None => Command::Donate { donor, gift, key: idempotency_key },
        };
        let id = match run_donations(ctx, command).await? {
            api::Outcome::Donated(id) => id,
            other => return Err(unexpected(other)),
        };
        let api::Answer::Donation(Some(record)) = ask_donations(ctx, api::Query::Donation(id)).await? else {
            return Err(unexpected("a gift made and not found"));
        };
        donations_with_references(ctx, &[*record]).await?.pop().ok_or_else(|| unexpected("a gift"))
    }

    /// A sponsor's matching pool for a campaign, paid in from the caller's
    /// balance: each gift in its window is matched at `ratio` (1 is one
    /// for one) up to `perGiftMax`, `perDonorMax` and what is left of `total`.
    #[allow(clippy::too_many_arguments)]
    async fn fund_matching_pool(
        &self,
        ctx: &Context<'_>,
        campaign_id: ID,
        asset: String,
        ratio: Dec,
        per_gift_max: Dec,
        per_donor_max: Dec,
        total: Dec,
        starts_at: Option<DateTime>,
        ends_at: DateTime,
        idempotency_key: String,
    ) -> Result<MatchingPool, Error> {
        let sponsor = caller_id(ctx)?;
        let catalog = Catalog::load(ctx).await?;
        let spec = catalog.asset_by_symbol(&asset)?;
        let pool = api::PoolSpec {
            campaign: parse_id(&campaign_id, "campaign")?,
            asset: spec.id,
            ratio_bps: bps(ratio, "ratio", api::RATIO_BPS_MAX)?,
            per_gift_max: amount_units(per_gift_max, spec.scale, "perGiftMax")?,
            per_donor_max: amount_units(per_donor_max, spec.scale, "perDonorMax")?,
            total: amount_units(total, spec.scale, "total")?,
            starts_ms: starts_at.map(|t| time(&t, "startsAt")).transpose()?.unwrap_or_else(now_ms),
            ends_ms: time(&ends_at, "endsAt")?,
        };
        let id = match run_donations(ctx, Command::FundPool { sponsor, spec: pool, key: idempotency_key }).await? {
            api::Outcome::PoolFunded(id) => id,
            other => return Err(unexpected(other)),
        };
        let api::Answer::Pools(pools) = ask_donations(ctx, api::Query::Pools(pool.campaign)).await? else { return Err(unexpected("pools")) };
        let funded = pools.iter().find(|p| p.id == id).ok_or_else(|| unexpected("a pool funded and not found"))?;
        Ok(api_pool(&catalog, funded))
    }

    /// Proposes to verify a user as a campaign organiser (operators;
    /// `approvals.organiser` of them).
    async fn set_organiser(
        &self,
        ctx: &Context<'_>,
        email: String,
        name: String,
        kind: OrganiserKind,
        country: i32,
        registration: Option<String>,
    ) -> Result<Organiser, Error> {
        // Operators only, before the email is looked up: no one else learns which accounts exist.
        operator(ctx)?;
        let user = user_by_email(ctx, &email)?;
        let organiser = api::Organiser {
            name,
            kind: kind.into(),
            country: u16::try_from(country).map_err(|_| coded("BAD_USER_INPUT", "a country is an ISO 3166-1 numeric code, 1 to 999"))?,
            registration: registration.unwrap_or_default(),
        };
        match operate(ctx, ledger_api::Command::Donations(Command::SetOrganiser { user, organiser: Some(organiser.clone()) })).await? {
            Outcome::Donations(api::Outcome::OrganiserSet { .. }) => {
                let email = services(ctx).users.by_id(user).ok().flatten().map(|u| u.email);
                Ok(api_organiser(user, &organiser, email))
            }
            other => Err(unexpected(other)),
        }
    }

    /// Proposes to make a user no longer an organiser; their campaigns go on.
    async fn remove_organiser(&self, ctx: &Context<'_>, email: String) -> Result<bool, Error> {
        operator(ctx)?;
        let user = user_by_email(ctx, &email)?;
        match operate(ctx, ledger_api::Command::Donations(Command::SetOrganiser { user, organiser: None })).await? {
            Outcome::Donations(api::Outcome::OrganiserSet { .. }) => Ok(true),
            other => Err(unexpected(other)),
        }
    }

    /// Proposes the platform's fee on the gifts of campaigns created from
    /// now on, in basis points (0 to 1000; operators).
    async fn set_donation_fee(&self, ctx: &Context<'_>, fee_bps: i32) -> Result<i32, Error> {
        let fee_bps = u32::try_from(fee_bps).map_err(|_| coded("BAD_USER_INPUT", "feeBps is 0 to 1000"))?;
        match operate(ctx, ledger_api::Command::Donations(Command::SetDonationFee { fee_bps })).await? {
            Outcome::Donations(api::Outcome::DonationFeeSet(bps)) => Ok(bps as i32),
            other => Err(unexpected(other)),
        }
    }

    /// Proposes to stop a campaign (fraud, a complaint): every gift not
    /// paid out goes back to its donor (operators).
    async fn stop_campaign(&self, ctx: &Context<'_>, id: ID) -> Result<i32, Error> {
        let campaign = parse_id(&id, "campaign")?;
        match operate(ctx, ledger_api::Command::Donations(Command::StopCampaign { campaign })).await? {
            Outcome::Donations(api::Outcome::CampaignCancelled { refunded, .. }) => Ok(i32::try_from(refunded).unwrap_or(i32::MAX)),
            other => Err(unexpected(other)),
        }
    }

    /// Proposes to pay a campaign's held gifts out to its organiser, after
    /// its deadline or on its interim schedule (operators; not its organiser).
    async fn pay_out_campaign(&self, ctx: &Context<'_>, id: ID) -> Result<CampaignPayout, Error> {
        operator(ctx)?;
        let campaign = parse_id(&id, "campaign")?;
        // Said before a proposal waits for approvals that could not execute it
        // (the ledger checks again when the last approval comes).
        let record = campaign_record(ctx, campaign).await?.ok_or_else(|| coded("NOT_FOUND", "no such campaign"))?;
        if record.payout_due(now_ms()).is_none() {
            let why = match record.next_payout_ms() {
                Some(next) if record.status == api::CampaignStatus::Active => format!("its next interim payout is at {}", at(next).0),
                _ => "a campaign is paid out after its deadline, and an all-or-nothing one only with its goal met".into(),
            };
            return Err(coded("BAD_USER_INPUT", format!("campaign {campaign} is not due a payout: {why}")));
        }
        match operate(ctx, ledger_api::Command::Donations(Command::PayOut { campaign })).await? {
            Outcome::Donations(api::Outcome::PaidOut(payout)) => Ok(api_payout(&*Catalog::load(ctx).await?, &payout)),
            other => Err(unexpected(other)),
        }
    }

    /// Proposes to credit a deposit that arrived for a campaign as its
    /// donor's gift (operators, as any deposit): `paymentReference` is the
    /// one the donor wrote on their transfer (`myDonationDepositReference`),
    /// which names the campaign and the donor; `reference` is the deposit's
    /// own (the bank's or the chain's transaction id), which credits it once.
    /// Shown on the wall as anonymous unless `displayName`.
    async fn credit_donation_deposit(
        &self,
        ctx: &Context<'_>,
        payment_reference: String,
        asset: String,
        amount: Dec,
        reference: String,
        display_name: Option<String>,
    ) -> Result<Donation, Error> {
        operator(ctx)?;
        let (campaign, donor) = parse_deposit_reference(&payment_reference).ok_or_else(|| {
            coded(
                "BAD_USER_INPUT",
                "paymentReference is GIFT-<campaign>-<donor>-<check> as the donor was given it; its check digits do not match (a mistyped digit?)",
            )
        })?;
        if services(ctx).users.by_id(donor).map_err(super::user_error)?.is_none() {
            return Err(coded("NOT_FOUND", "paymentReference names no account"));
        }
        let catalog = Catalog::load(ctx).await?;
        let spec = catalog.asset_by_symbol(&asset)?;
        let gift = api::Gift {
            campaign,
            asset: spec.id,
            gross: amount_units(amount, spec.scale, "amount")?,
            tip: 0,
            message: String::new(),
            display: api::Display { name: display_name, amount_shown: true, known_to_organiser: false },
        };
        let id = match operate(ctx, ledger_api::Command::Donations(Command::DepositDonation { donor, gift: Box::new(gift), reference })).await? {
            Outcome::Donations(api::Outcome::Donated(id)) => id,
            other => return Err(unexpected(other)),
        };
        let api::Answer::Donation(Some(record)) = ask_donations(ctx, api::Query::Donation(id)).await? else {
            return Err(unexpected("a gift credited and not found"));
        };
        donations_with_references(ctx, &[*record]).await?.pop().ok_or_else(|| unexpected("a gift"))
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn a_payment_reference_names_its_campaign_and_donor_and_catches_a_typo() {
        let reference = deposit_reference(12, 345);
        assert!(reference.starts_with("GIFT-12-345-"), "{reference}");
        assert_eq!(parse_deposit_reference(&reference), Some((12, 345)));
        assert_eq!(parse_deposit_reference(&format!(" {reference} ")), Some((12, 345)));
        for typo in ["GIFT-13-345-", "GIFT-12-354-", "GIFT-21-345-"] {
            let check = &reference[reference.len() - 2..];
            assert_eq!(parse_deposit_reference(&format!("{typo}{check}")), None, "{typo}");
        }
        for bad in ["", "GIFT-", "GIFT-1-2", "GIFT-1-2-3", "GIFT-1-2-033", "GIFT-a-2-03", "GIFT-1-2-03-4", "GIFT--2-03", "gift-12-345-00", "GIFT-+1-2-03"] {
            assert_eq!(parse_deposit_reference(bad), None, "{bad}");
        }
    }

    proptest! {
        #[test]
        fn every_reference_reads_back_and_any_text_parses_without_panic(campaign in any::<u64>(), donor in any::<u64>(), text in "\\PC{0,40}") {
            prop_assert_eq!(parse_deposit_reference(&deposit_reference(campaign, donor)), Some((campaign, donor)));
            let _ = parse_deposit_reference(&text);
            let _ = parse_deposit_reference(&format!("GIFT-{text}"));
        }

        /// One digit changed anywhere is caught (MOD 97-10 catches every single substitution).
        #[test]
        fn a_single_mistyped_digit_is_caught(campaign in 0u64..1_000_000, donor in 0u64..1_000_000, at in any::<prop::sample::Index>(), to in 0u8..10) {
            let reference = deposit_reference(campaign, donor);
            let digits: Vec<usize> = reference.char_indices().filter(|(_, c)| c.is_ascii_digit()).map(|(i, _)| i).collect();
            let i = digits[at.index(digits.len())];
            let mut typed = reference.clone().into_bytes();
            prop_assume!(typed[i] != b'0' + to);
            typed[i] = b'0' + to;
            let typed = String::from_utf8(typed).unwrap();
            prop_assert_eq!(parse_deposit_reference(&typed), None);
        }
    }
}
