//! A few top-level members of a JSON object, read without parsing the rest:
//! the scanner the pairing check runs on, for anyone who needs two or three
//! fields of a large body (the usage layer reads `model`, `stop_reason` and
//! `usage` of every response with it).
//!
//! The scan checks the structure of the whole value (objects, arrays,
//! literals, numbers, nothing after it) but skips over the insides of the
//! strings it does not return; decode the values it returns with a strict
//! parser.

/// The raw JSON values of the top-level members of the object `body` named
/// in `keys`, in the order of `keys` (`None` for a key that is absent; the
/// last one when a key repeats), or `None` when `body` is not one
/// well-formed JSON object.
///
/// ```
/// use claude_tower_toolpair::skim::top_level_members;
///
/// let body = br#"{"content":[{"text":"\"usage\": 9"}],"model":"m","usage":{"output_tokens":7}}"#;
/// let [model, usage, missing] = top_level_members(body, ["model", "usage", "nope"]).unwrap();
/// assert_eq!(model, Some(&br#""m""#[..]));
/// assert_eq!(usage, Some(&br#"{"output_tokens":7}"#[..]));
/// assert_eq!(missing, None);
/// assert!(top_level_members(br#"{"model":"m""#, ["model"]).is_none());
/// ```
pub fn top_level_members<'a, const N: usize>(
    body: &'a [u8],
    keys: [&str; N],
) -> Option<[Option<&'a [u8]>; N]> {
    crate::scan::top_level_members(body, keys)
}

/// The decoded string value of the first top-level member named `key` of
/// the object `body`, reading only up to that member: `None` when there is
/// no such member before the JSON breaks, or its value is not a string.
///
/// ```
/// use claude_tower_toolpair::skim::first_string;
///
/// let body = br#"{"id":"msg_1","model":"claude-sonnet-4-5","content":[]}"#;
/// assert_eq!(first_string(body, "model").as_deref(), Some("claude-sonnet-4-5"));
/// assert_eq!(first_string(body, "role"), None);
/// ```
pub fn first_string<'a>(body: &'a [u8], key: &str) -> Option<std::borrow::Cow<'a, str>> {
    let span = crate::scan::top_level_string(body, key)?;
    crate::scan::decode(&body[span.start + 1..span.end - 1])
}

/// Decodes a JSON string as written (quotes included) strictly; `None` for
/// anything else.
///
/// ```
/// use claude_tower_toolpair::skim::decode_string;
///
/// assert_eq!(decode_string(br#""a\u0062c""#).as_deref(), Some("abc"));
/// assert_eq!(decode_string(b"null"), None);
/// ```
pub fn decode_string(raw: &[u8]) -> Option<std::borrow::Cow<'_, str>> {
    crate::scan::decode(raw.strip_prefix(b"\"")?.strip_suffix(b"\"")?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_and_escaped_keys() {
        let body = br#" {"meta":{"usage":1},"us\u0061ge":{"a":[1,2]} , "usage":2} "#;
        let [usage] = top_level_members(body, ["usage"]).unwrap();
        assert_eq!(usage, Some(&b"2"[..]));
        let body = br#"{"meta":{"usage":1},"us\u0061ge":{"a":[1,2]}}"#;
        let [usage] = top_level_members(body, ["usage"]).unwrap();
        assert_eq!(usage, Some(&br#"{"a":[1,2]}"#[..]));
    }

    #[test]
    fn broken_json_is_none() {
        for bad in [
            &b""[..],
            b"[]",
            b"{",
            br#"{"a":1,}"#,
            br#"{"a":1} x"#,
            br#"{"a":tru}"#,
            br#"{"a":"x}"#,
        ] {
            assert!(
                top_level_members(bad, ["a"]).is_none(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(top_level_members(b"{}", ["a"]), Some([None]));
    }

    #[test]
    fn strings_decode_strictly() {
        assert_eq!(decode_string(br#""end_turn""#).as_deref(), Some("end_turn"));
        assert_eq!(decode_string(br#""a\"b""#).as_deref(), Some("a\"b"));
        assert_eq!(decode_string(br#""a\\""#).as_deref(), Some("a\\"));
        for bad in [&br#""a"b""#[..], br#""a\""#, br#""\x""#, b"\"", b"7", b""] {
            assert_eq!(decode_string(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
