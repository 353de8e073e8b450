//! The door every card leaves by and comes back through, one for the whole
//! run. A card whose turn has come waits at the door for a request slot
//! (`pacing.concurrency` of them), and, if it came late (it waited for a
//! slot past its turn), until its number's last request is a turn behind
//! (`turns::Spacing`): it never leaves on top of the next card's turn. In
//! each pass the ledger, in one
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
use tokio::time::Instant;

use super::control::LaneHealth;
use super::{send, Shared};
use crate::ledger::{Claim, Claimed, Passing, Settled};
use crate::types::{nanos_of, Cause, Deferral, Hold, Job, Outcome};

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
    // The cards let out, each its request, which ends in its way back: as
    // many as there are slots.
    let mut requests: JoinSet<Back> = JoinSet::new();
    let mut waiting: VecDeque<Leaving> = VecDeque::new();
    // The cards back whose answers the next pass records.
    let mut back: Vec<Back> = Vec::new();
    let mut arrived = Vec::with_capacity(MOST_AT_ONCE);
    let mut lanes_open = true;
    // Until every lane is done, and every card back, recorded and written.
    while lanes_open || !requests.is_empty() || !waiting.is_empty() || !back.is_empty() {
        let now = shared.clock.instant();
        // When the first card waiting may leave, with a slot free.
        let ready = match shared.concurrency > requests.len() {
            true => first_ready(&waiting, &shared, now),
            false => None,
        };
        tokio::select! {
            biased;
            Some(answered) = requests.join_next(), if !requests.is_empty() => {
                back.push(unless_panicked(answered));
            }
            taken = door.recv_many(&mut arrived, MOST_AT_ONCE), if lanes_open => {
                lanes_open = taken > 0;
            }
            // Cards waiting with a slot free, or back with nothing else to
            // wait for.
            () = std::future::ready(()), if ready.is_some_and(|at| at <= now) || !back.is_empty() => {}
            // A card's number ready again.
            () = tokio::time::sleep_until(ready.unwrap_or(now)), if ready.is_some() => {}
        }
        // At a fast pace, the requests that are ready finish first: a pass
        // costs the ledger a commit, worth sharing among many cards.
        if shared.pace.is_fast() {
            tokio::task::yield_now().await;
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
        // The slots of the cards back are free again once this pass records
        // their answers: the cards let out in it may take them.
        let free = shared.concurrency.saturating_sub(requests.len());
        let mut leaving = let_out(&mut waiting, free.min(MOST_AT_ONCE), &shared);
        pass(&mut leaving, &mut back, &mut requests, &shared).await;
    }
}

/// Up to `most` of the cards `waiting`, in the order they came, whose
/// numbers' pace lets them leave now ([`super::turns::Spacing`]); the rest
/// wait on, with no slot and no record.
fn let_out(waiting: &mut VecDeque<Leaving>, most: usize, shared: &Shared) -> Vec<Leaving> {
    let now = shared.clock.instant();
    let mut leaving = Vec::new();
    let mut kept = VecDeque::with_capacity(waiting.len());
    for card in waiting.drain(..) {
        let phone_time = card.job.timing.phone_time();
        match leaving.len() < most && card.lane.spacing.leave(shared.pace, phone_time, now) {
            true => leaving.push(card),
            false => kept.push_back(card),
        }
    }
    *waiting = kept;
    leaving
}

