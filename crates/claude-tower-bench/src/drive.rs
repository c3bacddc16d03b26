//! `load drive`: the harness's closed loop against a server started by
//! hand, for an outside profiler.
//!
//! ```text
//! load drive --target 127.0.0.1:8787 [--workload small] [--connections 32]
//!     [--seconds 10] [--warm-up 1] [--server-pid PID] [--simulator-pid PID]
//! ```
//!
//! It sends `--workload` requests over `--connections` keep-alive
//! connections, each the moment the last answer is read, for `--warm-up`
//! then `--seconds` seconds, and prints the answers per second of the
//! measured part. With the processes' ids it also prints their CPU per
//! answer over the whole run ([`cpu`](crate::cpu)), so that a profile taken
//! meanwhile (`perf record -p PID`) can be put in microseconds per answer:
//! a function's share of the server's samples times the server's CPU per
//! answer. Like the harness, the client is one thread.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use crate::client::{RequestSpec, Saturation, closed_loop};
use crate::cpu::{CpuUse, Processes};
use crate::workload::Workload;

/// `load drive`'s settings.
#[derive(Debug)]
struct Drive {
    target: SocketAddr,
    workload: Workload,
    connections: usize,
    warm_up: Duration,
    measure: Duration,
    server: Option<u32>,
    simulator: Option<u32>,
}

fn parse(mut args: impl Iterator<Item = String>) -> Result<Drive, String> {
    let mut drive = Drive {
        target: SocketAddr::from(([127, 0, 0, 1], 8787)),
        workload: Workload::Small,
        connections: 32,
        warm_up: Duration::from_secs(1),
        measure: Duration::from_secs(10),
        server: None,
        simulator: None,
    };
    let mut target = None;
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |what: &str| format!("{flag}: {what}, got {value:?}");
        match flag.as_str() {
            "--target" => target = Some(value.parse().map_err(|_| bad("an address"))?),
            "--workload" => {
                drive.workload =
                    Workload::parse(&value).ok_or_else(|| bad("small, large or stream"))?;
            }
            "--connections" => {
                drive.connections = value
                    .parse()
                    .ok()
                    .filter(|n| *n > 0)
                    .ok_or_else(|| bad("a count above zero"))?;
            }
            "--seconds" | "--warm-up" => {
                let secs = value
                    .parse::<f64>()
                    .ok()
                    .filter(|s| s.is_finite() && *s >= 0.0)
                    .ok_or_else(|| bad("seconds"))?;
                let d = Duration::from_secs_f64(secs);
                if flag == "--seconds" {
                    drive.measure = d;
                } else {
                    drive.warm_up = d;
                }
            }
            "--server-pid" => drive.server = Some(value.parse().map_err(|_| bad("a pid"))?),
            "--simulator-pid" => drive.simulator = Some(value.parse().map_err(|_| bad("a pid"))?),
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    drive.target = target.ok_or("--target is required")?;
    if drive.server.is_some() != drive.simulator.is_some() {
        return Err("--server-pid and --simulator-pid go together".to_owned());
    }
    Ok(drive)
}

/// Runs `load drive` with the arguments after `drive`.
pub(crate) fn main(args: impl Iterator<Item = String>) -> ExitCode {
    let drive = match parse(args) {
        Ok(drive) => drive,
        Err(message) => {
            eprintln!("load drive: {message}");
            eprintln!("{}", crate::USAGE);
            return ExitCode::from(2);
        }
    };
    crate::client_runtime("load drive", run(&drive))
}

/// The closed loop, its report printed; an error when nothing answered.
async fn run(drive: &Drive) -> std::io::Result<Saturation> {
    let processes = drive
        .server
        .zip(drive.simulator)
        .map(|(server, simulator)| Processes {
            server: Some(server),
            simulator,
        });
    let before = processes.map(|p| p.read()).transpose()?;
    let spec = RequestSpec::new(drive.target, drive.workload);
    let s = closed_loop(spec, drive.connections, drive.warm_up, drive.measure).await;
    println!(
        "{} {} requests over {} connections: {:.0} answers/s, {} errors in {:.1} s",
        drive.target,
        drive.workload.name(),
        drive.connections,
        s.per_second(),
        s.errors,
        s.window.as_secs_f64()
    );
    if let (Some(processes), Some(before)) = (processes, before) {
        let mut cpu = CpuUse::default();
        cpu.add(before, processes.read()?, s.answers);
        println!(
            "CPU per answer over {} answers (warm-up included): server {:.1} µs ({:.0} % user), \
             simulator {:.1} µs, client {:.1} µs, all {:.1} µs",
            s.answers,
            cpu.server_ns() / 1e3,
            cpu.server.user_share() * 100.0,
            cpu.simulator_ns() / 1e3,
            cpu.client_ns() / 1e3,
            cpu.all_ns() / 1e3
        );
    }
    if s.answers == 0 {
        return Err(std::io::Error::other(format!(
            "no answer from {} ({} errors)",
            drive.target, s.errors
        )));
    }
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> impl Iterator<Item = String> + '_ {
        s.split_whitespace().map(str::to_owned)
    }

    #[test]
    fn flags_parse_and_bad_ones_say_why() {
        let d = parse(args(
            "--target 127.0.0.1:9 --workload large --connections 4 --seconds 2.5 --warm-up 0",
        ))
        .unwrap();
        assert_eq!(d.target, SocketAddr::from(([127, 0, 0, 1], 9)));
        assert_eq!(d.workload, Workload::Large);
        assert_eq!(d.connections, 4);
        assert_eq!(d.measure, Duration::from_millis(2500));
        assert_eq!(d.warm_up, Duration::ZERO);
        assert!(d.server.is_none());
        for (bad, says) in [
            ("", "--target is required"),
            ("--target nowhere", "an address"),
            ("--target 127.0.0.1:9 --connections 0", "above zero"),
            ("--target 127.0.0.1:9 --seconds -1", "seconds"),
            (
                "--target 127.0.0.1:9 --workload huge",
                "small, large or stream",
            ),
            ("--target 127.0.0.1:9 --server-pid 1", "go together"),
            ("--target 127.0.0.1:9 --bogus 1", "unknown flag"),
            ("--target", "needs a value"),
        ] {
            let err = parse(args(bad)).unwrap_err();
            assert!(err.contains(says), "{bad:?}: {err}");
        }
    }

    #[tokio::test]
    async fn it_drives_a_server_and_reads_the_processes_cpu() {
        let sim = claude_tower_sim::Sim::start(claude_tower_sim::SimConfig::default())
            .await
            .expect("starts");
        let me = std::process::id();
        let drive = Drive {
            target: sim.addr(),
            workload: Workload::Small,
            connections: 2,
            warm_up: Duration::ZERO,
            measure: Duration::from_millis(300),
            server: Some(me),
            simulator: Some(me),
        };
        let s = run(&drive).await.expect("answers");
        assert!(s.answers > 0 && s.completed > 0);
        assert_eq!(s.errors, 0);
        // Nothing listening: an error, not a silent zero.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let drive = Drive {
            target: addr,
            server: None,
            simulator: None,
            ..drive
        };
        assert!(run(&drive).await.is_err());
    }
}
