//! Operating enforcer through the real binary: Prometheus metrics (checked by promtool and
//! scraped by a real Prometheus server), management API authentication and TLS, API CRUD
//! through REST and the CLI, reload under load, status, firewall and cluster.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{
    Backend, Enforcer, Setup, admin_client, api, client, eventually, manage, run_cli, sample,
    scrape,
};

/// A Debian-packaged tool the tests need; `scripts/test` installs the package.
fn tool(name: &str) -> String {
    let path = format!("/usr/bin/{name}");
    assert!(
        Path::new(&path).exists(),
        "{path} is missing: run scripts/test, which installs the 'prometheus' package"
    );
    path
}

fn promtool_check(text: &str) {
    let mut child = Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics failed:\n{}{}\n--- scrape ---\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// After mixed traffic (allowed, deny-listed, decoy, flow-controlled, failing backend), the
/// scrape passes `promtool check metrics` and counts what happened.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_pass_promtool_after_mixed_traffic() {
    let b = Backend::start("b").await;
    let mut shop = api("/shop", "*", &[b.addr]);
    shop["enable_blocking"] = json!(true);
    shop["flow_control"] = json!({ "client_spike_threshold": "5/minute" });
    let decoy =
        json!({ "url": "/admin", "hostname": "*", "decoy_config": { "decoy_enabled": true } });
    let e = Enforcer::start(
        &Setup::inline()
            .set("enable_xff", "true")
            .api("shop", shop)
            .api("admin", decoy),
    );
    let get = |ip: &'static str, path: &'static str| {
        client()
            .get(e.url(path))
            .header("x-forwarded-for", ip)
            .send()
    };
    for _ in 0..3 {
        assert_eq!(get("1.1.1.1", "/shop/echo").await.unwrap().status(), 200);
    }
    assert_eq!(
        get("1.1.1.1", "/shop/status?code=404")
            .await
            .unwrap()
            .status(),
        404
    );
    admin_client()
        .post(e.admin_url("/v4/ase/blacklist"))
        .json(&json!({ "ips": ["6.6.6.6"] }))
        .send()
        .await
        .unwrap();
    assert_eq!(get("6.6.6.6", "/shop/echo").await.unwrap().status(), 403);
    assert_eq!(get("2.2.2.2", "/admin/x").await.unwrap().status(), 200);
    for _ in 0..6 {
        get("3.3.3.3", "/shop/echo").await.unwrap();
    }
    let text = scrape(&e).await;
    promtool_check(&text);
    let api = r#"api="shop""#;
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"enforcer_requests_total{{{api},method="GET",mode="inline",status_class="2xx"}}"#
            )
        ),
        Some(8.0),
        "{text}"
    );
    assert_eq!(
        sample(
            &text,
            &format!(
                r#"enforcer_requests_total{{{api},method="GET",mode="inline",status_class="4xx"}}"#
            )
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"enforcer_decisions_total{{{api},decision="block",reason="deny_list"}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"enforcer_decisions_total{{{api},decision="block",reason="flow_control"}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"enforcer_decisions_total{api="admin",decision="block",reason="decoy"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"enforcer_flow_control_rejections_total{{{api},kind="client_spike"}}"#)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            &format!(r#"enforcer_upstream_up{{{api},server="{}"}}"#, b.addr)
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"enforcer_list_entries{list="deny",type="ip"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"enforcer_ioa_detections_total{ioa="decoy_access",type_id="101"}"#
        ),
        Some(1.0)
    );
    assert!(
        sample(
            &text,
            &format!(r#"enforcer_request_duration_seconds_count{{{api},mode="inline"}}"#)
        )
        .unwrap()
            >= 8.0
    );
    assert!(
        sample(
            &text,
            &format!(r#"enforcer_upstream_duration_seconds_count{{{api}}}"#)
        )
        .unwrap()
            >= 8.0
    );
    assert!(
        sample(
            &text,
            &format!(r#"enforcer_response_body_bytes_total{{{api}}}"#)
        )
        .unwrap()
            > 0.0
    );
    assert!(sample(&text, "enforcer_connections_active").is_some());
    assert!(
        text.contains(r#"enforcer_build_info{mode="inline",version=""#),
        "{text}"
    );

    // Sideband: correlation metrics and decision latency.
    let s =
        Enforcer::start(&Setup::sideband().api("shop", json!({ "url": "/shop", "hostname": "*" })));
    let call = r#"{"source_ip":"1.1.1.1","method":"GET","url":"/shop/x","http_version":"1.1","headers":[{"host":"h"}]}"#;
    client()
        .post(s.url("/ase/request"))
        .header("x-correlationid", "a")
        .body(call)
        .send()
        .await
        .unwrap();
    client()
        .post(s.url("/ase/response"))
        .body(r#"{"response_code":"200"}"#)
        .send()
        .await
        .unwrap();
    let text = scrape(&s).await;
    promtool_check(&text);
    assert_eq!(sample(&text, "enforcer_sideband_pending"), Some(1.0));
    assert_eq!(
        sample(
            &text,
            r#"enforcer_sideband_correlations_total{outcome="uncorrelated"}"#
        ),
        Some(1.0)
    );
}

/// A real Prometheus server (Debian's package) scrapes enforcer on loopback, and a counter
/// is queried back through Prometheus's HTTP API.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_prometheus_scrapes_enforcer() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&Setup::inline().api("shop", api("/shop", "*", &[b.addr])));
    for _ in 0..7 {
        assert_eq!(
            client()
                .get(e.url("/shop/echo"))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let web = crate::support::closed_port();
    std::fs::write(
        dir.path().join("prometheus.yml"),
        format!(
            "global:\n  scrape_interval: 1s\nscrape_configs:\n  - job_name: enforcer\n    static_configs:\n      - targets: ['{}']\n",
            e.management
        ),
    )
    .unwrap();
    let mut prometheus = Command::new(tool("prometheus"))
        .arg(format!(
            "--config.file={}",
            dir.path().join("prometheus.yml").display()
        ))
        .arg(format!(
            "--storage.tsdb.path={}",
            dir.path().join("data").display()
        ))
        .arg(format!("--web.listen-address={web}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let query = format!("http://{web}/api/v1/query?query=sum(enforcer_requests_total)");
    let last = std::sync::Arc::new(std::sync::Mutex::new(Value::Null));
    let scraped = eventually(Duration::from_secs(60), || {
        let q = client().get(&query).send();
        let last = last.clone();
        async move {
            let Ok(r) = q.await else { return false };
            let Ok(v) = r.json::<Value>().await else {
                return false;
            };
            let seen = v["data"]["result"][0]["value"][1].as_str() == Some("7");
            *last.lock().unwrap() = v;
            seen
        }
    })
    .await;
    let _ = prometheus.kill();
    let _ = prometheus.wait();
    let last = last.lock().unwrap();
    assert!(
        scraped,
        "Prometheus never reported 7 requests; last answer: {last}"
    );
}

/// Wrong or missing credentials get 401 on every endpoint; /metrics is open unless
/// metrics_require_auth; the CLI uses the config's credentials or its flags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_are_required() {
    let e = Enforcer::start(
        &Setup::sideband()
            .set("management_secret_key", "s3cret")
            .api("shop", json!({ "url": "/shop", "hostname": "*" })),
    );
    for path in [
        "/v4/ase/status",
        "/v4/ase/api",
        "/v4/ase/blacklist",
        "/v5/ase/sideband/token",
        "/v4/abs/metrics?api=shop",
    ] {
        let r = client().get(e.admin_url(path)).send().await.unwrap();
        assert_eq!(r.status(), 401, "{path} without credentials");
        let r = client()
            .get(e.admin_url(path))
            .header("x-ase-access-key", "admin")
            .header("x-ase-secret-key", "admin")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{path} with the default secret");
        let r = client()
            .get(e.admin_url(path))
            .header("x-ase-access-key", "admin")
            .header("x-ase-secret-key", "s3cret")
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "{path} with the right ones");
    }
    assert_eq!(
        client()
            .get(e.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let dir = e.config_dir().to_str().unwrap().to_string();
    let (status, stdout, stderr) = run_cli(&["status", "--config", &dir]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.starts_with("API Security Enforcer\nstatus                  : started\nmode                    : sideband\n"), "{stdout}");
    let (status, _, stderr) = run_cli(&["status", "--config", &dir, "--secret-key", "wrong"]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("401 Unauthorized: missing or wrong x-ase-access-key / x-ase-secret-key"),
        "{stderr}"
    );
    assert!(e.stderr().is_empty() || !e.stderr().contains("default secret"));

    let locked = Enforcer::start(&Setup::sideband().set("metrics_require_auth", "true"));
    assert_eq!(
        client()
            .get(locked.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    assert_eq!(
        admin_client()
            .get(locked.admin_url("/metrics"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert!(
        locked.wait_for_log("default secret key", Duration::from_secs(10)),
        "the default secret is warned about"
    );
}

/// The management API over TLS: the CLI verifies it with management_ca_cert_path.
#[test]
fn management_over_tls() {
    let ca = crate::support::certs().join("ca.crt");
    let e = Enforcer::start(
        &Setup::sideband()
            .set("management_tls", "true")
            .set("management_ca_cert_path", ca.to_str().unwrap()),
    );
    let dir = e.config_dir().to_str().unwrap().to_string();
    let (status, stdout, stderr) = run_cli(&["status", "--config", &dir]);
    assert!(status.success(), "{stderr}");
    assert!(stdout.contains("mode                    : sideband"));
    let plain = crate::support::raw_exchange(
        e.management,
        b"GET /v4/ase/status HTTP/1.1\r\nHost: x\r\n\r\n",
        Duration::from_secs(5),
    );
    assert!(
        !plain.contains("200 OK"),
        "plain HTTP must not be served: {plain}"
    );
}

fn api_file(dir: &Path, name: &str, def: &Value) -> String {
    let path = dir.join(format!("{name}.json"));
    std::fs::write(&path, json!({ "api_metadata": def }).to_string()).unwrap();
    path.to_str().unwrap().to_string()
}

/// Creating, reading, updating and deleting APIs through REST and the CLI changes routing
/// at once, without a restart, and persists to config/api.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_crud_changes_routing_live() {
    let (one, two) = (Backend::start("one").await, Backend::start("two").await);
    let e = Enforcer::start(&Setup::inline().api("a", api("/a", "*", &[one.addr])));
    let c = client();
    let admin = admin_client();
    let backend_of = |path: &'static str| {
        let r = c.get(e.url(path)).send();
        async move {
            let r = r.await.unwrap();
            (
                r.status().as_u16(),
                r.headers()
                    .get("x-backend")
                    .map(|v| v.to_str().unwrap().to_string()),
            )
        }
    };
    assert_eq!(backend_of("/b/echo").await.0, 503);

    // REST: create, read, list, update, delete.
    let b_def = json!({ "api_metadata": api("/b", "*", &[one.addr]) });
    let r = admin
        .post(e.admin_url("/v4/ase/api?api_id=b"))
        .json(&b_def)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.json::<Value>().await.unwrap()["status_message"],
        "API b added"
    );
    assert_eq!(backend_of("/b/echo").await, (200, Some("one".into())));
    assert!(e.config_dir().join("api/b.json").is_file(), "persisted");
    let got: Value = admin
        .get(e.admin_url("/v4/ase/api?api_id=b"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, b_def);
    let list: Value = admin
        .get(e.admin_url("/v4/ase/api"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["apis"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["api_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["a", "b"]);
    let moved = json!({ "api_metadata": api("/b", "*", &[two.addr]) });
    assert_eq!(
        admin
            .put(e.admin_url("/v4/ase/api?api_id=b"))
            .json(&moved)
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(backend_of("/b/echo").await, (200, Some("two".into())));

    // Errors: invalid definition (named), duplicate, path traversal, unknown.
    let bad = json!({ "api_metadata": { "url": "/c", "hostname": "*", "servers": [{ "host": "h", "port": "x" }] } });
    let r = admin
        .post(e.admin_url("/v4/ase/api?api_id=c"))
        .json(&bad)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["message"]
            .as_str()
            .unwrap()
            .contains("api_metadata.servers[0].port"),
        "{body}"
    );
    assert_eq!(
        admin
            .post(e.admin_url("/v4/ase/api?api_id=b"))
            .json(&moved)
            .send()
            .await
            .unwrap()
            .status(),
        409
    );
    let clash = json!({ "api_metadata": api("/a", "*", &[one.addr]) });
    assert_eq!(
        admin
            .post(e.admin_url("/v4/ase/api?api_id=c"))
            .json(&clash)
            .send()
            .await
            .unwrap()
            .status(),
        400
    );
    let r = admin
        .post(e.admin_url("/v4/ase/api?api_id=..%2Fescape"))
        .json(&b_def)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(!e.config_dir().join("escape.json").exists());
    assert_eq!(
        admin
            .delete(e.admin_url("/v4/ase/api?api_id=nope"))
            .send()
            .await
            .unwrap()
            .status(),
        404
    );

    assert_eq!(
        admin
            .delete(e.admin_url("/v4/ase/api?api_id=b"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    assert_eq!(backend_of("/b/echo").await.0, 503);
    assert!(!e.config_dir().join("api/b.json").exists());

    // CLI: the same through the running instance.
    let files = tempfile::tempdir().unwrap();
    let dir = e.config_dir().to_str().unwrap().to_string();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--config", &dir]);
        run_cli(&all)
    };
    let d_file = api_file(files.path(), "d", &api("/d", "*", &[one.addr]));
    let (status, stdout, stderr) = cli(&["api", "add", &d_file]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "API d added");
    assert_eq!(backend_of("/d/echo").await, (200, Some("one".into())));
    let (_, listed, _) = cli(&["api", "list"]);
    assert!(
        listed
            .lines()
            .any(|l| l.starts_with("d ") && l.contains(&one.addr.to_string())),
        "{listed}"
    );
    let (_, shown, _) = cli(&["api", "show", "d"]);
    assert_eq!(
        serde_json::from_str::<Value>(&shown).unwrap()["api_metadata"]["url"],
        "/d"
    );
    let d2 = api_file(files.path(), "d2", &api("/d", "*", &[two.addr]));
    let (status, stdout, _) = cli(&["api", "update", &d2, "--id", "d"]);
    assert!(status.success());
    assert_eq!(stdout.trim(), "API d updated");
    assert_eq!(backend_of("/d/echo").await, (200, Some("two".into())));
    let (status, stdout, _) = cli(&["api", "delete", "d"]);
    assert!(status.success());
    assert_eq!(stdout.trim(), "API d deleted");
    assert_eq!(backend_of("/d/echo").await.0, 503);
    let (status, _, stderr) = cli(&["api", "delete", "d"]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("404 Not Found"), "{stderr}");

    // The README's example: the shipped config/examples/orders.json adds `orders`, on a
    // loopback backend, saved into the config directory's api/.
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/orders.json");
    let (status, stdout, stderr) = cli(&["api", "add", example]);
    assert!(status.success(), "{stderr}");
    assert_eq!(stdout.trim(), "API orders added");
    let saved: Value = serde_json::from_str(
        &std::fs::read_to_string(e.config_dir().join("api/orders.json")).unwrap(),
    )
    .unwrap();
    let servers = saved["api_metadata"]["servers"].as_array().unwrap();
    assert!(
        servers.iter().all(|s| s["host"]
            .as_str()
            .unwrap()
            .parse::<std::net::IpAddr>()
            .unwrap()
            .is_loopback()),
        "{servers:?}"
    );
    let (_, listed, _) = cli(&["api", "list"]);
    assert!(listed.lines().any(|l| l.starts_with("orders ")), "{listed}");
}

/// An API added through the CLI in the shipped config directory is not a stray file in the
/// repository: `config/api/` is ignored by git except for the shipped `shop.json`.
#[test]
fn apis_added_to_the_shipped_config_are_not_repository_files() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let ignored = |path: &str| {
        std::process::Command::new("git")
            .args(["check-ignore", "-q", path])
            .current_dir(repo)
            .status()
            .expect("git")
            .code()
    };
    assert_eq!(
        ignored("config/api/orders.json"),
        Some(0),
        "orders.json is not ignored"
    );
    assert_eq!(
        ignored("config/api/shop.json"),
        Some(1),
        "shop.json is ignored"
    );
    assert_eq!(
        ignored("config/examples/orders.json"),
        Some(1),
        "the example is ignored"
    );
}

/// Reloads (SIGHUP and `enforcer reload`) while clients keep sending: every request is
/// answered; new APIs appear; an invalid config is rejected and the old one keeps serving.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_no_request() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&Setup::inline().api("a", api("/a", "*", &[b.addr])));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loaders: Vec<_> = (0..4)
        .map(|_| {
            let (url, stop) = (e.url("/a/echo"), stop.clone());
            tokio::spawn(async move {
                let c = client();
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    match c.get(&url).send().await {
                        Ok(r) if r.status() == 200 => ok += 1,
                        Ok(r) => failed.push(r.status().to_string()),
                        Err(err) => failed.push(err.to_string()),
                    }
                }
                (ok, failed)
            })
        })
        .collect();
    let dir = e.config_dir().to_path_buf();
    let cfg = dir.to_str().unwrap().to_string();
    for round in 0..6 {
        // Change the config on disk, then reload one way or the other.
        let def = json!({ "api_metadata": api(&format!("/r{round}"), "*", &[b.addr]) });
        std::fs::write(dir.join(format!("api/r{round}.json")), def.to_string()).unwrap();
        if round % 2 == 0 {
            e.signal("HUP");
        } else {
            let (status, stdout, stderr) = run_cli(&["reload", "--config", &cfg]);
            assert!(status.success(), "{stderr}");
            assert!(stdout.starts_with("reloaded: "), "{stdout}");
        }
        let path = format!("/r{round}/echo");
        let live = eventually(Duration::from_secs(10), || {
            let r = client().get(e.url(&path)).send();
            async move { r.await.is_ok_and(|r| r.status() == 200) }
        })
        .await;
        assert!(live, "round {round}: the new API never went live");
    }
    // A broken file: the reload is refused, nothing changes.
    std::fs::write(dir.join("api/broken.json"), "{ not json").unwrap();
    let (status, _, stderr) = run_cli(&["reload", "--config", &cfg]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("reload rejected, the running config stays")
            && stderr.contains("broken.json"),
        "{stderr}"
    );
    e.signal("HUP");
    assert!(e.wait_for_log("SIGHUP: reload rejected", Duration::from_secs(10)));
    assert_eq!(
        client()
            .get(e.url("/r5/echo"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut total = 0;
    for l in loaders {
        let (ok, failed) = l.await.unwrap();
        assert!(
            failed.is_empty(),
            "requests failed during reloads: {failed:?}"
        );
        total += ok;
    }
    assert!(
        total > 50,
        "only {total} requests were sent during the reloads"
    );
}

/// The firewall switch turns enforcement off and on; the cluster endpoint says single node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_switch_and_cluster() {
    use reqwest::Method;
    let b = Backend::start("b").await;
    let mut shop = api("/shop", "*", &[b.addr]);
    shop["enable_blocking"] = json!(true);
    let e = Enforcer::start(&Setup::inline().set("enable_xff", "true").api("shop", shop));
    manage(
        &e,
        Method::POST,
        "/v4/ase/blacklist",
        Some(json!({ "ips": ["6.6.6.6"] })),
    )
    .await;
    let blocked = || {
        client()
            .get(e.url("/shop/echo"))
            .header("x-forwarded-for", "6.6.6.6")
            .send()
    };
    assert_eq!(blocked().await.unwrap().status(), 403);
    let r = manage(&e, Method::POST, "/v4/ase/firewall?status=disable", None).await;
    assert_eq!(r["status"], "disabled");
    assert_eq!(blocked().await.unwrap().status(), 200);
    manage(&e, Method::POST, "/v4/ase/firewall?status=enable", None).await;
    assert_eq!(blocked().await.unwrap().status(), 403);
    let cluster = manage(&e, Method::GET, "/v4/ase/cluster", None).await;
    assert_eq!(cluster["mode"], "single node");
    assert_eq!(cluster["nodes"][0]["node"], e.management.to_string());
}
