//! The PingOne-style `userActivities` report: sign-ons, password resets and active users
//! per hour, day or week.
//!
//! Where it sits: the management API (`admin::user_activities`) parses the `filter`
//! parameter with `scim`, [`compile`]s the filter into a [`Query`] (a time range, the
//! offset to align buckets in, a bucket size) and [`build`]s the report from
//! `metrics::users`. Pure: no tokio, no hyper.
//!
//! The filter language is SCIM, but the report is a time series, so only what describes
//! a range and a sample size compiles: a conjunction (`and`) of at most one lower bound on
//! `startDate` (`eq`, `ge`, `gt`), one upper bound on `endDate` (`eq`, `le`, `lt`; the
//! name in any case, so the seed's `EndDate` works) and one `sampleSize` (`eq` or a
//! one-value `in`; `HOUR`, `DAY`, `WEEK`). Anything else is a [`QueryError`] naming the
//! part of the filter at fault. The data is kept per UTC hour, so `gt`/`lt` behave as
//! `ge`/`le` and a stored hour counts in the bucket its start falls in.

use jiff::Timestamp;
use jiff::tz::{Offset, TimeZone};
use serde::Serialize;

use crate::metrics::users::{Counts, HOUR, Users};
use crate::scim::{Filter, Op, Value};

const DAY: i64 = 86_400;
const WEEK: i64 = 7 * DAY;
/// The window when the filter names no dates.
pub const DEFAULT_DAYS: i64 = 30;
/// The most buckets one report holds (200 days of hours: the retention, and then some).
pub const MAX_BUCKETS: i64 = 5_000;

/// `sampleSize`: the bucket length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    Hour,
    Day,
    Week,
}

impl Sample {
    pub fn seconds(self) -> i64 {
        match self {
            Sample::Hour => HOUR,
            Sample::Day => DAY,
            Sample::Week => WEEK,
        }
    }

    fn parse(s: &str) -> Option<Sample> {
        match s.to_ascii_uppercase().as_str() {
            "HOUR" => Some(Sample::Hour),
            "DAY" => Some(Sample::Day),
            "WEEK" => Some(Sample::Week),
            _ => None,
        }
    }

    /// PingOne's default for a range: up to 5 days HOUR, up to 60 days DAY, else WEEK.
    pub fn for_range(seconds: i64) -> Sample {
        if seconds <= 5 * DAY {
            Sample::Hour
        } else if seconds <= 60 * DAY {
            Sample::Day
        } else {
            Sample::Week
        }
    }
}

/// What a filter compiles to.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// First bucket start (aligned) and the end of the range (exclusive), unix seconds.
    pub first: i64,
    pub end: i64,
    /// The offset buckets align to and dates print in (UTC without dates).
    pub offset: Offset,
    pub sample: Sample,
}

impl Query {
    /// The bucket starts of the report.
    /// The hours the report reads: `[first, end of the last bucket)`.
    pub fn hours(&self) -> (i64, i64) {
        let len = self.sample.seconds();
        let last = self.buckets().last().unwrap_or(self.first);
        (self.first, last + len)
    }

    pub fn buckets(&self) -> impl Iterator<Item = i64> + '_ {
        let len = self.sample.seconds();
        (0..)
            .map(move |i| self.first + i * len)
            .take_while(|&b| b < self.end)
    }
}

/// Why a filter does not describe a report: a message, and the part of the filter at
/// fault (canonical form) when one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub message: String,
    pub part: Option<String>,
}

fn fault(part: &Filter, message: impl Into<String>) -> QueryError {
    QueryError {
        message: message.into(),
        part: Some(part.to_string()),
    }
}

