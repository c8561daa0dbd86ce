//! How many consoles may be open: per user and in total ([`ConsoleSlots`]). A [`Slot`] is
//! held for the life of a session and released when dropped, so a session that ends in
//! any way (error, panic, shutdown) gives its place back.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// Why a console was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LimitError {
    /// Consoles are turned off (a limit is 0).
    #[error("web consoles are turned off on this appliance (api.console_max_* = 0)")]
    Disabled,
    /// The user has as many consoles open as allowed.
    #[error("you already have {open} console(s) open, the limit per user is {max}; close one and try again")]
    PerUser {
        /// Open now.
        open: usize,
        /// Limit.
        max: usize,
    },
    /// The appliance has as many consoles open as allowed.
    #[error("the appliance has {max} consoles open, its limit; try again later")]
    Total {
        /// Limit.
        max: usize,
    },
}

/// Pure counters: open consoles per user and in total.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    per_user: HashMap<String, usize>,
    total: usize,
}

impl Counts {
    /// Take a place for `user` if both limits allow it.
    pub fn acquire(&mut self, user: &str, max_per_user: usize, max_total: usize) -> Result<(), LimitError> {
        if max_per_user == 0 || max_total == 0 {
            return Err(LimitError::Disabled);
        }
        let open = self.per_user.get(user).copied().unwrap_or(0);
        if open >= max_per_user {
            return Err(LimitError::PerUser { open, max: max_per_user });
        }
        if self.total >= max_total {
            return Err(LimitError::Total { max: max_total });
        }
        *self.per_user.entry(user.to_string()).or_default() += 1;
        self.total += 1;
        Ok(())
    }

    /// Give a place of `user` back (never below zero).
    pub fn release(&mut self, user: &str) {
        if let Some(n) = self.per_user.get_mut(user) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_user.remove(user);
            }
            self.total = self.total.saturating_sub(1);
        }
    }

    /// Consoles open by `user`.
    pub fn of(&self, user: &str) -> usize {
        self.per_user.get(user).copied().unwrap_or(0)
    }

    /// Consoles open in total.
    pub fn total(&self) -> usize {
        self.total
    }
}

/// Shared console accounting with the configured limits.
#[derive(Debug, Clone)]
pub struct ConsoleSlots {
    counts: Arc<Mutex<Counts>>,
    max_per_user: usize,
    max_total: usize,
}

impl ConsoleSlots {
    /// Accounting with these limits (0 turns consoles off).
    pub fn new(max_per_user: usize, max_total: usize) -> ConsoleSlots {
        ConsoleSlots {
            counts: Arc::new(Mutex::new(Counts::default())),
            max_per_user,
            max_total,
        }
    }

    /// Take a place for `user`; it is given back when the [`Slot`] is dropped.
    pub fn acquire(&self, user: &str) -> Result<Slot, LimitError> {
        self.lock().acquire(user, self.max_per_user, self.max_total)?;
        Ok(Slot {
            counts: self.counts.clone(),
            user: user.to_string(),
        })
    }

    /// Consoles open in total now.
    pub fn open(&self) -> usize {
        self.lock().total()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One open console's place.
#[derive(Debug)]
pub struct Slot {
    counts: Arc<Mutex<Counts>>,
    user: String,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.counts.lock().unwrap_or_else(|p| p.into_inner()).release(&self.user);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_user_and_total_limits() {
        let mut c = Counts::default();
        c.acquire("a", 2, 3).unwrap();
        c.acquire("a", 2, 3).unwrap();
        assert_eq!(c.acquire("a", 2, 3), Err(LimitError::PerUser { open: 2, max: 2 }));
        c.acquire("b", 2, 3).unwrap();
        assert_eq!(c.acquire("c", 2, 3), Err(LimitError::Total { max: 3 }));
        c.release("a");
        assert_eq!((c.of("a"), c.total()), (1, 2));
        c.acquire("c", 2, 3).unwrap();
        c.release("nobody");
        assert_eq!(c.total(), 3, "releasing a user without places changes nothing");
        assert_eq!(Counts::default().acquire("a", 0, 3), Err(LimitError::Disabled));
        assert_eq!(Counts::default().acquire("a", 3, 0), Err(LimitError::Disabled));
    }

    #[test]
    fn slots_are_given_back_on_drop() {
        let s = ConsoleSlots::new(1, 10);
        let one = s.acquire("u").unwrap();
        assert!(matches!(s.acquire("u"), Err(LimitError::PerUser { .. })));
        let other = s.acquire("v").unwrap();
        assert_eq!(s.open(), 2);
        drop(one);
        let _again = s.acquire("u").unwrap();
        drop(other);
        assert_eq!(s.open(), 1);
        assert!(LimitError::PerUser { open: 4, max: 4 }.to_string().contains("limit per user is 4"));
    }
}
