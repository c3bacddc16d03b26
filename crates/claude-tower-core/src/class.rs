use std::fmt;

use http::StatusCode;

/// What kind of failure a response (or a transport error) is.
///
/// Two separate answers hang off each class, because "try this route again"
/// and "try another route" are different decisions:
///
/// | class | from | [`retryable`](Self::retryable) | [`failover_worthy`](Self::failover_worthy) |
/// |---|---|---|---|
/// | [`RateLimited`](Self::RateLimited) | 429 | yes (wait = Retry-After if within the cap) | yes |
/// | [`Overloaded`](Self::Overloaded) | 529, 503 | yes | yes |
/// | [`Server`](Self::Server) | 500, 502 (and other 5xx) | yes | yes |
/// | [`Timeout`](Self::Timeout) | 408, 504, transport timeout | yes | yes |
/// | [`Transport`](Self::Transport) | connect refused / reset / closed before a response | yes | yes |
/// | [`TransientAuth`](Self::TransientAuth) | Foundry `invalid_model_endpoint_authentication`, any status | yes | yes |
/// | [`Conflict`](Self::Conflict) | 409 | yes | no |
/// | [`RouteUnavailable`](Self::RouteUnavailable) | Foundry deployment/model not found, 402 billing | no | yes |
/// | [`Auth`](Self::Auth) | other 401 / 403 | no | no |
/// | [`InvalidRequest`](Self::InvalidRequest) | 400, 413, 422, other 4xx | no | no |
///
/// A request that is invalid fails fast on every route: an invalid request
/// is never failed over (it would be billed twice and fail twice), and a bad
/// key is never retried. A server's `x-should-retry` header overrides the
/// "retry same route" answer; that override travels on
/// [`ClaudeError::should_retry`](crate::ClaudeError::should_retry).
///
/// The enum is `#[non_exhaustive]`: match with a wildcard arm, and prefer the
/// two predicates to matching on variants.
#[non_exhaustive]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// 429: the route's rate limit was hit.
    RateLimited,
    /// 529 (Anthropic) or 503 (Foundry): the route is overloaded.
    Overloaded,
    /// 500, 502 and other 5xx: the route failed.
    Server,
    /// 408, 504, or the transport timed out.
    Timeout,
    /// The connection was refused, reset or closed before a response.
    Transport,
    /// Foundry's `invalid_model_endpoint_authentication`: a backend-to-backend
    /// authentication blip on the platform, not a bad key.
    TransientAuth,
    /// 409: a conflicting request; worth repeating on the same route only.
    Conflict,
    /// The route cannot serve this request at all (deployment or model not
    /// found on it, 402 billing), though another route may.
    RouteUnavailable,
    /// 401 / 403 other than the transient kind: the credential is wrong.
    Auth,
    /// 400, 413, 422 and other 4xx: the request itself is wrong.
    InvalidRequest,
}

impl ErrorClass {
    /// Every class, in table order.
    pub const ALL: [ErrorClass; 10] = [
        ErrorClass::RateLimited,
        ErrorClass::Overloaded,
        ErrorClass::Server,
        ErrorClass::Timeout,
        ErrorClass::Transport,
        ErrorClass::TransientAuth,
        ErrorClass::Conflict,
        ErrorClass::RouteUnavailable,
        ErrorClass::Auth,
        ErrorClass::InvalidRequest,
    ];

    /// Whether the same request may be sent again to the same route.
    pub const fn retryable(self) -> bool {
        match self {
            ErrorClass::RateLimited
            | ErrorClass::Overloaded
            | ErrorClass::Server
            | ErrorClass::Timeout
            | ErrorClass::Transport
            | ErrorClass::TransientAuth
            | ErrorClass::Conflict => true,
            ErrorClass::RouteUnavailable | ErrorClass::Auth | ErrorClass::InvalidRequest => false,
        }
    }

    /// Whether another route may serve the request that failed with this class.
    pub const fn failover_worthy(self) -> bool {
        match self {
            ErrorClass::RateLimited
            | ErrorClass::Overloaded
            | ErrorClass::Server
            | ErrorClass::Timeout
            | ErrorClass::Transport
            | ErrorClass::TransientAuth
            | ErrorClass::RouteUnavailable => true,
            ErrorClass::Conflict | ErrorClass::Auth | ErrorClass::InvalidRequest => false,
        }
    }

