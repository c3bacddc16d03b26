//! The Redis store: buckets shared by every replica, one script per check.

use std::collections::HashMap;
use std::fmt;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::{RedisError, Script, Value};
use tokio::sync::oneshot;

use super::lease::{GiveBack, LEASE_TTL, Leases, Take};
use super::memory::{MemoryStore, delta};
use super::{
    Admission, BucketState, QuotaStore, Reservation, Standing, StoreFuture, StoreHealth, Verdict,
    standing_of,
};
use crate::config::FailMode;
use crate::time::{Timestamp, duration_micros};
use crate::{InvalidQuotaConfig, Period, Policy, QuotaKey, Rate, TokenQuota};

const CHECK_LUA: &str = include_str!("check.lua");
const SETTLE_LUA: &str = include_str!("settle.lua");

/// The most keys a snapshot reads.
const SNAPSHOT_MAX: usize = 10_000;

/// Buckets in Redis, shared by every gateway replica.
///
/// - **One round trip per check**: `check.lua` (loaded once, run by
///   `EVALSHA` through [`Script::invoke_async`]) reads the server's `TIME`,
///   applies GCRA and the period quota, charges and sets the key's TTL.
///   Checks are **group-committed**: one is sent at once when no call is on
///   its way; those arriving meanwhile go together in the next call (up to
///   128), applied in order exactly as separate calls would be, each key
///   read and written once. Under load a check so shares its round trip and
///   the server's per-call cost (most of the script's time: 17 µs for one
///   check, 26 µs for four, measured with `redis-benchmark` on Redis 7.0).
///   Settlements are batched too ([`SETTLE_WINDOW`]), and none is sent when
///   the estimate was exact: `settle.lua`. After a Redis restart the first
///   call also loads the script (`NOSCRIPT` -> `SCRIPT LOAD` -> `EVALSHA`).
/// - **Leases for busy callers** (see the `lease` module's rules): a key
///   checked again within a second on this replica asks, with its next
///   check, for an allowance of requests and estimated tokens out of its
///   headroom (at most a quarter of what is left, so never into debt);
///   until it is spent or 100 ms pass, that key's checks are answered here
///   with no round trip and their settlements correct the lease; then the
///   unspent part (or the overspend) goes back as one settlement. Redis is
///   charged exactly what was used, as without leases; another replica sees
///   the unspent part as used for at most 100 ms; a key near its limit gets
///   none and is checked request by request. A lease grows (doubles, up to
///   4,096 requests) while it is used up within its 100 ms and shrinks when
///   half of it expires unspent. [`StoreHealth::leased_checks`] counts the
///   checks answered from leases.
/// - **One key per caller**, `{prefix}{<key>}` (a hash), hash-tagged so a
///   Redis Cluster keeps it in one slot; its TTL lasts until its buckets are
///   full again and its quota period has ended.
/// - **Server time**: every decision uses Redis's clock, so replicas whose
///   clocks disagree still agree on buckets and periods.
/// - **Bounded**: every call is cut off after the timeout (default 100 ms).
/// - **Redis down** ([`FailMode::Open`], the default): the request is checked
///   against a local [`MemoryStore`] (limits enforced per replica), a WARN is
///   logged (at most every 10 s) and [`StoreHealth`] counts it. Redis is
///   tried again by one request per second; when it answers, limits are
///   shared again. [`FailMode::Closed`]: 503 instead.
///
/// The check future is boxed and waits on a oneshot channel (two
/// allocations per request on this path); while Redis is known to be down,
/// checks are local and allocate nothing.
///
/// Must be built inside a tokio runtime (the connection manager spawns its
/// reconnection task there). The connection is made lazily: a gateway starts
/// while Redis is still down.
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: ConnectionManager,
    check: Script,
    settle: Script,
    prefix: Box<str>,
    timeout: Duration,
    fail: FailMode,
    local: MemoryStore,
    retry_interval: Duration,
    /// Local clock µs until which Redis is not tried; 0 when it is up.
    down_until: AtomicI64,
    last_warn: AtomicI64,
    errors: AtomicU64,
    local_checks: AtomicU64,
    lost: AtomicU64,
    /// Settlements not yet sent, added up per key (see [`SETTLE_WINDOW`]):
    /// the summed token and request deltas and how many settlements they
    /// stand for.
    pending: Mutex<HashMap<Pending, (i64, i64, u64)>>,
    /// A flush of `pending` is on its way.
    flushing: AtomicBool,
    /// Each policy's script arguments, formatted once.
    policies: Mutex<Vec<(Policy, Arc<PolicyArgs>)>>,
    /// Checks waiting for the next batch (see [`MAX_CHECK_BATCH`]).
    queued: Mutex<Vec<Queued>>,
    /// A task is sending `queued` (it runs while there is any).
    sending: AtomicBool,
    /// Allowances taken ahead for busy keys.
    leases: Leases,
    /// A task is ending expired leases (it runs while any key is followed).
    sweeping: AtomicBool,
}

