//! One time bucket of one API's records: the counters the reports read.
//!
//! A bucket keeps exact totals (requests, 2xx, no-session requests, bytes, latency) in
//! atomics, a count per operating system ([`Os`], the report's `device`), and one
//! [`Interner`] per dimension (method, client IP, session, path, user agent, server): a
//! `DashMap` from the value to a small id and an atomic count. A user agent is classified
//! ([`Agent`]: browser group and OS) once, when the bucket first sees it, and the answer
//! kept beside it. The per-session and per-path details of the reports come from one more
//! map, from the [`Combo`] of a request's ids and classes to an atomic count, so recording
//! a request costs one lookup per dimension and one for its combination, each through a
//! read guard unless the value is new.
//!
//! Distinct values are capped per bucket ([`Caps`]) and per API ([`Budget`], from the API's
//! `api_memory_size`). A value that does not fit is counted under a shared overflow id:
//! totals stay exact, the detail of the excess is folded into `(other)`.

use std::borrow::Borrow;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering::Relaxed};

use dashmap::DashMap;
use http::Method;

use super::agent::{self, Agent, Browser, Os};

/// The facts of one finished exchange, as recorded.
#[derive(Debug, Clone)]
pub struct Observation<'a> {
    /// Unix seconds when the request arrived.
    pub time: i64,
    pub method: &'a Method,
    /// The path without the query.
    pub path: &'a str,
    pub client_ip: IpAddr,
    /// The value of the API's session cookie.
    pub session: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    /// The status the client got; `None` if it got none.
    pub status: Option<u16>,
    /// `host:port` of the backend reached (`0.0.0.0` in sideband mode); `None` if none was.
    pub server: Option<&'a str>,
    pub request_bytes: u64,
    pub response_bytes: u64,
    pub latency_us: u64,
}

pub(crate) type Hasher = foldhash::fast::RandomState;
pub(crate) type Map<K, V> = DashMap<K, V, Hasher>;

/// The id of a value that was not recorded (no session, no user agent, no server).
pub const ABSENT: u32 = u32::MAX - 1;
/// The id shared by every value beyond a cap.
pub const OVERFLOW: u32 = u32::MAX;

/// Rough heap cost of one map entry beyond its key, for the memory budget.
const ENTRY_OVERHEAD: i64 = 64;

/// Per-bucket caps on distinct values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    pub sessions: u32,
    pub ips: u32,
    pub paths: u32,
    pub user_agents: u32,
    pub combinations: u32,
}

impl Default for Caps {
    fn default() -> Caps {
        Caps {
            sessions: 10_000,
            ips: 10_000,
            paths: 2_000,
            user_agents: 1_000,
            combinations: 50_000,
        }
    }
}

/// Methods and servers are few; these caps only stop a flood of made-up ones.
const METHOD_CAP: u32 = 64;
const SERVER_CAP: u32 = 1_024;

/// The dimensions whose detail can be dropped, in [`Budget::dropped`] order.
pub const DIMENSIONS: [&str; 5] = ["session", "ip", "path", "user_agent", "combination"];

/// An API's memory budget for recorded detail, shared by all its buckets, with the count
/// of requests whose detail was folded into `(other)` per dimension since start.
#[derive(Debug)]
pub struct Budget {
    used: AtomicI64,
    limit: i64,
    pub dropped: [AtomicU64; 5],
    /// The records part of the process's memory budget, shared by every API.
    shared: Option<Arc<crate::memory::Pool>>,
}

impl Budget {
    pub fn new(limit: u64) -> Budget {
        Budget {
            used: AtomicI64::new(0),
            limit: i64::try_from(limit).unwrap_or(i64::MAX),
            dropped: std::array::from_fn(|_| AtomicU64::new(0)),
            shared: None,
        }
    }

