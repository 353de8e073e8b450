//! The door every card leaves by and comes back through, one for the whole
//! run. A card whose turn has come arrives with its request slot; the
//! ledger, in one transaction for everything at the door, records the
//! answers of the cards that came back, then admits each card against every
//! run sharing it (the campaign's memory, the suppression list, the same
//! card within a day, the cooldown, the daily cap) and records the ones it
//! lets out as leaving. Only then do their requests start, and a card keeps
//! its slot until its answer is recorded: after a `kill -9`, the cards in
//! doubt are at most the requests in flight.
//!
//! What arrives while the ledger works on one pass goes in the next, so at
//! a fast pace the ledger commits once for many cards, and at a slow one
//! each goes at once.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::{JoinError, JoinSet};

use super::control::LaneHealth;
use super::{send, Shared};
use crate::ledger::{Claim, Claimed, Passing, Settled};
use crate::types::{Deferral, Hold, Job, Outcome};

/// A card whose turn has come, with its request slot, on its way out: it
/// leaves if the ledger lets it.
pub(super) struct Leaving {
    pub job: Job,
    pub slot: OwnedSemaphorePermit,
    pub lane: Arc<LaneHealth>,
}

/// A card that left, back with its line and its record for the ledger: its
/// slot is freed once the record is made.
pub(super) struct Back {
    pub settled: Settled,
    pub outcome: Outcome,
    pub slot: OwnedSemaphorePermit,
}

/// The most cards at the door in one pass.
const MOST_AT_ONCE: usize = 1024;

/// Lets cards out and takes them back until every lane is done and every
/// card let out is back. When the ledger fails, the run halts: cards still
/// arriving get their lines without being sent, and the answers of those
/// let out go to the results file (the next run reads them there).
pub(super) async fn run_door(mut door: mpsc::UnboundedReceiver<Leaving>, shared: Arc<Shared>) {
    // The cards let out, each its request, which ends in its way back.
    let mut requests: JoinSet<Back> = JoinSet::new();
    let mut leaving = Vec::with_capacity(MOST_AT_ONCE);
    let mut lanes_open = true;
    while lanes_open || !requests.is_empty() {
        let mut back = Vec::new();
        tokio::select! {
            biased;
            Some(answered) = requests.join_next(), if !requests.is_empty() => {
                back.push(unless_panicked(answered));
            }
            taken = door.recv_many(&mut leaving, MOST_AT_ONCE), if lanes_open => {
                lanes_open = taken > 0;
            }
        }
        // Whatever else is at the door goes in the same pass.
        while let Some(answered) = requests.try_join_next() {
            back.push(unless_panicked(answered));
        }
        while lanes_open && leaving.len() < MOST_AT_ONCE {
            match door.try_recv() {
                Ok(card) => leaving.push(card),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => lanes_open = false,
            }
        }
        // A run that is stopping lets nothing more out.
        if shared.control.stopping().is_cancelled() {
            refuse_all(leaving.drain(..), &shared).await;
        }
        pass(&mut leaving, back, &mut requests, &shared).await;
    }
}

/// A card's way back; a request that panicked is a bug, and stops the run
/// as loudly as it can.
fn unless_panicked(answered: Result<Back, JoinError>) -> Back {
    match answered {
        Ok(back) => back,
        Err(failed) => std::panic::resume_unwind(failed.into_panic()),
    }
}

/// One pass of the door: the ledger records `back` and decides `leaving`
/// (emptied); the cards it lets out start their requests in `requests`.
async fn pass(
    leaving: &mut Vec<Leaving>,
    back: Vec<Back>,
    requests: &mut JoinSet<Back>,
    shared: &Arc<Shared>,
) {
    if leaving.is_empty() && back.is_empty() {
        return;
    }
    let now = Timestamp::now();
    let passing = Passing {
        settled: back.iter().map(|card| card.settled.clone()).collect(),
        claims: leaving.iter().map(claim_of).collect(),
        rules: shared.rules,
        now: i64::try_from(now.as_nanosecond()).unwrap_or(i64::MAX),
        daily_cap: shared.gates.daily_cap.clone(),
    };
    let decided = shared.ledger.pass(&shared.campaign, passing).await;
    // The answers go to the results file whatever the ledger said: if it
    // could not record them, the next run finds them there.
    for Back { outcome, slot, .. } in back {
        drop(slot);
        written(outcome, shared).await;
    }
    let decided = match decided {
        Ok(decided) => decided,
        Err(error) => {
            let control = &shared.control;
            control.halt(format!("cannot record the messages in the ledger: {error}"));
            refuse_all(leaving.drain(..), shared).await;
            return;
        }
    };
    for (Leaving { job, slot, lane }, claimed) in leaving.drain(..).zip(decided) {
        let outcome = match claimed {
            Claimed::Granted { left_at, resending } => {
                let granted = send::Granted { left_at, resending };
                requests.spawn(send::send(job, slot, granted, lane, shared.clone()));
                continue;
            }
            Claimed::Held(cause) => Outcome::held(&job, &lane.instance_id, cause),
            Claimed::CapReached(cap) => {
                let cap_rule = shared.gates.daily_cap.as_ref();
                shared.control.defer(
                    &lane,
                    Deferral {
                        cause: Hold::DailyCap,
                        why: format!(
                            "instance {} reached its daily cap of {cap} messages",
                            lane.instance_id
                        ),
                        until: cap_rule.and_then(|cap| cap.next_day(now)),
                    },
                );
                send::not_sent(&job, &lane, &shared.control)
            }
        };
        drop(slot);
        written(outcome, shared).await;
    }
}

fn claim_of(card: &Leaving) -> Claim {
    let recipient = &card.job.recipient;
    Claim {
        key: recipient.key.clone(),
        to: recipient.to.clone(),
        card_phone: recipient.contact_phone.clone(),
        instance_id: card.lane.instance_id.to_string(),
    }
}

/// Gives the cards of a run that has stopped their lines, unsent.
async fn refuse_all(cards: impl Iterator<Item = Leaving>, shared: &Shared) {
    for Leaving { job, slot, lane } in cards {
        drop(slot);
        let outcome = send::not_sent(&job, &lane, &shared.control);
        written(outcome, shared).await;
    }
}

/// Hands a line to the results writer. The writer only goes away early
/// when it cannot write: then no more cards may leave, since their outcome
/// would be lost.
pub(super) async fn written(outcome: Outcome, shared: &Shared) {
    if shared.outcomes.send(outcome).await.is_err() {
        let control = &shared.control;
        control.halt("the results file cannot be written".to_string());
    }
}
