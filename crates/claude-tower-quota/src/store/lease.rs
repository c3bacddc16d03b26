//! Leases: allowances a replica took from Redis and spends without asking.
//!
//! A key that is busy on this replica (checked again within [`HOT`]) asks,
//! with its next check, for a lease of [`LEASE_MIN`] requests (and as many
//! times the request's estimated tokens), twice as many after a lease was
//! used up, half as many after one expired half unspent, up to
//! [`LEASE_MAX`]; `check.lua` charges it to the shared
//! buckets at once, out of headroom only (at most a quarter of what is left,
//! so a lease never puts a key into debt). Until the lease runs out or
//! [`LEASE_TTL`] passes, that key's checks are answered here, with no round
//! trip; the settlement of a request admitted from a live lease corrects the
//! lease, not Redis. When the lease ends, what is left of it (or what it was
//! overspent by) goes back to Redis as one settlement. So Redis is charged
//! exactly what the requests used, as without leases; what changes is when
//! other replicas see it: a lease's unspent part is held for at most
//! [`LEASE_TTL`]. A key near its limit gets no lease (no headroom) and is
//! checked in Redis request by request, as before.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use super::{Admission, KeyMap, Reservation, Standing, Verdict};
use crate::time::duration_micros;
use crate::{Policy, QuotaKey};

/// How long a lease lives.
pub(crate) const LEASE_TTL: Duration = Duration::from_millis(100);

/// A key checked again within this long on one replica asks for a lease.
pub(crate) const HOT: Duration = Duration::from_secs(1);

/// The fewest requests a lease asks for.
pub(crate) const LEASE_MIN: u64 = 32;

/// The most requests a lease asks for.
pub(crate) const LEASE_MAX: u64 = 4_096;

/// The most keys the table follows; past it, new keys get no lease.
pub(crate) const MAX_KEYS: usize = 10_000;

/// This replica's leases, one per key.
#[derive(Default)]
pub(crate) struct Leases {
    map: Mutex<KeyMap<Lease>>,
    next_id: AtomicU64,
    admitted: AtomicU64,
}

/// One key's entry: when it was last checked here, and its lease if any
/// (`id == 0`: none).
struct Lease {
    seen: i64,
    /// When a lease was last asked for and not granted yet (0: none).
    asked: i64,
    /// The requests the next lease asks for.
    want: u64,
    /// The requests granted to the running lease.
    granted: u64,
    id: u64,
    policy: Policy,
    requests: u64,
    /// Estimated tokens left; negative once overspent by settlements.
    tokens: i64,
    expires: i64,
    period_start: i64,
    /// The key's standing when the lease was granted.
    standing: Option<Standing>,
}

/// What a lease that ended gives back to Redis.
#[derive(Debug, PartialEq)]
pub(crate) struct GiveBack {
    pub(crate) key: QuotaKey,
    pub(crate) policy: Policy,
    pub(crate) period_start: i64,
    /// Token delta to settle (minus what is left).
    pub(crate) tokens: i64,
    /// Request delta to settle (minus what is left).
    pub(crate) requests: i64,
}

/// The outcome of [`Leases::take`].
#[derive(Debug)]
pub(crate) enum Take {
    /// Admitted from a live lease.
    Admitted(Admission),
    /// Ask Redis; `lease`: the requests of a lease to ask for too (0:
    /// none); `give_back`: the ended lease.
    Ask {
        lease: u64,
        give_back: Option<GiveBack>,
    },
}

impl Leases {
    /// Admits from `key`'s live lease, or says what to ask Redis.
    pub(crate) fn take(&self, key: &QuotaKey, policy: &Policy, cost: u64, now: i64) -> Take {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(l) = map.get_mut(key) else {
            if map.len() < MAX_KEYS {
                map.insert(key.clone(), Lease::empty(now));
            }
            return Take::Ask {
                lease: 0,
                give_back: None,
            };
        };
        let hot = now - l.seen < duration_micros(HOT);
        l.seen = now;
        if let Some(admission) = l.spend(key, policy, cost, now) {
            drop(map);
            self.admitted.fetch_add(1, Ordering::Relaxed);
            return Take::Admitted(admission);
        }
        // One lease asked at a time per key; none for a while after Redis
        // had no headroom to grant one.
        let give_back = l.end(key);
        let ask = hot && (l.asked == 0 || now - l.asked >= duration_micros(LEASE_TTL));
        if ask {
            l.asked = now;
        }
        Take::Ask {
            lease: if ask { l.want } else { 0 },
            give_back,
        }
    }

