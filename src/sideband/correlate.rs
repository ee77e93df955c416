//! Pending sideband exchanges: requests allowed by `/ase/request`, waiting for the
//! gateway's `/ase/response` with the same correlation id (`X-CorrelationID`, or the
//! `PISESSIONID` enforcer handed out; see `handler` for the rules).
//!
//! A request parked under an id that is still pending replaces the older one. When both
//! are the same request (method, URL and client), it is a gateway's retry: the older is
//! dropped unrecorded, so the exchange is recorded once. Otherwise (an id reused for
//! another request) the older completes and is recorded without a response.
//!
//! Bounded two ways, so a gateway that never sends response calls cannot exhaust memory:
//! at most `sideband_pending_max` entries (the oldest is evicted to make room), each kept
//! at most `sideband_pending_ttl` (a sweeper removes expired ones every second). An evicted
//! or expired exchange is not lost: it completes without a response status and is
//! recorded like any other. The table is split into shards, each behind its own mutex
//! held only for a map operation, so the two calls of one exchange may arrive on any
//! connection or worker.

use std::collections::{BTreeMap, HashMap};
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::pipeline::Exchange;

const SHARDS: usize = 16;

/// Counters of the table's life, for status and metrics.
#[derive(Debug, Default)]
pub struct PendingStats {
    /// Evicted because the table was full.
    pub evicted: AtomicU64,
    /// Removed because no response call came within the TTL.
    pub expired: AtomicU64,
    /// A request call reused a correlation id still pending for another request; the
    /// older exchange completed.
    pub replaced: AtomicU64,
    /// A request call repeated under a correlation id still pending (a gateway's retry):
    /// decided again, recorded once.
    pub retried: AtomicU64,
    /// Response calls matched by `X-CorrelationID`.
    pub by_id: AtomicU64,
    /// Response calls matched by the `PISESSIONID` cookie.
    pub by_cookie: AtomicU64,
    /// Response calls matched by their connection's last request call.
    pub by_connection: AtomicU64,
    /// Response calls that matched no pending request (no id, an unknown or expired one).
    pub uncorrelated: AtomicU64,
    /// Requests without a correlation id whose connection moved on (another request call,
    /// or closed) before their response call came: completed without a status.
    pub unanswered: AtomicU64,
}

/// How a response call found its pending request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parked {
    ById,
    ByCookie,
    ByConnection,
}

impl PendingStats {
    pub fn matched(&self, by: Parked) {
        match by {
            Parked::ById => &self.by_id,
            Parked::ByCookie => &self.by_cookie,
            Parked::ByConnection => &self.by_connection,
        }
        .fetch_add(1, Relaxed);
    }
}

struct Entry {
    seq: u64,
    ex: Exchange,
}

#[derive(Default)]
struct Shard {
    by_id: HashMap<Arc<str>, Entry>,
    /// Insertion order: seq → (deadline, id).
    by_age: BTreeMap<u64, (Instant, Arc<str>)>,
    next_seq: u64,
}

/// The pending table.
pub struct Pending {
    shards: Box<[Mutex<Shard>]>,
    /// Each shard's share of `sideband_pending_max`; the shares add up to it exactly.
    per_shard: [usize; SHARDS],
    ttl: Duration,
    hasher: foldhash::fast::RandomState,
    /// Ids enforcer hands out: `Id-<process prefix>-<counter>`.
    id_prefix: String,
    next_id: AtomicU64,
    /// A response call has come with a `PISESSIONID` cookie: this gateway correlates by
    /// cookie, so requests without ids wait for theirs.
    cookies: AtomicBool,
    pub stats: PendingStats,
}

impl Pending {
    pub fn new(max: usize, ttl: Duration) -> Pending {
        Pending {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: std::array::from_fn(|i| {
                (max / SHARDS + usize::from(i < max % SHARDS)).max(1)
            }),
            ttl,
            hasher: foldhash::fast::RandomState::default(),
            id_prefix: id_prefix(),
            next_id: AtomicU64::new(0),
            cookies: AtomicBool::new(false),
            stats: PendingStats::default(),
        }
    }

