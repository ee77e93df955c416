//! The persister: a dedicated OS thread that owns the [`Store`], and the restore that
//! runs once at start-up.
//!
//! Every `store_flush_interval` (and on demand, and at shutdown) it diffs the live state
//! against what it last committed and commits only the difference in one transaction:
//! buckets whose request count moved (the count is bumped last when recording, so an
//! unchanged count means an unchanged bucket), buckets gone from memory (rolled up or past
//! retention, so the file follows the same retention), list entries added or removed
//! (persistent maps make the diff cheap), and the tokens and credentials blobs.
//!
//! The request path never touches it: it only reads state through the same read guards
//! and atomics reports use. A failing disk (full, read-only) is logged, counted in the
//! health, and retried on the next tick with the whole difference; nothing is dropped
//! from memory and the process keeps serving.
//!
//! Where it sits: above `app.rs`, because it reads every component the application owns;
//! the store it writes through (`crate::store`) and the handle the application keeps
//! (`crate::store::persister::Persister`) sit below it.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::sync::{Arc, mpsc};
use std::time::Duration;

use crate::app::App;
use crate::config::StoreKind;
use crate::enforce::lists::{Entry, Identifier, ListKind, ListSet};
use crate::metrics::activity::ActivityImage;
use crate::metrics::users::HourImage;
use crate::metrics::{Image, TIERS, unix_secs};
use crate::store::persister::{Command, Health, Persister};

use crate::store::embedded::Embedded;
use crate::store::{ACTIVITY, Batch, BucketKey, EntryKey, Loaded, Store, StoreError, USERS};

const KINDS: [ListKind; 2] = [ListKind::Deny, ListKind::Allow];
const META_TOKENS: &str = "sideband_tokens";
const META_CREDENTIALS: &str = "credentials";
const META_REVIEWED: &str = "attacks_reviewed";

fn kind_code(kind: ListKind) -> u8 {
    match kind {
        ListKind::Deny => 0,
        ListKind::Allow => 1,
    }
}

/// What was committed last, to diff against.
#[derive(Default)]
struct Tracker {
    buckets: HashMap<BucketKey, u64>,
    lists: [Arc<ListSet>; 2],
    meta: HashMap<String, Vec<u8>>,
    /// Blobs the store did not have at start, as they were then (defaults): not worth
    /// writing while unchanged, and in a shared store they must not overwrite another
    /// node's real ones.
    pristine: HashMap<String, Vec<u8>>,
    /// Stored rows that did not come back into memory (expired, unreadable).
    stale_entries: Vec<EntryKey>,
}

/// A computed flush: the batch and the tracker it leads to once committed.
struct Flush {
    batch: Batch,
    buckets: HashMap<BucketKey, u64>,
    lists: [Arc<ListSet>; 2],
    meta: HashMap<String, Vec<u8>>,
}

impl Tracker {
    /// What this process last agreed with the store on for blob `name`.
    fn meta_base(&self, name: &str) -> Option<&Vec<u8>> {
        self.meta.get(name).or_else(|| self.pristine.get(name))
    }

