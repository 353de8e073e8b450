//! One card from the door to its answer: sent, retried while that cannot
//! deliver it twice, turned into its line and its record, and taken back to
//! the door with its slot.

use std::sync::Arc;
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, info};

use super::control::{LaneHealth, RunControl, Told};
use super::leaving::Back;
use super::{turns, Shared, NOTEWORTHY_WAIT};
use crate::api::{ContactMessage, Queued, SendError};
use crate::ledger::Settled;
use crate::retry::{backoff, next_step, Next};
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
    let mut outcome = Outcome::for_job(job, &lane.instance_id, Status::Deferred);
    outcome.add_error(format!("not sent: {why}; --resume sends it"));
    outcome
}

/// Sends one job, retrying transient failures, and says how it ended.
async fn send_with_retries(shared: &Shared, job: &Job, lane: &LaneHealth) -> Outcome {
    let control = &shared.control;
    let retry = &control.retry;
    let instance_id = &*lane.instance_id;
    let message = ContactMessage::from(job);
    let mut maybe_delivered = false;
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        let error = match shared.client.send(instance_id, &message).await {
            Ok(queued) => {
                if let Some(other) = &queued.other_instance {
                    control.answered_for(instance_id, other);
                }
                break accepted_line(job, instance_id, queued, attempts, maybe_delivered);
            }
            Err(error) => error,
        };
        if let SendError::Refused {
            http_status: 401 | 403,
            ..
        } = error
        {
            lane.hold_for_every_run(
                HoldKind::Paused,
                format!("refused by the API: {error}"),
                None,
            );
            control.retire(lane, format!("the API refused the credentials: {error}"));
            break refused_line(job, instance_id, Status::Failed, &error, attempts);
        }
        maybe_delivered |= matches!(error, SendError::Ambiguous { .. });
        let given_up = if maybe_delivered {
            Status::Unknown
        } else {
            Status::Failed
        };
        let wait = match next_step(&error, retry) {
            Next::Give(status) => break refused_line(job, instance_id, status, &error, attempts),
            Next::Retry(_) if attempts >= retry.max_attempts => {
                break refused_line(job, instance_id, given_up, &error, attempts)
            }
            Next::Retry(Some(asked)) if asked > retry.max_backoff => {
                // Waiting that long would hold a slot and the lock for it:
                // the instance stops for now, as at a daily cap.
                let reason = format!(
                    "the API asked instance {instance_id} to wait until {} (Retry-After: {} s), \
                     longer than retry.max_backoff = {} s",
                    after(asked),
                    asked.as_secs(),
                    retry.max_backoff.as_secs_f64()
                );
                lane.hold_for_every_run(HoldKind::Held, reason.clone(), Some(asked));
                control.defer(
                    lane,
                    Deferral {
                        cause: Hold::ApiWait,
                        why: reason.clone(),
                        until: jiff::SignedDuration::try_from(asked)
                            .ok()
                            .and_then(|wait| Timestamp::now().checked_add(wait).ok()),
                    },
                );
                let status = if maybe_delivered {
                    Status::Unknown
                } else {
                    Status::Deferred
                };
                let mut outcome = refused_line(job, instance_id, status, &error, attempts);
                outcome.add_error(format!("not sent again: {reason}"));
                break outcome;
            }
            Next::Retry(retry_after) => retry_after.unwrap_or_else(|| backoff(retry, attempts)),
        };
        if wait > NOTEWORTHY_WAIT {
            match lane.first_time(Told::LongRetry) {
                true => {
                    info!(row = job.recipient.row, instance = instance_id, %error, "retrying in {} s (later long waits to retry: -v)", wait.as_secs())
                }
                false => {
                    debug!(row = job.recipient.row, instance = instance_id, %error, "retrying in {} s", wait.as_secs())
                }
            }
            shared
                .gates
                .progress
                .waiting(Some(format!("retrying in {} s ({error})", wait.as_secs())));
        } else {
            debug!(row = job.recipient.row, attempt = attempts, wait_ms = wait.as_millis() as u64, %error, "retrying");
        }
        // The backoff, then the instance's own clock, as for a first try:
        // a retry never goes around the number's pacing.
        let stopped = tokio::select! {
            _ = control.stopping().cancelled() => true,
            _ = lane.closed.cancelled() => true,
            booked = async {
                tokio::time::sleep(wait).await;
                let turn = turns::book_turns(std::slice::from_ref(job), lane, shared, None).await?;
                turns::wait_for(turn[0], lane, shared).await;
                Some(())
            } => booked.is_none(),
        };
        if wait > NOTEWORTHY_WAIT {
            shared.gates.progress.waiting(None);
        }
        // Not tried again when the run is stopping, the instance took no
        // more messages, or the recipient's window shut meanwhile:
        // DEFERRED, so a later --resume sends it; unless an earlier try may
        // have been delivered.
        let not_again = match (stopped, shared.gates.window_shut_for(job)) {
            (true, _) => Some("stopped while waiting to try again".to_string()),
            (false, Some(shut)) => {
                let why = format!("not tried again: {}", shut.why);
                control.held_back(shut);
                Some(why)
            }
            (false, None) => None,
        };
        if let Some(why) = not_again {
            let status = if maybe_delivered {
                Status::Unknown
            } else {
                Status::Deferred
            };
            let mut outcome = refused_line(job, instance_id, status, &error, attempts);
            outcome.add_error(why);
            break outcome;
        }
    };
    if outcome.status != Status::Deferred {
        lane.count(control, outcome.status);
    }
    outcome
}

/// The time `wait` from now, as a log line shows it.
fn after(wait: Duration) -> String {
    jiff::SignedDuration::try_from(wait)
        .ok()
        .and_then(|wait| jiff::Timestamp::now().checked_add(wait).ok())
        .map_or_else(
            || "a time past any calendar".to_string(),
            |at| at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string(),
        )
}

/// The line of a message the API queued.
fn accepted_line(
    job: &Job,
    instance_id: &str,
    queued: Queued,
    attempts: u32,
    maybe_twice: bool,
) -> Outcome {
    let mut outcome = Outcome::for_job(job, instance_id, Status::Sent);
    outcome.attempts = attempts;
    outcome.http_status = Some(queued.http_status);
    outcome.api_status = queued.api_status;
    outcome.message_id = queued.message_id;
    if let Some(other) = queued.other_instance {
        outcome.add_error(format!(
            "the API's answer names instance {other}, not {instance_id}: check api.instance_id"
        ));
    }
    if maybe_twice {
        outcome
            .add_error("an earlier try may also have been delivered (retry_ambiguous)".to_string());
    }
    outcome
}

/// The line of a message not accepted, after `attempts` tries, ending in `error`.
fn refused_line(
    job: &Job,
    instance_id: &str,
    status: Status,
    error: &SendError,
    attempts: u32,
) -> Outcome {
    let mut outcome = Outcome::for_job(job, instance_id, status);
    outcome.attempts = attempts;
    outcome.http_status = error.http_status();
    outcome.add_error(error.to_string());
    outcome
}
