//! Micro-benchmarks of the inline proxy's per-request plumbing that issue 25 changed.
//! Run: `cargo bench --bench proxy`.
//!
//! * `proxy/strip_hop_by_hop_*`: the hop-by-hop removal on a typical backend answer
//!   (nginx's: `Connection: keep-alive` among five headers) and on a request without any.
//! * `proxy/well_formed_path`: the dot-segment check on a five-segment path.
//! * `proxy/pool_checkout_release`: taking a parked backend connection and giving it back
//!   (what every forwarded request does with the worker's pool).

#![allow(clippy::unwrap_used)] // a bench may panic on bad setup

use std::hint::black_box;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use enforcer::backend::Server;
use enforcer::pipeline::route::well_formed_path;
use enforcer::proxy::forward::strip_hop_by_hop;
use enforcer::proxy::pool::Pool;
use http::{HeaderMap, HeaderValue};

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (k, v) in pairs {
        h.append(*k, HeaderValue::from_static(v));
    }
    h
}

fn hop_by_hop(c: &mut Criterion) {
    let answer = headers(&[
        ("server", "nginx/1.22.1"),
        ("date", "Mon, 30 Nov 2026 16:00:00 GMT"),
        ("content-type", "text/plain"),
        ("content-length", "2"),
        ("connection", "keep-alive"),
    ]);
    c.bench_function("proxy/strip_hop_by_hop_answer", |b| {
        b.iter_batched_ref(
            || answer.clone(),
            |h| strip_hop_by_hop(black_box(h), false),
            criterion::BatchSize::SmallInput,
        )
    });
    let request = headers(&[
        ("host", "api.example.com"),
        ("user-agent", "wrk"),
        ("accept", "*/*"),
    ]);
    c.bench_function("proxy/strip_hop_by_hop_request", |b| {
        b.iter_batched_ref(
            || request.clone(),
            |h| strip_hop_by_hop(black_box(h), false),
            criterion::BatchSize::SmallInput,
        )
    });
    c.bench_function("proxy/well_formed_path", |b| {
        b.iter(|| well_formed_path(black_box("/api/v1/accounts/8f14e45f/orders")))
    });
}

fn pool(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let _entered = rt.enter();
    // A backend that accepts and keeps its connections open: a parked connection stays
    // ready for a request, which is all checkout and release look at.
    let listener = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let port = listener.local_addr().unwrap().port();
    rt.spawn(async move {
        let mut open = Vec::new();
        while let Ok((s, _)) = listener.accept().await {
            open.push(s);
        }
    });
    let tls = enforcer::tls::upstream_config(None).unwrap();
    let pool = Pool::new(tls, 64, Duration::from_secs(60), Duration::from_secs(5));
    let server = Server::new("127.0.0.1", port);
    let mut tx = rt.block_on(pool.connect(&server, false)).unwrap();
    rt.block_on(tx.ready()).unwrap();
    pool.release(&server, false, tx);
    c.bench_function("proxy/pool_checkout_release", |b| {
        b.iter(|| {
            let tx = pool.checkout(black_box(&server), false).unwrap();
            pool.release(&server, false, tx);
        })
    });
}

criterion_group!(benches, hop_by_hop, pool);
criterion_main!(benches);
