//! What every worker touches on the request path, alone and with both cores at once (the
//! ratio of the two shows whether workers contend). Run: `cargo bench --bench contention`.
//!
//! * `detect/observe/{one_thread,two_threads}`: one completed exchange fed to one API's
//!   detector (each thread its own 500 client IPs); the time is per exchange per thread.
//! * `users/record/{one_thread,two_threads}`: one exchange with a username (500 names) into
//!   the current hour of user activity.
//! * `lists/cidr_{1k,100k}/{miss,hit}`: an allow/deny check of an address against a deny
//!   list of 1,000 or 100,000 CIDR ranges, missing every range or inside the last one.
//! * `exchange/{one_thread,two_threads}`: one whole inline exchange through the pipeline
//!   (route, `on_request`, `on_response`, `on_complete`: every identifier, recording,
//!   detection, Prometheus) on one shared `App`, each thread its own 500 clients: the
//!   pipeline's share of what two workers cost more than one; `two_threads_own_apps`, the
//!   same with an `App` per thread (nothing shared), is the control.

#![allow(clippy::unwrap_used)] // a bench may panic on bad setup

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use enforcer::config::conf::IoaThresholds;
use enforcer::enforce::detect::{ApiDetect, Facts};
use enforcer::enforce::lists::{Entry, Identifier, ListKind, Lists, Source, Subject};
use enforcer::metrics::users::{Event, Users};

const NOW: i64 = 1_700_000_000;

/// Runs `op(thread, i)` `iters` times on each of `threads` threads started together;
/// returns the slowest thread's time (so the figure is per operation per thread).
fn on_threads(threads: usize, iters: u64, op: Arc<dyn Fn(usize, usize) + Send + Sync>) -> Duration {
    let barrier = Arc::new(Barrier::new(threads));
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let (barrier, op) = (barrier.clone(), op.clone());
            std::thread::spawn(move || {
                barrier.wait();
                let start = Instant::now();
                for i in 0..iters as usize {
                    op(t, i);
                }
                start.elapsed()
            })
        })
        .collect();
    handles
        .into_iter()
        .map(|h| h.join().unwrap())
        .max()
        .unwrap_or(Duration::ZERO)
}

fn facts(ip: IpAddr) -> Facts {
    Facts {
        ip,
        token: None,
        cookie: None,
        api_key: None,
        username: None,
        error: false,
        path_hash: 7,
        login_attempt: false,
        login_failure: false,
        bytes_out: 2_048,
    }
}

fn detection(c: &mut Criterion) {
    let t = IoaThresholds::default();
    let detect = Arc::new(ApiDetect::default());
    // Thread `t` sends from 10.t.x.y; 500 clients each, windows already created.
    let clients: Arc<Vec<Vec<Facts>>> = Arc::new(
        (0..2u8)
            .map(|t| {
                (0..500u16)
                    .map(|i| facts(IpAddr::from([10, t, (i / 250) as u8, (i % 250) as u8])))
                    .collect()
            })
            .collect(),
    );
    for f in clients.iter().flatten() {
        detect.observe(&t, f, NOW);
    }
    let mut group = c.benchmark_group("detect/observe");
    let mut i = 0usize;
    group.bench_function("one_thread", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(detect.observe(&t, &clients[0][i % 500], NOW))
        })
    });
    let op: Arc<dyn Fn(usize, usize) + Send + Sync> = {
        let (detect, clients, t) = (detect.clone(), clients.clone(), t.clone());
        Arc::new(move |th, i| {
            black_box(detect.observe(&t, &clients[th][i % 500], NOW));
        })
    };
    group.bench_function("two_threads", |b| {
        b.iter_custom(|iters| on_threads(2, iters, op.clone()))
    });
    group.finish();
}

fn users(c: &mut Criterion) {
    let users = Arc::new(Users::new());
    let names: Arc<Vec<String>> = Arc::new((0..500).map(|i| format!("user-{i:04}")).collect());
    for n in names.iter() {
        users.record(NOW, None, Some(n), NOW);
    }
    let mut group = c.benchmark_group("users/record");
    let mut i = 0usize;
    group.bench_function("one_thread", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            users.record(NOW, None, Some(black_box(&names[i % 500])), NOW)
        })
    });
    let op: Arc<dyn Fn(usize, usize) + Send + Sync> = {
        let (users, names) = (users.clone(), names.clone());
        Arc::new(move |th, i| {
            let event = (i % 50 == 0).then_some(Event::SignOnSuccess);
            users.record(NOW, event, Some(&names[(i * 2 + th) % 500]), NOW)
        })
    };
    group.bench_function("two_threads", |b| {
        b.iter_custom(|iters| on_threads(2, iters, op.clone()))
    });
    group.finish();
}

