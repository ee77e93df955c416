//! The management API: its own listener on `management_bind_address:management_port`
//! (loopback by default), HTTP/1.1, JSON in and out. The CLI talks to a running instance
//! through it ([`client`]); every body either side writes is a struct of [`wire`], and
//! [`text`] lays the answers out as the CLI prints them.
//!
//! The web dashboard (`/dashboard/`, [`dashboard`]) logs a browser in with the same
//! credentials and then accepts its session cookie on every endpoint below.
//!
//! Every endpoint but `userActivities` (bearer tokens) needs `x-ase-access-key` and `x-ase-secret-key` (`management_access_key`,
//! `management_secret_key` in `ase.conf` until the secret is changed through the API;
//! [`credentials`]; on ABS's `/v4/abs/...` paths ABS's `x-abs-ak` and `x-abs-sk` carry the
//! same), except `GET /metrics`
//! unless `metrics_require_auth=true`. Without them: 401. With `management_tls=true` the
//! listener speaks TLS with the data ports' certificate.
//!
//! # Endpoints
//! | method and path | what | answers |
//! |---|---|---|
//! | `GET /metrics` | Prometheus text exposition (`metrics::prom`) | 200 |
//! | `GET /v4/ase/status` | what `enforcer status` prints | 200 |
//! | `GET /v4/ase/api` | list the APIs in service | 200 `{"apis":[{"api_id","protocol","hostname","url","servers","enable_blocking"}]}` |
//! | `GET /v4/ase/api?api_id=ID` | an API's definition | 200 `{"api_metadata":{...}}`; 404 |
//! | `POST /v4/ase/api?api_id=ID` | add an API (body: its JSON); saved in `config/api/ID.json` and live at once | 200 `{"status":"success","status_message":"API ID added"}`; 400 invalid (names the key); 409 exists |
//! | `PUT /v4/ase/api?api_id=ID` | replace an API's definition | 200; 400; 404 |
//! | `DELETE /v4/ase/api?api_id=ID` | delete an API (and its file) | 200; 404 |
//! | `POST /v4/ase/reload` | re-read the config directory and swap the API definitions | 200 `{"status":"success","apis":N,...}`; 400 when the config is invalid (nothing changes) |
//! | `GET /v4/ase/firewall`, `POST /v4/ase/firewall?status=enable\|disable` | enforcement on or off | 200 `{"status":"enabled",...}` |
//! | `GET /v4/ase/cluster` | the cluster: a single node | 200 `{"cluster":"disabled","mode":"single node","nodes":[...]}` |
//! | `GET /v4/abs/metrics?api=NAME[&earlier_date=D1][&later_date=D2][&user_agent=raw]` | the `api_metrics` report (`docs/reports.md`) | 200 report; 400 missing `api`, bad date or bad `user_agent` (names the parameter); 404 unknown API |
//! | `GET /v4/abs/flowcontrol?api=NAME` | the flow-control report: counters since start and the latest events | 200; 400; 404 |
//! | `GET /v4/abs/attack?[api=NAME][&type=ID]` | the IoAs raised (latest first) | 200 `{"attacks":[...]}`; 400 bad type |
//! | `GET /v4/ase/blacklist[?source=S]` | view the deny list | 200 `{"ips":[...],"cookies":[...],"oauth_tokens":[...],"api_keys":[...],"usernames":[...]}` |
//! | `POST /v4/ase/blacklist` | add entries (body as the view, values only; optional `"ttl":"1h"`) | 200 `{"status":"success","added":N}`; 400 naming the bad value; 409 list full |
//! | `DELETE /v4/ase/blacklist` | remove the entries in the body | 200 `{"status":"success","removed":N}` |
//! | `DELETE /v4/ase/blacklist?all=true[&source=S]` | clear the list (or one source's entries) | 200 `{"status":"success","removed":N}` |
//! | `... /v4/ase/whitelist` | the same for the allow list | |
//! | `GET /v5/ase/sideband/authentication` | whether sideband calls need an `ASE-Token` | `{"status":"enabled","status_message":"Sideband authentication is enabled"}` |
//! | `POST /v5/ase/sideband/authentication?status=enable\|disable` | turn it on or off (persisted) | as above; 400 for another `status` |
//! | `GET /v5/ase/sideband/token` | list the valid tokens | `{"tokens":[{"token":"…","created":"…"}]}` |
//! | `POST /v5/ase/sideband/token` | create a random token | `{"status":"token_created","token":"…"}` |
//! | `PUT /v5/ase/sideband/token` `{"token":"…"}` | import a token (32 lowercase letters and digits) | `{"status":"success","status_message":"Sideband token … imported."}`; 400 invalid; 409 exists |
//! | `DELETE /v5/ase/sideband/token` `{"token":"…"}` | delete a token | `{"status":"success","status_message":"Sideband token … deleted."}`; 404 unknown |
//! | `GET /v5/ase/clients/{type}/{id}/activity?period=day\|week\|month\|6months[&at=T]` | client activity: APIs accessed and the eight panes | 200; 400 bad type/period; 404 client never seen |
//! | `GET /v5/ase/apis/{api}/activity?period=...[&series=minute]` | API activity: seven panes and a series (per stored bucket; `series=minute`: this node's last hour per minute) | 200; 400 bad period/series; 404 unknown API |
//! | `GET /v5/ase/attacks?period=&type=&client_type=&api=&search=&reviewed=&sort=time\|count` | attack management: clients with IoAs | 200 `{"period","count","attacks":[...]}` |
//! | `POST /v5/ase/attacks/review` `{"client_type","client_id","reviewed":true}` | mark (or unmark) reviewed; persisted | 200; 404 no IoAs for that client |
//! | `PUT /v5/ase/credentials` `{"secret_key":"…"}` | change the management secret key (stored hashed; overrides `ase.conf`) | 200 `{"status":"success",...}`; 400 too short or long |
//! | `GET /v1/environments/{environment_id}/userActivities[?filter=...][&sampleSize=...][&limit=N][&cursor=C]` | PingOne's User Activities (`Authorization: Bearer`, not the management keys; `user_activities`) | 200 HAL report (paged with `limit`, `_links.next`); 400 filter or parameter; 401 token; 404 other environment |
//!
//! The sideband paths also answer under `/v4/ase/...`. Any other path answers 404, a
//! known path with another method 405. Errors are `{"error": "<code>", "message":
//! "<text>"}`, plus `"parameter"` when one is at fault. `docs/management-api.md` has an
//! example of each.

