//! One instance's loop, step by step: take the next job whose recipient's
//! send window is open ([`super::in_hand`]), book its turn on the number's
//! clock in the ledger, wait for the turn and a place in the pipeline, and
//! hand it to the door ([`super::leaving`]), where it waits for a request
//! slot. A job the loop does not hand on gets its line.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::control::LaneHealth;
use super::in_hand::InHand;
use super::leaving::Leaving;
use super::turns::{self, Turn};
use super::{send, Shared, LANE_QUEUE};
use crate::report::Progress;
use crate::schedule::{DailyCap, SendWindow, WindowState};
use crate::types::{Deferral, Hold, Job};

/// When an instance may send: the send window and the daily cap.
#[derive(Clone)]
pub struct Gates {
    pub window: Option<SendWindow>,
    /// Each number's day and caps: every card let out is counted.
    pub daily_cap: DailyCap,
    /// Outside the window, rows are DEFERRED instead of waiting for it.
    pub no_wait: bool,
    /// Where a wait for the window is shown.
    pub progress: Progress,
}

impl Gates {
    /// `None` while the send window is open for the job's recipient;
    /// otherwise what holds it back (a try again after a wait is judged
    /// anew).
    pub(super) fn window_shut_for(&self, job: &Job, now: Timestamp) -> Option<Deferral> {
        let window = self.window.as_ref()?;
        let zones = window.zones_of(&job.recipient.to);
        let state = window.state(zones, now);
        if let WindowState::Open { .. } = state {
            return None;
        }
        Some(Deferral {
            cause: Hold::Window,
            why: format!("outside the send window {}", window.in_zones(zones)),
            until: state.opens(),
        })
    }
}

/// One instance's loop: books turns on the number's clock, waits for each
/// and a place in the pipeline, then hands the job to the door.
pub(super) async fn run_lane(
    queued: mpsc::Receiver<Job>,
    door: mpsc::UnboundedSender<Leaving>,
    lane: Arc<LaneHealth>,
    shared: Arc<Shared>,
) {
    let mut in_hand = InHand::new(queued);
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
        let booked = batch.into_iter().zip(turns);
        if let Err(left) = send_at_turns(booked, &mut in_hand, &door, &lane, &shared).await {
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
/// pipeline, if its recipient's window is still open (else it goes back in
/// hand, parked or DEFERRED). The jobs not sent through, when the run or
/// the instance stops, come back.
async fn send_at_turns(
    mut booked: impl Iterator<Item = (Job, Turn)>,
    in_hand: &mut InHand,
    door: &mpsc::UnboundedSender<Leaving>,
    lane: &Arc<LaneHealth>,
    shared: &Arc<Shared>,
) -> Result<(), Vec<Job>> {
    while let Some((job, turn)) = booked.next() {
        let at_once = match turn.at <= shared.clock.instant() {
            true => shared.pipeline.clone().try_acquire_owned().ok(),
            false => None,
        };
        let permit = match at_once {
            Some(permit) => Some(permit),
            None => place_at(turn, lane, shared).await,
        };
        let Some(permit) = permit else {
            return Err(std::iter::once(job)
                .chain(booked.map(|(job, _)| job))
                .collect());
        };
        // The turn may come after the window shut: then back in hand.
        let Some(job) = in_hand.if_open(job, lane, shared).await else {
            continue;
        };
        let lane = lane.clone();
        if let Err(closed) = door.send(Leaving { job, permit, lane }) {
            return Err(std::iter::once(closed.0.job)
                .chain(booked.map(|(job, _)| job))
                .collect());
        }
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
