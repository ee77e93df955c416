//! Resource limits that keep one client (or a flood of them) from exhausting the process:
//! file descriptors, connections to backends, and requests in flight per client.
//!
//! Where it sits: [`Limits::new`] runs once while the [`crate::app::App`] is built; the
//! inline handler takes an [`InFlight`] slot for each request's client and an
//! [`UpstreamSlot`] before it forwards, and gives both back when the exchange completes.
//!
//! * **File descriptors.** The soft `RLIMIT_NOFILE` is raised to the hard one. Of what it
//!   allows, [`RESERVED_FDS`] stay for the store, logs, listeners and health checks; client
//!   connections (`max_connections`) and backend connections share the rest, so that
//!   accepting never fails for want of descriptors while the limits hold. A config asking
//!   for more than there is gets clamped, with a warning.
//! * **Backend connections.** Each request in flight to a backend holds one connection
//!   (HTTP/1.1 upstream), so they are bounded by counting requests in flight: at most
//!   `upstream_max_connections` in total and `upstream_max_connections_per_server` per
//!   backend address. Beyond, a request waits up to `connection_queue_timeout` for a slot
//!   and is then answered 503 with `Retry-After`. Twenty HTTP/2 connections of 256 slow
//!   streams each can no longer open 5,000 backend connections.
//! * **Requests in flight per client** (`client_max_in_flight`, and never more than a
//!   quarter of the backend connections): HTTP/2 streams are requests, so one client
//!   multiplexing many streams is held to the same bound as one opening many connections;
//!   beyond, 429. Many clients together can still fill the backend connections (they then
//!   get 503): that is a flood, and the bound is what keeps the process alive through it.

use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use dashmap::DashMap;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::config::Settings;

/// Descriptors kept for everything that is neither a client nor a backend connection.
pub const RESERVED_FDS: u64 = 128;

/// The limits in force, and the counters that enforce them.
#[derive(Debug)]
pub struct Limits {
    /// The file-descriptor limit after raising it.
    pub fd_limit: u64,
    /// Client connections admitted at once (`max_connections`, clamped to the fds).
    pub max_connections: usize,
    /// Requests in flight to backends (`upstream_max_connections`, or what the fds leave).
    pub upstream: usize,
    pub upstream_per_server: usize,
    total: Arc<Semaphore>,
    per_server: DashMap<String, Arc<Semaphore>, foldhash::fast::RandomState>,
    client_cap: u32,
    clients: Arc<DashMap<IpAddr, u32, foldhash::fast::RandomState>>,
    /// Requests answered 503 for want of a backend slot.
    pub upstream_saturated: AtomicU64,
    /// Requests answered 429 for too many in flight from their client.
    pub client_saturated: AtomicU64,
}

impl Limits {
    pub fn new(s: &Settings) -> Limits {
        let fd_limit = raise_fd_limit();
        let usable = fd_limit.saturating_sub(RESERVED_FDS).max(64);
        let usable = usize::try_from(usable).unwrap_or(usize::MAX);
        // Clients get at most half of what is usable; backends what the clients leave.
        let max_connections = s.max_connections.min(usable / 2).max(1);
        if max_connections < s.max_connections {
            tracing::warn!(
                fd_limit,
                "max_connections={} lowered to {max_connections}: the file-descriptor limit leaves no room for more (raise `ulimit -n`)",
                s.max_connections
            );
        }
        let room = usable.saturating_sub(max_connections).max(16);
        let upstream = match s.upstream_max_connections {
            0 => room,
            n if n > room => {
                tracing::warn!(
                    fd_limit,
                    "upstream_max_connections={n} lowered to {room}: the file-descriptor limit leaves no room for more"
                );
                room
            }
            n => n,
        };
        let upstream_per_server = match s.upstream_max_connections_per_server {
            0 => upstream,
            n => n.min(upstream),
        };
        Limits {
            fd_limit,
            max_connections,
            upstream,
            upstream_per_server,
            total: Arc::new(Semaphore::new(upstream)),
            per_server: DashMap::with_hasher(foldhash::fast::RandomState::default()),
            // No one client may hold more than a quarter of the backend connections, so
            // one cannot starve the others however it is configured.
            client_cap: s
                .client_max_in_flight
                .min(u32::try_from(upstream / 4).unwrap_or(u32::MAX).max(1)),
            clients: Arc::new(DashMap::with_hasher(foldhash::fast::RandomState::default())),
            upstream_saturated: AtomicU64::new(0),
            client_saturated: AtomicU64::new(0),
        }
    }