    /// The class a status code has on its own, before any body is read.
    ///
    /// `None` for statuses below 400. Body-borne distinctions (Foundry's
    /// `invalid_model_endpoint_authentication`, `DeploymentNotFound`) are made
    /// by `claude-tower-normalize`, which reads the envelope.
    ///
    /// ```
    /// use claude_tower_core::ErrorClass;
    /// use http::StatusCode;
    ///
    /// assert_eq!(ErrorClass::from_status(StatusCode::OK), None);
    /// assert_eq!(
    ///     ErrorClass::from_status(StatusCode::from_u16(529).unwrap()),
    ///     Some(ErrorClass::Overloaded),
    /// );
    /// ```
    pub fn from_status(status: StatusCode) -> Option<ErrorClass> {
        let class = match status.as_u16() {
            0..=399 => return None,
            429 => ErrorClass::RateLimited,
            503 | 529 => ErrorClass::Overloaded,
            408 | 504 => ErrorClass::Timeout,
            409 => ErrorClass::Conflict,
            402 => ErrorClass::RouteUnavailable,
            401 | 403 => ErrorClass::Auth,
            400..=499 => ErrorClass::InvalidRequest,
            _ => ErrorClass::Server,
        };
        Some(class)
    }

    /// The status a locally produced error of this class answers with when no
    /// upstream status is known (transport failures have none).
    pub const fn default_status(self) -> StatusCode {
        match self {
            ErrorClass::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorClass::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Server => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorClass::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorClass::Transport => StatusCode::BAD_GATEWAY,
            ErrorClass::TransientAuth => StatusCode::SERVICE_UNAVAILABLE,
            ErrorClass::Conflict => StatusCode::CONFLICT,
            ErrorClass::RouteUnavailable => StatusCode::NOT_FOUND,
            ErrorClass::Auth => StatusCode::UNAUTHORIZED,
            ErrorClass::InvalidRequest => StatusCode::BAD_REQUEST,
        }
    }

