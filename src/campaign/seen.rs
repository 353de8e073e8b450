//! Duplicates: a job repeats an earlier row when it has the same `to` and
//! `contact_phone` after normalisation, or the same key.

use std::hash::{DefaultHasher, Hash, Hasher};

use crate::types::{Job, Problem, Rejected, Row, Status};

/// The jobs of a campaign seen so far: a 64-bit fingerprint and the row it
/// was first on, 12 bytes an entry (13 with the table's control byte), in
/// tables that are the only thing growing with the campaign. Two different
/// jobs collide with a chance of about 1 in 10^7 in a 1,000,000-row campaign,
/// and the cost of one would be a row marked DUPLICATE.
///
/// The entries are spread over [`SEEN_SHARDS`] tables so that a table doubling
/// holds its old and new copies for a small part of the index, not the whole:
/// one table of a million jobs peaks at 40 MB while it grows to 27 MB.
pub struct SeenJobs(Box<[hashbrown::HashTable<SeenJob>]>);

const SEEN_SHARDS: usize = 64;

/// Fields of 4-byte alignment, so that an entry takes 12 bytes, not 16.
#[derive(Clone, Copy)]
struct SeenJob {
    print: [u32; 2],
    /// The first row, or `u32::MAX` past four billion rows.
    row: u32,
}

impl SeenJob {
    fn print(&self) -> u64 {
        u64::from(self.print[0]) << 32 | u64::from(self.print[1])
    }
}

/// Where a repeated job was first seen, for the DUPLICATE message.
struct FirstRow(u32);

impl std::fmt::Display for FirstRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            u32::MAX => write!(f, "an earlier row"),
            row => write!(f, "row {row}"),
        }
    }
}

impl Default for SeenJobs {
    fn default() -> Self {
        SeenJobs((0..SEEN_SHARDS).map(|_| Default::default()).collect())
    }
}

impl SeenJobs {
    /// A job becomes a DUPLICATE line if an earlier row had the same `to`
    /// and `contact_phone`, or (with a key column) the same key.
    pub fn unless_duplicate(&mut self, job: Job, by_key: bool) -> Row {
        let recipient = &job.recipient;
        let job_print = fingerprint(("job", &recipient.to, &recipient.contact_phone));
        let key_print = by_key.then(|| fingerprint(("key", &recipient.key)));
        let duplicate_of = match (
            self.first_row(job_print),
            key_print.and_then(|print| self.first_row(print)),
        ) {
            (Some(first), _) => format!("the same to and contact_phone as {first}"),
            (None, Some(first)) => format!("the same key as {first}"),
            (None, None) => {
                self.insert(job_print, recipient.row);
                if let Some(print) = key_print {
                    self.insert(print, recipient.row);
                }
                return Row::Job(job);
            }
        };
        Row::Rejected(Rejected {
            recipient: job.recipient,
            status: Status::Duplicate,
            problems: vec![Problem::new("duplicate", duplicate_of)],
        })
    }

    // The fingerprint is a hash already: it is its own hash. A table places
    // entries by the low bits and tags them with the top seven, so the shard
    // is picked by bits from the middle.
    fn shard(print: u64) -> usize {
        (print >> 40) as usize % SEEN_SHARDS
    }

    fn first_row(&self, print: u64) -> Option<FirstRow> {
        self.0[Self::shard(print)]
            .find(print, |seen| seen.print() == print)
            .map(|seen| FirstRow(seen.row))
    }

    fn insert(&mut self, print: u64, row: u64) {
        let entry = SeenJob {
            print: [(print >> 32) as u32, print as u32],
            row: u32::try_from(row).unwrap_or(u32::MAX),
        };
        self.0[Self::shard(print)].insert_unique(print, entry, SeenJob::print);
    }
}

/// A 64-bit fingerprint of a job, kept instead of its strings.
fn fingerprint(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_duplicate_index_keeps_first_rows_even_past_four_billion() {
        let mut seen = SeenJobs::default();
        for row in 2..10_000 {
            seen.insert(fingerprint(("job", row)), row);
        }
        seen.insert(fingerprint("far"), 5_000_000_000);
        let first = |row: u64| {
            seen.first_row(fingerprint(("job", row)))
                .map(|first| first.to_string())
        };
        assert_eq!(first(9_999).as_deref(), Some("row 9999"));
        assert_eq!(first(2).as_deref(), Some("row 2"));
        assert_eq!(
            seen.first_row(fingerprint("far")).unwrap().to_string(),
            "an earlier row"
        );
        assert!(first(10_000).is_none());
    }
}
