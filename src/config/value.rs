//! Typed values that appear in ASE's config files: booleans, durations, byte sizes and
//! request rates.
//!
//! Both `ase.conf` and the API JSON documents spell these as short strings (`"30s"`,
//! `"128mb"`, `"100/second"`). Each parser here returns a plain `String` reason on failure;
//! the caller wraps it in a [`super::error::ConfigError`] that names the file and the key.

use std::time::Duration;

/// `true` or `false`, case-insensitive (ASE writes lower case).
pub fn parse_bool(s: &str) -> Result<bool, String> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" => Ok(true),
        "false" => Ok(false),
        other => Err(format!("expected true or false, found {other:?}")),
    }
}

/// A duration: a bare integer is seconds (ASE's convention), otherwise a number with a
/// unit as jiff's friendly format reads it (`500ms`, `30s`, `2m`, `1h 30m`).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    let parsed: jiff::SignedDuration = s
        .parse()
        .map_err(|_| format!("expected a duration such as 30s, 500ms or 2m, found {s:?}"))?;
    Duration::try_from(parsed).map_err(|_| format!("duration {s:?} must not be negative"))
}

/// ASE's cookie lifetimes: a number followed by one of `s m h d w mnt yr`
/// (`m` is minutes; `mnt` is a 30-day month; `yr` is 365 days).
pub fn parse_ase_period(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{s:?} has no unit (one of s m h d w mnt yr)"))?;
    let (num, unit) = s.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("{s:?} does not start with a number"))?;
    let secs = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3_600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        "mnt" => 30 * 86_400,
        "yr" => 365 * 86_400,
        _ => {
            return Err(format!(
                "{s:?}: unknown unit {unit:?} (one of s m h d w mnt yr)"
            ));
        }
    };
    Ok(Duration::from_secs(n.saturating_mul(secs)))
}

/// A byte size such as `128mb`, `16KB`, `1gb` or a bare number of bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("expected a size such as 16kb or 128mb, found {s:?}"))?;
    let mult: u64 = match unit.trim() {
        "" | "b" => 1,
        "k" | "kb" => 1 << 10,
        "m" | "mb" => 1 << 20,
        "g" | "gb" => 1 << 30,
        other => {
            return Err(format!(
                "{s:?}: unknown size unit {other:?} (b, kb, mb, gb)"
            ));
        }
    };
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} is too large"))
}

/// The period of a [`Rate`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RatePeriod {
    Second,
    Minute,
    Hour,
}

impl RatePeriod {
    pub fn as_duration(self) -> Duration {
        match self {
            RatePeriod::Second => Duration::from_secs(1),
            RatePeriod::Minute => Duration::from_secs(60),
            RatePeriod::Hour => Duration::from_secs(3_600),
        }
    }
}

/// A flow-control threshold: at most `count` requests per `period`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: u64,
    pub period: RatePeriod,
}

/// ASE's `"<n>/second|minute|hour"`. `0`, `""` and `"0/<period>"` all mean "no limit" and
/// give `None`.
pub fn parse_rate(s: &str) -> Result<Option<Rate>, String> {
    let s = s.trim();
    if s.is_empty() || s == "0" {
        return Ok(None);
    }
    let (num, period) = s
        .split_once('/')
        .ok_or_else(|| format!("expected <n>/second, <n>/minute or <n>/hour, found {s:?}"))?;
    let count: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("{s:?}: {num:?} is not a whole number"))?;
    let period = match period.trim().to_ascii_lowercase().as_str() {
        "second" | "sec" | "s" => RatePeriod::Second,
        "minute" | "min" | "m" => RatePeriod::Minute,
        "hour" | "h" => RatePeriod::Hour,
        other => {
            return Err(format!(
                "{s:?}: unknown period {other:?} (second, minute, hour)"
            ));
        }
    };
    Ok((count > 0).then_some(Rate { count, period }))
}

/// A secret from the config (a key, a token): compared and used like a string, but
/// `Debug` never prints it, so a logged `Settings` cannot leak it.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({} chars)", self.0.len())
    }
}

