//! What the user sees: the progress bar and the log lines on stderr, the
//! dry-run report, the summary and the numbers' report on stdout.

mod check;
mod destination;
mod log;
mod numbers;
pub mod page;
mod progress;
mod summary;

pub use check::{human_duration, CheckReport, ProblemGroup};
pub use destination::{Destination, DestinationError};
pub use log::{LogLine, LogWriter};
pub use numbers::{numbers_text, DaySent, NumberReport};
pub use progress::{progress_area, Progress, WaitShown};
pub use summary::{next_step_of, CampaignState, Finished, Summary};