/// Turns a filter (or none) into a query, at time `now`.
pub fn compile(filter: Option<&Filter>, now: i64) -> Result<Query, QueryError> {
    let mut terms = Vec::new();
    if let Some(f) = filter {
        conjuncts(f, &mut terms);
    }
    let mut start: Option<(i64, Offset, &Filter)> = None;
    let mut end: Option<(i64, Offset, &Filter)> = None;
    let mut sample: Option<(Sample, &Filter)> = None;
    for term in terms {
        let (path, op, values) = match term {
            Filter::Compare(p, op, v) => (p, *op, std::slice::from_ref(v)),
            Filter::In(p, vs) => (p, Op::Eq, vs.as_slice()),
            Filter::Or(..) => {
                return Err(fault(
                    term,
                    "'or' cannot be compiled: a report covers one date range",
                ));
            }
            Filter::Not(..) => {
                return Err(fault(
                    term,
                    "'not' cannot be compiled: a report covers one date range",
                ));
            }
            Filter::Present(p) => {
                return Err(fault(
                    term,
                    format!("'pr' cannot be compiled: give {p} a value with eq"),
                ));
            }
            Filter::ValuePath(p, _) => {
                return Err(fault(
                    term,
                    format!("{p} is not multi-valued: value paths ([...]) do not apply"),
                ));
            }
            Filter::And(..) => continue, // flattened by `conjuncts`
        };
        let is_in = matches!(term, Filter::In(..));
        if path.is("startDate") || path.is("endDate") {
            let lower = path.is("startDate");
            let name = if lower { "startDate" } else { "endDate" };
            let allowed: &[Op] = if lower {
                &[Op::Eq, Op::Ge, Op::Gt]
            } else {
                &[Op::Eq, Op::Le, Op::Lt]
            };
            if is_in || !allowed.contains(&op) {
                let ops = if lower {
                    "eq, ge or gt"
                } else {
                    "eq, le or lt"
                };
                let used = if is_in { "in" } else { op.as_str() };
                return Err(fault(
                    term,
                    format!("{name} does not support '{used}': use {ops}"),
                ));
            }
            let [Value::Str(text)] = values else {
                return Err(fault(
                    term,
                    format!("{name} needs a date-time string, e.g. \"2019-01-01T00:00:00Z\""),
                ));
            };
            let (at, offset) = date_time(text).map_err(|why| fault(term, why))?;
            let slot = if lower { &mut start } else { &mut end };
            if slot.is_some() {
                return Err(fault(term, format!("{name} is given more than once")));
            }
            *slot = Some((at, offset, term));
        } else if path.is("sampleSize") {
            if op != Op::Eq {
                return Err(fault(
                    term,
                    format!(
                        "sampleSize does not support '{}': use eq or in",
                        op.as_str()
                    ),
                ));
            }
            let [Value::Str(text)] = values else {
                return Err(fault(
                    term,
                    "sampleSize takes one of \"HOUR\", \"DAY\" or \"WEEK\"",
                ));
            };
            let Some(s) = Sample::parse(text) else {
                return Err(fault(
                    term,
                    format!("sampleSize {text:?} is not one of HOUR, DAY or WEEK"),
                ));
            };
            if sample.is_some() {
                return Err(fault(term, "sampleSize is given more than once"));
            }
            sample = Some((s, term));
        } else {
            return Err(fault(
                term,
                format!(
                    "unknown attribute {path}: a filter can use startDate, endDate and sampleSize"
                ),
            ));
        }
    }

    let (begin, stop, offset) = match (start, end) {
        (Some((s, offset, _)), Some((e, _, e_term))) => {
            if e <= s {
                return Err(fault(e_term, "endDate must be after startDate"));
            }
            (s, e, offset)
        }
        (None, None) => {
            // The past 30 days, in whole UTC days ending with today.
            let today = now.div_euclid(DAY) * DAY;
            let first = today - (DEFAULT_DAYS - 1) * DAY;
            let sample = sample.map_or(Sample::Day, |(s, _)| s);
            let end = match sample {
                Sample::Hour => now.div_euclid(HOUR) * HOUR + HOUR,
                _ => today + DAY,
            };
            let first = align(first, Offset::UTC, sample);
            return Ok(Query {
                first,
                end,
                offset: Offset::UTC,
                sample,
            });
        }
        (Some((_, _, t)), None) => {
            return Err(fault(t, "startDate needs an endDate in the same filter"));
        }
        (None, Some((_, _, t))) => {
            return Err(fault(t, "endDate needs a startDate in the same filter"));
        }
    };
    let sample_size = sample.map_or_else(|| Sample::for_range(stop - begin), |(s, _)| s);
    let first = align(begin, offset, sample_size);
    let buckets = (stop - first + sample_size.seconds() - 1) / sample_size.seconds();
    if buckets > MAX_BUCKETS {
        let part = sample.map_or_else(
            || filter.map(ToString::to_string),
            |(_, t)| Some(t.to_string()),
        );
        return Err(QueryError {
            message: format!(
                "the range holds {buckets} buckets of that sampleSize (at most {MAX_BUCKETS}): use a larger sampleSize or a shorter range"
            ),
            part,
        });
    }
    Ok(Query {
        first,
        end: stop,
        offset,
        sample: sample_size,
    })
}

