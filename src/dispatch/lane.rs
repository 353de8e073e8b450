//! One instance's loop, step by step: take the next job whose recipient's
//! send window is open ([`super::in_hand`]), book its turn on the number's
//! clock in the ledger, wait for the turn and a place in the pipeline, and
//! hand it to the door ([`super::leaving`]), where it waits for a request
//! slot. A job the loop does not hand on gets its line.

use std::sync::Arc;

use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::control::LaneHealth;
use super::in_hand::InHand;
use super::leaving::Leaving;
use super::turns::{self, Turn};
use super::{send, Shared, LANE_QUEUE};
use crate::report::Progress;
use crate::schedule::{DailyCap, SendWindow};
use crate::types::Job;

/// When an instance may send: the send window and the daily cap.
#[derive(Clone)]
pub struct Gates {
    pub window: Option<SendWindow>,
    pub daily_cap: Option<DailyCap>,
    /// Outside the window, rows are DEFERRED instead of waiting for it.
    pub no_wait: bool,
    /// Where a wait for the window is shown.
    pub progress: Progress,
}

/// One instance's loop: books turns on the number's clock, waits for each
/// and a place in the pipeline, then hands the job to the door.
pub(super) async fn run_lane(
    queued: mpsc::Receiver<Job>,
    door: mpsc::UnboundedSender<Leaving>,
    lane: Arc<LaneHealth>,
    shared: Arc<Shared>,
) {
    let mut in_hand = InHand::new(queued, &shared);
    let mut held_back = Vec::new();
    let mut spare = turns::SpareTurns::default();
    // No turn is booked for a job whose window is shut.
    while let Some(first) = in_hand.next_open(&lane, &shared).await {
        let batch = booking_batch(first, &mut in_hand, &lane, &shared).await;
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
    for job in held_back.into_iter().chain(in_hand.left()) {
        let outcome = send::not_sent(&job, &lane, &shared.control);
        let _ = shared.outcomes.send(outcome).await;
    }
}

/// The jobs whose turns are booked together: the first, and at a fast pace
/// those in hand whose window is open, so the ledger is asked once per
/// batch (not with `pace_by_message`: each waits for the phone, and a
/// stopped run would leave the phone's time booked for nothing).
async fn booking_batch(
    first: Job,
    in_hand: &mut InHand,
    lane: &LaneHealth,
    shared: &Shared,
) -> Vec<Job> {
    let mut batch = vec![first];
    if shared.pace.books_in_batches() {
        while batch.len() < LANE_QUEUE {
            match in_hand.open_at_hand(lane, shared).await {
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
