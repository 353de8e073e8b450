//! Which files a run writes: the results file by its real path, its lock and
//! journal beside it, never the campaign it reads, and never through a
//! symbolic link someone left where one of them should be.

use std::fs::{self, File, OpenOptions, TryLockError};
use std::io;
use std::path::{Path, PathBuf};

use super::journal::journal_path;
use super::lock::lock_path;
use super::{LockError, ResultsError};

/// The results file a run writes, by its real path. A symbolic link is
/// followed, so that two runs given two names of one file share one lock;
/// but with `overwrite` the link itself is replaced, never written through.
pub fn resolve(given: &Path, overwrite: bool) -> Result<PathBuf, ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: given.to_path_buf(),
        source,
    };
    let is_link = fs::symlink_metadata(given).is_ok_and(|meta| meta.file_type().is_symlink());
    if given.exists() && !(overwrite && is_link) {
        return fs::canonicalize(given).map_err(io_error);
    }
    let name = given.file_name().ok_or_else(|| {
        io_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file name",
        ))
    })?;
    let folder = match given.parent() {
        Some(parent) if !parent.as_os_str().is_empty() => parent,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(ResultsError::NoFolder(folder.to_path_buf()));
    }
    Ok(fs::canonicalize(folder).map_err(io_error)?.join(name))
}

/// Refuses a results file, lock or journal that is the campaign itself,
/// under whatever name (`./`, a symbolic link, a hard link): the run would
/// replace the campaign with its results, or read its own lines as rows.
pub fn refuse_campaign(campaign: &Path, results: &Path) -> Result<(), ResultsError> {
    let Ok(campaign_file) = fs::metadata(campaign) else {
        return Ok(());
    };
    for path in [
        results.to_path_buf(),
        lock_path(results),
        journal_path(results),
    ] {
        if fs::metadata(&path).is_ok_and(|file| same_file(&file, &campaign_file)) {
            return Err(ResultsError::IsCampaign {
                path,
                campaign: campaign.to_path_buf(),
            });
        }
    }
    Ok(())
}

#[cfg(unix)]
fn same_file(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_file(_: &fs::Metadata, _: &fs::Metadata) -> bool {
    false
}

/// Options that refuse to open through a symbolic link at the path itself.
pub fn no_follow(mut options: OpenOptions) -> OpenOptions {
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(libc::O_NOFOLLOW);
    }
    options
}

/// Locks the results file itself, so that two runs writing one file under
/// two names (hard links) cannot both write it.
pub fn lock_results(file: &File, path: &Path) -> Result<(), ResultsError> {
    match file.try_lock() {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(ResultsError::Lock(LockError::Held {
            path: path.to_path_buf(),
            holder: "another run writes this file, under another name".to_string(),
        })),
        Err(TryLockError::Error(source)) => Err(ResultsError::Io {
            path: path.to_path_buf(),
            source,
        }),
    }
}
