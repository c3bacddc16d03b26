use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use claude_tower_core::RouteId;
use tower::retry::budget::TpsBudget;

use crate::RetryAfterPolicy;
use crate::jitter::{FastrandJitter, Jitter, JitterDebug};

/// Attempts per request on one route, counting the first send.
pub const DEFAULT_MAX_ATTEMPTS: u32 = 3;
/// The longest server-requested wait honoured; above it the policy stops
/// retrying on this route.
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(30);
/// The first backoff window (the official SDKs' initial delay).
pub const DEFAULT_BACKOFF_BASE: Duration = Duration::from_millis(500);
/// The largest backoff window (the official SDKs' maximum delay).
pub const DEFAULT_BACKOFF_CAP: Duration = Duration::from_secs(8);
/// The time one request may spend on this route, from its first send to the
/// end of its last wait.
pub const DEFAULT_DEADLINE: Duration = Duration::from_secs(120);
/// How long a deposit in the default retry budget counts.
pub const DEFAULT_BUDGET_TTL: Duration = Duration::from_secs(10);
/// Retries per second the default budget allows whatever the traffic.
pub const DEFAULT_BUDGET_MIN_PER_SEC: u32 = 1;
/// The share of recent requests the default budget allows to be retried.
pub const DEFAULT_BUDGET_RETRY_PERCENT: f32 = 0.2;

/// What a policy shares across every request (and every clone).
pub(crate) struct Shared {
    pub(crate) route: RouteId,
    pub(crate) max_attempts: u32,
    pub(crate) max_retry_after: Duration,
    pub(crate) base: Duration,
    pub(crate) cap: Duration,
    pub(crate) deadline: Option<Duration>,
    pub(crate) budget: Option<Arc<TpsBudget>>,
    pub(crate) jitter: Box<dyn Jitter>,
}

impl fmt::Debug for Shared {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RetryAfterPolicy")
            .field("route", &self.route)
            .field("max_attempts", &self.max_attempts)
            .field("max_retry_after", &self.max_retry_after)
            .field("backoff_base", &self.base)
            .field("backoff_cap", &self.cap)
            .field("deadline", &self.deadline)
            .field("budget", &self.budget)
            .field("jitter", &JitterDebug)
            .finish()
    }
}

enum BudgetSetting {
    Tps {
        ttl: Duration,
        min_per_sec: u32,
        retry_percent: f32,
    },
    Shared(Arc<TpsBudget>),
    Unlimited,
}

/// Builds a [`RetryAfterPolicy`]; [`build`](Self::build) checks the settings.
///
/// ```
/// use claude_tower_retry::RetryAfterPolicy;
/// use std::time::Duration;
///
/// let policy = RetryAfterPolicy::builder("foundry-eastus2")
///     .with_max_attempts(4)
///     .with_max_retry_after(Duration::from_secs(10))
///     .with_backoff(Duration::from_millis(250), Duration::from_secs(4))
///     .with_deadline(Duration::from_secs(60))
///     .with_budget(Duration::from_secs(10), 2, 0.1)
///     .build()
///     .expect("valid settings");
/// assert_eq!(policy.max_attempts(), 4);
///
/// let bad = RetryAfterPolicy::builder("anthropic").with_max_attempts(0).build();
/// assert!(bad.is_err());
/// ```
pub struct RetryAfterPolicyBuilder {
    route: RouteId,
    max_attempts: u32,
    max_retry_after: Duration,
    base: Duration,
    cap: Duration,
    deadline: Option<Duration>,
    budget: BudgetSetting,
    jitter: Option<Box<dyn Jitter>>,
}

