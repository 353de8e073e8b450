//! Numbers kept from sending by every run that shares the ledger: a pause
//! an operator set (`numbers pause`), or a verdict of a run (the API
//! refused the number; too many of its messages failed; the API asked it to
//! wait). A run looks before its first message and every few seconds
//! after, and writes its own verdicts there for the next run, on any
//! machine.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::warn;

use super::control::LaneHealth;
use super::Shared;

/// How often a run asks the ledger for the numbers held: a pause set on
/// another machine reaches a run in progress within this.
pub(super) const HOLDS_POLL: Duration = Duration::from_secs(2);

/// Closes the lanes of the numbers the ledger holds now: their rows are
/// `DEFERRED`, naming the hold. A ledger that cannot say halts the run: a
/// number paused there must not send.
pub(super) async fn close_held(lanes: &[Arc<LaneHealth>], shared: &Shared) {
    let holds = match shared.ledger.holds().await {
        Ok(holds) => holds,
        Err(error) => {
            shared.control.halt(format!(
                "cannot read which numbers are paused or held in the ledger: {error}"
            ));
            return;
        }
    };
    for hold in holds {
        if let Some(lane) = lanes
            .iter()
            .find(|lane| *lane.instance_id == hold.instance_id)
        {
            if !lane.closed.is_cancelled() {
                shared.control.defer(lane, hold.deferral());
            }
        }
    }
}

/// Until `done`: every [`HOLDS_POLL`], writes the run's verdicts and closes
/// the lanes of numbers held since.
pub(super) async fn watch(
    lanes: Vec<Arc<LaneHealth>>,
    shared: Arc<Shared>,
    done: CancellationToken,
) {
    loop {
        tokio::select! {
            _ = done.cancelled() => break,
            _ = tokio::time::sleep(HOLDS_POLL) => {}
        }
        write_verdicts(&lanes, &shared).await;
        // A run that is stopping lets nothing more out: a hold would close
        // nothing, and the read would only add a wait (on PostgreSQL, behind
        // the call the stop cut short) to the stop.
        if !shared.control.stopping().is_cancelled() {
            close_held(&lanes, &shared).await;
        }
    }
    write_verdicts(&lanes, &shared).await;
}

/// Writes in the ledger the holds the run found, for every run after it.
async fn write_verdicts(lanes: &[Arc<LaneHealth>], shared: &Shared) {
    for lane in lanes {
        let Some(hold) = lane.take_verdict() else {
            continue;
        };
        if let Err(error) = shared.ledger.hold_number(hold.clone(), false).await {
            warn!(
                instance = %lane.instance_id,
                "cannot keep the number from sending in the ledger for the runs after this one \
                 (tried again in {} s): {error}",
                HOLDS_POLL.as_secs()
            );
            lane.keep_verdict(hold);
        }
    }
}
