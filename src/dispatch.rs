//! The worker pool: jobs wait for their instance's turn and a free slot, are
//! sent (and retried when that is safe), and their outcome goes to the
//! results writer. Halts and signals stop it taking new jobs.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, warn};

use crate::api::{ApiClient, ContactMessage, SendError};
use crate::campaign::Job;
use crate::config::RetrySettings;
use crate::pacing::InstancePacer;
use crate::results::{Journal, Outcome, Status};

/// One WhatsApp number and its pacing.
pub struct Lane {
    pub instance_id: String,
    pub pacer: InstancePacer,
}

/// Why the run stopped taking rows before the end of the campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// Every further message would fail the same way, or too many failed.
    Halted(String),
}

impl StopReason {
    fn why(&self) -> String {
        match self {
            StopReason::Interrupted => "the run was interrupted".to_string(),
            StopReason::Halted(reason) => format!("the run halted ({reason})"),
        }
    }
}

/// What the workers share to stop the run: the signal token from outside,
/// a halt that any worker can call, and the failure count behind it.
pub struct RunControl {
    signal: CancellationToken,
    stop: CancellationToken,
    halted: Mutex<Option<String>>,
    retry: RetrySettings,
    finished: AtomicU64,
    failed: AtomicU64,
}

impl RunControl {
    pub fn new(signal: CancellationToken, retry: RetrySettings) -> Arc<Self> {
        Arc::new(RunControl {
            stop: signal.child_token(),
            signal,
            halted: Mutex::new(None),
            retry,
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        })
    }

    /// Cancelled when the run must stop taking rows, for whatever reason.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stop
    }

    /// Stops the run for `reason`; the first halt's reason is kept.
    pub fn halt(&self, reason: String) {
        let mut halted = self.halted.lock().expect("no halt panics holding the lock");
        if halted.is_none() {
            error!("halting: {reason}");
            *halted = Some(reason);
        }
        self.stop.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        let halted = self
            .halted
            .lock()
            .expect("no halt panics holding the lock")
            .clone();
        match halted {
            Some(reason) => Some(StopReason::Halted(reason)),
            None if self.signal.is_cancelled() => Some(StopReason::Interrupted),
            None => None,
        }
    }

    /// Counts a finished message and halts when too many failed.
    fn count(&self, status: Status) {
        let finished = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let failed = self
            .failed
            .fetch_add(u64::from(status != Status::Sent), Ordering::SeqCst)
            + u64::from(status != Status::Sent);
        let ratio = failed as f64 / finished as f64;
        if finished >= self.retry.min_attempts_before_halt && ratio > self.retry.max_failure_ratio {
            self.halt(format!(
                "{failed} of {finished} messages failed, above retry.max_failure_ratio = {}",
                self.retry.max_failure_ratio
            ));
        }
    }
}

/// Sends every job from `jobs` through `lane`, at most `concurrency`
/// requests in flight. Once the run stops, the jobs still coming are
/// written `DEFERRED` for a later `--resume`. Returns when every request it
/// started has its outcome sent on.
pub async fn dispatch(
    mut jobs: mpsc::Receiver<Job>,
    mut lane: Lane,
    client: Arc<ApiClient>,
    concurrency: NonZeroUsize,
    journal: Arc<Journal>,
    outcomes: mpsc::Sender<Outcome>,
    control: Arc<RunControl>,
) {
    let in_flight = Arc::new(Semaphore::new(concurrency.get()));
    let requests = TaskTracker::new();
    let instance_id: Arc<str> = lane.instance_id.into();
    let stop = control.stopping().clone();
    let mut held_back = None;
    loop {
        let job = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => break,
            },
        };
        // Pacing first: a job waiting for its instance's turn must not hold a slot.
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            permit = async {
                lane.pacer.wait_turn(&job.timing).await;
                in_flight.clone().acquire_owned().await.expect("the semaphore is never closed")
            } => Some(permit),
        };
        let Some(permit) = permit else {
            held_back = Some(job);
            break;
        };
        if let Err(error) = journal.sending(&job) {
            control.halt(format!("cannot write the journal: {error}"));
            held_back = Some(job);
            break;
        }
        let (client, outcomes, instance_id, control) = (
            client.clone(),
            outcomes.clone(),
            instance_id.clone(),
            control.clone(),
        );
        requests.spawn(async move {
            let outcome = send_with_retries(&client, &instance_id, &job, &control).await;
            drop(permit);
            match outcome.status {
                Status::Sent => debug!(row = job.row, message_id = %outcome.message_id, attempts = outcome.attempts, "sent"),
                _ => warn!(row = job.row, status = outcome.status.as_str(), error = %outcome.error, "not sent"),
            }
            // The writer only goes away early when it cannot write: then
            // no more messages may leave, since their outcome would be lost.
            if outcomes.send(outcome).await.is_err() {
                control.halt("the results file cannot be written".to_string());
            }
        });
    }

    // Stopped (or done): every job not sent still gets its line.
    let why = control
        .reason()
        .map(|reason| reason.why())
        .unwrap_or_default();
    if let Some(job) = held_back {
        let _ = outcomes.send(deferred(&job, &instance_id, &why)).await;
    }
    while let Some(job) = jobs.recv().await {
        let _ = outcomes.send(deferred(&job, &instance_id, &why)).await;
    }
    requests.close();
    requests.wait().await;
}

fn deferred(job: &Job, instance_id: &str, why: &str) -> Outcome {
    let mut outcome = Outcome::for_job(job, instance_id, Status::Deferred);
    outcome.add_error(format!("not sent: {why}; --resume sends it"));
    outcome
}

/// What to do after one failed try.
enum Next {
    /// Try again, after at least this long (the server's `Retry-After`).
    Retry(Option<Duration>),
    /// Final: this status.
    Give(Status),
}

