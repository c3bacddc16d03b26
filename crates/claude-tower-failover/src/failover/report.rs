use std::error::Error as StdError;
use std::fmt;

use claude_tower_core::{ClaudeError, ErrorClass, RouteId};

/// Which route answered and what each route cost; set on every response
/// [`Failover`](crate::Failover) returns, and reachable from every error it
/// returns through [`FailoverReport::from_error`].
///
/// The gateway turns it into response headers.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FailoverReport {
    /// Index into `attempts` of the route whose outcome is returned.
    answered: Option<usize>,
    succeeded: bool,
    attempts: Attempts,
}

/// Inline for the common single-route case: no allocation on the healthy path.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
enum Attempts {
    #[default]
    None,
    One([(RouteId, u32); 1]),
    Many(Vec<(RouteId, u32)>),
}

impl Attempts {
    fn as_slice(&self) -> &[(RouteId, u32)] {
        match self {
            Attempts::None => &[],
            Attempts::One(one) => one,
            Attempts::Many(many) => many,
        }
    }
}

impl FailoverReport {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn record(&mut self, route: RouteId, attempts: u32) {
        self.attempts = match std::mem::take(&mut self.attempts) {
            Attempts::None => Attempts::One([(route, attempts)]),
            Attempts::One([first]) => Attempts::Many(vec![first, (route, attempts)]),
            Attempts::Many(mut many) => {
                many.push((route, attempts));
                Attempts::Many(many)
            }
        };
    }

    /// Marks the route recorded last as the one whose response is returned.
    pub(crate) fn answer_with_last(&mut self, succeeded: bool) {
        self.answered = self.attempts().len().checked_sub(1);
        self.succeeded = succeeded;
    }

    /// Marks the outcome as an error: no route's response is returned.
    pub(crate) fn answer_with_error(&mut self) {
        self.answered = None;
        self.succeeded = false;
    }

    /// The route whose successful response this is; `None` for a failure.
    pub fn served_by(&self) -> Option<&RouteId> {
        self.answered_by().filter(|_| self.succeeded)
    }

    /// The route whose HTTP response is returned, success or failure (a
    /// route's own 400 or 529 is an answer). `None` when no route answered:
    /// every route tried ended in an error without a response (connection
    /// refused, a timeout, a credential that could not be had), or no route
    /// was configured. This is what a gateway names in
    /// `x-claude-tower-route`.
    pub fn answered_by(&self) -> Option<&RouteId> {
        self.answered
            .and_then(|i| self.attempts().get(i))
            .map(|(route, _)| route)
    }

    /// Whether a route served the request.
    pub fn succeeded(&self) -> bool {
        self.succeeded
    }

    /// Every route that was tried, in order, with the attempts spent on it:
    /// Retry's [`Attempt`] number, read from the route's final response, or
    /// from the `ClaudeError` when the route ended in an error
    /// ([`ClaudeError::attempt`]); 1 when neither carries one (a route
    /// without Retry). Routes skipped by an open breaker are absent.
    ///
    /// [`Attempt`]: claude_tower_core::Attempt
    pub fn attempts(&self) -> &[(RouteId, u32)] {
        self.attempts.as_slice()
    }

    /// Attempts spent on one route (0 if it was not tried).
    pub fn attempts_on(&self, route: &str) -> u32 {
        self.attempts()
            .iter()
            .filter(|(id, _)| *id == route)
            .map(|(_, n)| *n)
            .sum()
    }

    /// Attempts spent across every route.
    pub fn total_attempts(&self) -> u32 {
        self.attempts().iter().map(|(_, n)| *n).sum()
    }

    /// The report attached to an error returned by `Failover`, found by
    /// walking the error's source chain.
    pub fn from_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a FailoverReport> {
        let mut next = Some(err);
        while let Some(err) = next {
            if let Some(reported) = err.downcast_ref::<Reported>() {
                return Some(&reported.report);
            }
            next = err.source();
        }
        None
    }
}

impl fmt::Display for FailoverReport {
    /// `anthropic=3, foundry=1`: the form the gateway puts in
    /// `x-claude-tower-attempts`; empty when no route was tried.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, (route, n)) in self.attempts().iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{route}={n}")?;
        }
        Ok(())
    }
}

/// The source `Failover` puts under the `ClaudeError` it returns: the report,
/// then the route's original error (so its chain stays walkable).
pub(crate) struct Reported {
    pub(crate) report: FailoverReport,
    pub(crate) cause: Option<tower::BoxError>,
}

impl fmt::Debug for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reported")
            .field("report", &self.report)
            .field("cause", &self.cause)
            .finish()
    }
}

impl fmt::Display for Reported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "failover attempts: {}", self.report)
    }
}

impl StdError for Reported {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.cause
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

/// A route's error as a `ClaudeError` with the route filled in: the one in
/// its chain, or class Transport when there is none.
pub(crate) fn classify_error(route: &RouteId, err: &tower::BoxError) -> ClaudeError {
    let found = ClaudeError::find_in(&**err)
        .cloned()
        .unwrap_or_else(|| ClaudeError::new(ErrorClass::Transport, err.to_string()));
    if found.route().is_some() {
        found
    } else {
        found.with_route(route.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_a_boxed_claude_error_under_other_errors() {
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
        let err: tower::BoxError = Box::new(Wrapper(ClaudeError::new(ErrorClass::Auth, "bad key")));
        let found = classify_error(&RouteId::new("a"), &err);
        assert_eq!(found.class(), ErrorClass::Auth);
        assert_eq!(found.route().map(RouteId::as_str), Some("a"));

        let io: tower::BoxError = Box::new(std::io::Error::other("reset"));
        let found = classify_error(&RouteId::new("b"), &io);
        assert_eq!(found.class(), ErrorClass::Transport);
        assert_eq!(found.message(), "reset");
    }

    #[test]
    fn report_reads_well() {
        let mut report = FailoverReport::new();
        report.record(RouteId::new("anthropic"), 3);
        report.record(RouteId::new("foundry"), 1);
        report.answer_with_last(true);
        assert_eq!(report.to_string(), "anthropic=3, foundry=1");
        assert_eq!(report.total_attempts(), 4);
        assert_eq!(report.attempts_on("anthropic"), 3);
        assert_eq!(report.served_by().map(RouteId::as_str), Some("foundry"));

        let err = ClaudeError::new(ErrorClass::Server, "boom").with_source(Reported {
            report: report.clone(),
            cause: None,
        });
        assert_eq!(FailoverReport::from_error(&err), Some(&report));
    }
}
