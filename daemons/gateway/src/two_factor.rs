//! Two-factor authentication with time-based one-time passwords (TOTP, RFC
//! 6238: HMAC-SHA1, six digits, 30-second steps), the kind every
//! authenticator app reads from an `otpauth://` URI or its QR code.
//!
//! - A secret is 160 random bits (RFC 4226's recommended length), stored
//!   only sealed (XChaCha20-Poly1305) under a key kept in the gateway's key
//!   directory, never in the database ([`Sealer`]).
//! - A code's time step is accepted once: the last accepted step is stored
//!   durably, and any step at or before it is refused (RFC 6238, 5.2), the
//!   enrolment's included. One step of clock skew is allowed each way.
//! - Ten one-use recovery codes (80 bits each) are shown once at
//!   confirmation and stored as SHA-256 digests; each stands in for one code.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::{OsRng, RngCore};
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use storage::{Batch, Durability, StorageError, Store, Table};
use totp_rs::{Algorithm, TOTP};

use crate::users::UserId;

/// User id -> their [`Enrolment`].
pub const TWO_FACTOR: Table = Table::new("two_factor");

pub const SECRET_BYTES: usize = 20;
pub const STEP_SECONDS: u64 = 30;
pub const DIGITS: usize = 6;
/// Steps either side of now whose code is accepted (a phone's clock drifts).
pub const SKEW_STEPS: u64 = 1;
pub const RECOVERY_CODES: usize = 10;
/// The key file in `auth.keys_dir`.
pub const SEALING_KEY_FILE: &str = "secrets-at-rest.key";
const ISSUER: &str = "Marionette";
const NONCE_BYTES: usize = 24;

#[derive(Debug, thiserror::Error)]
pub enum TwoFactorError {
    #[error("the key for secrets at rest in {dir}: {detail}")]
    Key { dir: String, detail: String },
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error("a two-factor record does not decode: {0}")]
    Corrupt(String),
    #[error("a sealed secret does not open: is auth.keys_dir the one it was sealed under?")]
    Unsealable,
}

/// Seals secrets for storage. Each sealed value names what it is for
/// (`purpose`, authenticated with it), so one cannot be swapped for another.
pub struct Sealer {
    cipher: XChaCha20Poly1305,
}

impl Sealer {
    /// The key in `dir/secrets-at-rest.key` (64 hex digits), made (mode 0600) when there is none.
    pub fn load_or_create(dir: &Path) -> Result<Sealer, TwoFactorError> {
        let error = |detail: String| TwoFactorError::Key { dir: dir.display().to_string(), detail };
        std::fs::create_dir_all(dir).map_err(|e| error(e.to_string()))?;
        let path = dir.join(SEALING_KEY_FILE);
        let key = match std::fs::read_to_string(&path) {
            Ok(text) => decode_key(text.trim()).ok_or_else(|| error(format!("{SEALING_KEY_FILE} must hold 64 hex digits (a 32-byte key)")))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut key = [0u8; 32];
                OsRng.fill_bytes(&mut key);
                let mut file =
                    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path).map_err(|e| error(format!("{}: {e}", path.display())))?;
                file.write_all(format!("{}\n", hex::encode(key)).as_bytes()).and_then(|()| file.sync_all()).map_err(|e| error(e.to_string()))?;
                tracing::info!(path = %path.display(), "generated the key for secrets at rest");
                key
            }
            Err(e) => return Err(error(format!("{}: {e}", path.display()))),
        };
        Ok(Sealer { cipher: XChaCha20Poly1305::new(&key.into()) })
    }

    /// A random nonce, then the ciphertext and its tag.
    pub fn seal(&self, purpose: &[u8], plaintext: &[u8]) -> Vec<u8> {
        let mut nonce = [0u8; NONCE_BYTES];
        OsRng.fill_bytes(&mut nonce);
        let sealed =
            self.cipher.encrypt(&XNonce::from(nonce), Payload { msg: plaintext, aad: purpose }).expect("XChaCha20-Poly1305 encrypts any length we store");
        [nonce.as_slice(), &sealed].concat()
    }

    pub fn open(&self, purpose: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
        let (nonce, ciphertext) = sealed.split_at_checked(NONCE_BYTES)?;
        let nonce: [u8; NONCE_BYTES] = nonce.try_into().ok()?;
        self.cipher.decrypt(&XNonce::from(nonce), Payload { msg: ciphertext, aad: purpose }).ok()
    }
}

