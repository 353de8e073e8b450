//! What the user sees: the progress bar and logs on stderr, the summary on
//! stdout, and the exit code.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::results::Status;

/// Rows counted by status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tally {
    counts: BTreeMap<Status, u64>,
}

impl Tally {
    pub fn add(&mut self, status: Status) {
        *self.counts.entry(status).or_default() += 1;
    }

    pub fn get(&self, status: Status) -> u64 {
        self.counts.get(&status).copied().unwrap_or(0)
    }

    pub fn rows(&self) -> u64 {
        self.counts.values().sum()
    }

    /// `SENT 9 · INVALID 2`, statuses with no rows left out.
    pub fn line(&self) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .map(|(status, count)| format!("{} {count}", status.as_str()))
            .collect();
        if parts.is_empty() {
            "no rows".to_string()
        } else {
            parts.join(" · ")
        }
    }
}

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
                "{bar:30} {pos}/{len} rows · {rate} · ETA {eta} · {msg}",
            ),
            None => (
                ProgressBar::new_spinner(),
                "{spinner} {pos} rows · {rate} · {msg}",
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

/// Log output that steps around the progress bar.
#[derive(Clone)]
pub struct LogWriter {
    progress: MultiProgress,
}

impl LogWriter {
    pub fn new(progress: MultiProgress) -> Self {
        LogWriter { progress }
    }
}

/// One log event, buffered and written in one piece when dropped.
pub struct LogLine {
    progress: MultiProgress,
    buffer: Vec<u8>,
}

impl Write for LogLine {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buffer.extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for LogLine {
    fn drop(&mut self) {
        let buffer = std::mem::take(&mut self.buffer);
        self.progress.suspend(|| {
            let _ = io::stderr().write_all(&buffer);
        });
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogLine;

    fn make_writer(&'a self) -> Self::Writer {
        LogLine {
            progress: self.progress.clone(),
            buffer: Vec::with_capacity(256),
        }
    }
}

/// How a run ended, as the process exit code (SPEC §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// Every row was SENT (VALID in a dry run).
    Success = 0,
    /// The run finished, but some rows were not sent.
    NotAllSent = 1,
    /// Usage, config or campaign-file error: nothing was sent.
    Usage = 2,
}

impl ExitCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The end-of-run summary, printed on stdout.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub campaign: String,
    pub results: String,
    pub dry_run: bool,
    pub rows: u64,
    pub counts: BTreeMap<&'static str, u64>,
    pub elapsed_seconds: f64,
    pub exit_code: u8,
    #[serde(skip)]
    tally: Tally,
}

impl Summary {
    pub fn new(
        campaign: String,
        results: String,
        dry_run: bool,
        tally: &Tally,
        elapsed: Duration,
    ) -> Self {
        let wanted = if dry_run { Status::Valid } else { Status::Sent };
        let exit = if tally.get(wanted) == tally.rows() {
            ExitCode::Success
        } else {
            ExitCode::NotAllSent
        };
        Summary {
            campaign,
            results,
            dry_run,
            rows: tally.rows(),
            counts: Status::ALL
                .iter()
                .map(|status| (status.as_str(), tally.get(*status)))
                .collect(),
            elapsed_seconds: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            exit_code: exit.code(),
            tally: tally.clone(),
        }
    }

    pub fn text(&self) -> String {
        let counts = self.tally.line();
        let what = if self.dry_run {
            "checked (dry run, nothing sent)"
        } else {
            "processed"
        };
        format!(
            "{}: {} rows {what} in {:.1} s\n  {counts}\nresults: {}\n",
            self.campaign, self.rows, self.elapsed_seconds, self.results
        )
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a summary always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(statuses: &[Status]) -> Tally {
        let mut tally = Tally::default();
        statuses.iter().for_each(|status| tally.add(*status));
        tally
    }

    #[test]
    fn every_row_sent_exits_zero_and_anything_else_one() {
        let all_sent = Summary::new(
            "c".into(),
            "r".into(),
            false,
            &tally(&[Status::Sent, Status::Sent]),
            Duration::ZERO,
        );
        assert_eq!(all_sent.exit_code, 0);
        let one_invalid = Summary::new(
            "c".into(),
            "r".into(),
            false,
            &tally(&[Status::Sent, Status::Invalid]),
            Duration::ZERO,
        );
        assert_eq!(one_invalid.exit_code, 1);
        let dry_run = Summary::new(
            "c".into(),
            "r".into(),
            true,
            &tally(&[Status::Valid]),
            Duration::ZERO,
        );
        assert_eq!(dry_run.exit_code, 0);
    }

    #[test]
    fn the_json_summary_has_every_status() {
        let summary = Summary::new(
            "c.csv".into(),
            "c.results.csv".into(),
            false,
            &tally(&[Status::Sent]),
            Duration::from_millis(1500),
        );
        let json: serde_json::Value = serde_json::from_str(&summary.json()).unwrap();
        assert_eq!(json["counts"]["SENT"], 1);
        assert_eq!(json["counts"]["FAILED"], 0);
        assert_eq!(json["elapsed_seconds"], 1.5);
    }
}
