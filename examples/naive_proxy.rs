//! The naive hyper reverse proxy: a hyper 1 server on one current-thread tokio runtime,
//! forwarding every request unchanged to one backend and doing nothing else.
//! `benches/load.sh` runs it beside nginx and enforcer, so the table separates what the
//! hyper stack costs from what enforcer's own work (routing, identities, enforcement,
//! recording, Prometheus) adds.
//!
//! Two upstream sides:
//! * default: each client connection owns one backend connection on
//!   `hyper::client::conn::http1`, opened with its first request and reused for the rest:
//!   no pool at all, the least an HTTP/1 proxy on hyper can do per request (the floor);
//! * `legacy`: hyper-util's pooled client, what enforcer used before issue 25.
//!
//! With `json=ADDR` it also answers every request on ADDR with a constant JSON decision
//! after reading the whole body: the least a sideband server on hyper can do per call (the
//! sideband floor, against nginx's constant JSON and enforcer's `/ase/request`).
//!
//! With `threads=N` it runs N threads, each a current-thread runtime accepting on its own
//! `SO_REUSEPORT` listener, as enforcer's workers do (the floor with both cores).
//!
//! Usage: `naive_proxy LISTEN_ADDR BACKEND_ADDR [legacy] [json=ADDR] [threads=N]`

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example may panic on bad setup

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::sync::Mutex;

fn main() {
    let mut args = std::env::args().skip(1);
    let usage = "usage: naive_proxy LISTEN BACKEND [legacy] [json=ADDR] [threads=N]";
    let listen = args.next().expect(usage);
    let backend = args.next().expect(usage);
    let rest: Vec<String> = args.collect();
    let legacy = rest.iter().any(|a| a == "legacy");
    let json = rest
        .iter()
        .find_map(|a| a.strip_prefix("json=").map(str::to_string));
    let threads: usize = rest
        .iter()
        .find_map(|a| a.strip_prefix("threads="))
        .map_or(1, |n| n.parse().expect(usage));
    let listen: std::net::SocketAddr = listen.parse().expect(usage);
    // One current-thread runtime per thread, each accepting on its own SO_REUSEPORT
    // listener: the shape of enforcer's workers.
    let workers: Vec<_> = (0..threads)
        .map(|i| {
            let (backend, json) = (backend.clone(), json.clone().filter(|_| i == 0));
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let socket = tokio::net::TcpSocket::new_v4().unwrap();
                    socket.set_reuseaddr(true).unwrap();
                    socket.set_reuseport(true).unwrap();
                    socket.bind(listen).unwrap();
                    let listener = socket.listen(4096).unwrap();
                    println!("naive_proxy ready: {}", listener.local_addr().unwrap());
                    if let Some(addr) = json {
                        let json = tokio::net::TcpListener::bind(&addr).await.unwrap();
                        tokio::spawn(serve_json(json));
                    }
                    if legacy {
                        serve_legacy(listener, backend).await
                    } else {
                        serve_owned(listener, backend).await
                    }
                })
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
}

/// Each client connection forwards over its own backend connection.
async fn serve_owned(listener: tokio::net::TcpListener, backend: String) {
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let backend = backend.clone();
        // Requests on an HTTP/1 connection come one at a time: the lock is never contended.
        let upstream: Arc<Mutex<Option<SendRequest<Incoming>>>> = Arc::new(Mutex::new(None));
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let (upstream, backend) = (upstream.clone(), backend.clone());
                async move {
                    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    *req.uri_mut() = pq.parse::<Uri>().unwrap();
                    let mut slot = upstream.lock().await;
                    if slot.as_ref().is_none_or(|tx| tx.is_closed()) {
                        let tcp = tokio::net::TcpStream::connect(&backend).await.unwrap();
                        tcp.set_nodelay(true).unwrap();
                        let (tx, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
                            .await
                            .unwrap();
                        tokio::spawn(conn);
                        *slot = Some(tx);
                    }
                    let tx = slot.as_mut().unwrap();
                    tx.ready().await?;
                    tx.send_request(req).await
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// hyper-util's pooled client, shared by every connection.
async fn serve_legacy(listener: tokio::net::TcpListener, backend: String) {
    let mut connector = HttpConnector::new();
    connector.set_nodelay(true);
    let client: Client<HttpConnector, Incoming> =
        Client::builder(TokioExecutor::new()).build(connector);
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        let (client, backend) = (client.clone(), backend.clone());
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(move |mut req: Request<Incoming>| {
                let (client, backend) = (client.clone(), backend.clone());
                async move {
                    let pq = req.uri().path_and_query().map_or("/", |p| p.as_str());
                    *req.uri_mut() = format!("http://{backend}{pq}").parse::<Uri>().unwrap();
                    client.request(req).await
                }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}

/// Reads each request's body and answers a constant JSON decision.
async fn serve_json(listener: tokio::net::TcpListener) {
    loop {
        let (stream, _) = listener.accept().await.unwrap();
        stream.set_nodelay(true).unwrap();
        tokio::spawn(async move {
            let svc = hyper::service::service_fn(|req: Request<Incoming>| async move {
                let body = req.into_body().collect().await?.to_bytes();
                let mut resp = hyper::Response::new(Full::new(Bytes::from_static(
                    br#"{"verdict":"allow","api":"accounts"}"#,
                )));
                resp.headers_mut().insert(
                    hyper::header::CONTENT_TYPE,
                    hyper::header::HeaderValue::from_static("application/json"),
                );
                drop(body);
                Ok::<_, hyper::Error>(resp)
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), svc)
                .await;
        });
    }
}
