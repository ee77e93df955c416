//! `enforcer demo`: the product on its shipped config with something to look at.
//!
//! It copies the config directory into a scratch directory and adjusts the copy (every
//! API's servers point at a built-in sample backend, `X-Forwarded-For` is trusted so the
//! generated clients can come from many addresses, usernames come from an `x-user` header,
//! a decoy API `/admin` is added, nothing is persisted), then runs inline mode on it as
//! `enforcer run` would, plus a traffic generator: a steady crowd of ordinary shoppers
//! and, every [`WAVE`], a few attackers (a login attack, a stolen token, an API prober
//! and a decoy visitor), so every dashboard page has data within seconds.
//!
//! The demo goes through the real listeners and pipeline; nothing is injected into the
//! metrics behind the proxy's back.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};

use crate::app::App;

/// How often a new wave of attackers comes.
pub const WAVE: Duration = Duration::from_secs(5 * 60);

/// Why the demo could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not an API definition: {reason}")]
    Api { path: PathBuf, reason: String },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> DemoError + '_ {
    move |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A new directory under the system temp dir with an unpredictable name, created here
/// (never an existing one another user could have prepared).
pub fn scratch_dir() -> std::io::Result<PathBuf> {
    let mut raw = [0u8; 8];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut raw)
        .map_err(|_| std::io::Error::other("no randomness"))?;
    let name: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let dir = std::env::temp_dir().join(format!("enforcer-demo-{name}"));
    std::fs::create_dir(&dir)?;
    Ok(dir)
}

/// Starts the sample backend on a free loopback port, on `rt`.
pub fn start_backend(rt: &tokio::runtime::Runtime) -> Result<SocketAddr, std::io::Error> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    rt.spawn(async move {
        let Ok(listener) = tokio::net::TcpListener::from_std(listener) else {
            return;
        };
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let svc = service_fn(|req| async move { Ok::<_, Infallible>(shop(req).await) });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(addr)
}

/// The sample shop: a catalog, a cart, a login that wants the password `demo`, a
/// password reset; anything else is 404.
async fn shop(req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_string();
    let method = req.method().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let tail = path.split('/').skip(2).collect::<Vec<_>>();
    let (status, answer) = match (&method, tail.as_slice()) {
        (&Method::GET, ["items"] | ["items", ""]) => (
            StatusCode::OK,
            json!({"items": (1..=20).map(|i| json!({"id": i, "name": format!("item {i}")})).collect::<Vec<_>>()}),
        ),
        (&Method::GET, ["items", id]) if id.parse::<u8>().is_ok_and(|i| (1..=20).contains(&i)) => {
            (StatusCode::OK, json!({"id": id, "price": 10}))
        }
        (&Method::POST, ["cart"]) => (StatusCode::CREATED, json!({"cart": "updated"})),
        (&Method::GET, ["cart"]) => (StatusCode::OK, json!({"cart": []})),
        (&Method::POST, ["login"]) => {
            if body.windows(13).any(|w| w == b"password=demo") {
                (StatusCode::OK, json!({"login": "ok"}))
            } else {
                (StatusCode::UNAUTHORIZED, json!({"login": "failed"}))
            }
        }
        (&Method::POST, ["password-reset"]) => (StatusCode::OK, json!({"reset": "sent"})),
        (&Method::GET, ["health"]) => (StatusCode::OK, json!({"status": "up"})),
        _ => (StatusCode::NOT_FOUND, json!({"error": "not found"})),
    };
    let mut resp = Response::new(Full::new(Bytes::from(answer.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("application/json"),
    );
    resp
}

/// Writes the demo's copy of `config` into `work` (`work/config`), with every API sent to
/// `backend`. Returns the copy's directory.
pub fn prepare(config: &Path, work: &Path, backend: SocketAddr) -> Result<PathBuf, DemoError> {
    let out = work.join("config");
    let api_out = out.join("api");
    std::fs::create_dir_all(&api_out).map_err(io(&api_out))?;
    let base = std::fs::canonicalize(config).map_err(io(config))?;

    // ase.conf: relative paths were relative to the original; the demo changes a few keys.
    let conf_path = config.join("ase.conf");
    let conf = std::fs::read_to_string(&conf_path).map_err(io(&conf_path))?;
    let overrides = [
        ("mode", "inline".to_string()),
        // A demo is for this machine: its data ports listen on loopback only.
        ("bind_address", "127.0.0.1".to_string()),
        ("enable_xff", "true".to_string()),
        ("store", "none".to_string()),
        // The demo's made-up attackers must never reach a real cluster.
        ("redis_url", String::new()),
        ("data_dir", work.join("data").display().to_string()),
    ];
    let mut lines = Vec::new();
    for line in conf.lines() {
        let key = line.split_once('=').map(|(k, _)| k.trim());
        match key {
            Some(k) if overrides.iter().any(|(o, _)| *o == k) => continue,
            Some(k) if k.ends_with("_path") => {
                let value = line.split_once('=').map_or("", |(_, v)| v.trim());
                if value.is_empty() || Path::new(value).is_absolute() {
                    lines.push(line.to_string());
                } else {
                    lines.push(format!("{k}={}", base.join(value).display()));
                }
            }
            _ => lines.push(line.to_string()),
        }
    }
    lines.push("; enforcer demo".into());
    lines.extend(overrides.iter().map(|(k, v)| format!("{k}={v}")));
    let conf_out = out.join("ase.conf");
    std::fs::write(&conf_out, lines.join("\n") + "\n").map_err(io(&conf_out))?;

    let server = json!([{ "host": "127.0.0.1", "port": backend.port() }]);
    let api_dir = config.join("api");
    let mut entries: Vec<_> = std::fs::read_dir(&api_dir)
        .map_err(io(&api_dir))?
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    entries.sort();
    for path in entries {
        let text = std::fs::read_to_string(&path).map_err(io(&path))?;
        let mut v: Value = serde_json::from_str(&text).map_err(|e| DemoError::Api {
            path: path.clone(),
            reason: e.to_string(),
        })?;
        let Some(m) = v.get_mut("api_metadata").and_then(Value::as_object_mut) else {
            return Err(DemoError::Api {
                path,
                reason: "no api_metadata object".into(),
            });
        };
        m.insert("servers".into(), server.clone());
        m.insert("health_check".into(), json!(false));
        m.insert("server_ssl".into(), json!(false));
        let no_jwt = m
            .get("jwt")
            .and_then(|j| j.get("location"))
            .and_then(Value::as_str)
            .is_none_or(str::is_empty);
        if no_jwt {
            m.insert("username_header".into(), json!("x-user"));
        }
        if let Some(url) = m.get("url").and_then(Value::as_str).map(str::to_string) {
            m.entry("password_reset_url")
                .or_insert_with(|| json!(format!("{}/password-reset", url.trim_end_matches('/'))));
        }
        let file = api_out.join(path.file_name().unwrap_or_default());
        std::fs::write(&file, v.to_string()).map_err(io(&file))?;
    }
    let decoy = json!({"api_metadata": {
        "protocol": "http", "url": "/admin", "hostname": "*",
        "servers": server,
        "decoy_config": {"decoy_enabled": true, "response_code": 200, "response_def": "OK",
                         "response_message": "{\"status\":\"ok\"}", "decoy_subpaths": []}
    }});
    let file = api_out.join("demo-decoy.json");
    std::fs::write(&file, decoy.to_string()).map_err(io(&file))?;
    Ok(out)
}

/// A small deterministic generator (xorshift): the demo's traffic is the same each run.
struct Dice(u64);

impl Dice {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n.max(1) as u64) as usize
    }
}

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Mobile Safari/537.36",
    "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0",
];

