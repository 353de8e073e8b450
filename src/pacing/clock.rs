//! When one instance (one WhatsApp number) may take its next request.

use std::num::NonZeroU32;
use std::sync::Mutex;

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
///
/// Shared by the lane that sends first tries and the requests that retry,
/// so a retry waits for the number's clock like any message.
pub struct InstancePacer {
    limiter: DefaultDirectRateLimiter,
    pace_by_message: bool,
    phone_free_at: Mutex<Instant>,
}

impl InstancePacer {
    pub fn new(rate: Rate, burst: NonZeroU32, pace_by_message: bool) -> Self {
        let quota = Quota::with_period(rate.interval())
            .expect("Rate::from_str rejects rates with a zero interval")
            .allow_burst(burst);
        InstancePacer {
            limiter: RateLimiter::direct(quota),
            pace_by_message,
            phone_free_at: Mutex::new(Instant::now()),
        }
    }

    /// Waits until a message of this timing may be sent, and books the phone's time for it.
    pub async fn wait_turn(&self, timing: &Timing) {
        loop {
            if self.pace_by_message {
                tokio::time::sleep_until(self.phone_free_at()).await;
            }
            self.limiter.until_ready().await;
            // Another sender may have booked the phone meanwhile; then the
            // cell just taken is lost, which errs on the slow side.
            if self.book_phone_if_free(timing) {
                return;
            }
        }
    }

    /// Takes the turn for a message of this timing if it is there now,
    /// without waiting; false (and nothing taken) if it is not.
    pub fn try_turn(&self, timing: &Timing) -> bool {
        if self.pace_by_message && Instant::now() < self.phone_free_at() {
            return false;
        }
        self.limiter.check().is_ok() && self.book_phone_if_free(timing)
    }

    fn phone_free_at(&self) -> Instant {
        *self.phone_free_at.lock().expect("no booking panics")
    }

    fn book_phone_if_free(&self, timing: &Timing) -> bool {
        if !self.pace_by_message {
            return true;
        }
        let mut free_at = self.phone_free_at.lock().expect("no booking panics");
        let now = Instant::now();
        if now < *free_at {
            return false;
        }
        *free_at = now + timing.phone_time();
        true
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
        let pacer = InstancePacer::new(rate, NonZeroU32::MIN, true);
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
        let pacer = InstancePacer::new("10/s".parse().unwrap(), NonZeroU32::MIN, false);
        let timing = PacingSettings::default().timing(None, None);
        assert!(pacer.try_turn(&timing), "the first turn is there");
        assert!(!pacer.try_turn(&timing), "the next one is 100 ms away");
        std::thread::sleep(Duration::from_millis(120));
        assert!(pacer.try_turn(&timing));
    }

    #[tokio::test(start_paused = true)]
    async fn a_turn_taken_without_waiting_waits_for_the_phone() {
        let burst = NonZeroU32::new(1000).unwrap();
        let pacer = InstancePacer::new("1000000/s".parse().unwrap(), burst, true);
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
