//! The house's reads. Its accounts are the kernel's; it has no table.

use ledger_api::house::{Answer, HouseBalance, Query};
use ledger_core::AccountId;
use products::house::{House, INVENTORY, REVENUE};
use products::tokenization::WITHHELD;
use storage::{Batch, Store, Table};

use super::{kernel, SchemaError};
use crate::query::Read;

pub const TABLES: &[Table] = &[];

pub fn write(_: &mut Batch, _: &House, (): &()) {}

pub fn load(_: &Store) -> Result<(), SchemaError> {
    Ok(())
}

/// Every asset's house accounts, zero ones included.
pub fn balances(store: &Store) -> Result<Vec<HouseBalance>, SchemaError> {
    let balance =
        |asset, purpose| -> Result<i128, SchemaError> { Ok(kernel::account(store, AccountId::house(asset, purpose))?.map_or(0, |stored| stored.balance)) };
    kernel::assets(store)?
        .iter()
        .map(|asset| {
            Ok(HouseBalance {
                asset: asset.id,
                inventory: balance(asset.id, INVENTORY)?,
                revenue: balance(asset.id, REVENUE)?,
                withheld: balance(asset.id, WITHHELD)?,
            })
        })
        .collect()
}

pub fn answer(store: &Store, query: &Query) -> Result<Answer, Read> {
    Ok(match query {
        Query::Balances => Answer::Balances(balances(store)?),
    })
}
