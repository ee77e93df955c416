//! The sideband calls as the pipeline sees them: a request call (`/ase/request`) decoded
//! into the same [`Exchange`] the inline proxy builds (client from `source_ip`, host and
//! path from `headers` and `url`, user from `user_info`), routed and decided ([`decide`]:
//! [`admit`], the pipeline's `on_request`, then [`settle`]); a response call
//! ([`respond`]) finishing the parked exchange with `on_response` and `on_complete`; and
//! the [`sweep`] of exchanges whose response call never came.
//!
//! Below the HTTP side ([`super::handler`], which reads bodies and finds correlation ids)
//! and shared with the external-authorization calls ([`super::auth`]), which describe
//! their request through [`admit`] and complete it with [`settle`].

use std::net::IpAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, HOST};
use http::{Method, StatusCode, Uri, Version};

use super::correlate::Parked;
use super::quick;
use super::wire::{self, Fields, Reply, RequestCall, WireError};
use crate::app::App;
use crate::config::Mode;
use crate::enforce::Block;
use crate::pipeline::route::well_formed_path;
use crate::pipeline::{Decision, Exchange, RouteError, Upstream};
use crate::vocab::Headers;

/// Decides one `/ase/request` call whose body has been read: decode, route, identities
/// and enforcement, and parking the allowed exchange under `correlation` (without one it
/// completes at once).
pub fn decide(app: &App, correlation: Option<&str>, body: &Bytes) -> Reply {
    let started = Instant::now();
    let mut repaired = None;
    let (ex, headers) = match exchange(app, body, &mut repaired) {
        Ok(pair) => pair,
        Err(reply) => return reply,
    };
    match judge(app, ex, &headers, started, correlation) {
        Outcome::Allowed { api, .. } => Reply::Allow { api },
        Outcome::Blocked { api, block } => Reply::Block {
            api,
            reason: block.reason(),
        },
        Outcome::Malformed(e) => Reply::BadRequest(e),
    }
}

/// What the pipeline decided about a described request, for the caller to answer in its
/// own shape (`/ase/request`'s JSON, or `/ase/auth`'s bare statuses).
pub(crate) enum Outcome {
    /// Allowed: `client` and `username` as the pipeline identified them.
    Allowed {
        api: String,
        client: IpAddr,
        username: Option<String>,
    },
    Blocked {
        api: String,
        block: Block,
    },
    /// The call is understood, but the request it describes is malformed.
    Malformed(WireError),
}

/// Runs `on_request` on an exchange built by [`admit`] and [`settle`]s it.
fn judge(
    app: &App,
    mut ex: Exchange,
    headers: &impl Headers,
    started: Instant,
    correlation: Option<&str>,
) -> Outcome {
    let decision = app.pipeline().on_request(&mut ex, headers);
    settle(app, ex, decision, started, correlation)
}

/// Completes an exchange as `decision` says: an allowed one is parked under `correlation`
/// for its response call, or recorded at once without one; a blocked one is recorded as
/// refused (429 for flow control, else 403). `started`: when the call arrived.
pub(crate) fn settle(
    app: &App,
    mut ex: Exchange,
    decision: Decision,
    started: Instant,
    correlation: Option<&str>,
) -> Outcome {
    let api = ex.api.id().to_string();
    ex.decision_latency = Some(started.elapsed());
    match decision {
        Decision::Allow => {
            let (client, username) = (ex.client_ip, ex.username.clone());
            // The gateway forwards an allowed request; reports show its server as 0.0.0.0.
            ex.upstream = Some(Upstream::Gateway);
            match correlation {
                Some(id) => {
                    for left in app.sideband.pending.insert(id, ex) {
                        app.pipeline().on_complete(left);
                    }
                }
                None => app.pipeline().on_complete(ex),
            }
            Outcome::Allowed {
                api,
                client,
                username,
            }
        }
        Decision::Block(Block::Ambiguous { why }) => {
            // The call is understood; the request it describes is malformed.
            ex.status = Some(StatusCode::BAD_REQUEST);
            ex.answered_by_enforcer = true;
            app.pipeline().on_complete(ex);
            Outcome::Malformed(WireError::new(
                "headers",
                format!("ambiguous identity: {why}"),
            ))
        }
        Decision::Block(block) => {
            // The gateway answers the client itself; enforcer only says no.
            ex.status = Some(match block {
                Block::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
                _ => StatusCode::FORBIDDEN,
            });
            ex.answered_by_enforcer = true;
            app.pipeline().on_complete(ex);
            Outcome::Blocked { api, block }
        }
    }
}

/// Parses a call, repairing a body that a gateway built without escaping its values.
fn parsed<'b, T>(
    body: &'b Bytes,
    repaired: &'b mut Option<Bytes>,
    parse: impl Fn(&'b [u8]) -> Result<T, WireError>,
) -> Result<(T, &'b Bytes), WireError> {
    match parse(body) {
        Ok(call) => Ok((call, body)),
        Err(e) => {
            let Some(fixed) = wire::repair(body) else {
                return Err(e);
            };
            let fixed: &'b Bytes = repaired.insert(Bytes::from(fixed));
            parse(fixed).map(|call| (call, fixed)).map_err(|_| e)
        }
    }
}

