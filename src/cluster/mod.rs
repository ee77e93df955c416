//! Cluster mode: several enforcers behind one load balancer share state through Redis
//! (`redis_url` in `ase.conf`). Off by default: a single node keeps its embedded store.
//!
//! Where it sits: beside the request path, like the store. Each node
//! * commits its state to Redis instead of the embedded file ([`store::RedisStore`]
//!   behind the persister, every `cluster_sync_interval`): its own bucket images, and the
//!   shared deny/allow lists, sideband tokens, credentials and reviewed attacks;
//! * hears the other nodes' list, token and API changes on a pub/sub channel and pulls
//!   them in at once (a three-way merge, so its own unsent changes stay), and pulls again
//!   every few seconds in case a message was lost ([`thread::start`]);
//! * heartbeats into the node registry that `/v4/ase/cluster` and `status` show
//!   ([`registry`]);
//! * answers `api_metrics`, activity and `userActivities` for the whole cluster: its live
//!   records plus the other nodes' images ([`remote`]);
//! * counts `server_spike_threshold` across the cluster with one `INCR` per request,
//!   waiting at most `cluster_request_budget` before deciding with its local limiter
//!   ([`spikes::Spikes`]).
//!
//! The files, bottom up: [`keys`] (Redis key names), [`source`] (where Redis is, and
//! connecting), [`health`] (how the link is doing), [`error`] (a failed read), then
//! [`spikes`], [`store`], and this file's [`Cluster`], the state `App` owns; above it
//! [`registry`], [`remote`] and [`thread`], which read or drive it.
//!
//! With Redis down a node keeps serving on its local state; the persister keeps the
//! difference since its last good commit and writes it when Redis is back. Images are
//! whole (never increments), so nothing is counted twice; when Redis comes back empty (a
//! restart without persistence) every node writes its whole state again.

pub mod error;
pub mod health;
pub mod keys;
pub mod registry;
pub mod remote;
pub mod source;
pub mod spikes;
pub mod store;
pub mod thread;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};

use crate::config::Settings;
use health::Health;
use keys::Keys;
use source::{IO_TIMEOUT, Source, UrlError};
use spikes::Spikes;

/// Why cluster mode could not start.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    #[error("redis_url: {0}")]
    Url(#[from] UrlError),
    #[error("{path}: cannot keep the node id: {source}", path = .path.display())]
    NodeId {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
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
        let source = Arc::new(Source::open(url.expose())?);
        let (node_id, fresh) = node_id(&s.data_dir)?;
        let keys = Keys::new(&s.cluster_id);
        let health = Arc::new(Health::default());
        let spikes = Arc::new(Spikes::new(
            keys.clone(),
            s.cluster_request_budget,
            health.clone(),
        ));
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

    #[test]
    fn a_bad_redis_url_says_what_is_wrong() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings {
            redis_url: Some(crate::config::value::Secret::new(
                "redis-sentinel://h:1/m/x",
            )),
            ..Settings::defaults(dir.path())
        };
        let e = Cluster::from_settings(&s).err().unwrap();
        assert_eq!(e.to_string(), "redis_url: database \"x\" is not a number");
    }

    #[test]
    fn a_failed_read_names_the_redis_without_its_password() {
        let dir = tempfile::tempdir().unwrap();
        let s = Settings {
            redis_url: Some(crate::config::value::Secret::new(
                "redis://app:s3cret@127.0.0.1:1",
            )),
            data_dir: dir.path().join("data"),
            ..Settings::defaults(dir.path())
        };
        let c = Cluster::from_settings(&s).unwrap().unwrap();
        let e = c.nodes().unwrap_err();
        assert!(matches!(e, error::CallError::Connect { .. }), "{e:?}");
        let shown = e.to_string();
        assert!(
            shown.starts_with("Redis redis://app:***@127.0.0.1:1: cannot connect: "),
            "{shown}"
        );
        assert!(!shown.contains("s3cret"), "{shown}");
    }
}
