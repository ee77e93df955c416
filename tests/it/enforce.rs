//! Enforcement through the real binary: identity capture, deny and allow lists (REST and
//! CLI), enable_blocking, API patterns, decoys, flow control and every detector, in both
//! modes where the feature applies.

use std::time::Duration;

use base64::Engine;
use serde_json::{Value, json};

use crate::support::{Backend, Enforcer, Setup, api, client, eventually, manage, run_cli};

/// A GET through the proxy as client `ip` (trusted X-Forwarded-For) with extra headers.
async fn get_as(e: &Enforcer, ip: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let mut req = client().get(e.url(path)).header("x-forwarded-for", ip);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.text().await.unwrap())
}

async fn attacks(e: &Enforcer, api: &str) -> Vec<Value> {
    let v = manage(
        e,
        reqwest::Method::GET,
        &format!("/v4/abs/attack?api={api}"),
        None,
    )
    .await;
    v["attacks"].as_array().cloned().unwrap_or_default()
}

async fn attack_names(e: &Enforcer, api: &str) -> Vec<String> {
    attacks(e, api)
        .await
        .iter()
        .map(|a| a["name"].as_str().unwrap_or_default().to_string())
        .collect()
}

fn jwt(claims: Value) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(s);
    format!(
        "{}.{}.c2ln",
        b64(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64(&claims.to_string())
    )
}

/// An inline API capturing every identifier type.
fn shop(backend: std::net::SocketAddr) -> Value {
    let mut def = api("/shop", "*", &[backend]);
    def["cookie"] = json!("JSESSIONID");
    def["oauth2_access_token"] = json!(true);
    def["apikey_header"] = json!("X-API-KEY");
    def["username_header"] = json!("x-user");
    def["enable_blocking"] = json!(true);
    def
}

/// A sideband request call from `ip` with these headers (and optional user_info).
fn call(ip: &str, url: &str, headers: &[(&str, &str)], user: Option<&str>) -> String {
    let mut hs = vec![json!({ "host": "shop.example.com" })];
    hs.extend(headers.iter().map(|(k, v)| json!({ *k: *v })));
    let mut body = json!({
        "source_ip": ip, "source_port": 443, "method": "GET", "url": url,
        "http_version": "1.1", "headers": hs
    });
    if let Some(u) = user {
        body["user_info"] = json!([{ "username": u, "client_id": "app-1" }]);
    }
    body.to_string()
}

async fn decide(e: &Enforcer, body: String) -> (u16, Value) {
    let r = client()
        .post(e.url("/ase/request"))
        .body(body)
        .send()
        .await
        .unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

/// Which transport a probe goes through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    Inline,
    Sideband,
}

/// One request as client `ip` with `headers`: through the proxy (GET /shop/echo) or as a
/// sideband request call (GET /shop/items). Returns the status and the body.
async fn probe(e: &Enforcer, via: Via, ip: &str, headers: &[(&str, &str)]) -> (u16, String) {
    match via {
        Via::Inline => get_as(e, ip, "/shop/echo", headers).await,
        Via::Sideband => {
            let (s, v) = decide(e, call(ip, "/shop/items", headers, None)).await;
            (s, v.to_string())
        }
    }
}

/// Each identifier type on the deny list blocks (inline 403 `Error: Unauthorized`,
/// sideband 403), CIDRs cover their range, removal unblocks, and the allow list wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deny_list_blocks_every_identifier_and_allow_wins_in_both_modes() {
    let b = Backend::start("shop").await;
    let inline = Enforcer::start(
        &Setup::inline()
            .set("enable_xff", "true")
            .api("shop", shop(b.addr)),
    );
    let sideband = Enforcer::start(&Setup::sideband().api("shop", shop(b.addr)));
    type Case<'a> = (Value, &'a str, Vec<(&'a str, &'a str)>);
    let cases: Vec<Case> = vec![
        (json!({ "ips": ["6.6.6.6"] }), "6.6.6.6", vec![]),
        (json!({ "ips": ["7.7.0.0/16"] }), "7.7.3.4", vec![]),
        (
            json!({ "cookies": [{ "name": "JSESSIONID", "value": "s-bad" }] }),
            "1.1.1.1",
            vec![("cookie", "a=1; JSESSIONID=s-bad")],
        ),
        (
            json!({ "oauth_tokens": ["tok-bad"] }),
            "1.1.1.1",
            vec![("authorization", "Bearer tok-bad")],
        ),
        (
            json!({ "api_keys": [{ "name": "X-API-KEY", "value": "key-bad" }] }),
            "1.1.1.1",
            vec![("x-api-key", "key-bad")],
        ),
        (
            json!({ "usernames": ["mallory"] }),
            "1.1.1.1",
            vec![("x-user", "mallory")],
        ),
    ];
    for (e, via) in [(&inline, Via::Inline), (&sideband, Via::Sideband)] {
        for (entry, ip, headers) in &cases {
            assert_eq!(
                probe(e, via, ip, headers).await.0,
                200,
                "{via:?} {entry} before listing"
            );
            manage(
                e,
                reqwest::Method::POST,
                "/v4/ase/blacklist",
                Some(entry.clone()),
            )
            .await;
            let (s, body) = probe(e, via, ip, headers).await;
            assert_eq!(s, 403, "{via:?} {entry}");
            match via {
                Via::Inline => assert_eq!(body, "Error: Unauthorized"),
                Via::Sideband => assert!(body.contains("\"verdict\":\"block\""), "{body}"),
            }
            // The allow list wins over the deny list.
            manage(
                e,
                reqwest::Method::POST,
                "/v4/ase/whitelist",
                Some(entry.clone()),
            )
            .await;
            assert_eq!(
                probe(e, via, ip, headers).await.0,
                200,
                "{via:?} {entry} allow-listed"
            );
            manage(
                e,
                reqwest::Method::DELETE,
                "/v4/ase/whitelist",
                Some(entry.clone()),
            )
            .await;
            assert_eq!(probe(e, via, ip, headers).await.0, 403);
            let removed = manage(
                e,
                reqwest::Method::DELETE,
                "/v4/ase/blacklist",
                Some(entry.clone()),
            )
            .await;
            assert_eq!(removed["removed"], 1);
            assert_eq!(
                probe(e, via, ip, headers).await.0,
                200,
                "{via:?} {entry} removed"
            );
        }
    }
}

