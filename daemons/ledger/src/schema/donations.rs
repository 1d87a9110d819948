//! Donations' tables: organisers, campaigns (with an index of those not
//! yet paid out or refunded), gifts by id, campaign and donor, receipt
//! numbers and their sequences, matching pools and payouts. Start-up loads
//! the open campaigns, their pools, their held gifts and what each donor
//! reserved of each pool (summed from the campaign's gifts not refunded);
//! the rest is history the reads return.

use std::collections::BTreeMap;

use ledger_api::donations::{Answer, Campaign, CampaignStatus, Donation, DonationStatus, Organiser, Pool, Query, ReceiptNumber};
use products::donations::{tables, Donations, DonationsChanges, DonationsState};
use storage::{Batch, Store, Table};

use super::{by_id, decode, exact, key2, meta, newest_of, put_encoded, SchemaError, FILTER_SCAN_MAX, META};
use crate::query::{limit, Read};

/// User -> [`Organiser`].
pub const ORGANISERS: Table = Table::new(tables::ORGANISERS);
/// Campaign id -> [`Campaign`], rewritten as it changes.
pub const CAMPAIGNS: Table = Table::new(tables::CAMPAIGNS);
/// Campaign id -> (), while it is neither paid out nor refunded.
pub const OPEN_CAMPAIGNS: Table = Table::new(tables::OPEN_CAMPAIGNS);
/// Donation id -> [`Donation`], rewritten as it is paid out or refunded.
pub const DONATIONS: Table = Table::new(tables::DONATIONS);
/// (campaign, donation id) -> ().
pub const DONATIONS_BY_CAMPAIGN: Table = Table::new(tables::DONATIONS_BY_CAMPAIGN);
/// (donor, donation id) -> ().
pub const DONATIONS_BY_DONOR: Table = Table::scattered(tables::DONATIONS_BY_DONOR);
/// (organiser, year, number) -> donation id; (organiser, year) -> the last number.
pub const RECEIPTS: Table = Table::new(tables::RECEIPTS);
pub const RECEIPT_SEQUENCES: Table = Table::new(tables::RECEIPT_SEQUENCES);
/// Pool id -> [`Pool`]; (campaign, pool id) -> ().
pub const POOLS: Table = Table::new(tables::POOLS);
pub const POOLS_BY_CAMPAIGN: Table = Table::new(tables::POOLS_BY_CAMPAIGN);
/// Payout id -> [`Payout`]; (campaign, payout id) -> ().
pub const PAYOUTS: Table = Table::new(tables::PAYOUTS);
pub const PAYOUTS_BY_CAMPAIGN: Table = Table::new(tables::PAYOUTS_BY_CAMPAIGN);

pub const TABLES: &[Table] = &[
    ORGANISERS,
    CAMPAIGNS,
    OPEN_CAMPAIGNS,
    DONATIONS,
    DONATIONS_BY_CAMPAIGN,
    DONATIONS_BY_DONOR,
    RECEIPTS,
    RECEIPT_SEQUENCES,
    POOLS,
    POOLS_BY_CAMPAIGN,
    PAYOUTS,
    PAYOUTS_BY_CAMPAIGN,
];

/// (next campaign, donation, pool, payout), and the platform's fee in basis points.
const META_COUNTERS: &[u8] = b"donations.counters";
const META_FEE: &[u8] = b"donations.fee_bps";

fn receipt_key(receipt: &ReceiptNumber) -> [u8; 14] {
    let mut key = [0; 14];
    key[..8].copy_from_slice(&receipt.organiser.to_be_bytes());
    key[8..10].copy_from_slice(&receipt.year.to_be_bytes());
    key[10..].copy_from_slice(&receipt.number.to_be_bytes());
    key
}

fn sequence_key(organiser: u64, year: u16) -> [u8; 10] {
    let mut key = [0; 10];
    key[..8].copy_from_slice(&organiser.to_be_bytes());
    key[8..].copy_from_slice(&year.to_be_bytes());
    key
}

