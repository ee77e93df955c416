//! Time tiers: the one machinery that keeps a recorder's buckets (the API buckets of
//! [`super::ApiRecorder`] and the client activity of [`super::activity::Activity`]).
//!
//! A tier holds buckets of one length for a while ([`TierSpec`]); a bucket that ages out
//! of its tier is merged into the bucket of the next tier that holds its time, or dropped
//! past the last. Recording touches one bucket through the tier map's shard guards only;
//! reads and compaction share a roll-up lock, so a report never sees a bucket twice or
//! misses one that compaction is moving. The buckets themselves (what they count, how two
//! merge, what they cost) are the recorder's: this module only places, moves and visits them.

use std::sync::RwLock;

use super::bucket::{Hasher, Map};

/// A tier of time buckets.
#[derive(Debug, Clone, Copy)]
pub struct TierSpec {
    pub name: &'static str,
    /// Bucket length in seconds.
    pub span: i64,
    /// How far back (seconds) the tier keeps buckets.
    pub keep: i64,
}

/// The start of the bucket of length `span` that holds `t`.
pub(crate) fn floor(t: i64, span: i64) -> i64 {
    t.div_euclid(span) * span
}

/// The finest tier of `tiers`, at or after `from`, that still holds time `t` at `now`.
pub(crate) fn tier_for(tiers: &[TierSpec], t: i64, now: i64, from: usize) -> Option<usize> {
    (from..tiers.len()).find(|&i| {
        let spec = tiers[i];
        floor(t, spec.span) + spec.span > now - spec.keep
    })
}

/// A bucket kept in tiers: it knows where it starts.
pub trait Timed {
    fn start(&self) -> i64;
}

/// `N` tiers of buckets `B`.
#[derive(Debug)]
pub struct Tiers<B, const N: usize> {
    specs: &'static [TierSpec; N],
    maps: [Map<i64, B>; N],
    /// Reads hold it shared; compaction moves a bucket holding it exclusively.
    rollup: RwLock<()>,
}

impl<B: Timed, const N: usize> Tiers<B, N> {
    pub fn new(specs: &'static [TierSpec; N]) -> Tiers<B, N> {
        Tiers {
            specs,
            maps: std::array::from_fn(|_| Map::with_hasher(Hasher::default())),
            rollup: RwLock::new(()),
        }
    }

    /// The tier that holds time `t` at `now`, and the start of `t`'s bucket there; `None`
    /// when `t` is older than every tier keeps.
    pub fn place(&self, t: i64, now: i64) -> Option<(usize, i64)> {
        let tier = tier_for(self.specs, t, now, 0)?;
        Some((tier, floor(t, self.specs[tier].span)))
    }

    /// Runs `f` on the bucket of `tier` starting at `start`, made by `make` first if there
    /// is none. The tier's shard guard is held only while `f` runs on the bucket.
    pub fn with<R>(
        &self,
        tier: usize,
        start: i64,
        make: impl FnOnce(i64) -> B,
        f: impl FnOnce(&B) -> R,
    ) -> R {
        let map = &self.maps[tier];
        if let Some(b) = map.get(&start) {
            return f(&b);
        }
        let b = map.entry(start).or_insert_with(|| make(start)).downgrade();
        f(&b)
    }

    /// Moves every bucket that has aged out of its tier into the next tier that holds its
    /// time (or drops it past the last): `release` runs on the bucket leaving, before
    /// `merge(into, from)` adds it to its new bucket (made by `make` if needed). Safe while
    /// requests are recorded and reports read.
    pub fn compact(
        &self,
        now: i64,
        make: impl Fn(i64) -> B,
        mut release: impl FnMut(&B),
        mut merge: impl FnMut(&B, &B),
    ) {
        for (t, spec) in self.specs.iter().enumerate() {
            let due: Vec<i64> = self.maps[t]
                .iter()
                .map(|b| b.start())
                .filter(|&start| start + spec.span <= now - spec.keep)
                .collect();
            for start in due {
                let _moving = self.rollup.write().unwrap_or_else(|e| e.into_inner());
                let Some((_, bucket)) = self.maps[t].remove(&start) else {
                    continue;
                };
                // Its memory moves to the next tier: given back first, so the move is not
                // refused for want of budget it is about to free.
                release(&bucket);
                if let Some(next) = tier_for(self.specs, start, now, t + 1) {
                    let dst = floor(start, self.specs[next].span);
                    self.with(next, dst, &make, |into| merge(into, &bucket));
                }
            }
        }
    }

