//! Tokens: the HS256 JWTs carried as `Authorization: Token <jwt>`, issued
//! and verified with the key and lifetime passed in (`TokenConfig` reads
//! them from Spin variables).
//!
//! The token is written by hand (HMAC-SHA256 over base64url JSON) rather than
//! with a JWT crate: the format is small, and the usual crates pull in `ring`,
//! which does not build for wasm32-wasip2. Verification only accepts
//! `alg: HS256`, compares the MAC in constant time and requires an unexpired
//! `exp`.

use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

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
}
