use std::fmt;
use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::{ClaudeError, ErrorClass, RetryAfter, error_response};
use http::header::{HeaderValue, WWW_AUTHENTICATE};
use http::{Response, StatusCode};

/// Why a request was not let through.
///
/// Each kind names the problem without quoting the credential: the message a
/// client reads says *what* is wrong (expired, wrong audience...) so a
/// developer can fix their set-up, and a log line can carry it safely.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RejectionKind {
    // --- 401: no usable credential ---
    /// No `Authorization: Bearer`, `x-api-key` or `api-key` header.
    Missing,
    /// A header that is not visible ASCII, or an `Authorization` header
    /// whose scheme is not `Bearer`.
    MalformedHeader,
    /// A credential longer than the limit, rejected before any parsing.
    TooLarge,
    /// A JWT-shaped value whose header or claims do not decode.
    MalformedToken,
    /// The token's `alg` is not on the allow-list (`none` and HMAC never are).
    AlgorithmNotAllowed,
    /// The token carries no `kid`, so no key can be chosen for it.
    MissingKeyId,
    /// The token's issuer is not one this layer accepts.
    UnknownIssuer,
    /// No key with the token's `kid` at its issuer, even after a re-fetch.
    UnknownKey,
    /// The signature does not verify with the issuer's key.
    BadSignature,
    /// `exp` has passed.
    Expired,
    /// `nbf` is still in the future.
    NotYetValid,
    /// `exp` lies further ahead than the longest lifetime accepted.
    LifetimeTooLong,
    /// None of the token's audiences is accepted.
    WrongAudience,
    /// A claim this layer needs (`exp`, `iss`, `aud`, `sub`/`oid`) is missing.
    MissingClaim,
    /// Not a token and not a known client key.
    UnknownClientKey,
    // --- 403: authenticated, not allowed ---
    /// The token's tenant (`tid`) is not allowed.
    TenantNotAllowed,
    /// The caller holds none of the required roles.
    MissingRole,
    /// The caller is in none of the required groups.
    MissingGroup,
    /// The client application (`azp` / `appid`) is not allowed.
    ClientAppNotAllowed,
    // --- 503: we could not check ---
    /// The issuer's keys could not be fetched and none are cached.
    IssuerUnavailable,
}

impl RejectionKind {
    /// The status the client gets: 401, 403 or 503.
    pub fn status(self) -> StatusCode {
        use RejectionKind::*;
        match self {
            TenantNotAllowed | MissingRole | MissingGroup | ClientAppNotAllowed => {
                StatusCode::FORBIDDEN
            }
            IssuerUnavailable => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        }
    }

    /// A stable snake_case name for logs and metrics (`expired`, `wrong_audience`).
    pub fn as_str(self) -> &'static str {
        use RejectionKind::*;
        match self {
            Missing => "missing",
            MalformedHeader => "malformed_header",
            TooLarge => "too_large",
            MalformedToken => "malformed_token",
            AlgorithmNotAllowed => "algorithm_not_allowed",
            MissingKeyId => "missing_key_id",
            UnknownIssuer => "unknown_issuer",
            UnknownKey => "unknown_key",
            BadSignature => "bad_signature",
            Expired => "expired",
            NotYetValid => "not_yet_valid",
            LifetimeTooLong => "lifetime_too_long",
            WrongAudience => "wrong_audience",
            MissingClaim => "missing_claim",
            UnknownClientKey => "unknown_client_key",
            TenantNotAllowed => "tenant_not_allowed",
            MissingRole => "missing_role",
            MissingGroup => "missing_group",
            ClientAppNotAllowed => "client_app_not_allowed",
            IssuerUnavailable => "issuer_unavailable",
        }
    }

    /// The message the client reads.
    fn message(self) -> &'static str {
        use RejectionKind::*;
        match self {
            Missing => {
                "missing credential: send a token in `Authorization: Bearer` or a key in `x-api-key`"
            }
            MalformedHeader => {
                "malformed credential header: expected `Authorization: Bearer <token>`"
            }
            TooLarge => "credential too large",
            MalformedToken => "malformed token: its header or claims do not decode",
            AlgorithmNotAllowed => "token signing algorithm not allowed",
            MissingKeyId => "token has no key id (`kid`)",
            UnknownIssuer => "token issuer not accepted",
            UnknownKey => "token signed with a key the issuer does not publish",
            BadSignature => "token signature does not verify",
            Expired => "token expired",
            NotYetValid => "token not yet valid (`nbf`)",
            LifetimeTooLong => "token expiry too far in the future",
            WrongAudience => "token audience not accepted",
            MissingClaim => "token lacks a required claim (`exp`, `iss`, `aud`, `sub` or `oid`)",
            UnknownClientKey => "invalid API key",
            TenantNotAllowed => "tenant not allowed",
            MissingRole => "caller lacks a required role",
            MissingGroup => "caller is not in a required group",
            ClientAppNotAllowed => "client application not allowed",
            IssuerUnavailable => "identity provider unreachable: cannot verify tokens right now",
        }
    }
}

