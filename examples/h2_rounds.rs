//! Rounds of slow HTTP/2 streams against a running enforcer, printing its resident memory
//! after each: the h2 phase of `benches/soak.sh`, which tells a leak (memory that grows
//! round after round) from a plateau (memory the allocator keeps for reuse).
//!
//! Each round opens `CONNS` h2c connections with a 1-byte initial window and `STREAMS`
//! streams each, all asking for a large body, so every stream stalls on flow control with
//! its backend response in flight; holds them `HOLD_MS`, then drops the connections.
//!
//! Usage: `h2_rounds ADDR PATH PID [ROUNDS]` (env `CONNS`, `STREAMS`, `HOLD_MS`). Prints
//! `round rss_kib held_rss_kib` lines: resident memory after the round's connections closed,
//! and while they were held; round 0 is before the first.

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example may panic on bad setup

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn rss_kib(pid: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn main() {
    let mut args = std::env::args().skip(1);
    let (addr, path, pid) = (
        args.next().expect("ADDR"),
        args.next().expect("PATH"),
        args.next().expect("PID"),
    );
    let rounds: usize = args.next().and_then(|r| r.parse().ok()).unwrap_or(10);
    let (conns, streams, hold) = (env("CONNS", 20), env("STREAMS", 100), env("HOLD_MS", 2_000));
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        println!("round rss_kib held_rss_kib");
        println!("0 {} 0", rss_kib(&pid));
        for round in 1..=rounds {
            let mut held = Vec::new();
            for conn in 0..conns {
                // A fresh client address per connection and round (honoured where XFF is
                // trusted), so no client reaches the activity or in-flight limits and the
                // rounds measure the streams, not enforcement.
                let xff = format!("198.18.{}.{}", round % 256, conn % 256);
                let stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
                let (mut send, conn) =
                    hyper::client::conn::http2::Builder::new(TokioExecutor::new())
                        .initial_stream_window_size(1)
                        .initial_connection_window_size(65_535)
                        .handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                        .await
                        .unwrap();
                let driver = tokio::spawn(conn);
                let mut waiting = Vec::new();
                for _ in 0..streams {
                    let req = Request::get(format!("http://{addr}{path}"))
                        .header("x-forwarded-for", &xff)
                        .body(Empty::new())
                        .unwrap();
                    if send.ready().await.is_err() {
                        break;
                    }
                    let fut = send.send_request(req);
                    waiting.push(tokio::spawn(async move {
                        // Take the head, never read the body: the stream stalls.
                        let resp = fut.await;
                        tokio::time::sleep(Duration::from_secs(3600)).await;
                        drop(resp);
                    }));
                }
                held.push((driver, waiting, send));
            }
            tokio::time::sleep(Duration::from_millis(hold as u64)).await;
            let held_rss = rss_kib(&pid);
            for (driver, waiting, send) in held {
                for w in waiting {
                    w.abort();
                }
                drop(send);
                driver.abort();
            }
            // Let enforcer notice the closed connections and drop their state.
            tokio::time::sleep(Duration::from_millis(1_000)).await;
            println!("{round} {} {held_rss}", rss_kib(&pid));
        }
    });
}
