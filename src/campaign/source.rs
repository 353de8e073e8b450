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

    pub fn open(&self) -> io::Result<Box<dyn Read + Send>> {
        Ok(match self {
            Source::Stdin => Box::new(io::stdin()),
            Source::File(path) => Box::new(std::fs::File::open(path)?),
        })
    }

    /// `<campaign stem>.results.csv` in the working directory.
    pub fn default_results_path(&self) -> PathBuf {
        let stem = match self {
            Source::Stdin => "stdin".into(),
            Source::File(path) => path
                .file_stem()
                .map_or_else(|| "campaign".into(), |stem| stem.to_string_lossy()),
        };
        PathBuf::from(format!("{stem}.results.csv"))
    }

    pub fn describe(&self) -> String {
        match self {
            Source::Stdin => "standard input".to_string(),
            Source::File(path) => path.display().to_string(),
        }
    }
}
