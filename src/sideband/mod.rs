//! Sideband mode: enforcer as a decision service beside an API gateway, wire-compatible
//! with ASE's sideband protocol.
//!
//! The gateway posts each client request's metadata to `/ase/request` and blocks on the
//! answer (200 allow, 403 block), then posts the backend's response metadata to
//! `/ase/response`. [`handler`] turns both into the shared pipeline's phases, so identity
//! capture, enforcement and recording are the inline proxy's own. [`auth`] answers the
//! external-authorization calls of gateways without an ASE policy (nginx `auth_request`,
//! Caddy `forward_auth`, Envoy `ext_authz`) through the same code. [`wire`] is the JSON
//! contract and the one place answers are made ([`quick`] decodes the usual request body
//! without serde, leaving anything else to it); [`correlate`] holds allowed requests until
//! their response call; [`tokens`] is `ASE-Token` authentication.
//!
//! This file holds the state the application owns ([`Sideband`]); the per-connection
//! side ([`handler::Caller`]) lives with the handler, so the state imports nothing above it.

pub mod auth;
pub mod calls;
pub mod correlate;
pub mod handler;
pub mod quick;
pub mod tokens;
pub mod wire;

use std::sync::atomic::AtomicU64;

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
