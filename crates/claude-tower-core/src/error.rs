use std::error::Error as StdError;
use std::fmt;
use std::sync::Arc;

use http::StatusCode;

use crate::{ErrorClass, RequestIds, RetryAfter, RouteId};

/// A classified failure from one route, or produced locally by a layer.
///
/// Normalize puts one in the response extensions of every failed response
/// (and returns one as the error for transport failures); Retry and Failover
/// read it to decide. It carries everything a log line or a support ticket
/// needs: the route, the status, the class, the server's retry hint, the raw
/// `error.type` / `error.code`, the message and every request id.
///
/// `ClaudeError` is `Clone` (extensions require it); an underlying cause is
/// kept behind an `Arc` and reachable through [`std::error::Error::source`].
///
/// ```
/// use claude_tower_core::{ClaudeError, ErrorClass, RouteId};
/// use http::StatusCode;
///
/// let err = ClaudeError::new(ErrorClass::TransientAuth, "backend auth blip")
///     .with_route(RouteId::new("foundry"))
///     .with_status(StatusCode::UNAUTHORIZED)
///     .with_code("invalid_model_endpoint_authentication");
/// assert_eq!(
///     err.to_string(),
///     "route foundry: 401 Unauthorized (transient-auth, invalid_model_endpoint_authentication): backend auth blip",
/// );
/// assert!(err.retryable());
/// ```
#[derive(Clone)]
pub struct ClaudeError {
    route: Option<RouteId>,
    status: Option<StatusCode>,
    class: ErrorClass,
    retry_after: Option<RetryAfter>,
    code: Option<Arc<str>>,
    message: Arc<str>,
    request_ids: RequestIds,
    should_retry: Option<bool>,
    source: Option<Arc<dyn StdError + Send + Sync + 'static>>,
}

impl ClaudeError {
    /// A failure of `class` with a human-readable message.
    pub fn new(class: ErrorClass, message: impl Into<Arc<str>>) -> Self {
        Self {
            route: None,
            status: None,
            class,
            retry_after: None,
            code: None,
            message: message.into(),
            request_ids: RequestIds::default(),
            should_retry: None,
            source: None,
        }
    }

    /// Sets the route that produced the failure.
    pub fn with_route(mut self, route: RouteId) -> Self {
        self.route = Some(route);
        self
    }

    /// Sets the HTTP status the route answered with.
    pub fn with_status(mut self, status: StatusCode) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the wait the server asked for.
    pub fn with_retry_after(mut self, wait: RetryAfter) -> Self {
        self.retry_after = Some(wait);
        self
    }

    /// Sets the raw error code or type (`error.type` on Anthropic,
    /// `error.code` on Azure).
    pub fn with_code(mut self, code: impl Into<Arc<str>>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// Sets the request ids of the response.
    pub fn with_request_ids(mut self, ids: RequestIds) -> Self {
        self.request_ids = ids;
        self
    }

    /// Sets the server's `x-should-retry` answer.
    pub fn with_should_retry(mut self, should_retry: bool) -> Self {
        self.should_retry = Some(should_retry);
        self
    }

    /// Sets the underlying cause (a transport error, a credential error).
    pub fn with_source(mut self, source: impl StdError + Send + Sync + 'static) -> Self {
        self.source = Some(Arc::new(source));
        self
    }

    /// Sets the underlying cause from a boxed error.
    pub fn with_boxed_source(mut self, source: Box<dyn StdError + Send + Sync + 'static>) -> Self {
        self.source = Some(Arc::from(source));
        self
    }

    /// The route that produced the failure; `None` for local failures.
    pub fn route(&self) -> Option<&RouteId> {
        self.route.as_ref()
    }

    /// The HTTP status the route answered with; `None` when no response
    /// arrived (a transport failure) or the failure is local.
    pub fn status(&self) -> Option<StatusCode> {
        self.status
    }

    /// The status to answer a client with: the route's, or the class's
    /// [default](ErrorClass::default_status).
    pub fn response_status(&self) -> StatusCode {
        self.status.unwrap_or(self.class.default_status())
    }

    /// What kind of failure this is.
    pub fn class(&self) -> ErrorClass {
        self.class
    }

    /// The wait the server asked for, if it said.
    pub fn retry_after(&self) -> Option<RetryAfter> {
        self.retry_after
    }

    /// The raw `error.type` (Anthropic) or `error.code` (Azure).
    pub fn code(&self) -> Option<&str> {
        self.code.as_deref()
    }

    /// The human-readable message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Every request id of the failed response.
    pub fn request_ids(&self) -> &RequestIds {
        &self.request_ids
    }

    /// The server's `x-should-retry` answer, if it sent one.
    pub fn should_retry(&self) -> Option<bool> {
        self.should_retry
    }

    /// Whether the same request may be sent to the same route again: the
    /// server's `x-should-retry` if present, else the class's
    /// [`retryable`](ErrorClass::retryable).
    pub fn retryable(&self) -> bool {
        self.should_retry.unwrap_or(self.class.retryable())
    }

    /// Whether another route may serve the request: the class's
    /// [`failover_worthy`](ErrorClass::failover_worthy).
    pub fn failover_worthy(&self) -> bool {
        self.class.failover_worthy()
    }
}

impl fmt::Debug for ClaudeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("ClaudeError");
        d.field("route", &self.route)
            .field("status", &self.status)
            .field("class", &self.class)
            .field("retry_after", &self.retry_after)
            .field("code", &self.code)
            .field("message", &self.message)
            .field("request_ids", &self.request_ids);
        if let Some(should_retry) = self.should_retry {
            d.field("should_retry", &should_retry);
        }
        if let Some(source) = &self.source {
            d.field("source", source);
        }
        d.finish()
    }
}

