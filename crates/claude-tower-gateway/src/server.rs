//! The accept loop: HTTP/1.1 and HTTP/2 (prior knowledge, or ALPN under
//! TLS) on one port, with the limits a gateway on a shared network needs.
//!
//! - **Connection cap.** A semaphore permit per connection, taken *before*
//!   `accept`: past the cap, new connections wait in the kernel's backlog
//!   instead of costing a task, buffers and a file descriptor each.
//! - **Header-read timeout.** hyper enforces it for HTTP/1 once it has a
//!   timer (without one, as under `axum::serve`, it never fires: 500 clients
//!   sending a byte a second were all still connected after 65 s). hyper
//!   starts that clock whenever it waits for a request head, so it is also
//!   how long a kept-alive HTTP/1 connection may sit between requests. The
//!   same bound covers what hyper does not time: a connection must have
//!   started its first request within it (a client that never finishes the
//!   24-byte HTTP/2 preface, or a TLS handshake).
//! - **Idle timeout.** A connection with no request in flight for this long
//!   is shut down gracefully (HTTP/2: GOAWAY). In flight means until the
//!   response body is done, so a quiet stream waiting on a long answer is
//!   never cut; HTTP/2 pings do not count as use.
//! - **HTTP/2** stream and header-list limits, and keep-alive pings that
//!   find dead peers.
//! - `TCP_NODELAY` on every socket: SSE events are small writes, and with
//!   Nagle's algorithm each one after the first can wait for the client's
//!   delayed ACK (tens of milliseconds) before it leaves.
//!
//! On shutdown the loop stops accepting, every connection is told to finish
//! (HTTP/1 closes after its current response, HTTP/2 sends GOAWAY), and
//! `serve` returns when the last one has.

use std::convert::Infallible;
use std::future::{Future, poll_fn};
use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::FutureExt;
use http::{Request, Response};
use http_body::{Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use pin_project_lite::pin_project;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, watch};
use tokio_rustls::TlsAcceptor;
use tower::Service;

use crate::config::ConnectionLimits;

mod gate;

use gate::Gate;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Largest header block an HTTP/2 client may send. Claude Code's are well
/// under 8 KiB; hyper's default is 16 MiB.
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;
/// How often an HTTP/2 connection is pinged, and how long a pong may take.
const H2_KEEP_ALIVE: Duration = Duration::from_secs(20);
/// After a graceful shutdown is asked of an idle connection, how long it may
/// take before it is dropped.
const CLOSE_GRACE: Duration = Duration::from_secs(5);

