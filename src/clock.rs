//! The run's clock, one for every stage: the wall time (the ledger's times,
//! windows, days, what is written) and tokio's instant (waits). Passed in,
//! so that a test can run a whole campaign on tokio's paused clock, where a
//! minute of pacing passes in no time.

use std::sync::Arc;

use jiff::Timestamp;
use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::types::nanos_of;

/// Where a run reads the time.
#[derive(Debug, Clone)]
pub struct Clock {
    /// `None`: the machine's clock.
    following: Option<Arc<Following>>,
}

/// A wall time that moves with a runtime's tokio clock.
#[derive(Debug)]
struct Following {
    /// Whose clock: read through it from any thread (the SQLite ledger's
    /// reads it on its own).
    runtime: Handle,
    since: Instant,
    start: Timestamp,
}

impl Clock {
    /// The machine's clocks, as every real run reads them.
    pub fn system() -> Clock {
        Clock { following: None }
    }

    /// A wall time that starts at `start` and moves only as the current
    /// runtime's tokio clock does: with it paused (`#[tokio::test(start_paused
    /// = true)]`), waits end as soon as nothing else is left to do, and the
    /// wall time says they were waited.
    pub fn following_tokio(start: Timestamp) -> Clock {
        Clock {
            following: Some(Arc::new(Following {
                runtime: Handle::current(),
                since: Instant::now(),
                start,
            })),
        }
    }

    /// The wall time now.
    pub fn now(&self) -> Timestamp {
        match &self.following {
            None => Timestamp::now(),
            Some(following) => {
                let _on_its_clock = following.runtime.enter();
                let passed = following.since.elapsed();
                let passed = jiff::SignedDuration::try_from(passed).unwrap_or_default();
                let start = following.start;
                start.saturating_add(passed).unwrap_or(start)
            }
        }
    }

    /// The wall time now, in nanoseconds since 1970 (as the ledger keeps
    /// its times).
    pub fn now_nanos(&self) -> i64 {
        nanos_of(self.now())
    }

    /// tokio's instant now, which waits are measured against; read on the
    /// run's runtime (its tasks), where a paused clock is seen.
    pub fn instant(&self) -> Instant {
        Instant::now()
    }

    /// The answer of work done on a thread of its own (the SQLite ledger's).
    /// On a clock following tokio's, the wait holds tokio's clock still:
    /// time does not stop while the thread works, but tokio's paused clock
    /// jumps to the next timer whenever its runtime has nothing to run, and
    /// would have a card's request leave long after its turn. A blocking
    /// task counts as running.
    pub async fn answer_from_thread<T: Send + 'static>(
        &self,
        answer: oneshot::Receiver<T>,
    ) -> Result<T, oneshot::error::RecvError> {
        match self.following {
            None => answer.await,
            Some(_) => tokio::task::spawn_blocking(move || answer.blocking_recv())
                .await
                .expect("waiting for an answer does not panic"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn a_following_clock_moves_with_tokios_paused_clock() {
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let clock = Clock::following_tokio(start);

        tokio::time::sleep(Duration::from_secs(3600)).await;

        assert_eq!(clock.now(), start + jiff::SignedDuration::from_hours(1));
        assert_eq!(
            clock.now_nanos(),
            1_800_003_600 * 1_000_000_000,
            "the ledger's nanoseconds"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_following_clock_reads_the_same_on_another_thread() {
        let start = Timestamp::from_second(1_800_000_000).unwrap();
        let clock = Clock::following_tokio(start);
        tokio::time::sleep(Duration::from_secs(90)).await;

        let elsewhere = clock.clone();
        let read = std::thread::spawn(move || elsewhere.now()).join().unwrap();

        assert_eq!(read, start + jiff::SignedDuration::from_secs(90));
    }

    #[test]
    fn the_system_clock_is_the_machines() {
        let before = Timestamp::now();
        let read = Clock::system().now();
        assert!(read >= before && read <= Timestamp::now());
    }
}
