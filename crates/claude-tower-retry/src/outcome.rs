use std::convert::Infallible;
use std::error::Error as StdError;

use claude_tower_core::{Attempt, ClaudeError, ErrorClass, RetryAfter};
use http::Response;

/// An error whose source chain the policy can search for a [`ClaudeError`].
///
/// The policy classifies a failed call by the first [`ClaudeError`] found in
/// the error or its [`source`](StdError::source) chain (a boxed error may
/// hold one, as `claude-tower-auth`'s errors do); an error with no
/// [`ClaudeError`] in it counts as [`ErrorClass::Transport`].
///
/// Implemented for [`ClaudeError`] (Normalize's error, so the usual case),
/// `tower::BoxError` and the other boxed `dyn Error`s, [`std::io::Error`]
/// and [`Infallible`]. Another error type can implement it in one line:
///
/// ```
/// use claude_tower_retry::ErrorSource;
///
/// #[derive(Debug)]
/// struct MyError;
/// impl std::fmt::Display for MyError {
///     fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
///         f.write_str("my error")
///     }
/// }
/// impl std::error::Error for MyError {}
///
/// impl ErrorSource for MyError {
///     fn as_error(&self) -> &(dyn std::error::Error + 'static) {
///         self
///     }
/// }
/// ```
///
/// (A blanket implementation for every `Error` type would rule out the one
/// for `BoxError`, which does not implement `Error` itself.)
pub trait ErrorSource {
    /// The error as a trait object whose chain can be walked.
    fn as_error(&self) -> &(dyn StdError + 'static);

    /// Records on the error the attempt that produced it, where the error
    /// can carry one: the final `Err` has no response to carry an
    /// [`Attempt`] extension, and a failover layer above still needs the
    /// count. [`ClaudeError`] keeps it ([`ClaudeError::with_attempt`]), and
    /// so does a boxed error that is a [`ClaudeError`]; by default nothing
    /// is kept and the count reads as 1.
    fn record_attempt(&mut self, attempt: Attempt) {
        let _ = attempt;
    }
}

impl ErrorSource for ClaudeError {
    fn as_error(&self) -> &(dyn StdError + 'static) {
        self
    }

    fn record_attempt(&mut self, attempt: Attempt) {
        *self = self.clone().with_attempt(attempt);
    }
}

impl ErrorSource for std::io::Error {
    fn as_error(&self) -> &(dyn StdError + 'static) {
        self
    }
}

impl ErrorSource for Infallible {
    fn as_error(&self) -> &(dyn StdError + 'static) {
        match *self {}
    }
}

impl ErrorSource for Box<dyn StdError + Send + Sync + 'static> {
    fn as_error(&self) -> &(dyn StdError + 'static) {
        &**self
    }

    fn record_attempt(&mut self, attempt: Attempt) {
        if let Some(err) = self.downcast_mut::<ClaudeError>() {
            err.record_attempt(attempt);
        }
    }
}

impl ErrorSource for Box<dyn StdError + Send + 'static> {
    fn as_error(&self) -> &(dyn StdError + 'static) {
        &**self
    }
}

impl ErrorSource for Box<dyn StdError + 'static> {
    fn as_error(&self) -> &(dyn StdError + 'static) {
        &**self
    }
}

/// What one attempt came to, as far as retrying is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A response without a [`ClaudeError`]: done, whatever follows on the
    /// body. The status is not looked at: a 200 with a [`ClaudeError`] (a
    /// stream that failed before any content) is a failure.
    Success,
    /// A classified failure.
    Failure {
        class: ErrorClass,
        /// The class's answer, overridden by the server's `x-should-retry`.
        retryable: bool,
        /// The wait the server asked for.
        retry_after: Option<RetryAfter>,
    },
}

