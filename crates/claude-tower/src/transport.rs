//! The default transport: hyper-util's pooled client over rustls.
//!
//! One TLS stack in the tree: rustls with the aws-lc-rs crypto provider and
//! the platform certificate verifier, which is what reqwest 0.13 uses by
//! default, so a gateway that also links reqwest (or azure_identity) carries
//! one copy of each. HTTP/1.1 and HTTP/2 are both enabled; `http://` URLs are
//! allowed so the simulator and local gateways work.

use std::time::Duration;

use claude_tower_core::ReplayBody;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;

/// The largest read buffer a pooled HTTP/1 connection grows to.
pub const READ_BUFFER_MAX: usize = 64 * 1024;

/// The client type the default stack sends requests with.
pub type HttpsClient = Client<HttpsConnector<HttpConnector>, ReplayBody>;

/// Builds the default transport: pooled keep-alive connections, TLS through
/// rustls with the platform verifier, HTTP/1.1 and HTTP/2 (ALPN).
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
    let provider = rustls::crypto::aws_lc_rs::default_provider();
    // aws-lc seeds its random generator the first time anything in the
    // process asks it for bytes, and that seeding takes tens of
    // milliseconds (30-45 ms measured here). Left alone, the first TLS
    // handshake pays it: the first request through a fresh gateway to an
    // `https://` route took 33-45 ms against 3 ms once seeded. Asking for a
    // few bytes now moves that cost to start-up. A failure here is not
    // ours to report: the handshake that needs the bytes will.
    let _ = provider.secure_random.fill(&mut [0; 32]);
    // Installing the provider twice is harmless; the first one wins.
    let _ = provider.install_default();
    let mut http = HttpConnector::new();
    http.enforce_http(false);
    http.set_nodelay(true);
    http.set_keepalive(Some(Duration::from_secs(60)));
    http.set_connect_timeout(Some(Duration::from_secs(10)));
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .try_with_platform_verifier()
        .map_err(std::io::Error::other)?
        .https_or_http()
        .enable_http1()
        .enable_http2()
        .wrap_connector(http);
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        // hyper grows a connection's read buffer up to ~400 KiB while a fast
        // upstream streams; with a hundred concurrent streams that is tens of
        // MiB held for nothing. 64 KiB still reads a whole SSE burst at once.
        .http1_max_buf_size(READ_BUFFER_MAX)
        .build(https))
}
