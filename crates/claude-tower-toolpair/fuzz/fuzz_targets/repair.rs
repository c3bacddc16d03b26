//! `repair` on arbitrary bytes: never panics; an unchanged body comes back
//! byte-identical; a changed one is JSON (when the input was) and leaves no
//! pairing error repair is meant to fix.
#![no_main]

use claude_tower_toolpair::{PairingError, repair, validate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let out = repair(data);
    if out.changes.is_empty() {
        assert_eq!(&out.body[..], data);
        return;
    }
    if serde_json::from_slice::<serde_json::Value>(data).is_ok() {
        assert!(serde_json::from_slice::<serde_json::Value>(&out.body).is_ok());
    }
    match validate(&out.body) {
        Ok(report) => assert!(report.is_checked()),
        Err(PairingError::DuplicateToolUseId { .. }) => {}
        Err(e) => panic!("repair left {e}"),
    }
    assert!(repair(&out.body).changes.is_empty(), "repair is idempotent");
});
