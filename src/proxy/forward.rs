//! Forwarding to a backend: the request rewrite and the upstream client.
//!
//! * [`upstream_request`] turns the client's request into the backend's: absolute URI on
//!   the chosen server with `api_mapping.internal_url` applied, hop-by-hop headers removed
//!   (including those the `Connection` header names), `X-Forwarded-For/-Proto/-Host` set
//!   (and, unless `enable_xff` trusts the client's, `Forwarded` removed and `X-Real-IP` set),
//!   `Host` preserved, HTTP/1.1 on the wire whatever the client spoke.
//! * [`Forwarder`] sends it over a pooled keep-alive client (TLS when the API sets
//!   `server_ssl`). Pooled connections are dropped after `upstream_idle_timeout`, which
//!   should stay below the backends' own keep-alive so the backend never closes a
//!   connection we are about to reuse; if that race happens anyway, an idempotent request
//!   without a body is retried once on a fresh connection.
//! * Failures map to [`ForwardError`]: unreachable (502) or too slow (504): no response
//!   head within `upstream_timeout` of the request body's end (the upload itself is not
//!   timed here).
//!
//! One `Forwarder` per worker runtime, so pooled connections stay on the thread that uses
//! them.

use std::error::Error as StdError;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{CONNECTION, EXPECT, HOST, HeaderName, HeaderValue, UPGRADE};
use http::uri::{PathAndQuery, Scheme};
use http::{HeaderMap, Method, Request, Response, Uri, Version};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::UpstreamBody;
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
    // Most messages carry none: one pass over the (few) names present is cheaper than
    // hashing every hop-by-hop name for a removal. Standard names compare as enums.
    if !headers.keys().any(|k| HOP_BY_HOP.contains(k)) {
        return;
    }
    if headers.contains_key(CONNECTION) {
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
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
    for name in &HOP_BY_HOP {
        headers.remove(name);
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
    pub peer_ip: IpAddr,
    pub tls: bool,
    /// `enable_xff`: incoming `X-Forwarded-*` headers come from a trusted proxy.
    pub trust_forwarded: bool,
    /// The host the client addressed (from the URI authority or `Host`).
    pub host: Option<&'a str>,
    /// Keep the WebSocket upgrade headers.
    pub upgrade: bool,
}

/// Builds the backend request from the client's request parts. Fails only if the
/// rewritten path is not a valid URI (the caller answers 400).
pub fn upstream_request(
    mut parts: http::request::Parts,
    body: UpstreamBody,
    api: &Api,
    server: &Server,
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
    let uri = backend_uri(api, server, path_and_query)?;

    let headers = &mut parts.headers;
    strip_hop_by_hop(headers, client.upgrade);
    strip_dashboard_session(headers);
    // enforcer's own server side already answered any `Expect: 100-continue`.
    headers.remove(EXPECT);
    if !headers.contains_key(HOST)
        && let Some(host) = client.host.and_then(|h| HeaderValue::from_str(h).ok())
    {
        headers.insert(HOST, host);
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

/// The absolute URI of `path_and_query` on `server` (`https` when the API sets `server_ssl`).
pub fn backend_uri(
    api: &Api,
    server: &Server,
    path_and_query: PathAndQuery,
) -> Result<Uri, http::Error> {
    let scheme = if api.def.server_ssl {
        Scheme::HTTPS
    } else {
        Scheme::HTTP
    };
    Uri::builder()
        .scheme(scheme)
        .authority(server.authority.clone())
        .path_and_query(path_and_query)
        .build()
}

fn set_forwarded(headers: &mut HeaderMap, client: &ClientSide<'_>) {
    let peer = client.peer_ip.to_string();
    // A client's own `Forwarded` and `X-Real-IP` claim an origin the way `X-Forwarded-For`
    // does: trusted only with `enable_xff`, replaced by what enforcer saw otherwise.
    if !client.trust_forwarded {
        headers.remove(FORWARDED);
        if let Ok(v) = HeaderValue::from_str(&peer) {
            headers.insert(X_REAL_IP, v);
        }
    }
    let xff = if client.trust_forwarded && headers.contains_key(&X_FORWARDED_FOR) {
        let mut joined = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .collect::<Vec<_>>()
            .join(", ");
        joined.push_str(", ");
        joined.push_str(&peer);
        joined
    } else {
        peer
    };
    if let Ok(v) = HeaderValue::from_str(&xff) {
        headers.insert(X_FORWARDED_FOR, v);
    }
    if !(client.trust_forwarded && headers.contains_key(&X_FORWARDED_PROTO)) {
        let proto = if client.tls { "https" } else { "http" };
        headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
    }
    if !(client.trust_forwarded && headers.contains_key(&X_FORWARDED_HOST)) {
        match client.host.and_then(|h| HeaderValue::from_str(h).ok()) {
            Some(h) => {
                headers.insert(X_FORWARDED_HOST, h);
            }
            None => {
                headers.remove(&X_FORWARDED_HOST);
            }
        }
    }
}

/// The pooled upstream client of one worker.
pub struct Forwarder {
    client: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    timeout: Duration,
    connect_timeout: Duration,
}

impl Forwarder {
    pub fn new(settings: &Settings, tls: Arc<rustls::ClientConfig>) -> Forwarder {
        Forwarder::with_pool(settings, tls, settings.upstream_max_idle_per_server)
    }

    /// A client that keeps at most `max_idle` idle connections per server (0: no pooling).
    pub fn with_pool(
        settings: &Settings,
        tls: Arc<rustls::ClientConfig>,
        max_idle: usize,
    ) -> Forwarder {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(settings.upstream_connect_timeout));
        let https = HttpsConnectorBuilder::new()
            .with_tls_config((*tls).clone())
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_timer(TokioTimer::new())
            .pool_idle_timeout(settings.upstream_idle_timeout)
            .pool_max_idle_per_host(max_idle)
            .set_host(false)
            .build(https);
        Forwarder {
            client,
            timeout: settings.upstream_timeout,
            connect_timeout: settings.upstream_connect_timeout,
        }
    }

    /// Sends `req` to `server` and waits for the response head, at most `upstream_timeout`.
    pub async fn send(
        &self,
        req: Request<UpstreamBody>,
        server: &Server,
    ) -> Result<Response<Incoming>, ForwardError> {
        self.send_within(req, server, self.timeout).await
    }

    /// As [`Forwarder::send`] with an explicit timeout (health checks use their own).
    pub async fn send_within(
        &self,
        req: Request<UpstreamBody>,
        server: &Server,
        timeout: Duration,
    ) -> Result<Response<Incoming>, ForwardError> {
        let replay = replayable(&req).then(|| {
            (
                req.method().clone(),
                req.uri().clone(),
                req.headers().clone(),
            )
        });
        match self.attempt(req, server, timeout).await {
            Err(Attempt::Stale(first)) => match replay {
                Some((method, uri, headers)) => {
                    tracing::debug!(server = %server.addr, "retrying on a fresh connection after: {first}");
                    let mut again = Request::new(UpstreamBody::Empty);
                    *again.method_mut() = method;
                    *again.uri_mut() = uri;
                    *again.headers_mut() = headers;
                    self.attempt(again, server, timeout)
                        .await
                        .map_err(Attempt::into_error)
                }
                None => Err(first),
            },
            other => other.map_err(Attempt::into_error),
        }
    }

    async fn attempt(
        &self,
        req: Request<UpstreamBody>,
        server: &Server,
        timeout: Duration,
    ) -> Result<Response<Incoming>, Attempt> {
        // `timeout` is the backend's time to answer once it has the whole request: a long
        // upload is not the backend being slow (a stalled one is cut by the connection's
        // idle timer instead). An answer before the upload ends is taken at once.
        let sent = req.body().sent();
        let request = self.client.request(req);
        tokio::pin!(request);
        let answered = tokio::select! {
            biased;
            res = &mut request => Ok(res),
            () = sent => tokio::time::timeout(timeout, &mut request).await,
        };
        match answered {
            Ok(Ok(resp)) => Ok(resp),
            Err(_) => Err(Attempt::Final(ForwardError::Timeout {
                server: server.addr.clone(),
                timeout,
                reached: true,
            })),
            Ok(Err(e)) => {
                let reason = chain(&e);
                if has_io_kind(&e, std::io::ErrorKind::TimedOut) {
                    return Err(Attempt::Final(ForwardError::Timeout {
                        server: server.addr.clone(),
                        timeout: self.connect_timeout,
                        reached: !e.is_connect(),
                    }));
                }
                let server = server.addr.clone();
                if e.is_connect() {
                    Err(Attempt::Final(ForwardError::Unreachable { server, reason }))
                } else if is_stale_connection(&e) {
                    Err(Attempt::Stale(ForwardError::Broken { server, reason }))
                } else {
                    Err(Attempt::Final(ForwardError::Broken { server, reason }))
                }
            }
        }
    }
}

enum Attempt {
    /// A pooled connection closed under the request: worth one retry if replayable.
    Stale(ForwardError),
    Final(ForwardError),
}

impl Attempt {
    fn into_error(self) -> ForwardError {
        match self {
            Attempt::Stale(e) | Attempt::Final(e) => e,
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

fn has_io_kind(e: &(dyn StdError + 'static), kind: std::io::ErrorKind) -> bool {
    sources(e)
        .filter_map(|s| s.downcast_ref::<std::io::Error>())
        .any(|io| io.kind() == kind)
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