/// A set of HTTP status codes, written as codes and classes: `[200, "3xx"]`, `"401,403"`.
/// Used for what counts as a sign-on success or failure (`userActivities`).
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct StatusSet([u64; 10]);

impl StatusSet {
    pub const EMPTY: StatusSet = StatusSet([0; 10]);

    /// Every code of the class `digit`xx (`2` for 2xx).
    pub fn class(digit: u16) -> StatusSet {
        let mut set = StatusSet::EMPTY;
        for code in digit * 100..digit * 100 + 100 {
            set.insert(code);
        }
        set
    }

    pub fn of(codes: &[u16]) -> StatusSet {
        let mut set = StatusSet::EMPTY;
        for &c in codes {
            set.insert(c);
        }
        set
    }

    fn insert(&mut self, code: u16) {
        let (word, bit) = (usize::from(code / 64), code % 64);
        if let Some(w) = self.0.get_mut(word) {
            *w |= 1 << bit;
        }
    }

    pub fn contains(&self, code: u16) -> bool {
        let (word, bit) = (usize::from(code / 64), code % 64);
        self.0.get(word).is_some_and(|w| w & (1 << bit) != 0)
    }

    /// Parses one item: a code (`401`) or a class (`2xx`), each in 100–599.
    pub fn parse_item(&mut self, item: &str) -> Result<(), String> {
        let item = item.trim();
        let lower = item.to_ascii_lowercase();
        if let Some(digit) = lower.strip_suffix("xx")
            && let Ok(d @ 1..=5) = digit.parse::<u16>()
        {
            for code in d * 100..d * 100 + 100 {
                self.insert(code);
            }
            return Ok(());
        }
        match item.parse::<u16>() {
            Ok(code @ 100..=599) => {
                self.insert(code);
                Ok(())
            }
            _ => Err(format!(
                "{item:?} is not a status code (100-599) or class (1xx-5xx)"
            )),
        }
    }
}

impl std::fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set()
            .entries((100..600).filter(|&c| self.contains(c)))
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_accept_bare_seconds_and_units() {
        assert_eq!(parse_duration("30"), Ok(Duration::from_secs(30)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1h 30m"), Ok(Duration::from_secs(5400)));
        assert!(parse_duration("-5s").is_err());
        assert!(parse_duration("soon").is_err());
    }

    #[test]
    fn ase_periods_use_ase_units() {
        assert_eq!(parse_ase_period("200m"), Ok(Duration::from_secs(12_000)));
        assert_eq!(parse_ase_period("1mnt"), Ok(Duration::from_secs(2_592_000)));
        assert_eq!(parse_ase_period("2yr"), Ok(Duration::from_secs(63_072_000)));
        assert!(parse_ase_period("20").is_err());
        assert!(parse_ase_period("20x").is_err());
    }

    #[test]
    fn sizes_are_binary_units() {
        assert_eq!(parse_bytes("128mb"), Ok(128 << 20));
        assert_eq!(parse_bytes("16KB"), Ok(16 << 10));
        assert_eq!(parse_bytes("4096"), Ok(4096));
        assert!(parse_bytes("12tb").is_err());
        assert!(parse_bytes("mb").is_err());
    }

    #[test]
    fn rates_treat_zero_as_off() {
        assert_eq!(parse_rate("0/second"), Ok(None));
        assert_eq!(parse_rate(""), Ok(None));
        assert_eq!(
            parse_rate("100/minute"),
            Ok(Some(Rate {
                count: 100,
                period: RatePeriod::Minute
            }))
        );
        assert!(parse_rate("100").is_err());
        assert!(parse_rate("x/second").is_err());
        assert!(parse_rate("5/day").is_err());
    }

    #[test]
    fn booleans_are_strict() {
        assert_eq!(parse_bool("TRUE"), Ok(true));
        assert_eq!(parse_bool("false"), Ok(false));
        assert!(parse_bool("yes").is_err());
    }
}
