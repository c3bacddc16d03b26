//! Tower middleware for calling Claude reliably over Anthropic direct and
//! Azure AI Foundry.
//!
//! Each concern is one layer in its own crate, re-exported here behind a
//! feature of the same name:
//!
//! | feature | crate | what it does |
//! |---|---|---|
//! | (always) | [`core`] | shared vocabulary: `RouteId`, `Face`, `ErrorClass`, `ClaudeError`, `ReplayBody`, `ReplayLayer` |
//! | `normalize` | [`normalize`] | one error surface for both routes: retry hints, envelopes, request ids |
//! | `retry` | [`retry`] | `tower::retry::Policy` honouring Retry-After, jittered backoff, budget |
//! | `failover` | [`failover`] | ordered routes, circuit breakers, `ErrorEnvelopeLayer` |
//! | `auth` | [`auth`] | endpoint + credential injection with API keys (Anthropic, Foundry); no Azure SDK |
//! | `entra` | | `auth` plus Entra ID bearer tokens (pulls the Azure SDK) |
//! | `toolpair` | [`toolpair`] | `tool_use` / `tool_result` pairing validation and repair; model-id mapping |
//! | `stack` | [`stack`] | [`ClaudeStack`](stack::ClaudeStack): the stack from a list of routes (default) |
//! | `transport` | [`transport`] | the default hyper-util + rustls client (default) |
//! | `full` | | all of the above |
//!
//! To take one layer alone, depend on its crate (`claude-tower-retry`, ...):
//! nothing here is needed for that, and nothing from Azure is pulled in.
//! For reqwest, depend on `claude-tower-reqwest`: it builds its middleware
//! from this crate's [`ClaudeStack`](stack::ClaudeStack) and
//! [`Route`](stack::Route), so this crate does not re-export it (that would
//! be a dependency cycle).
//!
//! ```
//! use claude_tower::prelude::*;
//! use claude_tower_sim::{Sim, SimConfig};
//! use tower::ServiceExt;
//!
//! # #[tokio::main] async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The simulator stands in for api.anthropic.com (use `Endpoint::anthropic()`).
//! let sim = Sim::start(SimConfig::default()).await?;
//! let claude = ClaudeStack::new()
//!     .route(Route::new(
//!         "anthropic",
//!         Endpoint::anthropic_base_url(&sim.anthropic_base_url())?,
//!         Credential::anthropic_api_key(Secret::new("sk-ant-..."))?,
//!     ))
//!     .build(claude_tower::transport::https_client()?)?;
//!
//! let request = http::Request::post("/v1/messages")
//!     .header("content-type", "application/json")
//!     .body(http_body_util::Full::new(bytes::Bytes::from_static(
//!         br#"{"model":"claude-sonnet-4-5","max_tokens":64,"messages":[{"role":"user","content":"Hi"}]}"#,
//!     )))?;
//! let response = claude.oneshot(request).await?;
//! assert_eq!(response.status(), 200);
//! # Ok(()) }
//! ```

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

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
#[cfg(feature = "retry")]
#[doc(inline)]
pub use claude_tower_retry as retry;
#[cfg(feature = "toolpair")]
#[doc(inline)]
pub use claude_tower_toolpair as toolpair;

/// The names most programs need, in one import.
pub mod prelude {
    pub use crate::core::{
        Attempt, ClaudeError, ErrorClass, Face, ReplayBody, ReplayLayer, RequestIds, ResponseBody,
        RetryAfter, RouteId, error_response,
    };

    #[cfg(feature = "auth")]
    pub use crate::auth::{AuthLayer, Credential, Endpoint, Secret};
    #[cfg(feature = "failover")]
    pub use crate::failover::{BreakerConfig, ErrorEnvelopeLayer, FailoverLayer, FailoverReport};
    #[cfg(feature = "normalize")]
    pub use crate::normalize::NormalizeLayer;
    #[cfg(feature = "retry")]
    pub use crate::retry::{RetryAfterPolicy, RetryLayer};
    #[cfg(feature = "stack")]
    pub use crate::stack::{ClaudeService, ClaudeStack, Route};
    #[cfg(feature = "toolpair")]
    pub use crate::toolpair::{ModelMapLayer, ModelMapping, ToolPairingLayer, ToolPairingMode};
}
