//! Any text as a client or server frame: never a panic, only a typed error.
#![no_main]

use confide_protocol::frames::{ClientFrame, ServerFrame};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(frame) = ClientFrame::from_json(text, 1 << 20) {
            // Whatever parses must serialize and parse back to the same frame.
            let again = ClientFrame::from_json(&frame.to_json().unwrap(), 1 << 22).unwrap();
            assert_eq!(frame, again);
        }
        let _ = ServerFrame::from_json(text, 1 << 20);
    }
});
