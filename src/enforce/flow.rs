//! Flow control (inline): ASE's `client_spike_threshold`, `server_spike_threshold` and
//! `server_connection_quota` with `server_connection_queueing`.
//!
//! * Client spike: at most `n` requests per second/minute/hour from one client IP to the
//!   API (GCRA from the governor crate: a burst of `n`, then one every `period/n`).
//! * Server spike: at most `n` requests per period to one server; a server over its limit
//!   is skipped by the round robin.
//! * Connection quota: at most `n` requests in flight to one server. With queueing, a
//!   request waits (up to `connection_queue_timeout`) for a slot; without, it is rejected.
//!
//! Rejections answer 429 with `Retry-After` and are counted for the flow-control report
//! (summary counters since start, plus the last [`DETAILS`] events of each kind).
//!
//! Bounded state: the per-client limiter forgets clients idle for a whole period (swept
//! every second) and tracks at most `flow_max_clients` IPs per API. Beyond that, during a
//! flood of distinct addresses, every client of the API shares one limiter at the same rate
//! until the flood subsides.

use std::collections::VecDeque;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::state::keyed::DashMapStateStore;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::backend::Server;
use crate::config::ApiDef;
use crate::config::value::{Rate, RatePeriod};

type Keyed =
    RateLimiter<IpAddr, DashMapStateStore<IpAddr, foldhash::fast::RandomState>, DefaultClock>;
type Direct = RateLimiter<NotKeyed, InMemoryState, DefaultClock>;

/// How many recent events of each kind the report keeps.
pub const DETAILS: usize = 100;

fn quota(rate: Rate) -> Option<Quota> {
    let n = NonZeroU32::new(u32::try_from(rate.count).unwrap_or(u32::MAX))?;
    Some(match rate.period {
        RatePeriod::Second => Quota::per_second(n),
        RatePeriod::Minute => Quota::per_minute(n),
        RatePeriod::Hour => Quota::per_hour(n),
    })
}

/// The kinds of flow-control events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    ClientSpike,
    ServerSpike,
    ConnectionQueued,
    ConnectionQuotaExceeded,
}

/// One flow-control event, as the report lists it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct Event {
    /// RFC 3339.
    pub request_time: String,
    pub connection_id: u64,
    pub source_ip: String,
    pub destination_api: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub server: Option<String>,
}

/// Flow-control counters since start.
#[derive(Debug, Default)]
pub struct Stats {
    pub client_spike: AtomicU64,
    pub server_spike: AtomicU64,
    pub connection_queued: AtomicU64,
    pub connection_quota_exceeded: AtomicU64,
    /// Checks made on the shared limiter because `flow_max_clients` were tracked already.
    pub over_capacity: AtomicU64,
}

#[derive(Default)]
struct Details {
    client_spike: VecDeque<Event>,
    server_spike: VecDeque<Event>,
    connection_queued: VecDeque<Event>,
    connection_quota_exceeded: VecDeque<Event>,
}

/// A copy of the recent events, per kind.
#[derive(Debug, Clone, Default, Serialize, PartialEq, Eq)]
pub struct DetailsView {
    pub client_spike: Vec<Event>,
    pub server_spike: Vec<Event>,
    pub connection_queued: Vec<Event>,
    pub connection_quota_exceeded: Vec<Event>,
}

struct ClientSpike {
    keyed: Keyed,
    shared: Direct,
    max_clients: usize,
    rate: Rate,
}

struct ServerLimits {
    spike: Option<Direct>,
    /// The threshold itself, for counting it across a cluster.
    rate: Option<Rate>,
    quota: Option<Arc<Semaphore>>,
}

/// A counter the whole cluster shares (cluster mode): server spike thresholds are counted
/// across nodes. `count` adds one to `key` in the current window of length `window` and
/// returns the window's total, or `None` when the shared counter cannot answer within its
/// budget: the caller then decides with its local limiter.
pub trait SharedCounter: Send + Sync + std::fmt::Debug {
    fn count<'a>(
        &'a self,
        key: String,
        window: Duration,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<u64>> + Send + 'a>>;
}

