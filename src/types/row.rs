//! A campaign row as the stages after reading see it: one [`Recipient`],
//! shared by the job that is sent, the row that is not, and its results line.

use std::time::Duration;

use serde_json::{Map, Value};

use super::{AsRead, Problem, Status};

/// Who a row is for, as every results line names it: the row, its key, and
/// the three fields of the card (normalised for a job, as written for a row
/// that is not sent).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Recipient {
    /// The row as a spreadsheet numbers it: the header is row 1.
    pub row: u64,
    /// What identifies the job across runs: the `key_column`'s value, else
    /// `to:contact_phone` after normalisation.
    pub key: String,
    pub to: String,
    pub contact_name: String,
    pub contact_phone: String,
    /// The campaign's own cells of the row, for its results line
    /// (`results.keep_columns`).
    pub kept: KeptCells,
}

/// A row's cells of the campaign's own columns, as written, in one string
/// (a row is read millions of times a run: one allocation, not one a cell),
/// behind a pointer (a row is moved from stage to stage: a word, not six,
/// and nothing at all for a campaign that keeps no column).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeptCells(Option<Box<Cells>>);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Cells {
    text: String,
    ends: Vec<usize>,
}

impl KeptCells {
    /// Room for `cells` cells of `bytes` bytes in all.
    pub fn with_capacity(cells: usize, bytes: usize) -> Self {
        KeptCells((cells > 0).then(|| {
            Box::new(Cells {
                text: String::with_capacity(bytes),
                ends: Vec::with_capacity(cells),
            })
        }))
    }

    pub fn push(&mut self, cell: &str) {
        let cells = self.0.get_or_insert_with(Box::default);
        cells.text.push_str(cell);
        cells.ends.push(cells.text.len());
    }

    /// The cell at `index`; empty past the last.
    pub fn get(&self, index: usize) -> &str {
        let Some(cells) = &self.0 else { return "" };
        let Some(&end) = cells.ends.get(index) else {
            return "";
        };
        let start = index.checked_sub(1).map_or(0, |before| cells.ends[before]);
        cells.text.get(start..end).unwrap_or_default()
    }
}

/// One message to send: a row that passed every check, normalised.
#[derive(Debug, Clone)]
pub struct Job {
    pub recipient: Recipient,
    pub timing: Timing,
    pub priority: Option<i64>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
    /// What the `to` number is, for the dry-run report.
    pub destination: Destination,
    /// What the ledger knew of it as the admission step let it go on.
    pub as_read: Option<Box<AsRead>>,
}

/// Where a recipient's number is, whether it is a landline (which receives
/// WhatsApp only if it runs WhatsApp Business), and how it was written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Destination {
    pub country: rlibphonenumber::Region,
    pub landline: bool,
    /// Written with Excel's lossless decimal ending (`5511987654321.0`).
    pub excel_decimal: bool,
}

/// A row that will not be sent: `INVALID` or `DUPLICATE`, with every problem.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub recipient: Recipient,
    pub status: Status,
    pub problems: Vec<Problem>,
}

impl Rejected {
    /// Every problem, for the results file.
    pub fn error(&self) -> String {
        self.problems
            .iter()
            .map(Problem::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

/// What one data row became.
#[derive(Debug, Clone)]
pub enum Row {
    Job(Job),
    Rejected(Rejected),
}

/// The delay and typing one message is sent with, and why they differ from the row.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub delay: f64,
    pub typing: f64,
    /// Set when a row's own value was raised to a floor.
    pub note: Option<String>,
}

impl Timing {
    /// How long the phone itself takes over this message.
    pub fn phone_time(&self) -> Duration {
        Duration::from_secs_f64(self.delay + self.typing)
    }
}
