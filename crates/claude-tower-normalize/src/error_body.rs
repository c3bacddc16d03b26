//! A lenient reader for both error envelopes.
//!
//! Anthropic: `{"type":"error","error":{"type":..,"message":..},"request_id":..}`.
//! Azure: `{"error":{"code":..,"message":..,"innererror":{"code":..}}}`, and
//! API Management's `{"statusCode":401,"message":..}`.
//!
//! Every field is optional and of any JSON type: a field of an unexpected
//! type is ignored rather than failing the whole body. A body that is not
//! JSON at all reads as [`Envelope::default`], and the caller classifies by
//! status. Strings are borrowed from the body where they have no escapes.

use std::borrow::Cow;
use std::fmt;

use serde::Deserialize;
use serde::de::{self, Deserializer, IgnoredAny, MapAccess, Visitor};

/// Which envelope a body turned out to be.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Shape {
    /// Not JSON, or JSON without an `error` member.
    #[default]
    Unknown,
    /// Anthropic's: `"type":"error"` with `error.type`.
    Anthropic,
    /// Azure's: `error.code` (or a top-level `code` / `message`).
    Azure,
}

/// What an error body says, borrowed from it where possible.
#[derive(Debug, Default)]
pub(crate) struct Envelope<'a> {
    pub(crate) shape: Shape,
    /// Anthropic's `error.type`.
    pub(crate) kind: Option<Cow<'a, str>>,
    /// Azure's `error.code` (numbers are kept as their decimal text).
    pub(crate) code: Option<Cow<'a, str>>,
    /// Azure's `error.innererror.code`.
    pub(crate) inner_code: Option<Cow<'a, str>>,
    pub(crate) message: Option<Cow<'a, str>>,
    /// Anthropic's top-level `request_id`.
    pub(crate) request_id: Option<Cow<'a, str>>,
}

impl<'a> Envelope<'a> {
    /// Reads `body`; anything unreadable is the empty envelope.
    pub(crate) fn parse(body: &'a [u8]) -> Self {
        // Cheap rejection of what is plainly not a JSON object (HTML, empty).
        let first = body.iter().find(|b| !b.is_ascii_whitespace());
        if first != Some(&b'{') {
            return Self::default();
        }
        let Ok(raw) = serde_json::from_slice::<Raw<'a>>(body) else {
            return Self::default();
        };
        let mut env = Envelope {
            request_id: raw.request_id.0,
            ..Envelope::default()
        };
        match raw.error {
            ErrorField::Object(obj) => {
                env.kind = obj.kind.0;
                env.code = obj.code.0;
                env.inner_code = obj.inner_code.0;
                env.message = obj.message.0;
            }
            ErrorField::Message(message) => env.message = Some(message),
            ErrorField::Absent => {
                env.code = raw.code.0;
                env.message = raw.message.0;
            }
        }
        let top_is_error = raw.kind.0.as_deref() == Some("error");
        env.shape = if env.kind.is_some() && (top_is_error || env.code.is_none()) {
            Shape::Anthropic
        } else if env.code.is_some() || env.message.is_some() {
            Shape::Azure
        } else {
            Shape::Unknown
        };
        env
    }
}

#[derive(Deserialize)]
struct Raw<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Text<'a>,
    #[serde(default, borrow)]
    error: ErrorField<'a>,
    #[serde(default, borrow)]
    request_id: Text<'a>,
    #[serde(default, borrow)]
    code: Text<'a>,
    #[serde(default, borrow)]
    message: Text<'a>,
}

/// A string-ish field: strings as they are, numbers as their text, anything
/// else (null, bools, arrays, objects) ignored.
#[derive(Default)]
struct Text<'a>(Option<Cow<'a, str>>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(TextVisitor)
    }
}

struct TextVisitor;

impl<'de> Visitor<'de> for TextVisitor {
    type Value = Text<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Borrowed(v))))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_owned()))))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v))))
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_string()))))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
        Ok(Text(Some(Cow::Owned(v.to_string()))))
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(Text(None))
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(Text(None))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text(None))
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(Text(None))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
        Ok(Text(None))
    }
}

/// The `error` member: an object (both envelopes), a bare string (some
/// proxies), or anything else (ignored).
#[derive(Default)]
enum ErrorField<'a> {
    #[default]
    Absent,
    Message(Cow<'a, str>),
    Object(ErrorObject<'a>),
}

#[derive(Default)]
struct ErrorObject<'a> {
    kind: Text<'a>,
    code: Text<'a>,
    inner_code: Text<'a>,
    message: Text<'a>,
}

