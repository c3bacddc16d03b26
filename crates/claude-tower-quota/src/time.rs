//! Calendar periods in UTC and RFC 3339 timestamps, without a date crate.
//!
//! The same arithmetic runs inside the Redis script (`store/check.lua`), so a
//! replica and Redis agree on where a period starts. Dates use Howard
//! Hinnant's `days_from_civil` / `civil_from_days`, exact for the proleptic
//! Gregorian calendar.

use std::fmt;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

const DAY: i64 = 86_400;

/// A calendar period of a token quota, in UTC.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Period {
    /// From `hh:00:00` to the next hour.
    Hour,
    /// From midnight to midnight.
    Day,
    /// From Monday 00:00 to the next Monday (ISO 8601 weeks).
    Week,
    /// From the first of the month to the first of the next.
    Month,
}

impl Period {
    /// The lower-case name: `hour`, `day`, `week`, `month`.
    pub fn as_str(self) -> &'static str {
        match self {
            Period::Hour => "hour",
            Period::Day => "day",
            Period::Week => "week",
            Period::Month => "month",
        }
    }

    /// The code the Redis script uses (1..=4).
    #[cfg(feature = "redis")]
    pub(crate) fn code(self) -> u8 {
        match self {
            Period::Hour => 1,
            Period::Day => 2,
            Period::Week => 3,
            Period::Month => 4,
        }
    }

    #[cfg(feature = "redis")]
    pub(crate) fn from_code(code: i64) -> Option<Self> {
        Some(match code {
            1 => Period::Hour,
            2 => Period::Day,
            3 => Period::Week,
            4 => Period::Month,
            _ => return None,
        })
    }

    /// An average length, to compare quotas of different periods.
    pub(crate) fn nominal_secs(self) -> u64 {
        match self {
            Period::Hour => 3_600,
            Period::Day => 86_400,
            Period::Week => 7 * 86_400,
            // 365.2425 / 12 days.
            Period::Month => 2_629_746,
        }
    }

    /// The `[start, end)` of the period holding `unix_secs`, in Unix seconds.
    pub fn bounds(self, unix_secs: i64) -> (i64, i64) {
        match self {
            Period::Hour => {
                let start = unix_secs.div_euclid(3_600) * 3_600;
                (start, start + 3_600)
            }
            Period::Day => {
                let start = unix_secs.div_euclid(DAY) * DAY;
                (start, start + DAY)
            }
            Period::Week => {
                let days = unix_secs.div_euclid(DAY);
                // 1970-01-01 was a Thursday: three days after a Monday.
                let monday = days - (days + 3).rem_euclid(7);
                (monday * DAY, (monday + 7) * DAY)
            }
            Period::Month => {
                let (y, m, _) = civil_from_days(unix_secs.div_euclid(DAY));
                let (ny, nm) = if m == 12 { (y + 1, 1) } else { (y, m + 1) };
                (
                    days_from_civil(y, m, 1) * DAY,
                    days_from_civil(ny, nm, 1) * DAY,
                )
            }
        }
    }
}

impl fmt::Display for Period {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = if m > 2 { m - 3 } else { m + 9 };
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// A point in time as Unix microseconds, printed as RFC 3339 in UTC
/// (`2026-12-01T00:00:00Z`; fractions of a second are rounded up, so a
/// reset is never announced early).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    /// The instant `micros` after the Unix epoch.
    pub fn from_unix_micros(micros: i64) -> Self {
        Self(micros)
    }

    /// Microseconds since the Unix epoch.
    pub fn unix_micros(self) -> i64 {
        self.0
    }

    /// Whole seconds since the Unix epoch, rounded up.
    pub fn unix_secs_ceil(self) -> i64 {
        self.0.div_euclid(1_000_000) + i64::from(self.0.rem_euclid(1_000_000) != 0)
    }

    /// The system clock's now.
    pub fn now() -> Self {
        Self(system_micros(SystemTime::now()))
    }
}

impl Timestamp {
    /// `YYYY-MM-DDTHH:MM:SSZ` without the formatting machinery (it is
    /// written into up to six headers per response). Years outside
    /// 0..=9999 are clamped.
    pub(crate) fn rfc3339(self) -> [u8; 20] {
        let secs = self.unix_secs_ceil();
        let (y, m, d) = civil_from_days(secs.div_euclid(DAY));
        let s = secs.rem_euclid(DAY);
        let mut out = *b"0000-00-00T00:00:00Z";
        let mut put = |at: usize, width: usize, mut v: i64| {
            for i in (0..width).rev() {
                out[at + i] = b'0' + (v % 10) as u8;
                v /= 10;
            }
        };
        put(0, 4, y.clamp(0, 9_999));
        put(5, 2, m);
        put(8, 2, d);
        put(11, 2, s / 3_600);
        put(14, 2, s % 3_600 / 60);
        put(17, 2, s % 60);
        out
    }

