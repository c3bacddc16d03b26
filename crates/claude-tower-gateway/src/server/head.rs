//! hyper's HTTP/1 header-read timer, kept by the connection's watchdog.
//!
//! hyper arms its header-read timer each time a connection waits for a
//! request head and drops it once the head is parsed: on a kept-alive
//! connection, once per request. With hyper-util's `TokioTimer` that is a
//! tokio timer registered in the runtime's wheel and removed again for every
//! request, about 1,300 instructions and a lock of the wheel, for a deadline
//! that almost never passes. [`HeadTimer`] is one connection's timer instead:
//! arming it writes the deadline beside the connection, and the watchdog,
//! which ticks anyway for the idle timeout, expires it on the first tick past
//! the deadline. The price is precision: the head is cut between the timeout
//! and the timeout plus one tick (a quarter of the shorter of the two
//! timeouts).

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};

/// One connection's header-read timer (a [`hyper::rt::Timer`]); clones
/// share it.
///
/// At most one deadline is armed at a time, which is how hyper's HTTP/1
/// connection uses its timer: one head is read at a time.
#[derive(Clone, Debug, Default)]
pub(super) struct HeadTimer {
    state: Arc<Mutex<State>>,
}

#[derive(Debug, Default)]
struct State {
    armed: Option<Armed>,
    /// The id the next [`HeadSleep`] gets.
    next_id: u64,
}

/// The deadline of the one live [`HeadSleep`].
#[derive(Debug)]
struct Armed {
    id: u64,
    deadline: Instant,
    expired: bool,
    waker: Option<Waker>,
}

impl HeadTimer {
    fn state(&self) -> MutexGuard<'_, State> {
        // Every update is a plain store: a panic elsewhere while the lock was
        // held cannot have left the state half-written.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Expires the armed deadline if it has passed by `now`, waking hyper to
    /// see it; returns whether it did.
    pub(super) fn expire_due(&self, now: Instant) -> bool {
        let mut state = self.state();
        let Some(armed) = state.armed.as_mut() else {
            return false;
        };
        if armed.expired || armed.deadline > now {
            return false;
        }
        armed.expired = true;
        let waker = armed.waker.take();
        drop(state);
        if let Some(waker) = waker {
            waker.wake();
        }
        true
    }

    fn arm(&self, id: Option<u64>, deadline: Instant) -> u64 {
        let mut state = self.state();
        let id = id.unwrap_or_else(|| {
            let id = state.next_id;
            state.next_id += 1;
            id
        });
        state.armed = Some(Armed {
            id,
            deadline,
            expired: false,
            waker: None,
        });
        id
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        // A deadline past what `Instant` holds is no deadline: a year is as
        // good as never for a request head.
        let now = self.now();
        let deadline = now
            .checked_add(duration)
            .or_else(|| now.checked_add(Duration::from_secs(365 * 86_400)))
            .unwrap_or(now);
        self.sleep_until(deadline)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        let id = self.arm(None, deadline);
        Box::pin(HeadSleep {
            timer: self.clone(),
            id,
        })
    }

    /// tokio's clock, as hyper-util's `TokioTimer` reads it: a test that
    /// pauses tokio's time pauses this one too.
    fn now(&self) -> Instant {
        tokio::time::Instant::now().into_std()
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        match sleep.as_mut().downcast_mut_pin::<HeadSleep>() {
            Some(ours) if Arc::ptr_eq(&ours.timer.state, &self.state) => {
                self.arm(Some(ours.id), new_deadline);
            }
            _ => *sleep = self.sleep_until(new_deadline),
        }
    }
}

/// hyper's handle on the armed deadline; dropping it disarms it.
#[derive(Debug)]
struct HeadSleep {
    timer: HeadTimer,
    id: u64,
}

impl Future for HeadSleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let mut state = self.timer.state();
        match state.armed.as_mut() {
            Some(armed) if armed.id == self.id => {
                if armed.expired {
                    return Poll::Ready(());
                }
                match &mut armed.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    None => armed.waker = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
            // Only this sleep's drop disarms its id, and `arm` gives each
            // sleep its own: not reached while the sleep lives.
            _ => Poll::Pending,
        }
    }
}

impl Sleep for HeadSleep {}

impl Drop for HeadSleep {
    fn drop(&mut self) {
        let mut state = self.timer.state();
        if state.armed.as_ref().is_some_and(|a| a.id == self.id) {
            state.armed = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;

    use super::*;

    #[derive(Default)]
    struct CountWakes(AtomicUsize);

    impl Wake for CountWakes {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn poll(sleep: &mut Pin<Box<dyn Sleep>>, wakes: &Arc<CountWakes>) -> Poll<()> {
        let waker = Waker::from(wakes.clone());
        sleep.as_mut().poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn a_sleep_is_ready_once_the_watchdog_expires_it_past_its_deadline() {
        let timer = HeadTimer::default();
        let wakes = Arc::new(CountWakes::default());
        let start = Instant::now();
        let mut sleep = timer.sleep_until(start + Duration::from_secs(30));
        assert!(poll(&mut sleep, &wakes).is_pending());
        assert!(!timer.expire_due(start + Duration::from_secs(29)));
        assert!(poll(&mut sleep, &wakes).is_pending());
        assert_eq!(wakes.0.load(Ordering::Relaxed), 0);
        assert!(timer.expire_due(start + Duration::from_secs(30)));
        assert_eq!(wakes.0.load(Ordering::Relaxed), 1, "hyper is woken");
        assert!(poll(&mut sleep, &wakes).is_ready());
        assert!(!timer.expire_due(start + Duration::from_secs(31)), "once");
    }

    #[test]
    fn a_dropped_sleep_disarms_and_the_next_one_starts_afresh() {
        let timer = HeadTimer::default();
        let wakes = Arc::new(CountWakes::default());
        let start = Instant::now();
        let first = timer.sleep_until(start + Duration::from_secs(1));
        drop(first);
        assert!(!timer.expire_due(start + Duration::from_secs(5)));
        let mut second = timer.sleep_until(start + Duration::from_secs(10));
        assert!(!timer.expire_due(start + Duration::from_secs(5)));
        assert!(poll(&mut second, &wakes).is_pending());
        assert!(timer.expire_due(start + Duration::from_secs(10)));
        assert!(poll(&mut second, &wakes).is_ready());
    }

    #[test]
    fn reset_moves_the_deadline_of_the_same_sleep() {
        let timer = HeadTimer::default();
        let wakes = Arc::new(CountWakes::default());
        let start = Instant::now();
        let mut sleep = timer.sleep_until(start + Duration::from_secs(1));
        timer.reset(&mut sleep, start + Duration::from_secs(20));
        assert!(!timer.expire_due(start + Duration::from_secs(10)));
        assert!(poll(&mut sleep, &wakes).is_pending());
        assert!(timer.expire_due(start + Duration::from_secs(20)));
        assert!(poll(&mut sleep, &wakes).is_ready());
    }

    #[test]
    fn a_sleep_far_past_what_instant_holds_never_expires_soon() {
        let timer = HeadTimer::default();
        let mut sleep = timer.sleep(Duration::MAX);
        let wakes = Arc::new(CountWakes::default());
        assert!(poll(&mut sleep, &wakes).is_pending());
        assert!(!timer.expire_due(Instant::now() + Duration::from_secs(86_400)));
    }
}
