//! The worker pool: each job goes to the instance its recipient is assigned
//! to, waits for the send window, the instance's turn and a free slot, is
//! sent (and retried when that is safe), and its outcome goes to the results
//! writer. Halts, signals, a closed window and daily caps stop new sends.

use std::num::NonZeroUsize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, error, info, warn};

use crate::api::{ApiClient, ContactMessage, SendError};
use crate::campaign::Job;
use crate::config::RetrySettings;
use crate::pacing::InstancePacer;
use crate::report::Progress;
use crate::results::{Journal, Outcome, Status};
use crate::schedule::{DailyCap, Schedule};

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
    /// Held back by the send window (`--no-wait`) or the daily cap.
    Deferred(String),
}

impl StopReason {
    fn why(&self) -> String {
        match self {
            StopReason::Interrupted => "the run was interrupted".to_string(),
            StopReason::Halted(reason) => format!("the run halted ({reason})"),
            StopReason::Deferred(reason) => reason.clone(),
        }
    }
}

/// What the workers share to stop the run: the signal token from outside,
/// and the halts and holds that any worker can call.
pub struct RunControl {
    signal: CancellationToken,
    stop: CancellationToken,
    stopped: Mutex<Option<StopReason>>,
    /// Set when an instance reached its daily cap, though others go on.
    capped: Mutex<Option<String>>,
    retry: RetrySettings,
    lanes_open: AtomicUsize,
}

impl RunControl {
    pub fn new(signal: CancellationToken, retry: RetrySettings) -> Arc<Self> {
        Arc::new(RunControl {
            stop: signal.child_token(),
            signal,
            stopped: Mutex::new(None),
            capped: Mutex::new(None),
            retry,
            lanes_open: AtomicUsize::new(usize::MAX),
        })
    }

    /// Cancelled when the run must stop taking rows, for whatever reason.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stop
    }

    /// Stops the run: every further message would fail (exit 3).
    pub fn halt(&self, reason: String) {
        error!("halting: {reason}");
        self.stop_for(StopReason::Halted(reason));
    }

    /// Stops the run until later: the window is closed (exit 5).
    fn hold(&self, reason: String) {
        warn!("stopping: {reason}");
        self.stop_for(StopReason::Deferred(reason));
    }

    fn stop_for(&self, reason: StopReason) {
        let mut stopped = self
            .stopped
            .lock()
            .expect("no stop panics holding the lock");
        stopped.get_or_insert(reason);
        self.stop.cancel();
    }

    pub fn reason(&self) -> Option<StopReason> {
        let stopped = self
            .stopped
            .lock()
            .expect("no stop panics holding the lock")
            .clone();
        let capped = self
            .capped
            .lock()
            .expect("no cap panics holding the lock")
            .clone();
        match (stopped, capped) {
            (Some(reason), _) => Some(reason),
            (None, _) if self.signal.is_cancelled() => Some(StopReason::Interrupted),
            (None, Some(reason)) => Some(StopReason::Deferred(reason)),
            (None, None) => None,
        }
    }

    /// Takes an instance out of rotation: its rows are FAILED, never moved
    /// to another number. The run halts when no instance is left.
    fn retire(&self, lane: &LaneHealth, reason: String) {
        if lane.close(Status::Failed, &reason) {
            error!(instance = %lane.instance_id, "taking the instance out of rotation: {reason}");
            if self.lanes_open.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.halt(format!("no instance left; the last one: {reason}"));
            }
        }
    }

    /// An instance reached its daily cap: its rows are DEFERRED.
    fn cap(&self, lane: &LaneHealth, reason: String) {
        if lane.close(Status::Deferred, &reason) {
            warn!(instance = %lane.instance_id, "{reason}");
            self.capped
                .lock()
                .expect("no cap panics holding the lock")
                .get_or_insert(reason.clone());
            if self.lanes_open.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.hold(reason);
            }
        }
    }
}

/// How one instance is doing.
struct LaneHealth {
    instance_id: Arc<str>,
    /// Cancelled when the instance takes no more messages in this run.
    closed: CancellationToken,
    /// What its remaining rows become, and why.
    closed_as: Mutex<Option<(Status, String)>>,
    finished: AtomicU64,
    failed: AtomicU64,
}

impl LaneHealth {
    fn new(instance_id: Arc<str>) -> Self {
        LaneHealth {
            instance_id,
            closed: CancellationToken::new(),
            closed_as: Mutex::new(None),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        }
    }

