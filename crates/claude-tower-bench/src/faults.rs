//! Fault runs: the gateway (a fresh process per run, so breakers and retry
//! budgets start clean) under scripted failures of the simulator's direct
//! route, at a fixed offered rate.
//!
//! Requests are sent on a timetable, each in its own task, taking an idle
//! connection from a shared pool or opening one, so that retries waiting
//! out their backoff do not hold up the requests due after them.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hdrhistogram::Histogram;
use http::Method;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{self, BoxError, Connection, RequestSpec};
use crate::procs::{self, Binaries};
use crate::workload::small_body;

/// One fault scenario.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Scenario {
    pub(crate) name: &'static str,
    pub(crate) faults: &'static str,
    /// Whether the gateway also has the Foundry route.
    pub(crate) foundry: bool,
}

pub(crate) const SCENARIOS: [Scenario; 3] = [
    Scenario {
        name: "direct random(p=0.3), Foundry healthy",
        faults: "anthropic=random(p=0.3,seed=7)",
        foundry: true,
    },
    Scenario {
        name: "direct 100 % failing (503), Foundry healthy",
        faults: "anthropic=503*100000000",
        foundry: true,
    },
    Scenario {
        name: "direct 100 % failing (503), no other route",
        faults: "anthropic=503*100000000",
        foundry: false,
    },
];

/// What a fault run measured.
#[derive(Debug)]
pub(crate) struct FaultRun {
    pub(crate) scenario: Scenario,
    pub(crate) requests: u64,
    pub(crate) succeeded: u64,
    /// Attempts named by `x-claude-tower-attempts`, summed over requests.
    pub(crate) attempts_direct: u64,
    pub(crate) attempts_foundry: u64,
    /// Requests whose answer carried the attempts header.
    pub(crate) reported: u64,
    /// Requests the simulator logged, per face.
    pub(crate) upstream_direct: u64,
    pub(crate) upstream_foundry: u64,
    pub(crate) latency: Histogram<u64>,
    pub(crate) seconds: f64,
    /// The direct route's circuit breaker at the end, from `/healthz`.
    pub(crate) direct_breaker: String,
}

impl FaultRun {
    pub(crate) fn success_rate(&self) -> f64 {
        self.succeeded as f64 / self.requests.max(1) as f64
    }

    pub(crate) fn mean_attempts(&self) -> f64 {
        (self.attempts_direct + self.attempts_foundry) as f64 / self.reported.max(1) as f64
    }

    /// Upstream requests per client request.
    pub(crate) fn amplification(&self) -> f64 {
        (self.upstream_direct + self.upstream_foundry) as f64 / self.requests.max(1) as f64
    }

    /// Upstream requests on the direct route per client request.
    pub(crate) fn direct_amplification(&self) -> f64 {
        self.upstream_direct as f64 / self.requests.max(1) as f64
    }
}

/// Parses `anthropic=2, foundry=1` into (direct, foundry) attempts.
pub(crate) fn parse_attempts(header: &str) -> (u64, u64) {
    let mut out = (0, 0);
    for part in header.split(',') {
        let Some((route, n)) = part.trim().split_once('=') else {
            continue;
        };
        let n: u64 = n.trim().parse().unwrap_or(0);
        if route.trim() == "anthropic" {
            out.0 += n;
        } else {
            out.1 += n;
        }
    }
    out
}

#[derive(Debug, Default)]
struct Tally {
    requests: u64,
    succeeded: u64,
    direct: u64,
    foundry: u64,
    reported: u64,
}

/// Runs `scenario` at `rate` requests per second for `duration` against a
/// fresh gateway in front of `sim`.
pub(crate) async fn run(
    bins: &Binaries,
    sim: SocketAddr,
    scenario: Scenario,
    rate: f64,
    duration: Duration,
) -> Result<FaultRun, BoxError> {
    let gateway = procs::gateway(bins, sim, scenario.foundry)?;
    procs::control(sim, Method::POST, "/_sim/reset", "").await?;
    procs::control(sim, Method::POST, "/_sim/faults", scenario.faults).await?;

    let spec = RequestSpec::with_body(gateway.addr(), small_body(false), None);
    let pool: Arc<Mutex<Vec<Connection>>> = Arc::new(Mutex::new(Vec::new()));
    let tally = Arc::new(Mutex::new(Tally::default()));
    let latency = Arc::new(Mutex::new(client::micros_histogram()));
    let period = Duration::from_secs_f64(1.0 / rate);
    let start = Instant::now();
    let until = start + duration;
    let mut due = start;
    let mut tasks = JoinSet::new();
    while due < until {
        tokio::time::sleep_until(due).await;
        let (spec, pool, tally, latency) =
            (spec.clone(), pool.clone(), tally.clone(), latency.clone());
        let addr = gateway.addr();
        tasks.spawn(async move {
            let taken = pool.lock().expect("pool lock").pop();
            let mut conn = taken.unwrap_or_else(|| Connection::new(addr));
            let result = conn.exchange(&spec).await;
            let mut t = tally.lock().expect("tally lock");
            t.requests += 1;
            if let Ok(x) = &result {
                if x.status.is_success() {
                    t.succeeded += 1;
                    client::record(&mut latency.lock().expect("latency lock"), x.done - due);
                }
                if let Some(header) = &x.attempts {
                    let (d, f) = parse_attempts(header);
                    t.direct += d;
                    t.foundry += f;
                    t.reported += 1;
                }
            }
            drop(t);
            if result.is_ok() {
                pool.lock().expect("pool lock").push(conn);
            }
        });
        due += period;
    }
    while let Some(joined) = tasks.join_next().await {
        joined.expect("a fault-run task panicked");
    }
    let seconds = start.elapsed().as_secs_f64();
    let direct_breaker = breaker_state(gateway.addr()).await;
    let (upstream_direct, upstream_foundry) = procs::logged_per_route(sim).await?;
    procs::control(sim, Method::POST, "/_sim/reset", "").await?;
    drop(gateway);

    let t = std::mem::take(&mut *tally.lock().expect("tally lock"));
    let latency = std::mem::replace(
        &mut *latency.lock().expect("latency lock"),
        client::micros_histogram(),
    );
    Ok(FaultRun {
        scenario,
        requests: t.requests,
        succeeded: t.succeeded,
        attempts_direct: t.direct,
        attempts_foundry: t.foundry,
        reported: t.reported,
        upstream_direct,
        upstream_foundry,
        latency,
        seconds,
        direct_breaker,
    })
}

/// The `anthropic` route's breaker state as `/healthz` reports it.
async fn breaker_state(gateway: SocketAddr) -> String {
    let Ok(body) = procs::control(gateway, Method::GET, "/healthz", "").await else {
        return "?".to_owned();
    };
    let health: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    health["routes"]
        .as_array()
        .and_then(|routes| routes.iter().find(|r| r["id"] == "anthropic"))
        .and_then(|r| r["breaker"].as_str())
        .unwrap_or("?")
        .to_owned()
}

#[cfg(test)]
mod tests {
    use super::parse_attempts;

    #[test]
    fn the_attempts_header_is_summed_per_route() {
        assert_eq!(parse_attempts("anthropic=2, foundry=1"), (2, 1));
        assert_eq!(parse_attempts("anthropic=3"), (3, 0));
        assert_eq!(parse_attempts("foundry=1"), (0, 1));
        assert_eq!(parse_attempts("garbage, anthropic=x"), (0, 0));
    }
}
