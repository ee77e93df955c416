//! User activity per hour: sign-on successes and failures, password resets and the
//! distinct users seen. What the PingOne-style `userActivities` report is built from.
//!
//! Where it sits: `pipeline::on_complete` classifies each finished exchange with
//! [`classify`] (the API's `login_url` / `password_reset_url` and their status sets) and
//! calls [`Users::record`] with the exchange's username (identity capture, `enforce`);
//! `reports::user_activities` folds hours into the requested buckets with
//! [`Users::fold`]; the store keeps one row per hour ([`HourImage`]).
//!
//! Distinct users are counted exactly (64-bit hashes of the names) while a bucket holds at
//! most [`EXACT_USERS`]; beyond that a bucket switches to a HyperLogLog estimate
//! (`cardinality-estimator`, 2^12 registers: about 1.6 % standard error), which still
//! merges across hours for day and week buckets.
//!
//! # No lock every worker takes
//! Every exchange with a username or a sign-on writes the hour it falls in, from every
//! worker. So an hour's counters are sharded per worker thread and summed when read, and
//! its distinct users are a set sharded by name hash ([`crate::sharded`]): a name always
//! lands in the same shard, so the shards hold disjoint sets whose sizes add up to the
//! exact count, and two workers take the same lock only for names that share a shard. An
//! hour that is over ([`Users::compact`]) is folded into one shard, so the hours kept for
//! months cost no more than before.

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use cardinality_estimator::CardinalityEstimator;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::config::UserEventStatuses;
use crate::sharded::Shards;

use super::tiers::floor;

/// Bucket length: the finest `sampleSize` (HOUR).
pub const HOUR: i64 = 3_600;
/// How long hours are kept (as long as the day tier of the other records).
pub const KEEP: i64 = 200 * 86_400;
/// Distinct users a bucket counts exactly before it switches to an estimate.
pub const EXACT_USERS: usize = 1_024;
/// Seed of the username hash. Fixed, so stored hours merge with new ones after a restart.
const SEED: u64 = 0x656e_666f_7263_6572;

type Estimator = CardinalityEstimator<u64>;

/// The hashes are already uniform: the set uses them as they are.
#[derive(Default, Clone, Copy)]
pub struct Identity(u64);

impl std::hash::Hasher for Identity {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }
}

pub type HashSetU64 = HashSet<u64, BuildHasherDefault<Identity>>;

/// What a finished exchange was, for user activity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    SignOnSuccess = 0,
    SignOnFailure = 1,
    PasswordReset = 2,
}

/// The event a request to `path` answered with `status` is, under an API's settings.
pub fn classify(
    path: &str,
    status: Option<u16>,
    login_url: Option<&str>,
    reset_url: Option<&str>,
    statuses: &UserEventStatuses,
) -> Option<Event> {
    let status = status?;
    let at = |url: Option<&str>| url.is_some_and(|u| same_path(path, u));
    if at(login_url) {
        if statuses.sign_on_success.contains(status) {
            return Some(Event::SignOnSuccess);
        }
        if statuses.sign_on_failure.contains(status) {
            return Some(Event::SignOnFailure);
        }
    }
    if at(reset_url) && statuses.password_reset.contains(status) {
        return Some(Event::PasswordReset);
    }
    None
}

pub use crate::config::api::same_path;

/// A count of distinct users: exact up to [`EXACT_USERS`], estimated beyond.
#[derive(Clone)]
pub enum Distinct {
    Exact(HashSetU64),
    Estimated(Box<Estimator>),
}

impl Default for Distinct {
    fn default() -> Self {
        Distinct::Exact(HashSetU64::default())
    }
}

impl std::fmt::Debug for Distinct {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Distinct::Exact(s) => write!(f, "Exact({})", s.len()),
            Distinct::Estimated(e) => write!(f, "Estimated({})", e.estimate()),
        }
    }
}

impl Distinct {
    /// The hash a username is counted by.
    pub fn hash(name: &str) -> u64 {
        wyhash::wyhash(name.as_bytes(), SEED)
    }

