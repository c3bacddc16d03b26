use std::time::Duration;

/// The wait a server asked for before the next attempt.
///
/// Already folded from whichever of `retry-after-ms`, `x-ms-retry-after-ms`
/// or `retry-after` the route sent (parsing lives in `claude-tower-normalize`).
/// Normalize puts it in the response extensions; Retry and Failover read it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RetryAfter(Duration);

impl RetryAfter {
    /// A server-requested wait.
    pub const fn new(wait: Duration) -> Self {
        Self(wait)
    }

    /// The wait.
    pub const fn duration(self) -> Duration {
        self.0
    }

    /// The wait in whole seconds, rounded up, as a client-facing
    /// `retry-after` header carries it (`1.2 s` is `2`).
    pub fn as_secs_ceil(self) -> u64 {
        let secs = self.0.as_secs();
        if self.0.subsec_nanos() > 0 {
            secs.saturating_add(1)
        } else {
            secs
        }
    }

    /// The wait in whole milliseconds, rounded up, as `retry-after-ms` carries it.
    pub fn as_millis_ceil(self) -> u64 {
        let millis = u64::try_from(self.0.as_millis()).unwrap_or(u64::MAX);
        if !self.0.subsec_nanos().is_multiple_of(1_000_000) {
            millis.saturating_add(1)
        } else {
            millis
        }
    }
}

impl From<Duration> for RetryAfter {
    fn from(wait: Duration) -> Self {
        Self(wait)
    }
}

impl From<RetryAfter> for Duration {
    fn from(wait: RetryAfter) -> Self {
        wait.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rounds_up_for_headers() {
        let w = RetryAfter::new(Duration::from_micros(1_200_001));
        assert_eq!(w.as_secs_ceil(), 2);
        assert_eq!(w.as_millis_ceil(), 1201);
        let exact = RetryAfter::new(Duration::from_secs(3));
        assert_eq!(exact.as_secs_ceil(), 3);
        assert_eq!(exact.as_millis_ceil(), 3000);
        assert_eq!(RetryAfter::new(Duration::ZERO).as_secs_ceil(), 0);
        assert_eq!(RetryAfter::new(Duration::MAX).as_secs_ceil(), u64::MAX);
    }
}
