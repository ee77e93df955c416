//! PingOne-style `userActivities`: sign-ons, password resets and active users from real
//! traffic (inline and sideband), every sampleSize, offsets, the seed's example requests,
//! every filter operator, paging, persistence across a restart, and every error answer.

use std::time::Duration;

use jiff::{Timestamp, ToSpan, tz::TimeZone};
use serde_json::{Value, json};

use crate::support::backend::Backend;
use crate::support::{Enforcer, Setup, api, client, eventually, sample, scrape};

const ENV: &str = "0bda42bc-d54f-449f-8d46-d5b8990c43ba";
const TOKEN: &str = "user-activities-test-token-1";
const OTHER_TOKEN: &str = "second.token_for~the+test/2=";

fn setup(backend: std::net::SocketAddr) -> Setup {
    let mut d = api("/app", "*", &[backend]);
    d["login_url"] = json!("/app/status");
    d["password_reset_url"] = json!("/app/reset204");
    d["username_header"] = json!("x-user");
    Setup::inline()
        .set("environment_id", ENV)
        .set("user_activities_tokens", &format!("{TOKEN}, {OTHER_TOKEN}"))
        .set("store_flush_interval", "200ms")
        .api("app", d)
}

fn path(filter: Option<&str>) -> String {
    let mut p = format!("/v1/environments/{ENV}/userActivities");
    if let Some(f) = filter {
        p.push_str("?filter=");
        p.extend(form_urlencoded::byte_serialize(f.as_bytes()));
    }
    p
}

