//! Layer behaviour with `service_fn` fakes shaped as the simulator shapes
//! its answers, and real hyper clients for transport failures.

use std::convert::Infallible;
use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::{ClaudeError, ErrorClass, Face, RequestIds, RetryAfter, RouteId};
use futures_util::StreamExt;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame, SizeHint};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{Service, ServiceBuilder, ServiceExt, service_fn};

use crate::{NormalizeBody, NormalizeLayer, transport_error};

type Req = Request<Full<Bytes>>;

fn req() -> Req {
    Request::new(Full::new(Bytes::new()))
}

fn foundry_error(status: u16, code: &str, message: &str) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("apim-request-id", "apim-1")
        .header("x-ms-request-id", "ms-1")
        .body(Full::new(Bytes::from(format!(
            r#"{{"error":{{"code":"{code}","message":"{message}"}}}}"#
        ))))
        .unwrap()
}

async fn through<B>(layer: NormalizeLayer, response: Response<B>) -> Response<NormalizeBody<B>>
where
    B: Body<Data = Bytes> + Send + 'static,
{
    let mut slot = Some(response);
    let inner = service_fn(move |_req: Req| std::future::ready(slot.take().ok_or("called twice")));
    tower_layer::Layer::layer(&layer, inner)
        .oneshot(req())
        .await
        .expect("a response")
}

fn foundry() -> NormalizeLayer {
    NormalizeLayer::new(RouteId::new("foundry"), Face::Foundry)
}

fn anthropic() -> NormalizeLayer {
    NormalizeLayer::new(RouteId::new("anthropic"), Face::Anthropic)
}

async fn json<B>(res: Response<NormalizeBody<B>>) -> serde_json::Value
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    let bytes = res.into_body().collect().await.unwrap().to_bytes();
    serde_json::from_slice(&bytes).expect("JSON body")
}

fn err_of<B>(res: &Response<B>) -> &ClaudeError {
    res.extensions()
        .get::<ClaudeError>()
        .expect("ClaudeError attached")
}

// === successes ===

