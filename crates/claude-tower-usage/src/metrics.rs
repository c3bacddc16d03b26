//! [`MetricsSink`]: usage records as OpenTelemetry GenAI metrics.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use claude_tower_core::usage::{UsageRecord, UsageSink};
use claude_tower_core::{Face, RouteId};
use opentelemetry::metrics::{Counter, Histogram, Meter};
use opentelemetry::{KeyValue, Value};

/// `gen_ai.client.token.usage` bucket boundaries, from the conventions.
pub const TOKEN_BOUNDARIES: [f64; 14] = [
    1.0, 4.0, 16.0, 64.0, 256.0, 1024.0, 4096.0, 16384.0, 65536.0, 262144.0, 1048576.0, 4194304.0,
    16777216.0, 67108864.0,
];

/// `gen_ai.client.operation.duration` and `.time_to_first_chunk` bucket
/// boundaries (seconds), from the conventions.
pub const DURATION_BOUNDARIES: [f64; 14] = [
    0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92,
];

/// How many distinct callers become label values by default; the rest are
/// counted under [`OTHER`].
pub const DEFAULT_CALLER_LABELS: usize = 1000;

/// How many distinct model names become label values by default (the
/// requested model is chosen by clients, so it is capped too).
pub const DEFAULT_MODEL_LABELS: usize = 100;

/// The label value for everything past a cap.
pub const OTHER: &str = "_other";

/// Attribute names of our own dimensions.
pub mod attr {
    /// The route that answered (`_local` for local answers).
    pub const ROUTE: &str = "claude_tower.route";
    /// The caller's id, capped.
    pub const CALLER: &str = "claude_tower.caller";
    /// `input` (uncached), `cache_creation_input`, `cache_read_input`, `output`.
    pub const TOKEN_TYPE: &str = "claude_tower.token.type";
    /// The HTTP status sent to the client.
    pub const STATUS: &str = "http.response.status_code";
}

/// Records every [`UsageRecord`] as metrics by the OpenTelemetry GenAI
/// semantic conventions, through any [`Meter`] (the API only: the service
/// that builds the meter provider picks the exporter).
///
/// | instrument | kind, unit | recorded |
/// |---|---|---|
/// | `gen_ai.client.token.usage` | histogram, `{token}` | per successful upstream request with known usage: `gen_ai.token.type=input` (input + cache read + cache creation, as the conventions count Anthropic input) and `output` |
/// | `gen_ai.client.operation.duration` | histogram, `s` | every request, to the end of the body |
/// | `gen_ai.client.operation.time_to_first_chunk` | histogram, `s` | streams, to the first content event |
/// | `claude_tower.tokens` | counter, `{token}` | the four counts apart: `claude_tower.token.type` = `input` (uncached), `cache_creation_input`, `cache_read_input`, `output` |
/// | `claude_tower.requests` | counter, `{request}` | every request, with `http.response.status_code` |
/// | `claude_tower.usage.unknown` | counter, `{request}` | requests from a route whose usage could not be read |
///
/// Attributes: `gen_ai.operation.name=chat`; `gen_ai.provider.name`
/// (`anthropic`, or `azure.ai.inference` for a Foundry route; absent for a
/// local answer); `gen_ai.request.model`, `gen_ai.response.model` (capped);
/// `error.type` (the [`ErrorClass`](claude_tower_core::ErrorClass) name, or
/// `client_disconnected`); `server.address`/`server.port` when configured for
/// the route; `claude_tower.route` and `claude_tower.caller` (capped at
/// [`DEFAULT_CALLER_LABELS`] distinct callers, the rest under `_other`).
pub struct MetricsSink {
    token_usage: Histogram<u64>,
    duration: Histogram<f64>,
    first_chunk: Histogram<f64>,
    tokens: Counter<u64>,
    requests: Counter<u64>,
    unknown: Counter<u64>,
    callers: LabelCap,
    models: LabelCap,
    routes: LabelCap,
    servers: HashMap<RouteId, (Value, Option<i64>)>,
}

impl fmt::Debug for MetricsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MetricsSink")
            .field("callers", &self.callers)
            .field("models", &self.models)
            .field("servers", &self.servers.len())
            .finish_non_exhaustive()
    }
}

