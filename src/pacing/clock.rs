//! A number's clock: when its next messages may leave. The rules are here,
//! as arithmetic on a small state; the state lives in the ledger, so every
//! run through the number, on any machine, keeps one pace together.
//!
//! Two rules, both must allow a message: the GCRA rate limit (`rate`,
//! `burst`), and, with `pace_by_message`, the previous message's
//! `delay + typing` must have passed, so the tool never runs far ahead of
//! what the phone really sends and stopping the run stops the campaign.
//!
//! Every booking of a number is on one clock: the machine's own with SQLite
//! (one machine), the database server's with PostgreSQL (every machine).
//! A clock booked far ahead would stall every run through the number. Each
//! booking notes the time it was made, so turns booked before that clock
//! was set back (it ran ahead, or a VM came back from a snapshot) are
//! counted back by as much; and a clock with no note (a ledger of an
//! earlier version) is never taken as further ahead than [`RUNS_QUEUED_MOST`]
//! runs' turns could make it (`Pace::horizon`).

use std::time::Duration;

use super::{PacingSettings, MESSAGE_SECONDS_MAX};

/// A number's clock as the ledger keeps it, in nanoseconds since 1970.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClockState {
    /// GCRA's theoretical arrival time of the next message.
    pub next_at: i64,
    /// When the phone is done with the last message booked.
    pub phone_free_at: i64,
    /// When the last booking was made (0: not known): a clock since set
    /// back shows here.
    pub booked_at: i64,
}

/// The pace a number keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pace {
    /// Nanoseconds between two messages at the rate.
    pub interval: i64,
    /// Messages that may go back to back.
    pub burst: u32,
    pub pace_by_message: bool,
    /// Nanoseconds a phone takes over a message at the default delay and
    /// typing (and the most jitter): a turn's usual length.
    pub phone_time: i64,
}

/// Below this interval a lane reserves several turns at a time, so that the
/// ledger is asked once per batch, not once per message.
const FAST: Duration = Duration::from_millis(50);

/// The most turns a run books at once for the jobs it holds (`dispatch`).
pub const BATCH_TURNS: usize = 64;

/// How far ahead of its jobs a run books spare turns at a fast pace: a
/// run that stops loses at most this much of the number's time.
pub const BOOKED_AHEAD: Duration = Duration::from_millis(50);

/// The most of a fast number's time one run books at once: a batch of
/// turns under [`FAST`] each, and the spare ones ahead.
const ONE_BOOKING_MOST: Duration = FAST
    .saturating_mul(BATCH_TURNS as u32)
    .saturating_add(BOOKED_AHEAD);

/// How many runs may wait on one number's turns at once: a clock booked
/// further ahead of now than their turns is taken as wrong and brought back
/// ([`Pace::horizon`]). Far more runs than a fleet shares a number with:
/// beyond them, the excess could go sooner than the pace.
pub const RUNS_QUEUED_MOST: i64 = 64;

/// The longest a phone may take over one message: delay, jitter and typing,
/// each at most [`MESSAGE_SECONDS_MAX`].
const LONGEST_PHONE_TIME: Duration = Duration::from_secs(3 * MESSAGE_SECONDS_MAX as u64);

/// A last booking this little ahead of now is taken as now (a clock kept by
/// NTP is slewed by milliseconds).
const CLOCKS_DIFFER_AT: Duration = Duration::from_secs(2);

/// What a booking found wrong with the clock in the ledger, and set right.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corrected {
    /// The last booking was made this many nanoseconds ahead of now: the
    /// clock was set back since, and its turns were counted back as much.
    BookedByClockAhead(i64),
    /// A clock with no note was booked this far ahead, beyond the horizon:
    /// brought back to it.
    BeyondHorizon { ahead: i64, horizon: i64 },
}

/// Which rule decided a turn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldBy {
    /// None: the turn is now.
    Nothing,
    /// The number's rate: turns booked before this one, by any run.
    Rate,
    /// The phone's delay + typing of the message before (`pace_by_message`).
    Phone,
}

