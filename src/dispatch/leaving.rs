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

use super::control::LaneHealth;
use super::{send, Shared};
use crate::ledger::{Claim, Claimed, Passing, Settled};
use crate::types::{Deferral, Hold, Job, Outcome};

/// What comes to the door.
pub(super) enum AtTheDoor {
    /// A card whose turn has come, with its request slot: it leaves if the
    /// ledger lets it.
    Leaving(Box<Leaving>),
    /// A card that left, with its answer: recorded before its slot is freed.
    Back(Box<Back>),
}

/// A card whose turn has come, on its way out.
pub(super) struct Leaving {
    pub job: Job,
    pub slot: OwnedSemaphorePermit,
    pub lane: Arc<LaneHealth>,
}

/// A card that left, with its line and its record for the ledger.
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
pub(super) async fn run_door(
    mut door: mpsc::UnboundedReceiver<AtTheDoor>,
    back_door: mpsc::UnboundedSender<AtTheDoor>,
    lanes_done: tokio_util::sync::CancellationToken,
    shared: Arc<Shared>,
) {
    // Cards let out whose answer is not back yet.
    let mut out = 0_usize;
    let mut items = Vec::with_capacity(MOST_AT_ONCE);
    loop {
        if out == 0 && lanes_done.is_cancelled() && door.is_empty() {
            break;
        }
        tokio::select! {
            biased;
            _ = door.recv_many(&mut items, MOST_AT_ONCE) => {}
            () = lanes_done.cancelled(), if out == 0 => continue,
        }
        let mut leaving = Vec::new();
        let mut back = Vec::new();
        for item in items.drain(..) {
            match item {
                AtTheDoor::Leaving(card) => leaving.push(*card),
                AtTheDoor::Back(card) => back.push(*card),
            }
        }
        out -= back.len();
        // A run that is stopping lets nothing more out.
        if shared.control.stopping().is_cancelled() {
            refuse_all(leaving.drain(..), &shared).await;
        }
        out += pass(leaving, back, &back_door, &shared).await;
    }
}

/// One pass of the door: the ledger records `back` and decides `leaving`;
/// returns how many cards it let out.
async fn pass(
    leaving: Vec<Leaving>,
    back: Vec<Back>,
    back_door: &mpsc::UnboundedSender<AtTheDoor>,
    shared: &Arc<Shared>,
) -> usize {
    if leaving.is_empty() && back.is_empty() {
        return 0;
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
            refuse_all(leaving.into_iter(), shared).await;
            return 0;
        }
    };
    let mut let_out = 0;
    for (Leaving { job, slot, lane }, claimed) in leaving.into_iter().zip(decided) {
        let outcome = match claimed {
            Claimed::Granted { left_at, resending } => {
                let granted = send::Granted { left_at, resending };
                send::start(job, slot, granted, &lane, shared, back_door.clone());
                let_out += 1;
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
    let_out
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
