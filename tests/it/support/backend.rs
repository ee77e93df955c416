//! An in-process HTTP/1.1 backend on a free loopback port, for putting behind enforcer.
//!
//! It dispatches on the last path segment, whatever the prefix:
//! * `echo` (and anything unknown): JSON of what it received (method, path, query, headers,
//!   body length) plus its own name;
//! * `health`: 200 or 503 as [`Backend::set_healthy`] says;
//! * `hang`: never answers; `login`: 401, as a login that fails;
//! * `gate`: tells [`Backend::gate_reached`] it has the request, then answers once
//!   [`Backend::open_gate`] is called;
//! * `download?bytes=N`: streams N bytes; `upload`: reads the body and answers its length;
//! * `hop`: answers with hop-by-hop headers that must not reach the client;
//! * `status?code=N`: answers N; `<letters><NNN>` (`get200`, `post400`): answers NNN;
//! * `ws`: WebSocket echo.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http_body_util::{BodyExt, Full, StreamBody, combinators::BoxBody};
use hyper::body::{Frame, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::protocol::Role;

type Body = BoxBody<Bytes, Infallible>;

struct State {
    name: String,
    healthy: AtomicBool,
    gate_reached: Notify,
    gate_open: Notify,
    requests: AtomicU64,
}

/// A raw backend that answers the first request on each connection and then, on the
/// second, reads it and closes without answering: what a backend does when its keep-alive
/// timeout fires just as a pooled connection is reused. Returns its address and a count
/// of the connections it accepted.
pub async fn start_closing_after_one() -> (SocketAddr, Arc<AtomicU64>, tokio::task::JoinHandle<()>)
{
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let conns = Arc::new(AtomicU64::new(0));
    let counter = conns.clone();
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut buf = Vec::new();
                for answer in [true, false] {
                    loop {
                        if buf.windows(4).any(|w| w == b"\r\n\r\n") {
                            break;
                        }
                        let mut chunk = [0u8; 4096];
                        match stream.read(&mut chunk).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => buf.extend_from_slice(&chunk[..n]),
                        }
                    }
                    buf.clear();
                    if answer {
                        let _ = stream
                            .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 5\r\n\r\nfresh")
                            .await;
                    }
                }
            });
        }
    });
    (addr, conns, task)
}

/// A running backend; stops when dropped.
pub struct Backend {
    pub addr: SocketAddr,
    state: Arc<State>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Backend {
    /// Starts a backend named `name` on the current tokio runtime.
    pub async fn start(name: &str) -> Backend {
        Backend::spawn(name, None).await
    }

    /// Starts a backend that speaks TLS with the repository's dev server certificate.
    pub async fn start_tls(name: &str) -> Backend {
        let certs = super::certs();
        let config =
            enforcer::tls::server_config(&certs.join("server.crt"), &certs.join("server.key"))
                .unwrap();
        Backend::spawn(name, Some(tokio_rustls::TlsAcceptor::from(config))).await
    }

    async fn spawn(name: &str, tls: Option<tokio_rustls::TlsAcceptor>) -> Backend {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = Arc::new(State {
            name: name.to_string(),
            healthy: AtomicBool::new(true),
            gate_reached: Notify::new(),
            gate_open: Notify::new(),
            requests: AtomicU64::new(0),
        });
        let s = state.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let s = s.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let s = s.clone();
                        async move { Ok::<_, Infallible>(serve(s, req).await) }
                    });
                    let mut builder = hyper::server::conn::http1::Builder::new();
                    // Whatever enforcer lets through reaches the handler: limits on the
                    // request head are enforcer's to test, not this backend's.
                    builder.max_headers(1000);
                    match tls {
                        None => {
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await;
                        }
                        Some(acceptor) => {
                            let Ok(stream) = acceptor.accept(stream).await else {
                                return;
                            };
                            let _ = builder
                                .serve_connection(TokioIo::new(stream), svc)
                                .with_upgrades()
                                .await;
                        }
                    }
                });
            }
        });
        Backend { addr, state, task }
    }

    pub fn set_healthy(&self, healthy: bool) {
        self.state.healthy.store(healthy, Ordering::SeqCst);
    }

    /// Resolves once a `gate` request has arrived.
    pub async fn gate_reached(&self) {
        self.state.gate_reached.notified().await;
    }

    /// Lets the waiting `gate` request answer.
    pub fn open_gate(&self) {
        self.state.gate_open.notify_one();
    }

    /// Requests served so far (health checks included).
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::SeqCst)
    }
}

fn full(status: StatusCode, body: impl Into<Bytes>) -> Response<Body> {
    let mut r = Response::new(Full::new(body.into()).boxed());
    *r.status_mut() = status;
    r
}

fn query_param(req: &Request<Incoming>, key: &str) -> Option<String> {
    req.uri().query()?.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == key).then(|| v.to_string())
    })
}

