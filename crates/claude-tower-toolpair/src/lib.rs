//! Catch broken `tool_use` / `tool_result` pairing in Messages API requests
//! before it costs a round trip.
//!
//! Clients that compact or trim long conversations often break the pairing
//! rules, and the API (Foundry strictly) answers with a 400 after the request
//! was paid for in latency. This crate checks the rules locally:
//!
//! - every `tool_use` in an assistant message has a `tool_result` with its id
//!   at the start of the very next message, which is a user message (the API
//!   does not look past the first block that is not a `tool_result`, so a
//!   result placed after text counts as missing);
//! - every `tool_result` answers a `tool_use` of the immediately preceding
//!   assistant message, once;
//! - server tools pair within their own message: a `web_search_tool_result`
//!   (any `*_tool_result` other than `tool_result`) needs a `server_tool_use`
//!   (or `mcp_tool_use`) with its id before it in the same message, and never
//!   pairs with a user `tool_result`; a `server_tool_use` left without a
//!   result is allowed (a `pause_turn` continuation);
//! - `tool_use` ids are unique across the conversation;
//! - content may be a string or blocks.
//!
//! Three entry points:
//!
//! - [`validate`]: `Ok(`[`Report`]`)` or the first [`PairingError`], whose
//!   `Display` is the API's own wording (`messages.N: \`tool_use\` ids were
//!   found without \`tool_result\` blocks immediately after: ...`), so
//!   clients that match on the API's text keep working. Bodies that are not
//!   JSON or not Messages requests are `Ok` with [`BodyKind`] saying so.
//! - [`repair`] / [`repair_bytes`]: conservative, documented fixes spliced
//!   into the body; a body with nothing to fix comes back byte-identical.
//! - [`ToolPairingLayer`]: a tower layer over `Service<Request<B>>` for any
//!   [`BufferedBody`](claude_tower_core::BufferedBody) `B` (core's
//!   `ReplayBody`, which core's `ReplayLayer` makes from any body), with
//!   three [`ToolPairingMode`]s: `Reject` (default; a local 400 in
//!   Anthropic's envelope, nothing sent upstream), `Repair`, `Observe`.
//!   Local answers use core's `ResponseBody`.
//!
//! The crate also holds [`ModelMapLayer`] ([`model_map`]): the per-route
//! rewrite of the request's top-level `"model"`, on the same scanner.
//!
//! ```
//! use bytes::Bytes;
//! use claude_tower_core::ReplayBody;
//! use claude_tower_toolpair::ToolPairingLayer;
//! use http::{Request, Response};
//! use http_body_util::BodyExt;
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")] async fn main() {
//! let upstream = service_fn(|_req: Request<ReplayBody>| async {
//!     panic!("a broken request must not reach the upstream");
//!     #[allow(unreachable_code)]
//!     Ok::<_, std::convert::Infallible>(Response::new(http_body_util::Empty::<Bytes>::new()))
//! });
//! let svc = ServiceBuilder::new()
//!     .layer(ToolPairingLayer::reject())
//!     .service(upstream);
//!
//! let body = r#"{"model":"m","max_tokens":1,"messages":[
//!   {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_gone","content":"ok"}]}]}"#;
//! let req = Request::post("https://gw.example/anthropic/v1/messages?beta=true")
//!     .body(ReplayBody::from(body))
//!     .unwrap();
//! let res = svc.oneshot(req).await.unwrap();
//! assert_eq!(res.status(), 400);
//! let json = res.into_body().collect().await.unwrap().to_bytes();
//! let json = String::from_utf8(json.to_vec()).unwrap();
//! assert!(json.contains("messages.0.content.0: unexpected `tool_use_id` found in `tool_result` blocks: toolu_gone."));
//! # }
//! ```
//!
//! # Why a hand-written scanner
//!
//! The layer runs on every request, and long Claude Code conversations send
//! bodies of megabytes, almost all of it text the rules never look at:
//! message text, tool inputs, tool result contents, the system prompt, tool
//! definitions. Pairing needs four strings per block (`role`, `type`, `id`,
//! `tool_use_id`) and the byte spans of messages and blocks (for repair).
//!
//! - `serde_json::Value` builds a tree and copies every string: the baseline
//!   to beat, not a candidate.
//! - serde with borrowed types and `IgnoredAny` avoids the allocations but
//!   still walks every string byte by byte to find its end and validate
//!   escapes, and cannot give byte offsets for splicing repairs.
//! - sonic-rs is SIMD-fast but a large dependency with `unsafe` throughout
//!   and its own platform story; it also does not hand back offsets.
//! - A scanner that skips a string by finding each `"` and counting the
//!   backslashes before it never looks at other escapes, skips nested tool
//!   inputs with an explicit stack (no recursion, so hostile nesting cannot
//!   overflow the stack), records the spans repair splices at, and borrows
//!   the body: no copy. Quotes are searched eight bytes at a time in a
//!   register, every quote of a word handled from one mask (escaped quotes
//!   in code sit a few bytes apart, where a `memchr` call per quote costs
//!   more in setup than it saves), and with `memchr`'s vectorized search
//!   once 64 bytes pass without one. An earlier version with a `memchr`
//!   call per quote ran at about 2x serde_json on escape-dense text; this
//!   one clears the 4x bar.
//!
//! So: the scanner. The `validate` bench (`benches/validate.rs`) measures
//! it against `serde_json::from_slice::<Value>` on generated 5 MB,
//! 400-message conversations in one run. On a loaded 2-core machine
//! (numbers vary between runs by up to 2x): Claude Code-like body 3.9 GiB/s
//! vs 430 MiB/s (9.3x); escape-dense body (four escaped quotes per 85-byte
//! line) 1.9 GiB/s vs 295 MiB/s (6.5x).
//!
//! The scanner is structurally strict (objects, arrays, literals, numbers,
//! trailing bytes) but lexically lenient inside the strings it skips (raw
//! control characters, bad escapes, invalid UTF-8 are not looked for).
//! Every string it materializes is decoded strictly. The leniency can only
//! turn "invalid JSON" (passed through, the upstream answers 400) into a
//! pairing verdict on a body the upstream rejects anyway.
//!
//! # Wording
//!
//! Each [`PairingError`] renders the API's own text: a missing result
//! (`messages.N: \`tool_use\` ids were found without ...`, ids joined by
//! `", "`), an unexpected result (`messages.N.content.M: unexpected
//! \`tool_use_id\` found in \`tool_result\` blocks: ...`), the same for a
//! server result (`... must have a corresponding \`server_tool_use\` block
//! before it.`), a repeated result (`... each tool_use must have a single
//! result. Found multiple \`tool_result\` blocks with id: ...`) and a
//! repeated id (`messages.N.content.M: \`tool_use\` ids must be unique`).
//! A result placed after text is reported as the API reports it: as missing.
//!
//! # Limits
//!
//! Messages are taken one by one, as the rules above state them: a result
//! that sits in a second consecutive user message counts as misplaced. A
//! `tool_use` block in a user message is left to the upstream (it is a
//! schema matter, not a pairing one).
//!
//! # Which requests are checked
//!
//! `POST` requests whose path ends in `/v1/messages` or
//! `/v1/messages/count_tokens`, with any prefix (Foundry's `/anthropic`)
//! and any query string (Claude Code sends `?beta=true`). count_tokens
//! validates pairing the same way the Messages endpoint does, so a broken
//! body fails there too. Everything else passes through untouched, as do
//! bodies that are not JSON or not shaped like a Messages request.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod future;
mod layer;
pub mod model_map;
mod repair;
mod scan;
pub mod skim;
mod validate;

pub use layer::{Repairs, ToolPairing, ToolPairingLayer, ToolPairingMode};
pub use model_map::{ModelMap, ModelMapLayer, ModelMapping};
pub use repair::{Change, Repaired, SYNTHETIC_RESULT_TEXT, repair, repair_bytes};
pub use validate::{BodyKind, JsonError, PairingError, Report, ToolUseRef, validate};
