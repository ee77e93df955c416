//! Report endpoints: `api_metrics`, flow control and attacks.

use std::sync::Arc;

use http::{Response, StatusCode};
use serde_json::json as json_value;

use super::{Body, Query, bad_parameter, error, json};
use crate::app::App;
use crate::cluster::remote;
use crate::enforce::detect::Ioa;
use crate::pipeline::Api;
use crate::reports::api_metrics::UserAgents;
use crate::reports::{self, Window};

/// Why the `api` parameter names no API.
enum NoApi {
    Missing,
    Unknown(String),
}

impl NoApi {
    fn response(self) -> Response<Body> {
        match self {
            NoApi::Missing => bad_parameter("api", "api: the API name is required".into()),
            NoApi::Unknown(name) => error(
                StatusCode::NOT_FOUND,
                "unknown_api",
                format!("API {name:?} is not defined"),
            ),
        }
    }
}

/// The API the `api` parameter names.
fn api_param(app: &App, q: &Query) -> Result<Arc<Api>, NoApi> {
    let name = q.get("api").ok_or(NoApi::Missing)?;
    app.apis
        .load()
        .get(name)
        .cloned()
        .ok_or_else(|| NoApi::Unknown(name.to_string()))
}

pub(super) async fn api_metrics(app: Arc<App>, q: &Query) -> Response<Body> {
    let api = match api_param(&app, q) {
        Ok(api) => api,
        Err(missing) => return missing.response(),
    };
    let agents = match q.get("user_agent") {
        None | Some("class") => UserAgents::Classes,
        Some("raw") => UserAgents::Raw,
        Some(other) => {
            return bad_parameter(
                "user_agent",
                format!("user_agent: {other:?} is neither class nor raw"),
            );
        }
    };
    let window = match Window::parse(
        q.get("earlier_date"),
        q.get("later_date"),
        jiff::Timestamp::now(),
        &app.timezone,
    ) {
        Ok(w) => w,
        Err(e) => return bad_parameter(e.param(), e.to_string()),
    };
    let tz = app.timezone.clone();
    // Summing buckets is CPU work: keep it off the threads that serve connections.
    let built = tokio::task::spawn_blocking(move || {
        let (from, to) = window.unix_secs();
        // In a cluster the report covers every node: this node's live buckets plus the
        // images the others pushed. Without Redis it covers this node, and says so in
        // the log.
        let snap = remote::api_snapshot(app.cluster.as_ref(), api.id(), &api.recorder, from, to);
        reports::api_metrics::build(api.id(), &api.def.url, &window, &tz, &snap, agents)
    })
    .await;
    match built {
        Ok(report) => json(StatusCode::OK, &report),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("report failed: {e}"),
        ),
    }
}

/// `GET /v4/abs/flowcontrol?api=NAME`: counters since start and the latest events.
pub(super) fn flow_control(app: &App, q: &Query) -> Response<Body> {
    let api = match api_param(app, q) {
        Ok(api) => api,
        Err(missing) => return missing.response(),
    };
    let s = &api.flow.stats;
    let load = |c: &std::sync::atomic::AtomicU64| c.load(std::sync::atomic::Ordering::Relaxed);
    json(
        StatusCode::OK,
        &json_value!({
            "company": "ping identity",
            "name": "flowcontrol",
            "api_name": api.id(),
            "summary": {
                "client_spike": load(&s.client_spike),
                "server_spike": load(&s.server_spike),
                "connection_queued": load(&s.connection_queued),
                "connection_quota_exceeded": load(&s.connection_quota_exceeded),
            },
            "details": api.flow.details(),
        }),
    )
}

/// `GET /v4/abs/attack?[api=NAME][&type=ID]`: the IoAs raised, latest first.
pub(super) fn attacks(app: &App, q: &Query) -> Response<Body> {
    let type_id = match q.get("type").map(str::parse::<u16>) {
        None | Some(Ok(0)) => None,
        Some(Ok(t)) if Ioa::ALL.iter().any(|i| i.type_id() == t) => Some(t),
        Some(_) => return bad_parameter("type", "type: an ASE attack type id (0 for all)".into()),
    };
    let api = q.get("api");
    let attacks: Vec<serde_json::Value> = app
        .metrics
        .ioas
        .recent()
        .into_iter()
        .rev()
        .filter(|r| api.is_none_or(|a| &*r.api == a))
        .filter(|r| type_id.is_none_or(|t| r.ioa.type_id() == t))
        .map(|r| {
            json_value!({
                "api": &*r.api,
                "type_id": r.ioa.type_id(),
                "name": r.ioa.name(),
                "client_type": r.client.kind(),
                "client_id": r.client.value(),
                "detected_at": jiff::Timestamp::from_millisecond(r.at_ms).map(|t| t.to_string()).unwrap_or_default(),
                "detail": r.detail,
                "deny_listed": r.deny_listed,
            })
        })
        .collect();
    json(StatusCode::OK, &json_value!({ "attacks": attacks }))
}