#[tokio::test]
async fn every_response_names_its_route_and_face() {
    let ok = Response::new(Full::new(Bytes::from_static(b"{}")));
    let res = through(foundry(), ok).await;
    assert_eq!(
        res.extensions().get::<RouteId>(),
        Some(&RouteId::new("foundry"))
    );
    assert_eq!(res.extensions().get::<Face>(), Some(&Face::Foundry));

    let res = through(anthropic(), foundry_error(429, "429", "slow down")).await;
    assert_eq!(res.status(), StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(
        res.extensions().get::<RouteId>(),
        Some(&RouteId::new("anthropic"))
    );
    assert_eq!(res.extensions().get::<Face>(), Some(&Face::Anthropic));
}

#[tokio::test]
async fn success_gets_request_ids_and_no_error() {
    let res = Response::builder()
        .header("request-id", "req_1")
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let res = through(anthropic(), res).await;
    assert!(res.extensions().get::<ClaudeError>().is_none());
    assert!(res.extensions().get::<RetryAfter>().is_none());
    assert_eq!(
        res.extensions()
            .get::<RequestIds>()
            .and_then(|i| i.request_id()),
        Some("req_1")
    );
}

#[tokio::test]
async fn sse_passes_through_unpolled_and_byte_for_byte() {
    // The stream has nothing yet: if the layer polled the body, the future
    // would not resolve before the first chunk is sent.
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<Bytes>();
    let res = Response::builder()
        .header("content-type", "text/event-stream")
        .body(ChannelBody(rx))
        .unwrap();
    let res = through(anthropic(), res).await;
    let chunks: [&'static [u8]; 3] = [
        b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n",
        b"event: ping\ndata: {\"type\": \"ping\"}\n\n",
        b"event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
    ];
    for chunk in chunks {
        tx.send(Bytes::from_static(chunk)).unwrap();
    }
    drop(tx);
    let mut body = res.into_body();
    let mut seen = Vec::new();
    while let Some(frame) = body.frame().await {
        seen.push(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(
        seen,
        chunks.map(Bytes::from_static),
        "same frames, same bytes"
    );
}

/// A streaming body fed by the test, chunk by chunk.
struct ChannelBody(tokio::sync::mpsc::UnboundedReceiver<Bytes>);

impl Body for ChannelBody {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        self.0
            .poll_recv(cx)
            .map(|chunk| chunk.map(|c| Ok(Frame::data(c))))
    }
}

// === failures ===

#[tokio::test]
async fn failure_attaches_error_retry_after_and_ids() {
    let mut res = foundry_error(429, "429", "Rate limit exceeded.");
    res.headers_mut()
        .insert("retry-after", "1.5".parse().unwrap());
    let res = through(foundry(), res).await;
    let err = err_of(&res);
    assert_eq!(err.class(), ErrorClass::RateLimited);
    assert_eq!(err.route().map(RouteId::as_str), Some("foundry"));
    assert_eq!(
        res.extensions().get::<RetryAfter>().map(|w| w.duration()),
        Some(Duration::from_millis(1500))
    );
    assert_eq!(
        res.extensions()
            .get::<RequestIds>()
            .and_then(|i| i.x_ms_request_id()),
        Some("ms-1")
    );
    // Options off: headers and body are the route's own.
    assert_eq!(res.headers()["retry-after"], "1.5");
    assert_eq!(
        json(res).await["error"]["code"],
        "429",
        "body untouched when rewriting is off"
    );
}

#[tokio::test]
async fn rewrites_foundry_envelope_keeping_code_and_status() {
    let res = foundry_error(
        404,
        "DeploymentNotFound",
        "The API deployment for this resource does not exist.",
    );
    let res = through(foundry().with_rewrite_envelope(true), res).await;
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
    assert_eq!(res.headers()["content-type"], "application/json");
    assert_eq!(res.headers()["x-should-retry"], "false");
    assert_eq!(err_of(&res).class(), ErrorClass::RouteUnavailable);
    let v = json(res).await;
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "not_found_error");
    assert_eq!(
        v["error"]["message"], "The API deployment for this resource does not exist.",
        "upstream's message, verbatim"
    );
    assert_eq!(v["request_id"], "apim-1");
}

#[tokio::test]
async fn rewrites_each_foundry_class_to_the_matching_anthropic_type() {
    let cases = [
        (429, "429", "rate_limit_error", "Too many"),
        (503, "503", "overloaded_error", "Busy"),
        (500, "500", "api_error", "Boom"),
        (504, "504", "timeout_error", "Slow"),
        (400, "content_filter", "invalid_request_error", "Filtered"),
        (401, "401", "authentication_error", "Denied"),
        (403, "403", "permission_error", "Denied"),
        (409, "409", "conflict_error", "Conflict"),
        (402, "402", "billing_error", "Pay"),
        (413, "413", "request_too_large", "Big"),
    ];
    for (status, code, kind, message) in cases {
        let res = through(
            foundry().with_rewrite_envelope(true),
            foundry_error(status, code, message),
        )
        .await;
        assert_eq!(res.status().as_u16(), status, "{code}");
        let v = json(res).await;
        assert_eq!(v["error"]["type"], kind, "{code}");
        assert_eq!(v["error"]["message"], message, "{code}");
    }
}

#[tokio::test]
async fn transient_auth_is_rewritten_as_a_retryable_503() {
    let res = foundry_error(
        401,
        "invalid_model_endpoint_authentication",
        "Backend authentication failed.",
    );
    let res = through(foundry().with_rewrite_envelope(true), res).await;
    // What the client sees: not a 401, so an Anthropic SDK retries it
    // instead of raising AuthenticationError.
    assert_eq!(res.status(), StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(res.headers()["x-should-retry"], "true");
    // What Retry and Failover see: the upstream truth.
    let err = err_of(&res);
    assert_eq!(err.class(), ErrorClass::TransientAuth);
    assert_eq!(err.status(), Some(StatusCode::UNAUTHORIZED));
    let v = json(res).await;
    assert_eq!(v["error"]["type"], "api_error");
    assert_eq!(v["error"]["message"], "Backend authentication failed.");
}

#[tokio::test]
async fn anthropic_envelopes_are_not_rewritten() {
    let body = r#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_9"}"#;
    for layer in [
        anthropic().with_rewrite_envelope(true),
        foundry().with_rewrite_envelope(true),
    ] {
        let res = Response::builder()
            .status(529)
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        let res = through(layer, res).await;
        assert_eq!(err_of(&res).class(), ErrorClass::Overloaded);
        let bytes = res.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(bytes, body);
    }
}

#[tokio::test]
async fn canonical_retry_headers_replace_dates_and_millis() {
    let mut res = foundry_error(429, "429", "slow down");
    res.headers_mut().insert(
        "retry-after",
        "Sun, 06 Nov 1994 08:49:37 GMT".parse().unwrap(),
    );
    res.headers_mut()
        .insert("x-ms-retry-after-ms", "1200".parse().unwrap());
    let res = through(foundry().with_canonical_retry_headers(true), res).await;
    assert_eq!(res.headers()["retry-after"], "2");
    assert_eq!(res.headers()["retry-after-ms"], "1200");
    assert!(res.headers().get("x-ms-retry-after-ms").is_none());

    // A hint we rejected is not shown to the client either.
    let mut res = foundry_error(503, "503", "busy");
    res.headers_mut().insert(
        "retry-after",
        "Fri, 31 Dec 9999 23:59:59 GMT".parse().unwrap(),
    );
    let res = through(foundry().with_canonical_retry_headers(true), res).await;
    assert!(res.headers().get("retry-after").is_none());
    assert!(res.extensions().get::<RetryAfter>().is_none());

    // A date a few seconds ahead becomes whole seconds.
    let mut res = foundry_error(429, "429", "slow down");
    let at = std::time::SystemTime::now() + Duration::from_secs(5);
    res.headers_mut()
        .insert("retry-after", httpdate::fmt_http_date(at).parse().unwrap());
    let res = through(foundry().with_canonical_retry_headers(true), res).await;
    let secs: u64 = res.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((4..=5).contains(&secs), "{secs}");
}

// === bounded reads ===

/// A body that declares a length and must never be polled.
struct Untouchable(u64);

impl Body for Untouchable {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        panic!("an over-long error body with a declared length was polled");
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.0)
    }
}

