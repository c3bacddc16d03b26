//! Ready exporters for a service that serves or pushes the metrics: a
//! Prometheus text renderer (feature `prometheus`) and OTLP push configured
//! by the standard `OTEL_*` variables (feature `otlp`).
//!
//! Why these crates: see the [crate docs](crate#exporters).

use std::fmt;

/// A metrics exporter could not be set up.
#[derive(Debug)]
pub struct MetricsSetupError(String);

impl MetricsSetupError {
    #[cfg_attr(not(any(feature = "prometheus", feature = "otlp")), allow(dead_code))]
    pub(crate) fn new(what: impl fmt::Display) -> Self {
        Self(what.to_string())
    }
}

impl fmt::Display for MetricsSetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "metrics setup failed: {}", self.0)
    }
}

impl std::error::Error for MetricsSetupError {}

/// The SDK resource from `OTEL_SERVICE_NAME` / `OTEL_RESOURCE_ATTRIBUTES`,
/// with `default_service_name` when neither names the service.
pub fn resource_from_env(default_service_name: &'static str) -> opentelemetry_sdk::Resource {
    let named = |var: &str| std::env::var(var).ok();
    resource_with(default_service_name, named)
}

pub(crate) fn resource_with(
    default_service_name: &'static str,
    env: impl Fn(&str) -> Option<String>,
) -> opentelemetry_sdk::Resource {
    let named = env("OTEL_SERVICE_NAME").is_some_and(|v| !v.trim().is_empty())
        || env("OTEL_RESOURCE_ATTRIBUTES").is_some_and(|v| {
            v.split(',')
                .any(|kv| kv.trim_start().starts_with("service.name="))
        });
    let builder = opentelemetry_sdk::Resource::builder();
    if named {
        builder.build()
    } else {
        builder.with_service_name(default_service_name).build()
    }
}

#[cfg(feature = "prometheus")]
pub use self::prom::PrometheusExporter;

#[cfg(feature = "prometheus")]
mod prom {
    use opentelemetry::metrics::{Meter, MeterProvider};
    use opentelemetry_sdk::metrics::{MeterProviderBuilder, SdkMeterProvider};
    use prometheus::{Encoder, TextEncoder};

    use super::MetricsSetupError;

    /// An SDK meter provider whose metrics render as Prometheus text, for a
    /// `/metrics` handler.
    ///
    /// ```
    /// use claude_tower_usage::{MetricsSink, PrometheusExporter};
    /// use claude_tower_core::usage::{TokenUsage, UsageRecord, UsageSink};
    ///
    /// let exporter = PrometheusExporter::new().unwrap();
    /// let sink = MetricsSink::new(&exporter.meter());
    /// let mut record = UsageRecord::new(http::StatusCode::OK);
    /// record.usage = Some(TokenUsage { input: 5, output: 7, ..TokenUsage::default() });
    /// sink.record(&record);
    ///
    /// let text = exporter.render();
    /// assert!(text.contains("# TYPE gen_ai_client_token_usage histogram"));
    /// assert!(text.contains("claude_tower_tokens_total{"));
    /// ```
    pub struct PrometheusExporter {
        registry: prometheus::Registry,
        provider: SdkMeterProvider,
    }

    impl std::fmt::Debug for PrometheusExporter {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("PrometheusExporter").finish_non_exhaustive()
        }
    }

    impl PrometheusExporter {
        /// The `content-type` of [`render`](Self::render)'s text.
        pub const CONTENT_TYPE: &'static str = "text/plain; version=0.0.4; charset=utf-8";

        /// A meter provider with only the Prometheus reader and the resource
        /// from the `OTEL_*` variables (service name `claude-tower`).
        pub fn new() -> Result<Self, MetricsSetupError> {
            let resource = super::resource_from_env("claude-tower");
            Self::with_builder(SdkMeterProvider::builder().with_resource(resource))
        }

        /// Adds the Prometheus reader to `builder` (which may already hold an
        /// OTLP reader and a resource) and builds the provider.
        pub fn with_builder(builder: MeterProviderBuilder) -> Result<Self, MetricsSetupError> {
            let registry = prometheus::Registry::new();
            let reader = opentelemetry_prometheus::exporter()
                .with_registry(registry.clone())
                .build()
                .map_err(MetricsSetupError::new)?;
            let provider = builder.with_reader(reader).build();
            Ok(Self { registry, provider })
        }

        /// The provider, for other instruments (route health) or shutdown.
        pub fn meter_provider(&self) -> &SdkMeterProvider {
            &self.provider
        }

        /// A meter with the scope `claude-tower`.
        pub fn meter(&self) -> Meter {
            self.provider.meter("claude-tower")
        }

        /// Every metric in the Prometheus text exposition format.
        pub fn render(&self) -> String {
            let mut out = Vec::with_capacity(16 * 1024);
            if let Err(e) = TextEncoder::new().encode(&self.registry.gather(), &mut out) {
                tracing::warn!(error = %e, "rendering metrics failed");
            }
            String::from_utf8(out).unwrap_or_default()
        }
    }
}

#[cfg(feature = "otlp")]
pub use self::otlp::{otlp_configured, otlp_reader_from_env};

#[cfg(feature = "otlp")]
mod otlp {
    use opentelemetry_otlp::{MetricExporter, WithExportConfig as _};
    use opentelemetry_sdk::metrics::PeriodicReader;

    use super::MetricsSetupError;