impl fmt::Display for RejectionKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

/// A request the identity layer refused, and how to answer it.
///
/// It never holds the credential it refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    kind: RejectionKind,
    retry_after: Option<Duration>,
}

impl Rejection {
    pub(crate) fn new(kind: RejectionKind) -> Self {
        Self {
            kind,
            retry_after: None,
        }
    }

    pub(crate) fn unavailable(retry_after: Duration) -> Self {
        Self {
            kind: RejectionKind::IssuerUnavailable,
            retry_after: Some(retry_after),
        }
    }

    /// What was wrong.
    pub fn kind(&self) -> RejectionKind {
        self.kind
    }

    /// The status the client gets.
    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    /// The rejection as a [`ClaudeError`]: `Auth` for 401/403 (rendered as
    /// `authentication_error` / `permission_error`), `Server` at 503 for an
    /// unreachable identity provider (`api_error`, retryable).
    pub fn to_claude_error(&self) -> ClaudeError {
        let class = match self.kind {
            RejectionKind::IssuerUnavailable => ErrorClass::Server,
            _ => ErrorClass::Auth,
        };
        let mut err = ClaudeError::new(class, self.kind.message()).with_status(self.status());
        if let Some(wait) = self.retry_after {
            err = err.with_retry_after(RetryAfter::new(wait));
        }
        err
    }

    /// The response Anthropic's API would send: its error envelope, plus
    /// `WWW-Authenticate: Bearer error="invalid_token"` on a 401.
    pub fn to_response(&self) -> Response<Bytes> {
        let mut response = error_response::<Bytes>(&self.to_claude_error());
        if self.status() == StatusCode::UNAUTHORIZED {
            response.headers_mut().insert(
                WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer error=\"invalid_token\""),
            );
        }
        response
    }
}

impl From<RejectionKind> for Rejection {
    fn from(kind: RejectionKind) -> Self {
        Self::new(kind)
    }
}

impl fmt::Display for Rejection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.kind, f)
    }
}

impl std::error::Error for Rejection {}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(res: &Response<Bytes>) -> serde_json::Value {
        serde_json::from_slice(res.body()).expect("json")
    }

    #[test]
    fn statuses_and_envelopes() {
        let res = Rejection::new(RejectionKind::Expired).to_response();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers()[WWW_AUTHENTICATE],
            "Bearer error=\"invalid_token\""
        );
        assert_eq!(body(&res)["error"]["type"], "authentication_error");
        assert_eq!(body(&res)["error"]["message"], "token expired");

        let res = Rejection::new(RejectionKind::MissingRole).to_response();
        assert_eq!(res.status(), 403);
        assert!(res.headers().get(WWW_AUTHENTICATE).is_none());
        assert_eq!(body(&res)["error"]["type"], "permission_error");

        let res = Rejection::unavailable(Duration::from_secs(10)).to_response();
        assert_eq!(res.status(), 503);
        assert_eq!(res.headers()["x-should-retry"], "true");
        assert_eq!(res.headers()["retry-after"], "10");
        assert_eq!(body(&res)["error"]["type"], "api_error");
    }
}