    /// Whether a gateway has sent a `PISESSIONID` cookie back on a response call.
    pub fn cookies_seen(&self) -> bool {
        self.cookies.load(Relaxed)
    }

    pub fn saw_cookie(&self) {
        if !self.cookies.swap(true, Relaxed) {
            tracing::info!(
                "sideband: the gateway sends PISESSIONID back; requests without X-CorrelationID now wait for their response call"
            );
        }
    }

    /// A new correlation id, unique within this process and unlikely to collide with
    /// another process's.
    pub fn new_id(&self) -> Arc<str> {
        let n = self.next_id.fetch_add(1, Relaxed);
        // Written by hand: one is made for every request call without an id, and `format!`
        // or `write!` cost 650-1,000 instructions against 310 (benches/instructions.sh).
        let mut id = String::with_capacity(self.id_prefix.len() + 20);
        id.push_str("Id-");
        id.push_str(&self.id_prefix);
        id.push('-');
        let digits = (64 - n.leading_zeros()).div_ceil(4).max(1);
        for shift in (0..digits).rev() {
            id.push(char::from(
                b"0123456789abcdef"[((n >> (shift * 4)) & 0xf) as usize],
            ));
        }
        Arc::from(id)
    }

    fn shard(&self, id: &str) -> (MutexGuard<'_, Shard>, usize) {
        let i = (self.hasher.hash_one(id) as usize) % SHARDS;
        // A panic while holding a shard cannot leave it inconsistent beyond one entry.
        let guard = self.shards[i].lock().unwrap_or_else(|e| e.into_inner());
        (guard, self.per_shard[i])
    }

    /// Parks `ex` under `id`. Returns the exchanges that had to leave to make room (the
    /// oldest, or an older one with the same id); the caller completes them.
    pub fn insert(&self, id: &str, ex: Exchange) -> Vec<Exchange> {
        let mut out = Vec::new();
        let id: Arc<str> = Arc::from(id);
        let deadline = Instant::now() + self.ttl;
        let (mut shard, cap) = self.shard(&id);
        let seq = shard.next_seq;
        shard.next_seq += 1;
        if let Some(old) = shard.by_id.insert(id.clone(), Entry { seq, ex }) {
            shard.by_age.remove(&old.seq);
            let retry = shard
                .by_id
                .get(&id)
                .is_some_and(|new| same_request(&new.ex, &old.ex));
            if retry {
                self.stats.retried.fetch_add(1, Relaxed);
            } else {
                self.stats.replaced.fetch_add(1, Relaxed);
                out.push(old.ex);
            }
        }
        shard.by_age.insert(seq, (deadline, id));
        while shard.by_id.len() > cap {
            let Some((_, (_, oldest))) = shard.by_age.pop_first() else {
                break;
            };
            if let Some(e) = shard.by_id.remove(&oldest) {
                self.stats.evicted.fetch_add(1, Relaxed);
                out.push(e.ex);
            }
        }
        out
    }

    /// Takes the exchange pending under `id`, if any.
    pub fn take(&self, id: &str) -> Option<Exchange> {
        let (mut shard, _) = self.shard(id);
        let entry = shard.by_id.remove(id)?;
        shard.by_age.remove(&entry.seq);
        Some(entry.ex)
    }

    /// Removes every exchange whose TTL has passed at `now`; the caller completes them.
    pub fn sweep(&self, now: Instant) -> Vec<Exchange> {
        let mut out = Vec::new();
        for shard in self.shards.iter() {
            let mut shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            while let Some(entry) = shard.by_age.first_entry() {
                if entry.get().0 > now {
                    break;
                }
                let (_, id) = entry.remove();
                if let Some(e) = shard.by_id.remove(&id) {
                    self.stats.expired.fetch_add(1, Relaxed);
                    out.push(e.ex);
                }
            }
        }
        out
    }

    /// Exchanges pending at most.
    pub fn capacity(&self) -> usize {
        self.per_shard.iter().sum()
    }

