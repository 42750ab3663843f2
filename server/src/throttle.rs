//! Rate-limited logging of errors that repeat.
//!
//! Why: while the disk is full every write is refused, and every refusal used to log an error —
//! thousands of lines a second from a busy server, which fill the very disk (or journal) that is
//! already full and bury the one line that matters. A repeated error is logged at most once per
//! interval, with the number of occurrences that were not logged since the last line.

use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Storage errors (writes refused on a full disk, failed batches, failed reads) are logged at
/// most once per this interval each; the next line says how many were left out.
pub const STORAGE_ERROR_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Decides which occurrences of a repeated event are logged: the first, then at most one per
/// interval.
#[derive(Debug)]
pub struct LogThrottle {
    interval: Duration,
    /// When the last logged occurrence was, and how many were not logged since.
    state: Mutex<(Option<Instant>, u64)>,
}

impl LogThrottle {
    /// Logs at most once per `interval`.
    pub const fn new(interval: Duration) -> Self {
        LogThrottle {
            interval,
            state: Mutex::new((None, 0)),
        }
    }

    /// An occurrence at `now`: `Some(left_out)` if it is to be logged, with the number of
    /// occurrences left out since the last logged one; `None` if it is to be left out.
    pub fn check(&self, now: Instant) -> Option<u64> {
        // A poisoned lock only means another thread panicked while counting: the count is still
        // a count.
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let (last, left_out) = &mut *state;
        match last {
            Some(at) if now.saturating_duration_since(*at) < self.interval => {
                *left_out += 1;
                None
            }
            _ => {
                *last = Some(now);
                Some(std::mem::take(left_out))
            }
        }
    }
}

/// Storage errors met while answering requests.
static STORAGE_ERRORS: LogThrottle = LogThrottle::new(STORAGE_ERROR_LOG_INTERVAL);
/// Failed durable batches, on the writer thread.
static FAILED_BATCHES: LogThrottle = LogThrottle::new(STORAGE_ERROR_LOG_INTERVAL);

/// Logs a storage error met while answering a request, at most once per
/// [`STORAGE_ERROR_LOG_INTERVAL`].
pub fn storage_error(e: &dyn std::fmt::Display) {
    if let Some(left_out) = STORAGE_ERRORS.check(Instant::now()) {
        tracing::error!(
            error = %e,
            left_out,
            "storage failure (logged at most once per {} s; left_out counts those not logged since the last line)",
            STORAGE_ERROR_LOG_INTERVAL.as_secs()
        );
    }
}

/// Logs a durable batch that failed, at most once per [`STORAGE_ERROR_LOG_INTERVAL`].
pub fn failed_batch(e: &dyn std::fmt::Display, requests: usize) {
    if let Some(left_out) = FAILED_BATCHES.check(Instant::now()) {
        tracing::error!(
            error = %e,
            requests,
            left_out,
            "durable write failed; nothing in the batch is acknowledged (logged at most once per {} s; left_out counts failed batches not logged since the last line)",
            STORAGE_ERROR_LOG_INTERVAL.as_secs()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_occurrence_is_logged_then_one_per_interval_with_the_count_left_out() {
        let throttle = LogThrottle::new(Duration::from_secs(10));
        let t0 = Instant::now();
        assert_eq!(throttle.check(t0), Some(0));
        for i in 1..=5 {
            assert_eq!(throttle.check(t0 + Duration::from_secs(i)), None);
        }
        assert_eq!(throttle.check(t0 + Duration::from_secs(10)), Some(5));
        assert_eq!(throttle.check(t0 + Duration::from_secs(11)), None);
        assert_eq!(throttle.check(t0 + Duration::from_secs(30)), Some(1));
    }
}
