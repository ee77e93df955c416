//! Test support: spawn the real `enforcer` binary with a temp config on free ports, and an
//! in-process backend to put behind it.

pub mod backend;
pub mod demo;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

pub use backend::Backend;

/// The repository's `certs/` directory.
pub fn certs() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("certs")
}

/// A config directory to start enforcer with.
#[derive(Clone)]
pub struct Setup {
    conf: Vec<(String, String)>,
    apis: Vec<(String, Value)>,
}

impl Setup {
    /// Inline mode on free loopback ports, the repository's dev certificates, two workers.
    pub fn inline() -> Setup {
        let certs = certs();
        Setup {
            conf: vec![
                ("mode".into(), "inline".into()),
                ("http_ws_port".into(), "0".into()),
                ("https_wss_port".into(), "0".into()),
                ("management_port".into(), "0".into()),
                ("bind_address".into(), "127.0.0.1".into()),
                (
                    "tls_cert_path".into(),
                    certs.join("server.crt").display().to_string(),
                ),
                (
                    "tls_key_path".into(),
                    certs.join("server.key").display().to_string(),
                ),
                ("workers".into(), "2".into()),
                ("shutdown_timeout".into(), "20s".into()),
                ("enable_ase_health".into(), "true".into()),
                ("data_dir".into(), "data".into()),
            ],
            apis: Vec::new(),
        }
    }

    /// Sideband mode on free loopback ports (no backend needed).
    pub fn sideband() -> Setup {
        Setup::inline().set("mode", "sideband")
    }

    /// Sets (or replaces) an `ase.conf` key.
    pub fn set(mut self, key: &str, value: &str) -> Setup {
        self.conf.retain(|(k, _)| k != key);
        self.conf.push((key.into(), value.into()));
        self
    }

    /// Adds `api/<id>.json` with this `api_metadata`.
    pub fn api(mut self, id: &str, metadata: Value) -> Setup {
        self.apis
            .push((id.into(), json!({ "api_metadata": metadata })));
        self
    }

    /// Writes the config into a fresh temp dir.
    pub fn write(&self) -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let mut conf = String::from("; written by the test harness\n");
        for (k, v) in &self.conf {
            conf.push_str(&format!("{k}={v}\n"));
        }
        std::fs::write(dir.path().join("ase.conf"), conf).unwrap();
        std::fs::create_dir(dir.path().join("api")).unwrap();
        for (id, doc) in &self.apis {
            let text = serde_json::to_string_pretty(doc).unwrap();
            std::fs::write(dir.path().join("api").join(format!("{id}.json")), text).unwrap();
        }
        dir
    }
}

/// A minimal inline API definition for `url` on `hostname`, forwarding to `servers`.
pub fn api(url: &str, hostname: &str, servers: &[SocketAddr]) -> Value {
    let servers: Vec<Value> = servers
        .iter()
        .map(|s| json!({ "host": s.ip().to_string(), "port": s.port() }))
        .collect();
    json!({ "protocol": "http", "url": url, "hostname": hostname, "servers": servers })
}

/// The path of the `enforcer` binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_enforcer")
}

/// A running enforcer. Killed on drop.
pub struct Enforcer {
    child: Child,
    pub http: SocketAddr,
    pub https: SocketAddr,
    pub management: SocketAddr,
    stderr: Arc<Mutex<String>>,
    /// The thread copying stderr into `stderr`; joined once the process has exited.
    reader: Option<std::thread::JoinHandle<()>>,
    dir: PathBuf,
    _dir: Option<tempfile::TempDir>,
}

impl Enforcer {
    /// Starts enforcer on `setup` and waits for its ready line.
    pub fn start(setup: &Setup) -> Enforcer {
        let dir = setup.write();
        let mut e = Enforcer::start_in(dir.path());
        e._dir = Some(dir);
        e
    }

    /// Starts enforcer on an existing config directory and waits for its ready line.
    pub fn start_in(dir: &Path) -> Enforcer {
        Enforcer::start_under(dir, &[])
    }

    /// Starts enforcer on `setup` under `wrapper` (e.g. `prlimit --nofile=256:256`), which
    /// must exec it as the same process.
    pub fn start_wrapped(setup: &Setup, wrapper: &[&str]) -> Enforcer {
        let dir = setup.write();
        let mut e = Enforcer::start_under(dir.path(), wrapper);
        e._dir = Some(dir);
        e
    }

    /// Starts enforcer on an existing config directory and returns as soon as it is
    /// ready, while it may still be loading its stored records back.
    pub fn start_serving(dir: &Path) -> Enforcer {
        Enforcer::launch(dir, &[], false)
    }

