//! The results CSV: one line per input row, written by one thread and flushed
//! as outcomes arrive, so a run that dies loses nothing already known.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::api::wire::Accepted;
use crate::api::SendError;
use crate::campaign::{Job, Rejected, Rejection};
use crate::report::{Progress, Tally};

mod journal;
mod lock;
mod resume;

pub use journal::Journal;
pub use lock::{LockError, RunLock};
pub use resume::{open_for_resume, Previous};

/// The tool's verdict on one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// The API accepted the message.
    Sent,
    /// The API refused it, or it could not be sent.
    Failed,
    /// The row did not pass validation; not sent.
    Invalid,
    /// The same job as an earlier row; not sent.
    Duplicate,
    /// The message may or may not have reached the API.
    Unknown,
    /// Already sent by an earlier run (`--resume`).
    Skipped,
    /// Not sent: the run stopped first; a later `--resume` sends it.
    Deferred,
    /// Dry run: the row would be sent.
    Valid,
}

impl Status {
    pub const ALL: [Status; 8] = [
        Status::Sent,
        Status::Failed,
        Status::Invalid,
        Status::Duplicate,
        Status::Unknown,
        Status::Skipped,
        Status::Deferred,
        Status::Valid,
    ];

    /// An answer from (or about) the API, as opposed to a verdict on the file:
    /// flushed without delay, since it records what happened to a real message.
    pub fn is_an_answer(self) -> bool {
        matches!(self, Status::Sent | Status::Failed | Status::Unknown)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "SENT",
            Status::Failed => "FAILED",
            Status::Invalid => "INVALID",
            Status::Duplicate => "DUPLICATE",
            Status::Unknown => "UNKNOWN",
            Status::Skipped => "SKIPPED",
            Status::Deferred => "DEFERRED",
            Status::Valid => "VALID",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}

/// The results file, written through the csv crate.
pub type ResultsWriter = csv::Writer<BufWriter<File>>;

/// The columns of the results file, in order.
pub const COLUMNS: [&str; 15] = [
    "row",
    "key",
    "to",
    "contact_name",
    "contact_phone",
    "instance_id",
    "status",
    "api_status",
    "message_id",
    "http_status",
    "attempts",
    "delay",
    "typing",
    "error",
    "finished_at",
];

/// One line of the results file.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub row: u64,
    pub key: String,
    pub to: String,
    pub contact_name: String,
    pub contact_phone: String,
    pub instance_id: String,
    pub status: Status,
    pub api_status: String,
    pub message_id: String,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub delay: Option<f64>,
    pub typing: Option<f64>,
    pub error: String,
    pub finished_at: jiff::Timestamp,
}

impl Outcome {
    /// A row that failed validation or repeats an earlier one.
    pub fn rejected(rejected: Rejected) -> Self {
        let error = rejected.error();
        Outcome {
            row: rejected.row,
            key: rejected.key,
            to: rejected.to,
            contact_name: rejected.contact_name,
            contact_phone: rejected.contact_phone,
            instance_id: String::new(),
            status: match rejected.reason {
                Rejection::Invalid => Status::Invalid,
                Rejection::Duplicate => Status::Duplicate,
            },
            api_status: String::new(),
            message_id: String::new(),
            http_status: None,
            attempts: 0,
            delay: None,
            typing: None,
            error,
            finished_at: jiff::Timestamp::now(),
        }
    }

    /// A job with no answer yet: the base of a send's line.
    pub fn for_job(job: &Job, instance_id: &str, status: Status) -> Self {
        Outcome {
            key: job.key.clone(),
            to: job.to.clone(),
            contact_name: job.contact_name.clone(),
            contact_phone: job.contact_phone.clone(),
            ..Outcome::without_strings(job, instance_id, status)
        }
    }

    /// A dry run's `VALID` line, taking the job's strings rather than copying them.
    pub fn valid(job: Job, instance_id: &str) -> Self {
        let outcome = Outcome::without_strings(&job, instance_id, Status::Valid);
        Outcome {
            key: job.key,
            to: job.to,
            contact_name: job.contact_name,
            contact_phone: job.contact_phone,
            ..outcome
        }
    }

    /// A job's line but for its key, phones and name.
    fn without_strings(job: &Job, instance_id: &str, status: Status) -> Self {
        Outcome {
            row: job.row,
            key: String::new(),
            to: String::new(),
            contact_name: String::new(),
            contact_phone: String::new(),
            instance_id: instance_id.to_string(),
            status,
            api_status: String::new(),
            message_id: String::new(),
            http_status: None,
            attempts: 0,
            delay: Some(job.timing.delay),
            typing: Some(job.timing.typing),
            error: job.timing.note.clone().unwrap_or_default(),
            finished_at: jiff::Timestamp::now(),
        }
    }