/// The `and`-connected terms of a filter, left to right.
fn conjuncts<'f>(f: &'f Filter, out: &mut Vec<&'f Filter>) {
    match f {
        Filter::And(a, b) => {
            conjuncts(a, out);
            conjuncts(b, out);
        }
        other => out.push(other),
    }
}

/// An ISO 8601 / RFC 3339 date-time with an offset: the instant, and the offset as
/// written (buckets align to it).
fn date_time(text: &str) -> Result<(i64, Offset), String> {
    let why = |e: &dyn std::fmt::Display| {
        format!(
            "{text:?} is not an ISO 8601 date-time with an offset (e.g. \"2019-01-01T00:00:00Z\" or \"2018-02-17T09:10:12-04:00\"): {e}"
        )
    };
    let at: Timestamp = text.parse().map_err(|e| why(&e))?;
    let offset = written_offset(text).ok_or_else(|| why(&"no offset"))?;
    Ok((at.as_second(), offset))
}

/// The offset at the end of an RFC 3339 date-time: `Z`, `±HH:MM` or `±HHMM`.
fn written_offset(text: &str) -> Option<Offset> {
    let time = &text[text.find(['T', 't', ' '])?..];
    if time.ends_with(['Z', 'z']) {
        return Some(Offset::UTC);
    }
    let at = time.rfind(['+', '-'])?;
    let sign: i32 = if time[at..].starts_with('-') { -1 } else { 1 };
    let digits: String = time[at + 1..].chars().filter(|c| *c != ':').collect();
    if digits.len() != 4 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits[2..].parse().ok()?;
    Offset::from_seconds(sign * (hours * 3_600 + minutes * 60)).ok()
}

/// The start of the bucket holding `t`, in local time at `offset`: the hour, the
/// midnight, or the Monday midnight (ISO weeks).
fn align(t: i64, offset: Offset, sample: Sample) -> i64 {
    let shift = i64::from(offset.seconds());
    let local = t + shift;
    let start = match sample {
        Sample::Hour => local.div_euclid(HOUR) * HOUR,
        Sample::Day => local.div_euclid(DAY) * DAY,
        // Day 0 (1970-01-01) was a Thursday; day 4 a Monday.
        Sample::Week => (local.div_euclid(DAY) - 4).div_euclid(7) * WEEK + 4 * DAY,
    };
    start - shift
}

/// A date as the report prints it: seconds, in the query's offset (`Z` for UTC).
pub fn print_date(t: i64, offset: Offset) -> String {
    let Ok(ts) = Timestamp::from_second(t) else {
        return t.to_string();
    };
    let local = ts.to_zoned(TimeZone::fixed(offset));
    if offset == Offset::UTC {
        local.strftime("%Y-%m-%dT%H:%M:%SZ").to_string()
    } else {
        local.strftime("%Y-%m-%dT%H:%M:%S%:z").to_string()
    }
}

/// The report, in PingOne's HAL form.
#[derive(Debug, Serialize)]
pub struct Report {
    #[serde(rename = "_links")]
    pub links: Links,
    #[serde(rename = "_embedded")]
    pub embedded: Embedded,
    pub count: usize,
    pub size: usize,
}

#[derive(Debug, Serialize)]
pub struct Links {
    #[serde(rename = "self")]
    pub this: Href,
}

#[derive(Debug, Serialize)]
pub struct Href {
    pub href: String,
}

#[derive(Debug, Serialize)]
pub struct Embedded {
    #[serde(rename = "userActivities")]
    pub user_activities: Vec<Activity>,
}

#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Activity {
    pub start_date: String,
    pub end_date: String,
    pub environment: Environment,
    pub total_active_users: u64,
    pub user_sign_ons: SignOns,
    pub password_resets: u64,
}

#[derive(Debug, Serialize)]
pub struct Environment {
    pub id: String,
}

#[derive(Debug, Serialize)]
pub struct SignOns {
    pub successes: u64,
    pub failures: u64,
}

