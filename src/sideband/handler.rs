//! The sideband handler: a gateway's `/ase/request` and `/ase/response` calls through the
//! shared pipeline.
//!
//! A request call becomes the same [`Exchange`] the inline proxy builds (client from
//! `source_ip`, host and path from `headers` and `url`, user from `user_info`), runs
//! `route` and `on_request`, and is answered 200 (allow) or 403 (block). An allowed
//! exchange waits in the pending table for its response call (`X-CorrelationID`), which
//! runs `on_response` and `on_complete`. Without a correlation id it completes at once.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{HeaderMap, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::Caller;
use super::wire::{self, Reply, RequestCall, WireError};
use crate::app::App;
use crate::config::Mode;
use crate::pipeline::route::well_formed_path;
use crate::pipeline::{Decision, Exchange, RouteError, Upstream};

const ASE_TOKEN: &str = "ase-token";
const CORRELATION_ID: &str = "x-correlationid";

/// Handles one call on a sideband data port. Never fails: every outcome is an answer.
pub async fn handle(caller: Arc<Caller>, req: Request<Incoming>) -> Response<Bytes> {
    let app = &caller.app;
    let reply = dispatch(app, req).await;
    wire::reply(&reply, app.settings.enable_sideband_keepalive)
}

async fn dispatch(app: &Arc<App>, req: Request<Incoming>) -> Reply {
    let is_request = match (req.method(), req.uri().path()) {
        (&Method::GET | &Method::HEAD, "/ase") if app.settings.enable_ase_health => {
            return Reply::Health;
        }
        (&Method::POST, "/ase/request") => true,
        (&Method::POST, "/ase/response") => false,
        (_, "/ase/request" | "/ase/response") => return Reply::MethodNotAllowed,
        _ => return Reply::NotFound,
    };
    let tokens = &app.sideband.tokens;
    if tokens.required()
        && !req
            .headers()
            .get(ASE_TOKEN)
            .is_some_and(|t| tokens.verify(t.as_bytes()))
    {
        return Reply::Unauthorized;
    }
    let correlation = req
        .headers()
        .get(CORRELATION_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
        .map(str::to_string);
    let body = match read_body(req, app.settings.sideband_max_body).await {
        Ok(body) => body,
        Err(reply) => return reply,
    };
    if is_request {
        decide(app, correlation.as_deref(), &body)
    } else {
        respond(app, correlation.as_deref(), &body)
    }
}

/// Reads the whole body, refusing more than `limit` bytes before buffering them.
async fn read_body(req: Request<Incoming>, limit: usize) -> Result<Bytes, Reply> {
    let declared = req
        .headers()
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit as u64) {
        return Err(Reply::TooLarge { limit });
    }
    match Limited::new(req.into_body(), limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e) if e.is::<http_body_util::LengthLimitError>() => Err(Reply::TooLarge { limit }),
        Err(e) => Err(Reply::BadRequest(WireError::new(
            "(body)",
            format!("could not read the body: {e}"),
        ))),
    }
}

/// Decides one `/ase/request` call whose body has been read. The whole decision: decode,
/// route, identities and enforcement, and parking (or completing) the exchange.
pub fn decide(app: &App, correlation: Option<&str>, body: &Bytes) -> Reply {
    let started = Instant::now();
    let (ex, headers) = match exchange(app, body) {
        Ok(pair) => pair,
        Err(reply) => return reply,
    };
    let mut ex = ex;
    let api = ex.api.id().to_string();
    let decision = app.pipeline.on_request(&mut ex, &headers);
    ex.decision_latency = Some(started.elapsed());
    match decision {
        Decision::Allow => {
            // The gateway forwards an allowed request; reports show its server as 0.0.0.0.
            ex.upstream = Some(Upstream::Gateway);
            match correlation {
                Some(id) => {
                    for left in app.sideband.pending.insert(id, ex) {
                        app.pipeline.on_complete(left);
                    }
                }
                None => app.pipeline.on_complete(ex),
            }
            Reply::Allow { api }
        }
        Decision::Block(block) => {
            // The gateway answers the client itself; enforcer only says no.
            ex.status = Some(StatusCode::FORBIDDEN);
            app.pipeline.on_complete(ex);
            Reply::Block {
                api,
                reason: block.reason(),
            }
        }
    }
}