/// Lets go of the sending flag if the sending task is dropped mid-call (its
/// runtime shut down): the queued checks fall back instead of waiting for a
/// task that is gone, and the next check starts a new one.
struct Sending<'a> {
    inner: &'a Inner,
    done: bool,
}

impl Drop for Sending<'_> {
    fn drop(&mut self) {
        if !self.done {
            self.inner
                .queued
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .clear();
            self.inner.sending.store(false, Ordering::Release);
        }
    }
}

/// The numbers `check.lua` answers per check.
const CHECK_REPLY: usize = 10;

/// The most checks one script call carries.
const MAX_CHECK_BATCH: usize = 128;

/// A check waiting for its batch's answer.
struct Queued {
    key: QuotaKey,
    policy: Policy,
    args: Arc<PolicyArgs>,
    cost: u64,
    /// The requests of a lease to ask for with it (0: none).
    lease: u64,
    /// The answer; dropped unanswered (the waiter then falls back) when the
    /// call failed.
    reply: oneshot::Sender<Admission>,
}

/// How many policies' script arguments a [`RedisStore`] keeps formatted.
const MAX_KEPT_POLICIES: usize = 64;

/// How long settlements are gathered before they go to Redis together: the
/// deltas of one key add up into one script call, and every key's call of a
/// flush goes out at once over the one multiplexed connection (pipelined).
/// Under load a request's settlement so costs a fraction of a round trip;
/// another replica sees it at most this much later.
pub const SETTLE_WINDOW: Duration = Duration::from_millis(5);

/// What one settlement script call is about: the key, the token interval
/// it is charged at, and the quota period it belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Pending {
    key: QuotaKey,
    token_interval: String,
    request_interval: String,
    period_start: i64,
}

/// Builds a [`RedisStore`].
#[derive(Clone)]
pub struct RedisStoreBuilder {
    url: String,
    timeout: Duration,
    fail: FailMode,
    prefix: String,
    retry_interval: Duration,
}

impl fmt::Debug for RedisStoreBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStoreBuilder")
            .field("url", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("fail", &self.fail)
            .field("prefix", &self.prefix)
            .field("retry_interval", &self.retry_interval)
            .finish()
    }
}

impl RedisStoreBuilder {
    /// Bounds every Redis call (default 100 ms).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Fails open (default) or closed.
    pub fn with_fail_mode(mut self, fail: FailMode) -> Self {
        self.fail = fail;
        self
    }

    /// The prefix of every key (default `ctq:`), so several gateways can
    /// share one Redis.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// How long Redis is left alone after a failure before one request
    /// tries it again (default 1 s).
    pub fn with_retry_interval(mut self, interval: Duration) -> Self {
        self.retry_interval = interval;
        self
    }

