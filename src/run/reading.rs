//! The reading side of a run, on a blocking thread: every row of the
//! campaign, checked, in file order, to the admission step.

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::campaign::{Campaign, CampaignError};
use crate::types::Row;

/// Reads the campaign's rows and hands them on.
pub struct Reading {
    pub rows: mpsc::Sender<Row>,
    pub stop: CancellationToken,
    /// Once the run stops, its remaining rows are still read, to be written
    /// DEFERRED: a send of a regular file. A pipe may never end, and a dry
    /// run has nothing to defer, so their reading stops with the run.
    pub read_to_the_end: bool,
}

impl Reading {
    pub fn read(self, mut campaign: Campaign) -> Result<(), CampaignError> {
        for row in &mut campaign {
            let delivered = self.rows.blocking_send(row?).is_ok();
            if !delivered || (!self.read_to_the_end && self.stop.is_cancelled()) {
                break;
            }
        }
        Ok(())
    }
}
