//! Booking a number's turns on its clock in the ledger: a batch at a time,
//! and at a fast pace a little ahead, so the ledger is asked once for many
//! messages; and waiting for them, saying why when a wait is long.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use jiff::SignedDuration;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::control::{LaneHealth, Told};
use super::{Shared, NOTEWORTHY_WAIT};
use crate::pacing::{nanos, Booking, Corrected, HeldBy, Pace, BOOKED_AHEAD, RUNS_QUEUED_MOST};
use crate::report::WaitShown;
use crate::types::Job;

/// A turn booked on the number's clock: when the message may leave, on
/// this machine's clock, and which rule held it back.
#[derive(Debug, Clone, Copy)]
pub(super) struct Turn {
    pub(super) at: Instant,
    held_by: HeldBy,
}

/// Turns a lane booked ahead of its jobs, oldest first. Only at a fast
/// pace and without `pace_by_message` (where a turn does not depend on the
/// message): then the ledger is asked once for many messages, not once for
/// each.
#[derive(Default)]
pub(super) struct SpareTurns(VecDeque<Turn>);

const SPARE_MOST: i64 = 4096;

/// Books the turns of `jobs` on the instance's clock in the ledger, shared
/// with every run through the number (or takes them from `spare`). `None`,
/// having halted the run, when the ledger fails.
pub(super) async fn book_turns(
    jobs: &[Job],
    lane: &LaneHealth,
    shared: &Shared,
    spare: Option<&mut SpareTurns>,
) -> Option<Vec<Turn>> {
    let pace = shared.pace;
    let mut spare = spare.filter(|_| pace.books_in_batches());
    let mut turns = Vec::with_capacity(jobs.len());
    let mut ahead = 0;
    if let Some(SpareTurns(spare)) = &mut spare {
        // A turn booked ahead but not used in time is lost, not sent late
        // in a burst.
        let stale = shared.clock.instant().checked_sub(BOOKED_AHEAD);
        spare.retain(|turn| stale.is_none_or(|stale| turn.at >= stale));
        while turns.len() < jobs.len() {
            let Some(turn) = spare.pop_front() else { break };
            turns.push(turn);
        }
        ahead = (nanos(BOOKED_AHEAD) / pace.interval.max(1)).min(SPARE_MOST) as usize;
    }
    if turns.len() < jobs.len() {
        let phone_times = jobs[turns.len()..]
            .iter()
            .map(|job| nanos(job.timing.phone_time()))
            .chain(std::iter::repeat_n(0, ahead))
            .collect();
        match shared
            .ledger
            .book_turns(&lane.instance_id, pace, phone_times)
            .await
        {
            Ok(booking) => {
                if let Some(correction) = booking.corrected {
                    tell_corrected(correction, &lane.instance_id);
                }
                turns.extend(on_this_machine(booking, shared.clock.instant()));
            }
            Err(error) => {
                let control = &shared.control;
                control.halt(format!(
                    "cannot book the number's turn in the ledger: {error}"
                ));
                return None;
            }
        }
    }
    if let Some(SpareTurns(spare)) = spare {
        spare.extend(turns.drain(jobs.len()..));
    }
    Some(turns)
}

/// A booking's turns on this machine's monotonic clock: each as far from
/// now as it was from the time it was booked at, on the ledger's clock
/// (the database server's, for PostgreSQL), so machines whose clocks differ
/// keep one pace. Counted from the answer, which errs on the slow side.
fn on_this_machine(booking: Booking, now: Instant) -> impl Iterator<Item = Turn> {
    let booked_at = booking.now;
    booking
        .turns
        .into_iter()
        .zip(booking.held_by)
        .map(move |(turn, held_by)| {
            let wait = u64::try_from(i128::from(turn) - i128::from(booked_at)).unwrap_or(0);
            Turn {
                at: now + Duration::from_nanos(wait),
                held_by,
            }
        })
}

/// A number's requests as they really leave this run, kept to the pace on
/// the lane's own clock (tokio's instant): a card that waited at the door
/// for a request slot past its turn would otherwise leave on top of the
/// next card's turn. The door lets a card out only once its number's last
/// request is a turn behind (a card on time waits then too, for as long as
/// the one before it was late: the lag ends once the number has a turn to
/// spare). At a fast pace, where turns go in batches, it keeps no watch.
pub(super) struct Spacing(Mutex<Departures>);

