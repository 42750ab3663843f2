//! A full disk refuses every write; each refusal used to log an error, thousands of lines a
//! second from a busy server, onto a disk (or journal) that is already full. Repeated storage
//! errors are logged once per interval, with a count of those left out.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::sync::{Arc, Mutex};

use common::{Mode, Server, refusal, register};
use confide_protocol::frames::ErrorCode;
use confide_server::Limits;

/// Everything the server logs, as text.
#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Capture {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Capture {
    type Writer = Capture;
    fn make_writer(&'a self) -> Capture {
        self.clone()
    }
}

/// Refused writes the test provokes.
const REFUSALS: usize = 30;

#[tokio::test]
async fn a_full_disk_logs_its_errors_once_per_interval_not_once_per_refusal() {
    let capture = Capture::default();
    tracing_subscriber::fmt()
        .with_writer(capture.clone())
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();
    let limits = Limits {
        registration_burst: 1_000,
        registrations_per_hour: 1_000_000,
        ..Limits::default()
    };
    let server = Server::start(limits).await;
    server.storage.set(Mode::Full);
    for _ in 0..REFUSALS {
        let (reply, _conn) = register(&server.url).await;
        let (code, _) = refusal(&reply).expect("refused");
        assert_eq!(code, ErrorCode::Storage, "{reply:?}");
    }
    let text = String::from_utf8(capture.0.lock().unwrap().clone()).unwrap();
    let lines = |what: &str| text.lines().filter(|l| l.contains(what)).count();
    // Once at first, then at most once per 10 s interval (the test takes far less; a very slow
    // machine may see a second interval begin).
    for what in ["storage failure", "durable write failed"] {
        let n = lines(what);
        assert!((1..=3).contains(&n), "{n} lines of {what:?}:\n{text}");
    }
    assert!(text.contains("left_out"), "{text}");
}
