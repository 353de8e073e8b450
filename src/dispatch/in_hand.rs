//! The jobs a lane holds: taken from its queue a batch at a time, and those
//! whose recipient's send window is shut, parked until it opens, so that the
//! lane goes on with the recipients whose window is open. With `--no-wait`
//! a job whose window is shut gets its `DEFERRED` line instead.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::time::Duration;

use jiff::Timestamp;
use tokio::sync::mpsc;
use tracing::info;

use super::control::LaneHealth;
use super::leaving::written;
use super::{Shared, LANE_QUEUE};
use crate::report::WaitShown;
use crate::schedule::{SendWindow, WindowState, Zones};
use crate::types::{nanos_of, Cause, Deferral, Hold, Job, Outcome};

/// Jobs a lane parks at most with the window in each recipient's zone: past
/// that, a job whose window is shut is `DEFERRED` as with `--no-wait`, so a
/// file of millions in shut zones neither fills memory nor holds up the
/// rows behind it.
const PARKED_MOST: usize = 10_000;

/// How long a wait for a window sleeps before it looks at the clock again:
/// the wall clock may be set or jump while it sleeps.
const WINDOW_NAP: Duration = Duration::from_secs(60);

pub(super) struct InHand {
    queued: mpsc::Receiver<Job>,
    queue_ended: bool,
    /// Taken from the queue, oldest last (for `pop`).
    waiting: Vec<Job>,
    parked: Parked,
    /// Each set of zones' window as last judged, while it lasts.
    judged: HashMap<Zones, WindowState>,
    /// The opening whose wait was last logged: logged once.
    told: Option<Timestamp>,
}

impl InHand {
    pub(super) fn new(queued: mpsc::Receiver<Job>) -> Self {
        InHand {
            queued,
            queue_ended: false,
            waiting: Vec::with_capacity(LANE_QUEUE),
            parked: Parked::default(),
            judged: HashMap::new(),
            told: None,
        }
    }

    /// The next job whose recipient's window is open, waiting for more jobs
    /// or for the first parked window to open while none is. `None` when
    /// nothing is left, or the run or the lane stopped.
    pub(super) async fn next_open(&mut self, lane: &LaneHealth, shared: &Shared) -> Option<Job> {
        loop {
            if shared.control.stopping().is_cancelled() || lane.closed.is_cancelled() {
                return None;
            }
            if let Some(job) = self.open_at_hand(lane, shared).await {
                return Some(job);
            }
            if !self.wait_for_more(lane, shared).await {
                return None;
            }
        }
    }

    /// The next job in hand whose recipient's window is open now, without
    /// waiting: parked jobs whose window has opened first, in the order they
    /// came; those found shut are parked (or DEFERRED) on the way.
    pub(super) async fn open_at_hand(&mut self, lane: &LaneHealth, shared: &Shared) -> Option<Job> {
        loop {
            let job = match self.parked.take_opened(shared.clock.now()) {
                Some(job) => job,
                None => self.waiting.pop()?,
            };
            if let Some(job) = self.if_open(job, lane, shared).await {
                return Some(job);
            }
            if shared.control.stopping().is_cancelled() {
                return None;
            }
        }
    }

    /// `job` back when its recipient's window is open now; else it is
    /// parked or `DEFERRED` (or, the window being the sender's with
    /// `--no-wait`, the run stops) and `None`. Asked again as a card leaves:
    /// its turn may come after its window shut.
    pub(super) async fn if_open(
        &mut self,
        job: Job,
        lane: &LaneHealth,
        shared: &Shared,
    ) -> Option<Job> {
        let Some(window) = &shared.gates.window else {
            return Some(job);
        };
        let zones = window.zones_of(&job.recipient.to);
        let state = self.judge(window, zones, shared.clock.now());
        if let WindowState::Open { .. } = state {
            return Some(job);
        }
        self.hold(job, window, zones, state, lane, shared).await;
        None
    }

