//! Operations endpoints: Prometheus `/metrics`, API definitions (`/v4/ase/api`), reload,
//! the firewall switch, cluster and status.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

use super::wire::{
    Ack, ApiList, ApiSummary, AttackList, ClusterLink, ClusterNode, ClusterView, Persistence,
    Reload, SecretChange, SingleNode, SingleNodeEntry, Status, UserActivitiesStatus,
};
use super::{Body, Query, bad_parameter, body, durably, error, json, not_allowed};
use crate::app::{ApiChangeError, App};
use crate::config::HostMatch;
use crate::enforce::detect::Ioa;
use crate::enforce::lists::ListKind;
use crate::metrics::prom::State;

/// `GET /metrics`: the Prometheus text exposition.
pub(super) fn metrics(app: &App) -> Response<Body> {
    match app.metrics.prom.render(&state(app)) {
        Ok(text) => {
            let mut resp = Response::new(Body::new(text.into()));
            resp.headers_mut().insert(
                CONTENT_TYPE,
                HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal",
            format!("cannot render metrics: {e}"),
        ),
    }
}

/// The state Prometheus reads at scrape time.
fn state(app: &App) -> State {
    let apis = app.apis.load();
    let enforcer = &app.enforcer;
    let mut s = State::default();
    for api in apis.all() {
        let id = api.id().to_string();
        for server in &api.servers {
            s.upstream_up
                .push((id.clone(), server.addr.to_string(), server.is_healthy()));
        }
        let f = &api.flow.stats;
        s.flow_rejections
            .push((id.clone(), "client_spike", f.client_spike.load(Relaxed)));
        s.flow_rejections
            .push((id.clone(), "server_spike", f.server_spike.load(Relaxed)));
        s.flow_rejections.push((
            id.clone(),
            "connection_quota",
            f.connection_quota_exceeded.load(Relaxed),
        ));
        s.flow_queued
            .push((id.clone(), f.connection_queued.load(Relaxed)));
        let (clients, requests, bytes) = api.detect.baseline_now();
        s.detection_baseline
            .push((id.clone(), clients, requests, bytes));
        for (dim, n) in api.recorder.dropped() {
            s.dropped.push((id.clone(), dim, n));
        }
        s.expired.push((id, api.recorder.expired()));
    }
    for (name, kind) in [("deny", ListKind::Deny), ("allow", ListKind::Allow)] {
        for (ident, n) in enforcer.lists.load(kind).count_by_kind() {
            s.list_entries.push((name, ident.as_str(), n));
        }
    }
    s.ioas = Ioa::ALL
        .iter()
        .map(|i| (i.name(), i.type_id(), app.metrics.ioas.count(*i)))
        .collect();
    s.memory = memory_parts(app);
    let limits = &app.limits;
    s.upstream_in_flight = (limits.upstream_in_flight(), limits.upstream);
    s.saturated = (
        limits.upstream_saturated.load(Relaxed),
        limits.client_saturated.load(Relaxed),
    );
    s.management_refused = (
        app.guard.misdirected.load(Relaxed),
        app.guard.failed.load(Relaxed),
        app.guard.locked_out.load(Relaxed),
    );
    let pending = &app.sideband.pending;
    s.sideband_pending = pending.len();
    s.user_events = app.metrics.users.totals();
    s.correlations = vec![
        ("by_id", pending.stats.by_id.load(Relaxed)),
        ("by_cookie", pending.stats.by_cookie.load(Relaxed)),
        ("by_connection", pending.stats.by_connection.load(Relaxed)),
        ("evicted", pending.stats.evicted.load(Relaxed)),
        ("expired", pending.stats.expired.load(Relaxed)),
        ("replaced", pending.stats.replaced.load(Relaxed)),
        ("retried", pending.stats.retried.load(Relaxed)),
        ("uncorrelated", pending.stats.uncorrelated.load(Relaxed)),
        ("unanswered", pending.stats.unanswered.load(Relaxed)),
    ];
    s.sideband_unknown_source_ip = app.sideband.stats.unknown_source_ip.load(Relaxed);
    s.store = app.persister.get().map(|p| {
        let h = &p.health;
        (
            h.healthy.load(Relaxed),
            h.flushes.load(Relaxed),
            h.errors.load(Relaxed),
            h.restoring.load(Relaxed),
        )
    });
    s.cluster = app.cluster.as_ref().map(|c| {
        (
            c.health.connected.load(Relaxed),
            c.health.errors.load(Relaxed),
            c.spikes.local_decisions.load(Relaxed),
        )
    });
    s
}

/// The parts of the memory budget: `(part, used, limit, overflows)`.
fn memory_parts(app: &App) -> Vec<(&'static str, u64, u64, u64)> {
    use crate::memory::{Budget, cost};
    let budget = Budget::new(app.settings.memory_budget);
    let metrics = &app.metrics;
    let enforcer = &app.enforcer;
    let records = &metrics.records_memory;
    let (activity_used, activity_limit) = metrics.activity.memory();
    let detection = &enforcer.cfg.detection_memory;
    let pending = &app.sideband.pending;
    let bytes = |n: usize, cost: i64| (n as u64).saturating_mul(cost.max(0) as u64);
    let lists = &enforcer.lists;
    let listed = lists.load(ListKind::Deny).len()
        + lists.load(ListKind::Allow).len()
        + enforcer.decoy_memory_len();
    let flow_clients: usize = app
        .apis
        .load()
        .all()
        .iter()
        .map(|a| a.flow.tracked_clients())
        .sum();
    vec![
        (
            "records",
            records.used(),
            records.limit(),
            records.overflows(),
        ),
        (
            "activity",
            activity_used.max(0) as u64,
            activity_limit,
            metrics.activity.overflowed(),
        ),
        (
            "detection",
            detection.used(),
            detection.limit(),
            detection.overflows(),
        ),
        (
            "pending",
            bytes(pending.len(), cost::PENDING_EXCHANGE),
            bytes(pending.capacity(), cost::PENDING_EXCHANGE),
            pending.stats.evicted.load(Relaxed),
        ),
        (
            "lists",
            bytes(listed, cost::LIST_ENTRY),
            budget.lists,
            lists.refused.load(Relaxed),
        ),
        (
            "flow",
            bytes(flow_clients, cost::FLOW_CLIENT),
            budget.flow,
            app.apis
                .load()
                .all()
                .iter()
                .map(|a| a.flow.stats.over_capacity.load(Relaxed))
                .sum(),
        ),
    ]
}

/// `/v4/ase/api`: list, read, create, update and delete API definitions.
pub(super) async fn api(
    app: Arc<App>,
    method: &Method,
    q: &Query,
    req: Request<Incoming>,
) -> Response<Body> {
    let id = q.get("api_id").map(str::to_string);
    match (method, id) {
        (&Method::GET, None) => {
            let apis = app
                .apis
                .load()
                .all()
                .iter()
                .map(|a| ApiSummary {
                    api_id: a.id().to_string(),
                    protocol: match a.def.protocol {
                        crate::config::Protocol::Http => "http",
                        crate::config::Protocol::Ws => "ws",
                    }
                    .to_string(),
                    url: a.def.url.clone(),
                    hostname: match &a.def.hostname {
                        HostMatch::Any => "*".to_string(),
                        HostMatch::Exact(h) => h.clone(),
                    },
                    servers: a.servers.iter().map(|s| s.addr.to_string()).collect(),
                    enable_blocking: a.def.enable_blocking,
                })
                .collect();
            json(StatusCode::OK, &ApiList { apis })
        }
        (&Method::GET, Some(id)) => {
            let Some(api) = app.apis.load().get(&id).cloned() else {
                return error(
                    StatusCode::NOT_FOUND,
                    "unknown_api",
                    format!("API {id:?} is not defined"),
                );
            };
            let file = api.def.file.clone();
            match tokio::task::spawn_blocking(move || std::fs::read(file)).await {
                Ok(Ok(bytes)) => match serde_json::from_slice::<serde_json::Value>(&bytes) {
                    Ok(doc) => json(StatusCode::OK, &doc),
                    Err(e) => error(
                        StatusCode::INTERNAL_SERVER_ERROR,
                        "unreadable",
                        e.to_string(),
                    ),
                },
                Ok(Err(e)) => error(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "unreadable",
                    e.to_string(),
                ),
                Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
            }
        }
        (&Method::POST | &Method::PUT, Some(id)) => {
            let bytes = match body(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            let Ok(text) = String::from_utf8(bytes.to_vec()) else {
                return bad_parameter("(body)", "the API definition must be UTF-8 JSON".into());
            };
            let create = method == Method::POST;
            let (writer, api_id, shared) = (app.clone(), id.clone(), text.clone());
            let done =
                tokio::task::spawn_blocking(move || writer.put_api(&api_id, &text, create)).await;
            if matches!(done, Ok(Ok(())))
                && let Some(c) = &app.cluster
            {
                c.publish_api(&id, Some(&shared));
            }
            let verb = if create { "added" } else { "updated" };
            api_change(done, &id, verb)
        }
        (&Method::DELETE, Some(id)) => {
            let (writer, api_id) = (app.clone(), id.clone());
            let done = tokio::task::spawn_blocking(move || writer.delete_api(&api_id)).await;
            if matches!(done, Ok(Ok(())))
                && let Some(c) = &app.cluster
            {
                c.publish_api(&id, None);
            }
            api_change(done, &id, "deleted")
        }
        (&Method::POST | &Method::PUT | &Method::DELETE, None) => {
            bad_parameter("api_id", "api_id: the API name is required".into())
        }
        _ => not_allowed("GET, POST, PUT, DELETE"),
    }
}

fn api_change(
    done: Result<Result<(), ApiChangeError>, tokio::task::JoinError>,
    id: &str,
    verb: &str,
) -> Response<Body> {
    match done {
        Ok(Ok(())) => json(StatusCode::OK, &Ack::success(format!("API {id} {verb}"))),
        Ok(Err(e)) => {
            let (status, code) = match &e {
                ApiChangeError::Invalid(_) => (StatusCode::BAD_REQUEST, "invalid_api"),
                ApiChangeError::Exists(_) => (StatusCode::CONFLICT, "api_exists"),
                ApiChangeError::NotFound(_) => (StatusCode::NOT_FOUND, "unknown_api"),
                ApiChangeError::Io { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "write_failed"),
            };
            error(status, code, e.to_string())
        }
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `POST /v4/ase/reload`: re-read the config directory and swap the API definitions.
pub(super) async fn reload(app: Arc<App>) -> Response<Body> {
    match tokio::task::spawn_blocking(move || app.reload()).await {
        Ok(Ok(r)) => json(
            StatusCode::OK,
            &Reload {
                status: "success".into(),
                apis: r.apis,
                status_message: format!(
                    "{} in service{}",
                    if r.apis == 1 {
                        "1 API".to_string()
                    } else {
                        format!("{} APIs", r.apis)
                    },
                    if r.settings_changed {
                        "; ase.conf changed: restart to apply it"
                    } else {
                        ""
                    }
                ),
            },
        ),
        Ok(Err(e)) => error(
            StatusCode::BAD_REQUEST,
            "invalid_config",
            format!("reload rejected, the running config stays: {e}"),
        ),
        Err(e) => error(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string()),
    }
}

/// `GET|POST /v4/ase/firewall[?status=enable|disable]`.
pub(super) fn firewall(app: &App, method: &Method, q: &Query) -> Response<Body> {
    let enforcer = &app.enforcer;
    match *method {
        Method::GET => {}
        Method::POST => match q.get("status") {
            Some("enable") => enforcer.set_firewall(true),
            Some("disable") => enforcer.set_firewall(false),
            _ => return bad_parameter("status", "status: use enable or disable".into()),
        },
        _ => return not_allowed("GET, POST"),
    }
    let state = if enforcer.firewall() {
        "enabled"
    } else {
        "disabled"
    };
    json(
        StatusCode::OK,
        &Ack {
            status: state.into(),
            status_message: format!("Firewall is {state}"),
        },
    )
}

/// `GET /v4/ase/cluster`: enforcer runs as a single node.
pub(super) async fn cluster(app: Arc<App>) -> Response<Body> {
    let Some(c) = &app.cluster else {
        let node = app.addresses.get().map(|a| a.management.to_string());
        return json(
            StatusCode::OK,
            &SingleNode {
                cluster: "disabled".into(),
                mode: "single node".into(),
                nodes: vec![SingleNodeEntry {
                    node,
                    status: "up".into(),
                    this: true,
                }],
            },
        );
    };
    let reader = app.clone();
    let nodes = tokio::task::spawn_blocking(move || {
        reader
            .cluster
            .as_ref()
            .map(|c| c.nodes().map_err(|e| e.to_string()))
            .unwrap_or(Ok(Vec::new()))
    })
    .await
    .unwrap_or_else(|e| Err(e.to_string()));
    json(StatusCode::OK, &cluster_view(&app, c, nodes))
}

/// The cluster as `/v4/ase/cluster` and `status` show it: this node's link to Redis and
/// every node of the registry with its last contact.
fn cluster_view(
    app: &App,
    c: &crate::cluster::Cluster,
    nodes: Result<Vec<crate::cluster::registry::Node>, String>,
) -> ClusterView {
    let now = jiff::Timestamp::now().as_millisecond();
    let silent = i64::try_from(crate::cluster::registry::SILENT.as_millis()).unwrap_or(i64::MAX);
    let h = &c.health;
    let last = h.last_contact_ms.load(std::sync::atomic::Ordering::Relaxed);
    let (listed, error) = match nodes {
        Ok(n) => (n, None),
        Err(e) => (Vec::new(), Some(e)),
    };
    let nodes = listed
        .iter()
        .map(|n| ClusterNode {
            node: n.node.clone(),
            management: n.management.clone(),
            mode: n.mode.clone(),
            started: n.started.clone(),
            last_contact: jiff::Timestamp::from_millisecond(n.last_seen_ms)
                .map(|t| t.to_string())
                .ok(),
            status: if now - n.last_seen_ms <= silent {
                "up"
            } else {
                "silent"
            }
            .into(),
            this: n.node == c.node_id,
        })
        .collect();
    ClusterView {
        cluster: "enabled".into(),
        cluster_id: c.cluster_id.clone(),
        node: c.node_id.clone(),
        redis: c.shown.clone(),
        redis_status: redis_status(&c.health).into(),
        last_contact: (last > 0)
            .then(|| {
                jiff::Timestamp::from_millisecond(last)
                    .ok()
                    .map(|t| t.to_string())
            })
            .flatten(),
        errors: h.errors.load(Relaxed),
        last_error: error.or_else(|| {
            h.last_error
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone()
        }),
        mode: app.settings.mode.as_str().into(),
        nodes,
    }
}

/// `connected` or `unreachable`.
fn redis_status(h: &crate::cluster::health::Health) -> &'static str {
    if h.connected.load(Relaxed) {
        "connected"
    } else {
        "unreachable"
    }
}

/// `GET /v4/ase/status`: what `enforcer status` prints.
pub(super) fn status(app: &App) -> Response<Body> {
    let s = &app.settings;
    let on = |b: bool| if b { "enabled" } else { "disabled" };
    let (users_hours, users_bytes) = app.metrics.users.memory();
    let addrs = app.addresses.get();
    let level = match s.admin_log_level {
        1 => "fatal",
        2 => "error",
        3 => "warn",
        4 => "info",
        _ => "debug",
    };
    let lists = &app.enforcer.lists;
    let status = Status {
        status: "started".into(),
        version: env!("CARGO_PKG_VERSION").into(),
        mode: s.mode.as_str().into(),
        http_ws_port: addrs.map(|a| a.http.port()),
        https_wss_port: addrs.map(|a| a.https.port()),
        management_port: addrs.map(|a| a.management.port()),
        firewall: on(app.enforcer.firewall()).into(),
        sideband_authentication: on(app.sideband.tokens.required()).into(),
        ase_detected_attack: on(s.enable_ase_detected_attack).into(),
        attack_list: AttackList {
            configured: s.list_max_entries,
            deny: lists.load(ListKind::Deny).len(),
            allow: lists.load(ListKind::Allow).len(),
        },
        log_level: level.into(),
        timezone: match s.timezone {
            crate::config::Timezone::Utc => "utc",
            crate::config::Timezone::Local => "local",
        }
        .into(),
        timezone_name: app.timezone.iana_name().unwrap_or("UTC").into(),
        apis: app.apis.load().all().len(),
        connections: app.live_connections(),
        started: app.started.to_string(),
        credentials: if app.credentials.changed() {
            "changed at run time"
        } else {
            "ase.conf"
        }
        .into(),
        user_activities: UserActivitiesStatus {
            environment_id: s.environment_id.clone(),
            tokens: s.user_activities_tokens.len(),
            hours: users_hours,
            memory_bytes: users_bytes,
        },
        cluster: app.cluster.as_ref().map(|c| ClusterLink {
            cluster_id: c.cluster_id.clone(),
            node: c.node_id.clone(),
            redis: c.shown.clone(),
            redis_status: redis_status(&c.health).into(),
        }),
        persistence: app
            .persister
            .get()
            .map_or_else(Persistence::none, |p| Persistence::Store(p.status())),
    };
    json(StatusCode::OK, &status)
}

/// `PUT /v5/ase/credentials` `{"secret_key": "..."}`: change the management secret key.
pub(super) async fn credentials(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let bytes = match body(req).await {
        Ok(b) => b,
        Err(resp) => return resp,
    };
    let change: SecretChange = match serde_json::from_slice(&bytes) {
        Ok(c) => c,
        Err(e) => {
            return bad_parameter(
                "secret_key",
                format!("expected {{\"secret_key\": \"...\"}}: {e}"),
            );
        }
    };
    if let Err(e) = app.credentials.set_secret(&change.secret_key) {
        return bad_parameter("secret_key", e.to_string());
    }
    // A browser logged in with the old secret must log in again.
    app.sessions.clear();
    let done = json(
        StatusCode::OK,
        &Ack::success("Secret key updated; use it from now on".into()),
    );
    durably(&app, done).await
}
