//! Measures what each structure keyed by client-chosen values really costs per entry
//! (resident memory, allocator overhead included), to calibrate the byte accounting of the
//! memory budget (`src/memory.rs`). Run: `cargo run --release --example footprint`.
//!
//! For each structure it records N distinct values (as a flood with every identifier new
//! would) and prints the growth of the resident set divided by N.

#![allow(clippy::unwrap_used, clippy::expect_used)] // an example may panic on bad setup

use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

use enforcer::enforce::detect::{ApiDetect, Facts};
use enforcer::metrics::activity::{Activity, ActivityCaps, Request};
use enforcer::metrics::{ApiRecorder, Caps, Observation, Os};

fn rss() -> i64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let pages: i64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    pages * 4096
}

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn measure(name: &str, n: u32, f: impl FnOnce(u32)) {
    let before = rss();
    f(n);
    let after = rss();
    println!(
        "{name:<40} {:>8.0} bytes per entry ({n} entries, {:.1} MB)",
        (after - before) as f64 / f64::from(n),
        (after - before) as f64 / 1e6
    );
}

fn main() {
    let now = 1_800_000_000;
    // Detection windows: `n` identifiers, each seen once.
    let windows = |n: u32, facts: &dyn Fn(u32) -> (IpAddr, Option<Arc<str>>)| {
        let d = ApiDetect::default();
        let t = enforcer::config::conf::IoaThresholds {
            max_clients: usize::MAX,
            ..Default::default()
        };
        for i in 0..n {
            let (ip, token) = facts(i);
            let f = Facts {
                ip,
                token,
                cookie: None,
                api_key: None,
                username: None,
                error: false,
                path_hash: 0,
                login_attempt: false,
                login_failure: false,
                bytes_out: 100,
            };
            d.observe(&t, &f, now);
        }
        std::mem::forget(d);
    };
    measure("detection window (ip)", 200_000, |n| {
        windows(n, &|i| (ip(i), None))
    });
    measure("detection window (token)", 200_000, |n| {
        windows(n, &|i| (ip(0), Some(Arc::from(format!("token-{i:08}")))))
    });
    measure("activity client (ip, one bucket)", 200_000, |n| {
        let a = Activity::new(ActivityCaps {
            clients: u32::MAX,
            memory: u64::MAX,
        });
        for i in 0..n {
            a.record(
                &Request {
                    time: now,
                    api: "shop",
                    method: "GET",
                    path: "/shop/items",
                    status: Some(200),
                    os: Os::UNKNOWN,
                    ip: ip(i),
                    token: None,
                    cookie: None,
                    username: None,
                    api_key: None,
                },
                now,
            );
        }
        let (used, _) = a.memory();
        println!(
            "  (accounted {:.0} bytes per entry)",
            used as f64 / f64::from(n)
        );
        std::mem::forget(a);
    });
    measure("api_metrics values (ip+session+path+ua)", 100_000, |n| {
        let caps = Caps {
            sessions: u32::MAX,
            ips: u32::MAX,
            paths: u32::MAX,
            user_agents: u32::MAX,
            combinations: u32::MAX,
        };
        let r = ApiRecorder::new("shop", caps, u64::MAX);
        for i in 0..n {
            let session = format!("session-{i:08}");
            let path = format!("/shop/p{i:08}");
            let ua = format!("agent/{i:08}");
            r.record_at(
                &Observation {
                    time: now,
                    method: &http::Method::GET,
                    path: &path,
                    client_ip: ip(i),
                    session: Some(&session),
                    user_agent: Some(&ua),
                    status: Some(200),
                    server: Some("127.0.0.1:80"),
                    request_bytes: 0,
                    response_bytes: 10,
                    latency_us: 100,
                },
                now,
            );
        }
        let (used, _) = r.memory();
        println!(
            "  (accounted {:.0} bytes per request)",
            used as f64 / f64::from(n)
        );
        std::mem::forget(r);
    });
}
