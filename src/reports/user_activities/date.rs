//! Dates in a `userActivities` filter, and dates as the report prints them.
//!
//! A filter date is ISO 8601: `2019-01-01T00:00:00Z`, `2018-02-17T09:10:12-04:00`,
//! `2018-02-17T09:10:12.250+0530`, `2026-11-01T08:00`, or a date alone, `2026-11-01`. Without
//! an offset it is UTC; a date alone is midnight UTC. A day past the end of its month is the
//! month's last day, so the seed's own `2019-02-31T23:59:00Z` is `2019-02-28T23:59:00Z` (a
//! day 0 or above 31, a month above 12, or a time out of range is still an error).

use jiff::Timestamp;
use jiff::civil::{Date, DateTime, Time};
use jiff::tz::{Offset, TimeZone};

/// A parsed filter date: the instant, and the offset it was written in (buckets align to
/// it, and the report prints in it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FilterDate {
    pub at: Timestamp,
    pub offset: Offset,
}

impl FilterDate {
    /// RFC 3339 in the written offset, which `scim`'s evaluator compares chronologically.
    pub fn canonical(&self) -> String {
        self.at.display_with_offset(self.offset).to_string()
    }
}

/// Reads a filter date; the error says what is wrong with it.
pub fn parse_date(text: &str) -> Result<FilterDate, String> {
    let why = |what: &str| {
        format!(
            "{text:?} is not a date: {what} (write 2019-01-01, 2019-01-01T00:00:00 or 2019-01-01T00:00:00Z; an offset such as -04:00 is allowed, UTC without one)"
        )
    };
    let b = text.as_bytes();
    let digits = |from: usize, n: usize| -> Option<i32> {
        let part = b.get(from..from + n)?;
        part.iter()
            .all(u8::is_ascii_digit)
            .then(|| part.iter().fold(0, |v, d| v * 10 + i32::from(d - b'0')))
    };
    let (Some(year), Some(month), Some(day)) = (digits(0, 4), digits(5, 2), digits(8, 2)) else {
        return Err(why("it does not start with YYYY-MM-DD"));
    };
    if b.get(4) != Some(&b'-') || b.get(7) != Some(&b'-') {
        return Err(why("it does not start with YYYY-MM-DD"));
    }
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return Err(why("no such month or day"));
    }
    let (Ok(year), Ok(month), Ok(day)) =
        (i16::try_from(year), i8::try_from(month), i8::try_from(day))
    else {
        return Err(why("no such month or day"));
    };
    let first = Date::new(year, month, 1).map_err(|e| why(&e.to_string()))?;
    // PingOne's own example asks for 2019-02-31: a day past the month's end is its last.
    let date =
        Date::new(year, month, day.min(first.days_in_month())).map_err(|e| why(&e.to_string()))?;

    let mut rest = &text[10..];
    let mut time = Time::midnight();
    if let Some(after) = rest
        .strip_prefix(['T', 't', ' '])
        .filter(|_| !rest.is_empty())
    {
        let t = after.as_bytes();
        let two = |from: usize| -> Option<i8> {
            let part = t.get(from..from + 2)?;
            part.iter()
                .all(u8::is_ascii_digit)
                .then(|| i8::try_from((part[0] - b'0') * 10 + (part[1] - b'0')).ok())
                .flatten()
        };
        let (Some(hour), Some(minute)) = (two(0), two(3)) else {
            return Err(why("the time is not HH:MM[:SS]"));
        };
        if t.get(2) != Some(&b':') {
            return Err(why("the time is not HH:MM[:SS]"));
        }
        let mut used = 5;
        let mut second = 0;
        let mut nanos = 0i32;
        if t.get(5) == Some(&b':') {
            second = two(6).ok_or_else(|| why("the seconds are not two digits"))?;
            used = 8;
            if t.get(8) == Some(&b'.') {
                let frac: Vec<u8> = t[9..]
                    .iter()
                    .take_while(|c| c.is_ascii_digit())
                    .copied()
                    .collect();
                if frac.is_empty() || frac.len() > 9 {
                    return Err(why("the fraction of a second is not 1 to 9 digits"));
                }
                nanos = frac
                    .iter()
                    .chain(std::iter::repeat(&b'0'))
                    .take(9)
                    .fold(0, |v, d| v * 10 + i32::from(d - b'0'));
                used = 9 + frac.len();
            }
        }
        time = Time::new(hour, minute, second, nanos).map_err(|e| why(&e.to_string()))?;
        rest = &after[used..];
    }
    let offset = match rest {
        "" | "Z" | "z" => Offset::UTC,
        _ => written_offset(rest).ok_or_else(|| why("the offset is not Z, ±HH:MM or ±HHMM"))?,
    };
    let at = offset
        .to_timestamp(DateTime::from_parts(date, time))
        .map_err(|e| why(&e.to_string()))?;
    Ok(FilterDate { at, offset })
}

