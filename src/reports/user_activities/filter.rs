//! A `userActivities` filter as a predicate on report buckets: checking and normalising it
//! ([`check`]), and deriving from it the span of bucket starts it can select ([`span`]).
//!
//! A bucket's attributes are `startDate` (its start), `endDate` (its end) and `sampleSize`
//! (`HOUR`, `DAY` or `WEEK`). [`check`] rejects other attributes, rewrites date literals to
//! RFC 3339 (so `scim`'s evaluator compares them chronologically, and `2019-02-31` or a date
//! without an offset means what `date` says), and rewrites each `sampleSize` term into the
//! `in` list of the sizes it admits: values are case-insensitive, and `gt`, `ge`, `lt`, `le`
//! order the sizes by length (HOUR < DAY < WEEK). The evaluator then decides every bucket.
//!
//! [`span`] over-approximates the starts the filter can select for one sample size (or for
//! any): `and` intersects, `or` joins, `not` is pushed down to the terms first. A term it
//! cannot bound (`ne`, `co`, `sw`, `ew`, `pr`) leaves the span open; that is safe, since the
//! span only chooses the candidate buckets and the evaluator decides each of them.

use jiff::tz::Offset;

use super::date::{FilterDate, parse_date};
use super::sample::Sample;
use crate::scim::{AttrPath, Filter, Op, Value};

/// The attributes a filter may name.
const ATTRIBUTES: [&str; 3] = ["startDate", "endDate", "sampleSize"];

/// What is wrong with a filter, and the term at fault.
#[derive(Debug)]
pub struct Fault {
    pub message: String,
    pub term: String,
}

fn fault(term: &Filter, message: impl Into<String>) -> Fault {
    Fault {
        message: message.into(),
        term: term.to_string(),
    }
}

fn is_date(p: &AttrPath) -> bool {
    p.is("startDate") || p.is("endDate")
}

/// Checks every term and returns the filter normalised for evaluation (module docs).
pub fn check(f: &Filter) -> Result<Filter, Fault> {
    Ok(match f {
        Filter::And(a, b) => Filter::And(Box::new(check(a)?), Box::new(check(b)?)),
        Filter::Or(a, b) => Filter::Or(Box::new(check(a)?), Box::new(check(b)?)),
        Filter::Not(inner) => Filter::Not(Box::new(check(inner)?)),
        Filter::ValuePath(p, inner) => {
            known(f, p)?;
            Filter::ValuePath(p.clone(), Box::new(check(inner)?))
        }
        Filter::Present(p) => {
            known(f, p)?;
            f.clone()
        }
        Filter::Compare(p, op, v) => {
            known(f, p)?;
            if is_date(p) {
                match op {
                    // Substring tests look at the printed dates, literally.
                    Op::Co | Op::Sw | Op::Ew => f.clone(),
                    _ => Filter::Compare(p.clone(), *op, date_literal(f, p, v)?),
                }
            } else {
                sizes_in(p, |s| admits(*op, s, v))
            }
        }
        Filter::In(p, values) => {
            known(f, p)?;
            if is_date(p) {
                let dates = values
                    .iter()
                    .map(|v| date_literal(f, p, v))
                    .collect::<Result<_, _>>()?;
                Filter::In(p.clone(), dates)
            } else {
                sizes_in(p, |s| values.iter().any(|v| admits(Op::Eq, s, v)))
            }
        }
    })
}

fn known(term: &Filter, p: &AttrPath) -> Result<(), Fault> {
    if ATTRIBUTES.iter().any(|a| p.is(a)) {
        Ok(())
    } else {
        Err(fault(
            term,
            format!("unknown attribute {p}: a filter can use startDate, endDate and sampleSize"),
        ))
    }
}

fn date_literal(term: &Filter, p: &AttrPath, v: &Value) -> Result<Value, Fault> {
    match v {
        Value::Str(text) => parse_date(text)
            .map(|d| Value::Str(d.canonical()))
            .map_err(|why| fault(term, format!("{p}: {why}"))),
        _ => Err(fault(
            term,
            format!("{p} compares with a date string, e.g. \"2019-01-01T00:00:00Z\""),
        )),
    }
}

