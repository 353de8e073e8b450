//! Where a report page goes, and what it never replaces: the results file it
//! reports on, the campaign file, any results, rehearsal or check file of
//! this tool, or anything but an earlier page; and never through a symbolic
//! link. The page is written beside and renamed over, as the results file's
//! rewrite is ([`crate::results::replace_file`]).

use std::fs::{self, OpenOptions};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};

use crate::results::{self, Dialect, Header};

/// A report page's file, and the files it is made from and must never
/// replace.
#[derive(Debug, Clone)]
pub struct Destination {
    /// Where the page goes.
    pub page: PathBuf,
    /// The results file it reports on.
    pub results: PathBuf,
    /// The campaign file, when a send writes the page.
    pub campaign: Option<PathBuf>,
}

/// Why a report page may not be written where it was asked for.
#[derive(Debug, thiserror::Error)]
pub enum DestinationError {
    #[error(
        "the report {0} is a symbolic link, and a report is never written through one (it could \
         point anywhere); remove the link, or name another file"
    )]
    Link(PathBuf),
    #[error(
        "the folder {folder} for the report {page} does not exist; create it, or name another file"
    )]
    NoFolder { page: PathBuf, folder: PathBuf },
    #[error(
        "the report {page} is the results file it reports on ({results}): the page would \
         replace it; name another file (by default the page is the results file's name with .html)"
    )]
    Results { page: PathBuf, results: PathBuf },
    #[error(
        "the report {page} is {file}, which a run on the results file {results} keeps while it \
         works; name another file"
    )]
    RunsFile {
        page: PathBuf,
        file: PathBuf,
        results: PathBuf,
    },
    #[error(
        "the report {page} is the campaign file {campaign} itself: the page would replace the \
         lead list; name another file"
    )]
    Campaign { page: PathBuf, campaign: PathBuf },
    #[error(
        "the report {page} is {what} (its first line says so), which a report never replaces; \
         name another file"
    )]
    ToolFile { page: PathBuf, what: &'static str },
    #[error(
        "the report {0} is there and is not an HTML page: a report replaces only an earlier \
         report; remove it, or name another file"
    )]
    NotAPage(PathBuf),
    #[error(
        "the report {0} is not a regular file (a folder, a device or a pipe); name another file"
    )]
    NotAFile(PathBuf),
    #[error("cannot check the report's file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
}

/// How much of an existing file is read to tell what it is: a results
/// file's header, the campaign's columns included, is far shorter.
const FIRST_LINE_AT_MOST: u64 = 64 * 1024;

impl Destination {
    /// Refuses a page that would replace a file it must not, or be written
    /// through a link, or into a folder that is not there.
    pub fn check(&self) -> Result<(), DestinationError> {
        let page = self.page.clone();
        let there = match fs::symlink_metadata(&self.page) {
            Ok(meta) if meta.file_type().is_symlink() => return Err(DestinationError::Link(page)),
            Ok(meta) if !meta.is_file() => return Err(DestinationError::NotAFile(page)),
            Ok(_) => true,
            Err(error) if error.kind() == io::ErrorKind::NotFound => false,
            Err(source) => return Err(DestinationError::Io { path: page, source }),
        };
        if !there {
            let folder = match self.page.parent() {
                Some(parent) if !parent.as_os_str().is_empty() => parent,
                _ => Path::new("."),
            };
            if !folder.is_dir() {
                let folder = folder.to_path_buf();
                return Err(DestinationError::NoFolder { page, folder });
            }
        }
        self.refuse_the_runs_files()?;
        if there {
            self.check_existing()?;
        }
        Ok(())
    }

