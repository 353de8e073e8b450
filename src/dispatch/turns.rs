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
use crate::pacing::{
    nanos, Booking, ClockState, Corrected, HeldBy, Pace, BOOKED_AHEAD, RUNS_QUEUED_MOST,
};
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

/// The requests of one lane as they really leave, kept to the pace on a
/// clock of the lane's own: a card let out after its turn (it waited at the
/// door for a request slot) would otherwise go on top of the next card's
/// turn. Cards that leave at their turns never wait here.
pub(super) struct Spacing {
    left: Mutex<ClockState>,
    /// Where the lane's clock starts (its times are nanoseconds since).
    since: Instant,
}

impl Spacing {
    pub(super) fn new(since: Instant) -> Spacing {
        Spacing {
            left: Mutex::new(ClockState::default()),
            since,
        }
    }

    /// When a request whose phone takes `phone_time` may leave, asked at
    /// `now`; noted as leaving then.
    fn book(&self, pace: Pace, phone_time: Duration, now: Instant) -> Instant {
        let mut left = self
            .left
            .lock()
            .expect("no booking panics holding the lock");
        let now_nanos = nanos(now.saturating_duration_since(self.since));
        let at = left.book(pace, now_nanos, &[nanos(phone_time)]).turns[0];
        now + Duration::from_nanos(u64::try_from(at - now_nanos).unwrap_or(0))
    }
}

/// Waits, if need be, until `job`'s request may leave after the lane's
/// last at the pace ([`Spacing`]). Not cut short when the run stops: a card
/// the ledger let out goes (counted against the cap, recorded as leaving),
/// and at most the request slots wait, a turn apart.
pub(super) async fn spaced(job: &Job, lane: &LaneHealth, shared: &Shared) {
    let now = shared.clock.instant();
    let at = lane.spacing.book(shared.pace, job.timing.phone_time(), now);
    if at > now {
        debug!(
            row = job.recipient.row,
            wait_ms = (at - now).as_millis() as u64,
            "let out after its turn: waiting to keep the pace"
        );
        tokio::time::sleep_until(at).await;
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
