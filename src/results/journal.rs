//! Crash safety: a line in `<results>.journal` is written (and flushed to
//! the operating system) before each message leaves. After a `kill -9`, a
//! message in the journal with no results line may have been delivered, so
//! `--resume` reports it `UNKNOWN` instead of sending it again.
//!
//! Format, one entry a line: `run <results file length at start>`, then
//! `send <row> <key as a JSON string>` per message.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};

use tokio::sync::{mpsc, oneshot};

use super::paths::no_follow;
use super::ResultsError;
use crate::types::Job;

/// The journal of one run, written by a thread of its own so that no async
/// worker ever blocks on the file: lines are handed over and the sender told
/// once they are written. Lines that arrive together go out in one write.
pub struct Journal {
    path: PathBuf,
    entries: mpsc::UnboundedSender<Entry>,
    writer: JoinHandle<()>,
}

/// Lines to write, and who waits for them.
struct Entry {
    lines: String,
    written: oneshot::Sender<Result<(), (io::ErrorKind, String)>>,
}

/// What a journal left by an earlier run says.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Left {
    /// Where that run's lines start in the results file.
    pub results_from: u64,
    /// The keys of the messages that run started to send.
    pub keys: Vec<String>,
}

impl Journal {
    /// Starts a fresh journal for a run whose lines start at `results_from`,
    /// carrying on the keys an earlier killed run left in flight (until this
    /// run writes their `UNKNOWN` lines, the journal is all that knows them).
    pub fn start(
        results_path: &Path,
        results_from: u64,
        in_flight: &[String],
    ) -> io::Result<Journal> {
        let path = journal_path(results_path);
        let mut text = format!("run {results_from}\n");
        for key in in_flight {
            text.push_str(&format!("send 0 {}\n", json_string(key)));
        }
        // Written beside the old journal and renamed over it: a crash before
        // the rename leaves the old one whole, and a symbolic link where the
        // journal goes is replaced, not written through.
        let mut name = path.clone().into_os_string();
        name.push(".new");
        let fresh = PathBuf::from(name);
        // One left by a run that died here; the run's lock keeps others out.
        let _ = fs::remove_file(&fresh);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let mut file = no_follow(options).open(&fresh)?;
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_data())
            .and_then(|()| fs::rename(&fresh, &path));
        if let Err(error) = written {
            let _ = fs::remove_file(&fresh);
            return Err(error);
        }
        let (entries, waiting) = mpsc::unbounded_channel();
        let writer = thread::Builder::new()
            .name("journal".to_string())
            .spawn(move || write_entries(file, waiting))?;
        Ok(Journal {
            path,
            entries,
            writer,
        })
    }

    /// Records that `jobs` are about to be sent; returns once their lines
    /// are with the operating system.
    pub async fn sending(&self, jobs: impl IntoIterator<Item = &Job>) -> io::Result<()> {
        let mut lines = String::new();
        for job in jobs {
            let recipient = &job.recipient;
            lines.push_str(&format!(
                "send {} {}\n",
                recipient.row,
                json_string(&recipient.key)
            ));
        }
        let (written, done) = oneshot::channel();
        let stopped = || io::Error::other("the journal writer has stopped");
        self.entries
            .send(Entry { lines, written })
            .map_err(|_| stopped())?;
        match done.await {
            Ok(result) => result.map_err(|(kind, message)| io::Error::new(kind, message)),
            Err(_) => Err(stopped()),
        }
    }

    /// Removes the journal once every message sent has its results line.
    pub fn finish(self) -> io::Result<()> {
        drop(self.entries);
        if self.writer.join().is_err() {
            return Err(io::Error::other("the journal writer panicked"));
        }
        fs::remove_file(&self.path)
    }
}

/// The journal thread: writes what is waiting in one call (a crash cannot
/// interleave two lines, and cuts at most the last), then tells each sender.
fn write_entries(mut file: File, mut waiting: mpsc::UnboundedReceiver<Entry>) {
    let mut batch = Vec::new();
    let mut text = Vec::new();
    while waiting.blocking_recv_many(&mut batch, 1024) > 0 {
        // Let the senders woken with this batch's lines add theirs to it:
        // a busy run then pays one wake-up and one write per few lines.
        thread::yield_now();
        while let Ok(entry) = waiting.try_recv() {
            batch.push(entry);
        }
        text.clear();
        for entry in &batch {
            text.extend_from_slice(entry.lines.as_bytes());
        }
        let result = file
            .write_all(&text)
            .map_err(|error| (error.kind(), error.to_string()));
        for entry in batch.drain(..) {
            // A sender that stopped waiting needs no answer.
            let _ = entry.written.send(result.clone());
        }
    }
}

