//! Token bucket for console output: `rate` bytes per second, bursts up to one second's
//! worth. Pure: the caller passes the clock and sleeps for what [`TokenBucket::take`]
//! returns, which stops it reading from SSH meanwhile, so a flooding shell is slowed down
//! by the SSH window instead of buffered in memory.

use std::time::{Duration, Instant};

/// A token bucket measured in bytes.
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    capacity: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket refilled at `rate` bytes per second (at least 1).
    pub fn new(rate: u64, now: Instant) -> TokenBucket {
        let rate = rate.max(1) as f64;
        TokenBucket {
            rate,
            capacity: rate,
            tokens: rate,
            last: now,
        }
    }

    fn refill(&mut self, now: Instant) {
        let dt = now.saturating_duration_since(self.last).as_secs_f64();
        self.tokens = (self.tokens + dt * self.rate).min(self.capacity);
        self.last = now;
    }

    /// Spend `n` bytes at `now`; returns how long to wait before sending them (zero when
    /// the bucket had enough). The debt is carried, so sustained output averages `rate`.
    pub fn take(&mut self, n: usize, now: Instant) -> Duration {
        self.refill(now);
        self.tokens -= n as f64;
        if self.tokens >= 0.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64(-self.tokens / self.rate)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bursts_then_paces_at_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(1000, t0);
        assert_eq!(b.take(600, t0), Duration::ZERO);
        assert_eq!(b.take(400, t0), Duration::ZERO, "one second of burst");
        let w = b.take(500, t0);
        assert!((w.as_secs_f64() - 0.5).abs() < 1e-6, "{w:?}");
        // After waiting it out, the debt is paid; half a second later 500 bytes are free.
        let t1 = t0 + Duration::from_millis(1000);
        assert_eq!(b.take(500, t1), Duration::ZERO);
        // The bucket never holds more than one second.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!(b.take(1000, t2), Duration::ZERO);
        assert!(b.take(1, t2) > Duration::ZERO);
        // Sustained: 10 s of 1000-byte chunks need ~9 s of waiting beyond the burst.
        let mut b = TokenBucket::new(1000, t0);
        let mut now = t0;
        for _ in 0..10 {
            now += b.take(1000, now);
        }
        assert!((now - t0).as_secs_f64() > 8.9 && (now - t0).as_secs_f64() < 9.1);
    }
}
