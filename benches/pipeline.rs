//! Micro-benchmarks of the pipeline's hot pieces. Run: `cargo bench --bench pipeline`.
//!
//! * `route/*`: matching a request against 50 APIs.
//! * `identity/capture_all`: identity capture for a request carrying every identifier
//!   (XFF, session cookie, bearer JWT with a username claim, API key, user agent).
//! * `exchange/inline_*`: one inline exchange through the pipeline without the network:
//!   route, `on_request` (identities, lists, patterns, flow, decision), `on_response`,
//!   `on_complete` (recording into api_metrics buckets, client activity, user activity,
//!   Prometheus, detection). `plain` is a bare `GET` like the load benchmark's; `rich`
//!   carries every identifier. 1,000 client IPs cycle, as repeat traffic does. Detection
//!   runs, but does not deny-list (a bench repeats one client far beyond any threshold, and
//!   the blocked path is not the one to measure).

#![allow(clippy::unwrap_used)] // a bench may panic on bad setup

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use enforcer::config::{ApiDef, Mode};
use enforcer::metrics::{Caps, Metrics};
use enforcer::pipeline::{ApiTable, Context};

fn api(id: &str, host: &str, url: &str) -> ApiDef {
    let text = format!(
        r#"{{"api_metadata":{{"url":"{url}","hostname":"{host}","servers":[{{"host":"127.0.0.1","port":8080}}]}}}}"#
    );
    ApiDef::parse(
        Path::new("bench.json"),
        id,
        &text,
        Mode::Inline,
        &mut Vec::new(),
    )
    .unwrap()
}

/// Matching a request against 50 APIs: 40 on `*` at depths 1-3, 10 on exact hosts.
fn routing(c: &mut Criterion) {
    let mut defs = Vec::new();
    for i in 0..40 {
        let url = match i % 3 {
            0 => format!("/svc{i}"),
            1 => format!("/svc{i}/v1"),
            _ => format!("/svc{i}/v1/items"),
        };
        defs.push(api(&format!("any{i}"), "*", &url));
    }
    for i in 0..10 {
        defs.push(api(
            &format!("host{i}"),
            &format!("h{i}.example.com"),
            "/api",
        ));
    }
    let prom = std::sync::Arc::new(enforcer::metrics::prom::Prom::new("inline").unwrap());
    let metrics = Metrics::new(Caps::default(), 1 << 20, Default::default(), prom);
    let enforce = enforcer::enforce::Config::from_settings(&enforcer::config::Settings::defaults(
        Path::new("."),
    ));
    let ctx = Context {
        metrics: &metrics,
        enforce: &enforce,
    };
    let table = ApiTable::new(defs, &ctx);
    c.bench_function("route/wildcard_deep", |b| {
        b.iter(|| {
            table
                .route(
                    black_box(Some("shop.example.com")),
                    black_box("/svc38/v1/items/42"),
                )
                .is_ok()
        })
    });
    c.bench_function("route/exact_host", |b| {
        b.iter(|| {
            table
                .route(
                    black_box(Some("h7.example.com:8443")),
                    black_box("/api/orders"),
                )
                .is_ok()
        })
    });
    c.bench_function("route/miss", |b| {
        b.iter(|| {
            table
                .route(
                    black_box(Some("shop.example.com")),
                    black_box("/nothing/here"),
                )
                .is_err()
        })
    });
}

#[path = "fixtures/exchange.rs"]
mod fixture;
use fixture::{PATH, exchange_app, one_exchange, rich_headers};

fn exchanges(c: &mut Criterion) {
    use enforcer::pipeline::{Decision, Exchange};
    let dir = tempfile::tempdir().unwrap();
    let app = exchange_app(dir.path());
    let pipeline = app.pipeline();
    let pipeline = &pipeline;
    let ips: Vec<String> = (0..1_000)
        .map(|i| format!("10.1.{}.{}", i / 256, i % 256))
        .collect();
    let rich: Vec<http::HeaderMap> = ips.iter().map(|ip| rich_headers(ip)).collect();
    let mut plain = http::HeaderMap::new();
    plain.insert("host", "127.0.0.1:8000".parse().unwrap());
    let uri = http::Uri::from_static(PATH);
    let peer: std::net::IpAddr = "127.0.0.1".parse().unwrap();

    let one = |headers: &http::HeaderMap| one_exchange(pipeline, headers);
    let mut identity = Exchange::new(
        Mode::Inline,
        pipeline.route(None, "/shop").unwrap(),
        http::Method::GET,
        uri.clone(),
        http::Version::HTTP_11,
        peer,
    );
    let shop = pipeline.route(None, "/shop").unwrap();
    c.bench_function("identity/capture_all", |b| {
        b.iter(|| {
            enforcer::enforce::identity::capture(&shop.def, &mut identity, black_box(&rich[7]));
        })
    });
    assert!(identity.username.is_some() && identity.api_key.is_some());

    assert_eq!(one(&rich[0]), Decision::Allow);
    c.bench_function("exchange/inline_plain", |b| {
        b.iter(|| one(black_box(&plain)))
    });
    let mut i = 0;
    c.bench_function("exchange/inline_rich", |b| {
        b.iter(|| {
            i = (i + 1) % rich.len();
            one(black_box(&rich[i]))
        })
    });
}

criterion_group!(benches, routing, exchanges);
criterion_main!(benches);
