//! The worker pool: each job goes to the instance its recipient is assigned
//! to, waits there for the send window, the instance's turn and a request
//! slot ([`lane`]), leaves by the run's one door once the ledger admits it
//! and records it as leaving ([`leaving`]), is sent and retried when that
//! is safe ([`send`]), and comes back through the door, where its answer is
//! recorded before its line goes to the results writer. Halts, signals, a
//! closed window and daily caps stop new sends ([`control`]).

mod control;
mod holds;
mod in_hand;
mod lane;
mod leaving;
mod send;
mod turns;

use std::num::NonZeroUsize;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use control::RunControl;
pub use lane::Gates;

use crate::admission::Rules;
use crate::api::ApiClient;
use crate::clock::Clock;
use crate::ledger::Ledger;
use crate::pacing::Pace;
use crate::types::{Job, Outcome};
use control::LaneHealth;

/// What the dispatcher sends with.
pub struct Sending {
    pub client: Arc<ApiClient>,
    /// The WhatsApp numbers that send, each its own lane.
    pub instances: Vec<String>,
    /// The pace each number keeps, on its clock in the ledger.
    pub pace: Pace,
    /// Requests in flight at once, all instances together.
    pub concurrency: NonZeroUsize,
    /// What every run sharing it knows: the campaign's memory, each number's
    /// clock and count.
    pub ledger: Arc<Ledger>,
    /// The campaign's name, which its memory in the ledger goes by.
    pub campaign: String,
    /// How the door admits cards.
    pub rules: Rules,
    pub outcomes: mpsc::Sender<Outcome>,
    pub control: Arc<RunControl>,
    pub gates: Gates,
    /// The run's clock.
    pub clock: Clock,
}

/// What every lane shares.
struct Shared {
    gates: Gates,
    client: Arc<ApiClient>,
    pace: Pace,
    /// Request slots: a card holds one from the door to its answer's
    /// record, so no more than that are ever in doubt.
    concurrency: usize,
    /// Cards past their turn and not yet answered: `PIPELINE_DEPTH` times
    /// `concurrency`. While some wait for their answers, the next wait at
    /// the door, to leave as slots free.
    pipeline: Arc<Semaphore>,
    ledger: Arc<Ledger>,
    campaign: Arc<str>,
    rules: Rules,
    outcomes: mpsc::Sender<Outcome>,
    control: Arc<RunControl>,
    clock: Clock,
}

/// Waits longer than this are logged and shown on the progress bar.
const NOTEWORTHY_WAIT: Duration = Duration::from_secs(5);

/// Jobs queued per instance; small, so a stopped run leaves little to mark.
const LANE_QUEUE: usize = crate::pacing::BATCH_TURNS;

/// How many cards may be past their turn and not yet answered, for each
/// request slot: while some wait for their answers, the next wait at the
/// door, so that a slot freed is taken again in the pass that frees it.
const PIPELINE_DEPTH: usize = 4;

/// Sends every job from `jobs` through the instance it is assigned to, at
/// most `concurrency` requests in flight overall. Jobs of an instance taken
/// out of rotation are `FAILED` (never moved to another number); once the
/// run stops, the jobs still coming are `DEFERRED` for a later `--resume`.
/// Returns when every request it started has its outcome sent on.
pub async fn dispatch(mut jobs: mpsc::Receiver<Job>, sending: Sending) {
    let (shared, ids) = Shared::of(sending);
    shared.control.lanes_open.store(ids.len(), Ordering::SeqCst);
    let mut queues = Vec::new();
    let mut health = Vec::new();
    // One door for every lane: cards leaving together, and answers coming
    // back together, are recorded in the ledger together.
    let (door, at_the_door) = mpsc::unbounded_channel();
    let door_task = tokio::spawn(leaving::run_door(at_the_door, shared.clone()));
    let lane_tasks = TaskTracker::new();
    for id in &ids {
        health.push(Arc::new(LaneHealth::new(id.clone(), shared.clock.clone())));
    }
    // A number paused or held in the ledger sends nothing from the start;
    // one held later, within a few seconds.
    holds::close_held(&health, &shared).await;
    let watched = CancellationToken::new();
    let watcher = tokio::spawn(holds::watch(
        health.clone(),
        shared.clone(),
        watched.clone(),
    ));
    for lane_health in &health {
        let (queue, queued) = mpsc::channel(LANE_QUEUE);
        let lane = lane::run_lane(queued, door.clone(), lane_health.clone(), shared.clone());
        lane_tasks.spawn(lane);
        queues.push(queue);
    }
    lane_tasks.close();

    route(&mut jobs, &queues, &ids, &health, &shared).await;
    drop(queues);
    drop(door);
    lane_tasks.wait().await;
    let door_ended = door_task.await;
    // The run's verdicts on its numbers go in the ledger before it ends,
    // the last answers' included.
    watched.cancel();
    let _ = watcher.await;
    if let Err(failed) = door_ended {
        if failed.is_panic() {
            std::panic::resume_unwind(failed.into_panic());
        }
    }
}

/// Hands each job to the lane of the instance it is assigned to; a job
/// whose lane has stopped gets its line, unsent.
async fn route(
    jobs: &mut mpsc::Receiver<Job>,
    queues: &[mpsc::Sender<Job>],
    ids: &[Arc<str>],
    health: &[Arc<LaneHealth>],
    shared: &Shared,
) {
    // Jobs are taken from the reader a batch at a time: the reader then
    // wakes once per batch, not once per job.
    let mut batch = Vec::with_capacity(LANE_QUEUE);
    while jobs.recv_many(&mut batch, LANE_QUEUE).await > 0 {
        for job in batch.drain(..) {
            let index = assign(&job.recipient.to, ids);
            let job = match queues[index].send(job).await {
                Ok(()) => continue,
                Err(refused) => refused.0,
            };
            // The lane has stopped (retired, or the run is stopping).
            let _ = shared
                .outcomes
                .send(send::not_sent(&job, &health[index], &shared.control))
                .await;
        }
    }
}

impl Shared {
    /// What every lane shares, from what the dispatcher sends with; and the
    /// instances' ids, one a lane.
    fn of(sending: Sending) -> (Arc<Self>, Vec<Arc<str>>) {
        let Sending {
            client,
            instances,
            pace,
            concurrency,
            ledger,
            campaign,
            rules,
            outcomes,
            control,
            gates,
            clock,
        } = sending;
        let shared = Arc::new(Shared {
            gates,
            client,
            pace,
            concurrency: concurrency.get(),
            pipeline: Arc::new(Semaphore::new(
                concurrency.get().saturating_mul(PIPELINE_DEPTH),
            )),
            ledger,
            campaign: Arc::from(campaign),
            rules,
            outcomes,
            control,
            clock,
        });
        let ids = instances.iter().map(|id| Arc::from(id.as_str())).collect();
        (shared, ids)
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
