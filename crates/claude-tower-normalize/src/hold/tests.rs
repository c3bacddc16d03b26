use std::convert::Infallible;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use claude_tower_core::{ClaudeError, ErrorClass, Face, RouteId};
use http::{HeaderMap, Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use proptest::prelude::*;
use tokio::sync::mpsc;
use tower::{Layer, service_fn};

use super::*;

const START: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_1\",\"usage\":{\"input_tokens\":9}}}\n\n";
const PING: &str = "event: ping\ndata: {\"type\": \"ping\"}\n\n";
const BLOCK: &str = "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n";
const DELTA: &str = "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n";
const STOP: &str = "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";

fn error_event(kind: &str) -> String {
    format!(
        "event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"{kind}\",\"message\":\"{kind} happened\"}}}}\n\n"
    )
}

/// A body fed frame by frame from the test.
struct Channel(mpsc::UnboundedReceiver<Result<Frame<Bytes>, std::io::Error>>);

impl Body for Channel {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        self.0.poll_recv(cx)
    }
}

type Feed = mpsc::UnboundedSender<Result<Frame<Bytes>, std::io::Error>>;

fn send(feed: &Feed, s: &str) {
    feed.send(Ok(Frame::data(Bytes::copy_from_slice(s.as_bytes()))))
        .expect("body alive");
}

fn sse<B>(body: B) -> Response<B> {
    let mut res = Response::new(body);
    res.headers_mut()
        .insert("content-type", "text/event-stream".parse().unwrap());
    res.headers_mut()
        .insert("request-id", "req_123".parse().unwrap());
    res
}

fn layer() -> StreamHoldLayer {
    StreamHoldLayer::new(RouteId::new("anthropic"), Face::Anthropic)
}

/// A route answering once with `response`, through `layer`.
fn held<B>(
    layer: StreamHoldLayer,
    response: Response<B>,
) -> future::ResponseFuture<std::future::Ready<Result<Response<B>, Infallible>>, B>
where
    B: Body<Data = Bytes> + Unpin,
{
    let mut slot = Some(response);
    let mut svc = layer.layer(service_fn(move |_req: Request<()>| {
        std::future::ready(Ok::<_, Infallible>(slot.take().expect("called once")))
    }));
    tower::Service::call(&mut svc, Request::new(()))
}

/// A response from `chunks`, each one frame, through the default layer.
async fn through(
    chunks: Vec<Bytes>,
) -> Response<HoldBody<impl Body<Data = Bytes, Error = Infallible> + Unpin>> {
    let frames = chunks
        .into_iter()
        .map(|c| Ok::<_, Infallible>(Frame::data(c)));
    let body = StreamBody::new(futures_util::stream::iter(frames.collect::<Vec<_>>()));
    held(layer(), sse(body)).await.unwrap()
}

async fn bytes_of<B: Body<Data = Bytes>>(res: Response<B>) -> Bytes
where
    B::Error: std::fmt::Debug,
{
    res.into_body().collect().await.unwrap().to_bytes()
}

fn pending<F: std::future::Future>(f: Pin<&mut F>) -> bool {
    let waker = std::task::Waker::noop();
    f.poll(&mut Context::from_waker(waker)).is_pending()
}

// === what passes at once ===

#[tokio::test]
async fn a_non_stream_passes_at_once() {
    let (_feed, rx) = mpsc::unbounded_channel();
    let mut res = Response::new(Channel(rx));
    res.headers_mut()
        .insert("content-type", "application/json".parse().unwrap());
    // The body never yields: the response resolves without reading it.
    let res = held(layer(), res).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
}

#[tokio::test]
async fn failures_and_a_disabled_layer_pass_at_once() {
    let (_feed, rx) = mpsc::unbounded_channel();
    let mut failed = sse(Channel(rx));
    *failed.status_mut() = StatusCode::from_u16(529).unwrap();
    held(layer(), failed).await.unwrap();

    let (_feed, rx) = mpsc::unbounded_channel();
    let mut marked = sse(Channel(rx));
    marked
        .extensions_mut()
        .insert(ClaudeError::new(ErrorClass::Server, "classified below"));
    held(layer(), marked).await.unwrap();

    let (_feed, rx) = mpsc::unbounded_channel();
    held(layer().with_enabled(false), sse(Channel(rx)))
        .await
        .unwrap();
}

// === holding ===

