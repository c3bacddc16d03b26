//! The future [`RetryAfterPolicy`](crate::RetryAfterPolicy) hands to tower's
//! `Retry`: the wait before the next attempt.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use pin_project_lite::pin_project;
use tokio::time::Sleep;

pin_project! {
    /// The wait before a retry: the server's Retry-After or a jittered
    /// backoff. A zero wait resolves at once without touching the timer.
    ///
    /// Needs a tokio runtime with the time driver enabled.
    pub struct RetryWait {
        #[pin]
        state: State,
    }
}

pin_project! {
    #[project = StateProj]
    enum State {
        Now,
        Sleeping {
            #[pin]
            sleep: Sleep,
        },
    }
}

impl RetryWait {
    pub(crate) fn new(wait: Duration) -> Self {
        let state = if wait.is_zero() {
            State::Now
        } else {
            State::Sleeping {
                sleep: tokio::time::sleep(wait),
            }
        };
        Self { state }
    }
}

impl Future for RetryWait {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        match self.project().state.project() {
            StateProj::Now => Poll::Ready(()),
            StateProj::Sleeping { sleep } => sleep.poll(cx),
        }
    }
}

impl fmt::Debug for RetryWait {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("RetryWait");
        if let State::Sleeping { sleep } = &self.state {
            d.field("deadline", &sleep.deadline());
        }
        d.finish()
    }
}
