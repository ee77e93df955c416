//! The shipped gateway integrations (`integrations/`) in front of a test backend, with the
//! real gateway binaries (nginx, nginx + Lua, Caddy, HAProxy + Lua; `scripts/test` installs
//! them) and the real enforcer in sideband mode: the test renders the shipped files with its
//! own free ports and temp dirs, and fails, naming the package, when a gateway is missing.
//! Envoy has no Debian package: its `ext_authz` calls are replayed from its public spec.

use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::demo::{Killed, grouped};
use crate::support::{Backend, Enforcer, Setup, admin_client, client, eventually, free_port};

/// The attacker's failed logins that make a login attack (`ioa_login_failures`).
const LOGIN_FAILURES: usize = 5;

/// Sideband enforcer for the gateways: `shop` (identities by bearer token and `x-user`, a
/// login URL, blocking on) and `spiky` (3 requests a minute per client), keep-alive on, the client
/// taken from the first `X-Forwarded-For` address as the gateways pass it.
fn enforcer() -> Enforcer {
    Enforcer::start(
        &Setup::sideband()
            .set("enable_sideband_keepalive", "true")
            .set("enable_xff", "true")
            .set("ioa_login_failures", &LOGIN_FAILURES.to_string())
            .api(
                "shop",
                json!({ "url": "/shop", "hostname": "*", "oauth2_access_token": true,
                        "username_header": "x-user", "enable_blocking": true,
                        "login_url": "/shop/login" }),
            )
            .api(
                "spiky",
                json!({ "url": "/spiky", "hostname": "*",
                        "flow_control": { "client_spike_threshold": "3/minute" } }),
            ),
    )
}

/// How a gateway talks to enforcer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// External authorization (`/ase/auth/...`): no response status reaches enforcer.
    Auth,
    /// ASE's own `/ase/request` + `/ase/response`, from Lua.
    Ase,
}

/// A gateway running from a rendered copy of the shipped files; killed (with its workers)
/// when dropped.
struct Gateway {
    name: &'static str,
    addr: SocketAddr,
    dir: tempfile::TempDir,
    _process: Killed,
}

impl Gateway {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// What the gateway wrote (its stdout, stderr and error log), for failure messages.
    fn log(&self) -> String {
        ["out.log", "error.log"]
            .iter()
            .filter_map(|f| std::fs::read_to_string(self.dir.path().join(f)).ok())
            .collect::<Vec<_>>()
            .join("\n")
    }
}

/// The gateway's binary, or a failure that says how to get it.
fn binary(name: &str, package: &str) -> PathBuf {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain(["/usr/sbin".into(), "/usr/bin".into()])
        .map(|d| d.join(name))
        .find(|p| p.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: scripts/test installs it \
                 (apt-get install {package}); these tests need the real gateway"
            )
        })
}

/// A shipped file under `integrations/`.
fn shipped(path: &str) -> String {
    let full = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("integrations")
        .join(path);
    std::fs::read_to_string(&full).unwrap_or_else(|e| panic!("{}: {e}", full.display()))
}

/// `integrations/<path>` with each `from` replaced by its `to`; each must be there, so
/// the shipped file and this test cannot drift apart unnoticed.
fn render(path: &str, swaps: &[(&str, String)]) -> String {
    let mut text = shipped(path);
    for (from, to) in swaps {
        assert!(
            text.contains(from),
            "integrations/{path} no longer contains {from:?}"
        );
        text = text.replace(from, to);
    }
    text
}

/// Starts `cmd` (in its own process group, output to `out.log`) and waits until it
/// accepts connections on `port`.
fn launch(name: &'static str, dir: tempfile::TempDir, port: u16, cmd: &mut Command) -> Gateway {
    let out = std::fs::File::create(dir.path().join("out.log")).unwrap();
    let child = grouped(cmd)
        .stdin(Stdio::null())
        .stdout(out.try_clone().unwrap())
        .stderr(out)
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let mut gateway = Gateway {
        name,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        dir,
        _process: Killed(child),
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while TcpStream::connect(gateway.addr).is_err() {
        let exited = gateway._process.0.try_wait().unwrap();
        assert!(
            exited.is_none() && Instant::now() < deadline,
            "{name} did not start ({exited:?}):\n{}",
            gateway.log()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    gateway
}

/// Where a gateway finds enforcer and the backend, and any other swaps for its files.
struct Wiring<'a> {
    enforcer: SocketAddr,
    backend: SocketAddr,
    extra: &'a [(&'static str, String)],
}