    pub fn insert(&mut self, hash: u64) {
        match self {
            Distinct::Exact(set) => {
                if set.insert(hash) && set.len() > EXACT_USERS {
                    self.estimate();
                }
            }
            Distinct::Estimated(est) => est.insert_hash(hash),
        }
    }

    /// Adds every user of `other` (a union: users in both count once).
    pub fn merge(&mut self, other: &Distinct) {
        match other {
            Distinct::Exact(set) => {
                for &h in set {
                    self.insert(h);
                }
            }
            Distinct::Estimated(theirs) => {
                if let Distinct::Estimated(mine) = self.estimate() {
                    mine.merge(theirs);
                }
            }
        }
    }

    /// Switches to the estimate (no-op when already there) and returns `self`.
    fn estimate(&mut self) -> &mut Distinct {
        if let Distinct::Exact(set) = self {
            let mut est = Box::new(Estimator::new());
            for &h in set.iter() {
                est.insert_hash(h);
            }
            *self = Distinct::Estimated(est);
        }
        self
    }

    pub fn count(&self) -> u64 {
        match self {
            Distinct::Exact(set) => set.len() as u64,
            Distinct::Estimated(est) => est.estimate() as u64,
        }
    }

    pub fn is_exact(&self) -> bool {
        matches!(self, Distinct::Exact(_))
    }

    /// Approximate heap bytes.
    fn memory(&self) -> usize {
        match self {
            Distinct::Exact(set) => set.capacity() * 9,
            Distinct::Estimated(est) => est.size_of(),
        }
    }
}

/// One hour's counts.
#[derive(Debug)]
struct Hour {
    counts: Shards<HourCounts>,
    users: UserSet,
}

/// One shard of an hour's counters.
#[derive(Debug, Default)]
struct HourCounts {
    /// Sign-on successes, failures, password resets, by [`Event`].
    events: [AtomicU64; 3],
    /// Bumped by every change (the store writes an hour again when the sum moved).
    changes: AtomicU64,
}

impl Hour {
    fn new() -> Hour {
        Hour {
            counts: Shards::default(),
            users: UserSet::new(),
        }
    }

    /// Sign-on successes, failures, password resets, and changes, over the shards.
    fn totals(&self) -> ([u64; 3], u64) {
        let mut events = [0; 3];
        let mut changes = 0;
        for shard in self.counts.iter() {
            for (sum, n) in events.iter_mut().zip(&shard.events) {
                *sum += n.load(Relaxed);
            }
            changes += shard.changes.load(Relaxed);
        }
        (events, changes)
    }

    /// Adds stored or merged counts (to this thread's shard, like any other write).
    fn add(&self, events: [u64; 3], changes: u64) {
        let shard = self.counts.local();
        for (n, add) in shard.events.iter().zip(events) {
            n.fetch_add(add, Relaxed);
        }
        shard.changes.fetch_add(changes, Relaxed);
    }

    /// Folds an hour that is over into one shard of counts and one of users: the same
    /// sums in far less memory.
    fn settle(&mut self) {
        if self.counts.iter().count() == 1 {
            return;
        }
        let (events, changes) = self.totals();
        let users = self.users.union();
        let exact = self.users.exact.load(Relaxed);
        self.counts = Shards::one(HourCounts {
            events: events.map(AtomicU64::new),
            changes: AtomicU64::new(changes),
        });
        self.users = UserSet {
            shards: Shards::one(Mutex::new(users)),
            exact: AtomicUsize::new(exact),
        };
    }
}

/// An hour's distinct users, sharded by name hash. The shards' sets are disjoint, so
/// `exact` (their sizes added up, bumped only for a name new to the hour) is the exact
/// count; once it passes [`EXACT_USERS`] each shard turns into an estimate as it is next
/// given a new name, and the union is an estimate from then on either way.
#[derive(Debug)]
struct UserSet {
    shards: Shards<Mutex<Distinct>>,
    exact: AtomicUsize,
}

impl UserSet {
    fn new() -> UserSet {
        UserSet {
            shards: Shards::default(),
            exact: AtomicUsize::new(0),
        }
    }

