//! The worker pool: jobs wait for their instance's turn and a free slot, are
//! sent (and retried when that is safe), and their outcome goes to the
//! results writer. Halts and signals stop it taking new jobs.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
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

/// Picks the instance for a recipient by rendezvous hashing of the
/// normalised `to`: a conversation stays on one number across runs, and
/// adding or removing a number moves only that number's share.
pub fn assign<S: AsRef<str>>(to: &str, instances: &[S]) -> usize {
    (0..instances.len())
        .max_by_key(|&index| stable_hash(instances[index].as_ref(), to))
        .unwrap_or(0)
}

/// FNV-1a, then a 64-bit finaliser (splitmix64): the same on every machine
/// and every version, unlike the standard library's hasher.
fn stable_hash(instance: &str, to: &str) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in instance.bytes().chain([0xff]).chain(to.bytes()) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash = (hash ^ (hash >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    hash = (hash ^ (hash >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    hash ^ (hash >> 31)
}

/// Why the run stopped taking rows before the end of the campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// No instance is left: every further message would fail the same way.
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
/// and a halt that any worker can call.
pub struct RunControl {
    signal: CancellationToken,
    stop: CancellationToken,
    halted: Mutex<Option<String>>,
    retry: RetrySettings,
    lanes_left: AtomicUsize,
}

impl RunControl {
    pub fn new(signal: CancellationToken, retry: RetrySettings) -> Arc<Self> {
        Arc::new(RunControl {
            stop: signal.child_token(),
            signal,
            halted: Mutex::new(None),
            retry,
            lanes_left: AtomicUsize::new(usize::MAX),
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

    /// Takes an instance out of rotation; the run halts when none is left.
    fn retire(&self, lane: &LaneHealth, reason: String) {
        {
            let mut why = lane
                .retired_why
                .lock()
                .expect("no retire panics holding the lock");
            if why.is_some() {
                return;
            }
            error!(instance = %lane.instance_id, "taking the instance out of rotation: {reason}");
            *why = Some(reason.clone());
        }
        lane.retired.cancel();
        if self.lanes_left.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.halt(format!("no instance left; the last one: {reason}"));
        }
    }
}

/// How one instance is doing.
struct LaneHealth {
    instance_id: Arc<str>,
    retired: CancellationToken,
    retired_why: Mutex<Option<String>>,
    finished: AtomicU64,
    failed: AtomicU64,
}

impl LaneHealth {
    fn new(instance_id: Arc<str>) -> Self {
        LaneHealth {
            instance_id,
            retired: CancellationToken::new(),
            retired_why: Mutex::new(None),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Counts a finished message; too many failures retire the instance.
    fn count(&self, control: &RunControl, status: Status) {
        let failure = u64::from(status != Status::Sent);
        let finished = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let failed = self.failed.fetch_add(failure, Ordering::SeqCst) + failure;
        let retry = &control.retry;
        if finished >= retry.min_attempts_before_halt
            && failed as f64 / finished as f64 > retry.max_failure_ratio
        {
            control.retire(
                self,
                format!(
                    "{failed} of {finished} messages failed, above retry.max_failure_ratio = {}",
                    retry.max_failure_ratio
                ),
            );
        }
    }

    fn why(&self) -> String {
        self.retired_why
            .lock()
            .expect("no retire panics holding the lock")
            .clone()
            .unwrap_or_default()
    }
}

/// What every lane shares.
struct Shared {
    client: Arc<ApiClient>,
    in_flight: Arc<Semaphore>,
    journal: Arc<Journal>,
    outcomes: mpsc::Sender<Outcome>,
    control: Arc<RunControl>,
    requests: TaskTracker,
}

/// Jobs queued per instance; small, so a stopped run leaves little to mark.
const LANE_QUEUE: usize = 64;

/// Sends every job from `jobs` through the instance it is assigned to, at
/// most `concurrency` requests in flight overall. Jobs of an instance taken
/// out of rotation are `FAILED` (never moved to another number); once the
/// run stops, the jobs still coming are `DEFERRED` for a later `--resume`.
/// Returns when every request it started has its outcome sent on.
pub async fn dispatch(
    mut jobs: mpsc::Receiver<Job>,
    lanes: Vec<Lane>,
    client: Arc<ApiClient>,
    concurrency: NonZeroUsize,
    journal: Arc<Journal>,
    outcomes: mpsc::Sender<Outcome>,
    control: Arc<RunControl>,
) {
    control.lanes_left.store(lanes.len(), Ordering::SeqCst);
    let shared = Arc::new(Shared {
        client,
        in_flight: Arc::new(Semaphore::new(concurrency.get())),
        journal,
        outcomes: outcomes.clone(),
        control: control.clone(),
        requests: TaskTracker::new(),
    });
    let ids: Vec<Arc<str>> = lanes
        .iter()
        .map(|lane| Arc::from(lane.instance_id.as_str()))
        .collect();
    let mut queues = Vec::new();
    let mut health = Vec::new();
    let lane_tasks = TaskTracker::new();
    for (lane, id) in lanes.into_iter().zip(&ids) {
        let (queue, queued) = mpsc::channel(LANE_QUEUE);
        let lane_health = Arc::new(LaneHealth::new(id.clone()));
        lane_tasks.spawn(run_lane(
            queued,
            lane.pacer,
            lane_health.clone(),
            shared.clone(),
        ));
        queues.push(queue);
        health.push(lane_health);
    }
    lane_tasks.close();

    while let Some(job) = jobs.recv().await {
        let index = assign(&job.to, &ids);
        let job = match queues[index].send(job).await {
            Ok(()) => continue,
            Err(refused) => refused.0,
        };
        // The lane has stopped (retired, or the run is stopping).
        let _ = outcomes
            .send(not_sent(&job, &health[index], &control))
            .await;
    }
    drop(queues);
    lane_tasks.wait().await;
    shared.requests.close();
    shared.requests.wait().await;
}

/// The line of a job that will not be sent by this run.
fn not_sent(job: &Job, lane: &LaneHealth, control: &RunControl) -> Outcome {
    match control.reason() {
        Some(reason) => deferred(job, &lane.instance_id, &reason.why()),
        None => {
            let mut outcome = Outcome::for_job(job, &lane.instance_id, Status::Failed);
            outcome.add_error(format!(
                "not sent: instance {} is out of rotation ({})",
                lane.instance_id,
                lane.why()
            ));
            outcome
        }
    }
}

/// One instance's loop: waits for its turn and a free slot, then sends.
async fn run_lane(
    mut queued: mpsc::Receiver<Job>,
    mut pacer: InstancePacer,
    lane: Arc<LaneHealth>,
    shared: Arc<Shared>,
) {
    let control = &shared.control;
    let stop = control.stopping().clone();
    let mut held_back = None;
    loop {
        let job = tokio::select! {
            biased;
            _ = stop.cancelled() => break,
            _ = lane.retired.cancelled() => break,
            job = queued.recv() => match job {
                Some(job) => job,
                None => break,
            },
        };
        // Pacing first: a job waiting for its instance's turn must not hold a slot.
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            _ = lane.retired.cancelled() => None,
            permit = async {
                pacer.wait_turn(&job.timing).await;
                shared.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed")
            } => Some(permit),
        };
        let Some(permit) = permit else {
            held_back = Some(job);
            break;
        };
        if let Err(error) = shared.journal.sending(&job) {
            control.halt(format!("cannot write the journal: {error}"));
            held_back = Some(job);
            break;
        }
        let (shared_for_task, lane_for_task) = (shared.clone(), lane.clone());
        shared.requests.spawn(async move {
            let shared = shared_for_task;
            let outcome = send_with_retries(&shared.client, &job, &shared.control, &lane_for_task).await;
            drop(permit);
            match outcome.status {
                Status::Sent => debug!(row = job.row, message_id = %outcome.message_id, attempts = outcome.attempts, "sent"),
                _ => warn!(row = job.row, status = outcome.status.as_str(), error = %outcome.error, "not sent"),
            }
            // The writer only goes away early when it cannot write: then
            // no more messages may leave, since their outcome would be lost.
            if shared.outcomes.send(outcome).await.is_err() {
                shared.control.halt("the results file cannot be written".to_string());
            }
        });
    }

    // Stopped, retired or done: every job not sent still gets its line.
    queued.close();
    for job in held_back
        .into_iter()
        .chain(std::iter::from_fn(|| queued.try_recv().ok()))
    {
        let _ = shared.outcomes.send(not_sent(&job, &lane, control)).await;
    }
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
                break Outcome::accepted(job, instance_id, accepted, attempts, maybe_delivered)
            }
            Err(error) => error,
        };
        if let SendError::Refused {
            http_status: 401 | 403,
            ..
        } = error
        {
            control.retire(lane, format!("the API refused the credentials: {error}"));
            break Outcome::refused(job, instance_id, Status::Failed, &error, attempts);
        }
        maybe_delivered |= matches!(error, SendError::Ambiguous { .. });
        let given_up = if maybe_delivered {
            Status::Unknown
        } else {
            Status::Failed
        };
        let wait = match next_step(&error, retry) {
            Next::Give(status) => {
                break Outcome::refused(job, instance_id, status, &error, attempts)
            }
            Next::Retry(_) if attempts >= retry.max_attempts => {
                break Outcome::refused(job, instance_id, given_up, &error, attempts)
            }
            Next::Retry(retry_after) => retry_after.unwrap_or_else(|| backoff(retry, attempts)),
        };
        debug!(row = job.row, attempt = attempts, wait_ms = wait.as_millis() as u64, %error, "retrying");
        let stopped = tokio::select! {
            _ = control.stopping().cancelled() => true,
            _ = lane.retired.cancelled() => true,
            _ = tokio::time::sleep(wait) => false,
        };
        if stopped {
            // Not tried again: the run is stopping (DEFERRED, resume sends it)
            // or the instance is out of rotation (FAILED).
            let status = match given_up {
                Status::Failed if control.stopping().is_cancelled() => Status::Deferred,
                status => status,
            };
            let mut outcome = Outcome::refused(job, instance_id, status, &error, attempts);
            outcome.add_error("stopped while waiting to try again".to_string());
            break outcome;
        }
    };
    if outcome.status != Status::Deferred {
        lane.count(control, outcome.status);
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
    fn too_many_failures_retire_the_instance_and_with_the_last_one_halt_the_run() {
        let control = RunControl::new(
            CancellationToken::new(),
            RetrySettings {
                min_attempts_before_halt: 4,
                max_failure_ratio: 0.5,
                ..retry()
            },
        );
        control.lanes_left.store(2, Ordering::SeqCst);
        let (first, second) = (LaneHealth::new("a".into()), LaneHealth::new("b".into()));
        for status in [Status::Failed, Status::Failed, Status::Sent] {
            first.count(&control, status);
        }
        assert!(
            !first.retired.is_cancelled(),
            "3 tried is below the minimum"
        );
        first.count(&control, Status::Unknown);
        assert!(first.retired.is_cancelled());
        assert!(control.reason().is_none(), "another instance is left");
        control.retire(&second, "HTTP 401".to_string());
        assert!(
            matches!(control.reason(), Some(StopReason::Halted(why)) if why.contains("HTTP 401"))
        );
        assert!(control.stopping().is_cancelled());
    }

    const FIXED_ASSIGNMENT: [usize; 3] = [2, 1, 1];

    #[test]
    fn a_recipient_always_goes_to_the_same_instance_and_all_instances_get_some() {
        let instances = ["inst-a", "inst-b", "inst-c"];
        let mut per_instance = [0; 3];
        for n in 0..3000 {
            let to = format!("55119{n:08}");
            let index = assign(&to, &instances);
            assert_eq!(assign(&to, &instances), index);
            per_instance[index] += 1;
        }
        assert!(
            per_instance
                .iter()
                .all(|count| (800..=1200).contains(count)),
            "{per_instance:?}"
        );
        // Fixed answers: the assignment must never change between versions.
        let fixed: Vec<usize> = ["5511987654321", "5521998765432", "5531988887777"]
            .iter()
            .map(|to| assign(to, &instances))
            .collect();
        assert_eq!(fixed, FIXED_ASSIGNMENT);
    }

    #[test]
    fn removing_an_instance_moves_only_its_own_recipients() {
        let three = ["a", "b", "c"];
        let two = ["a", "c"];
        for n in 0..500 {
            let to = format!("55219{n:08}");
            let before = three[assign(&to, &three)];
            if before != "b" {
                assert_eq!(two[assign(&to, &two)], before, "{to}");
            }
        }
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
