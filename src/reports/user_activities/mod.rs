//! The PingOne-style `userActivities` report: sign-ons, password resets and active users
//! per hour, day or week.
//!
//! Where it sits: the management API (`admin::user_activities`) parses the `filter`
//! parameter with `scim`, [`compile`]s it into a [`Query`] (the buckets it selects, their
//! size and the offset they print in) and [`build`]s one page of the report from
//! `metrics::users`. Pure: no tokio, no hyper.
//!
//! # How a filter selects buckets
//! A filter is a predicate on report buckets, whose attributes are `startDate`, `endDate`
//! and `sampleSize` (names in any case; every operator the seed lists: `eq ne gt ge lt le in
//! sw ew co pr`, `and`, `or`, `not`). [`compile`]:
//! 1. checks and normalises it ([`filter::check`]): other attributes are an error; dates are
//!    read as [`date`] says (UTC without an offset, a day past the month's end is its last);
//!    `sampleSize` values are case-insensitive and order by length;
//! 2. derives the window: the span of bucket starts the filter can select
//!    ([`filter::span`]). Bounded on both sides, it sets the default sample size (up to 5
//!    days HOUR, up to 60 DAY, else WEEK); when the filter bounds no date at all (no `eq`,
//!    `gt`, `ge`, `lt`, `le` or `in` on one) it is the past 30 days by UTC day; open on a
//!    side despite its bounds, it is an error naming the open side;
//! 3. picks the sample size: the default when the filter (or the `sampleSize` parameter)
//!    admits it, else the admitted size nearest to it;
//! 4. lays out the candidate buckets of that size over the window, aligned to the hour,
//!    the midnight or the Monday midnight in the offset of the date that bounds the window
//!    from below, and keeps exactly those the whole filter matches, evaluated by `scim`.
//!
//! So `gt` and `lt` are strict (`startDate gt "2019-01-01T00:00:00Z"` leaves out the day that
//! starts then), `eq` wants the very instant, and a filter that selects nothing is an empty
//! report, not an error.

pub mod date;
pub mod filter;
pub mod sample;

use jiff::tz::Offset;
use serde::Serialize;

pub use date::{parse_date, print_date};
pub use filter::Span;
pub use sample::Sample;

use crate::metrics::users::{Counts, HOUR, Users};
use crate::scim::{AttrPath, Filter, Resource, Value};

use sample::{DAY, WEEK};
/// The window when the filter bounds no dates.
pub const DEFAULT_DAYS: i64 = 30;
/// The most candidate buckets one query lays out (200 days of hours: the retention, and
/// then some).
pub const MAX_BUCKETS: i64 = 5_000;

/// What a filter compiles to: the buckets it selects, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct Query {
    /// The starts (unix seconds) of the selected buckets, oldest first.
    pub starts: Vec<i64>,
    /// The offset buckets align to and dates print in (UTC without dates).
    pub offset: Offset,
    pub sample: Sample,
}

/// Why a filter does not describe a report: a message, and the part of the filter at
/// fault (canonical form) when one is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct QueryError {
    pub message: String,
    pub part: Option<String>,
}

impl From<filter::Fault> for QueryError {
    fn from(f: filter::Fault) -> QueryError {
        QueryError {
            message: f.message,
            part: Some(f.term),
        }
    }
}

/// A report bucket, as the filter sees it.
struct Bucket {
    start: String,
    end: String,
    sample: Sample,
}

impl Resource for Bucket {
    fn get(&self, path: &AttrPath) -> Option<Value> {
        let text = if path.is("startDate") {
            self.start.clone()
        } else if path.is("endDate") {
            self.end.clone()
        } else if path.is("sampleSize") {
            self.sample.name().to_string()
        } else {
            return None;
        };
        Some(Value::Str(text))
    }
}

