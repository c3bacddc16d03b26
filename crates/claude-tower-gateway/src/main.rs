//! `claude-tower-gateway`: Claude over Anthropic direct and Azure AI Foundry
//! behind one endpoint, with retries, failover, tool-pairing checks and one
//! error surface.
//!
//! ```sh
//! cargo run --release -p claude-tower-gateway          # on the simulator, with no credentials
//! claude-tower-gateway --help                           # every setting, its variable and default
//! claude-tower-gateway check --config gateway.toml      # validate; print with secrets redacted
//! claude-tower-gateway wrap -- claude                   # Claude Code through its own gateway
//! ```
//!
//! With no upstream variable set and a loopback listen address it runs on
//! the built-in simulator and says so loudly; any partial upstream
//! configuration is a start-up error naming the variable.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

use std::process::ExitCode;

use clap::Parser;
use claude_tower_gateway::check::check;
use claude_tower_gateway::config::GatewayConfig;
use claude_tower_gateway::file::FileConfig;
use claude_tower_gateway::settings::{Cli, Command};
use claude_tower_gateway::{Gateway, GatewayError, shutdown_signal};
use tracing_subscriber::EnvFilter;

/// The allocator: jemalloc on Unix with the feature `jemalloc` (default),
/// measured against glibc's malloc and others in the library's docs ("The
/// allocator"); the system's otherwise.
#[cfg(all(feature = "jemalloc", unix))]
#[global_allocator]
static GLOBAL: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

const NAME: &str = "claude-tower-gateway";

fn main() -> ExitCode {
    let cli = Cli::parse();
    let lookup = |name: &str| std::env::var(name).ok();
    if cli.command == Some(Command::Check) {
        return match check(&cli.settings, &lookup) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(err) => {
                eprintln!("{NAME}: {err}");
                ExitCode::FAILURE
            }
        };
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("{NAME}: cannot start the runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    if let Some(Command::Wrap(wrap)) = cli.command {
        // NOTE: wrap logs to a file of its own, never to the terminal.
        return claude_tower_gateway::wrap::run(&runtime, cli.settings, wrap.command, lookup);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| EnvFilter::new("info,tower_http=warn")),
        )
        .init();
    match runtime.block_on(serve(cli, lookup)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("{NAME}: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(cli: Cli, lookup: impl Fn(&str) -> Option<String>) -> Result<(), GatewayError> {
    let file = match &cli.settings.config {
        Some(path) => FileConfig::load(path)?,
        None => FileConfig::default(),
    };
    let config = GatewayConfig::resolve(&cli.settings, &file, &lookup)?;
    let gateway = Gateway::new(config, &lookup).await?;
    let listen = gateway.config().listen;
    let listener = tokio::net::TcpListener::bind(listen).await.map_err(|err| {
        GatewayError::Io(std::io::Error::new(
            err.kind(),
            format!("cannot listen on {listen}: {err}"),
        ))
    })?;
    let bound = listener.local_addr().unwrap_or(listen);
    println!("{}", gateway.banner(bound));
    gateway
        .serve(listener, shutdown_signal())
        .await
        .map_err(GatewayError::Io)
}
