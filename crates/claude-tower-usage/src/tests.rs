//! Layer behaviour with `service_fn` fakes shaped as the simulator answers.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use claude_tower_core::usage::{TokenUsage, UsageHook, UsageRecord};
use claude_tower_core::{
    AuthMethod, Caller, ClaudeError, ErrorClass, Face, ReplayBody, RequestIds, RouteId,
};
use futures_util::stream;
use http::{Request, Response, StatusCode};
use http_body::{Body, Frame};
use http_body_util::{BodyExt, Full, StreamBody};
use tower::{ServiceExt, service_fn};
use tower_layer::Layer;

use crate::sse::tests::sim_stream;
use crate::{RequestedModel, UsageBody, UsageLayer};

type Records = Arc<Mutex<Vec<UsageRecord>>>;

fn collecting() -> (UsageLayer, Records) {
    let records: Records = Arc::default();
    let sink = Arc::clone(&records);
    let layer = UsageLayer::new().sink(move |r: &UsageRecord| sink.lock().unwrap().push(r.clone()));
    (layer, records)
}

fn taken(records: &Records) -> Vec<UsageRecord> {
    std::mem::take(&mut *records.lock().unwrap())
}

type ChunkBody = StreamBody<stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

fn chunked(bytes: &[u8], size: usize) -> ChunkBody {
    let frames: Vec<_> = bytes
        .chunks(size.max(1))
        .map(|c| Ok(Frame::data(Bytes::copy_from_slice(c))))
        .collect();
    StreamBody::new(stream::iter(frames))
}

fn upstream<B>(content_type: &str, body: B) -> Response<B> {
    let mut res = Response::builder()
        .header("content-type", content_type)
        .header("request-id", "req_1")
        .body(body)
        .unwrap();
    res.extensions_mut().insert(RouteId::new("anthropic"));
    res.extensions_mut().insert(Face::Anthropic);
    res
}

async fn call<B>(
    layer: &UsageLayer,
    req: Request<ReplayBody>,
    response: Response<B>,
) -> Response<UsageBody<B>>
where
    B: Body<Data = Bytes> + Send + 'static,
{
    let mut slot = Some(response);
    let inner = service_fn(move |_req: Request<ReplayBody>| {
        std::future::ready(slot.take().ok_or("called twice"))
    });
    layer.layer(inner).oneshot(req).await.expect("a response")
}

fn request() -> Request<ReplayBody> {
    let mut req = Request::new(ReplayBody::from(
        r#"{"model":"claude-sonnet-4-5","max_tokens":10,"messages":[]}"#,
    ));
    req.extensions_mut()
        .insert(Caller::new("alice", AuthMethod::Token));
    req
}

async fn collect<B>(res: Response<B>) -> Bytes
where
    B: Body<Data = Bytes>,
    B::Error: std::fmt::Debug,
{
    res.into_body().collect().await.unwrap().to_bytes()
}

/// One request through the layer, the body read whole: the bytes the
/// client got and the one record delivered.
async fn through<B>(
    layer: &UsageLayer,
    records: &Records,
    req: Request<ReplayBody>,
    response: Response<B>,
) -> (Bytes, UsageRecord)
where
    B: Body<Data = Bytes> + Send + 'static,
    B::Error: std::fmt::Debug,
{
    let bytes = collect(call(layer, req, response).await).await;
    let mut got = taken(records);
    assert_eq!(got.len(), 1, "one record per request");
    (bytes, got.remove(0))
}

fn json_ok(body: &'static [u8]) -> Response<Full<Bytes>> {
    upstream("application/json", Full::new(Bytes::from_static(body)))
}

