//! Convert's tables: its pairs, the quotes the ledger still holds (open, or
//! accepted and not yet past their expiry), and every conversion by id and
//! by user. The house's inventory and revenue are the kernel's accounts.

use ledger_api::convert::{Answer, Conversion, Pair, Query, Quote};
use products::convert::{tables, Convert, ConvertChanges, ConvertState};
use storage::{Batch, Store, Table};

use super::{by_id, decode, exact, key2, meta, newest_of, put_encoded, SchemaError, FILTER_SCAN_MAX, META};
use crate::query::{limit, Read};

/// (base, quote), each a big-endian u32 -> [`Pair`].
pub const PAIRS: Table = Table::new(tables::PAIRS);
/// Quote id -> [`Quote`]: start-up loads these; closed ones are deleted.
pub const QUOTES: Table = Table::new(tables::QUOTES);
/// Quote id -> [`Conversion`], written once.
pub const CONVERSIONS: Table = Table::new(tables::CONVERSIONS);
/// (user, quote id) -> ().
pub const CONVERSIONS_BY_USER: Table = Table::scattered(tables::CONVERSIONS_BY_USER);

pub const TABLES: &[Table] = &[PAIRS, QUOTES, CONVERSIONS, CONVERSIONS_BY_USER];

const META_NEXT_QUOTE: &[u8] = b"convert.next_quote";

fn pair_key(base: u32, quote: u32) -> [u8; 8] {
    let mut key = [0; 8];
    key[..4].copy_from_slice(&base.to_be_bytes());
    key[4..].copy_from_slice(&quote.to_be_bytes());
    key
}

pub fn write(batch: &mut Batch, convert: &Convert, changes: &ConvertChanges) {
    for &(base, quote) in &changes.pairs {
        if let Some(pair) = convert.pair((base, quote)) {
            put_encoded(batch, PAIRS, &pair_key(base, quote), pair);
        }
    }
    for &id in &changes.quotes {
        match convert.quote_of(id) {
            Some(quote) => put_encoded(batch, QUOTES, &id.to_be_bytes(), quote),
            None => batch.delete(QUOTES, &id.to_be_bytes()),
        }
    }
    for conversion in &changes.conversions {
        put_encoded(batch, CONVERSIONS, &conversion.id.to_be_bytes(), conversion);
        batch.put(CONVERSIONS_BY_USER, &key2(conversion.quote.user, conversion.id), &[]);
    }
    put_encoded(batch, META, META_NEXT_QUOTE, &convert.next_quote());
}

pub fn load(store: &Store) -> Result<ConvertState, SchemaError> {
    let mut state = ConvertState { next_quote: meta(store, META_NEXT_QUOTE)?.unwrap_or(1), ..ConvertState::default() };
    for pair in pairs(store)? {
        state.pairs.insert((pair.spec.base, pair.spec.quote), pair);
    }
    for item in store.scan_all(QUOTES) {
        let (key, value) = item?;
        let id = u64::from_be_bytes(exact(QUOTES, &key)?);
        let quote: Quote = decode(QUOTES, &key, &value)?;
        state.quotes.insert(id, quote);
    }
    Ok(state)
}

pub fn pairs(store: &Store) -> Result<Vec<Pair>, SchemaError> {
    let mut out = Vec::new();
    for item in store.scan_all(PAIRS) {
        let (key, value) = item?;
        exact::<8>(PAIRS, &key)?;
        out.push(decode(PAIRS, &key, &value)?);
    }
    Ok(out)
}

pub fn conversion(store: &Store, id: u64) -> Result<Option<Conversion>, SchemaError> {
    by_id(store, CONVERSIONS, id)
}

/// Everyone's conversions, newest first.
fn conversions(store: &Store, limit: usize) -> Result<Vec<Conversion>, SchemaError> {
    store.scan_prefix(CONVERSIONS, &[], limit.min(FILTER_SCAN_MAX), true)?.iter().map(|(key, value)| decode(CONVERSIONS, key, value)).collect()
}

pub fn answer(store: &Store, query: &Query) -> Result<Answer, Read> {
    Ok(match *query {
        Query::Pairs => Answer::Pairs(pairs(store)?),
        Query::Conversion { id } => Answer::Conversion(conversion(store, id)?),
        Query::Conversions { user, limit: n } => Answer::Conversions(match user {
            Some(user) => newest_of(store, CONVERSIONS_BY_USER, CONVERSIONS, user, limit(n)?)?,
            None => conversions(store, limit(n)?)?,
        }),
    })
}
