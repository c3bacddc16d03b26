//! Who is calling: one tower layer that checks Entra ID / OpenID Connect
//! tokens and client keys, and hands a [`Caller`] to everything below it.
//!
//! [`IdentityLayer`] reads the request's credential — `Authorization:
//! Bearer`, `x-api-key` or `api-key` — and either inserts a
//! [`Caller`](claude_tower_core::Caller) into the request's extensions and
//! calls the inner service, or answers itself in Anthropic's error envelope:
//!
//! | problem | status | `error.type` |
//! |---|---|---|
//! | no credential, a malformed or unknown one, a token that is expired, for another audience, from an unknown issuer, signed with an unknown key or badly | 401 + `WWW-Authenticate: Bearer error="invalid_token"` | `authentication_error` |
//! | authenticated but not allowed: tenant, role, group, client app | 403 | `permission_error` |
//! | a token's issuer unreachable and none of its keys cached | 503 + `x-should-retry: true` | `api_error` |
//!
//! The message names the problem (`token expired`, `token audience not
//! accepted`...) and never quotes the credential; log lines carry the same
//! kind and nothing else.
//!
//! ```
//! use axum::{Extension, Router, routing::post};
//! use claude_tower_core::{AuthMethod, Caller};
//! use claude_tower_identity::{IdentityConfig, IdentityLayer};
//! use http::{Request, StatusCode};
//! use tower::ServiceExt;
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let identity = IdentityLayer::new(
//!     IdentityConfig::default().with_client_key("ci-bot", "k-9f2c41d0"),
//! )
//! .expect("valid identity settings");
//!
//! let app = Router::new()
//!     .route(
//!         "/v1/messages",
//!         post(|Extension(caller): Extension<Caller>| async move {
//!             format!("hello {} ({})", caller.id(), caller.method())
//!         }),
//!     )
//!     .layer(identity);
//!
//! let request = |key: &str| {
//!     Request::post("/v1/messages")
//!         .header("x-api-key", key)
//!         .body(axum::body::Body::empty())
//!         .unwrap()
//! };
//! let ok = app.clone().oneshot(request("k-9f2c41d0")).await.unwrap();
//! assert_eq!(ok.status(), StatusCode::OK);
//! let bad = app.oneshot(request("k-guess")).await.unwrap();
//! assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
//! assert_eq!(bad.headers()["www-authenticate"], "Bearer error=\"invalid_token\"");
//! # let _ = AuthMethod::ClientKey;
//! # }
//! ```
//!
//! Entra ID needs only the tenant: `IdentityConfig::default()
//! .with_entra_tenant("72f988bf-…")` accepts that tenant's v1
//! (`https://sts.windows.net/{tid}/`) and v2
//! (`https://login.microsoftonline.com/{tid}/v2.0`) tokens for the audiences
//! Claude Code's `DefaultAzureCredential` asks for
//! (`https://cognitiveservices.azure.com`, `https://ai.azure.com`), unless
//! audiences are set. Any other OpenID Connect issuer is one
//! [`with_issuer`](IdentityConfig::with_issuer) plus an audience. The
//! gateway reads the same settings from the environment
//! ([`IdentityConfig::from_lookup`]) or an `[identity]` config section.
//!
//! # Claude Code set-ups
//!
//! Three ways developers reach a gateway running this layer, each giving a
//! per-developer [`Caller`]:
//!
//! 1. **Foundry mode with `az login`** (an Entra token). Gateway:
//!    `CLAUDE_TOWER_ENTRA_TENANT_ID=<tenant id>`. Developer: `az login`, then
//!    `CLAUDE_CODE_USE_FOUNDRY=1` and
//!    `ANTHROPIC_FOUNDRY_BASE_URL=https://gateway.example.com/anthropic`
//!    with no Foundry key: `DefaultAzureCredential` sends
//!    `Authorization: Bearer <token>` for `https://ai.azure.com` (or
//!    `https://cognitiveservices.azure.com`), both accepted by default.
//!    (Leave `CLAUDE_CODE_SKIP_FOUNDRY_AUTH` unset: it sends no token.)
//! 2. **An `apiKeyHelper` printing a per-user token.** Gateway as above (or
//!    `CLAUDE_TOWER_OIDC_ISSUER` + `CLAUDE_TOWER_OIDC_AUDIENCE` for another
//!    identity provider). Developer: `ANTHROPIC_BASE_URL=https://gateway.example.com`
//!    and in `settings.json`
//!    `"apiKeyHelper": "az account get-access-token --resource https://cognitiveservices.azure.com --query accessToken -o tsv"`.
//!    Claude Code sends the value as `x-api-key` and `Authorization:
//!    Bearer` and asks the helper again every 5 minutes; the token is
//!    verified once and then served from the cache.
//! 3. **Per-user static keys.** Gateway:
//!    `CLAUDE_TOWER_CLIENT_KEYS=ada=k-7c1e…,grace=k-09fa…`. Developer:
//!    `ANTHROPIC_BASE_URL=https://gateway.example.com` and
//!    `ANTHROPIC_API_KEY=k-7c1e…`; the caller id is `ada`.
//!
//! # Credentials
//!
//! The first of `Authorization: Bearer`, `x-api-key`, `api-key` is read
//! (Claude Code's `apiKeyHelper` value arrives in both of the first two). A
//! value shaped like a JWT — three base64url segments, the first `eyJ` — is
//! checked as a token, anything else as a client key; a client key is
//! matched first either way, so a helper that prints a JWT-looking key still
//! works. Values over 32 KiB are refused before anything is decoded: a
//! "token" with 10 MB of claims costs a length check.
//!
//! Client keys are named (`name=key`; the name is the caller id) and held as
//! SHA-256 hashes only; the presented key's hash is compared with every
//! stored one in constant time ([`subtle`]), so neither a match nor its
//! position shows in the timing.
//!
//! # Tokens
//!
//! The token's `iss` picks the issuer (an unknown one is refused before any
//! key is looked at), its `kid` the key, its `alg` must be on the allow-list
//! (RS256 and ES256 by default; `none` and HMAC can never be configured, and
//! a key is only ever used for its own family and curve). Then the
//! signature, `exp` and `nbf` within the clock skew (60 s), the audience
//! list, `exp` no further than 24 h ahead (a token "valid until 9999" is
//! refused, not cached for ever), and the policy: tenant allow-list (an
//! Entra issuer's tokens must carry its own `tid`), required roles, groups,
//! client application (`azp`/`appid`) — each "at least one of".
//!
//! The caller's id is `oid` (Entra's stable object id), else `sub`; its
//! display name `upn`, `preferred_username` or `name`; tenant `tid`; groups
//! and roles as the token lists them.
//!
//! ## Why validated tokens are cached by hash
//!
//! A developer's Entra token lives about an hour and rides on every request
//! Claude Code sends in that hour. A first check (decode, RS256 signature,
//! claims, policy) costs about 30 µs in the `identity` bench; a cache hit costs one
//! SHA-256 of the token and one map read (1.6 µs for a 2.3 KiB Entra-sized
//! token, 1.3 µs of it the hash). The key is the token's
//! SHA-256, never the token, so the cache holds nothing a memory dump could
//! replay, and the hash is the same one client keys are compared by, so it
//! is computed once per request. An entry lives until the token's own `exp`
//! — never beyond — and the cache is bounded (10,000 entries by default;
//! when full, expired entries go first, then an arbitrary sixteenth). A
//! cached token stays accepted if its key is rotated out before it expires,
//! exactly as a token checked once and held by a session would be.
//!
//! ## Why an unknown `kid` re-fetches at most once per five minutes
//!
//! Keys are fetched by OpenID discovery (`{issuer}/.well-known/
//! openid-configuration`, then its `jwks_uri`) when a token first needs
//! them, and again in the background once they are an hour old. A token
//! whose `kid` is not cached may mean a key rotation, so it triggers a fetch
//! — but anyone can mint a token with a random `kid`, and if each did, the
//! gateway would hammer the identity provider on an attacker's behalf. So a
//! `kid`-driven fetch happens at most once per five minutes per issuer (the
//! rule Azure API Management's `validate-jwt` follows), and it is a single
//! flight: ten thousand requests arriving together with a new `kid` share
//! one fetch, which runs as its own task so a client that disconnects does
//! not cancel it for the others. Only those requests wait; callers whose
//! keys are cached never do. A fetch is bounded: 10 s in all, 64 KiB of
//! discovery, 1 MiB of JWKS; a document that is malformed or has no usable
//! key never replaces the keys in hand.
//!
//! ## Why 503 and not 401 when the identity provider is down
//!
//! A 401 tells a client its credential is bad: Anthropic's SDKs raise
//! `AuthenticationError` and never retry it, and a developer goes looking
//! for a problem in their login that is not there. When the issuer cannot
//! be reached and none of its keys are cached, the token was not judged at
//! all, so the answer is 503 `api_error` with `x-should-retry: true` (and a
//! `retry-after` until the next fetch may be tried, at most 10 s later):
//! the SDK retries, and the request succeeds once the issuer is back. With
//! keys cached, an unreachable issuer changes nothing: tokens keep being
//! checked against them.
//!
//! # The JWT crate
//!
//! [`jsonwebtoken`] 12 with only its `aws_lc_rs` feature, chosen on upkeep
//! and crypto backend:
//!
//! - Upkeep: the most used JWT crate, released steadily (10.0 in 2025-09
//!   through 12.0 in 2026-11); 12 closed the last claim type confusions
//!   (`sub`, `iss`, `aud`) and rejects unknown `crit` extensions.
//! - Backend: since 10 the crypto is a provider; `aws_lc_rs` is the
//!   aws-lc-rs that rustls already uses here — one crypto stack, no `ring`,
//!   no RustCrypto `rsa` (whose open Marvin advisory, RUSTSEC-2023-0071,
//!   concerns private-key use only, but every advisory scan would flag). It adds
//!   only `signature` and `zeroize` to the tree; its MIT licence (and
//!   theirs, Apache-2.0/MIT) pass `deny.toml`.
//! - Passed over: `josekit` (OpenSSL, banned by `deny.toml`), `jwt-simple`
//!   (BoringSSL or its own pure-Rust stack: a second crypto stack), and a
//!   hand-written verifier on aws-lc-rs (less code, but claim handling is
//!   where JWT libraries have had their bugs).
//!
//! The crate verifies signatures and the standard claims (`exp`, `nbf`,
//! `iss`, `aud`); this crate picks the key itself (by `iss` and `kid`, with
//! the algorithm checked against the key's family and curve), parses JWKS
//! documents itself (skipping unusable keys instead of failing the whole
//! document), and hashes with aws-lc-rs too.
//!
//! # Start-up
//!
//! Building the layer fetches nothing. A gateway calls
//! [`IdentityLayer::fetch_keys`] once at start-up so the first developer
//! does not wait for discovery and an unreachable issuer is logged before
//! traffic arrives.
//!
//! [`Caller`]: claude_tower_core::Caller

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod config;
mod credential;
mod http;
mod jwks;
mod rejection;
mod service;
mod token;

#[cfg(feature = "test-util")]
pub mod test_util;

pub use config::{
    ENTRA_DEFAULT_AUDIENCES, ENTRA_LOGIN, ENTRA_STS, ENV_VARIABLES, IdentityConfig,
    InvalidIdentityConfig,
};
pub use rejection::{Rejection, RejectionKind};
pub use service::{Identity, IdentityLayer, ResponseFuture};

/// The future type [`Identity`] returns (also at the crate root).
pub mod future {
    pub use crate::service::ResponseFuture;
}
