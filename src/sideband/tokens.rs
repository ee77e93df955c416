//! Sideband authentication: the `ASE-Token`s a gateway may present, and whether one is
//! required.
//!
//! A token is 32 characters of lowercase letters and digits (ASE's rule for imported
//! tokens; created ones are 128 random bits in hex). Several may be valid at once. A
//! presented token is compared with every valid one in constant time, so the answer's
//! timing says nothing about how close a guess was.
//!
//! Tokens, and the authentication switch when it was changed through the management API,
//! persist in `<data_dir>/sideband.json` (written to a temporary file and renamed, so a
//! crash leaves the old or the new file, never half of one). Without that file, the switch
//! is `enable_sideband_authentication` from `ase.conf`.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// Why a token operation failed.
#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("a sideband token is 32 characters of lowercase letters and digits")]
    Invalid,
    #[error("sideband token {0} already exists")]
    Exists(String),
    #[error("sideband token {0} does not exist")]
    NotFound(String),
    #[error("{}: {reason}", file.display())]
    Store { file: PathBuf, reason: String },
}

/// One valid token.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Token {
    pub token: String,
    /// RFC 3339 time it was created or imported.
    pub created: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Stored {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    authentication: Option<bool>,
    #[serde(default)]
    tokens: Vec<Token>,
}

/// The token store.
pub struct Tokens {
    file: PathBuf,
    tokens: ArcSwap<Vec<Token>>,
    enabled: AtomicBool,
    /// Serialises changes (and their writes to disk).
    writing: Mutex<Stored>,
}

impl Tokens {
    /// Loads `<data_dir>/sideband.json`; a missing file means no tokens and the configured
    /// switch.
    pub fn load(data_dir: &Path, configured: bool) -> Result<Tokens, TokenError> {
        let file = data_dir.join("sideband.json");
        let stored = match std::fs::read(&file) {
            Ok(bytes) => {
                serde_json::from_slice::<Stored>(&bytes).map_err(|e| TokenError::Store {
                    file: file.clone(),
                    reason: format!(
                        "not a valid token file ({e}); move it aside to start without tokens"
                    ),
                })?
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Stored::default(),
            Err(e) => {
                return Err(TokenError::Store {
                    file,
                    reason: e.to_string(),
                });
            }
        };
        Ok(Tokens {
            tokens: ArcSwap::from_pointee(stored.tokens.clone()),
            enabled: AtomicBool::new(stored.authentication.unwrap_or(configured)),
            writing: Mutex::new(stored),
            file,
        })
    }

    /// Whether callers must present a valid `ASE-Token`.
    pub fn required(&self) -> bool {
        self.enabled.load(Relaxed)
    }

    /// Whether `presented` is one of the valid tokens (constant time in its content).
    pub fn verify(&self, presented: &[u8]) -> bool {
        let mut found = subtle::Choice::from(0u8);
        for t in self.tokens.load().iter() {
            found |= t.token.as_bytes().ct_eq(presented);
        }
        bool::from(found)
    }

    pub fn list(&self) -> Vec<Token> {
        self.tokens.load().as_ref().clone()
    }

    /// Creates a random token.
    pub fn create(&self) -> Result<String, TokenError> {
        let mut bytes = [0u8; 16];
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes).map_err(
            |_| TokenError::Store {
                file: self.file.clone(),
                reason: "no randomness available".into(),
            },
        )?;
        let token: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        self.import(&token)?;
        Ok(token)
    }

    /// Adds a token chosen elsewhere (e.g. already configured on the gateway).
    pub fn import(&self, token: &str) -> Result<(), TokenError> {
        if !valid(token) {
            return Err(TokenError::Invalid);
        }
        self.change(|s| {
            if s.tokens.iter().any(|t| t.token == token) {
                return Err(TokenError::Exists(token.to_string()));
            }
            s.tokens.push(Token {
                token: token.to_string(),
                created: jiff::Timestamp::now().to_string(),
            });
            Ok(())
        })
    }

    pub fn delete(&self, token: &str) -> Result<(), TokenError> {
        self.change(|s| {
            let before = s.tokens.len();
            s.tokens.retain(|t| t.token != token);
            if s.tokens.len() == before {
                return Err(TokenError::NotFound(token.to_string()));
            }
            Ok(())
        })
    }

    /// Turns the requirement on or off, persistently.
    pub fn set_required(&self, on: bool) -> Result<(), TokenError> {
        self.change(|s| {
            s.authentication = Some(on);
            Ok(())
        })
    }

    fn change(
        &self,
        f: impl FnOnce(&mut Stored) -> Result<(), TokenError>,
    ) -> Result<(), TokenError> {
        let mut stored = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = stored.clone();
        f(&mut next)?;
        write_atomically(&self.file, &next)?;
        self.tokens.store(Arc::new(next.tokens.clone()));
        if let Some(on) = next.authentication {
            self.enabled.store(on, Relaxed);
        }
        *stored = next;
        Ok(())
    }
}

/// 32 characters of lowercase letters and digits.
pub fn valid(token: &str) -> bool {
    token.len() == 32
        && token
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
}

fn write_atomically(file: &Path, stored: &Stored) -> Result<(), TokenError> {
    let err = |e: std::io::Error| TokenError::Store {
        file: file.to_path_buf(),
        reason: e.to_string(),
    };
    let json = serde_json::to_vec_pretty(stored).map_err(|e| err(std::io::Error::other(e)))?;
    crate::config::write_atomically(file, &json).map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_a_reload_and_verify_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let t = Tokens::load(dir.path(), false).unwrap();
        let a = t.create().unwrap();
        assert!(valid(&a));
        t.import("0123456789abcdefghijklmnopqrstuv").unwrap();
        assert!(matches!(
            t.import("0123456789abcdefghijklmnopqrstuv"),
            Err(TokenError::Exists(_))
        ));
        assert!(matches!(t.import("TOO-SHORT"), Err(TokenError::Invalid)));
        assert!(matches!(
            t.import("0123456789ABCDEFGHIJKLMNOPQRSTUV"),
            Err(TokenError::Invalid)
        ));
        t.set_required(true).unwrap();

        let again = Tokens::load(dir.path(), false).unwrap();
        assert!(again.required(), "the switch set through the API survives");
        assert_eq!(again.list().len(), 2);
        assert!(again.verify(a.as_bytes()));
        assert!(again.verify(b"0123456789abcdefghijklmnopqrstuv"));
        assert!(!again.verify(b"0123456789abcdefghijklmnopqrstuw"));
        assert!(!again.verify(b""));
        again.delete(&a).unwrap();
        assert!(!again.verify(a.as_bytes()));
        assert!(matches!(again.delete(&a), Err(TokenError::NotFound(_))));
    }

    #[test]
    fn a_corrupt_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("sideband.json"), b"{nope").unwrap();
        let e = Tokens::load(dir.path(), false).err().unwrap().to_string();
        assert!(
            e.contains("sideband.json") && e.contains("move it aside"),
            "{e}"
        );
    }
}