    /// The store. Fails only on a bad URL or prefix; an unreachable Redis is
    /// handled at run time.
    pub fn build(self) -> Result<RedisStore, InvalidQuotaConfig> {
        let client = redis::Client::open(self.url.as_str()).map_err(|e| {
            InvalidQuotaConfig::new(format!("redis_url is not a Redis URL ({:?})", e.kind()))
        })?;
        if self.prefix.contains(['{', '}']) {
            return Err(InvalidQuotaConfig::new(
                "a Redis key prefix cannot hold `{` or `}` (they mark the hash tag)",
            ));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout))
            .set_number_of_retries(2)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client, config)
            .map_err(|e| InvalidQuotaConfig::new(format!("Redis client: {:?}", e.kind())))?;
        Ok(RedisStore {
            inner: Arc::new(Inner {
                conn,
                check: Script::new(CHECK_LUA),
                settle: Script::new(SETTLE_LUA),
                prefix: self.prefix.into_boxed_str(),
                timeout: self.timeout,
                fail: self.fail,
                local: MemoryStore::new(),
                retry_interval: self.retry_interval,
                down_until: AtomicI64::new(0),
                last_warn: AtomicI64::new(i64::MIN),
                errors: AtomicU64::new(0),
                local_checks: AtomicU64::new(0),
                lost: AtomicU64::new(0),
                pending: Mutex::new(HashMap::new()),
                flushing: AtomicBool::new(false),
                policies: Mutex::new(Vec::new()),
                queued: Mutex::new(Vec::new()),
                sending: AtomicBool::new(false),
                leases: Leases::default(),
                sweeping: AtomicBool::new(false),
            }),
        })
    }
}

impl RedisStore {
    /// A builder for the Redis at `url` (`redis://[:password@]host:port[/db]`).
    pub fn builder(url: impl Into<String>) -> RedisStoreBuilder {
        RedisStoreBuilder {
            url: url.into(),
            timeout: Duration::from_millis(100),
            fail: FailMode::Open,
            prefix: "ctq:".to_owned(),
            retry_interval: Duration::from_secs(1),
        }
    }

    /// The local fallback (for tests and diagnostics).
    pub fn local(&self) -> &MemoryStore {
        &self.inner.local
    }
}

impl Inner {
    fn redis_key(&self, key: &QuotaKey) -> String {
        format!("{}{{{}}}", self.prefix, key.as_str())
    }

    /// Whether this request should go to Redis: yes when it is up; when it
    /// is down, one request per retry interval probes it.
    fn try_shared(&self) -> bool {
        let until = self.down_until.load(Ordering::Acquire);
        if until == 0 {
            return true;
        }
        let now = self.local.now_micros();
        now >= until
            && self
                .down_until
                .compare_exchange(
                    until,
                    now + duration_micros(self.retry_interval),
                    Ordering::AcqRel,
                    Ordering::Acquire,
                )
                .is_ok()
    }

    fn mark_up(&self) {
        if self.down_until.swap(0, Ordering::AcqRel) != 0 {
            tracing::info!("quota: Redis answers again; limits are shared across replicas");
        }
    }

    fn mark_down(&self, err: &Failure) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let now = self.local.now_micros();
        let _ = self.down_until.compare_exchange(
            0,
            now + duration_micros(self.retry_interval),
            Ordering::AcqRel,
            Ordering::Acquire,
        );
        let last = self.last_warn.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= 10_000_000
            && self
                .last_warn
                .compare_exchange(last, now, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        {
            let errors = self.errors.load(Ordering::Relaxed);
            match self.fail {
                FailMode::Open => tracing::warn!(
                    error = %err, errors,
                    "quota: Redis unreachable; enforcing limits locally on this replica until it answers"
                ),
                FailMode::Closed => tracing::warn!(
                    error = %err, errors,
                    "quota: Redis unreachable; refusing requests (503) until it answers"
                ),
            }
        }
    }

    fn fallback(&self, key: &QuotaKey, policy: &Policy, cost: u64) -> Admission {
        match self.fail {
            FailMode::Open => {
                self.local_checks.fetch_add(1, Ordering::Relaxed);
                self.local.check_now(key, policy, cost)
            }
            FailMode::Closed => Admission {
                verdict: Verdict::Unavailable,
                standing: Standing {
                    key: key.clone(),
                    tokens: None,
                    requests: None,
                    quota: None,
                },
                reservation: None,
            },
        }
    }

