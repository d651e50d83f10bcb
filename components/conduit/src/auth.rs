//! Authentication: HS256 JWTs carried as `Authorization: Token <jwt>`, the
//! extractors handlers use to require or accept a user, and argon2id password
//! hashing.
//!
//! The token is written by hand (HMAC-SHA256 over base64url JSON) rather than
//! with a JWT crate: the format is small, and the usual crates pull in `ring`,
//! which does not build for wasm32-wasip2. Verification only accepts
//! `alg: HS256`, compares the MAC in constant time and requires an unexpired
//! `exp`.

use std::time::{SystemTime, UNIX_EPOCH};

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;
use spin_sdk::http::Request;
use spin_sdk::pg4::Connection;

use crate::db;
use crate::error::Error;

type HmacSha256 = Hmac<Sha256>;

/// The claims we issue and accept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    /// The user's id, as a string (RFC 7519 `sub`).
    pub sub: String,
    /// Issued at, seconds since the epoch.
    pub iat: i64,
    /// Expiry, seconds since the epoch.
    pub exp: i64,
}

#[derive(Serialize, Deserialize)]
struct Header {
    alg: String,
    typ: Option<String>,
}

/// Why a token was refused; all of them are 401s.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenError {
    Malformed,
    BadSignature,
    Expired,
}

impl From<TokenError> for Error {
    fn from(error: TokenError) -> Self {
        let message = match error {
            TokenError::Malformed => "is malformed",
            TokenError::BadSignature => "has an invalid signature",
            TokenError::Expired => "has expired",
        };
        Error::Unauthorized {
            field: "token",
            message,
        }
    }
}

pub fn now_seconds() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|elapsed| i64::try_from(elapsed.as_secs()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn mac(secret: &[u8]) -> HmacSha256 {
    // HMAC accepts keys of any length, so this cannot fail.
    <HmacSha256 as Mac>::new_from_slice(secret).unwrap_or_else(|_| unreachable!())
}

/// Issues a token for `user_id`, valid for `ttl_seconds` from `now`.
pub fn encode_token(secret: &[u8], user_id: i64, now: i64, ttl_seconds: i64) -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
    let claims = Claims {
        sub: user_id.to_string(),
        iat: now,
        exp: now.saturating_add(ttl_seconds),
    };
    let claims_json = serde_json::to_vec(&claims).unwrap_or_default();
    let signing_input = format!("{header}.{}", URL_SAFE_NO_PAD.encode(claims_json));
    let mut mac = mac(secret);
    mac.update(signing_input.as_bytes());
    let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
    format!("{signing_input}.{signature}")
}

/// Verifies `token` and returns its claims if it is an unexpired HS256 token
/// signed with `secret`.
pub fn verify_token(secret: &[u8], token: &str, now: i64) -> Result<Claims, TokenError> {
    let mut parts = token.split('.');
    let (Some(header_b64), Some(claims_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::Malformed);
    };
    let header: Header = URL_SAFE_NO_PAD
        .decode(header_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(TokenError::Malformed)?;
    // Only the algorithm we issue; never "none" or an algorithm chosen by the caller.
    if header.alg != "HS256" {
        return Err(TokenError::Malformed);
    }
    let signature = URL_SAFE_NO_PAD
        .decode(signature_b64)
        .map_err(|_| TokenError::Malformed)?;
    let mut mac = mac(secret);
    mac.update(header_b64.as_bytes());
    mac.update(b".");
    mac.update(claims_b64.as_bytes());
    // verify_slice compares in constant time.
    mac.verify_slice(&signature)
        .map_err(|_| TokenError::BadSignature)?;
    let claims: Claims = URL_SAFE_NO_PAD
        .decode(claims_b64)
        .ok()
        .and_then(|bytes| serde_json::from_slice(&bytes).ok())
        .ok_or(TokenError::Malformed)?;
    if claims.exp <= now {
        return Err(TokenError::Expired);
    }
    Ok(claims)
}

/// The token from an `Authorization` header value: exactly `Token <jwt>`, as
/// the spec says. Anything else (`Bearer`, `token`, extra or missing spaces, a
/// token with whitespace inside) is refused rather than guessed at, so there
/// is one accepted spelling and proxies or clients that mangle the header get
/// a clear 401 instead of a token read from the wrong place.
pub fn token_from_header(value: &str) -> Option<&str> {
    let token = value.strip_prefix("Token ")?;
    let well_formed = !token.is_empty()
        && token
            .bytes()
            .all(|byte| byte.is_ascii_graphic() && byte != b',');
    well_formed.then_some(token)
}

/// Configuration the auth code needs, read from Spin variables.
pub struct TokenConfig {
    pub secret: Vec<u8>,
    pub ttl_seconds: i64,
}

impl TokenConfig {
    pub fn load() -> Result<TokenConfig, Error> {
        let secret = spin_sdk::variables::get("jwt_secret")
            .map_err(|error| Error::Internal(format!("variable jwt_secret: {error}")))?;
        check_secret_strength(&secret)?;
        let ttl_seconds = match spin_sdk::variables::get("jwt_ttl_seconds") {
            Ok(raw) => parse_ttl(&raw)?,
            Err(_) => DEFAULT_TTL_SECONDS,
        };
        Ok(TokenConfig {
            secret: secret.into_bytes(),
            ttl_seconds,
        })
    }

    pub fn issue(&self, user_id: i64) -> String {
        encode_token(&self.secret, user_id, now_seconds(), self.ttl_seconds)
    }
}

const DEFAULT_TTL_SECONDS: i64 = 86_400;

/// Shortest `jwt_secret` accepted: 32 bytes, as spin.toml asks for.
const MIN_SECRET_BYTES: usize = 32;

/// Refuses a signing key anyone could guess: shorter than 32 bytes, or the
/// `change-me...` placeholder of docker/.env.example left in place. Every
/// request that needs a token then fails (500, with the reason in the log but
/// not the value), rather than the API issuing tokens anyone can forge.
fn check_secret_strength(secret: &str) -> Result<(), Error> {
    if secret.len() < MIN_SECRET_BYTES {
        return Err(Error::Internal(format!(
            "variable jwt_secret must be at least {MIN_SECRET_BYTES} bytes, got {}",
            secret.len()
        )));
    }
    if secret.to_ascii_lowercase().starts_with("change-me") {
        return Err(Error::Internal(
            "variable jwt_secret still holds the change-me placeholder".into(),
        ));
    }
    Ok(())
}

fn parse_ttl(raw: &str) -> Result<i64, Error> {
    match raw.trim().parse::<i64>() {
        Ok(seconds) if seconds > 0 => Ok(seconds),
        _ => Err(Error::Internal(format!(
            "variable jwt_ttl_seconds must be a positive integer, got {raw:?}"
        ))),
    }
}

/// The caller, authenticated by a valid token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthUser {
    pub id: i64,
}