pub fn write(batch: &mut Batch, donations: &Donations, changes: &DonationsChanges) {
    for (user, organiser) in &changes.organisers {
        match organiser {
            Some(organiser) => put_encoded(batch, ORGANISERS, &user.to_be_bytes(), organiser),
            None => batch.delete(ORGANISERS, &user.to_be_bytes()),
        }
    }
    for campaign in &changes.campaigns {
        put_encoded(batch, CAMPAIGNS, &campaign.id.to_be_bytes(), campaign);
        if campaign.closed_ms.is_some() {
            batch.delete(OPEN_CAMPAIGNS, &campaign.id.to_be_bytes());
        } else {
            batch.put(OPEN_CAMPAIGNS, &campaign.id.to_be_bytes(), &[]);
        }
    }
    for donation in &changes.donations {
        put_encoded(batch, DONATIONS, &donation.id.to_be_bytes(), donation);
        batch.put(DONATIONS_BY_CAMPAIGN, &key2(donation.gift.campaign, donation.id), &[]);
        batch.put(DONATIONS_BY_DONOR, &key2(donation.donor, donation.id), &[]);
        let receipt = donation.receipt;
        batch.put(RECEIPTS, &receipt_key(&receipt), &donation.id.to_be_bytes());
        // The sequence as it stands after the batch (a later gift's number, if any).
        let last = donations.receipts(receipt.organiser, receipt.year);
        batch.put(RECEIPT_SEQUENCES, &sequence_key(receipt.organiser, receipt.year), &last.to_be_bytes());
    }
    for pool in &changes.pools {
        put_encoded(batch, POOLS, &pool.id.to_be_bytes(), pool);
        batch.put(POOLS_BY_CAMPAIGN, &key2(pool.spec.campaign, pool.id), &[]);
    }
    for payout in &changes.payouts {
        put_encoded(batch, PAYOUTS, &payout.id.to_be_bytes(), payout);
        batch.put(PAYOUTS_BY_CAMPAIGN, &key2(payout.campaign, payout.id), &[]);
    }
    if changes.counters {
        put_encoded(batch, META, META_COUNTERS, &donations.counters());
        put_encoded(batch, META, META_FEE, &donations.fee_bps());
    }
}

pub fn load(store: &Store) -> Result<DonationsState, SchemaError> {
    let (next_campaign, next_donation, next_pool, next_payout) = meta(store, META_COUNTERS)?.unwrap_or((1, 1, 1, 1));
    let mut state =
        DonationsState { next_campaign, next_donation, next_pool, next_payout, fee_bps: meta(store, META_FEE)?.unwrap_or(0), ..DonationsState::default() };
    for item in store.scan_all(ORGANISERS) {
        let (key, value) = item?;
        state.organisers.insert(u64::from_be_bytes(exact(ORGANISERS, &key)?), decode(ORGANISERS, &key, &value)?);
    }
    for item in store.scan_all(RECEIPT_SEQUENCES) {
        let (key, value) = item?;
        let key: [u8; 10] = exact(RECEIPT_SEQUENCES, &key)?;
        let organiser = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
        let year = u16::from_be_bytes(key[8..].try_into().expect("2 bytes"));
        state.receipts.insert((organiser, year), u32::from_be_bytes(exact(RECEIPT_SEQUENCES, &value)?));
    }
    let mut matched: BTreeMap<(u64, u64), i128> = BTreeMap::new();
    for item in store.scan_all(OPEN_CAMPAIGNS) {
        let (key, _) = item?;
        let id = u64::from_be_bytes(exact(OPEN_CAMPAIGNS, &key)?);
        let campaign: Campaign = by_id(store, CAMPAIGNS, id)?.ok_or_else(|| super::corrupt(OPEN_CAMPAIGNS, &key, "an open campaign without its record"))?;
        for donation in donations_of(store, id, u64::MAX, usize::MAX)? {
            if donation.status == DonationStatus::Refunded {
                continue;
            }
            for m in &donation.matches {
                *matched.entry((m.pool, donation.donor)).or_default() += m.amount;
            }
            if donation.status == DonationStatus::Held {
                state.held.insert(donation.id, donation);
            }
        }
        for pool in pools_of(store, id)? {
            state.pools.insert(pool.id, pool);
        }
        state.campaigns.insert(id, campaign);
    }
    state.matched = matched.into_iter().filter(|(_, amount)| *amount != 0).collect();
    Ok(state)
}

/// A campaign's gifts before id `before`, newest first.
fn donations_of(store: &Store, campaign: u64, before: u64, limit: usize) -> Result<Vec<Donation>, SchemaError> {
    let mut out = Vec::new();
    let (start, end) = (key2(campaign, 0), key2(campaign, before));
    for (key, _) in store.scan_range(DONATIONS_BY_CAMPAIGN, &start, &end, limit, true)? {
        let id = u64::from_be_bytes(exact::<16>(DONATIONS_BY_CAMPAIGN, &key)?[8..].try_into().expect("8 bytes"));
        out.push(by_id(store, DONATIONS, id)?.ok_or_else(|| super::corrupt(DONATIONS_BY_CAMPAIGN, &key, "the index names a missing gift"))?);
    }
    Ok(out)
}

/// A donor's gifts before id `before`, newest first.
fn donations_of_donor(store: &Store, donor: u64, before: u64, limit: usize) -> Result<Vec<Donation>, SchemaError> {
    if before == 0 {
        return newest_of(store, DONATIONS_BY_DONOR, DONATIONS, donor, limit);
    }
    let mut out = Vec::new();
    for (key, _) in store.scan_range(DONATIONS_BY_DONOR, &key2(donor, 0), &key2(donor, before), limit, true)? {
        let id = u64::from_be_bytes(exact::<16>(DONATIONS_BY_DONOR, &key)?[8..].try_into().expect("8 bytes"));
        out.push(by_id(store, DONATIONS, id)?.ok_or_else(|| super::corrupt(DONATIONS_BY_DONOR, &key, "the index names a missing gift"))?);
    }
    Ok(out)
}