    /// The script arguments of `policy`, formatted once per policy (float
    /// formatting is most of a check's cost in this process otherwise).
    /// Policies come from the configuration, so they are few; past
    /// [`MAX_KEPT_POLICIES`] they are formatted each time.
    fn args_of(&self, policy: &Policy) -> Arc<PolicyArgs> {
        let mut kept = self.policies.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some((_, args)) = kept.iter().find(|(p, _)| p == policy) {
            return Arc::clone(args);
        }
        let args = Arc::new(PolicyArgs::of(policy));
        if kept.len() < MAX_KEPT_POLICIES {
            kept.push((*policy, Arc::clone(&args)));
        }
        args
    }

    /// Queues a check for the next batch, and starts a task sending batches
    /// if none is running. The receiver answers with the script's numbers,
    /// or is dropped unanswered when the call failed.
    fn enqueue_check(
        self: &Arc<Self>,
        key: &QuotaKey,
        policy: &Policy,
        cost: u64,
        lease: u64,
    ) -> Option<oneshot::Receiver<Admission>> {
        let handle = tokio::runtime::Handle::try_current().ok()?;
        let (reply, answer) = oneshot::channel();
        let queued = Queued {
            key: key.clone(),
            policy: *policy,
            args: self.args_of(policy),
            cost,
            lease,
            reply,
        };
        self.queued
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(queued);
        if !self.sending.swap(true, Ordering::AcqRel) {
            handle.spawn(Arc::clone(self).send_checks());
        }
        Some(answer)
    }

    /// Sends the queued checks, [`MAX_CHECK_BATCH`] per script call, one
    /// call at a time, until none is left. Checks queued while a call is on
    /// its way go together in the next: under load a check shares its round
    /// trip (and the script's one `TIME`, and one read and write of each
    /// key) with the others of its batch; alone, it is sent at once.
    async fn send_checks(self: Arc<Self>) {
        let mut guard = Sending {
            inner: &self,
            done: false,
        };
        loop {
            let batch = {
                let mut queued = self.queued.lock().unwrap_or_else(PoisonError::into_inner);
                let n = queued.len().min(MAX_CHECK_BATCH);
                queued.drain(..n).collect::<Vec<_>>()
            };
            if batch.is_empty() {
                self.sending.store(false, Ordering::Release);
                // A check queued after the drain above, that saw this task
                // still sending, must not be left behind: go on if one is
                // there and no new task has taken over.
                let more = !self
                    .queued
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_empty();
                if more && !self.sending.swap(true, Ordering::AcqRel) {
                    continue;
                }
                guard.done = true;
                return;
            }
            match self.remote_checks(&batch).await {
                Ok(numbers) => {
                    self.mark_up();
                    let now = self.local.now_micros();
                    for (q, n) in batch.into_iter().zip(numbers.chunks_exact(CHECK_REPLY)) {
                        let n: [i64; CHECK_REPLY] = n.try_into().expect("chunks of CHECK_REPLY");
                        let mut admission = Self::admission(&q.key, &q.policy, q.cost, &n);
                        let [.., granted_requests, granted_tokens] = n;
                        if granted_requests > 0 {
                            let given_back = self.leases.grant(
                                &q.key,
                                &q.policy,
                                u64::try_from(granted_requests).unwrap_or(0),
                                u64::try_from(granted_tokens).unwrap_or(0),
                                n[4],
                                &admission.standing,
                                now,
                            );
                            if let Some(g) = given_back {
                                self.give_back(g);
                            }
                            self.sweep_leases();
                        } else if admission.verdict != Verdict::Admit
                            && let Some(leased) = self.leases.spend(&q.key, &q.policy, q.cost, now)
                        {
                            // Refused because this replica holds the
                            // headroom in a lease: spend from it.
                            admission = leased;
                        }
                        if let Err(admission) = q.reply.send(admission)
                            && let Some(r) = admission.reservation
                            && r.charged > 0
                        {
                            // The request went away while its check was on
                            // its way, and was charged: refund it.
                            self.queue_settle(
                                &r.key,
                                &r.policy,
                                r.period_start,
                                delta(0, r.charged),
                                0,
                            );
                        }
                    }
                }
                Err(e) => {
                    self.mark_down(&e);
                    // Every check of the batch falls back (its reply is
                    // dropped); so do those queued meanwhile, without
                    // waiting for a Redis that just failed.
                    drop(batch);
                    self.queued
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .clear();
                }
            }
        }
    }

