//! One card from the door to its answer: sent, retried while that cannot
//! deliver it twice, turned into its line and its record, and taken back to
//! the door with its slot.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info};

use super::control::{LaneHealth, RunControl, Told};
use super::leaving::Back;
use super::{turns, Shared, NOTEWORTHY_WAIT};
use crate::api::{ContactMessage, Queued, SendError};
use crate::clock::Clock;
use crate::ledger::Settled;
use crate::retry::{next_step, Next, Tried};
use crate::types::{nanos_of, Deferral, Fate, Hold, HoldKind, Job, Outcome, Remembered, Status};

/// What the ledger said of a card it let out.
#[derive(Debug, Clone, Copy)]
pub(super) struct Granted {
    /// When it was recorded as leaving, nanoseconds since 1970.
    pub left_at: i64,
    /// An earlier try may have been delivered (`--resend-unknown`).
    pub resending: bool,
}

/// Sends a card the ledger let out; returns it on its way back to the door,
/// with its line and its record.
pub(super) async fn send(
    job: Job,
    permit: OwnedSemaphorePermit,
    granted: Granted,
    lane: Arc<LaneHealth>,
    shared: Arc<Shared>,
) -> Back {
    let outcome = send_with_retries(&shared, &job, &lane).await;
    match outcome.status {
        Status::Sent => {
            debug!(row = job.recipient.row, message_id = %outcome.message_id, attempts = outcome.attempts, "sent")
        }
        // A line a row is for -v: the results file has every row, and the
        // summary counts them.
        _ => {
            debug!(row = job.recipient.row, status = outcome.status.as_str(), error = %outcome.error, "not sent")
        }
    }
    back(job, outcome, permit, granted)
}

/// A card the ledger let out on its way back to the door, with its line,
/// and its record for the ledger: once answered, or when it never left
/// (the run or its number stopped while the ledger worked).
pub(super) fn back(
    job: Job,
    outcome: Outcome,
    permit: OwnedSemaphorePermit,
    granted: Granted,
) -> Back {
    let answer = answer_of(&outcome, granted);
    let recipient = job.recipient;
    let settled = Settled {
        key: recipient.key,
        to: recipient.to,
        card_phone: recipient.contact_phone,
        left_at: granted.left_at,
        answer,
    };
    Back {
        settled,
        outcome,
        permit,
    }
}

/// The campaign's record of a card once its answer came: `None` when its
/// request never reached the API (the ledger forgets it, so a later run
/// sends it). A card sent again on request whose new try failed stays in
/// doubt: the earlier one may have been delivered.
fn answer_of(outcome: &Outcome, granted: Granted) -> Option<Remembered> {
    let fate = match outcome.status {
        Status::Sent => Fate::Sent,
        Status::Unknown => Fate::Unknown,
        _ if granted.resending => Fate::Unknown,
        Status::Failed => Fate::Failed,
        _ => return None,
    };
    Some(Remembered {
        fate,
        to: outcome.recipient.to.clone(),
        card_phone: outcome.recipient.contact_phone.clone(),
        instance_id: outcome.instance_id.clone(),
        message_id: outcome.message_id.clone(),
        api_status: outcome.api_status.clone(),
        http_status: outcome.http_status,
        attempts: outcome.attempts,
        left_at: granted.left_at,
        finished_at: nanos_of(outcome.finished_at),
        in_flight_until: 0,
    })
}

/// The line of a job this run did not try: `DEFERRED`, whatever stopped it
/// (the run, or its instance leaving rotation), so a later `--resume` tries it.
pub(super) fn not_sent(job: &Job, lane: &LaneHealth, control: &RunControl) -> Outcome {
    let closed_for = lane
        .closed_for
        .lock()
        .expect("no close panics holding the lock")
        .clone();
    let why = match (control.stopping().is_cancelled(), closed_for) {
        (false, Some(why)) => why,
        _ => control
            .reason()
            .map(|reason| reason.why())
            .unwrap_or_default(),
    };
    let at = lane.clock.now();
    let mut outcome = Outcome::for_job(job, &lane.instance_id, Status::Deferred, at);
    outcome.add_error(format!("not sent: {why}; --resume sends it"));
    outcome
}

/// Sends one job, trying again as the retry policy ([`next_step`]) says,
/// and says how it ended.
async fn send_with_retries(shared: &Shared, job: &Job, lane: &LaneHealth) -> Outcome {
    let control = &shared.control;
    let instance_id = &*lane.instance_id;
    let message = ContactMessage::from(job);
    let mut tried = Tried {
        attempts: 0,
        maybe_delivered: false,
    };
    let outcome = loop {
        tried.attempts += 1;
        let error = match shared.client.send(instance_id, &message).await {
            Ok(queued) => {
                if let Some(other) = &queued.other_instance {
                    control.answered_for(instance_id, other);
                }
                break accepted_line(job, lane, queued, tried);
            }
            Err(error) => error,
        };
        tried.maybe_delivered |= matches!(error, SendError::Ambiguous { .. });
        let wait = match next_step(&error, tried, &control.retry) {
            Next::Retry(wait) => wait,
            Next::GiveUp(status) => break refused_line(job, lane, status, &error, tried),
            Next::RetireNumber => {
                lane.hold_for_every_run(
                    HoldKind::Refused,
                    format!("refused by the API: {error}"),
                    None,
                );
                control.needs_a_person(lane);
                control.retire(lane, format!("the API refused the credentials: {error}"));
                break refused_line(job, lane, Status::Failed, &error, tried);
            }
            Next::HoldNumber { wait, status } => {
                let why = hold_number(wait, lane, control);
                let mut outcome = refused_line(job, lane, status, &error, tried);
                outcome.add_error(format!("not sent again: {why}"));
                break outcome;
            }
        };
        if let Some(why) = wait_to_try_again(wait, &error, job, lane, shared).await {
            let status = tried.not_tried_again();
            let mut outcome = refused_line(job, lane, status, &error, tried);
            outcome.add_error(why);
            break outcome;
        }
    };
    if outcome.status != Status::Deferred {
        lane.count(control, outcome.status);
    }
    outcome
}

