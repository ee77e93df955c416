//! Shards for state that every worker writes on the request path.
//!
//! A counter every worker bumps for every request is one cache line that moves from core
//! to core on each write, and a lock every worker takes is a queue. Such state is split
//! into [`Shards`] instead: each shard on cache lines of its own ([`CachePadded`]); a
//! thread writes the shard of its [`index`] (or, for a set, the shard its key hashes to),
//! and whoever reads the whole (a report, a detector at its threshold) sums the shards.
//!
//! Threads are numbered as they first ask, so the runtime's workers, started together,
//! land on distinct shards while there are no more of them than [`count`]. Beyond that
//! two threads share a shard: everything kept in one must still be updated atomically,
//! which is why sharding only removes contention and never changes a count.
//!
//! Where it sits: below everything (it imports nothing from the crate); used by
//! `enforce::detect` (the API-wide window, login suspects) and `metrics::users` (the
//! distinct users of an hour).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

pub use crossbeam_utils::CachePadded;

/// Shards per sharded value: twice the cores, rounded up to a power of two, 4 to 64.
pub fn count() -> usize {
    static COUNT: OnceLock<usize> = OnceLock::new();
    *COUNT.get_or_init(|| {
        let cores = std::thread::available_parallelism().map_or(4, |n| n.get());
        (cores * 2).next_power_of_two().clamp(4, 64)
    })
}

/// This thread's number (consecutive in the order threads first asked).
pub fn index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        // Taken once per thread, not per request.
        static INDEX: usize = NEXT.fetch_add(1, Relaxed);
    }
    INDEX.with(|i| *i)
}

/// One value per shard, each on cache lines of its own.
pub struct Shards<T> {
    shards: Box<[CachePadded<T>]>,
}

impl<T> Shards<T> {
    /// [`count`] shards, each made by `make`.
    pub fn new(mut make: impl FnMut() -> T) -> Shards<T> {
        Shards {
            shards: (0..count()).map(|_| CachePadded::new(make())).collect(),
        }
    }

    /// A single shard: for state no longer written by every worker (an hour that is
    /// over), where padding per core would only cost memory.
    pub fn one(value: T) -> Shards<T> {
        Shards {
            shards: Box::new([CachePadded::new(value)]),
        }
    }

    /// The shard this thread writes.
    pub fn local(&self) -> &T {
        &self.shards[index() % self.shards.len()]
    }

    /// The shard of a key whose hash is `hash` (keys that hash alike share one).
    pub fn of_hash(&self, hash: u64) -> &T {
        // The high bits: the low ones often pick buckets inside the shard's own table.
        &self.shards[(hash >> 40) as usize % self.shards.len()]
    }

    pub fn iter(&self) -> impl Iterator<Item = &T> {
        self.shards.iter().map(|s| &**s)
    }

    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.shards.iter_mut().map(|s| &mut **s)
    }

    /// Bytes the shards take (padding included).
    pub fn footprint(&self) -> usize {
        std::mem::size_of_val(&*self.shards)
    }
}

impl<T: Default> Default for Shards<T> {
    fn default() -> Shards<T> {
        Shards::new(T::default)
    }
}

impl<T: std::fmt::Debug> std::fmt::Debug for Shards<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.iter()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_get_their_own_shard_until_there_are_more_than_shards() {
        assert!(count().is_power_of_two() && (4..=64).contains(&count()));
        let shards: Shards<AtomicUsize> = Shards::default();
        assert_eq!(shards.iter().count(), count());
        // The same thread always writes the same shard.
        let mine = shards.local() as *const AtomicUsize;
        assert_eq!(mine, shards.local() as *const AtomicUsize);
        let indexes: Vec<usize> = (0..count())
            .map(|_| std::thread::spawn(index).join().unwrap_or(0))
            .collect();
        let mut distinct = indexes.clone();
        distinct.sort();
        distinct.dedup();
        assert_eq!(distinct.len(), indexes.len(), "{indexes:?}");
        assert!(std::mem::align_of::<CachePadded<u64>>() >= 64);
    }
}