/// Turns a request call into an exchange on its API, with the headers as a map.
fn exchange(app: &App, body: &Bytes) -> Result<(Exchange, HeaderMap), Reply> {
    let bad = |e: WireError| Reply::BadRequest(e);
    let call = wire::parse_request(body).map_err(bad)?;
    let source_ip: IpAddr = RequestCall::required("source_ip", &call.source_ip)
        .map_err(bad)?
        .parse()
        .map_err(|_| bad(WireError::new("source_ip", "is not an IP address")))?;
    let method = RequestCall::required("method", &call.method).map_err(bad)?;
    let method = Method::from_bytes(method.as_bytes()).map_err(|_| {
        bad(WireError::new(
            "method",
            format!("{method:?} is not an HTTP method"),
        ))
    })?;
    let url = RequestCall::required("url", &call.url).map_err(bad)?;
    let uri: Uri = url
        .parse()
        .map_err(|_| bad(WireError::new("url", format!("{url:?} is not a URL path"))))?;
    if !well_formed_path(uri.path()) {
        return Err(bad(WireError::new(
            "url",
            "must be a path starting with '/', without '.' or '..' segments",
        )));
    }
    let version = RequestCall::required("http_version", &call.http_version).map_err(bad)?;
    let version = wire::http_version(version).ok_or_else(|| {
        bad(WireError::new(
            "http_version",
            format!("{version:?} is not an HTTP version"),
        ))
    })?;
    let headers = call
        .headers
        .as_ref()
        .ok_or_else(|| bad(WireError::new("headers", "is required")))?
        .to_header_map(body)
        .map_err(bad)?;
    let host = headers
        .get(HOST)
        .and_then(|h| h.to_str().ok())
        .or_else(|| uri.authority().map(|a| a.as_str()));
    let api = match app.pipeline.route(host, uri.path()) {
        Ok(api) => api,
        Err(RouteError::UnknownApi) => return Err(Reply::UnknownApi { hostname: false }),
        Err(RouteError::UnknownHostname) => return Err(Reply::UnknownApi { hostname: true }),
    };
    let (username, client_id) = call.user();
    let mut ex = Exchange::new(Mode::Sideband, api, method, uri, version, source_ip);
    ex.has_body = crate::enforce::has_body(&headers);
    ex.username = username.map(str::to_string);
    ex.client_id = client_id.map(str::to_string);
    Ok((ex, headers))
}

/// Handles one `/ase/response` call: completes the pending exchange it belongs to.
pub fn respond(app: &App, correlation: Option<&str>, body: &Bytes) -> Reply {
    let bad = |e: WireError| Reply::BadRequest(e);
    let call = match wire::parse_response(body) {
        Ok(call) => call,
        Err(e) => return bad(e),
    };
    let code = match RequestCall::required("response_code", &call.response_code) {
        Ok(code) => code,
        Err(e) => return bad(e),
    };
    let Some(status) = code
        .trim()
        .parse::<u16>()
        .ok()
        .and_then(|c| StatusCode::from_u16(c).ok())
    else {
        return bad(WireError::new(
            "response_code",
            format!("{code:?} is not an HTTP status code"),
        ));
    };
    let headers = match call
        .headers
        .as_ref()
        .map(|h| h.to_header_map(body))
        .transpose()
    {
        Ok(h) => h.unwrap_or_default(),
        Err(e) => return bad(e),
    };
    match correlation.and_then(|id| app.sideband.pending.take(id)) {
        Some(mut ex) => {
            app.pipeline.on_response(&mut ex, status, &headers);
            app.pipeline.on_complete(ex);
            Reply::Logged { correlated: true }
        }
        None => {
            app.sideband
                .pending
                .stats
                .uncorrelated
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(
                correlation = correlation.unwrap_or("(none)"),
                "response call matches no pending request: recorded as uncorrelated"
            );
            Reply::Logged { correlated: false }
        }
    }
}

/// Completes every pending exchange whose response call is overdue (run every second).
pub fn sweep(app: &App) {
    for ex in app.sideband.pending.sweep(Instant::now()) {
        app.pipeline.on_complete(ex);
    }
}
