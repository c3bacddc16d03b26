//! `classify` on arbitrary bodies, statuses, retry headers and clocks:
//! it must never panic, must classify every status of 400 and over, and
//! must never hand back a wait beyond `MAX_RETRY_AFTER`.

#![no_main]

use std::time::{Duration, SystemTime};

use claude_tower_core::Face;
use claude_tower_normalize::{MAX_RETRY_AFTER, classify};
use http::{HeaderMap, HeaderName, HeaderValue, StatusCode};
use libfuzzer_sys::fuzz_target;

const RETRY_HEADERS: [&str; 4] = [
    "retry-after",
    "retry-after-ms",
    "x-ms-retry-after-ms",
    "x-should-retry",
];

fuzz_target!(|data: &[u8]| {
    // Layout: face (1), status (2), clock (4), header count (1), then per
    // header: name index (1), length (1), value; the rest is the body.
    let Some((&face, rest)) = data.split_first() else {
        return;
    };
    let face = if face & 1 == 0 {
        Face::Anthropic
    } else {
        Face::Foundry
    };
    let Some((status, rest)) = rest.split_first_chunk::<2>() else {
        return;
    };
    let status = 100 + u16::from_be_bytes(*status) % 900;
    let Ok(status) = StatusCode::from_u16(status) else {
        return;
    };
    let Some((clock, rest)) = rest.split_first_chunk::<4>() else {
        return;
    };
    let now =
        SystemTime::UNIX_EPOCH + Duration::from_secs(u64::from(u32::from_be_bytes(*clock)) * 2);
    let Some((&count, mut rest)) = rest.split_first() else {
        return;
    };

    let mut headers = HeaderMap::new();
    for _ in 0..count % 5 {
        let Some((&[name, len], tail)) = rest.split_first_chunk::<2>() else {
            break;
        };
        let len = usize::from(len).min(tail.len());
        let (value, tail) = tail.split_at(len);
        rest = tail;
        if let Ok(value) = HeaderValue::from_bytes(value) {
            let name = RETRY_HEADERS[usize::from(name) % RETRY_HEADERS.len()];
            headers.append(HeaderName::from_static(name), value);
        }
    }
    let body = rest;

    let result = classify(face, status, &headers, body, now);
    match result {
        None => assert!(status.as_u16() < 400),
        Some(err) => {
            assert!(status.as_u16() >= 400);
            assert_eq!(err.status(), Some(status));
            if let Some(wait) = err.retry_after() {
                assert!(wait.duration() <= MAX_RETRY_AFTER);
            }
            // A server error stays retryable whatever the body says.
            if status.is_server_error() {
                assert!(err.class().retryable());
            }
            let _ = err.to_string();
        }
    }
});
