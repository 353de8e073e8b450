//! Rows counted by status, as the results writer sees them go by, and those
//! not sent for what the API or the network did, by their error.

use std::collections::BTreeMap;

use serde::Serialize;

use super::Status;

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

    /// Rows whose status is one of those `kept` keeps.
    pub fn rows_where(&self, kept: impl Fn(Status) -> bool) -> u64 {
        self.counts
            .iter()
            .filter(|(status, _)| kept(**status))
            .map(|(_, count)| count)
            .sum()
    }

    /// `INVALID 2 · SUPPRESSED 1`, only the statuses `kept` keeps.
    pub fn line_of(&self, kept: impl Fn(Status) -> bool) -> String {
        let parts: Vec<String> = self
            .counts
            .iter()
            .filter(|(status, count)| kept(**status) && **count > 0)
            .map(|(status, count)| format!("{} {count}", status.as_str()))
            .collect();
        parts.join(" · ")
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

/// The rows that failed or are in doubt, grouped by their error, for the
/// summary: what a person must look at, without reading the file.
#[derive(Debug, Default, Clone)]
pub struct Failures {
    groups: Vec<FailureGroup>,
}

/// Rows of one status with the same error.
#[derive(Debug, Clone, Serialize)]
pub struct FailureGroup {
    pub status: &'static str,
    pub error: String,
    pub rows: u64,
    pub first_rows: Vec<u64>,
}

impl Failures {
    /// Errors told apart; the rest are counted as one, "other errors".
    const KINDS_MOST: usize = 32;
    const FIRST_ROWS: usize = 5;

    pub fn add(&mut self, status: Status, error: &str, row: u64) {
        let status = status.as_str();
        let error = match self.groups.len() < Self::KINDS_MOST
            || self.groups.iter().any(|group| group.error == error)
        {
            true => error,
            false => "other errors",
        };
        let group = match self
            .groups
            .iter()
            .position(|group| group.status == status && group.error == error)
        {
            Some(index) => &mut self.groups[index],
            None => {
                self.groups.push(FailureGroup {
                    status,
                    error: error.to_string(),
                    rows: 0,
                    first_rows: Vec::new(),
                });
                self.groups.last_mut().expect("just pushed")
            }
        };
        group.rows += 1;
        if group.first_rows.len() < Self::FIRST_ROWS {
            group.first_rows.push(row);
        }
    }

    /// The groups, the commonest first.
    pub fn commonest_first(mut self) -> Vec<FailureGroup> {
        self.groups
            .sort_by_key(|group| std::cmp::Reverse(group.rows));
        self.groups
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failures_are_grouped_by_error_the_commonest_first_and_bounded() {
        let mut failures = Failures::default();
        for row in 2..12 {
            failures.add(Status::Failed, "HTTP 500", row);
        }
        failures.add(Status::Unknown, "the answer was lost", 40);
        for kind in 0..100 {
            failures.add(Status::Failed, &format!("odd {kind}"), 100 + kind);
        }
        let groups = failures.commonest_first();
        // 30 odd errors told apart, the other 70 as one.
        assert_eq!(
            (groups[0].error.as_str(), groups[0].rows),
            ("other errors", 70)
        );
        assert_eq!((groups[1].error.as_str(), groups[1].rows), ("HTTP 500", 10));
        assert_eq!(groups[1].first_rows, vec![2, 3, 4, 5, 6]);
        assert_eq!(groups.len(), Failures::KINDS_MOST + 1);
        let counted: u64 = groups.iter().map(|group| group.rows).sum();
        assert_eq!(counted, 111, "no row is lost");
    }
}
