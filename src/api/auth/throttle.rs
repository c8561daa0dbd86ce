//! Login throttling per user name and per source IP: a sliding window of failed attempts.
//! Pure over an explicit `now` so it is unit-tested without sleeping.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Limits of the throttle.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Failures per user name within `window` before further attempts are refused.
    pub per_user: usize,
    /// Failures per source IP within `window`.
    pub per_ip: usize,
    /// Window length.
    pub window: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            per_user: 5,
            per_ip: 20,
            window: Duration::from_secs(300),
        }
    }
}

/// Failure history keyed by `u:<name>` / `ip:<addr>`.
#[derive(Debug)]
pub struct Throttle {
    limits: Limits,
    failures: Mutex<HashMap<String, Vec<Instant>>>,
}

impl Throttle {
    /// A throttle with `limits`.
    pub fn new(limits: Limits) -> Self {
        Throttle {
            limits,
            failures: Mutex::new(HashMap::new()),
        }
    }

    fn keys(user: &str, ip: &str) -> [(String, bool); 2] {
        [(format!("u:{user}"), true), (format!("ip:{ip}"), false)]
    }

    /// `Some(seconds)` to wait when `user` or `ip` is over its limit.
    pub fn check(&self, user: &str, ip: &str, now: Instant) -> Option<u64> {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        let mut wait: Option<Duration> = None;
        for (key, is_user) in Self::keys(user, ip) {
            let limit = if is_user { self.limits.per_user } else { self.limits.per_ip };
            if let Some(v) = map.get_mut(&key) {
                v.retain(|t| now.saturating_duration_since(*t) < self.limits.window);
                if v.len() >= limit {
                    let oldest = v[v.len() - limit];
                    let w = self.limits.window.saturating_sub(now.saturating_duration_since(oldest));
                    wait = Some(wait.map_or(w, |x| x.max(w)));
                }
            }
        }
        wait.map(|w| w.as_secs().max(1) + u64::from(w.subsec_nanos() > 0))
    }

    /// Record a failed attempt.
    pub fn fail(&self, user: &str, ip: &str, now: Instant) {
        let mut map = self.failures.lock().unwrap_or_else(|e| e.into_inner());
        if map.len() > 100_000 {
            // Bound memory under a spray of names: drop stale entries.
            let window = self.limits.window;
            map.retain(|_, v| v.last().is_some_and(|t| now.saturating_duration_since(*t) < window));
        }
        for (key, _) in Self::keys(user, ip) {
            let v = map.entry(key).or_default();
            v.push(now);
            if v.len() > 64 {
                v.remove(0);
            }
        }
    }

    /// Forget a user's failures after a successful login (the IP history stays).
    pub fn succeed(&self, user: &str) {
        self.failures.lock().unwrap_or_else(|e| e.into_inner()).remove(&format!("u:{user}"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_then_window_expiry() {
        let t = Throttle::new(Limits {
            per_user: 3,
            per_ip: 100,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(t.check("bob", "1.2.3.4", t0), None, "attempt {i}");
            t.fail("bob", "1.2.3.4", t0);
        }
        let wait = t.check("bob", "9.9.9.9", t0 + Duration::from_secs(10)).unwrap();
        assert!((49..=51).contains(&wait), "{wait}");
        assert_eq!(t.check("carol", "1.2.3.4", t0), None);
        assert_eq!(t.check("bob", "1.2.3.4", t0 + Duration::from_secs(61)), None);
    }

    #[test]
    fn per_ip_across_names_and_success_resets_user() {
        let t = Throttle::new(Limits {
            per_user: 2,
            per_ip: 4,
            window: Duration::from_secs(60),
        });
        let t0 = Instant::now();
        for n in ["a", "b", "c", "d"] {
            t.fail(n, "10.0.0.1", t0);
        }
        assert!(t.check("zed", "10.0.0.1", t0).is_some());
        assert!(t.check("zed", "10.0.0.2", t0).is_none());
        t.fail("e", "10.0.0.9", t0);
        t.fail("e", "10.0.0.9", t0);
        assert!(t.check("e", "10.0.0.8", t0).is_some());
        t.succeed("e");
        assert!(t.check("e", "10.0.0.8", t0).is_none());
    }
}
