//! Persistence: records, lists, tokens and credentials outlive the process; a crash loses
//! at most one flush interval; a damaged store is refused with a clear error.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use reqwest::Method;
use serde_json::{Value, json};

use crate::support::backend::Backend;
use crate::support::{Enforcer, Setup, admin_client, api, bin, client, eventually, manage};

const REPORT: &str = "/v4/abs/metrics?api=shop&earlier_date=2000-01-01&later_date=2100-01-01";

async fn report_text(e: &Enforcer) -> String {
    let r = admin_client()
        .get(e.admin_url(REPORT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    r.text().await.unwrap()
}

async fn total_requests(e: &Enforcer) -> u64 {
    let v: Value = serde_json::from_str(&report_text(e).await).unwrap();
    v["req_resp_summary"]["total_requests"].as_u64().unwrap()
}

/// Traffic of several sessions, IPs, methods, agents and outcomes, then deny and allow
/// list entries (one with an expiry), a token and a new management secret; a graceful
/// restart brings back the same report byte for byte, the same lists, the token and the
/// secret.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_graceful_restart_loses_nothing() {
    let b = Backend::start("shop").await;
    let mut def = api("/shop", "*", &[b.addr]);
    def["cookie"] = json!("sid");
    def["enable_blocking"] = json!(true);
    let setup = Setup::inline()
        .set("enable_xff", "true")
        .set("enable_sideband_authentication", "false")
        .api("shop", def);
    let dir = setup.write();
    let mut e = Enforcer::start_in(dir.path());
    let c = client();

    let mut jobs = Vec::new();
    for i in 0..240u32 {
        let method = ["GET", "POST", "PUT", "DELETE"][i as usize % 4];
        let path = ["echo", "login", "404", "status"][i as usize % 4 / 2 + (i as usize % 3) % 2];
        let session = (i % 7 != 0).then(|| format!("sid=s{}", i % 5));
        let ip = format!("10.0.{}.{}", i % 3, i % 11);
        let ua = [
            "curl/8.0",
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X)",
            "DOWNLOAD",
        ][i as usize % 3];
        jobs.push((method, path, session, ip, ua));
    }
    let done: Vec<u16> = futures_util::stream::iter(jobs)
        .map(|(method, path, session, ip, ua)| {
            let mut req = c
                .request(method.parse().unwrap(), e.url(&format!("/shop/{path}")))
                .header("x-forwarded-for", ip)
                .header("user-agent", ua);
            if let Some(s) = session {
                req = req.header("cookie", s);
            }
            async move { req.send().await.unwrap().status().as_u16() }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(done.len(), 240);

    manage(
        &e,
        Method::POST,
        "/v4/ase/blacklist",
        Some(json!({ "ips": ["192.0.2.7", "198.51.100.0/24"], "usernames": ["mallory"], "ttl": "2h" })),
    )
    .await;
    manage(
        &e,
        Method::POST,
        "/v4/ase/blacklist",
        Some(json!({ "api_keys": [{ "name": "x-api-key", "value": "k-123" }] })),
    )
    .await;
    manage(
        &e,
        Method::POST,
        "/v4/ase/whitelist",
        Some(json!({ "cookies": [{ "name": "sid", "value": "trusted" }] })),
    )
    .await;
    let token = manage(&e, Method::POST, "/v5/ase/sideband/token", None).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let deny = manage(&e, Method::GET, "/v4/ase/blacklist", None).await;
    let allow = manage(&e, Method::GET, "/v4/ase/whitelist", None).await;
    assert_eq!(deny["ips"].as_array().unwrap().len(), 2, "{deny}");

    let before = report_text(&e).await;
    assert!(
        before.contains("\"total_requests\": 240") || before.contains("\"total_requests\":240"),
        "{before}"
    );

    // The new secret is the last change: from here the default credentials stop working.
    manage(
        &e,
        Method::PUT,
        "/v5/ase/credentials",
        Some(json!({ "secret_key": "s3cret-for-the-test" })),
    )
    .await;
    let r = admin_client()
        .get(e.admin_url("/v4/ase/status"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the old secret no longer opens the API");

    e.signal("TERM");
    assert!(e.wait(Duration::from_secs(20)).success());
    let e2 = Enforcer::start_in(dir.path());
    assert!(e2.wait_for_log("restored from the store", Duration::from_secs(10)));
    let new_secret = |m: Method, path: &str| {
        admin_client()
            .request(m, e2.admin_url(path))
            .header("x-ase-secret-key", "s3cret-for-the-test")
    };
    let r = admin_client()
        .get(e2.admin_url(REPORT))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "the changed secret survives the restart");
    let after = new_secret(Method::GET, REPORT)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(after, before, "the report is the same byte for byte");
    let deny2: Value = new_secret(Method::GET, "/v4/ase/blacklist")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let allow2: Value = new_secret(Method::GET, "/v4/ase/whitelist")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(deny2, deny, "the deny list (with its expiries) survives");
    assert_eq!(allow2, allow);
    let tokens: Value = new_secret(Method::GET, "/v5/ase/sideband/token")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(tokens["tokens"][0]["token"], json!(token));

    // And the restored deny list still blocks.
    let r = c
        .get(e2.url("/shop/echo"))
        .header("x-forwarded-for", "198.51.100.9")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
}

/// Load, `kill -9` in the middle of it, restart: the store opens and the report is at
/// most one flush interval (plus the requests in flight) short of what clients saw.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_mid_load_loses_at_most_one_flush_interval() {
    let interval = Duration::from_millis(300);
    let b = Backend::start("shop").await;
    let setup = Setup::inline()
        .set("store_flush_interval", "300ms")
        .api("shop", api("/shop", "*", &[b.addr]));
    let dir = setup.write();
    let mut e = Enforcer::start_in(dir.path());
    let url = e.url("/shop/echo");

    const CONCURRENCY: u64 = 8;
    let answered = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut load = Vec::new();
    for _ in 0..CONCURRENCY {
        let (c, url, answered, stop) = (client(), url.clone(), answered.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                match c.get(&url).send().await {
                    Ok(r) if r.status() == 200 => {
                        answered.fetch_add(1, Ordering::Relaxed);
                    }
                    _ => break,
                }
            }
        }));
    }
    // Let several flushes happen under load.
    let started = Instant::now();
    assert!(
        eventually(Duration::from_secs(30), || async {
            let s = manage(&e, Method::GET, "/v4/ase/status", None).await;
            s["persistence"]["flushes"].as_u64().unwrap_or(0) >= 5
                && answered.load(Ordering::Relaxed) > 500
        })
        .await
    );
    e.signal("KILL");
    let elapsed = started.elapsed();
    let _ = e.wait(Duration::from_secs(10));
    let seen = answered.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for l in load {
        let _ = l.await;
    }

    let e2 = Enforcer::start_in(dir.path());
    let stored = total_requests(&e2).await;
    let rate = seen as f64 / elapsed.as_secs_f64();
    // One interval, plus the commit itself and the requests in flight when it read.
    let allowed = (rate * interval.as_secs_f64() * 2.0) as u64 + 2 * CONCURRENCY;
    eprintln!("answered {seen}, stored {stored}, rate {rate:.0}/s, allowed loss {allowed}");
    assert!(
        stored <= seen + CONCURRENCY,
        "stored {stored} > answered {seen}"
    );
    assert!(
        seen - stored.min(seen) <= allowed,
        "lost {} requests, more than one flush interval ({allowed})",
        seen - stored.min(seen)
    );
}