fn pools_of(store: &Store, campaign: u64) -> Result<Vec<Pool>, SchemaError> {
    let mut out = Vec::new();
    for (key, _) in store.scan_prefix(POOLS_BY_CAMPAIGN, &campaign.to_be_bytes(), usize::MAX, false)? {
        let id = u64::from_be_bytes(exact::<16>(POOLS_BY_CAMPAIGN, &key)?[8..].try_into().expect("8 bytes"));
        out.push(by_id(store, POOLS, id)?.ok_or_else(|| super::corrupt(POOLS_BY_CAMPAIGN, &key, "the index names a missing pool"))?);
    }
    Ok(out)
}

/// At most `limit` campaigns, newest first, of one organiser or status or
/// any: all are the newest rows; a filter looks among the newest
/// [`FILTER_SCAN_MAX`].
fn campaigns(store: &Store, organiser: Option<u64>, status: Option<CampaignStatus>, limit: usize) -> Result<Vec<Campaign>, SchemaError> {
    let filtered = organiser.is_some() || status.is_some();
    let rows = store.scan_prefix(CAMPAIGNS, &[], if filtered { FILTER_SCAN_MAX } else { limit }, true)?;
    let mut out = Vec::new();
    for (key, value) in rows {
        let campaign: Campaign = decode(CAMPAIGNS, &key, &value)?;
        if organiser.is_none_or(|o| campaign.organiser == o) && status.is_none_or(|s| campaign.status == s) {
            out.push(campaign);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

pub fn answer(store: &Store, query: &Query) -> Result<Answer, Read> {
    Ok(match *query {
        Query::Organiser(user) => Answer::Organiser(by_id::<Organiser>(store, ORGANISERS, user)?),
        Query::Organisers => Answer::Organisers(
            store
                .scan_all(ORGANISERS)
                .map(|item| {
                    item.map_err(SchemaError::from)
                        .and_then(|(key, value)| Ok((u64::from_be_bytes(exact(ORGANISERS, &key)?), decode(ORGANISERS, &key, &value)?)))
                })
                .collect::<Result<_, _>>()?,
        ),
        Query::DonationFee => Answer::DonationFee(meta(store, META_FEE)?.unwrap_or(0)),
        Query::Campaigns { organiser, status, limit: n } => Answer::Campaigns(campaigns(store, organiser, status, limit(n)?)?),
        Query::Campaign(id) => Answer::Campaign(by_id::<Campaign>(store, CAMPAIGNS, id)?.map(Box::new)),
        Query::CampaignDonations { campaign, before, limit: n } => {
            Answer::Donations(donations_of(store, campaign, if before == 0 { u64::MAX } else { before }, limit(n)?)?)
        }
        Query::Donation(id) => Answer::Donation(by_id::<Donation>(store, DONATIONS, id)?.map(Box::new)),
        Query::DonorDonations { donor, before, limit: n } => Answer::Donations(donations_of_donor(store, donor, before, limit(n)?)?),
        Query::Receipt(receipt) => {
            let donation = match store.get(RECEIPTS, &receipt_key(&receipt)).map_err(SchemaError::from)? {
                Some(value) => by_id::<Donation>(store, DONATIONS, u64::from_be_bytes(exact(RECEIPTS, &value)?))?,
                None => None,
            };
            Answer::Donation(donation.map(Box::new))
        }
        Query::Pools(campaign) => Answer::Pools(pools_of(store, campaign)?),
        Query::Payouts { campaign, limit: n } => Answer::Payouts(newest_of(store, PAYOUTS_BY_CAMPAIGN, PAYOUTS, campaign, limit(n)?)?),
        Query::PayoutsDue { at_ms } => {
            let mut due = Vec::new();
            for item in store.scan_all(OPEN_CAMPAIGNS) {
                let (key, _) = item.map_err(SchemaError::from)?;
                let id = u64::from_be_bytes(exact(OPEN_CAMPAIGNS, &key)?);
                if let Some(campaign) = by_id::<Campaign>(store, CAMPAIGNS, id)?.filter(|campaign| campaign.payout_due(at_ms).is_some()) {
                    due.push(campaign);
                }
            }
            Answer::Campaigns(due)
        }
        Query::DonationsAfter { after, limit: n } => Answer::Donations(after_id(store, DONATIONS, after, limit(n)?)?),
        Query::PayoutsAfter { after, limit: n } => Answer::Payouts(after_id(store, PAYOUTS, after, limit(n)?)?),
    })
}

/// The records of a table keyed by id after `after`, oldest first.
fn after_id<T: serde::de::DeserializeOwned>(store: &Store, table: Table, after: u64, limit: usize) -> Result<Vec<T>, SchemaError> {
    let Some(first) = after.checked_add(1) else { return Ok(Vec::new()) };
    let rows = store.scan_range(table, &first.to_be_bytes(), &u64::MAX.to_be_bytes(), limit, false)?;
    rows.iter().map(|(key, value)| decode(table, key, value)).collect()
}
