//! How long sending takes at a pacing, for the dry-run report.

use std::time::Duration;

use super::Rate;
use crate::types::Timing;

/// How long sending takes at this pacing, message by message: each one waits
/// for the rate limit and, with `pace_by_message`, for the previous one's
/// delay and typing. Each instance sends its share at its own pace, so the
/// campaign takes as long as the busiest one. Network time is left out.
#[derive(Debug, Clone)]
pub struct Estimate {
    rate: Rate,
    pace_by_message: bool,
    /// Messages and sending time of each instance's share.
    shares: Vec<(u64, Duration)>,
}

impl Estimate {
    /// For `instances` numbers sending at once (at least one).
    pub fn new(rate: Rate, pace_by_message: bool, instances: usize) -> Self {
        Estimate {
            rate,
            pace_by_message,
            shares: vec![(0, Duration::ZERO); instances.max(1)],
        }
    }

    /// One more message, sent by the instance at `instance`; returns the
    /// time it takes.
    pub fn add(&mut self, timing: &Timing, instance: usize) -> Duration {
        let gap = if self.pace_by_message {
            self.rate.interval().max(timing.phone_time())
        } else {
            self.rate.interval()
        };
        let last = self.shares.len() - 1;
        let (messages, total) = &mut self.shares[instance.min(last)];
        *messages += 1;
        *total += gap;
        gap
    }

    pub fn messages(&self) -> u64 {
        self.shares.iter().map(|(messages, _)| messages).sum()
    }

    /// The busiest instance's sending time.
    pub fn duration(&self) -> Duration {
        self.busiest().1
    }

    /// The messages of the busiest instance.
    pub fn busiest_messages(&self) -> u64 {
        self.busiest().0
    }

    fn busiest(&self) -> (u64, Duration) {
        self.shares
            .iter()
            .copied()
            .max_by_key(|(_, total)| *total)
            .unwrap_or_default()
    }

    pub fn instances(&self) -> usize {
        self.shares.len()
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    pub fn pace_by_message(&self) -> bool {
        self.pace_by_message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pacing::PacingSettings;

    #[test]
    fn the_estimate_takes_the_longer_of_the_rate_and_the_phone_time() {
        let rate = "20/min".parse().unwrap();
        let mut paced = Estimate::new(rate, true, 1);
        let mut unpaced = Estimate::new(rate, false, 1);
        let pacing = PacingSettings::default();
        for timing in [
            pacing.timing(None, None),
            pacing.timing(Some(1.0), Some(0.0)),
        ] {
            paced.add(&timing, 0);
            unpaced.add(&timing, 0);
        }
        // 7 s of phone time beats the 3 s interval; the floors raise the second to 5 s.
        assert_eq!(paced.duration(), Duration::from_secs(12));
        assert_eq!(unpaced.duration(), Duration::from_secs(6));
        assert_eq!(paced.messages(), 2);
    }

    #[test]
    fn several_instances_take_as_long_as_the_busiest_share() {
        let mut estimate = Estimate::new("1/s".parse().unwrap(), false, 3);
        let timing = PacingSettings::default().timing(None, None);
        for instance in [0, 0, 0, 1, 2, 2] {
            estimate.add(&timing, instance);
        }
        assert_eq!(estimate.messages(), 6);
        assert_eq!(estimate.duration(), Duration::from_secs(3));
        assert_eq!(estimate.busiest_messages(), 3);
        assert_eq!(estimate.instances(), 3);
    }
}
