//! The few JSON shapes the watchers read, parsed with serde from one event's
//! `data` (or one whole JSON body); everything else in them is skipped.

use std::borrow::Cow;

use claude_tower_core::ErrorClass;
use claude_tower_core::usage::TokenUsage;
use serde::Deserialize;

/// Anthropic's `usage` object. A count that is a string, negative or a
/// fraction fails the parse: the record then says "unknown", never a guess.
#[derive(Debug, Default, Deserialize)]
pub(crate) struct UsageFields {
    input_tokens: Option<u64>,
    output_tokens: Option<u64>,
    cache_creation_input_tokens: Option<u64>,
    cache_read_input_tokens: Option<u64>,
}

impl UsageFields {
    /// Fields present replace what was seen before, one by one (how
    /// `message_delta` reports cumulative usage).
    pub(crate) fn merge_into(&self, usage: &mut TokenUsage) {
        if let Some(n) = self.input_tokens {
            usage.input = n;
        }
        if let Some(n) = self.output_tokens {
            usage.output = n;
        }
        if let Some(n) = self.cache_creation_input_tokens {
            usage.cache_creation_input = n;
        }
        if let Some(n) = self.cache_read_input_tokens {
            usage.cache_read_input = n;
        }
    }
}

/// `message_start`'s data: `{"type":"message_start","message":{..}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageStart<'a> {
    #[serde(borrow)]
    pub(crate) message: Message<'a>,
}

/// `message_start`'s `message` (its `stop_reason` is always null there).
#[derive(Debug, Deserialize)]
pub(crate) struct Message<'a> {
    #[serde(borrow, default)]
    pub(crate) model: Option<Cow<'a, str>>,
    #[serde(default)]
    pub(crate) usage: Option<UsageFields>,
}

/// `message_delta`'s data.
#[derive(Debug, Deserialize)]
pub(crate) struct MessageDelta<'a> {
    #[serde(borrow, default)]
    pub(crate) delta: Option<StopDelta<'a>>,
    #[serde(default)]
    pub(crate) usage: Option<UsageFields>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct StopDelta<'a> {
    #[serde(borrow, default)]
    pub(crate) stop_reason: Option<Cow<'a, str>>,
}

/// `error`'s data: `{"type":"error","error":{"type":"overloaded_error",..}}`.
#[derive(Debug, Deserialize)]
pub(crate) struct ErrorEvent<'a> {
    #[serde(borrow)]
    pub(crate) error: ErrorBody<'a>,
}

#[derive(Debug, Deserialize)]
pub(crate) struct ErrorBody<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(crate) kind: Option<Cow<'a, str>>,
}

/// Only the `type` of an event whose `event:` line was missing.
#[derive(Debug, Deserialize)]
pub(crate) struct Typed<'a> {
    #[serde(rename = "type", borrow, default)]
    pub(crate) kind: Option<Cow<'a, str>>,
}

/// The class of an Anthropic `error.type` sent inside a stream after the 200.
pub(crate) fn class_of_error_type(kind: &str) -> ErrorClass {
    match kind {
        "rate_limit_error" => ErrorClass::RateLimited,
        "overloaded_error" => ErrorClass::Overloaded,
        "timeout_error" => ErrorClass::Timeout,
        "authentication_error" | "permission_error" => ErrorClass::Auth,
        "not_found_error" | "billing_error" => ErrorClass::RouteUnavailable,
        "invalid_request_error" | "request_too_large" => ErrorClass::InvalidRequest,
        "conflict_error" => ErrorClass::Conflict,
        // `api_error` and anything new: the upstream failed.
        _ => ErrorClass::Server,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_fields_merge_per_field() {
        let mut usage = TokenUsage {
            input: 10,
            output: 1,
            cache_creation_input: 3,
            cache_read_input: 4,
        };
        let delta: UsageFields = serde_json::from_str(r#"{"output_tokens":42}"#).unwrap();
        delta.merge_into(&mut usage);
        assert_eq!(usage.output, 42);
        assert_eq!(usage.input, 10);
        assert_eq!(usage.cache_read_input, 4);
    }

    #[test]
    fn strings_negatives_and_fractions_do_not_parse() {
        for bad in [
            r#"{"input_tokens":"10"}"#,
            r#"{"input_tokens":-1}"#,
            r#"{"output_tokens":1.5}"#,
        ] {
            assert!(serde_json::from_str::<UsageFields>(bad).is_err(), "{bad}");
        }
        let nulls: UsageFields = serde_json::from_str(r#"{"input_tokens":null}"#).unwrap();
        assert!(nulls.input_tokens.is_none());
    }

    #[test]
    fn error_types_map_to_classes() {
        assert_eq!(
            class_of_error_type("overloaded_error"),
            ErrorClass::Overloaded
        );
        assert_eq!(
            class_of_error_type("rate_limit_error"),
            ErrorClass::RateLimited
        );
        assert_eq!(class_of_error_type("api_error"), ErrorClass::Server);
        assert_eq!(class_of_error_type("something_new"), ErrorClass::Server);
        assert_eq!(
            class_of_error_type("request_too_large"),
            ErrorClass::InvalidRequest
        );
    }
}
