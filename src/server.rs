//! Listeners, workers and the life of a connection: the one place that decides the
//! runtime shape.
//!
//! # Worker model
//! * `runtime=per_core` (default): one OS thread per worker, each with a current-thread
//!   tokio runtime and its own `SO_REUSEPORT` listener on every data port, so the kernel
//!   spreads connections and a request never changes thread. Each worker has its own
//!   upstream pool.
//! * `runtime=multi_thread`: one work-stealing runtime with `workers` threads and a single
//!   listener per port.
//!
//! A control runtime (on the main thread) handles signals and the health checkers.
//!
//! # A connection
//! Accept (over `max_connections` the socket is closed at once) → `TCP_NODELAY` → TLS
//! handshake within `tls_handshake_timeout` (ALPN picks h2 or HTTP/1.1), or on the plain
//! port a look at the first bytes for the HTTP/2 preface (h2c prior knowledge) → hyper
//! serves the connection. Once the first byte of an HTTP/1.1 request has arrived, its whole
//! head must arrive within `header_read_timeout` (slowloris); a keep-alive connection
//! waiting for its next request is not timed by that, only by `idle_timeout`: any
//! connection with no traffic for `idle_timeout` is closed gracefully.
//!
//! # Shutdown
//! SIGHUP re-reads the config directory and swaps the API definitions (see
//! `App::reload`).
//!
//! SIGTERM or SIGINT: listeners close, every connection is asked to finish gracefully
//! (in-flight requests complete, HTTP/1.1 closes after the current response, HTTP/2 sends
//! GOAWAY), and the process exits 0 when all are done or `shutdown_timeout` has passed.
//! A second signal exits at once.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::admin::{self, client::Instance};
use crate::app::{Addresses, App};
use crate::config::{Mode, RuntimeShape};
use crate::metrics::unix_secs;
use crate::proxy::body::ProxyBody;
use crate::proxy::{self, Conn, Inline};
use crate::shutdown::stopped;
use crate::sideband::{self, handler::Caller};

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("cannot listen on {addr} ({key}): {source}")]
    Bind {
        key: &'static str,
        addr: SocketAddr,
        #[source]
        source: io::Error,
    },
    #[error("cannot start the async runtime: {0}")]
    Runtime(#[source] io::Error),
    #[error("cannot install signal handlers: {0}")]
    Signals(#[source] io::Error),
    #[error("data_dir {}: {source}", path.display())]
    DataDir {
        path: std::path::PathBuf,
        #[source]
        source: io::Error,
    },
}

/// Binds every port, starts the workers, prints the ready line and serves until a
/// shutdown signal has been handled. Returns once the drain is over.
pub fn run(app: Arc<App>) -> Result<(), ServerError> {
    let s = &app.settings;
    let instance_file = Instance::path(&s.data_dir);
    std::fs::create_dir_all(&s.data_dir).map_err(|source| ServerError::DataDir {
        path: s.data_dir.clone(),
        source,
    })?;
    let workers = s.worker_count();
    let per_core = s.runtime == RuntimeShape::PerCore;
    let copies = if per_core { workers } else { 1 };
    let http = bind_all(
        "http_ws_port",
        SocketAddr::new(s.bind_address, s.http_ws_port),
        copies,
    )?;
    let https = bind_all(
        "https_wss_port",
        SocketAddr::new(s.bind_address, s.https_wss_port),
        copies,
    )?;
    let management = bind_all(
        "management_port",
        SocketAddr::new(s.management_bind_address, s.management_port),
        1,
    )?;
    let addrs = Addresses {
        http: http.addr,
        https: https.addr,
        management: management.addr,
    };
    let admin_listener = management.listeners.into_iter().next();

    let (stop_tx, stop_rx) = watch::channel(false);
    let mut sets: Vec<Vec<(std::net::TcpListener, bool)>> =
        (0..copies).map(|_| Vec::new()).collect();
    for (i, l) in http.listeners.into_iter().enumerate() {
        sets[i].push((l, false));
    }
    for (i, l) in https.listeners.into_iter().enumerate() {
        sets[i].push((l, true));
    }

    if per_core {
        let control = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        let mut threads = Vec::with_capacity(workers);
        let signals = control.block_on(async { Signals::install() })?;
        for (i, set) in sets.into_iter().enumerate() {
            let (app, stop) = (app.clone(), stop_rx.clone());
            let thread = std::thread::Builder::new()
                .name(format!("enforcer-worker-{i}"))
                .spawn(move || {
                    match tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                    {
                        Ok(rt) => rt.block_on(worker(app, set, stop)),
                        Err(e) => tracing::error!("worker {i}: cannot start its runtime: {e}"),
                    }
                })
                .map_err(ServerError::Runtime)?;
            threads.push(thread);
        }
        control.block_on(
            Control {
                app: app.clone(),
                signals,
                stop: stop_tx,
                stopping: stop_rx,
                admin_listener,
                addrs,
                workers,
            }
            .run(),
        );
        for t in threads {
            let _ = t.join();
        }
    } else {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(workers)
            .thread_name("enforcer-worker")
            .enable_all()
            .build()
            .map_err(ServerError::Runtime)?;
        rt.block_on(async move {
            let signals = Signals::install()?;
            let set = sets.into_iter().flatten().collect();
            let serving = tokio::spawn(worker(app.clone(), set, stop_rx.clone()));
            Control {
                app,
                signals,
                stop: stop_tx,
                stopping: stop_rx,
                admin_listener,
                addrs,
                workers,
            }
            .run()
            .await;
            let _ = serving.await;
            Ok::<(), ServerError>(())
        })?;
    }
    let _ = std::fs::remove_file(instance_file);
    tracing::info!("shutdown complete");
    Ok(())
}

/// The control side of the process: signals, the management API, health checks,
/// compaction and the ready line.
struct Control {
    app: Arc<App>,
    signals: Signals,
    stop: watch::Sender<bool>,
    stopping: watch::Receiver<bool>,
    admin_listener: Option<std::net::TcpListener>,
    addrs: Addresses,
    workers: usize,
}

impl Control {
    /// Starts the background tasks and announces readiness; returns once shutdown has been
    /// requested (the workers drain on their own).
    async fn run(self) {
        let Control {
            app,
            mut signals,
            stop,
            stopping,
            admin_listener,
            addrs,
            workers,
        } = self;
        let mut background = vec![tokio::spawn(supervise_health(app.clone()))];
        background.push(tokio::spawn(compact_every_minute(app.clone())));
        background.push(tokio::spawn(sweep_enforcement(app.clone())));
        if app.settings.mode == Mode::Sideband {
            background.push(tokio::spawn(sweep_pending(app.clone())));
        }
        match admin_listener.map(TcpListener::from_std) {
            Some(Ok(l)) => {
                let tls = app
                    .settings
                    .management_tls
                    .then(|| TlsAcceptor::from(app.server_tls.clone()));
                tokio::spawn(admin::serve(app.clone(), l, tls, stopping));
            }
            Some(Err(e)) => tracing::error!("cannot register the management listener: {e}"),
            None => {}
        }

        announce(&app, addrs, workers);
        let signal = loop {
            match signals.next().await {
                "SIGHUP" => {
                    let reloading = app.clone();
                    match tokio::task::spawn_blocking(move || reloading.reload()).await {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => tracing::error!(
                            "SIGHUP: reload rejected, the running config stays: {e}"
                        ),
                        Err(e) => tracing::error!("SIGHUP: reload failed: {e}"),
                    }
                }
                other => break other,
            }
        };
        tracing::info!(
            "{signal}: draining connections (up to {:?})",
            app.settings.shutdown_timeout
        );
        let _ = stop.send(true);
        for task in background {
            task.abort();
        }
        // The workers drain on their own threads; a second signal cuts that short.
        tokio::spawn(async move {
            let again = signals.next().await;
            tracing::warn!("{again} during shutdown: exiting now");
            std::process::exit(130);
        });
    }
}

/// Runs the health checkers of the current API table, and starts them afresh whenever
/// the table changes (reload, API added, updated or deleted).
async fn supervise_health(app: Arc<App>) {
    let checker = Arc::new(proxy::forward::Forwarder::with_pool(
        &app.settings,
        app.upstream_tls.clone(),
        0,
    ));
    let mut changes = app.apis_changed.subscribe();
    loop {
        let tasks = proxy::health::spawn(
            checker.clone(),
            &app.apis.load(),
            app.settings.upstream_timeout,
        );
        let changed = changes.changed().await;
        for t in tasks {
            t.abort();
        }
        if changed.is_err() {
            return;
        }
    }
}

/// Expires deny-list entries and forgets idle limiter and detector state (see `enforce`).
async fn sweep_enforcement(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let app = app.clone();
        let _ = tokio::task::spawn_blocking(move || app.pipeline().sweep()).await;
    }
}

