//! The door every message leaves by, one for the whole run: the ledger
//! records each (refusing a card that already went, or a recipient cooling
//! down) and the journal notes each, both before any request goes; then
//! each message's request starts. Messages that arrive while one batch is
//! being recorded leave together in the next (and at a fast pace the door
//! waits a moment for more), so the ledger commits once for many; at a slow
//! pace each leaves at once.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, OwnedSemaphorePermit};

use super::control::LaneHealth;
use super::{send, Shared};
use crate::ledger::{Claim, Claimed};
use crate::types::{Job, Outcome, Status};

/// A job past its turn, with its place in the pipeline, on its way out.
pub(super) struct Leaving {
    pub job: Job,
    pub permit: OwnedSemaphorePermit,
    pub lane: Arc<LaneHealth>,
}

/// The most messages recorded in one transaction.
const MOST_AT_ONCE: usize = 1024;

/// How long the door waits for more messages at a fast pace, so that the
/// ledger commits once for many: a commit costs as much as a few dozen
/// messages' records. A millisecond is nothing to a message whose turn has
/// come, and later is always the safe side.
const GATHER: Duration = Duration::from_millis(1);

/// Records, journals and starts the jobs from `door` until every lane has
/// let go of it. When the ledger or the journal fails, the run halts and
/// the jobs still coming get their lines without being sent.
pub(super) async fn run_door(mut door: mpsc::UnboundedReceiver<Leaving>, shared: Arc<Shared>) {
    let mut batch = Vec::with_capacity(MOST_AT_ONCE);
    while door.recv_many(&mut batch, MOST_AT_ONCE).await > 0 {
        if shared.pace.is_fast() {
            tokio::time::sleep(GATHER).await;
            while batch.len() < MOST_AT_ONCE {
                match door.try_recv() {
                    Ok(leaving) => batch.push(leaving),
                    Err(_) => break,
                }
            }
        }
        // A run that is stopping records and starts nothing more.
        if shared.control.stopping().is_cancelled() || !leave(&mut batch, &shared).await {
            refuse_all(&mut batch, &shared).await;
        }
    }
}

/// Journals the jobs in `batch`, in one write, records them in the ledger,
/// in one transaction, and starts their requests; false (the jobs left in
/// `batch`) when the ledger or the journal fails. The ledger has its last
/// word on each, against every run sharing it: a card that already went to
/// the recipient is `DUPLICATE`, a recipient reached within the cooldown
/// `DEFERRED`.
async fn leave(batch: &mut Vec<Leaving>, shared: &Arc<Shared>) -> bool {
    // Both before any request leaves, so both at once. (A job the ledger
    // then refuses has a journal line too: after a crash it is UNKNOWN,
    // never sent again, which errs on the safe side.)
    let (verdicts, journalled) = tokio::join!(claim(batch, shared), journalled(batch, shared));
    let Some(verdicts) = verdicts else {
        return false;
    };
    if !journalled {
        // Not going after all: a later run must be able to send them.
        for (leaving, verdict) in batch.iter().zip(&verdicts) {
            if let Claimed::Granted(at) = verdict {
                let recipient = &leaving.job.recipient;
                let _ = shared
                    .ledger
                    .release(&recipient.to, &recipient.contact_phone, *at)
                    .await;
            }
        }
        return false;
    }
    for (leaving, verdict) in batch.drain(..).zip(verdicts) {
        let Leaving { job, permit, lane } = leaving;
        let refused = match verdict {
            Claimed::Granted(at) => {
                send::start(job, permit, at, &lane, shared);
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
        drop(permit);
        let _ = shared.outcomes.send(refused).await;
    }
    true
}

/// Gives the jobs of a run that has stopped their lines, unsent.
async fn refuse_all(batch: &mut Vec<Leaving>, shared: &Shared) {
    for Leaving { job, permit, lane } in batch.drain(..) {
        drop(permit);
        let outcome = send::not_sent(&job, &lane, &shared.control);
        let _ = shared.outcomes.send(outcome).await;
    }
}

/// Records in the ledger that the jobs in `batch` are leaving now: what it
/// says of each. `None`, having halted the run, when the ledger fails.
async fn claim(batch: &[Leaving], shared: &Shared) -> Option<Vec<Claimed>> {
    let claims = batch
        .iter()
        .map(|Leaving { job, lane, .. }| Claim {
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
async fn journalled(batch: &[Leaving], shared: &Shared) -> bool {
    let jobs = batch.iter().map(|leaving| &leaving.job);
    match shared.journal.sending(jobs).await {
        Ok(()) => true,
        Err(error) => {
            let control = &shared.control;
            control.halt(format!("cannot write the journal: {error}"));
            false
        }
    }
}
