//! What the gateway tells about its traffic: `GET /metrics` (Prometheus
//! text), OTLP push, and `GET /usage` (JSON per caller).
//!
//! One OpenTelemetry SDK meter provider feeds both exporters:
//!
//! - the usage layer's [`MetricsSink`]: the GenAI metrics
//!   (`gen_ai_client_token_usage`, `gen_ai_client_operation_duration_seconds`,
//!   `..._time_to_first_chunk_seconds`) and `claude_tower_tokens_total`,
//!   `claude_tower_requests_total`, by route, caller, model and status;
//! - route health, read when scraped: `claude_tower_route_breaker_state`
//!   (0 closed, 1 half-open, 2 open) and
//!   `claude_tower_route_consecutive_failures` per route, and
//!   `claude_tower_upstream_attempts_total` by answering route (minus
//!   `claude_tower_requests_total`, the retries and failovers);
//! - quota health from [`QuotaLayer::health`]: `claude_tower_quota_shared`
//!   (1 while limits are shared through Redis, or no Redis is configured)
//!   and the counters of Redis errors, checks made in this process's memory
//!   (the memory store, or the fallback while Redis is down), lost
//!   settlements, settled and unknown usage.
//!
//! With the `otlp` feature and `OTEL_EXPORTER_OTLP_ENDPOINT` (or the metrics
//! one) set, the same provider also pushes OTLP over HTTP/protobuf; the
//! standard `OTEL_*` variables apply (headers, interval, service name).
//!
//! `GET /usage` shows what this instance has seen per caller since it
//! started (requests and the four token counts) and each quota key's
//! standing in its current windows, from the quota store (shared by every
//! replica when Redis is configured).

use std::sync::{Arc, Mutex, OnceLock, PoisonError};

// foldhash, seeded per process: a request's lookup costs a fraction of SipHash.
use hashbrown::HashMap;

use axum::extract::{Request, State};
use axum::response::{IntoResponse, Response};
use claude_tower::failover::{Breakers, CircuitState};
use claude_tower::stack::Route;
use claude_tower_core::RouteId;
use claude_tower_core::usage::{UsageRecord, UsageSink};
use claude_tower_quota::QuotaLayer;
use claude_tower_usage::{MetricsSink, PrometheusExporter, TracingSink, UsageLayer};
use http::header::CONTENT_TYPE;
use opentelemetry::KeyValue;
use opentelemetry::metrics::{BoundCounter, Counter, Meter};
use serde::Serialize;

use crate::access::Access;
use crate::config::ConfigError;

/// How many distinct callers `/usage` keeps apart; the rest add up under
/// `_other`.
const MAX_CALLERS: usize = 10_000;

/// The meter provider, its Prometheus text, and the `/usage` tallies.
#[derive(Clone)]
pub struct Telemetry {
    exporter: Arc<PrometheusExporter>,
    consumption: Arc<Consumption>,
    quota: QuotaLayer,
}

impl std::fmt::Debug for Telemetry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Telemetry").finish_non_exhaustive()
    }
}

impl Telemetry {
    /// The exporters (Prometheus always; OTLP when built with `otlp` and the
    /// `OTEL_*` variables ask for it) and the route and quota instruments.
    pub fn new(
        quota: &QuotaLayer,
        lookup: &impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let exporter = exporter(lookup)?;
        observe_quota(&exporter.meter(), quota.clone());
        Ok(Self {
            exporter: Arc::new(exporter),
            consumption: Arc::default(),
            quota: quota.clone(),
        })
    }

    /// Route health gauges read from `breakers` when scraped.
    pub fn observe_breakers(&self, breakers: &Breakers) {
        observe_routes(&self.exporter.meter(), breakers.clone());
    }

    /// The usage layer: GenAI metrics, one INFO event per request, the
    /// attempts counter and the `/usage` tallies.
    pub fn usage_layer(&self, routes: &[Route], caller_labels: usize) -> UsageLayer {
        let meter = self.exporter.meter();
        let mut metrics = MetricsSink::new(&meter).with_caller_labels(caller_labels);
        for route in routes {
            if let Ok(uri) = route.endpoint().base_url().parse::<http::Uri>()
                && let Some(host) = uri.host()
            {
                metrics = metrics.with_server(route.id().clone(), host, uri.port_u16());
            }
        }
        UsageLayer::new()
            .sink(metrics)
            .sink(TracingSink::new())
            .sink(Attempts::new(&meter, routes.iter().map(Route::id)))
            .sink(Arc::clone(&self.consumption))
    }

