//! The management port's guards, applied before any credential is looked at:
//!
//! * **Host names** (DNS rebinding): a browser tricked into calling a loopback port through
//!   an attacker's DNS name sends that name as `Host`. The port answers only requests whose
//!   `Host` is a loopback name or address, the address the connection came in on, or one of
//!   `management_hosts`; any other gets 421 Misdirected Request.
//! * **Failed credentials** (brute force): per source address, the first
//!   [`FREE_FAILURES`] failures cost nothing; each one after locks the source out for twice
//!   as long as the last (1 s, 2 s, 4 s… at most [`MAX_LOCKOUT`]), during which every
//!   credentialed call from it gets 429 with `Retry-After`, right credentials or not. A
//!   success, or [`FORGET_AFTER`] without a failure, starts it afresh. Failures are logged
//!   rate-limited (the 1st, 2nd, 4th, 8th… of a source). At most [`MAX_SOURCES`] sources
//!   are tracked; beyond, the oldest is forgotten.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use dashmap::DashMap;

/// Failures a source may have before it is locked out.
pub const FREE_FAILURES: u32 = 5;
/// The longest lockout.
pub const MAX_LOCKOUT: Duration = Duration::from_secs(300);
/// A source that has not failed for this long starts afresh.
pub const FORGET_AFTER: Duration = Duration::from_secs(15 * 60);
/// Sources tracked at most.
pub const MAX_SOURCES: usize = 10_000;

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last_ms: i64,
    locked_until_ms: i64,
}

/// See the module doc.
#[derive(Debug)]
pub struct Guard {
    failures: DashMap<IpAddr, Failures, foldhash::fast::RandomState>,
    /// Extra host names the management port answers to (lower case).
    hosts: Vec<String>,
    /// Calls refused for a wrong `Host`, and while locked out (Prometheus).
    pub misdirected: AtomicU64,
    pub locked_out: AtomicU64,
    pub failed: AtomicU64,
}

impl Guard {
    pub fn new(hosts: &[String]) -> Guard {
        Guard {
            failures: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            hosts: hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
            misdirected: AtomicU64::new(0),
            locked_out: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Whether a request with this `Host` (or authority) may be answered on a connection
    /// that came in on `local`.
    pub fn host_allowed(&self, host: Option<&str>, local: SocketAddr) -> bool {
        let Some(host) = host else {
            // HTTP/1.0 without Host: no browser sends that.
            return true;
        };
        let name = host_name(host).to_ascii_lowercase();
        let allowed = name == "localhost"
            || name.ends_with(".localhost")
            || name
                .parse::<IpAddr>()
                .is_ok_and(|ip| ip.is_loopback() || ip == local.ip())
            || self.hosts.contains(&name);
        if !allowed {
            self.misdirected.fetch_add(1, Relaxed);
        }
        allowed
    }

    /// How long `source` is still locked out at `now_ms`, if it is.
    pub fn locked(&self, source: IpAddr, now_ms: i64) -> Option<Duration> {
        let f = *self.failures.get(&source)?;
        (f.locked_until_ms > now_ms).then(|| {
            self.locked_out.fetch_add(1, Relaxed);
            Duration::from_millis(u64::try_from(f.locked_until_ms - now_ms).unwrap_or(0))
        })
    }

    /// Records a failed credential check from `source` (`what`: which check).
    pub fn failed(&self, source: IpAddr, now_ms: i64, what: &str) {
        self.failed.fetch_add(1, Relaxed);
        if self.failures.len() >= MAX_SOURCES && !self.failures.contains_key(&source) {
            self.forget_oldest();
        }
        let mut f = self.failures.entry(source).or_insert(Failures {
            count: 0,
            last_ms: now_ms,
            locked_until_ms: 0,
        });
        let forget_ms = i64::try_from(FORGET_AFTER.as_millis()).unwrap_or(i64::MAX);
        if now_ms - f.last_ms > forget_ms {
            f.count = 0;
        }
        f.count = f.count.saturating_add(1);
        f.last_ms = now_ms;
        let lockout = lockout(f.count);
        if let Some(l) = lockout {
            f.locked_until_ms = now_ms + i64::try_from(l.as_millis()).unwrap_or(i64::MAX);
        }
        let count = f.count;
        drop(f);
        if count.is_power_of_two() {
            tracing::warn!(
                source = %source,
                failures = count,
                "management {what}: wrong or missing credentials{}",
                lockout.map_or(String::new(), |l| format!("; locked out for {l:?}"))
            );
        }
    }

    /// A successful credential check from `source`: it starts afresh.
    pub fn succeeded(&self, source: IpAddr) {
        if self.failures.contains_key(&source) {
            self.failures.remove(&source);
        }
    }

    fn forget_oldest(&self) {
        let oldest = self
            .failures
            .iter()
            .min_by_key(|e| e.value().last_ms)
            .map(|e| *e.key());
        if let Some(ip) = oldest {
            self.failures.remove(&ip);
        }
    }
}

/// The lockout after the `count`th failure in a row.
fn lockout(count: u32) -> Option<Duration> {
    // The first failure over the free ones locks for a second, each next one twice as long.
    let over = count.checked_sub(FREE_FAILURES).filter(|n| *n > 0)?;
    let secs = 1u64.checked_shl(over - 1).unwrap_or(u64::MAX);
    Some(Duration::from_secs(secs).min(MAX_LOCKOUT))
}

/// The host of a `Host` value: without the port, `[v6]` unbracketed.
fn host_name(host: &str) -> &str {
    let host = host.trim();
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split(']').next().unwrap_or(rest);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if port.bytes().all(|b| b.is_ascii_digit()) => name,
        _ => host,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_local_and_configured_hosts() {
        let g = Guard::new(&["mgmt.corp.example".into()]);
        let local: SocketAddr = "10.0.0.5:8010".parse().unwrap();
        for ok in [
            "localhost:8010",
            "127.0.0.1:8010",
            "[::1]:8010",
            "10.0.0.5:8010",
            "MGMT.corp.example",
            "app.localhost",
        ] {
            assert!(g.host_allowed(Some(ok), local), "{ok}");
        }
        for bad in [
            "evil.example",
            "evil.example:8010",
            "10.0.0.6:8010",
            "localhost.evil.example",
        ] {
            assert!(!g.host_allowed(Some(bad), local), "{bad}");
        }
        assert!(g.host_allowed(None, local));
    }

    #[test]
    fn lockouts_grow_and_a_success_forgives() {
        assert_eq!(lockout(5), None);
        assert_eq!(lockout(6), Some(Duration::from_secs(1)));
        assert_eq!(lockout(7), Some(Duration::from_secs(2)));
        assert_eq!(lockout(9), Some(Duration::from_secs(8)));
        assert_eq!(lockout(40), Some(MAX_LOCKOUT));
        let g = Guard::new(&[]);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        for _ in 0..5 {
            g.failed(ip, 1_000, "API");
        }
        assert_eq!(g.locked(ip, 1_000), None, "five failures are free");
        g.failed(ip, 1_000, "API");
        assert_eq!(g.locked(ip, 1_500), Some(Duration::from_millis(500)));
        assert_eq!(g.locked(ip, 2_000), None);
        g.succeeded(ip);
        g.failed(ip, 3_000, "API");
        assert_eq!(g.locked(ip, 3_000), None, "a success starts afresh");
    }
}
