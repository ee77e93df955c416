//! The api_metrics report through the real binary: the seed's traffic replayed in inline
//! mode, the report compared whole with the seed's, the CLI, and the error answers.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use crate::support::{Backend, Enforcer, Setup, admin_client, api, client, run_cli};

const API: &str = "atm_app_public";

/// A download tool, which ABS's report (like the seed) names `DOWNLOAD`, on no known OS.
const CURL: &str = "curl/7.61.1";

/// Today's date in UTC, `2026-11-30`.
fn utc_today() -> String {
    jiff::Timestamp::now()
        .to_zoned(jiff::tz::TimeZone::UTC)
        .date()
        .to_string()
}

/// The seed's traffic for session `session11`: (method, path suffix, count).
const SESSION11: [(&str, &str, usize); 8] = [
    ("POST", "post400", 218),
    ("PUT", "put400", 18),
    ("DELETE", "delete200", 208),
    ("GET", "get400", 14),
    ("PUT", "put200", 152),
    ("DELETE", "delete400", 10),
    ("GET", "get200", 104),
    ("POST", "post200", 1782),
];

fn seed() -> Value {
    serde_json::from_str(include_str!("fixtures/api_metrics_seed.json")).unwrap()
}

/// Puts a report's lists in the order docs/reports.md documents: `{value, count}` lists by
/// count (descending) then value, sessions and request details by total then id/path,
/// methods alphabetically.
fn documented_order(report: &mut Value) {
    fn by_count(list: &mut Value, key: &str) {
        let v = list.as_array_mut().unwrap();
        v.sort_by(|a, b| {
            b["count"]
                .as_u64()
                .cmp(&a["count"].as_u64())
                .then_with(|| a[key].as_str().cmp(&b[key].as_str()))
        });
    }
    fn group(g: &mut Value) {
        for ip in g["source_ip"].as_array_mut().unwrap() {
            ip["method"]
                .as_array_mut()
                .unwrap()
                .sort_by(|a, b| a.as_str().cmp(&b.as_str()));
        }
        by_count(&mut g["source_ip"], "ip");
        by_count(&mut g["user_agent"], "user_agent");
        if g.get("path_info").is_some() {
            by_count(&mut g["path_info"], "path");
        }
        by_count(&mut g["device"], "device");
        by_count(&mut g["server"], "server");
    }
    by_count(&mut report["req_resp_summary"]["servers"], "server");
    let details = &mut report["req_resp_details"];
    let sessions = details["session_details"].as_array_mut().unwrap();
    sessions.iter_mut().for_each(group);
    sessions.sort_by(|a, b| {
        b["total_requests"]
            .as_u64()
            .cmp(&a["total_requests"].as_u64())
            .then_with(|| a["session_id"].as_str().cmp(&b["session_id"].as_str()))
    });
    let requests = details["no_session"]["request_details"]
        .as_array_mut()
        .unwrap();
    requests.iter_mut().for_each(group);
}

