//! The caller's withdrawal address book and allowlist-only switch. Every
//! change needs a fresh two-factor code when two-factor is on; a new or
//! changed address is usable after `[withdrawals] address_cooldown_seconds`.

use async_graphql::{Context, Error, InputObject, Object, SimpleObject, ID};

use super::{at, caller_id, coded, now_ms, services, Catalog, DateTime};
use crate::address_book::{self as book, AddressBookError};

#[derive(SimpleObject)]
pub struct AddressBookEntry {
    pub id: ID,
    pub asset: String,
    /// `bitcoin`, `ethereum`… for an asset whose networks are declared; as written otherwise (SEPA, SWIFT).
    pub network: String,
    /// As checked: bech32 in lower case, Ethereum with its EIP-55 checksum.
    pub address: String,
    pub memo: Option<String>,
    pub label: String,
    pub created_at: DateTime,
    /// When it may first be withdrawn to.
    pub usable_from: DateTime,
    /// Whether its cooldown has passed.
    pub usable: bool,
}

#[derive(SimpleObject)]
pub struct WithdrawalSettings {
    /// Whether withdrawals go only to the address book.
    pub allowlist_only: bool,
    /// When allowlist-only, turned off, actually ends (the cooldown), if it was turned off.
    pub allowlist_only_ends_at: Option<DateTime>,
}

#[derive(InputObject)]
pub struct AddressBookEntryInput {
    pub asset: String,
    pub network: String,
    pub address: String,
    pub memo: Option<String>,
    pub label: String,
}

fn api_entry(entry: &book::Entry, now_ms: u64) -> AddressBookEntry {
    AddressBookEntry {
        id: ID(entry.id.to_string()),
        asset: entry.asset.clone(),
        network: entry.network.clone(),
        address: entry.address.clone(),
        memo: entry.memo.clone(),
        label: entry.label.clone(),
        created_at: at(entry.created_ms),
        usable_from: at(entry.usable_from_ms),
        usable: entry.usable_from_ms <= now_ms,
    }
}

pub(crate) fn book_error(error: AddressBookError) -> Error {
    match error {
        AddressBookError::BadInput(reason) => coded("BAD_USER_INPUT", reason),
        AddressBookError::Full(_) => coded("LIMIT_EXCEEDED", error.to_string()),
        AddressBookError::NotFound => coded("NOT_FOUND", "you have no address book entry with this id"),
        other => {
            tracing::error!(error = %other, "address book store failed");
            coded("UNAVAILABLE", "the address book is unavailable; try again")
        }
    }
}

fn entry_id(id: &ID) -> Result<u64, Error> {
    id.parse().map_err(|_| coded("NOT_FOUND", "you have no address book entry with this id"))
}

async fn new_entry(ctx: &Context<'_>, input: AddressBookEntryInput) -> Result<book::NewEntry, Error> {
    let symbol = input.asset.trim().to_string();
    // Only an asset the ledger has: a book entry for a typo would never be used.
    Catalog::covering(ctx, |c| c.asset_by_symbol(&symbol).is_ok()).await?.asset_by_symbol(&symbol)?;
    Ok(book::NewEntry { asset: symbol, network: input.network, address: input.address, memo: input.memo, label: input.label })
}

#[derive(Default)]
pub struct AddressBookQuery;

#[Object]
impl AddressBookQuery {
    /// The caller's withdrawal addresses.
    async fn address_book(&self, ctx: &Context<'_>) -> Result<Vec<AddressBookEntry>, Error> {
        let user = caller_id(ctx)?;
        let now = now_ms();
        Ok(services(ctx).address_book.list(user).map_err(book_error)?.iter().map(|e| api_entry(e, now)).collect())
    }

    async fn withdrawal_settings(&self, ctx: &Context<'_>) -> Result<WithdrawalSettings, Error> {
        let user = caller_id(ctx)?;
        let settings = services(ctx).address_book.settings(user).map_err(book_error)?;
        Ok(WithdrawalSettings { allowlist_only: settings.allowlist_only_at(now_ms()), allowlist_only_ends_at: settings.allowlist_off_from_ms.map(at) })
    }
}

#[derive(Default)]
pub struct AddressBookMutation;

#[Object]
impl AddressBookMutation {
    /// Adds a withdrawal address, checked for the asset's network; usable
    /// once the cooldown has passed.
    async fn add_address_book_entry(
        &self,
        ctx: &Context<'_>,
        input: AddressBookEntryInput,
        #[graphql(desc = "The app's code (or a recovery code), needed when two-factor authentication is on.")] two_factor_code: Option<String>,
    ) -> Result<AddressBookEntry, Error> {
        let user = caller_id(ctx)?;
        super::two_factor::require_code(ctx, user, two_factor_code.as_deref()).await?;
        let new = new_entry(ctx, input).await?;
        let now = now_ms();
        let entry = services(ctx).address_book.add(user, new, now).map_err(book_error)?;
        tracing::info!(event = "address_added", user, entry = entry.id, asset = %entry.asset, network = %entry.network, "an address book entry was added");
        Ok(api_entry(&entry, now))
    }

    /// Changes an entry. A new network, address or memo waits out the
    /// cooldown again; a new label alone does not.
    async fn update_address_book_entry(
        &self,
        ctx: &Context<'_>,
        id: ID,
        input: AddressBookEntryInput,
        #[graphql(desc = "The app's code (or a recovery code), needed when two-factor authentication is on.")] two_factor_code: Option<String>,
    ) -> Result<AddressBookEntry, Error> {
        let user = caller_id(ctx)?;
        let id = entry_id(&id)?;
        super::two_factor::require_code(ctx, user, two_factor_code.as_deref()).await?;
        let new = new_entry(ctx, input).await?;
        let now = now_ms();
        let entry = services(ctx).address_book.update(user, id, new, now).map_err(book_error)?;
        tracing::info!(event = "address_changed", user, entry = entry.id, "an address book entry was changed");
        Ok(api_entry(&entry, now))
    }

    async fn remove_address_book_entry(
        &self,
        ctx: &Context<'_>,
        id: ID,
        #[graphql(desc = "The app's code (or a recovery code), needed when two-factor authentication is on.")] two_factor_code: Option<String>,
    ) -> Result<bool, Error> {
        let user = caller_id(ctx)?;
        let id = entry_id(&id)?;
        super::two_factor::require_code(ctx, user, two_factor_code.as_deref()).await?;
        services(ctx).address_book.remove(user, id).map_err(book_error)?;
        tracing::info!(event = "address_removed", user, entry = id, "an address book entry was removed");
        Ok(true)
    }

    /// Withdrawals to the address book only (on at once), or anywhere
    /// again (off once the cooldown has passed, so that a stolen session
    /// cannot switch it off and withdraw at once).
    async fn set_withdrawal_allowlist_only(
        &self,
        ctx: &Context<'_>,
        enabled: bool,
        #[graphql(desc = "The app's code (or a recovery code), needed when two-factor authentication is on.")] two_factor_code: Option<String>,
    ) -> Result<WithdrawalSettings, Error> {
        let user = caller_id(ctx)?;
        super::two_factor::require_code(ctx, user, two_factor_code.as_deref()).await?;
        let now = now_ms();
        let settings = services(ctx).address_book.set_allowlist_only(user, enabled, now).map_err(book_error)?;
        tracing::info!(event = "allowlist_only_set", user, enabled, "withdrawal allowlist-only changed");
        Ok(WithdrawalSettings { allowlist_only: settings.allowlist_only_at(now), allowlist_only_ends_at: settings.allowlist_off_from_ms.map(at) })
    }
}
