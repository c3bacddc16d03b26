//! The default transport: hyper-util's pooled client over rustls.
//!
//! One TLS stack in the tree: rustls with the aws-lc-rs crypto provider and
//! the platform certificate verifier, which is what reqwest 0.13 uses by
//! default, so a gateway that also links reqwest (or azure_identity) carries
//! one copy of each. `http://` URLs are allowed so the simulator and local
//! gateways work.
//!
//! # HTTP/1.1 by default, HTTP/2 on request
//!
//! [`https_client`] offers upstreams HTTP/1.1 only; [`https_client_with`]
//! and [`UpstreamHttp::Http2`] also offer HTTP/2 by ALPN. HTTP/2 saves
//! connections (one per upstream host instead of one per request in flight:
//! 1 against 33 for 32 concurrent clients in BENCHMARKS.md, each new one two
//! round trips to a far region), but hyper-util's pool keeps exactly one
//! HTTP/2 connection per host, and a request past the
//! `SETTINGS_MAX_CONCURRENT_STREAMS` the upstream advertises neither fails
//! nor gets a second connection: it waits, in an unbounded queue and
//! without a word, until one of the open streams ends
//! (`tests/transport_h2.rs` shows it). Claude's answers stream for seconds
//! to minutes, so a service or gateway with more streams open than that
//! limit (commonly 100 to 256) would hold the next request until the
//! stack's deadline — no error, no retry, no failover. HTTP/1.1 opens
//! another connection instead and keeps it pooled. Turn HTTP/2 on when the
//! number of streams open at once to one upstream host stays well under
//! its limit.

use std::ops::Deref;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use claude_tower_core::ReplayBody;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tower_service::Service;

/// The largest read buffer a pooled HTTP/1 connection grows to.
pub const READ_BUFFER_MAX: usize = 64 * 1024;

/// hyper-util's pooled client as [`https_client`] builds it.
pub type PooledClient = Client<HttpsConnector<HttpConnector>, ReplayBody>;

/// The client the default stack sends requests with: hyper-util's pooled
/// [`Client`] behind an [`Arc`], a cheap handle to share.
///
/// The stack keeps a clone of its transport in every layer that holds a
/// service, and the futures of a retry and a failover each hold one (a
/// `Retry` clones itself into its future; a failover clones the route's
/// service for each route it tries). hyper-util's client is 336 bytes with
/// six reference counts inside; this handle is one pointer and one
/// count, so every future that holds a service is 328 bytes smaller and
/// every clone one atomic increment instead of six. Sending costs what it
/// did: [`Client::request`] takes `&self`.
///
/// It dereferences to the [`Client`], whose methods (`request`, ...) stay
/// at hand.
#[derive(Clone, Debug)]
pub struct HttpsClient {
    client: Arc<PooledClient>,
}

impl HttpsClient {
    /// Shares `client`.
    pub fn new(client: PooledClient) -> Self {
        Self {
            client: Arc::new(client),
        }
    }
}

impl From<PooledClient> for HttpsClient {
    fn from(client: PooledClient) -> Self {
        Self::new(client)
    }
}

impl Deref for HttpsClient {
    type Target = PooledClient;

    fn deref(&self) -> &PooledClient {
        &self.client
    }
}

impl Service<Request<ReplayBody>> for HttpsClient {
    type Response = Response<Incoming>;
    type Error = hyper_util::client::legacy::Error;
    type Future = hyper_util::client::legacy::ResponseFuture;

    /// Always ready: the pool opens or waits for a connection inside the
    /// response future, as hyper-util's own `Service` does.
    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: Request<ReplayBody>) -> Self::Future {
        self.client.request(request)
    }
}

/// The HTTP versions the transport offers an `https://` upstream (ALPN).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpstreamHttp {
    /// HTTP/1.1 only (the default): one pooled keep-alive connection per
    /// request in flight, never a wait for a stream slot.
    #[default]
    Http1,
    /// HTTP/2 where the upstream offers it, else HTTP/1.1: one connection
    /// per host, and requests past the host's stream limit wait for a
    /// stream to end (see the [module docs](self)).
    Http2,
}

/// Builds the default transport: pooled keep-alive connections, TLS through
/// rustls with the platform verifier, HTTP/1.1 ([`UpstreamHttp::Http1`];
/// [`https_client_with`] chooses).
///
/// It also seeds the TLS library's random generator, once per process (a
/// few tens of milliseconds), so that the first request does not wait for
/// it.
///
/// # Errors
///
/// Fails when the platform's certificate verifier cannot be set up.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// let client = claude_tower::transport::https_client().expect("TLS set up");
/// # drop(client);
/// # }
/// ```
pub fn https_client() -> Result<HttpsClient, std::io::Error> {
    https_client_with(UpstreamHttp::default())
}

/// [`https_client`], offering upstreams the HTTP versions `http`.
///
/// # Errors
///
/// Fails when the platform's certificate verifier cannot be set up.
///
/// ```
/// use claude_tower::transport::{UpstreamHttp, https_client_with};
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// // Few long streams at once to each upstream host: HTTP/2 saves the
/// // connections.
/// let client = https_client_with(UpstreamHttp::Http2).expect("TLS set up");
/// # drop(client);
/// # }
/// ```
pub fn https_client_with(http: UpstreamHttp) -> Result<HttpsClient, std::io::Error> {
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // aws-lc seeds its random generator the first time anything in the
    // process asks it for bytes, and that seeding takes tens of
    // milliseconds. Left alone, the first TLS handshake pays it: the first
    // request through a fresh gateway to an `https://` route took 33-83 ms
    // against 2.8-4.4 ms once seeded (BENCHMARKS.md). Asking for a
    // few bytes now moves that cost to start-up. A failure here is not
    // ours to report: the handshake that needs the bytes will.
    let _ = provider.secure_random.fill(&mut [0; 32]);
    // Installing the provider twice is harmless; the first one wins.
    let _ = provider.install_default();
    let mut connector = HttpConnector::new();
    connector.enforce_http(false);
    connector.set_nodelay(true);
    connector.set_keepalive(Some(Duration::from_secs(60)));
    connector.set_connect_timeout(Some(Duration::from_secs(10)));
    let builder = hyper_rustls::HttpsConnectorBuilder::new()
        .try_with_platform_verifier()
        .map_err(std::io::Error::other)?
        .https_or_http()
        .enable_http1();
    let https = match http {
        UpstreamHttp::Http1 => builder.wrap_connector(connector),
        UpstreamHttp::Http2 => builder.enable_http2().wrap_connector(connector),
    };
    Ok(HttpsClient::new(
        Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(90))
            // hyper grows a connection's read buffer up to ~400 KiB while a
            // fast upstream streams; with a hundred concurrent streams that
            // is tens of MiB held for nothing. 64 KiB still reads a whole SSE
            // burst at once.
            .http1_max_buf_size(READ_BUFFER_MAX)
            .build(https),
    ))
}
