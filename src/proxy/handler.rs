//! The inline request handler: one client request through the pipeline to a backend.
//!
//! In order: `GET /ase` health (when enabled) → well-formedness (host, path) → route →
//! `on_request` (identities, decision) → pick a healthy server → rewrite and forward →
//! `on_response` → stream the body back; the exchange completes when the body ends (see
//! [`super::body::Completion`]). Every answer enforcer makes itself comes from
//! [`super::respond`].

use std::sync::Arc;

use http::header::{CONNECTION, HOST, HeaderValue, UPGRADE};
use http::{Method, Request, Response, StatusCode, Version};
use hyper::body::{Body, Incoming};
use hyper::upgrade::OnUpgrade;

use super::body::{Completion, ProxyBody};
use super::forward::{ClientSide, ForwardError, strip_hop_by_hop, upstream_request};
use super::respond::{Answer, answer, blocked};
use super::{Conn, tunnel};
use crate::config::{Mode, Protocol};
use crate::pipeline::route::well_formed_path;
use crate::pipeline::{Api, Decision, Exchange, RouteError, Server, Upstream};

/// Handles one request on an inline data port. Never fails: every outcome is a response.
pub async fn handle(conn: Arc<Conn>, req: Request<Incoming>) -> Response<ProxyBody> {
    let app = conn.inline.app.clone();
    let version = req.version();
    if app.settings.enable_ase_health
        && req.uri().path() == "/ase"
        && matches!(*req.method(), Method::GET | Method::HEAD)
    {
        return answer(Answer::Health, version);
    }

    let (mut parts, body) = req.into_parts();
    if let Err(reply) = transfer_codings(&parts.headers) {
        return answer(reply, version);
    }
    let api = {
        if one_authority(&mut parts).is_err() {
            return answer(Answer::MalformedRequest, version);
        }
        let Ok(host) = request_host(&parts) else {
            return answer(Answer::MalformedRequest, version);
        };
        if !well_formed_path(parts.uri.path()) {
            return answer(Answer::MalformedRequest, version);
        }
        match app.pipeline().route(host, parts.uri.path()) {
            Ok(api) => api,
            Err(RouteError::UnknownApi) => return answer(Answer::UnknownApi, version),
            Err(RouteError::UnknownHostname) => return answer(Answer::UnknownHostname, version),
        }
    };

    let mut ex = Box::new(Exchange::new(
        Mode::Inline,
        api.clone(),
        parts.method.clone(),
        parts.uri.clone(),
        version,
        conn.peer.ip(),
    ));
    ex.tls = conn.tls;
    ex.websocket = is_websocket_upgrade(&parts);
    ex.has_body = !body.is_end_stream();
    ex.connection_id = conn.id;
    let decision = app.pipeline().on_request(&mut ex, &parts.headers);
    let client = ex.client_ip;
    let mut done = Completion::new(app.clone(), ex);
    match decision {
        Decision::Allow => {
            // HTTP/2 streams are requests: one client's are bounded however it sends them.
            let Some(in_flight) = app.limits.enter(client) else {
                if let Some(ex) = done.exchange() {
                    ex.verdict =
                        crate::pipeline::Verdict::Blocked(crate::vocab::Reason::FlowControl);
                }
                return finish(answer(Answer::ClientBusy, version), done);
            };
            done.hold_in_flight(in_flight);
            forward(&conn, &api, parts, body, done).await
        }
        Decision::Block(block) => finish(blocked(&block, version), done),
    }
}

