//! Persistence: what must outlive the process (time-bucketed records, deny and allow
//! lists, sideband tokens, management credentials) kept in a store behind the small
//! [`Store`] trait.
//!
//! Where it sits: beside the request path, never on it. The [`persist`] thread reads the
//! in-memory state (the same lock-free buckets and copy-on-write lists the pipeline
//! writes) every `store_flush_interval`, works out what changed since its last commit and
//! hands one [`Batch`] to the store. Requests never wait for it. At start-up, before any
//! port is bound, `crate::persist::attach` loads the store back into memory.
//!
//! The embedded implementation is [`embedded::Embedded`] (one redb file in the data
//! directory); in cluster mode the same trait is implemented over Redis
//! ([`crate::cluster::store::RedisStore`]). API definitions are not
//! here: their source of truth stays `config/api/*.json`, which the management API writes.

pub mod embedded;
pub mod persister;

/// The bucket rows of the activity records use this in place of an API id (API ids
/// cannot contain `#`).
pub const ACTIVITY: &str = "#activity";
/// The hourly user-activity rows (`userActivities`).
pub const USERS: &str = "#users";

use std::path::PathBuf;

/// Where one bucket lives: its API, its tier (index into [`crate::metrics::TIERS`]) and
/// its start (unix seconds).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BucketKey {
    pub api: String,
    pub tier: u8,
    pub start: i64,
}

/// One list entry's key: the list (0 deny, 1 allow) and the identifier's storage key.
pub type EntryKey = (u8, String);

/// Everything a store holds, as loaded at start-up.
#[derive(Debug, Default)]
pub struct Loaded {
    pub buckets: Vec<(BucketKey, Vec<u8>)>,
    pub entries: Vec<(EntryKey, Vec<u8>)>,
    pub meta: Vec<(String, Vec<u8>)>,
}

/// The changes of one flush, committed atomically.
#[derive(Debug, Default)]
pub struct Batch {
    pub put_buckets: Vec<(BucketKey, Vec<u8>)>,
    pub delete_buckets: Vec<BucketKey>,
    pub put_entries: Vec<(EntryKey, Vec<u8>)>,
    pub delete_entries: Vec<EntryKey>,
    pub put_meta: Vec<(String, Vec<u8>)>,
    /// This process's buckets in the store are replaced by `put_buckets` (a shared store
    /// that lost or may hold stale rows of ours: every one not put again goes).
    pub replace_buckets: bool,
}

impl Batch {
    pub fn is_empty(&self) -> bool {
        self.put_buckets.is_empty()
            && self.delete_buckets.is_empty()
            && self.put_entries.is_empty()
            && self.delete_entries.is_empty()
            && self.put_meta.is_empty()
    }
}

/// A place state is kept. Implementations are driven from one thread at a time.
pub trait Store: Send {
    /// Everything stored.
    fn load(&mut self) -> Result<Loaded, StoreError>;
    /// What must be in force before traffic is served (lists, tokens, credentials), and
    /// for a store that cannot load in two steps, everything. See [`Store::load_buckets`].
    fn load_state(&mut self) -> Result<Loaded, StoreError> {
        self.load()
    }
    /// The bucket rows [`Store::load_state`] left out, loaded once the ports are bound
    /// (records are merged into what was recorded meanwhile).
    fn load_buckets(&mut self) -> Result<Vec<(BucketKey, Vec<u8>)>, StoreError> {
        Ok(Vec::new())
    }
    /// Applies one batch, all or nothing, durably once this returns.
    fn commit(&mut self, batch: Batch) -> Result<(), StoreError>;
    /// The rows other processes may have changed (a shared store: the lists and meta),
    /// for the persister to merge in; `None` for a store only this process writes.
    fn load_shared(&mut self) -> Result<Option<Loaded>, StoreError> {
        Ok(None)
    }
    /// What and where this store is, for logs and status (e.g. `redb /var/lib/…`).
    fn describe(&self) -> String;
}

/// Why the store could not be opened, read or written.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error(
        "{f}: the store is damaged ({reason}); move it aside to start with an empty store \
         (mv {f} {f}.bad)",
        f = .file.display()
    )]
    Corrupt { file: PathBuf, reason: String },
    #[error(
        "{f}: the store has format {found}, this enforcer reads format {expected}; move it \
         aside to start with an empty store (mv {f} {f}.bad)",
        f = .file.display()
    )]
    Version {
        file: PathBuf,
        found: String,
        expected: u32,
    },
    #[error(
        "{f}: the store is in use by another process (another enforcer with the same data_dir?)",
        f = .file.display()
    )]
    Locked { file: PathBuf },
    #[error("{f}: {reason}", f = .file.display())]
    Io { file: PathBuf, reason: String },
    /// A shared store no longer holds what was committed to it (restarted empty, keys
    /// evicted or deleted): the whole state must be written again, nothing merged.
    #[error("{f}: the store lost its shared state", f = .file.display())]
    Lost { file: PathBuf },
}
