//! The gateway's accounts: who may log in, with which role. Stored in
//! RocksDB with its own log synced on every write (the gateway has no
//! journal); passwords only as argon2id hashes.
//!
//! An email is one account however it is typed: it is NFKC-normalized and
//! lower-cased, addresses with invisible characters or mixing scripts are
//! refused, and no two accounts share a UTS #39 skeleton, so that a
//! Cyrillic "а" cannot stand in for a Latin "a".

use std::path::Path;
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};
use storage::{Batch, Durability, StorageError, Store, Table};
use unicode_normalization::UnicodeNormalization;
use unicode_security::{GeneralSecurityProfile, MixedScript};

pub type UserId = u64;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    User,
    Operator,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct User {
    pub id: UserId,
    pub email: String,
    pub password_hash: String,
    pub role: Role,
    pub created_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("an account with this email exists")]
    EmailTaken,
    #[error("an account with an email that looks the same exists")]
    EmailLookalike,
    #[error("{0}")]
    BadInput(&'static str),
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("a user record does not decode: {0}")]
    Corrupt(String),
}

/// The gateway's own tables: its store knows no other.
const USERS: Table = Table::new("users");
/// normalized email -> user id.
const USERS_BY_EMAIL: Table = Table::new("users_by_email");
/// The email's UTS #39 skeleton -> user id: lookalikes of an address are taken with it.
const USERS_BY_SKELETON: Table = Table::new("users_by_skeleton");
const META: Table = Table::new("meta");
/// Every table of the gateway's store, its accounts' and its sessions'.
const TABLES: [Table; 16] = [
    USERS,
    USERS_BY_EMAIL,
    USERS_BY_SKELETON,
    META,
    crate::sessions::SESSIONS,
    crate::sessions::SESSIONS_SEEN,
    crate::two_factor::TWO_FACTOR,
    crate::api_keys::API_KEYS,
    crate::api_keys::API_KEYS_BY_USER,
    crate::address_book::ADDRESS_BOOK,
    crate::address_book::WITHDRAWAL_SETTINGS,
    crate::limits::WITHDRAWAL_REVIEWS,
    crate::webhooks::WEBHOOK_ENDPOINTS,
    crate::webhooks::WEBHOOK_DELIVERIES,
    crate::webhooks::WEBHOOK_PENDING,
    crate::webhooks::WEBHOOK_CURSORS,
];

/// Opens (or creates) the gateway's store.
pub fn open_store(dir: &Path) -> Result<Arc<Store>, StorageError> {
    Store::open(dir, &TABLES).map(Arc::new)
}

const META_NEXT_USER: &[u8] = b"gateway/next_user";
pub const EMAIL_BYTES_MAX: usize = 254;

pub struct Users {
    store: Arc<Store>,
    /// Serializes registrations: the email check and the insert are one step.
    registering: Mutex<()>,
}

/// NFKC, lower-cased and trimmed; one account per address however it is
/// typed. Refuses invisible characters (zero-width, bidi controls, soft
/// hyphens), characters UTS #39 restricts from identifiers, and a local part
/// or domain label that mixes scripts.
pub fn normalize_email(email: &str) -> Result<String, UserError> {
    let email: String = email.trim().nfkc().flat_map(char::to_lowercase).nfkc().collect();
    let shaped = email.len() <= EMAIL_BYTES_MAX
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.'));
    if !shaped || email.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(UserError::BadInput("email must look like name@domain.tld (at most 254 characters)"));
    }
    if email.chars().any(|c| !c.is_ascii() && !c.identifier_allowed()) {
        return Err(UserError::BadInput("email has an invisible or restricted character; type the address plainly"));
    }
    let (local, domain) = email.split_once('@').unwrap_or_default();
    if !local.is_single_script() || domain.split('.').any(|label| !label.is_single_script()) {
        return Err(UserError::BadInput("email mixes scripts (as a Cyrillic letter among Latin ones); type the address plainly"));
    }
    Ok(email)
}

