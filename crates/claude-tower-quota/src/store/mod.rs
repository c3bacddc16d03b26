//! Where buckets live: the [`QuotaStore`] trait, the in-memory store and the
//! Redis store.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use serde::Serialize;

use crate::time::{Timestamp, micros};
use crate::{Period, Policy, QuotaKey, TokenQuota};

/// A map of [`QuotaKey`]s that uses the hash each key carries.
pub(crate) type KeyMap<V> = HashMap<QuotaKey, V, BuildHasherDefault<CarriedHash>>;

/// The [`Hasher`] of a [`KeyMap`]: [`QuotaKey`]'s `Hash` writes the key's
/// carried hash as one `u64`, which is kept as it is.
#[derive(Default)]
pub(crate) struct CarriedHash(u64);

impl Hasher for CarriedHash {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    /// Not reached by a [`QuotaKey`]; anything else is folded in (FNV-1a).
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
}

#[cfg(feature = "redis")]
pub(crate) mod lease;
pub(crate) mod memory;
#[cfg(feature = "redis")]
pub(crate) mod redis;

/// A store of buckets, shared by every request of a [`QuotaLayer`](crate::QuotaLayer).
///
/// `check` runs before a request is sent and charges it if admitted;
/// `settle` corrects the charge when the request's usage is known. Both must
/// be cheap for the in-memory case: `check` answers with a ready
/// [`StoreFuture`] (no allocation) when it needs no I/O.
pub trait QuotaStore: fmt::Debug + Send + Sync + 'static {
    /// Admits or refuses one request of `cost` estimated tokens under `policy`,
    /// charging the request (1) and the estimate when admitted.
    fn check(&self, key: &QuotaKey, policy: &Policy, cost: u64) -> StoreFuture<Admission>;

    /// Settles an admitted request: `actual` tokens replace the estimate it
    /// was charged. Must not block; a store doing I/O spawns it.
    fn settle(&self, reservation: &Reservation, actual: u64);

    /// The standing of one key, `None` when the store holds nothing for it.
    fn standing(&self, key: &QuotaKey) -> StoreFuture<Option<Standing>>;

    /// The standing of every key the store holds (bounded by the store).
    fn snapshot(&self) -> StoreFuture<Vec<Standing>>;

    /// Counters for metrics and health checks.
    fn health(&self) -> StoreHealth {
        StoreHealth::default()
    }

    /// Sends settlements the store holds back (a store that batches them),
    /// for a service that is stopping. The default has none.
    fn flush(&self) -> StoreFuture<()> {
        StoreFuture::ready(())
    }
}

/// A store's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
#[non_exhaustive]
pub struct StoreHealth {
    /// Whether limits are currently shared (Redis answering); always `true`
    /// for a store that shares nothing to begin with.
    pub shared: bool,
    /// Redis calls that failed or timed out.
    pub errors: u64,
    /// Requests checked against the local fallback while Redis was down.
    pub local_checks: u64,
    /// Settlements that could not reach Redis (their correction is lost).
    pub lost_settlements: u64,
    /// Requests admitted from leases, with no round trip of their own.
    pub leased_checks: u64,
}

/// The outcome of a check.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub enum Verdict {
    /// Admitted and charged.
    Admit,
    /// Over a rate (tokens in debt, or requests): retry after `wait`.
    RateLimited {
        /// How long until the request would be admitted.
        wait: Duration,
    },
    /// The period's token quota is used up until `resets`.
    QuotaExhausted {
        /// The quota.
        quota: TokenQuota,
        /// When the next period starts.
        resets: Timestamp,
    },
    /// The shared store is unreachable and configured to fail closed.
    Unavailable,
}

/// A check's answer: the verdict, the key's standing after it, and, when
/// admitted, what to settle later.
#[derive(Clone, Debug)]
pub struct Admission {
    /// Admitted or why not.
    pub verdict: Verdict,
    /// The standing after the check (for the `anthropic-ratelimit-*` headers).
    pub standing: Standing,
    /// Present when admitted.
    pub reservation: Option<Reservation>,
}