    fn insert(&self, hash: u64) {
        let mut shard = lock(self.shards.of_hash(hash));
        match &mut *shard {
            Distinct::Exact(set) => {
                if !set.insert(hash) {
                    return;
                }
                if self.exact.fetch_add(1, Relaxed) >= EXACT_USERS {
                    shard.estimate();
                }
            }
            Distinct::Estimated(est) => est.insert_hash(hash),
        }
    }

    /// Adds every user of `other`.
    fn merge(&self, other: &Distinct) {
        match other {
            Distinct::Exact(set) => set.iter().for_each(|&h| self.insert(h)),
            Distinct::Estimated(_) => {
                // The union is an estimate now: one shard takes it, the rest follow.
                self.exact.fetch_max(EXACT_USERS + 1, Relaxed);
                if let Some(shard) = self.shards.iter().next() {
                    lock(shard).merge(other);
                }
            }
        }
    }

    /// The hour's users, every shard together.
    fn union(&self) -> Distinct {
        let mut all = Distinct::default();
        for shard in self.shards.iter() {
            all.merge(&lock(shard));
        }
        all
    }

    /// Approximate heap bytes.
    fn memory(&self) -> usize {
        self.shards.footprint() + self.shards.iter().map(|s| lock(s).memory()).sum::<usize>()
    }
}

fn lock(shard: &Mutex<Distinct>) -> std::sync::MutexGuard<'_, Distinct> {
    // A panic elsewhere while holding the lock cannot leave the set half-written in a way
    // that matters for a count: keep using it.
    shard.lock().unwrap_or_else(|e| e.into_inner())
}

/// The counts of one bucket (an hour, or hours folded into a day or week).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    pub successes: u64,
    pub failures: u64,
    pub resets: u64,
    pub users: Distinct,
}

impl Counts {
    pub fn add(&mut self, other: &Counts) {
        self.successes += other.successes;
        self.failures += other.failures;
        self.resets += other.resets;
        self.users.merge(&other.users);
    }
}

/// An hour as the store keeps it.
#[derive(Debug, Serialize, Deserialize)]
pub struct HourImage {
    pub start: i64,
    pub successes: u64,
    pub failures: u64,
    pub resets: u64,
    pub changes: u64,
    pub users: UsersImage,
}

#[derive(Debug, Serialize, Deserialize)]
pub enum UsersImage {
    Exact(Vec<u64>),
    Estimated(Box<Estimator>),
}

/// Every hour's user activity, across APIs.
#[derive(Debug, Default)]
pub struct Users {
    hours: DashMap<i64, Hour>,
    /// Since start: sign-on successes, failures, password resets (Prometheus), per shard.
    totals: Shards<[AtomicU64; 3]>,
}

impl Users {
    pub fn new() -> Users {
        Users::default()
    }

    /// Records one finished exchange at unix time `time` (`now` decides retention).
    /// Does nothing (and takes no lock) for exchanges with neither an event nor a user.
    pub fn record(&self, time: i64, event: Option<Event>, username: Option<&str>, now: i64) {
        if event.is_none() && username.is_none() {
            return;
        }
        let start = floor(time, HOUR);
        if start + HOUR <= now - KEEP {
            return;
        }
        if let Some(e) = event {
            self.totals.local()[e as usize].fetch_add(1, Relaxed);
        }
        let apply = |h: &Hour| {
            let shard = h.counts.local();
            if let Some(e) = event {
                shard.events[e as usize].fetch_add(1, Relaxed);
            }
            if let Some(name) = username.filter(|n| !n.is_empty()) {
                h.users.insert(Distinct::hash(name));
            }
            shard.changes.fetch_add(1, Relaxed);
        };
        if let Some(h) = self.hours.get(&start) {
            apply(&h);
            return;
        }
        let h = self
            .hours
            .entry(start)
            .or_insert_with(Hour::new)
            .downgrade();
        apply(&h);
    }