/// What a normalized email looks like (UTS #39): two emails with one skeleton are confusable.
pub fn email_skeleton(normalized: &str) -> String {
    unicode_security::skeleton(normalized).flat_map(char::to_lowercase).collect()
}

impl Users {
    /// The accounts in the gateway's store ([`open_store`]). Accounts made
    /// before lookalikes were checked get their skeleton here.
    pub fn new(store: Arc<Store>) -> Result<Users, UserError> {
        let mut batch = Batch::default();
        for row in store.scan_all(USERS_BY_EMAIL) {
            let (email, id) = row?;
            let email = String::from_utf8_lossy(&email);
            let skeleton = email_skeleton(&email);
            if store.get(USERS_BY_SKELETON, skeleton.as_bytes())?.is_none() {
                batch.put(USERS_BY_SKELETON, skeleton.as_bytes(), &id);
            }
        }
        if !batch.is_empty() {
            store.write(&mut batch, Durability::Synced)?;
        }
        Ok(Users { store, registering: Mutex::new(()) })
    }

    /// The accounts in a store of their own, for tests and tools.
    pub fn open(dir: &Path) -> Result<Users, UserError> {
        Users::new(open_store(dir)?)
    }

    /// Creates an account; `password_hash` is already argon2id.
    pub fn create(&self, email: &str, password_hash: String, role: Role, now_ms: u64) -> Result<User, UserError> {
        let email = normalize_email(email)?;
        let _guard = self.registering.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.store.get(USERS_BY_EMAIL, email.as_bytes())?.is_some() {
            return Err(UserError::EmailTaken);
        }
        let skeleton = email_skeleton(&email);
        if self.store.get(USERS_BY_SKELETON, skeleton.as_bytes())?.is_some() {
            return Err(UserError::EmailLookalike);
        }
        let id = match self.store.get(META, META_NEXT_USER)? {
            Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| UserError::Corrupt("next user id".into()))?),
            None => 1,
        };
        let user = User { id, email, password_hash, role, created_ms: now_ms };
        let mut batch = Batch::default();
        batch.put(USERS, &id.to_be_bytes(), &postcard::to_stdvec(&user).expect("encoding into a vector cannot fail"));
        batch.put(USERS_BY_EMAIL, user.email.as_bytes(), &id.to_be_bytes());
        batch.put(USERS_BY_SKELETON, skeleton.as_bytes(), &id.to_be_bytes());
        batch.put(META, META_NEXT_USER, &(id + 1).to_be_bytes());
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(user)
    }

    /// Changes an account's role (an operator's, once the ledger counts them).
    pub fn set_role(&self, id: UserId, role: Role) -> Result<User, UserError> {
        self.update(id, |user| user.role = role)
    }

    /// Replaces an account's password; `password_hash` is already argon2id.
    pub fn set_password(&self, id: UserId, password_hash: String) -> Result<User, UserError> {
        self.update(id, |user| user.password_hash = password_hash)
    }

    fn update(&self, id: UserId, change: impl FnOnce(&mut User)) -> Result<User, UserError> {
        let _guard = self.registering.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut user = self.by_id(id)?.ok_or_else(|| UserError::Corrupt(format!("user {id} vanished")))?;
        change(&mut user);
        let mut batch = Batch::default();
        batch.put(USERS, &id.to_be_bytes(), &postcard::to_stdvec(&user).expect("encoding into a vector cannot fail"));
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(user)
    }

    pub fn by_id(&self, id: UserId) -> Result<Option<User>, UserError> {
        self.store.get(USERS, &id.to_be_bytes())?.map(|bytes| postcard::from_bytes(&bytes).map_err(|e| UserError::Corrupt(e.to_string()))).transpose()
    }

    /// Whether any operator account exists: a fresh appliance has none until
    /// `marionettectl create-operator`. Stops at the first one found.
    pub fn operator_exists(&self) -> Result<bool, UserError> {
        for row in self.store.scan_all(USERS) {
            let (_, bytes) = row?;
            let user: User = postcard::from_bytes(&bytes).map_err(|e| UserError::Corrupt(e.to_string()))?;
            if user.role == Role::Operator {
                return Ok(true);
            }
        }
        Ok(false)
    }

    pub fn by_email(&self, email: &str) -> Result<Option<User>, UserError> {
        let Ok(email) = normalize_email(email) else { return Ok(None) };
        match self.store.get(USERS_BY_EMAIL, email.as_bytes())? {
            Some(id) => self.by_id(u64::from_be_bytes(id.as_slice().try_into().map_err(|_| UserError::Corrupt("email index".into()))?)),
            None => Ok(None),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn one_address_however_it_is_typed_and_no_disguised_twin() {
        let dir = tempfile::tempdir().unwrap();
        let users = Users::open(dir.path()).unwrap();
        let alice = users.create("alice@bank.example", "hash".into(), Role::User, 0).unwrap();
        // Case, full-width letters (NFKC) and spaces are the same address.
        for same in ["ALICE@bank.example", " alice@BANK.example ", "ａｌｉｃｅ@bank.example"] {
            assert!(matches!(users.create(same, "hash".into(), Role::User, 0), Err(UserError::EmailTaken)), "{same}");
            assert_eq!(users.by_email(same).unwrap().map(|u| u.id), Some(alice.id), "{same}");
        }
        // Invisible characters and mixed scripts are refused outright.
        for disguised in
            ["al\u{200b}ice@bank.example", "alice\u{202e}@bank.example", "ali\u{ad}ce@bank.example", "\u{430}lice@bank.example", "alice@b\u{430}nk.example"]
        {
            assert!(matches!(users.create(disguised, "hash".into(), Role::User, 0), Err(UserError::BadInput(_))), "{disguised:?}");
        }
        // One script throughout, but drawn to look the same: its skeleton is taken.
        users.create("ops@bank.example", "hash".into(), Role::User, 0).unwrap();
        assert!(matches!(users.create("ор\u{455}@bank.example", "hash".into(), Role::User, 0), Err(UserError::EmailLookalike)));
        assert!(matches!(users.create("0ps@bank.example", "hash".into(), Role::User, 0), Err(UserError::EmailLookalike)), "0 for o");
        // Other scripts are welcome in their own right.
        users.create("дмитрий@почта.рф", "hash".into(), Role::User, 0).unwrap();
        users.create("bob@bank.example", "hash".into(), Role::User, 0).unwrap();
    }

    #[test]
    fn accounts_from_before_lookalikes_get_their_skeleton_at_open() {
        let dir = tempfile::tempdir().unwrap();
        {
            let users = Users::open(dir.path()).unwrap();
            users.create("ops@bank.example", "hash".into(), Role::User, 0).unwrap();
            // As an older gateway left it: no skeleton rows.
            let mut batch = Batch::default();
            batch.delete(USERS_BY_SKELETON, email_skeleton("ops@bank.example").as_bytes());
            users.store.write(&mut batch, Durability::Synced).unwrap();
        }
        let users = Users::open(dir.path()).unwrap();
        assert!(matches!(users.create("0ps@bank.example", "hash".into(), Role::User, 0), Err(UserError::EmailLookalike)));
    }

    proptest! {
        /// Any text: an error or an address that normalizes to itself, never a panic.
        #[test]
        fn normalizing_is_total_and_idempotent(email in prop_oneof![any::<String>(), "[a-zA-Z\u{400}-\u{4ff}\u{200b}\u{ff21}-\u{ff3a} ]{1,12}@[a-z\u{430}-\u{44f}]{1,8}\\.[a-z]{2,4}"]) {
            if let Ok(normalized) = normalize_email(&email) {
                prop_assert_eq!(normalize_email(&normalized).ok(), Some(normalized.clone()));
                prop_assert!(normalized.len() <= EMAIL_BYTES_MAX);
                let _ = email_skeleton(&normalized);
            }
        }
    }
}
