//! Micro-benchmarks of the pipeline's hot pieces. Run: `cargo bench --bench pipeline`.

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
    let metrics = Metrics::new(Caps::default(), 1 << 20, Default::default());
    let enforce = enforcer::enforce::Config::from_settings(&enforcer::config::Settings::defaults(
        Path::new("."),
    ));
    let prom = enforcer::metrics::prom::Prom::new("inline").unwrap();
    let ctx = Context {
        metrics: &metrics,
        enforce: &enforce,
        prom: &prom,
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

criterion_group!(benches, routing);
criterion_main!(benches);