async fn forward(
    conn: &Arc<Conn>,
    api: &Arc<Api>,
    mut parts: http::request::Parts,
    body: Incoming,
    mut done: Completion,
) -> Response<ProxyBody> {
    let version = parts.version;
    let Some(ex) = done.exchange() else {
        return finish(answer(Answer::BadGateway, version), done);
    };
    let server = match conn.inline.app.pipeline().pick_server(ex).await {
        Ok(Some(pick)) => {
            done.hold(pick.lease);
            pick.server
        }
        Ok(None) => return finish(answer(Answer::NoHealthyServer, version), done),
        Err(block) => return finish(blocked(&block, version), done),
    };
    let app = &conn.inline.app;
    match app
        .limits
        .upstream_slot(&server.addr, app.settings.connection_queue_timeout)
        .await
    {
        Some(slot) => done.hold_slot(slot),
        None => return finish(answer(Answer::UpstreamBusy, version), done),
    }
    let upgrade = api.def.protocol == Protocol::Ws && is_websocket_upgrade(&parts);
    let client_upgrade = if upgrade {
        parts.extensions.remove::<OnUpgrade>()
    } else {
        None
    };
    let client = ClientSide {
        peer: &conn.peer_value,
        tls: conn.tls,
        trust_forwarded: conn.inline.app.settings.enable_xff,
        host: host_value(&parts),
        upgrade,
    };
    let body = done.count_request(body);
    let req = match upstream_request(parts, body, api, &client) {
        Ok(req) => req,
        Err(_) => return finish(answer(Answer::MalformedRequest, version), done),
    };
    let sent = std::time::Instant::now();
    let answered = conn
        .inline
        .forwarder
        .send(req, &server, api.def.server_ssl)
        .await;
    if let Some(ex) = done.exchange() {
        ex.upstream_latency = Some(sent.elapsed());
    }
    match answered {
        Ok(resp) => from_upstream(conn, resp, done, server, client_upgrade),
        Err(_) if done.client_body_failed() => {
            tracing::debug!("client {}: malformed request body", conn.peer.ip());
            finish(answer(Answer::MalformedRequest, version), done)
        }
        Err(e) => {
            tracing::warn!("client {}: {e}", conn.peer.ip());
            let reply = match &e {
                ForwardError::Timeout { .. } => Answer::GatewayTimeout,
                ForwardError::Unreachable { .. } | ForwardError::Broken { .. } => {
                    Answer::BadGateway
                }
            };
            if e.reached_server()
                && let Some(ex) = done.exchange()
            {
                ex.upstream = Some(Upstream::Server(server.addr.clone()));
            }
            finish(answer(reply, version), done)
        }
    }
}

/// Passes the backend's response on, body streamed; a `101` starts a WebSocket tunnel.
fn from_upstream(
    conn: &Arc<Conn>,
    mut resp: Response<Incoming>,
    mut done: Completion,
    server: Arc<Server>,
    client_upgrade: Option<OnUpgrade>,
) -> Response<ProxyBody> {
    let status = resp.status();
    if let Some(ex) = done.exchange() {
        ex.upstream = Some(Upstream::Server(server.addr.clone()));
        conn.inline.app.pipeline().on_response(ex, status);
    }
    if status == StatusCode::SWITCHING_PROTOCOLS {
        let Some(client_upgrade) = client_upgrade else {
            tracing::warn!(server = %server.addr, "backend switched protocols without being asked");
            return finish(answer(Answer::BadGateway, Version::HTTP_11), done);
        };
        let upstream_upgrade = hyper::upgrade::on(&mut resp);
        tokio::spawn(tunnel::run(
            conn.clone(),
            client_upgrade,
            upstream_upgrade,
            done,
        ));
        strip_hop_by_hop(resp.headers_mut(), true);
        let (parts, _) = resp.into_parts();
        return Response::from_parts(parts, ProxyBody::local(""));
    }
    strip_hop_by_hop(resp.headers_mut(), false);
    // The client's connection speaks HTTP/1.1 (or h2) whatever the backend spoke: an
    // HTTP/1.0 backend's version must not reach the client's status line.
    *resp.version_mut() = Version::HTTP_11;
    let (parts, body) = resp.into_parts();
    Response::from_parts(parts, ProxyBody::upstream(body, done))
}

/// Ends an exchange that enforcer answered itself.
fn finish(resp: Response<ProxyBody>, mut done: Completion) -> Response<ProxyBody> {
    if let Some(ex) = done.exchange() {
        ex.status = Some(resp.status());
        ex.answered_by_enforcer = true;
    }
    drop(done);
    resp
}

/// Makes the request name one authority, the one it is routed by and forwarded with:
/// an HTTP/1 absolute-form target's authority replaces any `Host` (RFC 9112 §3.2.2); an
/// HTTP/2 `:authority` with a `host` header that names another host is refused (RFC 9113
/// §8.3.1), since routing by one and forwarding the other would bypass per-host policy.
fn one_authority(parts: &mut http::request::Parts) -> Result<(), ()> {
    if let Some(authority) = parts.uri.authority() {
        if parts.version >= Version::HTTP_2 {
            let mut hosts = parts.headers.get_all(HOST).iter();
            match (hosts.next(), hosts.next()) {
                (None, _) => {}
                (Some(h), None)
                    if h.as_bytes()
                        .eq_ignore_ascii_case(authority.as_str().as_bytes()) => {}
                _ => return Err(()),
            }
        } else {
            let value = HeaderValue::from_str(authority.as_str()).map_err(|_| ())?;
            parts.headers.insert(HOST, value);
        }
    }
    Ok(())
}

/// Refuses transfer codings enforcer does not implement: a body in `gzip, chunked` would be
/// forwarded de-chunked but still compressed, with nothing saying so (501, RFC 9112 §6.1).
fn transfer_codings(headers: &http::HeaderMap) -> Result<(), Answer> {
    let mut codings = headers
        .get_all(http::header::TRANSFER_ENCODING)
        .iter()
        .flat_map(|v| v.as_bytes().split(|b| *b == b','))
        .map(|c| c.trim_ascii())
        .filter(|c| !c.is_empty());
    match (codings.next(), codings.next()) {
        (None, _) => Ok(()),
        (Some(c), None) if c.eq_ignore_ascii_case(b"chunked") => Ok(()),
        _ => Err(Answer::NotImplemented),
    }
}

