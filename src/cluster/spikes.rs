//! Cluster-wide spike counters: `server_spike_threshold` (and, with
//! `cluster_client_spikes`, `client_spike_threshold`) counted across the nodes with one
//! `INCR` per request on a key per window.
//!
//! Where it sits: on the request path, behind [`SharedCounter`] (flow control asks it and
//! decides with the node's own limiter when it has no answer within
//! `cluster_request_budget`). One multiplexed async connection, kept by its own thread
//! ([`Spikes::run`], started by [`super::thread::start`]).

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use arc_swap::ArcSwapOption;

use super::health::Health;
use super::keys::Keys;
use super::source::{IO_TIMEOUT, Source};
use crate::enforce::flow::SharedCounter;

/// Spike counter calls over budget in a row before the connection is dropped.
const SLOW_CALLS: u64 = 50;

/// Cluster-wide counters for server spike thresholds: `INCR` on a key per window, over
/// one multiplexed async connection kept by its own thread.
#[derive(Debug)]
pub struct Spikes {
    conn: ArcSwapOption<redis::aio::MultiplexedConnection>,
    keys: Keys,
    budget: Duration,
    health: Arc<Health>,
    /// Set by a failed call: the keeper reconnects.
    broken: AtomicBool,
    /// Calls that ran out of budget in a row; a Redis that stopped answering without
    /// refusing would otherwise cost every request its whole budget.
    slow: AtomicU64,
    /// Counts that Redis did not answer within `cluster_request_budget` (or at all), so
    /// the node's own limiter decided: each one may let the cluster exceed a threshold.
    pub local_decisions: AtomicU64,
}

impl Spikes {
    /// Counters with no connection yet: every count is decided locally until
    /// [`Spikes::run`] has one. `budget` is `cluster_request_budget`.
    pub fn new(keys: Keys, budget: Duration, health: Arc<Health>) -> Spikes {
        Spikes {
            conn: ArcSwapOption::empty(),
            keys,
            budget,
            health,
            broken: AtomicBool::new(false),
            slow: AtomicU64::new(0),
            local_decisions: AtomicU64::new(0),
        }
    }

    /// The keeper thread: connects, and reconnects after a failure. `tried` hears once
    /// the first attempt is over.
    pub fn run(self: Arc<Spikes>, source: Arc<Source>, tried: std::sync::mpsc::Sender<()>) {
        let rt = match tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => {
                tracing::error!("cluster: no runtime for the spike counters: {e}");
                return;
            }
        };
        rt.block_on(async move {
            loop {
                if self.conn.load().is_none() || self.broken.swap(false, Relaxed) {
                    // A Sentinel lookup is a short blocking call; this thread does nothing else.
                    let client = match source.client() {
                        Ok(c) => c,
                        Err(e) => {
                            self.conn.store(None);
                            self.health.failed(&e);
                            let _ = tried.send(());
                            tokio::time::sleep(Duration::from_millis(500)).await;
                            continue;
                        }
                    };
                    match tokio::time::timeout(
                        IO_TIMEOUT,
                        client.get_multiplexed_async_connection(),
                    )
                    .await
                    {
                        Ok(Ok(c)) => self.conn.store(Some(Arc::new(c))),
                        Ok(Err(e)) => {
                            self.conn.store(None);
                            self.health.failed(&e);
                        }
                        Err(_) => {
                            self.conn.store(None);
                            self.health.failed(&"connect timed out");
                        }
                    }
                }
                let _ = tried.send(());
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        });
    }

    async fn shared_count(&self, key: String, window: Duration) -> Option<u64> {
        let conn = self.conn.load_full()?;
        let mut c = (*conn).clone();
        let key = self.keys.spike(&key);
        let ttl = i64::try_from(window.as_millis() * 2).unwrap_or(i64::MAX);
        let mut pipe = redis::pipe();
        pipe.atomic().incr(&key, 1u64).pexpire(&key, ttl).ignore();
        match tokio::time::timeout(self.budget, pipe.query_async::<(u64,)>(&mut c)).await {
            Ok(Ok((n,))) => {
                self.slow.store(0, Relaxed);
                Some(n)
            }
            Ok(Err(e)) => {
                self.broken.store(true, Relaxed);
                self.health.failed(&e);
                None
            }
            // Slow, not necessarily broken: this request decides locally; many in a
            // row drop the connection until the keeper has a new one.
            Err(_) => {
                if self.slow.fetch_add(1, Relaxed) + 1 >= SLOW_CALLS {
                    self.slow.store(0, Relaxed);
                    self.conn.store(None);
                    self.broken.store(true, Relaxed);
                    self.health.failed(&"spike counter calls keep timing out");
                }
                None
            }
        }
    }
}

impl SharedCounter for Spikes {
    fn count<'a>(
        &'a self,
        key: String,
        window: Duration,
    ) -> Pin<Box<dyn Future<Output = Option<u64>> + Send + 'a>> {
        Box::pin(async move {
            let counted = self.shared_count(key, window).await;
            if counted.is_none() {
                self.local_decisions.fetch_add(1, Relaxed);
            }
            counted
        })
    }
}
