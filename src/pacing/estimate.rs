//! How long sending takes at a pacing, for the dry-run report.

use std::time::Duration;

use super::Rate;
use crate::types::Timing;

/// How long sending takes at this pacing, message by message: each one waits
/// for the rate limit and, with `pace_by_message`, for the previous one's
/// delay and typing. Network time is left out.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    rate: Rate,
    pace_by_message: bool,
    messages: u64,
    total: Duration,
}

impl Estimate {
    pub fn new(rate: Rate, pace_by_message: bool) -> Self {
        Estimate {
            rate,
            pace_by_message,
            messages: 0,
            total: Duration::ZERO,
        }
    }

    pub fn add(&mut self, timing: &Timing) {
        let gap = if self.pace_by_message {
            self.rate.interval().max(timing.phone_time())
        } else {
            self.rate.interval()
        };
        self.total += gap;
        self.messages += 1;
    }

    pub fn messages(&self) -> u64 {
        self.messages
    }

    pub fn duration(&self) -> Duration {
        self.total
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
        let mut paced = Estimate::new(rate, true);
        let mut unpaced = Estimate::new(rate, false);
        let pacing = PacingSettings::default();
        for timing in [
            pacing.timing(None, None),
            pacing.timing(Some(1.0), Some(0.0)),
        ] {
            paced.add(&timing);
            unpaced.add(&timing);
        }
        // 7 s of phone time beats the 3 s interval; the floors raise the second to 5 s.
        assert_eq!(paced.duration(), Duration::from_secs(12));
        assert_eq!(unpaced.duration(), Duration::from_secs(6));
        assert_eq!(paced.messages(), 2);
    }
}
