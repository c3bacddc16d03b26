//! The load client: raw hyper HTTP/1 connections, one request in flight per
//! connection, driven closed-loop (as fast as answers come back) or
//! open-loop (on a fixed timetable).
//!
//! # Coordinated omission
//!
//! In the open loop every connection owns a timetable: request `k` of
//! connection `i` is due at `t0 + (i + k * connections) / rate`. When an
//! answer comes back late, the next request is already due and goes out at
//! once, and its latency is counted **from the time it was due**, so a
//! stall shows in every request it held up (wrk2's correction). When the
//! connection was idle and the request waited for the client's own timer,
//! latency is counted from when the timer fired: tokio's timer has a
//! millisecond tick, and that rounding is the client's, not the server's.
//! How late the timer fired is recorded separately (`timer lag`), and the
//! uncorrected-for-timer figure (`from schedule`) is kept too.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use hdrhistogram::Histogram;
use http::{HeaderValue, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::workload::Workload;

/// The `x-api-key` every request sends (the `wave2` gateways know it as the
/// caller `bench`).
pub(crate) const CLIENT_KEY: &str = "bench-client-key";

pub(crate) type BoxError = Box<dyn std::error::Error + Send + Sync>;
type Sender = SendRequest<Full<Bytes>>;

/// A histogram of microseconds, 1 µs to 10 minutes, 3 significant figures.
pub(crate) fn micros_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("static histogram bounds")
}

pub(crate) fn record(hist: &mut Histogram<u64>, d: Duration) {
    hist.saturating_record(u64::try_from(d.as_micros()).unwrap_or(u64::MAX).max(1));
}

/// One kind of request to one address.
#[derive(Debug)]
pub(crate) struct RequestSpec {
    addr: SocketAddr,
    host: HeaderValue,
    path: &'static str,
    body: Bytes,
    stream_bytes: Option<HeaderValue>,
}

impl RequestSpec {
    pub(crate) fn new(addr: SocketAddr, workload: Workload) -> Arc<Self> {
        Self::with_body(addr, workload.body(), workload.stream_bytes())
    }

    pub(crate) fn with_body(
        addr: SocketAddr,
        body: Bytes,
        stream_bytes: Option<usize>,
    ) -> Arc<Self> {
        Arc::new(Self {
            addr,
            host: HeaderValue::from_str(&addr.to_string()).expect("an address is a valid host"),
            path: "/v1/messages",
            body,
            stream_bytes: stream_bytes.map(HeaderValue::from),
        })
    }

    fn request(&self) -> Request<Full<Bytes>> {
        let mut req = Request::post(self.path)
            .header(http::header::HOST, self.host.clone())
            .header("x-api-key", CLIENT_KEY)
            .header("anthropic-version", "2023-06-01")
            .header(http::header::CONTENT_TYPE, "application/json");
        if let Some(n) = &self.stream_bytes {
            req = req.header("x-sim-stream-bytes", n.clone());
        }
        req.body(Full::new(self.body.clone()))
            .expect("a static request is valid")
    }
}

/// One HTTP/1 keep-alive connection, reopened when it breaks.
#[derive(Debug)]
pub(crate) struct Connection {
    addr: SocketAddr,
    sender: Option<Sender>,
}

impl Connection {
    pub(crate) fn new(addr: SocketAddr) -> Self {
        Self { addr, sender: None }
    }

    async fn ready(&mut self) -> Result<&mut Sender, BoxError> {
        let healthy = match &mut self.sender {
            Some(sender) => sender.ready().await.is_ok(),
            None => false,
        };
        if !healthy {
            self.sender = None;
            let stream = tokio::net::TcpStream::connect(self.addr).await?;
            stream.set_nodelay(true)?;
            let (sender, conn) =
                hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
            tokio::spawn(async move {
                // A broken connection shows up as an error on the next send.
                let _ = conn.await;
            });
            self.sender = Some(sender);
        }
        self.sender.as_mut().ok_or_else(|| "no connection".into())
    }

