use bytes::Bytes;
use http::header::{CONTENT_TYPE, HeaderValue};
use http::{HeaderMap, Response};
use serde::Serialize;

use crate::{ClaudeError, headers};

#[derive(Serialize)]
struct Envelope<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    error: Inner<'a>,
    request_id: Option<&'a str>,
}

#[derive(Serialize)]
struct Inner<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    message: &'a str,
}

/// Anthropic's error envelope for `err`, as JSON bytes:
/// `{"type":"error","error":{"type":..,"message":..},"request_id":..}`.
///
/// `error.type` follows the class and status
/// ([`ErrorClass::anthropic_error_type`](crate::ErrorClass::anthropic_error_type));
/// `request_id` is the [primary](crate::RequestIds::primary) id or `null`.
pub fn envelope_json(err: &ClaudeError) -> Bytes {
    let envelope = Envelope {
        kind: "error",
        error: Inner {
            kind: err.class().anthropic_error_type(err.response_status()),
            message: err.message(),
        },
        request_id: err.request_ids().primary(),
    };
    // NOTE: serializing a struct of strings to a Vec cannot fail.
    Bytes::from(serde_json::to_vec(&envelope).unwrap_or_default())
}

/// Renders `err` as the response Anthropic's API would have sent.
///
/// Every layer that answers locally (tool pairing rejections, body too large,
/// an exhausted failover) answers with this, so Anthropic SDK clients raise
/// the right exception whichever route or layer failed. The response has:
///
/// - the route's status, or the class's [default](crate::ErrorClass::default_status);
/// - `content-type: application/json` and the [envelope](envelope_json);
/// - canonical retry headers when a wait is known: `retry-after` in whole
///   seconds rounded up and `retry-after-ms` (never an HTTP-date);
/// - `x-should-retry`, so SDKs retry exactly what the class table allows;
/// - every known request id header.
///
/// ```
/// use claude_tower_core::{ClaudeError, ErrorClass, error_response};
///
/// let err = ClaudeError::new(ErrorClass::InvalidRequest, "messages: field required");
/// let res = error_response::<bytes::Bytes>(&err);
/// assert_eq!(res.status(), 400);
/// assert_eq!(res.headers()["x-should-retry"], "false");
/// assert_eq!(
///     res.body(),
///     &r#"{"type":"error","error":{"type":"invalid_request_error","message":"messages: field required"},"request_id":null}"#[..],
/// );
/// ```
pub fn error_response<B>(err: &ClaudeError) -> Response<B>
where
    B: From<Bytes>,
{
    let mut response = Response::new(B::from(envelope_json(err)));
    *response.status_mut() = err.response_status();
    let h = response.headers_mut();
    h.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    write_retry_headers(err, h);
    h.insert(
        headers::X_SHOULD_RETRY,
        HeaderValue::from_static(if err.retryable() { "true" } else { "false" }),
    );
    err.request_ids().write_to(h);
    response
}

fn write_retry_headers(err: &ClaudeError, h: &mut HeaderMap) {
    if let Some(wait) = err.retry_after() {
        h.insert(headers::RETRY_AFTER, HeaderValue::from(wait.as_secs_ceil()));
        h.insert(
            headers::RETRY_AFTER_MS,
            HeaderValue::from(wait.as_millis_ceil()),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{ErrorClass, RequestIds, RetryAfter, RouteId};
    use http::StatusCode;
    use std::time::Duration;

    fn json(res: &Response<Bytes>) -> serde_json::Value {
        serde_json::from_slice(res.body()).expect("valid JSON")
    }

    #[test]
    fn renders_every_class_with_a_matching_status_and_type() {
        for class in ErrorClass::ALL {
            let res = error_response::<Bytes>(&ClaudeError::new(class, "m"));
            assert_eq!(res.status(), class.default_status(), "{class}");
            let v = json(&res);
            assert_eq!(v["type"], "error");
            assert_eq!(
                v["error"]["type"],
                class.anthropic_error_type(class.default_status())
            );
            assert_eq!(v["error"]["message"], "m");
            assert_eq!(
                res.headers()["x-should-retry"],
                if class.retryable() { "true" } else { "false" }
            );
        }
    }

    #[test]
    fn keeps_the_route_status_and_ids() {
        let mut h = HeaderMap::new();
        h.insert("apim-request-id", HeaderValue::from_static("apim-1"));
        h.insert("x-ms-request-id", HeaderValue::from_static("ms-1"));
        let err = ClaudeError::new(ErrorClass::Overloaded, "Service unavailable \"now\"")
            .with_route(RouteId::new("foundry"))
            .with_status(StatusCode::SERVICE_UNAVAILABLE)
            .with_retry_after(RetryAfter::new(Duration::from_millis(1500)))
            .with_request_ids(RequestIds::from_headers(&h));
        let res = error_response::<Bytes>(&err);
        assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(res.headers()["retry-after"], "2");
        assert_eq!(res.headers()["retry-after-ms"], "1500");
        assert_eq!(res.headers()["apim-request-id"], "apim-1");
        assert_eq!(res.headers()["x-ms-request-id"], "ms-1");
        assert_eq!(res.headers()["content-type"], "application/json");
        let v = json(&res);
        assert_eq!(v["error"]["type"], "overloaded_error");
        assert_eq!(v["error"]["message"], "Service unavailable \"now\"");
        assert_eq!(v["request_id"], "apim-1");
    }

    #[test]
    fn payload_too_large_is_request_too_large() {
        let err = ClaudeError::new(ErrorClass::InvalidRequest, "too big")
            .with_status(StatusCode::PAYLOAD_TOO_LARGE);
        let res = error_response::<Bytes>(&err);
        assert_eq!(res.status(), 413);
        assert_eq!(json(&res)["error"]["type"], "request_too_large");
    }
}