    /// Admits from `key`'s live lease, if it has one: for a request Redis
    /// refused because the headroom is held by this replica's own lease.
    pub(crate) fn spend(
        &self,
        key: &QuotaKey,
        policy: &Policy,
        cost: u64,
        now: i64,
    ) -> Option<Admission> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        let admission = map.get_mut(key)?.spend(key, policy, cost, now)?;
        drop(map);
        self.admitted.fetch_add(1, Ordering::Relaxed);
        Some(admission)
    }

    /// Adds a lease Redis granted to `key`'s (merged with a live one).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn grant(
        &self,
        key: &QuotaKey,
        policy: &Policy,
        requests: u64,
        tokens: u64,
        period_start: i64,
        standing: &Standing,
        now: i64,
    ) -> Option<GiveBack> {
        let tokens = i64::try_from(tokens).unwrap_or(i64::MAX);
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        if map.len() >= MAX_KEYS && !map.contains_key(key) {
            drop(map);
            // No room to follow it: give it back at once.
            return Some(GiveBack {
                key: key.clone(),
                policy: *policy,
                period_start,
                tokens: -tokens,
                requests: -i64::try_from(requests).unwrap_or(i64::MAX),
            });
        }
        let l = map.entry(key.clone()).or_insert_with(|| Lease::empty(now));
        let mut give_back = None;
        if l.id != 0 && !(l.live(policy, now) && l.period_start == period_start) {
            give_back = l.end(key);
        }
        if l.id == 0 {
            l.id = self.next_id.fetch_add(1, Ordering::Relaxed) + 1;
            l.policy = *policy;
            l.period_start = period_start;
            l.requests = 0;
            l.granted = 0;
            l.tokens = 0;
        }
        l.requests += requests;
        l.granted += requests;
        l.tokens = l.tokens.saturating_add(tokens);
        l.expires = now + duration_micros(LEASE_TTL);
        l.standing = Some(standing.clone());
        l.asked = 0;
        give_back
    }

    /// Settles a request admitted from lease `r.lease` against that lease
    /// if it is still running; `false`: it ended, settle in Redis.
    pub(crate) fn absorb(&self, r: &Reservation, delta: i64) -> bool {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        match map.get_mut(&r.key) {
            Some(l) if l.id == r.lease => {
                l.tokens = l.tokens.saturating_sub(delta);
                true
            }
            _ => false,
        }
    }

    /// Ends the leases that expired and forgets keys idle for [`HOT`].
    pub(crate) fn sweep(&self, now: i64) -> Vec<GiveBack> {
        let mut out = Vec::new();
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.retain(|key, l| {
            if l.id != 0 && now >= l.expires {
                out.extend(l.end(key));
            }
            l.id != 0 || now - l.seen < duration_micros(HOT)
        });
        out
    }

    /// Ends every lease (a stopping service).
    pub(crate) fn drain(&self) -> Vec<GiveBack> {
        let mut map = self.map.lock().unwrap_or_else(PoisonError::into_inner);
        map.drain().filter_map(|(key, mut l)| l.end(&key)).collect()
    }

    /// Whether no key is followed.
    pub(crate) fn is_empty(&self) -> bool {
        self.map
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .is_empty()
    }

    /// Checks admitted from leases so far.
    pub(crate) fn admitted(&self) -> u64 {
        self.admitted.load(Ordering::Relaxed)
    }
}

impl Lease {
    fn empty(now: i64) -> Self {
        Self {
            seen: now,
            asked: 0,
            want: LEASE_MIN,
            granted: 0,
            id: 0,
            policy: Policy::unlimited(),
            requests: 0,
            tokens: 0,
            expires: 0,
            period_start: 0,
            standing: None,
        }
    }

    /// Whether a request under `policy` can be admitted from it now: same
    /// policy, not expired, a request and some tokens left (the debt
    /// model: the last request may overspend), and still in the quota
    /// period it was charged to.
    fn live(&self, policy: &Policy, now: i64) -> bool {
        self.policy == *policy
            && now < self.expires
            && self.requests >= 1
            && self.tokens > 0
            && policy
                .quota
                .is_none_or(|q| q.period().bounds(now.div_euclid(1_000_000)).0 == self.period_start)
    }

    /// Spends one request of `cost` from it, if it is live.
    fn spend(&mut self, key: &QuotaKey, policy: &Policy, cost: u64, now: i64) -> Option<Admission> {
        if self.id == 0 || !self.live(policy, now) {
            return None;
        }
        self.requests -= 1;
        self.tokens = self
            .tokens
            .saturating_sub(i64::try_from(cost).unwrap_or(i64::MAX));
        Some(self.admission(key, cost))
    }

    /// Ends the lease: what to give back.
    fn end(&mut self, key: &QuotaKey) -> Option<GiveBack> {
        if self.id == 0 {
            return None;
        }
        self.id = 0;
        self.standing = None;
        // Used up: ask for more next time; half unspent: for less.
        if self.requests == 0 || self.tokens <= 0 {
            self.want = (self.want * 2).min(LEASE_MAX);
        } else if self.requests * 2 > self.granted {
            self.want = (self.want / 2).max(LEASE_MIN);
        }
        Some(GiveBack {
            key: key.clone(),
            policy: self.policy,
            period_start: self.period_start,
            tokens: -self.tokens,
            requests: -i64::try_from(std::mem::take(&mut self.requests)).unwrap_or(i64::MAX),
        })
    }