    /// Sends one request and reads the whole answer.
    pub(crate) async fn exchange(&mut self, spec: &RequestSpec) -> Result<Exchange, BoxError> {
        let result = self.try_exchange(spec).await;
        if result.is_err() {
            self.sender = None;
        }
        result
    }

    async fn try_exchange(&mut self, spec: &RequestSpec) -> Result<Exchange, BoxError> {
        let sender = self.ready().await?;
        let response = sender.send_request(spec.request()).await?;
        let head = Instant::now();
        let status = response.status();
        let attempts = response
            .headers()
            .get("x-claude-tower-attempts")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let mut body = response.into_body();
        let mut first_byte = None;
        let mut bytes = 0;
        while let Some(frame) = body.frame().await {
            if let Some(data) = frame?.data_ref() {
                if first_byte.is_none() && !data.is_empty() {
                    first_byte = Some(Instant::now());
                }
                bytes += data.len();
            }
        }
        Ok(Exchange {
            status,
            head,
            first_byte: first_byte.unwrap_or(head),
            done: Instant::now(),
            bytes,
            attempts,
        })
    }
}

/// One answered request.
#[derive(Debug)]
pub(crate) struct Exchange {
    pub(crate) status: StatusCode,
    #[allow(dead_code)]
    pub(crate) head: Instant,
    pub(crate) first_byte: Instant,
    pub(crate) done: Instant,
    pub(crate) bytes: usize,
    pub(crate) attempts: Option<String>,
}

/// What a closed-loop run measured.
#[derive(Debug)]
pub(crate) struct Saturation {
    /// Successful answers completed inside the measuring window.
    pub(crate) completed: u64,
    /// Failed answers or transport errors inside the window.
    pub(crate) errors: u64,
    /// Response bytes of those answers.
    pub(crate) bytes: u64,
    pub(crate) window: Duration,
    /// Successful answers of the whole segment, warm-up and the answers
    /// finishing after the window included: what the CPU read around the
    /// segment was spent on.
    pub(crate) answers: u64,
}

impl Saturation {
    pub(crate) fn per_second(&self) -> f64 {
        self.completed as f64 / self.window.as_secs_f64()
    }

    pub(crate) fn merge(&mut self, other: Saturation) {
        self.completed += other.completed;
        self.errors += other.errors;
        self.bytes += other.bytes;
        self.window += other.window;
        self.answers += other.answers;
    }

    pub(crate) fn empty() -> Self {
        Self {
            completed: 0,
            errors: 0,
            bytes: 0,
            window: Duration::ZERO,
            answers: 0,
        }
    }
}

