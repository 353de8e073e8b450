//! The results CSV: one line per input row, written by one thread and flushed
//! as outcomes arrive, so a run that dies loses nothing already known.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::mpsc;

use crate::types::{Failures, Outcome, Status, Tally};

mod compact;
mod existing;
mod journal;
mod line;
mod lock;
mod paths;
mod settings;

pub use compact::{a_row_after, compact};
pub use existing::{
    earlier_lines, is_ours, is_ours_or_refused, open_existing, Earlier, EarlierLine, Opened,
};
pub use journal::{read_left, Journal, Left};
pub use line::{cell_value, line_writer, LineFormat};
pub use lock::{holder, LockError, RunLock};
pub use paths::{files_of_a_run, no_follow, refuse_campaign, replace_file, resolve, same_file};
pub use settings::{Dialect, Header, Kind, ResultsSettings};

/// The results file, written through the csv crate.
pub type ResultsWriter = csv::Writer<BufWriter<File>>;

/// The columns of the results file, in order. The first one's header says
/// what kind of file it is ([`Kind::first_column`]: `campaign`, `rehearsal`
/// or `check`), and its cells name the campaign.
pub const COLUMNS: [&str; 16] = [
    "campaign",
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

#[derive(Debug, thiserror::Error)]
pub enum ResultsError {
    #[error(
        "the results file {0} already exists: --resume carries on the campaign it reports on; \
         --overwrite replaces the report (the ledger still remembers what the campaign sent, so \
         nothing goes twice; a new --campaign name sends the cards again); --out writes elsewhere"
    )]
    Exists(PathBuf),
    #[error(
        "the folder {0} for the results file does not exist; create it, or pick another --out"
    )]
    NoFolder(PathBuf),
    #[error("cannot write the results file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error("{0} is not a results file of this tool (its header differs); pick another --out")]
    NotResults(PathBuf),
    #[error(
        "{path} is {}, and this run would write {}: they are never mixed; pick another --out \
         (a --mock rehearsal writes <campaign>.mock.csv, a dry run <campaign>.check.csv, a send \
         <campaign>.results.csv); nothing was sent",
        found.describe(),
        ours.describe()
    )]
    OtherKind {
        path: PathBuf,
        found: Kind,
        ours: Kind,
    },
    #[error(
        "{path} is the results file of the campaign `{found}`, not of `{ours}`: a results file \
         reports on one campaign; pick another --out, or name this run --campaign {found:?} if it \
         is that campaign; nothing was sent"
    )]
    OtherCampaign {
        path: PathBuf,
        found: String,
        ours: String,
    },
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error("{path} is the campaign {campaign} itself; pick another --out")]
    IsCampaign { path: PathBuf, campaign: PathBuf },
}

/// Creates the results file of `kind` for `campaign` and writes its header,
/// with the campaign's columns `kept` after the standard ones. An existing
/// file is only replaced with `overwrite`, and then only once no other run
/// writes it; a symbolic link there is replaced, not written through.
pub fn create(
    path: &Path,
    overwrite: bool,
    dialect: Dialect,
    kind: Kind,
    campaign: &str,
    kept: &[String],
) -> Result<Opened, ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_symlink());
    if overwrite && is_link {
        std::fs::remove_file(path).map_err(io_error)?;
    }
    let mut options = OpenOptions::new();
    options.write(true);
    if overwrite {
        options.create(true);
    } else {
        options.create_new(true);
    }
    let file = paths::no_follow(options)
        .open(path)
        .map_err(|error| match error.kind() {
            io::ErrorKind::AlreadyExists => ResultsError::Exists(path.to_path_buf()),
            _ => io_error(error),
        })?;
    paths::lock_results(&file, path)?;
    // Emptied only now that no other run can be writing it.
    file.set_len(0).map_err(io_error)?;
    let mut file = BufWriter::new(file);
    let header = dialect.header_with(kind, kept);
    file.write_all(&header).map_err(io_error)?;
    let mut writer = line_writer(file, dialect);
    writer.flush().map_err(io_error)?;
    Ok(Opened {
        writer,
        lines: LineFormat::new(dialect, campaign, kept, kept),
        results_from: header.len() as u64,
        earlier: None,
    })
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