/// With enable_blocking=false a deny-listed client gets through, and the exchange is
/// recorded as "would block"; in sideband the gateway is told to allow.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_enable_blocking_only_records() {
    let b = Backend::start("shop").await;
    let mut def = shop(b.addr);
    def["enable_blocking"] = json!(false);
    for (setup, via) in [
        (Setup::inline().set("enable_xff", "true"), Via::Inline),
        (Setup::sideband(), Via::Sideband),
    ] {
        let e = Enforcer::start(&setup.api("shop", def.clone()));
        manage(
            &e,
            reqwest::Method::POST,
            "/v4/ase/blacklist",
            Some(json!({ "ips": ["6.6.6.6"] })),
        )
        .await;
        assert_eq!(probe(&e, via, "6.6.6.6", &[]).await.0, 200, "{via:?}");
        assert!(
            e.wait_for_log("would block", Duration::from_secs(5)),
            "{via:?}"
        );
    }
}

/// The CLI adds, views (in ASE's view_blacklist layout), deletes and clears entries of both
/// lists on the running instance, found through its config directory.
#[test]
fn cli_manages_the_lists() {
    let e =
        Enforcer::start(&Setup::sideband().api("shop", json!({ "url": "/shop", "hostname": "*" })));
    let dir = e.config_dir().to_str().unwrap().to_string();
    let cli = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--config", &dir]);
        run_cli(&all)
    };
    for (args, said) in [
        (
            vec!["blacklist", "add", "ip", "10.10.10.10"],
            "ip 10.10.10.10 added to blacklist",
        ),
        (
            vec!["blacklist", "add", "cookie", "JSESSIONID", "cookie_1.4"],
            "cookie JSESSIONID cookie_1.4 added to blacklist",
        ),
        (
            vec!["blacklist", "add", "token", "token1.4"],
            "token token1.4 added to blacklist",
        ),
        (
            vec!["blacklist", "add", "api_key", "X-API-KEY", "key_1.4"],
            "api_key X-API-KEY key_1.4 added to blacklist",
        ),
        (
            vec!["blacklist", "add", "username", "user1", "--ttl", "1h"],
            "username user1 added to blacklist",
        ),
        (
            vec!["blacklist", "add", "ip", "10.10.10.10"],
            "ip 10.10.10.10 is already in blacklist",
        ),
        (
            vec!["whitelist", "add", "ip", "1.2.3.4"],
            "ip 1.2.3.4 added to whitelist",
        ),
    ] {
        let (status, stdout, stderr) = cli(&args);
        assert!(status.success(), "{args:?}: {stderr}");
        assert_eq!(stdout.trim(), said);
    }
    let (_, view, _) = cli(&["blacklist", "view"]);
    let mut lines: Vec<&str> = view.lines().collect();
    let last = lines
        .iter()
        .position(|l| l.starts_with("5) type : username"))
        .unwrap();
    assert!(
        lines[last].starts_with("5) type : username, value : user1, expires : "),
        "{view}"
    );
    lines[last] = "5) type : username, value : user1";
    assert_eq!(
        lines.join("\n"),
        "Manual Blacklist\n\
         1) type : ip, value : 10.10.10.10\n\
         2) type : cookie, name : JSESSIONID, value : cookie_1.4\n\
         3) type : token, value : token1.4\n\
         4) type : api_key, name : x-api-key, value : key_1.4\n\
         5) type : username, value : user1\n\
         Realtime Decoy Blacklist\n\
         Realtime Pattern Blacklist\n\
         Realtime Detection Blacklist"
    );
    let (_, view, _) = cli(&["whitelist", "view", "manual"]);
    assert_eq!(view, "Manual Whitelist\n1) type : ip, value : 1.2.3.4\n");

    let (status, stdout, _) = cli(&["blacklist", "delete", "ip", "10.10.10.10"]);
    assert!(status.success());
    assert_eq!(stdout.trim(), "ip 10.10.10.10 deleted from blacklist");
    let (status, _, stderr) = cli(&["blacklist", "delete", "ip", "10.10.10.10"]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("not in blacklist"), "{stderr}");
    let (status, _, stderr) = cli(&["blacklist", "add", "cookie", "only-a-name"]);
    assert_eq!(status.code(), Some(2));
    assert!(
        stderr.contains("cookie takes a name and a value"),
        "{stderr}"
    );
    let (status, _, stderr) = cli(&["blacklist", "add", "ip", "not-an-ip"]);
    assert_eq!(status.code(), Some(1));
    assert!(stderr.contains("not an IP address"), "{stderr}");
    let (status, stdout, _) = cli(&["blacklist", "clear"]);
    assert!(status.success());
    assert_eq!(stdout.trim(), "blacklist cleared (4 entries removed)");
}