/// The shared counter key of a server's current window, and the time left in it.
fn window_key(api: &str, server: &str, rate: Rate) -> (String, Duration) {
    let period = rate.period.as_duration();
    let ms = u64::try_from(period.as_millis()).unwrap_or(u64::MAX).max(1);
    let now = u64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis(),
    )
    .unwrap_or(0);
    let window = now / ms;
    let left = Duration::from_millis(ms - now % ms);
    (format!("{api}:{server}:{ms}:{window}"), left)
}

/// Why flow control turned a request away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limited {
    pub kind: Kind,
    pub retry_after: Duration,
}

/// The server chosen for a request, with its connection-quota slot if it has a quota.
pub struct Pick {
    pub server: Arc<Server>,
    /// Held until the exchange completes.
    pub lease: Option<OwnedSemaphorePermit>,
    /// The request waited for the slot.
    pub queued: bool,
}

impl std::fmt::Debug for ApiFlow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiFlow")
            .field("client_spike", &self.client.is_some())
            .field("servers", &self.servers.len())
            .field("tracked_clients", &self.tracked_clients())
            .finish()
    }
}

/// One API's flow-control state.
pub struct ApiFlow {
    client: Option<ClientSpike>,
    servers: Vec<ServerLimits>,
    queueing: bool,
    queue_timeout: Duration,
    pub stats: Stats,
    details: Mutex<Details>,
}

impl ApiFlow {
    pub fn new(def: &ApiDef, max_clients: usize, queue_timeout: Duration) -> ApiFlow {
        let client = def.flow_control.client_spike_threshold.and_then(|rate| {
            quota(rate).map(|q| ClientSpike {
                keyed: RateLimiter::dashmap_with_hasher(q, foldhash::fast::RandomState::default()),
                shared: RateLimiter::direct(q),
                max_clients,
                rate,
            })
        });
        let servers = def
            .servers
            .iter()
            .map(|s| ServerLimits {
                spike: s
                    .server_spike_threshold
                    .and_then(quota)
                    .map(RateLimiter::direct),
                rate: s.server_spike_threshold.filter(|r| r.count > 0),
                quota: (s.server_connection_quota > 0)
                    .then(|| Arc::new(Semaphore::new(s.server_connection_quota as usize))),
            })
            .collect();
        ApiFlow {
            client,
            servers,
            queueing: def.flow_control.server_connection_queueing,
            queue_timeout,
            stats: Stats::default(),
            details: Mutex::new(Details::default()),
        }
    }