#[tokio::test]
async fn declared_over_limit_is_classified_by_status_unread() {
    let res = Response::builder()
        .status(404)
        .body(Untouchable(100_000))
        .unwrap();
    let res = through(foundry().with_rewrite_envelope(true), res).await;
    let err = err_of(&res);
    assert_eq!(err.class(), ErrorClass::InvalidRequest, "status alone");
    assert_eq!(res.body().size_hint().exact(), Some(100_000));
}

#[tokio::test]
async fn streamed_over_limit_hands_on_prefix_then_rest() {
    let body = format!(
        r#"{{"error":{{"code":"DeploymentNotFound","message":"{}"}}}}"#,
        "x".repeat(300)
    );
    let chunks: Vec<Result<Frame<Bytes>, Infallible>> = body
        .as_bytes()
        .chunks(64)
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    let stream = StreamBody::new(futures_util::stream::iter(chunks));
    let res = Response::builder().status(404).body(stream).unwrap();
    let res = through(
        foundry()
            .with_rewrite_envelope(true)
            .with_error_body_limit(100),
        res,
    )
    .await;
    assert_eq!(
        err_of(&res).class(),
        ErrorClass::InvalidRequest,
        "status alone"
    );
    let out = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(out, body, "byte for byte");
}

#[tokio::test]
async fn body_error_while_reading_classifies_by_status_and_is_handed_on() {
    let chunks = vec![
        Ok(Frame::data(Bytes::from_static(b"{\"error\":"))),
        Err(std::io::Error::other("reset mid-body")),
    ];
    let stream = StreamBody::new(futures_util::stream::iter(chunks));
    let res = Response::builder().status(502).body(stream).unwrap();
    let res = through(foundry().with_rewrite_envelope(true), res).await;
    assert_eq!(err_of(&res).class(), ErrorClass::Server);
    let mut body = res.into_body();
    assert_eq!(
        body.frame().await.unwrap().unwrap().into_data().unwrap(),
        "{\"error\":"
    );
    assert_eq!(
        body.frame().await.unwrap().unwrap_err().to_string(),
        "reset mid-body"
    );
}

