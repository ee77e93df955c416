//! Sideband mode through the real binary: gateway payloads, every error answer, token
//! authentication, request/response correlation and keep-alive.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::{Enforcer, Setup, admin_client, client, eventually, run_cli};

/// A request call as TIBCO Mashery sends it (reference §1.3): `HTTP/1.1`, numeric port.
const MASHERY_REQUEST: &str = r#"{
  "source_ip": "10.240.0.6", "source_port": 80, "method": "GET",
  "url": "/shopapi/get?query=abc", "http_version": "HTTP/1.1",
  "user_info": [ { "username": "abc", "client_id": "cabfsghhbsag" } ],
  "headers": [
    { "host": "cstest.api.ceml.mashspud.com" },
    { "x-forwarded-for": "10.240.0.6" },
    { "x-api-key": "zhxuetuay9cy84mbngpx4smj" },
    { "authorization": "Bearer eyJhbGciOiJub25lIn0.eyJ1c2VybmFtZSI6ImFiYyJ9." },
    { "user-agent": "curl/7.64.1" }
  ]
}"#;

/// The same request as WSO2 sends it: `"1.1"`, Host first, port hard-coded to 8080.
const WSO2_REQUEST: &str = r#"{
  "source_ip": "10.240.0.6", "source_port": 8080, "method": "GET",
  "url": "/shopapi/get?query=abc", "http_version": "1.1",
  "headers": [ { "host": "cstest.api.ceml.mashspud.com" }, { "user-agent": "curl/7.64.1" } ]
}"#;

/// Response calls: `response_code` as a string (WSO2) and as a number (Mashery).
const RESPONSE_STRING: &str = r#"{ "response_code": "200", "response_status": "OK", "http_version": "1.1",
  "headers": [ { "content-type": "application/json" }, { "content-length": "442" } ] }"#;
const RESPONSE_NUMBER: &str = r#"{ "response_code": 200, "response_status": "OK",
  "headers": [ { "content-type": "application/json" } ] }"#;

fn shop() -> Value {
    json!({ "protocol": "http", "url": "/shopapi", "hostname": "*" })
}

