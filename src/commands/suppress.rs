//! `interacto-bulk suppress`: the recipients no campaign may reach, kept in
//! the ledger so every run that shares it honours them.

use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::campaign::columns::{match_key, TO_ALIASES};
use crate::campaign::input::{self, DelimiterChoice, EncodingChoice, TextEncoding};
use crate::campaign::phone::{self, Region};
use crate::campaign::Source;
use crate::config::Settings;
use crate::exit::{ExitCode, RunError};
use crate::types::{printable, Suppression};

use super::{open_ledger, IfNew};

/// Headers an imported file's phone column may have (matched like campaign headers).
/// The headers a suppression file's phone column may have: those a
/// campaign's `to` may have, and `phone`.
fn is_phone_header(header: &str) -> bool {
    let key = match_key(header);
    key == "phone" || key == "to" || TO_ALIASES.contains(&key.as_str())
}

/// What `suppress` is asked to do.
#[derive(Debug, Clone)]
pub enum SuppressTask {
    /// Add these phones, with a reason kept with each.
    Add {
        phones: Vec<String>,
        reason: Option<String>,
    },
    /// Add every phone of a CSV file's phone column.
    Import {
        file: PathBuf,
        reason: Option<String>,
    },
    /// Take these phones off the list.
    Remove { phones: Vec<String> },
    /// The whole list, as CSV.
    List,
}

/// Carries out `task` on the ledger `settings` name (`if_new`: when it is
/// not there yet); returns what to print on stdout and the exit code.
pub async fn suppress(
    settings: &Settings,
    task: SuppressTask,
    if_new: IfNew,
) -> Result<(String, ExitCode), RunError> {
    let ledger = open_ledger(settings, if_new).await?;
    let region = settings.campaign.default_region;
    let added_at = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let why = |reason: Option<String>| reason.unwrap_or_default();
    match task {
        SuppressTask::Add { phones, reason } => {
            let phones = normalised(&phones, region)?;
            let reason = why(reason);
            let entries = entries(phones, &reason, &added_at);
            let count = entries.len();
            let added = ledger.suppress(entries).await?;
            let text = format!(
                "{added} added, {} already on the list of {ledger}\n",
                count - added
            );
            Ok((text, ExitCode::Success))
        }
        SuppressTask::Import { file, reason } => {
            let (phones, unread) = read_phones(&file, region)?;
            let reason = why(reason);
            let count = phones.len();
            let added = ledger.suppress(entries(phones, &reason, &added_at)).await?;
            let mut text = format!(
                "{}: {added} added, {} already on the list of {ledger}\n",
                file.display(),
                count - added
            );
            // Every row not imported is named: an opt-out lost unseen is a
            // person who gets the card.
            let exit = match unread.is_empty() {
                true => ExitCode::Success,
                false => {
                    text.push_str(&unread_text(&file, &unread));
                    ExitCode::NotAllSent
                }
            };
            Ok((text, exit))
        }
        SuppressTask::Remove { phones } => {
            let phones = normalised(&phones, region)?;
            let count = phones.len();
            let removed = ledger.unsuppress(phones).await?;
            let text = format!(
                "{removed} removed, {} were not on the list of {ledger}\n",
                count - removed
            );
            Ok((text, ExitCode::Success))
        }
        SuppressTask::List => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            let write = |writer: &mut csv::Writer<Vec<u8>>, cells: [&str; 3]| {
                writer
                    .write_record(cells)
                    .expect("writing to memory cannot fail");
            };
            write(&mut writer, ["phone", "reason", "added_at"]);
            for entry in ledger.suppressed().await? {
                let reason = printable(&entry.reason);
                write(&mut writer, [&entry.phone, &reason, &entry.added_at]);
            }
            let bytes = writer.into_inner().expect("writing to memory cannot fail");
            Ok((
                String::from_utf8_lossy(&bytes).into_owned(),
                ExitCode::Success,
            ))
        }
    }
}

/// The list's entries for `phones`, the reason as it may be shown.
fn entries(phones: Vec<String>, reason: &str, added_at: &str) -> Vec<Suppression> {
    let reason = printable(reason);
    phones
        .into_iter()
        .map(|phone| Suppression {
            phone,
            reason: reason.to_string(),
            added_at: added_at.to_string(),
        })
        .collect()
}

/// Phones given on the command line, normalised; the first bad one is an error.
pub(super) fn normalised(phones: &[String], region: Region) -> Result<Vec<String>, RunError> {
    phones
        .iter()
        .map(|raw| {
            phone::normalize(raw, region)
                .map(|phone| phone.digits)
                .map_err(|error| RunError::Usage(format!("{raw:?}: {error}")))
        })
        .collect()
}

/// A row of a phones file that was not imported: its number (as a
/// spreadsheet numbers rows) and why.
pub(super) struct Unread {
    pub row: u64,
    pub why: String,
}

