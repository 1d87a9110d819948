//! API keys for bots: signed requests instead of a login.
//!
//! A key belongs to a user, has a name, scopes (read, trade, withdraw), an
//! optional IP allowlist (required with withdraw) and an optional expiry.
//! Its credential is an Ed25519 public key the client registered, or a
//! server-made HMAC-SHA256 secret shown once and stored only sealed (under
//! the key for secrets at rest, as TOTP secrets are).
//!
//! Each request carries three headers: the key's id, the time it was signed
//! (Unix milliseconds) and a signature (base64) over
//! `timestamp "\n" METHOD "\n" path?query "\n" body`. A request is refused
//! when its time is outside the receive window, or when its signature was
//! seen already (a replay): signatures are remembered for as long as their
//! requests could be accepted, and for one receive window after the
//! process starts no signed request is taken (nor one signed before then),
//! so a restart forgets none that could still be replayed.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use storage::{Batch, Durability, StorageError, Store, Table};
use tokio::sync::watch;

use crate::two_factor::Sealer;
use crate::users::UserId;

/// Key id -> its [`ApiKey`].
pub const API_KEYS: Table = Table::new("api_keys");
/// User id (8 bytes, big-endian) then key id -> nothing: a user's keys.
pub const API_KEYS_BY_USER: Table = Table::new("api_keys_by_user");

pub const HEADER_KEY: &str = "x-marionette-key";
pub const HEADER_TIMESTAMP: &str = "x-marionette-timestamp";
pub const HEADER_SIGNATURE: &str = "x-marionette-signature";

pub const NAME_BYTES_MAX: usize = 64;
pub const ALLOWLIST_MAX: usize = 32;
const HMAC_SECRET_BYTES: usize = 32;
/// SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): this prefix, then the 32 bytes.
const SPKI_ED25519_PREFIX: [u8; 12] = [0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];

/// 128 random bits, shown as 32 hex digits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct KeyId(pub [u8; 16]);

impl KeyId {
    pub fn parse(text: &str) -> Option<KeyId> {
        let mut bytes = [0u8; 16];
        hex::decode_to_slice(text, &mut bytes).ok()?;
        Some(KeyId(bytes))
    }
}

impl std::fmt::Display for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// What a key may do. A login may do everything its role allows; a key
/// only what its scopes name, and never manage the account.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Scopes {
    /// Queries (balances, orders, trades) and subscriptions.
    pub read: bool,
    /// placeOrder, amendOrder, cancelOrder, cancelAllOrders, engageKillSwitch.
    pub trade: bool,
    /// requestWithdrawal, to the address book only.
    pub withdraw: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Credential {
    Ed25519 {
        public_key: [u8; 32],
    },
    /// The secret, sealed for this key.
    Hmac {
        sealed_secret: Vec<u8>,
    },
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: KeyId,
    pub user: UserId,
    pub name: String,
    pub scopes: Scopes,
    /// Networks (an address is a /32 or /128) requests may come from; empty: any.
    pub ip_allowlist: Vec<ipnet::IpNet>,
    pub expires_ms: Option<u64>,
    pub created_ms: u64,
    pub credential: Credential,
}

impl ApiKey {
    pub fn allows(&self, address: IpAddr) -> bool {
        let address = match address {
            // An IPv4 client on a dual-stack socket.
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
            v4 => v4,
        };
        self.ip_allowlist.is_empty() || self.ip_allowlist.iter().any(|net| net.contains(&address))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ApiKeyError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("an API key record does not decode: {0}")]
    Corrupt(String),
    #[error("{0}")]
    BadInput(String),
    #[error("a user has at most {0} API keys; revoke one first")]
    TooMany(usize),
}