impl Wiring<'_> {
    fn to(e: &Enforcer, b: &Backend) -> Wiring<'static> {
        Wiring {
            enforcer: e.http,
            backend: b.addr,
            extra: &[],
        }
    }

    /// The swaps that point a shipped file at this wiring.
    fn swaps(&self) -> Vec<(&'static str, String)> {
        let mut swaps = vec![
            ("127.0.0.1:8000", self.enforcer.to_string()),
            ("127.0.0.1:3000", self.backend.to_string()),
        ];
        swaps.extend(self.extra.iter().cloned());
        swaps
    }
}

/// nginx's main config around a shipped site: everything under `dir`, and the Lua
/// modules when `lua`.
fn nginx_main(dir: &Path, lua: bool) -> String {
    let d = dir.display();
    let modules = if lua {
        "load_module /usr/lib/nginx/modules/ndk_http_module.so;\n\
         load_module /usr/lib/nginx/modules/ngx_http_lua_module.so;\n"
    } else {
        ""
    };
    // Started as root, workers would switch to `nobody`, which has no group on Debian and
    // could not read the temp dir; as another user the line is ignored with a warning.
    format!(
        "{modules}user root root;\nworker_processes 1;\npid {d}/nginx.pid;\n\
         error_log {d}/error.log info;\nevents {{ worker_connections 256; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n\
         proxy_temp_path {d}/proxy;\n  fastcgi_temp_path {d}/fastcgi;\n\
         uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n  include {d}/site.conf;\n}}\n"
    )
}

