//! [`MetricsSink`]: usage records as OpenTelemetry GenAI metrics.

use std::collections::HashMap;
use std::fmt;
use std::hash::BuildHasher;
use std::sync::{Arc, Mutex, PoisonError, RwLock};

use claude_tower_core::usage::{UsageRecord, UsageSink};
use claude_tower_core::{Face, RouteId};
use hashbrown::{DefaultHashBuilder, HashTable};
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
///
/// # Cost per record
///
/// A record's labels are worked out once per distinct combination (route,
/// models, caller, error, status) and kept, up to [`MAX_SERIES`]
/// combinations: a record costs one hash of those few strings and a shared
/// lock, not an attribute list built per measurement. With the crate's
/// `bound-instruments` feature (on with `prometheus` and `otlp`), each kept
/// combination also holds the SDK's bound instruments, so a measurement is a
/// direct update of its aggregator instead of a hash of ten attributes per
/// measurement. That feature needs the SDK's
/// `experimental_metrics_bound_instruments` too (this crate's `prometheus`
/// and `otlp` features turn both on): an SDK built without it drops bound
/// measurements.
pub struct MetricsSink {
    instruments: Instruments,
    callers: LabelCap,
    models: LabelCap,
    routes: LabelCap,
    servers: HashMap<RouteId, (Value, Option<i64>)>,
    series: RwLock<HashTable<Arc<Series>>>,
    hasher: DefaultHashBuilder,
}

/// How many distinct label combinations a [`MetricsSink`] keeps ready; a
/// record past them is still recorded, only through the slower path that
/// builds its attributes each time.
pub const MAX_SERIES: usize = 4096;

struct Instruments {
    token_usage: Histogram<u64>,
    duration: Histogram<f64>,
    first_chunk: Histogram<f64>,
    tokens: Counter<u64>,
    requests: Counter<u64>,
    unknown: Counter<u64>,
}

impl fmt::Debug for MetricsSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let series = self.series.read().map_or(0, |s| s.len());
        f.debug_struct("MetricsSink")
            .field("callers", &self.callers)
            .field("models", &self.models)
            .field("servers", &self.servers.len())
            .field("series", &series)
            .finish_non_exhaustive()
    }
}

