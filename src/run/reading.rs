//! The reading side of a run, on a blocking thread: every row of the
//! campaign, checked, in file order, to the admission step, a batch at a
//! time (the rows come from the checkers in batches anyway).

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::campaign::{Campaign, CampaignError, BATCH_ROWS};
use crate::types::Row;

/// Reads the campaign's rows and hands them on.
pub struct Reading {
    pub rows: mpsc::Sender<Vec<Row>>,
    pub stop: CancellationToken,
    /// Once the run stops, its remaining rows are still read, to be written
    /// DEFERRED: a send of a regular file. A pipe may never end, and a dry
    /// run has nothing to defer, so their reading stops with the run.
    pub read_to_the_end: bool,
}

impl Reading {
    /// Returns the rows `--limit` left unread ([`Campaign::unread`]).
    pub fn read(self, mut campaign: Campaign) -> Result<Option<u64>, CampaignError> {
        let mut batch = Vec::with_capacity(BATCH_ROWS);
        for row in &mut campaign {
            batch.push(row?);
            let stopping = !self.read_to_the_end && self.stop.is_cancelled();
            if batch.len() == BATCH_ROWS || stopping {
                let full = std::mem::replace(&mut batch, Vec::with_capacity(BATCH_ROWS));
                if self.rows.blocking_send(full).is_err() || stopping {
                    return Ok(campaign.unread());
                }
            }
        }
        if !batch.is_empty() {
            let _ = self.rows.blocking_send(batch);
        }
        Ok(campaign.unread())
    }
}