/// What an admitted request was charged, handed back to
/// [`QuotaStore::settle`].
#[derive(Clone, Debug)]
pub struct Reservation {
    /// The key.
    pub key: QuotaKey,
    /// The policy it was checked under.
    pub policy: Policy,
    /// The estimate charged.
    pub charged: u64,
    /// Unix seconds at which the quota period it was charged to starts
    /// (0 without a quota).
    pub period_start: i64,
    /// Whether it was charged to the shared store (`false`: a local
    /// fallback); a settlement goes where the charge went.
    pub shared: bool,
    /// The lease it was admitted from (the Redis store's allowances taken
    /// ahead; see [`RedisStore`](crate::RedisStore)); 0: charged by itself.
    pub lease: u64,
}

/// A key's standing in its current windows, as `GET /usage` shows it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Standing {
    /// The key.
    #[serde(serialize_with = "ser_key")]
    pub key: QuotaKey,
    /// Tokens per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens: Option<RateStanding>,
    /// Requests per minute.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub requests: Option<RateStanding>,
    /// The period quota.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaStanding>,
}

fn ser_key<S: serde::Serializer>(k: &QuotaKey, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(k.as_str())
}

/// A rate bucket's standing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct RateStanding {
    /// The rate per minute (per the rate's period).
    pub limit: u64,
    /// What could be spent right now (0 in debt).
    pub remaining: u64,
    /// What is owed beyond an empty bucket (tokens only; waits it out).
    pub debt: u64,
    /// When the bucket is full again.
    pub reset: Timestamp,
}

/// A period quota's standing.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
pub struct QuotaStanding {
    /// The tokens per period.
    pub limit: u64,
    /// Used in the current period.
    pub used: u64,
    /// Left in the current period.
    pub remaining: u64,
    /// The period.
    pub period: Period,
    /// When the next period starts.
    pub reset: Timestamp,
}

// === impl StoreFuture ===

/// A store's answer: ready (no allocation) or a boxed future (I/O).
#[must_use = "futures do nothing unless polled"]
pub struct StoreFuture<T> {
    inner: Inner<T>,
}

enum Inner<T> {
    Ready(Option<T>),
    Boxed(Pin<Box<dyn Future<Output = T> + Send>>),
}

impl<T> StoreFuture<T> {
    /// An answer already known.
    pub fn ready(value: T) -> Self {
        Self {
            inner: Inner::Ready(Some(value)),
        }
    }

    /// An answer that needs I/O.
    pub fn boxed(future: impl Future<Output = T> + Send + 'static) -> Self {
        Self {
            inner: Inner::Boxed(Box::pin(future)),
        }
    }

    /// The answer if it is already known, else the future back.
    pub fn into_ready(self) -> Result<T, Self> {
        match self.inner {
            Inner::Ready(Some(v)) => Ok(v),
            inner => Err(Self { inner }),
        }
    }
}

// NOTE: `T` is never pinned (a ready value is moved out), so the future is
// `Unpin` whatever `T` is.
impl<T> Unpin for StoreFuture<T> {}

impl<T> Future for StoreFuture<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        match &mut self.inner {
            Inner::Ready(v) => Poll::Ready(v.take().expect("StoreFuture polled after completion")),
            Inner::Boxed(f) => f.as_mut().poll(cx),
        }
    }
}

impl<T> fmt::Debug for StoreFuture<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self.inner {
            Inner::Ready(_) => "StoreFuture::Ready",
            Inner::Boxed(_) => "StoreFuture::Boxed",
        })
    }
}

// === the bucket arithmetic, shared by the memory store and (mirrored in Lua) Redis ===