async fn call(e: &Enforcer, path: &str, token: Option<&str>) -> (u16, Value) {
    let mut req = client().get(e.admin_url(path));
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn ok(e: &Enforcer, filter: Option<&str>) -> Value {
    let (s, body) = call(e, &path(filter), Some(TOKEN)).await;
    assert_eq!(s, 200, "{filter:?}: {body}");
    body
}

/// (active users, successes, failures, resets) summed over a report's buckets; active
/// users are summed too, which equals the distinct count when all traffic falls in one
/// bucket and bounds it otherwise.
fn totals(report: &Value) -> (u64, u64, u64, u64) {
    let mut t = (0, 0, 0, 0);
    for a in report["_embedded"]["userActivities"].as_array().unwrap() {
        t.0 += a["totalActiveUsers"].as_u64().unwrap();
        t.1 += a["userSignOns"]["successes"].as_u64().unwrap();
        t.2 += a["userSignOns"]["failures"].as_u64().unwrap();
        t.3 += a["passwordResets"].as_u64().unwrap();
    }
    t
}

fn starts(report: &Value) -> Vec<String> {
    report["_embedded"]["userActivities"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["startDate"].as_str().unwrap().to_string())
        .collect()
}

fn date(t: Timestamp, offset_hours: i8) -> String {
    let tz = TimeZone::fixed(jiff::tz::offset(offset_hours));
    let z = t.to_zoned(tz);
    if offset_hours == 0 {
        z.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        z.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// Scripted sign-ons: 4 successes, 3 failures (401 and 403), 1 reset, a 500 on the login
/// URL (neither), 5 distinct users (one seen only on another path), one request without
/// a user.
async fn traffic(e: &Enforcer) {
    let send = |user: Option<&'static str>, p: &'static str| {
        let mut req = client().get(e.url(p));
        if let Some(u) = user {
            req = req.header("x-user", u);
        }
        async move { req.send().await.unwrap().status().as_u16() }
    };
    for (user, p, status) in [
        (Some("ann"), "/app/status?code=200", 200),
        (Some("ann"), "/app/status?code=200", 200),
        (Some("ann"), "/app/status?code=401", 401),
        (Some("bob"), "/app/status?code=401", 401),
        (Some("bob"), "/app/status?code=403", 403),
        (Some("bob"), "/app/status/?code=204", 200), // the trailing slash reaches echo
        (Some("cy"), "/app/status?code=200", 200),
        (Some("cy"), "/app/status?code=500", 500),
        (Some("dee"), "/app/reset204", 204),
        (Some("eve"), "/app/echo", 200),
        (None, "/app/status?code=200", 200),
    ] {
        assert_eq!(send(user, p).await, status, "{p}");
    }
}

const EXPECTED: (u64, u64, u64, u64) = (5, 5, 3, 1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn user_activities_from_traffic_for_every_window_and_offset() {
    let b = Backend::start("b").await;
    let dir = setup(b.addr).write();
    let mut e = Enforcer::start_in(dir.path());
    traffic(&e).await;
    let now = Timestamp::now();

    // No filter: the past 30 days by UTC day, today last.
    assert!(
        eventually(Duration::from_secs(10), || async {
            let r = ok(&e, None).await;
            let t = totals(&r);
            // The five users could straddle midnight: the sum bounds the distinct count.
            (t.1, t.2, t.3) == (EXPECTED.1, EXPECTED.2, EXPECTED.3) && t.0 >= EXPECTED.0
        })
        .await,
        "{}",
        ok(&e, None).await
    );
    let r = ok(&e, None).await;
    assert_eq!(
        (r["count"].clone(), r["size"].clone()),
        (json!(30), json!(30))
    );
    let s = starts(&r);
    let today = now.to_zoned(TimeZone::UTC).date();
    assert_eq!(s[29], format!("{today}T00:00:00Z"));
    assert_eq!(
        s[0],
        format!("{}T00:00:00Z", today.checked_sub(29.days()).unwrap())
    );
    let first = &r["_embedded"]["userActivities"][0];
    assert_eq!(first["environment"]["id"], json!(ENV));
    assert_eq!(
        first["endDate"],
        json!(format!(
            "{}T00:00:00Z",
            today.checked_sub(28.days()).unwrap()
        ))
    );
    assert_eq!(
        r["_links"]["self"]["href"],
        json!(format!("{}", e.admin_url(&path(None))))
    );

    // A 4-hour range defaults to HOUR: the whole UTC hours inside it.
    let from = now.checked_sub(3.hours()).unwrap();
    let to = now.checked_add(1.hours()).unwrap();
    let f = format!(
        r#"startDate ge "{}" and endDate le "{}""#,
        date(from, 0),
        date(to, 0)
    );
    let r = ok(&e, Some(&f)).await;
    let t = totals(&r);
    assert_eq!((t.1, t.2, t.3), (EXPECTED.1, EXPECTED.2, EXPECTED.3), "{r}");
    let s = starts(&r);
    assert!((3..=4).contains(&s.len()), "{s:?}");
    assert!(s.iter().all(|d| d.ends_with(":00:00Z")), "{s:?}");
    assert_eq!(r["count"], json!(s.len()));
    let href: reqwest::Url = r["_links"]["self"]["href"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(href.path(), path(None));
    let echoed: Vec<(String, String)> = href.query_pairs().into_owned().collect();
    assert_eq!(echoed, [("filter".to_string(), f.clone())]);

    // The same range in -04:00 (the seed's offset) and with the doc's "EndDate" casing.
    let f = format!(
        r#"startDate ge "{}" AND EndDate le "{}""#,
        date(from, -4),
        date(to, -4)
    );
    let r = ok(&e, Some(&f)).await;
    let s = starts(&r);
    assert!(s.iter().all(|d| d.ends_with(":00:00-04:00")), "{s:?}");
    let t = totals(&r);
    assert_eq!((t.1, t.2, t.3), (EXPECTED.1, EXPECTED.2, EXPECTED.3));

    // DAY, explicitly, in +05:00: buckets start at local midnight.
    let f = format!(
        r#"startDate ge "{}" and endDate le "{}" and sampleSize eq "DAY""#,
        date(now.checked_sub(26.hours()).unwrap(), 5),
        date(now.checked_add(25.hours()).unwrap(), 5)
    );
    let r = ok(&e, Some(&f)).await;
    let s = starts(&r);
    assert!(s.iter().all(|d| d.ends_with("T00:00:00+05:00")), "{s:?}");
    assert!((1..=3).contains(&s.len()), "{s:?}");
    let t = totals(&r);
    assert_eq!((t.1, t.2, t.3), (EXPECTED.1, EXPECTED.2, EXPECTED.3));

    // WEEK over 30 days: Monday-aligned weeks, one of which holds everything.
    let f = format!(
        r#"startDate ge "{}" and endDate le "{}" and sampleSize in ["WEEK"]"#,
        date(now.checked_sub(720.hours()).unwrap(), 0),
        date(now.checked_add(192.hours()).unwrap(), 0)
    );
    let r = ok(&e, Some(&f)).await;
    for d in starts(&r) {
        let day: Timestamp = d.parse().unwrap();
        assert_eq!(
            day.to_zoned(TimeZone::UTC).weekday(),
            jiff::civil::Weekday::Monday,
            "{d}"
        );
    }
    assert_eq!(totals(&r).1, EXPECTED.1);

    // The sampleSize parameter, and dates alone (midnight UTC).
    let yesterday = today.checked_sub(1.days()).unwrap();
    let tomorrow = today.checked_add(1.days()).unwrap();
    let (s, r) = call(
        &e,
        &format!(
            "{}&sampleSize=day",
            path(Some(&format!(
                r#"startDate ge "{yesterday}" and endDate le "{tomorrow}""#
            )))
        ),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        starts(&r),
        [
            format!("{yesterday}T00:00:00Z"),
            format!("{today}T00:00:00Z")
        ]
    );
    let t = totals(&r);
    assert_eq!((t.1, t.2, t.3), (EXPECTED.1, EXPECTED.2, EXPECTED.3));
    // The other configured token works too.
    assert_eq!(call(&e, &path(None), Some(OTHER_TOKEN)).await.0, 200);

    // The same events as Prometheus counters.
    let metrics = scrape(&e).await;
    for (series, value) in [
        ("enforcer_user_sign_ons_total{result=\"success\"}", 5.0),
        ("enforcer_user_sign_ons_total{result=\"failure\"}", 3.0),
        ("enforcer_password_resets_total", 1.0),
    ] {
        assert_eq!(sample(&metrics, series), Some(value), "{series}");
    }

    // The hours survive a restart.
    let before = ok(&e, None).await;
    e.signal("TERM");
    assert!(e.wait(Duration::from_secs(20)).success());
    let e2 = Enforcer::start_in(dir.path());
    let after = ok(&e2, None).await;
    assert_eq!(
        before["_embedded"], after["_embedded"],
        "the same report after a restart"
    );
    // A user seen before the restart is not counted again after it; a new one is.
    let active = totals(&after).0;
    for user in ["ann", "zed"] {
        let r = client()
            .get(e2.url("/app/echo"))
            .header("x-user", user)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let crossed_midnight = Timestamp::now().to_zoned(TimeZone::UTC).date() != today;
    assert!(
        eventually(Duration::from_secs(10), || async {
            let n = totals(&ok(&e2, None).await).0;
            n == active + 1 || (crossed_midnight && n == active + 2)
        })
        .await,
        "{}",
        ok(&e2, None).await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sideband_calls_count_sign_ons_with_custom_statuses() {
    let mut d = json!({ "protocol": "http", "url": "/sso", "hostname": "*" });
    d["login_url"] = json!("/sso/login");
    d["login_success_status"] = json!([302]);
    d["login_failure_status"] = json!("4xx");
    let setup = Setup::sideband()
        .set("environment_id", ENV)
        .set("user_activities_tokens", TOKEN)
        .api("sso", d);
    let e = Enforcer::start(&setup);
    let call_pair = |id: usize, user: &str, code: u16| {
        let request = json!({
            "source_ip": "10.0.0.1", "source_port": 1234, "method": "POST",
            "url": "/sso/login", "http_version": "1.1",
            "user_info": [ { "username": user } ],
            "headers": [ { "host": "idp.example" } ]
        })
        .to_string();
        let response = json!({
            "response_code": code.to_string(), "response_status": "x", "http_version": "1.1",
            "headers": []
        })
        .to_string();
        let e = &e;
        async move {
            let cid = format!("c{id}");
            for (p, body) in [("/ase/request", request), ("/ase/response", response)] {
                let r = client()
                    .post(e.url(p))
                    .header("x-correlationid", &cid)
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                assert_eq!(r.status(), 200);
            }
        }
    };
    call_pair(1, "ann", 302).await;
    call_pair(2, "ann", 200).await; // neither: 200 is not a success here
    call_pair(3, "bob", 429).await;
    call_pair(4, "cy", 401).await;
    assert!(
        eventually(Duration::from_secs(10), || async {
            let t = totals(&ok(&e, None).await);
            (t.1, t.2, t.3) == (1, 2, 0) && t.0 >= 3
        })
        .await,
        "{}",
        ok(&e, None).await
    );
}

/// Every error answer, in PingOne's shape.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_answer() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&setup(b.addr));
    let shape = |status: u16, body: &Value, code: &str| {
        assert_eq!(body["code"], json!(code), "{status}: {body}");
        let id = body["id"].as_str().unwrap();
        assert_eq!(id.len(), 36, "{body}");
        assert!(body["message"].as_str().unwrap().len() > 10);
        assert!(body["details"][0]["message"].as_str().unwrap().len() > 5);
    };

    // 401: missing, wrong, another scheme, the management keys instead.
    for token in [None, Some("not-the-right-token-at-all")] {
        let (s, body) = call(&e, &path(None), token).await;
        assert_eq!(s, 401);
        shape(s, &body, "ACCESS_FAILED");
        assert!(!body.to_string().contains(TOKEN), "tokens are never echoed");
    }
    let r = client()
        .get(e.admin_url(&path(None)))
        .header("authorization", format!("Basic {TOKEN}"))
        .header("x-ase-access-key", "admin")
        .header("x-ase-secret-key", "admin")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["www-authenticate"], "Bearer");

    // 404: another environment, another resource.
    for p in [
        "/v1/environments/00000000-0000-0000-0000-000000000001/userActivities".to_string(),
        format!("/v1/environments/{ENV}/users"),
    ] {
        let (s, body) = call(&e, &p, Some(TOKEN)).await;
        assert_eq!(s, 404, "{p}");
        shape(s, &body, "NOT_FOUND");
    }

    // 405.
    let r = client()
        .post(e.admin_url(&path(None)))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 405);
    assert_eq!(r.headers()["allow"], "GET");

    // 400: a filter that does not parse names the position and what was expected.
    let (s, body) = call(
        &e,
        &path(Some(r#"startDate eq "2026-01-01T00:00:00Z" and"#)),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 400);
    shape(s, &body, "INVALID_DATA");
    let inner = &body["details"][0]["innerError"];
    assert_eq!(inner["position"], json!(39), "{body}");
    assert!(inner["expected"].as_str().is_some(), "{body}");
    assert_eq!(body["details"][0]["target"], json!("filter"));
    let (s, body) = call(&e, &path(Some(r#"startDate xx "2026""#)), Some(TOKEN)).await;
    assert_eq!(
        (s, body["details"][0]["innerError"]["position"].clone()),
        (400, json!(10)),
        "{body}"
    );

    // 400: filters that parse but name another attribute, a date that is none, or leave
    // the window open on one side; each names its part.
    let d = r#"startDate ge "2026-01-01T00:00:00Z""#;
    let end = r#"endDate le "2026-01-02T00:00:00Z""#;
    let huge = r#"startDate ge "2019-01-01T00:00:00Z" and endDate le "2026-01-01T00:00:00Z" and sampleSize eq "HOUR""#;
    for (filter, says, part) in [
        (d.to_string(), "open from above", d.to_string()),
        (end.to_string(), "open from below", end.to_string()),
        (
            format!("{d} or {end}"),
            "open on both sides",
            format!("{d} or {end}"),
        ),
        (
            format!(r#"{d} and {end} and userName eq "x""#),
            "unknown attribute userName",
            r#"userName eq "x""#.into(),
        ),
        (
            format!(r#"{d} and {end} and name.givenName pr"#),
            "unknown attribute name.givenName",
            "name.givenName pr".into(),
        ),
        (huge.into(), "at most 5000", huge.into()),
        (
            r#"startDate eq "yesterday" and endDate eq "2026-01-01T00:00:00Z""#.into(),
            "is not a date",
            r#"startDate eq "yesterday""#.into(),
        ),
        (
            r#"startDate ge "2026-01-32" and endDate le "2026-02-02""#.into(),
            "no such month or day",
            r#"startDate ge "2026-01-32""#.into(),
        ),
        (
            r#"startDate ge 20260101 and endDate le "2026-02-02""#.into(),
            "compares with a date string",
            "startDate ge 20260101".into(),
        ),
    ] {
        let (s, body) = call(&e, &path(Some(&filter)), Some(TOKEN)).await;
        assert_eq!(s, 400, "{filter}: {body}");
        shape(s, &body, "INVALID_DATA");
        let detail = &body["details"][0];
        assert!(
            detail["message"].as_str().unwrap().contains(says),
            "{filter}: {body}"
        );
        assert_eq!(
            detail["innerError"]["fragment"],
            json!(part),
            "{filter}: {body}"
        );
    }
    // Parameters: each names itself.
    let range = path(Some(&format!("{d} and {end}")));
    for (query, target) in [
        ("&sampleSize=MONTH", "sampleSize"),
        ("&sampleSize=DAY&sampleSize=HOUR", "sampleSize"),
        ("&limit=0", "limit"),
        ("&limit=ten", "limit"),
        ("&cursor=soon", "cursor"),
    ] {
        let (s, body) = call(&e, &format!("{range}{query}"), Some(TOKEN)).await;
        assert_eq!(s, 400, "{query}: {body}");
        shape(s, &body, "INVALID_DATA");
        assert_eq!(
            body["details"][0]["target"],
            json!(target),
            "{query}: {body}"
        );
    }
    // Two filter parameters.
    let two = format!("{}&filter=x%20pr", path(Some(d)));
    let (s, body) = call(&e, &two, Some(TOKEN)).await;
    assert_eq!(s, 400, "{body}");

    // The process kept serving throughout.
    assert_eq!(call(&e, &path(None), Some(TOKEN)).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_tokens_every_call_is_refused() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&setup(b.addr).set("user_activities_tokens", ""));
    let (s, body) = call(&e, &path(None), Some(TOKEN)).await;
    assert_eq!(s, 401);
    assert!(
        body["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("no user_activities_tokens"),
        "{body}"
    );
}

#[test]
fn a_bad_token_or_environment_stops_start_up() {
    for (key, value, says) in [
        ("user_activities_tokens", "short", "16-4096"),
        ("environment_id", "not/allowed", "environment_id"),
    ] {
        let dir = Setup::inline().set(key, value).write();
        let (status, _, stderr) =
            crate::support::run_cli(&["run", "--config", dir.path().to_str().unwrap()]);
        assert_eq!(status.code(), Some(1), "{key}: {stderr}");
        assert!(stderr.contains(key) && stderr.contains(says), "{stderr}");
        assert!(
            !stderr.contains("short\""),
            "the token is not echoed: {stderr}"
        );
    }
}

/// `_links.self.href` of a request to `query` (the filter percent-encoded as the answer
/// writes it).
fn href(e: &Enforcer, query: &str) -> String {
    e.admin_url(&format!("/v1/environments/{ENV}/userActivities{query}"))
}

fn encoded(filter: &str) -> String {
    const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
        .remove(b'-')
        .remove(b'.')
        .remove(b'_')
        .remove(b'~');
    percent_encoding::utf8_percent_encode(filter, COMPONENT).to_string()
}

/// Empty buckets, as the report prints them: (start, end) pairs.
fn empty_buckets(dates: &[(String, String)]) -> Value {
    dates
        .iter()
        .map(|(start, end)| {
            json!({
                "startDate": start, "endDate": end, "environment": { "id": ENV },
                "totalActiveUsers": 0, "userSignOns": { "successes": 0, "failures": 0 },
                "passwordResets": 0
            })
        })
        .collect()
}

/// The seed's three example requests, as docs/user-activities.md prints them, each
/// answered 200 (the whole answer compared): its first filter names February 31st (the
/// 28th) with strict gt and lt; its second pins both ends with eq, which no bucket meets.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_seeds_examples_answer_200() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&setup(b.addr));

    // GET .../userActivities: the past 30 days.
    let r = ok(&e, None).await;
    assert_eq!(
        (r["count"].clone(), r["size"].clone()),
        (json!(30), json!(30))
    );

    // ?filter=startDate gt "2019-01-01T00:00:00Z" AND EndDate lt "2019-02-31T23:59:00Z"
    let first = r#"startDate gt "2019-01-01T00:00:00Z" AND EndDate lt "2019-02-31T23:59:00Z""#;
    let (s, r) = call(&e, &path(Some(first)), Some(TOKEN)).await;
    assert_eq!(s, 200, "{r}");
    let day = |d: jiff::civil::Date| format!("{d}T00:00:00Z");
    let jan2 = jiff::civil::date(2019, 1, 2);
    let days: Vec<(String, String)> = (0..57)
        .map(|i| {
            let d = jan2.checked_add(i.days()).unwrap();
            (day(d), day(d.checked_add(1.days()).unwrap()))
        })
        .collect();
    assert_eq!(days.last().unwrap().0, "2019-02-27T00:00:00Z");
    let expected = json!({
        "_links": { "self": { "href": href(&e, &format!("?filter={}", encoded(first))) } },
        "_embedded": { "userActivities": empty_buckets(&days) },
        "count": 57,
        "size": 57
    });
    assert_eq!(r.to_string(), expected.to_string());

    // The second, URL-encoded exactly as the seed prints it.
    let second = "?filter=startDate%20eq%20%222018-02-17T09:10:12-04:00%22%20and%20endDate%20eq%20%222018-02-23T09:10:12-04:00%22";
    let (s, r) = call(
        &e,
        &format!("/v1/environments/{ENV}/userActivities{second}"),
        Some(TOKEN),
    )
    .await;
    assert_eq!(s, 200, "{r}");
    let expected = json!({
        "_links": { "self": { "href": href(&e, &format!("?filter={}", encoded(
            r#"startDate eq "2018-02-17T09:10:12-04:00" and endDate eq "2018-02-23T09:10:12-04:00""#
        ))) } },
        "_embedded": { "userActivities": [] },
        "count": 0,
        "size": 0
    });
    assert_eq!(r.to_string(), expected.to_string());
    // Asked as a range (ge, le), the same dates give the six whole days inside them.
    let range =
        r#"startDate ge "2018-02-17T09:10:12-04:00" and endDate le "2018-02-23T09:10:12-04:00""#;
    let r = ok(&e, Some(range)).await;
    assert_eq!(
        starts(&r),
        (18..=22)
            .map(|d| format!("2018-02-{d}T00:00:00-04:00"))
            .collect::<Vec<_>>()
    );
}

/// Every operator the seed lists selects buckets by their attributes, or and not included;
/// limit pages the answer with _links.next (and prev) until every bucket was given.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn filters_select_buckets_and_limit_pages_them() {
    let b = Backend::start("b").await;
    let e = Enforcer::start(&setup(b.addr));
    let range = r#"startDate ge "2026-01-01" and endDate le "2026-01-11""#;
    let days = |ds: &[u32]| -> Vec<String> {
        ds.iter()
            .map(|d| format!("2026-01-{d:02}T00:00:00Z"))
            .collect()
    };
    for (filter, want) in [
        (range.to_string(), days(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])),
        (
            r#"startDate gt "2026-01-01" and endDate lt "2026-01-11""#.into(),
            days(&[2, 3, 4, 5, 6, 7, 8, 9]),
        ),
        (
            r#"startDate eq "2026-01-03T00:00:00Z" and EndDate eq "2026-01-04T00:00:00Z""#.into(),
            days(&[3]),
        ),
        (
            format!(r#"{range} and startDate in ["2026-01-02", "2026-01-09"]"#),
            days(&[2, 9]),
        ),
        (
            format!(r#"{range} and not (startDate ge "2026-01-04" and startDate le "2026-01-08")"#),
            days(&[1, 2, 3, 9, 10]),
        ),
        (
            r#"startDate ge "2026-01-01" and endDate le "2026-01-03" or startDate ge "2026-01-09" and endDate le "2026-01-11""#.into(),
            days(&[1, 2, 9, 10]),
        ),
        (format!(r#"{range} and startDate sw "2026-01-0""#), days(&[1, 2, 3, 4, 5, 6, 7, 8, 9])),
        (format!(r#"{range} and endDate ew "-05T00:00:00Z""#), days(&[4])),
        (format!(r#"{range} and startDate co "-1""#), days(&[10])),
        (format!(r#"{range} and startDate ne "2026-01-05""#), days(&[1, 2, 3, 4, 6, 7, 8, 9, 10])),
        (format!(r#"{range} and startDate pr and sampleSize pr"#), days(&[1, 2, 3, 4, 5, 6, 7, 8, 9, 10])),
        (format!(r#"{range} and sampleSize eq "week""#), Vec::new()),
        (format!(r#"{range} and not (startDate pr)"#), Vec::new()),
    ] {
        let r = ok(&e, Some(&filter)).await;
        assert_eq!(starts(&r), want, "{filter}");
        assert_eq!(r["count"], json!(want.len()), "{filter}");
    }
    // sampleSize compares by length too, here inside a week-long range.
    let week = r#"startDate ge "2026-01-05" and endDate le "2026-01-12""#;
    for (term, size) in [
        (r#"sampleSize gt "HOUR""#, 7),
        (r#"sampleSize lt "DAY""#, 168),
        (r#"sampleSize ge "WEEK""#, 1),
        (r#"sampleSize in ["day", "WEEK"]"#, 7),
    ] {
        let r = ok(&e, Some(&format!("{week} and {term}"))).await;
        assert_eq!(r["count"], json!(size), "{term}");
    }

    // limit: pages of 4 of the 10 days, each pointing at the next until the last.
    let all = ok(&e, Some(range)).await;
    let mut url = format!("{}&limit=4", path(Some(range)));
    let mut pages = Vec::new();
    loop {
        let (s, r) = call(&e, &url, Some(TOKEN)).await;
        assert_eq!(s, 200, "{r}");
        assert_eq!(r["count"], json!(10));
        assert_eq!(r["size"], json!(starts(&r).len()));
        assert_eq!(r["_links"]["prev"].is_null(), pages.is_empty(), "{r}");
        pages.push(r["_embedded"]["userActivities"].clone());
        let Some(next) = r["_links"]["next"]["href"].as_str() else {
            break;
        };
        let next: reqwest::Url = next.parse().unwrap();
        let pairs: Vec<(String, String)> = next.query_pairs().into_owned().collect();
        assert_eq!(pairs[0], ("filter".into(), range.into()));
        assert_eq!(pairs[1], ("limit".into(), "4".into()));
        assert_eq!(pairs[2].0, "cursor");
        url = format!("{}?{}", next.path(), next.query().unwrap());
    }
    assert_eq!(
        pages
            .iter()
            .map(|p| p.as_array().unwrap().len())
            .collect::<Vec<_>>(),
        [4, 4, 2]
    );
    let joined: Vec<Value> = pages
        .iter()
        .flat_map(|p| p.as_array().unwrap().clone())
        .collect();
    assert_eq!(Value::Array(joined), all["_embedded"]["userActivities"]);
    // A limit past the end is the whole answer, without a next link.
    let (_, r) = call(&e, &format!("{}&limit=50", path(Some(range))), Some(TOKEN)).await;
    assert_eq!(
        (r["size"].clone(), r["_links"]["next"].clone()),
        (json!(10), Value::Null)
    );
}
