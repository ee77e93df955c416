//! Forwarding to a backend: the request rewrite and the send.
//!
//! * [`upstream_request`] turns the client's request into the backend's, reusing its head:
//!   origin-form target with `api_mapping.internal_url` applied, hop-by-hop headers removed
//!   (including those the `Connection` header names), `X-Forwarded-For/-Proto/-Host` set
//!   (and, unless `enable_xff` trusts the client's, `Forwarded` removed and `X-Real-IP` set),
//!   `Host` preserved, HTTP/1.1 on the wire whatever the client spoke.
//! * [`Forwarder`] sends it over the worker's keep-alive connections ([`super::pool`]; TLS
//!   when the API sets `server_ssl`). Parked connections are closed after
//!   `upstream_idle_timeout`, which should stay below the backends' own keep-alive so the
//!   backend never closes a connection we are about to reuse; if that race happens anyway,
//!   a request the connection never wrote is sent again on a fresh one, and so is an
//!   idempotent request without a body that it did write.
//! * Failures map to [`ForwardError`]: unreachable (502) or too slow (504): no connection
//!   within `upstream_connect_timeout`, or no response head within `upstream_timeout` of
//!   the request body's end (the upload itself is not timed here).
//!
//! One `Forwarder` per worker runtime, so its connections stay on the thread that uses them.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, EXPECT, HOST, HeaderName, HeaderValue, UPGRADE};
use http::uri::PathAndQuery;
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;

use super::body::UpstreamBody;
use super::pool::{ConnectError, Pool};
use crate::config::Settings;
use crate::pipeline::{Api, Server};

/// Why a request could not be forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// No connection: refused, unreachable, TLS handshake failed. The client gets 502.
    #[error("upstream {server}: {reason}")]
    Unreachable { server: Arc<str>, reason: String },
    /// Connected, but the exchange broke (reset, closed, garbage). The client gets 502.
    #[error("upstream {server}: {reason}")]
    Broken { server: Arc<str>, reason: String },
    /// No connection within `upstream_connect_timeout` (`reached: false`) or no response
    /// head within `upstream_timeout` (`reached: true`). The client gets 504.
    #[error("upstream {server}: no answer within {timeout:?}")]
    Timeout {
        server: Arc<str>,
        timeout: Duration,
        reached: bool,
    },
}

impl ForwardError {
    /// Whether the request got as far as a backend connection.
    pub fn reached_server(&self) -> bool {
        match self {
            ForwardError::Unreachable { .. } => false,
            ForwardError::Broken { .. } => true,
            ForwardError::Timeout { reached, .. } => *reached,
        }
    }
}

/// Headers that describe one hop, never forwarded (RFC 9110 §7.6.1, plus the
/// non-standard `Proxy-Connection` and `Keep-Alive`).
const HOP_BY_HOP: [HeaderName; 9] = [
    CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    http::header::PROXY_AUTHENTICATE,
    http::header::PROXY_AUTHORIZATION,
    http::header::TE,
    http::header::TRAILER,
    http::header::TRANSFER_ENCODING,
    UPGRADE,
];

const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
const FORWARDED: HeaderName = HeaderName::from_static("forwarded");

