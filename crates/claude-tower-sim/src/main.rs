//! `claude-tower-sim`: the simulator as a process.
//!
//! ```text
//! claude-tower-sim [--listen 127.0.0.1:8080] [--anthropic-key K] [--foundry-key K]
//!                  [--foundry-token T] [--faults SCRIPT] [--log-capacity N]
//!                  [--title-case-headers]
//!                  [--tls-cert FILE --tls-key FILE [--alpn h2,http/1.1]
//!                   [--h2-max-streams N]]
//! ```
//!
//! Unset flags fall back to `CLAUDE_TOWER_SIM_ANTHROPIC_KEY`,
//! `CLAUDE_TOWER_SIM_FOUNDRY_KEY`, `CLAUDE_TOWER_SIM_FOUNDRY_TOKEN` and
//! `CLAUDE_TOWER_SIM_FAULTS`. `--tls-cert` (a PEM chain, leaf first) and
//! `--tls-key` (a PEM private key) go together and serve HTTPS; `--alpn`
//! lists the protocols offered (`h2`, `http/1.1`; default both), one of them
//! to force it. `--h2-max-streams N` sets the `SETTINGS_MAX_CONCURRENT_STREAMS`
//! each HTTP/2 connection advertises (default 200). Runs until Ctrl-C.

#![forbid(unsafe_code)]
#![warn(
    missing_docs,
    missing_debug_implementations,
    unreachable_pub,
    rust_2018_idioms
)]

use std::path::PathBuf;
use std::process::ExitCode;

use claude_tower_sim::{Alpn, Sim, SimConfig};

const USAGE: &str =
    "usage: claude-tower-sim [--listen ADDR] [--anthropic-key K] [--foundry-key K] \
[--foundry-token T] [--faults SCRIPT] [--log-capacity N] [--title-case-headers]
                        [--tls-cert FILE --tls-key FILE [--alpn h2,http/1.1] [--h2-max-streams N]]

  --tls-cert FILE   serve HTTPS with this PEM certificate chain (leaf first); needs --tls-key
  --tls-key FILE    the PEM private key of --tls-cert
  --alpn LIST       the protocols offered in the TLS handshake, in order (default h2,http/1.1);
                    one of them alone forces it
  --h2-max-streams N
                    the SETTINGS_MAX_CONCURRENT_STREAMS each HTTP/2 connection advertises
                    (default 200): requests a client may have open on one connection at once";

fn parse_args(mut args: impl Iterator<Item = String>) -> Result<SimConfig, String> {
    let mut config = SimConfig::from_env().listen(([127, 0, 0, 1], 8080).into());
    let mut tls_cert: Option<PathBuf> = None;
    let mut tls_key: Option<PathBuf> = None;
    let mut alpn: Option<Vec<Alpn>> = None;
    let mut h2_max_streams: Option<u32> = None;
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
            "--tls-cert",
            "--tls-key",
            "--alpn",
            "--h2-max-streams",
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
            "--tls-cert" => {
                tls_cert = Some(existing_file(&flag, value)?);
                config
            }
            "--tls-key" => {
                tls_key = Some(existing_file(&flag, value)?);
                config
            }
            "--alpn" => {
                alpn = Some(parse_alpn(&value)?);
                config
            }
            "--h2-max-streams" => {
                h2_max_streams = Some(
                    value
                        .parse()
                        .map_err(|e| format!("--h2-max-streams {value}: {e}"))?,
                );
                config
            }
            _ => return Err(format!("unknown flag {flag}\n{USAGE}")),
        };
    }
    match (tls_cert, tls_key) {
        (Some(cert), Some(key)) => config = config.tls_pem_files(cert, key),
        (Some(_), None) => {
            return Err("--tls-cert needs --tls-key (the certificate's private key)".into());
        }
        (None, Some(_)) => return Err("--tls-key needs --tls-cert (the certificate chain)".into()),
        (None, None) if alpn.is_some() => {
            return Err(
                "--alpn needs --tls-cert and --tls-key: plain connections are HTTP/1.1".into(),
            );
        }
        (None, None) if h2_max_streams.is_some() => {
            return Err(
                "--h2-max-streams needs --tls-cert and --tls-key: plain connections are HTTP/1.1"
                    .into(),
            );
        }
        (None, None) => {}
    }
    if let Some(alpn) = alpn {
        config = config.alpn(alpn);
    }
    if let Some(max) = h2_max_streams {
        config = config.h2_max_concurrent_streams(max);
    }
    Ok(config)
}

