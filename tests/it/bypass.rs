//! Attempts to get around enforcer's policy, each reproduced against the real binary: a
//! request routed by one host and forwarded with another, identifiers given twice so the
//! deny list sees one value and the backend another, a transfer coding enforcer would
//! silently drop, client-chosen origin headers. Each must be refused or neutralised, and
//! nothing refused may reach the backend.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::backend::Backend;
use crate::support::{Enforcer, Setup, api, manage, raw_exchange};

async fn raw(addr: SocketAddr, req: String) -> String {
    tokio::task::spawn_blocking(move || raw_exchange(addr, req.as_bytes(), Duration::from_secs(5)))
        .await
        .unwrap()
}

/// The echo backend's JSON from a raw answer.
fn echoed(answer: &str) -> Value {
    let body = answer.split("\r\n\r\n").nth(1).unwrap_or("");
    // Chunked answers: the JSON object is the one line that starts with `{`.
    let json = body.lines().find(|l| l.starts_with('{')).unwrap_or(body);
    serde_json::from_str(json).unwrap_or(Value::Null)
}

/// `DELETE http://internal.example/...` with `Host: public.example`: routed by the target's
/// authority and, since RFC 9112 says the absolute-form wins, forwarded with that authority
/// as `Host`, never the client's other one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_absolute_target_is_routed_and_forwarded_by_one_authority() {
    let internal = Backend::start("internal").await;
    let public = Backend::start("public").await;
    let e = Enforcer::start(
        &Setup::inline()
            .api(
                "internal",
                api("/data", "internal.example", &[internal.addr]),
            )
            .api("public", api("/data", "public.example", &[public.addr])),
    );
    let answer = raw(
        e.http,
        "DELETE http://internal.example/data/echo HTTP/1.1\r\nHost: public.example\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let doc = echoed(&answer);
    assert_eq!(doc["backend"], "internal", "{doc}");
    assert_eq!(doc["headers"]["host"], json!(["internal.example"]), "{doc}");
    assert_eq!(public.requests(), 0);
}

/// A deny-listed API key, token or session cookie cannot pass by being sent twice, or as a
/// list beside a harmless value: every such request is refused as malformed (400), inline
/// and in sideband, and none reaches the backend. The same value alone is 403.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identifiers_given_twice_cannot_slip_past_the_deny_list() {
    let b = Backend::start("b").await;
    let mut def = api("/shop", "*", &[b.addr]);
    def["cookie"] = json!("JSESSIONID");
    def["oauth2_access_token"] = json!(true);
    def["apikey_header"] = json!("x-api-key");
    def["enable_blocking"] = json!(true);
    let e = Enforcer::start(&Setup::inline().api("shop", def.clone()));
    let side = Enforcer::start(&Setup::sideband().api("shop", def));
    let deny = json!({ "api_keys": [{"name": "x-api-key", "value": "evil"}],
                       "oauth_tokens": ["evil"], "cookies": [{"name": "JSESSIONID", "value": "evil"}] });
    for inst in [&e, &side] {
        manage(
            inst,
            reqwest::Method::POST,
            "/v4/ase/blacklist",
            Some(deny.clone()),
        )
        .await;
    }
    let get = |headers: &str| {
        format!("GET /shop/echo HTTP/1.1\r\nHost: x\r\n{headers}Connection: close\r\n\r\n")
    };
    for (what, headers) in [
        (
            "two API key headers",
            "x-api-key: benign\r\nx-api-key: evil\r\n",
        ),
        ("an API key list", "x-api-key: benign, evil\r\n"),
        (
            "two Cookie headers",
            "Cookie: JSESSIONID=benign\r\nCookie: JSESSIONID=evil\r\n",
        ),
        (
            "the session cookie twice",
            "Cookie: JSESSIONID=benign; JSESSIONID=evil\r\n",
        ),
        (
            "two bearer tokens",
            "Authorization: Bearer benign\r\nAuthorization: Bearer evil\r\n",
        ),
    ] {
        let answer = raw(e.http, get(headers)).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{what}: {answer}");
        assert!(
            answer.contains("Error: Malformed Request"),
            "{what}: {answer}"
        );
    }
    for (what, headers) in [
        ("the API key", "x-api-key: evil\r\n"),
        ("the cookie", "Cookie: JSESSIONID=evil\r\n"),
        ("the token", "Authorization: Bearer evil\r\n"),
    ] {
        let answer = raw(e.http, get(headers)).await;
        assert!(answer.starts_with("HTTP/1.1 403"), "{what}: {answer}");
    }
    assert_eq!(b.requests(), 0, "a refused request reached the backend");

    // Sideband: the same in a gateway's header list.
    let call = |headers: Value| {
        json!({"source_ip": "10.0.0.1", "method": "GET", "url": "/shop/x", "headers": headers})
            .to_string()
    };
    for headers in [
        json!([{"host": "x"}, {"x-api-key": "benign"}, {"x-api-key": "evil"}]),
        json!([{"host": "x"}, {"cookie": "JSESSIONID=benign"}, {"cookie": "JSESSIONID=evil"}]),
        json!([{"host": "x"}, {"authorization": "Bearer benign"}, {"authorization": "Bearer evil"}]),
    ] {
        let r = crate::support::client()
            .post(side.url("/ase/request"))
            .body(call(headers.clone()))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{headers}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["field"], "headers", "{body}");
        assert!(
            body["message"]
                .as_str()
                .unwrap()
                .starts_with("ambiguous identity"),
            "{body}"
        );
    }
}