/// `sampleSize in [...]`: the sizes for which `admits` holds.
fn sizes_in(p: &AttrPath, admits: impl Fn(Sample) -> bool) -> Filter {
    let sizes = Sample::ALL
        .into_iter()
        .filter(|s| admits(*s))
        .map(|s| Value::Str(s.name().to_string()))
        .collect();
    Filter::In(p.clone(), sizes)
}

/// Whether `sampleSize <op> v` holds for size `s`: names compare without case, and the
/// order comparisons order sizes by length.
fn admits(op: Op, s: Sample, v: &Value) -> bool {
    let Value::Str(text) = v else {
        // A number or boolean is never a size name (and so never equal to one).
        return op == Op::Ne;
    };
    let want = text.to_ascii_uppercase();
    let name = s.name();
    let rank = Sample::parse(&want).map(|w| s.seconds().cmp(&w.seconds()));
    use std::cmp::Ordering::{Equal, Greater, Less};
    match op {
        Op::Eq => name == want,
        Op::Ne => name != want,
        Op::Co => name.contains(&want),
        Op::Sw => name.starts_with(&want),
        Op::Ew => name.ends_with(&want),
        Op::Gt => rank == Some(Greater),
        Op::Ge => matches!(rank, Some(Greater | Equal)),
        Op::Lt => rank == Some(Less),
        Op::Le => matches!(rank, Some(Less | Equal)),
    }
}

/// Whether the filter names `name` anywhere.
pub fn mentions(f: &Filter, name: &str) -> bool {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => mentions(a, name) || mentions(b, name),
        Filter::Not(inner) => mentions(inner, name),
        Filter::ValuePath(p, inner) => p.is(name) || mentions(inner, name),
        Filter::Compare(p, ..) | Filter::Present(p) | Filter::In(p, _) => p.is(name),
    }
}

/// Whether the filter bounds a date anywhere (`eq`, `gt`, `ge`, `lt`, `le` or `in` on
/// `startDate` or `endDate`), even if `or` or `not` leave the window open.
pub fn bounds_dates(f: &Filter) -> bool {
    match f {
        Filter::And(a, b) | Filter::Or(a, b) => bounds_dates(a) || bounds_dates(b),
        Filter::Not(inner) | Filter::ValuePath(_, inner) => bounds_dates(inner),
        Filter::Compare(p, op, _) => {
            is_date(p) && matches!(op, Op::Eq | Op::Gt | Op::Ge | Op::Lt | Op::Le)
        }
        Filter::In(p, _) => is_date(p),
        Filter::Present(_) => false,
    }
}

/// One end of a [`Span`]: an instant (unix seconds), and the offset of the date it came
/// from (buckets align to the offset of the lower end).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Edge {
    pub at: i64,
    pub offset: Offset,
}

/// The bucket starts a filter can select: none, or from `lo` to `hi` (both included),
/// where `None` is open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    Empty,
    Range { lo: Option<Edge>, hi: Option<Edge> },
}

const OPEN: Span = Span::Range { lo: None, hi: None };

impl Span {
    fn and(self, other: Span) -> Span {
        let (Span::Range { lo: l1, hi: h1 }, Span::Range { lo: l2, hi: h2 }) = (self, other) else {
            return Span::Empty;
        };
        let lo = match (l1, l2) {
            (Some(a), Some(b)) => Some(if b.at > a.at { b } else { a }),
            (a, b) => a.or(b),
        };
        let hi = match (h1, h2) {
            (Some(a), Some(b)) => Some(if b.at < a.at { b } else { a }),
            (a, b) => a.or(b),
        };
        match (lo, hi) {
            (Some(l), Some(h)) if l.at > h.at => Span::Empty,
            _ => Span::Range { lo, hi },
        }
    }

    pub fn or(self, other: Span) -> Span {
        match (self, other) {
            (Span::Empty, s) | (s, Span::Empty) => s,
            (Span::Range { lo: l1, hi: h1 }, Span::Range { lo: l2, hi: h2 }) => {
                let lo = l1.zip(l2).map(|(a, b)| if b.at < a.at { b } else { a });
                let hi = h1.zip(h2).map(|(a, b)| if b.at > a.at { b } else { a });
                Span::Range { lo, hi }
            }
        }
    }

