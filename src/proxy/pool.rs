//! The worker's keep-alive connections to backends: HTTP/1.1 over TCP, or over TLS when the
//! API sets `server_ssl`, each driven by `hyper::client::conn::http1` on the worker's own
//! runtime. [`super::forward::Forwarder`] sends through it.
//!
//! Why not hyper-util's pooled client: it checks a connection out through a checkout
//! future and a shared pool per request, keys the pool by re-reading the URI, and spawns a
//! task per exchange that waits for the connection to be idle again before giving it back.
//! Here a worker's pool is only ever touched by its own thread (its mutex is never
//! contended under the default `per_core` runtime), and a connection goes back the moment
//! its response head is in when hyper already waits for the next request, which is the
//! common case: a small body arrives with its head. Only a connection still busy with a
//! body gets a task that waits for it.
//!
//! Most recently used first, as nginx does: the warm connection is reused and the surplus
//! ages out after `upstream_idle_timeout` (checked when a connection is taken, and by a
//! sweep while anything is parked, so an idle worker closes its connections too).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use tokio::net::TcpStream;

use super::body::UpstreamBody;
use crate::backend::Server;

/// One connection to a backend, ready for a request.
pub type Sender = SendRequest<UpstreamBody>;

/// Why no connection could be opened.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("tcp connect error: {0}")]
    Tcp(std::io::Error),
    #[error("tls handshake: {0}")]
    Tls(std::io::Error),
    #[error("invalid server name {0:?} for TLS")]
    Name(String),
    #[error("http/1.1 handshake: {0}")]
    Handshake(hyper::Error),
    #[error("no connection within {0:?}")]
    Timeout(Duration),
}

/// The idle connections of one worker, by server.
pub struct Pool {
    inner: Arc<Inner>,
}

struct Inner {
    parked: Mutex<Parked>,
    /// Idle connections kept per server and scheme (0: none, every request connects).
    max_idle: usize,
    idle_timeout: Duration,
    connect_timeout: Duration,
    tls: tokio_rustls::TlsConnector,
    h1: http1::Builder,
}

#[derive(Default)]
struct Parked {
    /// By `host:port`; plain and TLS connections apart.
    by_server: HashMap<Arc<str>, [Vec<Idle>; 2]>,
    /// Whether the sweep task runs.
    sweeping: bool,
}

struct Idle {
    tx: Sender,
    since: Instant,
}

impl Pool {
    pub fn new(
        tls: Arc<rustls::ClientConfig>,
        max_idle: usize,
        idle_timeout: Duration,
        connect_timeout: Duration,
    ) -> Pool {
        Pool {
            inner: Arc::new(Inner {
                parked: Mutex::new(Parked::default()),
                max_idle,
                idle_timeout,
                connect_timeout,
                tls: tokio_rustls::TlsConnector::from(tls),
                h1: http1::Builder::new(),
            }),
        }
    }

    /// The most recently parked connection to `server` that is still open, younger than
    /// `upstream_idle_timeout` and waiting for a request.
    pub fn checkout(&self, server: &Server, tls: bool) -> Option<Sender> {
        let mut parked = self.inner.lock();
        let list = &mut parked.by_server.get_mut(&*server.addr)?[usize::from(tls)];
        if list.is_empty() {
            return None;
        }
        let now = Instant::now();
        while let Some(idle) = list.pop() {
            if now.saturating_duration_since(idle.since) < self.inner.idle_timeout
                && idle.tx.is_ready()
            {
                return Some(idle.tx);
            }
        }
        None
    }

    /// Gives a connection back after its response head arrived: parked at once when it
    /// already waits for the next request, else once it does (its body still streaming).
    pub fn release(&self, server: &Server, tls: bool, mut tx: Sender) {
        if self.inner.max_idle == 0 || tx.is_closed() {
            return;
        }
        if tx.is_ready() {
            self.inner.park(&server.addr, tls, tx);
            return;
        }
        let pool = Arc::downgrade(&self.inner);
        let addr = server.addr.clone();
        tokio::spawn(async move {
            if tx.ready().await.is_ok()
                && let Some(inner) = pool.upgrade()
            {
                inner.park(&addr, tls, tx);
            }
        });
    }

    /// Opens a new connection to `server` (TCP, then TLS when asked, then HTTP/1.1), all
    /// within `upstream_connect_timeout`; its connection task runs on this runtime.
    pub async fn connect(&self, server: &Server, tls: bool) -> Result<Sender, ConnectError> {
        let limit = self.inner.connect_timeout;
        match tokio::time::timeout(limit, self.inner.open(server, tls)).await {
            Ok(res) => res,
            Err(_) => Err(ConnectError::Timeout(limit)),
        }
    }

    /// Connections parked now (tests).
    #[cfg(test)]
    fn parked(&self) -> usize {
        self.inner
            .lock()
            .by_server
            .values()
            .map(|l| l[0].len() + l[1].len())
            .sum()
    }
}

impl Inner {
    fn lock(&self) -> std::sync::MutexGuard<'_, Parked> {
        // A panic while parked connections were moved loses at most those connections.
        self.parked.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn park(self: &Arc<Self>, addr: &Arc<str>, tls: bool, tx: Sender) {
        let since = Instant::now();
        let mut parked = self.lock();
        let lists = match parked.by_server.get_mut(&**addr) {
            Some(lists) => lists,
            None => parked.by_server.entry(addr.clone()).or_default(),
        };
        let list = &mut lists[usize::from(tls)];
        if list.len() >= self.max_idle {
            // Full: this connection closes (dropping its sender ends its task).
            return;
        }
        list.push(Idle { tx, since });
        if !parked.sweeping {
            parked.sweeping = true;
            tokio::spawn(sweep(Arc::downgrade(self)));
        }
    }