impl RetryAfterPolicyBuilder {
    pub(crate) fn new(route: RouteId) -> Self {
        Self {
            route,
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            max_retry_after: DEFAULT_MAX_RETRY_AFTER,
            base: DEFAULT_BACKOFF_BASE,
            cap: DEFAULT_BACKOFF_CAP,
            deadline: Some(DEFAULT_DEADLINE),
            budget: BudgetSetting::Tps {
                ttl: DEFAULT_BUDGET_TTL,
                min_per_sec: DEFAULT_BUDGET_MIN_PER_SEC,
                retry_percent: DEFAULT_BUDGET_RETRY_PERCENT,
            },
            jitter: None,
        }
    }

    /// Attempts per request, counting the first send (default 3; at least 1,
    /// where 1 means never retry).
    pub fn with_max_attempts(mut self, attempts: u32) -> Self {
        self.max_attempts = attempts;
        self
    }

    /// The longest server-requested wait to honour (default 30 s). A
    /// Retry-After above it ends retrying on this route at once.
    pub fn with_max_retry_after(mut self, cap: Duration) -> Self {
        self.max_retry_after = cap;
        self
    }

    /// Full-jitter backoff for failures without a Retry-After: the wait
    /// before retry `n` (from 0) is uniform in
    /// `[0, min(cap, base * 2^n)]` (default 500 ms and 8 s). `base` must not
    /// exceed `cap`.
    pub fn with_backoff(mut self, base: Duration, cap: Duration) -> Self {
        self.base = base;
        self.cap = cap;
        self
    }

    /// The time a request may spend on this route from its first send to
    /// the end of its last wait (default 120 s). A wait that would end past
    /// it is not started.
    pub fn with_deadline(mut self, deadline: Duration) -> Self {
        self.deadline = Some(deadline);
        self
    }

    /// No per-request deadline: only attempts and the budget limit retries.
    pub fn no_deadline(mut self) -> Self {
        self.deadline = None;
        self
    }

    /// A fresh [`TpsBudget`] for this policy: every request deposits,
    /// every retry withdraws; `retry_percent` of recent requests (over
    /// `ttl`, 1 to 60 s) may be retried, plus `min_per_sec` retries per
    /// second whatever the traffic. Default: 10 s, 1, 0.2.
    pub fn with_budget(mut self, ttl: Duration, min_per_sec: u32, retry_percent: f32) -> Self {
        self.budget = BudgetSetting::Tps {
            ttl,
            min_per_sec,
            retry_percent,
        };
        self
    }

    /// A budget shared with other policies (for example every route of one
    /// upstream account).
    pub fn with_shared_budget(mut self, budget: Arc<TpsBudget>) -> Self {
        self.budget = BudgetSetting::Shared(budget);
        self
    }

    /// No retry budget. Retry storms are then bounded only by
    /// `max_attempts`: use with care.
    pub fn no_budget(mut self) -> Self {
        self.budget = BudgetSetting::Unlimited;
        self
    }

    /// The random source for backoff jitter (default [`FastrandJitter`]).
    pub fn with_jitter(mut self, jitter: impl Jitter) -> Self {
        self.jitter = Some(Box::new(jitter));
        self
    }

    /// Checks the settings and builds the policy.
    pub fn build(self) -> Result<RetryAfterPolicy, InvalidRetryConfig> {
        if self.max_attempts == 0 {
            return Err(InvalidRetryConfig("max_attempts must be at least 1"));
        }
        if self.base > self.cap {
            return Err(InvalidRetryConfig(
                "the backoff base must not exceed the backoff cap",
            ));
        }
        if let BudgetSetting::Tps {
            ttl,
            min_per_sec,
            retry_percent,
        } = self.budget
        {
            // TpsBudget::new asserts these; refuse them here instead.
            if ttl < Duration::from_secs(1) || ttl > Duration::from_secs(60) {
                return Err(InvalidRetryConfig(
                    "the budget ttl must be between 1 and 60 seconds",
                ));
            }
            if !(0.0..=1000.0).contains(&retry_percent) {
                return Err(InvalidRetryConfig(
                    "the budget retry_percent must be between 0 and 1000",
                ));
            }
            if min_per_sec >= i32::MAX as u32 {
                return Err(InvalidRetryConfig("the budget min_per_sec is too large"));
            }
        }
        Ok(self.assemble())
    }

