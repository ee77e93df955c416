//! The pipeline's own cost per exchange in instructions, which a busy machine does not
//! blur as it blurs time: runs N plain or rich inline exchanges through the pipeline (as
//! `benches/pipeline.rs` does: route, on_request, on_response, on_complete) and nothing else.
//! Count with valgrind, twice, and take the difference:
//!
//! ```sh
//! cargo build --release --example exchange_cost
//! for n in 20000 40000; do
//!   valgrind --tool=callgrind --callgrind-out-file=/dev/null \
//!     target/release/examples/exchange_cost rich $n 2>&1 | grep 'refs:'
//! done   # (Ir at 40000 - Ir at 20000) / 20000 = instructions per exchange
//! ```

#![allow(clippy::unwrap_used, clippy::expect_used)] // a measuring tool may panic on bad setup

use std::hint::black_box;
use std::path::Path;

use enforcer::config::Mode;
use enforcer::pipeline::{Decision, Exchange};

const JWT: &str =
    "eyJhbGciOiJub25lIn0.eyJ1c2VybmFtZSI6ImFiYyIsImNsaWVudF9pZCI6ImNhYmZzZ2hoYnNhZyJ9.";

fn app(dir: &Path) -> enforcer::app::App {
    let certs = Path::new(env!("CARGO_MANIFEST_DIR")).join("certs");
    let conf = format!(
        "mode=inline\nenable_xff=true\nenable_ase_detected_attack=false\ndata_dir=data\ntls_cert_path={}\ntls_key_path={}\n",
        certs.join("server.crt").display(),
        certs.join("server.key").display()
    );
    std::fs::write(dir.join("ase.conf"), conf).unwrap();
    std::fs::create_dir_all(dir.join("api")).unwrap();
    std::fs::write(
        dir.join("api/shop.json"),
        r#"{"api_metadata":{"protocol":"http","url":"/shop","hostname":"*","cookie":"JSESSIONID",
            "oauth2_access_token":true,"apikey_header":"x-api-key","login_url":"/shop/login",
            "enable_blocking":true,
            "jwt":{"location":"h:authorization:bearer","username":"username","clientid":"client_id"},
            "servers":[{"host":"127.0.0.1","port":8080}]}}"#,
    )
    .unwrap();
    enforcer::app::App::new(enforcer::config::Config::load(dir).unwrap()).unwrap()
}

fn rich(ip: &str) -> http::HeaderMap {
    let mut h = http::HeaderMap::new();
    h.insert("host", "shop.example.com".parse().unwrap());
    h.insert("x-forwarded-for", ip.parse().unwrap());
    h.insert(
        "cookie",
        "JSESSIONID=0123456789abcdef; theme=dark".parse().unwrap(),
    );
    h.insert("authorization", format!("Bearer {JWT}").parse().unwrap());
    h.insert("x-api-key", "zhxuetuay9cy84mbngpx4smj".parse().unwrap());
    h.insert(
        "user-agent",
        "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15"
            .parse()
            .unwrap(),
    );
    h
}

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "plain".into());
    let n: usize = args.next().map_or(10_000, |s| s.parse().expect("a count"));
    let dir = tempfile::tempdir().unwrap();
    let app = app(dir.path());
    let pipeline = app.pipeline();
    let headers: Vec<http::HeaderMap> = if kind == "rich" {
        (0..1_000)
            .map(|i| rich(&format!("10.1.{}.{}", i / 256, i % 256)))
            .collect()
    } else {
        let mut plain = http::HeaderMap::new();
        plain.insert("host", "127.0.0.1:8000".parse().unwrap());
        vec![plain]
    };
    let uri: http::Uri = "/shop/items/42?page=2".parse().unwrap();
    let peer: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    let empty = http::HeaderMap::new();
    let mut allowed = 0usize;
    for i in 0..n {
        let api = pipeline
            .route(Some("shop.example.com"), uri.path())
            .unwrap();
        let mut ex = Exchange::new(
            Mode::Inline,
            api,
            http::Method::GET,
            uri.clone(),
            http::Version::HTTP_11,
            peer,
        );
        let decision = pipeline.on_request(&mut ex, black_box(&headers[i % headers.len()]));
        pipeline.on_response(&mut ex, http::StatusCode::OK, &empty);
        ex.response_bytes = 2;
        pipeline.on_complete(ex);
        allowed += usize::from(decision == Decision::Allow);
    }
    println!("{kind}: {n} exchanges, {allowed} allowed");
}