    /// Exchanges pending now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).by_id.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Whether two request calls describe the same client request (a gateway's retry).
fn same_request(a: &Exchange, b: &Exchange) -> bool {
    a.method == b.method && a.uri == b.uri && a.client_ip == b.client_ip && a.api.id() == b.api.id()
}

/// Eight random hex digits (a clock-derived fallback without randomness).
fn id_prefix() -> String {
    let mut raw = [0u8; 4];
    if ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw).is_err() {
        raw = (std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .subsec_nanos())
        .to_be_bytes();
    }
    raw.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ApiDef, Mode};
    use crate::metrics::{Caps, Metrics};
    use crate::pipeline::Api;

    fn exchange(path: &str) -> Exchange {
        let def = ApiDef::parse(
            std::path::Path::new("t.json"),
            "t",
            r#"{"api_metadata":{"url":"/","hostname":"*"}}"#,
            Mode::Sideband,
            &mut Vec::new(),
        )
        .unwrap();
        let metrics = Metrics::new(
            Caps::default(),
            1 << 20,
            Default::default(),
            Arc::new(crate::metrics::prom::Prom::new("sideband").unwrap()),
        );
        let enforce = crate::enforce::Config::from_settings(&crate::config::Settings::defaults(
            std::path::Path::new("."),
        ));
        let api = Arc::new(Api::new(
            def,
            &crate::pipeline::Context {
                metrics: &metrics,
                enforce: &enforce,
            },
        ));
        Exchange::new(
            Mode::Sideband,
            api,
            http::Method::GET,
            path.parse().unwrap(),
            http::Version::HTTP_11,
            "10.0.0.1".parse().unwrap(),
        )
    }

    #[test]
    fn matched_and_unknown_ids() {
        let p = Pending::new(100, Duration::from_secs(60));
        assert!(p.insert("a", exchange("/a")).is_empty());
        assert_eq!(p.take("a").map(|e| e.path().to_string()), Some("/a".into()));
        assert!(p.take("a").is_none());
        assert!(p.take("never").is_none());
        assert!(p.is_empty());
    }

    #[test]
    fn ids_are_the_prefix_and_the_counter_in_hex() {
        let p = Pending::new(100, Duration::from_secs(60));
        assert_eq!(p.id_prefix.len(), 8);
        for n in [0u64, 1, 9, 10, 15, 16, 255, 256, 0xdead_beef, u64::MAX] {
            p.next_id.store(n, Relaxed);
            assert_eq!(&*p.new_id(), format!("Id-{}-{n:x}", p.id_prefix));
        }
        assert_ne!(p.new_id(), p.new_id(), "each id once");
    }

    #[test]
    fn the_table_stays_bounded_and_gives_back_what_it_evicts() {
        let p = Pending::new(SHARDS * 2, Duration::from_secs(60));
        let mut evicted = 0;
        for i in 0..1_000 {
            evicted += p.insert(&format!("id-{i}"), exchange("/x")).len();
        }
        assert!(p.len() <= SHARDS * 2);
        assert_eq!(
            evicted + p.len(),
            1_000,
            "every exchange is either pending or handed back"
        );
        assert_eq!(p.stats.evicted.load(Relaxed) as usize, evicted);
        // A cap that is not a multiple of the shard count still holds exactly.
        let p = Pending::new(1_000, Duration::from_secs(60));
        for i in 0..5_000 {
            p.insert(&format!("id-{i}"), exchange("/x"));
        }
        assert!(p.len() <= 1_000, "{} pending", p.len());
    }

    #[test]
    fn expired_entries_are_swept_and_replaced_ids_handed_back() {
        let p = Pending::new(100, Duration::from_millis(10));
        p.insert("a", exchange("/a"));
        assert_eq!(
            p.insert("a", exchange("/b")).len(),
            1,
            "another request under the same id: the older one comes back"
        );
        assert!(
            p.insert("a", exchange("/b")).is_empty(),
            "the same request again (a retry): the older one is dropped"
        );
        assert_eq!(p.stats.retried.load(Relaxed), 1);
        assert!(p.sweep(Instant::now()).is_empty());
        let swept = p.sweep(Instant::now() + Duration::from_secs(1));
        assert_eq!(swept.len(), 1);
        assert_eq!(swept[0].path(), "/b");
        assert_eq!(p.stats.expired.load(Relaxed), 1);
        assert!(p.is_empty());
    }
}