/// Records sideband requests whose response call never came (see `sideband::correlate`).
async fn sweep_pending(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tick.tick().await;
        sideband::calls::sweep(&app);
    }
}

/// Rolls aged time buckets down the tiers (see `metrics`), off the async threads.
async fn compact_every_minute(app: Arc<App>) {
    let mut tick = tokio::time::interval(Duration::from_secs(60));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let metrics = app.metrics.clone();
        let now = unix_secs(std::time::SystemTime::now());
        let _ = tokio::task::spawn_blocking(move || metrics.compact(now)).await;
    }
}

/// Records the bound addresses in `<data_dir>/instance.json` (for the CLI) and prints
/// the machine-readable ready line on stdout (tests and scripts wait for it).
fn announce(app: &App, addrs: Addresses, workers: usize) {
    use std::io::Write;
    let instance = Instance {
        pid: std::process::id(),
        mode: app.settings.mode.as_str().to_string(),
        http: addrs.http,
        https: addrs.https,
        management: addrs.management,
    };
    let file = Instance::path(&app.settings.data_dir);
    let written = serde_json::to_vec_pretty(&instance)
        .map_err(io::Error::other)
        .and_then(|json| std::fs::write(&file, json));
    if let Err(e) = written {
        tracing::warn!(
            "cannot write {}: {e} (the CLI will need management_port set)",
            file.display()
        );
    }
    let line = format!(
        "enforcer ready: mode={} http={} https={} management={} workers={}",
        app.settings.mode.as_str(),
        addrs.http,
        addrs.https,
        addrs.management,
        workers
    );
    tracing::info!("{line}");
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
    // Last: what waits for the ports (the stored records' restore) starts after the line.
    let _ = app.addresses.set(addrs);
}

