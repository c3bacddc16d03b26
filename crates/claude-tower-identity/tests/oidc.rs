//! The identity layer against a local OpenID Connect issuer: keys made by
//! the test, discovery and JWKS served over 127.0.0.1.

mod support;

use std::time::Duration;

use aws_lc_rs::hmac;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use claude_tower_core::AuthMethod;
use claude_tower_identity::test_util::{SigningKey, now};
use claude_tower_identity::{IdentityConfig, IdentityLayer};
use serde_json::{Value, json};
use support::{Issuer, Mode, bearer, request, send, service};

const AUD: &str = "api://claude-gateway";

fn config(issuer: &Issuer) -> IdentityConfig {
    IdentityConfig::default()
        .with_issuer(issuer.iss())
        .with_audience(AUD)
        .with_audience("https://ai.azure.com")
}

/// A layer that re-fetches keys for any unknown `kid` at once.
fn eager(issuer: &Issuer) -> IdentityLayer {
    IdentityLayer::new(config(issuer).with_key_refetch_interval(Duration::ZERO)).unwrap()
}

async fn status<S>(svc: &S, token: &str) -> u16
where
    S: tower::Service<
            http::Request<http_body_util::Full<bytes::Bytes>>,
            Response = http::Response<
                claude_tower_core::ResponseBody<http_body_util::Full<bytes::Bytes>>,
            >,
            Error = std::convert::Infallible,
        > + Clone,
{
    send(svc, bearer(token)).await.status
}

fn with(mut claims: Value, patch: Value) -> Value {
    for (k, v) in patch.as_object().unwrap() {
        if v.is_null() {
            claims.as_object_mut().unwrap().remove(k);
        } else {
            claims[k] = v.clone();
        }
    }
    claims
}

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