/// GCRA on the times requests left (as [`crate::pacing::ClockState`] books
/// turns, without its care for clocks set back: this one is monotonic).
#[derive(Default)]
struct Departures {
    /// The next turn by the rate; `None` before the first request.
    next_at: Option<Instant>,
    /// When the phone is free of the last message (`pace_by_message`).
    phone_free_at: Option<Instant>,
}

impl Spacing {
    pub(super) fn new() -> Spacing {
        Spacing(Mutex::new(Departures::default()))
    }

    /// When the number's next request may leave at `pace`.
    pub(super) fn ready_at(&self, pace: Pace) -> Option<Instant> {
        let departures = self.0.lock().expect("no spacing panics holding the lock");
        departures.next_allowed(pace)
    }

    /// Notes a request of the number leaving at `now`, whose phone takes
    /// `phone_time`, if the pace allows it now; whether it does. (Asked and
    /// noted under one lock: a retry may ask while the door does.)
    pub(super) fn leave(&self, pace: Pace, phone_time: Duration, now: Instant) -> bool {
        let mut departures = self.0.lock().expect("no spacing panics holding the lock");
        if departures
            .next_allowed(pace)
            .is_some_and(|ready| ready > now)
        {
            return false;
        }
        let interval = Duration::from_nanos(u64::try_from(pace.interval).unwrap_or(0));
        let from = departures.next_at.map_or(now, |next| next.max(now));
        departures.next_at = Some(from + interval);
        departures.phone_free_at = Some(now + phone_time);
        true
    }
}

impl Departures {
    /// The earliest the next request may leave at `pace` (`None`: at once).
    fn next_allowed(&self, pace: Pace) -> Option<Instant> {
        if pace.is_fast() {
            return None;
        }
        let tolerance = Duration::from_nanos(
            u64::try_from(pace.interval)
                .unwrap_or(0)
                .saturating_mul(u64::from(pace.burst.max(1) - 1)),
        );
        let by_rate = self
            .next_at
            .map(|next| next.checked_sub(tolerance).unwrap_or(next));
        let by_phone = self.phone_free_at.filter(|_| pace.pace_by_message);
        by_rate.max(by_phone)
    }
}

/// Waits until `job`'s retry may leave after its number's last request at
/// the pace ([`Spacing`]), and notes it leaving.
pub(super) async fn spaced(job: &Job, lane: &LaneHealth, shared: &Shared) {
    let phone_time = job.timing.phone_time();
    while !lane
        .spacing
        .leave(shared.pace, phone_time, shared.clock.instant())
    {
        if let Some(ready) = lane.spacing.ready_at(shared.pace) {
            tokio::time::sleep_until(ready).await;
        }
    }
}

/// Waits for `turn`. A wait longer than [`NOTEWORTHY_WAIT`] and than one
/// turn of the pace (other runs through the number, a row's long delay) is
/// logged, at info the first time for each reason in the lane, and shown
/// by the progress bar while it lasts.
pub(super) async fn wait_for(turn: Turn, lane: &LaneHealth, shared: &Shared) {
    let wait = turn.at.saturating_duration_since(shared.clock.instant());
    if wait.is_zero() {
        return;
    }
    let _shown = (wait > NOTEWORTHY_WAIT && nanos(wait) > shared.pace.one_turn())
        .then(|| tell_wait(wait, turn.held_by, lane, shared));
    tokio::time::sleep_until(turn.at).await;
}