/// Removes hop-by-hop headers. With `keep_upgrade`, the `Upgrade` header survives and
/// `Connection: upgrade` is set again, as a WebSocket handshake needs on the next hop.
pub fn strip_hop_by_hop(headers: &mut HeaderMap, keep_upgrade: bool) {
    // One pass over the (few) names present notes which hop-by-hop ones are there, so
    // only those are removed: most messages carry none, and a backend's answer usually
    // just `Connection: keep-alive`. Standard names compare as enums.
    let mut present = 0u16;
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present |= 1 << i;
        }
    }
    if present == 0 {
        return;
    }
    if present & 1 != 0 {
        // Names the `Connection` header lists are hop-by-hop too; its usual tokens
        // (`keep-alive`, `close`, `upgrade`) name nothing beyond the fixed list.
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("keep-alive")
                    && !t.eq_ignore_ascii_case("upgrade")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            if !(keep_upgrade && name == UPGRADE) {
                headers.remove(name);
            }
        }
    }
    let upgrade = if keep_upgrade {
        headers.remove(UPGRADE)
    } else {
        None
    };
    for (i, name) in HOP_BY_HOP.iter().enumerate() {
        if present & (1 << i) != 0 {
            headers.remove(name);
        }
    }
    if let Some(upgrade) = upgrade {
        headers.insert(UPGRADE, upgrade);
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// Removes the dashboard's session cookie: cookies are not bound to a port, so a browser
/// logged in to the management port on this host would send it to the APIs behind the
/// proxy too, and no backend should see it.
pub fn strip_dashboard_session(headers: &mut HeaderMap) {
    const NAME: &[u8] = b"enforcer_session=";
    let has = |v: &HeaderValue| v.as_bytes().windows(NAME.len()).any(|w| w == NAME);
    if !headers.get_all(http::header::COOKIE).iter().any(has) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(http::header::COOKIE)
        .iter()
        .filter_map(|v| {
            let text = v.to_str().ok()?;
            let rest: Vec<&str> = text
                .split(';')
                .map(str::trim)
                .filter(|c| !c.starts_with("enforcer_session="))
                .collect();
            (!rest.is_empty())
                .then(|| HeaderValue::from_str(&rest.join("; ")).ok())
                .flatten()
        })
        .collect();
    headers.remove(http::header::COOKIE);
    for v in kept {
        headers.append(http::header::COOKIE, v);
    }
}

/// What the rewrite needs to know about the client side of the exchange.
pub struct ClientSide<'a> {
    /// The client's address as a header value (made once per connection).
    pub peer: &'a HeaderValue,
    pub tls: bool,
    /// `enable_xff`: incoming `X-Forwarded-*` headers come from a trusted proxy.
    pub trust_forwarded: bool,
    /// The host the client addressed (from the URI authority or `Host`).
    pub host: Option<HeaderValue>,
    /// Keep the WebSocket upgrade headers.
    pub upgrade: bool,
}

/// Builds the backend request from the client's request parts. Fails only if the
/// rewritten path is not a valid URI (the caller answers 400).
pub fn upstream_request(
    mut parts: http::request::Parts,
    body: UpstreamBody,
    api: &Api,
    client: &ClientSide<'_>,
) -> Result<Request<UpstreamBody>, http::Error> {
    let path = api.rewrite_path(parts.uri.path());
    let path_and_query = match parts.uri.query() {
        Some(q) => PathAndQuery::try_from(format!("{path}?{q}"))?,
        None => match path {
            std::borrow::Cow::Borrowed(_) => parts
                .uri
                .path_and_query()
                .cloned()
                .unwrap_or_else(|| PathAndQuery::from_static("/")),
            std::borrow::Cow::Owned(p) => PathAndQuery::try_from(p)?,
        },
    };
    let uri = Uri::from(path_and_query);

    let headers = &mut parts.headers;
    strip_hop_by_hop(headers, client.upgrade);
    strip_dashboard_session(headers);
    // enforcer's own server side already answered any `Expect: 100-continue`.
    headers.remove(EXPECT);
    if !headers.contains_key(HOST)
        && let Some(host) = &client.host
    {
        headers.insert(HOST, host.clone());
    }
    set_forwarded(headers, client);

    let mut req = Request::new(body);
    *req.method_mut() = parts.method;
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = parts.headers;
    *req.extensions_mut() = parts.extensions;
    Ok(req)
}