    /// A slot for one request to backend `server`, waiting at most `wait` for one; `None`
    /// when none came (the caller answers 503).
    pub async fn upstream_slot(&self, server: &str, wait: Duration) -> Option<UpstreamSlot> {
        let per_server = match self.per_server.get(server) {
            Some(s) => s.clone(),
            None => self
                .per_server
                .entry(server.to_string())
                .or_insert_with(|| Arc::new(Semaphore::new(self.upstream_per_server)))
                .clone(),
        };
        // Free slots are taken at once, without arming a timer; only a full limit waits.
        if let Ok(server) = per_server.clone().try_acquire_owned()
            && let Ok(total) = self.total.clone().try_acquire_owned()
        {
            return Some(UpstreamSlot {
                _server: server,
                _total: total,
            });
        }
        let both = async {
            let server = per_server.acquire_owned().await.ok()?;
            let total = self.total.clone().acquire_owned().await.ok()?;
            Some(UpstreamSlot {
                _server: server,
                _total: total,
            })
        };
        match tokio::time::timeout(wait, both).await {
            Ok(Some(slot)) => Some(slot),
            _ => {
                self.upstream_saturated.fetch_add(1, Relaxed);
                None
            }
        }
    }

    /// Backend requests in flight now.
    pub fn upstream_in_flight(&self) -> usize {
        self.upstream - self.total.available_permits()
    }

    /// Admits one more request in flight from `client`; `None` over `client_max_in_flight`.
    pub fn enter(&self, client: IpAddr) -> Option<InFlight> {
        let mut n = self.clients.entry(client).or_insert(0);
        if *n >= self.client_cap {
            drop(n);
            self.client_saturated.fetch_add(1, Relaxed);
            return None;
        }
        *n += 1;
        drop(n);
        Some(InFlight {
            clients: self.clients.clone(),
            client,
        })
    }

    /// Clients with requests in flight now.
    pub fn clients_in_flight(&self) -> usize {
        self.clients.len()
    }
}

/// A request's hold on backend connections; given back when dropped.
#[derive(Debug)]
pub struct UpstreamSlot {
    _server: OwnedSemaphorePermit,
    _total: OwnedSemaphorePermit,
}

/// A request counted against its client's `client_max_in_flight`; given back when
/// dropped (and the client forgotten once it has none).
#[derive(Debug)]
pub struct InFlight {
    clients: Arc<DashMap<IpAddr, u32, foldhash::fast::RandomState>>,
    client: IpAddr,
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.clients.remove_if_mut(&self.client, |_, n| {
            *n = n.saturating_sub(1);
            *n == 0
        });
    }
}

/// Raises the soft descriptor limit to the hard one; the limit in force.
fn raise_fd_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut limit = getrlimit(Resource::Nofile);
    if let Some(hard) = limit.maximum
        && limit.current.is_some_and(|soft| soft < hard)
    {
        let raised = rustix::process::Rlimit {
            current: Some(hard),
            maximum: Some(hard),
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            limit = raised;
        }
    }
    limit.current.unwrap_or(1 << 20)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clients_are_held_to_their_cap_and_forgotten_when_idle() {
        let s = Settings {
            client_max_in_flight: 2,
            ..Settings::defaults(std::path::Path::new("."))
        };
        let l = Limits::new(&s);
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let (a, b) = (l.enter(ip).unwrap(), l.enter(ip).unwrap());
        assert!(l.enter(ip).is_none(), "the third is over the cap");
        assert!(
            l.enter("192.0.2.2".parse().unwrap()).is_some(),
            "another client"
        );
        drop(a);
        let c = l.enter(ip).unwrap();
        drop((b, c));
        assert_eq!(l.clients_in_flight(), 0);
    }

    #[tokio::test]
    async fn backend_slots_run_out_and_come_back() {
        let s = Settings {
            upstream_max_connections: 3,
            upstream_max_connections_per_server: 2,
            ..Settings::defaults(std::path::Path::new("."))
        };
        let l = Limits::new(&s);
        let wait = Duration::from_millis(10);
        let a = l.upstream_slot("a:1", wait).await.unwrap();
        let _b = l.upstream_slot("a:1", wait).await.unwrap();
        assert!(l.upstream_slot("a:1", wait).await.is_none(), "per server");
        let _c = l.upstream_slot("b:1", wait).await.unwrap();
        assert!(l.upstream_slot("b:1", wait).await.is_none(), "in total");
        assert_eq!(l.upstream_in_flight(), 3);
        drop(a);
        assert!(l.upstream_slot("b:1", wait).await.is_some());
        assert_eq!(l.upstream_saturated.load(Relaxed), 2);
    }
}