    /// Calls `f(hour_start, counts)` for every kept hour starting in `[from, to)`, in no
    /// order.
    pub fn fold(&self, from: i64, to: i64, mut f: impl FnMut(i64, &Counts)) {
        for entry in self.hours.iter() {
            let start = *entry.key();
            if start < from || start >= to {
                continue;
            }
            let h = entry.value();
            let ([successes, failures, resets], _) = h.totals();
            let counts = Counts {
                successes,
                failures,
                resets,
                users: h.users.union(),
            };
            f(start, &counts);
        }
    }

    /// Drops hours older than [`KEEP`] at `now`, and folds the shards of hours that
    /// ended more than an hour ago (late exchanges still count, in one shard).
    pub fn compact(&self, now: i64) {
        self.hours.retain(|&start, h| {
            if start + 2 * HOUR <= now {
                h.settle();
            }
            start + HOUR > now - KEEP
        });
    }

    /// `(hour start, changes)` of every kept hour (the store's change detection).
    pub fn changes(&self) -> Vec<(i64, u64)> {
        self.hours
            .iter()
            .map(|e| (*e.key(), e.value().totals().1))
            .collect()
    }

    /// The stored form of the hour starting at `start`.
    pub fn image(&self, start: i64) -> Option<HourImage> {
        let h = self.hours.get(&start)?;
        // `changes` first: an update racing with this read is written again next time.
        let ([successes, failures, resets], changes) = h.totals();
        let users = match h.users.union() {
            Distinct::Exact(set) => UsersImage::Exact(set.into_iter().collect()),
            Distinct::Estimated(est) => UsersImage::Estimated(est),
        };
        Some(HourImage {
            start,
            successes,
            failures,
            resets,
            changes,
            users,
        })
    }

    /// Adds another node's stored hour to this one (a cluster-wide report): counts add,
    /// users are the union. False for a misaligned hour.
    pub fn merge_image(&self, image: HourImage) -> bool {
        if image.start.rem_euclid(HOUR) != 0 {
            return false;
        }
        let Some(h) = self.hours.get(&image.start) else {
            return self.restore(image);
        };
        h.add([image.successes, image.failures, image.resets], 0);
        let theirs = match image.users {
            UsersImage::Exact(list) => {
                let mut d = Distinct::default();
                for u in list {
                    d.insert(u);
                }
                d
            }
            UsersImage::Estimated(est) => Distinct::Estimated(est),
        };
        h.users.merge(&theirs);
        true
    }

    /// This node's hours starting in `[from, to)` plus `others` (other nodes' stored
    /// hours), summed into a new set for one report.
    pub fn with_others(&self, from: i64, to: i64, others: Vec<HourImage>) -> Users {
        let all = Users::new();
        for entry in self.hours.iter() {
            let start = *entry.key();
            if (from..to).contains(&start)
                && let Some(img) = self.image(start)
            {
                all.restore(img);
            }
        }
        for img in others {
            if (from..to).contains(&img.start) {
                all.merge_image(img);
            }
        }
        all
    }

    /// Puts a stored hour back (before traffic starts). False for a misaligned hour.
    pub fn restore(&self, image: HourImage) -> bool {
        if image.start.rem_euclid(HOUR) != 0 {
            return false;
        }
        // Restored while traffic is recorded: an hour recorded since the start gets the
        // stored one added in.
        if let Some(live) = self.hours.get(&image.start) {
            live.add([0; 3], 1);
            drop(live);
            return self.merge_image(image);
        }
        let users = match image.users {
            UsersImage::Exact(list) => {
                let mut d = Distinct::default();
                for h in list {
                    d.insert(h);
                }
                d
            }
            UsersImage::Estimated(est) => Distinct::Estimated(est),
        };
        let hour = Hour::new();
        hour.add(
            [image.successes, image.failures, image.resets],
            image.changes,
        );
        hour.users.merge(&users);
        self.hours.insert(image.start, hour);
        true
    }

    /// Since start: (sign-on successes, failures, password resets).
    pub fn totals(&self) -> (u64, u64, u64) {
        let mut sums = [0; 3];
        for shard in self.totals.iter() {
            for (sum, n) in sums.iter_mut().zip(shard) {
                *sum += n.load(Relaxed);
            }
        }
        let [a, b, c] = sums;
        (a, b, c)
    }