impl Outcome {
    pub(crate) fn of<B, E: ErrorSource>(result: &Result<Response<B>, E>) -> Self {
        match result {
            Ok(response) => {
                let extensions = response.extensions();
                match extensions.get::<ClaudeError>() {
                    None => Outcome::Success,
                    Some(err) => Outcome::from_error(
                        err,
                        err.retry_after()
                            .or_else(|| extensions.get::<RetryAfter>().copied()),
                    ),
                }
            }
            Err(err) => match ClaudeError::find_in(err.as_error()) {
                Some(err) => Outcome::from_error(err, err.retry_after()),
                None => Outcome::Failure {
                    class: ErrorClass::Transport,
                    retryable: ErrorClass::Transport.retryable(),
                    retry_after: None,
                },
            },
        }
    }

    fn from_error(err: &ClaudeError, retry_after: Option<RetryAfter>) -> Self {
        Outcome::Failure {
            class: err.class(),
            retryable: err.retryable(),
            retry_after,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fmt;
    use std::time::Duration;

    #[derive(Debug)]
    struct Wrapper(ClaudeError);

    impl fmt::Display for Wrapper {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("wrapped")
        }
    }

    impl StdError for Wrapper {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            Some(&self.0)
        }
    }

    fn wait(secs: u64) -> Option<RetryAfter> {
        Some(RetryAfter::new(Duration::from_secs(secs)))
    }

    #[test]
    fn a_response_without_an_error_is_success() {
        let ok: Result<Response<()>, ClaudeError> = Ok(Response::new(()));
        assert_eq!(Outcome::of(&ok), Outcome::Success);
    }

    #[test]
    fn a_200_with_an_error_is_a_failure() {
        // A stream whose `event: error` came before any content.
        let mut response = Response::new(());
        response
            .extensions_mut()
            .insert(ClaudeError::new(ErrorClass::Overloaded, "Overloaded"));
        let result: Result<_, ClaudeError> = Ok(response);
        assert_eq!(
            Outcome::of(&result),
            Outcome::Failure {
                class: ErrorClass::Overloaded,
                retryable: true,
                retry_after: None
            }
        );
    }

    #[test]
    fn a_response_error_falls_back_to_the_retry_after_extension() {
        let mut response = Response::new(());
        response
            .extensions_mut()
            .insert(ClaudeError::new(ErrorClass::RateLimited, "slow"));
        response
            .extensions_mut()
            .insert(RetryAfter::new(Duration::from_secs(3)));
        let result: Result<_, ClaudeError> = Ok(response);
        assert_eq!(
            Outcome::of(&result),
            Outcome::Failure {
                class: ErrorClass::RateLimited,
                retryable: true,
                retry_after: wait(3)
            }
        );
    }

    #[test]
    fn the_error_s_own_wait_wins() {
        let mut response = Response::new(());
        response.extensions_mut().insert(
            ClaudeError::new(ErrorClass::RateLimited, "slow").with_retry_after(wait(1).unwrap()),
        );
        response
            .extensions_mut()
            .insert(RetryAfter::new(Duration::from_secs(3)));
        let result: Result<_, ClaudeError> = Ok(response);
        assert!(matches!(
            Outcome::of(&result),
            Outcome::Failure { retry_after, .. } if retry_after == wait(1)
        ));
    }

    #[test]
    fn should_retry_overrides_the_class() {
        let mut response = Response::new(());
        response
            .extensions_mut()
            .insert(ClaudeError::new(ErrorClass::Overloaded, "busy").with_should_retry(false));
        let result: Result<_, ClaudeError> = Ok(response);
        assert!(matches!(
            Outcome::of(&result),
            Outcome::Failure {
                retryable: false,
                ..
            }
        ));
    }

    #[test]
    fn errors_are_searched_through_boxes_and_sources() {
        let auth = ClaudeError::new(ErrorClass::Auth, "bad key");
        let boxed: tower::BoxError = Box::new(Wrapper(auth));
        let result: Result<Response<()>, tower::BoxError> = Err(boxed);
        assert!(matches!(
            Outcome::of(&result),
            Outcome::Failure {
                class: ErrorClass::Auth,
                retryable: false,
                ..
            }
        ));
    }

    #[test]
    fn an_unknown_error_is_transport() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        let result: Result<Response<()>, std::io::Error> = Err(io);
        assert_eq!(
            Outcome::of(&result),
            Outcome::Failure {
                class: ErrorClass::Transport,
                retryable: true,
                retry_after: None
            }
        );
    }
}
