//! Recording and reporting costs. Run: `cargo bench --bench metrics`.
//!
//! * `record/one_thread`: one observation into the current minute bucket, from a realistic
//!   mix (1,000 sessions, 20 paths, 50 IPs, 5 user agents).
//! * `record/two_threads_contending`: both cores recording into the same bucket at once;
//!   the time is per observation per thread.
//! * `report/api_metrics_1m_requests_10k_sessions`: snapshot + report over an hour holding
//!   1,000,000 requests from 10,000 sessions.
//! * `agent/classify`: one User-Agent classified (browser group and OS), as a bucket does
//!   once per distinct agent.

#![allow(clippy::unwrap_used)] // a bench may panic on bad setup

use std::hint::black_box;
use std::net::IpAddr;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use enforcer::metrics::{Agent, ApiRecorder, Caps, Observation, unix_secs};
use enforcer::reports::Window;
use enforcer::reports::api_metrics::{self, UserAgents};
use http::Method;

const UAS: [&str; 5] = [
    "DOWNLOAD",
    "curl/8.4.0",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0 Safari/537.36",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Mobile/15E148",
];

struct Mix {
    sessions: Vec<String>,
    paths: Vec<String>,
    ips: Vec<IpAddr>,
    methods: [Method; 4],
}

impl Mix {
    fn new(sessions: usize) -> Mix {
        Mix {
            sessions: (0..sessions).map(|i| format!("session-{i:06}")).collect(),
            paths: (0..20).map(|i| format!("/shop/items/{i}")).collect(),
            ips: (0..50)
                .map(|i| IpAddr::from([10, 0, (i / 250) as u8, (i % 250) as u8]))
                .collect(),
            methods: [Method::GET, Method::POST, Method::PUT, Method::DELETE],
        }
    }

    fn obs(&self, i: usize, time: i64) -> Observation<'_> {
        Observation {
            time,
            method: &self.methods[i % 4],
            path: &self.paths[i % self.paths.len()],
            client_ip: self.ips[i % self.ips.len()],
            // One request in ten has no session; the others go round every session in turn.
            session: (!i.is_multiple_of(10))
                .then(|| self.sessions[(i - i / 10 - 1) % self.sessions.len()].as_str()),
            user_agent: Some(UAS[i % UAS.len()]),
            status: Some(if i.is_multiple_of(7) { 404 } else { 200 }),
            server: Some("10.1.0.5:8080"),
            request_bytes: 120,
            response_bytes: 2_048,
            latency_us: 850,
        }
    }
}

fn recording(c: &mut Criterion) {
    let mix = Mix::new(1_000);
    let recorder = ApiRecorder::new("bench", Caps::default(), 256 << 20);
    let now = unix_secs(std::time::SystemTime::now());
    // Warm the bucket so the bench measures the steady state, not first inserts.
    for i in 0..100_000 {
        recorder.record_at(&mix.obs(i, now), now);
    }
    let mut i = 0usize;
    c.bench_function("record/one_thread", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            recorder.record_at(black_box(&mix.obs(i, now)), now);
        })
    });

    let shared = Arc::new((recorder, mix));
    c.bench_function("record/two_threads_contending", |b| {
        b.iter_custom(|iters| {
            let barrier = Arc::new(Barrier::new(2));
            let handles: Vec<_> = (0..2)
                .map(|t| {
                    let (shared, barrier) = (shared.clone(), barrier.clone());
                    std::thread::spawn(move || {
                        let (recorder, mix) = &*shared;
                        barrier.wait();
                        let start = Instant::now();
                        for i in 0..iters as usize {
                            recorder.record_at(black_box(&mix.obs(i * 2 + t, now)), now);
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
        })
    });
}

fn classifying(c: &mut Criterion) {
    let mut i = 0usize;
    c.bench_function("agent/classify", |b| {
        b.iter(|| {
            i = i.wrapping_add(1);
            black_box(Agent::of(black_box(UAS[i % UAS.len()])))
        })
    });
}

fn reporting(c: &mut Criterion) {
    let mix = Mix::new(10_000);
    let recorder = ApiRecorder::new("bench", Caps::default(), 1 << 30);
    let now = unix_secs(std::time::SystemTime::now());
    let hour = now - now.rem_euclid(3_600) - 3_600;
    for i in 0..1_000_000usize {
        // Spread over the hour's sixty minute buckets.
        recorder.record_at(&mix.obs(i, hour + (i % 3_600) as i64), now);
    }
    let window = Window {
        from: jiff::Timestamp::from_second(hour).unwrap(),
        to: jiff::Timestamp::from_second(hour + 3_600).unwrap(),
    };
    let tz = jiff::tz::TimeZone::UTC;
    let check = api_metrics::build(
        "bench",
        "/shop",
        &window,
        &tz,
        &recorder.snapshot(hour, hour + 3_600),
        UserAgents::Classes,
    );
    assert_eq!(check.req_resp_summary.total_requests, 1_000_000);
    assert_eq!(check.req_resp_summary.sessions, 10_000);
    let mut group = c.benchmark_group("report");
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(20));
    group.bench_function("api_metrics_1m_requests_10k_sessions", |b| {
        b.iter(|| {
            let snap = recorder.snapshot(hour, hour + 3_600);
            black_box(api_metrics::build(
                "bench",
                "/shop",
                &window,
                &tz,
                &snap,
                UserAgents::Classes,
            ))
        })
    });
    group.finish();
}

criterion_group!(benches, recording, classifying, reporting);
criterion_main!(benches);