mod activity;
pub mod client;
pub mod credentials;
pub mod dashboard;
pub mod guard;
mod lists;
mod ops;
mod reports;
pub mod sessions;
mod sideband;
pub mod text;
mod user_activities;
pub mod wire;

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::app::App;
use crate::enforce::lists::ListKind;
use wire::ErrorBody;

type Body = Full<Bytes>;

/// The largest request body the management API reads.
const MAX_BODY: usize = 1 << 20;

/// Serves the management API until shutdown is requested.
pub async fn serve(
    app: Arc<App>,
    listener: TcpListener,
    tls: Option<TlsAcceptor>,
    mut stop: watch::Receiver<bool>,
) {
    let mut h1 = hyper::server::conn::http1::Builder::new();
    h1.timer(TokioTimer::new())
        .header_read_timeout(app.settings.header_read_timeout);
    let h1 = Arc::new(h1);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("management accept failed: {e}");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = crate::shutdown::stopped(&mut stop) => break,
        };
        let (app, h1, tls) = (app.clone(), h1.clone(), tls.clone());
        let local = stream.local_addr().unwrap_or(peer);
        tokio::spawn(async move {
            let handshake = app.settings.tls_handshake_timeout;
            let svc = service_fn(move |mut req: Request<Incoming>| {
                let app = app.clone();
                req.extensions_mut().insert(Caller { peer, local });
                async move { Ok::<_, Infallible>(guarded(app, req, peer, local).await) }
            });
            let served = match tls {
                None => h1.serve_connection(TokioIo::new(stream), svc).await,
                Some(acceptor) => {
                    match tokio::time::timeout(handshake, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => h1.serve_connection(TokioIo::new(tls), svc).await,
                        _ => {
                            tracing::debug!(%peer, "management TLS handshake failed or timed out");
                            return;
                        }
                    }
                }
            };
            if let Err(e) = served {
                tracing::debug!(%peer, "management connection ended: {e}");
            }
        });
    }
}

