//! The sideband handler: the HTTP side of a gateway's calls on a sideband data port.
//! It checks `ASE-Token`, reads bodies within their limits, finds a response call's
//! request (below) and answers; [`super::calls`] turns `/ase/request` and `/ase/response`
//! into the pipeline's phases, and [`super::auth`] the external-authorization calls
//! (`/ase/auth/<gateway>`).
//!
//! # Correlation
//! A response call finds its request by, in order:
//! 1. its `X-CorrelationID` header (ASE's rule; every integration that sends one);
//! 2. a `PISESSIONID` cookie: a request call without `X-CorrelationID` is answered with
//!    `Set-Cookie: PISESSIONID=<id>` (as ASE does), which some gateways send back;
//! 3. the connection: a response call without either, on the connection whose last call
//!    was a request without `X-CorrelationID` still waiting, belongs to that request.
//!
//! A request without `X-CorrelationID` waits only where a response call can find it: while
//! its connection stays open and carries no other request call, or for its TTL once the
//! gateway has shown that it sends the cookie back. Otherwise it completes (without a
//! status) at once, so reports and detection do not lag.
//!
//! A response call that none of these places is counted as uncorrelated; a request whose
//! response never comes is recorded without a status when `sideband_pending_ttl` passes.
//! A request call repeated with an `X-CorrelationID` still pending (a gateway's retry of
//! the same method, URL and client) is decided again but recorded once.

use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex, MutexGuard};

use bytes::Bytes;
use http::header::{CONNECTION, CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, Method, Request, Response, Version};
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;

use super::auth;
use super::calls::{decide, respond};
use super::correlate::Parked;
use super::wire::{self, Reply, WireError};
use crate::app::{App, Live};

const ASE_TOKEN: &str = "ase-token";
const CORRELATION_ID: &str = "x-correlationid";
/// ASE's correlation cookie.
const SESSION_COOKIE: &str = "PISESSIONID";

/// Handles one call on a sideband data port. Never fails: every outcome is an answer.
pub async fn handle(caller: Arc<Caller>, req: Request<Incoming>) -> Response<Bytes> {
    let app = &caller.app;
    let keepalive = app.settings.enable_sideband_keepalive && !wants_close(&req);
    let (reply, session) = dispatch(&caller, req, keepalive).await;
    let mut resp = wire::reply(&reply, keepalive);
    if let Some(id) = session {
        wire::set_session(&mut resp, &id, app.settings.sideband_pending_ttl);
    }
    resp
}