/// Logs a long wait for a turn and shows it in the progress bar, until the
/// returned guard is dropped.
fn tell_wait(wait: Duration, held_by: HeldBy, lane: &LaneHealth, shared: &Shared) -> WaitShown {
    let until = SignedDuration::try_from(wait)
        .ok()
        .and_then(|wait| shared.clock.now().checked_add(wait).ok())
        .map_or_else(String::new, |at| at.strftime("%H:%M:%S UTC").to_string());
    let why = match held_by {
        HeldBy::Rate | HeldBy::Nothing => format!(
            "its rate allows one message every {:#}, and its turns are booked until {until} by \
             the runs sharing it",
            SignedDuration::from_nanos(shared.pace.interval)
        ),
        HeldBy::Phone => format!(
            "its phone is busy until {until} with the messages booked before (pace_by_message \
             waits for each one's delay + typing)"
        ),
    };
    let instance = &*lane.instance_id;
    let seconds = wait.as_secs();
    let told = match held_by {
        HeldBy::Rate | HeldBy::Nothing => Told::WaitForRate,
        HeldBy::Phone => Told::WaitForPhone,
    };
    match lane.first_time(told) {
        true => info!(instance, "waiting {seconds} s for the number's turn: {why}"),
        false => debug!(instance, "waiting {seconds} s for the number's turn: {why}"),
    }
    let progress = &shared.gates.progress;
    progress.waiting_while(format!("waiting {seconds} s for {instance}'s turn"))
}

/// Says what a booking set right in the number's clock: a clock that ran
/// ahead somewhere, which would have stalled every run through the number.
fn tell_corrected(correction: Corrected, instance: &str) {
    // To the second: `59m 59s`, not its nanoseconds.
    let words = |nanos: i64| {
        let seconds = SignedDuration::from_nanos(nanos).as_secs().max(1);
        format!("{:#}", SignedDuration::from_secs(seconds))
    };
    match correction {
        Corrected::BookedByClockAhead(ahead) => warn!(
            instance,
            "the number's turns in the ledger were booked {} ahead of the clock's time now: the \
             clock ran ahead then (or was set back since); counted from its time now instead",
            words(ahead)
        ),
        Corrected::BeyondHorizon { ahead, horizon } => warn!(
            instance,
            "the number's turns in the ledger were booked {} ahead, more than {RUNS_QUEUED_MOST} \
             runs at this pace would ({}), with no note of when: taken as a clock that ran ahead, \
             and brought back to {} from now",
            words(ahead),
            words(horizon),
            words(horizon)
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECOND: i64 = 1_000_000_000;

    fn pace(interval_seconds: i64, burst: u32, pace_by_message: bool) -> Pace {
        Pace {
            interval: interval_seconds * SECOND,
            burst,
            pace_by_message,
            phone_time: 0,
        }
    }

    #[test]
    fn a_request_waits_a_turn_after_the_last_one_left() {
        let (spacing, now) = (Spacing::new(), Instant::now());
        let pace = pace(3, 1, false);
        assert!(spacing.leave(pace, Duration::ZERO, now));
        assert!(!spacing.leave(pace, Duration::ZERO, now + Duration::from_millis(2999)));
        assert_eq!(spacing.ready_at(pace), Some(now + Duration::from_secs(3)));
        assert!(spacing.leave(pace, Duration::ZERO, now + Duration::from_secs(3)));
    }

    #[test]
    fn a_burst_lets_that_many_go_together() {
        let (spacing, now) = (Spacing::new(), Instant::now());
        let pace = pace(3, 2, false);
        assert!(spacing.leave(pace, Duration::ZERO, now));
        assert!(spacing.leave(pace, Duration::ZERO, now));
        assert!(!spacing.leave(pace, Duration::ZERO, now + Duration::from_secs(2)));
        assert!(spacing.leave(pace, Duration::ZERO, now + Duration::from_secs(3)));
    }

    #[test]
    fn paced_by_message_a_request_waits_for_the_phone() {
        let (spacing, now) = (Spacing::new(), Instant::now());
        let pace = pace(1, 1, true);
        assert!(spacing.leave(pace, Duration::from_secs(7), now));
        assert_eq!(spacing.ready_at(pace), Some(now + Duration::from_secs(7)));
    }

    #[test]
    fn at_a_fast_pace_it_keeps_no_watch() {
        let (spacing, now) = (Spacing::new(), Instant::now());
        let fast = Pace {
            interval: SECOND / 100,
            ..pace(0, 1, false)
        };
        for _ in 0..3 {
            assert!(spacing.leave(fast, Duration::ZERO, now));
        }
    }
}
