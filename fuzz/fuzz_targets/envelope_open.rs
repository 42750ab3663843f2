//! Any bytes as an envelope opened with a fixed sender chain: no panic, and nothing opens
//! unless it is a genuine envelope.
#![no_main]

use confide_protocol::envelope::Envelope;
use confide_protocol::sender_key::ReceiverChain;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(envelope) = serde_json::from_slice::<Envelope>(data) else { return };
    let mut chain = ReceiverChain::from_distribution(&[0u8; 36]).unwrap();
    let _ = envelope.verify();
    let _ = envelope.open(&mut chain);
    let _ = envelope.message_id();
});
