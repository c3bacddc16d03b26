//! What a caller may spend: rates, a period quota, and how tokens are counted.

use std::fmt;
use std::time::Duration;

use claude_tower_core::TokenUsage;
use serde::{Deserialize, Serialize};

use crate::Period;

/// The largest amount any limit may name (10^12 tokens or requests): beyond
/// it a number is a typo, and the arithmetic stays exact in the `f64`s the
/// Redis script computes with.
pub const MAX_LIMIT: u64 = 1_000_000_000_000;

/// A rate limit with a burst: `amount` per `per`, with room for `burst` at
/// once.
///
/// Enforced as GCRA (a token bucket kept as one timestamp, the *theoretical
/// arrival time*): the bucket holds `burst`, refills at `amount / per`, and
/// may go below zero (debt) for tokens, which only become known when a
/// response ends.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Rate {
    amount: u64,
    per: Duration,
    burst: u64,
}

impl Rate {
    /// `amount` per minute, with a burst of one minute's worth (as
    /// Anthropic's own limits: a full bucket replenished continuously).
    pub fn per_minute(amount: u64) -> Result<Self, InvalidQuotaConfig> {
        Self::new(amount, Duration::from_secs(60))
    }

    /// `amount` per `per` (a test can compress a minute into seconds), with a
    /// burst of `amount`.
    pub fn new(amount: u64, per: Duration) -> Result<Self, InvalidQuotaConfig> {
        if amount == 0 {
            return Err(InvalidQuotaConfig::new(
                "a rate of 0 admits nothing; leave the limit out (or say \"unlimited\") instead",
            ));
        }
        if amount > MAX_LIMIT {
            return Err(InvalidQuotaConfig::new(format!(
                "a rate of {amount} is above the largest accepted ({MAX_LIMIT})"
            )));
        }
        if per < Duration::from_millis(1) || per > Duration::from_secs(366 * 86_400) {
            return Err(InvalidQuotaConfig::new(format!(
                "a rate's period must be between 1 ms and a year, not {per:?}"
            )));
        }
        Ok(Self {
            amount,
            per,
            burst: amount,
        })
    }

    /// Sets the burst: how much may go at once from a full bucket. `0` means
    /// strict pacing (tokens are still admitted while not in debt).
    pub fn with_burst(mut self, burst: u64) -> Result<Self, InvalidQuotaConfig> {
        if burst > MAX_LIMIT {
            return Err(InvalidQuotaConfig::new(format!(
                "a burst of {burst} is above the largest accepted ({MAX_LIMIT})"
            )));
        }
        self.burst = burst;
        Ok(self)
    }

    /// The amount per period.
    pub fn amount(&self) -> u64 {
        self.amount
    }

    /// The period.
    pub fn per(&self) -> Duration {
        self.per
    }

    /// The burst.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// Microseconds one unit takes to refill.
    pub(crate) fn interval_micros(&self) -> f64 {
        // Through `u64` (any period under 584,000 years): the same value as
        // from the `u128`, without the software `u128` to `f64` conversion.
        let micros = u64::try_from(self.per.as_micros()).unwrap_or(u64::MAX);
        micros as f64 / self.amount as f64
    }

    /// The bucket's depth in microseconds.
    pub(crate) fn tolerance_micros(&self) -> f64 {
        self.burst as f64 * self.interval_micros()
    }

    fn per_second(&self) -> f64 {
        self.amount as f64 / self.per.as_secs_f64()
    }
}

/// A token budget per UTC calendar period: `5000000/month`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TokenQuota {
    tokens: u64,
    period: Period,
}

impl TokenQuota {
    /// `tokens` per `period`.
    pub fn new(tokens: u64, period: Period) -> Result<Self, InvalidQuotaConfig> {
        if tokens == 0 {
            return Err(InvalidQuotaConfig::new(
                "a token quota of 0 admits nothing; leave it out (or say \"unlimited\") instead",
            ));
        }
        if tokens > MAX_LIMIT * 1_000 {
            return Err(InvalidQuotaConfig::new(format!(
                "a token quota of {tokens} is above the largest accepted ({})",
                MAX_LIMIT * 1_000
            )));
        }
        Ok(Self { tokens, period })
    }

    /// The tokens per period.
    pub fn tokens(&self) -> u64 {
        self.tokens
    }

    /// The period.
    pub fn period(&self) -> Period {
        self.period
    }

    fn per_second(&self) -> f64 {
        self.tokens as f64 / self.period.nominal_secs() as f64
    }
}

impl std::str::FromStr for TokenQuota {
    type Err = InvalidQuotaConfig;