/// SIGXFSZ (tokio names no constant for it).
const XFSZ: i32 = libc::SIGXFSZ;

struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
    /// A write past the file-size limit (`ulimit -f`: a full disk as far as the store
    /// is concerned) would kill the process by default; caught, the write fails with
    /// EFBIG instead and the store reports it, keeping records in memory.
    xfsz: tokio::signal::unix::Signal,
}

impl Signals {
    /// Installed before the ready line, so a signal sent right after it is handled.
    fn install() -> Result<Signals, ServerError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Signals {
            term: signal(SignalKind::terminate()).map_err(ServerError::Signals)?,
            int: signal(SignalKind::interrupt()).map_err(ServerError::Signals)?,
            hup: signal(SignalKind::hangup()).map_err(ServerError::Signals)?,
            xfsz: signal(SignalKind::from_raw(XFSZ)).map_err(ServerError::Signals)?,
        })
    }

    async fn next(&mut self) -> &'static str {
        loop {
            tokio::select! {
                _ = self.term.recv() => return "SIGTERM",
                _ = self.int.recv() => return "SIGINT",
                _ = self.hup.recv() => return "SIGHUP",
                _ = self.xfsz.recv() => {
                    tracing::warn!("SIGXFSZ: a file reached the file-size limit; the write fails and is reported");
                }
            }
        }
    }
}

struct Bound {
    addr: SocketAddr,
    listeners: Vec<std::net::TcpListener>,
}

/// Binds `copies` listeners to `addr` (port 0: a free port, the same for every copy).
///
/// A first probe without `SO_REUSEPORT` proves the port is free: otherwise a second
/// enforcer started by the same user would silently share the port instead of failing.
fn bind_all(key: &'static str, addr: SocketAddr, copies: usize) -> Result<Bound, ServerError> {
    let err = |source| ServerError::Bind { key, addr, source };
    let probe = bind_one(addr, false).map_err(err)?;
    let addr = probe.local_addr().map_err(err)?;
    if copies == 1 {
        return Ok(Bound {
            addr,
            listeners: vec![probe],
        });
    }
    drop(probe);
    let listeners = (0..copies)
        .map(|_| bind_one(addr, true))
        .collect::<io::Result<Vec<_>>>()
        .map_err(|source| ServerError::Bind { key, addr, source })?;
    Ok(Bound { addr, listeners })
}