    async fn open(&self, server: &Server, tls: bool) -> Result<Sender, ConnectError> {
        let tcp = TcpStream::connect((server.host.as_str(), server.port))
            .await
            .map_err(ConnectError::Tcp)?;
        let _ = tcp.set_nodelay(true);
        if !tls {
            return self.handshake(tcp).await;
        }
        let name = ServerName::try_from(server.host.clone())
            .map_err(|_| ConnectError::Name(server.host.clone()))?;
        let stream = self
            .tls
            .connect(name, tcp)
            .await
            .map_err(ConnectError::Tls)?;
        self.handshake(stream).await
    }

    async fn handshake<I>(&self, io: I) -> Result<Sender, ConnectError>
    where
        I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (tx, conn) = self
            .h1
            .handshake(TokioIo::new(io))
            .await
            .map_err(ConnectError::Handshake)?;
        tokio::spawn(async move {
            // `with_upgrades`: a backend's `101` hands the connection to a WebSocket tunnel.
            if let Err(e) = conn.with_upgrades().await {
                tracing::debug!("upstream connection ended: {e}");
            }
        });
        Ok(tx)
    }
}

/// Closes parked connections older than `upstream_idle_timeout` (and forgets those the
/// backend closed) until none is left parked.
async fn sweep(pool: Weak<Inner>) {
    let every = match pool.upgrade() {
        Some(inner) => (inner.idle_timeout / 2).max(Duration::from_millis(100)),
        None => return,
    };
    loop {
        tokio::time::sleep(every).await;
        let Some(inner) = pool.upgrade() else { return };
        if !inner.sweep(Instant::now()) {
            return;
        }
    }
}

impl Inner {
    /// Drops what is older than `upstream_idle_timeout` at `now` or closed; false (and the
    /// sweep task ends) when nothing is left parked.
    fn sweep(&self, now: Instant) -> bool {
        let mut parked = self.lock();
        let timeout = self.idle_timeout;
        parked.by_server.retain(|_, lists| {
            for list in lists.iter_mut() {
                list.retain(|i| {
                    now.saturating_duration_since(i.since) < timeout && !i.tx.is_closed()
                });
            }
            lists.iter().any(|l| !l.is_empty())
        });
        parked.sweeping = !parked.by_server.is_empty();
        parked.sweeping
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    /// A backend answering every request on a connection with "ok", counting connections.
    async fn backend() -> (Server, Arc<std::sync::atomic::AtomicUsize>) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let conns = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let counted = conns.clone();
        tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                counted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut buf = Vec::new();
                    let mut chunk = [0u8; 1024];
                    loop {
                        let n = s.read(&mut chunk).await.unwrap_or(0);
                        if n == 0 {
                            return;
                        }
                        buf.extend_from_slice(&chunk[..n]);
                        while let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                            buf.drain(..end + 4);
                            let reply = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                            if s.write_all(reply).await.is_err() {
                                return;
                            }
                        }
                    }
                });
            }
        });
        (Server::new("127.0.0.1", port), conns)
    }

    fn pool(max_idle: usize, idle: Duration) -> Pool {
        let tls = crate::tls::upstream_config(None).unwrap();
        Pool::new(tls, max_idle, idle, Duration::from_secs(5))
    }

    async fn get(tx: &mut Sender) -> hyper::Response<hyper::body::Incoming> {
        let req = hyper::Request::get("/")
            .header("host", "b")
            .body(UpstreamBody::Empty)
            .unwrap();
        tx.send_request(req).await.unwrap()
    }

    #[tokio::test]
    async fn a_released_connection_is_reused_and_ages_out() {
        let (server, conns) = backend().await;
        let p = pool(4, Duration::from_secs(60));
        assert!(p.checkout(&server, false).is_none());
        let mut tx = p.connect(&server, false).await.unwrap();
        for _ in 0..3 {
            let resp = get(&mut tx).await;
            assert_eq!(resp.status(), 200);
            // The body arrived with the head: the connection waits for the next request.
            http_body_util::BodyExt::collect(resp.into_body())
                .await
                .unwrap();
            tx.ready().await.unwrap();
            p.release(&server, false, tx);
            assert_eq!(p.parked(), 1);
            tx = p.checkout(&server, false).expect("parked connection");
        }
        assert_eq!(conns.load(std::sync::atomic::Ordering::SeqCst), 1);
        // A TLS connection to the same server is another list.
        p.release(&server, false, tx);
        assert!(p.checkout(&server, true).is_none());
        // The sweep closes what sat idle past the timeout.
        assert!(p.inner.sweep(Instant::now()), "young connections stay");
        assert_eq!(p.parked(), 1);
        assert!(!p.inner.sweep(Instant::now() + Duration::from_secs(60)));
        assert_eq!(p.parked(), 0);
        assert!(p.checkout(&server, false).is_none());
    }

    #[tokio::test]
    async fn no_more_than_max_idle_are_kept_and_zero_keeps_none() {
        let (server, _) = backend().await;
        let p = pool(2, Duration::from_secs(60));
        let mut open = Vec::new();
        for _ in 0..3 {
            open.push(p.connect(&server, false).await.unwrap());
        }
        for mut tx in open {
            tx.ready().await.unwrap();
            p.release(&server, false, tx);
        }
        assert_eq!(p.parked(), 2);
        let none = pool(0, Duration::from_secs(60));
        let mut tx = none.connect(&server, false).await.unwrap();
        tx.ready().await.unwrap();
        none.release(&server, false, tx);
        assert_eq!(none.parked(), 0);
    }

    #[tokio::test]
    async fn a_refused_connection_says_so() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let p = pool(4, Duration::from_secs(60));
        let err = p
            .connect(&Server::new("127.0.0.1", port), false)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("tcp connect error"), "{err}");
    }
}