#[tokio::test]
async fn a_stream_passes_unchanged_and_gives_one_record() {
    let (layer, records) = collecting();
    let stream = sim_stream(6, true);
    for size in [1, 7, 64, 4096] {
        let res = call(
            &layer,
            request(),
            upstream("text/event-stream", chunked(stream.as_bytes(), size)),
        )
        .await;
        assert_eq!(collect(res).await, stream.as_bytes());
        let got = taken(&records);
        assert_eq!(got.len(), 1);
        let r = &got[0];
        assert_eq!(
            r.usage,
            Some(TokenUsage {
                input: 120,
                output: 16,
                cache_creation_input: 7,
                cache_read_input: 900
            })
        );
        assert_eq!(r.caller.as_ref().map(Caller::id), Some("alice"));
        assert_eq!(r.route.as_ref().map(RouteId::as_str), Some("anthropic"));
        assert_eq!(r.face, Some(Face::Anthropic));
        assert_eq!(r.attempts, 1);
        assert_eq!(r.requested_model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(r.response_model.as_deref(), Some("claude-sonnet-4-5"));
        assert_eq!(r.stop_reason.as_deref(), Some("tool_use"));
        assert!(r.streamed && !r.local && !r.client_disconnected);
        assert_eq!(r.error_class, None);
        assert!(r.time_to_first_byte.is_some());
        assert!(r.time_to_first_chunk.is_some());
        assert!(r.duration >= r.time_to_first_byte.unwrap());
        assert_eq!(r.request_ids.request_id(), Some("req_1"));
    }
}

#[tokio::test]
async fn a_json_message_is_read_as_it_passes() {
    let (layer, records) = collecting();
    let body = r#"{"id":"m","type":"message","model":"claude-haiku-4-5","content":[],"stop_reason":"end_turn","usage":{"input_tokens":3,"output_tokens":4}}"#;
    let (bytes, r) = through(
        &layer,
        &records,
        request(),
        upstream("application/json", chunked(body.as_bytes(), 10)),
    )
    .await;
    assert_eq!(bytes, body.as_bytes());
    assert_eq!(
        r.usage,
        Some(TokenUsage {
            input: 3,
            output: 4,
            ..TokenUsage::default()
        })
    );
    assert_eq!(r.response_model.as_deref(), Some("claude-haiku-4-5"));
    assert_eq!(r.stop_reason.as_deref(), Some("end_turn"));
    assert!(!r.streamed);
}

#[tokio::test]
async fn a_local_answer_has_zero_tokens() {
    let (layer, records) = collecting();
    let res = Response::builder()
        .status(413)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from_static(br#"{"type":"error"}"#)))
        .unwrap();
    let (_, r) = through(&layer, &records, request(), res).await;
    assert!(r.local);
    assert_eq!(r.usage, Some(TokenUsage::default()));
    assert_eq!(r.attempts, 0);
    assert_eq!(r.error_class, Some(ErrorClass::InvalidRequest));
    assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test]
async fn the_hook_is_called_once_after_the_sinks() {
    let order = Arc::new(Mutex::new(Vec::new()));
    let (o1, o2) = (Arc::clone(&order), Arc::clone(&order));
    let layer = UsageLayer::new().sink(move |_: &UsageRecord| o1.lock().unwrap().push("sink"));
    let mut res = upstream(
        "text/event-stream",
        chunked(sim_stream(2, false).as_bytes(), 33),
    );
    res.extensions_mut()
        .insert(UsageHook::new(move |r: &UsageRecord| {
            assert_eq!(r.tokens().output, 12);
            o2.lock().unwrap().push("hook");
        }));
    let res = call(&layer, request(), res).await;
    assert!(
        res.extensions().get::<UsageHook>().is_none(),
        "the hook is taken out"
    );
    collect(res).await;
    assert_eq!(*order.lock().unwrap(), ["sink", "hook"]);
}

#[tokio::test]
async fn without_sinks_only_a_hook_makes_the_body_watched() {
    let layer = UsageLayer::new();
    let stream = sim_stream(2, false);

    // No sink, no hook: the body passes unwatched, byte for byte.
    let res = call(
        &layer,
        request(),
        upstream("text/event-stream", chunked(stream.as_bytes(), 7)),
    )
    .await;
    assert!(format!("{:?}", res.body()).contains("recorder: None"));
    assert_eq!(collect(res).await, stream.as_bytes());

    // A hook (a quota settlement) still gets the tokens.
    let seen = Arc::new(Mutex::new(None));
    let slot = Arc::clone(&seen);
    let mut res = upstream("text/event-stream", chunked(stream.as_bytes(), 7));
    res.extensions_mut()
        .insert(UsageHook::new(move |r: &UsageRecord| {
            *slot.lock().unwrap() = Some(r.tokens().output);
        }));
    let res = call(&layer, request(), res).await;
    assert_eq!(collect(res).await, stream.as_bytes());
    assert_eq!(*seen.lock().unwrap(), Some(12));
}

#[tokio::test]
async fn a_client_gone_mid_stream_still_gives_one_record() {
    let (layer, records) = collecting();
    let stream = sim_stream(20, false);
    let res = call(
        &layer,
        request(),
        upstream("text/event-stream", chunked(stream.as_bytes(), 100)),
    )
    .await;
    let mut body = res.into_body();
    for _ in 0..5 {
        body.frame().await.unwrap().unwrap();
    }
    assert!(taken(&records).is_empty());
    drop(body);
    let got = taken(&records);
    assert_eq!(got.len(), 1);
    assert!(got[0].client_disconnected);
    // Input as seen in message_start; output as seen so far.
    assert_eq!(got[0].usage.map(|u| (u.input, u.output)), Some((120, 1)));
}

#[tokio::test]
async fn the_future_dropped_before_the_head_gives_a_499_record() {
    let (layer, records) = collecting();
    let inner = service_fn(|_req: Request<ReplayBody>| {
        std::future::pending::<Result<Response<Full<Bytes>>, Infallible>>()
    });
    let mut svc = layer.layer(inner);
    let fut = tower::Service::call(&mut svc, request());
    drop(fut);
    let got = taken(&records);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].status.as_u16(), 499);
    assert!(got[0].client_disconnected);
    assert_eq!(got[0].caller.as_ref().map(Caller::id), Some("alice"));
}