/// The host the client addressed: the URI authority (HTTP/2, absolute-form) or the single
/// `Host` header. `Err` for a request whose host is ambiguous or missing where HTTP/1.1
/// requires it.
fn request_host(parts: &http::request::Parts) -> Result<Option<&str>, ()> {
    if let Some(authority) = parts.uri.authority() {
        return Ok(Some(authority.as_str()));
    }
    let mut hosts = parts.headers.get_all(HOST).iter();
    match (hosts.next(), hosts.next()) {
        (Some(h), None) => h.to_str().map(Some).map_err(|_| ()),
        (Some(_), Some(_)) => Err(()),
        (None, _) if parts.version == Version::HTTP_11 => Err(()),
        (None, _) => Ok(None),
    }
}

/// The host the client addressed as a header value: the URI authority (HTTP/2,
/// absolute-form), else the `Host` header as it came, sharing its bytes.
fn host_value(parts: &http::request::Parts) -> Option<HeaderValue> {
    match parts.uri.authority() {
        Some(a) => HeaderValue::from_str(a.as_str()).ok(),
        None => parts.headers.get(HOST).cloned(),
    }
}

fn is_websocket_upgrade(parts: &http::request::Parts) -> bool {
    let has_token = |name, token: &str| {
        parts.headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|s| s.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    parts.version == Version::HTTP_11
        && has_token(UPGRADE, "websocket")
        && has_token(CONNECTION, "upgrade")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(req: Request<()>) -> http::request::Parts {
        req.into_parts().0
    }

    #[test]
    fn dot_segments_are_malformed_in_any_spelling() {
        for p in ["/a/../b", "/a/%2e%2e/b", "/a/.%2E/b", "/a/./b", "/.."] {
            let p = parts(Request::get(p).header(HOST, "h").body(()).unwrap());
            assert!(!well_formed_path(p.uri.path()));
        }
        let ok = parts(
            Request::get("/a/..b/c.d")
                .header(HOST, "h")
                .body(())
                .unwrap(),
        );
        assert!(well_formed_path(ok.uri.path()));
    }

    #[test]
    fn one_authority_routes_and_forwards() {
        // HTTP/1 absolute-form: the target's authority replaces Host.
        let mut p = parts(
            Request::get("http://internal.example/a")
                .header(HOST, "public.example")
                .body(())
                .unwrap(),
        );
        assert_eq!(one_authority(&mut p), Ok(()));
        assert_eq!(p.headers[HOST], "internal.example");
        // HTTP/2: a host header naming another host than :authority is refused...
        let mut p = parts(
            Request::get("https://internal.example/a")
                .version(Version::HTTP_2)
                .header(HOST, "public.example")
                .body(())
                .unwrap(),
        );
        assert_eq!(one_authority(&mut p), Err(()));
        // ... the same host (in any case) or none is fine.
        let mut p = parts(
            Request::get("https://internal.example/a")
                .version(Version::HTTP_2)
                .header(HOST, "Internal.Example")
                .body(())
                .unwrap(),
        );
        assert_eq!(one_authority(&mut p), Ok(()));
    }

    #[test]
    fn only_chunked_is_a_transfer_coding_enforcer_forwards() {
        let te = |v: &str| {
            let mut h = http::HeaderMap::new();
            h.insert(http::header::TRANSFER_ENCODING, v.parse().unwrap());
            transfer_codings(&h)
        };
        assert_eq!(te("chunked"), Ok(()));
        assert_eq!(te("Chunked"), Ok(()));
        assert_eq!(te("gzip, chunked"), Err(Answer::NotImplemented));
        assert_eq!(transfer_codings(&http::HeaderMap::new()), Ok(()));
    }

    #[test]
    fn http11_needs_exactly_one_host() {
        let none = parts(Request::get("/").body(()).unwrap());
        assert_eq!(request_host(&none), Err(()));
        let two = parts(
            Request::get("/")
                .header(HOST, "a")
                .header(HOST, "b")
                .body(())
                .unwrap(),
        );
        assert_eq!(request_host(&two), Err(()));
        let old = parts(
            Request::get("/")
                .version(Version::HTTP_10)
                .body(())
                .unwrap(),
        );
        assert_eq!(request_host(&old), Ok(None));
        let abs = parts(Request::get("http://x.example/a").body(()).unwrap());
        assert_eq!(request_host(&abs), Ok(Some("x.example")));
    }
}
