//! Token-bucket rate limits: per device (shared by all of the device's connections), and per
//! IP address for registrations.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use confide_protocol::DeviceId;

/// Buckets above this count are pruned of full (idle) ones, so the map cannot grow without
/// bound from many distinct keys.
const PRUNE_ABOVE: usize = 100_000;

/// Buckets for every key (device, address) that has made a request.
pub struct RateLimiter<K = DeviceId> {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<K, (f64, Instant)>>,
}

impl<K: std::hash::Hash + Eq + Copy> RateLimiter<K> {
    /// A limiter allowing `per_second` sustained and `burst` at once.
    pub fn new(per_second: u32, burst: u32) -> Self {
        RateLimiter {
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// A limiter with a fractional rate (for example registrations per hour).
    pub fn with_rate(per_second: f64, burst: f64) -> Self {
        RateLimiter {
            per_second: per_second.max(1e-6),
            burst: burst.max(1.0),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `key`. `Err(wait)` says how long until a token is available.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        self.check_n(key, 1)
    }

    /// Takes `n` tokens for `key` (a request that costs `n`), all or none; a cost above the
    /// burst counts as the burst, so that it can pass with a full bucket. `Err(wait)` says how
    /// long until that many are available.
    pub fn check_n(&self, key: &K, n: u32) -> Result<(), Duration> {
        let cost = f64::from(n).min(self.burst);
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return Ok(());
        };
        if buckets.len() > PRUNE_ABOVE {
            let (rate, burst) = (self.per_second, self.burst);
            buckets.retain(|_, (tokens, last)| {
                *tokens + now.duration_since(*last).as_secs_f64() * rate < burst
            });
        }
        let (tokens, last) = buckets.entry(*key).or_insert((self.burst, now));
        let refill = now.duration_since(*last).as_secs_f64() * self.per_second;
        *tokens = (*tokens + refill).min(self.burst);
        *last = now;
        if *tokens >= cost {
            *tokens -= cost;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((cost - *tokens) / self.per_second))
        }
    }
}

/// At most `max` events per key in any `window` (a sliding window, exact: the times of the
/// last `max` events are kept). For rare, costly events such as publishing a device list,
/// where a token bucket's doubled first window would matter. Kept in memory: a restart forgets
/// it.
pub struct WindowLimiter<K> {
    max: usize,
    window: Duration,
    events: Mutex<HashMap<K, std::collections::VecDeque<Instant>>>,
}

impl<K: std::hash::Hash + Eq + Copy> WindowLimiter<K> {
    /// A limiter allowing `max` events per `window`.
    pub fn new(max: u32, window: Duration) -> Self {
        WindowLimiter {
            max: usize::try_from(max).unwrap_or(usize::MAX),
            window,
            events: Mutex::new(HashMap::new()),
        }
    }

    /// Whether `key` may have one more event now; `Err(wait)` until it may. Records nothing.
    pub fn check(&self, key: &K) -> Result<(), Duration> {
        let now = Instant::now();
        let Ok(mut events) = self.events.lock() else {
            return Ok(());
        };
        let Some(times) = events.get_mut(key) else {
            return if self.max == 0 {
                Err(self.window)
            } else {
                Ok(())
            };
        };
        while times
            .front()
            .is_some_and(|t| now.duration_since(*t) >= self.window)
        {
            times.pop_front();
        }
        if times.len() < self.max {
            return Ok(());
        }
        // The oldest event that still counts leaves the window first.
        let oldest = times.front().copied().unwrap_or(now);
        Err(self
            .window
            .saturating_sub(now.duration_since(oldest))
            .max(Duration::from_millis(1)))
    }

    /// Records an event of `key` now (after it was checked and done).
    pub fn record(&self, key: &K) {
        let now = Instant::now();
        let Ok(mut events) = self.events.lock() else {
            return;
        };
        if events.len() > PRUNE_ABOVE {
            let window = self.window;
            events.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.duration_since(*t) < window)
            });
        }
        let times = events.entry(*key).or_default();
        times.push_back(now);
        while times.len() > self.max {
            times.pop_front();
        }
    }
}

/// One token bucket, for a limit that belongs to a single owner (such as one connection's
/// allowance of frames the server cannot use), so needs no map and no lock.
#[derive(Debug)]
pub struct TokenBucket {
    per_second: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket of `burst` tokens (at least 1), refilled at `per_second`.
    pub fn new(per_second: f64, burst: u32, now: Instant) -> Self {
        let burst = f64::from(burst.max(1));
        TokenBucket {
            per_second: per_second.max(0.0),
            burst,
            tokens: burst,
            last: now,
        }
    }

    /// Takes one token at `now`; `false` if none is left.
    pub fn take(&mut self, now: Instant) -> bool {
        let refill = now.saturating_duration_since(self.last).as_secs_f64() * self.per_second;
        self.tokens = (self.tokens + refill).min(self.burst);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bucket_allows_its_burst_then_refills_over_time() {
        let t0 = Instant::now();
        let mut bucket = TokenBucket::new(0.5, 3, t0);
        assert!((0..3).all(|_| bucket.take(t0)));
        assert!(!bucket.take(t0));
        assert!(!bucket.take(t0 + Duration::from_millis(1500)));
        // 0.75 tokens at 1.5 s, 1.5 at 3 s: one more frame.
        assert!(bucket.take(t0 + Duration::from_secs(3)));
        assert!(!bucket.take(t0 + Duration::from_secs(3)));
    }

    #[test]
    fn a_window_allows_its_maximum_then_says_when_the_oldest_leaves() {
        let limiter: WindowLimiter<u8> = WindowLimiter::new(2, Duration::from_secs(3600));
        limiter.check(&1).unwrap();
        limiter.record(&1);
        limiter.check(&1).unwrap();
        limiter.record(&1);
        let wait = limiter.check(&1).unwrap_err();
        assert!(wait > Duration::from_secs(3500) && wait <= Duration::from_secs(3600));
        limiter.check(&2).unwrap();
    }

    #[test]
    fn burst_then_refusal_per_device() {
        let limiter: RateLimiter = RateLimiter::new(1, 3);
        let a = DeviceId([1; 32]);
        let b = DeviceId([2; 32]);
        for _ in 0..3 {
            limiter.check(&a).unwrap();
        }
        let wait = limiter.check(&a).unwrap_err();
        assert!(wait > Duration::ZERO);
        limiter.check(&b).unwrap();
    }

    #[test]
    fn a_costly_request_takes_its_cost_and_waits_for_all_of_it() {
        let limiter: RateLimiter = RateLimiter::new(100, 1_000);
        let a = DeviceId([1; 32]);
        limiter.check_n(&a, 600).unwrap();
        let wait = limiter.check_n(&a, 600).unwrap_err();
        // 200 tokens short at 100 a second.
        assert!(
            wait > Duration::from_millis(1_900) && wait <= Duration::from_secs(2),
            "{wait:?}"
        );
        limiter.check_n(&a, 400).unwrap();
        // More than the burst still passes once the bucket is full again.
        let b = DeviceId([2; 32]);
        limiter.check_n(&b, 5_000).unwrap();
        assert!(limiter.check_n(&b, 1).is_err());
    }
}
