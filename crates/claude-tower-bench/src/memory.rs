//! The memory check: many large streams at once through a fresh server
//! process (the gateway, and the passthrough as the yardstick), its resident
//! set read from `/proc/PID/status` before and while they run. A proxy that
//! buffered answers would grow by the streams' size; one that streams grows
//! by its per-connection buffers only.

use std::time::Duration;

use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::client::{BoxError, Connection, RequestSpec};
use crate::procs::{self, Server};
use crate::workload::small_body;

/// What the memory check measured (KiB).
#[derive(Debug)]
pub(crate) struct MemoryRun {
    pub(crate) streams: usize,
    pub(crate) stream_bytes: usize,
    pub(crate) idle_rss: u64,
    /// The largest `VmRSS` sampled while the streams ran.
    pub(crate) sampled_peak: u64,
    /// `VmHWM` after the streams: the process's peak over its whole life.
    pub(crate) hwm: u64,
    pub(crate) received: u64,
    pub(crate) complete: usize,
    pub(crate) seconds: f64,
}

impl MemoryRun {
    pub(crate) fn peak(&self) -> u64 {
        self.sampled_peak.max(self.hwm)
    }

    pub(crate) fn growth_kib(&self) -> u64 {
        self.peak().saturating_sub(self.idle_rss)
    }
}

/// Sends `streams` concurrent streaming requests of `stream_bytes` each
/// through `server`, which should be freshly started.
pub(crate) async fn run(
    server: &Server,
    streams: usize,
    stream_bytes: usize,
) -> Result<MemoryRun, BoxError> {
    let gateway = server;
    let pid = gateway.pid();
    // Warm up: one answer of each kind, so pools and lazy statics exist.
    let mut conn = Connection::new(gateway.addr());
    conn.exchange(&RequestSpec::with_body(
        gateway.addr(),
        small_body(false),
        None,
    ))
    .await?;
    conn.exchange(&RequestSpec::with_body(
        gateway.addr(),
        small_body(true),
        Some(64 * 1024),
    ))
    .await?;
    drop(conn);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (idle_rss, _) = procs::memory_kib(pid)?;

    let spec = RequestSpec::with_body(gateway.addr(), small_body(true), Some(stream_bytes));
    let start = Instant::now();
    let mut tasks = JoinSet::new();
    for _ in 0..streams {
        let spec = spec.clone();
        let addr = gateway.addr();
        tasks.spawn(async move {
            let mut conn = Connection::new(addr);
            conn.exchange(&spec).await
        });
    }
    let mut sampled_peak = idle_rss;
    let mut received = 0u64;
    let mut complete = 0usize;
    let mut ticker = tokio::time::interval(Duration::from_millis(20));
    loop {
        tokio::select! {
            joined = tasks.join_next() => match joined {
                None => break,
                Some(joined) => {
                    if let Ok(x) = joined.expect("a stream task panicked") {
                        received += x.bytes as u64;
                        if x.status.is_success() && x.bytes >= stream_bytes {
                            complete += 1;
                        }
                    }
                }
            },
            _ = ticker.tick() => {
                if let Ok((rss, _)) = procs::memory_kib(pid) {
                    sampled_peak = sampled_peak.max(rss);
                }
            }
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    let (_, hwm) = procs::memory_kib(pid)?;
    Ok(MemoryRun {
        streams,
        stream_bytes,
        idle_rss,
        sampled_peak,
        hwm,
        received,
        complete,
        seconds,
    })
}
