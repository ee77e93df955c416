//! Cluster mode: several enforcers behind one load balancer share state through Redis
//! (`redis_url` in `ase.conf`). Off by default: a single node keeps its embedded store.
//!
//! Where it sits: beside the request path, like the store. Each node
//! * commits its state to Redis instead of the embedded file ([`store::RedisStore`]
//!   behind the persister, every `cluster_sync_interval`): its own bucket images, and the
//!   shared deny/allow lists, sideband tokens, credentials and reviewed attacks;
//! * hears the other nodes' list and token changes on a pub/sub channel and pulls them in
//!   at once (a three-way merge, so its own unsent changes stay), and pulls again every
//!   few seconds in case a message was lost ([`thread::start`]);
//! * heartbeats into the node registry that `/v4/ase/cluster` and `status` show;
//! * answers `api_metrics` for the whole cluster: its live buckets plus the other nodes'
//!   images ([`Cluster::remote_images`]);
//! * counts `server_spike_threshold` across the cluster with one `INCR` per request,
//!   waiting at most `cluster_request_budget` before deciding with its local limiter
//!   ([`Spikes`]).
//!
//! With Redis down a node keeps serving on its local state; the persister keeps the
//! difference since its last good commit and writes it when Redis is back. Images are
//! whole (never increments), so nothing is counted twice; when Redis comes back empty (a
//! restart without persistence) every node writes its whole state again.

pub mod source;
pub mod store;
pub mod thread;

use std::collections::HashMap;
use std::future::Future;
use std::path::Path;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwapOption;
use redis::{Commands, Connection};
use serde::{Deserialize, Serialize};

use crate::config::Settings;
use crate::enforce::flow::SharedCounter;
use crate::metrics::Image;
use source::Source;

/// How long a sync Redis call may take (connect, read, write) off the request path.
const IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a node writes its heartbeat.
const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node silent this long shows as unhealthy.
pub const SILENT: Duration = Duration::from_secs(5);
/// Spike counter calls over budget in a row before the connection is dropped.
const SLOW_CALLS: u64 = 50;
/// How often shared state is pulled even without a message.
const RESYNC: Duration = Duration::from_secs(5);

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis_url: {0}")]
    Url(String),
    #[error("{path}: cannot keep the node id: {source}", path = .path.display())]
    NodeId {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
}

/// The cluster's Redis keys.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(cluster_id: &str) -> Keys {
        Keys {
            prefix: format!("enforcer:{{{cluster_id}}}"),
        }
    }
    pub fn lists(&self) -> String {
        format!("{}:lists", self.prefix)
    }
    pub fn meta(&self) -> String {
        format!("{}:meta", self.prefix)
    }
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }
    /// Set when a node has written its whole state: its absence means Redis lost (some
    /// of) what that node wrote, so it must write everything again before merging.
    pub fn marker(&self, node: &str) -> String {
        format!("{}:marker:{node}", self.prefix)
    }
    pub fn apis(&self) -> String {
        format!("{}:apis", self.prefix)
    }
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }
    pub fn bucket_apis(&self, node: &str) -> String {
        format!("{}:bapis:{node}", self.prefix)
    }
    pub fn buckets(&self, node: &str, api: &str) -> String {
        format!("{}:b:{node}:{api}", self.prefix)
    }
    pub fn spike(&self, what: &str) -> String {
        format!("{}:spike:{what}", self.prefix)
    }
}

/// Opens a sync connection (to the current master) with timeouts on every operation.
pub fn connect(source: &Source, timeout: Duration) -> redis::RedisResult<Connection> {
    let c = source.client()?.get_connection_with_timeout(timeout)?;
    c.set_read_timeout(Some(timeout))?;
    c.set_write_timeout(Some(timeout))?;
    Ok(c)
}

/// `redis://user:secret@host` → `redis://user:***@host`, for logs and status.
fn shown(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            let user = creds.split_once(':').map_or("", |(u, _)| u);
            format!("{}{user}:***{}", &url[..scheme + 3], &url[at..])
        }
        _ => url.to_string(),
    }
}

/// One node's stored rows of one API: (node id, [(tier, start, bytes)]).
pub type NodeRows = (String, Vec<(u8, i64, Vec<u8>)>);