impl MetricsSink {
    /// Creates the instruments on `meter`.
    pub fn new(meter: &Meter) -> Self {
        Self {
            instruments: Instruments {
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
            },
            callers: LabelCap::new(DEFAULT_CALLER_LABELS),
            models: LabelCap::new(DEFAULT_MODEL_LABELS),
            routes: LabelCap::new(DEFAULT_MODEL_LABELS),
            servers: HashMap::new(),
            series: RwLock::new(HashTable::new()),
            hasher: DefaultHashBuilder::default(),
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

    /// The attributes every measurement of `key` carries.
    fn attributes(&self, key: &Key<'_>) -> Vec<KeyValue> {
        let mut attrs = Vec::with_capacity(12);
        attrs.push(KeyValue::new("gen_ai.operation.name", "chat"));
        if let Some(face) = key.face {
            attrs.push(KeyValue::new("gen_ai.provider.name", provider_name(face)));
        }
        if let Some(model) = key.requested_model {
            attrs.push(KeyValue::new(
                "gen_ai.request.model",
                self.models.value(model),
            ));
        }
        if let Some(model) = key.response_model {
            attrs.push(KeyValue::new(
                "gen_ai.response.model",
                self.models.value(model),
            ));
        }
        match key.route {
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
        if let Some(caller) = key.caller
            && self.callers.cap > 0
        {
            attrs.push(KeyValue::new(attr::CALLER, self.callers.value(caller)));
        }
        attrs
    }

    /// Makes the series of `key` (hashed to `hash`), not found under the read
    /// lock, and keeps it while there is room; past [`MAX_SERIES`] the series
    /// made is used once and not kept.
    fn make_series(&self, key: &Key<'_>, hash: u64) -> Arc<Series> {
        let made = Arc::new(Series::new(key, self.attributes(key)));
        let mut table = self.series.write().unwrap_or_else(PoisonError::into_inner);
        // Another record may have made it since the read lock was let go.
        if let Some(series) = table.find(hash, |s| s.key.borrow() == *key) {
            return Arc::clone(series);
        }
        if table.len() < MAX_SERIES {
            let hasher = &self.hasher;
            table.insert_unique(hash, Arc::clone(&made), |s| hasher.hash_one(s.key.borrow()));
        }
        made
    }
}

impl UsageSink for MetricsSink {
    fn record(&self, record: &UsageRecord) {
        let key = Key::of(record);
        let hash = self.hasher.hash_one(key);
        let full = {
            // NOTE: a known series is recorded under the read lock: nothing
            // outlives the record, so no clone of its `Arc` is needed.
            let table = self.series.read().unwrap_or_else(PoisonError::into_inner);
            if let Some(series) = table.find(hash, |s| s.key.borrow() == key) {
                series.record(&self.instruments, record);
                return;
            }
            table.len() >= MAX_SERIES
        };
        // A new label combination: kept while there is room, else recorded
        // through a series of its own that is not kept.
        if full {
            Series::new(&key, self.attributes(&key)).record(&self.instruments, record);
        } else {
            self.make_series(&key, hash)
                .record(&self.instruments, record);
        }
    }
}

/// What tells one label combination from another, borrowed from a record.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct Key<'a> {
    route: Option<&'a RouteId>,
    face: Option<Face>,
    requested_model: Option<&'a str>,
    response_model: Option<&'a str>,
    caller: Option<&'a str>,
    error: Option<&'static str>,
    status: u16,
}

impl<'a> Key<'a> {
    fn of(record: &'a UsageRecord) -> Self {
        let error = match record.error_class {
            Some(class) => Some(class.as_str()),
            None if record.client_disconnected => Some("client_disconnected"),
            None => None,
        };
        Self {
            route: record.route.as_ref(),
            face: record.face,
            requested_model: record.requested_model.as_deref(),
            response_model: record.response_model.as_deref(),
            caller: record.caller.as_ref().map(|c| c.id()),
            error,
            status: record.status.as_u16(),
        }
    }
}

/// [`Key`], owned, as a kept series holds it.
struct OwnedKey {
    route: Option<RouteId>,
    face: Option<Face>,
    requested_model: Option<Box<str>>,
    response_model: Option<Box<str>>,
    caller: Option<Box<str>>,
    error: Option<&'static str>,
    status: u16,
}

impl OwnedKey {
    fn borrow(&self) -> Key<'_> {
        Key {
            route: self.route.as_ref(),
            face: self.face,
            requested_model: self.requested_model.as_deref(),
            response_model: self.response_model.as_deref(),
            caller: self.caller.as_deref(),
            error: self.error,
            status: self.status,
        }
    }
}

/// One label combination: its attributes, and (with `bound-instruments`)
/// the instruments bound to them, bound on first use.
struct Series {
    key: OwnedKey,
    /// Every measurement's attributes (no token type, error or status).
    common: Vec<KeyValue>,
    #[cfg(feature = "bound-instruments")]
    bound: bound::Bound,
}

impl Series {
    fn new(key: &Key<'_>, common: Vec<KeyValue>) -> Self {
        Self {
            key: OwnedKey {
                route: key.route.cloned(),
                face: key.face,
                requested_model: key.requested_model.map(Into::into),
                response_model: key.response_model.map(Into::into),
                caller: key.caller.map(Into::into),
                error: key.error,
                status: key.status,
            },
            common,
            #[cfg(feature = "bound-instruments")]
            bound: bound::Bound::default(),
        }
    }

    /// `common` and one more.
    fn with(&self, extra: KeyValue) -> Vec<KeyValue> {
        let mut attrs = Vec::with_capacity(self.common.len() + 2);
        attrs.extend_from_slice(&self.common);
        attrs.push(extra);
        attrs
    }

    fn error_attr(&self) -> Option<KeyValue> {
        self.key.error.map(|e| KeyValue::new("error.type", e))
    }

    /// The `duration` attributes: `common`, and `error.type` if any.
    fn ended(&self) -> Vec<KeyValue> {
        match self.error_attr() {
            Some(error) => self.with(error),
            None => self.common.clone(),
        }
    }

    /// The `requests` attributes: `ended`, and the status.
    fn answered(&self) -> Vec<KeyValue> {
        let mut attrs = self.ended();
        attrs.push(KeyValue::new(attr::STATUS, i64::from(self.key.status)));
        attrs
    }

