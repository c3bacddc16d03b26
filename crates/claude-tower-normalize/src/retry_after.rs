//! Folding a server's retry hints into one wait.
//!
//! Three headers may carry the hint: `retry-after-ms` and
//! `x-ms-retry-after-ms` (milliseconds, Azure) and `retry-after` (seconds,
//! integer or decimal, or an HTTP-date in any of the three forms RFC 9110
//! allows). The millisecond headers are more precise, so they win.
//!
//! # Why a cap, and why over it is `None`
//!
//! A hint longer than [`MAX_RETRY_AFTER`] (one day) is treated as garbage:
//! a clock far off, an epoch timestamp sent where seconds were meant, a
//! date decades ahead. Those give `None`, and the caller backs off by
//! itself. Genuine hints up to a day (a quota window on Azure) are kept, so
//! that Retry can see "the server wants an hour" and decide to fail over
//! instead of waiting: how long to actually wait is Retry's cap, not ours.

use std::time::{Duration, SystemTime};

use claude_tower_core::headers;
use http::{HeaderMap, HeaderName};

/// The longest hint [`retry_after`] accepts: one day. Longer hints are `None`.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(24 * 60 * 60);

/// Folds `retry-after-ms`, `x-ms-retry-after-ms` and `retry-after` into one wait.
///
/// Precedence: `retry-after-ms`, then `x-ms-retry-after-ms`, then
/// `retry-after`; a header whose value does not parse is skipped. Values are
/// read as numbers first (so `1.5` is a second and a half, never a year),
/// then as an HTTP-date (IMF-fixdate, RFC 850 or asctime) relative to `now`.
/// A date in the past is a zero wait. Negative, non-numeric, `NaN`, infinite
/// or longer-than-[`MAX_RETRY_AFTER`] values give `None`.
///
/// ```
/// use claude_tower_normalize::retry_after;
/// use http::HeaderMap;
/// use std::time::{Duration, SystemTime};
///
/// let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777);
/// let mut h = HeaderMap::new();
/// h.insert("Retry-After", "Sun, 06 Nov 1994 08:49:40 GMT".parse().unwrap());
/// assert_eq!(retry_after(&h, now), Some(Duration::from_secs(3)));
/// h.insert("x-ms-retry-after-ms", "1500".parse().unwrap());
/// assert_eq!(retry_after(&h, now), Some(Duration::from_millis(1500)));
/// ```
pub fn retry_after(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    millis_header(headers, &headers::RETRY_AFTER_MS)
        .or_else(|| millis_header(headers, &headers::X_MS_RETRY_AFTER_MS))
        .or_else(|| {
            let value = headers.get(headers::RETRY_AFTER)?.to_str().ok()?.trim();
            seconds(value).or_else(|| date(value, now))
        })
        .filter(|wait| *wait <= MAX_RETRY_AFTER)
}

fn millis_header(headers: &HeaderMap, name: &HeaderName) -> Option<Duration> {
    let value = headers.get(name)?.to_str().ok()?.trim();
    let (whole, nanos) = decimal(value)?;
    // `nanos` are billionths of a millisecond here: a thousandth of a nanosecond each.
    let whole = Duration::from_millis(whole);
    let frac = Duration::from_nanos(nanos.div_ceil(1000));
    whole
        .checked_add(frac)
        .filter(|wait| *wait <= MAX_RETRY_AFTER)
}

fn seconds(value: &str) -> Option<Duration> {
    let (whole, nanos) = decimal(value)?;
    // `nanos` is below one second, so this never overflows `Duration`.
    Some(Duration::new(whole, u32::try_from(nanos).ok()?))
}

/// Parses `DIGITS[.DIGITS]` (or `.DIGITS`) into whole units and the fraction
/// in billionths, rounded up so a wait never shrinks. No sign, no exponent,
/// no `NaN` or `inf`: everything else is `None`.
fn decimal(value: &str) -> Option<(u64, u64)> {
    let (int, frac) = match value.split_once('.') {
        Some((int, frac)) => (int, Some(frac)),
        None => (value, None),
    };
    if int.is_empty() && frac.is_none_or(str::is_empty) {
        return None;
    }
    let mut whole: u64 = 0;
    for b in int.bytes() {
        let digit = digit(b)?;
        whole = whole.checked_mul(10)?.checked_add(digit)?;
    }
    let mut nanos: u64 = 0;
    if let Some(frac) = frac {
        let mut scale = 100_000_000;
        let mut rest_nonzero = false;
        for b in frac.bytes() {
            let digit = digit(b)?;
            if scale > 0 {
                nanos += digit * scale;
                scale /= 10;
            } else if digit != 0 {
                rest_nonzero = true;
            }
        }
        if rest_nonzero {
            nanos += 1;
        }
        if nanos == 1_000_000_000 {
            whole = whole.checked_add(1)?;
            nanos = 0;
        }
    }
    Some((whole, nanos))
}

