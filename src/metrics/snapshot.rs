//! [`Snapshot`]: the read-only sum of an API's buckets over a window, with ids resolved to
//! values. Reports are built from it and never touch the live counters.
//!
//! Requests with a session are grouped by session id, requests without one by path, as
//! the `api_metrics` report presents them. A value lost to a cap appears as `(other)` (an
//! IP as `None`); a request without a User-Agent shows `-`. Browser groups and operating
//! systems are never lost to a cap: they come from the combinations, which keep them even
//! when the raw agent did not fit.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use http::Method;

use super::agent::{Browser, Os};
use super::bucket::{Bucket, Overflow, Val, resolve};

/// Hash maps with a fast, randomly seeded hasher (the keys come from clients).
pub type HashMap<K, V> = std::collections::HashMap<K, V, foldhash::fast::RandomState>;

/// The label of a value lost to a cap.
pub const OTHER: &str = "(other)";
/// The label of a request without a User-Agent.
pub const NO_USER_AGENT: &str = "-";

/// An API's records summed over a window.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Snapshot {
    pub requests: u64,
    pub success: u64,
    pub no_session: u64,
    pub bytes_in: u64,
    pub bytes_out: u64,
    pub latency_us: u64,
    /// Per method; `None` for methods beyond the cap.
    pub methods: HashMap<Option<Method>, u64>,
    /// Requests per operating system.
    pub devices: Classes<Os>,
    /// Per client IP; `None` for IPs beyond the cap.
    pub ips: HashMap<Option<IpAddr>, u64>,
    pub servers: HashMap<Arc<str>, u64>,
    /// Requests with a session, by session id.
    pub sessions: HashMap<Arc<str>, Group>,
    /// Requests without a session, by path.
    pub no_session_paths: HashMap<Arc<str>, Group>,
    pub overflow: Overflow,
}

/// Adds `n` to `key`'s count, cloning the key only when it is new.
fn bump(map: &mut HashMap<Arc<str>, u64>, key: &Arc<str>, n: u64) {
    match map.get_mut(&**key) {
        Some(count) => *count += n,
        None => {
            map.insert(key.clone(), n);
        }
    }
}

/// The group for `key`, created (and the key cloned) only when it is new.
fn group_of<'m>(map: &'m mut HashMap<Arc<str>, Group>, key: &Arc<str>) -> Option<&'m mut Group> {
    if !map.contains_key(&**key) {
        map.insert(key.clone(), Group::default());
    }
    map.get_mut(&**key)
}

/// The requests of one session (or, without a session, of one path).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Group {
    pub requests: u64,
    pub ips: HashMap<Option<IpAddr>, IpUse>,
    /// Raw User-Agent headers.
    pub user_agents: HashMap<Arc<str>, u64>,
    pub browsers: Classes<Browser>,
    pub paths: HashMap<Arc<str>, u64>,
    pub devices: Classes<Os>,
    pub servers: HashMap<Arc<str>, u64>,
}

/// Counts per class (browser group or OS), sorted by class. A group rarely sees more than
/// a few, so a short vector beats a table of every class.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Classes<K>(Vec<(K, u64)>);

impl<K> Default for Classes<K> {
    fn default() -> Classes<K> {
        Classes(Vec::new())
    }
}

impl<K: Ord + Copy> Classes<K> {
    pub fn add(&mut self, class: K, n: u64) {
        match self.0.binary_search_by(|(k, _)| k.cmp(&class)) {
            Ok(i) => self.0[i].1 += n,
            Err(i) => self.0.insert(i, (class, n)),
        }
    }

    /// Every class with its count, in class order.
    pub fn iter(&self) -> impl Iterator<Item = (K, u64)> + '_ {
        self.0.iter().copied()
    }
}

/// Requests from one IP within a group, and the methods they used.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct IpUse {
    pub count: u64,
    /// Distinct methods; `None` for a method beyond the cap.
    pub methods: Vec<Option<Method>>,
}

impl Snapshot {
    /// Adds one bucket (read while writers may still be adding to it).
    pub(super) fn add_bucket(&mut self, b: &Bucket) {
        self.requests += b.requests.load(Relaxed);
        self.success += b.success.load(Relaxed);
        self.no_session += b.no_session.load(Relaxed);
        self.bytes_in += b.bytes_in.load(Relaxed);
        self.bytes_out += b.bytes_out.load(Relaxed);
        self.latency_us += b.latency_us.load(Relaxed);
        for (os, d) in Os::all().zip(&b.devices) {
            let n = d.load(Relaxed);
            if n > 0 {
                self.devices.add(os, n);
            }
        }
        self.overflow.add(b.overflow());

        for (m, n) in b.methods.counts() {
            *self.methods.entry(Some(m)).or_default() += n;
        }
        if b.methods.overflow() > 0 {
            *self.methods.entry(None).or_default() += b.methods.overflow();
        }
        for (ip, n) in b.ips.counts() {
            *self.ips.entry(Some(ip)).or_default() += n;
        }
        if b.ips.overflow() > 0 {
            *self.ips.entry(None).or_default() += b.ips.overflow();
        }
        for (s, n) in b.servers.counts() {
            *self.servers.entry(s).or_default() += n;
        }

        let other: Arc<str> = Arc::from(OTHER);
        let no_ua: Arc<str> = Arc::from(NO_USER_AGENT);
        let label = |v: Val<&Arc<str>>, absent: &Arc<str>| -> Arc<str> {
            match v {
                Val::Is(s) => s.clone(),
                Val::Absent => absent.clone(),
                Val::Overflow => other.clone(),
            }
        };
        let methods = b.methods.resolver();
        let ips = b.ips.resolver();
        let sessions = b.sessions.resolver();
        let paths = b.paths.resolver();
        let uas = b.uas.resolver();
        let servers = b.servers.resolver();
        for e in b.combos.iter() {
            let c = *e.key();
            let n = e.load(Relaxed);
            let path = label(resolve(&paths, c.path), &other);
            let group = match resolve(&sessions, c.session) {
                Val::Absent => group_of(&mut self.no_session_paths, &path),
                s => group_of(&mut self.sessions, &label(s, &other)),
            };
            let Some(group) = group else { continue };
            group.requests += n;
            let ip = match resolve(&ips, c.ip) {
                Val::Is(ip) => Some(*ip),
                _ => None,
            };
            let method = match resolve(&methods, c.method) {
                Val::Is(m) => Some(m.clone()),
                _ => None,
            };
            let used = group.ips.entry(ip).or_default();
            used.count += n;
            // Kept sorted so a snapshot does not depend on map iteration order.
            let key = |m: &Option<Method>| m.as_ref().map(|m| m.as_str().to_owned());
            let at = used.methods.partition_point(|m| key(m) < key(&method));
            if used.methods.get(at) != Some(&method) {
                used.methods.insert(at, method);
            }
            bump(
                &mut group.user_agents,
                &label(resolve(&uas, c.ua), &no_ua),
                n,
            );
            let agent = c.agent();
            group.browsers.add(agent.browser, n);
            group.devices.add(agent.os, n);
            bump(&mut group.paths, &path, n);
            if let Val::Is(server) = resolve(&servers, c.server) {
                bump(&mut group.servers, server, n);
            }
        }
    }

    /// Distinct sessions seen (values beyond the cap are not counted).
    pub fn distinct_sessions(&self) -> usize {
        self.sessions.keys().filter(|s| &***s != OTHER).count()
    }
}
