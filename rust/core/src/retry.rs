//! Exponential backoff with jitter within `salesforce.retry.*`.

use crate::config::RetryPolicy;
use rand::Rng;
use std::time::Duration;

impl RetryPolicy {
    /// The wait before retry number `retry` (1-based): `initial × 2^(retry-1)`, capped, then
    /// "equal jitter" (between half and all of it) so that tasks that failed together do not
    /// retry in lock-step.
    pub fn backoff(&self, retry: u32) -> Duration {
        let exp = self.initial_backoff.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
        let capped = exp.min(self.max_backoff);
        let half = capped / 2;
        half + rand::thread_rng().gen_range(Duration::ZERO..=capped - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_and_caps_with_jitter() {
        let p = RetryPolicy {
            max_attempts: 5,
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
        };
        for _ in 0..100 {
            let b1 = p.backoff(1);
            assert!(b1 >= Duration::from_millis(50) && b1 <= Duration::from_millis(100));
            let b3 = p.backoff(3);
            assert!(b3 >= Duration::from_millis(200) && b3 <= Duration::from_millis(400));
            let b10 = p.backoff(10);
            assert!(b10 >= Duration::from_millis(500) && b10 <= Duration::from_millis(1000));
        }
        let zero = RetryPolicy { max_attempts: 1, initial_backoff: Duration::ZERO, max_backoff: Duration::ZERO };
        assert_eq!(zero.backoff(1), Duration::ZERO);
    }
}
