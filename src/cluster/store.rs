//! The Redis implementation of [`Store`]: in cluster mode the persister commits here
//! instead of the embedded file.
//!
//! Layout, under the cluster's prefix `enforcer:{<cluster_id>}` (the braces make every
//! key hash to one Redis Cluster slot, so a commit can be one `MULTI`):
//!
//! | key | type | holds |
//! |---|---|---|
//! | `…:lists` | hash | `<list>:<identifier>` → entry (postcard): shared by every node |
//! | `…:meta` | hash | sideband tokens, management credentials, reviewed attacks: shared |
//! | `…:bapis:<node>` | set | the API ids (and `#activity`, `#users`) a node has buckets for |
//! | `…:b:<node>:<api>` | hash | `<tier>:<start>` → that node's bucket image (postcard) |
//! | `…:marker:<node>` | string | set when the node wrote its whole state; gone means lost |
//! | `…:events` | channel | a node's id, published after it changed lists or meta |
//!
//! A node writes whole bucket images, never increments: writing the same image twice
//! (after Redis came back, after a restart) cannot count anything twice, and the persister
//! retries a failed commit with everything that changed since the last good one.
//!
//! The key names are spelled in [`super::keys`]; the other nodes' rows are read back for
//! the cluster-wide reports in [`super::remote`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use redis::{Commands, Connection};

use super::keys::Keys;
use super::source::{Source, connect};
use crate::store::{Batch, BucketKey, Loaded, Store, StoreError};

/// The persister's Redis store.
pub struct RedisStore {
    source: Arc<Source>,
    conn: Option<Connection>,
    keys: Keys,
    node: String,
    shown: String,
    timeout: Duration,
}

impl RedisStore {
    pub fn new(
        source: Arc<Source>,
        keys: Keys,
        node: &str,
        shown: &str,
        timeout: Duration,
    ) -> RedisStore {
        RedisStore {
            source,
            conn: None,
            keys,
            node: node.to_string(),
            shown: shown.to_string(),
            timeout,
        }
    }

    fn error(&self, reason: impl std::fmt::Display) -> StoreError {
        StoreError::Io {
            file: PathBuf::from(&self.shown),
            reason: reason.to_string(),
        }
    }

    /// The connection, opened (again) when there is none.
    fn conn(&mut self) -> Result<&mut Connection, StoreError> {
        if self.conn.is_none() {
            let c = connect(&self.source, self.timeout).map_err(|e| self.error(e))?;
            self.conn = Some(c);
        }
        let shown = self.shown.clone();
        self.conn.as_mut().ok_or_else(|| StoreError::Io {
            file: PathBuf::from(shown),
            reason: "no connection".into(),
        })
    }

    /// Runs `f` on the connection; a failure drops it, so the next call reconnects.
    fn with<T>(
        &mut self,
        f: impl FnOnce(&mut Connection, &Keys, &str) -> redis::RedisResult<T>,
    ) -> Result<T, StoreError> {
        let keys = self.keys.clone();
        let node = self.node.clone();
        let result = f(self.conn()?, &keys, &node);
        result.map_err(|e| {
            self.conn = None;
            self.error(e)
        })
    }

    fn shared(c: &mut Connection, keys: &Keys) -> redis::RedisResult<Loaded> {
        let mut out = Loaded::default();
        let lists: Vec<(String, Vec<u8>)> = c.hgetall(keys.lists())?;
        for (field, bytes) in lists {
            if let Some((list, id)) = field.split_once(':')
                && let Ok(list) = list.parse::<u8>()
            {
                out.entries.push(((list, id.to_string()), bytes));
            }
        }
        out.meta = c.hgetall(keys.meta())?;
        Ok(out)
    }
}

/// `<tier>:<start>`, the field of a bucket in its node's hash.
fn bucket_field(k: &BucketKey) -> String {
    format!("{}:{}", k.tier, k.start)
}

/// The tier and start of a bucket field.
pub fn parse_bucket_field(field: &str) -> Option<(u8, i64)> {
    let (tier, start) = field.split_once(':')?;
    Some((tier.parse().ok()?, start.parse().ok()?))
}

impl Store for RedisStore {
    fn load(&mut self) -> Result<Loaded, StoreError> {
        self.with(|c, keys, node| {
            let mut out = RedisStore::shared(c, keys)?;
            let apis: Vec<String> = c.smembers(keys.bucket_apis(node))?;
            for api in apis {
                let rows: Vec<(String, Vec<u8>)> = c.hgetall(keys.buckets(node, &api))?;
                for (field, bytes) in rows {
                    if let Some((tier, start)) = parse_bucket_field(&field) {
                        let key = BucketKey {
                            api: api.clone(),
                            tier,
                            start,
                        };
                        out.buckets.push((key, bytes));
                    }
                }
            }
            Ok(out)
        })
    }

    fn load_shared(&mut self) -> Result<Option<Loaded>, StoreError> {
        let (marked, shared) = self.with(|c, keys, node| {
            let marked: bool = c.exists(keys.marker(node))?;
            Ok((marked, RedisStore::shared(c, keys)?))
        })?;
        if !marked {
            // Merging an emptied store would delete every node's lists: write them again.
            return Err(StoreError::Lost {
                file: PathBuf::from(&self.shown),
            });
        }
        Ok(Some(shared))
    }

    fn commit(&mut self, batch: Batch) -> Result<(), StoreError> {
        self.with(|c, keys, node| {
            let replaced: Vec<String> = if batch.replace_buckets {
                c.smembers(keys.bucket_apis(node))?
            } else {
                Vec::new()
            };
            let mut pipe = redis::pipe();
            pipe.atomic();
            for api in &replaced {
                pipe.del(keys.buckets(node, api)).ignore();
            }
            if batch.replace_buckets {
                pipe.del(keys.bucket_apis(node)).ignore();
            }
            if batch.replace_buckets {
                pipe.set(keys.marker(node), 1).ignore();
            }
            for (k, v) in &batch.put_buckets {
                pipe.hset(keys.buckets(node, &k.api), bucket_field(k), v)
                    .ignore();
                pipe.sadd(keys.bucket_apis(node), &k.api).ignore();
            }
            for k in &batch.delete_buckets {
                pipe.hdel(keys.buckets(node, &k.api), bucket_field(k))
                    .ignore();
            }
            for ((list, id), v) in &batch.put_entries {
                pipe.hset(keys.lists(), format!("{list}:{id}"), v).ignore();
            }
            for (list, id) in &batch.delete_entries {
                pipe.hdel(keys.lists(), format!("{list}:{id}")).ignore();
            }
            for (name, v) in &batch.put_meta {
                pipe.hset(keys.meta(), name, v).ignore();
            }
            let shared = !batch.put_entries.is_empty()
                || !batch.delete_entries.is_empty()
                || !batch.put_meta.is_empty();
            if shared {
                pipe.publish(keys.events(), node).ignore();
            }
            pipe.query::<()>(c)
        })
    }

    fn describe(&self) -> String {
        format!("redis {} (node {})", self.shown, self.node)
    }
}
