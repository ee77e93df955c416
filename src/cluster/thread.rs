//! The node's cluster thread (the sync): heartbeats into the registry, pushes this
//! node's API changes, and pulls shared state when another node says it changed it (or
//! every [`RESYNC`]). It reads and changes the application, so it lives apart from the
//! [`Cluster`] state the application owns; `main` starts it once the app is built.

use std::collections::HashMap;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use redis::{Commands, Connection};

use super::Cluster;
use super::health::Health;
use super::keys::Keys;
use super::registry::{HEARTBEAT, Node};
use super::source::{IO_TIMEOUT, Source, connect};
use crate::app::App;

/// How often shared state is pulled even without a message.
const RESYNC: Duration = Duration::from_secs(5);

/// Starts the node's cluster thread (heartbeat, change notifications, resync) and the
/// connection the spike counters use. Runs until the process ends.
pub fn start(app: &Arc<App>) -> std::io::Result<()> {
    let Some(cluster) = &app.cluster else {
        return Ok(());
    };
    let weak = Arc::downgrade(app);
    let (source, spikes) = (cluster.source.clone(), cluster.spikes.clone());
    let (tried, first_try) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("enforcer-cluster-io".into())
        .spawn(move || spikes.run(source, tried))?;
    // Serve only once the counters have their connection (or failed to get it), so the
    // first requests are counted across the cluster rather than by the node alone.
    let _ = first_try.recv_timeout(IO_TIMEOUT + Duration::from_secs(1));
    std::thread::Builder::new()
        .name("enforcer-cluster".into())
        .spawn(move || listen(weak))?;
    Ok(())
}

/// Writes the API definitions changed here to Redis and tells the other nodes.
fn push_apis(cluster: &Cluster, c: &mut Connection) -> redis::RedisResult<()> {
    let pending: Vec<(String, String)> = cluster
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
        pipe.hset(cluster.keys.apis(), id, text).ignore();
    }
    pipe.publish(cluster.keys.events(), &cluster.node_id)
        .ignore();
    pipe.query::<()>(c)?;
    let mut left = cluster
        .pending_apis
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    for (id, text) in pending {
        // A newer change made meanwhile stays pending.
        if left.get(&id) == Some(&text) {
            left.remove(&id);
        }
    }
    Ok(())
}

/// Applies the shared API definitions that changed since `seen` (what this node last
/// took from Redis): written to `config/api/` and swapped in, as the management API
/// would. Definitions changed here and not yet pushed win.
fn pull_apis(
    cluster: &Cluster,
    app: &App,
    c: &mut Connection,
    seen: &mut HashMap<String, String>,
) -> redis::RedisResult<()> {
    let shared: HashMap<String, String> = c.hgetall(cluster.keys.apis())?;
    let pending = cluster
        .pending_apis
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    for (id, text) in shared {
        if seen.get(&id) == Some(&text) || pending.contains_key(&id) {
            continue;
        }
        let file = app.config_dir.join("api").join(format!("{id}.json"));
        let local = std::fs::read_to_string(&file).ok();
        let applied = match (text.is_empty(), local) {
            (true, None) => Ok(()),
            (true, Some(_)) => app.delete_api(&id),
            (false, Some(l)) if l == text => Ok(()),
            (false, local) => app.put_api(&id, &text, local.is_none()),
        };
        match applied {
            Ok(()) => {
                tracing::info!(api = %id, "API definition from the cluster applied");
                seen.insert(id, text);
            }
            // Not marked seen: the next sync tries again.
            Err(e) => {
                tracing::warn!(api = %id, "cannot apply the cluster's API definition: {e}")
            }
        }
    }
    Ok(())
}

