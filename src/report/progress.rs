//! The progress bar on stderr, drawn only on a terminal.

use std::io;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::check::human_duration;
use crate::types::{Status, Tally};

/// The progress bar, drawn only on a terminal. Cloning shares the bar.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
    /// The rows the bar is over, when known.
    total: Option<u64>,
    pace: Arc<Mutex<Pace>>,
}

/// How fast messages go: counted from the first request, so that rows
/// done without one (a resume's SKIPPED, INVALID) do not make the ETA short.
#[derive(Default)]
struct Pace {
    first_request: Option<Instant>,
    /// Set while nothing moves for a known reason (the window, a retry wait).
    waiting: Option<String>,
    /// The last counts shown: rows, rows that took a request, the tally line.
    rows: u64,
    requested: u64,
    line: String,
}

impl Progress {
    /// A bar over `total` rows (unknown for standard input), inside `multi`
    /// so log lines print above it instead of through it.
    pub fn new(multi: &MultiProgress, total: Option<u64>) -> Self {
        let (bar, template) = match total {
            Some(total) => (ProgressBar::new(total), "{bar:30} {pos}/{len} rows · {msg}"),
            None => (ProgressBar::new_spinner(), "{spinner} {pos} rows · {msg}"),
        };
        let style = ProgressStyle::with_template(template).expect("the template is valid");
        let bar = bar.with_style(style);
        let bar = multi.add(bar);
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress {
            bar,
            total,
            pace: Arc::default(),
        }
    }

    pub fn hidden() -> Self {
        Progress {
            bar: ProgressBar::hidden(),
            total: None,
            pace: Arc::default(),
        }
    }

    pub fn show(&self, tally: &Tally) {
        let mut pace = self
            .pace
            .lock()
            .expect("no drawing panics holding the lock");
        pace.rows = tally.rows();
        pace.requested = requested(tally);
        pace.line = tally.line();
        if pace.requested > 0 && pace.first_request.is_none() {
            pace.first_request = Some(Instant::now());
        }
        self.draw(&pace);
    }

    fn draw(&self, pace: &Pace) {
        let left = self.total.map(|total| total.saturating_sub(pace.rows));
        let timing = match (&pace.waiting, pace.first_request) {
            (Some(waiting), _) => waiting.clone(),
            (None, Some(first)) => pace_and_eta(pace.requested, first.elapsed(), left),
            (None, None) => "starting".to_string(),
        };
        self.bar.set_position(pace.rows);
        self.bar.set_message(format!("{timing} · {}", pace.line));
    }

    /// Shown instead of the speed and ETA while nothing moves for a known
    /// reason (`waiting for the window until 08:00`, `retrying in 30 s`);
    /// `None` when it moves again.
    pub fn waiting(&self, why: Option<String>) {
        let mut pace = self
            .pace
            .lock()
            .expect("no drawing panics holding the lock");
        pace.waiting = why;
        self.draw(&pace);
    }

    /// Shows `why` as [`Progress::waiting`] does until the returned guard
    /// is dropped: when the wait ends, or is given up.
    pub fn waiting_while(&self, why: String) -> WaitShown {
        self.waiting(Some(why));
        WaitShown(self.clone())
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// A wait shown on the bar, cleared when dropped.
pub struct WaitShown(Progress);

impl Drop for WaitShown {
    fn drop(&mut self) {
        self.0.waiting(None);
    }
}

/// Rows that took a request: the ones whose pace tells the time left.
fn requested(tally: &Tally) -> u64 {
    [Status::Sent, Status::Failed, Status::Unknown]
        .into_iter()
        .map(|status| tally.get(status))
        .sum()
}

/// `4.9 msg/s · ETA 3 min 20 s`: the pace since the first request, and the
/// rows still to go at that pace.
fn pace_and_eta(requested: u64, since_first: Duration, left: Option<u64>) -> String {
    let seconds = since_first.as_secs_f64();
    if requested < 2 || seconds <= 0.0 {
        return "measuring the pace".to_string();
    }
    let per_second = requested as f64 / seconds;
    match left {
        Some(left) => format!(
            "{per_second:.1} msg/s · ETA {}",
            human_duration(Duration::from_secs_f64(left as f64 / per_second))
        ),
        None => format!("{per_second:.1} msg/s"),
    }
}

/// A `MultiProgress` that draws on stderr only when it is a terminal and the user wants it.
pub fn progress_area(wanted: bool) -> MultiProgress {
    use std::io::IsTerminal;
    if wanted && io::stderr().is_terminal() {
        MultiProgress::with_draw_target(ProgressDrawTarget::stderr())
    } else {
        MultiProgress::with_draw_target(ProgressDrawTarget::hidden())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_eta_goes_by_messages_sent_not_rows_skipped() {
        // 100 messages in 20 s is 5 a second; 300 rows left take a minute,
        // however many skipped rows went by in no time before.
        assert_eq!(
            pace_and_eta(100, Duration::from_secs(20), Some(300)),
            "5.0 msg/s · ETA 1 min 00 s"
        );
        assert_eq!(
            pace_and_eta(1, Duration::from_secs(1), Some(10)),
            "measuring the pace"
        );
        let mut tally = Tally::default();
        for status in [
            Status::Skipped,
            Status::Skipped,
            Status::Invalid,
            Status::Sent,
        ] {
            tally.add(status);
        }
        assert_eq!(requested(&tally), 1);
    }
}