    /// Holds a job whose window is shut: parked until it opens, or
    /// `DEFERRED` with `--no-wait` or when the lane has parked
    /// [`PARKED_MOST`]; `UNSENDABLE` when it never opens in all its zones. With the window in the
    /// sender's zone and `--no-wait`, the run stops until it opens (the job
    /// kept in hand for its line).
    async fn hold(
        &mut self,
        job: Job,
        window: &SendWindow,
        zones: Zones,
        state: WindowState,
        lane: &LaneHealth,
        shared: &Shared,
    ) {
        let waits = !shared.gates.no_wait;
        match (state, window.in_recipient_zones) {
            // In the sender's zone every job waits alike: no bound.
            (WindowState::Shut { opens }, each_own)
                if waits && (!each_own || self.parked.len() < PARKED_MOST) =>
            {
                self.parked.park(job, zones, opens)
            }
            (_, false) => {
                // Every recipient's window is the sender's.
                stop_until_open(window, state, shared);
                self.waiting.push(job);
            }
            (_, true) => {
                let parked_full = waits && state.opens().is_some();
                defer_for_window(job, window, zones, state, parked_full, lane, shared).await;
            }
        }
    }

    /// The window for `zones` at `now`, judged again only once it changes.
    fn judge(&mut self, window: &SendWindow, zones: Zones, now: Timestamp) -> WindowState {
        let lasting = self
            .judged
            .get(&zones)
            .copied()
            .filter(|state| match state {
                WindowState::Open { closes } => now < *closes,
                WindowState::Shut { opens } => now < *opens,
                WindowState::Never => true,
            });
        lasting.unwrap_or_else(|| {
            let state = window.state(zones, now);
            self.judged.insert(zones, state);
            state
        })
    }

    /// Waits for more jobs from the queue, or for the first parked window
    /// to open; false when there is neither, or the run or the lane
    /// stopped. With the window in the sender's zone, every recipient's is
    /// shut while one is: no more jobs are taken until it opens.
    async fn wait_for_more(&mut self, lane: &LaneHealth, shared: &Shared) -> bool {
        let window = shared.gates.window.as_ref();
        let opening = self.parked.first_opening();
        let all_alike = window.is_some_and(|window| !window.in_recipient_zones);
        let all_shut = all_alike && opening.is_some();
        let takes_more = !self.queue_ended && !all_shut;
        if !takes_more && opening.is_none() {
            return false;
        }
        // Only a window is waited for: said on the bar while it lasts.
        let _shown = match (takes_more, opening, window) {
            (false, Some(opens), Some(window)) => Some(self.tell_wait(opens, window, lane, shared)),
            _ => None,
        };
        let nap = opening.map(|opens| {
            let wait =
                Duration::try_from(opens.duration_since(shared.clock.now())).unwrap_or_default();
            wait.clamp(Duration::from_millis(10), WINDOW_NAP)
        });
        let control = &shared.control;
        tokio::select! {
            biased;
            _ = control.stopping().cancelled() => false,
            _ = lane.closed.cancelled() => false,
            taken = self.queued.recv_many(&mut self.waiting, LANE_QUEUE), if takes_more => {
                self.queue_ended = taken == 0;
                self.waiting.reverse();
                true
            }
            _ = tokio::time::sleep(nap.unwrap_or_default()), if nap.is_some() => true,
        }
    }

    /// Logs a wait for the window (once for each opening) and shows it on
    /// the progress bar until the guard is dropped.
    fn tell_wait(
        &mut self,
        opens: Timestamp,
        window: &SendWindow,
        lane: &LaneHealth,
        shared: &Shared,
    ) -> WaitShown {
        // In the sender's zone, and with each recipient's, the window's
        // start in theirs: `… until 2026-12-01 10:00 -03 (08:00 for 75
        // recipients in America/Rio_Branco)`.
        let when = opens
            .to_zoned_datetime(window.timezone.clone())
            .strftime("%Y-%m-%d %H:%M %Z")
            .to_string();
        let (shut, whom) = match window.in_recipient_zones {
            true => (
                format!(
                    "{} of the {} recipients in hand",
                    window.window,
                    self.parked.len()
                ),
                format!(
                    " ({} for {})",
                    window.window.start.strftime("%H:%M"),
                    self.parked.first_waiting(window.zone_name())
                ),
            ),
            false => (window.describe(), String::new()),
        };
        if self.told != Some(opens) {
            self.told = Some(opens);
            info!(
                instance = &*lane.instance_id,
                "outside the send window {shut}; waiting until {when}{whom}"
            );
        }
        let progress = &shared.gates.progress;
        progress.waiting_while(format!("waiting for the send window until {when}{whom}"))
    }