/// Identities come from headers, the query string, cookies, JWTs (header and query; a
/// username claim array gives its first element) and sideband user_info, which takes
/// precedence over the JWT.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identities_from_header_query_cookie_jwt_and_user_info() {
    let b = Backend::start("b").await;
    let mut jwt_header = api("/idh", "*", &[b.addr]);
    jwt_header["enable_blocking"] = json!(true);
    jwt_header["jwt"] = json!({ "location": "h:authorization:bearer", "username": "preferred_username", "clientid": "azp" });
    let mut jwt_query = api("/idq", "*", &[b.addr]);
    jwt_query["enable_blocking"] = json!(true);
    jwt_query["apikey_qs"] = json!("api_key");
    jwt_query["jwt"] = json!({ "location": "qs:access", "username": "sub" });
    let lists = json!({
        "usernames": ["alice", "bob", "carol"],
        "api_keys": [{ "name": "api_key", "value": "qk" }]
    });
    let alice = jwt(json!({ "preferred_username": ["alice", "other"], "azp": "app" }));
    let dave = jwt(json!({ "preferred_username": "dave" }));
    let bob = jwt(json!({ "sub": "bob" }));

    let e = Enforcer::start(
        &Setup::inline()
            .set("enable_xff", "true")
            .api("idh", jwt_header.clone())
            .api("idq", jwt_query.clone()),
    );
    manage(
        &e,
        reqwest::Method::POST,
        "/v4/ase/blacklist",
        Some(lists.clone()),
    )
    .await;
    let bearer = |t: &str| format!("Bearer {t}");
    assert_eq!(
        get_as(
            &e,
            "1.0.0.1",
            "/idh/echo",
            &[("authorization", &bearer(&alice))]
        )
        .await
        .0,
        403
    );
    assert_eq!(
        get_as(
            &e,
            "1.0.0.1",
            "/idh/echo",
            &[("authorization", &bearer(&dave))]
        )
        .await
        .0,
        200
    );
    assert_eq!(
        get_as(&e, "1.0.0.1", &format!("/idq/echo?access={bob}"), &[])
            .await
            .0,
        403
    );
    assert_eq!(
        get_as(&e, "1.0.0.1", "/idq/echo?x=1&api_key=qk", &[])
            .await
            .0,
        403
    );
    assert_eq!(
        get_as(&e, "1.0.0.1", "/idq/echo?api_key=other", &[])
            .await
            .0,
        200
    );

    let s = Enforcer::start(
        &Setup::sideband()
            .api("idh", jwt_header)
            .api("idq", jwt_query),
    );
    manage(&s, reqwest::Method::POST, "/v4/ase/blacklist", Some(lists)).await;
    let auth = bearer(&alice);
    assert_eq!(
        decide(
            &s,
            call("1.0.0.1", "/idh/x", &[("authorization", &auth)], None)
        )
        .await
        .0,
        403
    );
    // user_info names the user; the gateway's word beats the token's.
    assert_eq!(
        decide(
            &s,
            call(
                "1.0.0.1",
                "/idh/x",
                &[("authorization", &auth)],
                Some("dave")
            )
        )
        .await
        .0,
        200
    );
    assert_eq!(
        decide(&s, call("1.0.0.1", "/idh/x", &[], Some("carol")))
            .await
            .0,
        403
    );
    assert_eq!(
        decide(
            &s,
            call("1.0.0.1", &format!("/idq/x?access={bob}"), &[], None)
        )
        .await
        .0,
        403
    );
    assert_eq!(
        decide(&s, call("1.0.0.1", "/idq/x?api_key=qk", &[], None))
            .await
            .0,
        403
    );
}

