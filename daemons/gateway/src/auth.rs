//! Passwords (argon2id) and tokens (EdDSA JWTs with a key id), each token
//! bound to a session (`sid`) that must still be live for it to be valid.

use std::collections::{BTreeMap, HashMap};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;
use std::sync::{Arc, Mutex};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm as Argon2Algorithm, Argon2, Params, Version};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

use crate::config::AuthConfig;
use crate::sessions::{Origin, Session, SessionError, SessionId, Sessions};
use crate::users::{Role, UserId};

pub const PASSWORD_BYTES_MIN: usize = 8;
pub const PASSWORD_BYTES_MAX: usize = 256;
const KEY_SUFFIX: &str = ".ed25519";
/// PKCS#8 v1 wrapping of an Ed25519 seed (RFC 8410): this prefix, then the 32 bytes.
const PKCS8_ED25519_PREFIX: [u8; 16] = [0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20];

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("signing keys in {dir}: {detail}")]
    Keys { dir: String, detail: String },
    #[error("password hashing failed: {0}")]
    Hash(String),
    #[error("sessions: {0}")]
    Session(#[from] SessionError),
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user id.
    pub sub: String,
    pub role: Role,
    /// The session (32 hex digits): the token is valid while it is live.
    pub sid: String,
    pub iat: u64,
    pub exp: u64,
    /// Set when the request was signed with an API key rather than sent
    /// with a token: never in a token.
    #[serde(skip)]
    pub key: Option<KeyGrant>,
}

/// The API key a request was signed with, and what it may do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyGrant {
    pub id: crate::api_keys::KeyId,
    pub scopes: crate::api_keys::Scopes,
}

impl Claims {
    pub fn user(&self) -> Option<UserId> {
        self.sub.parse().ok()
    }

    pub fn session(&self) -> Option<SessionId> {
        SessionId::parse(&self.sid)
    }

    /// The caller of a request signed with `key`: its owner, with the key's scopes.
    pub fn for_key(key: &crate::api_keys::ApiKey) -> Claims {
        Claims {
            sub: key.user.to_string(),
            role: Role::User,
            sid: String::new(),
            iat: key.created_ms / 1_000,
            exp: key.expires_ms.map_or(u64::MAX, |ms| ms / 1_000),
            key: Some(KeyGrant { id: key.id, scopes: key.scopes }),
        }
    }
}

/// A token issued at login, and the session it is bound to.
pub struct Issued {
    pub token: String,
    /// Unix seconds.
    pub expires: u64,
    pub session: Session,
}

pub struct Auth {
    argon2: Argon2<'static>,
    signing_kid: String,
    signing: EncodingKey,
    verifying: BTreeMap<String, DecodingKey>,
    pub token_ttl_seconds: u64,
    sessions: Arc<Sessions>,
    /// A hash to verify against when the email is unknown, so that a login
    /// takes as long for a missing account as for a wrong password.
    decoy_hash: String,
    /// Tokens whose signature verified, by their SHA-256, with their claims:
    /// an EdDSA verification costs more than the rest of an order's way
    /// through the gateway. Only verified tokens go in; expiry and the
    /// session are checked at every use.
    verified: Mutex<HashMap<[u8; 32], Claims>>,
}

/// Tokens remembered as verified at most; past it the memory starts again.
const VERIFIED_TOKENS_MAX: usize = 65_536;

/// Seconds a token is still taken past its expiry (clock skew between gateways).
const EXPIRY_LEEWAY_SECONDS: u64 = 5;

impl Auth {
    pub fn new(config: &AuthConfig, sessions: Arc<Sessions>) -> Result<Auth, AuthError> {
        let params = Params::new(config.argon2_memory_kib, config.argon2_passes, 1, None).map_err(|e| AuthError::Hash(e.to_string()))?;
        let argon2 = Argon2::new(Argon2Algorithm::Argon2id, Version::V0x13, params);
        let keys = load_or_create_keys(&config.keys_dir)?;
        let (signing_kid, seed) = keys.iter().next_back().map(|(kid, seed)| (kid.clone(), *seed)).expect("load_or_create_keys returns at least one key");
        let mut pkcs8 = PKCS8_ED25519_PREFIX.to_vec();
        pkcs8.extend_from_slice(&seed);
        let verifying = keys
            .iter()
            .map(|(kid, seed)| (kid.clone(), DecodingKey::from_ed_der(ed25519_dalek::SigningKey::from_bytes(seed).verifying_key().as_bytes())))
            .collect();
        let mut auth = Auth {
            argon2,
            signing_kid,
            signing: EncodingKey::from_ed_der(&pkcs8),
            verifying,
            token_ttl_seconds: config.token_ttl_seconds,
            sessions,
            decoy_hash: String::new(),
            verified: Mutex::default(),
        };
        auth.decoy_hash = auth.hash_password("decoy password for unknown accounts")?;
        Ok(auth)
    }

