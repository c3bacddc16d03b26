use std::time::Duration;

use claude_tower_core::usage::TokenUsage;
use claude_tower_core::{AuthMethod, Caller, ErrorClass};
use http::StatusCode;
use opentelemetry::metrics::MeterProvider;
use opentelemetry_sdk::metrics::data::{AggregatedMetrics, MetricData};
use opentelemetry_sdk::metrics::{InMemoryMetricExporter, PeriodicReader, SdkMeterProvider};

use super::*;

/// Every data point as `(metric, sorted attributes) -> (sum, count)`.
pub(crate) type Points = HashMap<(String, String), (f64, u64)>;

pub(crate) struct TestMeter {
    provider: SdkMeterProvider,
    exporter: InMemoryMetricExporter,
}

impl TestMeter {
    pub(crate) fn new() -> Self {
        let exporter = InMemoryMetricExporter::default();
        let reader = PeriodicReader::builder(exporter.clone()).build();
        let provider = SdkMeterProvider::builder().with_reader(reader).build();
        Self { provider, exporter }
    }

    pub(crate) fn meter(&self) -> Meter {
        self.provider.meter("test")
    }

    pub(crate) fn points(&self) -> Points {
        self.provider.force_flush().unwrap();
        let mut out = Points::new();
        let all = self.exporter.get_finished_metrics().unwrap();
        let Some(last) = all.last() else { return out };
        for scope in last.scope_metrics() {
            for metric in scope.metrics() {
                let name = metric.name().to_owned();
                let mut put = |attrs: Vec<String>, sum: f64, count: u64| {
                    let mut attrs = attrs;
                    attrs.sort();
                    out.insert((name.clone(), attrs.join(",")), (sum, count));
                };
                let fmt = |kv: &KeyValue| format!("{}={}", kv.key, kv.value);
                match metric.data() {
                    AggregatedMetrics::U64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            put(p.attributes().map(fmt).collect(), p.sum() as f64, p.count());
                        }
                    }
                    AggregatedMetrics::F64(MetricData::Histogram(h)) => {
                        for p in h.data_points() {
                            put(p.attributes().map(fmt).collect(), p.sum(), p.count());
                        }
                    }
                    AggregatedMetrics::U64(MetricData::Sum(s)) => {
                        for p in s.data_points() {
                            put(p.attributes().map(fmt).collect(), p.value() as f64, 1);
                        }
                    }
                    _ => {}
                }
            }
        }
        out
    }
}

/// Sum of a metric over every point whose attributes contain all of `with`.
pub(crate) fn total(points: &Points, metric: &str, with: &[&str]) -> f64 {
    points
        .iter()
        .filter(|((name, attrs), _)| {
            name == metric && with.iter().all(|w| attrs.split(',').any(|a| a == *w))
        })
        .map(|(_, (sum, _))| sum)
        .sum()
}

fn streamed(caller: &str, face: Face) -> UsageRecord {
    let mut r = UsageRecord::new(StatusCode::OK);
    r.caller = Some(Caller::new(caller, AuthMethod::Token));
    r.route = Some(RouteId::new(face.as_str()));
    r.face = Some(face);
    r.requested_model = Some("sonnet".into());
    r.response_model = Some("claude-sonnet-4-5".into());
    r.usage = Some(TokenUsage {
        input: 10,
        output: 20,
        cache_creation_input: 100,
        cache_read_input: 1000,
    });
    r.streamed = true;
    r.duration = Duration::from_millis(1500);
    r.time_to_first_chunk = Some(Duration::from_millis(300));
    r
}

#[test]
fn records_become_genai_metrics() {
    let m = TestMeter::new();
    let sink = MetricsSink::new(&m.meter()).with_server(
        RouteId::new("foundry"),
        "res.services.ai.azure.com",
        Some(443),
    );
    sink.record(&streamed("alice", Face::Anthropic));
    sink.record(&streamed("bob", Face::Foundry));
    let p = m.points();

    let usage = "gen_ai.client.token.usage";
    assert_eq!(total(&p, usage, &["gen_ai.token.type=input"]), 2.0 * 1110.0);
    assert_eq!(total(&p, usage, &["gen_ai.token.type=output"]), 40.0);
    assert_eq!(
        total(
            &p,
            usage,
            &[
                "gen_ai.token.type=input",
                "gen_ai.provider.name=azure.ai.inference",
                "server.address=res.services.ai.azure.com",
                "server.port=443"
            ]
        ),
        1110.0
    );
    assert_eq!(
        total(
            &p,
            usage,
            &[
                "gen_ai.token.type=output",
                "claude_tower.caller=alice",
                "claude_tower.route=anthropic",
                "gen_ai.operation.name=chat",
                "gen_ai.request.model=sonnet",
                "gen_ai.response.model=claude-sonnet-4-5"
            ]
        ),
        20.0
    );
    let tokens = "claude_tower.tokens";
    assert_eq!(
        total(&p, tokens, &["claude_tower.token.type=cache_read_input"]),
        2000.0
    );
    assert_eq!(
        total(
            &p,
            tokens,
            &["claude_tower.token.type=cache_creation_input"]
        ),
        200.0
    );
    assert_eq!(total(&p, tokens, &["claude_tower.token.type=input"]), 20.0);
    assert_eq!(total(&p, "gen_ai.client.operation.duration", &[]), 3.0);
    assert_eq!(
        total(&p, "gen_ai.client.operation.time_to_first_chunk", &[]),
        0.6
    );
    assert_eq!(
        total(
            &p,
            "claude_tower.requests",
            &["http.response.status_code=200"]
        ),
        2.0
    );
}

