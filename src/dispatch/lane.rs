//! One instance's loop, step by step: take the next job, wait for the send
//! window, book its turn on the number's clock in the ledger, wait for the
//! turn and a free slot, count it against the daily cap, journal it, and
//! start its request. A job the loop does not start gets its line.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::info;

use super::control::{LaneHealth, RunControl};
use super::{send, Shared, LANE_QUEUE};
use crate::ledger::{Claim, Claimed, Taken};
use crate::pacing::nanos;
use crate::report::Progress;
use crate::schedule::{DailyCap, Schedule};
use crate::types::{Job, Outcome, Status};

/// When an instance may send: the send window and the daily cap.
#[derive(Clone)]
pub struct Gates {
    pub window: Option<Schedule>,
    pub daily_cap: Option<DailyCap>,
    /// How long a recipient reached by any run sharing the ledger is held back.
    pub cooldown: Option<Duration>,
    /// Outside the window, stop the run (rows DEFERRED) instead of waiting.
    pub no_wait: bool,
    /// Where a wait for the window is shown.
    pub progress: Progress,
}

impl Gates {
    /// Returns at once inside the window; outside it, waits for it to open,
    /// or with `no_wait` stops the run and returns `None`.
    async fn wait_for_window(&self, instance_id: &str, control: &RunControl) -> Option<()> {
        let Some(schedule) = &self.window else {
            return Some(());
        };
        while let Some(opening) = schedule.closed_until(Timestamp::now()) {
            let when = opening.strftime("%Y-%m-%d %H:%M %Z");
            if self.no_wait {
                control.hold(format!(
                    "outside the send window {} (it opens {when})",
                    schedule.window
                ));
                return None;
            }
            info!(
                instance = instance_id,
                "outside the send window {}; waiting until {when}", schedule.window
            );
            self.progress
                .note(Some(&format!("waiting for the send window until {when}")));
            tokio::time::sleep(
                schedule
                    .wait(Timestamp::now())
                    .max(Duration::from_millis(100)),
            )
            .await;
            self.progress.note(None);
        }
        Some(())
    }
}

/// One instance's loop: books turns on the number's clock, waits for each
/// and a free slot, then sends.
pub(super) async fn run_lane(
    mut queued: mpsc::Receiver<Job>,
    lane: Arc<LaneHealth>,
    shared: Arc<Shared>,
) {
    // Taken from the queue a batch at a time, so the router is woken once
    // per batch; oldest last, for `pop`.
    let mut waiting = Vec::with_capacity(LANE_QUEUE);
    let mut held_back = Vec::new();
    let mut spare = SpareTurns::default();
    loop {
        let Some(first) = next_job(&mut queued, &mut waiting, &lane, &shared.control).await else {
            break;
        };
        // The window first: no turn is booked while it is closed.
        if !window_opens(&lane, &shared).await {
            held_back.push(first);
            break;
        }
        let batch = booking_batch(first, &mut waiting, &shared);
        let turns = match book_turns(&batch, &lane, &shared, Some(&mut spare)).await {
            Some(turns) => turns,
            None => {
                held_back.extend(batch);
                break;
            }
        };
        if let Err(left) = send_at_turns(batch.into_iter().zip(turns), &lane, &shared).await {
            held_back.extend(left);
            break;
        }
    }

    // Stopped, retired or done: every job not sent still gets its line.
    queued.close();
    for job in held_back
        .into_iter()
        .chain(waiting.into_iter().rev())
        .chain(std::iter::from_fn(|| queued.try_recv().ok()))
    {
        let outcome = send::not_sent(&job, &lane, &shared.control);
        let _ = shared.outcomes.send(outcome).await;
    }
}

/// The lane's next job; `None` when the queue has ended, the run is
/// stopping or the instance has left rotation.
async fn next_job(
    queued: &mut mpsc::Receiver<Job>,
    waiting: &mut Vec<Job>,
    lane: &LaneHealth,
    control: &RunControl,
) -> Option<Job> {
    let stop = control.stopping();
    if waiting.is_empty() {
        let taken = tokio::select! {
            biased;
            _ = stop.cancelled() => 0,
            _ = lane.closed.cancelled() => 0,
            taken = queued.recv_many(waiting, LANE_QUEUE) => taken,
        };
        if taken == 0 {
            return None;
        }
        waiting.reverse();
    }
    if stop.is_cancelled() || lane.closed.is_cancelled() {
        return None;
    }
    waiting.pop()
}

/// Waits for the send window; false when the run stops or the instance
/// leaves rotation meanwhile (or, with `--no-wait`, the window is closed).
async fn window_opens(lane: &LaneHealth, shared: &Shared) -> bool {
    let control = &shared.control;
    tokio::select! {
        biased;
        _ = control.stopping().cancelled() => false,
        _ = lane.closed.cancelled() => false,
        open = shared.gates.wait_for_window(&lane.instance_id, control) => open.is_some(),
    }
}

