//! One test per row of the class table, on both faces, with bodies and
//! headers shaped as the simulator (and the real routes) shape them.

use std::time::{Duration, SystemTime};

use claude_tower_core::{ClaudeError, ErrorClass, Face};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};

use super::*;

const NOW: u64 = 1_763_769_600; // 2025-11-22T00:00:00Z

fn now() -> SystemTime {
    SystemTime::UNIX_EPOCH + Duration::from_secs(NOW)
}

fn anthropic_body(kind: &str, message: &str) -> String {
    format!(
        r#"{{"type":"error","error":{{"type":"{kind}","message":"{message}"}},"request_id":"req_011CSim"}}"#
    )
}

fn foundry_body(code: &str, message: &str) -> String {
    format!(r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#)
}

fn anthropic_headers() -> HeaderMap {
    headers(&[
        ("request-id", "req_011CSim"),
        ("content-type", "application/json"),
    ])
}

fn foundry_headers() -> HeaderMap {
    headers(&[
        ("apim-request-id", "5b1c-apim"),
        ("x-ms-request-id", "9f2e-ms"),
        ("content-type", "application/json"),
    ])
}

fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
    }
    h
}

fn status(code: u16) -> StatusCode {
    StatusCode::from_u16(code).unwrap()
}

fn anthropic(code: u16, kind: &str, message: &str) -> ClaudeError {
    let body = anthropic_body(kind, message);
    classify(
        Face::Anthropic,
        status(code),
        &anthropic_headers(),
        body.as_bytes(),
        now(),
    )
    .expect("a failure")
}

fn foundry(code: u16, azure_code: &str, message: &str) -> ClaudeError {
    let body = foundry_body(azure_code, message);
    classify(
        Face::Foundry,
        status(code),
        &foundry_headers(),
        body.as_bytes(),
        now(),
    )
    .expect("a failure")
}

fn assert_class(err: &ClaudeError, class: ErrorClass) {
    assert_eq!(err.class(), class, "{err}");
}

// === successes ===

#[test]
fn success_is_none_on_both_faces() {
    for face in [Face::Anthropic, Face::Foundry] {
        for code in [200, 201, 204, 299, 304] {
            let body = anthropic_body("rate_limit_error", "not really");
            assert!(
                classify(
                    face,
                    status(code),
                    &HeaderMap::new(),
                    body.as_bytes(),
                    now()
                )
                .is_none(),
                "{face} {code}"
            );
        }
    }
}

// === RateLimited ===

#[test]
fn rate_limited_anthropic() {
    let mut h = anthropic_headers();
    h.insert("retry-after", HeaderValue::from_static("2"));
    let body = anthropic_body(
        "rate_limit_error",
        "Number of request tokens has exceeded your per-minute rate limit",
    );
    let err = classify(Face::Anthropic, status(429), &h, body.as_bytes(), now()).unwrap();
    assert_class(&err, ErrorClass::RateLimited);
    assert_eq!(err.code(), Some("rate_limit_error"));
    assert_eq!(
        err.retry_after().map(|w| w.duration()),
        Some(Duration::from_secs(2))
    );
    assert_eq!(err.request_ids().request_id(), Some("req_011CSim"));
    assert_eq!(err.status(), Some(StatusCode::TOO_MANY_REQUESTS));
    assert!(err.message().starts_with("Number of request tokens"));
}

