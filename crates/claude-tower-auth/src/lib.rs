//! Endpoint and credential injection for Anthropic direct and Azure AI
//! Foundry: API keys and Entra ID tokens.
//!
//! [`AuthLayer`] is the last layer before the transport on every route. Per
//! request, [`Auth`]:
//!
//! 1. removes every inbound credential header (`x-api-key`, `api-key`,
//!    `authorization`) and the inbound `host`, so a caller's key or a
//!    developer's gateway token never travels upstream (unless the route's
//!    credential is [`Credential::passthrough`]: then the caller's own
//!    credential is what is sent, and only to a route of the caller's face);
//! 2. removes the hop-by-hop headers of the caller's connection
//!    (`Connection` and what it names, `Keep-Alive`, `TE`,
//!    `Transfer-Encoding`, `Upgrade`, `Proxy-*`) and `Cookie`: see [`hop`];
//! 3. sets the request's version to HTTP/1.1, whatever the caller spoke:
//!    the transport chooses (hyper-util sends it as HTTP/2 where ALPN chose
//!    h2), and an HTTP/2 caller's version on an HTTP/1 connection would
//!    fail before reaching the route;
//! 4. moves the URI onto the route's [`Endpoint`], keeping the path relative
//!    to the route prefix and the query string (an inbound `/anthropic`
//!    prefix is dropped: see [`endpoint`]);
//! 5. sets `anthropic-version: 2023-06-01` when absent;
//! 6. injects the route's [`Credential`]: `x-api-key` (Anthropic),
//!    `x-api-key` + `api-key` (Foundry key), or `Authorization: Bearer`
//!    from any `azure_core` `TokenCredential` (feature `entra`, on by default).
//!
//! On the way back it removes the upstream connection's hop-by-hop headers
//! and `Set-Cookie` from the response, and changes nothing else.
//!
//! # Tokens
//!
//! Entra ID tokens are cached per credential and shared by every clone of
//! the service. A request that finds a valid token injects it synchronously:
//! no allocation, no await. The token is refreshed in the background ahead of
//! expiry (5 minutes by default); concurrent requests on a cold cache share
//! one `get_token` call; a failed refresh keeps serving the old token while
//! it is valid and retries with backoff; a 401 on a bearer request forgets
//! the token so the retry above fetches a new one. When no valid token can
//! be had, the error is a boxed [`ClaudeError`](claude_tower_core::ClaudeError)
//! of class [`Auth`](claude_tower_core::ErrorClass::Auth) naming the credential
//! type and scope, never the token.
//!
//! Without the `entra` feature the crate pulls nothing from the Azure SDK and
//! only API keys are available.
//!
//! # Example
//!
//! ```
//! use claude_tower_auth::{AuthLayer, Credential, Endpoint, Secret};
//! use http::{Request, Response};
//! use tower::{Layer, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
//! let layer = AuthLayer::new(
//!     Endpoint::foundry_resource("my-res")?,
//!     Credential::foundry_api_key(Secret::new("route-key"))?,
//! );
//! // A stand-in transport that shows what would be sent.
//! let transport = service_fn(|req: Request<String>| async move {
//!     assert_eq!(
//!         req.uri(),
//!         "https://my-res.services.ai.azure.com/anthropic/v1/messages?beta=true"
//!     );
//!     assert_eq!(req.headers()["api-key"], "route-key");
//!     assert_eq!(req.headers()["x-api-key"], "route-key");
//!     assert_eq!(req.headers()["anthropic-version"], "2023-06-01");
//!     assert!(req.headers().get("authorization").is_none());
//!     Ok::<_, std::convert::Infallible>(Response::new(String::new()))
//! });
//!
//! let request = Request::post("/anthropic/v1/messages?beta=true")
//!     .header("authorization", "Bearer developer-gateway-token")
//!     .body(String::from("{}"))?;
//! layer.layer(transport).oneshot(request).await?;
//! # Ok(())
//! # }
//! ```

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

#[cfg(feature = "entra")]
mod cache;
#[cfg(feature = "entra")]
mod chain;
mod credential;
pub mod endpoint;
mod env;
mod error;
pub mod future;
pub mod hop;
mod layer;
mod secret;
mod service;

#[cfg(feature = "entra")]
pub use cache::{COGNITIVE_SERVICES_SCOPE, DEFAULT_SCOPE, EntraConfig};
#[cfg(feature = "entra")]
pub use chain::EnvCredentialChain;
pub use credential::Credential;
pub use endpoint::{ANTHROPIC_BASE_URL, Endpoint};
pub use error::ConfigError;
pub use layer::AuthLayer;
pub use secret::Secret;
pub use service::Auth;

/// The error type of [`Auth`]: the same as `tower::BoxError`.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
