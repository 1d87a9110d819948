//! Tokenization's tables: issuers, investors' claims, tokens, offerings
//! (open and closed), subscriptions by id, offering and investor, and
//! tranches; distributions and their entitlements by distribution and by
//! holder. Start-up loads the open offerings, their open subscriptions,
//! the unvested tranches, the open distributions and their unclaimed
//! entitlements; the rest is history the reads return.

use ledger_api::tokenization::{
    Answer, Claims, Distribution, DistributionStatus, Entitlement, Holding, Offering, OfferingStatus, Query, Subscription, SubscriptionStatus, Token, Tranche,
};
use ledger_core::AccountId;
use products::tokenization::{tables, Tokenization, TokenizationChanges, TokenizationState, FROZEN};
use products::wallet::AVAILABLE;
use storage::{Batch, Store, Table};

use super::{by_id, decode, exact, kernel, key2, meta, newest_of, put_encoded, SchemaError, FILTER_SCAN_MAX, META};
use crate::query::{limit, Read};

/// User -> ().
pub const ISSUERS: Table = Table::new(tables::ISSUERS);
/// User -> [`Claims`].
pub const CLAIMS: Table = Table::new(tables::CLAIMS);
/// Asset -> [`Token`].
pub const TOKENS: Table = Table::new(tables::TOKENS);
/// Offering id -> [`Offering`], rewritten as it changes.
pub const OFFERINGS: Table = Table::new(tables::OFFERINGS);
/// Subscription id -> [`Subscription`], rewritten as it changes.
pub const SUBSCRIPTIONS: Table = Table::new(tables::SUBSCRIPTIONS);
/// (offering, subscription id) -> ().
pub const SUBSCRIPTIONS_BY_OFFERING: Table = Table::new(tables::SUBSCRIPTIONS_BY_OFFERING);
/// (investor, subscription id) -> ().
pub const SUBSCRIPTIONS_BY_INVESTOR: Table = Table::scattered(tables::SUBSCRIPTIONS_BY_INVESTOR);
/// (investor, subscription id, index) -> [`Tranche`]; a recovered tranche
/// moves to its new investor's rows.
pub const TRANCHES: Table = Table::new(tables::TRANCHES);
/// Distribution id -> [`Distribution`], rewritten as it changes.
pub const DISTRIBUTIONS: Table = Table::new(tables::DISTRIBUTIONS);
/// (distribution, holder) -> [`Entitlement`], rewritten as it is claimed or reclaimed.
pub const ENTITLEMENTS: Table = Table::new(tables::ENTITLEMENTS);
/// (holder, distribution) -> [`Entitlement`], the same rows by holder.
pub const ENTITLEMENTS_BY_HOLDER: Table = Table::scattered(tables::ENTITLEMENTS_BY_HOLDER);

pub const TABLES: &[Table] = &[
    ISSUERS,
    CLAIMS,
    TOKENS,
    OFFERINGS,
    SUBSCRIPTIONS,
    SUBSCRIPTIONS_BY_OFFERING,
    SUBSCRIPTIONS_BY_INVESTOR,
    TRANCHES,
    DISTRIBUTIONS,
    ENTITLEMENTS,
    ENTITLEMENTS_BY_HOLDER,
];

const META_NEXT_OFFERING: &[u8] = b"tokenization.next_offering";
const META_NEXT_SUBSCRIPTION: &[u8] = b"tokenization.next_subscription";
const META_OFFERING_FEE: &[u8] = b"tokenization.offering_fee_bps";
/// The listings' fees: (maker, taker) in millionths.
const META_LISTING_FEES: &[u8] = b"tokenization.listing_fees_ppm";
const META_NEXT_DISTRIBUTION: &[u8] = b"tokenization.next_distribution";

fn tranche_key(tranche: &Tranche) -> [u8; 20] {
    let mut key = [0; 20];
    key[..16].copy_from_slice(&key2(tranche.investor, tranche.subscription));
    key[16..].copy_from_slice(&tranche.index.to_be_bytes());
    key
}