    /// Whether `server` is over its spike threshold: how long until it is not.
    async fn spiked(
        &self,
        l: &ServerLimits,
        api: &str,
        server: &str,
        shared: Option<&dyn SharedCounter>,
    ) -> Option<Duration> {
        let local = || {
            l.spike.as_ref().and_then(|s| {
                s.check()
                    .err()
                    .map(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
            })
        };
        match (shared, l.rate) {
            (Some(counter), Some(rate)) => {
                let (key, left) = window_key(api, server, rate);
                match counter.count(key, rate.period.as_duration()).await {
                    Some(n) => (n > rate.count).then_some(left),
                    None => local(),
                }
            }
            _ => local(),
        }
    }

    /// Checks the client spike threshold for `ip` across the cluster (`cluster_client_spikes`);
    /// when the shared counter does not answer in time, the local limiter decides.
    pub async fn check_client_shared(
        &self,
        api: &str,
        ip: IpAddr,
        shared: Option<&dyn SharedCounter>,
    ) -> Result<(), Limited> {
        let (Some(c), Some(counter)) = (&self.client, shared) else {
            return self.check_client(ip);
        };
        let (key, left) = window_key(api, &format!("client:{ip}"), c.rate);
        match counter.count(key, c.rate.period.as_duration()).await {
            Some(n) if n > c.rate.count => Err(Limited {
                kind: Kind::ClientSpike,
                retry_after: left,
            }),
            Some(_) => Ok(()),
            None => self.check_client(ip),
        }
    }

    /// Checks the client spike threshold for `ip`.
    pub fn check_client(&self, ip: IpAddr) -> Result<(), Limited> {
        let Some(c) = &self.client else {
            return Ok(());
        };
        let verdict = if c.keyed.len() < c.max_clients {
            c.keyed.check_key(&ip)
        } else {
            self.stats.over_capacity.fetch_add(1, Relaxed);
            c.shared.check()
        };
        verdict.map_err(|not_until| Limited {
            kind: Kind::ClientSpike,
            retry_after: not_until.wait_time_from(DefaultClock::default().now()),
        })
    }

    /// Picks a server from `candidates` (healthy ones, in round-robin order, with their
    /// index in the API's server list) within the server limits.
    ///
    /// With a `shared` counter (cluster mode) a server's spike threshold is counted across
    /// the cluster in fixed windows; when the counter does not answer in time, the local
    /// limiter decides.
    pub async fn pick(
        &self,
        api: &str,
        candidates: Vec<(usize, Arc<Server>)>,
        shared: Option<&dyn SharedCounter>,
    ) -> Result<Option<Pick>, Limited> {
        if candidates.is_empty() {
            return Ok(None);
        }
        let mut spiked: Option<Duration> = None;
        let mut quota_full: Option<Arc<Semaphore>> = None;
        for (i, server) in &candidates {
            let limits = self.servers.get(*i);
            if let Some(l) = limits
                && let Some(wait) = self.spiked(l, api, &server.addr, shared).await
            {
                spiked = Some(spiked.map_or(wait, |w| w.min(wait)));
                continue;
            }
            match limits.and_then(|l| l.quota.clone()) {
                None => {
                    return Ok(Some(Pick {
                        server: server.clone(),
                        lease: None,
                        queued: false,
                    }));
                }
                Some(sem) => match sem.clone().try_acquire_owned() {
                    Ok(lease) => {
                        return Ok(Some(Pick {
                            server: server.clone(),
                            lease: Some(lease),
                            queued: false,
                        }));
                    }
                    Err(_) => {
                        quota_full.get_or_insert_with(|| sem.clone());
                    }
                },
            }
        }
        if let (Some(sem), true) = (&quota_full, self.queueing) {
            // Wait at the first full server (the one the round robin chose).
            let waiting = candidates.iter().find(|(i, _)| {
                self.servers
                    .get(*i)
                    .and_then(|l| l.quota.as_ref())
                    .is_some_and(|q| Arc::ptr_eq(q, sem))
            });
            if let Some((_, server)) = waiting {
                self.stats.connection_queued.fetch_add(1, Relaxed);
                if let Ok(Ok(lease)) =
                    tokio::time::timeout(self.queue_timeout, sem.clone().acquire_owned()).await
                {
                    return Ok(Some(Pick {
                        server: server.clone(),
                        lease: Some(lease),
                        queued: true,
                    }));
                }
            }
        }
        if quota_full.is_some() {
            return Err(Limited {
                kind: Kind::ConnectionQuotaExceeded,
                retry_after: Duration::from_secs(1),
            });
        }
        Err(Limited {
            kind: Kind::ServerSpike,
            retry_after: spiked.unwrap_or(Duration::from_secs(1)),
        })
    }

    /// Counts an event and keeps its detail.
    pub fn record(&self, kind: Kind, event: Event) {
        let counter = match kind {
            Kind::ClientSpike => &self.stats.client_spike,
            Kind::ServerSpike => &self.stats.server_spike,
            // Queued requests are counted when they start waiting.
            Kind::ConnectionQueued => &self.stats.connection_queued,
            Kind::ConnectionQuotaExceeded => &self.stats.connection_quota_exceeded,
        };
        if kind != Kind::ConnectionQueued {
            counter.fetch_add(1, Relaxed);
        }
        let mut d = self.details.lock().unwrap_or_else(|e| e.into_inner());
        let ring = match kind {
            Kind::ClientSpike => &mut d.client_spike,
            Kind::ServerSpike => &mut d.server_spike,
            Kind::ConnectionQueued => &mut d.connection_queued,
            Kind::ConnectionQuotaExceeded => &mut d.connection_quota_exceeded,
        };
        if ring.len() == DETAILS {
            ring.pop_front();
        }
        ring.push_back(event);
    }

    /// The recent events, oldest first.
    pub fn details(&self) -> DetailsView {
        let d = self.details.lock().unwrap_or_else(|e| e.into_inner());
        DetailsView {
            client_spike: d.client_spike.iter().cloned().collect(),
            server_spike: d.server_spike.iter().cloned().collect(),
            connection_queued: d.connection_queued.iter().cloned().collect(),
            connection_quota_exceeded: d.connection_quota_exceeded.iter().cloned().collect(),
        }
    }

    /// Forgets clients whose limiter state is back to idle (run every second).
    pub fn sweep(&self) {
        if let Some(c) = &self.client {
            c.keyed.retain_recent();
            c.keyed.shrink_to_fit();
        }
    }

    /// Client IPs the limiter tracks now.
    pub fn tracked_clients(&self) -> usize {
        self.client.as_ref().map_or(0, |c| c.keyed.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Mode;

    fn def(extra: &str) -> ApiDef {
        let text = format!(
            r#"{{"api_metadata":{{"url":"/a","hostname":"*","servers":[{{"host":"127.0.0.1","port":1{extra}}}]}}}}"#
        );
        ApiDef::parse(
            std::path::Path::new("t.json"),
            "t",
            &text,
            Mode::Inline,
            &mut Vec::new(),
        )
        .unwrap()
    }

    #[test]
    fn client_spikes_are_per_ip_and_state_is_bounded() {
        let mut d = def("");
        d.flow_control.client_spike_threshold = Some(Rate {
            count: 3,
            period: RatePeriod::Minute,
        });
        let flow = ApiFlow::new(&d, 100, Duration::from_secs(1));
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        for _ in 0..3 {
            assert!(flow.check_client(a).is_ok());
        }
        let limited = flow.check_client(a).unwrap_err();
        assert_eq!(limited.kind, Kind::ClientSpike);
        assert!(
            limited.retry_after > Duration::ZERO && limited.retry_after <= Duration::from_secs(20)
        );
        assert!(
            flow.check_client(b).is_ok(),
            "another client has its own budget"
        );

        // A flood of distinct IPs: tracked state stops growing at the cap.
        let flow = ApiFlow::new(&d, 1_000, Duration::from_secs(1));
        for i in 0..20_000u32 {
            let _ = flow.check_client(IpAddr::from(i.to_be_bytes()));
        }
        assert!(
            flow.tracked_clients() <= 1_000,
            "{}",
            flow.tracked_clients()
        );
    }

    #[tokio::test]
    async fn connection_quota_with_and_without_queueing() {
        let d = def(r#","server_connection_quota":1"#);
        let servers = vec![(0, Arc::new(Server::new("127.0.0.1", 1)))];
        let flow = ApiFlow::new(&d, 100, Duration::from_millis(50));
        let first = flow
            .pick("api", servers.clone(), None)
            .await
            .unwrap()
            .unwrap();
        assert!(first.lease.is_some());
        let second = flow.pick("api", servers.clone(), None).await;
        assert_eq!(
            second.err().map(|l| l.kind),
            Some(Kind::ConnectionQuotaExceeded)
        );
        drop(first);
        assert!(
            flow.pick("api", servers.clone(), None)
                .await
                .unwrap()
                .is_some(),
            "the slot came back"
        );

        let mut q = def(r#","server_connection_quota":1"#);
        q.flow_control.server_connection_queueing = true;
        let flow = Arc::new(ApiFlow::new(&q, 100, Duration::from_secs(5)));
        let held = flow
            .pick("api", servers.clone(), None)
            .await
            .unwrap()
            .unwrap();
        let waiter = {
            let (flow, servers) = (flow.clone(), servers.clone());
            tokio::spawn(async move { flow.pick("api", servers, None).await.map(|p| p.is_some()) })
        };
        while flow.stats.connection_queued.load(Relaxed) == 0 {
            tokio::task::yield_now().await;
        }
        drop(held);
        assert_eq!(
            waiter.await.unwrap(),
            Ok(true),
            "the queued request got the freed slot"
        );
    }

    /// A cluster counter for tests: counts per key, or is unreachable.
    #[derive(Debug, Default)]
    struct Counter {
        seen: Mutex<std::collections::HashMap<String, u64>>,
        down: std::sync::atomic::AtomicBool,
    }

    impl SharedCounter for Counter {
        fn count<'a>(
            &'a self,
            key: String,
            _window: Duration,
        ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Option<u64>> + Send + 'a>> {
            Box::pin(async move {
                if self.down.load(Relaxed) {
                    return None;
                }
                let mut seen = self.seen.lock().unwrap();
                let n = seen.entry(key).or_default();
                *n += 1;
                Some(*n)
            })
        }
    }

    #[tokio::test]
    async fn a_shared_counter_decides_and_the_local_limiter_stands_in() {
        let d = def(r#","server_spike_threshold":"2/minute""#);
        let servers = vec![(0, Arc::new(Server::new("127.0.0.1", 1)))];
        let flow = ApiFlow::new(&d, 100, Duration::from_secs(1));
        let shared = Counter::default();
        // Other nodes already used the window: the shared count says no at once.
        let (key, _) = window_key(
            "api",
            "127.0.0.1:1",
            d.servers[0].server_spike_threshold.unwrap(),
        );
        shared.seen.lock().unwrap().insert(key, 2);
        let r = flow.pick("api", servers.clone(), Some(&shared)).await;
        assert_eq!(r.err().map(|l| l.kind), Some(Kind::ServerSpike));
        // Unreachable: the local limiter (2/minute, untouched so far) lets two through.
        shared.down.store(true, Relaxed);
        for _ in 0..2 {
            assert!(
                flow.pick("api", servers.clone(), Some(&shared))
                    .await
                    .is_ok()
            );
        }
        let r = flow.pick("api", servers.clone(), Some(&shared)).await;
        assert_eq!(r.err().map(|l| l.kind), Some(Kind::ServerSpike));
    }

    #[tokio::test]
    async fn server_spike_skips_to_the_next_server() {
        let text = r#"{"api_metadata":{"url":"/a","hostname":"*","servers":[
            {"host":"127.0.0.1","port":1,"server_spike_threshold":"1/minute"},{"host":"127.0.0.1","port":2}]}}"#;
        let d = ApiDef::parse(
            std::path::Path::new("t.json"),
            "t",
            text,
            Mode::Inline,
            &mut Vec::new(),
        )
        .unwrap();
        let flow = ApiFlow::new(&d, 100, Duration::from_secs(1));
        let one = Arc::new(Server::new("127.0.0.1", 1));
        let two = Arc::new(Server::new("127.0.0.1", 2));
        let order = vec![(0, one.clone()), (1, two.clone())];
        assert_eq!(
            flow.pick("api", order.clone(), None)
                .await
                .unwrap()
                .unwrap()
                .server
                .port,
            1
        );
        assert_eq!(
            flow.pick("api", order.clone(), None)
                .await
                .unwrap()
                .unwrap()
                .server
                .port,
            2
        );
        let only_one = vec![(0, one)];
        assert_eq!(
            flow.pick("api", only_one, None).await.err().map(|l| l.kind),
            Some(Kind::ServerSpike)
        );
    }
}
