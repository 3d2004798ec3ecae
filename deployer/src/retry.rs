//! One retry policy for every remote call: exponential back-off with full jitter, bounded by
//! attempts and by elapsed time. Each call site says which failures are worth another try
//! (its predicate) and may ask for a specific wait (a `Retry-After`).

use std::future::Future;
use std::time::{Duration, Instant};

/// How often and how long to try.
#[derive(Debug, Clone, Copy)]
pub struct Policy {
    /// The first back-off; each next one doubles, up to `max_delay`.
    pub initial: Duration,
    pub max_delay: Duration,
    /// Attempts in all, the first included.
    pub max_attempts: u32,
    /// No new attempt starts after this long.
    pub max_elapsed: Duration,
}

impl Policy {
    /// Neon calls: 423 (an operation is running on the project), 429 and 5xx. Neon's 423s
    /// last as long as the operation ahead, so the budget is generous: at least two minutes.
    pub const NEON: Policy = Policy {
        initial: Duration::from_millis(100),
        max_delay: Duration::from_secs(5),
        max_attempts: 40,
        max_elapsed: Duration::from_secs(150),
    };

    /// Looking again for a resource whose create may have happened (409 or a lost answer).
    pub const ADOPT: Policy = Policy {
        initial: Duration::from_millis(200),
        max_delay: Duration::from_secs(2),
        max_attempts: 8,
        max_elapsed: Duration::from_secs(60),
    };

    /// IAM propagation: a new role is not usable by Lambda for several seconds. Steady
    /// tries about every second: exponential steps would overshoot the moment the role
    /// becomes usable by as much again, and CreateFunction is cheap to repeat.
    pub const IAM_PROPAGATION: Policy = Policy {
        initial: Duration::from_millis(500),
        max_delay: Duration::from_secs(1),
        max_attempts: 240,
        max_elapsed: Duration::from_secs(180),
    };

    /// Lambda's one-update-at-a-time rule (ResourceConflictException).
    pub const LAMBDA_CONFLICT: Policy = Policy {
        initial: Duration::from_millis(500),
        max_delay: Duration::from_secs(5),
        max_attempts: 20,
        max_elapsed: Duration::from_secs(300),
    };

    /// The back-off before attempt `attempt + 1` (attempt counts from 1): a random
    /// duration up to the exponential bound ("full jitter"), so racing clients spread out.
    pub fn backoff(&self, attempt: u32) -> Duration {
        let bound = self
            .initial
            .saturating_mul(1u32 << attempt.saturating_sub(1).min(16))
            .min(self.max_delay);
        bound.mul_f64(0.5 + jitter() / 2.0)
    }
}

/// What a call site says about one failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Not worth another try.
    Stop,
    /// Try again after the policy's back-off.
    Retry,
    /// Try again after this long (a server's `Retry-After`), capped by the policy.
    RetryAfter(Duration),
}

/// Runs `op` until it succeeds, `judge` says stop, or the policy's budget is spent; the last
/// error is returned.
pub async fn retry<T, E, F, Fut>(
    policy: Policy,
    mut op: F,
    mut judge: impl FnMut(&E) -> Verdict,
) -> Result<T, E>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let mut attempt = 0;
    loop {
        attempt += 1;
        let error = match op().await {
            Ok(v) => return Ok(v),
            Err(e) => e,
        };
        let wait = match judge(&error) {
            Verdict::Stop => return Err(error),
            Verdict::Retry => policy.backoff(attempt),
            Verdict::RetryAfter(d) => d.min(Duration::from_secs(60)),
        };
        if attempt >= policy.max_attempts || started.elapsed() + wait > policy.max_elapsed {
            return Err(error);
        }
        tracing::debug!(attempt, ?wait, "retrying");
        tokio::time::sleep(wait).await;
    }
}

/// A number in [0, 1).
fn jitter() -> f64 {
    let mut b = [0u8; 4];
    if aws_lc_rs::rand::fill(&mut b).is_err() {
        return 0.5;
    }
    f64::from(u32::from_le_bytes(b)) / (f64::from(u32::MAX) + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    const FAST: Policy = Policy {
        initial: Duration::from_millis(1),
        max_delay: Duration::from_millis(4),
        max_attempts: 5,
        max_elapsed: Duration::from_secs(5),
    };

    #[tokio::test]
    async fn retries_what_the_predicate_allows_and_no_more() {
        let calls = Cell::new(0);
        let out: Result<(), u32> = retry(
            FAST,
            || async {
                calls.set(calls.get() + 1);
                Err(calls.get())
            },
            |_| Verdict::Retry,
        )
        .await;
        assert_eq!(out, Err(5));
        calls.set(0);
        let out: Result<(), u32> = retry(
            FAST,
            || async {
                calls.set(calls.get() + 1);
                Err(calls.get())
            },
            |e| {
                if *e < 2 {
                    Verdict::Retry
                } else {
                    Verdict::Stop
                }
            },
        )
        .await;
        assert_eq!(out, Err(2));
    }

    #[test]
    fn backoff_grows_to_its_bound() {
        for attempt in 1..20 {
            let d = Policy::NEON.backoff(attempt);
            assert!(d <= Policy::NEON.max_delay, "{attempt}: {d:?}");
        }
        assert!(Policy::NEON.backoff(1) <= Duration::from_millis(100));
        assert!(Policy::NEON.backoff(10) >= Duration::from_millis(2500));
    }
}
