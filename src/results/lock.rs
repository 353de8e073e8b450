//! One run per results file: an advisory lock on `<results>.lock`, which
//! the operating system releases when the holder dies, so a `kill -9`
//! never leaves a lock that blocks the next cron run.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use super::paths::no_follow;

#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error("another run holds the lock {path} ({holder}); nothing was sent")]
    Held { path: PathBuf, holder: String },
    #[error("cannot lock {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// Held for the whole run; dropping it removes the lock file and releases it.
#[derive(Debug)]
pub struct RunLock {
    path: PathBuf,
    _file: File,
}

impl RunLock {
    pub fn acquire(results_path: &Path) -> Result<RunLock, LockError> {
        let path = lock_path(results_path);
        let io_error = |source| LockError::Io {
            path: path.clone(),
            source,
        };
        // A report asking who holds it ([`holder`]) holds it for a moment:
        // a run that meets it then tries again before it gives way.
        let mut tries_left = 5;
        loop {
            let mut options = OpenOptions::new();
            options.read(true).write(true).create(true).truncate(false);
            // A symbolic link here would make the lock write to its target.
            let mut file = no_follow(options).open(&path).map_err(io_error)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) if tries_left > 0 => {
                    tries_left -= 1;
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    continue;
                }
                Err(TryLockError::WouldBlock) => {
                    let holder = said_by(&path);
                    return Err(LockError::Held { path, holder });
                }
                Err(TryLockError::Error(error)) => return Err(io_error(error)),
            }
            // The previous holder removes the file on its way out; if that
            // happened after we opened it, we locked a file nobody else sees.
            if !still_at(&file, &path) {
                continue;
            }
            // A hard link here would have the holder's line written into
            // another file: a lock file is ours alone.
            if file.metadata().map_err(io_error)?.nlink() > 1 {
                return Err(io_error(io::Error::other(
                    "it is a hard link to another file, not a lock file: remove it",
                )));
            }
            let holder = format!(
                "held by pid {} since {}",
                std::process::id(),
                jiff::Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ")
            );
            file.set_len(0).map_err(io_error)?;
            file.write_all(holder.as_bytes()).map_err(io_error)?;
            file.flush().map_err(io_error)?;
            return Ok(RunLock { path, _file: file });
        }
    }
}

impl Drop for RunLock {
    fn drop(&mut self) {
        // Removed while still locked, so no one can lock this file in between.
        let _ = fs::remove_file(&self.path);
    }
}

/// Who holds the lock on the results file at `results_path` now (its
/// `held by pid … since …`), if a run does: for a report made while it
/// runs. Asked with a shared lock taken and let go at once, never kept.
pub fn holder(results_path: &Path) -> Option<String> {
    let path = lock_path(results_path);
    let mut options = OpenOptions::new();
    options.read(true);
    let file = no_follow(options).open(&path).ok()?;
    match file.try_lock_shared() {
        // Left by a run that was killed: nobody holds it.
        Ok(()) => None,
        Err(TryLockError::WouldBlock) => Some(said_by(&path)),
        Err(TryLockError::Error(_)) => None,
    }
}

/// Who the lock file at `path` says holds it (`held by pid … since …`).
fn said_by(path: &Path) -> String {
    let holder = fs::read_to_string(path).unwrap_or_default();
    match holder.trim() {
        "" => "holder unknown".to_string(),
        holder => holder.to_string(),
    }
}

pub fn lock_path(results_path: &Path) -> PathBuf {
    let mut name = results_path.as_os_str().to_owned();
    name.push(".lock");
    PathBuf::from(name)
}

#[cfg(unix)]
fn still_at(file: &File, path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (file.metadata(), fs::metadata(path)) {
        (Ok(open), Ok(named)) => open.dev() == named.dev() && open.ino() == named.ino(),
        _ => false,
    }
}

#[cfg(not(unix))]
fn still_at(_file: &File, path: &Path) -> bool {
    path.exists()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_on_the_same_results_is_refused_naming_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("out.csv");
        let first = RunLock::acquire(&results).unwrap();
        let error = RunLock::acquire(&results).unwrap_err().to_string();
        assert!(
            error.contains(&format!("pid {}", std::process::id())),
            "{error}"
        );
        drop(first);
        assert!(
            !lock_path(&results).exists(),
            "the lock file goes with the lock"
        );
        RunLock::acquire(&results).expect("free again");
    }

    #[test]
    fn a_lock_file_left_behind_without_a_holder_does_not_block() {
        let dir = tempfile::tempdir().unwrap();
        let results = dir.path().join("out.csv");
        fs::write(lock_path(&results), "held by pid 1 since long ago").unwrap();
        RunLock::acquire(&results).expect("no process holds it");
    }
}
