//! Password hashing: argon2id, salted from the host's secure random source.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::{Algorithm, Argon2, Params, Version};

use crate::error::Error;

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
}