    /// Closes the lane; false if it was closed already.
    fn close(&self, status: Status, reason: &str) -> bool {
        let mut closed_as = self
            .closed_as
            .lock()
            .expect("no close panics holding the lock");
        if closed_as.is_some() {
            return false;
        }
        *closed_as = Some((status, reason.to_string()));
        self.closed.cancel();
        true
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
}

/// What the dispatcher sends with.
pub struct Sending {
    pub client: Arc<ApiClient>,
    /// Requests in flight at once, all instances together.
    pub concurrency: NonZeroUsize,
    pub journal: Arc<Journal>,
    pub outcomes: mpsc::Sender<Outcome>,
    pub control: Arc<RunControl>,
    pub gates: Gates,
}

/// When an instance may send: the send window and the daily cap.
#[derive(Clone)]
pub struct Gates {
    pub window: Option<Schedule>,
    pub daily_cap: Option<DailyCap>,
    /// Outside the window, stop the run (rows DEFERRED) instead of waiting.
    pub no_wait: bool,
    /// Where a wait for the window is shown.
    pub progress: Progress,
}

impl Gates {
    /// Returns at once inside the window; outside it, waits for it to open,
    /// or with `no_wait` stops the run and returns `None`.
    async fn wait_for_window(&self, instance_id: &str, control: &RunControl) -> Option<()> {
        let Some(schedule) = &self.window else {
            return Some(());
        };
        while let Some(opening) = schedule.closed_until(Timestamp::now()) {
            let when = opening.strftime("%Y-%m-%d %H:%M %Z");
            if self.no_wait {
                control.hold(format!(
                    "outside the send window {} (it opens {when})",
                    schedule.window
                ));
                return None;
            }
            info!(
                instance = instance_id,
                "outside the send window {}; waiting until {when}", schedule.window
            );
            self.progress
                .note(Some(&format!("waiting for the send window until {when}")));
            tokio::time::sleep(
                schedule
                    .wait(Timestamp::now())
                    .max(Duration::from_millis(100)),
            )
            .await;
            self.progress.note(None);
        }
        Some(())
    }

    /// Counts one message against the instance's daily cap; false once reached.
    fn within_daily_cap(&self, instance_id: &str) -> std::io::Result<bool> {
        match &self.daily_cap {
            Some(cap) => cap.reserve(instance_id, Timestamp::now()),
            None => Ok(true),
        }
    }
}

/// What every lane shares.
struct Shared {
    gates: Gates,
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
pub async fn dispatch(mut jobs: mpsc::Receiver<Job>, lanes: Vec<Lane>, sending: Sending) {
    let Sending {
        client,
        concurrency,
        journal,
        outcomes,
        control,
        gates,
    } = sending;
    control.lanes_open.store(lanes.len(), Ordering::SeqCst);
    let shared = Arc::new(Shared {
        gates,
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

    // Jobs are taken from the reader a batch at a time: the reader then
    // wakes once per batch, not once per job.
    let mut batch = Vec::with_capacity(LANE_QUEUE);
    while jobs.recv_many(&mut batch, LANE_QUEUE).await > 0 {
        for job in batch.drain(..) {
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
    }
    drop(queues);
    lane_tasks.wait().await;
    shared.requests.close();
    shared.requests.wait().await;
}

/// The line of a job that will not be sent by this run.
fn not_sent(job: &Job, lane: &LaneHealth, control: &RunControl) -> Outcome {
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
    // Taken from the queue a batch at a time, so the router is woken once per batch.
    let mut waiting = Vec::with_capacity(LANE_QUEUE);
    loop {
        if waiting.is_empty() {
            let taken = tokio::select! {
                biased;
                _ = stop.cancelled() => break,
                _ = lane.closed.cancelled() => break,
                taken = queued.recv_many(&mut waiting, LANE_QUEUE) => taken,
            };
            if taken == 0 {
                break;
            }
            // Oldest last, for `pop`.
            waiting.reverse();
        }
        if stop.is_cancelled() || lane.closed.is_cancelled() {
            break;
        }
        let job = waiting.pop().expect("a batch was just taken");
        // The window first, then pacing: a job waiting for its turn must not hold a slot.
        let permit = tokio::select! {
            biased;
            _ = stop.cancelled() => None,
            _ = lane.closed.cancelled() => None,
            permit = async {
                shared.gates.wait_for_window(&lane.instance_id, control).await?;
                pacer.wait_turn(&job.timing).await;
                Some(shared.in_flight.clone().acquire_owned().await.expect("the semaphore is never closed"))
            } => permit,
        };
        let Some(permit) = permit else {
            held_back = Some(job);
            break;
        };
        match shared.gates.within_daily_cap(&lane.instance_id) {
            Ok(true) => {}
            Ok(false) => {
                let cap = shared.gates.daily_cap.as_ref().map_or(0, |cap| cap.cap);
                control.cap(
                    &lane,
                    format!(
                        "instance {} reached its daily cap of {cap} messages",
                        lane.instance_id
                    ),
                );
                held_back = Some(job);
                break;
            }
            Err(error) => {
                control.halt(format!("cannot update the daily-cap ledger: {error}"));
                held_back = Some(job);
                break;
            }
        }
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
        .chain(waiting.into_iter().rev())
        .chain(std::iter::from_fn(|| queued.try_recv().ok()))
    {
        let _ = shared.outcomes.send(not_sent(&job, &lane, control)).await;
    }
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
        control.lanes_open.store(2, Ordering::SeqCst);
        let (first, second) = (LaneHealth::new("a".into()), LaneHealth::new("b".into()));
        for status in [Status::Failed, Status::Failed, Status::Sent] {
            first.count(&control, status);
        }
        assert!(!first.closed.is_cancelled(), "3 tried is below the minimum");
        first.count(&control, Status::Unknown);
        assert!(first.closed.is_cancelled());
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
