//! The perpetual markets' tables, part of the exchange's: each market's
//! record (terms, oracles, prices, funding, the network's position), every
//! position (flat ones too: they name the margin account), every funding
//! paid, and every liquidation and deleveraging by id with each market's
//! and each user's. Margin, insurance and clearing balances are the kernel's.

use std::collections::BTreeMap;

use ledger_api::perpetual::{Answer, FundingRecord, LiquidationRecord, MarketView, PerpetualRecord, Position, PositionView, Query};
use ledger_api::{Amount, MarketId, UserId};
use ledger_core::AccountId;
use products::perpetual::{insurance, margin_account, tables, Balances, PerpetualMarket, Perpetuals, PerpetualsState};
use products::spot::{Spot, SpotChanges};
use products::wallet::available;
use storage::{Batch, Store, Table};

use super::{corrupt, decode, exact, kernel, key2, meta, newest_of, newest_where, put_encoded, SchemaError, META};
use crate::query::{limit, Read};

/// Market id, big-endian u32 -> [`PerpetualRecord`].
pub const MARKETS: Table = Table::new(tables::MARKETS);
/// (user, market) -> [`Position`].
pub const POSITIONS: Table = Table::new(tables::POSITIONS);
/// (market, at) -> [`FundingRecord`].
pub const FUNDINGS: Table = Table::new(tables::FUNDINGS);
/// Id -> [`LiquidationRecord`], written once.
pub const LIQUIDATIONS: Table = Table::new(tables::LIQUIDATIONS);
/// (market, id) -> ().
pub const LIQUIDATIONS_BY_MARKET: Table = Table::new(tables::LIQUIDATIONS_BY_MARKET);
/// (user, id) -> ().
pub const LIQUIDATIONS_BY_USER: Table = Table::scattered(tables::LIQUIDATIONS_BY_USER);

pub const TABLES: &[Table] = &[MARKETS, POSITIONS, FUNDINGS, LIQUIDATIONS, LIQUIDATIONS_BY_MARKET, LIQUIDATIONS_BY_USER];

/// (next entity, next liquidation id).
const META_COUNTERS: &[u8] = b"perpetual.counters";

pub fn write(batch: &mut Batch, spot: &Spot, changes: &SpotChanges) {
    let perpetuals = spot.perpetuals();
    for &market in &changes.perpetual_markets {
        if let Some(listed) = perpetuals.market(market) {
            put_encoded(batch, MARKETS, &market.to_be_bytes(), &listed.record());
        }
    }
    for &(user, market) in &changes.positions {
        if let Some(position) = perpetuals.position(user, market) {
            put_encoded(batch, POSITIONS, &key2(user, u64::from(market)), position);
        }
    }
    for funding in &changes.fundings {
        put_encoded(batch, FUNDINGS, &key2(u64::from(funding.market), funding.at_ms), funding);
    }
    for liquidation in &changes.liquidations {
        put_encoded(batch, LIQUIDATIONS, &liquidation.id.to_be_bytes(), liquidation);
        batch.put(LIQUIDATIONS_BY_MARKET, &key2(u64::from(liquidation.market), liquidation.id), &[]);
        batch.put(LIQUIDATIONS_BY_USER, &key2(liquidation.user, liquidation.id), &[]);
    }
    if !changes.positions.is_empty() || !changes.liquidations.is_empty() {
        put_encoded(batch, META, META_COUNTERS, &(perpetuals.next_entity(), perpetuals.next_liquidation_id()));
    }
}

pub fn load(store: &Store) -> Result<PerpetualsState, SchemaError> {
    let (next_entity, next_liquidation) = meta(store, META_COUNTERS)?.unwrap_or((1, 1));
    let mut state = PerpetualsState { next_entity, next_liquidation, ..PerpetualsState::default() };
    for (id, record) in markets(store)? {
        state.markets.insert(id, record);
    }
    for item in store.scan_all(POSITIONS) {
        let (key, value) = item?;
        let (user, market) = position_key(&key)?;
        if !state.markets.contains_key(&market) {
            return Err(corrupt(POSITIONS, &key, format!("a position in market {market}, which is not a perpetual market")));
        }
        state.positions.insert((user, market), decode(POSITIONS, &key, &value)?);
    }
    Ok(state)
}

fn position_key(key: &[u8]) -> Result<(UserId, MarketId), SchemaError> {
    let key = exact::<16>(POSITIONS, key)?;
    let user = u64::from_be_bytes(key[..8].try_into().expect("8 bytes"));
    let market = u64::from_be_bytes(key[8..].try_into().expect("8 bytes"));
    let market = MarketId::try_from(market).map_err(|_| corrupt(POSITIONS, &key, "a market id beyond 32 bits"))?;
    Ok((user, market))
}

