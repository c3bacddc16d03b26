//! A simulator of Anthropic direct and Azure AI Foundry, with fault injection,
//! for tests, benches and demos.
//!
//! One server speaks both routes' faces on one port, over HTTP/1.1 (with TLS,
//! HTTP/1.1 or HTTP/2 as ALPN settles; see [TLS](#tls)):
//!
//! | path | face |
//! |---|---|
//! | `POST /v1/messages`, `POST /v1/messages/count_tokens` | Anthropic direct |
//! | `POST /anthropic/v1/messages`, `POST /anthropic/v1/messages/count_tokens` | Azure AI Foundry |
//! | `GET /_sim/requests`, `POST /_sim/faults`, `POST /_sim/reset`, `GET /_sim/health`, `GET /_sim/connections` | control |
//!
//! Query strings are ignored (`?beta=true` is fine) and unknown body fields
//! are skipped. Start it in-process on an ephemeral port:
//!
//! ```
//! use claude_tower_sim::{Sim, SimConfig};
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> std::io::Result<()> {
//! let sim = Sim::start(SimConfig::default().anthropic_key("k")).await?;
//! assert!(sim.anthropic_base_url().starts_with("http://127.0.0.1:"));
//! assert!(sim.foundry_base_url().ends_with("/anthropic"));
//! sim.set_faults("anthropic=429:2s,ok;foundry=503*2").unwrap();
//! assert!(sim.requests().is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! or as a binary: `cargo run -p claude-tower-sim -- --listen 127.0.0.1:8080`
//! (flags `--anthropic-key`, `--foundry-key`, `--foundry-token`, `--faults`,
//! or the env vars `CLAUDE_TOWER_SIM_ANTHROPIC_KEY`, `_FOUNDRY_KEY`,
//! `_FOUNDRY_TOKEN`, `_FAULTS`; `--tls-cert FILE --tls-key FILE [--alpn
//! h2,http/1.1] [--h2-max-streams N]` for HTTPS).
//!
//! # TLS
//!
//! With [`SimConfig::tls_pem_files`] (or [`SimConfig::tls_pem`]) every
//! connection is TLS (1.2 or 1.3, rustls with aws-lc-rs) and the protocol is
//! the one ALPN settles on: `h2` is served as HTTP/2, `http/1.1` or no ALPN
//! as HTTP/1.1. The server offers `h2` then `http/1.1` unless
//! [`SimConfig::alpn`] says otherwise; offering one protocol only forces it,
//! which is how a harness compares HTTP/1.1 and HTTP/2 to an upstream.
//! [`SimConfig::h2_max_concurrent_streams`] sets how many streams an HTTP/2
//! connection admits at once (default hyper's 200), to see what a client
//! does with the request after the last one while all are busy. This
//! exists for measuring: HTTP/2 to an upstream is only ever negotiated inside
//! a TLS handshake. A handshake that fails (a plain-HTTP client, an unknown
//! CA, no common protocol) or stalls for 10 s closes that connection and
//! nothing else.
//!
//! [`Sim::connections`] (or `GET /_sim/connections`, JSON) counts the
//! connections accepted and the handshakes by negotiated protocol, so a
//! harness can tell how many upstream connections a client opened. Plain
//! connections are served exactly as without TLS support.
//!
//! # How a request is answered
//!
//! In this order, each check answering in the face's own shape:
//!
//! 1. Body over the limit (default 32 MiB): 413 (`request_too_large`).
//! 2. Credential. Anthropic reads `x-api-key` only (missing: 401 `x-api-key
//!    header is required`; wrong: 401 `invalid x-api-key`). Foundry takes the
//!    first of `x-api-key`, `api-key`, `Authorization: Bearer` (missing: 401
//!    "Access denied due to missing subscription key..."; wrong key: 401
//!    "Access denied due to invalid subscription key or wrong API endpoint...";
//!    wrong token: 401 "Unauthorized. Access token is missing, invalid,
//!    audience is incorrect..."). With no expected secret configured, any
//!    non-empty credential is accepted.
//! 3. `anthropic-version` missing: 400 `anthropic-version: header is required`.
//! 4. The route's next **fault step** is taken (only requests that got this
//!    far consume one).
//! 5. The body: not JSON, or missing `model` / `max_tokens` (Messages only) /
//!    `messages`, or a broken tool pairing ([`toolpair`]): 400 with the API's
//!    wording.
//! 6. Success: a `message` object with `usage`, or, with `"stream": true`, an
//!    SSE stream: `message_start`, `ping`, `content_block_start`, several
//!    `content_block_delta` (a `ping` after every fourth), `content_block_stop`,
//!    `message_delta` (stop reason and cumulative `usage`), `message_stop`.
//!    `count_tokens` answers `{"input_tokens": N}` (about body bytes / 4).
//!
//! **Tool calls.** When the request offers `tools` and the text of the last
//! message (a user message) contains `sim:tool_use` (or `sim:tool_use:NAME`
//! to pick an offered tool; default the first), the answer holds a text block
//! and then a `tool_use` block (`id` `toolu_sim_...`, input
//! `{"query":"simulated"}`, streamed as two `input_json_delta`s) with
//! `stop_reason: "tool_use"`. A follow-up whose last user message carries only
//! the `tool_result` gets a plain text answer, so tool loops end.
//!
//! **Large streams.** A request header `x-sim-stream-bytes: N` makes a
//! successful stream carry N bytes of text in 1 KiB deltas, generated as the
//! client reads (nothing of size N is allocated); capped at 1 GiB. Over
//! HTTP/2 a client that stops reading such a stream holds it open (flow
//! control stops the server) for as long as it likes, and ends it by
//! reading on or dropping the body: a test's way to keep streams busy
//! without waiting on a clock.
//!
//! # Ids and headers
//!
//! Anthropic face: `request-id: req_sim_...` (also as the envelope's
//! `request_id`), `anthropic-ratelimit-requests-limit` / `-remaining`.
//! Foundry face: `apim-request-id` and `x-ms-request-id` (the same uuid-shaped
//! id) on every answer, plus the backend's `request-id` on successes.
//! Header names go out lowercase (HTTP/1 names are case-insensitive);
//! [`SimConfig::title_case_headers`] sends `Retry-After`-style names instead.
//!
//! # Fault scripts
//!
//! ```text
//! script := part (';' part)*
//! part   := [route '='] step (',' step)*        route := anthropic | foundry
//! step   := base ['*' N]
//! ```
//!
//! A part without `route=` applies to both routes. Setting a script (at start,
//! by [`Sim::set_faults`] or `POST /_sim/faults` with the script as body)
//! replaces both routes' scripts. Each request that reaches step 4 above
//! consumes one step of its route's script; once the script is used up,
//! requests succeed (`ok`). A `base` happens once, or `N` times with `*N`;
//! `random(..)` without `*N` goes on forever. The request log records the
//! step that answered each request.
//!
//! | step | Anthropic face | Foundry face |
//! |---|---|---|
//! | `ok` | success | success |
//! | `429` | 429 `rate_limit_error`, no retry header | 429 `{"error":{"code":"429",..}}`, no retry header |
//! | `429:2s`, `429:1.5s` | 429, `retry-after: 2` / `1.5` | 429, `Retry-After: 2` / `1.5` |
//! | `429:date+2s` | 429, `retry-after: <HTTP-date>` at least 2 s ahead (rounded up to the second) | same, `Retry-After` |
//! | `429:ms1500` | 429, `retry-after-ms: 1500` only | same |
//! | `429:xms1500` | 429, `x-ms-retry-after-ms: 1500` only | same |
//! | `529` | 529 `overloaded_error` | 529, code `"529"` |
//! | `503` | 503 `overloaded_error` | 503, code `"503"` |
//! | `500`, `502` | `api_error` | code `"500"` / `"502"` |
//! | `504` | 504 `timeout_error` | 504, code `"504"` |
//! | `400` | 400 `invalid_request_error` | 400, code `"400"` |
//! | `401` | 401 `authentication_error` `invalid x-api-key` | 401, code `"401"`, invalid-key wording |
//! | `403` | 403 `permission_error` | 403, code `"PermissionDenied"` |
//! | `404:deployment` | 404 `not_found_error` `model: MODEL` | 404, code `"DeploymentNotFound"`, "The API deployment for this resource does not exist. ..." |
//! | `transient-auth` | 401 `authentication_error` (Anthropic has no such blip) | 401, code `"invalid_model_endpoint_authentication"` |
//! | `reset` | connection dropped, no response | same |
//! | `delay:300ms` | waits (tokio time), then as `ok` | same |
//! | `stream-error` | streaming: 200, `message_start` .. two deltas, then `event: error` `overloaded_error`; non-streaming: 529 `overloaded_error` | streaming: same; non-streaming: 503 |
//! | `stream-error:early` | streaming: 200, `message_start`, `ping`, then `event: error` `overloaded_error`, no content; non-streaming: 529 `overloaded_error` | streaming: same; non-streaming: 503 |
//! | `slow-stream:50ms` | a normal stream with a 50 ms gap (tokio time) between events; non-streaming: `ok` | same |
//! | `random(p=0.3,seed=7)` | with probability `p`: one of `429`, `429:ms100`, `529`, `500`, `502`, `504`, `reset` | with probability `p`: one of `429`, `429:ms100`, `503`, `500`, `502`, `504`, `transient-auth` |
//!
//! Error bodies: Anthropic `{"type":"error","error":{"type":..,"message":..},"request_id":"req_sim_.."}`;
//! Foundry `{"error":{"code":..,"message":..}}`. Durations accept `ms` or `s`
//! (decimal allowed) suffixes.
//!
//! # The request log
//!
//! [`Sim::requests`] (or `GET /_sim/requests`, a JSON array) lists every API
//! request since the last reset, in arrival order, as [`RecordedRequest`]s:
//! route, path, model, stream flag, the credential header checked and whether
//! it was accepted, `anthropic-version`, `anthropic-beta`, the step, the
//! status and more. The log keeps the last 100 000 records
//! ([`SimConfig::log_capacity`]); older ones are dropped and counted
//! ([`Sim::dropped_requests`], header `x-sim-dropped`). [`Sim::reset`] (or
//! `POST /_sim/reset`) clears the log and both scripts.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

mod body;
mod config;
mod face;
mod fault;
mod log;
mod messages;
mod server;
mod tls;
pub mod toolpair;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

pub use config::SimConfig;
pub use fault::{FaultScript, FaultScriptError, RetryHint, Step};
pub use log::{Credential, DEFAULT_LOG_CAPACITY, RecordedRequest};
pub use messages::{TOOL_USE_MARKER, event_names};
pub use tls::{Alpn, ConnectionStats};

use server::Shared;
use tls::Handshake;

/// How long a TLS client may take to finish its handshake before the
/// connection is closed (and counted as failed).
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running simulator. Dropping it stops the server and closes its connections.
///
/// It runs on the tokio runtime that called [`Sim::start`]; fault delays use
/// tokio time, so tests with paused time see them instantly.
#[derive(Debug)]
pub struct Sim {
    addr: SocketAddr,
    tls: bool,
    shared: Arc<Shared>,
    _shutdown: watch::Sender<()>,
}

impl Sim {
    /// Binds the configured address (default `127.0.0.1:0`) and starts serving
    /// on the current tokio runtime.
    ///
    /// Fails if the address cannot be bound, or with `InvalidInput` if the
    /// configured fault script does not parse or the TLS certificate or key
    /// cannot be used.
    pub async fn start(config: SimConfig) -> io::Result<Sim> {
        let script = FaultScript::parse(config.faults.as_deref().unwrap_or(""))
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let tls = config
            .tls_settings()
            .map(|settings| settings.server_config())
            .transpose()?
            .map(|server| TlsAcceptor::from(Arc::new(server)));
        let listener = TcpListener::bind(config.listen).await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared::new(&config, &script));
        let (tx, rx) = watch::channel(());
        let is_tls = tls.is_some();
        tokio::spawn(accept_loop(
            listener,
            shared.clone(),
            rx,
            config.title_case_headers,
            tls,
            config.h2_max_concurrent_streams,
        ));
        Ok(Sim {
            addr,
            tls: is_tls,
            shared,
            _shutdown: tx,
        })
    }

    /// The address the simulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://ADDR` (`https://ADDR` with TLS): the Anthropic face; POST
    /// `{base}/v1/messages`. With TLS a client verifies the certificate
    /// against the host it connects to: a certificate for `localhost` needs
    /// `https://localhost:PORT` instead.
    pub fn anthropic_base_url(&self) -> String {
        format!("{}://{}", self.scheme(), self.addr)
    }

    /// `http://ADDR/anthropic` (`https://` with TLS): the Foundry face; POST
    /// `{base}/v1/messages`.
    pub fn foundry_base_url(&self) -> String {
        format!("{}://{}/anthropic", self.scheme(), self.addr)
    }

    /// Whether connections must speak TLS ([`SimConfig::tls_pem_files`]).
    pub fn is_tls(&self) -> bool {
        self.tls
    }

    fn scheme(&self) -> &'static str {
        if self.tls { "https" } else { "http" }
    }

    /// Connections accepted and TLS handshakes by outcome, since the start.
    pub fn connections(&self) -> ConnectionStats {
        self.shared.connections.snapshot()
    }

    /// Replaces both routes' fault scripts (see the crate docs for the grammar).
    /// On a parse error the old scripts stay.
    pub fn set_faults(&self, script: &str) -> Result<(), FaultScriptError> {
        self.shared.set_faults(script)
    }

    /// Every API request since the last reset, in arrival order (at most the
    /// configured log capacity: the newest ones).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.requests()
    }

    /// How many records the bounded log has dropped since the last reset.
    pub fn dropped_requests(&self) -> u64 {
        self.shared.dropped()
    }

    /// Clears the request log and both fault scripts.
    pub fn reset(&self) {
        self.shared.reset()
    }
}

