//! Loopback load on the simulator: non-streaming requests per second over many
//! concurrent keep-alive connections, and the rate of one large stream.
//!
//! `cargo bench -p claude-tower-sim --bench load -- [--warm-up-time S]
//! [--measurement-time S] [--connections N] [--stream-mb N]`
//!
//! The client runs in the same process and on the same cores as the server, so
//! the figure is a floor for what the simulator alone can serve.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use claude_tower_sim::{Sim, SimConfig};
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::TokioIo;

struct Args {
    warm_up: Duration,
    measure: Duration,
    connections: usize,
    stream_mb: usize,
}

fn args() -> Args {
    let mut out = Args {
        warm_up: Duration::from_secs(1),
        measure: Duration::from_secs(3),
        connections: 64,
        stream_mb: 10,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut num = || it.next().and_then(|v| v.parse::<f64>().ok());
        match flag.as_str() {
            "--warm-up-time" => {
                out.warm_up = num().map(Duration::from_secs_f64).unwrap_or(out.warm_up)
            }
            "--measurement-time" => {
                out.measure = num().map(Duration::from_secs_f64).unwrap_or(out.measure)
            }
            "--connections" => {
                out.connections = num().map(|n| n as usize).unwrap_or(out.connections)
            }
            "--stream-mb" => out.stream_mb = num().map(|n| n as usize).unwrap_or(out.stream_mb),
            // `cargo bench` passes `--bench`; anything else is ignored too.
            _ => {}
        }
    }
    out
}

type Sender = hyper::client::conn::http1::SendRequest<Full<Bytes>>;

async fn connect(sim: &Sim) -> Sender {
    let stream = tokio::net::TcpStream::connect(sim.addr())
        .await
        .expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .expect("handshake");
    tokio::spawn(conn);
    sender
}

fn request(sim: &Sim, body: &Bytes, stream_bytes: Option<usize>) -> Request<Full<Bytes>> {
    let mut req = Request::post("/v1/messages")
        .header("host", sim.addr().to_string())
        .header("x-api-key", "bench")
        .header("anthropic-version", "2023-06-01")
        .header("content-type", "application/json");
    if let Some(n) = stream_bytes {
        req = req.header("x-sim-stream-bytes", n.to_string());
    }
    req.body(Full::new(body.clone())).expect("request")
}

fn messages_body(system_bytes: usize) -> Bytes {
    Bytes::from(
        serde_json::json!({
            "model": "claude-sonnet-4-5", "max_tokens": 64,
            "system": "s".repeat(system_bytes),
            "messages": [{"role": "user", "content": "hello"}],
        })
        .to_string(),
    )
}

async fn requests_per_second(sim: &Arc<Sim>, args: &Args, body: Bytes) -> f64 {
    let counting = Arc::new(AtomicBool::new(false));
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let (sim, body, counting, stop, done) = (
            sim.clone(),
            body.clone(),
            counting.clone(),
            stop.clone(),
            done.clone(),
        );
        tasks.push(tokio::spawn(async move {
            let mut sender = connect(&sim).await;
            while !stop.load(Ordering::Relaxed) {
                if sender.ready().await.is_err() {
                    sender = connect(&sim).await;
                    continue;
                }
                let res = sender
                    .send_request(request(&sim, &body, None))
                    .await
                    .expect("response");
                assert_eq!(res.status(), 200);
                res.into_body().collect().await.expect("body");
                if counting.load(Ordering::Relaxed) {
                    done.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }
    tokio::time::sleep(args.warm_up).await;
    counting.store(true, Ordering::Relaxed);
    let start = Instant::now();
    tokio::time::sleep(args.measure).await;
    let n = done.load(Ordering::Relaxed);
    let elapsed = start.elapsed();
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        t.await.expect("client task");
    }
    n as f64 / elapsed.as_secs_f64()
}

async fn stream_rate(sim: &Sim, megabytes: usize) -> (usize, Duration) {
    let body = Bytes::from(
        serde_json::json!({
            "model": "claude-sonnet-4-5", "max_tokens": 64, "stream": true,
            "messages": [{"role": "user", "content": "hello"}],
        })
        .to_string(),
    );
    let mut sender = connect(sim).await;
    let start = Instant::now();
    let res = sender
        .send_request(request(sim, &body, Some(megabytes << 20)))
        .await
        .expect("response");
    let mut body = res.into_body();
    let mut bytes = 0;
    while let Some(frame) = body.frame().await {
        if let Ok(data) = frame.expect("frame").into_data() {
            bytes += data.len();
        }
    }
    (bytes, start.elapsed())
}

fn main() {
    let args = args();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let sim = Arc::new(
            Sim::start(SimConfig::default().log_capacity(1000))
                .await
                .expect("sim"),
        );
        let rps = requests_per_second(&sim, &args, messages_body(0)).await;
        println!(
            "sim/non-streaming: {rps:.0} req/s over {} keep-alive connections ({:?} measured, {} worker threads)",
            args.connections,
            args.measure,
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        );
        let big = messages_body(200 * 1024);
        let big_len = big.len();
        let rps = requests_per_second(&sim, &args, big).await;
        println!(
            "sim/non-streaming-200KiB: {rps:.0} req/s ({:.0} MiB/s of request bodies)",
            rps * big_len as f64 / (1 << 20) as f64
        );
        let (bytes, took) = stream_rate(&sim, args.stream_mb).await;
        println!(
            "sim/stream: {} MiB of SSE in {took:?} ({:.0} MiB/s)",
            bytes >> 20,
            bytes as f64 / (1 << 20) as f64 / took.as_secs_f64()
        );
        println!("sim/log: {} kept, {} dropped (capacity 1000)", sim.requests().len(), sim.dropped_requests());
    });
}
