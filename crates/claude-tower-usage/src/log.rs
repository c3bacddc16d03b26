//! [`TracingSink`]: one structured event per request.

use claude_tower_core::usage::{UsageRecord, UsageSink};

/// Emits one `tracing` event at INFO per record, target
/// `claude_tower_usage`, message `"usage"`.
///
/// Fields: `caller`, `route`, `face`, `attempts`, `request_model`,
/// `response_model`, `gen_ai.usage.input_tokens` (uncached),
/// `gen_ai.usage.output_tokens`, `gen_ai.usage.cache_creation.input_tokens`,
/// `gen_ai.usage.cache_read.input_tokens`, `usage_known`, `stop_reason`,
/// `status`, `error`, `streamed`, `local`, `client_disconnected`,
/// `duration_ms`, `ttfb_ms`, `ttfc_ms`, `request_id`. Never a credential,
/// never a prompt or completion: the record holds neither.
#[derive(Clone, Copy, Debug, Default)]
pub struct TracingSink;

impl TracingSink {
    /// The sink.
    pub fn new() -> Self {
        Self
    }
}

impl UsageSink for TracingSink {
    fn record(&self, r: &UsageRecord) {
        let tokens = r.tokens();
        let ms = |d: std::time::Duration| d.as_secs_f64() * 1000.0;
        tracing::info!(
            target: "claude_tower_usage",
            caller = r.caller.as_ref().map(|c| c.id()),
            route = r.route.as_ref().map(|r| r.as_str()),
            face = r.face.map(|f| f.as_str()),
            attempts = r.attempts,
            request_model = r.requested_model.as_deref(),
            response_model = r.response_model.as_deref(),
            gen_ai.usage.input_tokens = tokens.input,
            gen_ai.usage.output_tokens = tokens.output,
            gen_ai.usage.cache_creation.input_tokens = tokens.cache_creation_input,
            gen_ai.usage.cache_read.input_tokens = tokens.cache_read_input,
            usage_known = r.usage.is_some(),
            stop_reason = r.stop_reason.as_deref(),
            status = r.status.as_u16(),
            error = r.error_class.map(|c| c.as_str()),
            streamed = r.streamed,
            local = r.local,
            client_disconnected = r.client_disconnected,
            duration_ms = ms(r.duration),
            ttfb_ms = r.time_to_first_byte.map(ms),
            ttfc_ms = r.time_to_first_chunk.map(ms),
            request_id = r.request_ids.primary(),
            "usage",
        );
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use claude_tower_core::usage::TokenUsage;
    use claude_tower_core::{AuthMethod, Caller};
    use http::StatusCode;

    use super::*;

    #[derive(Clone, Default)]
    struct Buf(Arc<Mutex<Vec<u8>>>);

    impl Write for Buf {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(bytes);
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn one_info_event_per_record() {
        let buf = Buf::default();
        let writer = buf.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let mut record = UsageRecord::new(StatusCode::OK);
        record.caller = Some(Caller::new("alice", AuthMethod::ClientKey));
        record.usage = Some(TokenUsage {
            input: 5,
            output: 6,
            cache_creation_input: 7,
            cache_read_input: 8,
        });
        tracing::subscriber::with_default(subscriber, || TracingSink::new().record(&record));
        let out = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.lines().count(), 1, "{out}");
        assert!(out.contains(" INFO claude_tower_usage: usage"), "{out}");
        for field in [
            "caller=\"alice\"",
            "gen_ai.usage.input_tokens=5",
            "gen_ai.usage.output_tokens=6",
            "gen_ai.usage.cache_creation.input_tokens=7",
            "gen_ai.usage.cache_read.input_tokens=8",
            "status=200",
        ] {
            assert!(out.contains(field), "{field} in {out}");
        }
    }
}
