//! The management credentials every management call presents (`x-ase-access-key`,
//! `x-ase-secret-key`).
//!
//! They start as `management_access_key` / `management_secret_key` from `ase.conf`. The
//! secret can be changed at run time (`PUT /v5/ase/credentials`, `enforcer
//! update-password`, ASE's `update_password`); the changed secret is kept in the store as a
//! salted SHA-256, never in clear, and from then on overrides `ase.conf`.

use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The secret in force.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
enum Secret {
    /// From `ase.conf` (not stored).
    Configured { value: String },
    /// Set at run time: SHA-256 of salt ‖ secret.
    Hashed { salt: String, sha256: String },
}

/// Why a new secret was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CredentialError {
    #[error("the secret key must be 8 to 256 characters without control characters")]
    Weak,
    #[error("no randomness available for the salt")]
    NoRandom,
}

pub struct Credentials {
    access_key: String,
    secret: ArcSwap<Secret>,
    writing: Mutex<()>,
}

impl Credentials {
    pub fn new(access_key: &str, secret_key: &str) -> Credentials {
        Credentials {
            access_key: access_key.to_string(),
            secret: ArcSwap::from_pointee(Secret::Configured {
                value: secret_key.to_string(),
            }),
            writing: Mutex::new(()),
        }
    }

    /// Whether the presented pair is right; both parts are always compared, in constant
    /// time.
    pub fn verify(&self, access: &[u8], secret: &[u8]) -> bool {
        // Compared as fixed-length digests: a byte-wise comparison of unequal lengths
        // would tell an attacker the length of the secret by how fast it fails.
        let access_ok = digest("", access)
            .as_bytes()
            .ct_eq(digest("", self.access_key.as_bytes()).as_bytes());
        let secret_ok = match &**self.secret.load() {
            Secret::Configured { value } => digest("", secret)
                .as_bytes()
                .ct_eq(digest("", value.as_bytes()).as_bytes()),
            Secret::Hashed { salt, sha256 } => {
                digest(salt, secret).as_bytes().ct_eq(sha256.as_bytes())
            }
        };
        bool::from(access_ok & secret_ok)
    }

    /// Replaces the secret.
    pub fn set_secret(&self, new: &str) -> Result<(), CredentialError> {
        let len = new.chars().count();
        if !(8..=256).contains(&len) || new.chars().any(char::is_control) {
            return Err(CredentialError::Weak);
        }
        let mut salt = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut salt)
            .map_err(|_| CredentialError::NoRandom)?;
        let salt = hex(&salt);
        let sha256 = digest(&salt, new.as_bytes());
        let _w = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        self.secret.store(Arc::new(Secret::Hashed { salt, sha256 }));
        Ok(())
    }

    /// Whether the secret was changed at run time (so `ase.conf`'s no longer applies).
    pub fn changed(&self) -> bool {
        matches!(**self.secret.load(), Secret::Hashed { .. })
    }

    /// What the store keeps: the hashed secret, or nothing while `ase.conf`'s applies.
    pub fn image(&self) -> Vec<u8> {
        match &**self.secret.load() {
            Secret::Configured { .. } => Vec::new(),
            hashed => serde_json::to_vec(hashed).unwrap_or_default(),
        }
    }

    /// Puts back a stored secret (at start-up).
    pub fn restore(&self, bytes: &[u8]) -> Result<(), String> {
        if bytes.is_empty() {
            return Ok(());
        }
        match serde_json::from_slice::<Secret>(bytes).map_err(|e| e.to_string())? {
            s @ Secret::Hashed { .. } => {
                self.secret.store(Arc::new(s));
                Ok(())
            }
            Secret::Configured { .. } => Err("a clear-text secret is never stored".into()),
        }
    }
}

fn digest(salt: &str, secret: &[u8]) -> String {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    ctx.update(salt.as_bytes());
    ctx.update(secret);
    hex(ctx.finish().as_ref())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_secret_replaces_the_configured_one_and_survives_a_restore() {
        let c = Credentials::new("admin", "admin");
        assert!(c.verify(b"admin", b"admin"));
        assert!(c.image().is_empty(), "nothing to store before a change");
        assert_eq!(c.set_secret("short"), Err(CredentialError::Weak));
        c.set_secret("correct horse").unwrap();
        assert!(!c.verify(b"admin", b"admin"));
        assert!(c.verify(b"admin", b"correct horse"));
        assert!(!c.verify(b"root", b"correct horse"));
        let stored = c.image();
        assert!(!String::from_utf8_lossy(&stored).contains("correct horse"));

        let again = Credentials::new("admin", "admin");
        again.restore(&stored).unwrap();
        assert!(again.changed());
        assert!(again.verify(b"admin", b"correct horse"));
        assert!(!again.verify(b"admin", b"admin"));
    }
}