/// A user's two-factor state, as stored.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Enrolment {
    /// The secret, sealed for this user.
    pub sealed_secret: Vec<u8>,
    /// False until a first code confirms the user's app has it.
    pub confirmed: bool,
    /// The last time step a code was accepted for (0: none yet).
    pub last_step: u64,
    /// SHA-256 of each unused recovery code.
    pub recovery_digests: Vec<[u8; 32]>,
    pub created_ms: u64,
}

/// What a new enrolment shows the user, once.
pub struct Started {
    /// Base32, for typing into an app.
    pub secret: String,
    pub uri: String,
    pub qr_code_svg: String,
}

/// Why a code is not accepted.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum CodeRefusal {
    #[error("a code is {DIGITS} digits (or a recovery code, xxxx-xxxx-xxxx-xxxx)")]
    Malformed,
    #[error("the code is wrong or out of date; check the phone's clock")]
    Wrong,
    #[error("this code was used already; wait for the next one")]
    Replayed,
}

/// The code of `secret` for time step `step`.
pub fn code_at(secret: &[u8], step: u64) -> String {
    totp(secret, "").generate(step.saturating_mul(STEP_SECONDS))
}

fn totp(secret: &[u8], account: &str) -> TOTP {
    TOTP::new_unchecked(Algorithm::SHA1, DIGITS, 0, STEP_SECONDS, secret.to_vec(), Some(ISSUER.into()), account.into())
}