    /// The Anthropic `error.type` that names this class at `status`.
    ///
    /// Used when a failure is rendered in Anthropic's envelope, so Anthropic
    /// SDK clients see the same type whichever route answered.
    pub fn anthropic_error_type(self, status: StatusCode) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate_limit_error",
            ErrorClass::Overloaded => "overloaded_error",
            ErrorClass::Server | ErrorClass::Transport | ErrorClass::TransientAuth => "api_error",
            ErrorClass::Timeout => "timeout_error",
            ErrorClass::Conflict => "conflict_error",
            ErrorClass::RouteUnavailable if status == StatusCode::PAYMENT_REQUIRED => {
                "billing_error"
            }
            ErrorClass::RouteUnavailable => "not_found_error",
            ErrorClass::Auth if status == StatusCode::FORBIDDEN => "permission_error",
            ErrorClass::Auth => "authentication_error",
            ErrorClass::InvalidRequest => match status.as_u16() {
                404 => "not_found_error",
                413 => "request_too_large",
                _ => "invalid_request_error",
            },
        }
    }

    /// A short kebab-case name for logs and metrics (`"rate-limited"`).
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorClass::RateLimited => "rate-limited",
            ErrorClass::Overloaded => "overloaded",
            ErrorClass::Server => "server",
            ErrorClass::Timeout => "timeout",
            ErrorClass::Transport => "transport",
            ErrorClass::TransientAuth => "transient-auth",
            ErrorClass::Conflict => "conflict",
            ErrorClass::RouteUnavailable => "route-unavailable",
            ErrorClass::Auth => "auth",
            ErrorClass::InvalidRequest => "invalid-request",
        }
    }
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(code: u16) -> StatusCode {
        StatusCode::from_u16(code).unwrap()
    }

    /// The table from DESIGN.md, row by row: (class, retry same route, fail over).
    const TABLE: [(ErrorClass, bool, bool); 10] = [
        (ErrorClass::RateLimited, true, true),
        (ErrorClass::Overloaded, true, true),
        (ErrorClass::Server, true, true),
        (ErrorClass::Timeout, true, true),
        (ErrorClass::Transport, true, true),
        (ErrorClass::TransientAuth, true, true),
        (ErrorClass::Conflict, true, false),
        (ErrorClass::RouteUnavailable, false, true),
        (ErrorClass::Auth, false, false),
        (ErrorClass::InvalidRequest, false, false),
    ];

    #[test]
    fn every_row_of_the_table() {
        for (class, retry, failover) in TABLE {
            assert_eq!(class.retryable(), retry, "{class} retryable");
            assert_eq!(class.failover_worthy(), failover, "{class} failover_worthy");
        }
        assert_eq!(ErrorClass::ALL.len(), TABLE.len());
        for (class, (row, _, _)) in ErrorClass::ALL.iter().zip(TABLE) {
            assert_eq!(*class, row);
        }
    }

    #[test]
    fn rate_limited_from_429() {
        assert_eq!(
            ErrorClass::from_status(status(429)),
            Some(ErrorClass::RateLimited)
        );
    }

    #[test]
    fn overloaded_from_529_and_503() {
        assert_eq!(
            ErrorClass::from_status(status(529)),
            Some(ErrorClass::Overloaded)
        );
        assert_eq!(
            ErrorClass::from_status(status(503)),
            Some(ErrorClass::Overloaded)
        );
    }

    #[test]
    fn server_from_500_502_and_other_5xx() {
        for code in [500, 502, 501, 505, 599] {
            assert_eq!(
                ErrorClass::from_status(status(code)),
                Some(ErrorClass::Server),
                "{code}"
            );
        }
    }

    #[test]
    fn timeout_from_408_and_504() {
        assert_eq!(
            ErrorClass::from_status(status(408)),
            Some(ErrorClass::Timeout)
        );
        assert_eq!(
            ErrorClass::from_status(status(504)),
            Some(ErrorClass::Timeout)
        );
    }

    #[test]
    fn conflict_from_409() {
        assert_eq!(
            ErrorClass::from_status(status(409)),
            Some(ErrorClass::Conflict)
        );
    }

    #[test]
    fn route_unavailable_from_402() {
        assert_eq!(
            ErrorClass::from_status(status(402)),
            Some(ErrorClass::RouteUnavailable)
        );
    }

    #[test]
    fn auth_from_401_and_403() {
        assert_eq!(ErrorClass::from_status(status(401)), Some(ErrorClass::Auth));
        assert_eq!(ErrorClass::from_status(status(403)), Some(ErrorClass::Auth));
    }

    #[test]
    fn invalid_request_from_other_4xx() {
        for code in [400, 404, 405, 413, 415, 422, 431, 451, 499] {
            assert_eq!(
                ErrorClass::from_status(status(code)),
                Some(ErrorClass::InvalidRequest),
                "{code}"
            );
        }
    }

    #[test]
    fn success_and_redirects_are_not_errors() {
        for code in [100, 200, 201, 204, 301, 304, 399] {
            assert_eq!(ErrorClass::from_status(status(code)), None, "{code}");
        }
    }

    #[test]
    fn anthropic_types_match_the_api() {
        let cases = [
            (ErrorClass::InvalidRequest, 400, "invalid_request_error"),
            (ErrorClass::Auth, 401, "authentication_error"),
            (ErrorClass::RouteUnavailable, 402, "billing_error"),
            (ErrorClass::Auth, 403, "permission_error"),
            (ErrorClass::InvalidRequest, 404, "not_found_error"),
            (ErrorClass::RouteUnavailable, 404, "not_found_error"),
            (ErrorClass::Conflict, 409, "conflict_error"),
            (ErrorClass::InvalidRequest, 413, "request_too_large"),
            (ErrorClass::RateLimited, 429, "rate_limit_error"),
            (ErrorClass::Server, 500, "api_error"),
            (ErrorClass::Timeout, 504, "timeout_error"),
            (ErrorClass::Overloaded, 529, "overloaded_error"),
            (ErrorClass::Overloaded, 503, "overloaded_error"),
            (ErrorClass::TransientAuth, 401, "api_error"),
            (ErrorClass::Transport, 502, "api_error"),
        ];
        for (class, code, ty) in cases {
            assert_eq!(
                class.anthropic_error_type(status(code)),
                ty,
                "{class} {code}"
            );
        }
    }

    #[test]
    fn default_status_classifies_back_to_the_class() {
        // Transport and TransientAuth have no status of their own.
        for class in ErrorClass::ALL {
            if matches!(class, ErrorClass::Transport | ErrorClass::TransientAuth) {
                continue;
            }
            let back = ErrorClass::from_status(class.default_status());
            if class == ErrorClass::RouteUnavailable {
                // 404 on its own reads as an invalid request; only a body says
                // "deployment not found".
                assert_eq!(back, Some(ErrorClass::InvalidRequest));
            } else {
                assert_eq!(back, Some(class), "{class}");
            }
        }
    }
}