    fn point(at: Edge) -> Span {
        Span::Range {
            lo: Some(at),
            hi: Some(at),
        }
    }
}

/// The starts a checked filter can select when buckets are `len` seconds long and of
/// size `sample` (`None`: whatever the size, so `sampleSize` terms bound nothing). With
/// `len` 0 it is the span of the dates themselves.
pub fn span(f: &Filter, len: i64, sample: Option<Sample>) -> Span {
    walk(f, false, len, sample)
}

/// `negate`: the term is under an odd number of `not`s (negation pushed down).
fn walk(f: &Filter, negate: bool, len: i64, sample: Option<Sample>) -> Span {
    match f {
        Filter::And(a, b) if !negate => {
            walk(a, false, len, sample).and(walk(b, false, len, sample))
        }
        Filter::Or(a, b) if negate => walk(a, true, len, sample).and(walk(b, true, len, sample)),
        Filter::And(a, b) | Filter::Or(a, b) => {
            walk(a, negate, len, sample).or(walk(b, negate, len, sample))
        }
        Filter::Not(inner) => walk(inner, !negate, len, sample),
        // Single-valued attributes: the inner filter applies to the bucket itself.
        Filter::ValuePath(_, inner) => walk(inner, negate, len, sample),
        Filter::Present(p) if is_date(p) || sample.is_some() => {
            // Every bucket has all three attributes.
            if negate { Span::Empty } else { OPEN }
        }
        Filter::Present(_) => OPEN,
        Filter::In(p, values) if is_date(p) => {
            if negate {
                return OPEN;
            }
            values
                .iter()
                .filter_map(|v| edge(p, v, len))
                .fold(Span::Empty, |s, e| s.or(Span::point(e)))
        }
        Filter::In(_, sizes) => match sample {
            // After `check`, every sampleSize term is an `in` list of size names.
            Some(s) => {
                let named = sizes
                    .iter()
                    .any(|v| matches!(v, Value::Str(n) if n == s.name()));
                if named != negate { OPEN } else { Span::Empty }
            }
            None => OPEN,
        },
        Filter::Compare(p, op, v) if is_date(p) => {
            let Some(at) = edge(p, v, len) else {
                return OPEN;
            };
            let op = if negate { negated(*op) } else { Some(*op) };
            match op {
                Some(Op::Eq) => Span::point(at),
                Some(Op::Gt | Op::Ge) => Span::Range {
                    lo: Some(at),
                    hi: None,
                },
                Some(Op::Lt | Op::Le) => Span::Range {
                    lo: None,
                    hi: Some(at),
                },
                _ => OPEN,
            }
        }
        Filter::Compare(..) => OPEN,
    }
}

/// The order comparison that holds exactly when `op` does not (dates always compare).
fn negated(op: Op) -> Option<Op> {
    match op {
        Op::Eq => Some(Op::Ne),
        Op::Ne => Some(Op::Eq),
        Op::Gt => Some(Op::Le),
        Op::Ge => Some(Op::Lt),
        Op::Lt => Some(Op::Ge),
        Op::Le => Some(Op::Gt),
        Op::Co | Op::Sw | Op::Ew => None,
    }
}

