//! The route table: priority tiers, weighted spreading, breaker-aware picking.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use claude_tower_core::RouteId;
use tokio::time::Instant;

use crate::breaker::{Admission, Breaker, BreakerConfig};

/// Routes beyond this many are ignored (the per-request bookkeeping is a `u64` mask).
pub const MAX_ROUTES: usize = 64;

pub(crate) struct Entry<S> {
    pub(crate) id: RouteId,
    pub(crate) service: S,
    pub(crate) priority: u32,
    pub(crate) weight: u32,
}

pub(crate) struct Table<S> {
    /// Sorted by priority (stable: configuration order within a tier).
    pub(crate) routes: Box<[Entry<S>]>,
    /// `breakers[i]` belongs to `routes[i]`.
    pub(crate) breakers: Arc<[Breaker]>,
    rng: SpreadRng,
}

/// `Instant::now()` only when a breaker is not clean: the healthy path never
/// reads the clock.
pub(crate) struct LazyNow(Option<Instant>);

impl LazyNow {
    pub(crate) fn new() -> Self {
        Self(None)
    }

    pub(crate) fn get(&mut self) -> Instant {
        *self.0.get_or_insert_with(Instant::now)
    }
}

const fn bit(i: usize) -> u64 {
    1 << i
}

impl<S> Table<S> {
    pub(crate) fn new(mut routes: Vec<Entry<S>>, config: BreakerConfig, seed: u64) -> Self {
        if routes.len() > MAX_ROUTES {
            tracing::warn!(
                configured = routes.len(),
                kept = MAX_ROUTES,
                "too many failover routes; the lowest-priority ones are ignored"
            );
        }
        routes.sort_by_key(|r| r.priority);
        routes.truncate(MAX_ROUTES);
        let breakers = routes
            .iter()
            .map(|r| Breaker::new(r.id.clone(), config))
            .collect::<Vec<_>>();
        Self {
            routes: routes.into_boxed_slice(),
            breakers: Arc::from(breakers),
            rng: SpreadRng(AtomicU64::new(seed)),
        }
    }

    /// Every route's bit.
    pub(crate) fn all(&self) -> u64 {
        match self.routes.len() {
            MAX_ROUTES => u64::MAX,
            n => bit(n) - 1,
        }
    }

    /// The next route to try: the best priority tier with an untried route
    /// whose breaker admits it, spreading by weight within the tier. Takes
    /// the half-open probe slot when that is what admits it.
    pub(crate) fn pick(&self, tried: u64, now: &mut LazyNow) -> Option<(usize, Admission)> {
        let n = self.routes.len();
        let mut start = 0;
        while start < n {
            let priority = self.routes[start].priority;
            let mut end = start + 1;
            while end < n && self.routes[end].priority == priority {
                end += 1;
            }
            let mut candidates = 0u64;
            for k in start..end {
                if tried & bit(k) == 0 && self.admits(k, now) {
                    candidates |= bit(k);
                }
            }
            while candidates != 0 {
                let k = if candidates.count_ones() == 1 {
                    candidates.trailing_zeros() as usize
                } else {
                    self.spread(candidates)
                };
                let admitted = if self.breakers[k].is_clean() {
                    Some(Admission::Closed)
                } else {
                    self.breakers[k].try_admit(now.get())
                };
                if let Some(admission) = admitted {
                    return Some((k, admission));
                }
                // Lost a race for the probe slot.
                candidates &= !bit(k);
            }
            start = end;
        }
        None
    }

    fn admits(&self, k: usize, now: &mut LazyNow) -> bool {
        self.breakers[k].is_clean() || self.breakers[k].may_admit(now.get())
    }

    /// The untried route whose breaker reopens soonest (priority order on ties):
    /// used when every breaker is open, so the request is still tried somewhere.
    pub(crate) fn soonest(&self, tried: u64, now: &mut LazyNow) -> Option<usize> {
        let now = now.get();
        (0..self.routes.len())
            .filter(|k| tried & bit(*k) == 0)
            .min_by_key(|k| self.breakers[*k].reopens_at(now).unwrap_or(now))
    }