/// Protocol (with and without redirect), method and content-type rules answer as the API
/// says, raise `pattern_violation` (type 101) and deny-list the client (source pattern).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pattern_rules() {
    let b = Backend::start("b").await;
    let mut secure = api("/secure", "*", &[b.addr]);
    secure["api_pattern_enforcement"] = json!({
        "protocol_allowed": "https",
        "http_redirect": { "response_code": "301", "response_def": "Moved Permanently", "https_url": "https://secure.example.com" }
    });
    let mut strict = api("/strict", "*", &[b.addr]);
    strict["enable_blocking"] = json!(true);
    strict["api_pattern_enforcement"] = json!({
        "protocol_allowed": "https", "methods_allowed": ["GET", "POST"],
        "content_type_allowed": "application/json",
        "error_code": "401", "error_def": "Unauthorized", "error_message_body": "401 Unauthorized"
    });
    let e = Enforcer::start(
        &Setup::inline()
            .set("enable_xff", "true")
            .api("secure", secure)
            .api("strict", strict),
    );
    let plain = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();

    let r = plain.get(e.url("/secure/x?y=1")).send().await.unwrap();
    assert_eq!(r.status(), 301);
    assert_eq!(
        r.headers()["location"],
        "https://secure.example.com/secure/x?y=1"
    );
    assert_eq!(
        client()
            .get(e.https_url("/secure/echo"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );

    let send =
        |method: reqwest::Method, https: bool, ip: &'static str, ct: Option<&'static str>| {
            let url = if https {
                e.https_url("/strict/echo")
            } else {
                e.url("/strict/echo")
            };
            let mut req = client().request(method, url).header("x-forwarded-for", ip);
            if let Some(ct) = ct {
                req = req.header("content-type", ct).body("{}");
            }
            async move {
                let r = req.send().await.unwrap();
                (r.status().as_u16(), r.text().await.unwrap())
            }
        };
    use reqwest::Method;
    assert_eq!(
        send(Method::GET, false, "2.2.2.1", None).await,
        (401, "401 Unauthorized".into()),
        "protocol"
    );
    assert_eq!(
        send(Method::DELETE, true, "2.2.2.2", None).await.0,
        401,
        "method"
    );
    assert_eq!(
        send(Method::POST, true, "2.2.2.3", Some("text/xml"))
            .await
            .0,
        401,
        "content type"
    );
    assert_eq!(
        send(
            Method::POST,
            true,
            "2.2.2.4",
            Some("application/json; charset=utf-8")
        )
        .await
        .0,
        200
    );
    assert_eq!(send(Method::GET, true, "2.2.2.5", None).await.0, 200);
    // The violators are deny-listed now, for every API.
    assert_eq!(
        send(Method::GET, true, "2.2.2.2", None).await,
        (403, "Error: Unauthorized".into())
    );
    let listed = manage(&e, Method::GET, "/v4/ase/blacklist?source=pattern", None).await;
    let ips: Vec<&str> = listed["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["2.2.2.1", "2.2.2.2", "2.2.2.3"]);
    let found = attacks(&e, "strict").await;
    assert_eq!(found.len(), 3);
    assert!(
        found
            .iter()
            .all(|a| a["name"] == "pattern_violation" && a["type_id"] == 101)
    );
}

/// An out-of-context decoy API and an in-context decoy sub-path answer their fake responses
/// without reaching a backend; a client that touched one is blocked (and deny-listed, source
/// decoy) on its next real call. In sideband, decoys are refused outright.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn decoys_in_and_out_of_context() {
    let b = Backend::start("b").await;
    let admin_decoy = json!({
        "url": "/admin", "hostname": "*",
        "decoy_config": { "decoy_enabled": true, "response_code": 200, "response_def": "OK", "response_message": "{\"users\":[]}" }
    });
    let mut shop_def = shop(b.addr);
    shop_def["decoy_config"] = json!({
        "decoy_enabled": true, "response_code": 404, "response_def": "Not Found",
        "response_message": "nothing here", "decoy_subpaths": ["debug"]
    });
    let e = Enforcer::start(
        &Setup::inline()
            .set("enable_xff", "true")
            .api("admin", admin_decoy.clone())
            .api("shop", shop_def.clone()),
    );
    assert_eq!(
        get_as(&e, "3.3.3.1", "/admin/users", &[]).await,
        (200, "{\"users\":[]}".into())
    );
    assert_eq!(
        get_as(&e, "3.3.3.1", "/shop/echo", &[]).await.0,
        403,
        "a decoy visitor is blocked"
    );
    assert_eq!(
        get_as(&e, "3.3.3.2", "/shop/debug/vars", &[]).await,
        (404, "nothing here".into())
    );
    assert_eq!(get_as(&e, "3.3.3.2", "/shop/echo", &[]).await.0, 403);
    assert_eq!(
        get_as(&e, "3.3.3.3", "/shop/echo", &[]).await.0,
        200,
        "an innocent client is not"
    );
    assert_eq!(b.requests(), 1, "no decoy request reached the backend");
    let listed = manage(
        &e,
        reqwest::Method::GET,
        "/v4/ase/blacklist?source=decoy",
        None,
    )
    .await;
    let ips: Vec<&str> = listed["ips"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["value"].as_str().unwrap())
        .collect();
    assert_eq!(ips, ["3.3.3.1", "3.3.3.2"]);
    assert_eq!(attack_names(&e, "admin").await, ["decoy_access"]);

    let s = Enforcer::start(
        &Setup::sideband()
            .api("admin", admin_decoy)
            .api("shop", shop_def),
    );
    let (status, answer) = decide(&s, call("3.3.3.1", "/admin/users", &[], None)).await;
    assert_eq!((status, answer["reason"].clone()), (403, json!("decoy")));
    assert_eq!(
        decide(&s, call("3.3.3.1", "/shop/items", &[], None))
            .await
            .0,
        403
    );
    assert_eq!(
        decide(&s, call("3.3.3.3", "/shop/items", &[], None))
            .await
            .0,
        200
    );
}

/// is_token_mandatory: a request without a bearer token is blocked and its IP deny-listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mandatory_token() {
    let b = Backend::start("b").await;
    let mut def = shop(b.addr);
    def["is_token_mandatory"] = json!(true);
    let e = Enforcer::start(
        &Setup::inline()
            .set("enable_xff", "true")
            .api("shop", def.clone()),
    );
    let with = [("authorization", "Bearer t-1")];
    assert_eq!(get_as(&e, "4.4.4.1", "/shop/echo", &[]).await.0, 403);
    assert_eq!(get_as(&e, "4.4.4.2", "/shop/echo", &with).await.0, 200);
    assert_eq!(
        get_as(&e, "4.4.4.1", "/shop/echo", &with).await.0,
        403,
        "its IP is deny-listed"
    );
    assert_eq!(attack_names(&e, "shop").await, ["missing_token"]);

    let s = Enforcer::start(&Setup::sideband().api("shop", def));
    assert_eq!(
        decide(&s, call("4.4.4.1", "/shop/x", &[], None)).await.0,
        403
    );
    assert_eq!(
        decide(&s, call("4.4.4.2", "/shop/x", &with, None)).await.0,
        200
    );
    assert_eq!(
        decide(&s, call("4.4.4.1", "/shop/x", &with, None)).await.0,
        403
    );
}