/// Why a signed request is not let in; each is answered with its code.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("{0}")]
    Malformed(&'static str),
    #[error("unknown or revoked API key")]
    UnknownKey,
    #[error("this API key expired; create a new one")]
    Expired,
    #[error("requests from {0} are not on this API key's IP allowlist")]
    AddressNotAllowed(IpAddr),
    #[error("the signature does not match: sign timestamp, method, path and body as the README shows")]
    BadSignature,
    #[error("the request was signed {skew_ms} ms from the server's time, outside the {window_ms} ms receive window: check the clock (NTP) and sign each request just before sending it")]
    Stale { skew_ms: i128, window_ms: u64 },
    #[error("this request was sent already (replayed); sign every request afresh")]
    Replayed,
    #[error("too many signed requests in flight to remember them all; retry in a moment")]
    Busy,
    #[error("the gateway has just started: signed requests are taken again in {wait_ms} ms; sign the request again then")]
    Starting { wait_ms: u64 },
}

impl Refusal {
    pub fn code(&self) -> &'static str {
        match self {
            Refusal::Malformed(_) => "BAD_REQUEST",
            Refusal::UnknownKey | Refusal::Expired | Refusal::BadSignature => "UNAUTHENTICATED",
            Refusal::AddressNotAllowed(_) => "FORBIDDEN",
            Refusal::Stale { .. } => "STALE_REQUEST",
            Refusal::Replayed => "REPLAYED",
            Refusal::Busy => "RATE_LIMITED",
            Refusal::Starting { .. } => "UNAVAILABLE",
        }
    }
}

/// The bytes a request's signature covers.
pub fn signing_payload(timestamp: &str, method: &str, path_and_query: &str, body: &[u8]) -> Vec<u8> {
    let mut payload = Vec::with_capacity(timestamp.len() + method.len() + path_and_query.len() + body.len() + 3);
    for part in [timestamp.as_bytes(), b"\n", method.as_bytes(), b"\n", path_and_query.as_bytes(), b"\n", body] {
        payload.extend_from_slice(part);
    }
    payload
}

/// An Ed25519 public key as clients hold one: 32 bytes in base64, or a PEM
/// `PUBLIC KEY` block (what `openssl pkey -pubout` writes).
pub fn parse_public_key(text: &str) -> Result<[u8; 32], &'static str> {
    const MESSAGE: &str = "publicKey is an Ed25519 public key: 32 bytes in base64, or a PEM PUBLIC KEY block";
    let text = text.trim();
    let bytes = if let Some(body) = text.strip_prefix("-----BEGIN PUBLIC KEY-----") {
        let body = body.trim_end().strip_suffix("-----END PUBLIC KEY-----").ok_or(MESSAGE)?;
        let der = base64::engine::general_purpose::STANDARD.decode(body.split_whitespace().collect::<String>()).map_err(|_| MESSAGE)?;
        der.strip_prefix(SPKI_ED25519_PREFIX.as_slice()).ok_or(MESSAGE)?.to_vec()
    } else {
        base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| MESSAGE)?
    };
    let key: [u8; 32] = bytes.try_into().map_err(|_| MESSAGE)?;
    // A point not on the curve (or a small-order one) could never verify: say so now.
    let verifying = ed25519_dalek::VerifyingKey::from_bytes(&key).map_err(|_| MESSAGE)?;
    if verifying.is_weak() {
        return Err("this Ed25519 public key is a weak (small-order) point; generate a real key pair");
    }
    Ok(key)
}

/// Whether `signature` (raw bytes) signs `payload` under `credential`, the
/// HMAC secret already unsealed.
pub fn signature_matches(credential: &OpenCredential, payload: &[u8], signature: &[u8]) -> bool {
    match credential {
        OpenCredential::Ed25519(public_key) => {
            let (Ok(key), Ok(signature)) = (ed25519_dalek::VerifyingKey::from_bytes(public_key), ed25519_dalek::Signature::from_slice(signature)) else {
                return false;
            };
            key.verify_strict(payload, &signature).is_ok()
        }
        OpenCredential::Hmac(secret) => {
            let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
            mac.update(payload);
            // Constant time: the comparison leaks nothing of the right tag.
            mac.verify_slice(signature).is_ok()
        }
    }
}