/// Turns a filter (or none) and the `sampleSize` parameter (or none) into a query, at time
/// `now` (module docs).
pub fn compile(
    filter: Option<&Filter>,
    sample_size: Option<Sample>,
    now: i64,
) -> Result<Query, QueryError> {
    let checked = filter.map(filter::check).transpose()?;
    // The parameter is one more condition on the buckets.
    let size_term = sample_size.map(|s| {
        Filter::In(
            AttrPath {
                uri: None,
                name: "sampleSize".into(),
                sub: None,
            },
            vec![Value::Str(s.name().into())],
        )
    });
    let whole = match (checked, size_term) {
        (Some(f), Some(t)) => Some(Filter::And(Box::new(f), Box::new(t))),
        (f, t) => f.or(t),
    };
    let open = Span::Range { lo: None, hi: None };
    let span_of = |s: Sample, decided: bool| {
        whole
            .as_ref()
            .map_or(open, |f| filter::span(f, s.seconds(), decided.then_some(s)))
    };
    let choose = |default: Sample| -> Sample {
        // The default when buckets of that size can match; else the size nearest to it
        // (the longer of two equally near) that can; else the default (nothing matches).
        let mut sizes = Sample::ALL;
        sizes.sort_by_key(|s| ((s.rank() - default.rank()).abs(), -s.rank()));
        sizes
            .into_iter()
            .find(|s| span_of(*s, true) != Span::Empty)
            .unwrap_or(default)
    };

    // The window: the starts the dates allow, whatever the size (sampleSize terms aside),
    // and how far the buckets reach.
    let mut window = Span::Empty;
    let mut reach: Option<(i64, i64)> = None;
    for s in Sample::ALL {
        let span = span_of(s, false);
        window = window.or(span);
        if let Span::Range {
            lo: Some(lo),
            hi: Some(hi),
        } = span
        {
            let (from, to) = reach.unwrap_or((lo.at, hi.at + s.seconds()));
            reach = Some((from.min(lo.at), to.max(hi.at + s.seconds())));
        }
    }
    let (sample, candidates, offset) = match window {
        Span::Empty => {
            return Ok(Query {
                starts: Vec::new(),
                offset: Offset::UTC,
                sample: choose(Sample::Day),
            });
        }
        Span::Range { lo: None, hi: None } if !whole.as_ref().is_some_and(filter::bounds_dates) => {
            // No bounds: the past 30 days, in whole UTC days ending with today.
            let sample = choose(Sample::Day);
            let today = now.div_euclid(DAY) * DAY;
            let first = align(today - (DEFAULT_DAYS - 1) * DAY, Offset::UTC, sample);
            let end = match sample {
                Sample::Hour => now.div_euclid(HOUR) * HOUR + HOUR,
                _ => today + DAY,
            };
            let len = sample.seconds();
            let count = (end - first + len - 1) / len;
            (sample, (first, count), Offset::UTC)
        }
        Span::Range {
            lo: Some(lo),
            hi: Some(_),
        } => {
            let (from, to) = reach.unwrap_or((lo.at, lo.at));
            let sample = choose(Sample::for_range(to - from));
            let len = sample.seconds();
            match span_of(sample, true) {
                Span::Range {
                    lo: Some(lo),
                    hi: Some(hi),
                } => {
                    let first = align(lo.at, lo.offset, sample);
                    let count = if hi.at < first {
                        0
                    } else {
                        (hi.at - first) / len + 1
                    };
                    if count > MAX_BUCKETS {
                        return Err(QueryError {
                            message: format!(
                                "the window holds {count} buckets of {} (at most {MAX_BUCKETS}): use a larger sampleSize or a shorter window",
                                sample.name()
                            ),
                            part: filter.map(ToString::to_string),
                        });
                    }
                    (sample, (first, count), lo.offset)
                }
                // Bounded whatever the size, so bounded (or empty) for this one.
                _ => (sample, (0, 0), lo.offset),
            }
        }
        Span::Range { lo, hi } => {
            let side = match (lo, hi) {
                (None, None) => {
                    "on both sides: its bounds on startDate and endDate do not close it (or, not?)"
                }
                (None, _) => "from below: give startDate or endDate a lower bound (eq, ge or gt)",
                _ => "from above: give endDate or startDate an upper bound (eq, le or lt)",
            };
            return Err(QueryError {
                message: format!("the filter leaves the window open {side}"),
                part: filter.map(ToString::to_string),
            });
        }
    };

    let len = sample.seconds();
    let (first, count) = candidates;
    let starts = (0..count)
        .map(|i| first + i * len)
        .filter(|&start| {
            whole.as_ref().is_none_or(|f| {
                f.matches(&Bucket {
                    start: print_date(start, offset),
                    end: print_date(start + len, offset),
                    sample,
                })
            })
        })
        .collect();
    Ok(Query {
        starts,
        offset,
        sample,
    })
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

/// One page of a query's buckets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<'q> {
    pub starts: &'q [i64],
    /// Where the next page starts (its cursor), if there is one.
    pub next: Option<i64>,
    /// Where the previous page starts, if this is not the first.
    pub prev: Option<i64>,
}