#[tokio::test]
async fn trailers_of_an_error_body_survive() {
    let mut trailers = http::HeaderMap::new();
    trailers.insert("x-trailer", "1".parse().unwrap());
    let chunks = vec![
        Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"oops"))),
        Ok(Frame::trailers(trailers)),
    ];
    let res = Response::builder()
        .status(500)
        .body(StreamBody::new(futures_util::stream::iter(chunks)))
        .unwrap();
    let res = through(anthropic(), res).await;
    let collected = res.into_body().collect().await.unwrap();
    assert!(
        collected
            .trailers()
            .is_some_and(|t| t.contains_key("x-trailer"))
    );
    assert_eq!(collected.to_bytes(), "oops");
}

// === transport errors ===

#[tokio::test]
async fn transport_errors_become_claude_errors_with_the_route() {
    let svc = ServiceBuilder::new()
        .layer(anthropic())
        .service(service_fn(|_req: Req| async {
            Err::<Response<Full<Bytes>>, _>(std::io::Error::new(
                std::io::ErrorKind::ConnectionReset,
                "reset by peer",
            ))
        }));
    let err = svc.oneshot(req()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport);
    assert_eq!(err.route().map(RouteId::as_str), Some("anthropic"));
    assert_eq!(err.message(), "connection reset");
}

#[tokio::test]
async fn boxed_claude_errors_pass_through_with_route_filled() {
    let svc = ServiceBuilder::new()
        .layer(foundry())
        .service(service_fn(|_req: Req| async {
            let auth = ClaudeError::new(ErrorClass::Auth, "no token");
            Err::<Response<Full<Bytes>>, tower::BoxError>(Box::new(auth))
        }));
    let err = svc.oneshot(req()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Auth);
    assert_eq!(err.route().map(RouteId::as_str), Some("foundry"));
    // A route already set is kept.
    let named = ClaudeError::new(ErrorClass::Auth, "x").with_route(RouteId::new("elsewhere"));
    assert_eq!(
        transport_error(Box::new(named))
            .route()
            .map(RouteId::as_str),
        Some("elsewhere")
    );
}

#[tokio::test]
async fn tower_timeout_below_is_class_timeout() {
    tokio::time::pause();
    let slow = service_fn(|_req: Req| async {
        tokio::time::sleep(Duration::from_secs(60)).await;
        Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
    });
    let svc = ServiceBuilder::new()
        .layer(anthropic())
        .timeout(Duration::from_secs(10))
        .service(slow);
    let call = tokio::spawn(svc.oneshot(req()));
    tokio::time::advance(Duration::from_secs(11)).await;
    let err = call.await.unwrap().unwrap_err();
    assert_eq!(err.class(), ErrorClass::Timeout);
    assert_eq!(err.response_status(), StatusCode::GATEWAY_TIMEOUT);
}

/// A service that is never ready: its connection pool is gone.
#[derive(Clone)]
struct NeverReady;

impl Service<Req> for NeverReady {
    type Response = Response<Full<Bytes>>;
    type Error = std::io::Error;
    type Future = std::future::Ready<Result<Self::Response, Self::Error>>;

    fn poll_ready(
        &mut self,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        std::task::Poll::Ready(Err(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused,
        )))
    }

    fn call(&mut self, _req: Req) -> Self::Future {
        std::future::ready(Err(std::io::Error::from(std::io::ErrorKind::NotConnected)))
    }
}

#[tokio::test]
async fn poll_ready_errors_are_classified_too() {
    let mut svc = crate::Normalize::new(NeverReady, RouteId::new("r"), Face::Anthropic);
    assert_eq!(svc.route(), "r");
    let err = std::future::poll_fn(|cx| svc.poll_ready(cx))
        .await
        .unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport);
    assert_eq!(err.message(), "connection refused");
    assert_eq!(err.route().map(RouteId::as_str), Some("r"));
}

// === real hyper clients ===

type Client = hyper_util::client::legacy::Client<
    hyper_util::client::legacy::connect::HttpConnector,
    Full<Bytes>,
>;

fn client() -> Client {
    hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build_http()
}

