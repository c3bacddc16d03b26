//! `validate` on arbitrary bytes: never panics, and never calls JSON that
//! serde_json accepts "not JSON".
#![no_main]

use claude_tower_toolpair::{BodyKind, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verdict = validate(data);
    if let Ok(report) = &verdict
        && let BodyKind::NotJson(e) = report.kind()
    {
        assert!(
            serde_json::from_slice::<serde_json::Value>(data).is_err(),
            "serde_json accepts what the scanner rejected: {e}"
        );
    }
});