/// One request the generator sends.
struct Call<'a> {
    method: Method,
    path: String,
    ip: String,
    headers: Vec<(&'a str, String)>,
    body: &'static str,
}

type HttpClient = Client<HttpConnector, Full<Bytes>>;

async fn send(client: &HttpClient, proxy: SocketAddr, call: Call<'_>) {
    let mut req = Request::builder()
        .method(call.method)
        .uri(format!("http://{proxy}{}", call.path))
        .header("x-forwarded-for", call.ip);
    for (k, v) in call.headers {
        req = req.header(k, v);
    }
    if !call.body.is_empty() {
        req = req.header("content-type", "application/x-www-form-urlencoded");
    }
    let Ok(req) = req.body(Full::new(Bytes::from_static(call.body.as_bytes()))) else {
        return;
    };
    if let Ok(resp) = client.request(req).await {
        let _ = resp.into_body().collect().await;
    }
}

/// Drives traffic through the proxy at `app`'s data port until the process ends. `base`
/// is the shop API's base path (`/shop`) and `login` its login URL.
pub async fn traffic(app: Arc<App>, base: String, login: String) {
    let proxy = loop {
        match app.addresses.get() {
            Some(a) => break SocketAddr::new([127, 0, 0, 1].into(), a.http.port()),
            None => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    };
    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let mut dice = Dice(0x9e37_79b9_7f4a_7c15);
    let reset = format!("{base}/password-reset");
    let mut wave = 0u32;
    let mut next_wave = tokio::time::Instant::now() + Duration::from_secs(3);
    let mut tick = tokio::time::interval(Duration::from_millis(40));
    loop {
        tick.tick().await;
        // An ordinary shopper: one of 12, each with its own address, session, user and
        // device, mostly browsing.
        let n = dice.below(12);
        let mut headers = vec![
            ("cookie", format!("JSESSIONID=demo-session-{n:02}")),
            ("x-user", format!("shopper{n:02}@example.com")),
            ("user-agent", AGENTS[n % AGENTS.len()].to_string()),
        ];
        if n.is_multiple_of(3) {
            headers.push(("x-api-key", format!("key-{n:02}")));
        }
        let roll = dice.below(100);
        let (method, path, body) = match roll {
            0..=54 => (
                Method::GET,
                format!("{base}/items/{}", 1 + dice.below(20)),
                "",
            ),
            55..=74 => (Method::GET, format!("{base}/items"), ""),
            75..=86 => (Method::POST, format!("{base}/cart"), ""),
            87..=93 => (Method::POST, login.clone(), "user=shopper&password=demo"),
            94..=95 => (Method::POST, login.clone(), "user=shopper&password=typo"),
            96 => (Method::POST, reset.clone(), "user=shopper"),
            _ => (
                Method::GET,
                format!("{base}/items/{}", 21 + dice.below(3)),
                "",
            ),
        };
        let call = Call {
            method,
            path,
            ip: format!("203.0.113.{}", 10 + n),
            headers,
            body,
        };
        send(&client, proxy, call).await;

        if tokio::time::Instant::now() >= next_wave {
            attack_wave(&client, proxy, &base, &login, wave).await;
            wave += 1;
            next_wave = tokio::time::Instant::now() + WAVE;
        }
    }
}

/// One wave of attackers, each from fresh addresses (`wave` varies them).
async fn attack_wave(client: &HttpClient, proxy: SocketAddr, base: &str, login: &str, wave: u32) {
    let ip = |k: u32| format!("198.51.{}.{}", 100 + wave % 100, k);
    let browser = || ("user-agent", AGENTS[4].to_string());
    // Not an attack: a shopper who forgot a password (user activity shows resets).
    send(
        client,
        proxy,
        Call {
            method: Method::POST,
            path: format!("{base}/password-reset"),
            ip: "203.0.113.10".into(),
            headers: vec![("x-user", "shopper00@example.com".into()), browser()],
            body: "user=shopper00",
        },
    )
    .await;
    // A login attack: a password list against one account.
    for i in 0..15 {
        send(
            client,
            proxy,
            Call {
                method: Method::POST,
                path: login.to_string(),
                ip: ip(7),
                headers: vec![("x-user", "admin@example.com".into()), browser()],
                body: if i % 2 == 0 {
                    "user=admin&password=123456"
                } else {
                    "user=admin&password=letmein"
                },
            },
        )
        .await;
    }
    // A stolen bearer token, replayed from eight addresses.
    for k in 0..8 {
        send(
            client,
            proxy,
            Call {
                method: Method::GET,
                path: format!("{base}/cart"),
                ip: ip(40 + k),
                headers: vec![
                    ("authorization", format!("Bearer stolen-token-{wave:03}")),
                    browser(),
                ],
                body: "",
            },
        )
        .await;
    }
    // A prober walking paths that do not exist.
    for p in [
        "backup", "config", "debug", ".git", "env", "old", "test", "v0", "private",
    ] {
        for k in 0..3 {
            send(
                client,
                proxy,
                Call {
                    method: Method::GET,
                    path: format!("{base}/{p}{k}"),
                    ip: ip(9),
                    headers: vec![("user-agent", "sqlmap/1.7".into())],
                    body: "",
                },
            )
            .await;
        }
    }
    // A decoy visitor, who then tries the real API.
    for path in ["/admin/login", &format!("{base}/items")] {
        send(
            client,
            proxy,
            Call {
                method: Method::GET,
                path: path.to_string(),
                ip: ip(23),
                headers: vec![("user-agent", "curl/8.5.0".into())],
                body: "",
            },
        )
        .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_copy_points_every_api_at_the_backend_and_keeps_paths_working() {
        let dir = tempfile::tempdir().unwrap();
        let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("config");
        let backend: SocketAddr = "127.0.0.1:4567".parse().unwrap();
        let out = prepare(&shipped, dir.path(), backend).unwrap();
        let config = crate::config::Config::load(&out).unwrap();
        assert!(config.settings.enable_xff);
        assert!(config.settings.bind_address.is_loopback());
        assert!(config.settings.management_bind_address.is_loopback());
        assert!(
            config
                .apis
                .iter()
                .any(|a| a.decoy.enabled && a.url == "/admin")
        );
        for api in &config.apis {
            assert!(
                api.servers.iter().all(|s| s.port == 4567),
                "{}: {:?}",
                api.id,
                api.servers
            );
        }
        let shop = config.apis.iter().find(|a| a.id == "shop").unwrap();
        assert_eq!(
            shop.password_reset_url.as_deref(),
            Some("/shop/password-reset")
        );
        assert!(shop.username_header.is_some());
        // The TLS files resolve from the copy.
        App::new(config).unwrap();
    }
}