fn bind_one(addr: SocketAddr, reuse_port: bool) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    if reuse_port {
        socket.set_reuse_port(true)?;
    }
    if addr.is_ipv6() {
        socket.set_only_v6(false)?;
    }
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// What one worker needs to serve its connections.
struct Worker {
    app: Arc<App>,
    plane: Plane,
    h1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    tls: TlsAcceptor,
    stop: watch::Receiver<bool>,
}

/// hyper's own limit on request headers when none is set.
const HYPER_MAX_HEADERS: usize = 100;

/// Serves the worker's listeners until shutdown, then waits for its connections to drain.
async fn worker(
    app: Arc<App>,
    listeners: Vec<(std::net::TcpListener, bool)>,
    stop: watch::Receiver<bool>,
) {
    let s = &app.settings;
    let mut h1 = http1::Builder::new();
    // hyper's own header timer also runs while a keep-alive connection waits for its next
    // request; `watch_conn` times heads from their first byte instead.
    h1.timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_header_size(s.max_header_size)
        .keep_alive(true);
    // hyper parses into uninitialised stack space for its own default of 100 headers, but
    // fills a buffer of any limit it is given element by element (~2,400 instructions per
    // request): the limit is given only when it is not that default.
    if s.max_headers != HYPER_MAX_HEADERS {
        h1.max_headers(s.max_headers);
    }
    let mut h2 = http2::Builder::new(TokioExecutor::new());
    h2.timer(TokioTimer::new())
        .max_concurrent_streams(s.h2_max_concurrent_streams)
        .max_header_list_size(s.max_header_size as u32);
    let plane = match app.settings.mode {
        Mode::Inline => Plane::Inline(Arc::new(Inline::new(app.clone()))),
        Mode::Sideband => Plane::Sideband,
    };
    let w = Arc::new(Worker {
        plane,
        tls: TlsAcceptor::from(app.server_tls.clone()),
        app: app.clone(),
        h1,
        h2,
        stop: stop.clone(),
    });
    let (drain_tx, mut drain_rx) = mpsc::channel::<()>(1);
    for (listener, tls) in listeners {
        match TcpListener::from_std(listener) {
            Ok(l) => {
                tokio::spawn(accept_loop(w.clone(), l, tls, drain_tx.clone()));
            }
            Err(e) => tracing::error!("cannot register a listener: {e}"),
        }
    }
    drop(drain_tx);
    let mut stop = stop;
    stopped(&mut stop).await;
    // Every connection holds a drain sender; `recv` returns None once all are gone.
    if tokio::time::timeout(app.settings.shutdown_timeout, drain_rx.recv())
        .await
        .is_err()
    {
        tracing::warn!(
            "{} connections still open after {:?}: closing them",
            app.live_connections(),
            app.settings.shutdown_timeout
        );
    }
}

async fn accept_loop(w: Arc<Worker>, listener: TcpListener, tls: bool, drain: mpsc::Sender<()>) {
    let mut stop = w.stop.clone();
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stopped(&mut stop) => break,
        };
        let Some(live) = w.app.admit(drain.clone()) else {
            tracing::debug!(%peer, "max_connections reached: connection closed");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let handler = match &w.plane {
            Plane::Inline(inline) => Handler::Inline(Arc::new(Conn::new(
                inline.clone(),
                w.app.next_connection_id(),
                peer,
                tls,
                live,
            ))),
            Plane::Sideband => Handler::Sideband(Arc::new(Caller::new(w.app.clone(), peer, live))),
        };
        tokio::spawn(serve(w.clone(), stream, peer, tls, handler));
    }
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

#[derive(Clone, Copy)]
enum Proto {
    H1,
    H2,
}

/// What the data ports serve on a worker.
enum Plane {
    Inline(Arc<Inline>),
    Sideband,
}

/// Where one connection's requests go.
#[derive(Clone)]
enum Handler {
    Inline(Arc<Conn>),
    Sideband(Arc<Caller>),
}