/// `Transfer-Encoding: gzip, chunked` would be forwarded de-chunked with the gzip coding
/// dropped: refused with 501, and nothing reaches the backend.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unimplemented_transfer_codings_are_refused() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&Setup::inline().api("a", api("/a", "*", &[b.addr])));
    let answer = raw(
        e.http,
        "POST /a/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n".into(),
    )
    .await;
    assert!(answer.starts_with("HTTP/1.1 501"), "{answer}");
    assert!(answer.contains("Error: Not Implemented"), "{answer}");
    let ok = raw(
        e.http,
        "POST /a/echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n3\r\nabc\r\n0\r\n\r\n".into(),
    )
    .await;
    assert!(ok.starts_with("HTTP/1.1 200"), "{ok}");
    assert_eq!(
        b.requests(),
        1,
        "only the plain chunked request reached the backend"
    );
}

/// Without `enable_xff`, a client's own `Forwarded` and `X-Real-IP` are not passed on as
/// if they were true: `Forwarded` is removed and `X-Real-IP` says the real peer, like
/// `X-Forwarded-For`. With `enable_xff` they pass, as from a trusted proxy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_chosen_origin_headers_are_not_trusted() {
    let b = Backend::start("b").await;
    let spoofed = "Forwarded: for=1.2.3.4\r\nX-Real-IP: 1.2.3.4\r\nX-Forwarded-For: 1.2.3.4\r\n";
    let req = format!("GET /a/echo HTTP/1.1\r\nHost: x\r\n{spoofed}Connection: close\r\n\r\n");
    let e = Enforcer::start(&Setup::inline().api("a", api("/a", "*", &[b.addr])));
    let h = echoed(&raw(e.http, req.clone()).await)["headers"].clone();
    assert_eq!(h.get("forwarded"), None, "{h}");
    assert_eq!(h["x-real-ip"], json!(["127.0.0.1"]), "{h}");
    assert_eq!(h["x-forwarded-for"], json!(["127.0.0.1"]), "{h}");

    let trusting = Enforcer::start(
        &Setup::inline()
            .set("enable_xff", "true")
            .api("a", api("/a", "*", &[b.addr])),
    );
    let h = echoed(&raw(trusting.http, req).await)["headers"].clone();
    assert_eq!(h["forwarded"], json!(["for=1.2.3.4"]), "{h}");
    assert_eq!(h["x-real-ip"], json!(["1.2.3.4"]), "{h}");
}
