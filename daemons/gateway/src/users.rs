//! The gateway's accounts: who may log in, with which role. Stored in
//! RocksDB with its own log synced on every write (the gateway has no
//! journal); passwords only as argon2id hashes.

use std::path::Path;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use storage::{Batch, Durability, StorageError, Store, Table};

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
const META: Table = Table::new("meta");
const TABLES: [Table; 3] = [USERS, USERS_BY_EMAIL, META];

const META_NEXT_USER: &[u8] = b"gateway/next_user";
pub const EMAIL_BYTES_MAX: usize = 254;

pub struct Users {
    store: Store,
    /// Serializes registrations: the email check and the insert are one step.
    registering: Mutex<()>,
}

/// Lower-cased and trimmed; one account per address however it is typed.
pub fn normalize_email(email: &str) -> Result<String, UserError> {
    let email = email.trim().to_ascii_lowercase();
    let valid = email.len() <= EMAIL_BYTES_MAX
        && email.split_once('@').is_some_and(|(local, domain)| !local.is_empty() && domain.contains('.') && !domain.starts_with('.') && !domain.ends_with('.'))
        && !email.chars().any(|c| c.is_whitespace() || c.is_control());
    if !valid {
        return Err(UserError::BadInput("email must look like name@domain.tld (at most 254 characters)"));
    }
    Ok(email)
}

impl Users {
    pub fn open(dir: &Path) -> Result<Users, UserError> {
        Ok(Users { store: Store::open(dir, &TABLES)?, registering: Mutex::new(()) })
    }

    /// Creates an account; `password_hash` is already argon2id.
    pub fn create(&self, email: &str, password_hash: String, role: Role, now_ms: u64) -> Result<User, UserError> {
        let email = normalize_email(email)?;
        let _guard = self.registering.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.store.get(USERS_BY_EMAIL, email.as_bytes())?.is_some() {
            return Err(UserError::EmailTaken);
        }
        let id = match self.store.get(META, META_NEXT_USER)? {
            Some(bytes) => u64::from_be_bytes(bytes.as_slice().try_into().map_err(|_| UserError::Corrupt("next user id".into()))?),
            None => 1,
        };
        let user = User { id, email, password_hash, role, created_ms: now_ms };
        let mut batch = Batch::default();
        batch.put(USERS, &id.to_be_bytes(), &postcard::to_stdvec(&user).expect("encoding into a vector cannot fail"));
        batch.put(USERS_BY_EMAIL, user.email.as_bytes(), &id.to_be_bytes());
        batch.put(META, META_NEXT_USER, &(id + 1).to_be_bytes());
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(user)
    }

    /// Changes an account's role (an operator's, once the ledger counts them).
    pub fn set_role(&self, id: UserId, role: Role) -> Result<User, UserError> {
        let _guard = self.registering.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut user = self.by_id(id)?.ok_or_else(|| UserError::Corrupt(format!("user {id} vanished")))?;
        user.role = role;
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