    pub fn signing_key_id(&self) -> &str {
        &self.signing_kid
    }

    pub fn sessions(&self) -> &Sessions {
        &self.sessions
    }

    pub fn hash_password(&self, password: &str) -> Result<String, AuthError> {
        let salt = SaltString::generate(&mut OsRng);
        self.argon2.hash_password(password.as_bytes(), &salt).map(|hash| hash.to_string()).map_err(|e| AuthError::Hash(e.to_string()))
    }

    /// Checks `password` against `hash`, or against a decoy when there is no account.
    pub fn verify_password(&self, password: &str, hash: Option<&str>) -> bool {
        let stored = hash.unwrap_or(&self.decoy_hash);
        let Ok(parsed) = PasswordHash::new(stored) else { return false };
        self.argon2.verify_password(password.as_bytes(), &parsed).is_ok() && hash.is_some()
    }

    /// A new session for `user` and a token bound to it.
    pub fn issue(&self, user: UserId, role: Role, origin: &Origin, now_ms: u64) -> Result<Issued, AuthError> {
        let session = self.sessions.create(user, origin, now_ms, self.token_ttl_seconds * 1_000)?;
        let iat = now_ms / 1_000;
        let exp = session.expires_ms / 1_000;
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.signing_kid.clone());
        let claims = Claims { sub: user.to_string(), role, sid: session.id.to_string(), iat, exp, key: None };
        let token = jsonwebtoken::encode(&header, &claims, &self.signing).expect("EdDSA signing with a valid key cannot fail");
        Ok(Issued { token, expires: exp, session })
    }

    /// The claims of a valid token: EdDSA only (so `alg: none` and HMAC are
    /// refused), signed by a key we hold (by `kid`), not expired, and its
    /// session live (not logged out or revoked).
    pub fn verify(&self, token: &str) -> Option<Claims> {
        use sha2::Digest;
        let now_ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
        let digest: [u8; 32] = sha2::Sha256::digest(token.as_bytes()).into();
        let remembered = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).get(&digest).cloned();
        let claims = match remembered {
            Some(claims) if (claims.exp + EXPIRY_LEEWAY_SECONDS) * 1_000 > now_ms => claims,
            Some(_) => return None,
            None => {
                let claims = self.verify_signature(token)?;
                let mut verified = self.verified.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
                if verified.len() >= VERIFIED_TOKENS_MAX {
                    verified.clear();
                }
                verified.insert(digest, claims.clone());
                claims
            }
        };
        self.sessions.check(claims.session()?, claims.user()?, now_ms).then_some(claims)
    }

    /// The claims of a token signed by a key we hold, not expired.
    fn verify_signature(&self, token: &str) -> Option<Claims> {
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.alg != Algorithm::EdDSA {
            return None;
        }
        let key = self.verifying.get(header.kid.as_deref()?)?;
        let mut validation = Validation::new(Algorithm::EdDSA);
        validation.leeway = EXPIRY_LEEWAY_SECONDS;
        validation.set_required_spec_claims(&["exp", "sub"]);
        Some(jsonwebtoken::decode::<Claims>(token, key, &validation).ok()?.claims)
    }
}

/// Why a new password is refused, and what to do instead.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum WeakPassword {
    #[error("a password is {PASSWORD_BYTES_MIN} to {PASSWORD_BYTES_MAX} bytes")]
    Length,
    #[error("this password is too easy to guess (strength {score} of 4, at least {score_min} needed). {advice}")]
    Guessable { score: u8, score_min: u8, advice: String },
}

