//! The progress bar on stderr, drawn only on a terminal.

use std::io;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};

use crate::types::Tally;

/// The progress bar, drawn only on a terminal. Cloning shares the bar.
#[derive(Clone)]
pub struct Progress {
    bar: ProgressBar,
}

impl Progress {
    /// A bar over `total` rows (unknown for standard input), inside `multi`
    /// so log lines print above it instead of through it.
    pub fn new(multi: &MultiProgress, total: Option<u64>) -> Self {
        let (bar, template) = match total {
            Some(total) => (
                ProgressBar::new(total),
                "{prefix}{bar:30} {pos}/{len} rows · {rate} · ETA {eta} · {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{prefix}{spinner} {pos} rows · {rate} · {msg}",
            ),
        };
        let style = ProgressStyle::with_template(template)
            .expect("the template is valid")
            .with_key(
                "rate",
                |state: &ProgressState, out: &mut dyn std::fmt::Write| {
                    let _ = write!(out, "{:.1} rows/s", state.per_sec());
                },
            );
        let bar = bar.with_style(style);
        let bar = multi.add(bar);
        bar.enable_steady_tick(Duration::from_millis(200));
        Progress { bar }
    }

    pub fn hidden() -> Self {
        Progress {
            bar: ProgressBar::hidden(),
        }
    }

    pub fn show(&self, tally: &Tally) {
        self.bar.set_position(tally.rows());
        self.bar.set_message(tally.line());
    }

    /// A note before the bar, such as why it is not moving; `None` clears it.
    pub fn note(&self, note: Option<&str>) {
        self.bar
            .set_prefix(note.map(|note| format!("[{note}] ")).unwrap_or_default());
    }

    pub fn finish(&self) {
        self.bar.finish_and_clear();
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