async fn post(e: &Enforcer, path: &str, body: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let mut req = client().post(e.url(path)).body(body.to_string());
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

async fn report(e: &Enforcer, api: &str) -> Value {
    let url = e.admin_url(&format!(
        "/v4/abs/metrics?api={api}&earlier_date=2000-01-01&later_date=2100-01-01"
    ));
    admin_client()
        .get(url)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// The reference's sample calls (both http_version spellings, string and numeric
/// response_code) are allowed, correlated, and recorded with server 0.0.0.0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gateway_payloads_are_decided_and_recorded_with_server_0000() {
    let e = Enforcer::start(&Setup::sideband().api("shop", shop()));
    let (s, body) = post(
        &e,
        "/ase/request",
        MASHERY_REQUEST,
        &[("x-correlationid", "Id-7a076088")],
    )
    .await;
    assert_eq!(
        (s, body),
        (200, json!({ "verdict": "allow", "api": "shop" }))
    );
    let (s, body) = post(
        &e,
        "/ase/request",
        WSO2_REQUEST,
        &[("X-CorrelationID", "wso2-1")],
    )
    .await;
    assert_eq!((s, body["verdict"].clone()), (200, json!("allow")));
    let (s, body) = post(
        &e,
        "/ase/response",
        RESPONSE_STRING,
        &[("x-correlationid", "Id-7a076088")],
    )
    .await;
    assert_eq!(
        (s, body),
        (200, json!({ "verdict": "logged", "correlated": true }))
    );
    let (s, _) = post(
        &e,
        "/ase/response",
        RESPONSE_NUMBER,
        &[("x-correlationid", "wso2-1")],
    )
    .await;
    assert_eq!(s, 200);

    let mut r = report(&e, "shop").await;
    r["earlier_date"] = json!("-");
    r["later_date"] = json!("-");
    let group = json!({
        "total_requests": 2,
        "source_ip": [{ "ip": "10.240.0.6", "count": 2, "method": ["GET"] }],
        "user_agent": [{ "user_agent": "DOWNLOAD", "count": 2 }],
        "path": "/shopapi/get",
        "device": [{ "device": "UNKNOWN", "count": 2 }],
        "server": [{ "server": "0.0.0.0", "count": 2 }]
    });
    let expected = json!({
        "company": "ping identity",
        "name": "api_metrics",
        "description": "This report contains metrics for request/response traffic for the specified API",
        "earlier_date": "-",
        "later_date": "-",
        "api_name": "shop",
        "req_resp_summary": {
            "api_url": "/shopapi", "total_requests": 2, "success": 2, "sessions": 0, "no_sessions": 2,
            "most_popular_method": "GET", "most_popular_device": "UNKNOWN",
            "most_popular_ips": ["10.240.0.6"],
            "servers": [{ "server": "0.0.0.0", "count": 2 }]
        },
        "req_resp_details": {
            "api_url": "/shopapi",
            "session_details": [],
            "no_session": { "request_details": [group] }
        }
    });
    assert_eq!(r, expected);
}

/// Each error answer: bad JSON, missing and mistyped fields (named), unknown API, body over
/// the cap, wrong method and path. The instance keeps deciding afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_answers_name_what_is_wrong() {
    let e = Enforcer::start(
        &Setup::sideband()
            .set("sideband_max_body", "2kb")
            .api("shop", shop()),
    );
    let cases = [
        ("{not json", 400, "(body)"),
        (
            r#"{"source_ip":"10.0.0.1","method":"GET","http_version":"1.1","headers":[]}"#,
            400,
            "url",
        ),
        (
            r#"{"source_ip":"10.0.0.1","url":"/shopapi","http_version":"1.1","headers":[]}"#,
            400,
            "method",
        ),
        (
            r#"{"source_ip":"10.0.0.1","method":"GET","url":"/shopapi","http_version":"1.1"}"#,
            400,
            "headers",
        ),
        (
            r#"{"method":"GET","url":"/shopapi","http_version":"1.1","headers":[]}"#,
            400,
            "source_ip",
        ),
        (
            r#"{"source_ip":"10.0.0.1","method":"GET","url":"/shopapi","http_version":"1.1","headers":"x"}"#,
            400,
            "headers",
        ),
        (
            r#"{"source_ip":"10.0.0.1","method":"GET","url":"/shopapi","http_version":"9.9","headers":[]}"#,
            400,
            "http_version",
        ),
        (
            r#"{"source_ip":"10.0.0.1","method":"GET","url":"/shopapi/../x","http_version":"1.1","headers":[]}"#,
            400,
            "url",
        ),
    ];
    for (body, status, field) in cases {
        let (s, answer) = post(&e, "/ase/request", body, &[]).await;
        assert_eq!(s, status, "{body}");
        assert_eq!(answer["error"], "bad_request", "{body}");
        assert_eq!(answer["field"], field, "{body}: {answer}");
    }
    let (s, answer) = post(&e, "/ase/response", r#"{"response_status":"OK"}"#, &[]).await;
    assert_eq!((s, answer["field"].clone()), (400, json!("response_code")));
    let (s, answer) = post(&e, "/ase/response", r#"{"response_code":"abc"}"#, &[]).await;
    assert_eq!((s, answer["field"].clone()), (400, json!("response_code")));

    let other = WSO2_REQUEST.replace("/shopapi/get", "/elsewhere");
    let (s, answer) = post(&e, "/ase/request", &other, &[]).await;
    assert_eq!((s, answer["message"].clone()), (503, json!("Unknown API")));

    let big = format!(r#"{{"source_ip":"10.0.0.1","pad":"{}"}}"#, "x".repeat(4096));
    let (s, answer) = post(&e, "/ase/request", &big, &[]).await;
    assert_eq!(
        (s, answer["error"].clone()),
        (413, json!("payload_too_large"))
    );

    let r = client().get(e.url("/ase/request")).send().await.unwrap();
    assert_eq!(r.status(), 405);
    let r = client()
        .post(e.url("/somewhere"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = client().get(e.url("/ase")).send().await.unwrap();
    assert_eq!(
        r.json::<Value>().await.unwrap(),
        json!({ "status": "up", "mode": "sideband" })
    );

    assert_eq!(post(&e, "/ase/request", WSO2_REQUEST, &[]).await.0, 200);
}

/// The status of a WSO2 request call presenting `token` (or none).
async fn decide_with(e: &Enforcer, token: Option<&str>) -> u16 {
    let headers: Vec<(&str, &str)> = token.map(|t| ("ASE-Token", t)).into_iter().collect();
    post(e, "/ase/request", WSO2_REQUEST, &headers).await.0
}

/// With authentication on, a missing or unknown ASE-Token gets 401; tokens are created,
/// imported, listed and deleted through the management API and the CLI, several are valid
/// at once, the switch can be flipped, and everything survives a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_authentication_on_and_off() {
    let setup = Setup::sideband()
        .set("enable_sideband_authentication", "true")
        .api("shop", shop());
    let dir = setup.write();
    let e = Enforcer::start_in(dir.path());
    let cfg = dir.path().to_str().unwrap().to_string();
    let cli = |args: &[&str]| {
        let mut all = vec!["sideband"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["--config", &cfg]);
        run_cli(&all)
    };

    assert_eq!(decide_with(&e, None).await, 401);
    let (s, answer) = post(
        &e,
        "/ase/request",
        WSO2_REQUEST,
        &[("ase-token", "0123456789abcdef0123456789abcdef")],
    )
    .await;
    assert_eq!(
        (s, answer["message"].clone()),
        (401, json!("Authentication failure (ASE-Token)"))
    );

    // Create one through the API, one through the CLI, and import a third.
    let created: Value = admin_client()
        .post(e.admin_url("/v5/ase/sideband/token"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["status"], "token_created");
    let api_token = created["token"].as_str().unwrap().to_string();
    let (status, stdout, stderr) = cli(&["token", "create"]);
    assert!(status.success(), "{stderr}");
    assert!(
        stdout.starts_with("Sideband token ") && stdout.trim_end().ends_with("created."),
        "{stdout}"
    );
    let cli_token = stdout.split_whitespace().nth(2).unwrap().to_string();
    let imported = "abcdefghijklmnopqrstuvwxyz012345";
    let (status, stdout, _) = cli(&["token", "import", imported]);
    assert!(status.success());
    assert_eq!(
        stdout.trim(),
        format!("Sideband token {imported} imported.")
    );
    let (status, _, stderr) = cli(&["token", "import", "NOT-VALID"]);
    assert_eq!(status.code(), Some(1));
    assert!(
        stderr.contains("32 characters of lowercase letters and digits"),
        "{stderr}"
    );

    for token in [api_token.as_str(), cli_token.as_str(), imported] {
        assert_eq!(decide_with(&e, Some(token)).await, 200, "{token}");
    }
    let (_, listed, _) = cli(&["token", "list"]);
    assert_eq!(listed.lines().count(), 3, "{listed}");

    let (status, stdout, _) = cli(&["token", "delete", &cli_token]);
    assert!(status.success());
    assert_eq!(
        stdout.trim(),
        format!("Sideband token {cli_token} deleted.")
    );
    assert_eq!(decide_with(&e, Some(&cli_token)).await, 401);

    // Off: no token needed; on again: needed.
    let (status, stdout, _) = cli(&["authentication", "disable"]);
    assert!(status.success());
    assert_eq!(stdout.trim(), "Sideband authentication is disabled");
    assert_eq!(decide_with(&e, None).await, 200);
    let r: Value = admin_client()
        .post(e.admin_url("/v5/ase/sideband/authentication?status=enable"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        r,
        json!({ "status": "enabled", "status_message": "Sideband authentication is enabled" })
    );
    assert_eq!(decide_with(&e, None).await, 401);

    // A restart keeps the tokens and the switch.
    let mut e = e;
    e.signal("TERM");
    assert!(e.wait(Duration::from_secs(10)).success());
    let e = Enforcer::start_in(dir.path());
    assert_eq!(decide_with(&e, None).await, 401);
    assert_eq!(decide_with(&e, Some(&api_token)).await, 200);
    assert_eq!(decide_with(&e, Some(imported)).await, 200);
    assert_eq!(decide_with(&e, Some(&cli_token)).await, 401);
}

/// Correlation: a matched response completes its request (success counted); a response
/// without an id or with an unknown one is accepted as uncorrelated; a request whose
/// response never comes is recorded once its TTL passes; a full table evicts (and records)
/// its oldest entries instead of growing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn correlation_matched_missing_unknown_expired_and_evicted() {
    let e = Enforcer::start(
        &Setup::sideband()
            .set("sideband_pending_ttl", "1s")
            .set("sideband_pending_max", "16")
            .api("shop", shop()),
    );
    post(
        &e,
        "/ase/request",
        WSO2_REQUEST,
        &[("x-correlationid", "matched")],
    )
    .await;
    let (_, a) = post(
        &e,
        "/ase/response",
        r#"{"response_code":"404"}"#,
        &[("x-correlationid", "matched")],
    )
    .await;
    assert_eq!(a["correlated"], true);
    let (s, a) = post(&e, "/ase/response", RESPONSE_STRING, &[]).await;
    assert_eq!((s, a["correlated"].clone()), (200, json!(false)), "no id");
    let (s, a) = post(
        &e,
        "/ase/response",
        RESPONSE_STRING,
        &[("x-correlationid", "never-sent")],
    )
    .await;
    assert_eq!(
        (s, a["correlated"].clone()),
        (200, json!(false)),
        "unknown id"
    );
    let r = report(&e, "shop").await;
    assert_eq!(r["req_resp_summary"]["total_requests"], 1);
    assert_eq!(
        r["req_resp_summary"]["success"], 0,
        "the matched response was a 404"
    );

    // Fifty requests whose responses never come: the table (16) evicts the oldest at once...
    for i in 0..50 {
        post(
            &e,
            "/ase/request",
            WSO2_REQUEST,
            &[("x-correlationid", &format!("lost-{i}"))],
        )
        .await;
    }
    let total = report(&e, "shop").await["req_resp_summary"]["total_requests"]
        .as_u64()
        .unwrap();
    assert!(
        total >= 1 + 50 - 16,
        "only {total} recorded: the table grew past its bound"
    );
    // ... and the rest expire after the TTL and are recorded too, none twice.
    let all = eventually(Duration::from_secs(10), || async {
        report(&e, "shop").await["req_resp_summary"]["total_requests"] == 51
    })
    .await;
    assert!(all);
    let late = post(
        &e,
        "/ase/response",
        RESPONSE_STRING,
        &[("x-correlationid", "lost-49")],
    )
    .await;
    assert_eq!(
        late.1["correlated"], false,
        "an expired request is no longer pending"
    );
    assert_eq!(
        report(&e, "shop").await["req_resp_summary"]["total_requests"],
        51
    );
}

fn raw_post(stream: &mut TcpStream, body: &str) -> String {
    let req = format!(
        "POST /ase/request HTTP/1.1\r\nHost: enforcer\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(req.as_bytes()).unwrap();
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    // Read the head and the (small) body: stop once the JSON object has closed.
    while !out.ends_with(b"}") {
        let n = stream.read(&mut buf).unwrap();
        if n == 0 {
            break;
        }
        out.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// enable_sideband_keepalive=true answers `Connection: keep-alive` and serves more calls on
/// the connection; false answers `Connection: close` and closes it.
#[test]
fn keepalive_on_and_off() {
    let body = WSO2_REQUEST.replace('\n', " ");
    let on = Enforcer::start(
        &Setup::sideband()
            .set("enable_sideband_keepalive", "true")
            .api("shop", shop()),
    );
    let mut s = TcpStream::connect(on.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    for _ in 0..3 {
        let answer = raw_post(&mut s, &body);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        assert!(
            answer
                .to_ascii_lowercase()
                .contains("connection: keep-alive"),
            "{answer}"
        );
    }

    let off = Enforcer::start(
        &Setup::sideband()
            .set("enable_sideband_keepalive", "false")
            .api("shop", shop()),
    );
    let mut s = TcpStream::connect(off.http).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let answer = raw_post(&mut s, &body);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
    let mut rest = [0u8; 16];
    assert_eq!(
        s.read(&mut rest).unwrap(),
        0,
        "the server closes the connection"
    );
}
