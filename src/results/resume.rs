//! `--resume`: what earlier runs recorded in the results file (and the
//! journal a crashed run left), so that no card is sent to a person twice.

use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufRead, BufWriter, Read, Seek, SeekFrom};
use std::path::Path;

use tracing::warn;

use super::journal::{self, Left};
use super::{paths, Dialect, LineFormat, ResultsError};
use crate::types::Status;

/// The keys earlier runs sent, or may have sent.
#[derive(Debug, Default)]
pub struct Previous {
    sent: HashSet<u64>,
    unknown: HashSet<u64>,
    /// Keys a killed run was sending with no results line: the next journal
    /// carries them on, so that a resume killed in turn still knows them.
    pub in_flight: Vec<String>,
}

impl Previous {
    /// `Sent` for a key with a `SENT` line, `Unknown` for one that may have
    /// been delivered (an `UNKNOWN` line, or in flight when a run was killed).
    pub fn verdict(&self, key: &str) -> Option<Status> {
        let print = fingerprint(key);
        if self.sent.contains(&print) {
            Some(Status::Sent)
        } else if self.unknown.contains(&print) {
            Some(Status::Unknown)
        } else {
            None
        }
    }
}

fn fingerprint(key: &str) -> u64 {
    let mut hasher = DefaultHasher::new();
    key.hash(&mut hasher);
    hasher.finish()
}

/// A results file opened to add lines to: its writer and line format (in
/// the form the file has), what earlier runs recorded, and its length.
pub struct Resumed {
    pub writer: super::ResultsWriter,
    pub lines: LineFormat,
    pub previous: Previous,
    pub length: u64,
}

/// Opens the results file to add this run's lines after the earlier ones,
/// reading what they say first. A missing file is created in `dialect`; an
/// existing one keeps its own form. A last line cut by a crash is cut off.
pub fn open_for_resume(path: &Path, dialect: Dialect) -> Result<Resumed, ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if fs::symlink_metadata(path).is_err() {
        let (writer, lines, length) = super::create(path, false, dialect)?;
        return Ok(Resumed {
            writer,
            lines,
            previous: Previous::default(),
            length,
        });
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    let mut file = paths::no_follow(options).open(path).map_err(io_error)?;
    paths::lock_results(&file, path)?;
    // Only a results file of this tool is touched, let alone cut.
    let mut first_line = Vec::new();
    io::BufReader::new(&mut file)
        .read_until(b'\n', &mut first_line)
        .map_err(io_error)?;
    let Some(dialect) = Dialect::of_header(&first_line) else {
        return Err(ResultsError::NotResults(path.to_path_buf()));
    };
    let length = cut_partial_line(&mut file).map_err(io_error)?;
    file.seek(SeekFrom::Start(0)).map_err(io_error)?;

    let left = journal::read_left(path).map_err(io_error)?;
    let mut previous = Previous::default();
    let mut written_since_left = HashSet::new();
    // The header was checked above; the csv reader skips it.
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(dialect.delimiter())
        .from_reader(io::BufReader::new(&mut file));
    let (key_at, status_at) = (1, 6);
    let mut record = csv::ByteRecord::new();
    while reader
        .read_byte_record(&mut record)
        .map_err(|error| io_error(error.into()))?
    {
        let key = String::from_utf8_lossy(record.get(key_at).unwrap_or_default());
        let key = super::cell_value(&key);
        let status = std::str::from_utf8(record.get(status_at).unwrap_or_default())
            .ok()
            .and_then(Status::parse);
        match status {
            Some(Status::Sent) => {
                previous.sent.insert(fingerprint(key));
            }
            Some(Status::Unknown) => {
                previous.unknown.insert(fingerprint(key));
            }
            _ => {}
        }
        if let Some(left) = &left {
            if record
                .position()
                .is_some_and(|position| position.byte() >= left.results_from)
            {
                written_since_left.insert(fingerprint(key));
            }
        }
    }
    drop(reader);

    if let Some(Left { keys, .. }) = left {
        let in_flight: Vec<&String> = keys
            .iter()
            .filter(|key| !written_since_left.contains(&fingerprint(key)))
            .collect();
        if !in_flight.is_empty() {
            warn!(
                messages = in_flight.len(),
                "an earlier run stopped while sending; those messages may have been delivered and are reported UNKNOWN"
            );
        }
        previous
            .unknown
            .extend(in_flight.iter().map(|key| fingerprint(key)));
        previous.in_flight = in_flight.into_iter().cloned().collect();
    }

    file.seek(SeekFrom::End(0)).map_err(io_error)?;
    Ok(Resumed {
        writer: super::line_writer(BufWriter::new(file), dialect),
        lines: LineFormat::new(dialect),
        previous,
        length,
    })
}

