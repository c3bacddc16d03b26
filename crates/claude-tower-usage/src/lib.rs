//! Token usage read from every Claude response as it streams: one
//! [`UsageRecord`] per request, to metrics, logs and quota settlement.
//!
//! [`UsageLayer`] wraps any tower HTTP service. It forwards every byte of the
//! response unchanged and as it arrives, reads the usage on the way, and when
//! the body ends, fails, or is dropped (the client went away) hands exactly
//! one [`UsageRecord`] to each configured [`UsageSink`], then to the
//! [`UsageHook`] an inner layer (a quota) put into the response.
//!
//! ```
//! use std::sync::{Arc, Mutex};
//!
//! use bytes::Bytes;
//! use claude_tower_core::usage::{TokenUsage, UsageRecord};
//! use claude_tower_core::{Face, RouteId};
//! use claude_tower_usage::{TracingSink, UsageLayer};
//! use http::{Request, Response};
//! use http_body_util::{BodyExt, Full};
//! use tower::{ServiceBuilder, ServiceExt, service_fn};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() {
//! // An upstream answering one message (in a real stack: Normalize over a
//! // transport, which also names the route and its face).
//! let upstream = service_fn(|_req: Request<Full<Bytes>>| async {
//!     let body = r#"{"model":"claude-sonnet-4-5","stop_reason":"end_turn","usage":{"input_tokens":12,"cache_read_input_tokens":100,"output_tokens":30}}"#;
//!     let mut res = Response::builder()
//!         .header("content-type", "application/json")
//!         .body(Full::new(Bytes::from_static(body.as_bytes())))
//!         .unwrap();
//!     res.extensions_mut().insert(RouteId::new("anthropic"));
//!     res.extensions_mut().insert(Face::Anthropic);
//!     Ok::<_, std::convert::Infallible>(res)
//! });
//!
//! let seen = Arc::new(Mutex::new(Vec::new()));
//! let sink = Arc::clone(&seen);
//! let service = ServiceBuilder::new()
//!     .layer(
//!         UsageLayer::new()
//!             .sink(TracingSink::new())
//!             .sink(move |r: &UsageRecord| sink.lock().unwrap().push(r.usage)),
//!     )
//!     .service(upstream);
//!
//! let response = service.oneshot(Request::new(Full::new(Bytes::new()))).await.unwrap();
//! // The record goes when the client has read the body.
//! let body = response.into_body().collect().await.unwrap().to_bytes();
//! assert!(body.starts_with(b"{\"model\""));
//! let usage: Option<TokenUsage> = seen.lock().unwrap()[0];
//! assert_eq!(usage.map(|u| (u.input, u.cache_read_input, u.output)), Some((12, 100, 30)));
//! # }
//! ```
//!
//! # What is read
//!
//! - **`text/event-stream`**: [`SseUsageReader`], an incremental SSE framing
//!   state machine (lines ending in `\n`, `\r\n` or `\r`, comments, multi-line
//!   data) that works the same however the bytes are cut. It finds each
//!   event's name and parses the `data` of only `message_start` (model, and
//!   usage: input, cache creation, cache read, output), `message_delta`
//!   (cumulative usage: the fields present replace earlier ones, one by one;
//!   stop reason) and `error` (its type gives the [`ErrorClass`]); it notes
//!   `message_stop` and times the first `content_block_delta`. Every other
//!   event is skipped without its data being copied. At most 64 KiB of one
//!   event is held ([`UsageLayer::with_event_limit`]): a 10 MiB text delta is
//!   skipped as it streams, never buffered.
//! - **JSON** (`application/json`, `*+json`): the body is collected up to
//!   1 MiB ([`UsageLayer::with_json_limit`]; a body in one frame is kept by
//!   reference, not copied) and `model`, `stop_reason`, `usage` are parsed
//!   once it ends. Over the limit it is passed on unread and counted.
//! - Local answers (no [`RouteId`] on the response: a 413, a tool-pairing
//!   400, a quota 429), upstream error statuses and other content types are
//!   not read: they carry no billable tokens, and the record says zero.
//! - A success under a `content-encoding` (gzip, br) is passed on unread:
//!   its usage is unknown and [`ReadStats::encoded`] counts it.
//!
//! Nothing here ever fails a response. Broken JSON, counts that are strings,
//! negative or fractional, an oversized event: the record says `usage: None`
//! (*unknown*, never a guess) and a [`ReadStats`] counter goes up. A stream
//! cut short keeps the usage seen so far; one that ends without
//! `message_stop` is classed [`ErrorClass::Transport`]; an `event: error`
//! after the 200 gives the record that error's class.
//!
//! # The record
//!
//! | field | from |
//! |---|---|
//! | `caller` | the request's [`Caller`](claude_tower_core::Caller) extension (identity) |
//! | `route`, `face` | the response's [`RouteId`] and [`Face`] extensions (Normalize sets both) |
//! | `attempts` | the response's [`FailoverReport`](claude_tower_failover::FailoverReport), else its [`Attempt`](claude_tower_core::Attempt), else 1 with a route and 0 without |
//! | `requested_model` | a [`RequestedModel`] extension on the request or the response, else the top-level `model` of a [`ReplayBody`](claude_tower_core::ReplayBody) request body |
//! | `response_model`, `usage`, `stop_reason` | the body, as above |
//! | `status`, `error_class` | the response; [`ClaudeError`](claude_tower_core::ClaudeError) extension, else the status; an SSE `error` event |
//! | `streamed`, `local` | `content-type`; no route on the response |
//! | `duration`, `time_to_first_byte`, `time_to_first_chunk` | from the call to the end of the body, to the head, to the first content event |
//! | `client_disconnected` | the body (or the future) was dropped unfinished |
//! | `request_ids` | the [`RequestIds`](claude_tower_core::RequestIds) extension, else the headers |
//!
//! If the inner service returns an error, the record (status from its
//! [`ClaudeError`](claude_tower_core::ClaudeError), else 502) goes at once. If the response future is
//! dropped before the head, the record goes with status
//! [`499`](future::CLIENT_CLOSED_REQUEST) and `client_disconnected`.
//!
//! **Why the requested model is read this way.** At this layer the request
//! body is still a stream on its way in; reading it would mean buffering or
//! teeing it, which is Replay's job further in. So the layer takes the cheap
//! sound answers: a hint a layer already holding the model puts in an
//! extension (claude-tower's stack does: its tool-pairing step reads the
//! buffered body once and puts a [`RequestedModel`] into the response, so a
//! usage layer outside the whole stack, as in the gateway, still sees it), or,
//! where the body already is a buffered
//! [`ReplayBody`](claude_tower_core::ReplayBody), the failover crate's
//! top-level `model` scanner (no parse of the whole body). Otherwise it is
//! `None`, and metrics leave `gen_ai.request.model` out.
//!
//! # Design
//!
//! - **One layer, no box.** `UsageLayer` -> [`Usage`] ->
//!   [`ResponseFuture`](future::ResponseFuture) + [`UsageBody`], all
//!   `pin-project-lite`; the record under construction lives inside the body
//!   (tower-http's in-flight-requests guard, with a payload), so dropping the
//!   body delivers it: one record per request, however the body ends.
//! - **No allocation per chunk.** The reader holds a small fixed buffer for
//!   names and one `Vec` for an interesting event's data, reused; skipped
//!   events cost a `memchr` per line. Per request the layer allocates for
//!   what it keeps (model names, the caller) and, for JSON bodies in several
//!   frames, one buffer (sized once when the length is declared). `tests/alloc.rs` counts allocations to hold this.
//! - **A JSON message is read from its two ends.** The Messages API writes
//!   `model` among the first members and `stop_reason`, `stop_sequence`,
//!   `usage` as the last three; the reader takes those ends with a strict
//!   plain-JSON reader and leaves the content between them unread. A body
//!   shaped any other way (members reordered, escapes at the ends, nesting
//!   it cannot place) is skimmed whole with the tool-pairing scanner and its
//!   three members parsed with serde. A proptest holds the two reads to the
//!   same answer on API-shaped messages with any text, ids and counts.
//! - **Metrics cost a lookup, not an attribute hash per measurement.**
//!   [`MetricsSink`] keeps each label combination's attributes (and, with
//!   the `bound-instruments` feature, the SDK's bound instruments) behind one
//!   hash of the record's few label strings; see its docs.
//! - **Without sinks the layer steps aside.** No sink and no [`UsageHook`]
//!   on the response: the body passes unwatched (a quota settlement alone
//!   still gets its tokens).
//! - **A hand-written SSE reader**, not an SSE crate: those hand out every
//!   event with its data as a `String`; we need to look at four events out
//!   of thousands and must bound what one event can hold.
//! - **Numbers** (`benches/usage.rs`, 2-core machine, 2026-12-07): the
//!   reader runs an event-dense stream (about 150 bytes per event) at
//!   9.9 GiB/s in 16 KiB chunks and 6.2 GiB/s in 1 KiB chunks, against
//!   6.4 GiB/s for a bare `memchr2` scan of the same bytes for line ends
//!   (content events are skipped whole, one search per line); the
//!   simulator's long streams (1 KiB text deltas, one event per chunk) at
//!   22 GiB/s. Through the layer, a small JSON request costs 0.48 µs more
//!   (0.26 -> 0.74 µs), a 2 KiB stream 1.5 µs, a 256 KiB JSON answer
//!   0.38 µs (its content is not read), and a 10 MiB stream 0.50 ms (1.0 %
//!   of the gateway's CPU per such stream in the load harness). In the
//!   gateway at saturation the layer with its four sinks is 3.0 % of the
//!   gateway's CPU samples, 1.1 µs of the 66 µs every process spends per
//!   small answer (BENCHMARKS.md, "\[usage\] pass 6"); about 5k instructions.
//! - **Sinks must not block.** They run on the task that finished the body:
//!   atomics, a short lock, or a channel.
//!
//! # Metrics
//!
//! [`MetricsSink`] records each record by the OpenTelemetry GenAI semantic
//! conventions (`gen_ai.client.token.usage`, `gen_ai.client.operation.duration`,
//! `gen_ai.client.operation.time_to_first_chunk`, the conventions' bucket
//! boundaries, Anthropic input counted as input + cache read + cache
//! creation) plus `claude_tower.tokens` (the four counts apart),
//! `claude_tower.requests` and `claude_tower.usage.unknown`, with route and
//! caller dimensions; callers and model names past a cap fold into `_other`.
//! It needs only the `opentelemetry` API crate: whoever builds the service
//! picks the SDK and the exporter. [`TracingSink`] logs one INFO event per
//! record.
//!
//! # Exporters
//!
//! Two optional features give a service what it needs to expose them:
//!
//! - `prometheus`: `PrometheusExporter` builds an SDK
//!   meter provider with a Prometheus reader and renders the text exposition
//!   for a `GET /metrics` handler.
//! - `otlp`: `otlp_reader_from_env` makes a periodic OTLP (HTTP/protobuf,
//!   rustls) reader when `OTEL_EXPORTER_OTLP_ENDPOINT` (or the metrics one)
//!   is set; the standard `OTEL_*` variables configure it.
//!
//! **Why `opentelemetry-prometheus`.** Three ways to serve `/metrics` were
//! weighed. *The `prometheus` crate alone* (TiKV's client) is well kept, but
//! it is a second metrics API beside OpenTelemetry: every instrument would be
//! written twice so that OTLP push and Prometheus pull agree. *A hand-rolled
//! text renderer over the SDK's pull reader* adds no dependency, but the
//! SDK's `ManualReader` sits behind its `experimental_metrics_custom_reader`
//! feature, and we would own the OpenTelemetry-to-Prometheus translation
//! (unit suffixes, `_total`, `target_info`, scope labels, escaping) and its
//! drift. *`opentelemetry-prometheus`* is the official bridge from the SDK's
//! own repository, released in lockstep with it (0.33 here). It was declared
//! discontinued at 0.29 (2025) because the `prometheus` crate then pulled in
//! the unmaintained `protobuf`; it was restored in May 2026 and now uses
//! `prometheus` 0.14 with default features off (no protobuf), adding only
//! `prometheus`, `fnv`, `parking_lot` and `once_cell`. We take it, behind a
//! feature that is off by default and behind our own `PrometheusExporter`
//! type: if the bridge goes out of maintenance again, a renderer over the
//! SDK's data types can replace it without changing this crate's API.
//! Prometheus 3 also ingests OTLP natively, which `otlp` covers.
//!
//! [`UsageRecord`]: claude_tower_core::usage::UsageRecord
//! [`UsageSink`]: claude_tower_core::usage::UsageSink
//! [`UsageHook`]: claude_tower_core::usage::UsageHook
//! [`RouteId`]: claude_tower_core::RouteId
//! [`Face`]: claude_tower_core::Face
//! [`ErrorClass`]: claude_tower_core::ErrorClass
//! [`ErrorClass::Transport`]: claude_tower_core::ErrorClass::Transport

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod body;
#[cfg(any(feature = "prometheus", feature = "otlp"))]
mod export;
pub mod future;
mod json;
mod layer;
mod log;
pub mod metrics;
mod payload;
mod plain;
mod sse;
mod stats;
mod watch;

pub use body::UsageBody;
#[cfg(feature = "prometheus")]
pub use export::PrometheusExporter;
#[cfg(any(feature = "prometheus", feature = "otlp"))]
pub use export::{MetricsSetupError, resource_from_env};
#[cfg(feature = "otlp")]
pub use export::{otlp_configured, otlp_reader_from_env};
pub use json::DEFAULT_JSON_LIMIT;
pub use layer::{RequestedModel, Usage, UsageLayer};
pub use log::TracingSink;
pub use metrics::MetricsSink;
pub use sse::{DEFAULT_EVENT_LIMIT, SseUsageReader};
pub use stats::ReadStats;

#[cfg(test)]
mod tests;