    /// One script call for `batch`: [`CHECK_REPLY`] numbers per check, in
    /// order.
    async fn remote_checks(&self, batch: &[Queued]) -> Result<Vec<i64>, Failure> {
        let mut inv = self.check.prepare_invoke();
        for q in batch {
            let p = &q.args;
            let (lease_requests, lease_tokens) = (q.lease, q.cost.max(1).saturating_mul(q.lease));
            inv.key(self.redis_key(&q.key))
                .arg(&p.token_interval)
                .arg(&p.token_tolerance)
                .arg(&p.request_interval)
                .arg(&p.request_tolerance)
                .arg(p.quota)
                .arg(p.period)
                .arg(q.cost)
                .arg(&p.encoded)
                .arg(lease_requests)
                .arg(lease_tokens);
        }
        let mut conn = self.conn.clone();
        let v: Vec<i64> = tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| Failure::Timeout(self.timeout))??;
        if v.len() != batch.len() * CHECK_REPLY {
            return Err(Failure::Reply("check.lua returned an unexpected shape"));
        }
        Ok(v)
    }

    /// A check's admission from the script's numbers.
    fn admission(key: &QuotaKey, policy: &Policy, cost: u64, n: &[i64; CHECK_REPLY]) -> Admission {
        let [verdict, wait, tt, rt, ps, pe, pu, now, ..] = *n;
        let state = BucketState {
            tat_tokens: tt as f64,
            tat_requests: rt as f64,
            period_start: ps,
            period_used: u64::try_from(pu).unwrap_or(0),
        };
        let standing = standing_of(key, &state, policy, now);
        let verdict = match (verdict, policy.quota) {
            (0, _) => Verdict::Admit,
            (3, Some(quota)) => Verdict::QuotaExhausted {
                quota,
                resets: Timestamp::from_unix_micros(pe.saturating_mul(1_000_000)),
            },
            _ => Verdict::RateLimited {
                wait: crate::time::micros(wait),
            },
        };
        let reservation = (verdict == Verdict::Admit).then(|| Reservation {
            key: key.clone(),
            policy: *policy,
            charged: cost,
            period_start: ps,
            shared: true,
            lease: 0,
        });
        Admission {
            verdict,
            standing,
            reservation,
        }
    }

    /// Sends back what is left of an ended lease.
    fn give_back(self: &Arc<Self>, g: GiveBack) {
        if g.tokens == 0 && g.requests == 0 {
            return;
        }
        self.queue_settle(&g.key, &g.policy, g.period_start, g.tokens, g.requests);
    }

    /// Starts the task that ends expired leases, if it is not running.
    fn sweep_leases(self: &Arc<Self>) {
        if self.sweeping.swap(true, Ordering::AcqRel) {
            return;
        }
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.sweeping.store(false, Ordering::Release);
            return;
        };
        let inner = Arc::clone(self);
        handle.spawn(async move {
            loop {
                tokio::time::sleep(LEASE_TTL).await;
                for g in inner.leases.sweep(inner.local.now_micros()) {
                    inner.give_back(g);
                }
                if inner.leases.is_empty() {
                    inner.sweeping.store(false, Ordering::Release);
                    // A key followed since: go on unless a new task did.
                    if inner.leases.is_empty() || inner.sweeping.swap(true, Ordering::AcqRel) {
                        return;
                    }
                }
            }
        });
    }

    /// Adds a settlement (token and request deltas) of `key`, charged under
    /// `policy` to the period starting at `period_start`, to the next flush,
    /// and schedules one if none is.
    fn queue_settle(
        self: &Arc<Self>,
        key: &QuotaKey,
        policy: &Policy,
        period_start: i64,
        tokens: i64,
        requests: i64,
    ) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.lost.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let args = self.args_of(policy);
        let pending = Pending {
            key: key.clone(),
            token_interval: args.token_interval.clone(),
            request_interval: args.request_interval.clone(),
            period_start,
        };
        {
            let mut map = self.pending.lock().unwrap_or_else(PoisonError::into_inner);
            let (sum, sum_requests, n) = map.entry(pending).or_insert((0, 0, 0));
            *sum = sum.saturating_add(tokens);
            *sum_requests = sum_requests.saturating_add(requests);
            *n += 1;
        }
        if !self.flushing.swap(true, Ordering::AcqRel) {
            let inner = Arc::clone(self);
            handle.spawn(async move {
                tokio::time::sleep(SETTLE_WINDOW).await;
                inner.flush_settlements().await;
            });
        }
    }

    /// Sends every pending settlement: one script call per key, all at once.
    async fn flush_settlements(self: Arc<Self>) {
        // The flag is cleared before the batch is taken: a settlement queued
        // from here on schedules the next flush (which may find it already
        // sent by this one, and nothing to do), so none is left behind.
        self.flushing.store(false, Ordering::Release);
        let batch =
            std::mem::take(&mut *self.pending.lock().unwrap_or_else(PoisonError::into_inner));
        let calls = batch
            .into_iter()
            .filter(|(_, (tokens, requests, _))| *tokens != 0 || *requests != 0)
            .map(|(p, (tokens, requests, n))| {
                let inner = Arc::clone(&self);
                tokio::spawn(async move {
                    if let Err(e) = inner.remote_settle(&p, tokens, requests).await {
                        // Every settlement the call stood for is lost.
                        inner.lost.fetch_add(n, Ordering::Relaxed);
                        inner.mark_down(&e);
                    }
                })
            });
        for call in calls.collect::<Vec<_>>() {
            let _ = call.await;
        }
    }

    async fn remote_settle(&self, p: &Pending, tokens: i64, requests: i64) -> Result<(), Failure> {
        let mut inv = self.settle.key(self.redis_key(&p.key));
        inv.arg(&p.token_interval)
            .arg(tokens)
            .arg(p.period_start)
            .arg(&p.request_interval)
            .arg(requests);
        let mut conn = self.conn.clone();
        let _: i64 = tokio::time::timeout(self.timeout, inv.invoke_async(&mut conn))
            .await
            .map_err(|_| Failure::Timeout(self.timeout))??;
        Ok(())
    }

    async fn remote_standings(&self, keys: Vec<String>) -> Result<Vec<Standing>, Failure> {
        let mut pipe = redis::pipe();
        pipe.cmd("TIME");
        for k in &keys {
            pipe.cmd("HMGET")
                .arg(k)
                .arg("tt")
                .arg("rt")
                .arg("ps")
                .arg("pu")
                .arg("pol");
        }
        let mut conn = self.conn.clone();
        let values: Vec<Value> = tokio::time::timeout(self.timeout, pipe.query_async(&mut conn))
            .await
            .map_err(|_| Failure::Timeout(self.timeout))??;
        let mut values = values.into_iter();
        let (secs, us): (i64, i64) =
            redis::from_redis_value(values.next().ok_or(Failure::Reply("no TIME reply"))?)
                .map_err(|_| Failure::Reply("TIME returned an unexpected shape"))?;
        let now = secs * 1_000_000 + us;
        let mut out = Vec::new();
        for (k, v) in keys.iter().zip(values) {
            let fields: Vec<Option<String>> = redis::from_redis_value(v)
                .map_err(|_| Failure::Reply("HMGET returned an unexpected shape"))?;
            let num = |i: usize| {
                fields
                    .get(i)
                    .and_then(|f| f.as_deref())
                    .and_then(|s| s.parse::<f64>().ok())
            };
            let Some(policy) = fields
                .get(4)
                .and_then(|f| f.as_deref())
                .and_then(decode_policy)
            else {
                continue;
            };
            let Some(name) = k
                .strip_prefix(&*self.prefix)
                .and_then(|s| s.strip_prefix('{'))
                .and_then(|s| s.strip_suffix('}'))
            else {
                continue;
            };
            let state = BucketState {
                tat_tokens: num(0).unwrap_or(0.0),
                tat_requests: num(1).unwrap_or(0.0),
                period_start: num(2).unwrap_or(0.0) as i64,
                period_used: num(3).unwrap_or(0.0) as u64,
            };
            out.push(standing_of(
                &QuotaKey::from_stored(name),
                &state,
                &policy,
                now,
            ));
        }
        Ok(out)
    }

    async fn remote_snapshot(&self) -> Result<Vec<Standing>, Failure> {
        let pattern = format!("{}{{*", self.prefix);
        let mut cursor: u64 = 0;
        let mut keys = Vec::new();
        loop {
            let mut conn = self.conn.clone();
            let mut cmd = redis::cmd("SCAN");
            cmd.arg(cursor)
                .arg("MATCH")
                .arg(&pattern)
                .arg("COUNT")
                .arg(1_000);
            let scan = cmd.query_async::<(u64, Vec<String>)>(&mut conn);
            let (next, batch) = tokio::time::timeout(self.timeout, scan)
                .await
                .map_err(|_| Failure::Timeout(self.timeout))??;
            keys.extend(batch);
            cursor = next;
            if cursor == 0 || keys.len() >= SNAPSHOT_MAX {
                break;
            }
        }
        keys.sort();
        keys.dedup();
        keys.truncate(SNAPSHOT_MAX);
        let mut out = Vec::with_capacity(keys.len());
        for chunk in keys.chunks(500) {
            out.extend(self.remote_standings(chunk.to_vec()).await?);
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }
}

