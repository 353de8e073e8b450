//! Rows counted by status, as the results writer sees them go by.

use std::collections::BTreeMap;

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