impl MetricsSink {
    /// Creates the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        Self {
            token_usage: meter
                .u64_histogram("gen_ai.client.token.usage")
                .with_unit("{token}")
                .with_description("Number of input and output tokens used.")
                .with_boundaries(TOKEN_BOUNDARIES.to_vec())
                .build(),
            duration: meter
                .f64_histogram("gen_ai.client.operation.duration")
                .with_unit("s")
                .with_description("GenAI operation duration.")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            first_chunk: meter
                .f64_histogram("gen_ai.client.operation.time_to_first_chunk")
                .with_unit("s")
                .with_description("Time to receive the first chunk in the response stream.")
                .with_boundaries(DURATION_BOUNDARIES.to_vec())
                .build(),
            tokens: meter
                .u64_counter("claude_tower.tokens")
                .with_unit("{token}")
                .with_description(
                    "Tokens by kind: uncached input, cache creation, cache read, output.",
                )
                .build(),
            requests: meter
                .u64_counter("claude_tower.requests")
                .with_unit("{request}")
                .with_description("Requests through the usage layer.")
                .build(),
            unknown: meter
                .u64_counter("claude_tower.usage.unknown")
                .with_unit("{request}")
                .with_description("Requests answered by a route whose usage could not be read.")
                .build(),
            callers: LabelCap::new(DEFAULT_CALLER_LABELS),
            models: LabelCap::new(DEFAULT_MODEL_LABELS),
            routes: LabelCap::new(DEFAULT_MODEL_LABELS),
            servers: HashMap::new(),
        }
    }

    /// How many distinct callers become label values (default
    /// [`DEFAULT_CALLER_LABELS`]); `0` leaves the caller out.
    pub fn with_caller_labels(mut self, cap: usize) -> Self {
        self.callers = LabelCap::new(cap);
        self
    }

    /// How many distinct model names become label values (default
    /// [`DEFAULT_MODEL_LABELS`]).
    pub fn with_model_labels(mut self, cap: usize) -> Self {
        self.models = LabelCap::new(cap);
        self
    }

    /// `server.address` (and `server.port`) for responses of `route`.
    pub fn with_server(
        mut self,
        route: RouteId,
        address: impl Into<String>,
        port: Option<u16>,
    ) -> Self {
        self.servers
            .insert(route, (Value::from(address.into()), port.map(i64::from)));
        self
    }

    fn attributes(&self, record: &UsageRecord) -> Vec<KeyValue> {
        let mut attrs = Vec::with_capacity(12);
        attrs.push(KeyValue::new("gen_ai.operation.name", "chat"));
        if let Some(face) = record.face {
            attrs.push(KeyValue::new("gen_ai.provider.name", provider_name(face)));
        }
        if let Some(model) = &record.requested_model {
            attrs.push(KeyValue::new(
                "gen_ai.request.model",
                self.models.value(model),
            ));
        }
        if let Some(model) = &record.response_model {
            attrs.push(KeyValue::new(
                "gen_ai.response.model",
                self.models.value(model),
            ));
        }
        match &record.route {
            Some(route) => {
                attrs.push(KeyValue::new(
                    attr::ROUTE,
                    self.routes.value(route.as_str()),
                ));
                if let Some((address, port)) = self.servers.get(route) {
                    attrs.push(KeyValue::new("server.address", address.clone()));
                    if let Some(port) = port {
                        attrs.push(KeyValue::new("server.port", *port));
                    }
                }
            }
            None => attrs.push(KeyValue::new(attr::ROUTE, "_local")),
        }
        if let Some(caller) = &record.caller
            && self.callers.cap > 0
        {
            attrs.push(KeyValue::new(attr::CALLER, self.callers.value(caller.id())));
        }
        attrs
    }
}

impl UsageSink for MetricsSink {
    fn record(&self, record: &UsageRecord) {
        let mut attrs = self.attributes(record);
        let common = attrs.len();

        let billable = !record.local && record.status.is_success();
        if let (Some(usage), true) = (record.usage, billable) {
            attrs.push(KeyValue::new("gen_ai.token.type", "input"));
            self.token_usage.record(usage.total_input(), &attrs);
            attrs[common] = KeyValue::new("gen_ai.token.type", "output");
            self.token_usage.record(usage.output, &attrs);
            attrs.truncate(common);
            for (kind, n) in [
                ("input", usage.input),
                ("cache_creation_input", usage.cache_creation_input),
                ("cache_read_input", usage.cache_read_input),
                ("output", usage.output),
            ] {
                if n > 0 {
                    attrs.push(KeyValue::new(attr::TOKEN_TYPE, kind));
                    self.tokens.add(n, &attrs);
                    attrs.truncate(common);
                }
            }
        } else if record.usage.is_none() && !record.local {
            self.unknown.add(1, &attrs);
        }

        if record.streamed
            && let Some(ttfc) = record.time_to_first_chunk
        {
            self.first_chunk.record(ttfc.as_secs_f64(), &attrs);
        }

        if let Some(class) = record.error_class {
            attrs.push(KeyValue::new("error.type", class.as_str()));
        } else if record.client_disconnected {
            attrs.push(KeyValue::new("error.type", "client_disconnected"));
        }
        self.duration.record(record.duration.as_secs_f64(), &attrs);
        attrs.push(KeyValue::new(
            attr::STATUS,
            i64::from(record.status.as_u16()),
        ));
        self.requests.add(1, &attrs);
    }
}

/// `gen_ai.provider.name` for a route's face.
pub fn provider_name(face: Face) -> &'static str {
    match face {
        Face::Anthropic => "anthropic",
        Face::Foundry => "azure.ai.inference",
    }
}

/// Turns free-form strings into label values, at most `cap` distinct ones;
/// the rest become [`OTHER`]. Values are kept as shared strings, so a known
/// value costs a lookup, not an allocation.
struct LabelCap {
    cap: usize,
    seen: Mutex<HashMap<Box<str>, Arc<str>>>,
}

impl LabelCap {
    fn new(cap: usize) -> Self {
        Self {
            cap,
            seen: Mutex::new(HashMap::new()),
        }
    }

    fn value(&self, s: &str) -> Value {
        let mut seen = self.seen.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(v) = seen.get(s) {
            return Value::from(Arc::clone(v));
        }
        if seen.len() >= self.cap {
            return Value::from(OTHER);
        }
        let v: Arc<str> = Arc::from(s);
        seen.insert(s.into(), Arc::clone(&v));
        Value::from(v)
    }
}

impl fmt::Debug for LabelCap {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let seen = self.seen.lock().map_or(0, |s| s.len());
        f.debug_struct("LabelCap")
            .field("cap", &self.cap)
            .field("seen", &seen)
            .finish()
    }
}

#[cfg(test)]
mod tests;
