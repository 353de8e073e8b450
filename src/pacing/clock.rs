//! A number's clock: when its next messages may leave. The rules are here,
//! as arithmetic on a small state; the state lives in the ledger, so every
//! run through the number, on any machine, keeps one pace together.
//!
//! Two rules, both must allow a message: the GCRA rate limit (`rate`,
//! `burst`), and, with `pace_by_message`, the previous message's
//! `delay + typing` must have passed, so the tool never runs far ahead of
//! what the phone really sends and stopping the run stops the campaign.

use std::time::Duration;

use super::PacingSettings;

/// A number's clock as the ledger keeps it, in nanoseconds since 1970.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockState {
    /// GCRA's theoretical arrival time of the next message.
    pub next_at: i64,
    /// When the phone is done with the last message booked.
    pub phone_free_at: i64,
}

/// The pace a number keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Nanoseconds between two messages at the rate.
    pub interval: i64,
    /// Messages that may go back to back.
    pub burst: u32,
    pub pace_by_message: bool,
}

/// Below this interval a lane reserves several turns at a time, so that the
/// ledger is asked once per batch, not once per message.
const FAST: Duration = Duration::from_millis(50);

impl Pace {
    pub fn of(pacing: &PacingSettings) -> Self {
        Pace {
            interval: nanos(pacing.rate.interval()),
            burst: pacing.burst.get(),
            pace_by_message: pacing.pace_by_message,
        }
    }

    /// Whether turns come so fast that they are worth reserving in batches.
    pub fn is_fast(&self) -> bool {
        self.interval < nanos(FAST)
    }
}

impl ClockState {
    /// Books the next turn of each message, whose phone takes
    /// `phone_times` (nanoseconds) each, asked at `now`; returns when each
    /// may leave. A turn booked and then not used is lost: the safe side.
    pub fn book(&mut self, pace: Pace, now: i64, phone_times: &[i64]) -> Vec<i64> {
        let tolerance = pace
            .interval
            .saturating_mul(i64::from(pace.burst.max(1)) - 1);
        phone_times
            .iter()
            .map(|&phone_time| {
                let mut at = now.max(self.next_at.saturating_sub(tolerance));
                if pace.pace_by_message {
                    at = at.max(self.phone_free_at);
                    self.phone_free_at = at.saturating_add(phone_time);
                }
                self.next_at = self.next_at.max(at).saturating_add(pace.interval);
                at
            })
            .collect()
    }
}

/// A duration in nanoseconds, saturating.
pub fn nanos(duration: Duration) -> i64 {
    i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn pace(interval: i64, burst: u32, pace_by_message: bool) -> Pace {
        Pace {
            interval,
            burst,
            pace_by_message,
        }
    }

    #[test]
    fn turns_are_one_interval_apart_whoever_asks() {
        let mut clock = ClockState::default();
        let now = 100 * SECOND;
        let first = clock.book(pace(SECOND / 2, 1, false), now, &[0, 0]);
        // A second run asks at the same moment: it queues behind the first.
        let second = clock.book(pace(SECOND / 2, 1, false), now, &[0]);
        assert_eq!(first, vec![now, now + SECOND / 2]);
        assert_eq!(second, vec![now + SECOND]);
    }

    #[test]
    fn a_burst_goes_at_once_and_then_the_rate_applies() {
        let mut clock = ClockState::default();
        let now = 100 * SECOND;
        let turns = clock.book(pace(SECOND, 3, false), now, &[0; 5]);
        assert_eq!(turns, vec![now, now, now, now + SECOND, now + 2 * SECOND]);
    }

    #[test]
    fn an_idle_number_does_not_bank_turns_beyond_its_burst() {
        let mut clock = ClockState::default();
        clock.book(pace(SECOND, 1, false), 0, &[0]);
        let later = 3600 * SECOND;
        assert_eq!(
            clock.book(pace(SECOND, 1, false), later, &[0, 0]),
            vec![later, later + SECOND]
        );
    }

    #[test]
    fn pace_by_message_waits_for_the_phone() {
        let mut clock = ClockState::default();
        let now = 100 * SECOND;
        let turns = clock.book(pace(SECOND / 100, 1, true), now, &[7 * SECOND, 7 * SECOND]);
        assert_eq!(turns, vec![now, now + 7 * SECOND]);
        assert_eq!(clock.phone_free_at, now + 14 * SECOND);
    }

    #[test]
    fn absurd_numbers_saturate_instead_of_overflowing() {
        let mut clock = ClockState {
            next_at: i64::MAX - 5,
            phone_free_at: i64::MAX,
        };
        let turns = clock.book(pace(i64::MAX, u32::MAX, true), i64::MAX, &[i64::MAX]);
        assert_eq!(turns, vec![i64::MAX]);
    }
}