    fn diff(&self, app: &App) -> Flush {
        let mut batch = Batch::default();
        let mut buckets = HashMap::with_capacity(self.buckets.len());
        for recorder in app.metrics.all() {
            recorder.each_bucket(|tier, b| {
                let key = BucketKey {
                    api: recorder.api_id.clone(),
                    tier: tier as u8,
                    start: b.start,
                };
                let seen = b.requests_seen();
                if self.buckets.get(&key) != Some(&seen) {
                    let image = b.image();
                    // The image may hold a little more than `seen` (requests in flight);
                    // remembering `seen` makes the next tick write it again.
                    match image.encode() {
                        Ok(bytes) => batch.put_buckets.push((key.clone(), bytes)),
                        Err(e) => tracing::warn!(api = %key.api, "cannot encode a bucket: {e}"),
                    }
                }
                buckets.insert(key, seen);
            });
        }
        app.metrics.activity.each_bucket(|tier, b| {
            let key = BucketKey {
                api: ACTIVITY.to_string(),
                tier: tier as u8,
                start: b.start,
            };
            let seen = b.changes_seen();
            if self.buckets.get(&key) != Some(&seen) {
                match postcard::to_stdvec(&b.image()) {
                    Ok(bytes) => batch.put_buckets.push((key.clone(), bytes)),
                    Err(e) => tracing::warn!("cannot encode an activity bucket: {e}"),
                }
            }
            buckets.insert(key, seen);
        });
        let users = &app.metrics.users;
        for (start, seen) in users.changes() {
            let key = BucketKey {
                api: USERS.to_string(),
                tier: 0,
                start,
            };
            if self.buckets.get(&key) != Some(&seen) {
                match users.image(start).map(|i| postcard::to_stdvec(&i)) {
                    Some(Ok(bytes)) => batch.put_buckets.push((key.clone(), bytes)),
                    Some(Err(e)) => tracing::warn!("cannot encode a user-activity hour: {e}"),
                    None => {}
                }
            }
            buckets.insert(key, seen);
        }
        for key in self.buckets.keys() {
            if !buckets.contains_key(key) {
                batch.delete_buckets.push(key.clone());
            }
        }

        let lists = KINDS.map(|k| app.enforcer.lists.load(k));
        for (i, kind) in KINDS.into_iter().enumerate() {
            for (id, entry) in lists[i].changes_since(&self.lists[i]) {
                let key = (kind_code(kind), id.storage_key());
                match entry.map(|e| postcard::to_stdvec(&e)) {
                    Some(Ok(bytes)) => batch.put_entries.push((key, bytes)),
                    Some(Err(e)) => tracing::warn!("cannot encode a list entry: {e}"),
                    None => batch.delete_entries.push(key),
                }
            }
        }
        batch
            .delete_entries
            .extend(self.stale_entries.iter().cloned());

        let mut meta = self.meta.clone();
        for (name, bytes) in meta_blobs(app) {
            if self.meta_base(name) != Some(&bytes) {
                batch.put_meta.push((name.to_string(), bytes.clone()));
                meta.insert(name.to_string(), bytes);
            }
        }
        Flush {
            batch,
            buckets,
            lists,
            meta,
        }
    }

    fn committed(&mut self, f: Flush) {
        self.buckets = f.buckets;
        self.lists = f.lists;
        self.meta = f.meta;
        self.stale_entries.clear();
    }
}

/// What the restore put back, for the start-up log.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Restored {
    pub buckets: usize,
    pub requests: u64,
    pub list_entries: usize,
    pub skipped: usize,
}

/// Opens the store `ase.conf` asks for, loads it into `app` and starts the persister
/// (`store=none`: does nothing). Runs before any port is bound, so a store that cannot be
/// opened stops the start.
pub fn attach(app: &Arc<App>) -> Result<Option<Restored>, StoreError> {
    let s = &app.settings;
    if s.store == StoreKind::None && app.cluster.is_none() {
        return Ok(None);
    }
    std::fs::create_dir_all(&s.data_dir).map_err(|e| StoreError::Io {
        file: s.data_dir.clone(),
        reason: format!("cannot create data_dir: {e}"),
    })?;
    let (store, interval): (Box<dyn Store>, Duration) = match &app.cluster {
        Some(cluster) => {
            cluster.keep_id().map_err(|e| StoreError::Io {
                file: s.data_dir.join("node_id"),
                reason: e.to_string(),
            })?;
            (Box::new(cluster.store()), s.cluster_sync_interval)
        }
        None => (
            Box::new(Embedded::open(&s.data_dir)?),
            s.store_flush_interval,
        ),
    };
    let (persister, restored) = start(app, store, interval)?;
    // Set once, right after construction: a second attach would be a programming error,
    // and the first persister stays in charge.
    let _ = app.persister.set(persister);
    Ok(Some(restored))
}

/// Loads everything stored into `app` and starts the persister thread, which owns the
/// store from then on.
pub fn start(
    app: &Arc<App>,
    mut store: Box<dyn Store>,
    interval: Duration,
) -> Result<(Persister, Restored), StoreError> {
    // Lists, tokens and credentials are in force before a port is bound; the records
    // (large) follow once the ports are bound, merged into what was recorded meanwhile.
    let loaded = store.load_state()?;
    let (mut tracker, restored) = restore(app, loaded);
    for (name, bytes) in meta_blobs(app) {
        if !tracker.meta.contains_key(name) {
            tracker.pristine.insert(name.to_string(), bytes);
        }
    }
    let health = Arc::new(Health {
        store: store.describe(),
        healthy: AtomicBool::new(true),
        restoring: AtomicBool::new(true),
        ..Health::default()
    });
    let (tx, rx) = mpsc::channel();
    let worker = Worker {
        app: app.clone(),
        store,
        tracker,
        health: health.clone(),
        replace: false,
    };
    std::thread::Builder::new()
        .name("enforcer-persist".into())
        .spawn(move || worker.run(rx, interval))
        .map_err(|e| StoreError::Io {
            file: "persister thread".into(),
            reason: e.to_string(),
        })?;
    Ok((Persister::new(tx, health), restored))
}

