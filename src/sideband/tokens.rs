//! Sideband authentication: the `ASE-Token`s a gateway may present, and whether one is
//! required.
//!
//! A token is 32 characters of lowercase letters and digits (ASE's rule for imported
//! tokens; created ones are 128 random bits in hex). Several may be valid at once. A
//! presented token is compared with every valid one in constant time, so the answer's
//! timing says nothing about how close a guess was.
//!
//! Tokens, and the authentication switch when it was changed through the management API,
//! persist in the store ([`crate::store`]): [`Tokens::image`] is what gets stored and
//! [`Tokens::restore`] puts it back at start-up. Until the switch is changed through the
//! API, it is `enable_sideband_authentication` from `ase.conf`.

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
    #[error("the change is in effect but could not be stored: {0}")]
    Store(String),
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
    tokens: ArcSwap<Vec<Token>>,
    enabled: AtomicBool,
    /// Serialises changes (and their writes to disk).
    writing: Mutex<Stored>,
}

impl Tokens {
    /// No tokens yet; the switch as configured.
    pub fn new(configured: bool) -> Tokens {
        Tokens {
            tokens: ArcSwap::from_pointee(Vec::new()),
            enabled: AtomicBool::new(configured),
            writing: Mutex::new(Stored::default()),
        }
    }

    /// The state as stored (JSON: small, and readable when debugging a store).
    pub fn image(&self) -> Vec<u8> {
        let stored = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        serde_json::to_vec(&*stored).unwrap_or_default()
    }

    /// Puts back a stored state (at start-up).
    pub fn restore(&self, bytes: &[u8]) -> Result<(), String> {
        let stored: Stored = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        self.change(|s| {
            *s = stored;
            Ok(())
        })
        .map_err(|e| e.to_string())
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
        ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut bytes)
            .map_err(|_| TokenError::Store("no randomness available".into()))?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_a_restore_and_verify_exactly() {
        let t = Tokens::new(false);
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

        let again = Tokens::new(false);
        again.restore(&t.image()).unwrap();
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
}