/// Every market's record, each checked to make a valid market (restore counts on it).
fn markets(store: &Store) -> Result<Vec<(MarketId, PerpetualRecord)>, SchemaError> {
    let mut out = Vec::new();
    for item in store.scan_all(MARKETS) {
        let (key, value) = item?;
        let id = u32::from_be_bytes(exact(MARKETS, &key)?);
        let record: PerpetualRecord = decode(MARKETS, &key, &value)?;
        if record.spec.market != id {
            return Err(corrupt(MARKETS, &key, format!("the record is market {}'s", record.spec.market)));
        }
        PerpetualMarket::from_record(record.clone()).map_err(|reason| corrupt(MARKETS, &key, reason))?;
        out.push((id, record));
    }
    Ok(out)
}

/// Balances read from the store, for the accounts a read needs.
struct StoredBalances(BTreeMap<AccountId, Amount>);

impl StoredBalances {
    fn read(store: &Store, accounts: impl IntoIterator<Item = AccountId>) -> Result<StoredBalances, SchemaError> {
        let mut balances = BTreeMap::new();
        for account in accounts {
            balances.insert(account, kernel::account(store, account)?.map_or(0, |stored| stored.balance));
        }
        Ok(StoredBalances(balances))
    }
}

impl Balances for StoredBalances {
    fn balance(&self, account: AccountId) -> Amount {
        self.0.get(&account).copied().unwrap_or(0)
    }
}

fn market_views(store: &Store, now_ms: u64) -> Result<Vec<MarketView>, SchemaError> {
    let mut out = Vec::new();
    for (id, record) in markets(store)? {
        let listed = PerpetualMarket::from_record(record.clone()).map_err(|reason| corrupt(MARKETS, &id.to_be_bytes(), reason))?;
        let insurance = kernel::account(store, insurance(id, listed.collateral()))?.map_or(0, |stored| stored.balance);
        out.push(MarketView { index: listed.index(now_ms).ok(), predicted_rate_ppb: listed.predicted_rate_ppb(), insurance, record });
    }
    Ok(out)
}

/// A user's positions as they see them: computed as the ledger computes
/// them, from the stored records and balances.
fn positions_of(store: &Store, user: UserId) -> Result<Vec<PositionView>, SchemaError> {
    let mut positions: BTreeMap<(UserId, MarketId), Position> = BTreeMap::new();
    for (key, value) in store.scan_prefix(POSITIONS, &user.to_be_bytes(), usize::MAX, false)? {
        positions.insert(position_key(&key)?, decode(POSITIONS, &key, &value)?);
    }
    if positions.is_empty() {
        return Ok(Vec::new());
    }
    let markets: BTreeMap<MarketId, PerpetualRecord> = markets(store)?.into_iter().collect();
    let collaterals: Vec<u32> = markets.values().map(|record| record.spec.collateral).collect();
    let accounts = positions
        .iter()
        .filter_map(|((_, market), position)| markets.get(market).map(|record| margin_account(position.entity, record.spec.collateral)))
        .chain(collaterals.into_iter().map(|collateral| available(user, collateral)));
    let balances = StoredBalances::read(store, accounts)?;
    let keys: Vec<(UserId, MarketId)> = positions.keys().copied().collect();
    let perpetuals = Perpetuals::restore(PerpetualsState { markets, positions, next_entity: 1, next_liquidation: 1 });
    Ok(keys.into_iter().filter_map(|(user, market)| perpetuals.view(&balances, user, market)).collect())
}

fn fundings_of(store: &Store, market: MarketId, limit: usize) -> Result<Vec<FundingRecord>, SchemaError> {
    store.scan_prefix(FUNDINGS, &u64::from(market).to_be_bytes(), limit, true)?.iter().map(|(key, value)| decode(FUNDINGS, key, value)).collect()
}

pub fn answer(store: &Store, query: &Query) -> Result<Answer, Read> {
    Ok(match *query {
        Query::Markets { now_ms } => Answer::Markets(market_views(store, now_ms)?),
        Query::Positions { user } => Answer::Positions(positions_of(store, user)?),
        Query::Fundings { market, limit: n } => Answer::Fundings(fundings_of(store, market, limit(n)?)?),
        Query::Liquidations { market, user: Some(user), limit: n } => {
            Answer::Liquidations(newest_where(store, LIQUIDATIONS_BY_USER, LIQUIDATIONS, user, limit(n)?, |record: &LiquidationRecord| {
                record.market == market
            })?)
        }
        Query::Liquidations { market, user: None, limit: n } => {
            Answer::Liquidations(newest_of(store, LIQUIDATIONS_BY_MARKET, LIQUIDATIONS, u64::from(market), limit(n)?)?)
        }
    })
}
