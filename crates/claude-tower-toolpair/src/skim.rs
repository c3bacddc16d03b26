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
}