/// Builds the report of `query` from the recorded hours.
pub fn build(users: &Users, query: &Query, environment: &str, href: String) -> Report {
    let len = query.sample.seconds();
    let starts: Vec<i64> = query.buckets().collect();
    let mut sums = vec![Counts::default(); starts.len()];
    let last_end = starts.last().map_or(query.first, |s| s + len);
    users.fold(query.first, last_end, |hour, counts| {
        let i = (hour - query.first).div_euclid(len);
        if let Some(sum) = usize::try_from(i).ok().and_then(|i| sums.get_mut(i)) {
            sum.add(counts);
        }
    });
    let activities: Vec<Activity> = starts
        .iter()
        .zip(&sums)
        .map(|(&start, c)| Activity {
            start_date: print_date(start, query.offset),
            end_date: print_date(start + len, query.offset),
            environment: Environment {
                id: environment.to_string(),
            },
            total_active_users: c.users.count(),
            user_sign_ons: SignOns {
                successes: c.successes,
                failures: c.failures,
            },
            password_resets: c.resets,
        })
        .collect();
    let n = activities.len();
    Report {
        links: Links {
            this: Href { href },
        },
        embedded: Embedded {
            user_activities: activities,
        },
        count: n,
        size: n,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::users::Event;
    use crate::scim::parse;

    fn ts(s: &str) -> i64 {
        s.parse::<Timestamp>().unwrap().as_second()
    }

    fn q(filter: &str, now: &str) -> Result<Query, QueryError> {
        let f = parse(filter).unwrap();
        compile(Some(&f), ts(now))
    }

    fn dates(query: &Query) -> Vec<String> {
        query
            .buckets()
            .map(|b| print_date(b, query.offset))
            .collect()
    }

    const NOW: &str = "2026-11-22T15:30:00Z";

    #[test]
    fn no_filter_is_the_past_30_days_by_day() {
        let query = compile(None, ts(NOW)).unwrap();
        assert_eq!(query.sample, Sample::Day);
        let d = dates(&query);
        assert_eq!(d.len(), 30);
        assert_eq!(d[0], "2026-10-24T00:00:00Z");
        assert_eq!(d[29], "2026-11-22T00:00:00Z");
        // sampleSize alone keeps the default window.
        let hours = q(r#"sampleSize eq "HOUR""#, NOW).unwrap();
        assert_eq!(hours.buckets().count(), 29 * 24 + 16);
    }

    #[test]
    fn default_sample_size_follows_the_range() {
        let s = |days: i64| {
            let end = ts("2026-01-01T00:00:00Z") + days;
            let f = format!(
                r#"startDate eq "2026-01-01T00:00:00Z" and endDate eq "{}""#,
                print_date(end, Offset::UTC)
            );
            q(&f, NOW).unwrap().sample
        };
        assert_eq!(s(5 * DAY), Sample::Hour);
        assert_eq!(s(5 * DAY + 1), Sample::Day);
        assert_eq!(s(60 * DAY), Sample::Day);
        assert_eq!(s(60 * DAY + 1), Sample::Week);
    }

    #[test]
    fn buckets_align_in_the_offset_of_the_dates() {
        // The seed's example: six days (so DAY), in -04:00.
        let query = q(
            r#"startDate eq "2018-02-17T09:10:12-04:00" and endDate eq "2018-02-23T09:10:12-04:00""#,
            NOW,
        )
        .unwrap();
        assert_eq!(query.sample, Sample::Day);
        let d = dates(&query);
        assert_eq!(d.first().unwrap(), "2018-02-17T00:00:00-04:00");
        assert_eq!(d.last().unwrap(), "2018-02-23T00:00:00-04:00");
        assert_eq!(d.len(), 7);
        let hours = q(
            r#"startDate ge "2018-02-17T09:10:12-04:00" and EndDate le "2018-02-18T09:10:12-04:00" and sampleSize eq "HOUR""#,
            NOW,
        )
        .unwrap();
        let d = dates(&hours);
        assert_eq!(d[0], "2018-02-17T09:00:00-04:00");
        assert_eq!(d.len(), 25);
        assert_eq!(d[24], "2018-02-18T09:00:00-04:00");
        // Weeks start on Monday: 2018-02-17 was a Saturday.
        let weeks = q(
            r#"startDate eq "2018-02-17T09:10:12+05:30" and endDate eq "2018-03-17T00:00:00+05:30" and sampleSize in ["week"]"#,
            NOW,
        )
        .unwrap();
        let d = dates(&weeks);
        assert_eq!(d[0], "2018-02-12T00:00:00+05:30");
        assert_eq!(d.len(), 5);
    }

    #[test]
    fn what_cannot_be_compiled_names_the_part_at_fault() {
        let e = |f: &str| q(f, NOW).unwrap_err();
        let both = r#"startDate eq "2026-01-01T00:00:00Z""#;
        assert_eq!(
            e(both).message,
            "startDate needs an endDate in the same filter"
        );
        assert_eq!(
            e(r#"endDate eq "2026-01-01T00:00:00Z""#).message,
            "endDate needs a startDate in the same filter"
        );
        let or = e(&format!(r#"{both} or endDate eq "2026-01-02T00:00:00Z""#));
        assert!(or.message.contains("'or'"), "{or:?}");
        let not = e(r#"not (sampleSize eq "DAY")"#);
        assert_eq!(not.part.as_deref(), Some(r#"not (sampleSize eq "DAY")"#));
        let lt = e(r#"startDate lt "2026-01-01T00:00:00Z" and endDate eq "2026-01-02T00:00:00Z""#);
        assert_eq!(
            lt.message,
            "startDate does not support 'lt': use eq, ge or gt"
        );
        assert_eq!(
            lt.part.as_deref(),
            Some(r#"startDate lt "2026-01-01T00:00:00Z""#)
        );
        let bad_date =
            e(r#"startDate gt "2019-01-01T00:00:00Z" AND EndDate lt "2019-02-31T23:59:00Z""#);
        assert!(bad_date.message.contains("2019-02-31"), "{bad_date:?}");
        assert!(
            e(r#"userName eq "x""#)
                .message
                .contains("unknown attribute userName")
        );
        assert!(e(r#"sampleSize eq "MONTH""#).message.contains("MONTH"));
        assert!(e(r#"sampleSize eq 3"#).message.contains("HOUR"));
        assert!(e(r#"sampleSize pr"#).message.contains("'pr'"));
        assert!(
            e(r#"sampleSize eq "DAY" and sampleSize eq "DAY""#)
                .message
                .contains("more than once")
        );
        let backwards =
            e(r#"startDate eq "2026-01-02T00:00:00Z" and endDate eq "2026-01-01T00:00:00Z""#);
        assert_eq!(backwards.message, "endDate must be after startDate");
        assert!(
            e(r#"startDate eq "2020-01-01T00:00:00Z" and endDate eq "2026-01-01T00:00:00Z" and sampleSize eq "HOUR""#)
                .message
                .contains("at most 5000")
        );
        assert!(
            e(r#"startDate eq "2026-01-01" and endDate eq "2026-01-02""#)
                .message
                .contains("ISO 8601")
        );
    }

    #[test]
    fn reports_sum_hours_into_buckets() {
        let users = Users::new();
        let t = ts("2026-11-20T13:15:00Z");
        users.record(t, Some(Event::SignOnSuccess), Some("ann"), t);
        users.record(t + HOUR, Some(Event::SignOnFailure), Some("ann"), t);
        users.record(t + 2 * HOUR, Some(Event::PasswordReset), Some("bob"), t);
        // In -04:00 the three hours are 09:00-12:00 on the 20th.
        let query = q(
            r#"startDate eq "2026-11-20T00:00:00-04:00" and endDate eq "2026-11-21T00:00:00-04:00""#,
            NOW,
        )
        .unwrap();
        let report = build(&users, &query, "env", "href".into());
        assert_eq!(report.count, 24);
        let nonzero: Vec<(&str, u64, u64, u64, u64)> = report
            .embedded
            .user_activities
            .iter()
            .filter(|a| a.total_active_users > 0)
            .map(|a| {
                (
                    a.start_date.as_str(),
                    a.total_active_users,
                    a.user_sign_ons.successes,
                    a.user_sign_ons.failures,
                    a.password_resets,
                )
            })
            .collect();
        assert_eq!(
            nonzero,
            [
                ("2026-11-20T09:00:00-04:00", 1, 1, 0, 0),
                ("2026-11-20T10:00:00-04:00", 1, 0, 1, 0),
                ("2026-11-20T11:00:00-04:00", 1, 0, 0, 1),
            ]
        );
        let day = q(
            r#"startDate eq "2026-11-20T00:00:00Z" and endDate eq "2026-11-21T00:00:00Z" and sampleSize eq "DAY""#,
            NOW,
        )
        .unwrap();
        let report = build(&users, &day, "env", "href".into());
        let a = &report.embedded.user_activities[0];
        assert_eq!(report.count, 1);
        assert_eq!(
            (
                a.total_active_users,
                a.user_sign_ons.successes,
                a.user_sign_ons.failures,
                a.password_resets
            ),
            (2, 1, 1, 1)
        );
    }
}
