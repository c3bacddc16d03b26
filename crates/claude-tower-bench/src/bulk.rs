//! The bulk check: long streams back to back, for what a layer costs per
//! streamed byte (the usage layer's budget is stated on a 10 MiB stream).
//!
//! Each segment sends `streams` streaming requests of `stream_bytes` through
//! one target, `concurrency` at a time over keep-alive connections, and
//! reads every byte. It measures the bytes per second of wall time and the
//! CPU each process spent ([`crate::cpu`]), per stream. Every round visits
//! every target, in a rotated order, like the workloads' rounds.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{BoxError, Connection, RequestSpec};
use crate::cpu::{CpuUse, Processes};
use crate::workload::small_body;

/// One server to stream through.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    pub(crate) name: &'static str,
    pub(crate) addr: SocketAddr,
    pub(crate) processes: Processes,
}

/// What the bulk check measured, per target in the order given.
#[derive(Debug)]
pub(crate) struct BulkRun {
    pub(crate) names: Vec<&'static str>,
    pub(crate) streams: usize,
    pub(crate) stream_bytes: usize,
    pub(crate) concurrency: usize,
    /// Per target, each round's MiB/s.
    pub(crate) per_round: Vec<Vec<f64>>,
    /// Per target: streams that ended short or not in a 200.
    pub(crate) failed: Vec<u64>,
    pub(crate) received: Vec<u64>,
    pub(crate) seconds: Vec<f64>,
    /// Per target; its `answers` are the complete streams.
    pub(crate) cpu: Vec<CpuUse>,
}

impl BulkRun {
    /// MiB per second over all rounds.
    pub(crate) fn mib_per_second(&self, i: usize) -> f64 {
        self.received[i] as f64 / (1 << 20) as f64 / self.seconds[i].max(1e-9)
    }
}

/// Runs `rounds` rounds over `targets`.
pub(crate) async fn run(
    targets: &[Target],
    streams: usize,
    stream_bytes: usize,
    concurrency: usize,
    rounds: usize,
) -> Result<BulkRun, BoxError> {
    let n = targets.len();
    let mut out = BulkRun {
        names: targets.iter().map(|t| t.name).collect(),
        streams,
        stream_bytes,
        concurrency,
        per_round: vec![Vec::new(); n],
        failed: vec![0; n],
        received: vec![0; n],
        seconds: vec![0.0; n],
        cpu: vec![CpuUse::default(); n],
    };
    for round in 0..rounds {
        for t in (0..n).map(|k| (k + round) % n) {
            let target = &targets[t];
            let spec = RequestSpec::with_body(target.addr, small_body(true), Some(stream_bytes));
            let before = target.processes.read()?;
            let start = Instant::now();
            let (complete, failed, received) =
                segment(target.addr, spec, streams, stream_bytes, concurrency).await;
            let seconds = start.elapsed().as_secs_f64();
            let after = target.processes.read()?;
            out.cpu[t].add(before, after, complete);
            out.failed[t] += failed;
            out.received[t] += received;
            out.seconds[t] += seconds;
            out.per_round[t].push(received as f64 / (1 << 20) as f64 / seconds.max(1e-9));
        }
    }
    Ok(out)
}

/// `streams` streams through `concurrency` connections: (complete, failed,
/// bytes received).
async fn segment(
    addr: SocketAddr,
    spec: Arc<RequestSpec>,
    streams: usize,
    stream_bytes: usize,
    concurrency: usize,
) -> (u64, u64, u64) {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = JoinSet::new();
    for _ in 0..concurrency.min(streams) {
        let (spec, next) = (spec.clone(), next.clone());
        tasks.spawn(async move {
            let mut conn = Connection::new(addr);
            let (mut complete, mut failed, mut received) = (0u64, 0u64, 0u64);
            while next.fetch_add(1, Ordering::Relaxed) < streams {
                match conn.exchange(&spec).await {
                    Ok(x) => {
                        received += x.bytes as u64;
                        if x.status.is_success() && x.bytes >= stream_bytes {
                            complete += 1;
                        } else {
                            failed += 1;
                        }
                    }
                    Err(_) => failed += 1,
                }
            }
            (complete, failed, received)
        });
    }
    let mut total = (0, 0, 0);
    while let Some(joined) = tasks.join_next().await {
        let (c, f, r) = joined.expect("a stream task panicked");
        total = (total.0 + c, total.1 + f, total.2 + r);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stream of every round is sent once, read whole and counted,
    /// and the CPU is divided by the complete streams.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_stream_is_sent_once_and_read_whole() {
        let sim = claude_tower_sim::Sim::start(claude_tower_sim::SimConfig::default())
            .await
            .expect("starts");
        let target = Target {
            name: "(a) direct",
            addr: sim.addr(),
            processes: Processes {
                server: None,
                simulator: std::process::id(),
            },
        };
        let bytes = 64 * 1024;
        // One stream's size on the wire (the text plus the SSE framing).
        let spec = RequestSpec::with_body(sim.addr(), small_body(true), Some(bytes));
        let one = Connection::new(sim.addr())
            .exchange(&spec)
            .await
            .expect("answers")
            .bytes as u64;
        assert!(one >= bytes as u64);
        let run = run(&[target], 5, bytes, 2, 2).await.expect("runs");
        assert_eq!(run.failed, [0]);
        assert_eq!(run.cpu[0].answers, 10, "5 streams x 2 rounds");
        assert_eq!(run.per_round[0].len(), 2);
        assert_eq!(run.received[0], 10 * one, "each stream once, whole");
        assert!(run.cpu[0].simulator.ns > 0 && run.cpu[0].client.ns > 0);
        assert!(run.mib_per_second(0) > 0.0);
    }
}
