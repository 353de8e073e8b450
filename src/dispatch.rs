//! The worker pool: jobs wait for their instance's turn and a free slot, are
//! sent, and their outcome goes to the results writer.

use std::num::NonZeroUsize;
use std::sync::Arc;

use tokio::sync::{mpsc, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::api::{ApiClient, ContactMessage};
use crate::campaign::Job;
use crate::pacing::InstancePacer;
use crate::results::{Outcome, Status};

/// One WhatsApp number and its pacing.
pub struct Lane {
    pub instance_id: String,
    pub pacer: InstancePacer,
}

/// Sends every job from `jobs` through `lane`, at most `concurrency`
/// requests in flight, until the channel ends or `shutdown` is cancelled.
/// Returns once every request it started has its outcome sent on.
pub async fn dispatch(
    mut jobs: mpsc::Receiver<Job>,
    mut lane: Lane,
    client: Arc<ApiClient>,
    concurrency: NonZeroUsize,
    outcomes: mpsc::Sender<Outcome>,
    shutdown: CancellationToken,
) {
    let in_flight = Arc::new(Semaphore::new(concurrency.get()));
    let requests = TaskTracker::new();
    let instance_id: Arc<str> = lane.instance_id.into();
    loop {
        let job = tokio::select! {
            biased;
            _ = shutdown.cancelled() => break,
            job = jobs.recv() => match job {
                Some(job) => job,
                None => break,
            },
        };
        // Pacing first: a job waiting for its instance's turn must not hold a slot.
        lane.pacer.wait_turn(&job.timing).await;
        let permit = in_flight
            .clone()
            .acquire_owned()
            .await
            .expect("the semaphore is never closed");
        let (client, outcomes, instance_id) =
            (client.clone(), outcomes.clone(), instance_id.clone());
        requests.spawn(async move {
            let answer = client.send(&instance_id, &ContactMessage::from(&job)).await;
            drop(permit);
            let outcome = Outcome::sent(&job, &instance_id, answer);
            match outcome.status {
                Status::Sent => debug!(row = job.row, message_id = %outcome.message_id, "sent"),
                _ => warn!(row = job.row, status = outcome.status.as_str(), error = %outcome.error, "not sent"),
            }
            // The writer only goes away when the run is over.
            let _ = outcomes.send(outcome).await;
        });
    }
    requests.close();
    requests.wait().await;
}