impl QuotaStore for RedisStore {
    fn check(&self, key: &QuotaKey, policy: &Policy, cost: u64) -> StoreFuture<Admission> {
        let now = self.inner.local.now_micros();
        let lease = match self.inner.leases.take(key, policy, cost, now) {
            Take::Admitted(admission) => return StoreFuture::ready(admission),
            Take::Ask { lease, give_back } => {
                if let Some(g) = give_back {
                    self.inner.give_back(g);
                }
                self.inner.sweep_leases();
                lease
            }
        };
        if !self.inner.try_shared() {
            return StoreFuture::ready(self.inner.fallback(key, policy, cost));
        }
        let Some(answer) = self.inner.enqueue_check(key, policy, cost, lease) else {
            // No runtime to reach Redis from.
            return StoreFuture::ready(self.inner.fallback(key, policy, cost));
        };
        let inner = Arc::clone(&self.inner);
        let key = key.clone();
        let policy = *policy;
        StoreFuture::boxed(async move {
            match answer.await {
                Ok(admission) => admission,
                // The call failed (the sending task marked Redis down).
                Err(_) => inner.fallback(&key, &policy, cost),
            }
        })
    }

    fn settle(&self, reservation: &Reservation, actual: u64) {
        if !reservation.shared {
            self.inner.local.settle_now(reservation, actual);
            return;
        }
        let delta = delta(actual, reservation.charged);
        if delta == 0 || (reservation.lease != 0 && self.inner.leases.absorb(reservation, delta)) {
            return;
        }
        self.inner.queue_settle(
            &reservation.key,
            &reservation.policy,
            reservation.period_start,
            delta,
            0,
        );
    }

