//! What the user sees: the progress bar and logs on stderr, the summary on
//! stdout, and the exit code.

use std::collections::BTreeMap;
use std::io::{self, Write};
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressState, ProgressStyle};
use serde::Serialize;

use crate::campaign::{Problem, Row, TextEncoding};
use crate::dispatch::StopReason;
use crate::pacing::Estimate;
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

/// What the rows of a campaign came to: problems grouped by kind with their
/// first rows, how many rows had delay/typing raised to a floor, and how long
/// sending takes at the configured pacing.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub encoding: String,
    pub delimiter: String,
    pub problems: Vec<ProblemGroup>,
    pub raised_to_floor: u64,
    pub messages: u64,
    pub expected_seconds: f64,
    pub rate: String,
    pub pace_by_message: bool,
    #[serde(skip)]
    estimate: Estimate,
}

/// The rows with one kind of problem.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemGroup {
    pub problem: String,
    pub rows_affected: u64,
    pub first_rows: Vec<u64>,
    /// The full message of the first row with it.
    pub example: String,
}

impl CheckReport {
    /// How many rows of each kind are listed.
    const FIRST_ROWS: usize = 5;

    pub fn new(encoding: TextEncoding, delimiter: u8, estimate: Estimate) -> Self {
        CheckReport {
            encoding: encoding.to_string(),
            delimiter: char::from(delimiter).escape_default().to_string(),
            problems: Vec::new(),
            raised_to_floor: 0,
            messages: 0,
            expected_seconds: 0.0,
            rate: estimate.rate().to_string(),
            pace_by_message: estimate.pace_by_message(),
            estimate,
        }
    }

    pub fn add(&mut self, row: &Row) {
        match row {
            Row::Job(job) => {
                self.raised_to_floor += u64::from(job.timing.note.is_some());
                self.estimate.add(&job.timing);
                self.messages = self.estimate.messages();
                self.expected_seconds = self.estimate.duration().as_secs_f64().round();
            }
            Row::Rejected(rejected) => {
                for problem in &rejected.problems {
                    self.add_problem(rejected.row, problem);
                }
            }
        }
    }

    fn add_problem(&mut self, row: u64, problem: &Problem) {
        let label = problem.label();
        let group = match self
            .problems
            .iter()
            .position(|group| group.problem == label)
        {
            Some(index) => &mut self.problems[index],
            None => {
                self.problems.push(ProblemGroup {
                    problem: label,
                    rows_affected: 0,
                    first_rows: Vec::new(),
                    example: format!("row {row}: {problem}"),
                });
                self.problems.last_mut().expect("just pushed")
            }
        };
        group.rows_affected += 1;
        if group.first_rows.len() < Self::FIRST_ROWS && group.first_rows.last() != Some(&row) {
            group.first_rows.push(row);
        }
    }

    /// The most common problems first.
    fn sort(&mut self) {
        self.problems
            .sort_by_key(|group| std::cmp::Reverse(group.rows_affected));
    }

