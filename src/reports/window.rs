//! Report windows: the dates a report is asked for, and the way ASE prints them.
//!
//! Accepted forms, for `earlier_date`/`later_date` (and the CLI's `--from`/`--to`):
//! `2018-02-13` (midnight), `2018-02-13T18:00`, `2018-02-13T18:00:00` (all in the
//! configured `timezone`), and full ISO 8601 with an offset or `Z`
//! (`2018-02-13T18:00:00-04:00`). Without dates a report covers the last 24 hours; with
//! only one, the other end is 24 hours away (or now). The window is half-open:
//! `[earlier, later)`.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp, civil};

/// A report's time range, `[from, to)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub from: Timestamp,
    pub to: Timestamp,
}

/// Why a window could not be built. `param` is the query parameter at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    #[error(
        "{param}: {value:?} is not a date (use 2018-02-13, 2018-02-13T18:00 or ISO 8601 with an offset)"
    )]
    BadDate { param: &'static str, value: String },
    #[error("earlier_date must be before later_date")]
    Order,
}

impl WindowError {
    pub fn param(&self) -> &'static str {
        match self {
            WindowError::BadDate { param, .. } => param,
            WindowError::Order => "earlier_date",
        }
    }
}

const DAY: SignedDuration = SignedDuration::from_hours(24);

impl Window {
    /// Builds the window from the two optional parameters, as of `now`.
    pub fn parse(
        earlier: Option<&str>,
        later: Option<&str>,
        now: Timestamp,
        tz: &TimeZone,
    ) -> Result<Window, WindowError> {
        let earlier = earlier
            .map(|v| parse_date(v, tz).ok_or_else(|| bad("earlier_date", v)))
            .transpose()?;
        let later = later
            .map(|v| parse_date(v, tz).ok_or_else(|| bad("later_date", v)))
            .transpose()?;
        let (from, to) = match (earlier, later) {
            (Some(f), Some(t)) => (f, t),
            (Some(f), None) => (f, f.saturating_add(DAY).unwrap_or(f).min(now).max(f)),
            (None, Some(t)) => (t.saturating_sub(DAY).unwrap_or(t), t),
            (None, None) => (now.saturating_sub(DAY).unwrap_or(now), now),
        };
        if from >= to {
            return Err(WindowError::Order);
        }
        Ok(Window { from, to })
    }

    /// `[from, to)` in unix seconds, rounding both ends up to a whole second.
    pub fn unix_secs(&self) -> (i64, i64) {
        let up = |t: Timestamp| t.as_second() + i64::from(t.subsec_nanosecond() > 0);
        (up(self.from), up(self.to))
    }
}

fn bad(param: &'static str, value: &str) -> WindowError {
    WindowError::BadDate {
        param,
        value: value.to_string(),
    }
}

/// One date in any accepted form; civil forms are read in `tz`.
pub fn parse_date(value: &str, tz: &TimeZone) -> Option<Timestamp> {
    // A `+` in a query string arrives as a space once form-decoded.
    let value = value.trim().replace(' ', "+");
    if let Ok(ts) = value.parse::<Timestamp>() {
        return Some(ts);
    }
    let civil = value.parse::<civil::DateTime>().ok().or_else(|| {
        value
            .parse::<civil::Date>()
            .ok()
            .map(|d| d.to_datetime(civil::Time::midnight()))
    })?;
    tz.to_ambiguous_zoned(civil)
        .compatible()
        .ok()
        .map(|z| z.timestamp())
}

/// ASE's report date: `Tue Feb 13 18:00:00:000 2018`, in `tz`.
pub fn ase_date(ts: Timestamp, tz: &TimeZone) -> String {
    ts.to_zoned(tz.clone())
        .strftime("%a %b %d %H:%M:%S:%3f %Y")
        .to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn accepts_ase_forms_and_iso_8601() {
        let utc = TimeZone::UTC;
        assert_eq!(
            parse_date("2018-02-13", &utc),
            Some(ts("2018-02-13T00:00:00Z"))
        );
        assert_eq!(
            parse_date("2018-02-13T18:00", &utc),
            Some(ts("2018-02-13T18:00:00Z"))
        );
        assert_eq!(
            parse_date("2018-02-13T18:00:00-04:00", &utc),
            Some(ts("2018-02-13T22:00:00Z"))
        );
        assert_eq!(
            parse_date("2018-02-13T18:00:00 05:30", &utc),
            Some(ts("2018-02-13T12:30:00Z"))
        );
        assert_eq!(
            parse_date("2018-02-13T18:00:00.250Z", &utc),
            Some(ts("2018-02-13T18:00:00.25Z"))
        );
        let ny = TimeZone::get("America/New_York").unwrap();
        assert_eq!(
            parse_date("2018-02-13T18:00", &ny),
            Some(ts("2018-02-13T23:00:00Z"))
        );
        assert_eq!(parse_date("13/02/2018", &utc), None);
        assert_eq!(parse_date("2018-02-30", &utc), None);
    }

    #[test]
    fn defaults_to_the_last_day_and_checks_order() {
        let now = ts("2018-02-18T18:00:00Z");
        let utc = TimeZone::UTC;
        let w = Window::parse(None, None, now, &utc).unwrap();
        assert_eq!((w.from, w.to), (ts("2018-02-17T18:00:00Z"), now));
        let w = Window::parse(None, Some("2018-02-14"), now, &utc).unwrap();
        assert_eq!(
            (w.from, w.to),
            (ts("2018-02-13T00:00:00Z"), ts("2018-02-14T00:00:00Z"))
        );
        assert_eq!(
            Window::parse(Some("2018-02-14"), Some("2018-02-13"), now, &utc),
            Err(WindowError::Order)
        );
        let e = Window::parse(Some("soon"), None, now, &utc).unwrap_err();
        assert_eq!(e.param(), "earlier_date");
    }

    #[test]
    fn renders_like_ase() {
        assert_eq!(
            ase_date(ts("2018-02-13T18:00:00Z"), &TimeZone::UTC),
            "Tue Feb 13 18:00:00:000 2018"
        );
        assert_eq!(
            ase_date(ts("2018-02-03T08:05:09.042Z"), &TimeZone::UTC),
            "Sat Feb 03 08:05:09:042 2018"
        );
    }
}