    /// Every job still in hand, for its line once the lane stops: parked,
    /// taken and still queued.
    pub(super) fn left(mut self) -> impl Iterator<Item = Job> {
        self.queued.close();
        let mut queued = self.queued;
        self.parked
            .drain()
            .chain(self.waiting.into_iter().rev())
            .chain(std::iter::from_fn(move || queued.try_recv().ok()))
    }
}

/// With `--no-wait` and the window in the sender's zone: the run stops
/// until it opens (exit 5), every row left `DEFERRED`.
fn stop_until_open(window: &SendWindow, shut: WindowState, shared: &Shared) {
    let opens = shut.opens();
    let when = opens.map_or_else(String::new, |opens| {
        let local = opens.to_zoned_datetime(window.timezone.clone());
        format!(" (it opens {})", local.strftime("%Y-%m-%d %H:%M %Z"))
    });
    shared.control.hold(Deferral {
        cause: Hold::Window,
        why: format!("outside the send window {}{when}", window.window),
        until: opens,
    });
}

/// A job whose recipient's window is shut (with `--no-wait`, or `parked_full`),
/// `DEFERRED`, or never open in all their zones: `UNSENDABLE` (no later run
/// sends it under these settings, so the run is not deferred for it); the
/// run goes on with the others.
async fn defer_for_window(
    job: Job,
    window: &SendWindow,
    zones: Zones,
    shut: WindowState,
    parked_full: bool,
    lane: &LaneHealth,
    shared: &Shared,
) {
    let opens = shut.opens();
    let full = match parked_full {
        true => format!(" and more rows than a number holds ({PARKED_MOST}) wait for theirs"),
        false => String::new(),
    };
    if shut != WindowState::Never {
        shared.control.held_back(Deferral {
            cause: Hold::Window,
            why: format!(
                "rows wait for their recipient's send window ({} in each one's time zone){full}",
                window.window
            ),
            until: opens,
        });
    }
    let cause = Cause::OutsideWindow {
        window: window.in_zones(zones),
        opens: opens.map(nanos_of),
    };
    let line = Outcome::held(&job, &lane.instance_id, cause, shared.clock.now());
    written(line, shared).await;
}

/// Jobs whose recipient's window is shut, by when it opens, in the order
/// they came.
#[derive(Default)]
struct Parked {
    by_opening: BTreeMap<Timestamp, Parking>,
    len: usize,
}

/// The jobs waiting for one opening, and whose zones they are.
#[derive(Default)]
struct Parking {
    jobs: VecDeque<Job>,
    zones: Vec<Zones>,
}

impl Parked {
    fn park(&mut self, job: Job, zones: Zones, opens: Timestamp) {
        let parking = self.by_opening.entry(opens).or_default();
        if !parking.zones.contains(&zones) {
            parking.zones.push(zones);
        }
        parking.jobs.push_back(job);
        self.len += 1;
    }

    fn len(&self) -> usize {
        self.len
    }

    fn first_opening(&self) -> Option<Timestamp> {
        self.by_opening.keys().next().copied()
    }

    /// The first job whose window has opened by `now`.
    fn take_opened(&mut self, now: Timestamp) -> Option<Job> {
        let mut first = self.by_opening.first_entry()?;
        if *first.key() > now {
            return None;
        }
        let job = first.get_mut().jobs.pop_front();
        if first.get().jobs.is_empty() {
            first.remove();
        }
        self.len -= usize::from(job.is_some());
        job
    }

    /// `12 recipients in America/Rio_Branco`: who waits for the first opening.
    fn first_waiting(&self, sender_zone: &str) -> String {
        let Some(parking) = self.by_opening.values().next() else {
            return String::new();
        };
        let zones = parking
            .zones
            .iter()
            .map(|zones| zones.describe(sender_zone))
            .collect::<Vec<_>>()
            .join(", ");
        match parking.jobs.len() {
            1 => format!("1 recipient in {zones}"),
            count => format!("{count} recipients in {zones}"),
        }
    }

    fn drain(self) -> impl Iterator<Item = Job> {
        self.by_opening
            .into_values()
            .flat_map(|parking| parking.jobs)
    }
}
