//! Sideband decision cost. Run: `cargo bench --bench sideband`.
//!
//! `sideband/decide_request_call`: decode one ~700-byte `/ase/request` body and decide it
//! (route, identities, enforcement, recording), as the handler does once the body is read.
//! `sideband/decode_quick` and `sideband/decode_serde`: the decoding alone, by the quick
//! reader of the usual shape (`src/sideband/quick.rs`) and by serde.

#![allow(clippy::unwrap_used)] // a bench may panic on bad setup

use std::hint::black_box;
use std::path::Path;

use criterion::{Criterion, criterion_group, criterion_main};
use enforcer::app::App;
use enforcer::config::Config;
use enforcer::sideband::calls::decide;
use enforcer::sideband::wire::Reply;

const BODY: &[u8] = include_bytes!("sideband_request.json");

fn app() -> (App, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let conf = format!(
        "mode=sideband\ndata_dir=data\ntls_cert_path={}\ntls_key_path={}\n",
        certs.join("server.crt").display(),
        certs.join("server.key").display()
    );
    std::fs::write(dir.path().join("ase.conf"), conf).unwrap();
    std::fs::create_dir(dir.path().join("api")).unwrap();
    std::fs::write(
        dir.path().join("api/shop.json"),
        r#"{"api_metadata":{"protocol":"http","url":"/shopapi","hostname":"*","cookie":"JSESSIONID",
            "oauth2_access_token":true,"apikey_header":"x-api-key"}}"#,
    )
    .unwrap();
    let app = App::new(Config::load(dir.path()).unwrap()).unwrap();
    (app, dir)
}

fn deciding(c: &mut Criterion) {
    let (app, _dir) = app();
    let body = bytes::Bytes::from_static(BODY);
    assert_eq!(
        decide(&app, None, &body),
        Reply::Allow { api: "shop".into() }
    );
    c.bench_function("sideband/decide_request_call", |b| {
        b.iter(|| decide(black_box(&app), None, black_box(&body)))
    });
}

fn decoding(c: &mut Criterion) {
    assert!(enforcer::sideband::quick::request(BODY).is_some());
    c.bench_function("sideband/decode_quick", |b| {
        b.iter(|| enforcer::sideband::quick::request(black_box(BODY)))
    });
    c.bench_function("sideband/decode_serde", |b| {
        b.iter(|| enforcer::sideband::wire::parse_request(black_box(BODY)))
    });
}

criterion_group!(benches, deciding, decoding);
criterion_main!(benches);