fn next_step(error: &SendError, retry: &RetrySettings) -> Next {
    match error {
        SendError::Refused {
            http_status,
            retry_after,
            ..
        } => match http_status {
            429 | 500 | 502 | 503 | 504 => Next::Retry(*retry_after),
            _ => Next::Give(Status::Failed),
        },
        SendError::Unreachable(_) => Next::Retry(None),
        SendError::Ambiguous { .. } if retry.retry_ambiguous => Next::Retry(None),
        SendError::Ambiguous { .. } => Next::Give(Status::Unknown),
    }
}

/// Exponential backoff with full jitter: a random wait up to a ceiling that
/// doubles each try, so many failing clients do not retry in step.
pub fn backoff(retry: &RetrySettings, failed_tries: u32) -> Duration {
    let doubling = 2f64.powi(failed_tries.saturating_sub(1).min(30) as i32);
    let ceiling = retry
        .initial_backoff
        .mul_f64(doubling)
        .min(retry.max_backoff);
    ceiling.mul_f64(fastrand::f64())
}

/// Sends one job, retrying transient failures, and says how it ended.
async fn send_with_retries(
    client: &ApiClient,
    instance_id: &str,
    job: &Job,
    control: &RunControl,
) -> Outcome {
    let retry = &control.retry;
    let message = ContactMessage::from(job);
    let mut maybe_delivered = false;
    let mut attempts = 0;
    let outcome = loop {
        attempts += 1;
        let error = match client.send(instance_id, &message).await {
            Ok(accepted) => {
                break Outcome::accepted(job, instance_id, accepted, attempts, maybe_delivered)
            }
            Err(error) => error,
        };
        if let SendError::Refused {
            http_status: 401 | 403,
            ..
        } = error
        {
            control.halt(format!("the API refused the credentials: {error}"));
            break Outcome::refused(job, instance_id, Status::Failed, &error, attempts);
        }
        maybe_delivered |= matches!(error, SendError::Ambiguous { .. });
        let wait = match next_step(&error, retry) {
            Next::Give(status) => {
                break Outcome::refused(job, instance_id, status, &error, attempts)
            }
            Next::Retry(_)
                if attempts >= retry.max_attempts || control.stopping().is_cancelled() =>
            {
                let status = if maybe_delivered {
                    Status::Unknown
                } else {
                    Status::Failed
                };
                break Outcome::refused(job, instance_id, status, &error, attempts);
            }
            Next::Retry(retry_after) => retry_after.unwrap_or_else(|| backoff(retry, attempts)),
        };
        debug!(row = job.row, attempt = attempts, wait_ms = wait.as_millis() as u64, %error, "retrying");
        tokio::select! {
            _ = control.stopping().cancelled() => {
                let status = if maybe_delivered { Status::Unknown } else { Status::Deferred };
                let mut outcome = Outcome::refused(job, instance_id, status, &error, attempts);
                outcome.add_error("stopped while waiting to try again".to_string());
                break outcome;
            }
            _ = tokio::time::sleep(wait) => {}
        }
    };
    if outcome.status != Status::Deferred {
        control.count(outcome.status);
    }
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> RetrySettings {
        RetrySettings {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetrySettings::default()
        }
    }

    #[test]
    fn backoff_stays_under_a_doubling_ceiling() {
        for _ in 0..200 {
            assert!(backoff(&retry(), 1) <= Duration::from_millis(100));
            assert!(backoff(&retry(), 3) <= Duration::from_millis(400));
            assert!(backoff(&retry(), 30) <= Duration::from_millis(1000));
        }
    }

    #[test]
    fn transient_answers_are_retried_and_permanent_ones_are_not() {
        let refused = |http_status| SendError::Refused {
            http_status,
            message: String::new(),
            retry_after: None,
        };
        for status in [429, 500, 502, 503, 504] {
            assert!(
                matches!(next_step(&refused(status), &retry()), Next::Retry(_)),
                "{status}"
            );
        }
        for status in [400, 404, 409, 422] {
            assert!(
                matches!(
                    next_step(&refused(status), &retry()),
                    Next::Give(Status::Failed)
                ),
                "{status}"
            );
        }
        assert!(matches!(
            next_step(&SendError::Unreachable(String::new()), &retry()),
            Next::Retry(None)
        ));
    }

    #[test]
    fn an_ambiguous_answer_is_unknown_unless_the_user_opts_in() {
        let lost = SendError::Ambiguous {
            http_status: None,
            detail: String::new(),
        };
        assert!(matches!(
            next_step(&lost, &retry()),
            Next::Give(Status::Unknown)
        ));
        let opted_in = RetrySettings {
            retry_ambiguous: true,
            ..retry()
        };
        assert!(matches!(next_step(&lost, &opted_in), Next::Retry(None)));
    }

    #[test]
    fn too_many_failures_halt_the_run_once_enough_were_tried() {
        let control = RunControl::new(
            CancellationToken::new(),
            RetrySettings {
                min_attempts_before_halt: 4,
                max_failure_ratio: 0.5,
                ..retry()
            },
        );
        for status in [Status::Failed, Status::Failed, Status::Sent] {
            control.count(status);
        }
        assert!(control.reason().is_none(), "3 tried is below the minimum");
        control.count(Status::Unknown);
        assert!(matches!(control.reason(), Some(StopReason::Halted(_))));
        assert!(control.stopping().is_cancelled());
    }

    #[test]
    fn a_signal_stops_the_run_as_interrupted() {
        let signal = CancellationToken::new();
        let control = RunControl::new(signal.clone(), retry());
        signal.cancel();
        assert!(control.stopping().is_cancelled());
        assert_eq!(control.reason(), Some(StopReason::Interrupted));
    }
}
