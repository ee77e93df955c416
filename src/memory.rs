//! The memory budget: one number, `memory_budget`, bounds everything the process keeps per
//! client-chosen value (addresses, paths, sessions, tokens, API keys, user agents,
//! usernames), so that a flood in which every request brings new values cannot grow the
//! process past it.
//!
//! Where it sits: at the bottom (it imports only the config). [`Budget::new`] divides the
//! budget into the parts below once at start; each structure that keeps client-chosen
//! values draws on its part and refuses (or folds into `(other)`) what does not fit,
//! counting it. Prometheus shows each part's use, limit and overflow
//! (`enforcer_memory_bytes`, `enforcer_memory_limit_bytes`, `enforcer_memory_overflow_total`).
//!
//! | part | share | what | beyond the limit |
//! |---|---:|---|---|
//! | `records` | 30 % | `api_metrics` detail of every API (each also within its `api_memory_size`) | the value is counted under `(other)`; totals stay exact |
//! | `activity` | 35 % | client and API activity (each also within `activity_memory`) | the same |
//! | `detection` | 15 % | detection windows of every identifier, over all APIs | the identifier is not tracked (`untracked`) |
//! | `pending` | 10 % | sideband requests waiting for their response call | the oldest completes early (recorded without a status) |
//! | `lists` | 5 % | deny- and allow-list entries and remembered decoy visitors | the list is full: automatic entries are refused, manual ones get 409 `list_full` |
//! | `flow` | 5 % | per-client rate limiters | clients share one limiter until the flood passes |
//!
//! Costs are in bytes per entry as measured (`cargo run --release --example footprint`:
//! resident memory growth divided by entries, allocator overhead included), so what is
//! accounted is close to what the process holds.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

/// One part of the budget: bytes in use, the limit, and how often it was full.
#[derive(Debug)]
pub struct Pool {
    pub name: &'static str,
    used: AtomicI64,
    limit: i64,
    overflow: AtomicU64,
}

impl Pool {
    pub fn new(name: &'static str, limit: u64) -> Pool {
        Pool {
            name,
            used: AtomicI64::new(0),
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            overflow: AtomicU64::new(0),
        }
    }

    /// Takes `bytes` if they fit; otherwise counts an overflow and takes nothing.
    pub fn try_take(&self, bytes: i64) -> bool {
        if self.used.fetch_add(bytes, Relaxed) + bytes > self.limit {
            self.used.fetch_sub(bytes, Relaxed);
            self.overflow.fetch_add(1, Relaxed);
            return false;
        }
        true
    }

    /// Whether anything more fits.
    pub fn has_room(&self) -> bool {
        self.used.load(Relaxed) < self.limit
    }

    /// Takes `bytes` whatever the limit (a structure that checked `has_room` first).
    pub fn take(&self, bytes: i64) {
        self.used.fetch_add(bytes, Relaxed);
    }

    pub fn give_back(&self, bytes: i64) {
        self.used.fetch_sub(bytes, Relaxed);
    }

    /// Counts a value refused because the part was full.
    pub fn overflowed(&self) {
        self.overflow.fetch_add(1, Relaxed);
    }

    pub fn used(&self) -> u64 {
        self.used.load(Relaxed).max(0) as u64
    }

    pub fn limit(&self) -> u64 {
        self.limit.max(0) as u64
    }

    pub fn overflows(&self) -> u64 {
        self.overflow.load(Relaxed)
    }
}

/// Measured bytes per entry (see the module doc).
pub mod cost {
    /// A detection window of one identifier (an IP's; a token's adds its text).
    pub const DETECTION_WINDOW: i64 = 900;
    /// A sideband exchange waiting for its response call.
    pub const PENDING_EXCHANGE: i64 = 2_048;
    /// A list entry (or a remembered decoy visitor).
    pub const LIST_ENTRY: i64 = 320;
    /// A per-client rate limiter.
    pub const FLOW_CLIENT: i64 = 128;
}

/// The budget, divided.
#[derive(Debug)]
pub struct Budget {
    pub total: u64,
    pub records: std::sync::Arc<Pool>,
    /// The activity records' limit (they keep their own count of use).
    pub activity: u64,
    pub detection: std::sync::Arc<Pool>,
    pub pending: u64,
    pub lists: u64,
    pub flow: u64,
}

impl Budget {
    pub fn new(total: u64) -> Budget {
        let share = |pct: u64| total / 100 * pct;
        Budget {
            total,
            records: std::sync::Arc::new(Pool::new("records", share(30))),
            activity: share(35),
            detection: std::sync::Arc::new(Pool::new("detection", share(15))),
            pending: share(10),
            lists: share(5),
            flow: share(5),
        }
    }

    /// How many entries of `cost` bytes a part of `bytes` holds (at least one).
    pub fn entries(bytes: u64, cost: i64) -> usize {
        usize::try_from(bytes / u64::try_from(cost.max(1)).unwrap_or(1))
            .unwrap_or(usize::MAX)
            .max(1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pool_refuses_what_does_not_fit_and_counts_it() {
        let p = Pool::new("t", 100);
        assert!(p.try_take(60));
        assert!(!p.try_take(60));
        assert_eq!((p.used(), p.overflows()), (60, 1));
        p.give_back(60);
        assert!(p.try_take(100));
        assert!(!p.has_room());
    }

    #[test]
    fn the_parts_add_up_to_the_budget() {
        let b = Budget::new(1 << 30);
        let sum =
            b.records.limit() + b.activity + b.detection.limit() + b.pending + b.lists + b.flow;
        assert!(sum <= b.total && sum >= b.total - 100);
        assert_eq!(Budget::entries(1_000, 320), 3);
    }
}