    /// The Prometheus text exposition.
    pub fn render(&self) -> String {
        self.exporter.render()
    }

    /// Flushes and stops the exporters (OTLP's last push).
    pub fn shutdown(&self) {
        if let Err(err) = self.exporter.meter_provider().shutdown() {
            tracing::debug!(%err, "metrics shutdown");
        }
    }
}

#[cfg(feature = "otlp")]
fn exporter(_lookup: &impl Fn(&str) -> Option<String>) -> Result<PrometheusExporter, ConfigError> {
    use opentelemetry_sdk::metrics::SdkMeterProvider;
    let setup = |err: claude_tower_usage::MetricsSetupError| {
        ConfigError::new("OTEL_EXPORTER_OTLP_ENDPOINT", err.to_string())
    };
    let mut builder = SdkMeterProvider::builder().with_resource(
        claude_tower_usage::resource_from_env("claude-tower-gateway"),
    );
    if let Some(reader) = claude_tower_usage::otlp_reader_from_env().map_err(setup)? {
        tracing::info!("metrics: pushing OTLP as the OTEL_* variables say");
        builder = builder.with_reader(reader);
    }
    PrometheusExporter::with_builder(builder).map_err(setup)
}

#[cfg(not(feature = "otlp"))]
fn exporter(lookup: &impl Fn(&str) -> Option<String>) -> Result<PrometheusExporter, ConfigError> {
    for var in [
        "OTEL_EXPORTER_OTLP_ENDPOINT",
        "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
    ] {
        if lookup(var).is_some_and(|v| !v.trim().is_empty()) {
            tracing::warn!(
                "{var} is set but this gateway was built without the `otlp` feature: \
                 metrics are served on /metrics only"
            );
        }
    }
    PrometheusExporter::new().map_err(|err| ConfigError::new("metrics", err.to_string()))
}

fn observe_routes(meter: &Meter, breakers: Breakers) {
    let states = breakers.clone();
    meter
        .u64_observable_gauge("claude_tower.route.breaker_state")
        .with_description("Circuit breaker per route: 0 closed, 1 half-open, 2 open.")
        .with_callback(move |observer| {
            for route in states.snapshot() {
                let state = match route.state() {
                    CircuitState::Closed => 0,
                    CircuitState::HalfOpen => 1,
                    CircuitState::Open => 2,
                };
                observer.observe(state, &[route_label(route.route().as_str())]);
            }
        })
        .build();
    meter
        .u64_observable_gauge("claude_tower.route.consecutive_failures")
        .with_description("Failures in a row per route (the breaker opens at its threshold).")
        .with_callback(move |observer| {
            for route in breakers.snapshot() {
                observer.observe(
                    u64::from(route.consecutive_failures()),
                    &[route_label(route.route().as_str())],
                );
            }
        })
        .build();
}

fn route_label(route: &str) -> KeyValue {
    KeyValue::new(claude_tower_usage::metrics::attr::ROUTE, route.to_owned())
}

fn observe_quota(meter: &Meter, quota: QuotaLayer) {
    let shared = quota.clone();
    meter
        .u64_observable_gauge("claude_tower.quota.shared")
        .with_description("1 while quota limits are shared (Redis answering, or no Redis).")
        .with_callback(move |observer| {
            observer.observe(u64::from(shared.health().store.shared), &[]);
        })
        .build();
    type Read = fn(&claude_tower_quota::QuotaHealth) -> u64;
    let counters: [(&'static str, &'static str, Read); 6] = [
        (
            "claude_tower.quota.redis_errors",
            "Redis calls that failed or timed out.",
            |h| h.store.errors,
        ),
        (
            "claude_tower.quota.local_checks",
            "Requests checked in this process's memory: the memory store, or the fallback while Redis is down.",
            |h| h.store.local_checks,
        ),
        (
            "claude_tower.quota.lost_settlements",
            "Settlements that could not reach Redis.",
            |h| h.store.lost_settlements,
        ),
        (
            "claude_tower.quota.leased_checks",
            "Requests admitted from a lease (an allowance taken from Redis ahead), with no round trip of their own.",
            |h| h.store.leased_checks,
        ),
        (
            "claude_tower.quota.settled",
            "Admitted requests settled from their usage.",
            |h| h.settled,
        ),
        (
            "claude_tower.quota.unknown_usage",
            "Admitted requests whose usage never became known (their estimate stands).",
            |h| h.unknown_usage,
        ),
    ];
    for (name, description, read) in counters {
        let quota = quota.clone();
        meter
            .u64_observable_counter(name)
            .with_description(description)
            .with_callback(move |observer| observer.observe(read(&quota.health()), &[]))
            .build();
    }
}