impl AuthUser {
    /// Requires a valid token: 401 if it is missing or invalid.
    pub fn required(req: &Request) -> Result<AuthUser, Error> {
        AuthUser::optional(req)?.ok_or(Error::Unauthorized {
            field: "token",
            message: "is missing",
        })
    }

    /// Accepts a missing token (anonymous caller) but not an invalid one: a
    /// client that sends a broken token gets a 401, not silently anonymous data.
    pub fn optional(req: &Request) -> Result<Option<AuthUser>, Error> {
        let Some(header) = req.header("authorization") else {
            return Ok(None);
        };
        let token = header
            .as_str()
            .and_then(token_from_header)
            .ok_or(Error::Unauthorized {
                field: "token",
                message: "must be sent as 'Authorization: Token <jwt>'",
            })?;
        let config = TokenConfig::load()?;
        let claims = verify_token(&config.secret, token, now_seconds())?;
        let id = claims.sub.parse().map_err(|_| TokenError::Malformed)?;
        Ok(Some(AuthUser { id }))
    }

    /// Confirms that the token's user still exists. A token outlives its
    /// user (it is checked without the database), so operations that would
    /// otherwise not notice a deleted user call this: such a token gets 401
    /// everywhere, never a page as somebody who is gone.
    pub fn ensure_exists(self, db: &Connection) -> Result<AuthUser, Error> {
        let rows = db::query(
            db,
            "SELECT 1 FROM users WHERE id = $1::bigint",
            &[self.id.into()],
        )?;
        db::first_row(&rows)
            .map(|_| self)
            .ok_or_else(Error::gone_user)
    }
}

/// The viewer of an operation that also works anonymously: [`ANONYMOUS_ID`]
/// without a token, else the token's user, who must still exist.
pub fn existing_viewer(user: Option<AuthUser>, db: &Connection) -> Result<i64, Error> {
    match user {
        None => Ok(ANONYMOUS_ID),
        Some(user) => Ok(user.ensure_exists(db)?.id),
    }
}

/// The id the SQL uses for "nobody" when no one is logged in: identities start
/// at 1, so no follow or favorite row ever matches it.
pub const ANONYMOUS_ID: i64 = 0;

/// Argon2id with the OWASP-recommended minimum: 19 MiB of memory, 2
/// iterations, 1 lane.
fn hasher() -> Argon2<'static> {
    let params = Params::new(19 * 1024, 2, 1, None).unwrap_or_else(|_| unreachable!());
    Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
}

/// Hashes a password with a fresh random salt into a PHC string.
pub fn hash_password(password: &str) -> Result<String, Error> {
    let salt_bytes = random_salt()?;
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|error| Error::Internal(format!("salt encoding: {error}")))?;
    hasher()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|error| Error::Internal(format!("password hashing: {error}")))
}

/// 16 bytes from the host's cryptographically secure source (wasi:random).
#[cfg(target_arch = "wasm32")]
fn random_salt() -> Result<Vec<u8>, Error> {
    Ok(wasi::random::random::get_random_bytes(16))
}

/// 16 bytes from the operating system, for native unit tests.
#[cfg(not(target_arch = "wasm32"))]
fn random_salt() -> Result<Vec<u8>, Error> {
    let mut salt = vec![0u8; 16];
    getrandom::fill(&mut salt).map_err(|error| Error::Internal(format!("random salt: {error}")))?;
    Ok(salt)
}