/// The API asked the number to wait `wait`, longer than
/// `retry.max_backoff`: waiting would hold a slot for it, so the number
/// stops for now, as at a daily cap, and is held that long for every run.
/// Returns why, in words.
fn hold_number(wait: Duration, lane: &LaneHealth, control: &RunControl) -> String {
    let instance_id = &*lane.instance_id;
    let reason = format!(
        "the API asked instance {instance_id} to wait until {} (Retry-After: {} s), longer \
         than retry.max_backoff = {} s",
        after(wait, &lane.clock),
        wait.as_secs(),
        control.retry.max_backoff.as_secs_f64()
    );
    lane.hold_for_every_run(HoldKind::Held, reason.clone(), Some(wait));
    control.defer(
        lane,
        Deferral {
            cause: Hold::ApiWait,
            why: reason.clone(),
            until: jiff::SignedDuration::try_from(wait)
                .ok()
                .and_then(|wait| lane.clock.now().checked_add(wait).ok()),
        },
    );
    reason
}

/// Waits `wait`, then the number's own turn, as for a first try: a retry
/// never goes around the number's pacing. `Some(why)` when the message is
/// not to be tried again after all: the run is stopping, the number took no
/// more messages, or the recipient's send window shut meanwhile.
async fn wait_to_try_again(
    wait: Duration,
    error: &SendError,
    job: &Job,
    lane: &LaneHealth,
    shared: &Shared,
) -> Option<String> {
    let control = &shared.control;
    let (instance, row) = (&*lane.instance_id, job.recipient.row);
    let _shown = if wait > NOTEWORTHY_WAIT {
        let seconds = wait.as_secs();
        match lane.first_time(Told::LongRetry) {
            true => {
                info!(row, instance, %error, "retrying in {seconds} s (later long waits to retry: -v)")
            }
            false => debug!(row, instance, %error, "retrying in {seconds} s"),
        }
        let progress = &shared.gates.progress;
        Some(progress.waiting_while(format!("retrying in {seconds} s ({error})")))
    } else {
        debug!(row, wait_ms = wait.as_millis() as u64, %error, "retrying");
        None
    };
    let stopped = tokio::select! {
        _ = control.stopping().cancelled() => true,
        _ = lane.closed.cancelled() => true,
        booked = async {
            tokio::time::sleep(wait).await;
            let turn = turns::book_turns(std::slice::from_ref(job), lane, shared, None).await?;
            turns::wait_for(turn[0], lane, shared).await;
            turns::spaced(job, lane, shared).await;
            Some(())
        } => booked.is_none(),
    };
    if stopped {
        return Some("stopped while waiting to try again".to_string());
    }
    let shut = shared.gates.window_shut_for(job, shared.clock.now())?;
    let why = format!("not tried again: {}", shut.why);
    control.held_back(shut);
    Some(why)
}

/// The time `wait` from now, as a log line shows it.
fn after(wait: Duration, clock: &Clock) -> String {
    jiff::SignedDuration::try_from(wait)
        .ok()
        .and_then(|wait| clock.now().checked_add(wait).ok())
        .map_or_else(
            || "a time past any calendar".to_string(),
            |at| at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// The line of a message the API queued.
fn accepted_line(job: &Job, lane: &LaneHealth, queued: Queued, tried: Tried) -> Outcome {
    let instance_id = &*lane.instance_id;
    let at = lane.clock.now();
    let mut outcome = Outcome::for_job(job, instance_id, Status::Sent, at);
    outcome.attempts = tried.attempts;
    outcome.http_status = Some(queued.http_status);
    outcome.api_status = queued.api_status;
    outcome.message_id = queued.message_id;
    if let Some(other) = queued.other_instance {
        outcome.add_error(format!(
            "the API's answer names instance {other}, not {instance_id}: check api.instance_id"
        ));
    }
    if tried.maybe_delivered {
        outcome
            .add_error("an earlier try may also have been delivered (retry_ambiguous)".to_string());
    }
    outcome
}

/// The line of a message not accepted, after its tries, ending in `error`.
fn refused_line(
    job: &Job,
    lane: &LaneHealth,
    status: Status,
    error: &SendError,
    tried: Tried,
) -> Outcome {
    let at = lane.clock.now();
    let mut outcome = Outcome::for_job(job, &lane.instance_id, status, at);
    outcome.attempts = tried.attempts;
    outcome.http_status = error.http_status();
    outcome.add_error(error.to_string());
    outcome
}
