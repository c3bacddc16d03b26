//! Polling a side future only when it was woken.
//!
//! A connection's task runs hyper's connection future and, beside it, the
//! watchdog's: the shutdown signal, the first request's deadline and the
//! idle tick. Under `tokio::select!` every wake of the task polls all of
//! them, and a request wakes the task several times (its head, the
//! upstream's answer, the body's frames): the watchdog's polls cost more
//! than a thousand instructions per request, for events that come every few
//! seconds. [`Gate`] gives the watchdog a waker of its own, which marks it
//! woken and then wakes the task: a wake from hyper polls only hyper.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, Wake, Waker};

use futures_util::task::AtomicWaker;

/// Set by the side future's wakers; read and cleared by [`Gate::poll_with`].
#[derive(Debug)]
struct Flag {
    woken: AtomicBool,
    task: AtomicWaker,
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        // NOTE: the flag before the task: the task, once woken, must see it.
        self.woken.store(true, Ordering::Release);
        self.task.wake();
    }
}

/// Polls a side future with a waker of its own, and only after that waker
/// fired: once at first, then after each wake of its own.
#[derive(Debug)]
pub(super) struct Gate {
    flag: Arc<Flag>,
    waker: Waker,
}

impl Gate {
    pub(super) fn new() -> Self {
        let flag = Arc::new(Flag {
            // Polled the first time, so that it registers its wakers.
            woken: AtomicBool::new(true),
            task: AtomicWaker::new(),
        });
        let waker = Waker::from(flag.clone());
        Self { flag, waker }
    }

    /// Calls `poll` with the side's own context if one of its wakers fired
    /// since the last call (or it has not been polled yet), else returns
    /// `Pending`. The task behind `cx` is the one its wakers wake.
    ///
    /// After `Ready`, the next call polls again: whatever the caller polls
    /// next has not registered its wakers yet.
    pub(super) fn poll_with<T>(
        &self,
        cx: &mut Context<'_>,
        poll: impl FnOnce(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        // NOTE: the task is registered before the flag is read, so a wake
        // in between is either seen now or wakes this task again.
        self.flag.task.register(cx.waker());
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        let ready = poll(&mut Context::from_waker(&self.waker));
        if ready.is_ready() {
            self.flag.woken.store(true, Ordering::Release);
        }
        ready
    }
}

#[cfg(test)]
mod tests {
    use std::future::poll_fn;
    use std::time::Duration;

    use super::*;

    /// Counts the side's polls while a busy future wakes the task often.
    #[tokio::test(start_paused = true)]
    async fn the_side_is_polled_only_when_its_own_waker_fired() {
        let gate = Gate::new();
        let mut side_polls = 0u32;
        let mut sleep = std::pin::pin!(tokio::time::sleep(Duration::from_secs(10)));
        let mut busy = 0u32;
        let fired = poll_fn(|cx| {
            // The busy future: wakes the task again at once, 1,000 times.
            busy += 1;
            if busy < 1_000 {
                cx.waker().wake_by_ref();
            }
            gate.poll_with(cx, |cx| {
                side_polls += 1;
                sleep.as_mut().poll(cx)
            })
        })
        .await;
        let () = fired;
        assert!(busy >= 1_000, "the busy future ran {busy} times");
        // Once to register, once when the timer fired.
        assert_eq!(side_polls, 2);
    }

    /// After `Ready`, the next call polls: a new side future gets its turn.
    #[tokio::test(start_paused = true)]
    async fn a_ready_side_is_polled_again_next_time() {
        let gate = Gate::new();
        for _ in 0..3 {
            let mut sleep = std::pin::pin!(tokio::time::sleep(Duration::from_secs(1)));
            poll_fn(|cx| gate.poll_with(cx, |cx| sleep.as_mut().poll(cx))).await;
        }
    }
}
