//! Tower middleware for calling Claude reliably over Anthropic direct and
//! Azure AI Foundry.
//!
//! Each concern is one layer in its own crate, re-exported here behind a
//! feature of the same name (all on by default):
//!
//! | feature | crate | what it does |
//! |---|---|---|
//! | (always) | [`core`] | shared vocabulary: `RouteId`, `Face`, `ErrorClass`, `ClaudeError`, `ReplayBody` |
//! | `normalize` | [`normalize`] | one error surface for both routes: retry hints, envelopes, request ids |
//! | `retry` | [`retry`] | `tower::retry::Policy` honouring Retry-After, jittered backoff, budget |
//! | `failover` | [`failover`] | ordered routes, circuit breakers, model-id mapping |
//! | `auth` | [`auth`] | endpoint + credential injection (Anthropic key, Foundry key, Entra ID) |
//! | `toolpair` | [`toolpair`] | `tool_use` / `tool_result` pairing validation and repair |
//! | `stack` | [`stack`] | [`ClaudeStack`](stack::ClaudeStack): the default stack from a list of routes |
//! | `transport` | [`transport`] | the default hyper-util + rustls client |
//! | `reqwest` | [`reqwest`] | `ReqwestService` transport and `ClaudeMiddleware` for reqwest-middleware |
//! | `full` | | all of the above (default) |
//!
//! To take one layer alone, depend on its crate (`claude-tower-retry`, ...):
//! nothing here is needed for that, and nothing from Azure is pulled in.
//!
//! The pieces that glue the layers together live here: [`replay`] (buffer the
//! body once so it can be resent) and, with `stack`, [`envelope`] (answer
//! failures in Anthropic's envelope) and [`stack`].
//!
//! ```no_run
//! use claude_tower::prelude::*;
//! use tower::ServiceExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let claude = ClaudeStack::new()
//!     .route(Route::from_auth("anthropic", AuthLayer::from_env()?))
//!     .build(claude_tower::transport::https_client()?)?;
//!
//! let request = http::Request::post("/v1/messages")
//!     .header("content-type", "application/json")
//!     .body(http_body_util::Full::new(bytes::Bytes::from_static(
//!         br#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}"#,
//!     )))?;
//! let response = claude.oneshot(request).await?;
//! println!("{}", response.status());
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

#[cfg(feature = "stack")]
pub mod envelope;
pub use claude_tower_core::replay;
#[cfg(feature = "stack")]
pub mod stack;
#[cfg(feature = "transport")]
pub mod transport;

/// The shared vocabulary: routes, faces, error classes, `ClaudeError`.
pub use claude_tower_core as core;

#[cfg(feature = "auth")]
#[doc(inline)]
pub use claude_tower_auth as auth;
#[cfg(feature = "failover")]
#[doc(inline)]
pub use claude_tower_failover as failover;
#[cfg(feature = "normalize")]
#[doc(inline)]
pub use claude_tower_normalize as normalize;
#[cfg(feature = "reqwest")]
#[doc(inline)]
pub use claude_tower_reqwest as reqwest;
#[cfg(feature = "retry")]
#[doc(inline)]
pub use claude_tower_retry as retry;
#[cfg(feature = "toolpair")]
#[doc(inline)]
pub use claude_tower_toolpair as toolpair;

/// The names most programs need, in one import.
pub mod prelude {
    pub use crate::core::{
        Attempt, ClaudeError, ErrorClass, Face, ReplayBody, RequestIds, RetryAfter, RouteId,
        error_response,
    };
    pub use crate::replay::ReplayLayer;

    #[cfg(feature = "auth")]
    pub use crate::auth::{AuthLayer, Credential, Endpoint, Secret};
    #[cfg(feature = "failover")]
    pub use crate::failover::{
        BreakerConfig, FailoverLayer, FailoverReport, ModelMapLayer, ModelMapping,
    };
    #[cfg(feature = "normalize")]
    pub use crate::normalize::NormalizeLayer;
    #[cfg(feature = "retry")]
    pub use crate::retry::{RetryAfterPolicy, RetryLayer};
    #[cfg(feature = "stack")]
    pub use crate::stack::{ClaudeService, ClaudeStack, Route};
    #[cfg(feature = "toolpair")]
    pub use crate::toolpair::{Mode, ToolPairingLayer};
}