    /// A budget of `limit` that also draws on `shared`.
    pub fn within(limit: u64, shared: Arc<crate::memory::Pool>) -> Budget {
        Budget {
            shared: Some(shared),
            ..Budget::new(limit)
        }
    }

    fn has_room(&self) -> bool {
        self.used.load(Relaxed) < self.limit && self.shared.as_ref().is_none_or(|s| s.has_room())
    }

    fn add(&self, bytes: i64) {
        self.used.fetch_add(bytes, Relaxed);
        if let Some(s) = &self.shared {
            s.take(bytes);
        }
    }

    pub fn used(&self) -> u64 {
        self.used.load(Relaxed).max(0) as u64
    }

    pub fn limit(&self) -> u64 {
        self.limit as u64
    }
}

/// A value's id and count, and whatever was computed once for it.
#[derive(Debug)]
pub struct Slot<P> {
    pub id: u32,
    pub count: AtomicU64,
    pub payload: P,
}

/// Values of one dimension in one bucket, each with an id and a count.
#[derive(Debug)]
pub struct Interner<K: Eq + Hash, P = ()> {
    map: Map<K, Slot<P>>,
    next: AtomicU32,
    cap: u32,
    overflow: AtomicU64,
    /// The index in [`DIMENSIONS`] whose drop counter this interner feeds.
    dim: Option<usize>,
}

impl<K: Eq + Hash, P: Copy> Interner<K, P> {
    fn new(cap: u32, dim: Option<usize>) -> Self {
        Interner {
            map: Map::with_hasher(Hasher::default()),
            next: AtomicU32::new(0),
            cap,
            overflow: AtomicU64::new(0),
            dim,
        }
    }

    fn dropped(&self, n: u64, budget: &Budget) {
        self.overflow.fetch_add(n, Relaxed);
        if let Some(shared) = budget.shared.as_ref().filter(|s| !s.has_room()) {
            shared.overflowed();
        }
        if let Some(d) = self.dim {
            budget.dropped[d].fetch_add(n, Relaxed);
        }
    }

    /// Adds `n` to `key`'s count, inserting it (built by `make`) if it is new and fits.
    /// Returns its id and payload, or [`OVERFLOW`] and `None` when it does not fit.
    fn touch<Q>(
        &self,
        key: &Q,
        n: u64,
        owner: &Bucket,
        budget: &Budget,
        make: impl FnOnce() -> (K, P, usize),
    ) -> (u32, Option<P>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        if let Some(slot) = self.map.get(key) {
            slot.count.fetch_add(n, Relaxed);
            return (slot.id, Some(slot.payload));
        }
        if self.next.load(Relaxed) >= self.cap || !budget.has_room() {
            self.dropped(n, budget);
            return (OVERFLOW, None);
        }
        let id = self.next.fetch_add(1, Relaxed);
        if id >= self.cap {
            self.dropped(n, budget);
            return (OVERFLOW, None);
        }
        let (key, payload, heap) = make();
        let slot = self.map.entry(key).or_insert_with(|| {
            owner.charge(budget, heap as i64 + ENTRY_OVERHEAD);
            Slot {
                id,
                count: AtomicU64::new(0),
                payload,
            }
        });
        slot.count.fetch_add(n, Relaxed);
        (slot.id, Some(slot.payload))
    }

    /// Requests whose value did not fit.
    pub fn overflow(&self) -> u64 {
        self.overflow.load(Relaxed)
    }

    /// Every value with its count.
    pub fn counts(&self) -> Vec<(K, u64)>
    where
        K: Clone,
    {
        self.map
            .iter()
            .map(|e| (e.key().clone(), e.count.load(Relaxed)))
            .collect()
    }

    /// Id → value, for resolving combinations.
    pub fn resolver(&self) -> Vec<Option<K>>
    where
        K: Clone,
    {
        let len = self.next.load(Relaxed).min(self.cap) as usize;
        let mut out = vec![None; len];
        for e in self.map.iter() {
            if let Some(slot) = out.get_mut(e.id as usize) {
                *slot = Some(e.key().clone());
            }
        }
        out
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }
}

