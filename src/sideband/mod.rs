//! Sideband mode: enforcer as a decision service beside an API gateway, wire-compatible
//! with ASE's sideband protocol.
//!
//! The gateway posts each client request's metadata to `/ase/request` and blocks on the
//! answer (200 allow, 403 block), then posts the backend's response metadata to
//! `/ase/response`. [`handler`] turns both into the shared pipeline's phases, so identity
//! capture, enforcement and recording are the inline proxy's own. [`wire`] is the JSON
//! contract and the one place answers are made; [`correlate`] holds allowed requests until
//! their response call; [`tokens`] is `ASE-Token` authentication.

pub mod correlate;
pub mod handler;
pub mod tokens;
pub mod wire;

use std::net::SocketAddr;
use std::sync::Arc;

pub use handler::handle;

use crate::app::{App, Live};
use crate::config::Settings;
use correlate::Pending;
use tokens::Tokens;

/// Sideband state shared by every worker (a response call may arrive on any connection).
pub struct Sideband {
    pub pending: Pending,
    pub tokens: Tokens,
}

impl Sideband {
    pub fn new(settings: &Settings) -> Sideband {
        Sideband {
            pending: Pending::new(settings.sideband_pending_max, settings.sideband_pending_ttl),
            tokens: Tokens::new(settings.enable_sideband_authentication),
        }
    }
}

/// One gateway connection.
pub struct Caller {
    pub app: Arc<App>,
    pub peer: SocketAddr,
    /// Held while the connection lives.
    pub live: Live,
}