/// A booking: when each message may leave and which rule held it, and what
/// was set right first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Booking {
    /// The time it was booked at, on the clock the turns are on.
    pub now: i64,
    pub turns: Vec<i64>,
    pub held_by: Vec<HeldBy>,
    pub corrected: Option<Corrected>,
}

impl Pace {
    /// No pace at all: a rehearsal at speed, against the embedded mock.
    pub const UNTHROTTLED: Pace = Pace {
        interval: 0,
        burst: 1,
        pace_by_message: false,
        phone_time: 0,
    };

    pub fn of(pacing: &PacingSettings) -> Self {
        let phone_time = pacing.default_delay.max(pacing.min_delay)
            + pacing.default_typing.max(pacing.min_typing)
            + pacing.jitter;
        Pace {
            interval: nanos(pacing.rate.interval()),
            burst: pacing.burst.get(),
            pace_by_message: pacing.pace_by_message,
            phone_time: nanos(Duration::from_secs_f64(phone_time)),
        }
    }

    /// Whether turns come so fast that they are worth reserving in batches.
    pub fn is_fast(&self) -> bool {
        self.interval < nanos(FAST)
    }

    /// Whether one booking covers several messages (see `is_fast`); with
    /// `pace_by_message` each turn waits for the phone anyway.
    pub fn books_in_batches(&self) -> bool {
        self.is_fast() && !self.pace_by_message
    }

    /// The time one message's turn takes at this pace, at the defaults.
    pub fn one_turn(&self) -> i64 {
        match self.pace_by_message {
            true => self.interval.max(self.phone_time),
            false => self.interval,
        }
    }

    /// How far ahead of now a number's turns may be booked: a burst, and
    /// [`RUNS_QUEUED_MOST`] runs each waiting on one booking, as long as a
    /// booking can be (with `pace_by_message`, a message of the longest
    /// delay, jitter and typing a row may ask).
    pub fn horizon(&self) -> i64 {
        let one_run = match (self.books_in_batches(), self.pace_by_message) {
            (true, _) => nanos(ONE_BOOKING_MOST),
            (false, true) => self.interval.max(nanos(LONGEST_PHONE_TIME)),
            (false, false) => self.interval,
        };
        let burst = self
            .interval
            .saturating_mul(i64::from(self.burst.max(1)) - 1);
        burst.saturating_add(one_run.saturating_mul(RUNS_QUEUED_MOST))
    }
}

impl ClockState {
    /// Books the next turn of each message, whose phone takes
    /// `phone_times` (nanoseconds) each, asked at `now`; returns when each
    /// may leave. A turn booked and then not used is lost: the safe side.
    pub fn book(&mut self, pace: Pace, now: i64, phone_times: &[i64]) -> Booking {
        let corrected = self.correct(pace, now);
        let tolerance = pace
            .interval
            .saturating_mul(i64::from(pace.burst.max(1)) - 1);
        let mut held_by = Vec::with_capacity(phone_times.len());
        let turns = phone_times
            .iter()
            .map(|&phone_time| {
                let by_rate = self.next_at.saturating_sub(tolerance);
                let mut at = now.max(by_rate);
                let mut held = match at > now {
                    true => HeldBy::Rate,
                    false => HeldBy::Nothing,
                };
                if pace.pace_by_message {
                    if self.phone_free_at > at {
                        at = self.phone_free_at;
                        held = HeldBy::Phone;
                    }
                    self.phone_free_at = at.saturating_add(phone_time);
                }
                self.next_at = self.next_at.max(at).saturating_add(pace.interval);
                held_by.push(held);
                at
            })
            .collect();
        self.booked_at = now;
        Booking {
            now,
            turns,
            held_by,
            corrected,
        }
    }