/// `±HH:MM`, `±HHMM` or `±HH`.
fn written_offset(text: &str) -> Option<Offset> {
    let sign: i32 = match text.as_bytes().first()? {
        b'+' => 1,
        b'-' => -1,
        _ => return None,
    };
    let digits: String = text[1..].chars().filter(|c| *c != ':').collect();
    if !matches!(digits.len(), 2 | 4)
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || text[1..].matches(':').count() > usize::from(digits.len() == 4)
    {
        return None;
    }
    let hours: i32 = digits[..2].parse().ok()?;
    let minutes: i32 = digits
        .get(2..)
        .filter(|m| !m.is_empty())
        .map_or(Some(0), |m| m.parse().ok())?;
    if hours > 23 || minutes > 59 {
        return None;
    }
    Offset::from_seconds(sign * (hours * 3_600 + minutes * 60)).ok()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> (String, i32) {
        let d = parse_date(text).unwrap_or_else(|e| panic!("{e}"));
        (d.at.to_string(), d.offset.seconds())
    }

    #[test]
    fn dates_read_as_documented() {
        let utc = |s: &str| (s.to_string(), 0);
        assert_eq!(at("2019-01-01T00:00:00Z"), utc("2019-01-01T00:00:00Z"));
        assert_eq!(
            at("2018-02-17T09:10:12-04:00"),
            ("2018-02-17T13:10:12Z".into(), -4 * 3_600)
        );
        assert_eq!(
            at("2018-02-17T09:10:12.25+0530"),
            ("2018-02-17T03:40:12.25Z".into(), 19_800)
        );
        assert_eq!(
            at("2018-02-17T09:10:12+05"),
            ("2018-02-17T04:10:12Z".into(), 18_000)
        );
        // No offset: UTC. A date alone: midnight UTC.
        assert_eq!(at("2026-11-01T08:00"), utc("2026-11-01T08:00:00Z"));
        assert_eq!(at("2026-11-01T08:00:30"), utc("2026-11-01T08:00:30Z"));
        assert_eq!(at("2026-11-01"), utc("2026-11-01T00:00:00Z"));
        assert_eq!(at("2026-11-01 08:00z"), utc("2026-11-01T08:00:00Z"));
        // A day past the month's end: the month's last day.
        assert_eq!(at("2019-02-31T23:59:00Z"), utc("2019-02-28T23:59:00Z"));
        assert_eq!(at("2020-02-30"), utc("2020-02-29T00:00:00Z"));
        assert_eq!(at("2026-04-31"), utc("2026-04-30T00:00:00Z"));
        assert_eq!(
            parse_date("2018-02-17T09:10:12-04:00").unwrap().canonical(),
            "2018-02-17T09:10:12-04:00"
        );
    }

    #[test]
    fn what_is_not_a_date_says_why() {
        for (text, why) in [
            ("yesterday", "YYYY-MM-DD"),
            ("2019-1-01", "YYYY-MM-DD"),
            ("2019-13-01", "no such month"),
            ("2019-02-32", "no such month or day"),
            ("2019-02-00", "no such month or day"),
            ("2019-02-01T25:00", "hour"),
            ("2019-02-01T10", "HH:MM"),
            ("2019-02-01T10:00:00.", "fraction"),
            ("2019-02-01T10:00:00+5", "offset"),
            ("2019-02-01T10:00:00 UTC", "offset"),
            ("2019-02-01T10:00:00+24:00", "offset"),
        ] {
            let e = parse_date(text).unwrap_err();
            assert!(e.contains(why) && e.contains(text), "{text}: {e}");
        }
    }
}
