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

use std::collections::HashSet;
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Mutex, MutexGuard};

use cardinality_estimator::CardinalityEstimator;
use dashmap::DashMap;
use serde::{Deserialize, Serialize};

use crate::config::UserEventStatuses;

use super::floor;

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
#[derive(Debug, Default)]
struct Hour {
    successes: AtomicU64,
    failures: AtomicU64,
    resets: AtomicU64,
    /// Bumped by every change (the store writes an hour again when it moved).
    changes: AtomicU64,
    users: Mutex<Distinct>,
}

impl Hour {
    fn users(&self) -> MutexGuard<'_, Distinct> {
        // A panic elsewhere while holding the lock cannot leave the set half-written in a
        // way that matters for a count: keep using it.
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }
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
    /// Since start: sign-on successes, failures, password resets (Prometheus).
    totals: [AtomicU64; 3],
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
            self.totals[e as usize].fetch_add(1, Relaxed);
        }
        let apply = |h: &Hour| {
            match event {
                Some(Event::SignOnSuccess) => h.successes.fetch_add(1, Relaxed),
                Some(Event::SignOnFailure) => h.failures.fetch_add(1, Relaxed),
                Some(Event::PasswordReset) => h.resets.fetch_add(1, Relaxed),
                None => 0,
            };
            if let Some(name) = username.filter(|n| !n.is_empty()) {
                h.users().insert(Distinct::hash(name));
            }
            h.changes.fetch_add(1, Relaxed);
        };
        if let Some(h) = self.hours.get(&start) {
            apply(&h);
            return;
        }
        let h = self.hours.entry(start).or_default().downgrade();
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
            let counts = Counts {
                successes: h.successes.load(Relaxed),
                failures: h.failures.load(Relaxed),
                resets: h.resets.load(Relaxed),
                users: h.users().clone(),
            };
            f(start, &counts);
        }
    }

    /// Drops hours older than [`KEEP`] at `now`.
    pub fn compact(&self, now: i64) {
        self.hours.retain(|&start, _| start + HOUR > now - KEEP);
    }

    /// `(hour start, changes)` of every kept hour (the store's change detection).
    pub fn changes(&self) -> Vec<(i64, u64)> {
        self.hours
            .iter()
            .map(|e| (*e.key(), e.value().changes.load(Relaxed)))
            .collect()
    }

    /// The stored form of the hour starting at `start`.
    pub fn image(&self, start: i64) -> Option<HourImage> {
        let h = self.hours.get(&start)?;
        // `changes` first: an update racing with this read is written again next time.
        let changes = h.changes.load(Relaxed);
        let users = match &*h.users() {
            Distinct::Exact(set) => UsersImage::Exact(set.iter().copied().collect()),
            Distinct::Estimated(est) => UsersImage::Estimated(est.clone()),
        };
        Some(HourImage {
            start,
            successes: h.successes.load(Relaxed),
            failures: h.failures.load(Relaxed),
            resets: h.resets.load(Relaxed),
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
        h.successes.fetch_add(image.successes, Relaxed);
        h.failures.fetch_add(image.failures, Relaxed);
        h.resets.fetch_add(image.resets, Relaxed);
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
        h.users().merge(&theirs);
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
            live.changes.fetch_add(1, Relaxed);
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
        self.hours.insert(
            image.start,
            Hour {
                successes: AtomicU64::new(image.successes),
                failures: AtomicU64::new(image.failures),
                resets: AtomicU64::new(image.resets),
                changes: AtomicU64::new(image.changes),
                users: Mutex::new(users),
            },
        );
        true
    }

    /// Since start: (sign-on successes, failures, password resets).
    pub fn totals(&self) -> (u64, u64, u64) {
        let [a, b, c] = &self.totals;
        (a.load(Relaxed), b.load(Relaxed), c.load(Relaxed))
    }

    /// Hours kept and approximate bytes, for status.
    pub fn memory(&self) -> (usize, usize) {
        let bytes = self
            .hours
            .iter()
            .map(|e| std::mem::size_of::<Hour>() + e.value().users().memory())
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
