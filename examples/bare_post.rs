//! A bare hyper server that reads a POST body and answers 200 with a small JSON body:
//! the baseline `benches/sideband-load.sh` compares enforcer's sideband decisions with.
//! It uses the same stack as enforcer (hyper 1, one current-thread tokio runtime) and does
//! nothing else, so the ratio is the cost of enforcer's own work.
//!
//! Usage: `bare_post 127.0.0.1:PORT`

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example may panic on bad setup

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

fn main() {
    let addr = std::env::args().nth(1).expect("usage: bare_post ADDR");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(&addr).await.unwrap();
        println!("bare_post ready: {}", listener.local_addr().unwrap());
        loop {
            let (stream, _) = listener.accept().await.unwrap();
            stream.set_nodelay(true).unwrap();
            tokio::spawn(async move {
                let svc =
                    hyper::service::service_fn(|req: Request<hyper::body::Incoming>| async move {
                        let _ = req.into_body().collect().await;
                        let mut resp = Response::new(Full::new(Bytes::from_static(
                            br#"{"verdict":"allow","api":"shop"}"#,
                        )));
                        resp.headers_mut()
                            .insert("content-type", "application/json".parse().unwrap());
                        resp.headers_mut()
                            .insert("connection", "keep-alive".parse().unwrap());
                        Ok::<_, Infallible>(resp)
                    });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
}