/// Puts stored bucket rows back (merged into live ones), tracking them as committed.
fn restore_buckets(
    app: &App,
    buckets: Vec<(BucketKey, Vec<u8>)>,
    tracker: &mut Tracker,
    restored: &mut Restored,
) {
    let metrics = &app.metrics;
    for (key, bytes) in buckets {
        if key.api == USERS {
            let image = postcard::from_bytes::<HourImage>(&bytes).ok();
            let changes = image.as_ref().map_or(u64::MAX, |i| i.changes);
            let ok = image.is_some_and(|i| i.start == key.start && metrics.users.restore(i));
            if !ok {
                restored.skipped += 1;
                tracing::warn!(
                    start = key.start,
                    "skipping an unreadable stored user-activity hour"
                );
            }
            tracker
                .buckets
                .insert(key, if ok { changes } else { u64::MAX });
            continue;
        }
        if key.api == ACTIVITY {
            let image = postcard::from_bytes::<ActivityImage>(&bytes).ok();
            let changes = image.as_ref().map_or(u64::MAX, |i| i.changes);
            let ok = image.is_some_and(|i| {
                i.start == key.start && metrics.activity.restore(usize::from(key.tier), i)
            });
            if !ok {
                restored.skipped += 1;
                tracing::warn!(
                    tier = key.tier,
                    start = key.start,
                    "skipping an unreadable stored activity bucket"
                );
            }
            tracker
                .buckets
                .insert(key, if ok { changes } else { u64::MAX });
            continue;
        }
        let image = Image::decode(&bytes).ok();
        let requests = image.as_ref().map_or(u64::MAX, |i| i.requests);
        let ok = image.is_some_and(|image| {
            usize::from(key.tier) < TIERS.len()
                && image.start == key.start
                && metrics
                    .for_restore(&key.api)
                    .restore(usize::from(key.tier), image)
        });
        if ok {
            restored.buckets += 1;
            restored.requests += requests;
        } else {
            restored.skipped += 1;
            tracing::warn!(api = %key.api, tier = key.tier, start = key.start, "skipping an unreadable stored bucket");
        }
        // Tracked either way: an unreadable row is deleted by the first flush.
        tracker
            .buckets
            .insert(key, if ok { requests } else { u64::MAX });
    }
}

fn restore(app: &App, loaded: Loaded) -> (Tracker, Restored) {
    let mut tracker = Tracker::default();
    let mut restored = Restored::default();
    restore_buckets(app, loaded.buckets, &mut tracker, &mut restored);
    let now = unix_secs(std::time::SystemTime::now());
    let mut by_kind: [Vec<(Identifier, Entry)>; 2] = Default::default();
    for ((list, id), bytes) in loaded.entries {
        let decoded = Identifier::from_storage_key(&id)
            .zip(postcard::from_bytes::<Entry>(&bytes).ok())
            .filter(|(_, e)| e.live(now));
        match (decoded, usize::from(list)) {
            (Some(item), i) if i < 2 => by_kind[i].push(item),
            _ => tracker.stale_entries.push((list, id)),
        }
    }
    let lists = &app.enforcer.lists;
    for (i, items) in by_kind.into_iter().enumerate() {
        let n = items.len();
        match lists.add(KINDS[i], items) {
            Ok(_) => restored.list_entries += n,
            Err(e) => tracing::warn!("restoring the {:?} list: {e}", KINDS[i]),
        }
        tracker.lists[i] = lists.load(KINDS[i]);
    }

    for (name, bytes) in loaded.meta {
        apply_meta(app, &name, &bytes);
        tracker.meta.insert(name, bytes);
    }
    // Buckets that aged while the process was down move down the tiers now; the first
    // flush writes the result.
    app.metrics.compact(now);
    (tracker, restored)
}

