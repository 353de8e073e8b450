//! One instance's loop, step by step: take the next job, wait for the send
//! window, the instance's turn and a free slot, count it against the daily
//! cap, journal it, and start its request. A job the loop does not start
//! gets its line.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tracing::info;

use super::control::{LaneHealth, RunControl};
use super::{send, Shared, LANE_QUEUE};
use crate::report::Progress;
use crate::schedule::{DailyCap, Schedule};
use crate::types::Job;

/// When an instance may send: the send window and the daily cap.
#[derive(Clone)]
pub struct Gates {
    pub window: Option<Schedule>,
    pub daily_cap: Option<DailyCap>,
    /// Outside the window, stop the run (rows DEFERRED) instead of waiting.
    pub no_wait: bool,
    /// Where a wait for the window is shown.
    pub progress: Progress,
}

impl Gates {
    /// Whether messages may go right now.
    fn window_open_now(&self) -> bool {
        self.window
            .as_ref()
            .is_none_or(|schedule| schedule.closed_until(Timestamp::now()).is_none())
    }

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

/// One instance's loop: waits for its turn and a free slot, then sends.
pub(super) async fn run_lane(
    mut queued: mpsc::Receiver<Job>,
    lane: Arc<LaneHealth>,
    shared: Arc<Shared>,
) {
    // Taken from the queue a batch at a time, so the router is woken once
    // per batch; oldest last, for `pop`.
    let mut waiting = Vec::with_capacity(LANE_QUEUE);
    let mut held_back = Vec::new();
    loop {
        let Some(job) = next_job(&mut queued, &mut waiting, &lane, &shared.control).await else {
            break;
        };
        let Some(permit) = wait_for_turn(&job, &lane, &shared).await else {
            held_back.push(job);
            break;
        };
        let mut turn = vec![(job, permit)];
        if shared.gates.daily_cap.is_none() {
            take_ready(&mut waiting, &lane, &shared, &mut turn);
        }
        if !within_daily_cap(&lane, &shared).await || !journalled(&turn, &shared).await {
            held_back.extend(turn.into_iter().map(|(job, _)| job));
            break;
        }
        for (job, permit) in turn {
            send::start(job, permit, &lane, &shared);
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

/// Waits for the window, then the instance's pacing, then a free slot: a
/// job waiting for its turn must not hold a slot. `None` when the run
/// stops or the instance leaves rotation meanwhile.
async fn wait_for_turn(
    job: &Job,
    lane: &LaneHealth,
    shared: &Shared,
) -> Option<OwnedSemaphorePermit> {
    let control = &shared.control;
    tokio::select! {
        biased;
        _ = control.stopping().cancelled() => None,
        _ = lane.closed.cancelled() => None,
        permit = async {
            shared.gates.wait_for_window(&lane.instance_id, control).await?;
            lane.pacer.wait_turn(&job.timing).await;
            Some(shared.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed"))
        } => permit,
    }
}

/// Jobs after the first whose turn and slot are there already, without
/// waiting: a busy run then journals them with one write. (With a daily
/// cap, each message is counted on its own instead.)
fn take_ready(
    waiting: &mut Vec<Job>,
    lane: &LaneHealth,
    shared: &Shared,
    turn: &mut Vec<(Job, OwnedSemaphorePermit)>,
) {
    let stop = shared.control.stopping();
    while turn.len() < LANE_QUEUE && !stop.is_cancelled() && !lane.closed.is_cancelled() {
        let Some(job) = waiting.last() else { return };
        if !shared.gates.window_open_now() {
            return;
        }
        let Ok(permit) = shared.in_flight.clone().try_acquire_owned() else {
            return;
        };
        if !lane.pacer.try_turn(&job.timing) {
            return;
        }
        let job = waiting.pop().expect("a job was just looked at");
        turn.push((job, permit));
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
        .take_from_daily_cap(&lane.instance_id, day, cap.cap)
        .await
    {
        Ok(true) => true,
        Ok(false) => {
            control.defer(
                lane,
                format!(
                    "instance {} reached its daily cap of {} messages",
                    lane.instance_id, cap.cap
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