    /// A message the API accepted.
    pub fn accepted(
        job: &Job,
        instance_id: &str,
        accepted: Accepted,
        attempts: u32,
        maybe_twice: bool,
    ) -> Self {
        let mut outcome = Outcome::for_job(job, instance_id, Status::Sent);
        outcome.attempts = attempts;
        outcome.http_status = Some(201);
        outcome.api_status = accepted.data.status;
        outcome.message_id = accepted.data.id;
        if maybe_twice {
            outcome.add_error(
                "an earlier try may also have been delivered (retry_ambiguous)".to_string(),
            );
        }
        outcome
    }

    /// A message not accepted, after `attempts` tries, ending in `error`.
    pub fn refused(
        job: &Job,
        instance_id: &str,
        status: Status,
        error: &SendError,
        attempts: u32,
    ) -> Self {
        let mut outcome = Outcome::for_job(job, instance_id, status);
        outcome.attempts = attempts;
        outcome.http_status = error.http_status();
        outcome.add_error(error.to_string());
        outcome
    }

    /// Adds to the error column, first things first.
    pub fn add_error(&mut self, error: String) {
        let note = std::mem::take(&mut self.error);
        self.error = [error, note]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
    }
}

/// Writes outcomes as results lines. It keeps its scratch space and the last
/// timestamp it formatted from line to line: a busy run writes tens of
/// thousands of lines a second, mostly within the same millisecond.
#[derive(Debug, Default)]
pub struct LineFormat {
    number: String,
    stamp_millis: Option<i64>,
    stamp: String,
}

impl LineFormat {
    /// Writes `outcome` as one line, in the order of [`COLUMNS`].
    pub fn write<W: io::Write>(
        &mut self,
        outcome: &Outcome,
        writer: &mut csv::Writer<W>,
    ) -> csv::Result<()> {
        let mut integers = itoa::Buffer::new();
        writer.write_field(integers.format(outcome.row))?;
        for cell in [
            &outcome.key,
            &outcome.to,
            &outcome.contact_name,
            &outcome.contact_phone,
            &outcome.instance_id,
        ] {
            writer.write_field(spreadsheet_safe(cell).as_bytes())?;
        }
        writer.write_field(outcome.status.as_str())?;
        writer.write_field(spreadsheet_safe(&outcome.api_status).as_bytes())?;
        writer.write_field(spreadsheet_safe(&outcome.message_id).as_bytes())?;
        match outcome.http_status {
            Some(status) => writer.write_field(integers.format(status))?,
            None => writer.write_field("")?,
        }
        writer.write_field(integers.format(outcome.attempts))?;
        for seconds in [outcome.delay, outcome.typing] {
            self.number.clear();
            if let Some(seconds) = seconds {
                write!(self.number, "{seconds}").expect("writing to a String cannot fail");
            }
            writer.write_field(&self.number)?;
        }
        writer.write_field(spreadsheet_safe(&outcome.error).as_bytes())?;
        writer.write_field(self.timestamp(outcome.finished_at))?;
        writer.write_record(None::<&[u8]>)
    }

    /// `2026-11-24T09:00:00.123Z`, formatted once per millisecond.
    fn timestamp(&mut self, at: jiff::Timestamp) -> &str {
        let millis = at.as_millisecond();
        if self.stamp_millis != Some(millis) {
            self.stamp.clear();
            write!(self.stamp, "{}", at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
                .expect("writing to a String cannot fail");
            self.stamp_millis = Some(millis);
        }
        &self.stamp
    }
}

/// A cell a spreadsheet would run as a formula gets a leading `'` (OWASP's
/// advice for CSV injection). A cell that starts with `'` gets one too, so
/// [`cell_value`] gives back exactly what was written, as `--resume` needs.
fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\'') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
    }
}

/// The value a results cell was written from.
pub fn cell_value(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error("the results file {0} already exists: pass --overwrite to replace it, or --out to write elsewhere")]
    Exists(PathBuf),
    #[error("cannot write the results file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} is not a results file of this tool (its header differs); pick another --out")]
    NotResults(PathBuf),
    #[error(transparent)]
    Lock(#[from] LockError),
}

/// The length of the header line, where the first run's lines start.
fn header_len() -> u64 {
    COLUMNS.join(",").len() as u64 + 1
}

