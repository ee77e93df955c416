//! A backend server of an inline API, with the health state the checker keeps: what the
//! API table lists, flow control picks among and the proxy forwards to.
//!
//! Where it sits: near the bottom (it imports nothing of ours), so the routing table, flow
//! control and the proxy share one type.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};

/// One backend server of an API, with the health state the checker maintains.
#[derive(Debug)]
pub struct Server {
    /// `host:port`, as reported in `api_metrics` (shared with the exchanges it serves).
    pub addr: Arc<str>,
    pub host: String,
    pub port: u16,
    healthy: AtomicBool,
    failures: AtomicU32,
}

impl Server {
    pub fn new(host: &str, port: u16) -> Server {
        let addr = if host.contains(':') {
            format!("[{host}]:{port}")
        } else {
            format!("{host}:{port}")
        };
        Server {
            addr: Arc::from(addr),
            host: host.to_string(),
            port,
            healthy: AtomicBool::new(true),
            failures: AtomicU32::new(0),
        }
    }

    pub fn is_healthy(&self) -> bool {
        self.healthy.load(Ordering::Relaxed)
    }

    /// Records a passed health check. Returns true when this restored the server.
    pub fn check_passed(&self) -> bool {
        self.failures.store(0, Ordering::Relaxed);
        !self.healthy.swap(true, Ordering::Relaxed)
    }

    /// Records a failed health check; after `limit` consecutive failures the server leaves
    /// the rotation. Returns true when this failure ejected it.
    pub fn check_failed(&self, limit: u32) -> bool {
        let n = self
            .failures
            .fetch_add(1, Ordering::Relaxed)
            .saturating_add(1);
        n >= limit && self.healthy.swap(false, Ordering::Relaxed)
    }
}