async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
    title_case: bool,
    tls: Option<TlsAcceptor>,
    h2_max_concurrent_streams: Option<u32>,
) {
    let mut builder = http1::Builder::new();
    builder.title_case_headers(title_case);
    let mut h2_builder = http2::Builder::new(TokioExecutor::new());
    if let Some(max) = h2_max_concurrent_streams {
        h2_builder.max_concurrent_streams(max);
    }
    loop {
        let stream = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => {
                    // Out of file descriptors and the like: back off a little, keep serving.
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                }
            },
            _ = shutdown.changed() => return,
        };
        shared.connections.accepted();
        let _ = stream.set_nodelay(true);
        if let Some(tls) = &tls {
            tokio::spawn(serve_tls(
                stream,
                tls.clone(),
                builder.clone(),
                h2_builder.clone(),
                shared.clone(),
                shutdown.clone(),
            ));
            continue;
        }
        let shared = shared.clone();
        let mut shutdown = shutdown.clone();
        let conn = builder.serve_connection(
            TokioIo::new(stream),
            service_fn(move |req| {
                let shared = shared.clone();
                async move { server::handle(&shared, req).await }
            }),
        );
        tokio::spawn(async move {
            tokio::select! {
                _ = conn => {}
                _ = shutdown.changed() => {}
            }
        });
    }
}

