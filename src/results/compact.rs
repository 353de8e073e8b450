//! The results file as the campaign's report: once a run ends, the file
//! becomes this run's lines alone, one per row of the campaign as it is now,
//! in row order. The run wrote a line for every row it read — the rows that
//! earlier runs sent included, from the campaign's memory in the ledger —
//! so earlier runs' lines, whose row numbers may name other people since,
//! are left out.

use std::fs::{File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::{paths, Dialect, Header, ResultsError};
use crate::types::{Status, Tally};

/// Where a row's chosen line is in the old file, and what it says.
#[derive(Debug, Clone, Copy, Default)]
struct Chosen {
    offset: u64,
    /// 0: the row has no line.
    len: u32,
    status: Option<Status>,
}

/// Rewrites the results file at `path` to the lines from byte `from` on (the
/// run's own), one per row in row order (a row's last line, should it have
/// two). The new file is written beside the old, flushed to disk and
/// renamed over it, so a crash leaves one or the other whole. Returns the
/// campaign's counts, one per row.
///
/// Memory: 16 bytes a row, whatever the lines hold; a line is copied from
/// the old file as it is, never parsed again.
pub fn compact(path: &Path, from: u64) -> Result<Tally, ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = paths::no_follow(read_only()).open(path).map_err(io_error)?;
    let (header, chosen) = choose_lines(&file, path, from)?;
    // Written as `.campaign.results.csv.tidy`, beside the results file.
    paths::replace_file(path, "tidy", |out| {
        write_chosen(&file, &header, &chosen, out)
    })
    .map_err(io_error)
}

/// Whether `row` may follow a file whose rows so far reach `highest`
/// (blank lines are rows, but not millions at once): a row number far past
/// it is corruption or an edit, never a campaign's.
pub fn a_row_after(highest: u64, row: u64) -> bool {
    row <= 2 + 4 * (highest + 1_000_000)
}

fn read_only() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.read(true);
    options
}

/// The header line as written, and the chosen line of each row (the row
/// numbers a spreadsheet shows start at 2) from byte `from` on.
fn choose_lines(
    file: &File,
    path: &Path,
    from: u64,
) -> Result<(Vec<u8>, Vec<Chosen>), ResultsError> {
    let io_error = |source| ResultsError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut buffered = BufReader::with_capacity(1 << 16, file);
    let mut header = Vec::new();
    buffered.read_until(b'\n', &mut header).map_err(io_error)?;
    let Some((dialect, Header::Of(_))) = Dialect::of_header(&header) else {
        return Err(ResultsError::NotResults(path.to_path_buf()));
    };
    let start_at = from.max(header.len() as u64);
    buffered
        .seek_relative(i64::try_from(start_at - header.len() as u64).unwrap_or(i64::MAX))
        .map_err(io_error)?;

    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(dialect.delimiter())
        .from_reader(buffered);
    let (row_at, status_at) = (1, 7);
    let mut chosen: Vec<Chosen> = Vec::new();
    let mut record = csv::ByteRecord::new();
    let mut start = start_at;
    loop {
        let more = reader
            .read_byte_record(&mut record)
            .map_err(|error| io_error(error.into()))?;
        if !more {
            break;
        }
        let end = start_at + reader.position().byte();
        let unreadable = |what: &str| {
            io_error(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("the line at byte {start} has {what}"),
            ))
        };
        let row: usize = std::str::from_utf8(record.get(row_at).unwrap_or_default())
            .ok()
            .and_then(|row| row.parse().ok())
            .filter(|row| *row >= 2)
            .ok_or_else(|| unreadable("no row number"))?;
        // A row number far past every row so far is corruption, and must
        // not make the table below claim gigabytes.
        if !a_row_after(chosen.len() as u64, row as u64) {
            return Err(unreadable("a row number no campaign has"));
        }
        let status = std::str::from_utf8(record.get(status_at).unwrap_or_default())
            .ok()
            .and_then(Status::parse);
        let len = u32::try_from(end - start).map_err(|_| unreadable("more than 4 GiB"))?;
        let index = row - 2;
        if index >= chosen.len() {
            chosen.resize(index + 1, Chosen::default());
        }
        let line = Chosen {
            offset: start,
            len,
            status,
        };
        chosen[index] = line;
        start = end;
    }
    Ok((header, chosen))
}

/// Writes the header and each row's chosen line to `out`; returns the
/// counts of the lines written.
fn write_chosen(file: &File, header: &[u8], chosen: &[Chosen], out: &File) -> io::Result<Tally> {
    // Phone numbers: whoever could not read the old file cannot read the new.
    out.set_permissions(file.metadata()?.permissions())?;
    let mut out = BufWriter::with_capacity(1 << 16, out);
    out.write_all(header)?;
    let mut tally = Tally::default();
    let mut line = Vec::new();
    for row in chosen.iter().filter(|row| row.len > 0) {
        line.resize(row.len as usize, 0);
        file.read_exact_at(&mut line, row.offset)?;
        out.write_all(&line)?;
        if let Some(status) = row.status {
            tally.add(status);
        }
    }
    out.flush()?;
    Ok(tally)
}
