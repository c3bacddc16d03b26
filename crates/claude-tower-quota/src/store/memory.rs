//! The in-memory store: sharded maps, one short lock per check.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{
    Admission, BucketState, KeyMap, QuotaStore, Reservation, Standing, StoreFuture, StoreHealth,
    Verdict, check_state, settle_state, standing_of,
};
use crate::time::Clock;
use crate::{Policy, QuotaKey};

/// Buckets in this process's memory: the embedded default, and the fallback
/// of the Redis store.
///
/// Keys are spread over shards (a power of two, 4 per CPU, at least 16),
/// each a `Mutex<HashMap>` held for a few hundred nanoseconds: no global
/// lock. Time is the wall clock at creation plus tokio's monotonic clock, so
/// it never steps back and tests can pause it. Idle keys (buckets full, no
/// quota in the current period) are swept when a shard grows.
///
/// Cloning shares the buckets.
#[derive(Clone)]
pub struct MemoryStore {
    inner: Arc<Inner>,
}

struct Inner {
    shards: Box<[Mutex<Shard>]>,
    clock: Clock,
    checks: AtomicU64,
}

struct Shard {
    map: KeyMap<Entry>,
    sweep_at: usize,
}

struct Entry {
    state: BucketState,
    policy: Policy,
}

const SWEEP_MIN: usize = 1_024;