/// Judges a new password by how many guesses it would take (zxcvbn: words,
/// names, dates, keyboard runs and the account's own email count for
/// little), not by its length alone.
pub fn check_new_password(password: &str, email: &str, score_min: u8) -> Result<(), WeakPassword> {
    if !(PASSWORD_BYTES_MIN..=PASSWORD_BYTES_MAX).contains(&password.len()) {
        return Err(WeakPassword::Length);
    }
    let local = email.split('@').next().unwrap_or_default();
    let estimate = zxcvbn::zxcvbn(password, &[email, local]);
    let score = u8::from(estimate.score());
    if score >= score_min {
        return Ok(());
    }
    let feedback = estimate.feedback();
    let mut advice: Vec<String> = feedback.and_then(|f| f.warning()).map(|w| w.to_string()).into_iter().collect();
    advice.extend(feedback.map(|f| f.suggestions().iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap_or_default());
    if advice.is_empty() {
        advice.push("Use a few uncommon words together, or a password manager's.".into());
    }
    Err(WeakPassword::Guessable { score, score_min, advice: advice.join(" ") })
}

/// Makes a signing key in `keys_dir` when there is none; the id of the one that signs.
pub fn init_keys(config: &AuthConfig) -> Result<String, AuthError> {
    let keys = load_or_create_keys(&config.keys_dir)?;
    Ok(keys.keys().next_back().cloned().unwrap_or_default())
}

fn keys_error(dir: &Path, detail: impl Into<String>) -> AuthError {
    AuthError::Keys { dir: dir.display().to_string(), detail: detail.into() }
}

/// Every `<kid>.ed25519` in `dir`, by kid; creates one (mode 0600) when there is none.
fn load_or_create_keys(dir: &Path) -> Result<BTreeMap<String, [u8; 32]>, AuthError> {
    // Only the gateway's user may list its keys, whatever the umask.
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(|e| keys_error(dir, e.to_string()))?;
    let mut keys = BTreeMap::new();
    for entry in std::fs::read_dir(dir).map_err(|e| keys_error(dir, e.to_string()))? {
        let entry = entry.map_err(|e| keys_error(dir, e.to_string()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let Some(kid) = name.strip_suffix(KEY_SUFFIX) else { continue };
        let text = std::fs::read_to_string(entry.path()).map_err(|e| keys_error(dir, format!("{name}: {e}")))?;
        let seed = decode_hex32(text.trim()).ok_or_else(|| keys_error(dir, format!("{name} must hold 64 hex digits (a 32-byte Ed25519 seed)")))?;
        keys.insert(kid.to_string(), seed);
    }
    if keys.is_empty() {
        let mut seed = [0u8; 32];
        getrandom_seed(&mut seed).map_err(|e| keys_error(dir, format!("reading /dev/urandom: {e}")))?;
        let kid = format!("k{}", std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0));
        let path = dir.join(format!("{kid}{KEY_SUFFIX}"));
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&path)
            .map_err(|e| keys_error(dir, format!("{}: {e}", path.display())))?;
        file.write_all(format!("{}\n", hex::encode(seed)).as_bytes()).and_then(|()| file.sync_all()).map_err(|e| keys_error(dir, e.to_string()))?;
        tracing::info!(kid, path = %path.display(), "generated a JWT signing key");
        keys.insert(kid, seed);
    }
    Ok(keys)
}

fn getrandom_seed(seed: &mut [u8; 32]) -> std::io::Result<()> {
    use std::io::Read;
    std::fs::File::open("/dev/urandom")?.read_exact(seed)
}

fn decode_hex32(text: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(text, &mut out).ok()?;
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_judged_by_guesses_not_length() {
        for weak in ["mypasswd", "password1234", "qwertyuiop", "alicealice2024", "11111111111111111111"] {
            assert!(matches!(check_new_password(weak, "alice@bank.example", 3), Err(WeakPassword::Guessable { .. })), "{weak}");
        }
        match check_new_password("qwertyuiop", "alice@bank.example", 3) {
            Err(error) => assert!(error.to_string().contains("common password"), "the advice names what is wrong: {error}"),
            Ok(()) => panic!("a top-100 password passed"),
        }
        assert_eq!(check_new_password("short", "a@b.example", 0), Err(WeakPassword::Length));
        assert_eq!(check_new_password(&"x".repeat(PASSWORD_BYTES_MAX + 1), "a@b.example", 0), Err(WeakPassword::Length));
        for strong in ["correct horse battery staple", "ledger-tulip-92-quarry", "Zq8#vLm2!pW"] {
            assert_eq!(check_new_password(strong, "alice@bank.example", 3), Ok(()), "{strong}");
        }
        assert_eq!(check_new_password("mypasswd", "alice@bank.example", 0), Ok(()), "score 0 takes any");
    }
}
