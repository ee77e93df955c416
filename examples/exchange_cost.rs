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

use enforcer::pipeline::Decision;

#[path = "../benches/fixtures/exchange.rs"]
mod fixture;
use fixture::{exchange_app, one_exchange, rich_headers};

fn main() {
    let mut args = std::env::args().skip(1);
    let kind = args.next().unwrap_or_else(|| "plain".into());
    let n: usize = args.next().map_or(10_000, |s| s.parse().expect("a count"));
    let dir = tempfile::tempdir().unwrap();
    let app = exchange_app(dir.path());
    let pipeline = app.pipeline();
    let headers: Vec<http::HeaderMap> = if kind == "rich" {
        (0..1_000)
            .map(|i| rich_headers(&format!("10.1.{}.{}", i / 256, i % 256)))
            .collect()
    } else {
        let mut plain = http::HeaderMap::new();
        plain.insert("host", "127.0.0.1:8000".parse().unwrap());
        vec![plain]
    };
    let mut allowed = 0usize;
    for i in 0..n {
        let decision = one_exchange(&pipeline, black_box(&headers[i % headers.len()]));
        allowed += usize::from(decision == Decision::Allow);
    }
    println!("{kind}: {n} exchanges, {allowed} allowed");
}