/// Creates the results file and writes its header. An existing file is only
/// replaced with `overwrite`; the check and the creation are one step, so two
/// runs cannot both pass it.
pub fn create(path: &Path, overwrite: bool) -> Result<ResultsWriter, ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let file = options.open(path).map_err(|error| match error.kind() {
        io::ErrorKind::AlreadyExists => ResultsError::Exists(path.to_path_buf()),
        _ => io_error(error),
    })?;
    let mut writer = csv::Writer::from_writer(BufWriter::new(file));
    writer
        .write_record(COLUMNS)
        .map_err(|error| io_error(error.into()))?;
    writer.flush().map_err(io_error)?;
    Ok(writer)
}

/// Held by the writer while it writes and flushes, and by an abort before
/// the process exits, so the results file never ends in half a line.
#[derive(Debug, Clone, Default)]
pub struct WriteGate(Arc<Mutex<()>>);

impl WriteGate {
    pub fn hold(&self) -> MutexGuard<'_, ()> {
        // A writer that panicked holding it left no half line: flushes are whole.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How long the writer lets validation-only lines gather before the next batch.
const VALIDATION_BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(2);
/// The same after a batch with answers from the API.
const ANSWER_BATCH_WAIT: std::time::Duration = std::time::Duration::from_millis(1);

/// Starts the one thread that writes the results file. Send it outcomes; it
/// ends when every sender is dropped, returning the counts.
pub fn spawn_writer(
    mut writer: ResultsWriter,
    path: PathBuf,
    progress: Progress,
    gate: WriteGate,
) -> (
    mpsc::Sender<Outcome>,
    tokio::task::JoinHandle<Result<Tally, ResultsError>>,
) {
    let (sender, mut outcomes) = mpsc::channel::<Outcome>(1024);
    let task = tokio::task::spawn_blocking(move || {
        let io_error = |source| ResultsError::Io {
            path: path.clone(),
            source,
        };
        let mut tally = Tally::default();
        let mut lines = LineFormat::default();
        while let Some(first) = outcomes.blocking_recv() {
            let _writing = gate.hold();
            let mut answers = false;
            // Write whatever else is already waiting too, then flush once.
            for outcome in
                std::iter::once(first).chain(std::iter::from_fn(|| outcomes.try_recv().ok()))
            {
                answers |= outcome.status.is_an_answer();
                tally.add(outcome.status);
                lines
                    .write(&outcome, &mut writer)
                    .map_err(|error| io_error(error.into()))?;
            }
            writer.flush().map_err(io_error)?;
            drop(_writing);
            progress.show(&tally);
            // Let more lines gather, so a fast run is not one write and one
            // wake-up per row. Answers wait less: until their line is
            // flushed, a `kill -9` leaves them UNKNOWN.
            std::thread::sleep(if answers {
                ANSWER_BATCH_WAIT
            } else {
                VALIDATION_BATCH_WAIT
            });
        }
        writer.flush().map_err(io_error)?;
        Ok(tally)
    });
    (sender, task)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_has_every_column_in_order_and_reuses_its_timestamp() {
        let outcome = Outcome {
            row: 7,
            key: "k-7".to_string(),
            to: "5511999999999".to_string(),
            contact_name: "=Ana".to_string(),
            contact_phone: "551130034000".to_string(),
            instance_id: "solo".to_string(),
            status: Status::Sent,
            api_status: "QUEUED".to_string(),
            message_id: "msg-1".to_string(),
            http_status: Some(201),
            attempts: 2,
            delay: Some(2.5),
            typing: Some(5.0),
            error: String::new(),
            finished_at: "2026-11-24T09:00:00.123456Z".parse().unwrap(),
        };
        let mut lines = LineFormat::default();
        let mut writer = csv::Writer::from_writer(Vec::new());
        lines.write(&outcome, &mut writer).unwrap();
        let later = Outcome {
            row: 8,
            http_status: None,
            delay: None,
            finished_at: "2026-11-24T09:00:01.5Z".parse().unwrap(),
            ..outcome
        };
        lines.write(&later, &mut writer).unwrap();
        let written = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        assert_eq!(
            written,
            "7,k-7,5511999999999,'=Ana,551130034000,solo,SENT,QUEUED,msg-1,201,2,2.5,5,,2026-11-24T09:00:00.123Z\n\
             8,k-7,5511999999999,'=Ana,551130034000,solo,SENT,QUEUED,msg-1,,2,,5,,2026-11-24T09:00:01.500Z\n"
        );
    }

    #[test]
    fn formula_like_cells_are_neutralised() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("+5511999999999"), "'+5511999999999");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("5511999999999"), "5511999999999");
        assert_eq!(spreadsheet_safe("João"), "João");
        for cell in ["=1+1", "'quoted", "''", "-", "plain", ""] {
            assert_eq!(
                cell_value(&spreadsheet_safe(cell)),
                cell,
                "round trip of {cell:?}"
            );
        }
    }
}