/// Serves on `listener` until `shutdown` resolves; see the module docs.
///
/// `make` is called once per accepted connection with the client's address,
/// and the service it returns answers that connection's requests, one after
/// another on the same instance (driven to readiness before each call); a
/// request that finds it busy, on an HTTP/2 connection, gets a clone. An
/// axum [`Router`](axum::Router) that reads `ConnectInfo<SocketAddr>` gets
/// it from [`Dispatch::for_peer`](crate::dispatch::Dispatch::for_peer), or:
///
/// ```no_run
/// # async fn run(listener: tokio::net::TcpListener) -> std::io::Result<()> {
/// use axum::extract::ConnectInfo;
/// use claude_tower_gateway::config::ConnectionLimits;
///
/// let app = axum::Router::new().route("/", axum::routing::get(|| async { "hi" }));
/// claude_tower_gateway::server::serve(
///     listener,
///     move |peer| app.clone().layer(axum::Extension(ConnectInfo(peer))),
///     ConnectionLimits::default(),
///     None,
///     std::future::pending(),
/// )
/// .await
/// # }
/// ```
pub async fn serve<M, S, B>(
    listener: TcpListener,
    make: M,
    limits: ConnectionLimits,
    tls: Option<TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> io::Result<()>
where
    M: Fn(SocketAddr) -> S,
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_concurrent_streams(limits.h2_max_streams)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .keep_alive_interval(H2_KEEP_ALIVE)
        .keep_alive_timeout(H2_KEEP_ALIVE);
    let builder = Arc::new(builder);
    // NOTE: clamped, as `ConnectionLimits` can be set by hand past what the
    // settings parser allows; a semaphore panics above MAX_PERMITS.
    let cap = limits
        .max_connections
        .clamp(1, Semaphore::MAX_PERMITS.min(u32::MAX as usize));
    let permits = Arc::new(Semaphore::new(cap));
    let (stop_tx, stop_rx) = watch::channel(false);
    let mut shutdown = pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = permits.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(err) => {
                    accept_error(err).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        if let Err(err) = tcp.set_nodelay(true) {
            tracing::debug!(%err, "cannot set TCP_NODELAY on an accepted socket");
        }
        let conn = Conn {
            builder: builder.clone(),
            service: make(peer),
            limits: limits.clone(),
            stop: stop_rx.clone(),
        };
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => conn.run(tcp).await,
                Some(tls) => conn.run_tls(tcp, &tls).await,
            }
            tracing::trace!(%peer, "connection closed");
            drop(permit);
        });
    }
    // Closed now, not when the last connection ends: new clients are refused
    // at once (a load balancer moves on) instead of waiting in the backlog.
    drop(listener);
    tracing::info!("no new connections; waiting for open ones to finish");
    // NOTE: send fails only when no connection holds a receiver: nothing to tell.
    let _ = stop_tx.send(true);
    drop(stop_rx);
    // Every permit back means every connection task has ended.
    let _ = permits
        .acquire_many(u32::try_from(cap).unwrap_or(u32::MAX))
        .await;
    Ok(())
}

/// Errors `accept` returns for one failed connection go on at once; others
/// (out of file descriptors) back off a little, as `axum::serve` does.
async fn accept_error(err: io::Error) {
    use io::ErrorKind::*;
    if matches!(
        err.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    ) {
        return;
    }
    tracing::error!(%err, "accept failed; retrying in 1 s");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

/// One connection's share of the server.
struct Conn<S> {
    builder: Arc<auto::Builder<TokioExecutor>>,
    /// This connection's service, from `serve`'s `make`.
    service: S,
    limits: ConnectionLimits,
    stop: watch::Receiver<bool>,
}

impl<S, B> Conn<S>
where
    S: Service<Request<Incoming>, Response = Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes> + Send + 'static,
    B::Error: Into<BoxError>,
{
    async fn run_tls(self, tcp: TcpStream, tls: &TlsAcceptor) {
        // The handshake is part of "sending the request head" for timing.
        match tokio::time::timeout(self.limits.header_read_timeout, tls.accept(tcp)).await {
            Ok(Ok(stream)) => self.run(stream).await,
            Ok(Err(err)) => tracing::debug!(%err, "TLS handshake failed"),
            Err(_) => tracing::debug!("TLS handshake timed out"),
        }
    }

    async fn run<I>(mut self, io: I)
    where
        I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        let activity = Arc::new(Activity::default());
        let io = TokioIo::new(io);
        let app = Arc::new(Reuse::new(self.service));
        let counted = activity.clone();
        let service = hyper::service::service_fn(move |req: Request<Incoming>| {
            let guard = InFlight::begin(counted.clone());
            // NOTE: `map` over a hand-written future, not an `async` block:
            // a block would hold the request twice (captured, then in the
            // call), and hyper moves this future into its state.
            app.call(req).map(move |result| {
                result.map(|res| {
                    res.map(|body| CountedBody {
                        body,
                        _guard: guard,
                    })
                })
            })
        });
        let mut conn = pin!(self.builder.serve_connection(io, service));

        let first_request = tokio::time::sleep(self.limits.header_read_timeout);
        let mut first_request = pin!(first_request);
        // Four looks per idle period: closed between 1x and 1.25x the timeout.
        let period = (self.limits.idle_timeout / 4).max(Duration::from_millis(1));
        let mut tick = tokio::time::interval(period);
        let mut last_seen = activity.events();
        let mut quiet_ticks = 0u32;
        let mut stop = pin!(self.stop.changed());
        // Set once a graceful shutdown was asked: the time after which a
        // connection with nothing in flight is dropped outright.
        let mut closing: Option<tokio::time::Instant> = None;
        // The watchdog (shutdown, first request, idle tick) is polled only
        // when one of its own wakers fired, not on each of hyper's wakes.
        let gate = Gate::new();
        loop {
            let event = poll_fn(|cx| {
                if let Poll::Ready(done) = conn.as_mut().poll(cx) {
                    return Poll::Ready(Watch::Done(done));
                }
                gate.poll_with(cx, |cx| {
                    // Shutdown (or the server gone): finish what is in flight.
                    if closing.is_none() && stop.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Watch::Stop);
                    }
                    if !activity.started() && first_request.as_mut().poll(cx).is_ready() {
                        return Poll::Ready(Watch::NoRequest);
                    }
                    tick.poll_tick(cx).map(|_| Watch::Tick)
                })
            })
            .await;
            match event {
                Watch::Done(done) => {
                    if let Err(err) = done {
                        tracing::debug!(%err, "connection ended with an error");
                    }
                    return;
                }
                Watch::Stop => {
                    conn.as_mut().graceful_shutdown();
                    closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                }
                Watch::NoRequest => {
                    tracing::debug!("no request within the header-read timeout; closing");
                    return;
                }
                Watch::Tick => {
                    let idle = activity.in_flight() == 0;
                    if let Some(deadline) = closing {
                        if idle && tokio::time::Instant::now() >= deadline {
                            return;
                        }
                        continue;
                    }
                    let seen = activity.events();
                    quiet_ticks = if idle && seen == last_seen {
                        quiet_ticks + 1
                    } else {
                        0
                    };
                    last_seen = seen;
                    if quiet_ticks >= 4 {
                        tracing::debug!("idle connection; closing");
                        conn.as_mut().graceful_shutdown();
                        closing = Some(tokio::time::Instant::now() + CLOSE_GRACE);
                    }
                }
            }
        }
    }
}