fn json_string(key: &str) -> String {
    serde_json::to_string(key).expect("a string always serialises")
}

pub fn journal_path(results_path: &Path) -> PathBuf {
    let mut name = results_path.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Reads the journal an earlier run left, if any. A last line cut by a
/// crash is ignored: its message had not been sent.
pub fn read_left(results_path: &Path) -> io::Result<Option<Left>> {
    let mut options = OpenOptions::new();
    options.read(true);
    let file = match no_follow(options).open(journal_path(results_path)) {
        Ok(file) => file,
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error),
    };
    let mut left = Left::default();
    let mut reader = BufReader::new(file);
    let mut line = String::new();
    while reader.read_line(&mut line)? > 0 {
        if line.ends_with('\n') {
            if let Some(offset) = line.trim_end().strip_prefix("run ") {
                left.results_from = offset.parse().unwrap_or(0);
            } else if let Some(key) = line
                .trim_end()
                .strip_prefix("send ")
                .and_then(|rest| rest.split_once(' '))
                .map(|(_, key)| key)
            {
                if let Ok(key) = serde_json::from_str::<String>(key) {
                    left.keys.push(key);
                }
            }
        }
        line.clear();
    }
    Ok(Some(left))
}

/// A journal whose results file is gone knows of messages that may have
/// been delivered, and nothing else does: a reason to stop, never to start
/// afresh.
pub fn refuse_left_alone(results_path: &Path) -> Result<(), ResultsError> {
    let journal = journal_path(results_path);
    let exists = |path: &Path| fs::symlink_metadata(path).is_ok();
    if exists(&journal) && !exists(results_path) {
        return Err(ResultsError::JournalWithoutResults {
            journal,
            results: results_path.to_path_buf(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::Map;

    use super::*;
    use crate::types::{Destination, Recipient, Timing};

    fn job(row: u64) -> Job {
        Job {
            recipient: Recipient {
                row,
                key: format!("key \"{row}\""),
                ..Recipient::default()
            },
            timing: Timing {
                delay: 2.0,
                typing: 5.0,
                note: None,
            },
            priority: None,
            tags: Vec::new(),
            metadata: Map::new(),
            destination: Destination {
                country: rlibphonenumber::Region::BR,
                landline: false,
            },
            resending: false,
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_message_recorded_at_once_is_in_the_journal_before_it_returns() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("out.csv");
        let journal = Arc::new(Journal::start(&results, 42, &["left".to_string()]).unwrap());
        let sends: Vec<_> = (2..202)
            .map(|row| {
                let journal = journal.clone();
                tokio::spawn(async move { journal.sending([&job(row)]).await })
            })
            .collect();
        for send in sends {
            send.await.unwrap().unwrap();
        }

        let left = read_left(&results).unwrap().expect("the journal is there");
        assert_eq!(left.results_from, 42);
        assert_eq!(left.keys.len(), 201, "the key carried over and every send");
        assert_eq!(left.keys[0], "left");
        for row in 2..202 {
            assert!(left.keys.contains(&format!("key \"{row}\"")), "row {row}");
        }
        Arc::into_inner(journal).unwrap().finish().unwrap();
        assert!(!journal_path(&results).exists(), "finish removes it");
    }

    #[test]
    fn a_new_journal_replaces_the_old_one_whole_or_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("out.csv");
        let old = "run 100\nsend 3 \"in flight\"\n";
        fs::write(journal_path(&results), old).unwrap();
        // The new journal cannot be written beside the old one.
        let mut fresh = journal_path(&results).into_os_string();
        fresh.push(".new");
        fs::create_dir(&fresh).unwrap();

        assert!(Journal::start(&results, 200, &[]).is_err());
        assert_eq!(fs::read_to_string(journal_path(&results)).unwrap(), old);

        fs::remove_dir(&fresh).unwrap();
        let journal = Journal::start(&results, 200, &["in flight".to_string()]).unwrap();
        let left = read_left(&results).unwrap().unwrap();
        assert_eq!(
            (left.results_from, left.keys),
            (200, vec!["in flight".to_string()])
        );
        journal.finish().unwrap();
    }

    #[tokio::test]
    async fn a_journal_that_cannot_be_written_says_so_to_the_sender() {
        // A full disk, as Linux offers one: every write fails with ENOSPC.
        let results = Path::new("/dev/full");
        let file = OpenOptions::new().write(true).open(results).unwrap();
        let (entries, waiting) = mpsc::unbounded_channel();
        let writer = thread::spawn(move || write_entries(file, waiting));
        let journal = Journal {
            path: results.to_path_buf(),
            entries,
            writer,
        };

        let error = journal.sending([&job(2)]).await.unwrap_err();

        assert_eq!(error.kind(), io::ErrorKind::StorageFull, "{error}");
    }
}
