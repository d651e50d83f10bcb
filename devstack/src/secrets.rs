//! Random secrets: the stack's passwords and signing key, and the names and
//! passwords of scratch databases and test containers.

use anyhow::Result;

/// A random lowercase hex string from the kernel's CSPRNG.
pub fn random_hex(bytes: usize) -> Result<String> {
    use std::io::Read;
    let mut buffer = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut buffer)?;
    Ok(buffer.iter().map(|byte| format!("{byte:02x}")).collect())
}

/// Passwords and keys; generated once per installation (scripts/stack keeps
/// them in .data/secrets.env) or per test.
#[derive(Clone, Debug)]
pub struct Secrets {
    pub jwt_secret: String,
    pub owner_password: String,
    pub app_password: String,
    pub superuser_password: String,
}

impl Secrets {
    pub fn random() -> Result<Self> {
        Ok(Self {
            jwt_secret: random_hex(32)?,
            owner_password: random_hex(16)?,
            app_password: random_hex(16)?,
            superuser_password: random_hex(16)?,
        })
    }
}