#[tokio::test]
async fn hyper_connect_refused_is_transport() {
    // Bind, note the port, close: nothing listens there now.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let svc = ServiceBuilder::new().layer(anthropic()).service(client());
    let req = Request::post(format!("http://{addr}/v1/messages"))
        .body(Full::new(Bytes::new()))
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport);
    assert_eq!(err.message(), "connect failed");
    assert!(err.to_string().starts_with("route anthropic:"));
}

#[tokio::test]
async fn hyper_closed_before_response_is_transport() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncReadExt;
        let (mut sock, _) = listener.accept().await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = sock.read(&mut buf).await;
        // Close without answering.
    });
    let svc = ServiceBuilder::new().layer(foundry()).service(client());
    let req = Request::post(format!("http://{addr}/anthropic/v1/messages"))
        .body(Full::new(Bytes::from_static(b"{}")))
        .unwrap();
    let err = svc.oneshot(req).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Transport);
    assert_eq!(err.message(), "connection closed before a response");
}

#[tokio::test]
async fn many_requests_through_one_service() {
    let svc = ServiceBuilder::new()
        .layer(foundry())
        .service(service_fn(|_req: Req| async {
            Ok::<_, Infallible>(foundry_error(503, "503", "busy"))
        }));
    let results = futures_util::stream::iter(0..10)
        .then(|_| svc.clone().oneshot(req()))
        .collect::<Vec<_>>()
        .await;
    for res in results {
        assert_eq!(err_of(&res.unwrap()).class(), ErrorClass::Overloaded);
    }
}

// === tracing ===

#[derive(Clone, Default)]
struct Captured(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// One process-wide capturing subscriber. A scoped (`set_default`) one is
/// not enough: the other tests of this binary hit the same callsite on other
/// threads with no subscriber, and a callsite registered there can keep a
/// cached interest of "never" (seen as a missing event in full runs). A
/// global subscriber is consulted by every registration; this test reads only
/// the lines of its own routes.
fn global_capture() -> &'static Captured {
    static CAPTURE: std::sync::OnceLock<Captured> = std::sync::OnceLock::new();
    CAPTURE.get_or_init(|| {
        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::DEBUG)
            .with_ansi(false)
            .without_time()
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::set_global_default(subscriber)
            .expect("no other test installs a global subscriber");
        captured
    })
}

#[tokio::test]
async fn one_event_per_response_debug_for_success_warn_for_failure() {
    let captured = global_capture();

    let ok = Response::builder()
        .header("request-id", "req_ok")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let events_anthropic = NormalizeLayer::new(RouteId::new("events-anthropic"), Face::Anthropic);
    let events_foundry = NormalizeLayer::new(RouteId::new("events-foundry"), Face::Foundry);
    let _ = through(events_anthropic, ok).await;
    let _ = through(
        events_foundry,
        foundry_error(404, "DeploymentNotFound", "gone"),
    )
    .await;

    let text = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<&str> = text
        .lines()
        .filter(|line| line.contains("route=events-"))
        .collect();
    assert_eq!(lines.len(), 2, "{text}");
    assert!(lines[0].starts_with("DEBUG"), "{}", lines[0]);
    assert!(lines[0].contains("route=events-anthropic") && lines[0].contains("status=200"));
    assert!(lines[0].contains("request-id=req_ok"), "{}", lines[0]);
    assert!(
        lines[1].starts_with(" WARN") || lines[1].starts_with("WARN"),
        "{}",
        lines[1]
    );
    for field in [
        "route=events-foundry",
        "status=404",
        "class=\"route-unavailable\"",
        "code=\"DeploymentNotFound\"",
        "apim-request-id=apim-1",
    ] {
        assert!(lines[1].contains(field), "{field} in {}", lines[1]);
    }
}

#[tokio::test]
async fn an_empty_error_body_classifies_by_status() {
    let res = Response::builder()
        .status(503)
        .header("x-ms-request-id", "ms-2")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let res = through(foundry().with_rewrite_envelope(true), res).await;
    assert_eq!(err_of(&res).class(), ErrorClass::Overloaded);
    let v = json(res).await;
    assert_eq!(v["error"]["type"], "overloaded_error");
    assert_eq!(v["error"]["message"], "Service Unavailable");
    assert_eq!(v["request_id"], "ms-2");
}

// === bodies that are not Azure's envelope pass through untouched ===

