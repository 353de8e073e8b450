//! The dry-run report: what the rows of a campaign came to, problems
//! grouped by kind, and how long sending would take.

use std::time::Duration;

use serde::Serialize;

use crate::campaign::TextEncoding;
use crate::pacing::Estimate;
use crate::types::{Problem, Row};

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
                    self.add_problem(rejected.recipient.row, problem);
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
    pub(super) fn sort(&mut self) {
        self.problems
            .sort_by_key(|group| std::cmp::Reverse(group.rows_affected));
    }

    pub(super) fn text(&self, dry_run: bool) -> String {
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

#[cfg(test)]
impl CheckReport {
    /// An empty report of a UTF-8, comma-separated campaign at 20/min.
    pub(crate) fn at_20_a_minute() -> Self {
        CheckReport::new(
            TextEncoding::Utf8,
            b',',
            Estimate::new("20/min".parse().unwrap(), true),
        )
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> CheckReport {
        CheckReport::at_20_a_minute()
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
}