/// Client spike, server spike and connection quota (rejecting, and queueing) answer 429 with
/// Retry-After and show in the flow-control report.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flow_control_limits() {
    let (b, q1, q2) = (
        Backend::start("b").await,
        Backend::start("q1").await,
        Backend::start("q2").await,
    );
    let mut spiky = api("/spiky", "*", &[b.addr]);
    spiky["flow_control"] = json!({ "client_spike_threshold": "3/minute" });
    let mut srv = api("/srv", "*", &[b.addr]);
    srv["servers"][0]["server_spike_threshold"] = json!("2/minute");
    let mut quota = api("/quota", "*", &[q1.addr]);
    quota["servers"][0]["server_connection_quota"] = json!(1);
    let mut queue = api("/queue", "*", &[q2.addr]);
    queue["servers"][0]["server_connection_quota"] = json!(1);
    queue["flow_control"] = json!({ "server_connection_queueing": true });
    let e = Enforcer::start(
        &Setup::inline()
            .set("enable_xff", "true")
            .api("spiky", spiky)
            .api("srv", srv)
            .api("quota", quota)
            .api("queue", queue),
    );

    for _ in 0..3 {
        assert_eq!(get_as(&e, "5.5.5.1", "/spiky/echo", &[]).await.0, 200);
    }
    let r = client()
        .get(e.url("/spiky/echo"))
        .header("x-forwarded-for", "5.5.5.1")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let retry: u64 = r.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=20).contains(&retry), "Retry-After {retry}");
    assert_eq!(r.text().await.unwrap(), "Error: Too Many Requests");
    assert_eq!(
        get_as(&e, "5.5.5.2", "/spiky/echo", &[]).await.0,
        200,
        "another client has its own budget"
    );

    assert_eq!(get_as(&e, "5.5.6.1", "/srv/echo", &[]).await.0, 200);
    assert_eq!(get_as(&e, "5.5.6.2", "/srv/echo", &[]).await.0, 200);
    assert_eq!(
        get_as(&e, "5.5.6.3", "/srv/echo", &[]).await.0,
        429,
        "the server's spike threshold is shared"
    );

    // Quota 1 without queueing: while one request is in flight, another is turned away.
    let held = tokio::spawn(client().get(e.url("/quota/gate")).send());
    q1.gate_reached().await;
    assert_eq!(get_as(&e, "5.5.7.1", "/quota/echo", &[]).await.0, 429);
    q1.open_gate();
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
    assert_eq!(
        get_as(&e, "5.5.7.1", "/quota/echo", &[]).await.0,
        200,
        "the slot is free again"
    );

    // Quota 1 with queueing: the second request waits for the slot.
    let held = tokio::spawn(client().get(e.url("/queue/gate")).send());
    q2.gate_reached().await;
    let waiting = tokio::spawn(client().get(e.url("/queue/echo")).send());
    let queued = eventually(Duration::from_secs(10), || async {
        let r = manage(
            &e,
            reqwest::Method::GET,
            "/v4/abs/flowcontrol?api=queue",
            None,
        )
        .await;
        r["summary"]["connection_queued"] == 1
    })
    .await;
    assert!(queued);
    q2.open_gate();
    assert_eq!(held.await.unwrap().unwrap().status(), 200);
    assert_eq!(waiting.await.unwrap().unwrap().status(), 200);

    let r = manage(
        &e,
        reqwest::Method::GET,
        "/v4/abs/flowcontrol?api=spiky",
        None,
    )
    .await;
    assert_eq!(
        r["summary"],
        json!({ "client_spike": 1, "server_spike": 0, "connection_queued": 0, "connection_quota_exceeded": 0 })
    );
    assert_eq!(r["details"]["client_spike"][0]["source_ip"], "5.5.5.1");
    assert_eq!(r["details"]["client_spike"][0]["destination_api"], "spiky");
    let r = manage(
        &e,
        reqwest::Method::GET,
        "/v4/abs/flowcontrol?api=srv",
        None,
    )
    .await;
    assert_eq!(r["summary"]["server_spike"], 1);
    let r = manage(
        &e,
        reqwest::Method::GET,
        "/v4/abs/flowcontrol?api=quota",
        None,
    )
    .await;
    assert_eq!(r["summary"]["connection_quota_exceeded"], 1);
}

