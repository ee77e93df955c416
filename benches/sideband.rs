//! Sideband decision cost. Run: `cargo bench --bench sideband`.
//!
//! `sideband/decide_request_call`: decode one ~700-byte `/ase/request` body and decide it
//! (route, identities, enforcement, recording), as the handler does once the body is read.
//! `sideband/decode_quick` and `sideband/decode_serde`: the decoding alone, by the quick
//! reader of the usual shape (`src/sideband/quick.rs`) and by serde.
//! `sideband/headers_fields` and `sideband/headers_map`: the call's header list checked and
//! read where the pipeline reads it (host, authorization, user agent, cookie, API key,
//! content length), in place (`wire::Fields`, what enforcer does) and through a `HeaderMap`
//! built from the list (what it did before; the reference).

#![allow(clippy::unwrap_used)] // a bench may panic on bad setup

use std::hint::black_box;
use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use enforcer::app::App;
use enforcer::config::Config;
use enforcer::sideband::calls::decide;
use enforcer::sideband::wire::{HeaderList, Reply};
use enforcer::vocab::Headers;

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

/// The header reads of one request phase.
fn reads(h: &impl Headers) -> usize {
    use http::header::{AUTHORIZATION, CONTENT_LENGTH, COOKIE, HOST, USER_AGENT};
    let key = http::HeaderName::from_static("x-api-key");
    h.text(&HOST).map_or(0, str::len)
        + h.all(&AUTHORIZATION).count()
        + h.value(&USER_AGENT).map_or(0, |v| v.len())
        + h.all(&COOKIE).count()
        + h.all(&key).count()
        + usize::from(h.has(&CONTENT_LENGTH))
}

fn headers(c: &mut Criterion) {
    let body = bytes::Bytes::from_static(BODY);
    let list = || {
        enforcer::sideband::quick::request(&body)
            .unwrap()
            .headers
            .unwrap()
    };
    let map = |list: HeaderList<'_>| {
        let mut map = http::HeaderMap::with_capacity(list.0.len());
        for (name, value) in &list.0 {
            let name = http::HeaderName::from_bytes(name.as_str().trim().as_bytes()).unwrap();
            let value =
                http::HeaderValue::from_maybe_shared(body.slice_ref(value.as_str().as_bytes()));
            map.append(name, value.unwrap());
        }
        map
    };
    assert_eq!(
        reads(&list().into_fields(&body).unwrap()),
        reads(&map(list()))
    );
    // The decoding is setup, not measured: only the headers' part differs.
    c.bench_function("sideband/headers_fields", |b| {
        b.iter_batched(
            list,
            |l| reads(&l.into_fields(&body).unwrap()),
            BatchSize::SmallInput,
        )
    });
    c.bench_function("sideband/headers_map", |b| {
        b.iter_batched(list, |l| reads(&map(l)), BatchSize::SmallInput)
    });
}

criterion_group!(benches, deciding, decoding, headers);
criterion_main!(benches);
