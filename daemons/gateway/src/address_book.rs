//! Each user's withdrawal address book: entries of asset, network, address,
//! optional memo and a label. A new entry, or one whose network, address or
//! memo changed, can be withdrawn to only after a cooldown, so that someone
//! who took over a session cannot add their own address and empty the
//! account at once. A user may switch to allowlist-only withdrawals;
//! switching back takes the same cooldown. Addresses of an asset whose
//! networks the config declares are checked for them ([`crate::addresses`]).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use serde::{Deserialize, Serialize};
use storage::{Batch, Durability, StorageError, Store, Table};

use crate::addresses::{self, Network};
use crate::users::UserId;

/// User id (8 bytes) then entry id (8 bytes) -> [`Entry`].
pub const ADDRESS_BOOK: Table = Table::new("address_book");
/// User id -> [`Settings`].
pub const WITHDRAWAL_SETTINGS: Table = Table::new("withdrawal_settings");

pub const LABEL_BYTES_MAX: usize = 64;
pub const ADDRESS_BYTES_MAX: usize = 128;
pub const MEMO_BYTES_MAX: usize = 128;
pub const NETWORK_BYTES_MAX: usize = 32;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub id: u64,
    /// The asset's symbol.
    pub asset: String,
    pub network: String,
    /// As checked: canonical for a network the gateway knows.
    pub address: String,
    pub memo: Option<String>,
    pub label: String,
    pub created_ms: u64,
    /// When it may first be withdrawn to (creation or last change plus the cooldown).
    pub usable_from_ms: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    pub allowlist_only: bool,
    /// Set when the user turned allowlist-only off: it stays on until then.
    pub allowlist_off_from_ms: Option<u64>,
}

impl Settings {
    /// Whether withdrawals must go to the address book now.
    pub fn allowlist_only_at(&self, now_ms: u64) -> bool {
        self.allowlist_only && self.allowlist_off_from_ms.is_none_or(|from| now_ms < from)
    }
}

/// An entry as the user writes it.
pub struct NewEntry {
    pub asset: String,
    pub network: String,
    pub address: String,
    pub memo: Option<String>,
    pub label: String,
}

#[derive(Debug, thiserror::Error)]
pub enum AddressBookError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("an address book record does not decode: {0}")]
    Corrupt(String),
    #[error("{0}")]
    BadInput(String),
    #[error("an address book holds at most {0} entries; remove one first")]
    Full(usize),
    #[error("no such address book entry")]
    NotFound,
}

/// Why a withdrawal's destination is refused.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum DestinationRefusal {
    #[error("{0}")]
    BadAddress(String),
    #[error("this address was added or changed in the address book recently; it can be withdrawn to from {usable_from}")]
    CoolingDown { usable_from: String },
    #[error("withdrawals from this account go only to its address book: add the address, and withdraw once its cooldown has passed")]
    NotInBook,
    #[error("several address book entries have this address; name one with addressBookEntry")]
    Ambiguous,
}

impl DestinationRefusal {
    pub fn code(&self) -> &'static str {
        match self {
            DestinationRefusal::BadAddress(_) | DestinationRefusal::Ambiguous => "BAD_USER_INPUT",
            DestinationRefusal::CoolingDown { .. } => "ADDRESS_COOLING_DOWN",
            DestinationRefusal::NotInBook => "ADDRESS_NOT_IN_BOOK",
        }
    }
}

pub struct AddressBook {
    store: Arc<Store>,
    pub cooldown_ms: u64,
    entries_max: usize,
    /// Asset symbol -> the networks its addresses must belong to.
    networks: HashMap<String, Vec<Network>>,
    /// Serializes each user's read-modify-write (the entry count, settings).
    writing: Mutex<()>,
}

fn key(user: UserId, id: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&user.to_be_bytes());
    key[8..].copy_from_slice(&id.to_be_bytes());
    key
}

fn printable(text: &str) -> bool {
    !text.chars().any(char::is_control)
}

impl AddressBook {
    pub fn new(store: Arc<Store>, cooldown_ms: u64, entries_max: usize, networks: HashMap<String, Vec<Network>>) -> AddressBook {
        AddressBook { store, cooldown_ms, entries_max: entries_max.max(1), networks, writing: Mutex::new(()) }
    }

    /// The networks declared for `asset`; empty: any network, unchecked.
    pub fn networks_of(&self, asset: &str) -> &[Network] {
        self.networks.get(asset).map_or(&[], Vec::as_slice)
    }