/// The ids of one request's values: the key of the detail counters. The user agent's
/// classes are kept beside its id, so a request whose raw agent did not fit the bucket's
/// cap still reports its browser group and OS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub struct Combo {
    pub session: u32,
    pub ip: u32,
    pub path: u32,
    pub ua: u32,
    pub server: u32,
    pub method: u32,
    /// [`Os::code`].
    pub os: u8,
    /// [`Browser::code`].
    pub browser: u8,
}

impl Combo {
    /// The classes of the combination's user agent.
    pub fn agent(&self) -> Agent {
        Agent {
            browser: Browser::from_code(self.browser).unwrap_or(Browser::Unknown),
            os: Os::from_code(self.os).unwrap_or(Os::UNKNOWN),
        }
    }
}

/// One API's records for one time span.
#[derive(Debug)]
pub struct Bucket {
    /// Unix seconds of the span's start.
    pub start: i64,
    pub requests: AtomicU64,
    pub success: AtomicU64,
    pub no_session: AtomicU64,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    pub latency_us: AtomicU64,
    /// Requests per operating system, indexed by [`Os::index`].
    pub devices: [AtomicU64; Os::COUNT],
    pub methods: Interner<Method>,
    pub ips: Interner<IpAddr>,
    pub sessions: Interner<Arc<str>>,
    pub paths: Interner<Arc<str>>,
    pub uas: Interner<Arc<str>, Agent>,
    pub servers: Interner<Arc<str>>,
    pub combos: Map<Combo, AtomicU64>,
    combo_count: AtomicU32,
    combo_cap: u32,
    pub combo_overflow: AtomicU64,
    /// Bytes this bucket has charged to its API's budget.
    charged: AtomicI64,
}

/// One dimension's value in [`Facts`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Val<T> {
    /// The request had none (no session cookie, no User-Agent, no server reached).
    Absent,
    /// The value was lost to a cap in the bucket it came from.
    Overflow,
    Is(T),
}

impl<T> Val<T> {
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Val<U> {
        match self {
            Val::Is(v) => Val::Is(f(v)),
            Val::Absent => Val::Absent,
            Val::Overflow => Val::Overflow,
        }
    }

    fn from_option(v: Option<T>) -> Val<T> {
        v.map_or(Val::Absent, Val::Is)
    }
}

/// The values of one request (or, when merging, of one combination seen `n` times).
pub struct Facts<'a> {
    pub method: Val<&'a Method>,
    pub ip: Val<IpAddr>,
    pub session: Val<&'a str>,
    pub path: Val<&'a str>,
    pub user_agent: Val<&'a str>,
    pub server: Val<&'a str>,
    /// The user agent's classes: known when merging; computed from the user agent (once
    /// per bucket) when recording.
    pub agent: Option<Agent>,
}

impl Bucket {
    pub fn new(start: i64, caps: &Caps) -> Bucket {
        Bucket {
            start,
            requests: AtomicU64::new(0),
            success: AtomicU64::new(0),
            no_session: AtomicU64::new(0),
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            latency_us: AtomicU64::new(0),
            devices: std::array::from_fn(|_| AtomicU64::new(0)),
            methods: Interner::new(METHOD_CAP, None),
            ips: Interner::new(caps.ips, Some(1)),
            sessions: Interner::new(caps.sessions, Some(0)),
            paths: Interner::new(caps.paths, Some(2)),
            uas: Interner::new(caps.user_agents, Some(3)),
            servers: Interner::new(SERVER_CAP, None),
            combos: Map::with_hasher(Hasher::default()),
            combo_count: AtomicU32::new(0),
            combo_cap: caps.combinations,
            combo_overflow: AtomicU64::new(0),
            charged: AtomicI64::new(0),
        }
    }