/// A key's credential ready to verify with.
pub enum OpenCredential {
    Ed25519([u8; 32]),
    Hmac(Vec<u8>),
}

/// The signatures seen within the receive window, to refuse a second use.
/// Bounded: beyond `max` remembered, new requests wait (Busy) rather than
/// forget one, which would let it be replayed.
pub struct Replays {
    seen: HashMap<[u8; 32], u64>,
    /// (the time a signature can be forgotten, its digest), oldest first.
    order: VecDeque<(u64, [u8; 32])>,
    max: usize,
}

impl Replays {
    pub fn new(max: usize) -> Replays {
        Replays { seen: HashMap::new(), order: VecDeque::new(), max: max.max(1) }
    }

    /// Records `digest` until `forget_at_ms`; false when it was seen already.
    pub fn first_use(&mut self, digest: [u8; 32], now_ms: u64, forget_at_ms: u64) -> Result<bool, Refusal> {
        while let Some(&(at, old)) = self.order.front() {
            if at > now_ms {
                break;
            }
            self.order.pop_front();
            if self.seen.get(&old) == Some(&at) {
                self.seen.remove(&old);
            }
        }
        if self.seen.contains_key(&digest) {
            return Ok(false);
        }
        if self.seen.len() >= self.max {
            return Err(Refusal::Busy);
        }
        self.seen.insert(digest, forget_at_ms);
        self.order.push_back((forget_at_ms, digest));
        Ok(true)
    }

    pub fn len(&self) -> usize {
        self.seen.len()
    }

    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }
}

/// The headers of a signed request, as sent.
pub struct Signed<'a> {
    pub key: &'a str,
    pub timestamp: &'a str,
    pub signature: &'a str,
}

/// What a new key is made of.
pub struct NewKey {
    pub name: String,
    pub scopes: Scopes,
    pub ip_allowlist: Vec<String>,
    pub expires_ms: Option<u64>,
    /// None: the server makes an HMAC secret instead.
    pub public_key: Option<String>,
}

pub struct ApiKeys {
    store: Arc<Store>,
    sealer: Arc<Sealer>,
    pub receive_window_ms: u64,
    per_user_max: usize,
    /// Signed requests are taken from this time on (a receive window after
    /// the start), and only those signed since: the process before this
    /// one may have seen any signature within its window.
    open_ms: u64,
    replays: Mutex<Replays>,
    /// Set to true when a key is revoked: the WebSockets it opened close.
    revoked: Mutex<HashMap<KeyId, watch::Sender<bool>>>,
    creating: Mutex<()>,
}

fn purpose(id: KeyId) -> Vec<u8> {
    [b"api-key-hmac:".as_slice(), &id.0].concat()
}

fn by_user_key(user: UserId, id: KeyId) -> Vec<u8> {
    [user.to_be_bytes().as_slice(), &id.0].concat()
}

impl ApiKeys {
    pub fn new(store: Arc<Store>, sealer: Arc<Sealer>, receive_window_ms: u64, per_user_max: usize, replays_max: usize, now_ms: u64) -> ApiKeys {
        ApiKeys {
            store,
            sealer,
            receive_window_ms,
            per_user_max: per_user_max.max(1),
            open_ms: now_ms.saturating_add(receive_window_ms),
            replays: Mutex::new(Replays::new(replays_max)),
            revoked: Mutex::new(HashMap::new()),
            creating: Mutex::new(()),
        }
    }