/// A damaged store file stops the start with exit 1, naming the file and how to move it
/// aside, before any port is bound.
#[test]
fn a_damaged_store_is_refused_with_a_clear_error() {
    let dir = Setup::inline().write();
    let data = dir.path().join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::write(data.join("enforcer.redb"), vec![0x42; 16 * 1024]).unwrap();
    let mut child = Command::new(bin())
        .args(["run", "--config"])
        .arg(dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("enforcer started on a damaged store");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("enforcer.redb") && stderr.contains("move it aside"),
        "{stderr}"
    );
    assert!(
        !stdout.contains("enforcer ready"),
        "no port was bound: {stdout}"
    );
}

/// `store=none` keeps nothing: a restart starts empty (and writes no file).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn store_none_keeps_nothing() {
    let b = Backend::start("shop").await;
    let setup = Setup::inline()
        .set("store", "none")
        .api("shop", api("/shop", "*", &[b.addr]));
    let dir = setup.write();
    let mut e = Enforcer::start_in(dir.path());
    client().get(e.url("/shop/echo")).send().await.unwrap();
    assert!(
        eventually(Duration::from_secs(10), || async {
            total_requests(&e).await == 1
        })
        .await
    );
    e.signal("TERM");
    assert!(e.wait(Duration::from_secs(20)).success());
    assert!(!dir.path().join("data/enforcer.redb").exists());
    let e2 = Enforcer::start_in(dir.path());
    let r = admin_client()
        .get(e2.admin_url(REPORT))
        .send()
        .await
        .unwrap();
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["req_resp_summary"]["total_requests"], json!(0), "{v}");
}

/// A restart serves at once and loads the stored records back behind it: the ready line
/// comes before the records are restored (so a large store no longer keeps the ports
/// closed), traffic recorded meanwhile is merged with them, and once restored every report
/// counts both. The deny list is in force before the first request.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_serves_first_and_restores_its_records_behind() {
    let b = Backend::start("shop").await;
    let mut def = api("/shop", "*", &[b.addr]);
    def["enable_blocking"] = json!(true);
    let setup = Setup::inline().set("enable_xff", "true").api("shop", def);
    let dir = setup.write();
    let mut e = Enforcer::start_in(dir.path());
    let c = client();
    for i in 0..300 {
        let r = c
            .get(e.url(&format!("/shop/p{i}-x")))
            .header("x-forwarded-for", format!("10.1.{}.{}", i / 250, i % 250))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    manage(
        &e,
        Method::POST,
        "/v4/ase/blacklist",
        Some(json!({ "ips": ["192.0.2.66"] })),
    )
    .await;
    e.signal("TERM");
    assert!(e.wait(Duration::from_secs(20)).success());

    let started = Instant::now();
    let e = Enforcer::start_serving(dir.path());
    let ready = started.elapsed();
    // The deny list is in force at once, before the records are back.
    let denied = c
        .get(e.url("/shop/x"))
        .header("x-forwarded-for", "192.0.2.66")
        .send()
        .await
        .unwrap();
    assert_eq!(denied.status(), 403);
    // Recorded while (or after) the records come back: merged, not overwritten.
    let fresh = c
        .get(e.url("/shop/fresh"))
        .header("x-forwarded-for", "10.9.9.9")
        .send()
        .await
        .unwrap();
    assert_eq!(fresh.status(), 200);
    assert!(
        e.wait_for_log("records restored from the store", Duration::from_secs(30)),
        "{}",
        e.stderr()
    );
    let log = e.stderr();
    let ready_at = log.find("enforcer ready").unwrap();
    let restored_at = log.find("records restored from the store").unwrap();
    assert!(
        ready_at < restored_at,
        "the records were restored before serving:\n{log}"
    );
    eprintln!("ready {} ms after the start", ready.as_millis());
    assert!(
        eventually(Duration::from_secs(10), || async {
            total_requests(&e).await == 300 + 2
        })
        .await,
        "not every request counted after the restore: {}",
        total_requests(&e).await
    );
}