/// The phones of a CSV file, normalised, and the rows that hold none. The
/// file is read as a campaign is (encoding and delimiter detected: Excel's
/// Windows-1252 and `;` included). Its phone column is the one whose header
/// names a phone, or its only column; a first line that holds a phone is a
/// row, not a header (a list of numbers without one).
pub(super) fn read_phones(
    file: &Path,
    region: Region,
) -> Result<(Vec<String>, Vec<Unread>), RunError> {
    let unreadable =
        |error: String| RunError::Usage(format!("cannot read {}: {error}", file.display()));
    let (mut reader, encoding) = open_list(file).map_err(unreadable)?;
    let mut records = reader.byte_records();
    let first = match records.next() {
        Some(record) => trimmed_cells(
            &record.map_err(|error| unreadable(error.to_string()))?,
            encoding,
        ),
        None => return Ok((Vec::new(), Vec::new())),
    };
    let (column, first_is_a_row) = phone_column(&first, region).map_err(unreadable)?;
    let (mut phones, mut unread) = (Vec::new(), Vec::new());
    let mut take = |row: u64, cells: Result<Vec<Option<String>>, String>| match phone_in(
        cells, column, region, encoding,
    ) {
        Ok(phone) => phones.push(phone),
        Err(why) => unread.push(Unread { row, why }),
    };
    if first_is_a_row {
        take(1, Ok(first));
    }
    for (index, record) in records.enumerate() {
        let row = index as u64 + 2;
        take(
            row,
            record
                .map(|record| trimmed_cells(&record, encoding))
                .map_err(|error| format!("unreadable: {error}")),
        );
    }
    Ok((phones, unread))
}

/// A CSV reader of the list, its encoding and delimiter detected, or why it
/// cannot be read.
fn open_list(
    file: &Path,
) -> Result<(csv::Reader<Box<dyn std::io::Read + Send>>, TextEncoding), String> {
    // Looked at before it is opened: a FIFO would wait for a writer, past
    // any signal, and a device never ends. A list is a file.
    let metadata = std::fs::metadata(file).map_err(|error| error.to_string())?;
    if !metadata.is_file() {
        return Err(
            "not a regular file (a device, a FIFO, a directory or a socket): save the list as a CSV file"
                .to_string(),
        );
    }
    let opened = input::open(
        &Source::File(file.to_path_buf()),
        EncodingChoice::Auto,
        DelimiterChoice::Auto,
    )
    .map_err(|error| error.to_string())?;
    let reader = csv::ReaderBuilder::new()
        .delimiter(opened.delimiter)
        .has_headers(false)
        .flexible(true)
        .from_reader(opened.reader);
    Ok((reader, opened.encoding))
}

/// A record's cells as trimmed text; `None` for a cell the encoding cannot read.
fn trimmed_cells(record: &csv::ByteRecord, encoding: TextEncoding) -> Vec<Option<String>> {
    record
        .iter()
        .map(|cell| encoding.decode(cell).map(|text| text.trim().to_string()))
        .collect()
}

/// The phone column, found from the first line's cells, and whether that
/// line is a row of it: the column a header names, else a lone column, else
/// the first whose cell is a phone (a list without a header).
fn phone_column(first: &[Option<String>], region: Region) -> Result<(usize, bool), String> {
    let is_phone = |cell: &Option<String>| {
        cell.as_deref()
            .is_some_and(|cell| phone::normalize(cell, region).is_ok())
    };
    let named = first
        .iter()
        .position(|cell| cell.as_deref().is_some_and(is_phone_header));
    match (named, first.len()) {
        (Some(column), _) => Ok((column, false)),
        (None, 1) => Ok((0, is_phone(&first[0]))),
        (None, _) => match first.iter().position(is_phone) {
            Some(column) => Ok((column, true)),
            None => Err(format!(
                "no phone column: name it one of phone, to, {}",
                TO_ALIASES.join(", ")
            )),
        },
    }
}

/// The phone in a row's `column`, normalised, or why the row has none.
fn phone_in(
    cells: Result<Vec<Option<String>>, String>,
    column: usize,
    region: Region,
    encoding: TextEncoding,
) -> Result<String, String> {
    match cells?.into_iter().nth(column) {
        None => Err("no phone column in this row".to_string()),
        Some(None) => Err(format!("not {encoding} text")),
        Some(Some(cell)) if cell.is_empty() => Err("empty".to_string()),
        Some(Some(cell)) => phone::normalize(&cell, region)
            .map(|phone| phone.digits)
            .map_err(|error| format!("{cell:?}: {error}")),
    }
}

/// What was not imported of a phones file, a line a row (the first ten).
pub(super) fn unread_text(file: &Path, unread: &[Unread]) -> String {
    let mut text = format!("{}: {} rows not imported:\n", file.display(), unread.len());
    for Unread { row, why } in unread.iter().take(10) {
        text.push_str(&format!("  row {row}: {why}\n"));
    }
    if unread.len() > 10 {
        text.push_str(&format!("  … and {} more\n", unread.len() - 10));
    }
    text
}
