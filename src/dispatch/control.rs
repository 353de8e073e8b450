//! Stopping a run: the signal from outside, halts and holds any worker can
//! call, and the health of each instance, which leaves rotation when it
//! fails too often.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{error, warn};

use super::turns::Spacing;
use crate::clock::Clock;
use crate::retry::RetrySettings;
use crate::types::{Deferral, HoldKind, NumberHold, Status, StopReason};

/// What the workers share to stop the run: the signal token from outside,
/// and the halts and holds that any worker can call.
pub struct RunControl {
    signal: CancellationToken,
    stop: CancellationToken,
    stopped: Mutex<Option<StopReason>>,
    /// Set when an instance stopped for now (its daily cap, a long
    /// Retry-After), though others go on.
    capped: Mutex<Option<Deferral>>,
    /// Instances that send no more in this run, and why.
    left: Mutex<BTreeMap<String, String>>,
    /// Instances whose accepted messages the API's answers said were for
    /// another instance, and which.
    answered_for: Mutex<BTreeMap<String, String>>,
    /// Numbers that send no more until a person resumes them: the API
    /// refused them.
    refused: Mutex<BTreeSet<String>>,
    pub(super) retry: RetrySettings,
    /// How long a number retired for its failures is held for every run.
    quarantine: Duration,
    /// Instances still in rotation.
    pub(super) lanes_open: AtomicUsize,
}

impl RunControl {
    pub fn new(signal: CancellationToken, retry: RetrySettings, quarantine: Duration) -> Arc<Self> {
        Arc::new(RunControl {
            quarantine,
            stop: signal.child_token(),
            signal,
            stopped: Mutex::new(None),
            capped: Mutex::new(None),
            left: Mutex::new(BTreeMap::new()),
            answered_for: Mutex::new(BTreeMap::new()),
            refused: Mutex::new(BTreeSet::new()),
            retry,
            lanes_open: AtomicUsize::new(usize::MAX),
        })
    }

    /// Cancelled when the run must stop taking rows, for whatever reason.
    pub fn stopping(&self) -> &CancellationToken {
        &self.stop
    }

    /// Stops the run: every further message would fail (exit 3). Once the
    /// run was asked to stop (a signal), what fails then (a wait for the
    /// ledger cut short) is said, and the run ends as interrupted (130).
    pub fn halt(&self, reason: String) {
        if self.signal.is_cancelled() {
            warn!("while stopping: {reason}");
            self.stop.cancel();
            return;
        }
        error!("halting: {reason}");
        self.stop_for(StopReason::Halted(reason));
    }