    fn record(&self, ins: &Instruments, record: &UsageRecord) {
        let billable = !record.local && record.status.is_success();
        if let (Some(usage), true) = (record.usage, billable) {
            self.token_usage(ins, Token::Input, usage.total_input());
            self.token_usage(ins, Token::Output, usage.output);
            for (kind, n) in [
                (Kind::Input, usage.input),
                (Kind::CacheCreation, usage.cache_creation_input),
                (Kind::CacheRead, usage.cache_read_input),
                (Kind::Output, usage.output),
            ] {
                if n > 0 {
                    self.tokens(ins, kind, n);
                }
            }
        } else if record.usage.is_none() && !record.local {
            self.unknown(ins);
        }
        if record.streamed
            && let Some(ttfc) = record.time_to_first_chunk
        {
            self.first_chunk(ins, ttfc.as_secs_f64());
        }
        self.duration(ins, record.duration.as_secs_f64());
        self.requests(ins);
    }
}

#[derive(Clone, Copy)]
enum Token {
    Input,
    Output,
}

impl Token {
    fn attr(self) -> KeyValue {
        let value = match self {
            Token::Input => "input",
            Token::Output => "output",
        };
        KeyValue::new("gen_ai.token.type", value)
    }
}

#[derive(Clone, Copy)]
enum Kind {
    Input,
    CacheCreation,
    CacheRead,
    Output,
}

impl Kind {
    fn attr(self) -> KeyValue {
        let value = match self {
            Kind::Input => "input",
            Kind::CacheCreation => "cache_creation_input",
            Kind::CacheRead => "cache_read_input",
            Kind::Output => "output",
        };
        KeyValue::new(attr::TOKEN_TYPE, value)
    }
}

/// Measurements through attributes built per call: the SDK looks them up
/// each time.
#[cfg(not(feature = "bound-instruments"))]
impl Series {
    fn token_usage(&self, ins: &Instruments, token: Token, n: u64) {
        ins.token_usage.record(n, &self.with(token.attr()));
    }

    fn tokens(&self, ins: &Instruments, kind: Kind, n: u64) {
        ins.tokens.add(n, &self.with(kind.attr()));
    }

    fn unknown(&self, ins: &Instruments) {
        ins.unknown.add(1, &self.common);
    }

    fn first_chunk(&self, ins: &Instruments, secs: f64) {
        ins.first_chunk.record(secs, &self.common);
    }

    fn duration(&self, ins: &Instruments, secs: f64) {
        ins.duration.record(secs, &self.ended());
    }

    fn requests(&self, ins: &Instruments) {
        ins.requests.add(1, &self.answered());
    }
}

/// Measurements through instruments bound once per series.
#[cfg(feature = "bound-instruments")]
mod bound {
    use std::sync::OnceLock;

    use opentelemetry::metrics::{BoundCounter, BoundHistogram};

    use super::{Instruments, Kind, Series, Token};

    #[derive(Default)]
    pub(super) struct Bound {
        token_usage: [OnceLock<BoundHistogram<u64>>; 2],
        tokens: [OnceLock<BoundCounter<u64>>; 4],
        unknown: OnceLock<BoundCounter<u64>>,
        first_chunk: OnceLock<BoundHistogram<f64>>,
        duration: OnceLock<BoundHistogram<f64>>,
        requests: OnceLock<BoundCounter<u64>>,
    }

    impl Series {
        pub(super) fn token_usage(&self, ins: &Instruments, token: Token, n: u64) {
            self.bound.token_usage[token as usize]
                .get_or_init(|| ins.token_usage.bind(&self.with(token.attr())))
                .record(n);
        }

        pub(super) fn tokens(&self, ins: &Instruments, kind: Kind, n: u64) {
            self.bound.tokens[kind as usize]
                .get_or_init(|| ins.tokens.bind(&self.with(kind.attr())))
                .add(n);
        }

        pub(super) fn unknown(&self, ins: &Instruments) {
            self.bound
                .unknown
                .get_or_init(|| ins.unknown.bind(&self.common))
                .add(1);
        }

        pub(super) fn first_chunk(&self, ins: &Instruments, secs: f64) {
            self.bound
                .first_chunk
                .get_or_init(|| ins.first_chunk.bind(&self.common))
                .record(secs);
        }

        pub(super) fn duration(&self, ins: &Instruments, secs: f64) {
            self.bound
                .duration
                .get_or_init(|| ins.duration.bind(&self.ended()))
                .record(secs);
        }

        pub(super) fn requests(&self, ins: &Instruments) {
            self.bound
                .requests
                .get_or_init(|| ins.requests.bind(&self.answered()))
                .add(1);
        }
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
