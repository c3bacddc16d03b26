//! `claude-tower-sim`: the simulator as a process.
//!
//! ```text
//! claude-tower-sim [--listen 127.0.0.1:8080] [--anthropic-key K] [--foundry-key K]
//!                  [--foundry-token T] [--faults SCRIPT] [--log-capacity N]
//!                  [--title-case-headers]
//! ```
//!
//! Unset flags fall back to `CLAUDE_TOWER_SIM_ANTHROPIC_KEY`,
//! `CLAUDE_TOWER_SIM_FOUNDRY_KEY`, `CLAUDE_TOWER_SIM_FOUNDRY_TOKEN` and
//! `CLAUDE_TOWER_SIM_FAULTS`. Runs until Ctrl-C.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

use std::process::ExitCode;

use claude_tower_sim::{Sim, SimConfig};

const USAGE: &str = "usage: claude-tower-sim [--listen ADDR] [--anthropic-key K] [--foundry-key K] \
[--foundry-token T] [--faults SCRIPT] [--log-capacity N] [--title-case-headers]";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SimConfig, String> {
    let mut config = SimConfig::from_env().listen(([127, 0, 0, 1], 8080).into());
    while let Some(flag) = args.next() {
        if flag == "--title-case-headers" {
            config = config.title_case_headers(true);
            continue;
        }
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let known = [
            "--listen",
            "--anthropic-key",
            "--foundry-key",
            "--foundry-token",
            "--faults",
            "--log-capacity",
        ];
        if !known.contains(&flag.as_str()) {
            return Err(format!("unknown flag {flag}\n{USAGE}"));
        }
        let value = args
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n{USAGE}"))?;
        config = match flag.as_str() {
            "--listen" => config.listen(
                value
                    .parse()
                    .map_err(|e| format!("--listen {value}: {e}"))?,
            ),
            "--anthropic-key" => config.anthropic_key(value),
            "--foundry-key" => config.foundry_key(value),
            "--foundry-token" => config.foundry_token(value),
            "--faults" => config.faults(value),
            "--log-capacity" => config.log_capacity(
                value
                    .parse()
                    .map_err(|e| format!("--log-capacity {value}: {e}"))?,
            ),
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        };
    }
    Ok(config)
}

fn main() -> ExitCode {
    let config = match parse_args(std::env::args().skip(1)) {
        Ok(config) => config,
        Err(message) => {
            eprintln!("{message}");
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("claude-tower-sim: cannot start a runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(async move {
        let sim = match Sim::start(config).await {
            Ok(sim) => sim,
            Err(e) => {
                eprintln!("claude-tower-sim: {e}");
                return ExitCode::FAILURE;
            }
        };
        println!("claude-tower-sim listening on http://{}", sim.addr());
        println!("  Anthropic face: {}/v1/messages", sim.anthropic_base_url());
        println!("  Foundry face:   {}/v1/messages", sim.foundry_base_url());
        println!(
            "  control:        {}/_sim/{{requests,faults,reset}}",
            sim.anthropic_base_url()
        );
        if let Err(e) = tokio::signal::ctrl_c().await {
            eprintln!("claude-tower-sim: cannot wait for Ctrl-C: {e}");
            return ExitCode::FAILURE;
        }
        ExitCode::SUCCESS
    })
}
