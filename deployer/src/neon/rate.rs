//! Neon's published rate limits, kept on our side: 700 requests a minute per account and 40
//! a second per route ("API rate limiting", Neon docs). A deploy of many resources with
//! concurrent steps and operation polling must not earn itself 429s; the limiter makes each
//! request wait for a free slot instead. One window for all routes is stricter than Neon's
//! per-route limit, and simpler.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const PER_MINUTE: usize = 700;
pub const PER_SECOND: usize = 40;

/// The times of recent requests, to keep under both limits.
#[derive(Debug, Default)]
pub struct RateLimit {
    recent: Mutex<VecDeque<Instant>>,
}

impl RateLimit {
    /// Waits until a request may be sent, and counts it.
    pub async fn acquire(&self) {
        loop {
            let wait = {
                let mut recent = self.recent.lock().unwrap_or_else(|p| p.into_inner());
                let now = Instant::now();
                match delay_needed(&mut recent, now) {
                    None => {
                        recent.push_back(now);
                        return;
                    }
                    Some(d) => d,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }
}

/// How long until one more request fits in both windows (`None`: it fits now). Forgets
/// requests older than a minute.
fn delay_needed(recent: &mut VecDeque<Instant>, now: Instant) -> Option<Duration> {
    let minute = Duration::from_secs(60);
    let second = Duration::from_secs(1);
    while recent
        .front()
        .is_some_and(|t| now.duration_since(*t) >= minute)
    {
        recent.pop_front();
    }
    let mut wait = Duration::ZERO;
    if recent.len() >= PER_MINUTE {
        wait = wait.max(minute - now.duration_since(recent[recent.len() - PER_MINUTE]));
    }
    if recent.len() >= PER_SECOND {
        let oldest_in_second = recent[recent.len() - PER_SECOND];
        if now.duration_since(oldest_in_second) < second {
            wait = wait.max(second - now.duration_since(oldest_in_second));
        }
    }
    (wait > Duration::ZERO).then_some(wait)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_41st_request_in_a_second_waits_for_the_first_to_age() {
        let start = Instant::now();
        let mut recent = VecDeque::new();
        for i in 0..PER_SECOND {
            let t = start + Duration::from_millis(i as u64);
            assert_eq!(delay_needed(&mut recent, t), None);
            recent.push_back(t);
        }
        let now = start + Duration::from_millis(100);
        assert_eq!(
            delay_needed(&mut recent, now),
            Some(Duration::from_millis(900))
        );
        assert_eq!(
            delay_needed(&mut recent, start + Duration::from_secs(1)),
            None
        );
    }

    #[test]
    fn the_701st_request_in_a_minute_waits_for_the_first_to_age() {
        let start = Instant::now();
        let mut recent = VecDeque::new();
        // 700 requests at 20 a second: never more than 40 in a second.
        for i in 0..PER_MINUTE {
            let t = start + Duration::from_millis(50 * i as u64);
            assert_eq!(delay_needed(&mut recent, t), None, "request {i}");
            recent.push_back(t);
        }
        let now = start + Duration::from_secs(35);
        assert_eq!(
            delay_needed(&mut recent, now),
            Some(Duration::from_secs(25))
        );
        assert_eq!(
            delay_needed(&mut recent, start + Duration::from_secs(60)),
            None
        );
    }
}
