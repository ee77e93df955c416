//! The management API: its own listener on `management_bind_address:management_port`
//! (loopback by default), HTTP/1.1, JSON in and out. The CLI talks to a running instance
//! through it ([`client`]).
//!
//! # Endpoints
//! | method and path | what | answers |
//! |---|---|---|
//! | `GET /v4/abs/metrics?api=NAME[&earlier_date=D1][&later_date=D2]` | the `api_metrics` report (`docs/reports.md`) | 200 report; 400 missing `api` or bad date (names the parameter); 404 unknown API |
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
//!
//! The sideband paths also answer under `/v4/ase/...`. Any other path answers 404, a
//! known path with another method 405. Errors are `{"error": "<code>", "message":
//! "<text>"}`, plus `"parameter"` when one is at fault. `docs/management-api.md` has an
//! example of each.

pub mod client;
mod lists;
mod reports;
mod sideband;

use std::collections::HashMap;
use std::convert::Infallible;
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

use crate::app::App;
use crate::enforce::lists::ListKind;

type Body = Full<Bytes>;

/// The largest request body the management API reads.
const MAX_BODY: usize = 1 << 20;

/// Serves the management API until shutdown is requested.
pub async fn serve(app: Arc<App>, listener: TcpListener, mut stop: watch::Receiver<bool>) {
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
            _ = crate::server::stopped(&mut stop) => break,
        };
        let (app, h1) = (app.clone(), h1.clone());
        tokio::spawn(async move {
            let svc = service_fn(move |req| {
                let app = app.clone();
                async move { Ok::<_, Infallible>(handle(app, req).await) }
            });
            if let Err(e) = h1.serve_connection(TokioIo::new(stream), svc).await {
                tracing::debug!(%peer, "management connection ended: {e}");
            }
        });
    }
}

/// Routes one management request.
pub async fn handle(app: Arc<App>, req: Request<Incoming>) -> Response<Body> {
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    let full_path = req.uri().path().to_string();
    // The sideband endpoints answer under ASE's /v5 prefix and under /v4.
    if let Some(rest) = full_path
        .strip_prefix("/v5/ase/sideband/")
        .or_else(|| full_path.strip_prefix("/v4/ase/sideband/"))
    {
        return sideband::handle(app, &method, rest, &query, req).await;
    }
    match (&method, full_path.as_str()) {
        (&Method::GET, "/v4/abs/metrics") => reports::api_metrics(app, &query).await,
        (&Method::GET, "/v4/abs/flowcontrol") => reports::flow_control(&app, &query),
        (&Method::GET, "/v4/abs/attack") => reports::attacks(&app, &query),
        (_, "/v4/abs/metrics" | "/v4/abs/flowcontrol" | "/v4/abs/attack") => not_allowed("GET"),
        (_, "/v4/ase/blacklist") => lists::handle(app, ListKind::Deny, &method, &query, req).await,
        (_, "/v4/ase/whitelist") => lists::handle(app, ListKind::Allow, &method, &query, req).await,
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint {full_path}"),
        ),
    }
}

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

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    parameter: Option<&'a str>,
    message: String,
}

fn error(status: StatusCode, code: &str, message: String) -> Response<Body> {
    json(
        status,
        &ErrorBody {
            error: code,
            parameter: None,
            message,
        },
    )
}

fn bad_parameter(parameter: &str, message: String) -> Response<Body> {
    json(
        StatusCode::BAD_REQUEST,
        &ErrorBody {
            error: "bad_parameter",
            parameter: Some(parameter),
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