    /// Whether the `OTEL_*` variables ask for OTLP metrics: an
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` or `OTEL_EXPORTER_OTLP_METRICS_ENDPOINT`
    /// is set, `OTEL_METRICS_EXPORTER` is not `none` and `OTEL_SDK_DISABLED`
    /// is not `true`.
    pub fn otlp_configured() -> bool {
        configured_with(|var| std::env::var(var).ok())
    }

    pub(crate) fn configured_with(env: impl Fn(&str) -> Option<String>) -> bool {
        let set = |var: &str| env(var).is_some_and(|v| !v.trim().is_empty());
        let is =
            |var: &str, value: &str| env(var).is_some_and(|v| v.trim().eq_ignore_ascii_case(value));
        (set("OTEL_EXPORTER_OTLP_ENDPOINT") || set("OTEL_EXPORTER_OTLP_METRICS_ENDPOINT"))
            && !is("OTEL_METRICS_EXPORTER", "none")
            && !is("OTEL_SDK_DISABLED", "true")
    }

    /// A periodic OTLP reader (HTTP/protobuf over rustls) when
    /// [`otlp_configured`], else `None`.
    ///
    /// The exporter and the reader read the standard variables themselves:
    /// `OTEL_EXPORTER_OTLP_[METRICS_]ENDPOINT`, `_HEADERS`, `_TIMEOUT`,
    /// `_PROTOCOL` (`http/protobuf`; `grpc` is not built in and fails here),
    /// `OTEL_METRIC_EXPORT_INTERVAL` and `_TIMEOUT`. The export runs on the
    /// reader's own thread with a blocking HTTP client, so it never holds up
    /// a request.
    pub fn otlp_reader_from_env()
    -> Result<Option<PeriodicReader<MetricExporter>>, MetricsSetupError> {
        if !otlp_configured() {
            return Ok(None);
        }
        let exporter = MetricExporter::builder()
            .with_http()
            .with_protocol(opentelemetry_otlp::Protocol::HttpBinary)
            .build()
            .map_err(MetricsSetupError::new)?;
        Ok(Some(PeriodicReader::builder(exporter).build()))
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn configured_only_with_an_endpoint_and_not_disabled() {
            let env = |pairs: &'static [(&'static str, &'static str)]| {
                move |var: &str| {
                    pairs
                        .iter()
                        .find(|(k, _)| *k == var)
                        .map(|(_, v)| (*v).to_owned())
                }
            };
            assert!(!configured_with(env(&[])));
            assert!(configured_with(env(&[(
                "OTEL_EXPORTER_OTLP_ENDPOINT",
                "http://c:4318"
            )])));
            assert!(configured_with(env(&[(
                "OTEL_EXPORTER_OTLP_METRICS_ENDPOINT",
                "http://c:4318/v1/metrics"
            )])));
            assert!(!configured_with(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_METRICS_EXPORTER", "none"),
            ])));
            assert!(!configured_with(env(&[
                ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://c:4318"),
                ("OTEL_SDK_DISABLED", "TRUE"),
            ])));
        }
    }
}

#[cfg(test)]
mod tests {
    use opentelemetry::Key;

    use super::*;

    #[test]
    fn the_default_service_name_yields_to_the_environment() {
        let none = |_: &str| None;
        let r = resource_with("claude-tower", none);
        assert_eq!(
            r.get(&Key::new("service.name"))
                .map(|v| v.to_string())
                .as_deref(),
            Some("claude-tower")
        );
        let attrs = |var: &str| {
            (var == "OTEL_RESOURCE_ATTRIBUTES").then(|| "team=a, service.name=gw".to_owned())
        };
        let r = resource_with("claude-tower", attrs);
        assert_ne!(
            r.get(&Key::new("service.name"))
                .map(|v| v.to_string())
                .as_deref(),
            Some("claude-tower")
        );
    }

    #[cfg(feature = "prometheus")]
    #[test]
    fn prometheus_text_has_the_genai_metrics_and_bucket_bounds() {
        use claude_tower_core::usage::{TokenUsage, UsageRecord, UsageSink};
        use claude_tower_core::{Face, RouteId};

        let exporter = PrometheusExporter::new().unwrap();
        let sink = crate::MetricsSink::new(&exporter.meter());
        let mut record = UsageRecord::new(http::StatusCode::OK);
        record.route = Some(RouteId::new("anthropic"));
        record.face = Some(Face::Anthropic);
        record.usage = Some(TokenUsage {
            input: 5,
            output: 7,
            cache_read_input: 100,
            ..TokenUsage::default()
        });
        record.streamed = true;
        record.time_to_first_chunk = Some(std::time::Duration::from_millis(250));
        record.duration = std::time::Duration::from_secs(2);
        sink.record(&record);
        let text = exporter.render();
        for needle in [
            "# TYPE gen_ai_client_token_usage histogram",
            "gen_ai_client_token_usage_bucket{",
            "le=\"67108864\"",
            "gen_ai_token_type=\"input\"",
            "gen_ai_provider_name=\"anthropic\"",
            "# TYPE gen_ai_client_operation_duration_seconds histogram",
            "le=\"81.92\"",
            "gen_ai_client_operation_time_to_first_chunk_seconds_bucket{",
            "claude_tower_tokens_total{",
            "claude_tower_token_type=\"cache_read_input\"",
            "claude_tower_route=\"anthropic\"",
        ] {
            assert!(text.contains(needle), "{needle} missing in\n{text}");
        }
        let input_sum = text
            .lines()
            .find(|l| {
                l.starts_with("gen_ai_client_token_usage_sum{")
                    && l.contains("gen_ai_token_type=\"input\"")
            })
            .unwrap();
        assert!(input_sum.ends_with(" 105"), "{input_sum}");
    }
}
