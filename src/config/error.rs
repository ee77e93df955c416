//! What loading a config can say: [`ConfigError`] (it does not load; every variant names
//! the file, and value errors the key) and [`Warning`] (it loads, but look at this).

use std::fmt;
use std::path::{Path, PathBuf};

/// Why a config could not be loaded. Every variant names the file; value errors also name
/// the key (an `ase.conf` key or a JSON path such as `api_metadata.servers[0].port`).
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}: {reason}", file.display())]
    Syntax {
        file: PathBuf,
        line: usize,
        reason: String,
    },
    #[error("{}{}: {key}: {reason}", file.display(), line.map(|l| format!(":{l}")).unwrap_or_default())]
    Value {
        file: PathBuf,
        line: Option<usize>,
        key: String,
        reason: String,
    },
    /// Saved state in the data directory that cannot be used.
    #[error("{reason}")]
    State { reason: String },
    #[error("{} and {}: both define hostname {hostname} with url {url}", first.display(), second.display())]
    DuplicateApi {
        first: PathBuf,
        second: PathBuf,
        hostname: String,
        url: String,
    },
}

/// Something in the config that loaded but deserves the operator's attention.
#[derive(Debug, Clone)]
pub struct Warning {
    pub file: PathBuf,
    pub line: Option<usize>,
    pub key: String,
    pub message: String,
    /// Notes are informational (an ASE key enforcer does not use); warnings are likely
    /// mistakes (an unknown key).
    note: bool,
}

/// Text from a config file as a message shows it: at most [`CLIP`] characters, so a
/// 2 MB line is named, not echoed.
pub fn clip(text: &str) -> std::borrow::Cow<'_, str> {
    match text.char_indices().nth(CLIP) {
        None => text.into(),
        Some((end, _)) => format!("{}… ({} bytes)", &text[..end], text.len()).into(),
    }
}

/// The longest config text a message repeats.
pub const CLIP: usize = 120;

impl Warning {
    pub fn new(file: &Path, line: Option<usize>, key: &str, message: String) -> Warning {
        Warning {
            file: file.to_path_buf(),
            line,
            key: clip(key).into_owned(),
            message: clip(&message).into_owned(),
            note: false,
        }
    }

    pub fn note(file: &Path, line: Option<usize>, key: &str, message: String) -> Warning {
        Warning {
            note: true,
            ..Warning::new(file, line, key, message)
        }
    }

    pub fn is_note(&self) -> bool {
        self.note
    }
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file.display())?;
        if let Some(line) = self.line {
            write!(f, ":{line}")?;
        }
        write!(f, ": {}: {}", self.key, self.message)
    }
}