/// Whether the caller asked for the connection to end after this call: `Connection: close`,
/// or HTTP/1.0 without `keep-alive`. The answer then says `close` (only `close`).
fn wants_close(req: &Request<Incoming>) -> bool {
    let has = |token: &str| {
        req.headers().get_all(CONNECTION).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has("close") || (req.version() == Version::HTTP_10 && !has("keep-alive"))
}

/// The call's outcome, and the correlation id to hand the gateway as `PISESSIONID` (a
/// request call that had no `X-CorrelationID`). `keepalive`: the connection stays open
/// after this call.
async fn dispatch(
    caller: &Caller,
    req: Request<Incoming>,
    keepalive: bool,
) -> (Reply, Option<Arc<str>>) {
    let app = &caller.app;
    // A gateway configured with a trailing slash on enforcer's address calls `//ase/...`.
    let path = req.uri().path().trim_start_matches('/');
    let mut auth = None;
    let is_request = match (req.method(), path) {
        (&Method::GET | &Method::HEAD, "ase") if app.settings.enable_ase_health => {
            return (Reply::Health, None);
        }
        (&Method::POST, "ase/request") => true,
        (&Method::POST, "ase/response") => false,
        (_, "ase/request" | "ase/response") => return (Reply::MethodNotAllowed, None),
        // An external-authorization call (any method: Envoy sends the client's own).
        _ => match auth::Gateway::of(path) {
            Some(gateway) => {
                auth = Some(gateway);
                false
            }
            None => return (Reply::NotFound, None),
        },
    };
    let tokens = &app.sideband.tokens;
    if tokens.required()
        && !req
            .headers()
            .get(ASE_TOKEN)
            .is_some_and(|t| tokens.verify(t.as_bytes()))
    {
        return (Reply::Unauthorized, None);
    }
    if let Some(gateway) = auth {
        // No response call follows and no body is read: the request is decided and
        // recorded from the call's head alone.
        return (auth::decide(app, gateway, req.into_parts().0), None);
    }
    let correlation = header_text(req.headers(), CORRELATION_ID).map(Arc::<str>::from);
    let cookie = (!is_request && correlation.is_none())
        .then(|| crate::pipeline::cookie_value(req.headers(), SESSION_COOKIE))
        .flatten()
        .map(Arc::<str>::from);
    let content_type = req.headers().get(CONTENT_TYPE).cloned();
    let body = match read_body(req, app.settings.sideband_max_body).await {
        Ok(body) => wire::to_utf8(body, content_type.as_ref().map(|v| v.as_bytes())),
        Err(reply) => return (reply, None),
    };
    let pending = &app.sideband.pending;
    if is_request {
        // This connection's previous request without an id can no longer be matched by
        // its connection.
        caller.give_up_last();
        if let Some(id) = correlation {
            return (decide(app, Some(&id), &body), None);
        }
        // No id: the request waits for its response only where one can find it (a cookie
        // the gateway has shown it sends back, or this connection staying open); otherwise
        // it completes now, as it must not wait its whole TTL for nothing.
        let id = pending.new_id();
        let can_wait = keepalive || pending.cookies_seen();
        let reply = decide(app, can_wait.then_some(&*id), &body);
        if !matches!(reply, Reply::Allow { .. }) {
            return (reply, None);
        }
        if can_wait {
            *caller.last_request() = Some(id.clone());
        }
        (reply, Some(id))
    } else {
        if cookie.is_some() {
            pending.saw_cookie();
        }
        let (id, by) = match (correlation, cookie) {
            (Some(id), _) => (Some(id), Parked::ById),
            (None, Some(id)) => (Some(id), Parked::ByCookie),
            (None, None) => (caller.last_request().take(), Parked::ByConnection),
        };
        (respond(app, id.as_deref(), by, &body), None)
    }
}

/// A header's value as trimmed, non-empty text.
fn header_text<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
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

/// One gateway connection.
pub struct Caller {
    pub app: Arc<App>,
    pub peer: SocketAddr,
    /// Held while the connection lives.
    pub live: Live,
    /// The correlation id of this connection's last request call, when it came without
    /// `X-CorrelationID` and was parked: a response call without one that follows on this
    /// connection belongs to it. Only this connection's calls touch it.
    last_request: Mutex<Option<Arc<str>>>,
}

impl Caller {
    pub fn new(app: Arc<App>, peer: SocketAddr, live: Live) -> Caller {
        Caller {
            app,
            peer,
            live,
            last_request: Mutex::new(None),
        }
    }

    pub(crate) fn last_request(&self) -> MutexGuard<'_, Option<Arc<str>>> {
        self.last_request.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// This connection's last request without an id can no longer be matched by its
    /// connection (another request call came, or the connection ended): unless the gateway
    /// sends cookies back, it completes now, without a response status.
    pub(crate) fn give_up_last(&self) {
        let Some(id) = self.last_request().take() else {
            return;
        };
        let pending = &self.app.sideband.pending;
        if pending.cookies_seen() {
            return;
        }
        if let Some(ex) = pending.take(&id) {
            pending.stats.unanswered.fetch_add(1, Relaxed);
            self.app.pipeline().on_complete(ex);
        }
    }
}

impl Drop for Caller {
    fn drop(&mut self) {
        self.give_up_last();
    }
}
