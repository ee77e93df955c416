//! Sideband mode: enforcer as a decision service beside an API gateway, wire-compatible
//! with ASE's sideband protocol.
//!
//! The gateway posts each client request's metadata to `/ase/request` and blocks on the
//! answer (200 allow, 403 block), then posts the backend's response metadata to
//! `/ase/response`. [`handler`] turns both into the shared pipeline's phases, so identity
//! capture, enforcement and recording are the inline proxy's own. [`auth`] answers the
//! external-authorization calls of gateways without an ASE policy (nginx `auth_request`,
//! Caddy `forward_auth`, Envoy `ext_authz`) through the same code. [`wire`] is the JSON
//! contract and the one place answers are made; [`correlate`] holds allowed requests until
//! their response call; [`tokens`] is `ASE-Token` authentication.

pub mod auth;
pub mod correlate;
pub mod handler;
pub mod tokens;
pub mod wire;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};

pub use handler::handle;

use crate::app::{App, Live};
use crate::config::Settings;
use correlate::Pending;
use tokens::Tokens;

/// Sideband state shared by every worker (a response call may arrive on any connection).
pub struct Sideband {
    pub pending: Pending,
    pub tokens: Tokens,
    pub stats: Stats,
}

/// Counts of calls enforcer understood only leniently (Prometheus reads them).
#[derive(Debug, Default)]
pub struct Stats {
    /// Request calls whose `source_ip` was no address: decided with the client unknown.
    pub unknown_source_ip: AtomicU64,
}

impl Sideband {
    pub fn new(settings: &Settings) -> Sideband {
        Sideband {
            // The configured cap, within the pending part of the memory budget.
            pending: Pending::new(
                settings
                    .sideband_pending_max
                    .min(crate::memory::Budget::entries(
                        crate::memory::Budget::new(settings.memory_budget).pending,
                        crate::memory::cost::PENDING_EXCHANGE,
                    )),
                settings.sideband_pending_ttl,
            ),
            tokens: Tokens::new(settings.enable_sideband_authentication),
            stats: Stats::default(),
        }
    }
}

/// One gateway connection.
pub struct Caller {
    pub app: Arc<App>,
    pub peer: SocketAddr,
    /// Held while the connection lives.
    pub live: Live,
    /// The correlation id of this connection's last request call, when it came without
    /// `X-CorrelationID` and was parked: a response call without one that follows on this
    /// connection belongs to it. Only this connection's calls touch it.
    last_request: Mutex<Option<Arc<str>>>,
}

impl Caller {
    pub fn new(app: Arc<App>, peer: SocketAddr, live: Live) -> Caller {
        Caller {
            app,
            peer,
            live,
            last_request: Mutex::new(None),
        }
    }

    pub(crate) fn last_request(&self) -> MutexGuard<'_, Option<Arc<str>>> {
        self.last_request.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This connection's last request without an id can no longer be matched by its
    /// connection (another request call came, or the connection ended): unless the gateway
    /// sends cookies back, it completes now, without a response status.
    pub(crate) fn give_up_last(&self) {
        let Some(id) = self.last_request().take() else {
            return;
        };
        let pending = &self.app.sideband.pending;
        if pending.cookies_seen() {
            return;
        }
        if let Some(ex) = pending.take(&id) {
            pending.stats.unanswered.fetch_add(1, Relaxed);
            self.app.pipeline.on_complete(ex);
        }
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.give_up_last();
    }
}