#[tokio::test]
async fn an_inner_error_gives_a_record_and_passes_through() {
    let (layer, records) = collecting();
    let inner = service_fn(|_req: Request<ReplayBody>| async {
        Err::<Response<Full<Bytes>>, _>(
            ClaudeError::new(ErrorClass::Overloaded, "busy")
                .with_route(RouteId::new("foundry"))
                .with_status(StatusCode::SERVICE_UNAVAILABLE),
        )
    });
    let err = layer.layer(inner).oneshot(request()).await.unwrap_err();
    assert_eq!(err.class(), ErrorClass::Overloaded);
    let r = &taken(&records)[0];
    assert_eq!(r.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(r.error_class, Some(ErrorClass::Overloaded));
    assert_eq!(r.route.as_ref().map(RouteId::as_str), Some("foundry"));
    assert_eq!(r.usage, None);
}

#[tokio::test]
async fn an_error_event_after_the_200_is_the_records_class() {
    let (layer, records) = collecting();
    let stream = sim_stream(1, false);
    let cut = stream.find("event: content_block_stop").unwrap();
    let failed = format!(
        "{}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n",
        &stream[..cut]
    );
    let (bytes, r) = through(
        &layer,
        &records,
        request(),
        upstream("text/event-stream", chunked(failed.as_bytes(), 50)),
    )
    .await;
    assert_eq!(bytes, failed.as_bytes());
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.error_class, Some(ErrorClass::Overloaded));
    assert_eq!(r.usage.map(|u| u.input), Some(120));
}

#[tokio::test]
async fn a_stream_ending_without_message_stop_is_a_transport_failure() {
    let (layer, records) = collecting();
    let stream = sim_stream(3, false);
    let cut = stream.find("event: message_delta").unwrap();
    let (bytes, r) = through(
        &layer,
        &records,
        request(),
        upstream("text/event-stream", chunked(&stream.as_bytes()[..cut], 40)),
    )
    .await;
    assert_eq!(bytes, &stream.as_bytes()[..cut]);
    assert_eq!(r.error_class, Some(ErrorClass::Transport));
    assert_eq!(r.usage.map(|u| (u.input, u.output)), Some((120, 1)));
    assert!(!r.client_disconnected);
}

#[derive(Debug)]
struct Broken;
impl std::fmt::Display for Broken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection reset")
    }
}
impl std::error::Error for Broken {}

#[tokio::test]
async fn a_body_error_gives_one_record_and_reaches_the_client() {
    let (layer, records) = collecting();
    let start = sim_stream(1, false);
    let frames = vec![
        Ok(Frame::data(Bytes::from(start[..300].to_owned()))),
        Err(Broken),
    ];
    let body = StreamBody::new(stream::iter(frames));
    let res = call(&layer, request(), upstream("text/event-stream", body)).await;
    let mut body = res.into_body();
    assert!(body.frame().await.unwrap().is_ok());
    assert!(body.frame().await.unwrap().is_err());
    drop(body);
    let got = taken(&records);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].error_class, Some(ErrorClass::Transport));
    assert!(!got[0].client_disconnected);
}

