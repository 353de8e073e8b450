//! A results file that is already there, carried on by `--resume`: checked
//! to be this campaign's and of this kind before anything touches it, then
//! opened to add this run's lines after the earlier ones. What earlier runs
//! sent is remembered in the ledger, not here; the lines are read again
//! only where the ledger lacks an answer ([`earlier_lines`]).

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, Read, Seek, SeekFrom, Write};
use std::path::Path;

use jiff::Timestamp;
use tracing::warn;

use super::journal;
use super::{paths, Dialect, Header, Kind, LineFormat, ResultsError, ResultsWriter};
use crate::types::{same_name, Status};

/// A results file opened for a run: where its lines go, and what the file
/// held when the run began.
pub struct Opened {
    pub writer: ResultsWriter,
    pub lines: LineFormat,
    /// Where this run's lines start.
    pub results_from: u64,
    /// The file as it was, when there was one.
    pub earlier: Option<Earlier>,
}

/// A results file that was there when a run began: its lines are read
/// again only where the ledger lacks an answer ([`earlier_lines`]).
#[derive(Debug, Clone)]
pub struct Earlier {
    pub dialect: Dialect,
    /// It was an earlier version's file, just rewritten in this one's form:
    /// what it shows sent is remembered from it.
    pub upgraded: bool,
}

/// Opens the results file of `campaign` to add this run's lines after the
/// earlier ones. A missing file is created in `dialect`; an existing one
/// keeps its own form, and is refused, untouched, when it is of another
/// kind (a rehearsal's, say) or another campaign's. A last line cut by a
/// crash (there is a journal) is cut off; a last line that merely lacks
/// its line end is complete, and gets one. Its lines carry the campaign's
/// columns its header names, found by name among the row's `kept`.
pub fn open_existing(
    path: &Path,
    dialect: Dialect,
    kind: Kind,
    campaign: &str,
    kept: &[String],
) -> Result<Opened, ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    if fs::symlink_metadata(path).is_err() {
        return super::create(path, false, dialect, kind, campaign, kept);
    }
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    let mut file = paths::no_follow(options).open(path).map_err(io_error)?;
    paths::lock_results(&file, path)?;
    let (dialect, header) = check_is_ours(&mut file, path, kind, campaign)?;
    let file_kept = kept_of(&mut file, dialect).map_err(io_error)?;
    tell_columns_apart(&file_kept, kept);

    // A journal says the run before was killed while writing the file.
    let killed = journal::read_left(path).map_err(io_error)?.is_some();
    let mut length = match killed {
        true => cut_partial_line(&mut file).map_err(io_error)?,
        false => end_last_line(&mut file).map_err(io_error)?,
    };
    if header == Header::Legacy {
        (file, length) = upgrade(path, file, dialect, campaign).map_err(io_error)?;
        paths::lock_results(&file, path)?;
    }
    file.seek(SeekFrom::End(0)).map_err(io_error)?;
    Ok(Opened {
        writer: super::line_writer(io::BufWriter::new(file), dialect),
        lines: LineFormat::new(dialect, campaign, &file_kept, kept),
        results_from: length,
        earlier: Some(Earlier {
            dialect,
            upgraded: header == Header::Legacy,
        }),
    })
}

/// Says where the campaign's columns and the file's differ: the file keeps
/// its header, so a re-export's new columns are not carried, and columns
/// it no longer has are left empty (in every line: the file is rewritten
/// from this run's rows).
fn tell_columns_apart(file_kept: &[String], kept: &[String]) {
    let in_file: std::collections::HashSet<&str> = file_kept.iter().map(String::as_str).collect();
    let in_campaign: std::collections::HashSet<&str> = kept.iter().map(String::as_str).collect();
    let lacking: Vec<&str> = file_kept
        .iter()
        .map(String::as_str)
        .filter(|name| !in_campaign.contains(name))
        .collect();
    let new: Vec<&str> = kept
        .iter()
        .map(String::as_str)
        .filter(|name| !in_file.contains(name))
        .collect();
    if !lacking.is_empty() {
        warn!(
            columns = %lacking.join(", "),
            "the campaign file no longer has these columns of the results file: they are left empty"
        );
    }
    if !new.is_empty() {
        warn!(
            columns = %new.join(", "),
            "the results file keeps its own columns, not these new ones of the campaign file \
             (--overwrite starts the report afresh with them; the ledger still remembers what \
             was sent)"
        );
    }
}

