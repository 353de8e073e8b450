//! Which files a run writes: the results file by its real path, its lock and
//! journal beside it, never the campaign it reads, and never through a
//! symbolic link someone left where one of them should be; and how a file is
//! replaced whole ([`replace_file`]).

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
    for path in files_of_a_run(results) {
        if fs::metadata(&path).is_ok_and(|file| same_inode(&file, &campaign_file)) {
            return Err(ResultsError::IsCampaign {
                path,
                campaign: campaign.to_path_buf(),
            });
        }
    }
    Ok(())
}

/// The files a run on the results file `results` writes: the results
/// file itself, then its lock and its journal.
pub fn files_of_a_run(results: &Path) -> [PathBuf; 3] {
    [
        results.to_path_buf(),
        lock_path(results),
        journal_path(results),
    ]
}

/// Whether `a` and `b` are one file, under whatever names (`./`, a
/// symbolic link, a hard link); `false` when either is missing.
pub fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::metadata(a), fs::metadata(b)) {
        (Ok(a), Ok(b)) => same_inode(&a, &b),
        _ => false,
    }
}

#[cfg(unix)]
fn same_inode(a: &fs::Metadata, b: &fs::Metadata) -> bool {
    use std::os::unix::fs::MetadataExt;
    a.dev() == b.dev() && a.ino() == b.ino()
}

#[cfg(not(unix))]
fn same_inode(_: &fs::Metadata, _: &fs::Metadata) -> bool {
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

/// Writes `path` anew: `write` fills `.<name>.<suffix>` beside it, made
/// new (whatever is at that name, a link or a hard link included, is
/// unlinked, never written through), which is flushed to disk and renamed
/// over `path`. A crash leaves the old file or the new one whole, and a link
/// at `path` is replaced, never followed.
pub fn replace_file<T>(
    path: &Path,
    suffix: &str,
    write: impl FnOnce(&File) -> io::Result<T>,
) -> io::Result<T> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let temporary = path.with_file_name(format!(".{name}.{suffix}"));
    match fs::remove_file(&temporary) {
        Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
        _ => {}
    }
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    let written = no_follow(options).open(&temporary).and_then(|out| {
        let value = write(&out)?;
        out.sync_all()?;
        fs::rename(&temporary, path)?;
        sync_folder(path)?;
        Ok(value)
    });
    if written.is_err() {
        let _ = fs::remove_file(&temporary);
    }
    written
}

/// Makes a rename in the folder of `path` durable.
fn sync_folder(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(folder) if !folder.as_os_str().is_empty() => File::open(folder)?.sync_all(),
        _ => File::open(".")?.sync_all(),
    }
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
