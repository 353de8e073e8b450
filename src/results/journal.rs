//! Crash safety for the results file: `<results>.journal` says a run is at
//! work on it, and from which byte its lines start. A run that ends removes
//! it, so one found at the start means the run before was killed: a last
//! line without its line end is then half a line that run was writing, and
//! is cut off; without a journal it is a complete line that a spreadsheet
//! saved without one.
//!
//! What a killed run had in flight, the ledger knows (cards recorded as
//! leaving, with no answer). A journal of an earlier version also lists the
//! keys it was sending, one `send <row> <key as a JSON string>` line each,
//! which the run after an upgrade reads.
//!
//! Format: `run <results file length at start>`.

use std::fs::{self, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::paths::no_follow;

/// The journal of one run: there while the run works on the results file.
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
}

/// What a journal left by an earlier run says.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Left {
    /// Where that run's lines start in the results file.
    pub results_from: u64,
    /// The keys of the messages that run started to send (a journal of an
    /// earlier version).
    pub keys: Vec<String>,
}

impl Journal {
    /// Starts the journal of a run whose lines start at `results_from`. It
    /// is written beside the old journal and renamed over it: a crash
    /// before the rename leaves the old one whole, and a symbolic link where
    /// the journal goes is replaced, not written through.
    pub fn start(results_path: &Path, results_from: u64) -> io::Result<Journal> {
        let path = journal_path(results_path);
        let mut name = path.clone().into_os_string();
        name.push(".new");
        let fresh = PathBuf::from(name);
        // One left by a run that died here; the run's lock keeps others out.
        let _ = fs::remove_file(&fresh);
        let mut options = OpenOptions::new();
        options.write(true).create_new(true);
        let mut file = no_follow(options).open(&fresh)?;
        let written = file
            .write_all(format!("run {results_from}\n").as_bytes())
            .and_then(|()| file.sync_data())
            .and_then(|()| fs::rename(&fresh, &path));
        if let Err(error) = written {
            let _ = fs::remove_file(&fresh);
            return Err(error);
        }
        Ok(Journal { path })
    }

    /// Removes the journal once every line of the run is written.
    pub fn finish(self) -> io::Result<()> {
        fs::remove_file(&self.path)
    }
}

pub fn journal_path(results_path: &Path) -> PathBuf {
    let mut name = results_path.as_os_str().to_owned();
    name.push(".journal");
    PathBuf::from(name)
}

/// Reads the journal an earlier run left, if any. A last line cut by a
/// crash is ignored: its message had not been sent.
pub fn read_left(results_path: &Path) -> io::Result<Option<Left>> {
    let path = journal_path(results_path);
    // A symbolic link there is not a journal of this tool: the run's own
    // replaces it.
    if fs::symlink_metadata(&path).is_ok_and(|meta| meta.file_type().is_symlink()) {
        return Ok(None);
    }
    let mut options = OpenOptions::new();
    options.read(true);
    let file = match no_follow(options).open(&path) {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_journal_says_where_the_run_began_until_it_finishes() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("out.csv");
        let journal = Journal::start(&results, 42).unwrap();
        assert_eq!(
            read_left(&results).unwrap(),
            Some(Left {
                results_from: 42,
                keys: Vec::new()
            })
        );
        journal.finish().unwrap();
        assert_eq!(read_left(&results).unwrap(), None);
    }

    #[test]
    fn an_earlier_versions_journal_gives_its_keys_but_not_one_cut_short() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("out.csv");
        fs::write(
            journal_path(&results),
            "run 100\nsend 3 \"a\"\nsend 4 \"b \\\"q\\\"\"\nsend 5 \"c",
        )
        .unwrap();
        let left = read_left(&results).unwrap().unwrap();
        assert_eq!(left.results_from, 100);
        assert_eq!(left.keys, ["a", "b \"q\""]);
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

        assert!(Journal::start(&results, 200).is_err());
        assert_eq!(fs::read_to_string(journal_path(&results)).unwrap(), old);

        fs::remove_dir(&fresh).unwrap();
        let journal = Journal::start(&results, 200).unwrap();
        assert_eq!(read_left(&results).unwrap().unwrap().results_from, 200);
        journal.finish().unwrap();
    }
}