    /// Sets right a clock booked before the clock was set back, or (with no
    /// note of when it was booked) beyond the horizon; says what it did.
    fn correct(&mut self, pace: Pace, now: i64) -> Option<Corrected> {
        if self.booked_at == 0 {
            // Only here: a run's own pace may be slower than this one's, and
            // its turns are not this pace's to cut short.
            let horizon = pace.horizon();
            let ahead = self.next_at.max(self.phone_free_at).saturating_sub(now);
            if ahead <= horizon {
                return None;
            }
            let most = now.saturating_add(horizon);
            self.next_at = self.next_at.min(most);
            self.phone_free_at = self.phone_free_at.min(most);
            return Some(Corrected::BeyondHorizon { ahead, horizon });
        }
        let set_back = self.booked_at.saturating_sub(now);
        if set_back <= nanos(CLOCKS_DIFFER_AT) {
            return None;
        }
        // The turns were on the clock's time before it was set back: on its
        // time now they are that much earlier.
        self.next_at = self.next_at.saturating_sub(set_back);
        self.phone_free_at = self.phone_free_at.saturating_sub(set_back);
        Some(Corrected::BookedByClockAhead(set_back))
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
            phone_time: 7 * SECOND,
        }
    }

    #[test]
    fn turns_are_one_interval_apart_whoever_asks() {
        let mut clock = ClockState::default();
        let now = 100 * SECOND;
        let first = clock.book(pace(SECOND / 2, 1, false), now, &[0, 0]).turns;
        // A second run asks at the same moment: it queues behind the first.
        let second = clock.book(pace(SECOND / 2, 1, false), now, &[0]).turns;
        assert_eq!(first, vec![now, now + SECOND / 2]);
        assert_eq!(second, vec![now + SECOND]);
    }

    #[test]
    fn a_burst_goes_at_once_and_then_the_rate_applies() {
        let mut clock = ClockState::default();
        let now = 100 * SECOND;
        let turns = clock.book(pace(SECOND, 3, false), now, &[0; 5]).turns;
        assert_eq!(turns, vec![now, now, now, now + SECOND, now + 2 * SECOND]);
    }

    #[test]
    fn an_idle_number_does_not_bank_turns_beyond_its_burst() {
        let mut clock = ClockState::default();
        clock.book(pace(SECOND, 1, false), 0, &[0]);
        let later = 3600 * SECOND;
        assert_eq!(
            clock.book(pace(SECOND, 1, false), later, &[0, 0]).turns,
            vec![later, later + SECOND]
        );
    }

    #[test]
    fn pace_by_message_waits_for_the_phone() {
        let mut clock = ClockState::default();
        let now = 100 * SECOND;
        let booking = clock.book(pace(SECOND / 100, 1, true), now, &[7 * SECOND, 7 * SECOND]);
        assert_eq!(booking.turns, vec![now, now + 7 * SECOND]);
        assert_eq!(booking.held_by, vec![HeldBy::Nothing, HeldBy::Phone]);
        assert_eq!(clock.phone_free_at, now + 14 * SECOND);
    }

    #[test]
    fn absurd_numbers_saturate_instead_of_overflowing() {
        let mut clock = ClockState {
            next_at: i64::MAX - 5,
            phone_free_at: i64::MAX,
            booked_at: i64::MIN,
        };
        let booking = clock.book(pace(i64::MAX, u32::MAX, true), i64::MAX, &[i64::MAX]);
        assert_eq!(booking.turns, vec![i64::MAX]);
        let mut clock = ClockState {
            next_at: i64::MIN,
            phone_free_at: i64::MIN,
            booked_at: i64::MAX,
        };
        let booking = clock.book(pace(i64::MAX, u32::MAX, true), i64::MIN, &[i64::MAX]);
        assert_eq!(booking.turns, vec![i64::MIN]);
    }

    #[test]
    fn turns_held_by_the_rate_say_so() {
        let mut clock = ClockState::default();
        let now = 100 * SECOND;
        let booking = clock.book(pace(SECOND, 1, false), now, &[0, 0]);
        assert_eq!(booking.held_by, vec![HeldBy::Nothing, HeldBy::Rate]);
        assert_eq!(booking.corrected, None);
        assert_eq!((clock.booked_at, booking.now), (now, now));
    }

    #[test]
    fn turns_booked_before_the_clock_was_set_back_are_counted_back_by_as_much() {
        let default = pace(3 * SECOND, 1, true);
        let now = 1_000_000 * SECOND;
        let hour = 3600 * SECOND;
        // Two messages sent while the clock ran an hour ahead.
        let mut clock = ClockState::default();
        clock.book(default, now + hour, &[7 * SECOND, 7 * SECOND]);
        // Set right, the clock takes the last booking as made just now: the
        // next goes when the second message's phone is done, counted from now.
        let booking = clock.book(default, now + 10 * SECOND, &[7 * SECOND]);
        assert_eq!(booking.turns, vec![now + 24 * SECOND]);
        assert_eq!(
            booking.corrected,
            Some(Corrected::BookedByClockAhead(hour - 10 * SECOND))
        );
        // Booked on the clock as it is now: the next finds nothing to set right.
        let next = clock.book(default, now + 25 * SECOND, &[7 * SECOND]);
        assert_eq!(next.turns, vec![now + 31 * SECOND]);
        assert_eq!(next.corrected, None);
    }

    #[test]
    fn a_slower_runs_turns_are_not_a_faster_paces_to_cut_short() {
        let now = 1_000_000 * SECOND;
        let hourly = pace(3600 * SECOND, 1, false);
        let fast = pace(3 * SECOND, 1, false);
        let mut clock = ClockState::default();
        clock.book(hourly, now, &[0]);
        let booking = clock.book(fast, now + SECOND, &[0]);
        assert_eq!(booking.turns, vec![now + 3600 * SECOND]);
        assert_eq!(booking.corrected, None);
    }

    #[test]
    fn clocks_a_second_apart_are_taken_as_one() {
        let rate = pace(3 * SECOND, 1, false);
        let now = 1_000_000 * SECOND;
        let mut clock = ClockState::default();
        clock.book(rate, now + SECOND, &[0]);
        let booking = clock.book(rate, now, &[0]);
        assert_eq!(booking.turns, vec![now + 4 * SECOND]);
        assert_eq!(booking.corrected, None);
    }

    #[test]
    fn a_queue_of_runs_within_the_horizon_keeps_its_turns_even_without_a_note() {
        let now = 1_000_000 * SECOND;
        for pace in [
            pace(3 * SECOND, 1, true),
            pace(3 * SECOND, 5, false),
            pace(SECOND / 100, 1, false),
        ] {
            let mut clock = ClockState::default();
            // Every run books at once, a batch each at a fast pace, all but
            // the last of them.
            let batch = match pace.books_in_batches() {
                true => BATCH_TURNS + (nanos(BOOKED_AHEAD) / pace.interval) as usize,
                false => 1,
            };
            for _ in 1..RUNS_QUEUED_MOST {
                clock.book(
                    pace,
                    now,
                    &vec![LONGEST_PHONE_TIME.as_nanos() as i64; batch],
                );
            }
            // As an earlier version would have left it.
            clock.booked_at = 0;
            let booking = clock.book(pace, now, &vec![0; batch]);
            assert_eq!(booking.corrected, None, "{pace:?}");
            let queued = RUNS_QUEUED_MOST - i64::from(pace.burst);
            assert!(booking.turns[0] >= now + pace.interval * queued, "{pace:?}");
        }
    }

    #[test]
    fn a_clock_beyond_the_horizon_is_brought_back_to_it() {
        let default = pace(3 * SECOND, 1, true);
        assert_eq!(default.horizon(), RUNS_QUEUED_MOST * 1800 * SECOND);
        let by_rate = pace(3 * SECOND, 5, false);
        assert_eq!(by_rate.horizon(), (4 + RUNS_QUEUED_MOST) * 3 * SECOND);
        let now = 1_000_000 * SECOND;
        // Written by a build that noted no booker's time, a week ahead.
        let week = 7 * 86_400 * SECOND;
        let mut clock = ClockState {
            next_at: now + week,
            phone_free_at: now + week,
            booked_at: 0,
        };
        let booking = clock.book(default, now, &[7 * SECOND]);
        assert_eq!(booking.turns, vec![now + default.horizon()]);
        assert_eq!(
            booking.corrected,
            Some(Corrected::BeyondHorizon {
                ahead: week,
                horizon: default.horizon()
            })
        );
    }
}
