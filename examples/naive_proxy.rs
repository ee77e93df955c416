//! The naive hyper reverse proxy: hyper 1 server + hyper-util's pooled client on one
//! current-thread tokio runtime, forwarding every request unchanged to one backend and
//! doing nothing else. `benches/load.sh` runs it beside nginx and enforcer, so the table
//! separates what the hyper stack costs from what enforcer's own work (routing,
//! identities, enforcement, recording, Prometheus) adds.
//!
//! Usage: `naive_proxy LISTEN_ADDR BACKEND_ADDR`

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example may panic on bad setup

use hyper::body::Incoming;
use hyper::{Request, Uri};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn main() {
    let mut args = std::env::args().skip(1);
    let listen = args.next().expect("usage: naive_proxy LISTEN BACKEND");
    let backend = args.next().expect("usage: naive_proxy LISTEN BACKEND");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Incoming> =
            Client::builder(TokioExecutor::new()).build(connector);
        let listener = tokio::net::TcpListener::bind(&listen).await.unwrap();
        println!("naive_proxy ready: {}", listener.local_addr().unwrap());
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
    });
}