fn gzip(data: &[u8]) -> Bytes {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip in memory");
    Bytes::from(encoder.finish().expect("gzip in memory"))
}

/// `status` with `body` and its headers, through a rewriting Foundry route:
/// the response must come out exactly as it went in.
async fn assert_untouched(status: u16, headers: &[(&str, &str)], body: Bytes) -> ClaudeError {
    let mut builder = Response::builder().status(status);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let sent = builder.body(Full::new(body.clone())).unwrap();
    let sent_headers = sent.headers().clone();
    let layer = foundry()
        .with_rewrite_envelope(true)
        .with_canonical_retry_headers(false);
    let res = through(layer, sent).await;
    assert_eq!(res.status().as_u16(), status);
    assert_eq!(res.headers(), &sent_headers, "headers untouched");
    let err = err_of(&res).clone();
    let got = res.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(got, body, "body byte-identical");
    err
}

#[tokio::test]
async fn an_html_page_from_a_proxy_passes_through() {
    let page = "<html><body><h1>502 Bad Gateway</h1></body></html>";
    let err = assert_untouched(
        502,
        &[("content-type", "text/html"), ("content-length", "50")],
        Bytes::from_static(page.as_bytes()),
    )
    .await;
    assert_eq!(err.class(), ErrorClass::Server);
    assert_eq!(err.message(), "Bad Gateway");
}

#[tokio::test]
async fn truncated_json_passes_through_and_classifies_by_status_and_headers() {
    let err = assert_untouched(
        429,
        &[
            ("content-type", "application/json"),
            ("retry-after", "3"),
            ("x-ms-request-id", "ms-9"),
        ],
        Bytes::from_static(br#"{"error":{"code":"DeploymentNotFound","mess"#),
    )
    .await;
    assert_eq!(err.class(), ErrorClass::RateLimited, "status, not the body");
    assert_eq!(err.code(), None);
    assert_eq!(
        err.retry_after().map(RetryAfter::duration),
        Some(Duration::from_secs(3))
    );
    assert_eq!(err.request_ids().x_ms_request_id(), Some("ms-9"));
}

#[tokio::test]
async fn a_gzip_error_body_passes_through_unread_and_still_labelled() {
    // Inside the gzip: a body that would say RouteUnavailable if read.
    let body = gzip(
        br#"{"error":{"code":"DeploymentNotFound","message":"The API deployment for this resource does not exist."}}"#,
    );
    assert_eq!(&body[..2], [0x1f, 0x8b], "a real gzip stream");
    let length = body.len().to_string();
    let err = assert_untouched(
        404,
        &[
            ("content-type", "application/json"),
            ("content-encoding", "gzip"),
            ("content-length", &length),
            ("apim-request-id", "apim-7"),
        ],
        body,
    )
    .await;
    // Status and headers only: a 404 alone says the request was wrong.
    assert_eq!(err.class(), ErrorClass::InvalidRequest);
    assert_eq!(err.code(), None);
    assert_eq!(err.request_ids().apim_request_id(), Some("apim-7"));

    // `identity` is no encoding: that body is read and rewritten as usual.
    let mut res = foundry_error(404, "DeploymentNotFound", "gone");
    res.headers_mut()
        .insert("content-encoding", "identity".parse().unwrap());
    let res = through(foundry().with_rewrite_envelope(true), res).await;
    assert_eq!(err_of(&res).class(), ErrorClass::RouteUnavailable);
    assert_eq!(json(res).await["error"]["message"], "gone");
}

#[tokio::test]
async fn an_azure_message_is_kept_verbatim() {
    // Escapes, leading/trailing spaces and the text Claude Code matches on.
    let raw = r#"{"error":{"code":"invalid_request_error","message":"  prompt is too long: 210000 tokens > 200000 maximum \"x\" é "}}"#;
    let res = Response::builder()
        .status(400)
        .body(Full::new(Bytes::from_static(raw.as_bytes())))
        .unwrap();
    let res = through(foundry().with_rewrite_envelope(true), res).await;
    let v = json(res).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert_eq!(
        v["error"]["message"],
        "  prompt is too long: 210000 tokens > 200000 maximum \"x\" é "
    );
}