fn set_forwarded(headers: &mut HeaderMap, client: &ClientSide<'_>) {
    let peer = client.peer;
    // A client's own `Forwarded` and `X-Real-IP` claim an origin the way `X-Forwarded-For`
    // does: trusted only with `enable_xff`, replaced by what enforcer saw otherwise.
    if !client.trust_forwarded {
        headers.remove(FORWARDED);
        headers.insert(X_REAL_IP, peer.clone());
    }
    let xff = if client.trust_forwarded && headers.contains_key(&X_FORWARDED_FOR) {
        let mut joined = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        joined.push_str(", ");
        joined.push_str(peer.to_str().unwrap_or_default());
        HeaderValue::from_str(&joined).ok()
    } else {
        Some(peer.clone())
    };
    if let Some(v) = xff {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !(client.trust_forwarded && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if client.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(client.trust_forwarded && headers.contains_key(&X_FORWARDED_HOST)) {
        match &client.host {
            Some(h) => {
                headers.insert(X_FORWARDED_HOST, h.clone());
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// The upstream side of one worker: its connection pool and the timeouts.
pub struct Forwarder {
    pool: Pool,
    timeout: Duration,
}

/// Which connection an attempt may use.
#[derive(Clone, Copy)]
enum Use {
    /// A parked one when there is one.
    Pooled,
    /// A new one (the retry after a parked one failed).
    Fresh,
}

impl Forwarder {
    pub fn new(settings: &Settings, tls: Arc<rustls::ClientConfig>) -> Forwarder {
        Forwarder::with_pool(settings, tls, settings.upstream_max_idle_per_server)
    }

    /// A forwarder that keeps at most `max_idle` idle connections per server (0: none).
    pub fn with_pool(
        settings: &Settings,
        tls: Arc<rustls::ClientConfig>,
        max_idle: usize,
    ) -> Forwarder {
        Forwarder {
            pool: Pool::new(
                tls,
                max_idle,
                settings.upstream_idle_timeout,
                settings.upstream_connect_timeout,
            ),
            timeout: settings.upstream_timeout,
        }
    }

    /// Sends `req` (origin-form) to `server`, over TLS with `tls`, and waits for the
    /// response head, at most `upstream_timeout`.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
        server: &Server,
        tls: bool,
    ) -> Result<Response<Incoming>, ForwardError> {
        self.send_within(req, server, tls, self.timeout).await
    }

    /// As [`Forwarder::send`] with an explicit timeout (health checks use their own).
    pub async fn send_within(
        &self,
        req: Request<UpstreamBody>,
        server: &Server,
        tls: bool,
        timeout: Duration,
    ) -> Result<Response<Incoming>, ForwardError> {
        // A request that reached a parked connection the backend had closed is lost with
        // it: idempotent ones without a body are sent again from this copy of the head.
        let replay = replayable(&req).then(|| {
            (
                req.method().clone(),
                req.uri().clone(),
                req.headers().clone(),
            )
        });
        let again = match self.attempt(req, server, tls, timeout, Use::Pooled).await {
            Ok(resp) => return Ok(resp),
            Err(Attempt::Final(e)) => return Err(e),
            // Never written: any request may go again as it is.
            Err(Attempt::Unsent(req, first)) => {
                tracing::debug!(server = %server.addr, "retrying on a fresh connection after: {first}");
                *req
            }
            Err(Attempt::Stale(first)) => match replay {
                Some((method, uri, headers)) => {
                    tracing::debug!(server = %server.addr, "retrying on a fresh connection after: {first}");
                    let mut again = Request::new(UpstreamBody::Empty);
                    *again.method_mut() = method;
                    *again.uri_mut() = uri;
                    *again.headers_mut() = headers;
                    again
                }
                None => return Err(first),
            },
        };
        self.attempt(again, server, tls, timeout, Use::Fresh)
            .await
            .map_err(Attempt::into_error)
    }

    async fn attempt(
        &self,
        req: Request<UpstreamBody>,
        server: &Server,
        tls: bool,
        timeout: Duration,
        using: Use,
    ) -> Result<Response<Incoming>, Attempt> {
        let parked = match using {
            Use::Pooled => self.pool.checkout(server, tls),
            Use::Fresh => None,
        };
        let reused = parked.is_some();
        let mut tx = match parked {
            Some(tx) => tx,
            None => self
                .pool
                .connect(server, tls)
                .await
                .map_err(|e| Attempt::Final(connect_error(server, e)))?,
        };
        // `timeout` is the backend's time to answer once it has the whole request: a long
        // upload is not the backend being slow (a stalled one is cut by the connection's
        // idle timer instead). An answer before the upload ends is taken at once.
        let sent = req.body().sent();
        let request = tx.try_send_request(req);
        tokio::pin!(request);
        let answered = tokio::select! {
            biased;
            res = &mut request => Ok(res),
            () = sent => tokio::time::timeout(timeout, &mut request).await,
        };
        match answered {
            Ok(Ok(resp)) => {
                self.pool.release(server, tls, tx);
                Ok(resp)
            }
            Err(_) => Err(Attempt::Final(ForwardError::Timeout {
                server: server.addr.clone(),
                timeout,
                reached: true,
            })),
            Ok(Err(mut e)) => {
                let unsent = e.take_message();
                let e = e.into_error();
                let reason = chain(&e);
                let broken = ForwardError::Broken {
                    server: server.addr.clone(),
                    reason,
                };
                match unsent {
                    Some(req) if reused => Err(Attempt::Unsent(Box::new(req), broken)),
                    _ if reused && is_stale_connection(&e) => Err(Attempt::Stale(broken)),
                    _ => Err(Attempt::Final(broken)),
                }
            }
        }
    }
}

fn connect_error(server: &Server, e: ConnectError) -> ForwardError {
    let server = server.addr.clone();
    match e {
        ConnectError::Timeout(timeout) => ForwardError::Timeout {
            server,
            timeout,
            reached: false,
        },
        other => ForwardError::Unreachable {
            server,
            reason: other.to_string(),
        },
    }
}

enum Attempt {
    /// A parked connection closed under the request after it was written: worth one
    /// retry if replayable.
    Stale(ForwardError),
    /// A parked connection closed before the request was written: it comes back.
    Unsent(Box<Request<UpstreamBody>>, ForwardError),
    Final(ForwardError),
}

impl Attempt {
    fn into_error(self) -> ForwardError {
        match self {
            Attempt::Stale(e) | Attempt::Unsent(_, e) | Attempt::Final(e) => e,
        }
    }
}

/// Idempotent methods without a body can be sent again safely.
fn replayable(req: &Request<UpstreamBody>) -> bool {
    matches!(req.body(), UpstreamBody::Empty)
        && matches!(
            *req.method(),
            Method::GET
                | Method::HEAD
                | Method::OPTIONS
                | Method::TRACE
                | Method::PUT
                | Method::DELETE
        )
}

fn sources<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(e), |e| (*e).source())
}

fn is_stale_connection(e: &(dyn StdError + 'static)) -> bool {
    sources(e)
        .filter_map(|s| s.downcast_ref::<hyper::Error>())
        .any(|h| h.is_incomplete_message() || h.is_canceled())
}

/// The useful messages of an error chain ("tcp connect error: Connection refused"
/// rather than "client error (Connect)").
fn chain(e: &(dyn StdError + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    for s in sources(e).skip(1) {
        let msg = s.to_string();
        if !parts.iter().any(|p| p.contains(&msg)) {
            parts.push(msg);
        }
    }
    if parts.is_empty() {
        e.to_string()
    } else {
        parts.join(": ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_connection_listed_ones_go() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "close, x-custom-hop".parse().unwrap());
        h.insert("x-custom-hop", "1".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("te", "trailers".parse().unwrap());
        h.insert("upgrade", "websocket".parse().unwrap());
        h.insert("x-end-to-end", "kept".parse().unwrap());
        strip_hop_by_hop(&mut h, false);
        let names: Vec<_> = h.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["x-end-to-end"]);
    }

    #[test]
    fn the_dashboard_session_never_reaches_a_backend() {
        let mut h = HeaderMap::new();
        h.append("cookie", "a=1; enforcer_session=abc; b=2".parse().unwrap());
        h.append("cookie", "enforcer_session=def".parse().unwrap());
        strip_dashboard_session(&mut h);
        let all: Vec<_> = h.get_all("cookie").iter().collect();
        assert_eq!(all, ["a=1; b=2"]);
        let mut h = HeaderMap::new();
        h.append("cookie", "JSESSIONID=x".parse().unwrap());
        strip_dashboard_session(&mut h);
        assert_eq!(h.get("cookie").unwrap(), "JSESSIONID=x");
    }

    #[test]
    fn upgrade_survives_when_asked() {
        let mut h = HeaderMap::new();
        h.insert(CONNECTION, "Upgrade".parse().unwrap());
        h.insert(UPGRADE, "websocket".parse().unwrap());
        strip_hop_by_hop(&mut h, true);
        assert_eq!(h.get(UPGRADE).unwrap(), "websocket");
        assert_eq!(h.get(CONNECTION).unwrap(), "upgrade");
    }
}
