//! Exponential backoff with full jitter, for every call to the control plane.
//!
//! "Full jitter" (each delay uniform in `[0, min(cap, base * 2^n)]`) spreads the
//! retries of many agents that lost the control plane at the same moment, so that
//! they do not all come back in lockstep when it returns.

use rand::Rng as _;
use std::time::Duration;

/// First ceiling of the delay.
pub const BASE: Duration = Duration::from_millis(250);
/// Largest delay ever slept.
pub const CAP: Duration = Duration::from_secs(30);

/// The delays of one sequence of retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    cap: Duration,
    attempt: u32,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff::new(BASE, CAP)
    }
}

impl Backoff {
    /// A sequence whose ceiling starts at `base` and doubles up to `cap`.
    pub fn new(base: Duration, cap: Duration) -> Backoff {
        Backoff {
            base,
            cap,
            attempt: 0,
        }
    }

    /// The ceiling of the next delay.
    pub fn ceiling(&self) -> Duration {
        // 2^20 * 250 ms is far past any sane cap; stop doubling there.
        let factor = 1u32 << self.attempt.min(20);
        self.base.saturating_mul(factor).min(self.cap)
    }

    /// The next delay: uniform in `[0, ceiling]`; raises the ceiling for the next.
    pub fn next_delay(&mut self) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let millis = u64::try_from(ceiling.as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(rand::thread_rng().gen_range(0..=millis))
    }

    /// Starts over after a success.
    pub fn reset(&mut self) {
        self.attempt = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_doubles_up_to_the_cap() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        let mut ceilings = Vec::new();
        for _ in 0..10 {
            ceilings.push(b.ceiling().as_millis());
            b.next_delay();
        }
        assert_eq!(
            ceilings,
            [250, 500, 1000, 2000, 4000, 8000, 16000, 30000, 30000, 30000]
        );
    }

    #[test]
    fn no_delay_exceeds_its_ceiling_even_after_many_attempts() {
        let mut b = Backoff::new(Duration::from_millis(250), Duration::from_secs(30));
        for _ in 0..200 {
            let ceiling = b.ceiling();
            assert!(b.next_delay() <= ceiling);
        }
    }

    #[test]
    fn delays_are_jittered() {
        let mut b = Backoff::new(Duration::from_secs(10), Duration::from_secs(10));
        let delays: std::collections::HashSet<_> = (0..20).map(|_| b.next_delay()).collect();
        assert!(delays.len() > 1, "20 draws from [0, 10 s] were all equal");
    }

    #[test]
    fn reset_starts_over() {
        let mut b = Backoff::default();
        for _ in 0..5 {
            b.next_delay();
        }
        b.reset();
        assert_eq!(b.ceiling(), BASE);
    }
}