    /// Refuses the results file and its lock and journal, by name even
    /// where they are not there yet (a send makes them only once it
    /// starts), or as one file under another name.
    fn refuse_the_runs_files(&self) -> Result<(), DestinationError> {
        let real = |path: &Path| results::resolve(path, false).ok();
        let page_real = real(&self.page);
        let is_page = |file: &Path| {
            results::same_file(&self.page, file) || (page_real.is_some() && real(file) == page_real)
        };
        let [results_file, lock_and_journal @ ..] = results::files_of_a_run(&self.results);
        let (page, results) = (self.page.clone(), self.results.clone());
        if is_page(&results_file) {
            return Err(DestinationError::Results { page, results });
        }
        match lock_and_journal.into_iter().find(|file| is_page(file)) {
            Some(file) => Err(DestinationError::RunsFile {
                page,
                file,
                results,
            }),
            None => Ok(()),
        }
    }

    /// An existing regular file at the page's name: never the campaign, and
    /// otherwise only an earlier page (or an empty file) is replaced.
    fn check_existing(&self) -> Result<(), DestinationError> {
        let page = self.page.clone();
        if let Some(campaign) = self
            .campaign
            .as_deref()
            .filter(|campaign| results::same_file(&self.page, campaign))
        {
            let campaign = campaign.to_path_buf();
            return Err(DestinationError::Campaign { page, campaign });
        }
        let start = start_of(&self.page).map_err(|source| DestinationError::Io {
            path: page.clone(),
            source,
        })?;
        let first_line = start.split_inclusive(|byte| *byte == b'\n').next();
        match Dialect::of_header(first_line.unwrap_or_default()) {
            Some((_, Header::Of(kind))) => Err(DestinationError::ToolFile {
                page,
                what: kind.describe(),
            }),
            Some((_, Header::Legacy)) => Err(DestinationError::ToolFile {
                page,
                what: "the results file of an earlier version of this tool",
            }),
            None if is_a_page(&start) => Ok(()),
            None => Err(DestinationError::NotAPage(page)),
        }
    }

    /// Writes `page` to the page's file: beside it and renamed over it, so
    /// a crash leaves the earlier page or the new one, and a link put there
    /// since the check is replaced, not written through.
    pub fn write(&self, page: &[u8]) -> io::Result<()> {
        results::replace_file(&self.page, "new", |mut out| {
            // Whoever could read the earlier page can read the new one.
            if let Ok(earlier) = fs::symlink_metadata(&self.page) {
                if earlier.is_file() {
                    out.set_permissions(earlier.permissions())?;
                }
            }
            out.write_all(page)
        })
    }
}

/// The start of the file at `path` (at most [`FIRST_LINE_AT_MOST`] bytes),
/// read without following a link.
fn start_of(path: &Path) -> io::Result<Vec<u8>> {
    let mut options = OpenOptions::new();
    options.read(true);
    let file = results::no_follow(options).open(path)?;
    let mut start = Vec::new();
    file.take(FIRST_LINE_AT_MOST).read_to_end(&mut start)?;
    Ok(start)
}

/// Whether a file that starts with `start` is an HTML page (an earlier
/// report, of this version or another; blank lines before it or not) or
/// empty. Blank lines before anything else are no page: a lead list may
/// start so.
fn is_a_page(start: &[u8]) -> bool {
    let text = start.strip_prefix("\u{feff}".as_bytes()).unwrap_or(start);
    let text = text.trim_ascii_start().to_ascii_lowercase();
    start.is_empty() || text.starts_with(b"<!doctype html") || text.starts_with(b"<html")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_html_page_or_an_empty_file_is_a_page_and_nothing_else_is() {
        assert!(is_a_page(b"<!DOCTYPE html><html lang=\"en\">"));
        assert!(is_a_page(b"\xef\xbb\xbf  <html>\n"));
        assert!(is_a_page(b""));
        assert!(is_a_page(b"\n\n<!doctype html>"));
        assert!(!is_a_page(b"\n"));
        assert!(!is_a_page(b"\nto,contact_name,contact_phone\n"));
        assert!(!is_a_page(b"to,contact_name,contact_phone\n"));
        assert!(!is_a_page(b"%PDF-1.7\n"));
    }
}
