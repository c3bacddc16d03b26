//! Two requests through `UsageLayer` with a `MetricsSink` on a Prometheus
//! exporter, then the text a `GET /metrics` would serve.
//!
//! `cargo run -p claude-tower-usage --features prometheus --example prometheus`

use std::convert::Infallible;

use bytes::Bytes;
use claude_tower_core::{AuthMethod, Caller, Face, RouteId};
use claude_tower_usage::{MetricsSink, PrometheusExporter, UsageLayer};
use http::{Request, Response};
use http_body_util::{BodyExt, Full};
use tower::{Layer, ServiceExt, service_fn};

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let exporter = PrometheusExporter::new().expect("exporter");
    let layer = UsageLayer::new().sink(MetricsSink::new(&exporter.meter()));
    let stats = layer.stats();
    stats.observe(&exporter.meter());

    let upstream = service_fn(|_req: Request<Full<Bytes>>| async {
        let body = r#"{"model":"claude-sonnet-4-5","stop_reason":"end_turn","usage":{"input_tokens":12,"cache_read_input_tokens":2048,"output_tokens":300}}"#;
        let mut res = Response::builder()
            .header("content-type", "application/json")
            .body(Full::new(Bytes::from_static(body.as_bytes())))
            .unwrap();
        res.extensions_mut().insert(RouteId::new("anthropic"));
        res.extensions_mut().insert(Face::Anthropic);
        Ok::<_, Infallible>(res)
    });
    let service = layer.layer(upstream);
    for caller in ["alice", "bob"] {
        let mut req = Request::new(Full::new(Bytes::new()));
        req.extensions_mut()
            .insert(Caller::new(caller, AuthMethod::Token));
        let res = service.clone().oneshot(req).await.unwrap();
        res.into_body().collect().await.unwrap();
    }
    print!("{}", exporter.render());
}
