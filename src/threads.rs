//! Work that blocks for a whole run — reading the campaign, writing the
//! results — on a named thread of its own. tokio's blocking pool is for
//! short calls; a task there for the whole run would hold one of its
//! threads, and keep a test's paused clock from moving (tokio does not jump
//! its paused clock ahead while a blocking task runs). The threads are
//! detached: the run awaits their end ([`Finished`]); a runtime shut down
//! without it does not stop them.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::sync::oneshot;

/// What the thread returns, once it ends; awaiting it panics where the
/// thread panicked.
pub struct Finished<T>(oneshot::Receiver<std::thread::Result<T>>);

/// Runs `work` on a new thread named `name`.
pub fn spawn<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Finished<T> {
    let (done, finished) = oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_string())
        .spawn(move || {
            let ended = std::panic::catch_unwind(std::panic::AssertUnwindSafe(work));
            let _ = done.send(ended);
        })
        .expect("the system starts a thread");
    Finished(finished)
}

impl<T> Future for Finished<T> {
    type Output = T;

    fn poll(mut self: Pin<&mut Self>, context: &mut Context<'_>) -> Poll<T> {
        match Pin::new(&mut self.0).poll(context) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(Ok(value))) => Poll::Ready(value),
            Poll::Ready(Ok(Err(panic))) => std::panic::resume_unwind(panic),
            Poll::Ready(Err(_)) => unreachable!("the thread sends before it ends"),
        }
    }
}
