//! Reading the other nodes' stored rows: the images they pushed to Redis
//! (`…:b:<node>:<api>`, see [`super::store`]), for the cluster-wide reports. Blocking:
//! call them off the async threads.

use redis::Commands;

use super::Cluster;
use super::error::CallError;
use super::source::{IO_TIMEOUT, connect};
use super::store::parse_bucket_field;
use crate::metrics::Image;

/// One node's stored rows of one API: (node id, [(tier, start, bytes)]).
pub type NodeRows = (String, Vec<(u8, i64, Vec<u8>)>);

impl Cluster {
    /// The other nodes' stored rows of `api` (an API id, or the activity and user rows):
    /// per node, its (tier, start, bytes).
    pub fn remote_rows(&self, api: &str) -> Result<Vec<NodeRows>, CallError> {
        let failed = |command, key: String| {
            let redis = self.shown.clone();
            move |source| CallError::Command {
                redis,
                command,
                key,
                source,
            }
        };
        let mut c = connect(&self.source, IO_TIMEOUT).map_err(|source| CallError::Connect {
            redis: self.shown.clone(),
            source,
        })?;
        let registry = self.keys.nodes();
        let nodes: Vec<String> = c
            .hkeys(&registry)
            .map_err(failed("HKEYS", registry.clone()))?;
        let mut out = Vec::new();
        for node in nodes.into_iter().filter(|n| *n != self.node_id) {
            let key = self.keys.buckets(&node, api);
            let rows: Vec<(String, Vec<u8>)> =
                c.hgetall(&key).map_err(failed("HGETALL", key.clone()))?;
            let rows = rows
                .into_iter()
                .filter_map(|(field, bytes)| {
                    let (tier, start) = parse_bucket_field(&field)?;
                    Some((tier, start, bytes))
                })
                .collect();
            out.push((node, rows));
        }
        self.health.ok();
        Ok(out)
    }

    /// The other nodes' bucket images of API `api` that start in `[from, to)`. Rows
    /// outside the window are never decoded.
    pub fn remote_images(
        &self,
        api: &str,
        from: i64,
        to: i64,
    ) -> Result<Vec<(u8, Image)>, CallError> {
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