impl<'de: 'a, 'a> Deserialize<'de> for ErrorField<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ErrorVisitor { depth: 0 })
    }
}

/// Reads `error` and, one level down, `error.innererror` (only its code).
struct ErrorVisitor {
    depth: u8,
}

impl<'de> Visitor<'de> for ErrorVisitor {
    type Value = ErrorField<'de>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an error object")
    }

    fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
        Ok(ErrorField::Message(Cow::Borrowed(v)))
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
        Ok(ErrorField::Message(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
        Ok(ErrorField::Message(Cow::Owned(v)))
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
        Ok(ErrorField::Absent)
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
        Ok(ErrorField::Absent)
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
        Ok(ErrorField::Absent)
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
        Ok(ErrorField::Absent)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ErrorField::Absent)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(ErrorField::Absent)
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        Ok(ErrorField::Absent)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut obj = ErrorObject::default();
        // Keys are compared as borrowed-or-owned text; duplicates: last wins.
        while let Some(key) = map.next_key::<Text<'de>>()? {
            match key.0.as_deref() {
                Some("type") => obj.kind = map.next_value()?,
                Some("code") => obj.code = map.next_value()?,
                Some("message") => obj.message = map.next_value()?,
                Some("innererror") if self.depth == 0 => {
                    let inner: InnerError<'de> = map.next_value()?;
                    if let ErrorField::Object(inner) = inner.0 {
                        obj.inner_code = inner.code;
                    }
                }
                _ => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(ErrorField::Object(obj))
    }
}

struct InnerError<'a>(ErrorField<'a>);

impl<'de: 'a, 'a> Deserialize<'de> for InnerError<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_any(ErrorVisitor { depth: 1 }).map(InnerError)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anthropic_envelope() {
        let env = Envelope::parse(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"},"request_id":"req_011"}"#,
        );
        assert_eq!(env.shape, Shape::Anthropic);
        assert_eq!(env.kind.as_deref(), Some("overloaded_error"));
        assert_eq!(env.message.as_deref(), Some("Overloaded"));
        assert_eq!(env.request_id.as_deref(), Some("req_011"));
        assert!(matches!(env.kind, Some(Cow::Borrowed(_))), "no copy");
    }

    #[test]
    fn azure_envelope_with_inner_error() {
        let env = Envelope::parse(
            br#"{"error":{"code":401,"message":"Unauthorized \"x\"","innererror":{"code":"invalid_model_endpoint_authentication","innererror":{"code":"deeper"}}}}"#,
        );
        assert_eq!(env.shape, Shape::Azure);
        assert_eq!(env.code.as_deref(), Some("401"));
        assert_eq!(
            env.inner_code.as_deref(),
            Some("invalid_model_endpoint_authentication")
        );
        assert_eq!(env.message.as_deref(), Some("Unauthorized \"x\""));
    }

    #[test]
    fn apim_and_bare_string_errors() {
        let env = Envelope::parse(br#"{"statusCode":401,"message":"Access denied"}"#);
        assert_eq!(env.shape, Shape::Azure);
        assert_eq!(env.message.as_deref(), Some("Access denied"));
        let env = Envelope::parse(br#"{"error":"upstream connect error"}"#);
        assert_eq!(env.message.as_deref(), Some("upstream connect error"));
    }

    #[test]
    fn odd_types_are_ignored_not_fatal() {
        let env = Envelope::parse(
            br#"{"error":{"code":["x"],"type":{"a":1},"message":null,"param":[1,{"b":2}]},"request_id":7}"#,
        );
        assert_eq!(env.shape, Shape::Unknown);
        assert_eq!(env.code, None);
        assert_eq!(env.request_id.as_deref(), Some("7"));
    }

    #[test]
    fn not_json_is_empty() {
        for body in [
            &b""[..],
            b"<html><body>502 Bad Gateway</body></html>",
            br#"{"error":{"code":"429","mess"#,
            b"\xff\xfe{",
            b"[1,2]",
            b"null",
        ] {
            let env = Envelope::parse(body);
            assert_eq!(env.shape, Shape::Unknown);
            assert!(env.code.is_none() && env.kind.is_none() && env.message.is_none());
        }
    }
}
