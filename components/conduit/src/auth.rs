//! Authentication: the token configuration, and the parts that use it:
//! `token` (the HS256 JWT format: issuing, verifying, reading the
//! `Authorization` header), `caller` (the extractors handlers use to require
//! or accept a user, and the check that the token's user still exists) and
//! `password` (argon2id hashing).
//!
//! The configuration (`TokenConfig`: the signing key and the tokens'
//! lifetime) is read from Spin variables, and a weak signing key is refused.
//! Handlers import the part they need. Within `auth`, `caller` uses the
//! configuration and `token`, the configuration uses `token`, and `token` and
//! `password` use nothing else of it.

pub mod caller;
pub mod password;
pub mod token;

use crate::error::Error;

/// The signing key and the tokens' lifetime, read from Spin variables.
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
        token::encode_token(
            &self.secret,
            user_id,
            token::now_seconds(),
            self.ttl_seconds,
        )
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

#[cfg(test)]
mod tests {
    use super::*;

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