/// `connections` connections each send the next request as soon as the last
/// answer is read; counts the answers completed between `warm_up` and
/// `warm_up + measure`.
pub(crate) async fn closed_loop(
    spec: Arc<RequestSpec>,
    connections: usize,
    warm_up: Duration,
    measure: Duration,
) -> Saturation {
    let from = Instant::now() + warm_up;
    let until = from + measure;
    let mut tasks = JoinSet::new();
    for _ in 0..connections {
        let spec = spec.clone();
        tasks.spawn(async move {
            let mut conn = Connection::new(spec.addr);
            let mut out = Saturation::empty();
            while Instant::now() < until {
                let result = conn.exchange(&spec).await;
                if matches!(&result, Ok(x) if x.status.is_success()) {
                    out.answers += 1;
                }
                let now = Instant::now();
                if now < from || now > until {
                    continue;
                }
                match result {
                    Ok(x) if x.status.is_success() => {
                        out.completed += 1;
                        out.bytes += x.bytes as u64;
                    }
                    Ok(_) => out.errors += 1,
                    Err(_) => {
                        out.errors += 1;
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
            out
        });
    }
    let mut total = Saturation::empty();
    while let Some(joined) = tasks.join_next().await {
        total.merge(joined.expect("a client task panicked"));
    }
    total.window = measure;
    total
}

/// What an open-loop run measured (all in microseconds).
#[derive(Debug)]
pub(crate) struct Paced {
    /// Due time (or timer firing, see the module docs) to last byte.
    pub(crate) latency: Histogram<u64>,
    /// Due time to last byte, timer rounding included.
    pub(crate) from_schedule: Histogram<u64>,
    /// Due time (or timer firing) to the first byte of the body.
    pub(crate) ttfb: Histogram<u64>,
    /// How late the client's timer fired for requests sent on time.
    pub(crate) timer_lag: Histogram<u64>,
    pub(crate) sent: u64,
    /// Successful answers of the whole segment, warm-up included (what the
    /// CPU read around it was spent on).
    pub(crate) answers: u64,
    pub(crate) errors: u64,
    /// Requests that went out late because the previous answer on their
    /// connection had not come back by their due time.
    pub(crate) held_up: u64,
}

impl Paced {
    pub(crate) fn empty() -> Self {
        Self {
            latency: micros_histogram(),
            from_schedule: micros_histogram(),
            ttfb: micros_histogram(),
            timer_lag: micros_histogram(),
            sent: 0,
            answers: 0,
            errors: 0,
            held_up: 0,
        }
    }

    pub(crate) fn merge(&mut self, other: &Paced) {
        let add = |a: &mut Histogram<u64>, b: &Histogram<u64>| {
            a.add(b).expect("histograms share their bounds");
        };
        add(&mut self.latency, &other.latency);
        add(&mut self.from_schedule, &other.from_schedule);
        add(&mut self.ttfb, &other.ttfb);
        add(&mut self.timer_lag, &other.timer_lag);
        self.sent += other.sent;
        self.answers += other.answers;
        self.errors += other.errors;
        self.held_up += other.held_up;
    }
}

/// Offers `rate` requests per second over `connections` connections on a
/// fixed timetable (see the module docs); records the requests due after
/// `warm_up`, until `warm_up + measure`.
pub(crate) async fn open_loop(
    spec: Arc<RequestSpec>,
    rate: f64,
    connections: usize,
    warm_up: Duration,
    measure: Duration,
) -> io::Result<Paced> {
    // Open every connection before the clock starts.
    let mut conns = Vec::with_capacity(connections);
    for _ in 0..connections {
        let mut conn = Connection::new(spec.addr);
        conn.ready().await.map_err(io::Error::other)?;
        conns.push(conn);
    }
    let period = Duration::from_secs_f64(1.0 / rate);
    let stride = period * u32::try_from(connections).unwrap_or(u32::MAX);
    let start = Instant::now() + Duration::from_millis(5);
    let from = start + warm_up;
    let until = from + measure;
    let mut tasks = JoinSet::new();
    for (i, mut conn) in conns.into_iter().enumerate() {
        let spec = spec.clone();
        let mut due = start + period * u32::try_from(i).unwrap_or(u32::MAX);
        tasks.spawn(async move {
            let mut out = Paced::empty();
            while due < until {
                let counted = due >= from;
                let reference = if Instant::now() < due {
                    tokio::time::sleep_until(due).await;
                    let fired = Instant::now();
                    if counted {
                        record(&mut out.timer_lag, fired - due);
                    }
                    fired
                } else {
                    if counted {
                        out.held_up += 1;
                    }
                    due
                };
                let result = conn.exchange(&spec).await;
                if matches!(&result, Ok(x) if x.status.is_success()) {
                    out.answers += 1;
                }
                if counted {
                    out.sent += 1;
                    match result {
                        Ok(x) if x.status.is_success() => {
                            record(&mut out.latency, x.done - reference);
                            record(&mut out.from_schedule, x.done - due);
                            record(&mut out.ttfb, x.first_byte - reference);
                        }
                        _ => out.errors += 1,
                    }
                }
                due += stride;
            }
            out
        });
    }
    let mut total = Paced::empty();
    while let Some(joined) = tasks.join_next().await {
        total.merge(&joined.expect("a client task panicked"));
    }
    Ok(total)
}
