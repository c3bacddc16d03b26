//! Reading a response into a [`ClaudeError`].
//!
//! The status gives a class on its own ([`ErrorClass::from_status`]); the
//! body refines it where it knows more:
//!
//! - Azure's textual codes: `invalid_model_endpoint_authentication` is
//!   [`TransientAuth`](ErrorClass::TransientAuth) at any status (Foundry sends
//!   it with 401 for a backend-to-backend blip, not a bad key);
//!   `DeploymentNotFound`, `ModelNotFound` and `model_not_found` are
//!   [`RouteUnavailable`](ErrorClass::RouteUnavailable) (another route may
//!   have it); `content_filter` is [`InvalidRequest`](ErrorClass::InvalidRequest)
//!   (every route would filter it). Numeric codes (`"429"`) add nothing to
//!   the status. Codes compare ASCII-case-insensitively, and
//!   `error.innererror.code` is consulted when `error.code` says nothing.
//! - Anthropic's `error.type`: `overloaded_error`, `rate_limit_error`,
//!   `timeout_error`, ... name their class whatever the status; the generic
//!   `api_error` defers to the status.
//!
//! Both envelopes are read on both faces (a Foundry deployment may answer in
//! Anthropic's envelope); the face decides which field is read first:
//! `error.type` on Anthropic's, `error.code` on Foundry's.
//!
//! NOTE: a body never makes a 5xx final. If the status is a server error and
//! the body names a class that is not retryable, the status wins: a server
//! that failed is worth another try whatever its body claims.

use std::borrow::Cow;
use std::time::SystemTime;

use claude_tower_core::{ClaudeError, ErrorClass, Face, RequestIds, RetryAfter, headers};
use http::{HeaderMap, HeaderValue, StatusCode};

use crate::error_body::{Envelope, Shape};
use crate::retry_after::retry_after;

/// Foundry's code for a backend-to-backend authentication blip.
pub const TRANSIENT_AUTH_CODE: &str = "invalid_model_endpoint_authentication";

