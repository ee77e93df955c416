//! Activity endpoints: client activity (`/v5/ase/clients/{type}/{id}/activity`), API
//! activity (`/v5/ase/apis/{api}/activity`) and attack management (`/v5/ase/attacks`,
//! `/v5/ase/attacks/review`). The reports themselves are in [`crate::reports::activity`].

use std::net::IpAddr;
use std::sync::Arc;

use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json as json_value;

use super::{Body, Query, bad_parameter, body, durably, error, json, not_allowed};
use crate::app::App;
use crate::cluster::remote;
use crate::enforce::detect::Ioa;
use crate::enforce::lists::{Identifier, ListKind};
use crate::metrics::activity::ClientKind;
use crate::reports::activity::{self as report, AttackQuery, Period};
use crate::reports::window::parse_date;

/// The period and the time it ends (`period=day|week|month|6months`, default day;
/// `at=<date or unix seconds>`, default now).
fn period(app: &App, q: &Query) -> Result<(Period, i64), Bad> {
    let p = match q.get("period") {
        None => Period::Day,
        Some(s) => Period::parse(s).ok_or_else(|| {
            Bad(
                "period",
                format!("period: use day, week, month or 6months, not {s:?}"),
            )
        })?,
    };
    let at = match q.get("at") {
        None => jiff::Timestamp::now().as_second(),
        Some(s) => s
            .parse::<i64>()
            .ok()
            .or_else(|| parse_date(s, &app.timezone).map(|t| t.as_second()))
            .ok_or_else(|| {
                Bad(
                    "at",
                    format!(
                        "at: expected a date (2026-11-22T10:00:00Z) or unix seconds, not {s:?}"
                    ),
                )
            })?,
    };
    Ok((p, at))
}

fn client_type(param: &'static str, s: &str) -> Result<ClientKind, Bad> {
    ClientKind::parse(s).ok_or_else(|| {
        Bad(
            param,
            format!("{param}: use ip, token, cookie, username or api_key, not {s:?}"),
        )
    })
}

