//! Any bytes as a sealed payload opened by a fixed device (of protocol version 2: X-Wing and
//! X25519 encapsulations both reach their open path), and as a report: no panic.
#![no_main]

use confide_protocol::DeviceIdentity;
use confide_protocol::report;
use confide_protocol::seal::{self, SealedPayload};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(mut sealed) = serde_json::from_slice::<SealedPayload>(data) else { return };
    let me = DeviceIdentity::from_secret_bytes(&[1; 32], &[2; 32], Some(&[3; 32]));
    sealed.recipient = me.device_id();
    let _ = seal::open(&me, &sealed);
    let _ = report::open_report(&me, &sealed);
});