/// The step whose code `code` is, within the skew around `now_s`, if it is
/// after `last_step`. Codes are compared in constant time.
pub fn check_code(secret: &[u8], code: &str, now_s: u64, last_step: u64) -> Result<u64, CodeRefusal> {
    let code = code.trim();
    if code.len() != DIGITS || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(CodeRefusal::Malformed);
    }
    let now = now_s / STEP_SECONDS;
    let matched = (now.saturating_sub(SKEW_STEPS)..=now + SKEW_STEPS).find(|&step| constant_time_eq(code_at(secret, step).as_bytes(), code.as_bytes()));
    match matched {
        None => Err(CodeRefusal::Wrong),
        Some(step) if step <= last_step => Err(CodeRefusal::Replayed),
        Some(step) => Ok(step),
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// A recovery code as the user types it: 16 base32 letters, dashes and case ignored.
fn canonical_recovery(code: &str) -> Option<String> {
    let letters: String = code.chars().filter(|c| *c != '-' && !c.is_whitespace()).map(|c| c.to_ascii_uppercase()).collect();
    (letters.len() == 16 && letters.bytes().all(|b| BASE32.contains(&b))).then_some(letters)
}

fn recovery_digest(user: UserId, canonical: &str) -> [u8; 32] {
    Sha256::new().chain_update(user.to_be_bytes()).chain_update(canonical.as_bytes()).finalize().into()
}

const BASE32: &[u8; 32] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn new_recovery_code() -> String {
    let mut bytes = [0u8; 10];
    OsRng.fill_bytes(&mut bytes);
    // 80 bits: 16 base32 letters of five bits each, shown in fours.
    let bits = bytes.iter().fold(0u128, |bits, byte| (bits << 8) | u128::from(*byte));
    let letters: Vec<u8> = (0..16).map(|i| BASE32[((bits >> (75 - 5 * i)) & 31) as usize]).collect();
    letters.chunks(4).map(|chunk| std::str::from_utf8(chunk).expect("base32 letters are ASCII")).collect::<Vec<_>>().join("-")
}

/// The two-factor records in the gateway's store.
pub struct TwoFactor {
    store: Arc<Store>,
    sealer: Arc<Sealer>,
    /// Serializes each check and its write of `last_step`: one code, one use.
    using: Mutex<()>,
}

fn purpose(user: UserId) -> Vec<u8> {
    [b"totp-secret:".as_slice(), &user.to_be_bytes()].concat()
}

impl TwoFactor {
    pub fn new(store: Arc<Store>, sealer: Arc<Sealer>) -> TwoFactor {
        TwoFactor { store, sealer, using: Mutex::new(()) }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, ()> {
        self.using.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn get(&self, user: UserId) -> Result<Option<Enrolment>, TwoFactorError> {
        self.store
            .get(TWO_FACTOR, &user.to_be_bytes())?
            .map(|bytes| postcard::from_bytes(&bytes).map_err(|e| TwoFactorError::Corrupt(e.to_string())))
            .transpose()
    }

    /// Whether `user` has confirmed two-factor authentication.
    pub fn enabled(&self, user: UserId) -> Result<bool, TwoFactorError> {
        Ok(self.get(user)?.is_some_and(|e| e.confirmed))
    }

    fn put(&self, user: UserId, enrolment: &Enrolment) -> Result<(), TwoFactorError> {
        let mut batch = Batch::default();
        batch.put(TWO_FACTOR, &user.to_be_bytes(), &postcard::to_stdvec(enrolment).expect("encoding into a vector cannot fail"));
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(())
    }

    /// A new secret for `user`, replacing an unconfirmed one; None when
    /// two-factor is already on (turn it off first).
    pub fn start(&self, user: UserId, account: &str, now_ms: u64) -> Result<Option<Started>, TwoFactorError> {
        let _using = self.lock();
        if self.enabled(user)? {
            return Ok(None);
        }
        let mut secret = [0u8; SECRET_BYTES];
        OsRng.fill_bytes(&mut secret);
        let enrolment = Enrolment {
            sealed_secret: self.sealer.seal(&purpose(user), &secret),
            confirmed: false,
            last_step: 0,
            recovery_digests: Vec::new(),
            created_ms: now_ms,
        };
        self.put(user, &enrolment)?;
        let totp = totp(&secret, account);
        let uri = totp.get_url();
        let qr_code_svg = qrcode::QrCode::new(uri.as_bytes())
            .map(|code| code.render::<qrcode::render::svg::Color<'_>>().min_dimensions(200, 200).quiet_zone(true).build())
            .unwrap_or_default();
        Ok(Some(Started { secret: totp.get_secret_base32(), uri, qr_code_svg }))
    }

    fn secret(&self, user: UserId, enrolment: &Enrolment) -> Result<Vec<u8>, TwoFactorError> {
        self.sealer.open(&purpose(user), &enrolment.sealed_secret).ok_or(TwoFactorError::Unsealable)
    }

    /// Confirms a started enrolment with a first code; the recovery codes,
    /// to be shown once. Err(None) when nothing was started.
    pub fn confirm(&self, user: UserId, code: &str, now_s: u64) -> Result<Result<Vec<String>, Option<CodeRefusal>>, TwoFactorError> {
        let _using = self.lock();
        let Some(mut enrolment) = self.get(user)?.filter(|e| !e.confirmed) else { return Ok(Err(None)) };
        let step = match check_code(&self.secret(user, &enrolment)?, code, now_s, enrolment.last_step) {
            Ok(step) => step,
            Err(refusal) => return Ok(Err(Some(refusal))),
        };
        let codes: Vec<String> = (0..RECOVERY_CODES).map(|_| new_recovery_code()).collect();
        enrolment.confirmed = true;
        enrolment.last_step = step;
        enrolment.recovery_digests = codes.iter().map(|c| recovery_digest(user, &canonical_recovery(c).expect("our own codes are canonical"))).collect();
        self.put(user, &enrolment)?;
        Ok(Ok(codes))
    }

    /// Checks a code (or a recovery code, then used up) of a confirmed
    /// enrolment, durably spending its step before it says yes.
    pub fn verify(&self, user: UserId, code: &str, now_s: u64) -> Result<Result<(), CodeRefusal>, TwoFactorError> {
        let _using = self.lock();
        let Some(mut enrolment) = self.get(user)?.filter(|e| e.confirmed) else { return Ok(Err(CodeRefusal::Wrong)) };
        if let Some(canonical) = canonical_recovery(code) {
            let digest = recovery_digest(user, &canonical);
            let Some(at) = enrolment.recovery_digests.iter().position(|d| constant_time_eq(d, &digest)) else { return Ok(Err(CodeRefusal::Wrong)) };
            enrolment.recovery_digests.remove(at);
            self.put(user, &enrolment)?;
            tracing::info!(user, left = enrolment.recovery_digests.len(), "a recovery code was used");
            return Ok(Ok(()));
        }
        match check_code(&self.secret(user, &enrolment)?, code, now_s, enrolment.last_step) {
            Ok(step) => {
                enrolment.last_step = step;
                self.put(user, &enrolment)?;
                Ok(Ok(()))
            }
            Err(refusal) => Ok(Err(refusal)),
        }
    }

    /// Turns two-factor off for `user` (after [`TwoFactor::verify`]).
    pub fn remove(&self, user: UserId) -> Result<(), TwoFactorError> {
        let _using = self.lock();
        let mut batch = Batch::default();
        batch.delete(TWO_FACTOR, &user.to_be_bytes());
        self.store.write(&mut batch, Durability::Synced)?;
        Ok(())
    }

    /// Recovery codes `user` has left.
    pub fn recovery_codes_left(&self, user: UserId) -> Result<usize, TwoFactorError> {
        Ok(self.get(user)?.filter(|e| e.confirmed).map_or(0, |e| e.recovery_digests.len()))
    }
}

fn decode_key(text: &str) -> Option<[u8; 32]> {
    let mut key = [0u8; 32];
    hex::decode_to_slice(text, &mut key).ok()?;
    Some(key)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// RFC 6238 appendix B's SHA-1 vectors (eight digits there; ours are the last six).
    #[test]
    fn codes_are_rfc_6238_s() {
        let secret = b"12345678901234567890";
        for (time, code) in [(59u64, "94287082"), (1_111_111_109, "07081804"), (1_234_567_890, "89005924"), (2_000_000_000, "69279037")] {
            assert_eq!(code_at(secret, time / STEP_SECONDS), code[2..], "at {time}");
        }
    }

    #[test]
    fn a_step_is_accepted_once_with_a_step_of_skew_either_way() {
        let secret = [7u8; SECRET_BYTES];
        let now = 1_800_000_000u64;
        let step = now / STEP_SECONDS;
        assert_eq!(check_code(&secret, &code_at(&secret, step), now, 0), Ok(step));
        assert_eq!(check_code(&secret, &code_at(&secret, step), now, step), Err(CodeRefusal::Replayed), "the same code twice");
        assert_eq!(check_code(&secret, &code_at(&secret, step - 1), now, step), Err(CodeRefusal::Replayed), "an older one after a newer");
        assert_eq!(check_code(&secret, &code_at(&secret, step + 1), now, step), Ok(step + 1), "a phone a step ahead");
        assert_eq!(check_code(&secret, &code_at(&secret, step - 1), now, 0), Ok(step - 1), "a step behind");
        assert_eq!(check_code(&secret, &code_at(&secret, step - 2), now, 0), Err(CodeRefusal::Wrong), "two steps behind");
        assert_eq!(check_code(&secret, &code_at(&secret, step + 2), now, 0), Err(CodeRefusal::Wrong));
        for bad in ["", "12345", "1234567", "12a456", "١٢٣٤٥٦"] {
            assert_eq!(check_code(&secret, bad, now, 0), Err(CodeRefusal::Malformed), "{bad}");
        }
    }

    #[test]
    fn secrets_are_stored_sealed_and_recovery_codes_work_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("db"), &[TWO_FACTOR]).unwrap());
        let two_factor = TwoFactor::new(store.clone(), Arc::new(Sealer::load_or_create(&dir.path().join("keys")).unwrap()));
        let started = two_factor.start(9, "alice@bank.example", 0).unwrap().unwrap();
        assert!(
            started.uri.starts_with("otpauth://totp/Marionette:alice%40bank.example?secret=") && started.uri.contains("issuer=Marionette"),
            "{}",
            started.uri
        );
        assert!(started.qr_code_svg.starts_with("<?xml") && started.qr_code_svg.contains("<svg"));
        let secret = totp_rs::Secret::Encoded(started.secret.clone()).to_bytes().unwrap();
        assert_eq!(secret.len(), SECRET_BYTES, "160 bits");
        let stored = store.get(TWO_FACTOR, &9u64.to_be_bytes()).unwrap().unwrap();
        assert!(!stored.windows(SECRET_BYTES).any(|w| w == secret.as_slice()), "the secret is not stored in clear");
        let now = 1_800_000_000u64;
        let step = now / STEP_SECONDS;
        assert_eq!(two_factor.verify(9, &code_at(&secret, step), now).unwrap(), Err(CodeRefusal::Wrong), "not confirmed yet");
        let codes = two_factor.confirm(9, &code_at(&secret, step), now).unwrap().unwrap();
        assert_eq!(codes.len(), RECOVERY_CODES);
        assert_eq!(two_factor.verify(9, &code_at(&secret, step), now).unwrap(), Err(CodeRefusal::Replayed), "the enrolment's code is spent");
        assert!(two_factor.start(9, "alice@bank.example", 0).unwrap().is_none(), "no new secret while it is on");
        assert_eq!(two_factor.verify(9, &codes[3].to_lowercase().replace('-', ""), now).unwrap(), Ok(()), "a recovery code, typed loosely");
        assert_eq!(two_factor.verify(9, &codes[3], now).unwrap(), Err(CodeRefusal::Wrong), "once");
        assert_eq!(two_factor.recovery_codes_left(9).unwrap(), RECOVERY_CODES - 1);
        assert_eq!(two_factor.verify(10, &codes[4], now).unwrap(), Err(CodeRefusal::Wrong), "another user's");
        // Another key cannot open it: the secret is worth nothing without the key directory.
        let other = TwoFactor::new(store, Arc::new(Sealer::load_or_create(&dir.path().join("other-keys")).unwrap()));
        assert!(matches!(other.verify(9, &code_at(&secret, step + 1), now + 30), Err(TwoFactorError::Unsealable)));
    }

    #[test]
    fn recovery_codes_are_distinct_base32_in_fours() {
        let codes: std::collections::HashSet<String> = (0..1_000).map(|_| new_recovery_code()).collect();
        assert_eq!(codes.len(), 1_000);
        for code in &codes {
            assert_eq!(code.len(), 19, "{code}");
            assert!(canonical_recovery(code).is_some(), "{code}");
        }
    }

    proptest! {
        #[test]
        fn any_input_is_a_refusal_or_a_step_never_a_panic(code in any::<String>(), now in any::<u64>(), last in any::<u64>()) {
            let _ = check_code(&[1u8; SECRET_BYTES], &code, now, last);
            let _ = canonical_recovery(&code);
        }

        #[test]
        fn sealed_secrets_open_only_for_their_purpose(secret in proptest::collection::vec(any::<u8>(), 0..64), user in any::<u64>()) {
            let dir = tempfile::tempdir().unwrap();
            let sealer = Sealer::load_or_create(dir.path()).unwrap();
            let sealed = sealer.seal(&purpose(user), &secret);
            prop_assert_eq!(sealer.open(&purpose(user), &sealed), Some(secret));
            prop_assert_eq!(sealer.open(&purpose(user.wrapping_add(1)), &sealed), None);
            prop_assert_eq!(sealer.open(&purpose(user), &sealed[..sealed.len() - 1]), None);
        }
    }
}