/// Thresholds low enough for a test to cross them quickly.
fn detecting() -> Setup {
    Setup::inline()
        .set("enable_xff", "true")
        .set("ioa_login_failures", "5")
        .set("ioa_login_clients", "5")
        .set("ioa_token_ips", "3")
        .set("ioa_probe_min_requests", "10")
        .set("ioa_probe_min_paths", "5")
        .set("ioa_activity_min_requests", "60")
        .set("ioa_exfil_min_bytes", "1mb")
        .set("ioa_baseline_clients", "3")
}

fn detected_api(b: std::net::SocketAddr) -> Value {
    let mut def = shop(b);
    def["login_url"] = json!("/shop/login");
    def
}

/// Normal traffic from several clients raises nothing.
async fn normal_traffic(e: &Enforcer) {
    for i in 1..=5 {
        for _ in 0..5 {
            assert_eq!(
                get_as(e, &format!("10.0.0.{i}"), "/shop/echo", &[]).await.0,
                200
            );
        }
    }
    assert!(
        attacks(e, "shop").await.is_empty(),
        "normal traffic raised IoAs"
    );
}

/// Login attacks: one client failing repeatedly (type 2), many failing together (type 3).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detects_login_attacks() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&detecting().api("shop", detected_api(b.addr)));
    normal_traffic(&e).await;
    for _ in 0..5 {
        assert_eq!(get_as(&e, "9.0.0.1", "/shop/login", &[]).await.0, 401);
    }
    assert_eq!(attack_names(&e, "shop").await, ["login_attack"]);
    assert_eq!(
        get_as(&e, "9.0.0.1", "/shop/echo", &[]).await.0,
        403,
        "the attacker is deny-listed"
    );
    // Users who mistype a password once or twice are no attack, however many they are...
    for i in 1..=8 {
        for _ in 0..(1 + i % 2) {
            get_as(&e, &format!("9.2.0.{i}"), "/shop/login", &[]).await;
        }
    }
    assert_eq!(attack_names(&e, "shop").await, ["login_attack"]);
    // ... addresses that each fail again and again together are (with the first attacker,
    // five of them: ioa_login_clients), and each of them is named.
    for i in 1..=4 {
        for _ in 0..3 {
            get_as(&e, &format!("9.1.0.{i}"), "/shop/login", &[]).await;
        }
    }
    let raised = attacks(&e, "shop").await;
    let mut multi: Vec<&str> = raised
        .iter()
        .filter(|a| a["name"] == "multi_client_login_attack")
        .map(|a| {
            assert_eq!(
                (a["type_id"].clone(), a["client_type"].clone()),
                (json!(3), json!("ip"))
            );
            a["client_id"].as_str().unwrap()
        })
        .collect();
    multi.sort();
    assert_eq!(
        multi,
        ["9.0.0.1", "9.1.0.1", "9.1.0.2", "9.1.0.3", "9.1.0.4"],
        "{raised:?}"
    );
}