    /// `address` checked for `asset`'s declared networks (any of them when
    /// `network` is None); canonical. Unchanged for an asset that declares none.
    pub fn checked_address(&self, asset: &str, network: Option<&str>, address: &str) -> Result<(String, String), String> {
        let address = address.trim();
        if address.is_empty() || address.len() > ADDRESS_BYTES_MAX || !printable(address) {
            return Err(format!("an address is 1 to {ADDRESS_BYTES_MAX} bytes of printable text"));
        }
        let declared = self.networks_of(asset);
        if declared.is_empty() {
            let network = network.map(str::trim).unwrap_or("");
            return Ok((network.to_string(), address.to_string()));
        }
        let names = || declared.iter().map(|n| n.name()).collect::<Vec<_>>().join(", ");
        let candidates: Vec<Network> = match network {
            Some(name) => match Network::parse(name).filter(|n| declared.contains(n)) {
                Some(network) => vec![network],
                None => return Err(format!("{asset} is withdrawn on {}, not {name:?}", names())),
            },
            None => declared.to_vec(),
        };
        let mut last = String::new();
        for network in candidates {
            match addresses::check(network, address) {
                Ok(canonical) => return Ok((network.name().to_string(), canonical)),
                Err(error) => last = error.to_string(),
            }
        }
        Err(last)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.writing.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn list(&self, user: UserId) -> Result<Vec<Entry>, AddressBookError> {
        self.store
            .scan_prefix(ADDRESS_BOOK, &user.to_be_bytes(), self.entries_max + 1, false)?
            .into_iter()
            .map(|(_, value)| postcard::from_bytes(&value).map_err(|e| AddressBookError::Corrupt(e.to_string())))
            .collect()
    }

    fn get(&self, user: UserId, id: u64) -> Result<Option<Entry>, AddressBookError> {
        self.store
            .get(ADDRESS_BOOK, &key(user, id))?
            .map(|bytes| postcard::from_bytes(&bytes).map_err(|e| AddressBookError::Corrupt(e.to_string())))
            .transpose()
    }

    fn validated(&self, new: NewEntry) -> Result<NewEntry, AddressBookError> {
        let bad = |reason: String| Err(AddressBookError::BadInput(reason));
        let label = new.label.trim().to_string();
        if label.is_empty() || label.len() > LABEL_BYTES_MAX || !printable(&label) {
            return bad(format!("a label is 1 to {LABEL_BYTES_MAX} bytes of printable text"));
        }
        let network = new.network.trim();
        if network.len() > NETWORK_BYTES_MAX || !printable(network) {
            return bad(format!("a network is at most {NETWORK_BYTES_MAX} bytes of printable text"));
        }
        let memo = new.memo.map(|m| m.trim().to_string()).filter(|m| !m.is_empty());
        if memo.as_ref().is_some_and(|m| m.len() > MEMO_BYTES_MAX || !printable(m)) {
            return bad(format!("a memo is at most {MEMO_BYTES_MAX} bytes of printable text"));
        }
        let asset = new.asset.trim().to_string();
        let (network, address) = self.checked_address(&asset, Some(network).filter(|n| !n.is_empty()), &new.address).map_err(AddressBookError::BadInput)?;
        if network.is_empty() {
            return bad("name the network (for example SEPA, SWIFT, bitcoin)".into());
        }
        Ok(NewEntry { asset, network, address, memo, label })
    }

    fn put(&self, user: UserId, entry: &Entry) -> Result<(), AddressBookError> {
        let mut batch = Batch::default();
        batch.put(ADDRESS_BOOK, &key(user, entry.id), &postcard::to_stdvec(entry).expect("encoding into a vector cannot fail"));
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(())
    }

    /// Adds an entry, usable once the cooldown has passed. The asset must exist (the caller checks).
    pub fn add(&self, user: UserId, new: NewEntry, now_ms: u64) -> Result<Entry, AddressBookError> {
        let new = self.validated(new)?;
        let _writing = self.lock();
        if self.list(user)?.len() >= self.entries_max {
            return Err(AddressBookError::Full(self.entries_max));
        }
        let entry = Entry {
            id: OsRng.next_u64() >> 11,
            asset: new.asset,
            network: new.network,
            address: new.address,
            memo: new.memo,
            label: new.label,
            created_ms: now_ms,
            usable_from_ms: now_ms.saturating_add(self.cooldown_ms),
        };
        self.put(user, &entry)?;
        Ok(entry)
    }

    /// Changes an entry; a new network, address or memo starts its cooldown again, a new label does not.
    pub fn update(&self, user: UserId, id: u64, new: NewEntry, now_ms: u64) -> Result<Entry, AddressBookError> {
        let new = self.validated(new)?;
        let _writing = self.lock();
        let mut entry = self.get(user, id)?.ok_or(AddressBookError::NotFound)?;
        let moved = (entry.asset.as_str(), entry.network.as_str(), entry.address.as_str(), entry.memo.as_deref())
            != (new.asset.as_str(), new.network.as_str(), new.address.as_str(), new.memo.as_deref());
        if moved {
            entry.usable_from_ms = now_ms.saturating_add(self.cooldown_ms);
        }
        (entry.asset, entry.network, entry.address, entry.memo, entry.label) = (new.asset, new.network, new.address, new.memo, new.label);
        self.put(user, &entry)?;
        Ok(entry)
    }

    pub fn remove(&self, user: UserId, id: u64) -> Result<(), AddressBookError> {
        let _writing = self.lock();
        self.get(user, id)?.ok_or(AddressBookError::NotFound)?;
        let mut batch = Batch::default();
        batch.delete(ADDRESS_BOOK, &key(user, id));
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(())
    }

    pub fn settings(&self, user: UserId) -> Result<Settings, AddressBookError> {
        Ok(self
            .store
            .get(WITHDRAWAL_SETTINGS, &user.to_be_bytes())?
            .map(|bytes| postcard::from_bytes(&bytes).map_err(|e| AddressBookError::Corrupt(e.to_string())))
            .transpose()?
            .unwrap_or_default())
    }

    /// Turns allowlist-only on at once, or off once the cooldown has passed.
    pub fn set_allowlist_only(&self, user: UserId, on: bool, now_ms: u64) -> Result<Settings, AddressBookError> {
        let _writing = self.lock();
        let mut settings = self.settings(user)?;
        settings = match (on, settings.allowlist_only_at(now_ms)) {
            (true, _) => Settings { allowlist_only: true, allowlist_off_from_ms: None },
            (false, false) => Settings::default(),
            // Already turning off: the first request's time stands.
            (false, true) => Settings {
                allowlist_only: true,
                allowlist_off_from_ms: Some(settings.allowlist_off_from_ms.unwrap_or(now_ms.saturating_add(self.cooldown_ms))),
            },
        };
        let mut batch = Batch::default();
        batch.put(WITHDRAWAL_SETTINGS, &user.to_be_bytes(), &postcard::to_stdvec(&settings).expect("encoding into a vector cannot fail"));
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(settings)
    }

    /// Whether `user` may withdraw `asset` to `destination` now: checked
    /// for the asset's networks, and, when it is in the address book (or
    /// must be: allowlist-only, or `book_only` for an API key), past its
    /// cooldown. The entry it goes to, if any.
    pub fn check_destination(
        &self,
        user: UserId,
        asset: &str,
        destination: &str,
        entry_id: Option<u64>,
        book_only: bool,
        now_ms: u64,
    ) -> Result<Result<Option<Entry>, DestinationRefusal>, AddressBookError> {
        let (_, canonical) = match self.checked_address(asset, None, destination) {
            Ok(checked) => checked,
            Err(reason) => return Ok(Err(DestinationRefusal::BadAddress(reason))),
        };
        let entries: Vec<Entry> =
            self.list(user)?.into_iter().filter(|e| e.asset == asset && e.address == canonical && entry_id.is_none_or(|id| id == e.id)).collect();
        if entry_id.is_some() && entries.is_empty() {
            return Ok(Err(DestinationRefusal::BadAddress("the address book entry named is not this asset's, or not this address".into())));
        }
        let must_be_in_book = book_only || self.settings(user)?.allowlist_only_at(now_ms);
        match entries.as_slice() {
            [] if must_be_in_book => Ok(Err(DestinationRefusal::NotInBook)),
            [] => Ok(Ok(None)),
            [entry] if entry.usable_from_ms > now_ms => Ok(Err(DestinationRefusal::CoolingDown { usable_from: crate::units::rfc3339(entry.usable_from_ms) })),
            [entry] => Ok(Ok(Some(entry.clone()))),
            _ => Ok(Err(DestinationRefusal::Ambiguous)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BTC_ADDRESS: &str = "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4";

    fn book(dir: &std::path::Path) -> AddressBook {
        let store = crate::users::open_store(dir).expect("store");
        AddressBook::new(store, 1_000, 3, HashMap::from([("BTC".to_string(), vec![Network::Bitcoin])]))
    }

    fn entry(asset: &str, network: &str, address: &str) -> NewEntry {
        NewEntry { asset: asset.into(), network: network.into(), address: address.into(), memo: None, label: "cold wallet".into() }
    }

    #[test]
    fn a_new_address_waits_out_its_cooldown_and_a_changed_one_waits_again() {
        let dir = tempfile::tempdir().expect("tempdir");
        let book = book(dir.path());
        let added = book.add(7, entry("BTC", "bitcoin", &BTC_ADDRESS.to_uppercase()), 10_000).expect("added");
        assert_eq!(added.address, BTC_ADDRESS, "kept canonical");
        let check = |at| book.check_destination(7, "BTC", BTC_ADDRESS, None, false, at).expect("store");
        assert!(matches!(check(10_999), Err(DestinationRefusal::CoolingDown { .. })));
        assert_eq!(check(11_000).map(|e| e.map(|e| e.id)), Ok(Some(added.id)));
        // A new label keeps it usable; a new memo starts the cooldown again.
        let mut relabelled = entry("BTC", "bitcoin", BTC_ADDRESS);
        relabelled.label = "exchange".into();
        assert_eq!(book.update(7, added.id, relabelled, 12_000).expect("updated").usable_from_ms, 11_000);
        let mut memo = entry("BTC", "bitcoin", BTC_ADDRESS);
        memo.memo = Some("42".into());
        assert_eq!(book.update(7, added.id, memo, 12_000).expect("updated").usable_from_ms, 13_000);
        assert!(matches!(check(12_500), Err(DestinationRefusal::CoolingDown { .. })));
        // Another user's book is theirs.
        assert_eq!(book.check_destination(8, "BTC", BTC_ADDRESS, None, false, 20_000).expect("store"), Ok(None));
        assert!(matches!(book.remove(8, added.id), Err(AddressBookError::NotFound)));
    }

    #[test]
    fn allowlist_only_refuses_other_addresses_and_turns_off_only_after_the_cooldown() {
        let dir = tempfile::tempdir().expect("tempdir");
        let book = book(dir.path());
        let other = "1BvBMSEYstWetqTFn5Au4m4GFg7xJaNVN2";
        assert_eq!(book.check_destination(7, "BTC", other, None, false, 0).expect("store"), Ok(None), "off: anywhere");
        assert_eq!(book.check_destination(7, "BTC", other, None, true, 0).expect("store"), Err(DestinationRefusal::NotInBook), "a key: the book only");
        book.set_allowlist_only(7, true, 0).expect("on");
        assert_eq!(book.check_destination(7, "BTC", other, None, false, 0).expect("store"), Err(DestinationRefusal::NotInBook));
        let settings = book.set_allowlist_only(7, false, 5_000).expect("turning off");
        assert!(settings.allowlist_only_at(5_999));
        assert_eq!(book.set_allowlist_only(7, false, 5_500).expect("again").allowlist_off_from_ms, Some(6_000), "asking again does not delay it");
        assert_eq!(book.check_destination(7, "BTC", other, None, false, 6_000).expect("store"), Ok(None));
        assert!(matches!(
            book.check_destination(7, "BTC", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5", None, false, 6_000).expect("store"),
            Err(DestinationRefusal::BadAddress(_))
        ));
    }

    #[test]
    fn entries_are_checked_and_bounded() {
        let dir = tempfile::tempdir().expect("tempdir");
        let book = book(dir.path());
        for bad in [
            entry("BTC", "bitcoin", "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t5"),
            entry("BTC", "ethereum", BTC_ADDRESS),
            entry("USD", "", "DE89 3704 0044 0532 0130 00"),
            entry("USD", "SEPA", ""),
            entry("USD", "SEPA", &"x".repeat(ADDRESS_BYTES_MAX + 1)),
            NewEntry { label: "".into(), ..entry("USD", "SEPA", "DE89") },
            NewEntry { memo: Some("a\nb".into()), ..entry("USD", "SEPA", "DE89") },
        ] {
            assert!(matches!(book.add(7, bad, 0), Err(AddressBookError::BadInput(_))));
        }
        // An asset with no declared network takes any address for the network named.
        book.add(7, entry("USD", "SEPA", "DE89 3704 0044 0532 0130 00"), 0).expect("first");
        book.add(7, entry("USD", "SWIFT", "DEUTDEFF"), 0).expect("second");
        book.add(7, entry("BTC", "bitcoin", BTC_ADDRESS), 0).expect("third");
        assert!(matches!(book.add(7, entry("BTC", "bitcoin", BTC_ADDRESS), 0), Err(AddressBookError::Full(3))));
        assert_eq!(book.list(7).expect("list").len(), 3);
    }
}
