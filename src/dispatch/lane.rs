//! One instance's loop, step by step: take the next job, wait for the send
//! window, the instance's turn and a free slot, count it against the daily
//! cap, and start its request. A job the loop does not start gets its line.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tracing::info;

use super::control::{LaneHealth, RunControl};
use super::{send, Shared, LANE_QUEUE};
use crate::pacing::InstancePacer;
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
    mut pacer: InstancePacer,
    lane: Arc<LaneHealth>,
    shared: Arc<Shared>,
) {
    // Taken from the queue a batch at a time, so the router is woken once
    // per batch; oldest last, for `pop`.
    let mut waiting = Vec::with_capacity(LANE_QUEUE);
    let held_back = loop {
        let Some(job) = next_job(&mut queued, &mut waiting, &lane, &shared.control).await else {
            break None;
        };
        let Some(permit) = wait_for_turn(&job, &mut pacer, &lane, &shared).await else {
            break Some(job);
        };
        if !within_daily_cap(&lane, &shared).await {
            break Some(job);
        }
        send::start(job, permit, &lane, &shared);
    };

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
    pacer: &mut InstancePacer,
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
            pacer.wait_turn(&job.timing).await;
            Some(shared.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed"))
        } => permit,
    }
}

/// Counts one message against the instance's daily cap (on a blocking
/// thread: the ledger is files under a lock). False once the cap is
/// reached, which closes the lane, or when the ledger fails, which halts.
async fn within_daily_cap(lane: &LaneHealth, shared: &Shared) -> bool {
    let Some(cap) = shared.gates.daily_cap.clone() else {
        return true;
    };
    let instance_id = lane.instance_id.clone();
    let reserved =
        tokio::task::spawn_blocking(move || cap.reserve(&instance_id, Timestamp::now())).await;
    let control = &shared.control;
    match reserved {
        Ok(Ok(true)) => true,
        Ok(Ok(false)) => {
            let cap = shared.gates.daily_cap.as_ref().map_or(0, |cap| cap.cap);
            control.cap(
                lane,
                format!(
                    "instance {} reached its daily cap of {cap} messages",
                    lane.instance_id
                ),
            );
            false
        }
        Ok(Err(error)) => {
            control.halt(format!("cannot update the daily-cap ledger: {error}"));
            false
        }
        Err(panicked) => {
            control.halt(format!("the daily-cap ledger failed: {panicked}"));
            false
        }
    }
}
