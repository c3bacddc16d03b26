use std::fmt;

/// The random source behind full-jitter backoff.
///
/// [`sample`](Self::sample) answers a number in `[0, 1]`; the backoff wait
/// is that fraction of `min(cap, base * 2^retries)`. Values outside the
/// range (or NaN) are clamped, never a panic. The default is
/// [`FastrandJitter`]; tests inject a fixed value through any
/// `Fn() -> f64 + Send + Sync` closure:
///
/// ```
/// use claude_tower_retry::RetryAfterPolicy;
///
/// let policy = RetryAfterPolicy::builder("anthropic")
///     .with_jitter(|| 0.5) // always half the exponential window
///     .build()
///     .unwrap();
/// # let _ = policy;
/// ```
pub trait Jitter: Send + Sync + 'static {
    /// A number in `[0, 1]`.
    fn sample(&self) -> f64;
}

impl<F> Jitter for F
where
    F: Fn() -> f64 + Send + Sync + 'static,
{
    fn sample(&self) -> f64 {
        self()
    }
}

/// The default [`Jitter`]: `fastrand`'s thread-local generator (no locking,
/// no allocation).
#[derive(Clone, Copy, Debug, Default)]
pub struct FastrandJitter;

impl Jitter for FastrandJitter {
    fn sample(&self) -> f64 {
        fastrand::f64()
    }
}

/// Clamps a sample into `[0, 1]`; NaN counts as 0.
pub(crate) fn clamp_unit(x: f64) -> f64 {
    if x.is_nan() { 0.0 } else { x.clamp(0.0, 1.0) }
}

// Closures have no useful `Debug`; the policy prints this instead.
pub(crate) struct JitterDebug;

impl fmt::Debug for JitterDebug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<jitter>")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_are_clamped() {
        assert_eq!(clamp_unit(f64::NAN), 0.0);
        assert_eq!(clamp_unit(-3.0), 0.0);
        assert_eq!(clamp_unit(7.0), 1.0);
        assert_eq!(clamp_unit(f64::INFINITY), 1.0);
        assert_eq!(clamp_unit(0.25), 0.25);
        for _ in 0..100 {
            let x = FastrandJitter.sample();
            assert!((0.0..=1.0).contains(&x));
        }
    }
}