#[tokio::test]
async fn rs256_and_es256_tokens_become_callers() {
    let (rsa, ec) = (SigningKey::rsa("rsa-1"), SigningKey::ec("ec-1"));
    let issuer = Issuer::start(&[&rsa, &ec]).await;
    let layer = IdentityLayer::new(config(&issuer)).unwrap();
    let (svc, seen) = service(&layer);

    let answer = send(&svc, bearer(&rsa.sign(&issuer.claims(AUD)))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let caller = seen.lock().unwrap()[0].clone().expect("a caller");
    assert_eq!(caller.id(), "oid-ada");
    assert_eq!(caller.method(), AuthMethod::Token);
    assert_eq!(caller.display_name(), Some("ada@contoso.com"));
    assert_eq!(caller.tenant(), Some("tenant-1"));
    assert_eq!(caller.issuer(), Some(issuer.iss().as_str()));
    assert!(caller.in_group("g-claude") && caller.has_role("Claude.Use"));

    // ES256, `sub` when there is no `oid`, `preferred_username` for a name,
    // an audience list, in `x-api-key` as an apiKeyHelper would send it.
    let claims = with(
        issuer.claims("other"),
        json!({"oid": null, "upn": null, "preferred_username": "ada@example.com",
               "aud": ["other", "https://ai.azure.com"]}),
    );
    let answer = send(&svc, request("x-api-key", &ec.sign(&claims))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    let caller = seen.lock().unwrap()[1].clone().unwrap();
    assert_eq!(caller.id(), "sub-ada");
    assert_eq!(caller.display_name(), Some("ada@example.com"));
    // One discovery, one JWKS fetch for both.
    assert_eq!((issuer.discovery_hits(), issuer.jwks_hits()), (1, 1));
}

#[tokio::test]
async fn every_bad_token_gets_its_own_answer() {
    let key = SigningKey::rsa("k1");
    let stranger = SigningKey::rsa("k1"); // same kid, other key
    let unknown = SigningKey::rsa("k-unknown");
    let issuer = Issuer::start(&[&key]).await;
    let layer = IdentityLayer::new(
        config(&issuer)
            .with_required_role("Claude.Use")
            .with_required_group("g-claude")
            .with_allowed_tenant("tenant-1")
            .with_allowed_client_app("app-1")
            .with_client_key("ci", "k-ci"),
    )
    .unwrap();
    let (svc, seen) = service(&layer);
    let good = with(issuer.claims(AUD), json!({"azp": "app-1"}));
    assert_eq!(status(&svc, &key.sign(&good)).await, 200);

    let header = json!({"alg": "RS256", "typ": "JWT", "kid": "k1"});
    let signed = key.sign(&good);
    let (message, _) = signed.rsplit_once('.').unwrap();
    let tampered = format!(
        "{}.{}.{}",
        b64(&header),
        b64(&with(good.clone(), json!({"oid": "oid-admin"}))),
        signed.rsplit('.').next().unwrap()
    );
    let hs256 = {
        // The classic: HMAC keyed with the issuer's public key.
        let h = json!({"alg": "HS256", "typ": "JWT", "kid": "k1"});
        let msg = format!("{}.{}", b64(&h), b64(&good));
        let mac_key = hmac::Key::new(
            hmac::HMAC_SHA256,
            key.jwk()["n"].as_str().unwrap().as_bytes(),
        );
        let tag = hmac::sign(&mac_key, msg.as_bytes());
        format!("{msg}.{}", URL_SAFE_NO_PAD.encode(tag.as_ref()))
    };
    let none = format!(
        "{}.{}.",
        b64(&json!({"alg": "none", "kid": "k1"})),
        b64(&good)
    );
    let huge_claims = with(good.clone(), json!({"pad": "x".repeat(10 * 1024 * 1024)}));
    let huge = format!("{}.{}.c2ln", b64(&header), b64(&huge_claims));

    let cases: Vec<(&str, String, u16, &str)> = vec![
        (
            "expired",
            key.sign(&with(good.clone(), json!({"exp": now() - 3600}))),
            401,
            "token expired",
        ),
        (
            "not yet valid",
            key.sign(&with(good.clone(), json!({"nbf": now() + 3600}))),
            401,
            "token not yet valid (`nbf`)",
        ),
        (
            "exp in 9999",
            key.sign(&with(good.clone(), json!({"exp": 253402300799u64}))),
            401,
            "token expiry too far in the future",
        ),
        (
            "no exp",
            key.sign(&with(good.clone(), json!({"exp": null}))),
            401,
            "token lacks a required claim (`exp`, `iss`, `aud`, `sub` or `oid`)",
        ),
        (
            "no subject",
            key.sign(&with(good.clone(), json!({"oid": null, "sub": null}))),
            401,
            "token lacks a required claim (`exp`, `iss`, `aud`, `sub` or `oid`)",
        ),
        (
            "wrong audience",
            key.sign(&with(good.clone(), json!({"aud": "api://other"}))),
            401,
            "token audience not accepted",
        ),
        (
            "unknown issuer",
            key.sign(&with(good.clone(), json!({"iss": "https://evil.example"}))),
            401,
            "token issuer not accepted",
        ),
        (
            "unknown key",
            unknown.sign(&good),
            401,
            "token signed with a key the issuer does not publish",
        ),
        (
            "bad signature",
            stranger.sign(&good),
            401,
            "token signature does not verify",
        ),
        (
            "tampered claims",
            tampered,
            401,
            "token signature does not verify",
        ),
        (
            "truncated signature",
            format!("{message}.AAAA"),
            401,
            "token signature does not verify",
        ),
        ("alg none", none, 401, "token signing algorithm not allowed"),
        (
            "alg HS256",
            hs256,
            401,
            "token signing algorithm not allowed",
        ),
        (
            "no kid",
            key.sign_with_header(&json!({"alg": "RS256"}), &good),
            401,
            "token has no key id (`kid`)",
        ),
        (
            "garbage JWT",
            "eyJhbGciOi.eyJzdWIi.c2ln".into(),
            401,
            "malformed token: its header or claims do not decode",
        ),
        (
            "garbage after Bearer",
            "!!! not a token ***".into(),
            401,
            "invalid API key",
        ),
        ("10 MB of claims", huge, 401, "credential too large"),
        (
            "other tenant",
            key.sign(&with(good.clone(), json!({"tid": "tenant-2"}))),
            403,
            "tenant not allowed",
        ),
        (
            "no role",
            key.sign(&with(good.clone(), json!({"roles": ["Reader"]}))),
            403,
            "caller lacks a required role",
        ),
        (
            "no group",
            key.sign(&with(good.clone(), json!({"groups": null}))),
            403,
            "caller is not in a required group",
        ),
        (
            "other app",
            key.sign(&with(good.clone(), json!({"azp": "app-2"}))),
            403,
            "client application not allowed",
        ),
    ];
    for (name, token, status, message) in cases {
        let answer = send(&svc, bearer(&token)).await;
        assert_eq!(answer.status, status, "{name}: {}", answer.message());
        assert_eq!(answer.message(), message, "{name}");
        if status == 401 {
            assert_eq!(answer.error_type(), "authentication_error", "{name}");
            assert_eq!(
                answer.headers["www-authenticate"], "Bearer error=\"invalid_token\"",
                "{name}"
            );
        } else {
            assert_eq!(answer.error_type(), "permission_error", "{name}");
        }
        assert_eq!(answer.headers["x-should-retry"], "false", "{name}");
        assert!(
            !answer.body.contains(&token[..token.len().min(40)]),
            "{name} echoes the token"
        );
    }
    let answer = send(&svc, request("x-api-key", "k-wrong")).await;
    assert_eq!(
        (answer.status, answer.message().as_str()),
        (401, "invalid API key")
    );
    let answer = send(&svc, request("x-request-id", "nothing")).await;
    assert_eq!(answer.status, 401);
    assert!(answer.message().starts_with("missing credential"));
    let answer = send(&svc, request("authorization", "Basic YTpi")).await;
    assert!(answer.message().starts_with("malformed credential header"));
    // Only the good token reached the inner service.
    assert_eq!(seen.lock().unwrap().len(), 1);
}

#[tokio::test]
async fn client_keys_are_named_callers() {
    let config = IdentityConfig::from_lookup(|name| {
        (name == "CLAUDE_TOWER_CLIENT_KEYS").then(|| "alice=k-alice,k-bare".to_owned())
    })
    .unwrap();
    let layer = IdentityLayer::new(config).unwrap();
    let (svc, seen) = service(&layer);
    for (header, value) in [
        ("x-api-key", "k-alice"),
        ("api-key", "k-bare"),
        ("authorization", "Bearer k-alice"),
    ] {
        assert_eq!(send(&svc, request(header, value)).await.status, 200);
    }
    let ids: Vec<_> = seen
        .lock()
        .unwrap()
        .iter()
        .map(|c| c.clone().unwrap().id().to_owned())
        .collect();
    assert_eq!(ids, ["alice", "key-2", "alice"]);
    assert_eq!(
        seen.lock().unwrap()[0].as_ref().unwrap().method(),
        AuthMethod::ClientKey
    );
    // A JWT-looking value with no issuers configured is just a wrong key.
    let answer = send(&svc, bearer("eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ4In0.c2ln")).await;
    assert_eq!(answer.message(), "invalid API key");
}

#[tokio::test]
async fn a_rotated_key_is_picked_up() {
    let (old, new) = (SigningKey::rsa("old"), SigningKey::ec("new"));
    let issuer = Issuer::start(&[&old]).await;
    let layer = eager(&issuer);
    let (svc, _) = service(&layer);
    assert_eq!(status(&svc, &old.sign(&issuer.claims(AUD))).await, 200);

    issuer.publish(&[&old, &new]);
    let answer = send(&svc, bearer(&new.sign(&issuer.claims(AUD)))).await;
    assert_eq!(answer.status, 200, "{}", answer.body);
    assert_eq!(issuer.jwks_hits(), 2);
}

#[tokio::test]
async fn an_issuer_going_down_leaves_cached_keys_working() {
    let key = SigningKey::rsa("k1");
    let issuer = Issuer::start(&[&key]).await;
    // Every lookup is due a refresh, and may re-fetch: the worst case.
    let layer = IdentityLayer::new(
        config(&issuer)
            .with_key_refresh_interval(Duration::ZERO)
            .with_key_refetch_interval(Duration::ZERO),
    )
    .unwrap();
    let (svc, _) = service(&layer);
    assert_eq!(status(&svc, &key.sign(&issuer.claims(AUD))).await, 200);

    for mode in [Mode::Down, Mode::Malformed, Mode::Huge] {
        issuer.set_mode(mode);
        for i in 0..3 {
            // A new token each time, so none comes from the token cache.
            let claims = with(issuer.claims(AUD), json!({"jti": format!("{mode:?}-{i}")}));
            let answer = send(&svc, bearer(&key.sign(&claims))).await;
            assert_eq!(answer.status, 200, "{mode:?}: {}", answer.body);
            tokio::task::yield_now().await;
        }
    }
    assert!(issuer.jwks_hits() > 1, "refreshes were tried");
}

#[tokio::test]
async fn a_cold_start_with_the_issuer_down_is_503_then_recovers() {
    let key = SigningKey::rsa("k1");
    let issuer = Issuer::start(&[&key]).await;
    issuer.set_mode(Mode::Down);
    let layer = eager(&issuer);
    let (svc, seen) = service(&layer);
    let token = key.sign(&issuer.claims(AUD));

    let answer = send(&svc, bearer(&token)).await;
    assert_eq!(answer.status, 503, "{}", answer.body);
    assert_eq!(answer.error_type(), "api_error");
    assert_eq!(answer.headers["x-should-retry"], "true");
    assert!(answer.headers.get("www-authenticate").is_none());
    assert!(
        answer
            .message()
            .starts_with("identity provider unreachable")
    );

    issuer.set_mode(Mode::Up);
    assert_eq!(status(&svc, &token).await, 200);
    assert_eq!(seen.lock().unwrap().len(), 1);

    // Nothing listening at all: the same 503.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = format!("http://{}", listener.local_addr().unwrap());
    drop(listener);
    let layer = IdentityLayer::new(
        IdentityConfig::default()
            .with_issuer(&closed)
            .with_audience(AUD),
    )
    .unwrap();
    let (svc, _) = service(&layer);
    let claims = with(issuer.claims(AUD), json!({"iss": closed}));
    assert_eq!(status(&svc, &key.sign(&claims)).await, 503);
}

#[tokio::test]
async fn keys_can_be_fetched_at_start_up() {
    let key = SigningKey::rsa("k1");
    let issuer = Issuer::start(&[&key]).await;
    let down = Issuer::start(&[&key]).await;
    down.set_mode(Mode::Down);
    let layer = IdentityLayer::new(config(&issuer).with_issuer(down.iss())).unwrap();
    assert_eq!(layer.fetch_keys().await, Err(vec![down.iss()]));
    assert_eq!(issuer.jwks_hits(), 1);
    // The first token waits for nothing.
    let (svc, _) = service(&layer);
    assert_eq!(status(&svc, &key.sign(&issuer.claims(AUD))).await, 200);
    assert_eq!(issuer.jwks_hits(), 1);
    down.set_mode(Mode::Up);
    assert_eq!(layer.fetch_keys().await, Ok(()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_requests_with_a_new_kid_cause_one_fetch() {
    let (old, new) = (SigningKey::rsa("old"), SigningKey::rsa("new"));
    let issuer = Issuer::start(&[&old]).await;
    let layer = eager(&issuer);
    let (svc, seen) = service(&layer);
    assert_eq!(status(&svc, &old.sign(&issuer.claims(AUD))).await, 200);
    assert_eq!(issuer.jwks_hits(), 1);

    issuer.publish(&[&old, &new]);
    let tokens: Vec<String> = (0..4)
        .map(|i| new.sign(&with(issuer.claims(AUD), json!({"jti": i}))))
        .collect();
    let requests = (0..10_000).map(|i| {
        let svc = svc.clone();
        let token = tokens[i % tokens.len()].clone();
        tokio::spawn(async move { status(&svc, &token).await })
    });
    let statuses = futures_util::future::join_all(requests).await;
    assert!(statuses.iter().all(|s| *s.as_ref().unwrap() == 200));
    assert_eq!(issuer.jwks_hits(), 2, "one fetch for 10,000 requests");
    assert_eq!(seen.lock().unwrap().len(), 10_001);
}

#[tokio::test]
async fn a_slow_issuer_is_cut_off_and_blocks_nobody_else() {
    let key = SigningKey::rsa("k1");
    let issuer = Issuer::start(&[&key]).await;
    issuer.set_mode(Mode::Slow);
    let layer = IdentityLayer::new(
        config(&issuer)
            .with_fetch_timeout(Duration::from_secs(1))
            .with_client_key("ci", "k-ci"),
    )
    .unwrap();
    let (svc, _) = service(&layer);

    let waiting = {
        let svc = svc.clone();
        let token = key.sign(&issuer.claims(AUD));
        tokio::spawn(async move { send(&svc, bearer(&token)).await })
    };
    tokio::task::yield_now().await;
    // While the token waits for keys, a client key goes straight through.
    let started = std::time::Instant::now();
    assert_eq!(send(&svc, request("x-api-key", "k-ci")).await.status, 200);
    assert!(started.elapsed() < Duration::from_millis(500));
    assert!(!waiting.is_finished());

    let answer = waiting.await.unwrap();
    assert_eq!(answer.status, 503);
    assert!(started.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn huge_or_malformed_keys_on_a_cold_start_are_503() {
    let key = SigningKey::rsa("k1");
    for mode in [Mode::Huge, Mode::Malformed] {
        let issuer = Issuer::start(&[&key]).await;
        issuer.set_mode(mode);
        let layer = IdentityLayer::new(config(&issuer)).unwrap();
        let (svc, _) = service(&layer);
        let answer = send(&svc, bearer(&key.sign(&issuer.claims(AUD)))).await;
        assert_eq!(answer.status, 503, "{mode:?}");
    }
}

#[tokio::test]
async fn an_entra_tenant_accepts_both_issuer_forms() {
    const TID: &str = "72f988bf-86f1-41af-91ab-2d7cd011db47";
    let key = SigningKey::rsa("entra-1");
    let login = Issuer::start_at(&format!("/{TID}/v2.0"), &[&key]).await;
    let sts = format!("{}/sts", login.base);
    let layer = IdentityLayer::new(
        IdentityConfig::default()
            .with_entra_tenant(TID)
            .with_entra_authority(&login.base, &sts),
    )
    .unwrap();
    let (svc, seen) = service(&layer);
    let v2 = with(login.claims("https://ai.azure.com"), json!({"tid": TID}));
    let v1 = with(
        v2.clone(),
        json!({"iss": format!("{sts}/{TID}/"), "aud": "https://cognitiveservices.azure.com", "ver": "1.0"}),
    );
    for claims in [&v2, &v1] {
        let answer = send(&svc, bearer(&key.sign(claims))).await;
        assert_eq!(answer.status, 200, "{}", answer.body);
    }
    assert_eq!(
        seen.lock().unwrap()[1].as_ref().unwrap().tenant(),
        Some(TID)
    );
    assert_eq!(login.jwks_hits(), 1, "v1 and v2 share one key set");

    let other_tenant = with(
        v2.clone(),
        json!({"tid": "00000000-0000-0000-0000-000000000000"}),
    );
    assert_eq!(status(&svc, &key.sign(&other_tenant)).await, 403);
    let graph = with(v2, json!({"aud": "https://graph.microsoft.com"}));
    assert_eq!(status(&svc, &key.sign(&graph)).await, 401);
}

#[test]
fn settings_it_cannot_use_are_refused() {
    let err = |c: IdentityConfig| IdentityLayer::new(c).unwrap_err().setting();
    assert_eq!(err(IdentityConfig::default()), "identity");
    assert_eq!(
        err(IdentityConfig::default().with_issuer("https://idp.example")),
        "CLAUDE_TOWER_OIDC_AUDIENCE"
    );
    assert_eq!(
        err(IdentityConfig::default()
            .with_issuer("http://idp.example")
            .with_audience(AUD)),
        "CLAUDE_TOWER_OIDC_ISSUER"
    );
    assert_eq!(
        err(IdentityConfig::default()
            .with_client_key("a", "k")
            .with_algorithms(["HS256"])),
        "algorithms"
    );
}