/// What the writer wrote: lines by status, and by instance and status, and
/// the rows not sent for what the API or the network did, by reason.
#[derive(Debug, Default)]
pub struct Written {
    pub tally: Tally,
    pub by_instance: BTreeMap<String, Tally>,
    pub failures: Failures,
    /// The instance of the line before, and its counts so far: lines come
    /// in runs of one instance, and the writer is on every row's path.
    current: Option<(String, Tally)>,
}

impl Written {
    fn add(&mut self, outcome: &Outcome) {
        let status = outcome.counted_as();
        self.tally.add(status);
        if matches!(status, Status::Failed | Status::Unknown) {
            self.failures
                .add(status, &outcome.error, outcome.recipient.row);
        }
        if outcome.instance_id.is_empty() {
            return;
        }
        match &mut self.current {
            Some((instance, tally)) if *instance == outcome.instance_id => tally.add(status),
            _ => {
                self.put_back_current();
                let mut tally = self
                    .by_instance
                    .remove(outcome.instance_id.as_str())
                    .unwrap_or_default();
                tally.add(status);
                self.current = Some((outcome.instance_id.to_string(), tally));
            }
        }
    }

    fn put_back_current(&mut self) {
        if let Some((instance, tally)) = self.current.take() {
            self.by_instance.insert(instance, tally);
        }
    }

    /// Every count, once the last line is written.
    fn finished(mut self) -> Self {
        self.put_back_current();
        self
    }
}

/// Starts the one thread that writes the results file. Send it outcomes; it
/// ends when every sender is dropped, returning the counts. `written` is
/// shown the counts after each batch of lines is flushed.
pub fn spawn_writer(
    mut writer: ResultsWriter,
    mut lines: LineFormat,
    path: PathBuf,
    mut written: impl FnMut(&Tally) + Send + 'static,
    gate: WriteGate,
) -> (
    mpsc::Sender<Outcome>,
    crate::threads::Finished<Result<Written, ResultsError>>,
) {
    let (sender, mut outcomes) = mpsc::channel::<Outcome>(1024);
    let task = crate::threads::spawn("results", move || {
        let io_error = |source| ResultsError::Io {
            path: path.clone(),
            source,
        };
        let mut written_so_far = Written::default();
        while let Some(first) = outcomes.blocking_recv() {
            let _writing = gate.hold();
            let mut answers = false;
            // Write whatever else is already waiting too, then flush once.
            for outcome in
                std::iter::once(first).chain(std::iter::from_fn(|| outcomes.try_recv().ok()))
            {
                answers |= outcome.status.is_an_answer();
                written_so_far.add(&outcome);
                lines
                    .write(&outcome, &mut writer)
                    .map_err(|error| io_error(error.into()))?;
            }
            writer.flush().map_err(io_error)?;
            drop(_writing);
            written(&written_so_far.tally);
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
        Ok(written_so_far.finished())
    });
    (sender, task)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Recipient, Rejected, Status};

    #[test]
    fn lines_are_counted_by_instance_whatever_their_order() {
        let mut written = Written::default();
        for (instance, status) in [
            ("a", Status::Sent),
            ("a", Status::Failed),
            ("b", Status::Sent),
            ("", Status::Invalid),
            ("a", Status::Sent),
        ] {
            let rejected = Rejected {
                recipient: Recipient::default(),
                status,
                problems: Vec::new(),
            };
            let mut outcome = Outcome::rejected(rejected, jiff::Timestamp::now());
            outcome.instance_id = instance.to_string();
            written.add(&outcome);
        }
        let written = written.finished();
        assert_eq!(written.tally.rows(), 5);
        assert_eq!(written.by_instance.len(), 2);
        let a = &written.by_instance["a"];
        assert_eq!((a.get(Status::Sent), a.get(Status::Failed)), (2, 1));
        assert_eq!(written.by_instance["b"].get(Status::Sent), 1);
    }
}
