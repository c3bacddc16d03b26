//! Target (b): the barest proxy worth the name, and the yardstick for the
//! gateway.
//!
//! A hyper HTTP/1 server whose one service forwards every request to the
//! upstream with hyper-util's pooled legacy client: same method, path and
//! query, headers and body (streamed, not buffered), and streams the answer
//! back. No routing, no retries, no parsing. The client is set up as the
//! gateway's transport is (`claude_tower::transport::https_client`): TCP
//! nodelay, HTTP/1, idle connections kept 90 s. Accepted sockets get nodelay
//! too, as the simulator's do.
//!
//! It runs as its own process (`load passthrough --listen A --upstream B`)
//! on a default multi-threaded runtime, like the gateway's `#[tokio::main]`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use http::uri::{Authority, PathAndQuery, Scheme};
use http::{Request, Response, StatusCode, Uri};
use http_body_util::{Either, Empty};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

type UpstreamClient = Client<HttpConnector, Incoming>;
type ProxyBody = Either<Incoming, Empty<Bytes>>;

/// Serves until the process is killed.
pub(crate) async fn serve(listen: SocketAddr, upstream: SocketAddr) -> std::io::Result<()> {
    let mut http = HttpConnector::new();
    http.set_nodelay(true);
    let client: UpstreamClient = Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(90))
        .build(http);
    let authority = Authority::try_from(upstream.to_string())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    let listener = TcpListener::bind(listen).await?;
    println!("passthrough listening on http://{listen}, forwarding to http://{upstream}");
    loop {
        let (stream, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let client = client.clone();
        let authority = authority.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| forward(client.clone(), authority.clone(), req));
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

async fn forward(
    client: UpstreamClient,
    authority: Authority,
    req: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let (mut parts, body) = req.into_parts();
    let mut uri = parts.uri.into_parts();
    uri.scheme = Some(Scheme::HTTP);
    uri.authority = Some(authority);
    if uri.path_and_query.is_none() {
        uri.path_and_query = Some(PathAndQuery::from_static("/"));
    }
    parts.uri = match Uri::from_parts(uri) {
        Ok(uri) => uri,
        Err(_) => return Ok(status(StatusCode::BAD_REQUEST)),
    };
    match client.request(Request::from_parts(parts, body)).await {
        Ok(response) => Ok(response.map(Either::Left)),
        Err(_) => Ok(status(StatusCode::BAD_GATEWAY)),
    }
}

fn status(code: StatusCode) -> Response<ProxyBody> {
    let mut response = Response::new(Either::Right(Empty::new()));
    *response.status_mut() = code;
    response
}