fn start_nginx(name: &'static str, w: &Wiring, lua: bool) -> Gateway {
    let nginx = binary(
        "nginx",
        if lua {
            "nginx libnginx-mod-http-lua"
        } else {
            "nginx"
        },
    );
    if lua {
        let module = Path::new("/usr/lib/nginx/modules/ngx_http_lua_module.so");
        assert!(
            module.is_file(),
            "{} is missing: scripts/test installs it (apt-get install libnginx-mod-http-lua)",
            module.display()
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let d = &dir.path().to_path_buf();
    let port = free_port();
    let mut swaps = w.swaps();
    swaps.push(("listen 8080;", format!("listen 127.0.0.1:{port};")));
    if lua {
        swaps.push(("/etc/nginx/enforcer/", format!("{}/", d.display())));
        let site = render("nginx-lua/site.conf", &swaps);
        std::fs::write(d.join("site.conf"), site).unwrap();
        std::fs::write(
            d.join("enforcer_ase.lua"),
            shipped("nginx-lua/enforcer_ase.lua"),
        )
        .unwrap();
    } else {
        swaps.push(("/etc/nginx/enforcer/", format!("{}/", d.display())));
        std::fs::write(d.join("site.conf"), render("nginx/site.conf", &swaps)).unwrap();
        for part in [
            "enforcer-http.conf",
            "enforcer-server.conf",
            "enforcer-protect.conf",
        ] {
            std::fs::write(d.join(part), shipped(&format!("nginx/{part}"))).unwrap();
        }
    }
    let conf = d.join("nginx.conf");
    std::fs::write(&conf, nginx_main(d, lua)).unwrap();
    launch(
        name,
        dir,
        port,
        Command::new(nginx)
            .arg("-p")
            .arg(d)
            .arg("-c")
            .arg(&conf)
            .args(["-e", "stderr", "-g", "daemon off;"]),
    )
}

fn start_caddy(w: &Wiring) -> Gateway {
    let caddy = binary("caddy", "caddy");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let port = free_port();
    let mut swaps = w.swaps();
    swaps.push(("http://:8080", format!("http://127.0.0.1:{port}")));
    let file = d.join("Caddyfile");
    std::fs::write(&file, render("caddy/Caddyfile", &swaps)).unwrap();
    launch(
        "caddy",
        dir,
        port,
        Command::new(caddy)
            .args(["run", "--adapter", "caddyfile", "--config"])
            .arg(&file)
            .env("HOME", &d)
            .env("XDG_DATA_HOME", d.join("data"))
            .env("XDG_CONFIG_HOME", d.join("config")),
    )
}

fn start_haproxy(w: &Wiring) -> Gateway {
    let haproxy = binary("haproxy", "haproxy");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_path_buf();
    let port = free_port();
    let lua = d.join("enforcer.lua");
    std::fs::write(&lua, shipped("haproxy/enforcer.lua")).unwrap();
    let mut swaps = w.swaps();
    swaps.push(("bind :8080", format!("bind 127.0.0.1:{port}")));
    swaps.push(("/etc/haproxy/enforcer.lua", lua.display().to_string()));
    let cfg = d.join("haproxy.cfg");
    std::fs::write(&cfg, render("haproxy/haproxy.cfg", &swaps)).unwrap();
    launch(
        "haproxy",
        dir,
        port,
        Command::new(haproxy).arg("-f").arg(&cfg).arg("-db"),
    )
}

/// One request through the gateway: status, headers, body.
async fn send(
    g: &Gateway,
    method: reqwest::Method,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, reqwest::header::HeaderMap, String) {
    let mut req = client().request(method.clone(), g.url(path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if method == reqwest::Method::POST {
        req = req.body(r#"{"item":1}"#);
    }
    let r = req
        .send()
        .await
        .unwrap_or_else(|err| panic!("{}: {path}: {err}\n{}", g.name, g.log()));
    let (status, headers) = (r.status().as_u16(), r.headers().clone());
    (status, headers, r.text().await.unwrap_or_default())
}

async fn get(g: &Gateway, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let (s, _, body) = send(g, reqwest::Method::GET, path, headers).await;
    (s, body)
}

/// The `api_metrics` report of `api`, with its dates blanked.
async fn api_metrics(e: &Enforcer, api: &str) -> Value {
    let url = e.admin_url(&format!(
        "/v4/abs/metrics?api={api}&earlier_date=2000-01-01&later_date=2100-01-01"
    ));
    let mut r: Value = admin_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    r["earlier_date"] = json!("-");
    r["later_date"] = json!("-");
    r
}

async fn attack_names(e: &Enforcer) -> Vec<String> {
    let v = crate::support::manage(e, reqwest::Method::GET, "/v4/abs/attack?api=shop", None).await;
    v["attacks"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|a| a["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

/// The `api_metrics` report of `shop` after [`protects`]' traffic: three requests (two
/// allowed, one refused) from 127.0.0.1, the allowed ones on server 0.0.0.0; `success`
/// counts the 2xx answers enforcer heard of (none without a response call).
fn expected_metrics(success: u64) -> Value {
    json!({
        "company": "ping identity",
        "name": "api_metrics",
        "description": "This report contains metrics for request/response traffic for the specified API",
        "earlier_date": "-",
        "later_date": "-",
        "api_name": "shop",
        "req_resp_summary": {
            "api_url": "/shop", "total_requests": 3, "success": success, "sessions": 0,
            "no_sessions": 3, "most_popular_method": "GET", "most_popular_device": "UNKNOWN",
            "most_popular_ips": ["127.0.0.1"],
            "servers": [{ "server": "0.0.0.0", "count": 2 }]
        },
        "req_resp_details": {
            "api_url": "/shop",
            "session_details": [],
            "no_session": { "request_details": [{
                "total_requests": 3,
                "source_ip": [{ "ip": "127.0.0.1", "count": 3, "method": ["GET", "POST"] }],
                "user_agent": [{ "user_agent": "UNKNOWN", "count": 3 }],
                "path": "/shop/echo",
                "device": [{ "device": "UNKNOWN", "count": 3 }],
                "server": [{ "server": "0.0.0.0", "count": 2 }]
            }] }
        }
    })
}

/// What every integration must do: allowed traffic (GET and POST with its body) reaches
/// the backend with the client's own `X-Enforcer-*` removed (and enforcer's, the user
/// included, passed on by the auth-request gateways); a deny-listed token is
/// refused by the gateway and never reaches the backend; a path outside every API passes;
/// and `api_metrics` counts the traffic with server `0.0.0.0`, with the response statuses
/// when the integration reports them.
async fn protects(g: &Gateway, style: Style, e: &Enforcer, b: &Backend) {
    let name = g.name;
    let good = [
        ("authorization", "Bearer tok-good"),
        ("x-user", "alice"),
        ("x-enforcer-client", "spoofed"),
        ("x-enforcer-user", "spoofed"),
    ];
    let (s, _, body) = send(g, reqwest::Method::GET, "/shop/echo?q=1", &good).await;
    assert_eq!(s, 200, "{name}: {body}\n{}", g.log());
    let seen: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (&seen["method"], &seen["path"], &seen["query"]),
        (&json!("GET"), &json!("/shop/echo"), &json!("q=1"))
    );
    let vouched = match style {
        // enforcer's own answer headers, passed upstream by the gateway.
        Style::Auth => json!({
            "x-enforcer-api": ["shop"],
            "x-enforcer-client": ["127.0.0.1"],
            "x-enforcer-user": ["alice"]
        }),
        Style::Ase if name == "haproxy" => json!({ "x-enforcer-api": ["shop"] }),
        Style::Ase => json!({}),
    };
    let enforcer_headers: serde_json::Map<String, Value> = seen["headers"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("x-enforcer-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    assert_eq!(Value::Object(enforcer_headers), vouched, "{name}");

    let (s, _, body) = send(g, reqwest::Method::POST, "/shop/echo", &good).await;
    let seen: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    assert_eq!(
        (s, &seen["method"], &seen["body_len"]),
        (200, &json!("POST"), &json!(10)),
        "{name}: the POST and its body reach the backend: {body}"
    );

    crate::support::manage(
        e,
        reqwest::Method::POST,
        "/v4/ase/blacklist",
        Some(json!({ "oauth_tokens": ["tok-bad"] })),
    )
    .await;
    let before = b.requests();
    let (s, body) = get(g, "/shop/echo", &[("authorization", "Bearer tok-bad")]).await;
    assert_eq!(s, 403, "{name}: a deny-listed token is refused: {body}");
    assert!(body.contains("Blocked by enforcer"), "{name}: {body}");
    assert_eq!(
        b.requests(),
        before,
        "{name}: the refused request reached the backend"
    );

    let (s, body) = get(g, "/elsewhere/echo", &[]).await;
    assert_eq!(s, 200, "{name}: a path outside every API passes: {body}");

    let success = match style {
        Style::Auth => 0,
        Style::Ase => 2,
    };
    let expected = expected_metrics(success);
    // Response calls are sent after the client has its answer: wait for them.
    let counted = eventually(Duration::from_secs(20), || async {
        api_metrics(e, "shop").await == expected
    })
    .await;
    assert!(
        counted,
        "{name}: api_metrics\n{:#}\nexpected\n{expected:#}",
        api_metrics(e, "shop").await
    );
}

/// Flow control through an external-authorization gateway: the fourth request in a
/// minute gets 429 with enforcer's Retry-After.
async fn limits(g: &Gateway) {
    for n in 1..=3 {
        assert_eq!(get(g, "/spiky/echo", &[]).await.0, 200, "{}: {n}", g.name);
    }
    let (s, headers, body) = send(g, reqwest::Method::GET, "/spiky/echo", &[]).await;
    assert_eq!(s, 429, "{}: {body}\n{}", g.name, g.log());
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{}: Retry-After {retry}", g.name);
}

/// A login attack through a Lua gateway: the failed logins' 401s reach enforcer by
/// response calls, the attack is detected and the attacker deny-listed, and the gateway
/// then refuses the attacker while others pass.
async fn catches_login_attack(g: &Gateway, e: &Enforcer) {
    let attacker = [("x-forwarded-for", "9.0.0.1")];
    for _ in 0..LOGIN_FAILURES {
        assert_eq!(get(g, "/shop/login", &attacker).await.0, 401, "{}", g.name);
    }
    let detected = eventually(Duration::from_secs(20), || async {
        attack_names(e).await == ["login_attack"]
    })
    .await;
    assert!(detected, "{}: attacks {:?}", g.name, attack_names(e).await);
    assert_eq!(get(g, "/shop/echo", &attacker).await.0, 403, "{}", g.name);
    let other = [("x-forwarded-for", "10.0.0.7")];
    assert_eq!(get(g, "/shop/echo", &other).await.0, 200, "{}", g.name);
}

/// nginx with `auth_request` (integrations/nginx): allows, refuses a deny-listed client,
/// passes 429 + Retry-After, and api_metrics counts the traffic on server 0.0.0.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_auth_request_protects_the_backend() {
    let b = Backend::start("api").await;
    let e = enforcer();
    let g = start_nginx("nginx", &Wiring::to(&e, &b), false);
    protects(&g, Style::Auth, &e, &b).await;
    limits(&g).await;
}

/// nginx with the Lua module (integrations/nginx-lua): the same, with the response
/// statuses reported, so a login attack through it is detected and the attacker blocked.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nginx_lua_reports_responses_and_catches_a_login_attack() {
    let b = Backend::start("api").await;
    let e = enforcer();
    let g = start_nginx("nginx-lua", &Wiring::to(&e, &b), true);
    protects(&g, Style::Ase, &e, &b).await;
    catches_login_attack(&g, &e).await;
}

/// Caddy with `forward_auth` (integrations/caddy): allows, refuses a deny-listed client,
/// passes 429 + Retry-After, and api_metrics counts the traffic on server 0.0.0.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn caddy_forward_auth_protects_the_backend() {
    let b = Backend::start("api").await;
    let e = enforcer();
    let g = start_caddy(&Wiring::to(&e, &b));
    protects(&g, Style::Auth, &e, &b).await;
    limits(&g).await;
}

/// HAProxy with the Lua action (integrations/haproxy): the same as nginx-lua.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn haproxy_lua_reports_responses_and_catches_a_login_attack() {
    let b = Backend::start("api").await;
    let e = enforcer();
    let g = start_haproxy(&Wiring::to(&e, &b));
    protects(&g, Style::Ase, &e, &b).await;
    catches_login_attack(&g, &e).await;
}

/// Envoy's `ext_authz` HTTP service calls, as its spec and source say it makes them with
/// the shipped `path_prefix` (the client's method, `path_prefix` + path and query, the
/// client's host, `content-length: 0`, Envoy's own X-Forwarded-For and `x-envoy-*`
/// headers, the shipped `x-real-ip`): allow is exactly 200 with no body and the
/// `X-Enforcer-*` headers, a deny-listed client 403, flow control 429 + Retry-After, and
/// each decision is recorded with server 0.0.0.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_ext_authz_calls_are_decided() {
    let shipped_yaml = shipped("envoy/envoy.yaml");
    for line in [
        "path_prefix: /ase/auth/envoy",
        "key: x-real-ip",
        "- exact: retry-after",
    ] {
        assert!(shipped_yaml.contains(line), "envoy.yaml lacks {line:?}");
    }
    let e = Enforcer::start(
        &Setup::sideband()
            .set("enable_sideband_keepalive", "true")
            .api(
                "shop",
                json!({ "url": "/shop", "hostname": "*", "oauth2_access_token": true,
                        "enable_blocking": true }),
            )
            .api(
                "spiky",
                json!({ "url": "/spiky", "hostname": "*",
                        "flow_control": { "client_spike_threshold": "1/minute" } }),
            ),
    );
    let call = |method: reqwest::Method, path: &str, token: &str| {
        client()
            .request(method, e.url(&format!("/ase/auth/envoy{path}")))
            .header("host", "api.example.com")
            .header("authorization", format!("Bearer {token}"))
            .header("content-length", "0")
            .header("x-real-ip", "203.0.113.9")
            .header("x-forwarded-for", "127.0.0.1")
            .header("x-envoy-internal", "true")
            .header("x-envoy-expected-rq-timeout-ms", "1000")
            .header("user-agent", "curl/8.0")
            .send()
    };
    let r = call(reqwest::Method::GET, "/shop/items?q=1", "tok-good")
        .await
        .unwrap();
    let headers = |r: &reqwest::Response| {
        let mut h: Vec<String> = r
            .headers()
            .iter()
            .filter(|(k, _)| k.as_str().starts_with("x-enforcer-"))
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        h.sort();
        h
    };
    assert_eq!(r.status(), 200);
    assert_eq!(
        headers(&r),
        ["x-enforcer-api: shop", "x-enforcer-client: 203.0.113.9"]
    );
    assert_eq!(
        r.text().await.unwrap(),
        "",
        "Envoy wants exactly 200 and no body"
    );
    let r = call(reqwest::Method::POST, "/shop/orders", "tok-good")
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the client's own method");

    crate::support::manage(
        &e,
        reqwest::Method::POST,
        "/v4/ase/blacklist",
        Some(json!({ "oauth_tokens": ["tok-bad"] })),
    )
    .await;
    let r = call(reqwest::Method::GET, "/shop/items", "tok-bad")
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    assert_eq!(
        call(reqwest::Method::GET, "/spiky/x", "t")
            .await
            .unwrap()
            .status(),
        200
    );
    let r = call(reqwest::Method::GET, "/spiky/x", "t").await.unwrap();
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    // A path that would climb out of an API is refused as malformed, not routed.
    let answer = crate::support::raw_exchange(
        e.http,
        b"GET /ase/auth/envoy/shop/../admin HTTP/1.1\r\nhost: api.example.com\r\n\
          x-real-ip: 203.0.113.9\r\nconnection: close\r\n\r\n",
        Duration::from_secs(10),
    );
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");

    let report = api_metrics(&e, "shop").await;
    let group = |path: &str, total: u64, method: &str| {
        json!({
            "total_requests": total,
            "source_ip": [{ "ip": "203.0.113.9", "count": total, "method": [method] }],
            "user_agent": [{ "user_agent": "DOWNLOAD", "count": total }],
            "path": path,
            "device": [{ "device": "UNKNOWN", "count": total }],
            "server": [{ "server": "0.0.0.0", "count": 1 }]
        })
    };
    let expected = json!({
        "company": "ping identity",
        "name": "api_metrics",
        "description": "This report contains metrics for request/response traffic for the specified API",
        "earlier_date": "-",
        "later_date": "-",
        "api_name": "shop",
        "req_resp_summary": {
            "api_url": "/shop", "total_requests": 3, "success": 0, "sessions": 0,
            "no_sessions": 3, "most_popular_method": "GET", "most_popular_device": "UNKNOWN",
            "most_popular_ips": ["203.0.113.9"],
            "servers": [{ "server": "0.0.0.0", "count": 2 }]
        },
        "req_resp_details": {
            "api_url": "/shop",
            "session_details": [],
            "no_session": { "request_details": [
                group("/shop/items", 2, "GET"),
                group("/shop/orders", 1, "POST"),
            ] }
        }
    });
    assert_eq!(report, expected, "{report:#}");
}

/// Every gateway's fail-open/fail-closed switch, with enforcer down (refused) and silent
/// (connected, never answering: the 1 s decision timeout): open forwards the request to the
/// backend, closed answers 503 without reaching it; a silent enforcer costs the timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateways_fail_open_or_closed_when_enforcer_is_down_or_silent() {
    let b = Backend::start("api").await;
    let down = crate::support::closed_port();
    // Never accepted: the kernel completes the handshakes, nothing ever answers.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_addr = silent.local_addr().unwrap();
    type Start = fn(&Wiring) -> Gateway;
    type Swaps = &'static [(&'static str, &'static str)];
    let gateways: [(&str, Swaps, Start); 4] = [
        (
            "nginx",
            &[("set $enforcer_fail_open 1;", "set $enforcer_fail_open 0;")],
            |w| start_nginx("nginx", w, false),
        ),
        (
            "nginx-lua",
            &[("fail_open = true,", "fail_open = false,")],
            |w| start_nginx("nginx-lua", w, true),
        ),
        (
            "caddy",
            &[
                ("import enforcer_5xx_open", "import enforcer_5xx_closed"),
                ("import enforcer_down_open", "import enforcer_down_closed"),
            ],
            start_caddy,
        ),
        (
            "haproxy",
            &[(
                "setenv ENFORCER_FAIL_OPEN true",
                "setenv ENFORCER_FAIL_OPEN false",
            )],
            start_haproxy,
        ),
    ];
    for (name, closing, start) in gateways {
        let closing: Vec<(&'static str, String)> = closing
            .iter()
            .map(|(from, to)| (*from, to.to_string()))
            .collect();
        for (failure, enforcer) in [("down", down), ("silent", silent_addr)] {
            for (mode, extra, status) in [("open", &[][..], 200), ("closed", &closing[..], 503)] {
                let g = start(&Wiring {
                    enforcer,
                    backend: b.addr,
                    extra,
                });
                let before = b.requests();
                let started = Instant::now();
                let (s, body) = get(&g, "/shop/echo", &[]).await;
                let took = started.elapsed();
                assert_eq!(
                    s,
                    status,
                    "{name}, enforcer {failure}, fail {mode}: {body}\n{}",
                    g.log()
                );
                assert_eq!(
                    b.requests() - before,
                    u64::from(status == 200),
                    "{name}, enforcer {failure}, fail {mode}: backend requests"
                );
                if failure == "silent" {
                    assert!(
                        (Duration::from_millis(900)..Duration::from_secs(10)).contains(&took),
                        "{name}, enforcer silent, fail {mode}: answered after {took:?}"
                    );
                }
            }
        }
    }
}
