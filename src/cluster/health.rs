//! How this node's link to Redis is doing: connected or not, the last contact, the
//! errors. Every file of `cluster/` that talks to Redis reports here; `/v4/ase/cluster`,
//! `status` and Prometheus read it.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};

/// How this node's link to Redis is doing.
#[derive(Debug, Default)]
pub struct Health {
    pub connected: AtomicBool,
    /// Unix milliseconds of the last successful exchange with Redis (0: none yet).
    pub last_contact_ms: AtomicI64,
    pub errors: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl Health {
    /// Redis answered; the first answer after a failure is logged.
    pub(super) fn ok(&self) {
        self.last_contact_ms
            .store(jiff::Timestamp::now().as_millisecond(), Relaxed);
        if !self.connected.swap(true, Relaxed) {
            tracing::info!("cluster: connected to Redis");
        }
    }

    /// Redis failed; the first failure after a success is logged.
    pub(super) fn failed(&self, e: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Relaxed);
        if self.connected.swap(false, Relaxed) {
            tracing::error!("cluster: Redis unreachable, serving on local state: {e}");
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }
}