/// One connection's service, reused by its requests in turn.
///
/// tower's way is a clone of the service per request (hyper-util's adapter
/// does so), and the gateway's service is the whole stack: its clone and
/// drop touch a dozen reference counts that every connection shares, from
/// whichever core runs it. An HTTP/1 connection's requests come one after
/// another, so a request finds the connection's own service idle, and when
/// it is ready calls it in place, under the slot's lock, without moving it.
/// Only a service that is not ready yet is taken out while the request
/// waits for it (so that no other request polls it and takes the readiness
/// its waker is registered for), and put back once called. The
/// connection's first request clones the service from the template; after
/// that only a request that finds it taken (HTTP/2 streams at once) clones
/// it.
struct Reuse<S> {
    slot: Mutex<Slot<S>>,
}

struct Slot<S> {
    /// The service, when no request holds it.
    idle: Option<S>,
    /// What a request that finds it taken clones.
    template: S,
}

impl<S> Reuse<S> {
    fn new(service: S) -> Self {
        Self {
            slot: Mutex::new(Slot {
                idle: None,
                template: service,
            }),
        }
    }

    fn slot(&self) -> MutexGuard<'_, Slot<S>> {
        // NOTE: a panic under the lock (in the service's `poll_ready` or
        // `call`) ends the connection's task, and with it this `Reuse`.
        self.slot.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn put_back(&self, service: S) {
        self.slot().idle = Some(service);
    }

    /// Calls the connection's service with `request` once it is ready.
    fn call<R>(self: &Arc<Self>, request: R) -> ReuseFuture<S, R>
    where
        S: Service<R> + Clone,
    {
        ReuseFuture {
            state: State::Ready {
                reuse: Arc::clone(self),
                request: Some(request),
                held: None,
            },
        }
    }
}

pin_project! {
    /// The future of [`Reuse::call`]: readiness, then the service's future.
    struct ReuseFuture<S, R>
    where
        S: Service<R>,
    {
        #[pin]
        state: State<S, R>,
    }
}