    /// As a header value.
    pub(crate) fn header_value(self) -> http::HeaderValue {
        http::HeaderValue::from_bytes(&self.rfc3339())
            .unwrap_or_else(|_| http::HeaderValue::from_static("1970-01-01T00:00:00Z"))
    }
}

impl fmt::Display for Timestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // NOTE: `rfc3339` writes ASCII digits and separators only.
        f.write_str(std::str::from_utf8(&self.rfc3339()).unwrap_or("1970-01-01T00:00:00Z"))
    }
}

impl Serialize for Timestamp {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

fn system_micros(t: SystemTime) -> i64 {
    match t.duration_since(UNIX_EPOCH) {
        Ok(d) => duration_micros(d),
        Err(e) => -duration_micros(e.duration()),
    }
}

/// The local store's clock: wall time at creation plus tokio's monotonic time
/// since, so it never steps backwards and tests with paused time move it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Clock {
    base_micros: i64,
    base: tokio::time::Instant,
}

impl Clock {
    pub(crate) fn new() -> Self {
        Self {
            base_micros: system_micros(SystemTime::now()),
            base: tokio::time::Instant::now(),
        }
    }

    pub(crate) fn now_micros(&self) -> i64 {
        let elapsed = tokio::time::Instant::now().saturating_duration_since(self.base);
        self.base_micros.saturating_add(duration_micros(elapsed))
    }
}

/// `d` in whole microseconds, saturating at `i64::MAX`.
pub(crate) fn duration_micros(d: Duration) -> i64 {
    i64::try_from(d.as_micros()).unwrap_or(i64::MAX)
}

/// `micros` as a duration, zero when negative.
pub(crate) fn micros(micros: i64) -> Duration {
    Duration::from_micros(u64::try_from(micros).unwrap_or(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(secs: i64) -> String {
        Timestamp::from_unix_micros(secs * 1_000_000).to_string()
    }

    #[test]
    fn rfc3339_known_instants() {
        assert_eq!(ts(0), "1970-01-01T00:00:00Z");
        assert_eq!(ts(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(ts(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(ts(-1), "1969-12-31T23:59:59Z");
        // A fraction rounds up: a reset is never announced early.
        assert_eq!(
            Timestamp::from_unix_micros(1).to_string(),
            "1970-01-01T00:00:01Z"
        );
    }

    #[test]
    fn civil_round_trips_over_centuries() {
        for days in (-800_000..800_000).step_by(97) {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(days_from_civil(y, m, d), days, "{y}-{m}-{d}");
        }
    }

    #[test]
    fn period_bounds() {
        // 2026-11-30T01:39:36Z, a Monday.
        let t = 1_796_002_776;
        assert_eq!(ts(Period::Hour.bounds(t).0), "2026-11-30T01:00:00Z");
        assert_eq!(ts(Period::Hour.bounds(t).1), "2026-11-30T02:00:00Z");
        assert_eq!(ts(Period::Day.bounds(t).0), "2026-11-30T00:00:00Z");
        assert_eq!(ts(Period::Week.bounds(t).0), "2026-11-30T00:00:00Z");
        assert_eq!(ts(Period::Week.bounds(t).1), "2026-12-07T00:00:00Z");
        assert_eq!(
            ts(Period::Week.bounds(t - 1_000_000).0),
            "2026-11-16T00:00:00Z"
        );
        assert_eq!(ts(Period::Month.bounds(t).0), "2026-11-01T00:00:00Z");
        assert_eq!(ts(Period::Month.bounds(t).1), "2026-12-01T00:00:00Z");
        // December rolls into January; February in a leap year.
        let dec = 1_798_761_599;
        assert_eq!(ts(Period::Month.bounds(dec).1), "2027-01-01T00:00:00Z");
        let feb = 951_782_400;
        assert_eq!(ts(Period::Month.bounds(feb).0), "2000-02-01T00:00:00Z");
        assert_eq!(ts(Period::Month.bounds(feb).1), "2000-03-01T00:00:00Z");
    }

    #[test]
    #[cfg(feature = "redis")]
    fn period_codes_round_trip() {
        for p in [Period::Hour, Period::Day, Period::Week, Period::Month] {
            assert_eq!(Period::from_code(i64::from(p.code())), Some(p));
        }
        assert_eq!(Period::from_code(0), None);
    }
}
