//! Recording: the only writer of the counters every report reads.
//!
//! [`Metrics::record`] is the one sink: `pipeline::on_complete` hands it each finished
//! exchange once, and it records it everywhere it counts: the API's [`ApiRecorder`]
//! (`api_metrics`, in the bucket of its time), client and API activity ([`activity`]), sign-on
//! events ([`users`]), Prometheus ([`prom`]) and the IoAs the exchange raised ([`ioas`] and
//! attack management). Nothing else writes here; reports read through snapshots.
//!
//! # Time buckets
//! | tier | bucket | holds | so a window is exact to |
//! |---|---|---|---|
//! | 0 | 1 minute | the last 25 hours | the minute, for the last day |
//! | 1 | 1 hour | up to 8 days back | the hour, for the last week |
//! | 2 | 1 day (UTC) | up to 200 days back | the day, for six months |
//!
//! A request goes to the finest tier that still holds its time. [`ApiRecorder::compact`]
//! (run every minute) moves buckets that have aged out of a tier into the next one, and
//! drops day buckets older than 200 days. Every request lives in exactly one bucket at a
//! time, so a report that sums the buckets whose start lies in its window counts each
//! request once; a request exactly on a bucket boundary belongs to the bucket that starts
//! there.
//!
//! # Bounded memory
//! Distinct values are capped per API per bucket (`metrics_max_sessions`, `_ips`,
//! `_paths`, `_user_agents`, `_combinations` in `ase.conf`; defaults in [`Caps`]) and the
//! detail an API keeps in all its buckets together is capped by its `api_memory_size`
//! (default `metrics_api_memory`, 128 MB). A request whose value does not fit is still
//! counted in every total; its detail is folded into an `(other)` entry and counted in the
//! bucket's overflow counters.
//!
//! Operational metrics for Prometheus are kept apart, in [`prom`]. Across APIs,
//! [`activity`] keeps per-client activity (client activity, attack management) and
//! [`users`] the hourly sign-ons, password resets and active users (`userActivities`).
//!
//! # Concurrency
//! Buckets live in one `DashMap` per tier; every counter is an atomic incremented through
//! a read guard, and no guard is held across another call on the same map (or across an
//! `.await`: nothing here is async). Compaction takes a bucket out of its tier (the
//! shard's write lock waits for writers inside it) and merges it into the next tier under
//! a per-API lock that reports also take, so a report never sees a bucket twice or not
//! at all.

pub mod activity;
pub mod agent;
pub mod bucket;
pub mod ioas;
mod legacy;
pub mod prom;
pub mod snapshot;
pub mod tiers;
pub mod users;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};

pub use agent::{Agent, Browser, Os};
pub use bucket::{Budget, Caps, Image, Observation, Overflow};
pub use snapshot::Snapshot;
pub use tiers::TierSpec;

use bucket::Bucket;
use tiers::{Tiers, Timed};

use crate::config::ApiDef;
use crate::vocab::{ClientId, Exchange, Upstream};

pub const TIERS: [TierSpec; 3] = [
    TierSpec {
        name: "minute",
        span: 60,
        keep: 25 * 3_600,
    },
    TierSpec {
        name: "hour",
        span: 3_600,
        keep: 8 * 86_400,
    },
    TierSpec {
        name: "day",
        span: 86_400,
        keep: 200 * 86_400,
    },
];

pub use crate::vocab::unix_secs;

/// What the sink needs of the API an exchange matched: its definition (sign-on paths and
/// statuses) and its handles here, which the API table resolved once.
#[derive(Debug, Clone, Copy)]
pub struct Handles<'a> {
    pub def: &'a ApiDef,
    pub recorder: &'a ApiRecorder,
    pub prom: &'a prom::ApiProm,
}

/// Every API's recorder.
#[derive(Debug)]
pub struct Metrics {
    /// Per-client and per-API activity, across APIs.
    pub activity: activity::Activity,
    /// Sign-ons, password resets and active users per hour (`userActivities`).
    pub users: users::Users,
    /// Operational metrics (`GET /metrics`).
    pub prom: Arc<prom::Prom>,
    /// The IoAs raised lately, and counts since start.
    pub ioas: ioas::IoaLog,
    caps: Caps,
    default_budget: u64,
    recorders: Mutex<HashMap<String, Arc<ApiRecorder>>>,
    /// The records part of the memory budget, shared by every API's recorder.
    pub records_memory: Arc<crate::memory::Pool>,
}