#[tokio::test]
async fn truncated_json_and_bad_counts_are_unknown_never_failed() {
    let (layer, records) = collecting();
    for body in [
        r#"{"model":"m","usage":{"input_tokens":3,"output_tok"#,
        r#"{"model":"m","usage":{"input_tokens":"3","output_tokens":4}}"#,
        r#"{"model":"m","usage":{"input_tokens":-3,"output_tokens":4}}"#,
    ] {
        let res = upstream("application/json", chunked(body.as_bytes(), 8));
        let (bytes, r) = through(&layer, &records, request(), res).await;
        assert_eq!(bytes, body.as_bytes());
        assert_eq!(r.usage, None, "{body}");
    }
    assert_eq!(layer.stats().malformed(), 3);
}

#[tokio::test]
async fn a_ten_mib_line_passes_unchanged_with_bounded_memory() {
    let (layer, records) = collecting();
    let mut stream = String::from("event: content_block_delta\ndata: {\"text\":\"");
    stream.push_str(&"x".repeat(10 * 1024 * 1024));
    stream.push_str("\"}\n\n");
    stream.push_str(&sim_stream(1, false));
    let res = upstream("text/event-stream", chunked(stream.as_bytes(), 16 * 1024));
    let (bytes, r) = through(&layer, &records, request(), res).await;
    assert!(bytes == stream.as_bytes());
    assert_eq!(r.usage.map(|u| u.output), Some(11));
}

#[tokio::test]
async fn a_never_ending_body_is_read_until_dropped() {
    let (layer, records) = collecting();
    let ping = Bytes::from_static(b"event: ping\ndata: {\"type\": \"ping\"}\n\n");
    let body = StreamBody::new(stream::repeat_with(move || {
        Ok::<_, Infallible>(Frame::data(ping.clone()))
    }));
    let res = call(&layer, request(), upstream("text/event-stream", body)).await;
    let mut body = res.into_body();
    for _ in 0..100_000 {
        body.frame().await.unwrap().unwrap();
    }
    drop(body);
    let got = taken(&records);
    assert_eq!(got.len(), 1);
    assert!(got[0].client_disconnected);
    assert_eq!(got[0].usage, None);
}

#[tokio::test]
async fn the_requested_model_hint_wins() {
    let (layer, records) = collecting();
    let mut req = request();
    req.extensions_mut()
        .insert(RequestedModel(Arc::from("sonnet")));
    let (_, r) = through(&layer, &records, req, json_ok(b"{}")).await;
    assert_eq!(r.requested_model.as_deref(), Some("sonnet"));
    // An escaped model in the body is decoded.
    let req = Request::new(ReplayBody::from(
        r#"{"messages":[],"model":"claude\u002dx"}"#,
    ));
    let (_, r) = through(&layer, &records, req, json_ok(b"{}")).await;
    assert_eq!(r.requested_model.as_deref(), Some("claude-x"));
}

#[tokio::test]
async fn request_ids_come_from_the_extension_or_the_headers() {
    let (layer, records) = collecting();
    let mut res = json_ok(b"{}");
    res.extensions_mut().insert(RequestIds::default());
    let (_, r) = through(&layer, &records, request(), res).await;
    assert!(r.request_ids.is_empty());
    let (_, r) = through(&layer, &records, request(), json_ok(b"{}")).await;
    assert_eq!(r.request_ids.request_id(), Some("req_1"));
}

#[tokio::test]
async fn many_concurrent_requests_give_one_record_each() {
    let (layer, records) = collecting();
    let stream = sim_stream(3, false);
    let futures = (0..50).map(|i| {
        let layer = layer.clone();
        let stream = stream.clone();
        async move {
            let res = call(
                &layer,
                request(),
                upstream("text/event-stream", chunked(stream.as_bytes(), 10 + i)),
            )
            .await;
            collect(res).await
        }
    });
    let bodies = futures_util::future::join_all(futures).await;
    assert!(bodies.iter().all(|b| b == stream.as_bytes()));
    let got = taken(&records);
    assert_eq!(got.len(), 50);
    assert_eq!(got.iter().map(|r| r.tokens().output).sum::<u64>(), 50 * 13);
}

#[tokio::test]
async fn an_encoded_body_passes_unread_with_unknown_usage() {
    let (layer, records) = collecting();
    let bytes = b"\x1f\x8b\x08\x00 not really gzip";
    let mut res = upstream("text/event-stream", chunked(bytes, 5));
    res.headers_mut()
        .insert("content-encoding", http::HeaderValue::from_static("gzip"));
    let (out, r) = through(&layer, &records, request(), res).await;
    assert_eq!(out, &bytes[..]);
    assert_eq!(r.usage, None);
    assert_eq!(r.error_class, None);
    assert_eq!(layer.stats().encoded(), 1);
}