impl fmt::Display for ClaudeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(route) = &self.route {
            write!(f, "route {route}: ")?;
        }
        if let Some(status) = self.status {
            write!(f, "{status} ")?;
        }
        write!(f, "({}", self.class)?;
        if let Some(code) = &self.code {
            write!(f, ", {code}")?;
        }
        write!(f, "): {}", self.message)?;
        if let Some(wait) = self.retry_after {
            write!(f, " (retry after {:?})", wait.duration())?;
        }
        if !self.request_ids.is_empty() {
            write!(f, " [{}]", self.request_ids)?;
        }
        Ok(())
    }
}

impl StdError for ClaudeError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn should_retry_overrides_the_class() {
        let err = ClaudeError::new(ErrorClass::Overloaded, "busy");
        assert!(err.retryable());
        assert!(!err.clone().with_should_retry(false).retryable());
        let auth = ClaudeError::new(ErrorClass::Auth, "bad key");
        assert!(!auth.retryable());
        assert!(auth.with_should_retry(true).retryable());
    }

    #[test]
    fn display_names_everything_a_ticket_needs() {
        let mut h = http::HeaderMap::new();
        h.insert("apim-request-id", "abc".parse().unwrap());
        let err = ClaudeError::new(ErrorClass::RateLimited, "too many")
            .with_route(RouteId::new("foundry"))
            .with_status(StatusCode::TOO_MANY_REQUESTS)
            .with_code("429")
            .with_retry_after(RetryAfter::new(Duration::from_secs(2)))
            .with_request_ids(RequestIds::from_headers(&h));
        assert_eq!(
            err.to_string(),
            "route foundry: 429 Too Many Requests (rate-limited, 429): too many \
             (retry after 2s) [apim-request-id=abc]"
        );
    }

    #[test]
    fn source_chain_is_walkable() {
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset by peer");
        let err = ClaudeError::new(ErrorClass::Transport, "connection reset").with_source(io);
        let source = err.source().expect("source kept");
        let io = source.downcast_ref::<std::io::Error>().expect("io error");
        assert_eq!(io.kind(), std::io::ErrorKind::ConnectionReset);
        assert_eq!(err.response_status(), StatusCode::BAD_GATEWAY);
        assert_eq!(err.status(), None);
    }

    #[test]
    fn is_send_sync_and_an_extension() {
        fn assert_ext<T: Clone + Send + Sync + 'static>() {}
        assert_ext::<ClaudeError>();
        let mut ext = http::Extensions::new();
        ext.insert(ClaudeError::new(ErrorClass::Server, "boom"));
        assert_eq!(
            ext.get::<ClaudeError>().map(ClaudeError::class),
            Some(ErrorClass::Server)
        );
    }
}
