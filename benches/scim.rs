//! SCIM filters and the `userActivities` report. Run: `cargo bench --bench scim`.
//!
//! * `parse/seed_filter`, `parse/nested`: parsing the seed's filter, and a 12-term filter
//!   with value paths, `not`, `in` and parentheses.
//! * `evaluate/nested`: evaluating the parsed nested filter against a resource.
//! * `compile/seed_filter`: filter → the buckets it selects (checking, window, candidate
//!   buckets, each evaluated).
//! * `record/sign_on`: recording one sign-on with a username into the current hour
//!   (5,000 users cycling, so the hour's distinct count is an estimate).
//! * `report/30days_day`, `report/200days_week`: building the report from 200 days of
//!   hours, each with 300 sign-ons by 200 of 5,000 users.

#![allow(clippy::unwrap_used)] // a bench may panic on bad setup

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use enforcer::metrics::users::{Event, HOUR, Users};
use enforcer::reports::user_activities::{Href, Links, Query, build, compile};
use enforcer::scim::parse::parse;
use enforcer::scim::{AttrPath, Resource, Value};

const NOW: i64 = 1_800_000_000;
const SEED: &str =
    r#"startDate eq "2018-02-17T09:10:12-04:00" and endDate eq "2018-02-23T09:10:12-04:00""#;
const NESTED: &str = r#"(userName sw "a" or userName ew "z") and not (active eq false) and emails[type eq "work" and value co "@example.com"] and meta.created ge "2018-01-01T00:00:00Z" and title pr and x in ["a", "b", 3] or (n gt 5 and n le 10 and name.givenName ne "Bob")"#;

struct User;
impl Resource for User {
    fn get(&self, path: &AttrPath) -> Option<Value> {
        let v = match (path.name.to_ascii_lowercase().as_str(), path.sub.as_deref()) {
            ("username", None) => Value::Str("anna".into()),
            ("active", None) => Value::Bool(true),
            ("type", None) => Value::Str("work".into()),
            ("value", None) => Value::Str("anna@example.com".into()),
            ("meta", Some("created")) => Value::Str("2019-05-01T10:00:00Z".into()),
            ("title", None) => Value::Str("eng".into()),
            ("x", None) => Value::Str("b".into()),
            ("n", None) => Value::Num("7".into()),
            _ => return None,
        };
        Some(v)
    }
}

fn bench(c: &mut Criterion) {
    let mut g = c.benchmark_group("parse");
    g.bench_function("seed_filter", |b| {
        b.iter(|| parse(black_box(SEED)).unwrap())
    });
    g.bench_function("nested", |b| b.iter(|| parse(black_box(NESTED)).unwrap()));
    g.finish();

    let nested = parse(NESTED).unwrap();
    assert!(nested.matches(&User));
    c.bench_function("evaluate/nested", |b| {
        b.iter(|| black_box(&nested).matches(&User))
    });
    let seed = parse(SEED).unwrap();
    c.bench_function("compile/seed_filter", |b| {
        b.iter(|| compile(Some(black_box(&seed)), None, NOW).unwrap())
    });

    let names: Vec<String> = (0..5_000).map(|i| format!("user-{i}")).collect();
    let live = Users::new();
    let mut i = 0usize;
    c.bench_function("record/sign_on", |b| {
        b.iter(|| {
            i = (i + 1) % names.len();
            live.record(NOW, Some(Event::SignOnSuccess), Some(&names[i]), NOW);
        })
    });

    let users = Users::new();
    let hours = 200 * 24;
    for h in 0..hours {
        let t = NOW - h * HOUR;
        for k in 0..300 {
            let name = &names[((h * 37 + k * 13) % 5_000) as usize];
            let event = match k % 10 {
                0 => Event::SignOnFailure,
                1 => Event::PasswordReset,
                _ => Event::SignOnSuccess,
            };
            // 200 distinct users an hour: 300 requests over every third name of a window.
            let name = if k < 200 {
                name
            } else {
                &names[((h * 37) % 5_000) as usize]
            };
            users.record(t, Some(event), Some(name), NOW);
        }
    }
    let mut g = c.benchmark_group("report");
    g.sample_size(20);
    let report = |q: &Query| {
        let links = Links {
            this: Href {
                href: String::new(),
            },
            next: None,
            prev: None,
        };
        build(&users, q, &q.page(None, usize::MAX), "env", links)
    };
    let month = compile(None, None, NOW).unwrap();
    g.bench_function("30days_day", |b| b.iter(|| report(black_box(&month))));
    let start = jiff::Timestamp::from_second(NOW - 199 * 86_400).unwrap();
    let end = jiff::Timestamp::from_second(NOW).unwrap();
    let all = parse(&format!(r#"startDate ge "{start}" and endDate le "{end}""#)).unwrap();
    let all = compile(Some(&all), None, NOW).unwrap();
    assert!(all.starts.len() >= 27);
    g.bench_function("200days_week", |b| b.iter(|| report(black_box(&all))));
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