    fn charge(&self, budget: &Budget, bytes: i64) {
        self.charged.fetch_add(bytes, Relaxed);
        budget.add(bytes);
    }

    /// Gives this bucket's share of the budget back (the bucket is being dropped).
    pub fn release(&self, budget: &Budget) {
        budget.add(-self.charged.swap(0, Relaxed));
    }

    /// Records one request. `requests` is counted last (with release ordering): whoever
    /// reads it (acquire) sees the detail of at least that many requests, which is what
    /// lets the store use it to notice a changed bucket.
    pub fn add(&self, obs: &Observation<'_>, budget: &Budget, agents: &agent::Cache) -> Agent {
        if obs.status.is_some_and(|s| (200..300).contains(&s)) {
            self.success.fetch_add(1, Relaxed);
        }
        if obs.session.is_none() {
            self.no_session.fetch_add(1, Relaxed);
        }
        self.bytes_in.fetch_add(obs.request_bytes, Relaxed);
        self.bytes_out.fetch_add(obs.response_bytes, Relaxed);
        self.latency_us.fetch_add(obs.latency_us, Relaxed);
        let facts = Facts {
            method: Val::Is(obs.method),
            ip: Val::Is(obs.client_ip),
            session: Val::from_option(obs.session),
            path: Val::Is(obs.path),
            user_agent: Val::from_option(obs.user_agent),
            server: Val::from_option(obs.server),
            agent: None,
        };
        let agent = self.add_detail(&facts, 1, 1, budget, Some(agents));
        self.requests
            .fetch_add(1, std::sync::atomic::Ordering::Release);
        agent
    }