    fn text(&self, dry_run: bool) -> String {
        let mut text = String::new();
        if !self.problems.is_empty() {
            text.push_str("problems, most common first:\n");
            for group in &self.problems {
                let mut rows = group
                    .first_rows
                    .iter()
                    .map(u64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                let more = group.rows_affected - group.first_rows.len() as u64;
                if more > 0 {
                    rows.push_str(&format!(" and {more} more"));
                }
                text.push_str(&format!(
                    "  {} — {}: {rows}\n      {}\n",
                    group.problem,
                    counted(group.rows_affected, "row"),
                    group.example
                ));
            }
        }
        if self.raised_to_floor > 0 {
            text.push_str(&format!(
                "delay/typing raised to the floor on {}\n",
                counted(self.raised_to_floor, "row")
            ));
        }
        if dry_run && self.messages > 0 {
            let pacing = if self.pace_by_message {
                ", pace_by_message on"
            } else {
                ""
            };
            text.push_str(&format!(
                "sending would take about {} for {} at {} on one instance{pacing}\n",
                human_duration(self.estimate.duration()),
                counted(self.messages, "message"),
                self.rate
            ));
        }
        text
    }
}

/// `1 row`, `2 rows`.
fn counted(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// `62 days 19 h`, `2 h 05 min`, `4 min 10 s`, `12 s`.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64().round() as u64;
    match (seconds / 3600, seconds % 3600 / 60, seconds % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s:02} s"),
        (h, m, _) if h < 48 => format!("{h} h {m:02} min"),
        (h, _, _) => format!("{} days {} h", h / 24, h % 24),
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
    /// Halted: the API refused the credentials, or too many messages failed.
    Halted = 3,
    /// Another run holds the lock on the results file.
    Locked = 4,
    /// Held back by the send window or the daily cap; rows are DEFERRED.
    Deferred = 5,
    /// Interrupted by SIGINT or SIGTERM; `--resume` carries on.
    Interrupted = 130,
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
    /// Why the run stopped before the end, if it did.
    pub stopped: Option<String>,
    pub check: CheckReport,
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
        mut check: CheckReport,
        stopped: Option<StopReason>,
    ) -> Self {
        check.sort();
        let wanted = if dry_run { Status::Valid } else { Status::Sent };
        let exit = match &stopped {
            Some(StopReason::Halted(_)) => ExitCode::Halted,
            Some(StopReason::Interrupted) => ExitCode::Interrupted,
            Some(StopReason::Deferred(_)) => ExitCode::Deferred,
            None if tally.get(wanted) == tally.rows() => ExitCode::Success,
            None => ExitCode::NotAllSent,
        };
        let stopped = stopped.map(|reason| match reason {
            StopReason::Halted(why) => format!("halted: {why}"),
            StopReason::Interrupted => {
                "interrupted: run again with --resume to carry on".to_string()
            }
            StopReason::Deferred(why) => {
                format!("deferred: {why}; --resume sends the DEFERRED rows")
            }
        });
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
            stopped,
            check,
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
        let file = format!(
            "{}, `{}`-separated",
            self.check.encoding, self.check.delimiter
        );
        let stopped = self
            .stopped
            .as_ref()
            .map(|why| format!("STOPPED, {why}\n"))
            .unwrap_or_default();
        format!(
            "{}: {} rows {what} in {:.1} s ({file})\n  {counts}\n{}{stopped}results: {}\n",
            self.campaign,
            self.rows,
            self.elapsed_seconds,
            self.check.text(self.dry_run),
            self.results
        )
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a summary always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> CheckReport {
        CheckReport::new(
            TextEncoding::Utf8,
            b',',
            Estimate::new("20/min".parse().unwrap(), true),
        )
    }

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
            check(),
            None,
        );
        assert_eq!(all_sent.exit_code, 0);
        let one_invalid = Summary::new(
            "c".into(),
            "r".into(),
            false,
            &tally(&[Status::Sent, Status::Invalid]),
            Duration::ZERO,
            check(),
            None,
        );
        assert_eq!(one_invalid.exit_code, 1);
        let dry_run = Summary::new(
            "c".into(),
            "r".into(),
            true,
            &tally(&[Status::Valid]),
            Duration::ZERO,
            check(),
            None,
        );
        assert_eq!(dry_run.exit_code, 0);
    }

    #[test]
    fn problems_are_grouped_by_kind_with_their_first_rows() {
        let mut report = check();
        let problem = |field: &str, kind, message: &str| Problem {
            field: field.to_string(),
            kind,
            message: message.to_string(),
        };
        for row in 2..10 {
            report.add_problem(
                row,
                &problem("to", "too short", &format!("`{row}` is too short for BR")),
            );
        }
        report.add_problem(11, &problem("delay", "not a number", "`x` is not a number"));
        report.sort();
        assert_eq!(report.problems.len(), 2);
        let short = &report.problems[0];
        assert_eq!(
            (short.problem.as_str(), short.rows_affected),
            ("to: too short", 8)
        );
        assert_eq!(short.first_rows, vec![2, 3, 4, 5, 6]);
        assert_eq!(short.example, "row 2: to: `2` is too short for BR");
        let text = report.text(true);
        assert!(
            text.contains("to: too short — 8 rows: 2, 3, 4, 5, 6 and 3 more"),
            "{text}"
        );
        assert!(text.contains("delay: not a number — 1 row: 11"), "{text}");
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(human_duration(Duration::from_secs(12)), "12 s");
        assert_eq!(human_duration(Duration::from_secs(250)), "4 min 10 s");
        assert_eq!(human_duration(Duration::from_secs(7500)), "2 h 05 min");
        assert_eq!(
            human_duration(Duration::from_secs(5_425_200)),
            "62 days 19 h"
        );
    }

    #[test]
    fn the_json_summary_has_every_status() {
        let summary = Summary::new(
            "c.csv".into(),
            "c.results.csv".into(),
            false,
            &tally(&[Status::Sent]),
            Duration::from_millis(1500),
            check(),
            None,
        );
        let json: serde_json::Value = serde_json::from_str(&summary.json()).unwrap();
        assert_eq!(json["counts"]["SENT"], 1);
        assert_eq!(json["counts"]["FAILED"], 0);
        assert_eq!(json["elapsed_seconds"], 1.5);
    }
}