#[tokio::test]
async fn the_preamble_is_held_until_content_then_released_in_order() {
    let (feed, rx) = mpsc::unbounded_channel();
    let mut fut = std::pin::pin!(held(layer(), sse(Channel(rx))));
    assert!(pending(fut.as_mut()));
    send(&feed, START);
    send(&feed, PING);
    assert!(pending(fut.as_mut()), "the preamble alone is held");
    send(&feed, "event: content_block_start\n");
    let res = fut.await.unwrap();
    assert!(res.extensions().get::<ClaudeError>().is_none());
    // The head resolved at the content's event line: its data is still to come.
    send(&feed, "data: {}\n\n");
    send(&feed, STOP);
    drop(feed);
    let mut body = res.into_body();
    let mut frames = Vec::new();
    while let Some(frame) = body.frame().await {
        frames.push(frame.unwrap().into_data().unwrap());
    }
    assert_eq!(
        frames,
        [
            START,
            PING,
            "event: content_block_start\n",
            "data: {}\n\n",
            STOP
        ]
    );
}

#[tokio::test]
async fn an_error_before_content_is_a_classified_failure_with_the_bytes_as_sent() {
    let sent = format!("{START}{PING}{}", error_event("overloaded_error"));
    let res = through(vec![Bytes::from(sent.clone())]).await;
    assert_eq!(res.status(), StatusCode::OK);
    let err = res.extensions().get::<ClaudeError>().expect("classified");
    assert_eq!(err.class(), ErrorClass::Overloaded);
    assert!(err.retryable() && err.failover_worthy());
    assert_eq!(err.code(), Some("overloaded_error"));
    assert_eq!(err.message(), "overloaded_error happened");
    assert_eq!(err.route().unwrap(), "anthropic");
    assert_eq!(err.request_ids().request_id(), Some("req_123"));
    assert_eq!(err.status(), Some(StatusCode::SERVICE_UNAVAILABLE));
    assert_eq!(bytes_of(res).await, sent);
}

#[tokio::test]
async fn error_types_classify_as_their_http_bodies_would() {
    for (kind, class) in [
        ("overloaded_error", ErrorClass::Overloaded),
        ("api_error", ErrorClass::Server),
        ("rate_limit_error", ErrorClass::RateLimited),
        ("timeout_error", ErrorClass::Timeout),
        ("invalid_request_error", ErrorClass::InvalidRequest),
        ("something_new_error", ErrorClass::Server),
    ] {
        for face in [Face::Anthropic, Face::Foundry] {
            let sse_text = format!("{START}{}", error_event(kind));
            let body = Full::new(Bytes::from(sse_text));
            let layer = StreamHoldLayer::new(RouteId::new("r"), face);
            let res = held(layer, sse(body)).await.unwrap();
            let err = res.extensions().get::<ClaudeError>().expect("classified");
            assert_eq!(err.class(), class, "{kind} on {face:?}");
        }
    }
    // An error event with no data at all is still a failure of the route.
    let res = through(vec![Bytes::from(format!("{START}event: error\n\n"))]).await;
    assert_eq!(
        res.extensions()
            .get::<ClaudeError>()
            .map(ClaudeError::class),
        Some(ErrorClass::Server)
    );
}

#[tokio::test]
async fn an_error_after_content_passes_through() {
    let sent = format!(
        "{START}{PING}{BLOCK}{DELTA}{}",
        error_event("overloaded_error")
    );
    let res = through(vec![Bytes::from(sent.clone())]).await;
    assert!(res.extensions().get::<ClaudeError>().is_none());
    assert_eq!(bytes_of(res).await, sent);
}

#[tokio::test(start_paused = true)]
async fn the_time_bound_releases_the_preamble() {
    let (feed, rx) = mpsc::unbounded_channel();
    let layer = layer().with_time_limit(Duration::from_secs(10));
    let started = tokio::time::Instant::now();
    let fut = held(layer, sse(Channel(rx)));
    send(&feed, START);
    let res = fut.await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(10));
    assert!(res.extensions().get::<ClaudeError>().is_none());
    // Released: an error now passes through.
    send(&feed, &error_event("overloaded_error"));
    drop(feed);
    let body = bytes_of(res).await;
    assert_eq!(body, format!("{START}{}", error_event("overloaded_error")));
}

#[tokio::test(start_paused = true)]
async fn content_before_the_time_bound_wins() {
    let (feed, rx) = mpsc::unbounded_channel();
    let started = tokio::time::Instant::now();
    let fut = held(layer(), sse(Channel(rx)));
    let feeder = tokio::spawn(async move {
        send(&feed, START);
        tokio::time::sleep(Duration::from_secs(3)).await;
        send(&feed, BLOCK);
        feed
    });
    let res = fut.await.unwrap();
    assert_eq!(started.elapsed(), Duration::from_secs(3));
    drop(feeder.await.unwrap());
    assert_eq!(bytes_of(res).await, format!("{START}{BLOCK}"));
}