    /// Runs `f` on every bucket whose start lies in `[from, to)`, under the roll-up lock.
    pub fn each_in(&self, from: i64, to: i64, mut f: impl FnMut(usize, &B)) {
        let _reading = self.rollup.read().unwrap_or_else(|e| e.into_inner());
        for (t, map) in self.maps.iter().enumerate() {
            let starts: Vec<i64> = map
                .iter()
                .map(|b| b.start())
                .filter(|s| (from..to).contains(s))
                .collect();
            for s in starts {
                if let Some(b) = map.get(&s) {
                    f(t, &b);
                }
            }
        }
    }

    /// Runs `f` on every bucket (tier index, bucket), under the roll-up lock.
    pub fn each(&self, mut f: impl FnMut(usize, &B)) {
        let _reading = self.rollup.read().unwrap_or_else(|e| e.into_inner());
        for (t, map) in self.maps.iter().enumerate() {
            for b in map.iter() {
                f(t, &b);
            }
        }
    }

    /// Puts back a stored bucket of `tier` starting at `start` while traffic may already
    /// be recorded: `put(Some(live))` merges it into the bucket recorded since the start
    /// (and returns `None`); `put(None)` returns the bucket to insert. False for a tier
    /// that does not exist.
    pub fn restore(
        &self,
        tier: usize,
        start: i64,
        put: impl FnOnce(Option<&B>) -> Option<B>,
    ) -> bool {
        let Some(map) = self.maps.get(tier) else {
            return false;
        };
        // Compaction moves buckets under the write side of this lock.
        let _restoring = self.rollup.read().unwrap_or_else(|e| e.into_inner());
        if let Some(live) = map.get(&start) {
            put(Some(&live));
            return true;
        }
        if let Some(b) = put(None) {
            map.insert(start, b);
        }
        true
    }

    /// Buckets held per tier.
    pub fn counts(&self) -> [usize; N] {
        std::array::from_fn(|t| self.maps[t].len())
    }

    /// The tiers' specs.
    pub fn specs(&self) -> &'static [TierSpec; N] {
        self.specs
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    #[derive(Debug)]
    struct Count {
        start: i64,
        n: AtomicU64,
    }

    impl Timed for Count {
        fn start(&self) -> i64 {
            self.start
        }
    }

    static SPECS: [TierSpec; 2] = [
        TierSpec {
            name: "minute",
            span: 60,
            keep: 600,
        },
        TierSpec {
            name: "hour",
            span: 3_600,
            keep: 86_400,
        },
    ];

    fn make(start: i64) -> Count {
        Count {
            start,
            n: AtomicU64::new(0),
        }
    }

    #[test]
    fn buckets_age_into_the_next_tier_and_out_of_the_last() {
        let tiers: Tiers<Count, 2> = Tiers::new(&SPECS);
        let now = 100_000;
        for t in [now - 30, now - 90, now - 1_000, now - 1_001] {
            let (tier, start) = tiers.place(t, now).unwrap();
            tiers.with(tier, start, make, |b| b.n.fetch_add(1, Relaxed));
        }
        assert_eq!(
            tiers.place(now - 200_000, now),
            None,
            "older than every tier"
        );
        // Two minutes kept as minutes; the two older times share an hour.
        assert_eq!(tiers.counts(), [2, 1]);
        let later = now + 700;
        tiers.compact(
            later,
            make,
            |_| {},
            |into, from| {
                into.n.fetch_add(from.n.load(Relaxed), Relaxed);
            },
        );
        let mut total = 0;
        tiers.each(|t, b| {
            assert_eq!(t, 1, "every minute aged into its hour");
            total += b.n.load(Relaxed);
        });
        assert_eq!(total, 4, "nothing lost in the move");
        tiers.compact(later + 200_000, make, |_| {}, |_, _| {});
        assert_eq!(tiers.counts(), [0, 0], "dropped past the last tier");
    }

    #[test]
    fn a_restored_bucket_merges_into_one_recorded_meanwhile() {
        let tiers: Tiers<Count, 2> = Tiers::new(&SPECS);
        tiers.with(0, 60, make, |b| b.n.fetch_add(2, Relaxed));
        assert!(tiers.restore(0, 60, |live| {
            live.unwrap().n.fetch_add(5, Relaxed);
            None
        }));
        assert!(tiers.restore(0, 120, |live| {
            assert!(live.is_none());
            Some(Count {
                start: 120,
                n: AtomicU64::new(1),
            })
        }));
        assert!(!tiers.restore(7, 0, |_| None), "no such tier");
        let mut seen = Vec::new();
        tiers.each_in(0, 1_000, |_, b| seen.push((b.start, b.n.load(Relaxed))));
        seen.sort();
        assert_eq!(seen, [(60, 7), (120, 1)]);
    }
}
