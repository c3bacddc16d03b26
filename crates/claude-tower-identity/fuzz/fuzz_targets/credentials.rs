//! The identity layer's whole check on arbitrary input: any JWKS document
//! as an issuer's keys, any value in any credential header, and tokens
//! assembled from arbitrary header, claims and signature bytes (so the
//! fuzzer need not discover base64 to reach the JWT code). It must never
//! panic, never wait (the keys are given, nothing is fetched) and never
//! accept a token it was not given a valid signature for.

#![no_main]

use std::future::Future;
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claude_tower_identity::test_util::{SigningKey, jwks};
use claude_tower_identity::{IdentityConfig, IdentityLayer};
use http::{HeaderMap, HeaderValue};
use libfuzzer_sys::fuzz_target;

const ISS: &str = "https://issuer.fuzz";
const HEADERS: [&str; 4] = ["authorization", "x-api-key", "api-key", "x-other"];

fn config(document: &str) -> IdentityConfig {
    IdentityConfig::default()
        .with_issuer_keys(ISS, document)
        .with_audience("aud")
        .with_client_key("ci", "k-fuzz")
        .with_algorithms(["RS256", "ES256", "PS256", "ES384"])
}

/// A layer over a real key, for inputs whose JWKS does not parse.
fn fallback() -> &'static IdentityLayer {
    static LAYER: OnceLock<IdentityLayer> = OnceLock::new();
    LAYER.get_or_init(|| {
        let key = SigningKey::ec("k1");
        IdentityLayer::new(config(&jwks(&[&key]))).expect("valid settings")
    })
}

fn split<'a>(data: &mut &'a [u8]) -> &'a [u8] {
    let Some((&len, rest)) = data.split_first() else {
        return &[];
    };
    let len = (len as usize).min(rest.len());
    let (head, tail) = rest.split_at(len);
    *data = tail;
    head
}

fuzz_target!(|data: &[u8]| {
    let Some((&mode, mut rest)) = data.split_first() else {
        return;
    };
    // The keys: an arbitrary JWKS document, or the fallback's.
    let document = String::from_utf8_lossy(split(&mut rest));
    let own = IdentityLayer::new(config(&document)).ok();
    let layer = own.as_ref().unwrap_or_else(|| fallback());

    let value: Vec<u8> = if mode & 0x80 != 0 {
        // header . claims . signature, each arbitrary, base64url-encoded.
        let header = split(&mut rest);
        let claims = split(&mut rest);
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(claims),
            URL_SAFE_NO_PAD.encode(rest)
        );
        let prefix = if mode & 0x40 != 0 { "Bearer " } else { "" };
        format!("{prefix}{token}").into_bytes()
    } else {
        rest.to_vec()
    };
    let Ok(value) = HeaderValue::from_bytes(&value) else {
        return;
    };
    let mut headers = HeaderMap::new();
    headers.insert(HEADERS[(mode & 3) as usize], value);
    if mode & 4 != 0 {
        headers.insert("x-api-key", HeaderValue::from_static("k-other"));
    }

    let mut check = pin!(layer.authenticate(&headers));
    let Poll::Ready(result) = check.as_mut().poll(&mut Context::from_waker(Waker::noop())) else {
        panic!("waited with every key given");
    };
    if let Ok(caller) = result {
        // Only the client key can get in: no token here is validly signed.
        assert_eq!(caller.id(), "ci");
    }
});