#[tokio::test]
async fn the_byte_bound_releases_the_preamble() {
    let (feed, rx) = mpsc::unbounded_channel();
    let mut fut = std::pin::pin!(held(
        layer().with_byte_limit(3 * PING.len()),
        sse(Channel(rx))
    ));
    send(&feed, PING);
    send(&feed, PING);
    assert!(pending(fut.as_mut()));
    send(&feed, PING);
    let res = fut.await.unwrap();
    assert!(res.extensions().get::<ClaudeError>().is_none());
    send(&feed, &error_event("overloaded_error"));
    drop(feed);
    assert!(
        bytes_of(res)
            .await
            .ends_with(b"overloaded_error happened\"}}\n\n")
    );
}

#[tokio::test]
async fn an_end_or_a_failure_while_held_is_handed_on() {
    // The body ends with only a preamble: released as it was.
    let res = through(vec![Bytes::from_static(START.as_bytes())]).await;
    assert!(res.extensions().get::<ClaudeError>().is_none());
    assert_eq!(bytes_of(res).await, START);

    // The body breaks off: a transport failure of the route, with the held
    // bytes, then the failure, as its body.
    let (feed, rx) = mpsc::unbounded_channel();
    send(&feed, START);
    feed.send(Err(std::io::Error::other("reset"))).unwrap();
    let res = held(layer(), sse(Channel(rx))).await.unwrap();
    let err = res.extensions().get::<ClaudeError>().expect("classified");
    assert_eq!(err.class(), ErrorClass::Transport);
    assert!(err.retryable() && err.failover_worthy());
    assert_eq!(err.route().unwrap(), "anthropic");
    assert_eq!(err.request_ids().request_id(), Some("req_123"));
    let mut body = res.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), START);
    assert_eq!(
        body.frame().await.unwrap().unwrap_err().to_string(),
        "reset"
    );

    // Trailers while held end the body too.
    let (feed, rx) = mpsc::unbounded_channel();
    send(&feed, START);
    feed.send(Ok(Frame::trailers(HeaderMap::new()))).unwrap();
    drop(feed);
    let res = held(layer(), sse(Channel(rx))).await.unwrap();
    let collected = res.into_body().collect().await.unwrap();
    assert!(collected.trailers().is_some());
    assert_eq!(collected.to_bytes(), START);

    // An error event cut short by the end is still an error.
    let cut = format!("{START}event: error\ndata: {{\"error\":{{\"type\":\"api_error\"}}}}");
    let res = through(vec![Bytes::from(cut.clone())]).await;
    assert_eq!(
        res.extensions()
            .get::<ClaudeError>()
            .map(ClaudeError::class),
        Some(ErrorClass::Server)
    );
    assert_eq!(bytes_of(res).await, cut);
}

/// Every stream the tests split, with whether the hold classifies it.
fn streams() -> Vec<(String, bool)> {
    vec![
        (
            format!("{START}{PING}{}", error_event("overloaded_error")),
            true,
        ),
        (format!("{START}{PING}{BLOCK}{DELTA}{STOP}"), false),
        (
            format!("{START}{BLOCK}{DELTA}{}", error_event("api_error")),
            false,
        ),
        (
            format!("{START}{PING}{}", error_event("api_error")).replace('\n', "\r\n"),
            true,
        ),
    ]
}

#[tokio::test]
async fn every_split_point_gives_the_same_answer_and_bytes() {
    for (stream, fails) in streams() {
        let bytes = Bytes::from(stream);
        for at in 0..=bytes.len() {
            let res = through(vec![bytes.slice(..at), bytes.slice(at..)]).await;
            assert_eq!(
                res.extensions().get::<ClaudeError>().is_some(),
                fails,
                "split at {at}"
            );
            assert_eq!(bytes_of(res).await, bytes, "split at {at}");
        }
    }
}

proptest! {
    /// Any chunking, down to single bytes, gives the answer of the whole
    /// and hands on every byte in order.
    #[test]
    fn any_chunking_gives_the_same_answer_and_bytes(
        which in 0usize..4,
        cuts in proptest::collection::vec(any::<prop::sample::Index>(), 0..32),
    ) {
        let (stream, fails) = streams()[which].clone();
        let bytes = Bytes::from(stream);
        let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
        at.extend([0, bytes.len()]);
        at.sort_unstable();
        let chunks: Vec<Bytes> = at.windows(2).map(|w| bytes.slice(w[0]..w[1])).collect();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let (classified, out) = rt.block_on(async {
            let res = through(chunks).await;
            let classified = res.extensions().get::<ClaudeError>().is_some();
            (classified, bytes_of(res).await)
        });
        prop_assert_eq!(classified, fails);
        prop_assert_eq!(out, bytes);
    }
}