/// One key's state: two GCRA theoretical arrival times (Unix µs) and the
/// quota period's usage.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub(crate) struct BucketState {
    pub(crate) tat_tokens: f64,
    pub(crate) tat_requests: f64,
    pub(crate) period_start: i64,
    pub(crate) period_used: u64,
}

/// Checks and, when admitted, charges `state`. `now` in Unix µs.
pub(crate) fn check_state(
    state: &mut BucketState,
    policy: &Policy,
    cost: u64,
    now: i64,
) -> (Verdict, i64) {
    let now_f = now as f64;
    let secs = now.div_euclid(1_000_000);
    let mut tat_t = state.tat_tokens.max(now_f);
    let mut tat_r = state.tat_requests.max(now_f);
    let mut period_start = 0;
    let mut used = 0;
    if let Some(q) = policy.quota {
        let (start, end) = q.period().bounds(secs);
        period_start = start;
        if state.period_start == start {
            used = state.period_used;
        }
        // Not in deficit: the last request of a period may go over it.
        if used >= q.tokens() {
            return (
                Verdict::QuotaExhausted {
                    quota: q,
                    resets: Timestamp::from_unix_micros(end * 1_000_000),
                },
                period_start,
            );
        }
    }
    let mut wait = 0.0f64;
    if let Some(r) = policy.tokens {
        // Admitted while not in debt; the estimate may take it into debt.
        let over = tat_t - now_f - r.tolerance_micros();
        if over > 0.0 {
            wait = over;
        }
    }
    if let Some(r) = policy.requests {
        let over = tat_r + r.interval_micros() - now_f - r.tolerance_micros();
        if over > 0.0 {
            wait = wait.max(over);
        }
    }
    if wait > 0.0 {
        return (
            Verdict::RateLimited {
                wait: micros(wait.ceil() as i64),
            },
            period_start,
        );
    }
    if let Some(r) = policy.tokens {
        tat_t += cost as f64 * r.interval_micros();
    }
    if let Some(r) = policy.requests {
        tat_r += r.interval_micros();
    }
    state.tat_tokens = tat_t.round();
    state.tat_requests = tat_r.round();
    if policy.quota.is_some() {
        state.period_start = period_start;
        state.period_used = used.saturating_add(cost);
    }
    (Verdict::Admit, period_start)
}

/// Applies `delta` tokens (actual minus charged) to an admitted request's
/// buckets: the token rate always, the quota only if still in the period it
/// was charged to.
pub(crate) fn settle_state(
    state: &mut BucketState,
    policy: &Policy,
    period_start: i64,
    delta: i64,
) {
    if let Some(r) = policy.tokens {
        state.tat_tokens = (state.tat_tokens + delta as f64 * r.interval_micros()).round();
    }
    if policy.quota.is_some() && state.period_start == period_start {
        state.period_used = state.period_used.saturating_add_signed(delta);
    }
}