/// Cuts the file back to its last complete line; returns the new length.
fn cut_partial_line(file: &mut File) -> io::Result<u64> {
    let length = file.metadata()?.len();
    let tail_size = length.min(64 * 1024);
    file.seek(SeekFrom::Start(length - tail_size))?;
    let mut tail = Vec::with_capacity(tail_size as usize);
    file.read_to_end(&mut tail)?;
    if tail.last().is_none_or(|byte| *byte == b'\n') {
        return Ok(length);
    }
    let keep = match tail.iter().rposition(|byte| *byte == b'\n') {
        Some(newline) => length - tail_size + newline as u64 + 1,
        None if tail_size == length => 0,
        // A line longer than the tail: read the whole file to find its start.
        None => {
            let mut all = Vec::new();
            file.seek(SeekFrom::Start(0))?;
            file.read_to_end(&mut all)?;
            all.iter()
                .rposition(|byte| *byte == b'\n')
                .map_or(0, |newline| newline as u64 + 1)
        }
    };
    warn!(
        bytes = length - keep,
        "the results file ends in a cut line (a crash?); cutting it off"
    );
    file.set_len(keep)?;
    Ok(keep)
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use super::*;

    fn results_file(dir: &Path, lines: &str) -> std::path::PathBuf {
        let path = dir.join("out.csv");
        std::fs::write(
            &path,
            format!("{}\n{lines}", super::super::COLUMNS.join(",")),
        )
        .unwrap();
        path
    }

    fn line(key: &str, status: &str) -> String {
        format!("2,{key},5511987654321,Ana,551130034000,i,{status},,,,1,2,5,,2026-01-01T00:00:00.000Z\n")
    }

    #[test]
    fn sent_and_unknown_keys_are_remembered_and_the_rest_tried_again() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [
            line("a", "SENT"),
            line("b", "UNKNOWN"),
            line("c", "FAILED"),
            line("'=d", "SENT"),
        ]
        .concat();
        let path = results_file(dir.path(), &lines);

        let previous = open_for_resume(&path, Dialect::Plain).unwrap().previous;

        assert_eq!(previous.verdict("a"), Some(Status::Sent));
        assert_eq!(previous.verdict("b"), Some(Status::Unknown));
        assert_eq!(previous.verdict("c"), None);
        assert_eq!(
            previous.verdict("=d"),
            Some(Status::Sent),
            "the spreadsheet guard is taken off"
        );
    }

    #[test]
    fn a_line_cut_by_a_crash_is_cut_off_before_appending() {
        let dir = tempfile::tempdir().unwrap();
        let whole = line("a", "SENT");
        let path = results_file(dir.path(), &format!("{whole}3,b,55119876"));

        let Resumed {
            previous, length, ..
        } = open_for_resume(&path, Dialect::Plain).unwrap();

        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(&whole), "{text}");
        assert_eq!(length, text.len() as u64);
        assert_eq!(previous.verdict("b"), None);
    }

    #[test]
    fn a_message_in_the_journal_without_a_results_line_is_unknown() {
        let dir = tempfile::tempdir().unwrap();
        let path = results_file(dir.path(), &line("a", "SENT"));
        let from = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(line("b", "SENT").as_bytes())
            .unwrap();
        std::fs::write(
            journal::journal_path(&path),
            format!("run {from}\nsend 3 \"b\"\nsend 4 \"c\"\nsend 5 \"d"),
        )
        .unwrap();

        let previous = open_for_resume(&path, Dialect::Plain).unwrap().previous;

        assert_eq!(previous.verdict("b"), Some(Status::Sent));
        assert_eq!(
            previous.verdict("c"),
            Some(Status::Unknown),
            "sent, then the process died"
        );
        assert_eq!(previous.in_flight, vec!["c"]);
        assert_eq!(
            previous.verdict("d"),
            None,
            "a journal line cut short was never followed by a send"
        );
    }

    #[test]
    fn a_resume_killed_in_turn_still_knows_what_the_first_run_had_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let path = results_file(dir.path(), &line("a", "SENT"));
        let from = std::fs::metadata(&path).unwrap().len();
        std::fs::write(
            journal::journal_path(&path),
            format!("run {from}\nsend 3 \"c\"\n"),
        )
        .unwrap();

        // The resume starts its own journal, then dies before writing any line.
        let Resumed {
            previous, length, ..
        } = open_for_resume(&path, Dialect::Plain).unwrap();
        journal::Journal::start(&path, length, &previous.in_flight).unwrap();
        let again = open_for_resume(&path, Dialect::Plain).unwrap().previous;

        assert_eq!(again.verdict("c"), Some(Status::Unknown));
    }

    #[test]
    fn a_file_that_is_not_a_results_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("campaign.csv");
        std::fs::write(
            &path,
            "to,contact_name,contact_phone\n5511987654321,Ana,55113",
        )
        .unwrap();

        assert!(matches!(
            open_for_resume(&path, Dialect::Plain).map(|_| ()),
            Err(ResultsError::NotResults(_))
        ));
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "to,contact_name,contact_phone\n5511987654321,Ana,55113"
        );
    }
}