async fn serve(
    w: Arc<Worker>,
    mut stream: TcpStream,
    peer: SocketAddr,
    tls: bool,
    handler: Handler,
) {
    let activity = Arc::new(Activity::new());
    let s = &w.app.settings;
    if tls {
        let accepted = tokio::time::timeout(s.tls_handshake_timeout, w.tls.accept(stream)).await;
        let tls = match accepted {
            Ok(Ok(tls)) => tls,
            Ok(Err(e)) => {
                tracing::debug!(%peer, "TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::debug!(%peer, "TLS handshake timed out");
                return;
            }
        };
        let proto = match tls.get_ref().1.alpn_protocol() {
            Some(b"h2") => Proto::H2,
            _ => Proto::H1,
        };
        let io = ConnIo::new(tls, Bytes::new(), activity.clone());
        drive(&w, io, proto, handler, &activity).await;
    } else {
        let sniffed = tokio::time::timeout(s.header_read_timeout, sniff(&mut stream)).await;
        let Ok(Ok((proto, prefix))) = sniffed else {
            return;
        };
        let io = ConnIo::new(stream, prefix, activity.clone());
        drive(&w, io, proto, handler, &activity).await;
    }
}

/// Reads just enough of a plain connection to tell the HTTP/2 preface from HTTP/1.
async fn sniff(stream: &mut TcpStream) -> io::Result<(Proto, Bytes)> {
    let mut buf = BytesMut::with_capacity(1024);
    loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        let n = buf.len().min(H2_PREFACE.len());
        if buf[..n] != H2_PREFACE[..n] {
            return Ok((Proto::H1, buf.freeze()));
        }
        if n == H2_PREFACE.len() {
            return Ok((Proto::H2, buf.freeze()));
        }
    }
}

async fn drive<I>(
    w: &Worker,
    io: ConnIo<I>,
    proto: Proto,
    handler: Handler,
    activity: &Arc<Activity>,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let tracker = activity.clone();
    let svc = service_fn(move |req| {
        let handler = handler.clone();
        // The head is complete: the header timer stops until the answer has been sent.
        let in_flight = InFlight::start(tracker.clone());
        async move {
            let resp = match handler {
                Handler::Inline(conn) => proxy::handler::handle(conn, req).await,
                Handler::Sideband(caller) => sideband::handler::handle(caller, req)
                    .await
                    .map(ProxyBody::local),
            };
            Ok::<_, Infallible>(resp.map(|body| Tracked {
                inner: body,
                _in_flight: in_flight,
            }))
        }
    });
    let io = TokioIo::new(io);
    let mut stop = w.stop.clone();
    let s = &w.app.settings;
    let (idle, head) = (s.idle_timeout, s.header_read_timeout);
    match proto {
        Proto::H1 => {
            let c = w.h1.serve_connection(io, svc).with_upgrades();
            watch_conn(c, &mut stop, activity, idle, Some(head)).await
        }
        Proto::H2 => {
            let c = w.h2.serve_connection(io, svc);
            watch_conn(c, &mut stop, activity, idle, None).await
        }
    }
}