impl Query {
    /// At most `limit` buckets from the first that starts at or after `cursor`.
    pub fn page(&self, cursor: Option<i64>, limit: usize) -> Page<'_> {
        let limit = limit.max(1);
        let from = cursor.map_or(0, |c| self.starts.partition_point(|s| *s < c));
        let to = from.saturating_add(limit).min(self.starts.len());
        Page {
            starts: &self.starts[from..to],
            next: self.starts.get(to).copied(),
            prev: (from > 0).then(|| self.starts[from.saturating_sub(limit)]),
        }
    }
}

impl Page<'_> {
    /// The hours the page reads: `[first start, last end)`.
    pub fn hours(&self, sample: Sample) -> (i64, i64) {
        match (self.starts.first(), self.starts.last()) {
            (Some(first), Some(last)) => (*first, last + sample.seconds()),
            _ => (0, 0),
        }
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<Href>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub prev: Option<Href>,
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

/// Builds one page of the report of `query` from the recorded hours. `count` is every
/// bucket the query selects, `size` the page's.
pub fn build(
    users: &Users,
    query: &Query,
    page: &Page<'_>,
    environment: &str,
    links: Links,
) -> Report {
    let len = query.sample.seconds();
    let mut sums = vec![Counts::default(); page.starts.len()];
    let (from, to) = page.hours(query.sample);
    users.fold(from, to, |hour, counts| {
        // The bucket holding the hour, if the page has it (selected buckets need not be
        // contiguous).
        let at = page.starts.partition_point(|s| *s <= hour);
        if let Some(i) = at.checked_sub(1)
            && hour < page.starts[i] + len
            && let Some(sum) = sums.get_mut(i)
        {
            sum.add(counts);
        }
    });
    let activities: Vec<Activity> = page
        .starts
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
    let size = activities.len();
    Report {
        links,
        embedded: Embedded {
            user_activities: activities,
        },
        count: query.starts.len(),
        size,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::users::Event;
    use crate::scim::parse::parse;

    fn ts(s: &str) -> i64 {
        s.parse::<jiff::Timestamp>().unwrap().as_second()
    }

    fn q(filter: &str, now: &str) -> Result<Query, QueryError> {
        let f = parse(filter).unwrap();
        compile(Some(&f), None, ts(now))
    }

    fn dates(query: &Query) -> Vec<String> {
        query
            .starts
            .iter()
            .map(|b| print_date(*b, query.offset))
            .collect()
    }

    /// (sample size, first bucket, last bucket, count).
    fn shape(filter: &str) -> (Sample, String, String, usize) {
        let query = q(filter, NOW).unwrap_or_else(|e| panic!("{filter}: {e}"));
        let d = dates(&query);
        (
            query.sample,
            d.first().cloned().unwrap_or_default(),
            d.last().cloned().unwrap_or_default(),
            d.len(),
        )
    }

    const NOW: &str = "2026-11-22T15:30:00Z";

    #[test]
    fn no_filter_is_the_past_30_days_by_day() {
        let query = compile(None, None, ts(NOW)).unwrap();
        assert_eq!(query.sample, Sample::Day);
        let d = dates(&query);
        assert_eq!(d.len(), 30);
        assert_eq!(d[0], "2026-10-24T00:00:00Z");
        assert_eq!(d[29], "2026-11-22T00:00:00Z");
        // sampleSize alone keeps the default window, as a filter or as the parameter.
        let hours = q(r#"sampleSize eq "HOUR""#, NOW).unwrap();
        assert_eq!(hours.starts.len(), 29 * 24 + 16);
        let param = compile(None, Some(Sample::Hour), ts(NOW)).unwrap();
        assert_eq!(param, hours);
    }

    #[test]
    fn the_seeds_examples_compile() {
        // A day past February's end is its last day; gt and lt are strict: the day that
        // starts at 2019-01-01T00:00Z is out, and so is the 28th, which ends after 23:59.
        assert_eq!(
            shape(r#"startDate gt "2019-01-01T00:00:00Z" AND EndDate lt "2019-02-31T23:59:00Z""#),
            (
                Sample::Day,
                "2019-01-02T00:00:00Z".into(),
                "2019-02-27T00:00:00Z".into(),
                57
            )
        );
        // eq wants the very instants: no DAY bucket starts at 09:10:12.
        assert_eq!(
            shape(
                r#"startDate eq "2018-02-17T09:10:12-04:00" and endDate eq "2018-02-23T09:10:12-04:00""#
            ),
            (Sample::Day, String::new(), String::new(), 0)
        );
    }

    #[test]
    fn every_operator_on_dates() {
        let day = |d: &str| format!("2026-01-{d}T00:00:00Z");
        for (filter, first, last, n) in [
            (
                r#"startDate ge "2026-01-01" and endDate le "2026-01-11""#,
                "01",
                "10",
                10,
            ),
            (
                r#"startDate gt "2026-01-01" and endDate lt "2026-01-11""#,
                "02",
                "09",
                8,
            ),
            // A date without a time is midnight UTC; one without an offset is UTC.
            (
                r#"startDate ge "2026-01-01T00:00" and endDate le "2026-01-11""#,
                "01",
                "10",
                10,
            ),
            (
                r#"startDate eq "2026-01-03" and endDate eq "2026-01-04""#,
                "03",
                "03",
                1,
            ),
            (
                r#"startDate in ["2026-01-03", "2026-01-07"] and sampleSize eq "DAY""#,
                "03",
                "07",
                2,
            ),
            (
                r#"startDate ge "2026-01-01" and endDate le "2026-01-11" and startDate ne "2026-01-05""#,
                "01",
                "10",
                9,
            ),
            (
                r#"startDate ge "2026-01-01" and endDate le "2026-01-11" and not (startDate le "2026-01-08") and sampleSize eq "DAY""#,
                "09",
                "10",
                2,
            ),
            (
                r#"startDate ge "2026-01-01" and endDate le "2026-01-11" and startDate sw "2026-01-0""#,
                "01",
                "09",
                9,
            ),
            (
                r#"startDate ge "2026-01-01" and endDate le "2026-01-11" and endDate ew "-05T00:00:00Z""#,
                "04",
                "04",
                1,
            ),
            (
                r#"startDate ge "2026-01-01" and endDate le "2026-01-11" and startDate co "-1""#,
                "10",
                "10",
                1,
            ),
            (
                r#"startDate ge "2026-01-01" and endDate le "2026-01-11" and startDate pr and endDate pr"#,
                "01",
                "10",
                10,
            ),
            (
                r#"(startDate ge "2026-01-01" and endDate le "2026-01-03") or (startDate ge "2026-01-09" and endDate le "2026-01-11")"#,
                "01",
                "10",
                4,
            ),
        ] {
            let (sample, f, l, count) = shape(filter);
            assert_eq!(sample, Sample::Day, "{filter}");
            assert_eq!((f, l, count), (day(first), day(last), n), "{filter}");
        }
        // A filter that selects no bucket is an empty report.
        assert_eq!(
            shape(r#"startDate ge "2026-01-05" and endDate le "2026-01-02""#).3,
            0
        );
        assert_eq!(
            shape(
                r#"startDate ge "2026-01-01" and endDate le "2026-01-11" and not (startDate pr)"#
            )
            .3,
            0
        );
    }

    #[test]
    fn every_operator_on_sample_size() {
        let range = r#"startDate ge "2026-01-05T00:00:00Z" and endDate le "2026-01-19T00:00:00Z""#;
        for (term, want) in [
            (r#"sampleSize eq "hour""#, Some(Sample::Hour)),
            (r#"sampleSize ne "DAY""#, Some(Sample::Week)),
            (r#"sampleSize gt "DAY""#, Some(Sample::Week)),
            (r#"sampleSize ge "DAY""#, Some(Sample::Day)),
            (r#"sampleSize lt "DAY""#, Some(Sample::Hour)),
            (r#"sampleSize le "WEEK""#, Some(Sample::Day)),
            (r#"sampleSize in ["WEEK", "HOUR"]"#, Some(Sample::Week)),
            (r#"sampleSize sw "H""#, Some(Sample::Hour)),
            (r#"sampleSize ew "K""#, Some(Sample::Week)),
            (r#"sampleSize co "A""#, Some(Sample::Day)),
            ("sampleSize pr", Some(Sample::Day)),
            (r#"not (sampleSize eq "DAY")"#, Some(Sample::Week)),
            (r#"sampleSize eq "MONTH""#, None),
        ] {
            let query = q(&format!("{range} and {term}"), NOW).unwrap();
            match want {
                Some(s) => {
                    assert_eq!(query.sample, s, "{term}");
                    assert_eq!(query.starts.len() as i64, 14 * DAY / s.seconds(), "{term}");
                }
                None => assert!(query.starts.is_empty(), "{term}"),
            }
        }
        // or: the sizes of either side, the default first.
        let either = format!(r#"{range} and (sampleSize eq "HOUR" or sampleSize eq "WEEK")"#);
        assert_eq!(q(&either, NOW).unwrap().sample, Sample::Week);
        // The parameter and the filter together.
        let f = parse(range).unwrap();
        let week = compile(Some(&f), Some(Sample::Week), ts(NOW)).unwrap();
        assert_eq!((week.sample, week.starts.len()), (Sample::Week, 2));
        let g = parse(&format!(r#"{range} and sampleSize eq "DAY""#)).unwrap();
        assert!(
            compile(Some(&g), Some(Sample::Week), ts(NOW))
                .unwrap()
                .starts
                .is_empty()
        );
    }

    #[test]
    fn default_sample_size_follows_the_range() {
        let s = |days: i64| {
            let end = ts("2026-01-01T00:00:00Z") + days;
            let f = format!(
                r#"startDate ge "2026-01-01T00:00:00Z" and endDate le "{}""#,
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
    fn buckets_align_in_the_offset_of_the_lower_bound() {
        let hours = q(
            r#"startDate ge "2018-02-17T09:10:12-04:00" and EndDate le "2018-02-18T09:10:12-04:00" and sampleSize eq "HOUR""#,
            NOW,
        )
        .unwrap();
        let d = dates(&hours);
        // Whole hours inside the range: 10:00 the 17th to 08:00 the 18th.
        assert_eq!(d[0], "2018-02-17T10:00:00-04:00");
        assert_eq!(d.last().unwrap(), "2018-02-18T08:00:00-04:00");
        assert_eq!(d.len(), 23);
        // Weeks start on Monday: 2018-02-19 was one.
        let weeks = q(
            r#"startDate ge "2018-02-17T09:10:12+05:30" and endDate le "2018-03-19T00:00:00+05:30" and sampleSize in ["week"]"#,
            NOW,
        )
        .unwrap();
        let d = dates(&weeks);
        assert_eq!(
            d,
            [
                "2018-02-19T00:00:00+05:30",
                "2018-02-26T00:00:00+05:30",
                "2018-03-05T00:00:00+05:30",
                "2018-03-12T00:00:00+05:30"
            ]
        );
    }

    #[test]
    fn only_unparseable_unknown_or_open_filters_are_errors() {
        let e = |f: &str| q(f, NOW).unwrap_err();
        let open = e(r#"startDate gt "2026-01-01T00:00:00Z""#);
        assert!(open.message.contains("open from above"), "{open:?}");
        assert_eq!(
            open.part.as_deref(),
            Some(r#"startDate gt "2026-01-01T00:00:00Z""#)
        );
        let open = e(r#"endDate lt "2026-01-01" and startDate ne "2025-01-01""#);
        assert!(open.message.contains("open from below"), "{open:?}");
        // or widens: one side without an upper bound opens the window.
        assert!(
            e(r#"(startDate ge "2026-01-01" and endDate le "2026-01-02") or startDate ge "2026-02-01""#)
                .message
                .contains("open from above")
        );
        assert!(
            e(r#"userName eq "x""#)
                .message
                .contains("unknown attribute userName")
        );
        let not_a_date = e(r#"startDate ge "2026-01-32" and endDate le "2026-02-02""#);
        assert!(not_a_date.message.contains("2026-01-32"), "{not_a_date:?}");
        assert_eq!(
            not_a_date.part.as_deref(),
            Some(r#"startDate ge "2026-01-32""#)
        );
        assert!(
            e(r#"startDate ge "2020-01-01T00:00:00Z" and endDate le "2026-01-01T00:00:00Z" and sampleSize eq "HOUR""#)
                .message
                .contains("at most 5000")
        );
        // Bounds that do not close the window.
        let both =
            e(r#"(startDate ge "2026-01-01" and endDate le "2026-01-02") or sampleSize eq "DAY""#);
        assert!(both.message.contains("open on both sides"), "{both:?}");
        // No bound at all: the default window, filtered.
        assert_eq!(
            q(r#"startDate ne "2026-11-01""#, NOW).unwrap().starts.len(),
            29
        );
        let november = q(r#"startDate sw "2026-11""#, NOW).unwrap();
        assert_eq!(dates(&november)[0], "2026-11-01T00:00:00Z");
        assert_eq!(november.starts.len(), 22);
    }

    #[test]
    fn pages_follow_the_cursor() {
        let query = q(
            r#"startDate ge "2026-01-01" and endDate le "2026-01-11""#,
            NOW,
        )
        .unwrap();
        let first = query.page(None, 4);
        assert_eq!(first.starts.len(), 4);
        assert_eq!(first.next, Some(ts("2026-01-05T00:00:00Z")));
        assert_eq!(first.prev, None);
        let second = query.page(first.next, 4);
        assert_eq!(second.starts[0], ts("2026-01-05T00:00:00Z"));
        assert_eq!(second.prev, Some(ts("2026-01-01T00:00:00Z")));
        let last = query.page(second.next, 4);
        assert_eq!((last.starts.len(), last.next), (2, None));
        assert_eq!(query.page(None, 100).starts.len(), 10);
    }

    fn links() -> Links {
        Links {
            this: Href {
                href: "href".into(),
            },
            next: None,
            prev: None,
        }
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
            r#"startDate ge "2026-11-20T00:00:00-04:00" and endDate le "2026-11-21T00:00:00-04:00""#,
            NOW,
        )
        .unwrap();
        let report = build(&users, &query, &query.page(None, 1_000), "env", links());
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
        // A page of buckets that are not contiguous still sums each one's own hours.
        let split = q(
            r#"startDate ge "2026-11-20T00:00:00-04:00" and endDate le "2026-11-21T00:00:00-04:00" and startDate ne "2026-11-20T10:00:00-04:00""#,
            NOW,
        )
        .unwrap();
        let report = build(&users, &split, &split.page(None, 1_000), "env", links());
        assert_eq!((report.count, report.size), (23, 23));
        let sums: (u64, u64, u64) =
            report
                .embedded
                .user_activities
                .iter()
                .fold((0, 0, 0), |s, a| {
                    (
                        s.0 + a.user_sign_ons.successes,
                        s.1 + a.user_sign_ons.failures,
                        s.2 + a.password_resets,
                    )
                });
        assert_eq!(sums, (1, 0, 1));
        let day = q(
            r#"startDate eq "2026-11-20T00:00:00Z" and endDate eq "2026-11-21T00:00:00Z" and sampleSize eq "DAY""#,
            NOW,
        )
        .unwrap();
        let report = build(&users, &day, &day.page(None, 10), "env", links());
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
        // Paged: count is every bucket, size the page's.
        let report = build(&users, &query, &query.page(None, 5), "env", links());
        assert_eq!((report.count, report.size), (24, 5));
    }
}