/// The campaign's columns the file's header carries.
fn kept_of(file: &mut File, dialect: Dialect) -> io::Result<Vec<String>> {
    file.seek(SeekFrom::Start(0))?;
    let mut header = Vec::new();
    io::BufReader::new(&mut *file).read_until(b'\n', &mut header)?;
    Ok(dialect.kept_of_header(&header))
}

/// Rewrites an earlier version's results file in this version's form: the
/// campaign column first, then each line as it was. Written beside and
/// renamed over it, so a crash leaves one or the other whole. Returns the
/// new file, opened to add to, and its length.
fn upgrade(path: &Path, old: File, dialect: Dialect, campaign: &str) -> io::Result<(File, u64)> {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let upgraded = path.with_file_name(format!(".{name}.upgrade"));
    let mut options = OpenOptions::new();
    options.write(true).create(true).truncate(true);
    let out = paths::no_follow(options).open(&upgraded)?;
    out.set_permissions(old.metadata()?.permissions())?;
    let mut out = io::BufWriter::new(out);
    out.write_all(&dialect.header(Kind::Send))?;
    let mut first_cell = super::line::cell(campaign).into_owned().into_bytes();
    first_cell.push(dialect.delimiter());

    let mut reader = io::BufReader::new(&old);
    reader.seek(SeekFrom::Start(0))?;
    let mut header = Vec::new();
    reader.read_until(b'\n', &mut header)?;
    let base = header.len() as u64;
    // A quoted cell may hold line ends: whole records are copied, as written.
    let mut records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(dialect.delimiter())
        .from_reader(reader);
    let mut record = csv::ByteRecord::new();
    let mut line = Vec::new();
    let mut start = base;
    while records.read_byte_record(&mut record)? {
        let end = base + records.position().byte();
        line.resize((end - start) as usize, 0);
        std::os::unix::fs::FileExt::read_exact_at(&old, &mut line, start)?;
        let text = line.trim_ascii_start();
        if !text.is_empty() {
            out.write_all(&first_cell)?;
            out.write_all(text)?;
        }
        start = end;
    }
    let out = out.into_inner().map_err(|error| error.into_error())?;
    out.sync_all()?;
    fs::rename(&upgraded, path)?;
    let mut options = OpenOptions::new();
    options.read(true).write(true);
    let file = paths::no_follow(options).open(path)?;
    let length = file.metadata()?.len();
    Ok((file, length))
}

/// Whether the file at `path` is a results file of `kind` for `campaign` (or
/// an earlier version's, which names no campaign): one that `--overwrite`
/// replaces only once the campaign's memory has what it knew.
pub fn is_ours(path: &Path, kind: Kind, campaign: &str) -> bool {
    let is_file = fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_file());
    let mut options = OpenOptions::new();
    options.read(true);
    is_file
        && paths::no_follow(options)
            .open(path)
            .is_ok_and(|mut file| check_is_ours(&mut file, path, kind, campaign).is_ok())
}

/// Whether there is a regular file at `path` that is a results file of
/// `kind` for `campaign`; the refusal that names what it is instead, when
/// it is something else.
pub fn is_ours_or_refused(path: &Path, kind: Kind, campaign: &str) -> Result<bool, ResultsError> {
    let is_file = fs::symlink_metadata(path).is_ok_and(|meta| meta.file_type().is_file());
    if !is_file {
        return Ok(false);
    }
    let mut options = OpenOptions::new();
    options.read(true);
    let mut file = paths::no_follow(options)
        .open(path)
        .map_err(|source| ResultsError::Io {
            path: path.to_path_buf(),
            source,
        })?;
    check_is_ours(&mut file, path, kind, campaign).map(|_| true)
}

/// Refuses a file that is not a results file of this tool, of `kind`, for
/// `campaign` (an earlier version's file, which names no campaign, is taken
/// as a send's of any); returns its form.
fn check_is_ours(
    file: &mut File,
    path: &Path,
    kind: Kind,
    campaign: &str,
) -> Result<(Dialect, Header), ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = io::BufReader::new(&mut *file);
    let mut first_line = Vec::new();
    reader
        .read_until(b'\n', &mut first_line)
        .map_err(io_error)?;
    let Some((dialect, header)) = Dialect::of_header(&first_line) else {
        return Err(ResultsError::NotResults(path.to_path_buf()));
    };
    let found = match header {
        Header::Of(found) => found,
        Header::Legacy => Kind::Send,
    };
    if found != kind {
        return Err(ResultsError::OtherKind {
            path: path.to_path_buf(),
            found,
            ours: kind,
        });
    }
    if header == Header::Legacy {
        return Ok((dialect, header));
    }
    let mut lines = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(dialect.delimiter())
        .flexible(true)
        .from_reader(reader);
    let mut record = csv::StringRecord::new();
    if lines.read_record(&mut record).unwrap_or(false) {
        let named = super::cell_value(record.get(0).unwrap_or_default());
        // An earlier version wrote the name as it came (a macOS file name's
        // is NFD); it is the same campaign.
        if !same_name(named, campaign) {
            return Err(ResultsError::OtherCampaign {
                path: path.to_path_buf(),
                found: named.to_string(),
                ours: campaign.to_string(),
            });
        }
    }
    Ok((dialect, header))
}