pub fn write(batch: &mut Batch, tokenization: &Tokenization, changes: &TokenizationChanges) {
    for &(user, issuer) in &changes.issuers {
        if issuer {
            batch.put(ISSUERS, &user.to_be_bytes(), &[]);
        } else {
            batch.delete(ISSUERS, &user.to_be_bytes());
        }
    }
    for (user, claims) in &changes.claims {
        match claims {
            Some(claims) => put_encoded(batch, CLAIMS, &user.to_be_bytes(), claims),
            None => batch.delete(CLAIMS, &user.to_be_bytes()),
        }
    }
    for token in &changes.tokens {
        put_encoded(batch, TOKENS, &u64::from(token.asset).to_be_bytes(), token);
    }
    for offering in &changes.offerings {
        put_encoded(batch, OFFERINGS, &offering.id.to_be_bytes(), offering);
    }
    for subscription in &changes.subscriptions {
        put_encoded(batch, SUBSCRIPTIONS, &subscription.id.to_be_bytes(), subscription);
        batch.put(SUBSCRIPTIONS_BY_OFFERING, &key2(subscription.offering, subscription.id), &[]);
        batch.put(SUBSCRIPTIONS_BY_INVESTOR, &key2(subscription.investor, subscription.id), &[]);
    }
    // Before the puts: a recovered tranche's new row is under its new investor.
    for tranche in &changes.tranches_moved {
        batch.delete(TRANCHES, &tranche_key(tranche));
    }
    for tranche in &changes.tranches {
        put_encoded(batch, TRANCHES, &tranche_key(tranche), tranche);
    }
    for distribution in &changes.distributions {
        put_encoded(batch, DISTRIBUTIONS, &distribution.id.to_be_bytes(), distribution);
    }
    for entitlement in &changes.entitlements {
        put_encoded(batch, ENTITLEMENTS, &key2(entitlement.distribution, entitlement.holder), entitlement);
        put_encoded(batch, ENTITLEMENTS_BY_HOLDER, &key2(entitlement.holder, entitlement.distribution), entitlement);
    }
    if changes.counters {
        let state = tokenization.counters();
        put_encoded(batch, META, META_NEXT_OFFERING, &state.0);
        put_encoded(batch, META, META_NEXT_SUBSCRIPTION, &state.1);
        put_encoded(batch, META, META_OFFERING_FEE, &tokenization.offering_fee_bps());
        put_encoded(batch, META, META_LISTING_FEES, &tokenization.listing_fees());
        put_encoded(batch, META, META_NEXT_DISTRIBUTION, &tokenization.next_distribution());
    }
}

pub fn load(store: &Store) -> Result<TokenizationState, SchemaError> {
    let listing_fees: (u32, u32) = meta(store, META_LISTING_FEES)?.unwrap_or((0, 0));
    let mut state = TokenizationState {
        next_offering: meta(store, META_NEXT_OFFERING)?.unwrap_or(1),
        next_subscription: meta(store, META_NEXT_SUBSCRIPTION)?.unwrap_or(1),
        next_distribution: meta(store, META_NEXT_DISTRIBUTION)?.unwrap_or(1),
        offering_fee_bps: meta(store, META_OFFERING_FEE)?.unwrap_or(0),
        listing_maker_fee_ppm: listing_fees.0,
        listing_taker_fee_ppm: listing_fees.1,
        ..TokenizationState::default()
    };
    for item in store.scan_all(ISSUERS) {
        let (key, _) = item?;
        state.issuers.insert(u64::from_be_bytes(exact(ISSUERS, &key)?));
    }
    for item in store.scan_all(CLAIMS) {
        let (key, value) = item?;
        state.claims.insert(u64::from_be_bytes(exact(CLAIMS, &key)?), decode(CLAIMS, &key, &value)?);
    }
    for token in tokens(store)? {
        state.tokens.insert(token.asset, token);
    }
    for offering in all_offerings(store)?.into_iter().filter(|offering| offering.status == OfferingStatus::Open) {
        for subscription in subscriptions_of(store, offering.id, 0, usize::MAX)? {
            if subscription.status == SubscriptionStatus::Open {
                state.open_subscriptions.insert(subscription.id, subscription);
            }
        }
        state.open_offerings.insert(offering.id, offering);
    }
    for item in store.scan_all(TRANCHES) {
        let (key, value) = item?;
        let tranche: Tranche = decode(TRANCHES, &key, &value)?;
        if !tranche.vested {
            state.tranches.insert((tranche.subscription, tranche.index), tranche);
        }
    }
    for item in store.scan_all(DISTRIBUTIONS) {
        let (key, value) = item?;
        let distribution: Distribution = decode(DISTRIBUTIONS, &key, &value)?;
        if distribution.status == DistributionStatus::Closed {
            continue;
        }
        if distribution.status == DistributionStatus::Recorded {
            for entitlement in entitlements_of(store, distribution.id, 0, usize::MAX)? {
                if entitlement.gross > 0 && entitlement.claimed_ms.is_none() && !entitlement.reclaimed {
                    state.entitlements.insert((distribution.id, entitlement.holder), entitlement);
                }
            }
        }
        state.open_distributions.insert(distribution.id, distribution);
    }
    Ok(state)
}

/// At most `limit` distributions, of one token or all, newest first.
fn distributions(store: &Store, token: Option<u32>, limit: usize) -> Result<Vec<Distribution>, SchemaError> {
    newest_of_token(store, DISTRIBUTIONS, token, limit, |distribution: &Distribution| distribution.spec.token)
}

