//! One message from its slot to its results line: sent, retried while that
//! cannot deliver it twice, and turned into an outcome.

use std::sync::Arc;

use tokio::sync::OwnedSemaphorePermit;
use tracing::{debug, warn};

use super::control::{LaneHealth, RunControl};
use super::Shared;
use crate::api::wire::Accepted;
use crate::api::{ApiClient, ContactMessage, SendError};
use crate::retry::{backoff, next_step, Next};
use crate::types::{Job, Outcome, Status};

/// Starts the request of a job that has its turn, its slot and its journal
/// line; its outcome goes to the results writer.
pub(super) fn start(
    job: Job,
    permit: OwnedSemaphorePermit,
    lane: &Arc<LaneHealth>,
    shared: &Arc<Shared>,
) {
    let (lane, shared) = (lane.clone(), shared.clone());
    shared
        .clone()
        .requests
        .spawn(send(job, permit, lane, shared));
}

async fn send(job: Job, permit: OwnedSemaphorePermit, lane: Arc<LaneHealth>, shared: Arc<Shared>) {
    let control = &shared.control;
    let outcome = send_with_retries(&shared.client, &job, control, &lane).await;
    drop(permit);
    match outcome.status {
        Status::Sent => {
            debug!(row = job.recipient.row, message_id = %outcome.message_id, attempts = outcome.attempts, "sent")
        }
        _ => {
            warn!(row = job.recipient.row, status = outcome.status.as_str(), error = %outcome.error, "not sent")
        }
    }
    // The writer only goes away early when it cannot write: then no more
    // messages may leave, since their outcome would be lost.
    if shared.outcomes.send(outcome).await.is_err() {
        control.halt("the results file cannot be written".to_string());
    }
}

/// The line of a job that will not be sent by this run.
pub(super) fn not_sent(job: &Job, lane: &LaneHealth, control: &RunControl) -> Outcome {
    let closed_as = lane
        .closed_as
        .lock()
        .expect("no close panics holding the lock")
        .clone();
    let (status, why) = match (control.stopping().is_cancelled(), closed_as) {
        (true, _) | (false, None) => (
            Status::Deferred,
            control
                .reason()
                .map(|reason| reason.why())
                .unwrap_or_default(),
        ),
        (false, Some((Status::Failed, why))) => (
            Status::Failed,
            format!("instance {} is out of rotation ({why})", lane.instance_id),
        ),
        (false, Some((status, why))) => (status, why),
    };
    let mut outcome = Outcome::for_job(job, &lane.instance_id, status);
    let resume = if status == Status::Deferred {
        "; --resume sends it"
    } else {
        ""
    };
    outcome.add_error(format!("not sent: {why}{resume}"));
    outcome
}

/// Sends one job, retrying transient failures, and says how it ended.
async fn send_with_retries(
    client: &ApiClient,
    job: &Job,
    control: &RunControl,
    lane: &LaneHealth,
) -> Outcome {
    let retry = &control.retry;
    let instance_id = &*lane.instance_id;
    let message = ContactMessage::from(job);
    let mut maybe_delivered = false;
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        let error = match client.send(instance_id, &message).await {
            Ok(accepted) => {
                break accepted_line(job, instance_id, accepted, attempts, maybe_delivered)
            }
            Err(error) => error,
        };
        if let SendError::Refused {
            http_status: 401 | 403,
            ..
        } = error
        {
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
            Next::Retry(retry_after) => retry_after.unwrap_or_else(|| backoff(retry, attempts)),
        };
        debug!(row = job.recipient.row, attempt = attempts, wait_ms = wait.as_millis() as u64, %error, "retrying");
        let stopped = tokio::select! {
            _ = control.stopping().cancelled() => true,
            _ = lane.closed.cancelled() => true,
            _ = tokio::time::sleep(wait) => false,
        };
        if stopped {
            // Not tried again: the run is stopping (DEFERRED, resume sends it)
            // or the instance is out of rotation (FAILED).
            let status = match given_up {
                Status::Failed if control.stopping().is_cancelled() => Status::Deferred,
                status => status,
            };
            let mut outcome = refused_line(job, instance_id, status, &error, attempts);
            outcome.add_error("stopped while waiting to try again".to_string());
            break outcome;
        }
    };
    if outcome.status != Status::Deferred {
        lane.count(control, outcome.status);
    }
    outcome
}

/// The line of a message the API accepted.
fn accepted_line(
    job: &Job,
    instance_id: &str,
    accepted: Accepted,
    attempts: u32,
    maybe_twice: bool,
) -> Outcome {
    let mut outcome = Outcome::for_job(job, instance_id, Status::Sent);
    outcome.attempts = attempts;
    outcome.http_status = Some(201);
    outcome.api_status = accepted.data.status;
    outcome.message_id = accepted.data.id;
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
