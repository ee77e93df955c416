//! The node registry: one hash in Redis (`…:nodes`), node id → [`Node`], that every node
//! heartbeats into each [`HEARTBEAT`] and that `/v4/ase/cluster` and `enforcer status`
//! read ([`Cluster::nodes`]).
//!
//! Where it sits: beside the cluster thread, which writes this node's entry
//! ([`Node::beat`]); the reports read the registry's ids to find the other nodes' rows.

use std::time::Duration;

use redis::{Commands, Connection, RedisResult};
use serde::{Deserialize, Serialize};

use super::Cluster;
use super::error::CallError;
use super::keys::Keys;
use super::source::{IO_TIMEOUT, connect};

/// How often a node writes its heartbeat.
pub const HEARTBEAT: Duration = Duration::from_secs(1);
/// A node silent this long shows as unhealthy.
pub const SILENT: Duration = Duration::from_secs(5);

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

impl Node {
    /// Writes this entry, stamped now, as the node's heartbeat.
    pub fn beat(&mut self, c: &mut Connection, keys: &Keys) -> RedisResult<()> {
        self.last_seen_ms = jiff::Timestamp::now().as_millisecond();
        let json = serde_json::to_string(self).unwrap_or_default();
        c.hset(keys.nodes(), &self.node, json)
    }
}

impl Cluster {
    /// The registry, sorted by node id (sync; call it off the async threads).
    pub fn nodes(&self) -> Result<Vec<Node>, CallError> {
        let mut c = connect(&self.source, IO_TIMEOUT).map_err(|source| CallError::Connect {
            redis: self.shown.clone(),
            source,
        })?;
        let key = self.keys.nodes();
        let rows: Vec<(String, String)> = c.hgetall(&key).map_err(|source| CallError::Command {
            redis: self.shown.clone(),
            command: "HGETALL",
            key,
            source,
        })?;
        let mut nodes: Vec<Node> = rows
            .into_iter()
            .filter_map(|(_, v)| serde_json::from_str(&v).ok())
            .collect();
        nodes.sort_by(|a, b| a.node.cmp(&b.node));
        Ok(nodes)
    }
}