/// Gives a last line saved without its line end (a spreadsheet's or an
/// editor's way) its line end, so the next line starts on a line of its
/// own; returns the file's length.
fn end_last_line(file: &mut File) -> io::Result<u64> {
    let length = file.metadata()?.len();
    if length == 0 {
        return Ok(0);
    }
    file.seek(SeekFrom::Start(length - 1))?;
    let mut last = [0; 1];
    file.read_exact(&mut last)?;
    if matches!(last[0], b'\n' | b'\r') {
        return Ok(length);
    }
    file.seek(SeekFrom::End(0))?;
    file.write_all(b"\n")?;
    Ok(length + 1)
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
        "the results file ends in a line cut by the crash of the run before; cutting it off"
    );
    file.set_len(keep)?;
    Ok(keep)
}

/// One line an earlier run wrote, as far as the ledger may need it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EarlierLine {
    /// The row of the campaign it answers (0 when the cell is not a number).
    pub row: u64,
    pub key: String,
    pub to: String,
    pub contact_phone: String,
    pub instance_id: String,
    pub status: Option<Status>,
    pub api_status: String,
    pub message_id: String,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub finished_at: Option<Timestamp>,
    /// Where the line starts in the file.
    pub offset: u64,
}

/// Calls `visit` with each line of the results file at `path` before byte
/// `until` (where this run's lines start), in the file's order.
pub fn earlier_lines(
    path: &Path,
    earlier: &Earlier,
    until: u64,
    mut visit: impl FnMut(EarlierLine),
) -> Result<(), ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut options = OpenOptions::new();
    options.read(true);
    let file = paths::no_follow(options).open(path).map_err(io_error)?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(earlier.dialect.delimiter())
        .flexible(true)
        .from_reader(io::BufReader::new(file.take(until)));
    let headers = reader
        .byte_headers()
        .map_err(|error| io_error(error.into()))?
        .clone();
    let column = |name: &str| {
        headers.iter().position(|header| {
            header.strip_prefix("\u{feff}".as_bytes()).unwrap_or(header) == name.as_bytes()
        })
    };
    let [row, key, to, phone, instance, status, api_status, message_id, http_status, attempts, finished_at] =
        [
            "row",
            "key",
            "to",
            "contact_phone",
            "instance_id",
            "status",
            "api_status",
            "message_id",
            "http_status",
            "attempts",
            "finished_at",
        ]
        .map(column);
    let mut record = csv::StringRecord::new();
    loop {
        let offset = reader.position().byte();
        match reader.read_record(&mut record) {
            Ok(true) => {}
            Ok(false) => break,
            // A line spreadsheets mangled is no answer to anything.
            Err(_) => continue,
        }
        let cell = |at: Option<usize>| {
            super::cell_value(at.and_then(|at| record.get(at)).unwrap_or_default()).to_string()
        };
        visit(EarlierLine {
            row: cell(row).parse().unwrap_or(0),
            key: cell(key),
            to: cell(to),
            contact_phone: cell(phone),
            instance_id: cell(instance),
            status: Status::parse(&cell(status)),
            api_status: cell(api_status),
            message_id: cell(message_id),
            http_status: cell(http_status).parse().ok(),
            attempts: cell(attempts).parse().unwrap_or(0),
            finished_at: cell(finished_at).parse().ok(),
            offset,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::results::COLUMNS;

    fn line(campaign: &str, key: &str, status: &str) -> String {
        format!("{campaign},2,{key},5511987654321,Ana,551130034000,i,{status},QUEUED,m-1,201,1,2,5,,2026-01-01T00:00:00.000Z\n")
    }

    fn results_file(dir: &Path, header: &str, lines: &str) -> std::path::PathBuf {
        let path = dir.join("out.csv");
        fs::write(&path, format!("{header}\n{lines}")).unwrap();
        path
    }

    fn read(path: &Path) -> Vec<EarlierLine> {
        let opened = open_existing(path, Dialect::Plain, Kind::Send, "leads", &[]).unwrap();
        let mut lines = Vec::new();
        let earlier = opened.earlier.unwrap();
        earlier_lines(path, &earlier, opened.results_from, |line| lines.push(line)).unwrap();
        lines
    }

    #[test]
    fn earlier_lines_are_read_by_their_column_names_the_spreadsheet_guard_taken_off() {
        let dir = tempfile::tempdir().unwrap();
        let lines = [line("leads", "a", "SENT"), line("leads", "'=b", "UNKNOWN")].concat();
        let path = results_file(dir.path(), &COLUMNS.join(","), &lines);

        let read = read(&path);

        assert_eq!(read.len(), 2);
        assert_eq!(
            (
                read[0].key.as_str(),
                read[0].status,
                read[0].message_id.as_str()
            ),
            ("a", Some(Status::Sent), "m-1")
        );
        assert_eq!(read[1].key, "=b");
        assert_eq!(read[1].http_status, Some(201));
        assert!(read[1].finished_at.is_some());
    }

    #[test]
    fn a_last_line_without_its_line_end_is_complete_unless_a_crash_left_a_journal() {
        let dir = tempfile::tempdir().unwrap();
        let whole = line("leads", "a", "SENT");
        let path = results_file(dir.path(), &COLUMNS.join(","), whole.trim_end());

        assert_eq!(read(&path).len(), 1, "saved without a line end: complete");
        let text = fs::read_to_string(&path).unwrap();
        assert!(text.ends_with(&whole), "{text}");

        fs::write(
            &path,
            format!("{}\n{whole}leads,3,b,55119", COLUMNS.join(",")),
        )
        .unwrap();
        fs::write(journal::journal_path(&path), "run 0\n").unwrap();
        let lines = read(&path);
        assert_eq!(lines.len(), 1, "half a line, cut by a crash");
        assert!(fs::read_to_string(&path).unwrap().ends_with(&whole));
    }

    #[test]
    fn another_campaigns_file_or_a_rehearsals_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let text = format!("{}\n{}", COLUMNS.join(","), line("other", "a", "SENT"));
        let path = results_file(dir.path(), &COLUMNS.join(","), &line("other", "a", "SENT"));
        assert!(matches!(
            open_existing(&path, Dialect::Plain, Kind::Send, "leads", &[]).map(|_| ()),
            Err(ResultsError::OtherCampaign { .. })
        ));
        assert_eq!(fs::read_to_string(&path).unwrap(), text);

        let rehearsal = String::from_utf8(Dialect::Plain.header(Kind::Rehearsal)).unwrap();
        let path = results_file(
            dir.path(),
            rehearsal.trim_end(),
            &line("leads", "a", "SENT"),
        );
        assert!(matches!(
            open_existing(&path, Dialect::Plain, Kind::Send, "leads", &[]).map(|_| ()),
            Err(ResultsError::OtherKind {
                found: Kind::Rehearsal,
                ..
            })
        ));
    }

    #[test]
    fn a_file_an_earlier_version_wrote_under_the_name_in_nfd_is_the_nfc_names_own() {
        let dir = tempfile::tempdir().unwrap();
        let (nfd, nfc) = ("promoc\u{327}a\u{303}o", "promo\u{e7}\u{e3}o");
        let path = results_file(dir.path(), &COLUMNS.join(","), &line(nfd, "a", "SENT"));

        let opened = open_existing(&path, Dialect::Plain, Kind::Send, nfc, &[]);

        assert!(opened.is_ok(), "{:?}", opened.err());
        assert!(is_ours(&path, Kind::Send, nfc));
    }

    #[test]
    fn an_earlier_versions_file_is_taken_as_the_campaigns_own() {
        let dir = tempfile::tempdir().unwrap();
        let legacy = line("", "a", "SENT");
        let path = results_file(
            dir.path(),
            &COLUMNS[1..].join(","),
            legacy.strip_prefix(',').unwrap(),
        );

        let read = read(&path);

        assert_eq!(
            (read[0].key.as_str(), read[0].status),
            ("a", Some(Status::Sent))
        );
    }

    #[test]
    fn a_file_that_is_not_a_results_file_is_refused_and_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("campaign.csv");
        fs::write(
            &path,
            "to,contact_name,contact_phone\n5511987654321,Ana,55113",
        )
        .unwrap();

        assert!(matches!(
            open_existing(&path, Dialect::Plain, Kind::Send, "leads", &[]).map(|_| ()),
            Err(ResultsError::NotResults(_))
        ));
        assert_eq!(
            fs::read_to_string(&path).unwrap(),
            "to,contact_name,contact_phone\n5511987654321,Ana,55113"
        );
    }
}