    /// Builds without checking; only for settings known to be valid.
    pub(crate) fn assemble(self) -> RetryAfterPolicy {
        let budget = match self.budget {
            BudgetSetting::Tps {
                ttl,
                min_per_sec,
                retry_percent,
            } => Some(Arc::new(TpsBudget::new(ttl, min_per_sec, retry_percent))),
            BudgetSetting::Shared(budget) => Some(budget),
            BudgetSetting::Unlimited => None,
        };
        RetryAfterPolicy::from_shared(Shared {
            route: self.route,
            max_attempts: self.max_attempts,
            max_retry_after: self.max_retry_after,
            base: self.base,
            cap: self.cap,
            deadline: self.deadline,
            budget,
            jitter: self.jitter.unwrap_or_else(|| Box::new(FastrandJitter)),
        })
    }
}

impl fmt::Debug for RetryAfterPolicyBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let budget: &dyn fmt::Debug = match &self.budget {
            BudgetSetting::Tps {
                ttl,
                min_per_sec,
                retry_percent,
            } => &(ttl, min_per_sec, retry_percent),
            BudgetSetting::Shared(budget) => budget,
            BudgetSetting::Unlimited => &"unlimited",
        };
        f.debug_struct("RetryAfterPolicyBuilder")
            .field("route", &self.route)
            .field("max_attempts", &self.max_attempts)
            .field("max_retry_after", &self.max_retry_after)
            .field("backoff_base", &self.base)
            .field("backoff_cap", &self.cap)
            .field("deadline", &self.deadline)
            .field("budget", budget)
            .field("jitter", &self.jitter.as_ref().map(|_| JitterDebug))
            .finish()
    }
}

/// A [`RetryAfterPolicyBuilder`] setting that cannot work.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidRetryConfig(&'static str);

impl fmt::Display for InvalidRetryConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid retry policy: {}", self.0)
    }
}

impl std::error::Error for InvalidRetryConfig {}

#[cfg(test)]
mod tests {
    use super::*;

    fn err(builder: RetryAfterPolicyBuilder) -> String {
        builder.build().unwrap_err().to_string()
    }

    #[test]
    fn refuses_settings_that_cannot_work() {
        let b = || RetryAfterPolicy::builder("r");
        assert!(err(b().with_max_attempts(0)).contains("max_attempts"));
        assert!(
            err(b().with_backoff(Duration::from_secs(2), Duration::from_secs(1)))
                .contains("backoff")
        );
        assert!(err(b().with_budget(Duration::from_millis(10), 1, 0.2)).contains("ttl"));
        assert!(err(b().with_budget(Duration::from_secs(61), 1, 0.2)).contains("ttl"));
        assert!(err(b().with_budget(Duration::from_secs(1), 1, -0.1)).contains("retry_percent"));
        assert!(
            err(b().with_budget(Duration::from_secs(1), 1, f32::NAN)).contains("retry_percent")
        );
        assert!(
            err(b().with_budget(Duration::from_secs(1), u32::MAX, 0.2)).contains("min_per_sec")
        );
        assert!(
            b().with_max_attempts(1)
                .no_budget()
                .no_deadline()
                .build()
                .is_ok()
        );
    }

    #[test]
    fn debug_names_the_settings() {
        let text = format!("{:?}", RetryAfterPolicy::new("anthropic"));
        assert!(text.contains("\"anthropic\""), "{text}");
        assert!(text.contains("max_attempts: 3"), "{text}");
        assert!(text.contains("<jitter>"), "{text}");
        let text = format!("{:?}", RetryAfterPolicy::builder("x").with_jitter(|| 0.5));
        assert!(text.contains("<jitter>"), "{text}");
    }
}