#[test]
fn rate_limited_foundry_with_every_retry_form() {
    let body = foundry_body(
        "429",
        "Requests to the Anthropic API have exceeded the rate limit.",
    );
    let cases: [(&str, &str, Duration); 4] = [
        ("Retry-After", "2", Duration::from_secs(2)),
        ("Retry-After", "1.5", Duration::from_millis(1500)),
        ("retry-after-ms", "1500", Duration::from_millis(1500)),
        ("x-ms-retry-after-ms", "1500", Duration::from_millis(1500)),
    ];
    for (name, value, wait) in cases {
        let mut h = foundry_headers();
        h.insert(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        let err = classify(Face::Foundry, status(429), &h, body.as_bytes(), now()).unwrap();
        assert_class(&err, ErrorClass::RateLimited);
        assert_eq!(err.code(), Some("429"));
        assert_eq!(
            err.retry_after().map(|w| w.duration()),
            Some(wait),
            "{name}: {value}"
        );
        assert_eq!(err.request_ids().apim_request_id(), Some("5b1c-apim"));
        assert_eq!(err.request_ids().x_ms_request_id(), Some("9f2e-ms"));
    }
    // `429:date+2s`: an HTTP-date two seconds ahead.
    let mut h = foundry_headers();
    let date = httpdate::fmt_http_date(now() + Duration::from_secs(2));
    h.insert("retry-after", HeaderValue::from_str(&date).unwrap());
    let err = classify(Face::Foundry, status(429), &h, body.as_bytes(), now()).unwrap();
    assert_eq!(
        err.retry_after().map(|w| w.duration()),
        Some(Duration::from_secs(2))
    );
}

// === Overloaded ===

#[test]
fn overloaded_anthropic_529_and_by_type() {
    assert_class(
        &anthropic(529, "overloaded_error", "Overloaded"),
        ErrorClass::Overloaded,
    );
    // `error.type` is more specific than a 500.
    assert_class(
        &anthropic(500, "overloaded_error", "Overloaded"),
        ErrorClass::Overloaded,
    );
}

#[test]
fn overloaded_foundry_503() {
    let err = foundry(503, "503", "Service temporarily unavailable");
    assert_class(&err, ErrorClass::Overloaded);
    assert_eq!(err.message(), "Service temporarily unavailable");
}

// === Server ===

#[test]
fn server_anthropic() {
    assert_class(
        &anthropic(500, "api_error", "Internal server error"),
        ErrorClass::Server,
    );
    assert_class(
        &anthropic(502, "api_error", "Bad gateway"),
        ErrorClass::Server,
    );
    // `api_error` defers to the status.
    assert_class(&anthropic(503, "api_error", "x"), ErrorClass::Overloaded);
}

#[test]
fn server_foundry() {
    assert_class(
        &foundry(500, "500", "Internal server error"),
        ErrorClass::Server,
    );
    assert_class(&foundry(502, "502", "Bad gateway"), ErrorClass::Server);
    assert_class(
        &foundry(500, "InternalServerError", "x"),
        ErrorClass::Server,
    );
}

// === Timeout ===

#[test]
fn timeout_anthropic() {
    assert_class(
        &anthropic(504, "timeout_error", "Request timed out"),
        ErrorClass::Timeout,
    );
    assert_class(
        &anthropic(408, "timeout_error", "Request timed out"),
        ErrorClass::Timeout,
    );
}

#[test]
fn timeout_foundry() {
    assert_class(&foundry(504, "504", "Gateway timeout"), ErrorClass::Timeout);
    assert_class(&foundry(408, "408", "Request timeout"), ErrorClass::Timeout);
}

// === TransientAuth ===

#[test]
fn transient_auth_foundry_at_any_status() {
    for code in [401, 403, 500, 503, 400] {
        let err = foundry(
            code,
            TRANSIENT_AUTH_CODE,
            "Backend authentication failed for the model endpoint.",
        );
        assert_class(&err, ErrorClass::TransientAuth);
        assert_eq!(err.code(), Some(TRANSIENT_AUTH_CODE));
        assert!(err.retryable() && err.failover_worthy());
    }
    // Case-insensitive, and found in `innererror` behind a numeric code.
    assert_class(
        &foundry(401, "Invalid_Model_Endpoint_Authentication", "x"),
        ErrorClass::TransientAuth,
    );
    let body = br#"{"error":{"code":"401","message":"Unauthorized","innererror":{"code":"invalid_model_endpoint_authentication"}}}"#;
    let err = classify(Face::Foundry, status(401), &foundry_headers(), body, now()).unwrap();
    assert_class(&err, ErrorClass::TransientAuth);
    assert_eq!(err.code(), Some(TRANSIENT_AUTH_CODE));
}

#[test]
fn transient_auth_recognised_on_the_anthropic_face_too() {
    // A gateway in front of Foundry may present itself as the Anthropic face.
    let body = foundry_body(TRANSIENT_AUTH_CODE, "blip");
    let err = classify(
        Face::Anthropic,
        status(401),
        &HeaderMap::new(),
        body.as_bytes(),
        now(),
    )
    .unwrap();
    assert_class(&err, ErrorClass::TransientAuth);
}

// === Conflict ===

#[test]
fn conflict_on_both_faces() {
    assert_class(
        &anthropic(409, "conflict_error", "Conflict"),
        ErrorClass::Conflict,
    );
    assert_class(&foundry(409, "409", "Conflict"), ErrorClass::Conflict);
}

// === RouteUnavailable ===

#[test]
fn route_unavailable_foundry_deployment_or_model_not_found() {
    for code in [
        "DeploymentNotFound",
        "deploymentnotfound",
        "ModelNotFound",
        "model_not_found",
    ] {
        let err = foundry(
            404,
            code,
            "The API deployment for this resource does not exist.",
        );
        assert_class(&err, ErrorClass::RouteUnavailable);
        assert_eq!(err.code(), Some(code));
        assert!(!err.retryable() && err.failover_worthy());
    }
    // A plain 404 with a numeric code says nothing about the deployment.
    assert_class(
        &foundry(404, "404", "Resource not found"),
        ErrorClass::InvalidRequest,
    );
}

#[test]
fn route_unavailable_billing() {
    assert_class(
        &anthropic(402, "billing_error", "Your credit balance is too low"),
        ErrorClass::RouteUnavailable,
    );
    assert_class(
        &foundry(402, "402", "Payment required"),
        ErrorClass::RouteUnavailable,
    );
}

// === Auth ===

#[test]
fn auth_anthropic() {
    let err = anthropic(401, "authentication_error", "invalid x-api-key");
    assert_class(&err, ErrorClass::Auth);
    assert!(!err.retryable() && !err.failover_worthy());
    assert_class(
        &anthropic(403, "permission_error", "no access"),
        ErrorClass::Auth,
    );
}

#[test]
fn auth_foundry() {
    assert_class(
        &foundry(
            401,
            "401",
            "Access denied due to invalid subscription key or wrong API endpoint.",
        ),
        ErrorClass::Auth,
    );
    assert_class(&foundry(403, "PermissionDenied", "x"), ErrorClass::Auth);
    // API Management's own shape.
    let body =
        br#"{ "statusCode": 401, "message": "Access denied due to missing subscription key." }"#;
    let err = classify(Face::Foundry, status(401), &foundry_headers(), body, now()).unwrap();
    assert_class(&err, ErrorClass::Auth);
    assert_eq!(
        err.message(),
        "Access denied due to missing subscription key."
    );
}

// === InvalidRequest ===

#[test]
fn invalid_request_anthropic() {
    assert_class(
        &anthropic(400, "invalid_request_error", "messages: field required"),
        ErrorClass::InvalidRequest,
    );
    assert_class(
        &anthropic(413, "request_too_large", "too large"),
        ErrorClass::InvalidRequest,
    );
    assert_class(
        &anthropic(404, "not_found_error", "model: claude-x"),
        ErrorClass::InvalidRequest,
    );
    assert_class(
        &anthropic(422, "invalid_request_error", "x"),
        ErrorClass::InvalidRequest,
    );
}

#[test]
fn invalid_request_foundry() {
    let err = foundry(
        400,
        "content_filter",
        "The response was filtered due to the prompt triggering content management policy.",
    );
    assert_class(&err, ErrorClass::InvalidRequest);
    assert_eq!(err.code(), Some("content_filter"));
    assert!(!err.retryable() && !err.failover_worthy());
    assert_class(
        &foundry(400, "400", "Bad request"),
        ErrorClass::InvalidRequest,
    );
    assert_class(
        &foundry(422, "422", "Unprocessable"),
        ErrorClass::InvalidRequest,
    );
}

// === the body never makes a server error final ===

#[test]
fn server_errors_stay_retryable_whatever_the_body() {
    assert_class(
        &anthropic(500, "invalid_request_error", "?"),
        ErrorClass::Server,
    );
    assert_class(&foundry(503, "content_filter", "?"), ErrorClass::Overloaded);
    assert_class(&foundry(500, "DeploymentNotFound", "?"), ErrorClass::Server);
}

// === garbage bodies classify by status ===

#[test]
fn garbage_bodies_classify_by_status() {
    let bodies: [&[u8]; 6] = [
        b"",
        b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
        br#"{"error":{"code":"DeploymentNotFound","mess"#,
        b"\x00\xff\xfe garbage",
        b"upstream connect error or disconnect/reset before headers",
        br#"{"error":{"code":"#,
    ];
    for face in [Face::Anthropic, Face::Foundry] {
        for body in bodies {
            for (code, class) in [
                (502, ErrorClass::Server),
                (429, ErrorClass::RateLimited),
                (404, ErrorClass::InvalidRequest),
            ] {
                let err = classify(face, status(code), &HeaderMap::new(), body, now()).unwrap();
                assert_class(&err, class);
                assert_eq!(err.code(), None);
                assert_eq!(err.message(), status(code).canonical_reason().unwrap());
            }
        }
    }
}

// === x-should-retry and request ids ===

#[test]
fn should_retry_header_is_read() {
    let mut h = anthropic_headers();
    h.insert("x-should-retry", HeaderValue::from_static("false"));
    let body = anthropic_body("overloaded_error", "Overloaded");
    let err = classify(Face::Anthropic, status(529), &h, body.as_bytes(), now()).unwrap();
    assert_eq!(err.should_retry(), Some(false));
    assert!(!err.retryable());
    h.insert("x-should-retry", HeaderValue::from_static(" TRUE "));
    let body = anthropic_body("invalid_request_error", "x");
    let err = classify(Face::Anthropic, status(400), &h, body.as_bytes(), now()).unwrap();
    assert_eq!(err.should_retry(), Some(true));
    h.insert("x-should-retry", HeaderValue::from_static("maybe"));
    let err = classify(Face::Anthropic, status(400), &h, b"", now()).unwrap();
    assert_eq!(err.should_retry(), None);
}

#[test]
fn body_request_id_fills_a_missing_header() {
    let body = anthropic_body("api_error", "x");
    let err = classify(
        Face::Anthropic,
        status(500),
        &HeaderMap::new(),
        body.as_bytes(),
        now(),
    )
    .unwrap();
    assert_eq!(err.request_ids().request_id(), Some("req_011CSim"));
    // The header wins over the body.
    let h = headers(&[("request-id", "req_header")]);
    let err = classify(Face::Anthropic, status(500), &h, body.as_bytes(), now()).unwrap();
    assert_eq!(err.request_ids().request_id(), Some("req_header"));
}

#[test]
fn shape_is_reported() {
    let body = anthropic_body("api_error", "x");
    let (_, shape) = classify_shaped(
        Face::Foundry,
        status(500),
        &HeaderMap::new(),
        body.as_bytes(),
        now(),
    )
    .unwrap();
    assert_eq!(shape, Shape::Anthropic);
    let body = foundry_body("500", "x");
    let (_, shape) = classify_shaped(
        Face::Foundry,
        status(500),
        &HeaderMap::new(),
        body.as_bytes(),
        now(),
    )
    .unwrap();
    assert_eq!(shape, Shape::Azure);
}