/// The jobs whose turns are booked together: the first, and at a fast pace
/// those already waiting, so the ledger is asked once per batch. (With a
/// daily cap, one at a time: each is counted on its own.)
fn booking_batch(first: Job, waiting: &mut Vec<Job>, shared: &Shared) -> Vec<Job> {
    let mut batch = vec![first];
    if shared.pace.is_fast() && shared.gates.daily_cap.is_none() {
        while batch.len() < LANE_QUEUE {
            match waiting.pop() {
                Some(job) => batch.push(job),
                None => break,
            }
        }
    }
    batch
}

/// Turns a lane booked ahead of its jobs, oldest first, in nanoseconds since
/// 1970. Only at a fast pace and without `pace_by_message` (where a turn
/// does not depend on the message): then the ledger is asked once for many
/// messages, not once for each.
#[derive(Default)]
pub(super) struct SpareTurns(VecDeque<i64>);

/// How far ahead a lane books spare turns: a run that stops loses at most
/// this much of the number's time, which errs on the slow side.
const BOOKED_AHEAD: Duration = Duration::from_millis(50);
const SPARE_MOST: i64 = 4096;

/// Books the turns of `jobs` on the instance's clock in the ledger, shared
/// with every run through the number (or takes them from `spare`); when
/// each may leave, on this machine's clock. `None`, having halted the run,
/// when the ledger fails.
pub(super) async fn book_turns(
    jobs: &[Job],
    lane: &LaneHealth,
    shared: &Shared,
    spare: Option<&mut SpareTurns>,
) -> Option<Vec<Instant>> {
    let pace = shared.pace;
    let now_nanos = Timestamp::now().as_nanosecond();
    let mut spare = spare.filter(|_| pace.is_fast() && !pace.pace_by_message);
    let mut turns = Vec::with_capacity(jobs.len());
    let mut ahead = 0;
    if let Some(SpareTurns(spare)) = &mut spare {
        // A turn booked ahead but not used in time is lost, not sent late
        // in a burst.
        let stale = i64::try_from(now_nanos).unwrap_or(i64::MAX) - nanos(BOOKED_AHEAD);
        spare.retain(|turn| *turn >= stale);
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
            Ok(booked) => turns.extend(booked),
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
    let now = Instant::now();
    let after = |turn: i64| {
        let wait = u64::try_from(i128::from(turn) - now_nanos).unwrap_or(0);
        now + Duration::from_nanos(wait)
    };
    Some(turns.into_iter().map(after).collect())
}

/// Sends each job at its turn, with a free slot; jobs whose turns have come
/// and whose slots are free go out together, with one journal write. The
/// jobs not started, when the run or the instance stops, come back.
async fn send_at_turns(
    mut booked: impl Iterator<Item = (Job, Instant)>,
    lane: &Arc<LaneHealth>,
    shared: &Arc<Shared>,
) -> Result<(), Vec<Job>> {
    let mut ready = Vec::new();
    let not_started = |ready: Vec<(Job, OwnedSemaphorePermit)>, rest: Vec<Job>| {
        ready.into_iter().map(|(job, _)| job).chain(rest).collect()
    };
    while let Some((job, turn)) = booked.next() {
        let at_once = match turn <= Instant::now() {
            true => shared.pipeline.clone().try_acquire_owned().ok(),
            false => None,
        };
        let permit = match at_once {
            Some(permit) => permit,
            None => {
                // This one waits: those ready go out first.
                if !start_ready(&mut ready, lane, shared).await {
                    let rest = std::iter::once(job).chain(booked.map(|(job, _)| job));
                    return Err(not_started(ready, rest.collect()));
                }
                match slot_at(turn, lane, shared).await {
                    Some(permit) => permit,
                    None => {
                        let rest = std::iter::once(job).chain(booked.map(|(job, _)| job));
                        return Err(not_started(ready, rest.collect()));
                    }
                }
            }
        };
        if !within_daily_cap(lane, shared).await {
            let rest = std::iter::once(job).chain(booked.map(|(job, _)| job));
            return Err(not_started(ready, rest.collect()));
        }
        ready.push((job, permit));
    }
    match start_ready(&mut ready, lane, shared).await {
        true => Ok(()),
        false => Err(not_started(ready, Vec::new())),
    }
}

/// Journals the jobs ready to go, in one write, records them in the
/// ledger, and starts their requests; false (the jobs left in `ready`) when
/// the ledger or the journal fails. The ledger has its last word on each,
/// against every run sharing it: a card that already went to the recipient
/// is `DUPLICATE`, a recipient reached within the cooldown `DEFERRED`.
async fn start_ready(
    ready: &mut Vec<(Job, OwnedSemaphorePermit)>,
    lane: &Arc<LaneHealth>,
    shared: &Arc<Shared>,
) -> bool {
    if ready.is_empty() {
        return true;
    }
    // Both before any request leaves, so both at once. (A job the ledger
    // then refuses has a journal line too: after a crash it is UNKNOWN,
    // never sent again, which errs on the safe side.)
    let (verdicts, journalled) =
        tokio::join!(claim(ready, lane, shared), journalled(ready, shared));
    let Some(verdicts) = verdicts else {
        return false;
    };
    if !journalled {
        // Not going after all: a later run must be able to send them.
        for ((job, _), verdict) in ready.iter().zip(&verdicts) {
            if let Claimed::Granted(at) = verdict {
                let recipient = &job.recipient;
                let _ = shared
                    .ledger
                    .release(&recipient.to, &recipient.contact_phone, *at)
                    .await;
            }
        }
        return false;
    }
    for ((job, permit), verdict) in ready.drain(..).zip(verdicts) {
        let refused = match verdict {
            Claimed::Granted(at) => {
                send::start(job, permit, at, lane, shared);
                continue;
            }
            Claimed::SameCardAt(at) => {
                let mut outcome = Outcome::for_job(&job, &lane.instance_id, Status::Duplicate);
                outcome.add_error(format!(
                    "the same card went to this recipient at {} (a run sharing the ledger); not sent again within 24 hours",
                    at_text(at)
                ));
                outcome
            }
            Claimed::CoolingUntil(until) => {
                let mut outcome = Outcome::for_job(&job, &lane.instance_id, Status::Deferred);
                outcome.add_error(format!(
                    "the recipient was reached recently (schedule.cooldown); not before {}, when --resume sends it",
                    at_text(until)
                ));
                outcome
            }
        };
        let _ = shared.outcomes.send(refused).await;
    }
    true
}

/// Records in the ledger that the jobs in `ready` are leaving now: what it
/// says of each. `None`, having halted the run, when the ledger fails.
async fn claim(
    ready: &[(Job, OwnedSemaphorePermit)],
    lane: &LaneHealth,
    shared: &Shared,
) -> Option<Vec<Claimed>> {
    let claims = ready
        .iter()
        .map(|(job, _)| Claim {
            recipient: job.recipient.to.clone(),
            card_phone: job.recipient.contact_phone.clone(),
            instance_id: lane.instance_id.to_string(),
            resending: job.resending,
        })
        .collect();
    match shared.ledger.claim(claims, shared.gates.cooldown).await {
        Ok(verdicts) => Some(verdicts),
        Err(error) => {
            let control = &shared.control;
            control.halt(format!("cannot record the messages in the ledger: {error}"));
            None
        }
    }
}

/// A time of the ledger (nanoseconds since 1970), as messages show it.
pub fn at_text(nanos: i64) -> String {
    Timestamp::from_nanosecond(i128::from(nanos))
        .map(|at| at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| "an unknown time".to_string())
}

/// Waits for `turn`, then a place in the pipeline: a job waiting for its
/// turn must not hold one. `None` when the run stops or the instance leaves
/// rotation.
async fn slot_at(
    turn: Instant,
    lane: &LaneHealth,
    shared: &Shared,
) -> Option<OwnedSemaphorePermit> {
    let control = &shared.control;
    tokio::select! {
        biased;
        _ = control.stopping().cancelled() => None,
        _ = lane.closed.cancelled() => None,
        permit = async {
            // A turn already due needs no timer (one a message adds up).
            if turn > Instant::now() {
                tokio::time::sleep_until(turn).await;
            }
            shared.pipeline.clone().acquire_owned().await.expect("the semaphore is never closed")
        } => Some(permit),
    }
}

/// Writes the journal lines of the jobs about to be sent: once a request
/// may have left, a crash must not forget it. A journal that cannot be
/// written halts the run.
async fn journalled(turn: &[(Job, OwnedSemaphorePermit)], shared: &Shared) -> bool {
    let jobs = turn.iter().map(|(job, _)| job);
    match shared.journal.sending(jobs).await {
        Ok(()) => true,
        Err(error) => {
            let control = &shared.control;
            control.halt(format!("cannot write the journal: {error}"));
            false
        }
    }
}

/// Counts one message against the instance's daily cap in the ledger
/// shared by every run. False once the cap is reached, which closes the
/// lane, or when the ledger fails, which halts the run.
async fn within_daily_cap(lane: &LaneHealth, shared: &Shared) -> bool {
    let Some(cap) = &shared.gates.daily_cap else {
        return true;
    };
    let day = cap.day(Timestamp::now());
    let control = &shared.control;
    match shared
        .ledger
        .take_from_daily_cap(&lane.instance_id, day, cap)
        .await
    {
        Ok(Taken::Counted) => true,
        Ok(Taken::CapReached(cap)) => {
            control.defer(
                lane,
                format!(
                    "instance {} reached its daily cap of {cap} messages",
                    lane.instance_id
                ),
            );
            false
        }
        Err(error) => {
            control.halt(format!("cannot count the message in the ledger: {error}"));
            false
        }
    }
}