fn cidr(c: &mut Criterion) {
    for (name, n) in [("lists/cidr_1k", 1_000u32), ("lists/cidr_100k", 100_000)] {
        let lists = Lists::new(1_000_000);
        // Ranges of /24 to /28 spread over 11.0.0.0 upwards, a few hundred addresses apart.
        let nets: Vec<(Identifier, Entry)> = (0..n)
            .map(|i| {
                let base = u32::from_be_bytes([11, 0, 0, 0]) + i * 512;
                let len = 24 + (i % 5) as u8;
                let net = ipnet::Ipv4Net::new(base.into(), len).unwrap().trunc();
                let entry = Entry {
                    source: Source::Manual,
                    added: 0,
                    expires: None,
                    reason: None,
                };
                (Identifier::Net(net.into()), entry)
            })
            .collect();
        let last = u32::from_be_bytes([11, 0, 0, 0]) + (n - 1) * 512 + 3;
        lists.add(ListKind::Deny, nets).unwrap();
        let subject = |ip: IpAddr| Subject {
            ip,
            cookie: None,
            token: None,
            api_key: None,
            username: None,
        };
        let (miss, hit) = (
            subject(IpAddr::from([9, 9, 9, 9])),
            subject(IpAddr::from(last.to_be_bytes())),
        );
        assert!(lists.denied(&miss, NOW).is_none() && lists.denied(&hit, NOW).is_some());
        let mut group = c.benchmark_group(name);
        group.bench_function("miss", |b| {
            b.iter(|| black_box(lists.denied(black_box(&miss), NOW)))
        });
        group.bench_function("hit", |b| {
            b.iter(|| black_box(lists.denied(black_box(&hit), NOW)))
        });
        group.finish();
    }
}

#[path = "fixtures/exchange.rs"]
mod fixture;

fn exchange(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let app = Arc::new(fixture::exchange_app(dir.path()));
    // Thread `t`'s clients come from 10.t.x.y.
    let heads: Arc<Vec<Vec<http::HeaderMap>>> = Arc::new(
        (0..2u8)
            .map(|t| {
                (0..500u16)
                    .map(|i| fixture::rich_headers(&format!("10.{t}.{}.{}", i / 250, i % 250)))
                    .collect()
            })
            .collect(),
    );
    for h in heads.iter().flatten() {
        fixture::one_exchange(&app.pipeline(), h);
    }
    let mut group = c.benchmark_group("exchange");
    let mut i = 0usize;
    group.bench_function("one_thread", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(fixture::one_exchange(&app.pipeline(), &heads[0][i % 500]))
        })
    });
    let op: Arc<dyn Fn(usize, usize) + Send + Sync> = {
        let (app, heads) = (app.clone(), heads.clone());
        Arc::new(move |th, i| {
            black_box(fixture::one_exchange(&app.pipeline(), &heads[th][i % 500]));
        })
    };
    group.bench_function("two_threads", |b| {
        b.iter_custom(|iters| on_threads(2, iters, op.clone()))
    });
    // The control: two threads, each with an `App` of its own (nothing shared). What
    // `two_threads` costs over this is sharing; what this costs over `one_thread` is the
    // machine (two busy vCPUs, shared caches).
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let apps: Arc<Vec<enforcer::app::App>> = Arc::new(
        dirs.iter()
            .map(|d| fixture::exchange_app(d.path()))
            .collect(),
    );
    for (t, app) in apps.iter().enumerate() {
        for h in &heads[t] {
            fixture::one_exchange(&app.pipeline(), h);
        }
    }
    let op: Arc<dyn Fn(usize, usize) + Send + Sync> = {
        let (apps, heads) = (apps.clone(), heads.clone());
        Arc::new(move |th, i| {
            black_box(fixture::one_exchange(
                &apps[th].pipeline(),
                &heads[th][i % 500],
            ));
        })
    };
    group.bench_function("two_threads_own_apps", |b| {
        b.iter_custom(|iters| on_threads(2, iters, op.clone()))
    });
    group.finish();
}

criterion_group!(benches, detection, users, cidr, exchange);
criterion_main!(benches);