    /// Hours kept and approximate bytes, for status.
    pub fn memory(&self) -> (usize, usize) {
        let bytes = self
            .hours
            .iter()
            .map(|e| {
                let h = e.value();
                std::mem::size_of::<Hour>() + h.counts.footprint() + h.users.memory()
            })
            .sum();
        (self.hours.len(), bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::value::StatusSet;

    const T0: i64 = 1_700_000_000;

    #[test]
    fn events_follow_the_apis_urls_and_status_sets() {
        let s = UserEventStatuses::default();
        let c = |path, status| classify(path, Some(status), Some("/a/login"), Some("/a/reset"), &s);
        assert_eq!(c("/a/login", 200), Some(Event::SignOnSuccess));
        assert_eq!(c("/a/login/", 204), Some(Event::SignOnSuccess));
        assert_eq!(c("/a/login", 401), Some(Event::SignOnFailure));
        assert_eq!(c("/a/login", 403), Some(Event::SignOnFailure));
        assert_eq!(c("/a/login", 500), None);
        assert_eq!(c("/a/reset", 200), Some(Event::PasswordReset));
        assert_eq!(c("/a/reset", 400), None);
        assert_eq!(c("/a/other", 200), None);
        assert_eq!(classify("/a/login", None, Some("/a/login"), None, &s), None);
        let custom = UserEventStatuses {
            sign_on_success: StatusSet::of(&[302]),
            sign_on_failure: StatusSet::class(4),
            password_reset: StatusSet::of(&[202]),
        };
        let c = |path, status| {
            classify(
                path,
                Some(status),
                Some("/a/login"),
                Some("/a/reset"),
                &custom,
            )
        };
        assert_eq!(c("/a/login", 200), None);
        assert_eq!(c("/a/login", 302), Some(Event::SignOnSuccess));
        assert_eq!(c("/a/login", 429), Some(Event::SignOnFailure));
        assert_eq!(c("/a/reset", 200), None);
        assert_eq!(c("/a/reset", 202), Some(Event::PasswordReset));
    }

    #[test]
    fn hours_count_events_and_distinct_users() {
        let u = Users::new();
        u.record(T0, Some(Event::SignOnSuccess), Some("ann"), T0);
        u.record(T0 + 1, Some(Event::SignOnFailure), Some("ann"), T0);
        u.record(T0 + 2, Some(Event::PasswordReset), Some("bob"), T0);
        u.record(T0 + 3, None, None, T0);
        u.record(T0 + HOUR, None, Some("cy"), T0);
        let mut hours = Vec::new();
        u.fold(T0 - 2 * HOUR, T0 + 2 * HOUR, |s, c| {
            hours.push((s, c.clone()))
        });
        hours.sort_by_key(|(s, _)| *s);
        assert_eq!(hours.len(), 2);
        let first = &hours[0].1;
        assert_eq!(
            (
                first.successes,
                first.failures,
                first.resets,
                first.users.count()
            ),
            (1, 1, 1, 2)
        );
        assert_eq!(hours[1].1.users.count(), 1);
        assert_eq!(u.totals(), (1, 1, 1));
        let mut day = Counts::default();
        for (_, c) in &hours {
            day.add(c);
        }
        assert_eq!(day.users.count(), 3);
    }

    #[test]
    fn exact_up_to_the_cap_then_a_close_estimate_that_merges() {
        let mut d = Distinct::default();
        for i in 0..EXACT_USERS {
            d.insert(Distinct::hash(&format!("user{i}")));
            d.insert(Distinct::hash(&format!("user{i}")));
        }
        assert!(d.is_exact());
        assert_eq!(d.count(), EXACT_USERS as u64);
        for i in EXACT_USERS..20_000 {
            d.insert(Distinct::hash(&format!("user{i}")));
        }
        assert!(!d.is_exact());
        let n = d.count() as f64;
        assert!((n - 20_000.0).abs() / 20_000.0 < 0.05, "estimate {n}");
        // A union with an overlapping exact set and another estimate.
        let mut other = Distinct::default();
        for i in 15_000..25_000 {
            other.insert(Distinct::hash(&format!("user{i}")));
        }
        d.merge(&other);
        let n = d.count() as f64;
        assert!((n - 25_000.0).abs() / 25_000.0 < 0.05, "union estimate {n}");
    }

    /// Many workers recording the same users into one hour at once: events and distinct
    /// users are exact, up to the cap and across a settled hour; beyond the cap, one
    /// estimate. More threads than shards, so a count lost to a race would show.
    #[test]
    fn several_workers_count_users_and_events_exactly() {
        let threads = crate::sharded::count() * 3;
        let u = Users::new();
        // Every thread records every one of EXACT_USERS names, each from its own start.
        let names: Vec<String> = (0..EXACT_USERS).map(|i| format!("user{i}")).collect();
        let many: Vec<String> = (0..3 * EXACT_USERS).map(|i| format!("many{i}")).collect();
        std::thread::scope(|scope| {
            for th in 0..threads {
                let (u, names, many) = (&u, &names, &many);
                scope.spawn(move || {
                    for i in 0..names.len() {
                        let name = &names[(i + th * 97) % names.len()];
                        u.record(T0, Some(Event::SignOnSuccess), Some(name), T0);
                    }
                    for name in many.iter().skip(th % 3).step_by(3) {
                        u.record(T0 + HOUR, Some(Event::SignOnFailure), Some(name), T0);
                    }
                });
            }
        });
        let hours = |u: &Users| {
            let mut hours = Vec::new();
            u.fold(T0 - HOUR, T0 + 2 * HOUR, |s, c| hours.push((s, c.clone())));
            hours.sort_by_key(|(s, _)| *s);
            hours
        };
        let check = |u: &Users| {
            let h = hours(u);
            let recorded = (threads * EXACT_USERS) as u64;
            let first = &h[0].1;
            assert!(first.users.is_exact());
            assert_eq!(
                (first.successes, first.users.count()),
                (recorded, EXACT_USERS as u64)
            );
            let second = &h[1].1;
            assert_eq!(second.failures, recorded);
            assert!(!second.users.is_exact());
            let n = second.users.count() as f64;
            assert!((n - 3_072.0).abs() / 3_072.0 < 0.05, "estimate {n}");
            assert_eq!(u.totals().0, recorded);
            let changes: u64 = u.changes().iter().map(|(_, c)| c).sum();
            assert_eq!(changes, recorded + second.failures);
        };
        check(&u);
        // Folded into one shard once over: the same counts.
        u.compact(T0 + 4 * HOUR);
        check(&u);
    }

    #[test]
    fn images_round_trip_and_retention_drops_old_hours() {
        let u = Users::new();
        for i in 0..2_000 {
            u.record(T0, Some(Event::SignOnSuccess), Some(&format!("u{i}")), T0);
        }
        u.record(T0 + HOUR, None, Some("x"), T0);
        let back = Users::new();
        for (start, _) in u.changes() {
            let image = u.image(start).unwrap();
            let bytes = postcard::to_stdvec(&image).unwrap();
            assert!(back.restore(postcard::from_bytes(&bytes).unwrap()));
        }
        let sum = |u: &Users| {
            let mut c = Counts::default();
            u.fold(i64::MIN / 2, i64::MAX / 2, |_, h| c.add(h));
            (c.successes, c.users.count())
        };
        assert_eq!(sum(&u), sum(&back));
        // A name seen before the restart is not counted again after it.
        let before = sum(&back).1;
        back.record(T0 + HOUR, None, Some("x"), T0);
        assert_eq!(sum(&back).1, before);
        back.compact(T0 + KEEP + 2 * HOUR);
        assert_eq!(back.changes().len(), 0);
        back.record(T0, None, Some("late"), T0 + KEEP + 2 * HOUR);
        assert_eq!(back.changes().len(), 0);
    }
}
