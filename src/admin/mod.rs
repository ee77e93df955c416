//! The management API: its own listener on `management_bind_address:management_port`
//! (loopback by default), HTTP/1.1, JSON in and out. The CLI talks to a running instance
//! through it ([`client`]).
//!
//! # Endpoints
//! | method and path | what | answers |
//! |---|---|---|
//! | `GET /v4/abs/metrics?api=NAME[&earlier_date=D1][&later_date=D2]` | the `api_metrics` report (`docs/reports.md`) | 200 report; 400 missing `api` or bad date (names the parameter); 404 unknown API |
//! | `GET /v5/ase/sideband/authentication` | whether sideband calls need an `ASE-Token` | `{"status":"enabled","status_message":"Sideband authentication is enabled"}` |
//! | `POST /v5/ase/sideband/authentication?status=enable\|disable` | turn it on or off (persisted) | as above; 400 for another `status` |
//! | `GET /v5/ase/sideband/token` | list the valid tokens | `{"tokens":[{"token":"…","created":"…"}]}` |
//! | `POST /v5/ase/sideband/token` | create a random token | `{"status":"token_created","token":"…"}` |
//! | `PUT /v5/ase/sideband/token` `{"token":"…"}` | import a token (32 lowercase letters and digits) | `{"status":"success","status_message":"Sideband token … imported."}`; 400 invalid; 409 exists |
//! | `DELETE /v5/ase/sideband/token` `{"token":"…"}` | delete a token | `{"status":"success","status_message":"Sideband token … deleted."}`; 404 unknown |
//!
//! The sideband paths also answer under `/v4/ase/...`. Any other path answers 404, a
//! known path with another method 405. Errors are `{"error": "<code>", "message":
//! "<text>"}`, plus `"parameter"` when one is at fault.

pub mod client;

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
use crate::reports::{self, Window};
use crate::sideband::tokens::TokenError;

type Body = Full<Bytes>;

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
    let path = full_path
        .strip_prefix("/v5/ase/sideband/")
        .or_else(|| full_path.strip_prefix("/v4/ase/sideband/"))
        .map_or(full_path.as_str(), |rest| rest);
    match (&method, path) {
        (&Method::GET, "/v4/abs/metrics") => api_metrics(app, &query).await,
        (_, "/v4/abs/metrics") => not_allowed("GET"),
        (&Method::GET, "authentication") => sideband_authentication(&app),
        (&Method::POST, "authentication") => match query.get("status") {
            Some(s @ ("enable" | "disable")) => {
                let on = s == "enable";
                let store = app.clone();
                match blocking(move || store.sideband.tokens.set_required(on)).await {
                    Ok(()) => sideband_authentication(&app),
                    Err(e) => token_error(e),
                }
            }
            _ => bad_parameter("status", "status: use enable or disable".into()),
        },
        (_, "authentication") => not_allowed("GET, POST"),
        (&Method::GET, "token") => json(
            StatusCode::OK,
            &serde_json::json!({ "tokens": app.sideband.tokens.list() }),
        ),
        (&Method::POST, "token") => match blocking(move || app.sideband.tokens.create()).await {
            Ok(token) => json(
                StatusCode::OK,
                &serde_json::json!({ "status": "token_created", "token": token }),
            ),
            Err(e) => token_error(e),
        },
        (&Method::PUT | &Method::DELETE, "token") => {
            let token = match token_body(req).await {
                Ok(t) => t,
                Err(resp) => return resp,
            };
            let importing = method == Method::PUT;
            let t = token.clone();
            let done = blocking(move || {
                if importing {
                    app.sideband.tokens.import(&t)
                } else {
                    app.sideband.tokens.delete(&t)
                }
            })
            .await;
            let verb = if importing { "imported" } else { "deleted" };
            match done {
                Ok(()) => json(
                    StatusCode::OK,
                    &serde_json::json!({
                        "status": "success",
                        "status_message": format!("Sideband token {token} {verb}."),
                    }),
                ),
                Err(e) => token_error(e),
            }
        }
        (_, "token") => not_allowed("GET, POST, PUT, DELETE"),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            format!("no endpoint {full_path}"),
        ),
    }
}

fn sideband_authentication(app: &App) -> Response<Body> {
    let state = if app.sideband.tokens.required() {
        "enabled"
    } else {
        "disabled"
    };
    json(
        StatusCode::OK,
        &serde_json::json!({
            "status": state,
            "status_message": format!("Sideband authentication is {state}"),
        }),
    )
}

fn token_error(e: TokenError) -> Response<Body> {
    let (status, code) = match &e {
        TokenError::Invalid => (StatusCode::BAD_REQUEST, "invalid_token"),
        TokenError::Exists(_) => (StatusCode::CONFLICT, "token_exists"),
        TokenError::NotFound(_) => (StatusCode::NOT_FOUND, "unknown_token"),
        TokenError::Store { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "store_failed"),
    };
    error(status, code, e.to_string())
}

/// The `{"token": "..."}` body of a token import or delete.
async fn token_body(req: Request<Incoming>) -> Result<String, Response<Body>> {
    #[derive(serde::Deserialize)]
    struct TokenBody {
        token: String,
    }
    let bytes = match Limited::new(req.into_body(), 64 * 1024).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return Err(error(
                StatusCode::BAD_REQUEST,
                "bad_body",
                format!("cannot read the body: {e}"),
            ));
        }
    };
    serde_json::from_slice::<TokenBody>(&bytes)
        .map(|b| b.token)
        .map_err(|e| bad_parameter("token", format!("expected {{\"token\": \"...\"}}: {e}")))
}

/// Runs file-writing work off the async threads.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, TokenError> + Send + 'static,
) -> Result<T, TokenError> {
    tokio::task::spawn_blocking(f).await.unwrap_or_else(|e| {
        Err(TokenError::Store {
            file: std::path::PathBuf::from("(background task)"),
            reason: e.to_string(),
        })
    })
}

fn not_allowed(allow: &str) -> Response<Body> {
    error(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("use {allow}"),
    )
}

async fn api_metrics(app: Arc<App>, q: &Query) -> Response<Body> {
    let Some(name) = q.get("api") else {
        return bad_parameter("api", "api: the API name is required".into());
    };
    let Some(api) = app.pipeline.apis().get(name).cloned() else {
        return error(
            StatusCode::NOT_FOUND,
            "unknown_api",
            format!("API {name:?} is not defined"),
        );
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
        let snap = api.recorder.snapshot(from, to);
        reports::api_metrics::build(api.id(), &api.def.url, &window, &tz, &snap)
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