/// One TLS connection: the handshake, then HTTP/2 if ALPN chose `h2`, else
/// HTTP/1.1. A failed or stalled handshake closes this connection only; it
/// is counted in [`ConnectionStats::tls_failed`].
async fn serve_tls(
    stream: TcpStream,
    tls: TlsAcceptor,
    http1: http1::Builder,
    h2: http2::Builder<TokioExecutor>,
    shared: Arc<Shared>,
    mut shutdown: watch::Receiver<()>,
) {
    let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, tls.accept(stream));
    let stream = tokio::select! {
        done = handshake => match done {
            Ok(Ok(stream)) => stream,
            Ok(Err(_)) | Err(_) => {
                shared.connections.handshake(Handshake::Failed);
                return;
            }
        },
        _ = shutdown.changed() => return,
    };
    let alpn = stream
        .get_ref()
        .1
        .alpn_protocol()
        .and_then(|id| std::str::from_utf8(id).ok())
        .and_then(Alpn::parse);
    shared.connections.handshake(Handshake::Negotiated(alpn));
    let is_h2 = alpn == Some(Alpn::H2);
    let service = {
        let shared = shared.clone();
        service_fn(move |req| {
            if is_h2 {
                shared.connections.h2_stream();
            }
            let shared = shared.clone();
            async move { server::handle(&shared, req).await }
        })
    };
    let io = TokioIo::new(stream);
    // NOTE: on HTTP/2 a `reset` fault resets the stream (RST_STREAM), not
    // the connection: the other requests multiplexed on it go on.
    if is_h2 {
        let conn = h2.serve_connection(io, service);
        tokio::select! {
            _ = conn => {}
            _ = shutdown.changed() => {}
        }
    } else {
        let conn = http1.serve_connection(io, service);
        tokio::select! {
            _ = conn => {}
            _ = shutdown.changed() => {}
        }
    }
}
