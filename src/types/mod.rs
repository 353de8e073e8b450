//! The records that cross stages: a campaign row as read, what became of it
//! and why, what the ledger remembers of it, the counts of a run and why it
//! stopped, and the form a campaign's name is kept in. This module imports
//! no stage; every stage may import it.

mod campaign_name;
mod cause;
mod memory;
mod outcome;
mod problem;
mod row;
mod status;
mod stop;
mod tally;
mod text;

pub use campaign_name::{in_nfc, same_name};
pub use cause::{at_text, nanos_of, Cause};
pub use memory::{AsRead, Facts, Fate, Forgotten, Remembered, Suppression};
pub use outcome::Outcome;
pub use problem::Problem;
pub use row::{Destination, Job, KeptCells, Recipient, Rejected, Row, Timing};
pub use status::Status;
pub use stop::{Deferral, Hold, HoldKind, NumberHold, StopReason};
pub use tally::{FailureGroup, Failures, Tally};
pub use text::printable;
