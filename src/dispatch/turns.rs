//! Booking a number's turns on its clock in the ledger: a batch at a time,
//! and at a fast pace a little ahead, so the ledger is asked once for many
//! messages.

use std::collections::VecDeque;
use std::time::Duration;

use jiff::Timestamp;
use tokio::time::Instant;

use super::control::LaneHealth;
use super::Shared;
use crate::pacing::nanos;
use crate::types::Job;

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