    /// Stops the run until later: the send window is shut (exit 5).
    pub(super) fn hold(&self, deferral: Deferral) {
        warn!("stopping: {}", deferral.why);
        self.stop_for(StopReason::Deferred(deferral));
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
            (None, Some(deferral)) => Some(StopReason::Deferred(deferral)),
            (None, None) => None,
        }
    }

    /// Instances that sent no more in this run, and why.
    pub fn left(&self) -> BTreeMap<String, String> {
        self.left
            .lock()
            .expect("no note panics holding the lock")
            .clone()
    }

    /// Notes that the API queued a message sent through `instance` with an
    /// answer naming `other`: said once a run in the log and in the summary,
    /// not once a row (the messages went; the operator checks the id).
    pub(super) fn answered_for(&self, instance: &str, other: &str) {
        let mut noted = self
            .answered_for
            .lock()
            .expect("no note panics holding the lock");
        if !noted.contains_key(instance) {
            warn!(
                instance,
                "the API queues the messages of instance {instance}, but its answers name instance {other}: check api.instance_id"
            );
            noted.insert(instance.to_string(), other.to_string());
        }
    }

    /// Instances whose answers named another instance, and which.
    pub fn answered_for_others(&self) -> BTreeMap<String, String> {
        self.answered_for
            .lock()
            .expect("no note panics holding the lock")
            .clone()
    }

    fn left_rotation(&self, lane: &LaneHealth, why: &str) {
        self.left
            .lock()
            .expect("no note panics holding the lock")
            .insert(lane.instance_id.to_string(), why.to_string());
    }

    /// Takes an instance out of rotation: its rows not yet tried are
    /// DEFERRED, never moved to another number. The run halts when no
    /// instance is left.
    pub(super) fn retire(&self, lane: &LaneHealth, reason: String) {
        let closed_for = format!(
            "instance {} is out of rotation ({reason})",
            lane.instance_id
        );
        if lane.close(&closed_for) {
            error!(instance = %lane.instance_id, "taking the instance out of rotation: {reason}");
            self.left_rotation(lane, &reason);
            if self.lanes_open.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.halt(format!("no instance left; the last one: {reason}"));
            }
        }
    }

    /// Some rows wait for later while the run goes on (a number's first
    /// contacts for the day are used up, recipients' windows are shut): the
    /// run ends as one held back (exit 5), unless something else stops it,
    /// to be resumed at the first time any of them may go.
    pub(super) fn held_back(&self, deferral: Deferral) {
        let mut capped = self.capped.lock().expect("no cap panics holding the lock");
        match capped.as_mut() {
            None => {
                warn!("{}", deferral.why);
                *capped = Some(deferral);
            }
            // A number only a person can let send again: no time lifts it.
            Some(held) if held.needs_a_person() => {}
            // The first reason stays; the run may go on at the earliest.
            Some(held) => {
                if let Some(until) = deferral.until {
                    held.until = Some(held.until.map_or(until, |held| held.min(until)));
                }
            }
        }
    }

    /// An instance may send no more for now (its daily cap, or the API
    /// asking it to wait longer than `retry.max_backoff`): its rows are
    /// DEFERRED, and when no instance is left the run stops until later.
    pub(super) fn defer(&self, lane: &LaneHealth, deferral: Deferral) {
        if lane.close(&deferral.why) {
            warn!(instance = %lane.instance_id, "{}", deferral.why);
            self.left_rotation(lane, &deferral.why);
            if deferral.needs_a_person() {
                self.needs_a_person(lane);
            }
            // The first reason stays, unless a later one needs a person:
            // the run then ends as one that does (exit 3).
            let stop = {
                let mut capped = self.capped.lock().expect("no cap panics holding the lock");
                let outranks = capped
                    .as_ref()
                    .is_none_or(|held| deferral.needs_a_person() && !held.needs_a_person());
                if outranks {
                    *capped = Some(deferral.clone());
                }
                capped.clone().unwrap_or(deferral)
            };
            if self.lanes_open.fetch_sub(1, Ordering::SeqCst) == 1 {
                self.hold(stop);
            }
        }
    }

    /// Notes that `lane`'s number sends no more until a person resumes it
    /// (the API refused it): the summary's next step names it.
    pub(super) fn needs_a_person(&self, lane: &LaneHealth) {
        self.refused
            .lock()
            .expect("no note panics holding the lock")
            .insert(lane.instance_id.to_string());
    }

    /// The numbers that send no more until a person resumes them.
    pub fn refused(&self) -> Vec<String> {
        let refused = self
            .refused
            .lock()
            .expect("no note panics holding the lock");
        refused.iter().cloned().collect()
    }
}

/// What a lane logs at info once, and at debug after.
#[derive(Debug, Clone, Copy)]
pub(super) enum Told {
    /// A long wait for a turn held by the number's rate.
    WaitForRate,
    /// A long wait for a turn held by the phone's time.
    WaitForPhone,
    /// A long wait before trying a message again.
    LongRetry,
}

/// How one instance is doing in a run.
pub(super) struct LaneHealth {
    pub(super) instance_id: Arc<str>,
    /// Cancelled when the instance takes no more messages in this run.
    pub(super) closed: CancellationToken,
    /// Why it takes no more messages, once it does not.
    pub(super) closed_for: Mutex<Option<String>>,
    finished: AtomicU64,
    failed: AtomicU64,
    /// What of [`Told`] the lane has logged so far, one bit each.
    told: AtomicU8,
    /// What the run found about the number that every run must know (the
    /// API refused it, its failures): to be written in the ledger.
    verdict: Mutex<Option<NumberHold>>,
    /// The run's clock, which its holds are timed on.
    pub(super) clock: Clock,
    /// Its requests as they really leave, kept to the pace.
    pub(super) spacing: Spacing,
}