    fn standing(&self, key: &QuotaKey) -> StoreFuture<Option<Standing>> {
        let inner = Arc::clone(&self.inner);
        let key = key.clone();
        StoreFuture::boxed(async move {
            match inner.remote_standings(vec![inner.redis_key(&key)]).await {
                Ok(mut v) => v.pop(),
                Err(_) => inner.local.standing_now(&key),
            }
        })
    }

    fn snapshot(&self) -> StoreFuture<Vec<Standing>> {
        let inner = Arc::clone(&self.inner);
        StoreFuture::boxed(async move {
            match inner.remote_snapshot().await {
                Ok(v) => v,
                Err(e) => {
                    inner.mark_down(&e);
                    inner.local.snapshot_now()
                }
            }
        })
    }

    fn flush(&self) -> StoreFuture<()> {
        for g in self.inner.leases.drain() {
            self.inner.give_back(g);
        }
        StoreFuture::boxed(Arc::clone(&self.inner).flush_settlements())
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            shared: self.inner.down_until.load(Ordering::Acquire) == 0,
            errors: self.inner.errors.load(Ordering::Relaxed),
            local_checks: self.inner.local_checks.load(Ordering::Relaxed),
            lost_settlements: self.inner.lost.load(Ordering::Relaxed),
            leased_checks: self.inner.leases.admitted(),
        }
    }
}

impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.prefix)
            .field("timeout", &self.inner.timeout)
            .field("fail", &self.inner.fail)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

/// Why a Redis call failed.
#[derive(Debug)]
enum Failure {
    Redis(RedisError),
    Timeout(Duration),
    Reply(&'static str),
}

impl From<RedisError> for Failure {
    fn from(e: RedisError) -> Self {
        Failure::Redis(e)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Failure::Redis(e) => write!(f, "{e}"),
            Failure::Timeout(d) => write!(f, "no answer within {d:?}"),
            Failure::Reply(what) => f.write_str(what),
        }
    }
}

/// A policy as the check script's arguments (0 = absent).
struct PolicyArgs {
    token_interval: String,
    token_tolerance: String,
    request_interval: String,
    request_tolerance: String,
    quota: u64,
    period: u8,
    /// The policy itself, stored with the key for `GET /usage`.
    encoded: String,
}

impl PolicyArgs {
    fn of(p: &Policy) -> Self {
        let f = |x: f64| format!("{x:.6}");
        Self {
            token_interval: p.tokens.map_or("0".into(), |r| f(r.interval_micros())),
            token_tolerance: p.tokens.map_or("0".into(), |r| f(r.tolerance_micros())),
            request_interval: p.requests.map_or("0".into(), |r| f(r.interval_micros())),
            request_tolerance: p.requests.map_or("0".into(), |r| f(r.tolerance_micros())),
            quota: p.quota.map_or(0, |q| q.tokens()),
            period: p.quota.map_or(0, |q| q.period().code()),
            encoded: encode_policy(p),
        }
    }
}

/// `amount,per_us,burst` for both rates, then `quota,period`; zeros for absent.
fn encode_policy(p: &Policy) -> String {
    let r = |r: Option<Rate>| {
        r.map_or("0,0,0".to_owned(), |r| {
            format!("{},{},{}", r.amount(), r.per().as_micros(), r.burst())
        })
    };
    format!(
        "{},{},{},{}",
        r(p.tokens),
        r(p.requests),
        p.quota.map_or(0, |q| q.tokens()),
        p.quota.map_or(0, |q| q.period().code()),
    )
}

fn decode_policy(s: &str) -> Option<Policy> {
    let n: Vec<u64> = s
        .split(',')
        .map(|x| x.parse().ok())
        .collect::<Option<_>>()?;
    let [ta, tp, tb, ra, rp, rb, q, pc] = n[..] else {
        return None;
    };
    let rate = |a: u64, p: u64, b: u64| -> Option<Option<Rate>> {
        if a == 0 {
            return Some(None);
        }
        Rate::new(a, Duration::from_micros(p))
            .and_then(|r| r.with_burst(b))
            .ok()
            .map(Some)
    };
    let quota = if q == 0 {
        None
    } else {
        Some(TokenQuota::new(q, Period::from_code(i64::try_from(pc).ok()?)?).ok()?)
    };
    Some(Policy {
        tokens: rate(ta, tp, tb)?,
        requests: rate(ra, rp, rb)?,
        quota,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn policies_round_trip_through_their_stored_form() {
        let p = Policy::unlimited()
            .with_tokens(Rate::per_minute(100_000).unwrap().with_burst(5).unwrap())
            .with_quota("5000000/month".parse().unwrap());
        assert_eq!(decode_policy(&encode_policy(&p)), Some(p));
        assert_eq!(
            decode_policy(&encode_policy(&Policy::unlimited())),
            Some(Policy::unlimited())
        );
        assert_eq!(decode_policy("1,2"), None);
        assert_eq!(decode_policy("x,0,0,0,0,0,0,0"), None);
    }

    #[tokio::test]
    async fn bad_prefix_and_url_are_config_errors() {
        assert!(
            RedisStore::builder("redis://127.0.0.1:1")
                .with_prefix("a{")
                .build()
                .is_err()
        );
        assert!(RedisStore::builder("nope://x").build().is_err());
    }
}
