//! A Claude gateway for Claude Code and the Anthropic SDKs: Anthropic direct
//! and Azure AI Foundry behind one endpoint, built from claude-tower's layers.
//!
//! This crate is both the `claude-tower-gateway` binary and the library it is
//! made of, for embedding or testing in-process:
//!
//! ```sh
//! cargo install --path crates/claude-tower-gateway
//! claude-tower-gateway --help
//! claude-tower-gateway check --config gateway.toml   # validate, print with secrets redacted
//! ```
//!
//! - [`settings`]: flags beside their `CLAUDE_TOWER_*` variables (clap);
//!   [`file`](mod@file): the optional TOML config file; [`config`]: both resolved,
//!   with defaults, into a [`GatewayConfig`](config::GatewayConfig).
//! - [`upstream`]: the routes from the variables Claude Code reads or the
//!   file, or the simulator — failing closed on anything partial.
//! - [`gateway`]: the stack and the router (paths, `/healthz`, `/readyz`,
//!   `/metrics`, `/usage`, the Anthropic-only APIs); [`dispatch`]: Messages
//!   requests to the stack without the router; [`server`]: the accept
//!   loop (HTTP/1 and HTTP/2, timeouts, connection cap); [`tls`]: TLS
//!   termination.
//! - The stack is identity -> usage -> quota -> routes: [`access`] (who may
//!   call, the identity layer when one is configured), [`telemetry`]
//!   (metrics, OTLP, `/usage`), limits from the quota crate.
//!
//! In-process, on the simulator (feature `simulator`, on by default):
//!
//! ```
//! # #[cfg(feature = "simulator")]
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! use claude_tower_gateway::{Gateway, gateway::Mode};
//!
//! // Nothing upstream is set and the listen address is loopback: the simulator.
//! let gateway = Gateway::from_lookup(|name| match name {
//!     "CLAUDE_TOWER_LISTEN" => Some("127.0.0.1:0".to_owned()),
//!     _ => None,
//! })
//! .await?;
//! assert!(matches!(gateway.mode(), Mode::Simulator(_)));
//! let listener = tokio::net::TcpListener::bind(gateway.config().listen).await?;
//! println!("{}", gateway.banner(listener.local_addr()?));
//! // gateway.serve(listener, claude_tower_gateway::shutdown_signal()).await?;
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "simulator"))]
//! # fn main() {}
//! ```
//!
//! # The allocator
//!
//! On Unix the binary allocates with jemalloc ([`tikv-jemallocator`],
//! feature `jemalloc`, on by default); on Windows it keeps the system
//! allocator. The library leaves the choice to whatever embeds it.
//!
//! Why: a small request through the gateway allocates about 35 times (49
//! with identity and a quota), and tokio runs a connection's task and the
//! upstream connection's task on whichever worker woke them, so much of what
//! one worker allocates the other frees. glibc's malloc keeps seven freed
//! blocks per size and thread; past that, `malloc` and `free` take the
//! owning arena's lock. At saturation the gateway made 0.43 `futex` calls
//! per small answer against the bare proxy's 0.16, most of them from
//! `free`. Each candidate was measured in time with the bench crate's
//! `scripts/ab.sh` (the glibc build and the candidate in alternating 4 s
//! drives on one simulator, 8–10 rounds; medians of the paired ratios):
//!
//! | allocator | small requests: throughput, server CPU per answer | other workloads |
//! |---|---|---|
//! | jemalloc, [`tikv-jemallocator`] 0.6 | 1.048, 0.921 | 200 KB: 1.025, 0.937; identity + quota: 1.049, 0.925 |
//! | gperftools' tcmalloc (`LD_PRELOAD`) | 1.077, 0.890; 1.025, 0.924 | |
//! | glibc with 256 cached blocks per size (`GLIBC_TUNABLES`) | 1.000, 0.966 | |
//! | mimalloc 0.1.52 (v3) | 0.971, 1.009; purging off: 0.998, 0.983 | |
//! | snmalloc-rs 0.3 | 0.951, 1.038 | |
//!
//! Callgrind agrees: 87.1k → 84.4k instructions per small request, 97.7k
//! → 93.0k with identity and a quota. Memory is level (100 concurrent 10 MiB
//! streams: peak RSS 31.9 MiB against glibc's 31.2 MiB, idle 13.5 against
//! 14.2). tcmalloc did as well, but its Rust bindings are either unmaintained
//! (the `tcmalloc` crate, last released in 2019) or young and heavy (Google's
//! tcmalloc and Abseil, in C++); jemalloc is TiKV's, a plain C build (`cc` and
//! `make`) and two crates. A build without the feature
//! (`--no-default-features`, plus `--features simulator` if wanted) uses the
//! system allocator, e.g. for a heap profiler that interposes `malloc`; a
//! production build without the simulator keeps jemalloc with
//! `--no-default-features --features jemalloc`.
//!
//! # The release profile
//!
//! The workspace builds `--release` with one codegen unit and whole-program
//! (fat) LTO. The gateway is a dozen crates of small generic layers, all
//! monomorphized into this one; split into 16 codegen units without LTO,
//! the calls between the layers' futures and into `http`, `bytes` and
//! hyper stay calls, and every future and response is moved through each
//! of them. With the profile, a small request costs 77.4k instructions
//! instead of 84.1k (the bare passthrough proxy, built alike, 45.5k
//! instead of 49.2k), and in time, at saturation, 0.87x the gateway's CPU
//! per answer for 1.13x the answers per second (BENCHMARKS.md, "\[perf\]
//! pass 11"). The cost is build time: a first `cargo build --release` of
//! the gateway takes a few minutes on two cores, a rebuild about two.
//! Panics still unwind: one request's panic ends its task, not the
//! gateway.
//!
//! [`tikv-jemallocator`]: https://docs.rs/tikv-jemallocator

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

pub mod access;
pub mod check;
pub mod config;
pub mod dispatch;
pub mod file;
pub mod gateway;
mod paths;
pub mod routes;
pub mod server;
pub mod settings;
pub mod telemetry;
pub mod tls;
pub mod upstream;
pub mod wrap;

pub use gateway::{Gateway, GatewayError, shutdown_signal};