    fn start_under(dir: &Path, wrapper: &[&str]) -> Enforcer {
        Enforcer::launch(dir, wrapper, true)
    }

    fn launch(dir: &Path, wrapper: &[&str], restored: bool) -> Enforcer {
        let mut cmd = match wrapper.split_first() {
            None => Command::new(bin()),
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(bin());
                c
            }
        };
        let mut child = cmd
            .args(["run", "--config"])
            .arg(dir)
            .env("ENFORCER_LOG", "enforcer=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let stderr = Arc::new(Mutex::new(String::new()));
        let mut err_pipe = child.stderr.take().unwrap();
        let sink = stderr.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err_pipe.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        let out = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(out).lines() {
                let Ok(line) = line else { break };
                if line.starts_with("enforcer ready:") {
                    let _ = tx.send(line);
                }
            }
        });
        let line = match rx.recv_timeout(Duration::from_secs(60)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!(
                    "enforcer did not become ready; stderr:\n{}",
                    stderr.lock().unwrap()
                );
            }
        };
        let field = |name: &str| -> SocketAddr {
            line.split_whitespace()
                .find_map(|f| f.strip_prefix(&format!("{name}=")))
                .unwrap_or_else(|| panic!("no {name}= in {line:?}"))
                .parse()
                .unwrap()
        };
        let management = field("management");
        if restored {
            wait_restored(management);
        }
        Enforcer {
            http: field("http"),
            https: field("https"),
            management,
            dir: dir.to_path_buf(),
            child,
            stderr,
            reader: Some(reader),
            _dir: None,
        }
    }

    /// The config directory it runs from.
    pub fn config_dir(&self) -> &Path {
        &self.dir
    }

    /// `http://<management address><path>`
    pub fn admin_url(&self, path: &str) -> String {
        format!("http://{}{path}", self.management)
    }

    /// Polls stderr until it contains `needle`; false if `limit` passes first.
    pub fn wait_for_log(&self, needle: &str, limit: Duration) -> bool {
        let deadline = Instant::now() + limit;
        while Instant::now() < deadline {
            if self.stderr().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        false
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// `http://127.0.0.1:<port><path>`
    pub fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.http)
    }

    /// `https://localhost:<port><path>`
    pub fn https_url(&self, path: &str) -> String {
        format!("https://localhost:{}{path}", self.https.port())
    }

    /// Everything the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.lock().unwrap().clone()
    }

    /// Sends a signal by name (`TERM`, `INT`, ...).
    pub fn signal(&self, name: &str) {
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit, at most `limit`.
    pub fn wait(&mut self, limit: Duration) -> ExitStatus {
        let deadline = Instant::now() + limit;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                // Everything it wrote is in `stderr()` once the reader has seen the end.
                if let Some(reader) = self.reader.take() {
                    let _ = reader.join();
                }
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "enforcer did not exit; stderr:\n{}",
                self.stderr()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Peak resident memory of the process so far, in bytes (Linux `VmHWM`).
    pub fn peak_rss(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap();
        let kb: u64 = status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap();
        kb * 1024
    }
}

impl Drop for Enforcer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("---- enforcer stderr ----\n{}", self.stderr());
        }
    }
}