/// A query parameter that is not acceptable: its name and why.
struct Bad(&'static str, String);

impl Bad {
    fn response(self) -> Response<Body> {
        bad_parameter(self.0, self.1)
    }
}

/// Whether a client is on the deny list (any cookie or API key name; IPs also by CIDR).
fn deny_check(app: &App) -> impl Fn(ClientKind, &str) -> bool + use<> {
    let now = jiff::Timestamp::now().as_second();
    let entries = app.enforcer.lists.load(ListKind::Deny).entries();
    move |kind, value| {
        entries.iter().any(|(id, e)| {
            e.live(now)
                && match (kind, id) {
                    (ClientKind::Ip, Identifier::Ip(ip)) => {
                        value.parse::<IpAddr>().is_ok_and(|v| v == *ip)
                    }
                    (ClientKind::Ip, Identifier::Net(n)) => {
                        value.parse::<IpAddr>().is_ok_and(|v| n.contains(&v))
                    }
                    (ClientKind::Token, Identifier::Token(t)) => t == value,
                    (ClientKind::Cookie, Identifier::Cookie { value: v, .. }) => v == value,
                    (ClientKind::ApiKey, Identifier::ApiKey { value: v, .. }) => v == value,
                    (ClientKind::Username, Identifier::Username(u)) => u == value,
                    _ => false,
                }
        })
    }
}

fn decode(segment: &str) -> String {
    percent_encoding::percent_decode_str(segment)
        .decode_utf8_lossy()
        .into_owned()
}

/// Handles `/v5/ase/clients/<rest>`: `{type}/{id}/activity`.
pub(super) async fn client(
    app: Arc<App>,
    method: &Method,
    rest: &str,
    q: &Query,
) -> Response<Body> {
    let Some((kind, id)) = rest
        .strip_suffix("/activity")
        .and_then(|r| r.split_once('/'))
        .filter(|(_, id)| !id.is_empty())
    else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "expected /v5/ase/clients/{type}/{id}/activity".into(),
        );
    };
    if method != Method::GET {
        return not_allowed("GET");
    }
    let kind = match client_type("type", kind) {
        Ok(k) => k,
        Err(bad) => return bad.response(),
    };
    let (period, at) = match period(&app, q) {
        Ok(p) => p,
        Err(bad) => return bad.response(),
    };
    let id = decode(id);
    let denied = deny_check(&app);
    let built = tokio::task::spawn_blocking(move || {
        let listed = denied(kind, &id);
        let (from, to) = period.window(at);
        let activity = remote::activity(app.cluster.as_ref(), &app.metrics.activity, from, to);
        match activity.client(kind, &id) {
            Some(t) => Ok(report::client_activity_of(t, kind, &id, period, at, listed)),
            None => Err(id),
        }
    })
    .await;
    match built {
        Ok(Ok(r)) => json(StatusCode::OK, &r),
        Ok(Err(id)) => error(
            StatusCode::NOT_FOUND,
            "unknown_client",
            format!("no activity recorded for {} {id:?}", kind.as_str()),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// Handles `/v5/ase/apis/<rest>`: `{api}/activity`.
pub(super) async fn api(app: Arc<App>, method: &Method, rest: &str, q: &Query) -> Response<Body> {
    let Some(name) = rest.strip_suffix("/activity").filter(|n| !n.contains('/')) else {
        return error(
            StatusCode::NOT_FOUND,
            "not_found",
            "expected /v5/ase/apis/{api}/activity".into(),
        );
    };
    if method != Method::GET {
        return not_allowed("GET");
    }
    let (period, at) = match period(&app, q) {
        Ok(p) => p,
        Err(bad) => return bad.response(),
    };
    let name = decode(name);
    // An API is known while it is defined or while records of it remain.
    if app.apis.load().get(&name).is_none() && app.metrics.get(&name).is_none() {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_api",
            format!("API {name:?} is not defined"),
        );
    }
    let per_minute = match q.get("series") {
        None | Some("bucket") => false,
        Some("minute") => true,
        Some(other) => {
            return Bad(
                "series",
                format!("series: use bucket (the default) or minute, not {other:?}"),
            )
            .response();
        }
    };
    let built = tokio::task::spawn_blocking(move || {
        let (from, to) = period.window(at);
        let activity = remote::activity(app.cluster.as_ref(), &app.metrics.activity, from, to);
        let points = if per_minute {
            last_hour_per_minute(&app, &name, at)
        } else {
            activity.api_series(&name)
        };
        report::api_activity_of(activity.api(&name), points, &name, period, at)
    })
    .await;
    match built {
        Ok(r) => json(StatusCode::OK, &r),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `series=minute`: this node's requests and IoAs per minute over the hour before `at`
/// (the dashboard draws a young instance's traffic with it). Requests come from the API's
/// minute buckets, IoAs from the log of recent IoAs; every minute of the hour is present.
fn last_hour_per_minute(app: &App, api: &str, at: i64) -> Vec<(i64, u64, u64)> {
    let to = (at.div_euclid(60) + 1) * 60;
    let from = to - 3_600;
    let mut points: std::collections::BTreeMap<i64, (u64, u64)> =
        (from..to).step_by(60).map(|m| (m, (0, 0))).collect();
    if let Some(recorder) = app.metrics.get(api) {
        for (start, n) in recorder.minutes(from, to) {
            if let Some(p) = points.get_mut(&start) {
                p.0 += n;
            }
        }
    }
    for ioa in app.metrics.ioas.recent() {
        if &*ioa.api == api
            && let Some(p) = points.get_mut(&ioa.at.div_euclid(60).saturating_mul(60))
        {
            p.1 += 1;
        }
    }
    points
        .into_iter()
        .map(|(start, (requests, ioas))| (start, requests, ioas))
        .collect()
}

/// `GET /v5/ase/attacks`: the attack management list.
pub(super) async fn attacks(app: Arc<App>, q: &Query) -> Response<Body> {
    let (period, at) = match period(&app, q) {
        Ok(p) => p,
        Err(bad) => return bad.response(),
    };
    let mut query = AttackQuery::default();
    if let Some(t) = q.get("type") {
        match Ioa::ALL
            .iter()
            .find(|i| i.name() == t || i.type_id().to_string() == t)
        {
            Some(i) => query.ioa = Some(*i),
            None => {
                return bad_parameter("type", format!("type: no IoA type {t:?}"));
            }
        }
    }
    if let Some(t) = q.get("client_type") {
        match client_type("client_type", t) {
            Ok(k) => query.client_type = Some(k),
            Err(bad) => return bad.response(),
        }
    }
    query.api = q.get("api").map(str::to_string);
    query.search = q
        .get("search")
        .filter(|s| !s.is_empty())
        .map(str::to_string);
    query.reviewed = match q.get("reviewed") {
        None | Some("all") => None,
        Some("true") => Some(true),
        Some("false") => Some(false),
        Some(other) => {
            return bad_parameter(
                "reviewed",
                format!("reviewed: use true, false or all, not {other:?}"),
            );
        }
    };
    query.by_count = match q.get("sort") {
        None | Some("time") => false,
        Some("count") => true,
        Some(other) => {
            return bad_parameter("sort", format!("sort: use time or count, not {other:?}"));
        }
    };
    let denied = deny_check(&app);
    let built = tokio::task::spawn_blocking(move || {
        let local = &app.metrics.activity;
        let (from, to) = period.window(at);
        let rows = remote::activity(app.cluster.as_ref(), local, from, to).attacks();
        let mut evidence = report::Evidence::new();
        for r in app.metrics.ioas.recent() {
            if let Some(kind) = Some(r.client.kind()) {
                evidence.insert((kind, r.client.value(), r.ioa), r.detail);
            }
        }
        report::attacks_of(rows, local, period, at, &query, denied, &evidence)
    })
    .await;
    match built {
        Ok(r) => json(StatusCode::OK, &r),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `POST /v5/ase/attacks/review` `{"client_type","client_id","reviewed"}`.
pub(super) async fn review(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Review {
        client_type: String,
        client_id: String,
        #[serde(default = "yes")]
        reviewed: bool,
    }
    fn yes() -> bool {
        true
    }
    let bytes = match body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let r: Review = match serde_json::from_slice(&bytes) {
        Ok(r) => r,
        Err(e) => {
            return bad_parameter(
                "(body)",
                format!("expected {{\"client_type\", \"client_id\", \"reviewed\"}}: {e}"),
            );
        }
    };
    let kind = match client_type("client_type", &r.client_type) {
        Ok(k) => k,
        Err(bad) => return bad.response(),
    };
    let activity = &app.metrics.activity;
    let known = !activity
        .attacks(i64::MIN, i64::MAX)
        .iter()
        .all(|row| row.client_type != kind || row.client != r.client_id);
    if !known {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_attack",
            format!("no IoAs recorded for {} {:?}", kind.as_str(), r.client_id),
        );
    }
    activity.set_reviewed(
        kind,
        &r.client_id,
        r.reviewed,
        jiff::Timestamp::now().as_second(),
    );
    let done = json(
        StatusCode::OK,
        &json_value!({ "status": "success", "reviewed": r.reviewed }),
    );
    durably(&app, done).await
}