/// A holder's entitlements, of the newest distributions first.
fn entitlements_of_holder(store: &Store, holder: u64, limit: usize) -> Result<Vec<Entitlement>, SchemaError> {
    let mut out = Vec::new();
    for (key, value) in store.scan_prefix(ENTITLEMENTS_BY_HOLDER, &holder.to_be_bytes(), limit, true)? {
        out.push(decode(ENTITLEMENTS_BY_HOLDER, &key, &value)?);
    }
    Ok(out)
}

/// A distribution's entitlements of holders after `after`, by holder.
fn entitlements_of(store: &Store, distribution: u64, after: u64, limit: usize) -> Result<Vec<Entitlement>, SchemaError> {
    let mut out = Vec::new();
    let Some(first) = after.checked_add(1) else { return Ok(out) };
    let start = key2(distribution, first);
    let end = [&distribution.to_be_bytes()[..], &[0xff; 8], &[0]].concat();
    for (key, value) in store.scan_range(ENTITLEMENTS, &start, &end, limit, false)? {
        out.push(decode(ENTITLEMENTS, &key, &value)?);
    }
    Ok(out)
}

fn tokens(store: &Store) -> Result<Vec<Token>, SchemaError> {
    store.scan_all(TOKENS).map(|item| item.map_err(SchemaError::from).and_then(|(key, value)| decode(TOKENS, &key, &value))).collect()
}

/// Every offering, oldest first.
fn all_offerings(store: &Store) -> Result<Vec<Offering>, SchemaError> {
    store.scan_all(OFFERINGS).map(|item| item.map_err(SchemaError::from).and_then(|(key, value)| decode(OFFERINGS, &key, &value))).collect()
}

/// At most `limit` offerings, of one token or all, newest first (no index
/// by token: offerings are few beside subscriptions).
fn offerings(store: &Store, token: Option<u32>, limit: usize) -> Result<Vec<Offering>, SchemaError> {
    newest_of_token(store, OFFERINGS, token, limit, |offering: &Offering| offering.spec.token)
}

/// At most `limit` rows of `table` (keyed by id), of one token or all,
/// newest first. All are the newest rows; one token's are found among the
/// newest [`FILTER_SCAN_MAX`].
fn newest_of_token<T: serde::de::DeserializeOwned>(
    store: &Store,
    table: Table,
    token: Option<u32>,
    limit: usize,
    token_of: impl Fn(&T) -> u32,
) -> Result<Vec<T>, SchemaError> {
    let rows = store.scan_prefix(table, &[], if token.is_none() { limit } else { FILTER_SCAN_MAX }, true)?;
    let mut out = Vec::with_capacity(rows.len().min(limit));
    for (key, value) in rows {
        let row: T = decode(table, &key, &value)?;
        if token.is_none_or(|t| token_of(&row) == t) {
            out.push(row);
            if out.len() == limit {
                break;
            }
        }
    }
    Ok(out)
}

/// An offering's subscriptions after id `after`, oldest first.
fn subscriptions_of(store: &Store, offering: u64, after: u64, limit: usize) -> Result<Vec<Subscription>, SchemaError> {
    let mut out = Vec::new();
    let Some(first) = after.checked_add(1) else { return Ok(out) };
    // A seek to the page's first key: a page costs its length, not the offering's size.
    let start = [offering.to_be_bytes(), first.to_be_bytes()].concat();
    // Past every 16-byte key of the offering: they are all prefixes of it.
    let end = [&offering.to_be_bytes()[..], &[0xff; 8], &[0]].concat();
    for (key, _) in store.scan_range(SUBSCRIPTIONS_BY_OFFERING, &start, &end, limit, false)? {
        let id = u64::from_be_bytes(exact::<16>(SUBSCRIPTIONS_BY_OFFERING, &key)?[8..].try_into().expect("8 bytes"));
        let subscription =
            by_id(store, SUBSCRIPTIONS, id)?.ok_or_else(|| super::corrupt(SUBSCRIPTIONS_BY_OFFERING, &key, "the index names a missing subscription"))?;
        out.push(subscription);
    }
    Ok(out)
}

fn tranches_of(store: &Store, investor: u64, limit: usize) -> Result<Vec<Tranche>, SchemaError> {
    let mut out = Vec::new();
    for (key, value) in store.scan_prefix(TRANCHES, &investor.to_be_bytes(), limit, true)? {
        out.push(decode(TRANCHES, &key, &value)?);
    }
    Ok(out)
}

