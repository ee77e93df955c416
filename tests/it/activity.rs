//! Client activity, API activity and attack management, from scripted traffic of several
//! clients (one of them an attacker), for every identifier type and period.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};

use crate::support::backend::Backend;
use crate::support::{Enforcer, Setup, admin_client, api, client, manage, run_cli};

const IPHONE: &str = "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) AppleWebKit/605.1.15";

fn def(url: &str, backend: std::net::SocketAddr) -> Value {
    let mut d = api(url, "*", &[backend]);
    d["cookie"] = json!("sid");
    d["oauth2_access_token"] = json!(true);
    d["apikey_header"] = json!("x-api-key");
    d["username_header"] = json!("x-user");
    d["enable_blocking"] = json!(true);
    d
}

async fn get(e: &Enforcer, ip: &str, path: &str, method: &str, extra: &[(&str, &str)]) -> u16 {
    let mut req = client()
        .request(method.parse().unwrap(), e.url(path))
        .header("x-forwarded-for", ip);
    for (k, v) in extra {
        req = req.header(*k, *v);
    }
    req.send().await.unwrap().status().as_u16()
}

async fn activity(e: &Enforcer, path: &str) -> (u16, Value) {
    let r = admin_client().get(e.admin_url(path)).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn pane(list: &[(&str, u64)]) -> Value {
    Value::Array(
        list.iter()
            .map(|(v, n)| json!({ "value": v, "count": n }))
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn activity_reports_from_scripted_traffic() {
    let b = Backend::start("b").await;
    let mut shop = def("/shop", b.addr);
    shop["decoy_config"] = json!({
        "decoy_enabled": true, "response_code": 404, "response_def": "Not Found",
        "response_message": "nothing here", "decoy_subpaths": ["debug"]
    });
    let setup = Setup::inline()
        .set("enable_xff", "true")
        .api("shop", shop)
        .api("pay", def("/pay", b.addr));
    let dir = setup.write();
    let mut e = Enforcer::start_in(dir.path());

    // alice: every identifier, 7 requests on two APIs, two of them answered 404.
    let alice = [
        ("authorization", "Bearer tokA"),
        ("cookie", "sid=cookieA"),
        ("x-api-key", "keyA"),
        ("x-user", "alice"),
        ("user-agent", IPHONE),
    ];
    for (path, method, want) in [
        ("/shop/echo", "GET", 200),
        ("/shop/echo", "GET", 200),
        ("/shop/echo", "GET", 200),
        ("/shop/echo", "POST", 200),
        ("/shop/get404", "GET", 404),
        ("/shop/get404", "GET", 404),
        ("/pay/echo", "GET", 200),
    ] {
        assert_eq!(get(&e, "1.1.1.1", path, method, &alice).await, want);
    }
    // bob: a username only.
    for _ in 0..2 {
        assert_eq!(
            get(&e, "2.2.2.2", "/shop/echo", "GET", &[("x-user", "bob")]).await,
            200
        );
    }
    // mallory touches a decoy (IoA, deny-listed) and is blocked on the next call.
    assert_eq!(get(&e, "7.7.7.7", "/shop/debug/x", "GET", &[]).await, 404);
    assert_eq!(get(&e, "7.7.7.7", "/shop/echo", "GET", &[]).await, 403);

    let alice_panes = || {
        json!({
            "ioas": [],
            "error_codes": pane(&[("404", 2)]),
            "methods": pane(&[("GET", 6), ("POST", 1)]),
            "apis": pane(&[("shop", 6), ("pay", 1)]),
            "users": pane(&[("alice", 7)]),
            "device_types": pane(&[("IOS", 7)]),
            "endpoints": pane(&[("/shop/echo", 4), ("/shop/get404", 2), ("/pay/echo", 1)]),
            "ip_addresses": pane(&[("1.1.1.1", 7)]),
        })
    };
    // Each of alice's identifiers is a client with the same activity.
    for (kind, id) in [
        ("ip", "1.1.1.1"),
        ("token", "tokA"),
        ("cookie", "cookieA"),
        ("api_key", "keyA"),
        ("username", "alice"),
    ] {
        let (s, r) = activity(
            &e,
            &format!("/v5/ase/clients/{kind}/{id}/activity?period=day"),
        )
        .await;
        assert_eq!(s, 200, "{kind} {id}: {r}");
        assert_eq!(
            r["client"],
            json!({ "type": kind, "id": id, "deny_listed": false })
        );
        assert_eq!(r["apis_accessed"], json!(2), "{kind}");
        assert_eq!(r["requests"], json!(7), "{kind}");
        // Compared as text: the panes come in the seed's order.
        assert_eq!(
            r["panes"].to_string(),
            alice_panes().to_string(),
            "{kind} {id}"
        );
        assert_eq!(r["overflow"], json!({}));
    }
    let (_, bob) = activity(&e, "/v5/ase/clients/username/bob/activity").await;
    assert_eq!(bob["requests"], json!(2));
    assert_eq!(bob["panes"]["ip_addresses"], pane(&[("2.2.2.2", 2)]));
    assert_eq!(bob["panes"]["device_types"], pane(&[("UNKNOWN", 2)]));

    let (_, mallory) = activity(&e, "/v5/ase/clients/ip/7.7.7.7/activity?period=week").await;
    assert_eq!(mallory["client"]["deny_listed"], json!(true));
    assert_eq!(mallory["panes"]["ioas"], pane(&[("decoy_access", 1)]));
    // Both answers were enforcer's own (the decoy's 404, the deny list's 403): no error
    // codes of the backend's.
    assert_eq!(mallory["panes"]["error_codes"], pane(&[]));
    assert_eq!(
        mallory["panes"]["endpoints"],
        pane(&[("/shop/debug/x", 1), ("/shop/echo", 1)])
    );

    // Period boundaries, with the report's end moved instead of the clock: 25 hours on,
    // today's traffic has left `day` but is still in `week`, `month` and `6months`; two
    // hours before it, nothing has happened yet.
    let now = jiff::Timestamp::now().as_second();
    let later = now + 25 * 3_600;
    for (period, at, want) in [
        ("day", later, 0),
        ("week", later, 7),
        ("month", later, 7),
        ("6months", later, 7),
        ("day", now - 2 * 3_600, 0),
        ("week", now + 8 * 86_400, 0),
    ] {
        let (s, r) = activity(
            &e,
            &format!("/v5/ase/clients/ip/1.1.1.1/activity?period={period}&at={at}"),
        )
        .await;
        assert_eq!(s, 200);
        assert_eq!(r["requests"], json!(want), "{period} at {at}: {r}");
        assert_eq!(r["period"]["name"], json!(period));
    }

    // API activity.
    let (s, shop) = activity(&e, "/v5/ase/apis/shop/activity?period=day").await;
    assert_eq!(s, 200, "{shop}");
    assert_eq!(shop["requests"], json!(10));
    assert_eq!(
        shop["panes"],
        json!({
            "ioas": pane(&[("decoy_access", 1)]),
            "error_codes": pane(&[("404", 2)]),
            "tokens": pane(&[("tokA", 6)]),
            "users": pane(&[("alice", 6), ("bob", 2)]),
            "ip_addresses": pane(&[("1.1.1.1", 6), ("2.2.2.2", 2), ("7.7.7.7", 2)]),
            "device_types": pane(&[("IOS", 6), ("UNKNOWN", 4)]),
            "endpoints": pane(&[("/shop/echo", 7), ("/shop/get404", 2), ("/shop/debug/x", 1)]),
        })
    );
    // Over time: hourly points (one or two, if the traffic straddled an hour) adding up to
    // the same requests and IoAs, oldest first.
    let series = shop["series"].as_array().unwrap();
    assert!(!series.is_empty() && series.len() <= 2, "{shop}");
    let total = |k: &str| series.iter().map(|p| p[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((total("requests"), total("ioas")), (10, 1), "{shop}");
    let starts: Vec<&str> = series
        .iter()
        .map(|p| p["start"].as_str().unwrap())
        .collect();
    assert!(starts.windows(2).all(|w| w[0] < w[1]) && starts[0].ends_with(":00:00Z"));
    // Per minute (the dashboard's view of a young instance): every minute of the last hour,
    // adding up to the same requests and IoAs; the panes are the period's as before.
    let (s, minutes) = activity(&e, "/v5/ase/apis/shop/activity?period=day&series=minute").await;
    assert_eq!(s, 200, "{minutes}");
    assert_eq!(minutes["panes"], shop["panes"]);
    let series = minutes["series"].as_array().unwrap();
    assert_eq!(series.len(), 60, "{minutes}");
    let total = |k: &str| series.iter().map(|p| p[k].as_u64().unwrap()).sum::<u64>();
    assert_eq!((total("requests"), total("ioas")), (10, 1), "{minutes}");
    assert!(
        series
            .iter()
            .all(|p| p["start"].as_str().unwrap().ends_with(":00Z"))
    );
    assert_eq!(
        activity(&e, "/v5/ase/apis/shop/activity?series=second")
            .await
            .0,
        400
    );

    // Attack management.
    let (_, attacks) = activity(&e, "/v5/ase/attacks?period=day").await;
    assert_eq!(attacks["count"], json!(1), "{attacks}");
    let a = &attacks["attacks"][0];
    assert_eq!(
        (
            &a["client_type"],
            &a["client_id"],
            &a["ioa_count"],
            &a["apis"],
            &a["deny_listed"],
            &a["reviewed"]
        ),
        (
            &json!("ip"),
            &json!("7.7.7.7"),
            &json!(1),
            &json!(["shop"]),
            &json!(true),
            &json!(false)
        )
    );
    assert_eq!(a["ioa_types"][0]["type"], json!("decoy_access"));
    for filter in [
        "client_type=token",
        "api=pay",
        "type=login_attack",
        "search=8.8",
    ] {
        let (_, none) = activity(&e, &format!("/v5/ase/attacks?{filter}")).await;
        assert_eq!(none["count"], json!(0), "{filter}");
    }
    let (_, found) = activity(
        &e,
        "/v5/ase/attacks?type=decoy_access&client_type=ip&search=7.7&sort=count",
    )
    .await;
    assert_eq!(found["count"], json!(1));
    manage(
        &e,
        Method::POST,
        "/v5/ase/attacks/review",
        Some(json!({ "client_type": "ip", "client_id": "7.7.7.7", "reviewed": true })),
    )
    .await;
    let (_, open) = activity(&e, "/v5/ase/attacks?reviewed=false").await;
    assert_eq!(open["count"], json!(0));

    // Errors.
    for (path, status) in [
        ("/v5/ase/clients/ip/9.9.9.9/activity", 404),
        ("/v5/ase/clients/mac/1.1.1.1/activity", 400),
        ("/v5/ase/clients/ip/1.1.1.1/activity?period=year", 400),
        ("/v5/ase/clients/ip/1.1.1.1/activity?at=soon", 400),
        ("/v5/ase/apis/nope/activity", 404),
        ("/v5/ase/attacks?sort=size", 400),
    ] {
        assert_eq!(activity(&e, path).await.0, status, "{path}");
    }

    // The CLI prints the same report.
    let cfg = dir.path().to_str().unwrap().to_string();
    let (st, out, err) = run_cli(&[
        "report",
        "client-activity",
        "--type",
        "username",
        "--id",
        "alice",
        "--period",
        "week",
        "--config",
        &cfg,
    ]);
    assert!(st.success(), "{err}");
    let printed: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(printed["panes"], alice_panes());

    // Everything, reviewed marks included, survives a restart.
    let before = activity(&e, "/v5/ase/apis/shop/activity?period=6months")
        .await
        .1;
    e.signal("TERM");
    assert!(e.wait(Duration::from_secs(20)).success());
    let e = Enforcer::start_in(dir.path());
    let after = activity(&e, "/v5/ase/apis/shop/activity?period=6months")
        .await
        .1;
    assert_eq!(after["panes"], before["panes"]);
    let (_, attacks) = activity(&e, "/v5/ase/attacks?period=week").await;
    assert_eq!(attacks["attacks"][0]["reviewed"], json!(true));
}