/// The cluster thread: heartbeats, and pulls shared state when another node says it
/// changed it (or every [`RESYNC`]). Reconnects forever; stops when the app is gone.
fn listen(app: Weak<App>) {
    let mut run_id: Option<String> = None;
    // The API definitions this node last took from Redis.
    let mut seen_apis: HashMap<String, String> = HashMap::new();
    loop {
        let Some(strong) = app.upgrade() else { return };
        let Some(cluster) = &strong.cluster else {
            return;
        };
        let (source, keys, node, health) = (
            cluster.source.clone(),
            cluster.keys.clone(),
            cluster.node_id.clone(),
            cluster.health.clone(),
        );
        let entry = Node {
            node: node.clone(),
            mode: strong.settings.mode.as_str().to_string(),
            management: strong
                .addresses
                .get()
                .map(|a| a.management.to_string())
                .unwrap_or_default(),
            started: strong.started.to_string(),
            last_seen_ms: 0,
        };
        drop(strong);
        let mut state = SessionState {
            run_id: &mut run_id,
            seen_apis: &mut seen_apis,
        };
        match session(&app, &source, &keys, &node, &health, entry, &mut state) {
            Ok(()) => return,
            Err(e) => {
                health.failed(&e);
                std::thread::sleep(HEARTBEAT);
            }
        }
    }
}

/// What the cluster thread remembers across reconnections.
struct SessionState<'a> {
    /// Redis's `run_id` when last connected (a new one: Redis restarted).
    run_id: &'a mut Option<String>,
    seen_apis: &'a mut HashMap<String, String>,
}

/// Pushes this node's API changes and pulls everyone's shared state.
fn sync(
    app: &App,
    cmd: &mut Connection,
    seen: &mut HashMap<String, String>,
) -> redis::RedisResult<()> {
    if let Some(c) = &app.cluster {
        push_apis(c, cmd)?;
        pull_apis(c, app, cmd, seen)?;
    }
    if let Some(p) = app.persister.get() {
        p.pull();
    }
    Ok(())
}

/// One connected stretch of the cluster thread; returns `Ok` when the app is gone.
fn session(
    app: &Weak<App>,
    source: &Source,
    keys: &Keys,
    node: &str,
    health: &Health,
    mut entry: Node,
    state: &mut SessionState<'_>,
) -> redis::RedisResult<()> {
    let run_id = &mut *state.run_id;
    let mut cmd = connect(source, IO_TIMEOUT)?;
    let mut sub = connect(source, IO_TIMEOUT)?;
    sub.set_read_timeout(Some(Duration::from_millis(250)))?;
    // A Redis that restarted empty has lost this node's state: write all of it again.
    let info: String = redis::cmd("INFO").arg("server").query(&mut cmd)?;
    let now_run = info
        .lines()
        .find_map(|l| l.strip_prefix("run_id:"))
        .map(|s| s.trim().to_string());
    let Some(strong) = app.upgrade() else {
        return Ok(());
    };
    if run_id.is_some() && *run_id != now_run {
        tracing::warn!("cluster: Redis restarted; writing this node's whole state again");
        if let Some(p) = strong.persister.get() {
            p.resend();
        }
    }
    *run_id = now_run;
    // Subscribed before the first sync, so no change made in between is missed.
    let mut pubsub = sub.as_pubsub();
    pubsub.subscribe(keys.events())?;
    sync(&strong, &mut cmd, state.seen_apis)?;
    drop(strong);
    health.ok();
    let now = Instant::now();
    let (mut beat, mut resync) = (now.checked_sub(HEARTBEAT).unwrap_or(now), now);
    loop {
        let Some(strong) = app.upgrade() else {
            return Ok(());
        };
        if beat.elapsed() >= HEARTBEAT {
            if entry.management.is_empty()
                && let Some(a) = strong.addresses.get()
            {
                entry.management = a.management.to_string();
            }
            entry.beat(&mut cmd, keys)?;
            health.ok();
            beat = Instant::now();
        }
        if resync.elapsed() >= RESYNC {
            sync(&strong, &mut cmd, state.seen_apis)?;
            resync = Instant::now();
        } else if let Some(c) = &strong.cluster {
            push_apis(c, &mut cmd)?;
        }
        drop(strong);
        match pubsub.get_message() {
            Ok(msg) => {
                if msg.get_payload_bytes() != node.as_bytes()
                    && let Some(a) = app.upgrade()
                {
                    sync(&a, &mut cmd, state.seen_apis)?;
                }
            }
            Err(e) if e.is_timeout() => {}
            Err(e) => return Err(e),
        }
    }
}
