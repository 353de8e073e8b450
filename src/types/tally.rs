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