/// Waits until an instance that just started has loaded its stored records back (it
/// serves at once and restores in the background; tests that compare reports across a
/// restart want the whole of them). Returns at once without a store, or when `/metrics`
/// needs credentials.
fn wait_restored(management: SocketAddr) {
    use std::io::{Read, Write};
    let deadline = Instant::now() + Duration::from_secs(60);
    while Instant::now() < deadline {
        let Ok(mut s) = std::net::TcpStream::connect(management) else {
            return;
        };
        let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
        let _ =
            s.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
        let mut text = String::new();
        let _ = s.read_to_string(&mut text);
        if !text.starts_with("HTTP/1.1 200") || !text.contains("\nenforcer_store_restoring 1") {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Runs `enforcer <args>` to completion and returns (status, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (ExitStatus, String, String) {
    let out = Command::new(bin()).args(args).output().unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// A client for the management API, sending ASE's default credentials.
pub fn admin_client() -> reqwest::Client {
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert("x-ase-access-key", "admin".parse().unwrap());
    headers.insert("x-ase-secret-key", "admin".parse().unwrap());
    client_builder().default_headers(headers).build().unwrap()
}

/// One management API call with the default credentials; asserts success and returns
/// the JSON answer.
pub async fn manage(
    e: &Enforcer,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) -> serde_json::Value {
    let mut req = admin_client().request(method, e.admin_url(path));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    assert!(r.status().is_success(), "{path}: {}", r.status());
    r.json().await.unwrap()
}

/// A loopback port nothing listens on right now (for a server the test starts itself).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A reqwest client that trusts the dev CA, resolves `localhost` to 127.0.0.1 and
/// negotiates h2 or HTTP/1.1 by ALPN.
pub fn client() -> reqwest::Client {
    client_builder().build().unwrap()
}

pub fn client_builder() -> reqwest::ClientBuilder {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let ca = std::fs::read(certs().join("ca.crt")).unwrap();
    reqwest::Client::builder()
        .tls_certs_only([reqwest::Certificate::from_pem(&ca).unwrap()])
        .resolve("localhost", "127.0.0.1:0".parse().unwrap())
        .no_proxy()
        .timeout(Duration::from_secs(60))
}

/// Sends raw bytes on a fresh connection and returns everything read until the server
/// closes or `limit` passes, as text.
pub fn raw_exchange(addr: SocketAddr, request: &[u8], limit: Duration) -> String {
    String::from_utf8_lossy(&raw_exchange_bytes(addr, request, limit)).into_owned()
}

/// As [`raw_exchange`], as bytes.
pub fn raw_exchange_bytes(addr: SocketAddr, request: &[u8], limit: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    s.write_all(request).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 8192];
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => out.extend_from_slice(&buf[..n]),
            Err(_) => break,
        }
    }
    out
}

/// Polls `cond` until it holds or `limit` passes; returns whether it held.
pub async fn eventually<F, Fut>(limit: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + limit;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A loopback port that nothing listens on (bound, then released).
pub fn closed_port() -> SocketAddr {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap()
}

/// `GET /metrics` (open by default), checked to be Prometheus text.
pub async fn scrape(e: &Enforcer) -> String {
    let r = client().get(e.admin_url("/metrics")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["content-type"],
        "text/plain; version=0.0.4; charset=utf-8"
    );
    r.text().await.unwrap()
}

/// The value of one sample line, e.g. `enforcer_requests_total{api="shop",...}`.
pub fn sample(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// A well-behaved client running beside the attacks: it sends `request(n)` in a loop
/// and checks every answer with `check`. Stopping it returns (answers checked, failures).
pub struct Watcher {
    stop: Arc<AtomicBool>,
    answered: Arc<std::sync::atomic::AtomicU64>,
    task: tokio::task::JoinHandle<(u64, Vec<String>)>,
}

impl Watcher {
    pub fn start<F, Fut>(mut exchange: F) -> Watcher
    where
        F: FnMut(u64) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), String>> + Send,
    {
        let stop = Arc::new(AtomicBool::new(false));
        let answered = Arc::new(std::sync::atomic::AtomicU64::new(0));
        let (flag, count) = (stop.clone(), answered.clone());
        let task = tokio::spawn(async move {
            let (mut n, mut failures) = (0u64, Vec::new());
            while !flag.load(Ordering::Relaxed) {
                n += 1;
                if let Err(why) = exchange(n).await {
                    failures.push(why);
                }
                count.fetch_add(1, Ordering::Relaxed);
            }
            (n, failures)
        });
        Watcher {
            stop,
            answered,
            task,
        }
    }

    /// A good client's loop: `GET url?n=N` must answer 200 and echo its query.
    pub fn echo(url: String) -> Watcher {
        Watcher::start(move |n| {
            let url = url.clone();
            async move {
                let r = client()
                    .get(format!("{url}?n={n}"))
                    .send()
                    .await
                    .map_err(|e| format!("{n}: {e}"))?;
                let status = r.status();
                let body: Value = r.json().await.map_err(|e| format!("{n}: {e}"))?;
                if status != 200 || body["query"] != format!("n={n}") {
                    return Err(format!("{n}: {status} {body}"));
                }
                Ok(())
            }
        })
    }

    /// Stops the client once it has had at least 20 exchanges (so a quick attack still
    /// has some good traffic after it) and fails the test if any went wrong.
    pub async fn finish(self) {
        let count = self.answered.clone();
        eventually(Duration::from_secs(30), || {
            let count = count.clone();
            async move { count.load(Ordering::Relaxed) > 20 }
        })
        .await;
        self.stop.store(true, Ordering::Relaxed);
        let (n, failures) = self.task.await.unwrap();
        assert!(
            failures.is_empty(),
            "{} of {n} good requests went wrong: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
        assert!(n > 20, "the good client got only {n} answers");
    }
}