    /// Requests recorded (acquire: the detail of at least these many is visible).
    pub fn requests_seen(&self) -> u64 {
        self.requests.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Records the values of `combo_n` requests into the detail counters, adding `dim_n`
    /// to each dimension's own count (0 when merging, where dimension counts are merged
    /// on their own so that combinations lost to a cap do not lose them).
    /// `agents` classifies an agent the facts do not come with (recording; merges know them).
    pub fn add_detail(
        &self,
        f: &Facts<'_>,
        dim_n: u64,
        combo_n: u64,
        budget: &Budget,
        agents: Option<&agent::Cache>,
    ) -> Agent {
        let method = match f.method {
            Val::Is(m) => {
                self.methods
                    .touch(m, dim_n, self, budget, || (m.clone(), (), 0))
                    .0
            }
            Val::Absent => ABSENT,
            Val::Overflow => OVERFLOW,
        };
        let ip = match f.ip {
            Val::Is(ip) => self.ips.touch(&ip, dim_n, self, budget, || (ip, (), 0)).0,
            Val::Absent => ABSENT,
            Val::Overflow => OVERFLOW,
        };
        let session = str_id(&self.sessions, f.session, dim_n, self, budget);
        let path = str_id(&self.paths, f.path, dim_n, self, budget);
        let server = str_id(&self.servers, f.server, dim_n, self, budget);
        // An agent the bucket already holds comes with its classes; a new one is
        // classified once, here, and the answer kept with it.
        let classify = |u: &str| {
            f.agent
                .unwrap_or_else(|| agents.map_or_else(|| Agent::of(u), |c| c.of(u)))
        };
        let (ua, agent) = match f.user_agent {
            Val::Is(u) => {
                let (id, known) = self.uas.touch(u, dim_n, self, budget, || {
                    (Arc::from(u), classify(u), u.len())
                });
                (id, known.unwrap_or_else(|| classify(u)))
            }
            Val::Absent => (ABSENT, f.agent.unwrap_or(Agent::UNKNOWN)),
            Val::Overflow => (OVERFLOW, f.agent.unwrap_or(Agent::UNKNOWN)),
        };
        if dim_n > 0 {
            self.devices[agent.os.index()].fetch_add(dim_n, Relaxed);
        }
        let combo = Combo {
            session,
            ip,
            path,
            ua,
            server,
            method,
            os: agent.os.code(),
            browser: agent.browser.code(),
        };
        self.add_combo(combo, combo_n, budget);
        agent
    }

    fn add_combo(&self, combo: Combo, n: u64, budget: &Budget) {
        if n == 0 {
            return;
        }
        if let Some(c) = self.combos.get(&combo) {
            c.fetch_add(n, Relaxed);
            return;
        }
        if self.combo_count.fetch_add(1, Relaxed) >= self.combo_cap || !budget.has_room() {
            self.combo_overflow.fetch_add(n, Relaxed);
            budget.dropped[4].fetch_add(n, Relaxed);
            return;
        }
        let c = self.combos.entry(combo).or_insert_with(|| {
            self.charge(budget, ENTRY_OVERHEAD);
            AtomicU64::new(0)
        });
        c.fetch_add(n, Relaxed);
    }

    /// Adds everything in `src` (an older, finer bucket that no one writes any more).
    pub fn merge_from(&self, src: &Bucket, budget: &Budget) {
        for (dst, s) in [
            (&self.requests, &src.requests),
            (&self.success, &src.success),
            (&self.no_session, &src.no_session),
            (&self.bytes_in, &src.bytes_in),
            (&self.bytes_out, &src.bytes_out),
            (&self.latency_us, &src.latency_us),
            (&self.combo_overflow, &src.combo_overflow),
        ] {
            dst.fetch_add(s.load(Relaxed), Relaxed);
        }
        for (dst, s) in self.devices.iter().zip(&src.devices) {
            dst.fetch_add(s.load(Relaxed), Relaxed);
        }
        merge_interner(&self.methods, &src.methods, self, budget, |m| {
            (m.clone(), 0)
        });
        merge_interner(&self.ips, &src.ips, self, budget, |ip| (*ip, 0));
        merge_interner(&self.sessions, &src.sessions, self, budget, |s| {
            (s.clone(), s.len())
        });
        merge_interner(&self.paths, &src.paths, self, budget, |s| {
            (s.clone(), s.len())
        });
        merge_interner(&self.servers, &src.servers, self, budget, |s| {
            (s.clone(), s.len())
        });
        for e in src.uas.map.iter() {
            let n = e.count.load(Relaxed);
            let (key, agent) = (e.key().clone(), e.payload);
            self.uas
                .touch(&*key, n, self, budget, || (key.clone(), agent, key.len()));
        }
        self.uas.overflow.fetch_add(src.uas.overflow(), Relaxed);

        let methods = src.methods.resolver();
        let ips = src.ips.resolver();
        let sessions = src.sessions.resolver();
        let paths = src.paths.resolver();
        let uas = src.uas.resolver();
        let servers = src.servers.resolver();
        for e in src.combos.iter() {
            let c = e.key();
            let facts = Facts {
                method: resolve(&methods, c.method),
                ip: resolve(&ips, c.ip).map(|ip| *ip),
                session: resolve(&sessions, c.session).map(|s| &**s),
                path: resolve(&paths, c.path).map(|s| &**s),
                user_agent: resolve(&uas, c.ua).map(|s| &**s),
                server: resolve(&servers, c.server).map(|s| &**s),
                agent: Some(c.agent()),
            };
            self.add_detail(&facts, 0, e.load(Relaxed), budget, None);
        }
    }

    /// Requests whose detail was lost to a cap, per dimension.
    pub fn overflow(&self) -> Overflow {
        Overflow {
            sessions: self.sessions.overflow(),
            ips: self.ips.overflow(),
            paths: self.paths.overflow(),
            user_agents: self.uas.overflow(),
            combinations: self.combo_overflow.load(Relaxed),
        }
    }
}

/// Requests whose value in a dimension did not fit its cap.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Overflow {
    pub sessions: u64,
    pub ips: u64,
    pub paths: u64,
    pub user_agents: u64,
    pub combinations: u64,
}