pin_project! {
    #[project = StateProj]
    enum State<S, R>
    where
        S: Service<R>,
    {
        /// Waiting for a ready service: the connection's own, called in
        /// place, or one this request holds (`held`: taken while not
        /// ready, or cloned because another request had it).
        Ready {
            reuse: Arc<Reuse<S>>,
            request: Option<R>,
            held: Option<S>,
        },
        /// Called: the service's future.
        Called {
            #[pin]
            future: S::Future,
        },
    }
}

impl<S, R> Future for ReuseFuture<S, R>
where
    S: Service<R> + Clone,
{
    type Output = Result<S::Response, S::Error>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        loop {
            let future = match self.as_mut().project().state.project() {
                StateProj::Called { future } => return future.poll(cx),
                StateProj::Ready {
                    reuse,
                    request,
                    held,
                } => match held {
                    Some(service) => {
                        if let Err(err) = ready!(service.poll_ready(cx)) {
                            // A failed service is not put back.
                            *held = None;
                            return Poll::Ready(Err(err));
                        }
                        let future = service.call(take_request(request));
                        if let Some(service) = held.take() {
                            reuse.put_back(service);
                        }
                        future
                    }
                    None => {
                        let mut slot = reuse.slot();
                        let Some(service) = slot.idle.as_mut() else {
                            // Another request holds it (or this is the
                            // connection's first): a clone of its own.
                            *held = Some(slot.template.clone());
                            continue;
                        };
                        match service.poll_ready(cx) {
                            Poll::Ready(Ok(())) => service.call(take_request(request)),
                            Poll::Ready(Err(err)) => {
                                slot.idle = None;
                                return Poll::Ready(Err(err));
                            }
                            Poll::Pending => {
                                // Its readiness will wake this request:
                                // held here until then, so no other
                                // request takes it.
                                *held = slot.idle.take();
                                return Poll::Pending;
                            }
                        }
                    }
                },
            };
            self.as_mut().project().state.set(State::Called { future });
        }
    }
}

/// The request of a [`ReuseFuture`] still waiting for its service.
fn take_request<R>(request: &mut Option<R>) -> R {
    // NOTE: the state becomes `Called` right after the one call that takes it.
    request
        .take()
        .expect("a ReuseFuture's request is taken once, by its call")
}

/// What ended one wait of a connection's loop.
enum Watch<E> {
    /// hyper's connection finished.
    Done(Result<(), E>),
    /// The server is shutting down (or gone).
    Stop,
    /// No request began within the header-read timeout.
    NoRequest,
    /// The idle watchdog's tick.
    Tick,
}

/// Per-connection counters the idle watchdog reads. Only requests count:
/// HTTP/2 pings, or bytes a client trickles without finishing a request,
/// do not keep a connection open.
#[derive(Default)]
struct Activity {
    /// Requests begun plus requests finished on this connection.
    events: AtomicU64,
    /// Requests whose response body is not done.
    in_flight: AtomicUsize,
}

impl Activity {
    fn events(&self) -> u64 {
        self.events.load(Ordering::Relaxed)
    }

    fn in_flight(&self) -> usize {
        self.in_flight.load(Ordering::Relaxed)
    }

    fn started(&self) -> bool {
        self.events() > 0
    }
}

/// Held from a request's start until its response body is done or dropped.
struct InFlight(Arc<Activity>);

impl InFlight {
    fn begin(activity: Arc<Activity>) -> Self {
        activity.events.fetch_add(1, Ordering::Relaxed);
        activity.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(activity)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
        self.0.events.fetch_add(1, Ordering::Relaxed);
    }
}

pin_project! {
    /// The response body, holding its request's [`InFlight`] until done.
    struct CountedBody<B> {
        #[pin]
        body: B,
        _guard: InFlight,
    }
}