/// The same login attacks with several workers and every request of a step at once, each
/// on its own connection: the windows count every failure exactly once. Four failures
/// from one address raise nothing and the fifth raises `login_attack`; four addresses
/// failing together are no distributed attack and the fifth makes one, against exactly
/// those five.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn login_windows_count_exactly_across_workers() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(
        &detecting()
            .set("workers", "4")
            .api("shop", detected_api(b.addr)),
    );
    normal_traffic(&e).await;
    let burst = |ips: &[&str], each: usize| {
        let calls: Vec<_> = ips
            .iter()
            .flat_map(|ip| std::iter::repeat_n(ip.to_string(), each))
            .map(|ip| {
                let e = &e;
                async move { get_as(e, &ip, "/shop/login", &[]).await.0 }
            })
            .collect();
        futures_util::future::join_all(calls)
    };
    assert!(burst(&["9.0.0.1"], 4).await.iter().all(|s| *s == 401));
    assert!(attack_names(&e, "shop").await.is_empty(), "4 of 5 failures");
    burst(&["9.0.0.1"], 1).await;
    assert_eq!(attack_names(&e, "shop").await, ["login_attack"]);

    burst(&["9.1.0.1", "9.1.0.2", "9.1.0.3"], 3).await;
    assert_eq!(
        attack_names(&e, "shop").await,
        ["login_attack"],
        "4 of 5 addresses"
    );
    burst(&["9.1.0.4"], 3).await;
    let mut multi: Vec<String> = attacks(&e, "shop")
        .await
        .iter()
        .filter(|a| a["name"] == "multi_client_login_attack")
        .map(|a| a["client_id"].as_str().unwrap().to_string())
        .collect();
    multi.sort();
    assert_eq!(
        multi,
        ["9.0.0.1", "9.1.0.1", "9.1.0.2", "9.1.0.3", "9.1.0.4"]
    );
}

/// Stolen credentials: one token, cookie or API key used from too many IPs (types 4, 31);
/// the credential is deny-listed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detects_stolen_token_cookie_and_api_key() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&detecting().api("shop", detected_api(b.addr)));
    normal_traffic(&e).await;
    let stolen = [
        (
            "authorization",
            "Bearer shared-token",
            "stolen_token",
            "token",
        ),
        (
            "cookie",
            "JSESSIONID=shared-session",
            "stolen_cookie",
            "cookie",
        ),
        ("x-api-key", "shared-key", "stolen_api_key", "api_key"),
    ];
    for (n, (header, value, name, kind)) in stolen.iter().enumerate() {
        for i in 1..=4 {
            get_as(
                &e,
                &format!("9.2.{n}.{i}"),
                "/shop/echo",
                &[(header, value)],
            )
            .await;
        }
        let a = &attacks(&e, "shop").await[0];
        assert_eq!(
            (a["name"].as_str(), a["client_type"].as_str()),
            (Some(*name), Some(*kind))
        );
        assert_eq!(a["type_id"], if *kind == "api_key" { 31 } else { 4 });
        assert_eq!(a["deny_listed"], true);
        assert_eq!(
            get_as(&e, "9.9.9.9", "/shop/echo", &[(header, value)])
                .await
                .0,
            403,
            "the {kind} is deny-listed"
        );
    }
}

/// Probing (mostly 4xx), extreme activity and data exfiltration, each against a baseline
/// of normal clients.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detects_probing_extreme_activity_and_exfiltration() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&detecting().api("shop", detected_api(b.addr)));
    normal_traffic(&e).await;
    // Scanning for endpoints that do not exist is probing...
    for i in 0..10 {
        get_as(&e, "9.3.0.1", &format!("/shop/p{i}/status?code=404"), &[]).await;
    }
    assert_eq!(attack_names(&e, "shop").await, ["api_probing"]);
    // ... failing again and again on the same few calls is not.
    for i in 0..20 {
        let path = format!("/shop/p{}/status?code=404", i % 3);
        get_as(&e, "9.3.0.2", &path, &[]).await;
    }
    assert_eq!(attack_names(&e, "shop").await, ["api_probing"]);
    assert_eq!(get_as(&e, "9.3.0.1", "/shop/echo", &[]).await.0, 403);

    // The relative detectors compare with established clients (seen for a whole window):
    // a short window, and normal traffic until the baseline says it has them.
    let relative = || {
        detecting()
            .set("ioa_window", "10s")
            .set("ioa_activity_factor", "2")
            .set("ioa_exfil_factor", "2")
    };
    let e = Enforcer::start(&relative().api("shop", detected_api(b.addr)));
    established(&e).await;
    for _ in 0..1_000 {
        get_as(&e, "9.4.0.1", "/shop/echo", &[]).await;
    }
    assert_eq!(attack_names(&e, "shop").await, ["extreme_client_activity"]);

    let e = Enforcer::start(&relative().api("shop", detected_api(b.addr)));
    established(&e).await;
    let (status, body) = get_as(&e, "9.5.0.1", "/shop/download?bytes=2000000", &[]).await;
    assert_eq!((status, body.len()), (200, 2_000_000));
    assert_eq!(attack_names(&e, "shop").await, ["data_exfiltration"]);
    assert_eq!(attacks(&e, "shop").await[0]["type_id"], 1);
}