    /// A weighted choice among the candidate bits.
    fn spread(&self, candidates: u64) -> usize {
        let total: u64 = (0..self.routes.len())
            .filter(|k| candidates & bit(*k) != 0)
            .map(|k| u64::from(self.routes[k].weight))
            .sum();
        let mut roll = self.rng.next() % total.max(1);
        let mut last = 0;
        for k in (0..self.routes.len()).filter(|k| candidates & bit(*k) != 0) {
            let weight = u64::from(self.routes[k].weight);
            if roll < weight {
                return k;
            }
            roll -= weight;
            last = k;
        }
        last
    }
}

impl<S> fmt::Debug for Table<S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut list = f.debug_list();
        for (route, breaker) in self.routes.iter().zip(self.breakers.iter()) {
            list.entry(&format_args!(
                "{} (priority {}, weight {}): {:?}",
                route.id, route.priority, route.weight, breaker
            ));
        }
        list.finish()
    }
}

/// splitmix64 over an atomic counter: lock-free, and deterministic for a
/// given seed (so spreading is reproducible in tests).
struct SpreadRng(AtomicU64);

impl SpreadRng {
    fn next(&self) -> u64 {
        const GAMMA: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut z = self
            .0
            .fetch_add(GAMMA, Ordering::Relaxed)
            .wrapping_add(GAMMA);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(spec: &[(&str, u32, u32)], seed: u64) -> Table<()> {
        let routes = spec
            .iter()
            .map(|(id, priority, weight)| Entry {
                id: RouteId::new(*id),
                service: (),
                priority: *priority,
                weight: *weight,
            })
            .collect();
        Table::new(routes, BreakerConfig::new().with_failure_threshold(1), seed)
    }

    #[test]
    fn priority_order_then_spread_by_weight() {
        let t = table(&[("backup", 1, 1), ("east", 0, 3), ("west", 0, 1)], 7);
        assert_eq!(t.routes[2].id, "backup");
        let mut east = 0;
        for _ in 0..4000 {
            let (k, _) = t.pick(0, &mut LazyNow::new()).unwrap();
            assert!(k < 2, "the first tier always wins while healthy");
            east += usize::from(k == 0);
        }
        assert!((2700..3300).contains(&east), "about 3:1, got {east}");
        // Both first-tier routes tried: the next tier.
        assert_eq!(t.pick(0b011, &mut LazyNow::new()).map(|p| p.0), Some(2));
        assert_eq!(t.pick(0b111, &mut LazyNow::new()), None);
    }

    #[test]
    fn same_seed_same_choices() {
        let spec = [("a", 0, 1), ("b", 0, 1), ("c", 0, 1)];
        let (t1, t2) = (table(&spec, 42), table(&spec, 42));
        let picks = |t: &Table<()>| {
            (0..32)
                .map(|_| t.pick(0, &mut LazyNow::new()).unwrap().0)
                .collect::<Vec<_>>()
        };
        assert_eq!(picks(&t1), picks(&t2));
    }

    #[tokio::test(start_paused = true)]
    async fn open_breakers_are_skipped_and_soonest_is_found() {
        let t = table(&[("a", 0, 1), ("b", 1, 1)], 1);
        let now = Instant::now();
        t.breakers[0].on_failure(
            Admission::Closed,
            Some(std::time::Duration::from_secs(60)),
            now,
        );
        assert_eq!(t.pick(0, &mut LazyNow::new()).map(|p| p.0), Some(1));
        t.breakers[1].on_failure(Admission::Closed, None, now);
        assert_eq!(t.pick(0, &mut LazyNow::new()), None);
        // b reopens after the 10 s cool-down, a after 60 s.
        assert_eq!(t.soonest(0, &mut LazyNow::new()), Some(1));
        assert_eq!(t.all(), 0b11);
    }
}