    /// The admission of one request from it: the standing as granted, with
    /// the lease's unspent part counted as left.
    fn admission(&self, key: &QuotaKey, cost: u64) -> Admission {
        let left = u64::try_from(self.tokens).unwrap_or(0);
        let mut standing = self.standing.clone().unwrap_or(Standing {
            key: key.clone(),
            tokens: None,
            requests: None,
            quota: None,
        });
        if let Some(t) = &mut standing.tokens {
            t.remaining = t.remaining.saturating_add(left);
        }
        if let Some(r) = &mut standing.requests {
            r.remaining = r.remaining.saturating_add(self.requests);
        }
        if let Some(q) = &mut standing.quota {
            q.used = q.used.saturating_sub(left);
            q.remaining = q.remaining.saturating_add(left);
        }
        Admission {
            verdict: Verdict::Admit,
            standing,
            reservation: Some(Reservation {
                key: key.clone(),
                policy: self.policy,
                charged: cost,
                period_start: self.period_start,
                shared: true,
                lease: self.id,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Rate;

    const T0: i64 = 1_796_002_776_000_000;

    fn policy() -> Policy {
        Policy::unlimited()
            .with_tokens(Rate::per_minute(1_000_000).unwrap())
            .with_requests(Rate::per_minute(1_000).unwrap())
    }

    fn standing(key: &QuotaKey) -> Standing {
        Standing {
            key: key.clone(),
            tokens: None,
            requests: None,
            quota: None,
        }
    }

    fn ask(t: Take) -> (u64, Option<GiveBack>) {
        match t {
            Take::Ask { lease, give_back } => (lease, give_back),
            Take::Admitted(a) => panic!("admitted: {a:?}"),
        }
    }

    #[test]
    fn a_hot_key_asks_spends_and_gives_back_what_is_left() {
        let (leases, key, p) = (Leases::default(), QuotaKey::caller("ada"), policy());
        // First seen: no lease asked; seen again soon: asked, once.
        assert_eq!(ask(leases.take(&key, &p, 10, T0)), (0, None));
        assert_eq!(
            ask(leases.take(&key, &p, 10, T0 + 1_000)),
            (LEASE_MIN, None)
        );
        assert_eq!(ask(leases.take(&key, &p, 10, T0 + 1_500)), (0, None));
        assert_eq!(
            leases.grant(&key, &p, 3, 100, 0, &standing(&key), T0 + 2_000),
            None
        );
        // Three requests from the lease, then it is spent.
        let mut ids = Vec::new();
        for _ in 0..3 {
            let Take::Admitted(a) = leases.take(&key, &p, 10, T0 + 3_000) else {
                panic!("not from the lease")
            };
            ids.push(a.reservation.unwrap());
        }
        assert_eq!(leases.admitted(), 3);
        // One request used 40 more than estimated: the lease absorbs it.
        assert!(leases.absorb(&ids[0], 40));
        // Used up: the next lease asks for twice as many.
        let (lease, back) = ask(leases.take(&key, &p, 10, T0 + 4_000));
        assert_eq!(lease, 2 * LEASE_MIN);
        // 100 - 3 x 10 - 40 = 30 tokens and no request left to give back.
        assert_eq!(
            back,
            Some(GiveBack {
                key: key.clone(),
                policy: p,
                period_start: 0,
                tokens: -30,
                requests: 0
            })
        );
        // The lease ended: its late settlements go to Redis.
        assert!(!leases.absorb(&ids[1], 5));
    }

    #[test]
    fn an_expired_lease_is_swept_back_and_idle_keys_forgotten() {
        let (leases, key, p) = (Leases::default(), QuotaKey::caller("ada"), policy());
        let _ = leases.take(&key, &p, 10, T0);
        let _ = leases.grant(&key, &p, 5, 50, 0, &standing(&key), T0);
        assert!(leases.sweep(T0 + 1_000).is_empty(), "still running");
        let back = leases.sweep(T0 + duration_micros(LEASE_TTL));
        assert_eq!(back.len(), 1);
        assert_eq!((back[0].tokens, back[0].requests), (-50, -5));
        assert!(!leases.is_empty(), "seen recently");
        assert!(leases.sweep(T0 + duration_micros(HOT)).is_empty());
        assert!(leases.is_empty());
    }

    #[test]
    fn another_policy_or_an_overspent_lease_is_not_used() {
        let (leases, key, p) = (Leases::default(), QuotaKey::caller("ada"), policy());
        let _ = leases.take(&key, &p, 10, T0);
        let _ = leases.grant(&key, &p, 5, 50, 0, &standing(&key), T0);
        let other = Policy::unlimited().with_requests(Rate::per_minute(7).unwrap());
        let (_, back) = ask(leases.take(&key, &other, 10, T0));
        assert_eq!(back.map(|b| b.requests), Some(-5));
        let _ = leases.grant(&key, &p, 5, 50, 0, &standing(&key), T0);
        let Take::Admitted(a) = leases.take(&key, &p, 60, T0) else {
            panic!("not from the lease")
        };
        // Overspent by 10: the next request asks Redis, and the lease gives
        // back -(-10) = 10 more tokens to charge.
        assert_eq!(a.reservation.unwrap().charged, 60);
        let (_, back) = ask(leases.take(&key, &p, 10, T0));
        assert_eq!(back.map(|b| (b.tokens, b.requests)), Some((10, -4)));
        assert!(leases.drain().is_empty());
    }
}