async fn serve(s: Arc<State>, req: Request<Incoming>) -> Response<Body> {
    s.requests.fetch_add(1, Ordering::SeqCst);
    let last = req
        .uri()
        .path()
        .rsplit('/')
        .next()
        .unwrap_or("")
        .to_string();
    match last.as_str() {
        "health" => {
            if s.healthy.load(Ordering::SeqCst) {
                full(StatusCode::OK, "ok")
            } else {
                full(StatusCode::SERVICE_UNAVAILABLE, "down")
            }
        }
        "hang" => std::future::pending().await,
        "login" => full(StatusCode::UNAUTHORIZED, "bad credentials"),
        "gate" => {
            s.gate_reached.notify_one();
            s.gate_open.notified().await;
            full(StatusCode::OK, "through the gate")
        }
        "download" => {
            let total: u64 = query_param(&req, "bytes")
                .and_then(|v| v.parse().ok())
                .unwrap_or(0);
            let chunk = Bytes::from(vec![b'x'; 64 * 1024]);
            let stream = futures_util::stream::unfold(total, move |left| {
                let chunk = chunk.clone();
                async move {
                    if left == 0 {
                        return None;
                    }
                    let n = left.min(chunk.len() as u64) as usize;
                    Some((
                        Ok::<_, Infallible>(Frame::data(chunk.slice(..n))),
                        left - n as u64,
                    ))
                }
            });
            let mut r = Response::new(BodyExt::boxed(StreamBody::new(stream)));
            r.headers_mut().insert("content-length", total.into());
            r
        }
        "upload" => {
            let mut body = req.into_body();
            let mut n: u64 = 0;
            while let Some(Ok(frame)) = body.frame().await {
                if let Some(d) = frame.data_ref() {
                    n += d.len() as u64;
                }
            }
            full(StatusCode::OK, n.to_string())
        }
        "hop" => {
            let mut r = full(StatusCode::OK, "hop");
            let h = r.headers_mut();
            h.insert("connection", "x-backend-hop".parse().unwrap());
            h.insert("x-backend-hop", "1".parse().unwrap());
            h.insert("keep-alive", "timeout=5".parse().unwrap());
            h.insert("x-backend-end-to-end", "1".parse().unwrap());
            r
        }
        "status" => {
            let code = query_param(&req, "code")
                .and_then(|c| c.parse().ok())
                .unwrap_or(200);
            full(
                StatusCode::from_u16(code).unwrap(),
                format!("status {code}"),
            )
        }
        "ws" => websocket(req),
        // `get200`, `post400`, ...: answer the status the name ends with.
        name if name.len() > 3 && name[name.len() - 3..].bytes().all(|b| b.is_ascii_digit()) => {
            let code: u16 = name[name.len() - 3..].parse().unwrap();
            full(StatusCode::from_u16(code).unwrap(), name.to_string())
        }
        _ => echo(&s, req).await,
    }
}

async fn echo(s: &State, req: Request<Incoming>) -> Response<Body> {
    let mut headers: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (k, v) in req.headers() {
        headers
            .entry(k.as_str().to_string())
            .or_default()
            .push(String::from_utf8_lossy(v.as_bytes()).into_owned());
    }
    let method = req.method().to_string();
    let path = req.uri().path().to_string();
    let query = req.uri().query().map(str::to_string);
    let version = format!("{:?}", req.version());
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let doc = json!({
        "backend": s.name,
        "method": method,
        "path": path,
        "query": query,
        "version": version,
        "headers": headers,
        "body_len": body.len(),
    });
    let mut r = full(StatusCode::OK, doc.to_string());
    r.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    r.headers_mut().insert("x-backend", s.name.parse().unwrap());
    r
}

fn websocket(mut req: Request<Incoming>) -> Response<Body> {
    let Some(key) = req.headers().get("sec-websocket-key").cloned() else {
        return full(StatusCode::BAD_REQUEST, "not a websocket handshake");
    };
    let accept = tokio_tungstenite::tungstenite::handshake::derive_accept_key(key.as_bytes());
    let upgrade = hyper::upgrade::on(&mut req);
    tokio::spawn(async move {
        let Ok(upgraded) = upgrade.await else { return };
        let mut ws =
            WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        while let Some(Ok(msg)) = ws.next().await {
            if msg.is_text() || msg.is_binary() {
                if ws.send(msg).await.is_err() {
                    break;
                }
            } else if msg.is_close() {
                break;
            }
        }
    });
    let mut r = full(StatusCode::SWITCHING_PROTOCOLS, Bytes::new());
    let h = r.headers_mut();
    h.insert("connection", "upgrade".parse().unwrap());
    h.insert("upgrade", "websocket".parse().unwrap());
    h.insert("sec-websocket-accept", accept.parse().unwrap());
    r
}