/// A path that names a file now, so a typo fails before anything starts.
fn existing_file(flag: &str, value: String) -> Result<PathBuf, String> {
    let path = PathBuf::from(value);
    match std::fs::metadata(&path) {
        Ok(meta) if meta.is_file() => Ok(path),
        Ok(_) => Err(format!("{flag} {}: not a file", path.display())),
        Err(e) => Err(format!("{flag} {}: {e}", path.display())),
    }
}

/// `h2,http/1.1`: at least one protocol, each known, none twice.
fn parse_alpn(list: &str) -> Result<Vec<Alpn>, String> {
    let mut out = Vec::new();
    for id in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let alpn = Alpn::parse(id)
            .ok_or_else(|| format!("--alpn: unknown protocol `{id}` (h2 or http/1.1)"))?;
        if !out.contains(&alpn) {
            out.push(alpn);
        }
    }
    if out.is_empty() {
        return Err("--alpn needs at least one of h2, http/1.1".into());
    }
    Ok(out)
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
        let scheme = if sim.is_tls() { "https" } else { "http" };
        println!("claude-tower-sim listening on {scheme}://{}", sim.addr());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<SimConfig, String> {
        parse_args(args.iter().map(|s| (*s).to_owned()))
    }

    #[test]
    fn tls_flags_come_in_pairs_and_name_what_is_wrong() {
        // Any existing file will do: the PEM is only read when the simulator starts.
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let err = parse(&["--tls-cert", manifest]).unwrap_err();
        assert!(err.contains("--tls-cert needs --tls-key"), "{err}");
        let err = parse(&["--tls-key", manifest]).unwrap_err();
        assert!(err.contains("--tls-key needs --tls-cert"), "{err}");
        let err =
            parse(&["--tls-cert", "/nonexistent/cert.pem", "--tls-key", manifest]).unwrap_err();
        assert!(
            err.starts_with("--tls-cert /nonexistent/cert.pem: "),
            "{err}"
        );
        let err = parse(&["--alpn", "h2"]).unwrap_err();
        assert!(err.contains("--alpn needs --tls-cert"), "{err}");
        assert!(
            parse(&[
                "--tls-cert",
                manifest,
                "--tls-key",
                manifest,
                "--alpn",
                "h3"
            ])
            .unwrap_err()
            .contains("unknown protocol `h3`")
        );
        assert!(
            parse(&["--tls-cert", manifest, "--tls-key", manifest, "--alpn", ","])
                .unwrap_err()
                .contains("at least one")
        );
        let config = parse(&[
            "--tls-cert",
            manifest,
            "--tls-key",
            manifest,
            "--alpn",
            "http/1.1",
        ])
        .expect("parses");
        let shown = format!("{config:?}");
        assert!(shown.contains("alpn: [Http11]"), "{shown}");
    }

    #[test]
    fn help_mentions_tls() {
        let help = parse(&["--help"]).unwrap_err();
        assert!(
            help.contains("--tls-cert FILE")
                && help.contains("--alpn")
                && help.contains("--h2-max-streams N"),
            "{help}"
        );
    }

    #[test]
    fn h2_max_streams_is_a_number_and_needs_tls() {
        let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml");
        let tls = ["--tls-cert", manifest, "--tls-key", manifest];
        let with = |extra: &[&'static str]| {
            let mut args = tls.to_vec();
            args.extend_from_slice(extra);
            parse(&args)
        };
        let config = with(&["--h2-max-streams", "2"]).expect("parses");
        let shown = format!("{config:?}");
        assert!(
            shown.contains("h2_max_concurrent_streams: Some(2)"),
            "{shown}"
        );
        let err = with(&["--h2-max-streams", "many"]).unwrap_err();
        assert!(err.starts_with("--h2-max-streams many: "), "{err}");
        let err = with(&["--h2-max-streams", "-1"]).unwrap_err();
        assert!(err.starts_with("--h2-max-streams -1: "), "{err}");
        let err = parse(&["--h2-max-streams", "2"]).unwrap_err();
        assert!(err.contains("--h2-max-streams needs --tls-cert"), "{err}");
        let default = format!("{:?}", parse(&tls).expect("parses"));
        assert!(
            default.contains("h2_max_concurrent_streams: None"),
            "{default}"
        );
    }
}