impl Overflow {
    pub fn add(&mut self, o: Overflow) {
        self.sessions += o.sessions;
        self.ips += o.ips;
        self.paths += o.paths;
        self.user_agents += o.user_agents;
        self.combinations += o.combinations;
    }
}

fn str_id(
    interner: &Interner<Arc<str>>,
    v: Val<&str>,
    n: u64,
    owner: &Bucket,
    budget: &Budget,
) -> u32 {
    match v {
        Val::Is(v) => {
            interner
                .touch(v, n, owner, budget, || (Arc::from(v), (), v.len()))
                .0
        }
        Val::Absent => ABSENT,
        Val::Overflow => OVERFLOW,
    }
}

fn merge_interner<K: Eq + Hash + Clone>(
    dst: &Interner<K>,
    src: &Interner<K>,
    owner: &Bucket,
    budget: &Budget,
    make: impl Fn(&K) -> (K, usize),
) {
    for e in src.map.iter() {
        let n = e.count.load(Relaxed);
        let key = e.key();
        dst.touch(key, n, owner, budget, || {
            let (k, heap) = make(key);
            (k, (), heap)
        });
    }
    dst.overflow.fetch_add(src.overflow(), Relaxed);
}

/// The value behind an id, from an [`Interner::resolver`] table.
pub fn resolve<K>(table: &[Option<K>], id: u32) -> Val<&K> {
    match id {
        ABSENT => Val::Absent,
        OVERFLOW => Val::Overflow,
        id => table
            .get(id as usize)
            .and_then(Option::as_ref)
            .map_or(Val::Overflow, Val::Is),
    }
}

/// One interner as stored: its values with their ids and counts.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct InternerImage<K, P = ()> {
    pub next: u32,
    pub overflow: u64,
    pub entries: Vec<(K, u32, u64, P)>,
}

/// A bucket as stored: every counter, every value with its id, every combination.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Image {
    pub start: i64,
    pub requests: u64,
    pub success: u64,
    pub no_session: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency_us: u64,
    pub devices: Vec<u64>,
    pub methods: InternerImage<String>,
    pub ips: InternerImage<IpAddr>,
    pub sessions: InternerImage<String>,
    pub paths: InternerImage<String>,
    pub uas: InternerImage<String, Agent>,
    pub servers: InternerImage<String>,
    pub combos: Vec<(Combo, u64)>,
    pub combo_count: u32,
    pub combo_overflow: u64,
}

/// The first bytes of a stored [`Image`]: a mark, then the layout version. Images written
/// before the mark existed (version 1: woothee device classes, no browser group) start
/// with their bucket's start, a multiple of 60 seconds, which postcard writes as a zigzag
/// varint whose first byte is never 1; [`Image::decode`] reads and converts them.
pub(super) const IMAGE_MARK: u8 = 1;
/// Version 2: user agents carry their [`Agent`] classes, combinations their OS and browser.
pub(super) const IMAGE_VERSION: u8 = 2;

/// Why stored bytes are not a bucket image.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("bucket image layout {0} is newer than this build reads")]
    Version(u8),
    #[error("undecodable bucket image: {0}")]
    Bytes(#[from] postcard::Error),
}

impl Image {
    /// The image as stored (in the embedded store, or in Redis for the other nodes).
    pub fn encode(&self) -> Result<Vec<u8>, ImageError> {
        Ok(postcard::to_extend(self, vec![IMAGE_MARK, IMAGE_VERSION])?)
    }
}

impl<K: Eq + Hash + Clone, P: Copy> Interner<K, P> {
    fn image<T>(&self, f: impl Fn(&K) -> T) -> InternerImage<T, P> {
        let mut entries: Vec<(T, u32, u64, P)> = self
            .map
            .iter()
            .map(|e| (f(e.key()), e.id, e.count.load(Relaxed), e.payload))
            .collect();
        entries.sort_by_key(|(_, id, _, _)| *id);
        InternerImage {
            next: self.next.load(Relaxed).min(self.cap),
            overflow: self.overflow.load(Relaxed),
            entries,
        }
    }