/// Replays the seed's 2508 requests from curl (session11 from 127.0.0.1 with the seed's
/// per-path counts; `session_protocol`, whose request reaches no server; one request from
/// 3.1.1.4 without a session through a trusted X-Forwarded-For) and compares the whole
/// report with the seed's, `DOWNLOAD` and `UNKNOWN` included.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seed_traffic_gives_the_seed_report() {
    let b = Backend::start("atm").await;
    let mut def = api("/atm_app_public", "*", &[b.addr]);
    def["cookie"] = json!("session_id");
    def["health_check"] = json!(true);
    def["health_check_interval"] = json!(1);
    def["health_retry_count"] = json!(1);
    def["health_url"] = json!("/atm_app_public/health");
    let e = Enforcer::start(&Setup::inline().set("enable_xff", "true").api(API, def));
    let c = client();
    let url = |suffix: &str| e.url(&format!("/atm_app_public/{suffix}"));

    // session_protocol: its one request finds every server out of rotation (503, no server).
    b.set_healthy(false);
    assert!(e.wait_for_log("taken out of rotation", Duration::from_secs(15)));
    let r = c
        .get(url("get400"))
        .header("cookie", "session_id=session_protocol")
        .header("user-agent", CURL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    b.set_healthy(true);
    assert!(e.wait_for_log("back in rotation", Duration::from_secs(15)));

    // session11: 2506 requests, eight at a time.
    let mut jobs = Vec::new();
    for (method, suffix, count) in SESSION11 {
        for _ in 0..count {
            jobs.push((method, suffix));
        }
    }
    let results: Vec<u16> = futures_util::stream::iter(jobs)
        .map(|(method, suffix)| {
            let req = c
                .request(method.parse().unwrap(), url(suffix))
                .header("cookie", "theme=dark; session_id=session11")
                .header("user-agent", CURL)
                .send();
            async move { req.await.unwrap().status().as_u16() }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    assert_eq!(results.len(), 2506);
    assert_eq!(results.iter().filter(|s| **s / 100 == 2).count(), 2246);

    // One request without a session from 3.1.1.4, through a proxy enforcer trusts.
    let r = c
        .get(url("get400"))
        .header("x-forwarded-for", "3.1.1.4")
        .header("user-agent", CURL)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let resp = admin_client()
        .get(e.admin_url(&format!(
            "/v4/abs/metrics?api={API}&earlier_date=2000-01-01&later_date=2100-01-01"
        )))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let text = resp.text().await.unwrap();

    let mut expected = seed();
    expected["earlier_date"] = json!("Sat Jan 01 00:00:00:000 2000");
    expected["later_date"] = json!("Fri Jan 01 00:00:00:000 2100");
    documented_order(&mut expected);
    let expected = serde_json::to_string_pretty(&expected)
        .unwrap()
        .replace("127.0.0.1:3000", &b.addr.to_string());
    let actual =
        serde_json::to_string_pretty(&serde_json::from_str::<Value>(&text).unwrap()).unwrap();
    assert_eq!(actual, expected, "the report differs from the seed");

    // Normal traffic raises no indicator of attack.
    let attacks: Value = admin_client()
        .get(e.admin_url(&format!("/v4/abs/attack?api={API}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(attacks, json!({ "attacks": [] }));

    // The CLI asks the running instance (found through the config directory) for the same;
    // its `--to` with a date alone includes that day, so 2099-12-31 ends where
    // `later_date=2100-01-01` does.
    let dir = e.config_dir().to_str().unwrap().to_string();
    let (status, stdout, stderr) = run_cli(&[
        "report",
        "api-metrics",
        "--api",
        API,
        "--from",
        "2000-01-01",
        "--to",
        "2099-12-31",
        "--config",
        &dir,
    ]);
    assert!(status.success(), "{stderr}");
    let cli: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(serde_json::to_string_pretty(&cli).unwrap(), actual);
}

/// Unknown API: 404 with a JSON error; bad or missing parameters: 400 naming the parameter;
/// without dates the report covers the last 24 hours; the CLI reports a stopped instance clearly.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_errors_and_default_window() {
    let b = Backend::start("b").await;
    let mut def = api("/shop", "*", &[b.addr]);
    def["cookie"] = json!("sid");
    let e = Enforcer::start(&Setup::inline().api("shop", def));
    let c = client();
    assert_eq!(
        c.get(e.url("/shop/get200")).send().await.unwrap().status(),
        200
    );

    let admin = admin_client();
    let get = |q: &str| {
        admin
            .get(e.admin_url(&format!("/v4/abs/metrics{q}")))
            .send()
    };
    let r = get("?api=nope").await.unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "unknown_api");

    for (q, param) in [
        ("", "api"),
        ("?api=shop&earlier_date=yesterday", "earlier_date"),
        ("?api=shop&later_date=2018-13-01", "later_date"),
        (
            "?api=shop&earlier_date=2018-02-14&later_date=2018-02-13",
            "earlier_date",
        ),
    ] {
        let r = get(q).await.unwrap();
        assert_eq!(r.status(), 400, "{q}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["parameter"], param, "{q}: {body}");
    }

    // No dates: the last 24 hours, which holds the request just made.
    let r: Value = get("?api=shop").await.unwrap().json().await.unwrap();
    assert_eq!(r["req_resp_summary"]["total_requests"], 1);
    assert_eq!(r["req_resp_summary"]["no_sessions"], 1);
    // A window in the past holds nothing.
    let r: Value = get("?api=shop&earlier_date=2018-02-13T18:00&later_date=2018-02-18T18:00+00:00")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(r["req_resp_summary"]["total_requests"], 0);
    assert_eq!(r["earlier_date"], "Tue Feb 13 18:00:00:000 2018");
    assert_eq!(r["later_date"], "Sun Feb 18 18:00:00:000 2018");

    // The CLI's `--to` with a date alone includes that day: `--from <day> --to <day>`
    // holds a request made on that day (the default timezone is UTC). The request was made
    // between `before` and `after`, so `[before 00:00, after + 1 day)` holds it even if
    // midnight passed in between.
    let (before, after) = (utc_today(), {
        let r = c.get(e.url("/shop/get200")).send().await.unwrap();
        assert_eq!(r.status(), 200);
        utc_today()
    });
    let cfg = e.config_dir().to_str().unwrap().to_string();
    let (status, out, stderr) = run_cli(&[
        "report",
        "api-metrics",
        "--api",
        "shop",
        "--from",
        &before,
        "--to",
        &after,
        "--config",
        &cfg,
    ]);
    assert!(status.success(), "{stderr}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        printed["req_resp_summary"]["total_requests"], 2,
        "{printed}"
    );

    let (status, _, stderr) = run_cli(&[
        "report",
        "api-metrics",
        "--api",
        "nope",
        "--config",
        e.config_dir().to_str().unwrap(),
    ]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("API \"nope\" is not defined"), "{stderr}");

    // Once the instance is gone, the CLI says so instead of hanging or panicking.
    let dir = e.config_dir().to_path_buf();
    let mut e = e;
    e.signal("TERM");
    assert!(e.wait(Duration::from_secs(10)).success());
    let (status, _, stderr) = run_cli(&[
        "report",
        "api-metrics",
        "--api",
        "shop",
        "--config",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("no running enforcer found"), "{stderr}");
}

/// Real agents through the proxy: `user_agent` is the browser group and `device` the OS in
/// ABS's vocabulary (report compared whole); `user_agent=raw` lists the headers as sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_agents_are_named_as_abs_names_them() {
    const CHROME_WINDOWS_10: &str = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Safari/537.36";
    const IE_WINDOWS_7: &str =
        "Mozilla/5.0 (Windows NT 6.1; WOW64; Trident/7.0; rv:11.0) like Gecko";
    const FIREFOX_XP: &str = "Mozilla/5.0 (Windows NT 5.1; rv:52.0) Gecko/20100101 Firefox/52.0";
    const FIREFOX_UBUNTU: &str =
        "Mozilla/5.0 (X11; Ubuntu; Linux x86_64; rv:125.0) Gecko/20100101 Firefox/125.0";
    const SAFARI_MAC: &str = "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Safari/605.1.15";
    const SAFARI_IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_4 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.4 Mobile/15E148 Safari/604.1";
    const CHROME_ANDROID: &str = "Mozilla/5.0 (Linux; Android 10; K) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/124.0.0.0 Mobile Safari/537.36";
    const GOOGLEBOT: &str =
        "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)";
    // (session, agent, requests); `None`: no User-Agent header.
    let traffic: [(&str, Option<&str>, usize); 11] = [
        ("s-chrome", Some(CHROME_WINDOWS_10), 5),
        ("s-ie", Some(IE_WINDOWS_7), 4),
        ("s-xp", Some(FIREFOX_XP), 1),
        ("s-ubuntu", Some(FIREFOX_UBUNTU), 2),
        ("s-mac", Some(SAFARI_MAC), 2),
        ("s-iphone", Some(SAFARI_IPHONE), 3),
        ("s-android", Some(CHROME_ANDROID), 2),
        ("s-bots", Some(GOOGLEBOT), 1),
        ("s-bots", Some("python-requests/2.31.0"), 1),
        ("s-tools", Some("Wget/1.21.2"), 2),
        ("s-tools", None, 1),
    ];
    let b = Backend::start("b").await;
    let mut def = api("/shop", "*", &[b.addr]);
    def["cookie"] = json!("sid");
    let e = Enforcer::start(&Setup::inline().api("shop", def));
    let c = client();
    for (session, agent, n) in traffic {
        for _ in 0..n {
            let mut req = c
                .get(e.url("/shop/get200"))
                .header("cookie", format!("sid={session}"));
            if let Some(a) = agent {
                req = req.header("user-agent", a);
            }
            assert_eq!(req.send().await.unwrap().status(), 200);
        }
    }

    let get = |q: &'static str| {
        let url = e.admin_url(&format!(
            "/v4/abs/metrics?api=shop&earlier_date=2000-01-01&later_date=2100-01-01{q}"
        ));
        async move {
            let r = admin_client().get(url).send().await.unwrap();
            assert_eq!(r.status(), 200);
            r.json::<Value>().await.unwrap()
        }
    };
    let server = b.addr.to_string();
    let counts = |key: &str, list: &[(&str, u64)]| -> Value {
        list.iter()
            .map(|(v, n)| json!({ key: v, "count": n }))
            .collect()
    };
    let session = |id: &str, n: u64, agents: &[(&str, u64)], devices: &[(&str, u64)]| {
        json!({
            "session_id": id, "total_requests": n,
            "source_ip": [{ "ip": "127.0.0.1", "count": n, "method": ["GET"] }],
            "user_agent": counts("user_agent", agents),
            "path_info": [{ "path": "/shop/get200", "count": n }],
            "device": counts("device", devices),
            "server": [{ "server": server, "count": n }]
        })
    };
    let expected = json!({
        "company": "ping identity",
        "name": "api_metrics",
        "description": "This report contains metrics for request/response traffic for the specified API",
        "earlier_date": "Sat Jan 01 00:00:00:000 2000",
        "later_date": "Fri Jan 01 00:00:00:000 2100",
        "api_name": "shop",
        "req_resp_summary": {
            "api_url": "/shop", "total_requests": 24, "success": 24, "sessions": 9,
            "no_sessions": 0, "most_popular_method": "GET", "most_popular_device": "UNKNOWN",
            "most_popular_ips": ["127.0.0.1"],
            "servers": [{ "server": server, "count": 24 }]
        },
        "req_resp_details": {
            "api_url": "/shop",
            "session_details": [
                session("s-chrome", 5, &[("CHROME", 5)], &[("WINDOWS_10", 5)]),
                session("s-ie", 4, &[("IE", 4)], &[("WINDOWS_7", 4)]),
                session("s-iphone", 3, &[("SAFARI", 3)], &[("IOS", 3)]),
                session("s-tools", 3, &[("DOWNLOAD", 2), ("UNKNOWN", 1)], &[("UNKNOWN", 3)]),
                session("s-android", 2, &[("CHROME", 2)], &[("ANDROID", 2)]),
                session("s-bots", 2, &[("BOT", 2)], &[("UNKNOWN", 2)]),
                session("s-mac", 2, &[("SAFARI", 2)], &[("MAC_OS_X", 2)]),
                session("s-ubuntu", 2, &[("FIREFOX", 2)], &[("LINUX", 2)]),
                session("s-xp", 1, &[("FIREFOX", 1)], &[("WINDOWS_XP", 1)]),
            ],
            "no_session": { "request_details": [] }
        }
    });
    let report = get("").await;
    assert_eq!(
        serde_json::to_string_pretty(&report).unwrap(),
        serde_json::to_string_pretty(&expected).unwrap()
    );
    // `user_agent=class` is the default, spelled out.
    assert_eq!(get("&user_agent=class").await, report);

    // Raw: the same report with the headers as sent (`-` for none).
    let raw = get("&user_agent=raw").await;
    let agents_of = |r: &Value, id: &str| {
        r["req_resp_details"]["session_details"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["session_id"] == id)
            .unwrap()["user_agent"]
            .clone()
    };
    assert_eq!(
        agents_of(&raw, "s-tools"),
        counts("user_agent", &[("Wget/1.21.2", 2), ("-", 1)])
    );
    assert_eq!(
        agents_of(&raw, "s-bots"),
        counts(
            "user_agent",
            &[(GOOGLEBOT, 1), ("python-requests/2.31.0", 1)]
        )
    );
    let r = admin_client()
        .get(e.admin_url("/v4/abs/metrics?api=shop&user_agent=browser"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<Value>().await.unwrap()["parameter"], "user_agent");
}

/// ABS's own credential headers (`x-abs-ak`, `x-abs-sk`) open ABS's paths, beside ASE's;
/// they open nothing else, and a wrong one is refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abs_paths_take_abs_credential_headers() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&Setup::inline().api("shop", api("/shop", "*", &[b.addr])));
    let c = client();
    let call = |path: &str, headers: &[(&str, &str)]| {
        let mut req = c.get(e.admin_url(path));
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        async move { req.send().await.unwrap() }
    };
    let abs = [("x-abs-ak", "admin"), ("x-abs-sk", "admin")];
    for path in [
        "/v4/abs/metrics?api=shop",
        "/v4/abs/attack?api=shop",
        "/v4/abs/flowcontrol?api=shop",
    ] {
        assert_eq!(call(path, &abs).await.status(), 200, "{path}");
        let ase = [("x-ase-access-key", "admin"), ("x-ase-secret-key", "admin")];
        assert_eq!(call(path, &ase).await.status(), 200, "{path}");
        let wrong = [("x-abs-ak", "admin"), ("x-abs-sk", "nope")];
        let r = call(path, &wrong).await;
        assert_eq!(r.status(), 401, "{path}");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["message"].as_str().unwrap().contains("x-abs-ak"),
            "{body}"
        );
        // One header of each kind is not a pair.
        let mixed = [("x-abs-ak", "admin"), ("x-ase-secret-key", "admin")];
        assert_eq!(call(path, &mixed).await.status(), 401, "{path}");
    }
    // Only ABS's paths.
    let r = call("/v4/ase/status", &abs).await;
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(
        body["message"],
        "missing or wrong x-ase-access-key / x-ase-secret-key"
    );
}