/// Normal traffic from five clients until they are established and the baseline knows
/// them (`enforcer_detection_baseline_clients`), which takes a whole `ioa_window`.
async fn established(e: &Enforcer) {
    let ready = crate::support::eventually(Duration::from_secs(60), || async {
        for i in 1..=5 {
            get_as(e, &format!("10.0.0.{i}"), "/shop/echo", &[]).await;
        }
        let text = crate::support::scrape(e).await;
        crate::support::sample(&text, r#"enforcer_detection_baseline_clients{api="shop"}"#)
            .is_some_and(|n| n >= 3.0)
    })
    .await;
    assert!(ready, "the baseline never had three established clients");
    assert!(
        attacks(e, "shop").await.is_empty(),
        "normal traffic raised IoAs"
    );
}

/// Detection works in sideband too: a token used from many source IPs, and failed logins
/// reported by response calls.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn detects_in_sideband_mode() {
    let mut def = json!({ "url": "/shop", "hostname": "*", "oauth2_access_token": true,
                          "enable_blocking": true, "login_url": "/shop/login" });
    def["cookie"] = json!("JSESSIONID");
    let e = Enforcer::start(
        &Setup::sideband()
            .set("ioa_token_ips", "3")
            .set("ioa_login_failures", "3")
            .api("shop", def),
    );
    let auth = [("authorization", "Bearer roaming")];
    for i in 1..=4 {
        decide(&e, call(&format!("9.6.0.{i}"), "/shop/items", &auth, None)).await;
    }
    assert_eq!(attack_names(&e, "shop").await, ["stolen_token"]);
    assert_eq!(
        decide(&e, call("9.6.0.9", "/shop/items", &auth, None))
            .await
            .0,
        403
    );

    for n in 0..3 {
        let id = format!("login-{n}");
        let r = client()
            .post(e.url("/ase/request"))
            .header("x-correlationid", &id)
            .body(call("9.7.0.1", "/shop/login", &[], None))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        client()
            .post(e.url("/ase/response"))
            .header("x-correlationid", &id)
            .body(r#"{"response_code":"401"}"#)
            .send()
            .await
            .unwrap();
    }
    assert_eq!(attack_names(&e, "shop").await[0], "login_attack");
    assert_eq!(
        decide(
            &e,
            call(
                "9.7.0.1",
                "/shop/items",
                &[("authorization", "Bearer fresh")],
                None
            )
        )
        .await
        .0,
        403
    );
}

/// enforcer's own answers are no evidence about a client: a deny-listed client's sign-ons
/// answered 403 by enforcer, and sign-ons over a client spike threshold answered 429, count
/// neither as login failures (no IoA, no sign-on failure) nor in the client's error codes,
/// while api_metrics counts every one of them, as ASE's report does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enforcers_own_answers_are_no_evidence() {
    let b = Backend::start("b").await;
    let mut def = detected_api(b.addr);
    def["flow_control"] = json!({"client_spike_threshold": "2/minute"});
    let e = Enforcer::start(&detecting().api("shop", def));
    manage(
        &e,
        reqwest::Method::POST,
        "/v4/ase/blacklist",
        Some(json!({ "ips": ["9.8.0.1"] })),
    )
    .await;
    let post_login = |ip: &'static str| {
        let url = e.url("/shop/login");
        async move {
            client()
                .post(url)
                .header("x-forwarded-for", ip)
                .body("user=a&password=b")
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    for _ in 0..12 {
        assert_eq!(post_login("9.8.0.1").await, 403);
    }
    let limited: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..12 {
            v.push(post_login("9.8.0.2").await);
        }
        v
    };
    assert_eq!(&limited[..2], [401, 401], "{limited:?}");
    assert!(limited[2..].iter().all(|s| *s == 429), "{limited:?}");

    assert!(
        attacks(&e, "shop").await.is_empty(),
        "an IoA from enforcer's own answers"
    );
    let text = crate::support::scrape(&e).await;
    assert_eq!(
        crate::support::sample(&text, r#"enforcer_user_sign_ons_total{result="failure"}"#),
        Some(2.0),
        "only the backend's two 401s are sign-on failures"
    );
    for (ip, codes) in [
        ("9.8.0.1", json!([])),
        ("9.8.0.2", json!([{"value": "401", "count": 2}])),
    ] {
        let a = manage(
            &e,
            reqwest::Method::GET,
            &format!("/v5/ase/clients/ip/{ip}/activity"),
            None,
        )
        .await;
        assert_eq!(a["panes"]["error_codes"], codes, "{ip}: {a}");
        assert_eq!(a["requests"], 12, "{ip}: {a}");
    }
    let report = manage(
        &e,
        reqwest::Method::GET,
        "/v4/abs/metrics?api=shop&earlier_date=2000-01-01&later_date=2100-01-01",
        None,
    )
    .await;
    assert_eq!(report["req_resp_summary"]["total_requests"], 24, "{report}");
}