/// `claude_tower.upstream.attempts`: every upstream attempt, by the route
/// that answered. The counter is bound once per configured route, on its
/// first attempt, so a request adds to it without hashing its attributes.
struct Attempts {
    counter: Counter<u64>,
    bound: Vec<(RouteId, OnceLock<BoundCounter<u64>>)>,
}

impl Attempts {
    fn new<'a>(meter: &Meter, routes: impl Iterator<Item = &'a RouteId>) -> Self {
        Self {
            counter: meter
                .u64_counter("claude_tower.upstream.attempts")
                .with_unit("{attempt}")
                .with_description(
                    "Upstream attempts, retries and failovers included, by the answering route.",
                )
                .build(),
            bound: routes
                .map(|route| (route.clone(), OnceLock::new()))
                .collect(),
        }
    }

    fn add(&self, route: Option<&RouteId>, n: u64) {
        match self.bound.iter().find(|(r, _)| Some(r) == route) {
            Some((route, bound)) => bound
                .get_or_init(|| self.counter.bind(&[route_label(route.as_str())]))
                .add(n),
            None => {
                let name = route.map_or("_none", RouteId::as_str);
                self.counter.add(n, &[route_label(name)]);
            }
        }
    }
}

impl UsageSink for Attempts {
    fn record(&self, record: &UsageRecord) {
        if record.attempts > 0 {
            self.add(record.route.as_ref(), u64::from(record.attempts));
        }
    }
}

/// One caller's consumption as `/usage` shows it.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Tally {
    requests: u64,
    input_tokens: u64,
    cache_creation_input_tokens: u64,
    cache_read_input_tokens: u64,
    output_tokens: u64,
}

/// Per caller, since this instance started.
#[derive(Debug, Default)]
struct Consumption(Mutex<HashMap<Box<str>, Tally>>);

impl UsageSink for Consumption {
    fn record(&self, record: &UsageRecord) {
        let caller = record.caller.as_ref().map_or("_anonymous", |c| c.id());
        let mut map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        // A known caller costs one lookup, not an owned key per request.
        if let Some(tally) = map.get_mut(caller) {
            tally.add(record);
            return;
        }
        let key = if map.len() < MAX_CALLERS {
            caller
        } else {
            "_other"
        };
        map.entry(key.into()).or_default().add(record);
    }
}

impl Tally {
    fn add(&mut self, record: &UsageRecord) {
        self.requests += 1;
        if !record.local
            && let Some(usage) = record.usage
        {
            self.input_tokens += usage.input;
            self.cache_creation_input_tokens += usage.cache_creation_input;
            self.cache_read_input_tokens += usage.cache_read_input;
            self.output_tokens += usage.output;
        }
    }
}

impl Consumption {
    fn snapshot(&self) -> Vec<serde_json::Value> {
        let map = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        let mut out: Vec<_> = map
            .iter()
            .map(|(caller, tally)| {
                let mut v = serde_json::to_value(tally).unwrap_or_default();
                v["caller"] = caller.as_ref().into();
                v
            })
            .collect();
        out.sort_by(|a, b| a["caller"].as_str().cmp(&b["caller"].as_str()));
        out
    }
}

/// What the `/metrics` and `/usage` handlers read.
#[derive(Clone, Debug)]
pub(crate) struct Endpoints {
    pub(crate) telemetry: Telemetry,
    pub(crate) access: Access,
    pub(crate) metrics_public: bool,
}

/// `GET /metrics`.
pub(crate) async fn metrics(State(at): State<Endpoints>, req: Request) -> Response {
    if !at.metrics_public {
        let checked = at.access.check(&req);
        drop(req);
        if let Err(refused) = checked.await {
            return refused;
        }
    }
    (
        [(CONTENT_TYPE, PrometheusExporter::CONTENT_TYPE)],
        at.telemetry.render(),
    )
        .into_response()
}

/// `GET /usage`.
pub(crate) async fn usage(State(at): State<Endpoints>, req: Request) -> Response {
    let checked = at.access.check_admin(&req);
    drop(req);
    if let Err(refused) = checked.await {
        return refused;
    }
    let limits = at.telemetry.quota.snapshot().await;
    axum::Json(serde_json::json!({
        "consumption": at.telemetry.consumption.snapshot(),
        "limits": limits,
        "quota": at.telemetry.quota.health(),
    }))
    .into_response()
}
