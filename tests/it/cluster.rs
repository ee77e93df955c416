//! Cluster mode against a real `redis-server` (Debian's package, installed by
//! `scripts/test`) on a free loopback port, with several enforcer nodes.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::backend::Backend;
use crate::support::{Enforcer, Setup, api, client, eventually, manage, sample, scrape};

/// A redis-server on a free port, without persistence (a restart comes back empty), in a
/// working directory of its own: Redis reads a `dump.rdb` it finds there at start, and a
/// replica writes one, so a shared directory would leak data between tests.
struct Redis {
    child: Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Redis {
    fn start_on(port: u16) -> Redis {
        let dir = tempfile::tempdir().unwrap();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .args(["--save", "", "--appendonly", "no", "--protected-mode", "no"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("redis-server (Debian package redis-server; scripts/test installs it)");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let mut buf = [0u8; 16];
                if s.write_all(b"PING\r\n").is_ok() && s.read(&mut buf).is_ok_and(|n| n > 0) {
                    break;
                }
            }
            assert!(Instant::now() < deadline, "redis-server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        Redis {
            child,
            port,
            _dir: dir,
        }
    }

    fn start() -> Redis {
        Redis::start_on(crate::support::free_port())
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn stop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Sends one inline command to Redis on `port`; its raw answer.
fn redis_cmd(port: u16, command: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    s.write_all(format!("{command}\r\n").as_bytes()).unwrap();
    let mut buf = [0u8; 512];
    let n = s.read(&mut buf).unwrap_or(0);
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// A node's setup: cluster mode on `redis`, quick syncs, the client IP from XFF, and two
/// APIs that block deny-listed clients: `shop` for traffic, `gate` for probing the lists
/// without adding to `shop`'s report.
fn node(redis: &Redis, backend: SocketAddr) -> Setup {
    let blocking = |url: &str| {
        let mut def = api(url, "*", &[backend]);
        def["enable_blocking"] = json!(true);
        def
    };
    Setup::inline()
        .set("redis_url", &redis.url())
        .set("cluster_sync_interval", "200ms")
        .set("enable_xff", "true")
        .api("shop", blocking("/shop"))
        .api("gate", blocking("/gate"))
}

async fn status_of(e: &Enforcer, path: &str, ip: &str) -> u16 {
    client()
        .get(e.url(path))
        .header("x-forwarded-for", ip)
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Deny-lists `ip` through node `e`'s management API.
async fn deny(e: &Enforcer, ip: &str) {
    let body = json!({ "ips": [ip] });
    manage(e, Method::POST, "/v4/ase/blacklist", Some(body)).await;
}

/// Whether node `e` comes to answer `ip` with `status` on `path` within `limit`.
async fn answers(e: &Enforcer, path: &str, ip: &str, status: u16, limit: Duration) -> bool {
    eventually(limit, || async { status_of(e, path, ip).await == status }).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deny_list_change_on_one_node_reaches_the_others() {
    let redis = Redis::start();
    let b = Backend::start("shop").await;
    let nodes: Vec<Enforcer> = (0..3)
        .map(|_| Enforcer::start(&node(&redis, b.addr)))
        .collect();
    let (a, bn, c) = (&nodes[0], &nodes[1], &nodes[2]);
    let ip = "203.0.113.9";
    assert_eq!(status_of(c, "/shop/x", ip).await, 200);

    deny(a, ip).await;
    let added = Instant::now();
    assert!(
        answers(c, "/shop/x", ip, 403, Duration::from_secs(5)).await,
        "node C never blocked the address node A deny-listed"
    );
    let took = added.elapsed();
    eprintln!("deny-list entry reached node C in {took:?}");
    assert!(took < Duration::from_secs(1), "took {took:?}");

    // Removed on B: allowed again on C and A.
    let r = crate::support::admin_client()
        .delete(bn.admin_url("/v4/ase/blacklist"))
        .json(&json!({"ips": [ip]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for n in [c, a] {
        assert!(
            answers(n, "/shop/x", ip, 200, Duration::from_secs(5)).await,
            "the removal never reached every node"
        );
    }

    // Redis loses the lists (an operator's DEL, eviction): the nodes keep theirs and write
    // them back instead of taking the empty copy as "everything was deleted".
    deny(a, "203.0.113.10").await;
    assert!(answers(c, "/gate/x", "203.0.113.10", 403, Duration::from_secs(5)).await);
    let markers = redis_cmd(redis.port, "KEYS enforcer:{ase_cluster}:marker:*");
    let markers: Vec<&str> = markers
        .lines()
        .filter(|l| l.starts_with("enforcer:"))
        .collect();
    assert_eq!(markers.len(), 3, "one marker per node");
    redis_cmd(
        redis.port,
        &format!("DEL enforcer:{{ase_cluster}}:lists {}", markers.join(" ")),
    );
    // Another node's change makes everyone pull at once.
    deny(bn, "203.0.113.11").await;
    assert!(answers(a, "/gate/x", "203.0.113.11", 403, Duration::from_secs(10)).await);
    for n in [a, bn, c] {
        assert_eq!(
            status_of(n, "/gate/x", "203.0.113.10").await,
            403,
            "an entry was lost"
        );
    }
    assert!(
        eventually(Duration::from_secs(10), || async {
            redis_cmd(redis.port, "HLEN enforcer:{ase_cluster}:lists").contains(":2")
        })
        .await,
        "the lists were not written back"
    );

    // The registry shows the three nodes, each up.
    let v = manage(a, Method::GET, "/v4/ase/cluster", None).await;
    assert_eq!(v["cluster"], "enabled");
    assert_eq!(v["redis_status"], "connected");
    let listed = v["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 3, "{v}");
    assert!(listed.iter().all(|n| n["status"] == "up"), "{v}");
    assert_eq!(listed.iter().filter(|n| n["self"] == true).count(), 1);
}

/// Mixed traffic: several paths, methods, sessions, addresses and agents.
async fn traffic(nodes: &[&Enforcer], n: usize) {
    let c = client();
    for i in 0..n {
        let e = nodes[i % nodes.len()];
        let method = if i % 4 == 0 {
            Method::POST
        } else {
            Method::GET
        };
        let mut req = c
            .request(method, e.url(&format!("/shop/item{}", i % 5)))
            .header("x-forwarded-for", format!("198.51.100.{}", i % 7))
            .header("user-agent", format!("agent-{}", i % 3));
        if i % 3 != 0 {
            req = req.header("cookie", format!("JSESSIONID=s{}", i % 4));
        }
        let r = req.send().await.unwrap();
        assert_eq!(r.status(), 200);
    }
}

async fn report(e: &Enforcer) -> Value {
    let mut v = manage(e, Method::GET, "/v4/abs/metrics?api=shop", None).await;
    // The window's dates depend on when the report is asked; the rest must be equal.
    v.as_object_mut().unwrap().remove("earlier_date");
    v.as_object_mut().unwrap().remove("later_date");
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_over_three_nodes_reports_as_on_one() {
    let b = Backend::start("shop").await;
    let single = Enforcer::start(
        &Setup::inline()
            .set("enable_xff", "true")
            .set("store", "none")
            .api("shop", api("/shop", "*", &[b.addr])),
    );
    traffic(&[&single], 60).await;
    let expected = report(&single).await;
    assert_eq!(expected["req_resp_summary"]["total_requests"], 60);

    let redis = Redis::start();
    let nodes: Vec<Enforcer> = (0..3)
        .map(|_| Enforcer::start(&node(&redis, b.addr)))
        .collect();
    let refs: Vec<&Enforcer> = nodes.iter().collect();
    traffic(&refs, 60).await;
    for n in &nodes {
        let last = until(Duration::from_secs(10), || report(n), |r| *r == expected).await;
        assert_eq!(
            last, expected,
            "a node's cluster report differs from the single node's"
        );
    }
}

/// Polls `get` until `done` holds or `limit` passes; the last value either way.
async fn until<T, F, Fut>(limit: Duration, mut get: F, done: impl Fn(&T) -> bool) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = T>,
{
    let deadline = Instant::now() + limit;
    loop {
        let v = get().await;
        if done(&v) || Instant::now() >= deadline {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_spike_threshold_holds_across_nodes() {
    let redis = Redis::start();
    let b = Backend::start("shop").await;
    let def = json!({"protocol": "http", "url": "/shop", "hostname": "*",
        "servers": [{"host": "127.0.0.1", "port": b.addr.port(), "server_spike_threshold": "10/minute"}]});
    let nodes: Vec<Enforcer> = (0..3)
        .map(|_| Enforcer::start(&counting_node(&redis, b.addr).api("shop", def.clone())))
        .collect();
    let minute =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60;
    let started = std::time::SystemTime::now();
    let mut ok = 0;
    for i in 0..30 {
        let s = status_of(&nodes[i % 3], "/shop/x", "198.51.100.1").await;
        if s == 200 {
            ok += 1;
        }
    }
    // Windows are whole minutes: a burst across a minute boundary may get two windows.
    let windows = minute(std::time::SystemTime::now()) - minute(started) + 1;
    eprintln!("{ok} of 30 requests over 3 nodes allowed by a 10/minute threshold");
    assert_counted_in_redis(&nodes).await;
    assert!(
        ok >= 10 && ok <= 10 * windows as usize,
        "{ok} allowed in {windows} window(s); each node alone would allow 10"
    );
}

/// A Redis too slow for `cluster_request_budget` (here: stopped) does not hold requests up:
/// the node's own limiter decides, and every such decision is counted, so an operator sees
/// when the shared threshold may have been exceeded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_redis_leaves_spike_checks_to_the_node_and_says_so() {
    let redis = Redis::start();
    let b = Backend::start("shop").await;
    let def = json!({"protocol": "http", "url": "/shop", "hostname": "*",
        "servers": [{"host": "127.0.0.1", "port": b.addr.port(), "server_spike_threshold": "2/minute"}]});
    let e = Enforcer::start(
        &node(&redis, b.addr)
            .set("cluster_request_budget", "5ms")
            .api("shop", def),
    );
    // Counted in Redis while it answers.
    assert_eq!(status_of(&e, "/shop/x", "198.51.100.4").await, 200);
    let pid = redis.child.id().to_string();
    let signal = |sig: &str| {
        let ok = Command::new("kill")
            .args([sig, &pid])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} redis-server");
    };
    signal("-STOP");
    let statuses = [
        status_of(&e, "/shop/x", "198.51.100.4").await,
        status_of(&e, "/shop/x", "198.51.100.4").await,
        status_of(&e, "/shop/x", "198.51.100.4").await,
    ];
    let local = sample(
        &scrape(&e).await,
        "enforcer_cluster_spike_local_decisions_total",
    );
    signal("-CONT");
    // The local limiter (2/minute, untouched until now) passes two, then refuses.
    assert_eq!(statuses, [200, 200, 429]);
    assert_eq!(
        local,
        Some(3.0),
        "each check Redis did not answer is counted"
    );
}

/// A node whose spike counts always wait for Redis: the tests of the shared thresholds
/// must not depend on Redis answering within the default 5 ms on a busy machine (the
/// local fallback, which would decide then, is counted and tested on its own).
fn counting_node(redis: &Redis, backend: SocketAddr) -> Setup {
    node(redis, backend).set("cluster_request_budget", "1s")
}

/// Every spike check was decided by the shared counter, none by a node's own limiter.
async fn assert_counted_in_redis(nodes: &[Enforcer]) {
    for (i, n) in nodes.iter().enumerate() {
        let text = scrape(n).await;
        assert_eq!(
            sample(&text, "enforcer_cluster_spike_local_decisions_total"),
            Some(0.0),
            "node {i} decided spike checks locally"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_restarting_mid_load_loses_and_double_counts_nothing() {
    let mut redis = Redis::start();
    let port = redis.port;
    let b = Backend::start("shop").await;
    let nodes: Vec<Arc<Enforcer>> = (0..2)
        .map(|_| Arc::new(Enforcer::start(&node(&redis, b.addr))))
        .collect();
    let sent = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut load = Vec::new();
    for n in &nodes {
        let (n, sent, stop) = (n.clone(), sent.clone(), stop.clone());
        load.push(tokio::spawn(async move {
            let c = client();
            while !stop.load(Ordering::Relaxed) {
                let r = c.get(n.url("/shop/x")).send().await.unwrap();
                assert_eq!(r.status(), 200, "a node stopped serving");
                sent.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let at = |n: u64| {
        let sent = sent.clone();
        async move {
            eventually(Duration::from_secs(20), || {
                let sent = sent.clone();
                async move { sent.load(Ordering::Relaxed) >= n }
            })
            .await
        }
    };
    assert!(at(200).await);
    let ip = "203.0.113.77";
    manage(
        &nodes[0],
        Method::POST,
        "/v4/ase/blacklist",
        Some(json!({"ips": [ip]})),
    )
    .await;
    assert!(answers(&nodes[1], "/gate/x", ip, 403, Duration::from_secs(5)).await);
    redis.stop();
    let down_at = sent.load(Ordering::Relaxed);
    assert!(at(down_at + 300).await, "nodes serve while Redis is down");
    let status = manage(&nodes[0], Method::GET, "/v4/ase/cluster", None).await;
    assert_eq!(status["redis_status"], "unreachable", "{status}");
    let text = crate::support::scrape(&nodes[0]).await;
    assert_eq!(
        crate::support::sample(&text, "enforcer_cluster_redis_up"),
        Some(0.0)
    );
    assert!(crate::support::sample(&text, "enforcer_cluster_redis_errors_total") >= Some(1.0));
    // Back, empty (no persistence): every node writes its whole state again.
    let redis_again = Redis::start_on(port);
    let up_at = sent.load(Ordering::Relaxed);
    assert!(at(up_at + 300).await);
    assert!(
        eventually(Duration::from_secs(10), || async {
            let text = crate::support::scrape(&nodes[1]).await;
            crate::support::sample(&text, "enforcer_cluster_redis_up") == Some(1.0)
        })
        .await,
        "the node never reported Redis back"
    );
    stop.store(true, Ordering::Relaxed);
    for l in load {
        l.await.unwrap();
    }
    let total = sent.load(Ordering::Relaxed);
    for n in &nodes {
        let total_of = || async {
            report(n).await["req_resp_summary"]["total_requests"]
                .as_u64()
                .unwrap_or(0)
        };
        let seen = until(Duration::from_secs(15), total_of, |t| *t == total).await;
        assert_eq!(seen, total, "the cluster report against what clients sent");
    }
    // The deny list was written again too: a node that joins now starts from it.
    let late = Enforcer::start(&node(&redis_again, b.addr));
    assert!(
        answers(&late, "/gate/x", ip, 403, Duration::from_secs(5)).await,
        "the deny list did not survive Redis restarting empty"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_node_rejoins_with_its_records() {
    let redis = Redis::start();
    let b = Backend::start("shop").await;
    let a = Enforcer::start(&node(&redis, b.addr));
    let setup = node(&redis, b.addr);
    let dir = setup.write();
    let mut bn = Enforcer::start_in(dir.path());
    traffic(&[&a, &bn], 40).await;
    let id = manage(&bn, Method::GET, "/v4/ase/cluster", None).await["node"].clone();
    bn.signal("TERM");
    let _ = bn.wait(Duration::from_secs(20));

    let bn = Enforcer::start_in(dir.path());
    let v = manage(&bn, Method::GET, "/v4/ase/cluster", None).await;
    assert_eq!(v["node"], id, "the same node id after a restart");
    traffic(&[&a, &bn], 20).await;
    for n in [&a, &bn] {
        assert!(
            eventually(Duration::from_secs(10), || async {
                report(n).await["req_resp_summary"]["total_requests"] == 60
            })
            .await,
            "records were lost or counted twice across the restart"
        );
    }
    let v = manage(&a, Method::GET, "/v4/ase/cluster", None).await;
    let listed = v["nodes"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{v}");
    assert!(listed.iter().all(|n| n["status"] == "up"), "{v}");
    // `enforcer status` shows the cluster and both nodes.
    let (code, out, err) =
        crate::support::run_cli(&["status", "--config", dir.path().to_str().unwrap()]);
    assert!(code.success(), "{err}");
    assert!(out.contains("redis redis://127.0.0.1:"), "{out}");
    assert_eq!(
        out.lines()
            .filter(|l| l.trim_start().starts_with("node") && l.contains(" up,"))
            .count(),
        2,
        "{out}"
    );
}

/// A node that cannot reach Redis at start exits non-zero, naming the Redis server (it
/// must not start empty: its first push would overwrite its records); a bad URL is a
/// config error naming the key.
#[test]
fn a_node_without_redis_refuses_to_start() {
    let closed = crate::support::closed_port();
    let setup = Setup::inline().set("redis_url", &format!("redis://{closed}"));
    let dir = setup.write();
    let (status, stdout, stderr) =
        crate::support::run_cli(&["run", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(!stdout.contains("ready"));
    assert!(stderr.contains(&format!("redis://{closed}")), "{stderr}");

    let setup = Setup::inline().set("redis_url", "http://example.com");
    let dir = setup.write();
    let (status, _, stderr) =
        crate::support::run_cli(&["run", "--config", dir.path().to_str().unwrap()]);
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("redis_url"), "{stderr}");
}

/// An API added through one node's management API is served by every node (and written
/// to their `config/api/`), including a node that joins later; deleted on another node, it
/// is gone everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_definitions_are_shared() {
    let redis = Redis::start();
    let b = Backend::start("orders").await;
    let nodes: Vec<Enforcer> = (0..3)
        .map(|_| Enforcer::start(&node(&redis, b.addr)))
        .collect();
    let c = client();
    let status = |e: &Enforcer| {
        let r = c.get(e.url("/orders/1")).send();
        async move { r.await.unwrap().status().as_u16() }
    };
    assert_eq!(status(&nodes[2]).await, 503, "no such API yet");

    let def = json!({"api_metadata": api("/orders", "*", &[b.addr])});
    let r = crate::support::admin_client()
        .post(nodes[0].admin_url("/v4/ase/api?api_id=orders"))
        .body(def.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let added = Instant::now();
    for n in &nodes[1..] {
        assert!(
            eventually(Duration::from_secs(5), || async { status(n).await == 200 }).await,
            "a node never served the API added on node A"
        );
        assert!(n.config_dir().join("api/orders.json").is_file());
    }
    eprintln!("the API reached every node within {:?}", added.elapsed());

    let late = Enforcer::start(&node(&redis, b.addr));
    assert!(
        eventually(Duration::from_secs(5), || async {
            status(&late).await == 200
        })
        .await,
        "a node that joined later never got the API"
    );

    let r = crate::support::admin_client()
        .delete(nodes[1].admin_url("/v4/ase/api?api_id=orders"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for n in [&nodes[0], &nodes[2], &late] {
        assert!(
            eventually(Duration::from_secs(5), || async { status(n).await == 503 }).await,
            "the deletion never reached every node"
        );
        assert!(!n.config_dir().join("api/orders.json").exists());
    }
}

const ENV: &str = "3f1c2a70-5b3e-4d0a-9e51-6c2f0f0d1a11";
const TOKEN: &str = "cluster-user-activities-token";

/// Per node: a client browsing (5 requests from one address, as alice) and two failed
/// sign-ons from the node's own address; then a decoy visitor on the middle node.
async fn spread_traffic(nodes: &[&Enforcer]) {
    let c = client();
    for (i, n) in nodes.iter().enumerate() {
        for k in 0..5 {
            let r = c
                .get(n.url(&format!("/shop/item{k}")))
                .header("x-forwarded-for", "198.51.100.5")
                .header("x-user", "alice")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200);
        }
        for _ in 0..2 {
            let r = c
                .post(n.url("/shop/login"))
                .header("x-forwarded-for", format!("198.51.100.{}", 10 + i))
                .header("x-user", format!("bob{i}"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 401);
        }
    }
    let r = c
        .get(nodes[nodes.len() / 2].url("/trap/x"))
        .header("x-forwarded-for", "198.51.100.66")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

/// The activity reports of a node, without what depends on the time they are asked.
async fn activity_reports(e: &Enforcer) -> Value {
    let mut client_act = manage(
        e,
        Method::GET,
        "/v5/ase/clients/ip/198.51.100.5/activity?period=day",
        None,
    )
    .await;
    client_act.as_object_mut().unwrap().remove("period");
    let mut api_act = manage(
        e,
        Method::GET,
        "/v5/ase/apis/shop/activity?period=day",
        None,
    )
    .await;
    api_act.as_object_mut().unwrap().remove("period");
    let attacks = manage(e, Method::GET, "/v5/ase/attacks?period=day", None).await;
    let attackers: Vec<Value> = attacks["attacks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            // The evidence of an IoA is in the log of the node that raised it (docs/cluster.md).
            let mut types = a["ioa_types"].clone();
            for t in types.as_array_mut().unwrap() {
                t.as_object_mut().unwrap().remove("evidence");
            }
            json!([a["client_id"], types])
        })
        .collect();
    let r = client()
        .get(e.admin_url(&format!("/v1/environments/{ENV}/userActivities")))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let users: Value = r.json().await.unwrap();
    json!({ "client": client_act, "api": api_act, "attacks": attackers,
            "users": users["_embedded"] })
}

/// Client activity, API activity, attack management and userActivities answer for the
/// whole cluster from any node: the same traffic spread over three nodes gives the same
/// panes and counts as on one node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_and_user_reports_cover_the_whole_cluster() {
    let b = Backend::start("shop").await;
    let with_apis = |s: Setup| {
        let mut shop = api("/shop", "*", &[b.addr]);
        shop["login_url"] = json!("/shop/login");
        shop["username_header"] = json!("x-user");
        let mut trap = api("/trap", "*", &[b.addr]);
        trap["decoy_config"] = json!({ "decoy_enabled": true, "response_code": 200,
            "response_def": "OK", "response_message": "{}" });
        s.set("enable_xff", "true")
            .set("environment_id", ENV)
            .set("user_activities_tokens", TOKEN)
            .api("shop", shop)
            .api("trap", trap)
    };
    let single = Enforcer::start(&with_apis(Setup::inline().set("store", "none")));
    spread_traffic(&[&single, &single, &single]).await;
    let expected = activity_reports(&single).await;
    assert_eq!(expected["client"]["requests"], 15, "{expected:#}");
    assert_eq!(
        expected["attacks"].as_array().unwrap().len(),
        1,
        "{expected:#}"
    );

    let redis = Redis::start();
    let nodes: Vec<Enforcer> = (0..3)
        .map(|_| {
            Enforcer::start(&with_apis(
                Setup::inline()
                    .set("redis_url", &redis.url())
                    .set("cluster_sync_interval", "200ms"),
            ))
        })
        .collect();
    let refs: Vec<&Enforcer> = nodes.iter().collect();
    spread_traffic(&refs).await;
    for n in &nodes {
        let got = until(
            Duration::from_secs(10),
            || activity_reports(n),
            |r| *r == expected,
        )
        .await;
        assert_eq!(
            got, expected,
            "a node's cluster reports differ from the single node's"
        );
    }
}

/// A Redis process for the Sentinel test: any extra arguments, killed on drop.
fn redis_process(args: &[&str]) -> Redis {
    let port: u16 = args
        .windows(2)
        .find(|w| w[0] == "--port")
        .map(|w| w[1].parse().unwrap())
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new("redis-server")
        .args(args)
        .arg("--dir")
        .arg(dir.path())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis on {port} did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    Redis {
        child,
        port,
        _dir: dir,
    }
}

/// High availability through Sentinel: the nodes find the master through a Sentinel
/// (`redis-sentinel://`), the master dies, the Sentinel promotes the replica, and the
/// nodes follow it: lists keep propagating and the report stays exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_follow_a_sentinel_failover() {
    let (m, r, s) = (
        crate::support::free_port(),
        crate::support::free_port(),
        crate::support::free_port(),
    );
    let (ms, rs, ss) = (m.to_string(), r.to_string(), s.to_string());
    let base = ["--bind", "127.0.0.1", "--save", "", "--appendonly", "no"];
    let mut master = redis_process(&[&["--port", &ms][..], &base[..]].concat());
    let replica_of = format!("127.0.0.1 {m}");
    let _replica = redis_process(
        &[
            &["--port", &rs, "--replicaof"][..],
            &[replica_of.as_str()][..],
            &base[..],
        ]
        .concat(),
    );
    let dir = tempfile::tempdir().unwrap();
    let conf = dir.path().join("sentinel.conf");
    std::fs::write(
        &conf,
        format!(
            "port {s}\nbind 127.0.0.1\nsentinel monitor mymaster 127.0.0.1 {m} 1\n\
             sentinel down-after-milliseconds mymaster 400\n\
             sentinel failover-timeout mymaster 2000\n"
        ),
    )
    .unwrap();
    let _sentinel = redis_process(&[conf.to_str().unwrap(), "--sentinel", "--port", &ss]);

    let b = Backend::start("shop").await;
    let url = format!("redis-sentinel://127.0.0.1:{s}/mymaster");
    let start = || {
        let mut shop = api("/shop", "*", &[b.addr]);
        shop["enable_blocking"] = json!(true);
        let mut gate = api("/gate", "*", &[b.addr]);
        gate["enable_blocking"] = json!(true);
        Enforcer::start(
            &Setup::inline()
                .set("redis_url", &url)
                .set("cluster_sync_interval", "200ms")
                .set("enable_xff", "true")
                .api("shop", shop)
                .api("gate", gate),
        )
    };
    let (a, bn) = (start(), start());
    deny(&a, "203.0.113.1").await;
    assert!(answers(&bn, "/gate/x", "203.0.113.1", 403, Duration::from_secs(5)).await);
    traffic(&[&a, &bn], 30).await;
    // Let the replica catch up, then lose the master.
    tokio::time::sleep(Duration::from_millis(500)).await;
    master.stop();
    traffic(&[&a, &bn], 30).await;
    let promoted = eventually(Duration::from_secs(20), || async {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", r)).unwrap();
        use std::io::{Read, Write};
        s.write_all(b"ROLE\r\n").unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        String::from_utf8_lossy(&buf[..n]).contains("master")
    })
    .await;
    assert!(promoted, "the Sentinel never promoted the replica");
    deny(&bn, "203.0.113.2").await;
    assert!(
        answers(&a, "/gate/x", "203.0.113.2", 403, Duration::from_secs(20)).await,
        "a list change after the failover never reached the other node"
    );
    for n in [&a, &bn] {
        let total_of = || async {
            report(n).await["req_resp_summary"]["total_requests"]
                .as_u64()
                .unwrap_or(0)
        };
        let seen = until(Duration::from_secs(20), total_of, |t| *t == 60).await;
        assert_eq!(seen, 60, "the report across the failover");
    }
}

/// With `cluster_client_spikes=true` a client spike threshold is counted across the
/// cluster too: one client spread over three nodes gets the threshold once, not per node.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_spike_threshold_holds_across_nodes_when_configured() {
    let redis = Redis::start();
    let b = Backend::start("shop").await;
    let mut def = api("/shop", "*", &[b.addr]);
    def["flow_control"] = json!({"client_spike_threshold": "10/minute"});
    let nodes: Vec<Enforcer> = (0..3)
        .map(|_| {
            Enforcer::start(
                &counting_node(&redis, b.addr)
                    .set("cluster_client_spikes", "true")
                    .api("shop", def.clone()),
            )
        })
        .collect();
    let minute =
        |t: std::time::SystemTime| t.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() / 60;
    let started = std::time::SystemTime::now();
    let mut ok = 0;
    for i in 0..30 {
        if status_of(&nodes[i % 3], "/shop/x", "198.51.100.2").await == 200 {
            ok += 1;
        }
    }
    let windows = minute(std::time::SystemTime::now()) - minute(started) + 1;
    // Another client is not affected.
    assert_eq!(status_of(&nodes[0], "/shop/x", "198.51.100.3").await, 200);
    eprintln!("{ok} of 30 requests of one client over 3 nodes allowed by 10/minute");
    assert_counted_in_redis(&nodes).await;
    assert!(
        ok >= 10 && ok <= 10 * windows as usize,
        "{ok} allowed in {windows} window(s); each node alone would allow 10"
    );
}

/// Sideband tokens and a changed management secret made on one node hold on the others.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tokens_and_credentials_are_shared() {
    let redis = Redis::start();
    let b = Backend::start("shop").await;
    let (a, c) = (
        Enforcer::start(&node(&redis, b.addr)),
        Enforcer::start(&node(&redis, b.addr)),
    );
    let token = manage(&a, Method::POST, "/v5/ase/sideband/token", None).await["token"]
        .as_str()
        .unwrap()
        .to_string();
    let listed = |e: &Enforcer| {
        let (url, token) = (e.admin_url("/v5/ase/sideband/token"), token.clone());
        async move {
            let v: Value = crate::support::admin_client()
                .get(url)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v.to_string().contains(&token)
        }
    };
    assert!(
        eventually(Duration::from_secs(5), || listed(&c)).await,
        "the token created on A is not valid on C"
    );

    let secret = "a cluster-wide secret";
    manage(
        &a,
        Method::PUT,
        "/v5/ase/credentials",
        Some(json!({ "secret_key": secret })),
    )
    .await;
    let accepts = |key: &'static str| {
        let url = c.admin_url("/v4/ase/status");
        async move {
            client()
                .get(url)
                .header("x-ase-access-key", "admin")
                .header("x-ase-secret-key", key)
                .send()
                .await
                .unwrap()
                .status()
                == 200
        }
    };
    assert!(
        eventually(Duration::from_secs(5), || accepts(secret)).await,
        "node C never took the secret changed on A"
    );
    assert!(!accepts("admin").await, "the old secret still works on C");
}