/// When the first of the cards `waiting` may leave by its number's pace
/// (`now` as soon as one may); `None` when none waits.
fn first_ready(waiting: &VecDeque<Leaving>, shared: &Shared, now: Instant) -> Option<Instant> {
    let mut first = None;
    for card in waiting {
        let at = card.lane.spacing.ready_at(shared.pace).unwrap_or(now);
        if at <= now {
            return Some(now);
        }
        first = Some(first.map_or(at, |first: Instant| first.min(at)));
    }
    first
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
/// (both emptied); the cards it lets out start their requests in
/// `requests`, but for those of a run or a number that stopped while the
/// ledger worked, which come back unsent, for the next pass to forget.
async fn pass(
    leaving: &mut Vec<Leaving>,
    back: &mut Vec<Back>,
    requests: &mut JoinSet<Back>,
    shared: &Arc<Shared>,
) {
    if leaving.is_empty() && back.is_empty() {
        return;
    }
    let now = shared.clock.now();
    let (settled, answered): (Vec<Settled>, Vec<(Outcome, OwnedSemaphorePermit)>) = back
        .drain(..)
        .map(|card| (card.settled, (card.outcome, card.permit)))
        .unzip();
    let passing = Passing {
        settled,
        claims: leaving.iter_mut().map(claim_of).collect(),
        rules: shared.rules,
        now: nanos_of(now),
        daily_cap: shared.gates.daily_cap.clone(),
    };
    let decided = shared.ledger.pass(&shared.campaign, passing).await;
    // The answers go to the results file whatever the ledger said: if it
    // could not record them, the next run finds them there.
    for (outcome, permit) in answered {
        drop(permit);
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
    for (card, claimed) in leaving.drain(..).zip(decided) {
        carry_out(card, claimed, back, requests, shared).await;
    }
}

/// What the ledger decided for one card: its request starts (or, should
/// the run or its number have stopped meanwhile, it comes back unsent); or
/// it gets its line, held back or deferred, and its slot is freed.
async fn carry_out(
    Leaving { job, permit, lane }: Leaving,
    claimed: Claimed,
    back: &mut Vec<Back>,
    requests: &mut JoinSet<Back>,
    shared: &Arc<Shared>,
) {
    let outcome = match claimed {
        Claimed::Granted { left_at, resending } => {
            let granted = send::Granted { left_at, resending };
            // No request leaves once the run or the number stopped.
            if shared.control.stopping().is_cancelled() || lane.closed.is_cancelled() {
                let outcome = send::not_sent(&job, &lane, &shared.control);
                back.push(send::back(job, outcome, permit, granted));
                return;
            }
            requests.spawn(send::send(job, permit, granted, lane, shared.clone()));
            return;
        }
        Claimed::Held(cause) => {
            if let Cause::FirstContacts { cap, until } = cause {
                shared
                    .control
                    .held_back(first_contacts_used_up(&lane, cap, until));
            }
            Outcome::held(&job, &lane.instance_id, cause, shared.clock.now())
        }
        Claimed::CapReached { cap, until } => {
            shared
                .control
                .defer(&lane, daily_cap_reached(&lane, cap, until));
            send::not_sent(&job, &lane, &shared.control)
        }
    };
    drop(permit);
    written(outcome, shared).await;
}

/// Why a number's rows to new recipients wait: its first contacts for the
/// day are used up, until its next day.
fn first_contacts_used_up(lane: &LaneHealth, cap: u64, until: Option<i64>) -> Deferral {
    Deferral {
        cause: Hold::FirstContacts,
        why: format!(
            "instance {} used up its first contacts for today \
             (schedule.daily_new_contacts = {cap}); the rows to new recipients wait",
            lane.instance_id
        ),
        until: next_day(until),
    }
}

/// Why a number sends no more today: it reached its daily cap.
fn daily_cap_reached(lane: &LaneHealth, cap: u64, until: Option<i64>) -> Deferral {
    Deferral {
        cause: Hold::DailyCap,
        why: format!(
            "instance {} reached its daily cap of {cap} messages",
            lane.instance_id
        ),
        until: next_day(until),
    }
}

/// The number's next day, as the ledger tells it (nanoseconds since 1970,
/// in the zone the ledger keeps its days in).
fn next_day(until: Option<i64>) -> Option<Timestamp> {
    until.and_then(|at| Timestamp::from_nanosecond(at.into()).ok())
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