#[test]
fn callers_past_the_cap_fold_into_other() {
    let m = TestMeter::new();
    let sink = MetricsSink::new(&m.meter()).with_caller_labels(2);
    for caller in ["a", "b", "c", "d", "a"] {
        sink.record(&streamed(caller, Face::Anthropic));
    }
    let p = m.points();
    let out = |who: &str| {
        total(
            &p,
            "claude_tower.tokens",
            &[
                "claude_tower.token.type=output",
                &format!("claude_tower.caller={who}"),
            ],
        )
    };
    assert_eq!(out("a"), 40.0);
    assert_eq!(out("b"), 20.0);
    assert_eq!(out("_other"), 40.0);
    assert_eq!(out("c"), 0.0);
}

#[test]
fn records_past_the_kept_series_still_count() {
    // More distinct callers than kept label combinations: the first
    // MAX_SERIES are kept, the rest go the slow way, and every one counts
    // (here under `_other`, and the kept ones again on their second record).
    let m = TestMeter::new();
    let sink = MetricsSink::new(&m.meter()).with_caller_labels(10);
    let n = crate::metrics::MAX_SERIES + 100;
    for i in 0..n {
        sink.record(&streamed(&format!("caller-{i}"), Face::Anthropic));
    }
    for i in [0, 5, n - 1] {
        sink.record(&streamed(&format!("caller-{i}"), Face::Anthropic));
    }
    let p = m.points();
    let requests = |with: &[&str]| total(&p, "claude_tower.requests", with);
    assert_eq!(requests(&[]), (n + 3) as f64);
    assert_eq!(requests(&["claude_tower.caller=caller-0"]), 2.0);
    assert_eq!(requests(&["claude_tower.caller=caller-9"]), 1.0);
    assert_eq!(
        requests(&["claude_tower.caller=_other"]),
        (n - 10 + 1) as f64
    );
    assert_eq!(
        total(
            &p,
            "claude_tower.tokens",
            &["claude_tower.token.type=output"]
        ),
        20.0 * (n + 3) as f64
    );
    assert!(format!("{sink:?}").contains(&format!("series: {}", crate::metrics::MAX_SERIES)));
}

#[test]
fn local_errors_and_unknown_usage_count_no_tokens() {
    let m = TestMeter::new();
    let sink = MetricsSink::new(&m.meter());
    let mut local = UsageRecord::new(StatusCode::TOO_MANY_REQUESTS);
    local.local = true;
    local.usage = Some(TokenUsage::default());
    local.error_class = Some(ErrorClass::RateLimited);
    sink.record(&local);
    let mut unknown = streamed("alice", Face::Anthropic);
    unknown.usage = None;
    unknown.client_disconnected = true;
    sink.record(&unknown);
    let p = m.points();
    assert_eq!(total(&p, "gen_ai.client.token.usage", &[]), 0.0);
    assert_eq!(total(&p, "claude_tower.usage.unknown", &[]), 1.0);
    assert_eq!(
        total(
            &p,
            "claude_tower.requests",
            &[
                "error.type=rate-limited",
                "claude_tower.route=_local",
                "http.response.status_code=429"
            ]
        ),
        1.0
    );
    assert_eq!(
        total(
            &p,
            "claude_tower.requests",
            &["error.type=client_disconnected"]
        ),
        1.0
    );
}

#[test]
fn read_stats_are_observed() {
    let m = TestMeter::new();
    let stats = Arc::new(crate::ReadStats::default());
    stats.count_malformed();
    stats.count_malformed();
    stats.count_oversized_json();
    Arc::clone(&stats).observe(&m.meter());
    let p = m.points();
    let failures = "claude_tower.usage.read_failures";
    assert_eq!(total(&p, failures, &["claude_tower.reason=malformed"]), 2.0);
    assert_eq!(
        total(&p, failures, &["claude_tower.reason=oversized_json"]),
        1.0
    );
    assert_eq!(
        total(&p, failures, &["claude_tower.reason=oversized_event"]),
        0.0
    );
}
