//! What happens as messages leave, a batch at a time: the ledger records
//! each (refusing a card that already went, or a recipient cooling down)
//! and the journal notes each, both before any request goes; then each
//! message's request starts.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::OwnedSemaphorePermit;

use super::control::LaneHealth;
use super::{send, Shared};
use crate::ledger::{Claim, Claimed};
use crate::types::{Job, Outcome, Status};

/// Journals the jobs ready to go, in one write, records them in the
/// ledger, and starts their requests; false (the jobs left in `ready`) when
/// the ledger or the journal fails. The ledger has its last word on each,
/// against every run sharing it: a card that already went to the recipient
/// is `DUPLICATE`, a recipient reached within the cooldown `DEFERRED`.
pub(super) async fn start_ready(
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
