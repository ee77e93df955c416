//! Sideband calls shaped like the public PingIntelligence gateway integrations (Axway, WSO2,
//! a Spring Boot filter, Mashery), replayed byte for byte over raw connections: each is
//! decided and recorded as any other call, nothing a real gateway sends gets a 400, and
//! authentication, sizes and nesting stay strict. The bodies are written here, after what
//! each integration is documented or known to send (docs/sideband.md, "Gateways").

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{Enforcer, Setup, sample};

/// One HTTP/1.1 answer read off a raw connection.
#[derive(Debug)]
struct Answer {
    status: u16,
    /// The head's header lines, lower-cased names: `("connection", "close")`.
    headers: Vec<(String, String)>,
    body: Vec<u8>,
}

impl Answer {
    fn header_values(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// A sideband instance that keeps gateway connections open (as every pooled gateway
/// wants), on the `shop` API.
fn keepalive() -> Setup {
    Setup::sideband()
        .set("enable_sideband_keepalive", "true")
        .api("shop", shop())
}

/// A gateway's connection to enforcer.
struct Conn(TcpStream);

impl Conn {
    fn open(addr: SocketAddr) -> Conn {
        let s = TcpStream::connect(addr).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        Conn(s)
    }

    /// Sends a POST with exactly these extra header lines and body bytes.
    fn post(&mut self, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        self.send("POST", path, headers, body)
    }

    fn send(&mut self, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
        let mut head = format!(
            "{method} {path} HTTP/1.1\r\nHost: localhost:8000\r\nContent-Length: {}\r\n",
            body.len()
        );
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.0.write_all(head.as_bytes()).unwrap();
        self.0.write_all(body).unwrap();
        self.read_answer()
    }

    fn get(&mut self, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut head = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\n");
        for (k, v) in headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        head.push_str("\r\n");
        self.0.write_all(head.as_bytes()).unwrap();
        self.read_answer()
    }

    fn read_answer(&mut self) -> Answer {
        let mut buf = Vec::new();
        let mut byte = [0u8; 1];
        while !buf.ends_with(b"\r\n\r\n") {
            assert_eq!(
                self.0.read(&mut byte).unwrap(),
                1,
                "closed before an answer"
            );
            buf.push(byte[0]);
        }
        let head = String::from_utf8(buf).unwrap();
        let mut lines = head.split("\r\n");
        let status = lines.next().unwrap()[9..12].parse().unwrap();
        let headers: Vec<(String, String)> = lines
            .filter_map(|l| l.split_once(':'))
            .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
            .collect();
        let len: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0u8; len];
        self.0.read_exact(&mut body).unwrap();
        Answer {
            status,
            headers,
            body,
        }
    }

    /// Whether the server has closed the connection (EOF within the read timeout).
    fn closed(&mut self) -> bool {
        let mut rest = [0u8; 16];
        matches!(self.0.read(&mut rest), Ok(0))
    }
}

fn shop() -> Value {
    json!({ "protocol": "http", "url": "/shopapi", "hostname": "*", "cookie": "JSESSIONID",
            "apikey_header": "x-api-key", "enable_blocking": true })
}

/// The api_metrics report of `shop` over all time.
fn report(e: &Enforcer) -> Value {
    let mut c = Conn::open(e.management);
    c.get(
        "/v4/abs/metrics?api=shop&earlier_date=2000-01-01&later_date=2100-01-01",
        &[("x-ase-access-key", "admin"), ("x-ase-secret-key", "admin")],
    )
    .json()
}

fn metrics(e: &Enforcer) -> String {
    let mut c = Conn::open(e.management);
    String::from_utf8(c.get("/metrics", &[]).body).unwrap()
}

/// An Axway API Gateway request call: built by string concatenation, so no
/// `http_version`, `source_port` the string "null", `"Name" : "value"` pairs with spaces,
/// a header value pasted in with its quotes unescaped (an ETag), and the body's length
/// appended as one more header object.
const AXWAY_REQUEST: &str = r#"{"source_ip": "203.0.113.7", "source_port": "null", "method": "POST", "url": "/shopapi/orders","headers": [{"Host" : "shop.example.com"},{"User-Agent" : "curl/8.5.0"},{"If-None-Match" : ""v7-4412""},{"X-Api-Key" : "k9f2c7d1e0a4b3c8"},{"Content-type" : "application/json"},{"Content-Length" : "27"}]}"#;

/// Axway's response call: `response_code` a string, no correlation id.
const AXWAY_RESPONSE: &str = r#"{ "response_code": "201", "response_status": "Created", "http_version": "HTTP/1.1", "headers": [{"Content-type" : "application/json"},{"ETag" : "\"v7-4413\""},{"Content-Length" : "58"}] }"#;

/// The headers Axway's call carries: its token, JSON, and the end client's own headers.
const AXWAY_CALL: [(&str, &str); 5] = [
    ("ASE-Token", "0123456789abcdef0123456789abcdef"),
    ("Content-Type", "application/json"),
    ("Connection", "keep-alive"),
    ("User-Agent", "curl/8.5.0"),
    ("Accept", "*/*"),
];

fn axway_setup() -> Setup {
    Setup::sideband()
        .set("enable_sideband_authentication", "true")
        .set("enable_sideband_keepalive", "true")
        .api("shop", shop())
}

/// Imports Axway's token through the management API.
fn import_token(e: &Enforcer) {
    let mut c = Conn::open(e.management);
    let a = c.send(
        "PUT",
        "/v5/ase/sideband/token",
        &[
            ("x-ase-access-key", "admin"),
            ("x-ase-secret-key", "admin"),
            ("Content-Type", "application/json"),
        ],
        br#"{"token":"0123456789abcdef0123456789abcdef"}"#,
    );
    assert!(a.status == 200 || a.status == 201, "{a:?}");
}

/// Axway: a request call without `http_version` or `X-CorrelationID` is allowed (200),
/// blocked (403) or refused as unknown (503) exactly as any other, its version taken as
/// 1.1; its response call on the same connection finds it; a wrong token is still 401.
#[test]
fn axway_calls_are_decided_and_correlated_on_their_connection() {
    let e = Enforcer::start(&axway_setup());
    import_token(&e);
    let mut c = Conn::open(e.http);
    let a = c.post("/ase/request", &AXWAY_CALL, AXWAY_REQUEST.as_bytes());
    assert_eq!(a.status, 200, "{a:?} {}", String::from_utf8_lossy(&a.body));
    assert_eq!(a.json(), json!({"verdict": "allow", "api": "shop"}));
    // Without X-CorrelationID enforcer hands out ASE's PISESSIONID.
    let cookie = a.header_values("set-cookie");
    assert!(
        cookie.len() == 1 && cookie[0].starts_with("PISESSIONID=Id-"),
        "{cookie:?}"
    );
    let a = c.post("/ase/response", &AXWAY_CALL, AXWAY_RESPONSE.as_bytes());
    assert_eq!(a.json(), json!({"verdict": "logged", "correlated": true}));

    let r = report(&e);
    let summary = &r["req_resp_summary"];
    assert_eq!(summary["total_requests"], 1, "{r}");
    assert_eq!(summary["success"], 1, "the 201 reached the report: {r}");
    assert_eq!(summary["most_popular_ips"], json!(["203.0.113.7"]));

    // The same call from a deny-listed client is 403; to an unknown API 503.
    let mut m = Conn::open(e.management);
    let added = m.post(
        "/v4/ase/blacklist",
        &[
            ("x-ase-access-key", "admin"),
            ("x-ase-secret-key", "admin"),
            ("Content-Type", "application/json"),
        ],
        br#"{"ips":["203.0.113.7"]}"#,
    );
    assert_eq!(added.status, 200, "{added:?}");
    let a = c.post("/ase/request", &AXWAY_CALL, AXWAY_REQUEST.as_bytes());
    assert_eq!(a.status, 403, "{}", String::from_utf8_lossy(&a.body));
    let elsewhere = AXWAY_REQUEST.replace("/shopapi/orders", "/billing/run");
    let a = c.post("/ase/request", &AXWAY_CALL, elsewhere.as_bytes());
    assert_eq!(a.status, 503);
    assert_eq!(a.json()["message"], "Unknown API");

    // Authentication stays strict.
    let mut wrong = AXWAY_CALL;
    wrong[0] = ("ASE-Token", "ffffffffffffffffffffffffffffffff");
    let a = c.post("/ase/request", &wrong, AXWAY_REQUEST.as_bytes());
    assert_eq!(a.status, 401);
}

/// `source_port` as a number, a numeric string, `"null"` or absent; `source_ip` with
/// spaces, brackets, a port, a zone or in IPv6's long form: all decided (200) and recorded
/// under the address. A `source_ip` that is no address (`"0"`: WSO2 cuts IPv6 addresses at
/// the first colon) is decided and recorded with the client unknown (`0.0.0.0`), and
/// counted.
#[test]
fn ports_and_addresses_in_every_shape_gateways_send() {
    let e = Enforcer::start(&keepalive());
    let mut c = Conn::open(e.http);
    let call = |ip: &str, port: Option<&str>| -> String {
        let port = port.map_or(String::new(), |p| format!(r#""source_port": {p}, "#));
        format!(
            r#"{{"source_ip": "{ip}", {port}"method": "GET", "url": "/shopapi/items", "http_version": "1.1", "headers": [{{"host": "shop.example.com"}}]}}"#
        )
    };
    // Each request's response call follows on its connection (no correlation id), which
    // completes it.
    let mut decide = |body: String| {
        let a = c.post("/ase/request", &[], body.as_bytes());
        let logged = c.post("/ase/response", &[], br#"{"response_code": 200}"#);
        assert_eq!(logged.json()["correlated"], true);
        a
    };
    for port in [Some("8080"), Some(r#""8080""#), Some(r#""null""#), None] {
        let a = decide(call("10.1.1.1", port));
        assert_eq!(a.status, 200, "port {port:?}: {a:?}");
    }
    let forms = [
        (" 10.1.1.2 ", "10.1.1.2"),
        ("10.1.1.3:5678", "10.1.1.3"),
        ("[2001:db8::4]", "2001:db8::4"),
        ("[2001:db8::5]:443", "2001:db8::5"),
        ("fe80::6%eth0", "fe80::6"),
        ("0:0:0:0:0:0:0:1", "::1"),
    ];
    for (given, _) in forms {
        let a = decide(call(given, Some("80")));
        assert_eq!(a.status, 200, "source_ip {given:?}: {a:?}");
    }
    let a = decide(call("0", Some("8080")));
    assert_eq!(a.status, 200, "{a:?}");

    let r = report(&e);
    assert_eq!(r["req_resp_summary"]["total_requests"], 4 + 6 + 1);
    let ips: Vec<String> = r["req_resp_details"]["no_session"]["request_details"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|d| d["source_ip"].as_array().unwrap().clone())
        .map(|s| s["ip"].as_str().unwrap().to_string())
        .collect();
    for (_, read) in forms {
        assert!(ips.iter().any(|i| i == read), "{read} not in {ips:?}");
    }
    assert!(
        ips.iter().any(|i| i == "0.0.0.0"),
        "unknown client: {ips:?}"
    );
    assert_eq!(
        sample(&metrics(&e), "enforcer_sideband_unknown_source_ip_total"),
        Some(1.0)
    );
}

/// WSO2 API Manager: the body in ISO-8859-1 (`José` as one byte) declared as
/// `text/plain; charset=ISO-8859-1`, `/` escaped as `\/`, `user_info` as two objects, a UUID
/// correlation id, `Connection: Keep-Alive`; its newer response call wrapped as
/// `{"ASEPayload": {...}}`. Decided, the user recorded as sent, the status correlated.
#[test]
fn wso2_latin1_bodies_and_wrapped_response_calls() {
    let e = Enforcer::start(
        &Setup::sideband()
            .set("enable_sideband_keepalive", "true")
            .api("shop", shop()),
    );
    let mut request = br#"{"headers":[{"Host":"api.example.com:8243"},{"Accept":"*\/*"},{"User-Agent":"curl\/8.5.0"},{"X-Display-Name":"Jos"#.to_vec();
    request.push(0xE9);
    request.extend_from_slice(br#""}],"method":"GET","user_info":[{"username":"jos"#);
    request.push(0xE9);
    request.extend_from_slice(br#"@carbon.super"},{"client_id":"Xq7RtVw4YzA1bC3dE5fG6hJ8kL0m"}],"source_port":8080,"http_version":"1.1","url":"\/shopapi\/orders\/42?expand=items","source_ip":"198.51.100.20"}"#);
    let id = "0b3e6f4e-1f7a-4c1e-9a55-2f6d2f0c9b11";
    let call = [
        ("ASE-Token", "4b1c0e7d9a2f4e58b6c3d1a0f9e8d7c6"),
        ("X-CorrelationID", id),
        ("Content-Type", "text/plain; charset=ISO-8859-1"),
        ("Connection", "Keep-Alive"),
        ("User-Agent", "Apache-HttpClient/4.5.13 (Java/1.8.0_352)"),
    ];
    let mut c = Conn::open(e.http);
    let a = c.post("/ase/request", &call, &request);
    assert_eq!(a.status, 200, "{}", String::from_utf8_lossy(&a.body));
    assert!(
        a.header_values("set-cookie").is_empty(),
        "an X-CorrelationID needs no cookie"
    );
    let wrapped = br#"{"ASEPayload":{"headers":[{"Content-Type":"application\/json"},{"Date":"Tue, 03 Mar 2026 10:15:02 GMT"}],"response_code":"404","response_status":"Not Found","http_version":"1.1"}}"#;
    let a = c.post("/ase/response", &call, wrapped);
    assert_eq!(a.json(), json!({"verdict": "logged", "correlated": true}));
    let r = report(&e);
    assert_eq!(r["req_resp_summary"]["total_requests"], 1, "{r}");
    assert_eq!(r["req_resp_summary"]["success"], 0, "the 404 was recorded");

    let mut m = Conn::open(e.management);
    let activity = m
        .get(
            "/v5/ase/clients/username/jos%C3%A9%40carbon.super/activity",
            &[("x-ase-access-key", "admin"), ("x-ase-secret-key", "admin")],
        )
        .json();
    assert_eq!(activity["requests"], 1, "{activity}");
}

/// A Spring Boot filter: pretty-printed JSON with odd spacing, IPv6 in long form, a URL
/// without query, a millisecond timestamp as correlation id, no ASE-Token (authentication
/// off), an empty header list written across lines.
#[test]
fn spring_filter_pretty_printed_calls() {
    let e = Enforcer::start(&keepalive());
    let request = "{\n  \"source_ip\": \"0:0:0:0:0:0:0:1\",\n  \"source_port\": 53312,\n  \"method\" : \"GET\",\n  \"url\" : \"/shopapi/orders/42\",\n  \"http_version\": \"1.1\",\n  \"headers\" : [\n    {\"Host\" : \"localhost:8080\"},\n    {\"Accept\" : \"*/*\"}\n  ],\n  \"user_info\": [{\"username\" : \"anonymous\"} ]\n}";
    let response = "{\n  \"response_code\":\"200\",\n  \"response_status\":\"OK\",\n  \"http_version\":\"1.1\",\n  \"headers\":[\n  ]\n}";
    let call = [
        ("Content-Type", "application/json"),
        ("X-CorrelationID", "1772532902481"),
    ];
    let mut c = Conn::open(e.http);
    assert_eq!(
        c.post("/ase/request", &call, request.as_bytes()).status,
        200
    );
    let mut c = Conn::open(e.http);
    let a = c.post("/ase/response", &call, response.as_bytes());
    assert_eq!(a.json(), json!({"verdict": "logged", "correlated": true}));
    let r = report(&e);
    assert_eq!(r["req_resp_summary"]["success"], 1, "{r}");
    assert_eq!(r["req_resp_summary"]["most_popular_ips"], json!(["::1"]));
}

/// Mashery: the same request call sent twice with one `X-CorrelationID` (a retry after a
/// slow answer) is decided both times and recorded once; its response call has a numeric
/// `response_code` and no `http_version`.
#[test]
fn a_retried_call_is_decided_twice_and_recorded_once() {
    let e = Enforcer::start(&keepalive());
    let request = r#"{
  "source_ip": "10.240.0.6", "source_port": 80, "method": "GET",
  "url": "/shopapi/get?query=abc", "http_version": "HTTP/1.1",
  "user_info": [ { "username": "abc", "client_id": "cabfsghhbsag" } ],
  "headers": [ { "host": "cstest.api.ceml.mashspud.com" }, { "X-API-Key": "zhxuetuay9cy84mbngpx4smj" },
               { "content-type": "application/json" }, { "content-length": "0" } ] }"#;
    let call = [
        ("User-Agent", "Mashery"),
        ("X-CorrelationID", "Id-5219fdad-1c62-4d66-9c4d-2d3ad7ea0b1e"),
        ("Content-Type", "application/json;charset=utf-8"),
        ("Connection", "keep-alive"),
    ];
    let (mut first, mut retry) = (Conn::open(e.http), Conn::open(e.http));
    assert_eq!(
        first.post("/ase/request", &call, request.as_bytes()).status,
        200
    );
    assert_eq!(
        retry.post("/ase/request", &call, request.as_bytes()).status,
        200
    );
    let a = retry.post(
        "/ase/response",
        &call,
        br#"{ "response_code": 200, "response_status": "OK", "headers": [ { "content-type": "application/json" } ] }"#,
    );
    assert_eq!(a.json(), json!({"verdict": "logged", "correlated": true}));
    let r = report(&e);
    assert_eq!(r["req_resp_summary"]["total_requests"], 1, "{r}");
    assert_eq!(r["req_resp_summary"]["success"], 1);
    let text = metrics(&e);
    assert_eq!(
        sample(
            &text,
            r#"enforcer_sideband_correlations_total{outcome="retried"}"#
        ),
        Some(1.0)
    );
}

/// Without `X-CorrelationID`, a response call finds its request by the `PISESSIONID`
/// cookie enforcer handed out (on any connection) or by its connection; one that can be
/// placed neither way is counted as uncorrelated, and its request is recorded when its
/// TTL passes, not lost.
#[test]
fn requests_without_correlation_ids_are_not_lost() {
    let e = Enforcer::start(
        &Setup::sideband()
            .set("enable_sideband_keepalive", "true")
            .set("sideband_pending_ttl", "1s")
            .api("shop", shop()),
    );
    let request = r#"{"source_ip": "203.0.113.9", "method": "GET", "url": "/shopapi/x", "headers": [{"Host" : "shop.example.com"}]}"#;
    let response = r#"{"response_code": "500"}"#;
    // By cookie, on another connection.
    let mut a = Conn::open(e.http);
    let answer = a.post("/ase/request", &[], request.as_bytes());
    let cookie = answer.header_values("set-cookie")[0]
        .split(';')
        .next()
        .unwrap()
        .to_string();
    let mut b = Conn::open(e.http);
    let logged = b.post("/ase/response", &[("Cookie", &cookie)], response.as_bytes());
    assert_eq!(logged.json()["correlated"], true);
    // By connection.
    a.post("/ase/request", &[], request.as_bytes());
    let logged = a.post("/ase/response", &[], response.as_bytes());
    assert_eq!(logged.json()["correlated"], true);
    // Neither: the response is counted, the request recorded after its TTL.
    a.post("/ase/request", &[], request.as_bytes());
    let logged = b.post("/ase/response", &[], response.as_bytes());
    assert_eq!(logged.json()["correlated"], false);
    let deadline = Instant::now() + Duration::from_secs(20);
    while report(&e)["req_resp_summary"]["total_requests"] != 3 {
        assert!(
            Instant::now() < deadline,
            "the third request was never recorded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let text = metrics(&e);
    for (outcome, n) in [
        ("by_cookie", 1.0),
        ("by_connection", 1.0),
        ("uncorrelated", 1.0),
        ("expired", 1.0),
    ] {
        let series = format!(r#"enforcer_sideband_correlations_total{{outcome="{outcome}"}}"#);
        assert_eq!(sample(&text, &series), Some(n), "{outcome}");
    }
}

/// A gateway's `Connection: close` gets exactly `Connection: close` back (never
/// `keep-alive, close`) and the socket closes; HTTP/1.0 without keep-alive the same.
#[test]
fn connection_close_is_answered_with_close_only() {
    let e = Enforcer::start(
        &Setup::sideband()
            .set("enable_sideband_keepalive", "true")
            .api("shop", shop()),
    );
    let body = r#"{"source_ip": "10.0.0.1", "method": "GET", "url": "/shopapi/x", "headers": [{"host": "h"}]}"#;
    let mut c = Conn::open(e.http);
    let a = c.post("/ase/request", &[("Connection", "close")], body.as_bytes());
    assert_eq!(a.status, 200);
    assert_eq!(a.header_values("connection"), ["close"]);
    assert!(c.closed(), "the connection stays open");

    let mut c = Conn::open(e.http);
    let head = format!(
        "POST /ase/request HTTP/1.0\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.0.write_all(head.as_bytes()).unwrap();
    let mut all = Vec::new();
    c.0.read_to_end(&mut all).unwrap();
    let text = String::from_utf8_lossy(&all).to_ascii_lowercase();
    assert!(text.contains("connection: close\r\n"), "{text}");
    assert!(!text.contains("keep-alive"), "{text}");
}

/// An idle keep-alive sideband connection stays open for `idle_timeout`, not only for
/// `header_read_timeout`; a request head that has started must still complete within
/// `header_read_timeout`.
#[test]
fn idle_keepalive_connections_outlive_the_header_timeout() {
    let e = Enforcer::start(
        &Setup::sideband()
            .set("enable_sideband_keepalive", "true")
            .set("header_read_timeout", "1s")
            .set("idle_timeout", "60s")
            .api("shop", shop()),
    );
    let body = r#"{"source_ip": "10.0.0.1", "method": "GET", "url": "/shopapi/x", "headers": [{"host": "h"}]}"#;
    let mut c = Conn::open(e.http);
    assert_eq!(c.post("/ase/request", &[], body.as_bytes()).status, 200);
    // Idle for longer than the header timeout: the connection is still served.
    std::thread::sleep(Duration::from_millis(2_500));
    assert_eq!(c.post("/ase/request", &[], body.as_bytes()).status, 200);

    // A head that starts and stalls is cut after the header timeout, well before idle.
    let mut slow = Conn::open(e.http);
    let started = Instant::now();
    slow.0
        .write_all(b"POST /ase/request HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    assert!(slow.closed(), "a stalled head was not cut");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "cut by the idle timer, not the header timer"
    );
}

/// A 400 always names the field and why; nesting and size limits are unchanged.
#[test]
fn what_cannot_be_understood_is_still_refused_clearly() {
    let e = Enforcer::start(&keepalive().set("sideband_max_body", "4kb"));
    let mut c = Conn::open(e.http);
    for (body, field) in [
        (
            r#"{"method": "GET", "url": "/shopapi", "headers": []}"#,
            "source_ip",
        ),
        (
            r#"{"source_ip": "1.1.1.1", "method": "GET", "url": "/shopapi", "http_version": "9.9", "headers": []}"#,
            "http_version",
        ),
        (
            r#"{"source_ip": "1.1.1.1", "method": "G E T", "url": "/shopapi", "headers": []}"#,
            "method",
        ),
        (
            r#"{"source_ip": "1.1.1.1", "method": "GET", "url": "/shopapi", "headers": [{"bad name": "x"}]}"#,
            "headers[0]",
        ),
        ("{not json at all", "(body)"),
    ] {
        let a = c.post("/ase/request", &[], body.as_bytes());
        assert_eq!(a.status, 400, "{body}");
        let v = a.json();
        assert_eq!(v["field"], field, "{body}: {v}");
        assert!(!v["message"].as_str().unwrap_or("").is_empty(), "{v}");
    }
    let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
    let a = c.post("/ase/request", &[], deep.as_bytes());
    assert_eq!(a.status, 400, "nesting");
    let big = format!(r#"{{"source_ip":"1.1.1.1","pad":"{}"}}"#, "x".repeat(8192));
    let a = c.post("/ase/request", &[], big.as_bytes());
    assert_eq!(a.status, 413);
}
