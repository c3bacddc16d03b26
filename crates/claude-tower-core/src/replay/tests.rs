use super::*;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use tower::ServiceExt;

fn counting() -> (
    Arc<AtomicUsize>,
    impl Service<
        Request<ReplayBody>,
        Response = Response<Full<Bytes>>,
        Error = Infallible,
        Future = impl Send,
    > + Clone
    + Send
    + 'static,
) {
    let calls = Arc::new(AtomicUsize::new(0));
    let seen = calls.clone();
    let svc = tower::service_fn(move |req: Request<ReplayBody>| {
        seen.fetch_add(1, Ordering::SeqCst);
        async move { Ok::<_, Infallible>(Response::new(Full::new(req.into_body().into_bytes()))) }
    });
    (calls, svc)
}

async fn body_of(res: Response<ResponseBody<Full<Bytes>>>) -> Bytes {
    res.into_body().collect().await.unwrap().to_bytes()
}

async fn envelope(res: Response<ResponseBody<Full<Bytes>>>) -> serde_json::Value {
    serde_json::from_slice(&body_of(res).await).expect("JSON envelope")
}

#[tokio::test]
async fn passes_the_whole_body_and_the_head() {
    let (calls, svc) = counting();
    let svc = ReplayLayer::new().layer(svc);
    let req = Request::post("/v1/messages?beta=true")
        .header("anthropic-version", "2023-06-01")
        .body(Full::new(Bytes::from_static(b"{\"model\":\"m\"}")))
        .unwrap();
    let res = svc.oneshot(req).await.unwrap();
    assert!(!res.body().is_local());
    assert_eq!(body_of(res).await, "{\"model\":\"m\"}");
    assert_eq!(calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn joins_a_body_of_many_chunks() {
    let (_, svc) = counting();
    let svc = ReplayLayer::new().layer(svc);
    let chunks = ["ab", "", "cd", "e"].map(|c| Ok::<_, Infallible>(Frame::data(Bytes::from(c))));
    let req = Request::new(StreamBody::new(futures_util::stream::iter(chunks)));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(body_of(res).await, "abcde");
}

#[tokio::test]
async fn a_streamed_body_over_the_limit_is_413_and_never_sent() {
    let (calls, svc) = counting();
    let svc = ReplayLayer::new().with_limit(10).layer(svc);
    let chunks = (0..6).map(|_| Ok::<_, Infallible>(Frame::data(Bytes::from_static(b"xx"))));
    let req = Request::new(StreamBody::new(futures_util::stream::iter(chunks)));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(envelope(res).await["error"]["type"], "request_too_large");
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A body that counts how many of its frames were read.
fn counted_stream(
    frames: usize,
    size: usize,
) -> (
    Arc<AtomicUsize>,
    StreamBody<impl futures_util::Stream<Item = Result<Frame<Bytes>, Infallible>>>,
) {
    let read = Arc::new(AtomicUsize::new(0));
    let seen = read.clone();
    let chunk = Bytes::from(vec![b'x'; size]);
    let stream = futures_util::stream::iter((0..frames).map(move |_| {
        seen.fetch_add(1, Ordering::SeqCst);
        Ok(Frame::data(chunk.clone()))
    }));
    (read, StreamBody::new(stream))
}

#[tokio::test]
async fn an_oversize_body_is_read_to_its_end_before_the_413() {
    let (_, svc) = counting();
    let svc = ReplayLayer::new().with_limit(10).layer(svc);
    let (read, body) = counted_stream(100, 4);
    let res = svc.oneshot(Request::new(body)).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(read.load(Ordering::SeqCst), 100);
}

#[tokio::test]
async fn draining_stops_at_its_byte_bound() {
    let (_, svc) = counting();
    let svc = ReplayLayer::new()
        .with_limit(10)
        .with_drain(40, Duration::from_secs(10))
        .layer(svc);
    let (read, body) = counted_stream(100, 4);
    let res = svc.oneshot(Request::new(body)).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // 10 + 40 bytes may be read; the frame that crosses the bound is the last.
    assert_eq!(read.load(Ordering::SeqCst), 13);
}

#[tokio::test(start_paused = true)]
async fn draining_stops_at_its_time_bound() {
    let (_, svc) = counting();
    let svc = ReplayLayer::new()
        .with_limit(2)
        .with_drain(u64::MAX, Duration::from_secs(10))
        .layer(svc);
    // Three bytes, then a client that never sends the rest.
    let first = futures_util::stream::iter([Ok::<_, Infallible>(Frame::data(Bytes::from("abc")))]);
    let body = StreamBody::new(futures_util::StreamExt::chain(
        first,
        futures_util::stream::pending(),
    ));
    let started = tokio::time::Instant::now();
    let res = svc.oneshot(Request::new(body)).await.unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(started.elapsed(), Duration::from_secs(10));
}

#[tokio::test]
async fn a_declared_length_over_the_drain_bound_is_refused_unread() {
    let (calls, svc) = counting();
    let svc = ReplayLayer::new()
        .with_limit(3)
        .with_drain(0, Duration::ZERO)
        .layer(svc);
    let res = svc
        .oneshot(Request::new(Full::new(Bytes::from_static(b"abcd"))))
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn a_failing_body_is_400() {
    let (calls, svc) = counting();
    let svc = ReplayLayer::new().layer(svc);
    let chunks: Vec<Result<Frame<Bytes>, std::io::Error>> = vec![
        Ok(Frame::data(Bytes::from_static(b"{"))),
        Err(std::io::Error::other("client went away")),
    ];
    let req = Request::new(StreamBody::new(futures_util::stream::iter(chunks)));
    let res = svc.oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::BAD_REQUEST);
    let v = envelope(res).await;
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("client went away")
    );
    assert_eq!(calls.load(Ordering::SeqCst), 0);
}

/// A client that writes its whole request before reading (Python's
/// `http.client`, `httpx`) must read the 413, not a broken pipe.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_write_first_client_reads_the_413_through_hyper() {
    use hyper_util::rt::{TokioExecutor, TokioIo};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (_, svc) = counting();
    let svc = ReplayLayer::new().with_limit(1024).layer(svc);
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            let svc = hyper_util::service::TowerToHyperService::new(svc.clone());
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });

    for chunked in [false, true] {
        let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
        // Several MiB: far more than the socket buffers hold, so a server
        // that stopped reading would make this write fail.
        let body = vec![b'x'; 8 * 1024 * 1024];
        let head = if chunked {
            "POST /v1/messages HTTP/1.1\r\nhost: test\r\ntransfer-encoding: chunked\r\n\r\n"
                .to_owned()
        } else {
            format!(
                "POST /v1/messages HTTP/1.1\r\nhost: test\r\ncontent-length: {}\r\n\r\n",
                body.len()
            )
        };
        conn.write_all(head.as_bytes()).await.unwrap();
        if chunked {
            for chunk in body.chunks(64 * 1024) {
                conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                    .await
                    .unwrap();
                conn.write_all(chunk).await.unwrap();
                conn.write_all(b"\r\n").await.unwrap();
            }
            conn.write_all(b"0\r\n\r\n").await.unwrap();
        } else {
            conn.write_all(&body)
                .await
                .expect("the server reads the whole body");
        }
        let mut head = [0u8; 12];
        conn.read_exact(&mut head).await.unwrap();
        assert_eq!(&head, b"HTTP/1.1 413", "chunked: {chunked}");
    }
}
