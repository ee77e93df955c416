//! `sampleSize`: the length of the buckets a `userActivities` answer is laid out in.

use crate::metrics::users::HOUR;

pub(super) const DAY: i64 = 86_400;
pub(super) const WEEK: i64 = 7 * DAY;

/// `sampleSize`: the bucket length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sample {
    Hour,
    Day,
    Week,
}

impl Sample {
    /// Shortest first.
    pub const ALL: [Sample; 3] = [Sample::Hour, Sample::Day, Sample::Week];

    pub fn seconds(self) -> i64 {
        match self {
            Sample::Hour => HOUR,
            Sample::Day => DAY,
            Sample::Week => WEEK,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Sample::Hour => "HOUR",
            Sample::Day => "DAY",
            Sample::Week => "WEEK",
        }
    }

    /// `HOUR`, `DAY` or `WEEK`, in any case.
    pub fn parse(s: &str) -> Option<Sample> {
        Sample::ALL
            .into_iter()
            .find(|x| x.name().eq_ignore_ascii_case(s))
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

    pub(super) fn rank(self) -> i32 {
        match self {
            Sample::Hour => 0,
            Sample::Day => 1,
            Sample::Week => 2,
        }
    }
}