impl Default for MemoryStore {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        let cpus = std::thread::available_parallelism().map_or(4, |n| n.get());
        // At most 2^16: `shard` takes the index from 16 bits of the hash.
        let n = (cpus * 4).next_power_of_two().clamp(16, 1 << 16);
        Self {
            inner: Arc::new(Inner {
                shards: (0..n)
                    .map(|_| {
                        Mutex::new(Shard {
                            map: KeyMap::default(),
                            sweep_at: SWEEP_MIN,
                        })
                    })
                    .collect(),
                clock: Clock::new(),
                checks: AtomicU64::new(0),
            }),
        }
    }

    fn shard(&self, key: &QuotaKey) -> MutexGuard<'_, Shard> {
        // The hash's top bits: the map inside the shard indexes by its low
        // bits, and a shard of keys alike in those would crowd its slots.
        let i = (key.carried_hash() >> 48) as usize & (self.inner.shards.len() - 1);
        // A panic while holding a shard cannot leave a bucket half-written
        // (every update is a plain store), so a poisoned lock is still good.
        self.inner.shards[i]
            .lock()
            .unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn now_micros(&self) -> i64 {
        self.inner.clock.now_micros()
    }

    /// Checks synchronously (the [`QuotaStore::check`] of this store is
    /// always ready).
    pub fn check_now(&self, key: &QuotaKey, policy: &Policy, cost: u64) -> Admission {
        let now = self.now_micros();
        let mut shard = self.shard(key);
        if shard.map.len() >= shard.sweep_at && !shard.map.contains_key(key) {
            sweep(&mut shard, now);
        }
        let entry = shard.map.entry(key.clone()).or_insert_with(|| Entry {
            state: BucketState::default(),
            policy: *policy,
        });
        entry.policy = *policy;
        let (verdict, period_start) = check_state(&mut entry.state, policy, cost, now);
        let standing = standing_of(key, &entry.state, policy, now);
        drop(shard);
        self.inner.checks.fetch_add(1, Ordering::Relaxed);
        let reservation = (verdict == Verdict::Admit).then(|| Reservation {
            key: key.clone(),
            policy: *policy,
            charged: cost,
            period_start,
            shared: false,
            lease: 0,
        });
        Admission {
            verdict,
            standing,
            reservation,
        }
    }

    /// Settles synchronously.
    pub fn settle_now(&self, reservation: &Reservation, actual: u64) {
        let delta = delta(actual, reservation.charged);
        if delta == 0 {
            return;
        }
        let mut shard = self.shard(&reservation.key);
        if let Some(e) = shard.map.get_mut(&reservation.key) {
            settle_state(
                &mut e.state,
                &reservation.policy,
                reservation.period_start,
                delta,
            );
        }
    }

    /// The standing of `key`, synchronously.
    pub fn standing_now(&self, key: &QuotaKey) -> Option<Standing> {
        let now = self.now_micros();
        let shard = self.shard(key);
        shard
            .map
            .get(key)
            .map(|e| standing_of(key, &e.state, &e.policy, now))
    }

    /// Every key's standing, synchronously, sorted by key.
    pub fn snapshot_now(&self) -> Vec<Standing> {
        let now = self.now_micros();
        let mut all = Vec::new();
        for shard in self.inner.shards.iter() {
            let shard = shard.lock().unwrap_or_else(|e| e.into_inner());
            all.extend(
                shard
                    .map
                    .iter()
                    .map(|(k, e)| standing_of(k, &e.state, &e.policy, now)),
            );
        }
        all.sort_by(|a, b| a.key.cmp(&b.key));
        all
    }

    /// How many keys are held.
    pub fn len(&self) -> usize {
        self.inner
            .shards
            .iter()
            .map(|s| s.lock().unwrap_or_else(|e| e.into_inner()).map.len())
            .sum()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// `actual - charged` as a signed delta.
pub(crate) fn delta(actual: u64, charged: u64) -> i64 {
    i64::try_from(actual)
        .unwrap_or(i64::MAX)
        .saturating_sub(i64::try_from(charged).unwrap_or(i64::MAX))
}

fn sweep(shard: &mut Shard, now: i64) {
    let now_f = now as f64;
    let secs = now.div_euclid(1_000_000);
    shard.map.retain(|_, e| {
        let busy = e.state.tat_tokens > now_f || e.state.tat_requests > now_f;
        let quota = e
            .policy
            .quota
            .is_some_and(|q| q.period().bounds(secs).0 == e.state.period_start);
        busy || quota
    });
    shard.sweep_at = (shard.map.len() * 2).max(SWEEP_MIN);
}

impl QuotaStore for MemoryStore {
    fn check(&self, key: &QuotaKey, policy: &Policy, cost: u64) -> StoreFuture<Admission> {
        StoreFuture::ready(self.check_now(key, policy, cost))
    }

    fn settle(&self, reservation: &Reservation, actual: u64) {
        self.settle_now(reservation, actual);
    }

    fn standing(&self, key: &QuotaKey) -> StoreFuture<Option<Standing>> {
        StoreFuture::ready(self.standing_now(key))
    }

    fn snapshot(&self) -> StoreFuture<Vec<Standing>> {
        StoreFuture::ready(self.snapshot_now())
    }

    fn health(&self) -> StoreHealth {
        StoreHealth {
            shared: true,
            local_checks: self.inner.checks.load(Ordering::Relaxed),
            ..StoreHealth::default()
        }
    }
}

impl fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MemoryStore")
            .field("shards", &self.inner.shards.len())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rate;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn shares_buckets_per_key_and_recovers_with_time() {
        let store = MemoryStore::new();
        let p =
            Policy::unlimited().with_tokens(Rate::per_minute(600).unwrap().with_burst(10).unwrap());
        let a = QuotaKey::caller("a");
        let b = QuotaKey::caller("b");
        let first = store.check_now(&a, &p, 50);
        assert_eq!(first.verdict, Verdict::Admit);
        assert!(matches!(
            store.check_now(&a, &p, 1).verdict,
            Verdict::RateLimited { .. }
        ));
        assert_eq!(
            store.check_now(&b, &p, 1).verdict,
            Verdict::Admit,
            "isolated"
        );
        // 40 tokens of debt at 10/s.
        tokio::time::advance(Duration::from_secs(4)).await;
        assert_eq!(store.check_now(&a, &p, 0).verdict, Verdict::Admit);
        // Settling the first request at 20 tokens refunds 30.
        store.settle_now(first.reservation.as_ref().unwrap(), 20);
        let st = store.standing_now(&a).unwrap().tokens.unwrap();
        assert_eq!(st.remaining, 10);
        assert_eq!(store.snapshot_now().len(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_keys_are_swept() {
        let store = MemoryStore::new();
        let p = Policy::unlimited().with_requests(Rate::per_minute(60).unwrap());
        for i in 0..20_000 {
            store.check_now(&QuotaKey::caller(&i.to_string()), &p, 0);
        }
        tokio::time::advance(Duration::from_secs(2)).await;
        for i in 0..20_000 {
            store.check_now(&QuotaKey::header(&i.to_string()), &p, 0);
        }
        assert!(store.len() < 40_000, "{}", store.len());
    }
}