    fn restore<T>(
        cap: u32,
        dim: Option<usize>,
        img: InternerImage<T, P>,
        f: impl Fn(T) -> Option<(K, usize)>,
        owner: &Bucket,
        budget: &Budget,
    ) -> Self {
        let interner = Interner::new(cap, dim);
        interner.next.store(img.next, Relaxed);
        interner.overflow.store(img.overflow, Relaxed);
        for (key, id, count, payload) in img.entries {
            if let Some((key, heap)) = f(key) {
                owner.charge(budget, heap as i64 + ENTRY_OVERHEAD);
                interner.map.insert(
                    key,
                    Slot {
                        id,
                        count: AtomicU64::new(count),
                        payload,
                    },
                );
            }
        }
        interner
    }
}

impl Bucket {
    /// The bucket as stored (read while writers may add to it: each counter is read once).
    pub fn image(&self) -> Image {
        Image {
            start: self.start,
            requests: self.requests_seen(),
            success: self.success.load(Relaxed),
            no_session: self.no_session.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            latency_us: self.latency_us.load(Relaxed),
            devices: self.devices.iter().map(|d| d.load(Relaxed)).collect(),
            methods: self.methods.image(|m| m.as_str().to_string()),
            ips: self.ips.image(|ip| *ip),
            sessions: self.sessions.image(|s| s.to_string()),
            paths: self.paths.image(|s| s.to_string()),
            uas: self.uas.image(|s| s.to_string()),
            servers: self.servers.image(|s| s.to_string()),
            combos: self
                .combos
                .iter()
                .map(|e| (*e.key(), e.load(Relaxed)))
                .collect(),
            combo_count: self.combo_count.load(Relaxed),
            combo_overflow: self.combo_overflow.load(Relaxed),
        }
    }

    /// Rebuilds a stored bucket, charging its detail to `budget`.
    pub fn from_image(img: Image, caps: &Caps, budget: &Budget) -> Bucket {
        let b = Bucket::new(img.start, caps);
        b.requests.store(img.requests, Relaxed);
        b.success.store(img.success, Relaxed);
        b.no_session.store(img.no_session, Relaxed);
        b.bytes_in.store(img.bytes_in, Relaxed);
        b.bytes_out.store(img.bytes_out, Relaxed);
        b.latency_us.store(img.latency_us, Relaxed);
        for (d, v) in b.devices.iter().zip(img.devices) {
            d.store(v, Relaxed);
        }
        let text = |s: String| {
            let n = s.len();
            Some((Arc::<str>::from(s), n))
        };
        let methods = Interner::restore(
            METHOD_CAP,
            None,
            img.methods,
            |m| Method::from_bytes(m.as_bytes()).ok().map(|m| (m, 0)),
            &b,
            budget,
        );
        let ips = Interner::restore(caps.ips, Some(1), img.ips, |ip| Some((ip, 0)), &b, budget);
        let sessions = Interner::restore(caps.sessions, Some(0), img.sessions, text, &b, budget);
        let paths = Interner::restore(caps.paths, Some(2), img.paths, text, &b, budget);
        let uas = Interner::restore(caps.user_agents, Some(3), img.uas, text, &b, budget);
        let servers = Interner::restore(SERVER_CAP, None, img.servers, text, &b, budget);
        for (combo, n) in img.combos {
            b.charge(budget, ENTRY_OVERHEAD);
            b.combos.insert(combo, AtomicU64::new(n));
        }
        b.combo_count.store(img.combo_count, Relaxed);
        b.combo_overflow.store(img.combo_overflow, Relaxed);
        Bucket {
            methods,
            ips,
            sessions,
            paths,
            uas,
            servers,
            ..b
        }
    }
}
