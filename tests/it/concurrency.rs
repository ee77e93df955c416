//! Several workers hammering one API: what every worker writes on the request path (the
//! API buckets, the distinct users of an hour, the detection windows) is sharded or
//! atomic, never a lock they all take, and nothing is lost or counted twice. Each test
//! runs `workers=4` with many client connections at once, and checks counts that are
//! exact by construction.

use jiff::Timestamp;
use serde_json::{Value, json};

use crate::support::backend::Backend;
use crate::support::{Enforcer, Setup, api, client, manage};

const ENV: &str = "0bda42bc-d54f-449f-8d46-d5b8990c43ba";
const TOKEN: &str = "concurrency-test-token-1";
const TASKS: usize = 16;
const PER_TASK: usize = 200;
const USERS: usize = 320;

fn utc(t: Timestamp) -> String {
    t.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The shortest sampleSize whose one bucket holds both instants (UTC-aligned), with a
/// window around them; `None` only if the run straddled the start of a week.
fn one_bucket(t0: Timestamp, t1: Timestamp) -> Option<(&'static str, i64)> {
    let (a, b) = (t0.as_second(), t1.as_second());
    // Unix day 4 (1970-01-05) was a Monday.
    let week = |s: i64| (s.div_euclid(86_400) - 4).div_euclid(7);
    if a.div_euclid(3_600) == b.div_euclid(3_600) {
        Some(("HOUR", 2 * 3_600))
    } else if a.div_euclid(86_400) == b.div_euclid(86_400) {
        Some(("DAY", 2 * 86_400))
    } else if week(a) == week(b) {
        Some(("WEEK", 8 * 86_400))
    } else {
        None
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn many_workers_count_requests_users_and_sign_ons_exactly() {
    let b = Backend::start("b").await;
    let mut d = api("/app", "*", &[b.addr]);
    d["login_url"] = json!("/app/status");
    d["username_header"] = json!("x-user");
    let e = Enforcer::start(
        &Setup::inline()
            .set("workers", "4")
            .set("environment_id", ENV)
            .set("user_activities_tokens", TOKEN)
            .api("app", d),
    );

    let t0 = Timestamp::now();
    let mut tasks = Vec::new();
    for k in 0..TASKS {
        let url = e.url("/app/items");
        let login = e.url("/app/status");
        tasks.push(tokio::spawn(async move {
            // A client of its own per task: its own connections, spread over the workers.
            let c = client();
            let mut sign_ons = 0;
            for i in 0..PER_TASK {
                let n = k * PER_TASK + i;
                let user = format!("user{}", n % USERS);
                let to = if n.is_multiple_of(10) {
                    sign_ons += 1;
                    &login
                } else {
                    &url
                };
                let r = c.get(to).header("x-user", user).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
            }
            sign_ons
        }));
    }
    let mut sign_ons = 0;
    for t in tasks {
        sign_ons += t.await.unwrap();
    }
    let t1 = Timestamp::now();
    let total = TASKS * PER_TASK;
    assert_eq!(sign_ons, total / 10);

    let m = manage(
        &e,
        reqwest::Method::GET,
        "/v4/abs/metrics?api=app&earlier_date=2000-01-01&later_date=2100-01-01",
        None,
    )
    .await;
    assert_eq!(
        m["req_resp_summary"]["total_requests"],
        json!(total),
        "{}",
        m["req_resp_summary"]
    );
    assert_eq!(m["req_resp_summary"]["success"], json!(total));

    let Some((sample, around)) = one_bucket(t0, t1) else {
        // Only a run across Monday 00:00 UTC gets here: the users are then split over two
        // weeks, and their sum bounds the distinct count instead of equalling it.
        return;
    };
    let filter = format!(
        r#"startDate ge "{}" and endDate le "{}" and sampleSize eq "{sample}""#,
        utc(Timestamp::from_second(t0.as_second() - around).unwrap()),
        utc(Timestamp::from_second(t1.as_second() + around).unwrap()),
    );
    let url = format!(
        "/v1/environments/{ENV}/userActivities?filter={}",
        form_urlencoded::byte_serialize(filter.as_bytes()).collect::<String>()
    );
    let r = client()
        .get(e.admin_url(&url))
        .header("authorization", format!("Bearer {TOKEN}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    let buckets = body["_embedded"]["userActivities"].as_array().unwrap();
    let busy: Vec<&Value> = buckets
        .iter()
        .filter(|a| a["totalActiveUsers"].as_u64().unwrap() > 0)
        .collect();
    assert_eq!(busy.len(), 1, "all traffic in one {sample}: {body}");
    assert_eq!(busy[0]["totalActiveUsers"], json!(USERS), "{}", busy[0]);
    assert_eq!(
        busy[0]["userSignOns"]["successes"],
        json!(sign_ons),
        "{}",
        busy[0]
    );
}

#[test]
fn one_bucket_picks_the_shortest_sample_that_holds_the_run() {
    let at = |s: &str| s.parse::<Timestamp>().unwrap();
    assert_eq!(
        one_bucket(at("2026-11-30T10:05:00Z"), at("2026-11-30T10:59:59Z")).map(|x| x.0),
        Some("HOUR")
    );
    assert_eq!(
        one_bucket(at("2026-11-30T10:59:59Z"), at("2026-11-30T11:00:01Z")).map(|x| x.0),
        Some("DAY")
    );
    // 2026-12-01 is a Tuesday: the same week as the Monday before.
    assert_eq!(
        one_bucket(at("2026-11-30T23:59:59Z"), at("2026-12-01T00:00:01Z")).map(|x| x.0),
        Some("WEEK")
    );
    // 2026-11-30 is a Monday: its midnight starts a week.
    assert_eq!(
        one_bucket(at("2026-11-29T23:59:59Z"), at("2026-11-30T00:00:01Z")),
        None
    );
}
