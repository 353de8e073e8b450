//! Where a campaign comes from: a file, or standard input.

use std::io::{self, Read};
use std::path::{Path, PathBuf};

/// Where the campaign comes from.
#[derive(Debug, Clone)]
pub enum Source {
    Stdin,
    File(PathBuf),
}

impl Source {
    /// `-` means standard input.
    pub fn from_arg(path: &Path) -> Self {
        if path.as_os_str() == "-" {
            Source::Stdin
        } else {
            Source::File(path.to_path_buf())
        }
    }

    /// Opens the campaign: standard input, a file, or a pipe. A device, a
    /// directory or a socket is refused: `/dev/zero` would be read forever.
    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Source::Stdin => Box::new(io::stdin()),
            Source::File(path) => {
                let file = std::fs::File::open(path)?;
                let kind = file.metadata()?.file_type();
                if !(kind.is_file() || is_fifo(&kind)) {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "not a regular file (a device, a directory or a socket); \
                         a campaign is a file, a pipe, or `-` for standard input",
                    ));
                }
                Box::new(file)
            }
        })
    }

    /// A regular file: it can be read again (to detect its encoding, to
    /// count its rows), and it ends.
    pub fn is_regular_file(&self) -> bool {
        match self {
            Source::Stdin => false,
            Source::File(path) => std::fs::metadata(path).is_ok_and(|meta| meta.is_file()),
        }
    }

    /// `<campaign stem>.<kind>.csv` in the working directory:
    /// `<stem>.results.csv` for a send, `<stem>.check.csv` for a dry run and
    /// `<stem>.mock.csv` for a rehearsal (`kind` says which), so that
    /// "validate, rehearse, then send" never finds one's file where
    /// another's goes.
    pub fn default_results_path(&self, kind: &str) -> PathBuf {
        let stem = match self {
            Source::Stdin => "stdin".into(),
            Source::File(path) => path
                .file_stem()
                .map_or_else(|| "campaign".into(), |stem| stem.to_string_lossy()),
        };
        PathBuf::from(format!("{stem}.{kind}.csv"))
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Stdin => "standard input".to_string(),
            Source::File(path) => path.display().to_string(),
        }
    }
}

#[cfg(unix)]
fn is_fifo(kind: &std::fs::FileType) -> bool {
    use std::os::unix::fs::FileTypeExt;
    kind.is_fifo()
}

#[cfg(not(unix))]
fn is_fifo(_: &std::fs::FileType) -> bool {
    false
}