/// The standing of `state` at `now` (Unix µs).
pub(crate) fn standing_of(
    key: &QuotaKey,
    state: &BucketState,
    policy: &Policy,
    now: i64,
) -> Standing {
    let now_f = now as f64;
    let rate = |r: crate::Rate, tat: f64| {
        let owed = (tat - now_f).max(0.0) / r.interval_micros();
        let burst = r.burst() as f64;
        RateStanding {
            limit: r.amount(),
            remaining: (burst - owed).max(0.0).floor() as u64,
            debt: (owed - burst).max(0.0).ceil() as u64,
            reset: Timestamp::from_unix_micros(tat.max(now_f).ceil() as i64),
        }
    };
    let quota = policy.quota.map(|q| {
        let (start, end) = q.period().bounds(now.div_euclid(1_000_000));
        let used = if state.period_start == start {
            state.period_used
        } else {
            0
        };
        QuotaStanding {
            limit: q.tokens(),
            used,
            remaining: q.tokens().saturating_sub(used),
            period: q.period(),
            reset: Timestamp::from_unix_micros(end * 1_000_000),
        }
    });
    Standing {
        key: key.clone(),
        tokens: policy.tokens.map(|r| rate(r, state.tat_tokens)),
        requests: policy.requests.map(|r| rate(r, state.tat_requests)),
        quota,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rate;

    const T0: i64 = 1_796_002_776_000_000;

    fn policy() -> Policy {
        Policy::unlimited()
            .with_tokens(Rate::per_minute(600).unwrap().with_burst(100).unwrap())
            .with_requests(Rate::per_minute(60).unwrap().with_burst(2).unwrap())
            .with_quota("1000/day".parse().unwrap())
    }

    #[test]
    fn tokens_go_into_debt_and_the_debt_is_waited_out() {
        let p = policy();
        let mut s = BucketState::default();
        // 10 tokens a second, burst 100: a 300-token request is admitted from
        // a full bucket and leaves 200 of debt: 20 s to wait.
        assert_eq!(check_state(&mut s, &p, 300, T0).0, Verdict::Admit);
        let st = standing_of(&QuotaKey::global(), &s, &p, T0);
        let t = st.tokens.unwrap();
        assert_eq!((t.remaining, t.debt), (0, 200));
        assert_eq!(st.quota.unwrap().used, 300);
        match check_state(&mut s, &p, 1, T0).0 {
            Verdict::RateLimited { wait } => assert_eq!(wait, Duration::from_secs(20)),
            v => panic!("{v:?}"),
        }
        // Exactly when the debt is paid, the next request is admitted.
        assert_eq!(
            check_state(&mut s, &p, 0, T0 + 20_000_000).0,
            Verdict::Admit
        );
    }

    #[test]
    fn requests_are_strict_and_settle_corrects_the_estimate() {
        let p = policy();
        let mut s = BucketState::default();
        let (v, start) = check_state(&mut s, &p, 10, T0);
        assert_eq!(v, Verdict::Admit);
        assert_eq!(check_state(&mut s, &p, 10, T0).0, Verdict::Admit);
        match check_state(&mut s, &p, 10, T0).0 {
            Verdict::RateLimited { wait } => assert_eq!(wait, Duration::from_secs(1)),
            v => panic!("{v:?}"),
        }
        settle_state(&mut s, &p, start, 40);
        settle_state(&mut s, &p, start, -10);
        let st = standing_of(&QuotaKey::global(), &s, &p, T0);
        assert_eq!(st.quota.unwrap().used, 50);
        assert_eq!(st.tokens.unwrap().remaining, 50);
        assert_eq!(st.requests.unwrap().remaining, 0);
        // A settlement for a past period leaves the new one alone.
        settle_state(&mut s, &p, start - 86_400, 1_000);
        assert_eq!(
            standing_of(&QuotaKey::global(), &s, &p, T0)
                .quota
                .unwrap()
                .used,
            50
        );
    }

    #[test]
    fn quota_admits_until_used_up_then_names_the_reset() {
        let p = Policy::unlimited().with_quota("1000/day".parse().unwrap());
        let mut s = BucketState::default();
        assert_eq!(check_state(&mut s, &p, 999, T0).0, Verdict::Admit);
        // Not in deficit yet: admitted, and it may go over.
        assert_eq!(check_state(&mut s, &p, 500, T0).0, Verdict::Admit);
        match check_state(&mut s, &p, 1, T0).0 {
            Verdict::QuotaExhausted { resets, .. } => {
                assert_eq!(resets.to_string(), "2026-12-01T00:00:00Z")
            }
            v => panic!("{v:?}"),
        }
        // The next day starts afresh.
        assert_eq!(
            check_state(&mut s, &p, 1, T0 + 86_400_000_000).0,
            Verdict::Admit
        );
    }

    #[test]
    fn ready_futures_need_no_poll() {
        let f = StoreFuture::ready(5);
        assert_eq!(f.into_ready().ok(), Some(5));
        let f = StoreFuture::boxed(async { 6 });
        assert!(f.into_ready().is_err());
    }
}