/// A request being answered on a connection: from its complete head until its response
/// body has been sent (or dropped). While one is, bytes that arrive are its body, not the
/// start of the next head.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn start(activity: Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::AcqRel);
        activity.head_since_ms.store(NO_HEAD, Ordering::Release);
        InFlight(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

pin_project_lite::pin_project! {
    /// A response body that keeps its request [`InFlight`] until it is done.
    struct Tracked<B> {
        #[pin]
        inner: B,
        _in_flight: InFlight,
    }
}

impl<B: hyper::body::Body> hyper::body::Body for Tracked<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        self.project().inner.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

/// A hyper connection that can be asked to finish gracefully.
trait Graceful: Future<Output = Result<(), hyper::Error>> {
    fn graceful(self: Pin<&mut Self>);
}

impl<I, S, B> Graceful for http1::UpgradeableConnection<I, S>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    B: hyper::body::Body + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

impl<I, S, B> Graceful for http2::Connection<I, S, TokioExecutor>
where
    S: hyper::service::HttpService<hyper::body::Incoming, ResBody = B>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    I: hyper::rt::Read + hyper::rt::Write + Unpin,
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    TokioExecutor: hyper::rt::bounds::Http2ServerConnExec<S::Future, B>,
{
    fn graceful(self: Pin<&mut Self>) {
        self.graceful_shutdown();
    }
}

/// Runs a connection to its end. Shutdown asks it to finish gracefully (the worker's
/// `shutdown_timeout` bounds how long that may take); idleness does too, but an idle
/// connection gets only a short grace to complete the close, since HTTP/2's graceful close
/// waits on the peer (a PING round trip) and a dead peer never answers.
async fn watch_conn<C: Graceful>(
    conn: C,
    stop: &mut watch::Receiver<bool>,
    activity: &Activity,
    idle: Duration,
    head: Option<Duration>,
) {
    tokio::pin!(conn);
    let mut closing = false;
    let mut cut_off: Option<Instant> = None;
    loop {
        tokio::select! {
            // The connection first: it is what wakes the task almost every time.
            biased;
            res = conn.as_mut() => {
                if let Err(e) = res {
                    tracing::debug!("connection ended: {e}");
                }
                return;
            }
            _ = stopped(stop), if !closing => {
                closing = true;
                conn.as_mut().graceful();
            }
            _ = activity.idle_for(idle), if !closing => {
                closing = true;
                cut_off = Some(Instant::now() + idle.min(IDLE_CLOSE_GRACE));
                conn.as_mut().graceful();
            }
            _ = sleep_until_some(cut_off) => {
                tracing::debug!("idle connection did not close in time: dropped");
                return;
            }
            _ = activity.head_overdue(head.unwrap_or(Duration::MAX)), if head.is_some() => {
                tracing::debug!("request head not complete within header_read_timeout: connection closed");
                return;
            }
        }
    }
}

/// How long an idle connection may take to close gracefully before it is dropped.
const IDLE_CLOSE_GRACE: Duration = Duration::from_secs(5);

async fn sleep_until_some(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// `head_since_ms` when no request head is being read.
const NO_HEAD: u64 = u64::MAX;

/// When a connection last moved a byte, and whether a request head is being read.
struct Activity {
    epoch: Instant,
    last_ms: AtomicU64,
    /// When the first byte of a request head that is not complete yet arrived.
    head_since_ms: AtomicU64,
    /// Requests between their complete head and the end of their answer.
    in_flight: AtomicU32,
}

impl Activity {
    fn new() -> Activity {
        Activity {
            epoch: Instant::now(),
            last_ms: AtomicU64::new(0),
            head_since_ms: AtomicU64::new(NO_HEAD),
            in_flight: AtomicU32::new(0),
        }
    }

    fn touch(&self) {
        self.last_ms
            .store(self.epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    }

    /// Bytes arrived: with no request in flight they start a head, which starts its timer.
    fn received(&self) {
        let now = self.epoch.elapsed().as_millis() as u64;
        self.last_ms.store(now, Ordering::Relaxed);
        if self.in_flight.load(Ordering::Acquire) == 0 {
            let _ = self.head_since_ms.compare_exchange(
                NO_HEAD,
                now,
                Ordering::AcqRel,
                Ordering::Relaxed,
            );
        }
    }

    /// Resolves once a request head has been arriving for `limit` without completing.
    async fn head_overdue(&self, limit: Duration) {
        loop {
            let since = self.head_since_ms.load(Ordering::Acquire);
            let wait = if since == NO_HEAD {
                // Nothing to time now; look again within the limit.
                limit
            } else {
                let deadline = self.epoch + Duration::from_millis(since) + limit;
                if Instant::now() >= deadline {
                    return;
                }
                deadline - Instant::now()
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// Resolves once no byte has moved for `idle`.
    async fn idle_for(&self, idle: Duration) {
        loop {
            let last = self.epoch + Duration::from_millis(self.last_ms.load(Ordering::Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            tokio::time::sleep_until(deadline).await;
        }
    }
}

/// A client stream with the bytes already read while sniffing put back in front, and
/// every successful read or write recorded in its [`Activity`].
struct ConnIo<I> {
    inner: I,
    prefix: Bytes,
    activity: Arc<Activity>,
}

impl<I> ConnIo<I> {
    fn new(inner: I, prefix: Bytes, activity: Arc<Activity>) -> ConnIo<I> {
        if !prefix.is_empty() {
            // The sniffed bytes are the start of the first request.
            activity.received();
        }
        ConnIo {
            inner,
            prefix,
            activity,
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ConnIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(&self.prefix[..n]);
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let res = Pin::new(&mut self.inner).poll_read(cx, buf);
        if matches!(res, Poll::Ready(Ok(()))) && buf.filled().len() > before {
            self.activity.received();
        }
        res
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ConnIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write(cx, data);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let res = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        if matches!(res, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        res
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