/// Every user holding the token at `at_ms`, and its supply then, from the
/// stored balances with every later transfer undone.
fn cap_table_at(store: &Store, token: &Token, at_ms: u64) -> Result<(i128, Vec<Holding>), SchemaError> {
    let mut supply = 0;
    let mut balances = Vec::new();
    for (account, stored) in kernel::stored_accounts_of_asset(store, token.asset)? {
        let balance = kernel::balance_at(store, account, &stored, at_ms)?;
        if account == products::tokenization::issued(token.asset) {
            supply = -balance;
        }
        balances.push((account, balance));
    }
    Ok((supply, holdings(balances)))
}

/// Every user holding the token now, from the stored balances.
fn cap_table(store: &Store, token: &Token) -> Result<Vec<Holding>, SchemaError> {
    Ok(holdings(kernel::accounts_of_asset(store, token.asset)?))
}

/// Users' balances of a token summed by user: what they hold in every
/// account, how much of it is not free, and how much of that is frozen.
fn holdings(balances: impl IntoIterator<Item = (AccountId, i128)>) -> Vec<Holding> {
    let mut holdings: std::collections::BTreeMap<u64, Holding> = std::collections::BTreeMap::new();
    for (account, balance) in balances {
        let Some(user) = account.user_id() else { continue };
        let holding = holdings.entry(user).or_insert(Holding { user, balance: 0, locked: 0, frozen: 0 });
        holding.balance += balance;
        // Orders' holds (LOCKED), unvested tranches (VESTING) and frozen tokens are not free to send.
        if account.purpose != AVAILABLE {
            holding.locked += balance;
        }
        if account.purpose == FROZEN {
            holding.frozen += balance;
        }
    }
    holdings.into_values().filter(|holding| holding.balance != 0).collect()
}

pub fn answer(store: &Store, query: &Query) -> Result<Answer, Read> {
    Ok(match *query {
        Query::Tokens => Answer::Tokens(tokens(store)?),
        Query::Offerings { token, limit: n } => Answer::Offerings(offerings(store, token, limit(n)?)?),
        Query::Offering(id) => Answer::Offering(by_id::<Offering>(store, OFFERINGS, id)?.map(Box::new)),
        Query::Subscriptions { offering, after, limit: n } => Answer::Subscriptions(subscriptions_of(store, offering, after, limit(n)?)?),
        Query::Subscription(id) => Answer::Subscription(by_id::<Subscription>(store, SUBSCRIPTIONS, id)?.map(Box::new)),
        Query::InvestorSubscriptions { investor, limit: n } => {
            Answer::Subscriptions(newest_of(store, SUBSCRIPTIONS_BY_INVESTOR, SUBSCRIPTIONS, investor, limit(n)?)?)
        }
        Query::Tranches { investor, limit: n } => Answer::Tranches(tranches_of(store, investor, limit(n)?)?),
        Query::OfferingFee => Answer::OfferingFee(meta(store, META_OFFERING_FEE)?.unwrap_or(0)),
        Query::ListingFees => {
            let (maker_fee_ppm, taker_fee_ppm) = meta(store, META_LISTING_FEES)?.unwrap_or((0, 0));
            Answer::ListingFees { maker_fee_ppm, taker_fee_ppm }
        }
        Query::Claims(user) => Answer::Claims(by_id::<Claims>(store, CLAIMS, user)?),
        Query::Issuers => Answer::Issuers(
            store
                .scan_all(ISSUERS)
                .map(|item| item.map_err(SchemaError::from).and_then(|(key, _)| Ok(u64::from_be_bytes(exact(ISSUERS, &key)?))))
                .collect::<Result<_, _>>()?,
        ),
        Query::Distributions { token, limit: n } => Answer::Distributions(distributions(store, token, limit(n)?)?),
        Query::Distribution(id) => Answer::Distribution(by_id::<Distribution>(store, DISTRIBUTIONS, id)?.map(Box::new)),
        Query::Entitlements { distribution, after, limit: n } => Answer::Entitlements(entitlements_of(store, distribution, after, limit(n)?)?),
        Query::HolderEntitlements { holder, limit: n } => Answer::Entitlements(entitlements_of_holder(store, holder, limit(n)?)?),
        Query::CapTable(asset) => {
            let Some(token) = tokens(store)?.into_iter().find(|token| token.asset == asset) else {
                return Err(Read::Bad(format!("asset {asset} is not a token")));
            };
            Answer::CapTable(cap_table(store, &token)?)
        }
        Query::CapTableAt { token: asset, at_ms } => {
            let Some(token) = tokens(store)?.into_iter().find(|token| token.asset == asset) else {
                return Err(Read::Bad(format!("asset {asset} is not a token")));
            };
            let (supply, holdings) = cap_table_at(store, &token, at_ms)?;
            Answer::CapTableAt { supply, holdings }
        }
    })
}
