//! The door every card leaves by and comes back through, one for the whole
//! run. A card whose turn has come waits at the door for a request slot
//! (`pacing.concurrency` of them). In each pass the ledger, in one
//! transaction, records the answers of the cards that came back, then
//! admits the cards the freed and free slots let out, against every run
//! sharing it (the campaign's memory, the suppression list, the same card
//! within a day, the cooldown, the daily cap), and records them as leaving.
//! Only then do their requests start. A card holds its slot until its
//! answer is recorded, and a slot is taken again in the same transaction
//! that frees it: so the cards recorded as leaving with no answer are never
//! more than the slots, and after a `kill -9` at most the requests in
//! flight are in doubt.
//!
//! What arrives while the ledger works on one pass goes in the next, so at
//! a fast pace the ledger commits once for many cards, and at a slow one
//! each goes at once.

use std::collections::VecDeque;
use std::sync::Arc;

use jiff::Timestamp;
use tokio::sync::{mpsc, OwnedSemaphorePermit};
use tokio::task::{JoinError, JoinSet};

use super::control::LaneHealth;
use super::{send, Shared};
use crate::ledger::{Claim, Claimed, Passing, Settled};
use crate::types::{Deferral, Hold, Job, Outcome};

/// A card whose turn has come, with its place in the pipeline, on its way
/// out: it leaves once it has a slot, if the ledger lets it.
pub(super) struct Leaving {
    pub job: Job,
    pub permit: OwnedSemaphorePermit,
    pub lane: Arc<LaneHealth>,
}

/// A card that left, back with its line and its record for the ledger: its
/// slot is freed once the record is made.
pub(super) struct Back {
    pub settled: Settled,
    pub outcome: Outcome,
    pub permit: OwnedSemaphorePermit,
}

/// The most cards let out in one pass.
const MOST_AT_ONCE: usize = 1024;

/// Lets cards out and takes them back until every lane is done and every
/// card let out is back. When the ledger fails, the run halts: cards still
/// arriving get their lines without being sent, and the answers of those
/// let out go to the results file (the next run reads them there).
pub(super) async fn run_door(mut door: mpsc::UnboundedReceiver<Leaving>, shared: Arc<Shared>) {
    // The cards let out, each its request, which ends in its way back.
    let mut requests: JoinSet<Back> = JoinSet::new();
    // Passes sent to the ledger and not yet done, oldest first: the ledger
    // records one while the door gathers the next.
    let mut passes: VecDeque<Pass> = VecDeque::new();
    let mut waiting: VecDeque<Leaving> = VecDeque::new();
    let mut back = Vec::new();
    let mut arrived = Vec::with_capacity(MOST_AT_ONCE);
    let mut lanes_open = true;
    // Until every lane is done, and every card back, recorded and written.
    while lanes_open
        || !requests.is_empty()
        || !waiting.is_empty()
        || !back.is_empty()
        || !passes.is_empty()
    {
        // Slots are held by the requests in flight and the cards of the
        // passes under way; a pass frees the slots of the answers it
        // records, and those of the passes before it, as it commits.
        let claimed: usize = passes.iter().map(|pass| pass.claims).sum();
        let free = shared.concurrency.saturating_sub(requests.len() + claimed);
        let can_pass = passes.len() < PASSES_AHEAD;
        let ready = can_pass && (!back.is_empty() || (free > 0 && !waiting.is_empty()));
        tokio::select! {
            biased;
            passed = oldest(&mut passes), if !passes.is_empty() => {
                passed.let_out(&mut requests, &shared).await;
                continue;
            }
            Some(answered) = requests.join_next(), if !requests.is_empty() => {
                back.push(unless_panicked(answered));
            }
            taken = door.recv_many(&mut arrived, MOST_AT_ONCE), if lanes_open => {
                lanes_open = taken > 0;
            }
            () = std::future::ready(()), if ready => {}
        }
        // Whatever else is at the door goes in the same pass.
        while let Some(answered) = requests.try_join_next() {
            back.push(unless_panicked(answered));
        }
        while lanes_open {
            match door.try_recv() {
                Ok(card) => arrived.push(card),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => lanes_open = false,
            }
        }
        waiting.extend(arrived.drain(..));
        // A run that is stopping lets nothing more out.
        if shared.control.stopping().is_cancelled() {
            refuse_all(waiting.drain(..), &shared).await;
        }
        if passes.len() < PASSES_AHEAD {
            let claimed: usize = passes.iter().map(|pass| pass.claims).sum();
            let free = shared.concurrency.saturating_sub(requests.len() + claimed);
            let leaving: Vec<Leaving> = waiting
                .drain(..free.min(waiting.len()).min(MOST_AT_ONCE))
                .collect();
            if !leaving.is_empty() || !back.is_empty() {
                let back = std::mem::take(&mut back);
                passes.push_back(Pass::start(leaving, back, &shared));
            }
        }
    }
}