/// Where a management request came from and in on (in the request's extensions).
#[derive(Debug, Clone, Copy)]
pub struct Caller {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// The guards of [`guard`] around [`handle`]: a `Host` the port does not answer to is
/// 421; a locked-out source is 429; a 401 counts as a failed attempt of its source, a
/// credentialed success clears them.
async fn guarded(
    app: Arc<App>,
    req: Request<Incoming>,
    peer: SocketAddr,
    local: SocketAddr,
) -> Response<Body> {
    let host = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(http::header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        });
    let guard = &app.guard;
    if !guard.host_allowed(host.as_deref(), local) {
        return error(
            StatusCode::MISDIRECTED_REQUEST,
            "host_not_allowed",
            "the management port answers to loopback names, its own address and management_hosts only".into(),
        );
    }
    let path = req.uri().path();
    let exempt = (path == "/metrics" && !app.settings.metrics_require_auth)
        || (req.method() == Method::GET && path.starts_with("/dashboard/"));
    let now_ms = jiff::Timestamp::now().as_millisecond();
    if !exempt && let Some(wait) = guard.locked(peer.ip(), now_ms) {
        let mut resp = error(
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_failures",
            format!(
                "too many failed attempts from {}: retry in {} s",
                peer.ip(),
                wait.as_secs().max(1)
            ),
        );
        resp.headers_mut().insert(
            http::header::RETRY_AFTER,
            HeaderValue::from(wait.as_secs().max(1)),
        );
        return resp;
    }
    let credentialed = !exempt;
    let resp = handle(app.clone(), req).await;
    if resp.status() == StatusCode::UNAUTHORIZED {
        guard.failed(peer.ip(), now_ms, "API");
    } else if credentialed && resp.status().is_success() {
        guard.succeeded(peer.ip());
    }
    resp
}

/// Routes one management request, after checking its credentials.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    let full_path = req.uri().path().to_string();
    // PingOne's User Activities API has its own bearer tokens.
    if full_path.starts_with(user_activities::PREFIX) {
        return user_activities::handle(app, req).await;
    }
    if full_path == dashboard::PREFIX || full_path.starts_with("/dashboard/") {
        return dashboard::handle(app, req).await;
    }
    let open = full_path == "/metrics" && !app.settings.metrics_require_auth;
    if !open
        && !authorized(&app, &full_path, req.headers())
        && dashboard::api_user(&app, req.headers()).is_none()
    {
        let wanted = if is_abs(&full_path) {
            "x-ase-access-key / x-ase-secret-key (or ABS's x-abs-ak / x-abs-sk)"
        } else {
            "x-ase-access-key / x-ase-secret-key"
        };
        return error(
            StatusCode::UNAUTHORIZED,
            "unauthorized",
            format!("missing or wrong {wanted}"),
        );
    }
    // The sideband endpoints answer under ASE's /v5 prefix and under /v4.
    if let Some(rest) = full_path
        .strip_prefix("/v5/ase/sideband/")
        .or_else(|| full_path.strip_prefix("/v4/ase/sideband/"))
    {
        return sideband::handle(app, &method, rest, &query, req).await;
    }
    if let Some(rest) = full_path.strip_prefix("/v5/ase/clients/") {
        return activity::client(app, &method, rest, &query).await;
    }
    if let Some(rest) = full_path.strip_prefix("/v5/ase/apis/") {
        return activity::api(app, &method, rest, &query).await;
    }
    match (&method, full_path.as_str()) {
        (&Method::GET, "/metrics") => ops::metrics(&app),
        (_, "/metrics") => not_allowed("GET"),
        (_, "/v4/ase/api") => ops::api(app, &method, &query, req).await,
        (&Method::POST, "/v4/ase/reload") => ops::reload(app).await,
        (_, "/v4/ase/reload") => not_allowed("POST"),
        (_, "/v4/ase/firewall") => ops::firewall(&app, &method, &query),
        (&Method::GET, "/v4/ase/cluster") => ops::cluster(app).await,
        (&Method::GET, "/v4/ase/status") => ops::status(&app),
        (_, "/v4/ase/cluster" | "/v4/ase/status") => not_allowed("GET"),
        (&Method::GET, "/v4/abs/metrics") => reports::api_metrics(app, &query).await,
        (&Method::GET, "/v4/abs/flowcontrol") => reports::flow_control(&app, &query),
        (&Method::GET, "/v4/abs/attack") => reports::attacks(&app, &query),
        (_, "/v4/abs/metrics" | "/v4/abs/flowcontrol" | "/v4/abs/attack") => not_allowed("GET"),
        (_, "/v4/ase/blacklist") => lists::handle(app, ListKind::Deny, &method, &query, req).await,
        (_, "/v4/ase/whitelist") => lists::handle(app, ListKind::Allow, &method, &query, req).await,
        (&Method::GET, "/v5/ase/attacks") => activity::attacks(app, &query).await,
        (&Method::POST, "/v5/ase/attacks/review") => activity::review(app, req).await,
        (_, "/v5/ase/attacks") => not_allowed("GET"),
        (_, "/v5/ase/attacks/review") => not_allowed("POST"),
        (&Method::PUT, "/v5/ase/credentials" | "/v4/ase/credentials") => {
            ops::credentials(app, req).await
        }
        (_, "/v5/ase/credentials" | "/v4/ase/credentials") => not_allowed("PUT"),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint {full_path}"),
        ),
    }
}