fn digit(b: u8) -> Option<u64> {
    b.is_ascii_digit().then(|| u64::from(b - b'0'))
}

fn date(value: &str, now: SystemTime) -> Option<Duration> {
    let at = httpdate::parse_http_date(value).ok()?;
    // A date already past means "now".
    Some(at.duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;
    use proptest::prelude::*;

    // Sun, 06 Nov 1994 08:49:37 GMT, the RFC's example date.
    const EXAMPLE: u64 = 784_111_777;

    fn at(secs: u64) -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(secs)
    }

    fn one(name: &str, value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    fn wait(name: &str, value: &str) -> Option<Duration> {
        retry_after(&one(name, value), at(EXAMPLE))
    }

    #[test]
    fn integer_and_decimal_seconds() {
        assert_eq!(wait("retry-after", "2"), Some(Duration::from_secs(2)));
        assert_eq!(wait("retry-after", " 2 "), Some(Duration::from_secs(2)));
        assert_eq!(
            wait("retry-after", "1.5"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            wait("retry-after", "0.25"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(wait("retry-after", ".5"), Some(Duration::from_millis(500)));
        assert_eq!(wait("retry-after", "3."), Some(Duration::from_secs(3)));
        assert_eq!(wait("retry-after", "0"), Some(Duration::ZERO));
        assert_eq!(
            wait("retry-after", "0.0000000001"),
            Some(Duration::from_nanos(1)),
            "a fraction below a nanosecond rounds up"
        );
    }

    #[test]
    fn millisecond_headers() {
        assert_eq!(
            wait("retry-after-ms", "1500"),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            wait("x-ms-retry-after-ms", "250"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(
            wait("RETRY-AFTER-MS", "1.5"),
            Some(Duration::from_micros(1500))
        );
    }

    #[test]
    fn precedence_millis_first() {
        let mut h = one("retry-after", "7");
        assert_eq!(retry_after(&h, at(EXAMPLE)), Some(Duration::from_secs(7)));
        h.insert("x-ms-retry-after-ms", HeaderValue::from_static("900"));
        assert_eq!(
            retry_after(&h, at(EXAMPLE)),
            Some(Duration::from_millis(900))
        );
        h.insert("retry-after-ms", HeaderValue::from_static("100"));
        assert_eq!(
            retry_after(&h, at(EXAMPLE)),
            Some(Duration::from_millis(100))
        );
        // A garbage millisecond header falls through to the next one.
        h.insert("retry-after-ms", HeaderValue::from_static("soon"));
        assert_eq!(
            retry_after(&h, at(EXAMPLE)),
            Some(Duration::from_millis(900))
        );
    }

    #[test]
    fn the_three_date_forms() {
        for value in [
            "Sun, 06 Nov 1994 08:49:40 GMT",
            "Sunday, 06-Nov-94 08:49:40 GMT",
            "Sun Nov  6 08:49:40 1994",
        ] {
            assert_eq!(
                wait("Retry-After", value),
                Some(Duration::from_secs(3)),
                "{value}"
            );
        }
    }

    #[test]
    fn past_dates_are_zero() {
        assert_eq!(
            wait("retry-after", "Sun, 06 Nov 1994 08:00:00 GMT"),
            Some(Duration::ZERO)
        );
    }

    #[test]
    fn garbage_is_none() {
        for value in [
            "",
            " ",
            ".",
            "-1",
            "+1",
            "-0.5",
            "NaN",
            "nan",
            "inf",
            "Infinity",
            "1e3",
            "1.2.3",
            "0x10",
            "1 000",
            "soon",
            "99999999999999999999999",
            "Mon, 06 Nov 1994 08:49:40 GMT", // wrong weekday
            "Sun, 32 Nov 1994 08:49:40 GMT",
        ] {
            assert_eq!(wait("retry-after", value), None, "{value:?}");
            assert_eq!(wait("retry-after-ms", value), None, "{value:?} ms");
        }
        let opaque = {
            let mut h = HeaderMap::new();
            h.insert("retry-after", HeaderValue::from_bytes(b"\xff1").unwrap());
            h
        };
        assert_eq!(retry_after(&opaque, at(EXAMPLE)), None);
        assert_eq!(retry_after(&HeaderMap::new(), at(EXAMPLE)), None);
    }

    #[test]
    fn absurd_waits_are_none() {
        assert_eq!(wait("retry-after", "86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(wait("retry-after", "86400.001"), None);
        assert_eq!(
            wait("retry-after", "1700000000"),
            None,
            "an epoch, not a wait"
        );
        assert_eq!(wait("retry-after-ms", "86400001"), None);
        assert_eq!(wait("retry-after", "Fri, 31 Dec 9999 23:59:59 GMT"), None);
        // An absurd millisecond header does not hide a sane `retry-after`.
        let mut h = one("retry-after-ms", "999999999999");
        h.insert("retry-after", HeaderValue::from_static("3"));
        assert_eq!(retry_after(&h, at(EXAMPLE)), Some(Duration::from_secs(3)));
    }

    #[test]
    fn httpdate_reads_all_three_forms() {
        // The claim the module relies on: httpdate parses RFC 850 and asctime.
        let imf = httpdate::parse_http_date("Sun, 06 Nov 1994 08:49:37 GMT").unwrap();
        let rfc850 = httpdate::parse_http_date("Sunday, 06-Nov-94 08:49:37 GMT").unwrap();
        let asctime = httpdate::parse_http_date("Sun Nov  6 08:49:37 1994").unwrap();
        assert_eq!(imf, at(EXAMPLE));
        assert_eq!(rfc850, imf);
        assert_eq!(asctime, imf);
    }

    proptest! {
        #[test]
        fn any_bytes_any_clock_no_panic_and_bounded(
            name in prop::sample::select(vec!["retry-after", "retry-after-ms", "x-ms-retry-after-ms"]),
            value in prop::collection::vec(any::<u8>(), 0..64),
            now in any::<i64>(),
        ) {
            let Ok(value) = HeaderValue::from_bytes(&value) else { return Ok(()) };
            let mut h = HeaderMap::new();
            h.insert(HeaderName::from_static(name), value);
            // Any clock, before the epoch too, as far as `SystemTime` reaches.
            let offset = Duration::from_secs(now.unsigned_abs());
            let now = if now >= 0 {
                SystemTime::UNIX_EPOCH.checked_add(offset)
            } else {
                SystemTime::UNIX_EPOCH.checked_sub(offset)
            }
            .unwrap_or(SystemTime::UNIX_EPOCH);
            if let Some(wait) = retry_after(&h, now) {
                prop_assert!(wait <= MAX_RETRY_AFTER);
            }
        }

        #[test]
        fn numbers_round_trip(millis in 0u64..=86_400_000) {
            let expected = Duration::from_millis(millis);
            prop_assert_eq!(wait("retry-after-ms", &millis.to_string()), Some(expected));
            let secs = format!("{}.{:03}", millis / 1000, millis % 1000);
            prop_assert_eq!(wait("retry-after", &secs), Some(expected));
        }

        #[test]
        fn dates_round_trip(now in 0u64..=253_402_300_799 - 86_400, ahead in 0u64..=86_400, behind in 0u64..=1_000_000) {
            let target = at(now + ahead);
            for value in forms(target) {
                prop_assert_eq!(retry_after(&one("retry-after", &value), at(now)), Some(Duration::from_secs(ahead)), "{}", value);
            }
            let past = at(now.saturating_sub(behind));
            prop_assert_eq!(retry_after(&one("retry-after", &httpdate::fmt_http_date(past)), at(now)), Some(Duration::ZERO));
        }
    }

    /// `target` in IMF-fixdate, and in RFC 850 and asctime when it can
    /// be written so (RFC 850 has two-digit years: 1970 to 2069).
    fn forms(target: SystemTime) -> Vec<String> {
        let imf = httpdate::fmt_http_date(target);
        // "Sun, 06 Nov 1994 08:49:37 GMT"
        let parts: Vec<&str> = imf.split([' ', ',']).filter(|s| !s.is_empty()).collect();
        let [wday, day, mon, year, time, _gmt] = parts[..] else {
            return vec![imf];
        };
        let full_day = match wday {
            "Mon" => "Monday",
            "Tue" => "Tuesday",
            "Wed" => "Wednesday",
            "Thu" => "Thursday",
            "Fri" => "Friday",
            "Sat" => "Saturday",
            _ => "Sunday",
        };
        let mut out = vec![imf.clone()];
        let asctime_day = format!("{:>2}", day.trim_start_matches('0'));
        out.push(format!("{wday} {mon} {asctime_day} {time} {year}"));
        if let Ok(y) = year.parse::<u16>()
            && (1970..2070).contains(&y)
        {
            out.push(format!("{full_day}, {day}-{mon}-{:02} {time} GMT", y % 100));
        }
        out
    }
}
