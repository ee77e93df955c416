//! The cluster-wide views the reports are built on: this node's live records plus the
//! images the other nodes pushed to Redis (`…:b:<node>:<api>`, see [`super::store`]).
//!
//! Where it sits: beside the admin handlers, which ask for one view and render it;
//! without cluster mode (`None`) every view is this node's records alone. The reads are
//! blocking: call them off the async threads. When Redis cannot be read a view covers
//! this node only, and says so in the log.
//!
//! How nodes are merged, per record:
//! * `api_metrics`: the other nodes' bucket images join this node's snapshot as buckets;
//! * client and API activity, attacks: per node (its words are numbered per node), summed
//!   as tallies;
//! * `userActivities`: hours summed by adding counts and uniting the user sets.

use std::ops::Deref;

use redis::Commands;

use super::Cluster;
use super::error::CallError;
use super::source::{IO_TIMEOUT, connect};
use super::store::parse_bucket_field;
use crate::metrics::activity::{Activity, ActivityCaps, AttackRow, Tally};
use crate::metrics::users::Users;
use crate::metrics::{ApiRecorder, Image, Snapshot};
use crate::store::{ACTIVITY, USERS};
use crate::vocab::ClientKind;

/// One node's stored rows of one API: (node id, [(tier, start, bytes)]).
type NodeRows = (String, Vec<(u8, i64, Vec<u8>)>);

impl Cluster {
    /// The other nodes' stored rows of `api` (an API id, or the activity and user rows):
    /// per node, its (tier, start, bytes).
    fn remote_rows(&self, api: &str) -> Result<Vec<NodeRows>, CallError> {
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
    fn remote_images(&self, api: &str, from: i64, to: i64) -> Result<Vec<(u8, Image)>, CallError> {
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

/// API `api`'s buckets in `[from, to)` for `api_metrics`: this node's (`recorder`) and,
/// in a cluster, every other node's.
pub fn api_snapshot(
    cluster: Option<&Cluster>,
    api: &str,
    recorder: &ApiRecorder,
    from: i64,
    to: i64,
) -> Snapshot {
    let remote = match cluster {
        Some(c) => c.remote_images(api, from, to).unwrap_or_else(|e| {
            tracing::warn!(api, "cluster report without the other nodes: {e}");
            Vec::new()
        }),
        None => Vec::new(),
    };
    recorder.snapshot_with(from, to, remote)
}

/// Client and API activity over `[from, to)` across the cluster: this node's live
/// records and, per other node, its stored ones. Its questions are [`Activity`]'s,
/// answered for the whole cluster.
pub struct ActivityView<'a> {
    local: &'a Activity,
    others: Vec<Activity>,
    from: i64,
    to: i64,
}

/// The activity view of `[from, to)`: `local` and, in a cluster, the other nodes'
/// activity records overlapping the window.
pub fn activity<'a>(
    cluster: Option<&Cluster>,
    local: &'a Activity,
    from: i64,
    to: i64,
) -> ActivityView<'a> {
    ActivityView {
        local,
        others: cluster
            .map(|c| other_activity(c, from, to))
            .unwrap_or_default(),
        from,
        to,
    }
}

impl ActivityView<'_> {
    /// One client's tally (`None`: no node saw it).
    pub fn client(&self, kind: ClientKind, id: &str) -> Option<Tally> {
        let mut tally = self.local.client(kind, id, self.from, self.to);
        for other in &self.others {
            if let Some(t) = other.client(kind, id, self.from, self.to) {
                match &mut tally {
                    Some(mine) => mine.merge(t),
                    None => tally = Some(t),
                }
            }
        }
        tally
    }

    /// One API's tally.
    pub fn api(&self, name: &str) -> Tally {
        let mut tally = self.local.api(name, self.from, self.to);
        for other in &self.others {
            tally.merge(other.api(name, self.from, self.to));
        }
        tally
    }

    /// One API's points per bucket (start, requests, IoAs), every node's, in no order.
    pub fn api_series(&self, name: &str) -> Vec<(i64, u64, u64)> {
        let mut points = self.local.api_series(name, self.from, self.to);
        for other in &self.others {
            points.extend(other.api_series(name, self.from, self.to));
        }
        points
    }

    /// The attack rows of every node.
    pub fn attacks(&self) -> Vec<AttackRow> {
        let mut rows = self.local.attacks(self.from, self.to);
        for other in &self.others {
            rows.extend(other.attacks(self.from, self.to));
        }
        rows
    }
}

/// The other nodes' activity records overlapping `[from, to)`, one [`Activity`] per node
/// (their words are numbered per node, so nodes are summed as tallies, not as buckets).
fn other_activity(c: &Cluster, from: i64, to: i64) -> Vec<Activity> {
    let rows = match c.remote_rows(ACTIVITY) {
        Ok(rows) => rows,
        Err(e) => {
            tracing::warn!("cluster activity report without the other nodes: {e}");
            return Vec::new();
        }
    };
    // Buckets are at most a day long: one that starts a day before `from` may overlap.
    let earliest = from - 86_400;
    rows.into_iter()
        .map(|(_, buckets)| {
            let a = Activity::new(ActivityCaps {
                clients: u32::MAX,
                memory: u64::MAX,
            });
            for (tier, start, bytes) in buckets {
                if start < earliest || start >= to {
                    continue;
                }
                match postcard::from_bytes(&bytes) {
                    Ok(img) => {
                        a.restore(usize::from(tier), img);
                    }
                    Err(e) => tracing::warn!(start, "skipping an unreadable activity image: {e}"),
                }
            }
            a
        })
        .collect()
}

/// The user hours a `userActivities` report reads: this node's alone, or in a cluster
/// every node's hours in the window summed into a new set.
pub enum UsersView<'a> {
    Node(&'a Users),
    Cluster(Users),
}

impl Deref for UsersView<'_> {
    type Target = Users;

    fn deref(&self) -> &Users {
        match self {
            UsersView::Node(users) => users,
            UsersView::Cluster(users) => users,
        }
    }
}

/// The user hours starting in `[from, to)`: `local` and, in a cluster, the other nodes'
/// stored hours (added counts, united user sets).
pub fn users<'a>(cluster: Option<&Cluster>, local: &'a Users, from: i64, to: i64) -> UsersView<'a> {
    let Some(c) = cluster else {
        return UsersView::Node(local);
    };
    let others = c
        .remote_rows(USERS)
        .unwrap_or_else(|e| {
            tracing::warn!("cluster userActivities without the other nodes: {e}");
            Vec::new()
        })
        .into_iter()
        .flat_map(|(_, rows)| rows)
        .filter(|(_, start, _)| (from..to).contains(start))
        .filter_map(|(_, _, bytes)| postcard::from_bytes(&bytes).ok())
        .collect();
    UsersView::Cluster(local.with_others(from, to, others))
}