impl LaneHealth {
    pub(super) fn new(instance_id: Arc<str>, clock: Clock) -> Self {
        LaneHealth {
            instance_id,
            spacing: Spacing::new(),
            clock,
            closed: CancellationToken::new(),
            closed_for: Mutex::new(None),
            finished: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            told: AtomicU8::new(0),
            verdict: Mutex::new(None),
        }
    }

    /// Notes a hold of the number for every run, to be written in the ledger.
    pub(super) fn hold_for_every_run(
        &self,
        kind: HoldKind,
        reason: String,
        until: Option<Duration>,
    ) {
        let now = self.clock.now_nanos();
        self.keep_verdict(NumberHold {
            instance_id: self.instance_id.to_string(),
            kind,
            reason,
            since: now,
            until: until.map(|wait| now.saturating_add(crate::pacing::nanos(wait))),
        });
    }

    /// Keeps `hold` to be written in the ledger, unless a longer one is kept
    /// already (one that could not be written waits here for the next try).
    pub(super) fn keep_verdict(&self, hold: NumberHold) {
        let now = self.clock.now_nanos();
        let mut verdict = self
            .verdict
            .lock()
            .expect("no verdict panics holding the lock");
        if verdict.as_ref().is_none_or(|held| hold.outlasts(held, now)) {
            *verdict = Some(hold);
        }
    }

    /// The hold noted for every run, once.
    pub(super) fn take_verdict(&self) -> Option<NumberHold> {
        self.verdict
            .lock()
            .expect("no verdict panics holding the lock")
            .take()
    }

    /// Whether this is the first time the lane tells `what`: the first is
    /// worth a line at info, the rest only with -v.
    pub(super) fn first_time(&self, what: Told) -> bool {
        let bit = 1 << what as u8;
        self.told.fetch_or(bit, Ordering::Relaxed) & bit == 0
    }

    /// Closes the lane; false if it was closed already.
    pub(super) fn close(&self, reason: &str) -> bool {
        let mut closed_for = self
            .closed_for
            .lock()
            .expect("no close panics holding the lock");
        if closed_for.is_some() {
            return false;
        }
        *closed_for = Some(reason.to_string());
        self.closed.cancel();
        true
    }

    /// Counts a finished message; too many failures retire the instance.
    pub(super) fn count(&self, control: &RunControl, status: Status) {
        let failure = u64::from(status != Status::Sent);
        let finished = self.finished.fetch_add(1, Ordering::SeqCst) + 1;
        let failed = self.failed.fetch_add(failure, Ordering::SeqCst) + failure;
        let retry = &control.retry;
        if finished >= retry.min_attempts_before_halt
            && failed as f64 / finished as f64 > retry.max_failure_ratio
        {
            let reason = format!(
                "{failed} of {finished} messages failed, above retry.max_failure_ratio = {}",
                retry.max_failure_ratio
            );
            self.hold_for_every_run(HoldKind::Held, reason.clone(), Some(control.quarantine));
            control.retire(self, reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> RetrySettings {
        RetrySettings {
            min_attempts_before_halt: 4,
            max_failure_ratio: 0.5,
            ..RetrySettings::default()
        }
    }

    #[test]
    fn too_many_failures_retire_the_instance_and_with_the_last_one_halt_the_run() {
        let control = RunControl::new(CancellationToken::new(), retry(), Duration::from_secs(3600));
        control.lanes_open.store(2, Ordering::SeqCst);
        let (first, second) = (
            LaneHealth::new("a".into(), Clock::system()),
            LaneHealth::new("b".into(), Clock::system()),
        );
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

    #[test]
    fn a_signal_stops_the_run_as_interrupted() {
        let signal = CancellationToken::new();
        let control = RunControl::new(signal.clone(), retry(), Duration::from_secs(3600));
        signal.cancel();
        assert!(control.stopping().is_cancelled());
        assert_eq!(control.reason(), Some(StopReason::Interrupted));
    }
}
