//! When one instance (one WhatsApp number) may take its next request.

use std::num::NonZeroU32;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

use super::Rate;
use crate::types::Timing;

/// When one instance may take its next request.
///
/// Two rules, both must allow it: the GCRA rate limit (`rate`, `burst`), and,
/// with `pace_by_message`, the previous message's `delay + typing` must have
/// passed, so the tool never queues far ahead of what the phone really sends
/// and stopping the run really stops the campaign.
pub struct InstancePacer {
    limiter: DefaultDirectRateLimiter,
    pace_by_message: bool,
    phone_free_at: Instant,
}

impl InstancePacer {
    pub fn new(rate: Rate, burst: NonZeroU32, pace_by_message: bool) -> Self {
        let quota = Quota::with_period(rate.interval())
            .expect("Rate::from_str rejects rates with a zero interval")
            .allow_burst(burst);
        InstancePacer {
            limiter: RateLimiter::direct(quota),
            pace_by_message,
            phone_free_at: Instant::now(),
        }
    }

    /// Waits until a message of this timing may be sent, and books the phone's time for it.
    pub async fn wait_turn(&mut self, timing: &Timing) {
        if self.pace_by_message {
            tokio::time::sleep_until(self.phone_free_at).await;
        }
        self.limiter.until_ready().await;
        self.book_phone(timing);
    }

    /// Takes the turn for a message of this timing if it is there now,
    /// without waiting; false (and nothing taken) if it is not.
    pub fn try_turn(&mut self, timing: &Timing) -> bool {
        if self.pace_by_message && Instant::now() < self.phone_free_at {
            return false;
        }
        if self.limiter.check().is_err() {
            return false;
        }
        self.book_phone(timing);
        true
    }

    fn book_phone(&mut self, timing: &Timing) {
        if self.pace_by_message {
            self.phone_free_at = Instant::now() + timing.phone_time();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::pacing::PacingSettings;

    #[tokio::test(start_paused = true)]
    async fn pace_by_message_waits_for_the_previous_message_to_be_typed() {
        let rate = "100/s".parse().unwrap();
        let mut pacer = InstancePacer::new(rate, NonZeroU32::MIN, true);
        let timing = PacingSettings::default().timing(None, None);
        let start = Instant::now();
        pacer.wait_turn(&timing).await;
        pacer.wait_turn(&timing).await;
        assert!(
            start.elapsed() >= Duration::from_secs(7),
            "{:?}",
            start.elapsed()
        );
    }

    /// governor keeps its own clock, so the rate is seen in real time.
    #[test]
    fn a_turn_taken_without_waiting_keeps_the_rate() {
        let mut pacer = InstancePacer::new("10/s".parse().unwrap(), NonZeroU32::MIN, false);
        let timing = PacingSettings::default().timing(None, None);
        assert!(pacer.try_turn(&timing), "the first turn is there");
        assert!(!pacer.try_turn(&timing), "the next one is 100 ms away");
        std::thread::sleep(Duration::from_millis(120));
        assert!(pacer.try_turn(&timing));
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_taken_without_waiting_waits_for_the_phone() {
        let burst = NonZeroU32::new(1000).unwrap();
        let mut pacer = InstancePacer::new("1000000/s".parse().unwrap(), burst, true);
        let timing = PacingSettings::default().timing(None, None);
        assert!(pacer.try_turn(&timing));
        tokio::time::advance(Duration::from_secs(6)).await;
        assert!(
            !pacer.try_turn(&timing),
            "the phone is still on the 7 s message"
        );
        tokio::time::advance(Duration::from_secs(1)).await;
        assert!(pacer.try_turn(&timing));
    }
}