/// Checks a password against a stored PHC string (its own parameters apply).
pub fn verify_password(password: &str, stored_hash: &str) -> bool {
    PasswordHash::new(stored_hash)
        .map(|parsed| {
            hasher()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
        .unwrap_or(false)
}

/// A well-formed argon2id hash with the same cost as real ones that matches no
/// known password. It is verified when a login names an unknown email, so the
/// answer takes as long as for a wrong password (no account enumeration by
/// timing).
pub const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHRzYWx0c2FsdA$J5MhxkRX8BvIoS4zTeELWQ4W2SDwRDwOSjaKC3KNRvg";

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    const NOW: i64 = 1_700_000_000;

    #[test]
    fn issued_token_verifies_and_carries_the_user() {
        let token = encode_token(SECRET, 42, NOW, 3600);
        let claims = verify_token(SECRET, &token, NOW + 10).unwrap();
        assert_eq!(claims.sub, "42");
        assert_eq!(claims.exp, NOW + 3600);
    }

    #[test]
    fn expired_token_is_refused() {
        let token = encode_token(SECRET, 42, NOW, 60);
        assert_eq!(
            verify_token(SECRET, &token, NOW + 60),
            Err(TokenError::Expired)
        );
        assert_eq!(
            verify_token(SECRET, &token, NOW + 3600),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn token_signed_with_another_secret_is_refused() {
        let token = encode_token(b"another secret entirely, 32 bytes", 42, NOW, 60);
        assert_eq!(
            verify_token(SECRET, &token, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn tampered_claims_are_refused() {
        let token = encode_token(SECRET, 42, NOW, 60);
        let parts: Vec<&str> = token.split('.').collect();
        let forged_claims =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"1","iat":{NOW},"exp":{}}}"#, NOW + 60));
        let forged = format!("{}.{}.{}", parts[0], forged_claims, parts[2]);
        assert_eq!(
            verify_token(SECRET, &forged, NOW),
            Err(TokenError::BadSignature)
        );
    }

    #[test]
    fn unsigned_alg_none_tokens_are_refused() {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let claims =
            URL_SAFE_NO_PAD.encode(format!(r#"{{"sub":"1","iat":{NOW},"exp":{}}}"#, NOW + 60));
        let token = format!("{header}.{claims}.");
        assert_eq!(
            verify_token(SECRET, &token, NOW),
            Err(TokenError::Malformed)
        );
    }

    #[test]
    fn garbage_is_malformed() {
        for token in ["", "abc", "a.b", "a.b.c.d", "!!.??.**"] {
            assert_eq!(
                verify_token(SECRET, token, NOW),
                Err(TokenError::Malformed),
                "{token}"
            );
        }
    }

    #[test]
    fn authorization_header_accepts_only_the_token_scheme() {
        assert_eq!(token_from_header("Token abc.def.ghi"), Some("abc.def.ghi"));
        for refused in [
            "Bearer abc.def.ghi",
            "token abc.def.ghi",
            "TOKEN abc.def.ghi",
            "Token  abc.def.ghi",
            " Token abc.def.ghi",
            "Token abc.def.ghi ",
            "Token abc def",
            "Token\tabc.def.ghi",
            "Token ",
            "Token",
            "",
            "abc.def.ghi",
            "Basic dXNlcjpwYXNz",
        ] {
            assert_eq!(token_from_header(refused), None, "{refused:?}");
        }
    }

    #[test]
    fn password_hash_is_argon2id_and_verifies() {
        let hash = hash_password("correct horse").unwrap();
        assert!(
            hash.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"),
            "{hash}"
        );
        assert!(verify_password("correct horse", &hash));
        assert!(!verify_password("wrong horse", &hash));
        assert_ne!(
            hash,
            hash_password("correct horse").unwrap(),
            "salts differ"
        );
    }

    #[test]
    fn decoy_hash_is_a_valid_argon2id_hash_with_the_same_cost() {
        let parsed = PasswordHash::new(DECOY_HASH).unwrap();
        assert_eq!(parsed.algorithm.as_str(), "argon2id");
        assert!(!verify_password("", DECOY_HASH));
    }

    #[test]
    fn short_and_placeholder_signing_keys_are_refused() {
        assert!(check_secret_strength("0123456789abcdef0123456789abcdef").is_ok());
        assert!(check_secret_strength("").is_err());
        assert!(check_secret_strength("too-short").is_err());
        assert!(check_secret_strength("change-me-jwt-secret-at-least-32-random-bytes").is_err());
        let message = check_secret_strength("change-me-jwt-secret-at-least-32-random-bytes")
            .unwrap_err()
            .to_string();
        assert!(!message.contains("at-least-32-random-bytes"), "{message}");
    }

    #[test]
    fn ttl_must_be_positive() {
        assert_eq!(parse_ttl("3600").unwrap(), 3600);
        assert!(parse_ttl("0").is_err());
        assert!(parse_ttl("soon").is_err());
    }
}