/// How many passes may be with the ledger at once: while it records one,
/// the next is gathered and waits its turn, so the ledger is never idle
/// while cards wait.
const PASSES_AHEAD: usize = 2;

/// A card's way back; a request that panicked is a bug, and stops the run
/// as loudly as it can.
fn unless_panicked(answered: Result<Back, JoinError>) -> Back {
    match answered {
        Ok(back) => back,
        Err(failed) => std::panic::resume_unwind(failed.into_panic()),
    }
}

/// A pass of the door, under way with the ledger.
struct Pass {
    task: tokio::task::JoinHandle<Passed>,
    /// The cards it may let out: their slots are taken.
    claims: usize,
}

/// The oldest pass under way, once done (passes are done in turn).
async fn oldest(passes: &mut VecDeque<Pass>) -> Passed {
    let pass = passes
        .front_mut()
        .expect("only asked with a pass under way");
    let passed = (&mut pass.task).await;
    passes.pop_front();
    passed.unwrap_or_else(|failed| std::panic::resume_unwind(failed.into_panic()))
}

/// What a pass came to: the ledger's word on each card, and the answers it
/// recorded, to be written.
struct Passed {
    leaving: Vec<Leaving>,
    answered: Vec<(Outcome, OwnedSemaphorePermit)>,
    decided: Result<Vec<Claimed>, crate::ledger::LedgerError>,
    now: Timestamp,
}

impl Pass {
    /// Sends the ledger a pass: it records `back` and decides `leaving`.
    fn start(mut leaving: Vec<Leaving>, back: Vec<Back>, shared: &Arc<Shared>) -> Pass {
        let now = Timestamp::now();
        let (settled, answered): (Vec<Settled>, Vec<(Outcome, OwnedSemaphorePermit)>) = back
            .into_iter()
            .map(|card| (card.settled, (card.outcome, card.permit)))
            .unzip();
        let passing = Passing {
            settled,
            claims: leaving.iter_mut().map(claim_of).collect(),
            rules: shared.rules,
            now: i64::try_from(now.as_nanosecond()).unwrap_or(i64::MAX),
            daily_cap: shared.gates.daily_cap.clone(),
        };
        let claims = leaving.len();
        let shared = shared.clone();
        let task = tokio::spawn(async move {
            let decided = shared.ledger.pass(&shared.campaign, passing).await;
            Passed {
                leaving,
                answered,
                decided,
                now,
            }
        });
        Pass { task, claims }
    }
}

impl Passed {
    /// Writes the answers' lines, and starts the requests of the cards let
    /// out; the others get their lines.
    async fn let_out(self, requests: &mut JoinSet<Back>, shared: &Arc<Shared>) {
        let Passed {
            leaving,
            answered,
            decided,
            now,
        } = self;
        // The answers go to the results file whatever the ledger said: if
        // it could not record them, the next run finds them there.
        for (outcome, permit) in answered {
            drop(permit);
            written(outcome, shared).await;
        }
        let decided = match decided {
            Ok(decided) => decided,
            Err(error) => {
                let control = &shared.control;
                control.halt(format!("cannot record the messages in the ledger: {error}"));
                refuse_all(leaving.into_iter(), shared).await;
                return;
            }
        };
        for (Leaving { job, permit, lane }, claimed) in leaving.into_iter().zip(decided) {
            let outcome = match claimed {
                Claimed::Granted { left_at, resending } => {
                    let granted = send::Granted { left_at, resending };
                    requests.spawn(send::send(job, permit, granted, lane, shared.clone()));
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
            drop(permit);
            written(outcome, shared).await;
        }
    }
}

/// What the ledger is asked of a card at the door: its facts as read go
/// with it.
fn claim_of(card: &mut Leaving) -> Claim {
    let recipient = &card.job.recipient;
    Claim {
        key: recipient.key.clone(),
        to: recipient.to.clone(),
        card_phone: recipient.contact_phone.clone(),
        instance_id: card.lane.instance_id.to_string(),
        as_read: card.job.as_read.take(),
    }
}

/// Gives the cards of a run that has stopped their lines, unsent.
async fn refuse_all(cards: impl Iterator<Item = Leaving>, shared: &Shared) {
    for Leaving { job, permit, lane } in cards {
        drop(permit);
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