/// Whether the request carries the management credentials. Both are compared in
/// constant time, and both are always compared.
/// On ABS's paths (`/v4/abs/...`) ABS's own headers are accepted too, so that tools written
/// for ABS's REST API work unchanged; they carry the same credentials.
fn authorized(app: &App, path: &str, headers: &http::HeaderMap) -> bool {
    let presented = |name: &str| headers.get(name).map_or(&[][..], |v| v.as_bytes());
    let ase = app
        .credentials
        .verify(presented(ACCESS_KEY), presented(SECRET_KEY));
    let abs = is_abs(path)
        && app
            .credentials
            .verify(presented(ABS_ACCESS_KEY), presented(ABS_SECRET_KEY));
    ase || abs
}

/// ABS's report paths.
fn is_abs(path: &str) -> bool {
    path.starts_with("/v4/abs/")
}

/// ASE's management credential headers.
pub const ACCESS_KEY: &str = "x-ase-access-key";
pub const SECRET_KEY: &str = "x-ase-secret-key";
/// ABS's credential headers, accepted on ABS's paths.
pub const ABS_ACCESS_KEY: &str = "x-abs-ak";
pub const ABS_SECRET_KEY: &str = "x-abs-sk";

/// Query parameters, form-decoded; the first occurrence of a name wins.
struct Query(HashMap<String, String>);

impl Query {
    fn parse(query: Option<&str>) -> Query {
        let mut map = HashMap::new();
        for (k, v) in form_urlencoded::parse(query.unwrap_or_default().as_bytes()) {
            map.entry(k.into_owned()).or_insert_with(|| v.into_owned());
        }
        Query(map)
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .get(name)
            .map(String::as_str)
            .filter(|v| !v.is_empty())
    }
}

/// The request body, at most [`MAX_BODY`] bytes.
async fn body(req: Request<Incoming>) -> Result<Bytes, Response<Body>> {
    match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => Ok(b.to_bytes()),
        Err(e) => Err(error(
            StatusCode::BAD_REQUEST,
            "bad_body",
            format!("cannot read the body: {e}"),
        )),
    }
}

/// A JSON response. Serialising our own structures cannot fail; if it somehow did, the
/// client gets a 500 rather than a panic.
fn json<T: Serialize>(status: StatusCode, body: &T) -> Response<Body> {
    match serde_json::to_vec_pretty(body) {
        Ok(bytes) => respond(status, bytes),
        Err(e) => respond(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("{{\"error\":\"internal\",\"message\":\"{e}\"}}").into_bytes(),
        ),
    }
}

fn respond(status: StatusCode, bytes: Vec<u8>) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(bytes)));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}

fn error(status: StatusCode, code: &str, message: String) -> Response<Body> {
    json(
        status,
        &ErrorBody {
            error: code.into(),
            parameter: None,
            message,
        },
    )
}

fn bad_parameter(parameter: &str, message: String) -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        &ErrorBody {
            error: "bad_parameter".into(),
            parameter: Some(parameter.into()),
            message,
        },
    )
}

fn not_allowed(allow: &str) -> Response<Body> {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("use {allow}"),
    )
}

/// Answers `done` once the change is in the store (operator changes are acknowledged
/// only when a restart cannot lose them).
pub(super) async fn durably(app: &App, done: Response<Body>) -> Response<Body> {
    match app.durable().await {
        Ok(true) => done,
        Ok(false) => {
            let mut done = done;
            done.headers_mut().insert(
                http::header::HeaderName::from_static("x-enforcer-sync"),
                HeaderValue::from_static("pending"),
            );
            done
        }
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "store_failed",
            format!("the change is in effect but could not be stored: {e}"),
        ),
    }
}