/// A date term's instant as a bound on bucket starts: an `endDate` bound is a start bound
/// one bucket earlier.
fn edge(p: &AttrPath, v: &Value, len: i64) -> Option<Edge> {
    let Value::Str(text) = v else { return None };
    let FilterDate { at, offset } = parse_date(text).ok()?;
    let shift = if p.is("endDate") { len } else { 0 };
    Some(Edge {
        at: at.as_second() - shift,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scim::parse::parse;

    fn checked(text: &str) -> Filter {
        check(&parse(text).unwrap()).unwrap_or_else(|e| panic!("{text}: {}", e.message))
    }

    #[test]
    fn sample_size_terms_become_the_sizes_they_admit() {
        for (text, sizes) in [
            (r#"sampleSize eq "day""#, r#"["DAY"]"#),
            (r#"sampleSize ne "DAY""#, r#"["HOUR", "WEEK"]"#),
            (r#"sampleSize gt "HOUR""#, r#"["DAY", "WEEK"]"#),
            (r#"sampleSize le "day""#, r#"["HOUR", "DAY"]"#),
            (r#"sampleSize lt "HOUR""#, "[]"),
            (r#"sampleSize co "A""#, r#"["DAY"]"#),
            (r#"sampleSize sw "W""#, r#"["WEEK"]"#),
            (r#"sampleSize ew "R""#, r#"["HOUR"]"#),
            (
                r#"sampleSize in ["hour", "Week", 3]"#,
                r#"["HOUR", "WEEK"]"#,
            ),
            (r#"sampleSize eq "MONTH""#, "[]"),
            ("sampleSize eq 3", "[]"),
        ] {
            assert_eq!(
                checked(text).to_string(),
                format!("sampleSize in {sizes}"),
                "{text}"
            );
        }
    }

    #[test]
    fn date_literals_are_normalised_and_checked() {
        assert_eq!(
            checked(r#"EndDate lt "2019-02-31T23:59:00Z" and startDate ge "2019-01-01""#)
                .to_string(),
            r#"EndDate lt "2019-02-28T23:59:00+00:00" and startDate ge "2019-01-01T00:00:00+00:00""#
        );
        assert_eq!(
            checked(r#"startDate sw "2019-02""#).to_string(),
            r#"startDate sw "2019-02""#
        );
        for (text, message) in [
            (r#"userName eq "x""#, "unknown attribute userName"),
            (r#"startDate.day eq "x""#, "unknown attribute startDate.day"),
            (r#"startDate eq 5"#, "compares with a date string"),
            (r#"endDate gt "soon""#, "is not a date"),
            (r#"startDate in ["2019-01-01", "x"]"#, "is not a date"),
        ] {
            let e = check(&parse(text).unwrap()).unwrap_err();
            assert!(e.message.contains(message), "{text}: {}", e.message);
        }
    }

    fn at(text: &str) -> i64 {
        parse_date(text).unwrap().at.as_second()
    }

    fn bounds(text: &str, len: i64, sample: Option<Sample>) -> Option<(Option<i64>, Option<i64>)> {
        match span(&checked(text), len, sample) {
            Span::Empty => None,
            Span::Range { lo, hi } => Some((lo.map(|e| e.at), hi.map(|e| e.at))),
        }
    }

    #[test]
    fn spans_follow_and_or_not() {
        let (a, b) = (at("2026-01-01"), at("2026-01-10"));
        let range = r#"startDate ge "2026-01-01" and endDate le "2026-01-10""#;
        assert_eq!(bounds(range, 0, None), Some((Some(a), Some(b))));
        // endDate bounds a start one bucket earlier.
        assert_eq!(
            bounds(range, 86_400, None),
            Some((Some(a), Some(b - 86_400)))
        );
        // not (startDate lt A) is startDate ge A.
        let negated = r#"not (startDate lt "2026-01-01" or endDate gt "2026-01-10")"#;
        assert_eq!(bounds(negated, 0, None), Some((Some(a), Some(b))));
        // or joins.
        let two = r#"startDate eq "2026-01-01" or startDate eq "2026-01-10""#;
        assert_eq!(bounds(two, 0, None), Some((Some(a), Some(b))));
        // One side open.
        assert_eq!(
            bounds(r#"startDate gt "2026-01-01""#, 0, None),
            Some((Some(a), None))
        );
        assert_eq!(
            bounds(r#"startDate ne "2026-01-01""#, 0, None),
            Some((None, None))
        );
        // Contradictions select nothing.
        assert_eq!(
            bounds(
                r#"startDate gt "2026-01-10" and endDate lt "2026-01-01""#,
                0,
                None
            ),
            None
        );
        assert_eq!(bounds("not (startDate pr)", 0, None), None);
        // sampleSize terms bound nothing, but decide for a given size.
        let either = format!(r#"({range}) or sampleSize eq "DAY""#);
        assert_eq!(bounds(&either, 0, None), Some((None, None)));
        assert_eq!(
            bounds(&either, 3_600, Some(Sample::Hour)),
            Some((Some(a), Some(b - 3_600)))
        );
        assert_eq!(
            bounds(&either, 86_400, Some(Sample::Day)),
            Some((None, None))
        );
        let only_weeks = format!(r#"{range} and sampleSize eq "WEEK""#);
        assert_eq!(bounds(&only_weeks, 86_400, Some(Sample::Day)), None);
    }
}
