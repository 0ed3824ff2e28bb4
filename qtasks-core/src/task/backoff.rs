//! [`Backoff`]: how long to wait before trying again, for task retries and for reconnecting to
//! a backend.

use std::time::Duration;

/// The delay between a failed attempt and the next one.
///
/// Attribute keys: `retry_backoff = "exponential"` (default) or `"fixed"`, `retry_delay`
/// (seconds: the fixed delay, or the first exponential delay; default 0.1), `retry_max_delay`
/// (seconds, exponential cap; default 60), `retry_jitter = false` (exponential only; default
/// on: each delay is drawn between half and all of the computed value, so tasks that failed
/// together do not retry together).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Backoff {
    /// The same delay before every retry.
    Fixed(Duration),
    /// `base`, `2 * base`, `4 * base`, ... capped at `max`, optionally jittered.
    Exponential {
        /// The delay before the first retry.
        base: Duration,
        /// The largest delay.
        max: Duration,
        /// Draw each delay between half and all of the computed value.
        jitter: bool,
    },
}

impl Backoff {
    /// Exponential from 100 ms, capped at one minute, with jitter.
    pub const DEFAULT: Backoff = Backoff::Exponential {
        base: Duration::from_millis(100),
        max: Duration::from_secs(60),
        jitter: true,
    };

    /// The delay after failed attempt number `attempt` (1 for the first run). `seed` makes
    /// the jitter differ between tasks (the executor passes bits of the task's uuid).
    pub fn delay(&self, attempt: u32, seed: u64) -> Duration {
        match *self {
            Backoff::Fixed(d) => d,
            Backoff::Exponential { base, max, jitter } => {
                let factor = 1u32 << attempt.saturating_sub(1).min(20);
                let full = base.saturating_mul(factor).min(max);
                if !jitter {
                    return full;
                }
                // splitmix64 of (seed, attempt): a uniform fraction in [0, 1).
                let mut z = seed ^ u64::from(attempt).wrapping_mul(0x9E37_79B9_7F4A_7C15);
                z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
                z ^= z >> 31;
                let fraction = (z >> 11) as f64 / (1u64 << 53) as f64;
                full.mul_f64(0.5 + 0.5 * fraction)
            }
        }
    }
}

impl Default for Backoff {
    fn default() -> Self {
        Self::DEFAULT
    }
}

impl Backoff {
    /// The policy for reconnecting to a backend (claims, acknowledgements, notifications):
    /// 50 ms doubling to 5 s, without jitter.
    pub const RECONNECT: Backoff = Backoff::Exponential {
        base: Duration::from_millis(50),
        max: Duration::from_secs(5),
        jitter: false,
    };

    /// The successive delays of this policy, for a loop that retries one operation until it
    /// succeeds: `let mut wait = Backoff::RECONNECT.steps(); .. wait.next_delay()`.
    pub fn steps(self) -> BackoffSteps {
        BackoffSteps {
            policy: self,
            failures: 0,
        }
    }
}

/// The delays of a [`Backoff`] for consecutive failures of one operation
/// ([`Backoff::steps`]).
#[derive(Debug, Clone)]
pub struct BackoffSteps {
    policy: Backoff,
    failures: u32,
}

impl BackoffSteps {
    /// The delay before the next try, after one more failure.
    pub fn next_delay(&mut self) -> Duration {
        self.failures = self.failures.saturating_add(1);
        self.policy.delay(self.failures, 0)
    }

    /// The operation succeeded: the next failure waits the first delay again.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_backoff_grows_and_is_capped() {
        let b = Backoff::Exponential {
            base: Duration::from_millis(100),
            max: Duration::from_secs(60),
            jitter: false,
        };
        assert_eq!(b.delay(1, 7), Duration::from_millis(100));
        assert_eq!(b.delay(2, 7), Duration::from_millis(200));
        assert_eq!(b.delay(3, 7), Duration::from_millis(400));
        assert_eq!(b.delay(40, 7), Duration::from_secs(60));
    }

    #[test]
    fn jitter_stays_between_half_and_all_and_varies() {
        let b = Backoff::DEFAULT;
        let delays: Vec<_> = (0..64u64).map(|seed| b.delay(3, seed)).collect();
        for d in &delays {
            assert!(
                *d >= Duration::from_millis(200) && *d <= Duration::from_millis(400),
                "{d:?}"
            );
        }
        let first = delays[0];
        assert!(
            delays.iter().any(|d| *d != first),
            "jitter must vary between tasks"
        );
    }

    #[test]
    fn reconnect_steps_double_from_50ms_to_5s_and_reset() {
        let mut steps = Backoff::RECONNECT.steps();
        let delays: Vec<_> = (0..10).map(|_| steps.next_delay()).collect();
        assert_eq!(delays[0], Duration::from_millis(50));
        assert_eq!(delays[1], Duration::from_millis(100));
        assert_eq!(delays[9], Duration::from_secs(5));
        steps.reset();
        assert_eq!(steps.next_delay(), Duration::from_millis(50));
    }

    #[test]
    fn fixed_backoff_is_constant() {
        let b = Backoff::Fixed(Duration::from_millis(250));
        assert_eq!(b.delay(1, 1), b.delay(9, 2));
    }
}