    /// Parses `TOKENS/PERIOD`: `5000000/month`, `200000/day` (`_` allowed as
    /// a digit separator).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || {
            InvalidQuotaConfig::new(format!(
                "token quota {s:?}: expected TOKENS/PERIOD, e.g. 5000000/month (period: hour, day, week or month)"
            ))
        };
        let (tokens, period) = s.trim().split_once('/').ok_or_else(bad)?;
        let tokens: u64 = tokens.trim().replace('_', "").parse().map_err(|_| bad())?;
        let period = match period.trim().to_ascii_lowercase().as_str() {
            "hour" | "hourly" | "h" => Period::Hour,
            "day" | "daily" | "d" => Period::Day,
            "week" | "weekly" | "w" => Period::Week,
            "month" | "monthly" | "m" => Period::Month,
            _ => return Err(bad()),
        };
        Self::new(tokens, period)
    }
}

impl fmt::Display for TokenQuota {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.tokens, self.period)
    }
}

/// The limits of one key. Every part is optional: a policy with none is
/// unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Policy {
    pub(crate) tokens: Option<Rate>,
    pub(crate) requests: Option<Rate>,
    pub(crate) quota: Option<TokenQuota>,
}

impl Policy {
    /// No limits.
    pub fn unlimited() -> Self {
        Self::default()
    }

    /// Sets the token rate (tokens per minute).
    pub fn with_tokens(mut self, rate: Rate) -> Self {
        self.tokens = Some(rate);
        self
    }

    /// Sets the request rate (requests per minute).
    pub fn with_requests(mut self, rate: Rate) -> Self {
        self.requests = Some(rate);
        self
    }

    /// Sets the token quota per calendar period.
    pub fn with_quota(mut self, quota: TokenQuota) -> Self {
        self.quota = Some(quota);
        self
    }

    /// The token rate.
    pub fn tokens(&self) -> Option<Rate> {
        self.tokens
    }

    /// The request rate.
    pub fn requests(&self) -> Option<Rate> {
        self.requests
    }

    /// The token quota.
    pub fn quota(&self) -> Option<TokenQuota> {
        self.quota
    }

    /// Whether nothing is limited.
    pub fn is_unlimited(&self) -> bool {
        self.tokens.is_none() && self.requests.is_none() && self.quota.is_none()
    }
}

/// Which of two rates is more generous: unlimited beats any rate, then the
/// higher rate per second, then the deeper burst.
pub(crate) fn more_generous_rate(a: Option<Rate>, b: Option<Rate>) -> Option<Rate> {
    match (a, b) {
        (None, _) | (_, None) => None,
        (Some(a), Some(b)) => {
            let ka = (a.per_second(), a.burst as f64);
            let kb = (b.per_second(), b.burst as f64);
            Some(if kb > ka { b } else { a })
        }
    }
}

/// Which of two quotas is more generous: unlimited, then the higher average
/// tokens per second (a month is 365.2425 / 12 days), so `1000000/day` beats
/// `20000000/month`.
pub(crate) fn more_generous_quota(
    a: Option<TokenQuota>,
    b: Option<TokenQuota>,
) -> Option<TokenQuota> {
    match (a, b) {
        (None, _) | (_, None) => None,
        (Some(a), Some(b)) => Some(if b.per_second() > a.per_second() {
            b
        } else {
            a
        }),
    }
}

/// How much each kind of token counts against a caller's limits.
///
/// Cache reads cost a tenth of an input token on Anthropic's price list; set
/// `cache_read = 0.1` to count them that way. Defaults: every token counts
/// once.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Weights {
    /// `input_tokens` (uncached).
    pub input: f64,
    /// `output_tokens`.
    pub output: f64,
    /// `cache_creation_input_tokens`.
    pub cache_creation: f64,
    /// `cache_read_input_tokens`.
    pub cache_read: f64,
}

impl Default for Weights {
    fn default() -> Self {
        Self {
            input: 1.0,
            output: 1.0,
            cache_creation: 1.0,
            cache_read: 1.0,
        }
    }
}

impl Weights {
    /// The weighted tokens of `usage`, rounded up.
    pub fn tokens(&self, usage: &TokenUsage) -> u64 {
        let sum = usage.input as f64 * self.input
            + usage.output as f64 * self.output
            + usage.cache_creation_input as f64 * self.cache_creation
            + usage.cache_read_input as f64 * self.cache_read;
        // `as` saturates; NaN (impossible after validation) becomes 0.
        sum.ceil() as u64
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidQuotaConfig> {
        for (name, w) in [
            ("input", self.input),
            ("output", self.output),
            ("cache_creation", self.cache_creation),
            ("cache_read", self.cache_read),
        ] {
            if !(0.0..=100.0).contains(&w) {
                return Err(InvalidQuotaConfig::new(format!(
                    "weights.{name} = {w}: a weight must be between 0 and 100"
                )));
            }
        }
        Ok(())
    }
}

/// What a request is charged when it is admitted, before its usage is
/// known; settled against the actual tokens when the response ends.
///
/// Charging an estimate makes concurrent requests of one caller see each
/// other: without it, 64 requests arriving together are all admitted against
/// the same not-yet-charged bucket.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Estimate {
    /// Request body bytes per input token (from `content-length` or the
    /// body's exact size); `0` charges nothing for the body. Default 4.
    pub bytes_per_token: f64,
    /// A fixed allowance per request for output tokens. Default 0.
    pub output_tokens: u64,
}