/// Turns a request call into an exchange on its API, with the headers read in place
/// (`repaired` keeps a repaired body they may point into).
fn exchange<'b>(
    app: &App,
    body: &'b Bytes,
    repaired: &'b mut Option<Bytes>,
) -> Result<(Exchange, Fields<'b>), Reply> {
    let bad = |e: WireError| Reply::BadRequest(e);
    // The usual shape decodes without serde; anything else takes serde's lenient path.
    let decode = |b| quick::request(b).map_or_else(|| wire::parse_request(b), Ok);
    let (mut call, body) = parsed(body, repaired, decode).map_err(bad)?;
    let source = RequestCall::required("source_ip", &call.source_ip).map_err(bad)?;
    let client = wire::client_ip(source).unwrap_or_else(|| unknown_client(app, source));
    let method = RequestCall::required("method", &call.method).map_err(bad)?;
    let method = request_method("method", method).map_err(bad)?;
    let url = RequestCall::required("url", &call.url).map_err(bad)?;
    let uri = request_uri("url", url).map_err(bad)?;
    let version = match &call.http_version {
        None => Version::HTTP_11,
        Some(v) => wire::http_version(v.as_str()).ok_or_else(|| {
            bad(WireError::new(
                "http_version",
                format!("{:?} is not an HTTP version", v.as_str()),
            ))
        })?,
    };
    let headers = call
        .headers
        .take()
        .ok_or_else(|| bad(WireError::new("headers", "is required")))?
        .into_fields(body)
        .map_err(bad)?;
    let (username, client_id) = call.user();
    admit(
        app,
        Described {
            client,
            method,
            uri,
            version,
            headers,
            username,
            client_id,
        },
    )
}

/// A client request as a gateway describes it: from a request call's JSON, or from an
/// external-authorization call's headers (`auth`). Both become an exchange the same way.
pub(crate) struct Described<'a, H> {
    /// The client's address ([`crate::pipeline::UNKNOWN_CLIENT`] when the gateway gave no address).
    pub client: IpAddr,
    pub method: Method,
    pub uri: Uri,
    pub version: Version,
    /// The request's headers; `host` picks the API's hostname.
    pub headers: H,
    pub username: Option<&'a str>,
    pub client_id: Option<&'a str>,
}

/// Routes a described request and starts its exchange.
pub(crate) fn admit<H: Headers>(app: &App, d: Described<'_, H>) -> Result<(Exchange, H), Reply> {
    let host = d
        .headers
        .text(&HOST)
        .or_else(|| d.uri.authority().map(|a| a.as_str()));
    let api = match app.pipeline().route(host, d.uri.path()) {
        Ok(api) => api,
        Err(RouteError::UnknownApi) => return Err(Reply::UnknownApi { hostname: false }),
        Err(RouteError::UnknownHostname) => return Err(Reply::UnknownApi { hostname: true }),
    };
    let mut ex = Exchange::new(Mode::Sideband, api, d.method, d.uri, d.version, d.client);
    ex.has_body = crate::enforce::has_body(&d.headers);
    ex.username = d.username.map(str::to_string);
    ex.client_id = d.client_id.map(str::to_string);
    Ok((ex, d.headers))
}

/// The client of a call whose address `text` is no address: decided as unknown, and
/// counted.
pub(crate) fn unknown_client(app: &App, text: &str) -> IpAddr {
    app.sideband.stats.unknown_source_ip.fetch_add(1, Relaxed);
    tracing::debug!(
        source_ip = text,
        "client address is no address: client unknown"
    );
    crate::pipeline::UNKNOWN_CLIENT
}

/// The described request's method; `field` names where it came from.
pub(crate) fn request_method(field: &str, text: &str) -> Result<Method, WireError> {
    Method::from_bytes(text.trim().as_bytes())
        .map_err(|_| WireError::new(field, format!("{text:?} is not an HTTP method")))
}

/// The described request's path and query, refused when it could climb out of an API
/// (`..` segments) or is no path; `field` names where it came from.
pub(crate) fn request_uri(field: &str, text: &str) -> Result<Uri, WireError> {
    let uri: Uri = text
        .trim()
        .parse()
        .map_err(|_| WireError::new(field, format!("{text:?} is not a URL path")))?;
    if !well_formed_path(uri.path()) {
        return Err(WireError::new(
            field,
            "must be a path starting with '/', without '.' or '..' segments",
        ));
    }
    Ok(uri)
}

/// Handles one `/ase/response` call: completes the pending exchange it belongs to (`id`,
/// found as `by` says).
pub fn respond(app: &App, id: Option<&str>, by: Parked, body: &Bytes) -> Reply {
    let bad = |e: WireError| Reply::BadRequest(e);
    let mut repaired = None;
    let (mut call, body) = match parsed(body, &mut repaired, wire::parse_response) {
        Ok(pair) => pair,
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
    let headers = match call.headers.take().map(|h| h.into_fields(body)).transpose() {
        Ok(h) => h,
        Err(e) => return bad(e),
    };
    let pending = &app.sideband.pending;
    match id.and_then(|id| pending.take(id)) {
        Some(mut ex) => {
            pending.stats.matched(by);
            // The gateway saw the body go by; its length is what the client received.
            if let Some(n) = headers
                .as_ref()
                .and_then(|h| h.text(&CONTENT_LENGTH))
                .and_then(|v| v.trim().parse::<u64>().ok())
            {
                ex.response_bytes = n;
            }
            app.pipeline().on_response(&mut ex, status);
            app.pipeline().on_complete(ex);
            Reply::Logged { correlated: true }
        }
        None => {
            pending.stats.uncorrelated.fetch_add(1, Relaxed);
            tracing::debug!(
                correlation = id.unwrap_or("(none)"),
                "response call matches no pending request: counted as uncorrelated"
            );
            Reply::Logged { correlated: false }
        }
    }
}

/// Completes every pending exchange whose response call is overdue (run every second).
pub fn sweep(app: &App) {
    for ex in app.sideband.pending.sweep(Instant::now()) {
        app.pipeline().on_complete(ex);
    }
}
