//! Client activity over six months. Run: `cargo bench --bench activity`.
//!
//! Setup: 100,000 clients (IP, token and username each) over 182 days; every day 6,000 of
//! them make 4 requests each on one of 20 APIs and 200 endpoints, so each client is active
//! on about 11 days. The last 8 days land in hour buckets, the rest in day buckets, as
//! they would after roll-up.
//!
//! * `record/one_request_1k_clients`, `_100k_clients`: recording one request (three client
//!   identifiers and the API) into the current hour, cycling through 1,000 clients (hot in
//!   cache, like real repeat traffic) or all 100,000 (every access a cache miss).
//! * `client_activity/6months` and `/day`: the client activity report for one client.
//! * `attacks/6months`: the attack management list with 2,000 IoA-raising clients.

#![allow(clippy::unwrap_used)] // a bench may panic on bad setup

use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use enforcer::enforce::detect::Ioa;
use enforcer::metrics::Os;
use enforcer::metrics::activity::{Activity, ActivityCaps, ClientKind, Request, WordRef};
use enforcer::reports::activity::{AttackQuery, Period, attacks, client_activity};

const NOW: i64 = 1_800_000_000;
const CLIENTS: u32 = 100_000;
const DAYS: i64 = 182;
const ACTIVE_PER_DAY: u32 = 6_000;

fn ip(i: u32) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i))
}

fn build() -> (Activity, Vec<String>, Vec<String>, Vec<String>) {
    let a = Activity::new(ActivityCaps {
        clients: 1_000_000,
        memory: 8 << 30,
    });
    let tokens: Vec<String> = (0..CLIENTS).map(|i| format!("token-{i:08x}")).collect();
    let users: Vec<String> = (0..CLIENTS).map(|i| format!("user{i}")).collect();
    let apis: Vec<String> = (0..20).map(|i| format!("api{i}")).collect();
    let paths: Vec<String> = (0..200).map(|i| format!("/api/v1/items/{i}")).collect();
    let ios = Os::named("IOS").unwrap();
    let mut x: u32 = 12345;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        x
    };
    for day in 0..DAYS {
        let base = NOW - (DAYS - day) * 86_400;
        for _ in 0..ACTIVE_PER_DAY {
            let c = next() % CLIENTS;
            for k in 0..4 {
                let t = base + i64::from(next() % 86_400);
                a.record(
                    &Request {
                        time: t,
                        api: &apis[(c % 20) as usize],
                        method: if k == 3 { "POST" } else { "GET" },
                        path: &paths[(next() % 200) as usize],
                        status: Some(if next().is_multiple_of(10) { 404 } else { 200 }),
                        os: ios,
                        ip: ip(c),
                        token: Some(&tokens[c as usize]),
                        cookie: None,
                        username: Some(&users[c as usize]),
                        api_key: None,
                    },
                    NOW,
                );
            }
            if c.is_multiple_of(50) {
                a.record_ioa(
                    (ClientKind::Ip, WordRef::Ip(ip(c))),
                    &apis[(c % 20) as usize],
                    Ioa::ApiProbing,
                    base + 100,
                );
            }
        }
    }
    (a, tokens, users, apis)
}

fn bench(c: &mut Criterion) {
    let started = Instant::now();
    let (a, tokens, users, apis) = build();
    let (used, _) = a.memory();
    eprintln!(
        "built {} days x {} active clients/day in {:.1}s; activity memory {:.0} MB",
        DAYS,
        ACTIVE_PER_DAY,
        started.elapsed().as_secs_f64(),
        used as f64 / 1e6
    );
    // The busiest client of the run, so the report has something to add up.
    let probe = (0..CLIENTS)
        .find(|i| {
            client_activity(
                &a,
                ClientKind::Ip,
                &ip(*i).to_string(),
                Period::SixMonths,
                NOW,
                false,
            )
            .is_some()
        })
        .unwrap();
    let id = ip(probe).to_string();

    let ios = Os::named("IOS").unwrap();
    let mut g = c.benchmark_group("activity");
    g.measurement_time(Duration::from_secs(5));
    for (name, spread) in [
        ("record/one_request_1k_clients", 1_000),
        ("record/one_request_100k_clients", CLIENTS),
    ] {
        g.bench_function(name, |b| {
            let mut i = 0u32;
            b.iter(|| {
                i = (i + 1) % spread;
                a.record(
                    &Request {
                        time: NOW - 10,
                        api: &apis[(i % 20) as usize],
                        method: "GET",
                        path: "/api/v1/items/7",
                        status: Some(200),
                        os: ios,
                        ip: ip(i),
                        token: Some(&tokens[i as usize]),
                        cookie: None,
                        username: Some(&users[i as usize]),
                        api_key: None,
                    },
                    NOW,
                )
            })
        });
    }
    g.bench_function("client_activity/6months", |b| {
        b.iter(|| {
            black_box(client_activity(
                &a,
                ClientKind::Ip,
                &id,
                Period::SixMonths,
                NOW,
                false,
            ))
        })
    });
    g.bench_function("client_activity/day", |b| {
        b.iter(|| {
            black_box(client_activity(
                &a,
                ClientKind::Ip,
                &id,
                Period::Day,
                NOW,
                false,
            ))
        })
    });
    g.bench_function("attacks/6months", |b| {
        b.iter(|| {
            black_box(attacks(
                &a,
                Period::SixMonths,
                NOW,
                &AttackQuery::default(),
                |_, _| false,
            ))
        })
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