impl Default for Estimate {
    fn default() -> Self {
        Self {
            bytes_per_token: 4.0,
            output_tokens: 0,
        }
    }
}

impl Estimate {
    /// No estimate: requests are charged only when their usage is known.
    pub fn none() -> Self {
        Self {
            bytes_per_token: 0.0,
            output_tokens: 0,
        }
    }

    /// The tokens to charge a request with a body of `body_bytes`.
    pub fn tokens(&self, body_bytes: Option<u64>) -> u64 {
        let input = match body_bytes {
            Some(bytes) if self.bytes_per_token > 0.0 => {
                (bytes as f64 / self.bytes_per_token).ceil() as u64
            }
            _ => 0,
        };
        input.saturating_add(self.output_tokens).min(MAX_LIMIT)
    }

    pub(crate) fn validate(&self) -> Result<(), InvalidQuotaConfig> {
        if !(self.bytes_per_token == 0.0 || (0.1..=1_000.0).contains(&self.bytes_per_token)) {
            return Err(InvalidQuotaConfig::new(format!(
                "estimate.bytes_per_token = {}: use 0 (no estimate) or a value between 0.1 and 1000",
                self.bytes_per_token
            )));
        }
        if self.output_tokens > MAX_LIMIT {
            return Err(InvalidQuotaConfig::new(format!(
                "estimate.output_tokens = {} is above the largest accepted ({MAX_LIMIT})",
                self.output_tokens
            )));
        }
        Ok(())
    }
}

/// A quota configuration that cannot work, with a message naming the
/// setting and what is accepted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidQuotaConfig {
    message: Box<str>,
}

impl InvalidQuotaConfig {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        Self {
            message: message.into().into_boxed_str(),
        }
    }

    pub(crate) fn context(self, what: &str) -> Self {
        Self::new(format!("{what}: {}", self.message))
    }
}

impl fmt::Display for InvalidQuotaConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid quota configuration: {}", self.message)
    }
}

impl std::error::Error for InvalidQuotaConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_reject_zero_and_absurd_values() {
        assert!(Rate::per_minute(0).is_err());
        assert!(Rate::per_minute(MAX_LIMIT + 1).is_err());
        assert!(Rate::new(10, Duration::ZERO).is_err());
        assert!(Rate::per_minute(10).unwrap().with_burst(u64::MAX).is_err());
        let r = Rate::per_minute(600).unwrap();
        assert_eq!(r.burst(), 600);
        assert!((r.interval_micros() - 100_000.0).abs() < 1e-9);
    }

    #[test]
    fn quotas_parse() {
        let q: TokenQuota = "5_000_000/month".parse().unwrap();
        assert_eq!((q.tokens(), q.period()), (5_000_000, Period::Month));
        assert_eq!(q.to_string(), "5000000/month");
        assert_eq!(
            "10/Daily".parse::<TokenQuota>().unwrap().period(),
            Period::Day
        );
        for bad in ["", "5000000", "0/day", "x/day", "10/fortnight", "-1/day"] {
            let err = bad.parse::<TokenQuota>().unwrap_err().to_string();
            assert!(err.contains("invalid quota configuration"), "{bad}: {err}");
        }
    }

    #[test]
    fn generosity() {
        let a = Rate::per_minute(100).unwrap();
        let b = Rate::per_minute(200).unwrap();
        assert_eq!(more_generous_rate(Some(a), Some(b)), Some(b));
        assert_eq!(more_generous_rate(Some(a), None), None);
        let day: TokenQuota = "1000000/day".parse().unwrap();
        let month: TokenQuota = "20000000/month".parse().unwrap();
        assert_eq!(more_generous_quota(Some(month), Some(day)), Some(day));
    }

    #[test]
    fn weights_and_estimates() {
        let w = Weights {
            cache_read: 0.1,
            ..Weights::default()
        };
        let usage = TokenUsage {
            input: 10,
            output: 20,
            cache_creation_input: 5,
            cache_read_input: 1000,
        };
        assert_eq!(w.tokens(&usage), 135);
        assert!(
            Weights {
                input: f64::NAN,
                ..Weights::default()
            }
            .validate()
            .is_err()
        );
        let e = Estimate::default();
        assert_eq!(e.tokens(Some(4001)), 1001);
        assert_eq!(e.tokens(None), 0);
        assert_eq!(Estimate::none().tokens(Some(10_000)), 0);
        assert!(
            Estimate {
                bytes_per_token: -1.0,
                output_tokens: 0
            }
            .validate()
            .is_err()
        );
    }
}
