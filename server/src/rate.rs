//! A token-bucket rate limit per device, shared by all of the device's connections.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use confide_protocol::DeviceId;

/// Buckets for every device that has made a request.
pub struct RateLimiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<DeviceId, (f64, Instant)>>,
}

impl RateLimiter {
    /// A limiter allowing `per_second` sustained and `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `device`. `Err(wait)` says how long until a token is available.
    pub fn check(&self, device: &DeviceId) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        let (tokens, last) = buckets.entry(*device).or_insert((self.burst, now));
        let refill = now.duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / self.per_second))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_refusal_per_device() {
        let limiter = RateLimiter::new(1, 3);
        let a = DeviceId([1; 32]);
        let b = DeviceId([2; 32]);
        for _ in 0..3 {
            limiter.check(&a).unwrap();
        }
        let wait = limiter.check(&a).unwrap_err();
        assert!(wait > Duration::ZERO);
        limiter.check(&b).unwrap();
    }
}