impl<B: http_body::Body<Data = Bytes>> http_body::Body for CountedBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        self.project().body.poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, AtomicUsize};

    use super::*;

    /// Ready when its gate is open (a failed readiness when `fail` is set);
    /// answers with its clone number.
    struct Gated {
        open: Arc<AtomicBool>,
        fail: Arc<AtomicBool>,
        clones: Arc<AtomicUsize>,
        number: usize,
    }

    impl Clone for Gated {
        fn clone(&self) -> Self {
            Self {
                open: self.open.clone(),
                fail: self.fail.clone(),
                clones: self.clones.clone(),
                number: self.clones.fetch_add(1, Ordering::Relaxed) + 1,
            }
        }
    }

    impl Service<()> for Gated {
        type Response = usize;
        type Error = &'static str;
        type Future = std::future::Ready<Result<usize, &'static str>>;

        fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), &'static str>> {
            if self.fail.load(Ordering::Relaxed) {
                Poll::Ready(Err("failed"))
            } else if self.open.load(Ordering::Relaxed) {
                Poll::Ready(Ok(()))
            } else {
                Poll::Pending
            }
        }

        fn call(&mut self, (): ()) -> Self::Future {
            std::future::ready(Ok(self.number))
        }
    }

    /// A `Reuse` over a [`Gated`] service, ready and not failing, and a
    /// handle on its gate, failure switch and clone count.
    fn gated() -> (Arc<Reuse<Gated>>, Gated) {
        let service = Gated {
            open: Arc::new(AtomicBool::new(true)),
            fail: Arc::new(AtomicBool::new(false)),
            clones: Arc::new(AtomicUsize::new(0)),
            number: 0,
        };
        let handle = Gated {
            open: service.open.clone(),
            fail: service.fail.clone(),
            clones: service.clones.clone(),
            number: 0,
        };
        (Arc::new(Reuse::new(service)), handle)
    }

    #[tokio::test]
    async fn requests_in_turn_share_one_service() {
        let (reuse, handle) = gated();
        for _ in 0..3 {
            assert_eq!(reuse.call(()).await, Ok(1), "the first takes a clone");
        }
        assert_eq!(handle.clones.load(Ordering::Relaxed), 1);
    }

    fn poll_once<F: Future + Unpin>(future: &mut F) -> Poll<F::Output> {
        Pin::new(future).poll(&mut Context::from_waker(std::task::Waker::noop()))
    }

    #[test]
    fn a_service_not_ready_is_held_by_its_request_and_put_back_once_called() {
        let (reuse, handle) = gated();
        let open = &handle.open;
        assert_eq!(poll_once(&mut reuse.call(())), Poll::Ready(Ok(1)));
        open.store(false, Ordering::Relaxed);
        let mut waiting = Box::pin(reuse.call(()));
        assert_eq!(poll_once(&mut waiting), Poll::Pending);
        // Held by the waiting request: the next one clones its own, which
        // is not ready either, and is not put back while it waits.
        let mut next = Box::pin(reuse.call(()));
        assert_eq!(poll_once(&mut next), Poll::Pending);
        open.store(true, Ordering::Relaxed);
        assert_eq!(poll_once(&mut waiting), Poll::Ready(Ok(1)));
        assert_eq!(poll_once(&mut next), Poll::Ready(Ok(2)));
        // The last put back is the one the slot keeps.
        assert_eq!(poll_once(&mut reuse.call(())), Poll::Ready(Ok(2)));
        assert_eq!(poll_once(&mut reuse.call(())), Poll::Ready(Ok(2)));
    }

    #[test]
    fn a_service_that_fails_its_readiness_is_not_reused() {
        let (reuse, handle) = gated();
        let fail = &handle.fail;
        assert_eq!(poll_once(&mut reuse.call(())), Poll::Ready(Ok(1)));
        fail.store(true, Ordering::Relaxed);
        assert_eq!(poll_once(&mut reuse.call(())), Poll::Ready(Err("failed")));
        fail.store(false, Ordering::Relaxed);
        // Dropped from the slot: the next request clones the template.
        assert_eq!(poll_once(&mut reuse.call(())), Poll::Ready(Ok(2)));
        assert_eq!(poll_once(&mut reuse.call(())), Poll::Ready(Ok(2)));
    }
}