impl Metrics {
    pub fn new(
        caps: Caps,
        default_budget: u64,
        activity: activity::ActivityCaps,
        prom: Arc<prom::Prom>,
    ) -> Metrics {
        Metrics::within(
            caps,
            default_budget,
            activity,
            Arc::new(crate::memory::Pool::new("records", u64::MAX)),
            prom,
        )
    }

    /// As [`Metrics::new`], every API's detail also within `records` (the records part
    /// of the memory budget).
    pub fn within(
        caps: Caps,
        default_budget: u64,
        activity: activity::ActivityCaps,
        records: Arc<crate::memory::Pool>,
        prom: Arc<prom::Prom>,
    ) -> Metrics {
        Metrics {
            activity: activity::Activity::new(activity),
            users: users::Users::new(),
            prom,
            ioas: ioas::IoaLog::default(),
            caps,
            default_budget,
            recorders: Mutex::new(HashMap::new()),
            records_memory: records,
        }
    }

    fn recorders(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<ApiRecorder>>> {
        self.recorders.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The one sink: records a finished exchange everywhere it counts, once. `api` is the
    /// API it matched (its definition and its handles here).
    ///
    /// `api_metrics` counts every answer, as ASE's report does; activity, sign-on events
    /// and detection learn about clients, and enforcer's own answers (a block, a decoy, a
    /// 429, a proxy failure) say nothing about them: those see only the backend's status.
    pub fn record<A>(&self, api: Handles<'_>, ex: &Exchange<A>) {
        let time = unix_secs(ex.received_at);
        let latency_us = ex
            .latency
            .map_or(0, |l| u64::try_from(l.as_micros()).unwrap_or(u64::MAX));
        // "Now" for the buckets is when the exchange ended, from its own times.
        let agent = api.recorder.record_at(
            &Observation {
                time,
                method: &ex.method,
                path: ex.uri.path(),
                client_ip: ex.client_ip,
                session: ex.session.as_deref(),
                user_agent: ex.user_agent.as_ref().and_then(|v| v.to_str().ok()),
                status: ex.status.map(|s| s.as_u16()),
                server: ex.upstream.as_ref().map(Upstream::addr),
                request_bytes: ex.request_bytes,
                response_bytes: ex.response_bytes,
                latency_us,
            },
            unix_secs(ex.completed_at()),
        );
        let backend_status = ex.backend_status().map(|s| s.as_u16());
        self.activity.record(
            &activity::Request {
                time,
                api: &api.def.id,
                method: ex.method.as_str(),
                path: ex.uri.path(),
                status: backend_status,
                os: agent.os,
                ip: ex.client_ip,
                token: ex.token.as_deref(),
                cookie: ex.session.as_deref(),
                username: ex.username.as_deref(),
                api_key: ex.api_key.as_ref().map(|k| k.value.as_str()),
            },
            // The request's own time decides its bucket; its tier cannot have aged out
            // while it ran.
            time,
        );
        let event = users::classify(
            ex.uri.path(),
            backend_status,
            api.def.login_url.as_deref(),
            api.def.password_reset_url.as_deref(),
            &api.def.user_events,
        );
        self.users.record(time, event, ex.username.as_deref(), time);
        api.prom.observe(ex);
        for r in &ex.raised {
            let word = match &r.client {
                ClientId::Ip(ip) => activity::WordRef::Ip(*ip),
                ClientId::Token(v)
                | ClientId::Cookie(v)
                | ClientId::ApiKey(v)
                | ClientId::Username(v) => activity::WordRef::Text(v),
            };
            self.activity
                .record_ioa((r.client.kind(), word), &r.api, r.ioa, r.at);
            self.ioas.push(r.clone());
        }
    }

    /// The recorder of `api`, created on first use; the same one across reloads.
    pub fn recorder(&self, api: &ApiDef) -> Arc<ApiRecorder> {
        let budget = api.api_memory_size.unwrap_or(self.default_budget);
        self.recorders()
            .entry(api.id.clone())
            .or_insert_with(|| Arc::new(self.new_recorder(&api.id, budget)))
            .clone()
    }

    pub fn get(&self, api_id: &str) -> Option<Arc<ApiRecorder>> {
        self.recorders().get(api_id).cloned()
    }

    /// The recorder of `api_id` for restoring stored data, created with the default
    /// budget if that API is no longer defined (its reports stay readable until retention
    /// drops them).
    pub fn for_restore(&self, api_id: &str) -> Arc<ApiRecorder> {
        self.recorders()
            .entry(api_id.to_string())
            .or_insert_with(|| Arc::new(self.new_recorder(api_id, self.default_budget)))
            .clone()
    }

    fn new_recorder(&self, api_id: &str, budget: u64) -> ApiRecorder {
        let mut r = ApiRecorder::new(api_id, self.caps, budget);
        r.budget = Budget::within(budget, self.records_memory.clone());
        r
    }

    /// Every recorder.
    pub fn all(&self) -> Vec<Arc<ApiRecorder>> {
        self.recorders().values().cloned().collect()
    }

    /// Moves aged buckets down the tiers, for every API and for the activity records.
    pub fn compact(&self, now: i64) {
        self.activity.compact(now);
        self.users.compact(now);
        let all: Vec<Arc<ApiRecorder>> = self.recorders().values().cloned().collect();
        for r in all {
            r.compact(now);
        }
    }
}

/// One API's time buckets.
#[derive(Debug)]
pub struct ApiRecorder {
    pub api_id: String,
    tiers: Tiers<Bucket, 3>,
    caps: Caps,
    budget: Budget,
    /// Classifications of user agents, shared by the buckets.
    agents: agent::Cache,
    /// Requests too old for any tier when they completed.
    expired: AtomicU64,
}

impl ApiRecorder {
    pub fn new(api_id: &str, caps: Caps, budget: u64) -> ApiRecorder {
        ApiRecorder {
            api_id: api_id.to_string(),
            tiers: Tiers::new(&TIERS),
            caps,
            budget: Budget::new(budget),
            agents: agent::Cache::new(),
            expired: AtomicU64::new(0),
        }
    }

    /// Records one finished exchange as of `now` (unix seconds); returns the classes of its
    /// user agent.
    pub fn record_at(&self, obs: &Observation<'_>, now: i64) -> Agent {
        let Some((tier, start)) = self.tiers.place(obs.time, now) else {
            self.expired.fetch_add(1, Relaxed);
            return obs.user_agent.map_or(Agent::UNKNOWN, |u| self.agents.of(u));
        };
        self.tiers.with(
            tier,
            start,
            |start| Bucket::new(start, &self.caps),
            |b| b.add(obs, &self.budget, &self.agents),
        )
    }

    /// Moves every bucket that has aged out of its tier into the next one (or drops it
    /// past the last). Safe to run while requests are recorded and reports read.
    pub fn compact(&self, now: i64) {
        self.tiers.compact(
            now,
            |start| Bucket::new(start, &self.caps),
            |leaving| leaving.release(&self.budget),
            |into, from| into.merge_from(from, &self.budget),
        );
    }

    /// Sums the buckets whose start lies in `[from, to)` (unix seconds).
    pub fn snapshot(&self, from: i64, to: i64) -> Snapshot {
        let mut snap = Snapshot::default();
        self.tiers.each_in(from, to, |_, b| snap.add_bucket(b));
        snap
    }

    /// As [`ApiRecorder::snapshot`], plus other nodes' bucket images (tier, image) whose
    /// start lies in the window (a cluster-wide report).
    pub fn snapshot_with(&self, from: i64, to: i64, others: Vec<(u8, bucket::Image)>) -> Snapshot {
        let mut snap = self.snapshot(from, to);
        let scratch = Budget::new(u64::MAX);
        for (tier, image) in others {
            if usize::from(tier) < TIERS.len() && (from..to).contains(&image.start) {
                snap.add_bucket(&Bucket::from_image(image, &self.caps, &scratch));
            }
        }
        snap
    }

    /// Requests per minute bucket starting in `[from, to)`: (bucket start, requests), in
    /// no order. Minute buckets are kept for the last 25 hours; older ones have rolled up.
    pub fn minutes(&self, from: i64, to: i64) -> Vec<(i64, u64)> {
        let mut out = Vec::new();
        self.tiers.each_in(from, to, |tier, b| {
            if tier == 0 {
                out.push((b.start, b.requests.load(Relaxed)));
            }
        });
        out
    }

    /// Visits every bucket (tier index, bucket) under the roll-up lock, so no bucket is
    /// seen twice or missed while compaction moves one.
    pub fn each_bucket(&self, f: impl FnMut(usize, &Bucket)) {
        self.tiers.each(f);
    }

    /// Puts back a stored bucket. The store is restored while traffic is already being
    /// recorded: a bucket recorded since the start gets the stored one merged in. False for
    /// a tier that does not exist.
    pub fn restore(&self, tier: usize, image: bucket::Image) -> bool {
        let start = image.start;
        self.tiers.restore(tier, start, |live| match live {
            Some(live) => {
                let stored = Bucket::from_image(image, &self.caps, &Budget::new(u64::MAX));
                live.merge_from(&stored, &self.budget);
                None
            }
            None => Some(Bucket::from_image(image, &self.caps, &self.budget)),
        })
    }

    /// Buckets held per tier (for status and tests).
    pub fn bucket_counts(&self) -> [usize; 3] {
        self.tiers.counts()
    }

    /// Requests that were too old for any tier.
    pub fn expired(&self) -> u64 {
        self.expired.load(Relaxed)
    }

    /// Requests whose detail was folded into `(other)`, per dimension, since start.
    pub fn dropped(&self) -> [(&'static str, u64); 5] {
        std::array::from_fn(|i| (bucket::DIMENSIONS[i], self.budget.dropped[i].load(Relaxed)))
    }

    /// Detail memory in use and its limit, in bytes.
    pub fn memory(&self) -> (u64, u64) {
        (self.budget.used(), self.budget.limit())
    }
}

impl Timed for Bucket {
    fn start(&self) -> i64 {
        self.start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::Method;

    const T0: i64 = 1_700_000_040; // a minute boundary (divisible by 60)

    fn obs<'a>(
        time: i64,
        method: &'a Method,
        path: &'a str,
        session: Option<&'a str>,
    ) -> Observation<'a> {
        Observation {
            time,
            method,
            path,
            client_ip: "10.0.0.1".parse().unwrap(),
            session,
            user_agent: Some("DOWNLOAD"),
            status: Some(200),
            server: Some("127.0.0.1:3000"),
            request_bytes: 10,
            response_bytes: 20,
            latency_us: 5,
        }
    }

    fn recorder() -> ApiRecorder {
        ApiRecorder::new("a", Caps::default(), 128 << 20)
    }

    #[test]
    fn a_request_on_a_boundary_counts_once() {
        let r = recorder();
        let get = Method::GET;
        r.record_at(&obs(T0 - 1, &get, "/a", None), T0 + 10);
        r.record_at(&obs(T0, &get, "/a", None), T0 + 10);
        r.record_at(&obs(T0 + 59, &get, "/a", None), T0 + 10);
        r.record_at(&obs(T0 + 60, &get, "/a", None), T0 + 70);
        assert_eq!(r.snapshot(T0 - 60, T0).requests, 1);
        assert_eq!(r.snapshot(T0, T0 + 60).requests, 2);
        assert_eq!(r.snapshot(T0 + 60, T0 + 120).requests, 1);
        // Adjacent windows add up to the whole.
        let whole = r.snapshot(T0 - 60, T0 + 120).requests;
        let parts = r.snapshot(T0 - 60, T0).requests
            + r.snapshot(T0, T0 + 60).requests
            + r.snapshot(T0 + 60, T0 + 120).requests;
        assert_eq!((whole, parts), (4, 4));
    }

    #[test]
    fn roll_up_keeps_every_count_and_the_details() {
        let r = recorder();
        let (get, post) = (Method::GET, Method::POST);
        // Sixty minutes of traffic in one hour, two sessions and anonymous requests.
        let hour = tiers::floor(T0, 3_600);
        for m in 0..60 {
            let t = hour + m * 60 + 5;
            r.record_at(&obs(t, &get, "/a/x", Some("s1")), t);
            r.record_at(&obs(t, &post, "/a/y", Some("s2")), t);
            r.record_at(&obs(t, &get, "/a/z", None), t);
        }
        assert_eq!(r.bucket_counts(), [60, 0, 0]);
        let before = r.snapshot(hour, hour + 3_600);

        // A day later the minutes roll into the hour; two weeks later into the day.
        r.compact(hour + 26 * 3_600);
        assert_eq!(r.bucket_counts(), [0, 1, 0]);
        let after = r.snapshot(hour, hour + 3_600);
        assert_eq!(after, before);
        assert_eq!(after.requests, 180);
        assert_eq!(after.sessions.len(), 2);
        assert_eq!(after.sessions["s1"].requests, 60);
        assert_eq!(after.no_session_paths["/a/z"].requests, 60);

        r.compact(hour + 14 * 86_400);
        assert_eq!(r.bucket_counts(), [0, 0, 1]);
        let day = tiers::floor(hour, 86_400);
        assert_eq!(r.snapshot(day, day + 86_400), before);

        // Past 200 days the data is gone, and so is its memory.
        r.compact(hour + 201 * 86_400);
        assert_eq!(r.bucket_counts(), [0, 0, 0]);
        assert_eq!(r.memory().0, 0);
    }

    #[test]
    fn late_records_go_to_the_tier_that_holds_their_time() {
        let r = recorder();
        let get = Method::GET;
        let now = T0 + 3 * 86_400;
        r.record_at(&obs(T0, &get, "/a", None), now);
        assert_eq!(r.bucket_counts(), [0, 1, 0]);
        r.record_at(&obs(T0, &get, "/a", None), T0 + 300 * 86_400);
        assert_eq!(r.expired(), 1);
    }

    #[test]
    fn caps_fold_the_excess_into_other_and_keep_totals() {
        let caps = Caps {
            sessions: 2,
            ips: 1,
            paths: 2,
            user_agents: 1,
            combinations: 100,
        };
        let r = ApiRecorder::new("a", caps, 128 << 20);
        let get = Method::GET;
        for i in 0..10 {
            let session = format!("s{i}");
            let path = format!("/a/{i}");
            let mut o = obs(T0, &get, &path, Some(&session));
            let ip: std::net::IpAddr = format!("10.0.0.{i}").parse().unwrap();
            o.client_ip = ip;
            r.record_at(&o, T0);
        }
        let s = r.snapshot(T0, T0 + 60);
        assert_eq!(s.requests, 10);
        assert_eq!(s.sessions.len(), 3, "two sessions and (other)");
        assert_eq!(s.sessions["(other)"].requests, 8);
        assert_eq!(s.ips.get(&None), Some(&9), "nine IPs beyond the cap of one");
        assert_eq!(s.overflow.sessions, 8);
        assert_eq!(s.overflow.paths, 8);
    }

    #[test]
    fn a_stored_bucket_restores_exactly() {
        let caps = Caps {
            sessions: 3,
            ..Caps::default()
        };
        let r = ApiRecorder::new("a", caps, 128 << 20);
        let (get, post) = (Method::GET, Method::POST);
        for i in 0..50 {
            let s = format!("s{}", i % 5);
            let p = format!("/a/{}", i % 7);
            let mut o = obs(
                T0 + i,
                if i % 2 == 0 { &get } else { &post },
                &p,
                (i % 3 != 0).then_some(s.as_str()),
            );
            o.user_agent = (i % 4 != 0).then_some("Mozilla/5.0 (Windows NT 10.0; Win64; x64)");
            r.record_at(&o, T0 + 60);
        }
        let mut images = Vec::new();
        r.each_bucket(|tier, b| images.push((tier, b.image())));
        let copy = ApiRecorder::new("a", caps, 128 << 20);
        for (tier, img) in images {
            let bytes = postcard::to_allocvec(&img).unwrap();
            assert!(copy.restore(tier, postcard::from_bytes(&bytes).unwrap()));
        }
        assert_eq!(copy.snapshot(T0, T0 + 120), r.snapshot(T0, T0 + 120));
        assert_eq!(
            copy.memory().0,
            r.memory().0,
            "the budget is charged the same"
        );
        // It keeps counting where it left off.
        copy.record_at(&obs(T0, &get, "/a/0", Some("s1")), T0 + 60);
        assert_eq!(copy.snapshot(T0, T0 + 120).requests, 51);
    }

    #[test]
    fn the_memory_budget_bounds_detail() {
        let r = ApiRecorder::new("a", Caps::default(), 16 * 1024);
        let get = Method::GET;
        for i in 0..5_000 {
            let session = format!("session-{i}");
            r.record_at(&obs(T0, &get, "/a", Some(&session)), T0);
        }
        let (used, limit) = r.memory();
        assert!(used < limit + 1024, "used {used} of {limit}");
        let s = r.snapshot(T0, T0 + 60);
        assert_eq!(s.requests, 5_000);
        assert!(s.overflow.sessions > 4_000);
    }
}