/// The blobs kept beside the records: sideband tokens, credentials, reviewed attacks.
fn meta_blobs(app: &App) -> [(&'static str, Vec<u8>); 3] {
    [
        (META_TOKENS, app.sideband.tokens.image()),
        (META_CREDENTIALS, app.credentials.image()),
        (META_REVIEWED, app.metrics.activity.reviewed_image()),
    ]
}

/// Puts back one stored blob (tokens, credentials, reviewed attacks).
fn apply_meta(app: &App, name: &str, bytes: &[u8]) {
    let applied = match name {
        META_TOKENS => app.sideband.tokens.restore(bytes),
        META_CREDENTIALS => app.credentials.restore(bytes),
        META_REVIEWED => app.metrics.activity.restore_reviewed(bytes),
        _ => Ok(()),
    };
    if let Err(e) = applied {
        tracing::warn!("ignoring stored {name}: {e}");
    }
}

struct Worker {
    app: Arc<App>,
    store: Box<dyn Store>,
    tracker: Tracker,
    health: Arc<Health>,
    /// A full rewrite is owed to the store (after [`Worker::resend`]) until one commits.
    replace: bool,
}

impl Worker {
    fn run(mut self, rx: mpsc::Receiver<Command>, interval: Duration) {
        self.restore_records();
        let mut next = std::time::Instant::now() + interval;
        loop {
            let wait = next.saturating_duration_since(std::time::Instant::now());
            match rx.recv_timeout(wait) {
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    let _ = self.flush();
                    next = std::time::Instant::now() + interval;
                }
                Ok(Command::Pull) => self.pull(),
                Ok(Command::Resend) => self.resend(),
                Ok(Command::Flush(reply)) => {
                    let _ = reply.send(self.flush());
                }
                Ok(Command::Stop(reply)) => {
                    let _ = self.flush();
                    let _ = reply.send(());
                    return;
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let _ = self.flush();
                    return;
                }
            }
        }
    }

    /// Loads the stored records back, once the ports are bound (a restart serves at once;
    /// reports fill in as this goes), merged into what was recorded meanwhile. Nothing is
    /// flushed before it is done, so a crash meanwhile loses nothing that was stored.
    fn restore_records(&mut self) {
        let waited = std::time::Instant::now();
        while self.app.addresses.get().is_none() && waited.elapsed() < Duration::from_secs(60) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let started = std::time::Instant::now();
        let buckets = match self.store.load_buckets() {
            Ok(b) => b,
            Err(e) => {
                // The rows stay in the store; the next start tries again.
                tracing::error!("cannot load the stored records: {e}");
                self.health.restoring.store(false, Relaxed);
                return;
            }
        };
        let mut restored = Restored::default();
        restore_buckets(&self.app, buckets, &mut self.tracker, &mut restored);
        self.app
            .metrics
            .compact(unix_secs(std::time::SystemTime::now()));
        self.health.restoring.store(false, Relaxed);
        if restored.buckets + restored.skipped > 0 {
            tracing::info!(
                buckets = restored.buckets,
                requests = restored.requests,
                skipped = restored.skipped,
                ms = started.elapsed().as_millis() as u64,
                "records restored from the store"
            );
        }
    }

    /// Merges the shared rows of the store (other nodes' list, token and credential
    /// changes) into memory; the tracker then holds them as committed.
    fn pull(&mut self) {
        let remote = match self.store.load_shared() {
            Ok(Some(r)) => r,
            Ok(None) => return,
            Err(StoreError::Lost { .. }) => {
                tracing::warn!("the shared store lost this node's state; writing it again");
                self.resend();
                // Then merge what the other nodes have, as the pull was asked to.
                match self.store.load_shared() {
                    Ok(Some(r)) => r,
                    _ => return,
                }
            }
            Err(e) => {
                tracing::debug!("cannot read the shared state: {e}");
                return;
            }
        };
        let now = unix_secs(std::time::SystemTime::now());
        let mut by_kind: [Vec<(Identifier, Entry)>; 2] = Default::default();
        for ((list, id), bytes) in remote.entries {
            let decoded = Identifier::from_storage_key(&id)
                .zip(postcard::from_bytes::<Entry>(&bytes).ok())
                .filter(|(_, e)| e.live(now));
            if let (Some(item), Some(slot)) = (decoded, by_kind.get_mut(usize::from(list))) {
                slot.push(item);
            }
        }
        let lists = &self.app.enforcer.lists;
        for (i, items) in by_kind.into_iter().enumerate() {
            let (base, changed) = lists.merge_remote(KINDS[i], &self.tracker.lists[i], items);
            self.tracker.lists[i] = base;
            if changed > 0 {
                tracing::info!(list = ?KINDS[i], changed, "list changes from the cluster applied");
            }
        }
        let local = meta_blobs(&self.app);
        for (name, bytes) in remote.meta {
            let base = self.tracker.meta_base(&name);
            if base == Some(&bytes) {
                continue;
            }
            let mine = local.iter().find(|(n, _)| *n == name).map(|(_, b)| b);
            if mine.is_some() && mine != base {
                // Changed here too and not pushed yet: ours goes out on the next flush.
                tracing::warn!(name, "kept this node's change over another node's");
                continue;
            }
            apply_meta(&self.app, &name, &bytes);
            if name == META_CREDENTIALS {
                // The secret changed on another node: browsers logged in here log in again.
                self.app.sessions.clear();
            }
            self.tracker.meta.insert(name, bytes);
        }
    }

    /// The store lost (or may hold a stale copy of) what this node committed: write all
    /// of it again, replacing this node's rows. List entries removed here since the last
    /// commit are removed there too; shared blobs the store still has are not overwritten
    /// (the next pull brings theirs in), those it lost are written.
    fn resend(&mut self) {
        let remote_meta: Vec<String> = match self.store.load_shared() {
            Ok(Some(r)) => r.meta.into_iter().map(|(n, _)| n).collect(),
            _ => Vec::new(),
        };
        let old_lists = std::mem::take(&mut self.tracker.lists);
        let lists = &self.app.enforcer.lists;
        let mut stale = std::mem::take(&mut self.tracker.stale_entries);
        for (i, kind) in KINDS.into_iter().enumerate() {
            let now = lists.load(kind);
            for (id, _) in old_lists[i].entries() {
                if !now.contains(&id) {
                    stale.push((kind_code(kind), id.storage_key()));
                }
            }
        }
        let kept: HashMap<String, Vec<u8>> = meta_blobs(&self.app)
            .into_iter()
            .filter(|(n, _)| remote_meta.iter().any(|r| r == n))
            .map(|(n, b)| (n.to_string(), b))
            .collect();
        self.tracker = Tracker {
            meta: kept,
            stale_entries: stale,
            pristine: std::mem::take(&mut self.tracker.pristine),
            ..Tracker::default()
        };
        self.replace = true;
        let _ = self.flush();
    }

    fn flush(&mut self) -> Result<(), String> {
        let mut next = self.tracker.diff(&self.app);
        if next.batch.is_empty() && !self.replace {
            self.tracker.committed(next);
            return Ok(());
        }
        next.batch.replace_buckets = self.replace;
        let b = &next.batch;
        let rows = b.put_buckets.len()
            + b.delete_buckets.len()
            + b.put_entries.len()
            + b.delete_entries.len()
            + b.put_meta.len();
        let batch = std::mem::take(&mut next.batch);
        match self.store.commit(batch) {
            Ok(()) => {
                self.replace = false;
                self.tracker.committed(next);
                let h = &self.health;
                h.flushes.fetch_add(1, Relaxed);
                h.last_rows.store(rows as u64, Relaxed);
                h.last_flush_ms
                    .store(jiff::Timestamp::now().as_millisecond(), Relaxed);
                if !h.healthy.swap(true, Relaxed) {
                    tracing::info!(store = %h.store, "store writes work again");
                }
                *h.last_error.lock().unwrap_or_else(|e| e.into_inner()) = None;
                Ok(())
            }
            Err(e) => {
                let h = &self.health;
                h.errors.fetch_add(1, Relaxed);
                if h.healthy.swap(false, Relaxed) {
                    tracing::error!(
                        "cannot write the store (state stays in memory, retrying every flush): {e}"
                    );
                }
                let msg = e.to_string();
                *h.last_error.lock().unwrap_or_else(|e| e.into_inner()) = Some(msg.clone());
                Err(msg)
            }
        }
    }
}