    fn replays(&self) -> MutexGuard<'_, Replays> {
        self.replays.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, id: KeyId) -> Result<Option<ApiKey>, ApiKeyError> {
        self.store.get(API_KEYS, &id.0)?.map(|bytes| postcard::from_bytes(&bytes).map_err(|e| ApiKeyError::Corrupt(e.to_string()))).transpose()
    }

    /// `user`'s keys, oldest first.
    pub fn list(&self, user: UserId) -> Result<Vec<ApiKey>, ApiKeyError> {
        let rows = self.store.scan_prefix(API_KEYS_BY_USER, &user.to_be_bytes(), self.per_user_max + 1, false)?;
        let mut keys = Vec::with_capacity(rows.len());
        for (key, _) in rows {
            let Some(id) = key.get(8..24).and_then(|b| <[u8; 16]>::try_from(b).ok()) else { continue };
            if let Some(found) = self.get(KeyId(id))? {
                keys.push(found);
            }
        }
        keys.sort_by_key(|k| (k.created_ms, k.id));
        Ok(keys)
    }

    /// Makes a key for `user`; the HMAC secret too when no public key was
    /// given, to be shown once.
    pub fn create(&self, user: UserId, new: NewKey, now_ms: u64) -> Result<(ApiKey, Option<String>), ApiKeyError> {
        let bad = |reason: &str| Err(ApiKeyError::BadInput(reason.to_string()));
        let name = new.name.trim().to_string();
        if name.is_empty() || name.len() > NAME_BYTES_MAX || name.chars().any(char::is_control) {
            return bad("name is 1 to 64 bytes of printable text");
        }
        if !(new.scopes.read || new.scopes.trade || new.scopes.withdraw) {
            return bad("give the key at least one scope: READ, TRADE or WITHDRAW");
        }
        if new.ip_allowlist.len() > ALLOWLIST_MAX {
            return bad("an IP allowlist has at most 32 entries");
        }
        let mut ip_allowlist = Vec::with_capacity(new.ip_allowlist.len());
        for entry in &new.ip_allowlist {
            let Some(net) = crate::forwarded::parse_proxy(entry) else {
                return Err(ApiKeyError::BadInput(format!("{entry:?} in ipAllowlist is neither an address nor a network (203.0.113.7, 203.0.113.0/24)")));
            };
            ip_allowlist.push(net.trunc());
        }
        if new.scopes.withdraw && ip_allowlist.is_empty() {
            return bad("a key with the WITHDRAW scope needs an IP allowlist: name the addresses your bot withdraws from");
        }
        // A WITHDRAW key's allowlist names the bot's hosts, not the Internet.
        if let Some(net) = ip_allowlist.iter().find(|net| new.scopes.withdraw && net.prefix_len() < if net.addr().is_ipv4() { 16 } else { 32 }) {
            return Err(ApiKeyError::BadInput(format!("{net} is too wide for a WITHDRAW key's allowlist: at most a /16 (IPv4) or a /32 (IPv6)")));
        }
        if new.expires_ms.is_some_and(|at| at <= now_ms) {
            return bad("expiresAt is in the past");
        }
        let mut id = [0u8; 16];
        OsRng.fill_bytes(&mut id);
        let id = KeyId(id);
        let (credential, secret) = match new.public_key.as_deref() {
            Some(text) => (Credential::Ed25519 { public_key: parse_public_key(text).map_err(|e| ApiKeyError::BadInput(e.to_string()))? }, None),
            None => {
                let mut bytes = [0u8; HMAC_SECRET_BYTES];
                OsRng.fill_bytes(&mut bytes);
                let secret = hex::encode(bytes);
                (Credential::Hmac { sealed_secret: self.sealer.seal(&purpose(id), secret.as_bytes()) }, Some(secret))
            }
        };
        let key = ApiKey { id, user, name, scopes: new.scopes, ip_allowlist, expires_ms: new.expires_ms, created_ms: now_ms, credential };
        // The count and the write are one step: two at once cannot pass per_user_max.
        let _creating = self.creating.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.list(user)?.len() >= self.per_user_max {
            return Err(ApiKeyError::TooMany(self.per_user_max));
        }
        let mut batch = Batch::default();
        batch.put(API_KEYS, &id.0, &postcard::to_stdvec(&key).expect("encoding into a vector cannot fail"));
        batch.put(API_KEYS_BY_USER, &by_user_key(user, id), &[]);
        self.store.write(&mut batch, Durability::Synced)?;
        Ok((key, secret))
    }

    /// Revokes `user`'s key `id` (durably, then its sockets close); false when they have none such.
    pub fn revoke(&self, user: UserId, id: KeyId) -> Result<bool, ApiKeyError> {
        if self.get(id)?.is_none_or(|key| key.user != user) {
            return Ok(false);
        }
        let mut batch = Batch::default();
        batch.delete(API_KEYS, &id.0);
        batch.delete(API_KEYS_BY_USER, &by_user_key(user, id));
        self.store.write(&mut batch, Durability::Synced)?;
        if let Some(revoked) = self.revoked.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).remove(&id) {
            revoked.send_replace(true);
        }
        Ok(true)
    }

    /// Resolves to true when key `id` is revoked.
    pub fn watch(&self, id: KeyId) -> watch::Receiver<bool> {
        let mut revoked = self.revoked.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Senders no socket watches any more are dropped as new ones come.
        revoked.retain(|_, sender| sender.receiver_count() > 0);
        let watching = revoked.entry(id).or_insert_with(|| watch::channel(false).0).subscribe();
        drop(revoked);
        // Revoked between the request's check and this watch: ended already.
        if !matches!(self.get(id), Ok(Some(_))) {
            let (ended, watching) = watch::channel(true);
            drop(ended);
            return watching;
        }
        watching
    }

    /// The key a signed request is from, when it is let in: well formed,
    /// within the receive window, from a key that is live and allows the
    /// address, signed right, and not seen before.
    pub fn authenticate(&self, signed: &Signed<'_>, method: &str, path_and_query: &str, body: &[u8], from: IpAddr, now_ms: u64) -> Result<ApiKey, Refusal> {
        let id = KeyId::parse(signed.key.trim()).ok_or(Refusal::Malformed("X-Marionette-Key is the key's id, 32 hex digits"))?;
        let timestamp = signed.timestamp.trim();
        let signed_ms: u64 = timestamp.parse().map_err(|_| Refusal::Malformed("X-Marionette-Timestamp is the time of signing in Unix milliseconds"))?;
        let skew_ms = i128::from(signed_ms) - i128::from(now_ms);
        if skew_ms.unsigned_abs() > u128::from(self.receive_window_ms) {
            return Err(Refusal::Stale { skew_ms, window_ms: self.receive_window_ms });
        }
        // The process before this one may have seen any signature still
        // within its window (a clock ahead included): none is taken until
        // a whole window has passed since the start.
        if now_ms < self.open_ms || signed_ms < self.open_ms {
            return Err(Refusal::Starting { wait_ms: self.open_ms.saturating_sub(now_ms).max(1) });
        }
        let signature = base64::engine::general_purpose::STANDARD
            .decode(signed.signature.trim())
            .map_err(|_| Refusal::Malformed("X-Marionette-Signature is the signature in base64"))?;
        let key = match self.get(id) {
            Ok(Some(key)) => key,
            Ok(None) => return Err(Refusal::UnknownKey),
            Err(error) => {
                tracing::error!(%error, "reading an API key failed");
                return Err(Refusal::UnknownKey);
            }
        };
        if key.expires_ms.is_some_and(|at| at <= now_ms) {
            return Err(Refusal::Expired);
        }
        if !key.allows(from) {
            return Err(Refusal::AddressNotAllowed(from));
        }
        let credential = match &key.credential {
            Credential::Ed25519 { public_key } => OpenCredential::Ed25519(*public_key),
            Credential::Hmac { sealed_secret } => match self.sealer.open(&purpose(id), sealed_secret) {
                Some(secret) => OpenCredential::Hmac(secret),
                None => {
                    tracing::error!(key = %id, "an API key's HMAC secret does not open: is auth.keys_dir the one it was sealed under?");
                    return Err(Refusal::BadSignature);
                }
            },
        };
        if !signature_matches(&credential, &signing_payload(timestamp, method, path_and_query, body), &signature) {
            return Err(Refusal::BadSignature);
        }
        // Only a request that verifies is remembered: nobody else can fill the memory with ours.
        let digest: [u8; 32] = Sha256::new().chain_update(id.0).chain_update(&signature).finalize().into();
        let forget_at_ms = signed_ms.saturating_add(self.receive_window_ms).saturating_add(1);
        if !self.replays().first_use(digest, now_ms, forget_at_ms)? {
            return Err(Refusal::Replayed);
        }
        Ok(key)
    }

    /// Signatures remembered now, for the metrics.
    pub fn remembered(&self) -> usize {
        self.replays().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ed25519_dalek::Signer;
    use proptest::prelude::*;

    fn keys(dir: &std::path::Path, now_ms: u64) -> ApiKeys {
        let store = crate::users::open_store(&dir.join("db")).expect("store");
        let sealer = Arc::new(Sealer::load_or_create(&dir.join("keys")).expect("sealer"));
        let mut keys = ApiKeys::new(store, sealer, 5_000, 3, 100, now_ms);
        // Open from `now_ms`, as a gateway is a window after its start.
        keys.open_ms = now_ms;
        keys
    }

    fn new_key(public_key: Option<String>) -> NewKey {
        NewKey { name: "bot".into(), scopes: Scopes { read: true, trade: true, withdraw: false }, ip_allowlist: vec![], expires_ms: None, public_key }
    }

    fn b64(bytes: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }

    fn hmac_sign(secret: &str, payload: &[u8]) -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("any length");
        mac.update(payload);
        b64(&mac.finalize().into_bytes())
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn an_hmac_request_is_let_in_once_and_only_as_signed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = keys(dir.path(), 1_000);
        let (key, secret) = keys.create(7, new_key(None), 1_000).expect("created");
        let secret = secret.expect("an HMAC key shows its secret");
        let id = key.id.to_string();
        let body = br#"{"query":"{ balances { asset } }"}"#;
        let signature = hmac_sign(&secret, &signing_payload("2000", "POST", "/graphql", body));
        let signed = Signed { key: &id, timestamp: "2000", signature: &signature };
        assert_eq!(keys.authenticate(&signed, "POST", "/graphql", body, LOCAL, 2_100).map(|k| k.user), Ok(7));
        assert_eq!(keys.authenticate(&signed, "POST", "/graphql", body, LOCAL, 2_200), Err(Refusal::Replayed));
        // Any change to what was signed is a bad signature.
        let fresh = hmac_sign(&secret, &signing_payload("2001", "POST", "/graphql", body));
        let signed = Signed { key: &id, timestamp: "2001", signature: &fresh };
        assert_eq!(keys.authenticate(&signed, "POST", "/graphql", b"{}", LOCAL, 2_200), Err(Refusal::BadSignature));
        assert_eq!(keys.authenticate(&signed, "GET", "/graphql", body, LOCAL, 2_200), Err(Refusal::BadSignature));
        assert_eq!(keys.authenticate(&signed, "POST", "/graphql?x", body, LOCAL, 2_200), Err(Refusal::BadSignature));
        // Too old, too far ahead, or from before the process started.
        assert!(matches!(keys.authenticate(&signed, "POST", "/graphql", body, LOCAL, 7_002), Err(Refusal::Stale { window_ms: 5_000, .. })));
        let early = keys.authenticate(&Signed { key: &id, timestamp: "900", signature: &fresh }, "POST", "/graphql", body, LOCAL, 1_000);
        assert!(matches!(early, Err(Refusal::Starting { .. })), "signed before the gateway opened: {early:?}");
        let fresh_start = ApiKeys::new(keys.store.clone(), keys.sealer.clone(), 5_000, 3, 100, 3_000);
        let opening = fresh_start.authenticate(&Signed { key: &id, timestamp: "3001", signature: &fresh }, "POST", "/graphql", body, LOCAL, 3_001);
        assert_eq!(opening, Err(Refusal::Starting { wait_ms: 4_999 }), "nothing is taken for a window after a start");
        // Revoked at once.
        assert!(keys.revoke(7, key.id).expect("revoked"));
        assert_eq!(keys.authenticate(&signed, "POST", "/graphql", body, LOCAL, 2_200), Err(Refusal::UnknownKey));
        assert!(!keys.revoke(7, key.id).expect("gone"), "a second revocation finds nothing");
    }

    #[test]
    fn an_ed25519_key_verifies_and_the_secret_of_an_hmac_key_is_sealed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = keys(dir.path(), 1_000);
        let signing = ed25519_dalek::SigningKey::from_bytes(&[9u8; 32]);
        let (key, secret) = keys.create(7, new_key(Some(b64(signing.verifying_key().as_bytes()))), 1_000).expect("created");
        assert_eq!(secret, None, "the client keeps its own private key");
        let id = key.id.to_string();
        let signature = b64(&signing.sign(&signing_payload("1500", "GET", "/graphql?query=%7Bme%7Bid%7D%7D", b"")).to_bytes());
        let signed = Signed { key: &id, timestamp: "1500", signature: &signature };
        assert!(keys.authenticate(&signed, "GET", "/graphql?query=%7Bme%7Bid%7D%7D", b"", LOCAL, 1_600).is_ok());
        let other = ed25519_dalek::SigningKey::from_bytes(&[8u8; 32]);
        let forged = b64(&other.sign(&signing_payload("1501", "GET", "/graphql", b"")).to_bytes());
        let signed = Signed { key: &id, timestamp: "1501", signature: &forged };
        assert_eq!(keys.authenticate(&signed, "GET", "/graphql", b"", LOCAL, 1_600), Err(Refusal::BadSignature));
        // A PEM public key (openssl pkey -pubout) is the same key.
        let der = [SPKI_ED25519_PREFIX.as_slice(), signing.verifying_key().as_bytes()].concat();
        let pem = format!("-----BEGIN PUBLIC KEY-----\n{}\n-----END PUBLIC KEY-----\n", b64(&der));
        assert_eq!(parse_public_key(&pem), Ok(signing.verifying_key().to_bytes()));
        assert!(parse_public_key("not a key").is_err());
        assert!(parse_public_key(&b64(&[0u8; 32])).is_err(), "the identity point is weak");
    }

    #[test]
    fn keys_are_checked_when_made_and_when_used() {
        let dir = tempfile::tempdir().expect("tempdir");
        let keys = keys(dir.path(), 1_000);
        let mut withdraw = new_key(None);
        withdraw.scopes.withdraw = true;
        assert!(matches!(keys.create(7, withdraw, 1_000), Err(ApiKeyError::BadInput(reason)) if reason.contains("IP allowlist")));
        let mut allowed = new_key(None);
        allowed.scopes.withdraw = true;
        allowed.ip_allowlist = vec!["203.0.113.0/24".into()];
        allowed.expires_ms = Some(10_000);
        let (key, secret) = keys.create(7, allowed, 1_000).expect("created");
        let (id, secret) = (key.id.to_string(), secret.expect("secret"));
        let sign = |ts: &str| hmac_sign(&secret, &signing_payload(ts, "GET", "/graphql", b""));
        let from = |text: &str| text.parse::<IpAddr>().expect("address");
        let signature = sign("2000");
        let signed = Signed { key: &id, timestamp: "2000", signature: &signature };
        assert_eq!(keys.authenticate(&signed, "GET", "/graphql", b"", LOCAL, 2_000), Err(Refusal::AddressNotAllowed(LOCAL)));
        assert!(keys.authenticate(&signed, "GET", "/graphql", b"", from("::ffff:203.0.113.9"), 2_000).is_ok(), "a mapped IPv4 address is the IPv4 one");
        let late = sign("10001");
        let signed = Signed { key: &id, timestamp: "10001", signature: &late };
        assert_eq!(keys.authenticate(&signed, "GET", "/graphql", b"", from("203.0.113.9"), 10_001), Err(Refusal::Expired));
        for bad in ["", "x".repeat(65).as_str(), "line\nbreak"] {
            let mut named = new_key(None);
            named.name = bad.into();
            assert!(matches!(keys.create(7, named, 1_000), Err(ApiKeyError::BadInput(_))), "{bad:?}");
        }
        let mut nothing = new_key(None);
        nothing.scopes = Scopes::default();
        assert!(matches!(keys.create(7, nothing, 1_000), Err(ApiKeyError::BadInput(_))));
        let mut wide = new_key(None);
        wide.scopes.withdraw = true;
        wide.ip_allowlist = vec!["0.0.0.0/0".into()];
        assert!(matches!(keys.create(7, wide, 1_000), Err(ApiKeyError::BadInput(reason)) if reason.contains("too wide")));
        let mut odd = new_key(None);
        odd.ip_allowlist = vec!["10.0.0.0/99".into()];
        assert!(matches!(keys.create(7, odd, 1_000), Err(ApiKeyError::BadInput(_))));
        keys.create(7, new_key(None), 1_000).expect("second");
        keys.create(7, new_key(None), 1_000).expect("third");
        assert!(matches!(keys.create(7, new_key(None), 1_000), Err(ApiKeyError::TooMany(3))));
        assert_eq!(keys.list(7).expect("list").len(), 3);
        assert!(keys.list(8).expect("list").is_empty(), "another user's keys are not listed");
        assert_eq!(KeyId::parse(&key.id.to_string()), Some(key.id));
        assert_eq!(KeyId::parse(&"+f".repeat(16)), None, "hex digits only, no signs");
        assert_eq!(KeyId::parse(&"é".repeat(16)), None);
        assert!(!keys.revoke(8, key.id).expect("revoke"), "nor revocable by them");
    }

    #[test]
    fn the_replay_memory_is_bounded_and_forgets_only_what_has_expired() {
        let mut replays = Replays::new(2);
        assert_eq!(replays.first_use([1; 32], 0, 100), Ok(true));
        assert_eq!(replays.first_use([2; 32], 0, 100), Ok(true));
        assert_eq!(replays.first_use([3; 32], 50, 150), Err(Refusal::Busy), "full: wait, never forget a live one");
        assert_eq!(replays.first_use([1; 32], 99, 199), Ok(false));
        assert_eq!(replays.first_use([3; 32], 100, 200), Ok(true), "the first two expired and made room");
        assert_eq!(replays.len(), 1);
    }

    proptest! {
        #[test]
        fn no_header_text_panics_or_passes(key in ".{0,40}", timestamp in ".{0,24}", signature in ".{0,100}") {
            // One store for every case: opening RocksDB each time would be most of the test.
            static KEYS: std::sync::OnceLock<(tempfile::TempDir, ApiKeys)> = std::sync::OnceLock::new();
            let (_, keys) = KEYS.get_or_init(|| {
                let dir = tempfile::tempdir().expect("tempdir");
                let keys = keys(dir.path(), 0);
                (dir, keys)
            });
            let signed = Signed { key: &key, timestamp: &timestamp, signature: &signature };
            let refused = keys.authenticate(&signed, "POST", "/graphql", b"[]", LOCAL, 1_000).is_err();
            prop_assert!(refused);
        }

        #[test]
        fn public_keys_never_panic(text in ".{0,200}") {
            let _ = parse_public_key(&text);
        }
    }
}