/// One node as the registry shows it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Node {
    pub node: String,
    pub mode: String,
    pub management: String,
    pub started: String,
    /// Unix milliseconds of its last heartbeat.
    pub last_seen_ms: i64,
}

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
    fn ok(&self) {
        self.last_contact_ms
            .store(jiff::Timestamp::now().as_millisecond(), Relaxed);
        if !self.connected.swap(true, Relaxed) {
            tracing::info!("cluster: connected to Redis");
        }
    }

    fn failed(&self, e: &dyn std::fmt::Display) {
        self.errors.fetch_add(1, Relaxed);
        if self.connected.swap(false, Relaxed) {
            tracing::error!("cluster: Redis unreachable, serving on local state: {e}");
        }
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }
}

/// This node's view of the cluster.
pub struct Cluster {
    pub node_id: String,
    pub cluster_id: String,
    pub keys: Keys,
    pub source: Arc<Source>,
    /// `redis_url` with any password masked.
    pub shown: String,
    pub health: Arc<Health>,
    pub spikes: Arc<Spikes>,
    /// API definitions changed here through the management API and not yet in Redis
    /// (id → JSON text, empty for a deletion); the cluster thread writes them.
    pending_apis: Mutex<HashMap<String, String>>,
    /// Where a newly made node id is to be kept (`None`: it was read from there).
    unsaved_id: Option<std::path::PathBuf>,
}

impl Cluster {
    /// Cluster mode as `ase.conf` sets it (`None` without `redis_url`). Reads or creates
    /// the node id in `data_dir`; connects to nothing yet.
    pub fn from_settings(s: &Settings) -> Result<Option<Cluster>, ClusterError> {
        let Some(url) = &s.redis_url else {
            return Ok(None);
        };
        let source = Arc::new(Source::open(url.expose()).map_err(ClusterError::Url)?);
        let (node_id, fresh) = node_id(&s.data_dir)?;
        let keys = Keys::new(&s.cluster_id);
        let health = Arc::new(Health::default());
        let spikes = Arc::new(Spikes {
            conn: ArcSwapOption::empty(),
            keys: keys.clone(),
            budget: s.cluster_request_budget,
            health: health.clone(),
            broken: AtomicBool::new(false),
            slow: AtomicU64::new(0),
            local_decisions: AtomicU64::new(0),
        });
        Ok(Some(Cluster {
            node_id,
            cluster_id: s.cluster_id.clone(),
            keys,
            source,
            shown: shown(url.expose()),
            health,
            spikes,
            pending_apis: Mutex::new(HashMap::new()),
            unsaved_id: fresh.then(|| s.data_dir.join("node_id")),
        }))
    }

    /// Writes a newly made node id to `data_dir/node_id`, so a restart is the same node.
    pub fn keep_id(&self) -> Result<(), ClusterError> {
        let Some(path) = &self.unsaved_id else {
            return Ok(());
        };
        let err = |source| ClusterError::NodeId {
            path: path.clone(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        std::fs::write(path, format!("{}\n", self.node_id)).map_err(err)
    }

    /// The persister's store for this node.
    pub fn store(&self) -> store::RedisStore {
        store::RedisStore::new(
            self.source.clone(),
            self.keys.clone(),
            &self.node_id,
            &self.shown,
            IO_TIMEOUT,
        )
    }

    /// Shares an API definition changed here (`None`: deleted) with the other nodes;
    /// the cluster thread writes it, and retries while Redis is away.
    pub fn publish_api(&self, id: &str, text: Option<&str>) {
        self.pending_apis
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_string(), text.unwrap_or_default().to_string());
    }

    /// Writes the API definitions changed here to Redis and tells the other nodes.
    fn push_apis(&self, c: &mut Connection) -> redis::RedisResult<()> {
        let pending: Vec<(String, String)> = self
            .pending_apis
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        if pending.is_empty() {
            return Ok(());
        }
        let mut pipe = redis::pipe();
        pipe.atomic();
        for (id, text) in &pending {
            pipe.hset(self.keys.apis(), id, text).ignore();
        }
        pipe.publish(self.keys.events(), &self.node_id).ignore();
        pipe.query::<()>(c)?;
        let mut left = self.pending_apis.lock().unwrap_or_else(|p| p.into_inner());
        for (id, text) in pending {
            // A newer change made meanwhile stays pending.
            if left.get(&id) == Some(&text) {
                left.remove(&id);
            }
        }
        Ok(())
    }

    /// The registry (sync; call it off the async threads).
    pub fn nodes(&self) -> Result<Vec<Node>, String> {
        let mut c = connect(&self.source, IO_TIMEOUT).map_err(|e| e.to_string())?;
        let rows: Vec<(String, String)> =
            c.hgetall(self.keys.nodes()).map_err(|e| e.to_string())?;
        let mut nodes: Vec<Node> = rows
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str(&v).ok())
            .collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }

    /// The other nodes' stored rows of `api` (an API id, or the activity and user rows):
    /// per node, its (tier, start, bytes). Sync; call it off the async threads.
    pub fn remote_rows(&self, api: &str) -> Result<Vec<NodeRows>, String> {
        let mut c = connect(&self.source, IO_TIMEOUT).map_err(|e| e.to_string())?;
        let nodes: Vec<String> = c.hkeys(self.keys.nodes()).map_err(|e| e.to_string())?;
        let mut out = Vec::new();
        for node in nodes.into_iter().filter(|n| *n != self.node_id) {
            let rows: Vec<(String, Vec<u8>)> = c
                .hgetall(self.keys.buckets(&node, api))
                .map_err(|e| e.to_string())?;
            let rows = rows
                .into_iter()
                .filter_map(|(field, bytes)| {
                    let (tier, start) = store::parse_bucket_field(&field)?;
                    Some((tier, start, bytes))
                })
                .collect();
            out.push((node, rows));
        }
        self.health.ok();
        Ok(out)
    }

    /// The other nodes' bucket images of API `api` that start in `[from, to)` (sync; off
    /// the async threads). Rows outside the window are never decoded.
    pub fn remote_images(&self, api: &str, from: i64, to: i64) -> Result<Vec<(u8, Image)>, String> {
        let mut out = Vec::new();
        for (node, rows) in self.remote_rows(api)? {
            for (tier, start, bytes) in rows {
                if !(from..to).contains(&start) {
                    continue;
                }
                match Image::decode(&bytes) {
                    Ok(image) => out.push((tier, image)),
                    Err(e) => {
                        tracing::warn!(%node, api, start, "skipping an unreadable bucket image: {e}")
                    }
                }
            }
        }
        Ok(out)
    }
}

/// The node id: kept in `data_dir/node_id` so a restarted node is the same node (its
/// images in Redis are its own, not a second copy).
///
/// Only read here (`enforcer check` must not write into the data directory); a new id is
/// written by [`Cluster::keep_id`] when the node starts serving.
fn node_id(data_dir: &Path) -> Result<(String, bool), ClusterError> {
    let path = data_dir.join("node_id");
    let err = |source| ClusterError::NodeId {
        path: path.clone(),
        source,
    };
    if let Ok(id) = std::fs::read_to_string(&path) {
        let id = id.trim();
        if !id.is_empty() && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') {
            return Ok((id.to_string(), false));
        }
    }
    let mut raw = [0u8; 6];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| err(std::io::Error::other("no randomness")))?;
    let host = std::fs::read_to_string("/etc/hostname").unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '-')
        .take(32)
        .collect();
    let suffix: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let id = if host.is_empty() {
        suffix
    } else {
        format!("{host}-{suffix}")
    };
    Ok((id, true))
}

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
    /// The keeper thread: connects, and reconnects after a failure. `tried` hears once
    /// the first attempt is over.
    fn run(self: Arc<Spikes>, source: Arc<Source>, tried: std::sync::mpsc::Sender<()>) {
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

impl Spikes {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_masked() {
        assert_eq!(shown("redis://127.0.0.1:6379"), "redis://127.0.0.1:6379");
        assert_eq!(
            shown("redis://app:s3cret@10.0.0.1:6379/2"),
            "redis://app:***@10.0.0.1:6379/2"
        );
        assert_eq!(shown("redis://:s3cret@h"), "redis://:***@h");
    }

    #[test]
    fn the_node_id_survives_a_restart_once_kept() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings {
            redis_url: Some(crate::config::value::Secret::new("redis://127.0.0.1:1")),
            data_dir: dir.path().join("data"),
            ..Settings::defaults(dir.path())
        };
        let a = Cluster::from_settings(&s).unwrap().unwrap();
        assert!(
            !s.data_dir.join("node_id").exists(),
            "reading the config writes nothing"
        );
        a.keep_id().unwrap();
        let b = Cluster::from_settings(&s).unwrap().unwrap();
        assert_eq!(a.node_id, b.node_id);
        assert!(a.node_id.len() >= 12);
    }
}