/// Classifies one response; `None` when it is not a failure (below 400).
///
/// The result carries the class, the status, the raw `error.type` /
/// `error.code`, the message (the status's reason when the body has none),
/// every request id (headers, plus Anthropic's body `request_id` when the
/// header is missing), the folded [`retry_after`] hint and the server's
/// `x-should-retry`. A body that is empty, not JSON, HTML from a proxy or
/// truncated classifies by status alone. The route is left for the caller.
///
/// ```
/// use claude_tower_core::{ErrorClass, Face};
/// use claude_tower_normalize::classify;
/// use http::{HeaderMap, StatusCode};
/// use std::time::SystemTime;
///
/// let body = br#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#;
/// let err = classify(Face::Foundry, StatusCode::NOT_FOUND, &HeaderMap::new(), body, SystemTime::now())
///     .expect("a 404 is a failure");
/// assert_eq!(err.class(), ErrorClass::RouteUnavailable);
/// assert_eq!(err.code(), Some("DeploymentNotFound"));
///
/// let ok = classify(Face::Foundry, StatusCode::OK, &HeaderMap::new(), b"", SystemTime::now());
/// assert!(ok.is_none());
/// ```
pub fn classify(
    face: Face,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Option<ClaudeError> {
    classify_shaped(face, status, headers, body, now).map(|(err, _)| err)
}

/// [`classify`], also saying which envelope the body was in.
pub(crate) fn classify_shaped(
    face: Face,
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Option<(ClaudeError, Shape)> {
    let status_class = ErrorClass::from_status(status)?;
    let env = Envelope::parse(body);

    let candidates = codes(face, &env);
    let decided = candidates
        .into_iter()
        .flatten()
        .find_map(|code| class_of_code(code).map(|class| (class, code)));
    let (class, code) = match decided {
        Some((class, code)) => {
            let class = if status.is_server_error() && !class.retryable() {
                status_class
            } else {
                class
            };
            (class, Some(code))
        }
        None => (status_class, candidates.into_iter().flatten().next()),
    };

    // The message is kept as sent (no trimming): a client's recovery may
    // match on it, and a rewritten envelope carries it verbatim.
    let message: &str = match env.message.as_deref() {
        Some(m) if !m.trim().is_empty() => m,
        _ => status.canonical_reason().unwrap_or("upstream error"),
    };
    let mut err = ClaudeError::new(class, message).with_status(status);
    if let Some(code) = code {
        err = err.with_code(&**code);
    }

    let mut ids = RequestIds::from_headers(headers);
    if ids.request_id().is_none()
        && let Some(id) = env.request_id.as_deref()
        && let Ok(value) = HeaderValue::from_str(id)
    {
        ids = ids.with_request_id(value);
    }
    err = err.with_request_ids(ids);

    if let Some(wait) = retry_after(headers, now) {
        err = err.with_retry_after(RetryAfter::new(wait));
    }
    if let Some(should_retry) = should_retry(headers) {
        err = err.with_should_retry(should_retry);
    }
    Some((err, env.shape))
}

/// Classifies the data of an `event: error` that arrived inside a successful
/// stream, as if it had been the body of an HTTP error.
///
/// The stream's own status is a 200, which says nothing, so the status used
/// is the one the error's type stands for: the class [`class_of_code`] gives
/// it ([`Server`](ErrorClass::Server) for `api_error` and anything unknown,
/// as a 500 with that body would be), at that class's
/// [`default_status`](ErrorClass::default_status). From there it is
/// [`classify`], so the same table decides both.
pub(crate) fn classify_stream_error(
    face: Face,
    headers: &HeaderMap,
    data: &[u8],
    now: SystemTime,
) -> ClaudeError {
    let env = Envelope::parse(data);
    let class = codes(face, &env)
        .into_iter()
        .flatten()
        .find_map(|code| class_of_code(code))
        .unwrap_or(ErrorClass::Server);
    classify_shaped(face, class.default_status(), headers, data, now)
        .map_or_else(|| ClaudeError::new(class, "upstream error"), |(err, _)| err)
}

/// The envelope's codes in the order `face` reads them: `error.type` first
/// on Anthropic's face, `error.code` first on Foundry's.
fn codes<'e, 'a>(face: Face, env: &'e Envelope<'a>) -> [&'e Option<Cow<'a, str>>; 3] {
    match face {
        Face::Anthropic => [&env.kind, &env.code, &env.inner_code],
        Face::Foundry => [&env.code, &env.inner_code, &env.kind],
    }
}

/// The class a code or type names on its own, if any.
fn class_of_code(code: &str) -> Option<ErrorClass> {
    let is = |name: &str| code.eq_ignore_ascii_case(name);
    let class = if is(TRANSIENT_AUTH_CODE) {
        ErrorClass::TransientAuth
    } else if is("DeploymentNotFound") || is("ModelNotFound") || is("model_not_found") {
        ErrorClass::RouteUnavailable
    } else if is("content_filter") {
        ErrorClass::InvalidRequest
    } else {
        // Anthropic's error types, which are exact lowercase.
        match code {
            "rate_limit_error" => ErrorClass::RateLimited,
            "overloaded_error" => ErrorClass::Overloaded,
            "timeout_error" => ErrorClass::Timeout,
            "conflict_error" => ErrorClass::Conflict,
            "billing_error" => ErrorClass::RouteUnavailable,
            "authentication_error" | "permission_error" => ErrorClass::Auth,
            "invalid_request_error" | "not_found_error" | "request_too_large" => {
                ErrorClass::InvalidRequest
            }
            // `api_error`, numeric codes and anything unknown: the status decides.
            _ => return None,
        }
    };
    Some(class)
}

fn should_retry(headers: &HeaderMap) -> Option<bool> {
    let value = headers.get(headers::X_SHOULD_RETRY)?.to_str().ok()?.trim();
    if value.eq_ignore_ascii_case("true") {
        Some(true)
    } else if value.eq_ignore_ascii_case("false") {
        Some(false)
    } else {
        None
    }
}

#[cfg(test)]
mod tests;
