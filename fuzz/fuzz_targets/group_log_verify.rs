//! Any JSON array of signed ops replayed as a group log: no panic; a log that verifies is
//! internally consistent.
#![no_main]

use confide_protocol::group_log::{SignedOp, verify_log};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(ops) = serde_json::from_slice::<Vec<SignedOp>>(data) else { return };
    if let Ok(state) = verify_log(&ops) {
        assert_eq!(state.seq() as usize + 1, ops.len());
        assert!(state.members().values().any(|m| m.role.is_moderator()) || state.members().is_empty());
    }
    for op in &ops {
        let _ = op.verify();
        let _ = op.hash();
    }
});
