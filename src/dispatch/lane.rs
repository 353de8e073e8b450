//! One instance's loop, step by step: take the next job, wait for the send
//! window, book its turn on the number's clock in the ledger, wait for the
//! turn and a place in the pipeline, and hand it to the door
//! ([`super::leaving`]), where it waits for a request slot. A job the loop
//! does not hand on gets its line.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;
use tracing::info;

use super::control::{LaneHealth, RunControl};
use super::leaving::Leaving;
use super::turns::{self, Turn};
use super::{send, Shared, LANE_QUEUE};
use crate::report::Progress;
use crate::schedule::{DailyCap, Schedule};
use crate::types::{Deferral, Hold, Job};

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
                control.hold(Deferral {
                    cause: Hold::Window,
                    why: format!(
                        "outside the send window {} (it opens {when})",
                        schedule.window
                    ),
                    until: Some(opening.timestamp()),
                });
                return None;
            }
            info!(
                instance = instance_id,
                "outside the send window {}; waiting until {when}", schedule.window
            );
            self.progress
                .waiting(Some(format!("waiting for the send window until {when}")));
            tokio::time::sleep(
                schedule
                    .wait(Timestamp::now())
                    .max(Duration::from_millis(100)),
            )
            .await;
            self.progress.waiting(None);
        }
        Some(())
    }
}

/// One instance's loop: books turns on the number's clock, waits for each
/// and a place in the pipeline, then hands the job to the door.
pub(super) async fn run_lane(
    mut queued: mpsc::Receiver<Job>,
    door: mpsc::UnboundedSender<Leaving>,
    lane: Arc<LaneHealth>,
    shared: Arc<Shared>,
) {
    // Taken from the queue a batch at a time, so the router is woken once
    // per batch; oldest last, for `pop`.
    let mut waiting = Vec::with_capacity(LANE_QUEUE);
    let mut held_back = Vec::new();
    let mut spare = turns::SpareTurns::default();
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
        let turns = match turns::book_turns(&batch, &lane, &shared, Some(&mut spare)).await {
            Some(turns) => turns,
            None => {
                held_back.extend(batch);
                break;
            }
        };
        if let Err(left) = send_at_turns(batch.into_iter().zip(turns), &door, &lane, &shared).await
        {
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
/// those already waiting, so the ledger is asked once per batch (not with
/// `pace_by_message`: each waits for the phone, and a stopped run would
/// leave the phone's time booked for nothing).
fn booking_batch(first: Job, waiting: &mut Vec<Job>, shared: &Shared) -> Vec<Job> {
    let mut batch = vec![first];
    if shared.pace.books_in_batches() {
        while batch.len() < LANE_QUEUE {
            match waiting.pop() {
                Some(job) => batch.push(job),
                None => break,
            }
        }
    }
    batch
}

/// Sends each job through the door at its turn, with a place in the
/// pipeline. The jobs not sent through, when the run or the instance stops,
/// come back.
async fn send_at_turns(
    mut booked: impl Iterator<Item = (Job, Turn)>,
    door: &mpsc::UnboundedSender<Leaving>,
    lane: &Arc<LaneHealth>,
    shared: &Arc<Shared>,
) -> Result<(), Vec<Job>> {
    while let Some((job, turn)) = booked.next() {
        let at_once = match turn.at <= Instant::now() {
            true => shared.pipeline.clone().try_acquire_owned().ok(),
            false => None,
        };
        let permit = match at_once {
            Some(permit) => Some(permit),
            None => place_at(turn, lane, shared).await,
        };
        let left = match permit {
            Some(permit) => {
                let lane = lane.clone();
                match door.send(Leaving { job, permit, lane }) {
                    Ok(()) => continue,
                    Err(closed) => closed.0.job,
                }
            }
            None => job,
        };
        return Err(std::iter::once(left)
            .chain(booked.map(|(job, _)| job))
            .collect());
    }
    Ok(())
}

/// Waits for `turn`, then a place in the pipeline: a job waiting for its
/// turn must not hold one. `None` when the run stops or the instance leaves
/// rotation.
async fn place_at(turn: Turn, lane: &LaneHealth, shared: &Shared) -> Option<OwnedSemaphorePermit> {
    let control = &shared.control;
    tokio::select! {
        biased;
        _ = control.stopping().cancelled() => None,
        _ = lane.closed.cancelled() => None,
        permit = async {
            turns::wait_for(turn, lane, shared).await;
            shared.pipeline.clone().acquire_owned().await.expect("the semaphore is never closed")
        } => Some(permit),
    }
}
