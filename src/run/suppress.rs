//! `interacto-bulk suppress`: the recipients no campaign may reach, kept in
//! the ledger so every run that shares it honours them.

use std::path::Path;

use jiff::Timestamp;

use crate::campaign::columns::{match_key, TO_ALIASES};
use crate::campaign::input::{self, DelimiterChoice, EncodingChoice};
use crate::campaign::phone::{self, Region};
use crate::campaign::Source;
use crate::cli::SuppressAction;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::exit::{ExitCode, RunError};
use crate::ledger::Ledger;
use crate::types::Suppression;

/// Headers an imported file's phone column may have (matched like campaign headers).
/// The headers a suppression file's phone column may have: those a
/// campaign's `to` may have, and `phone`.
fn is_phone_header(header: &str) -> bool {
    let key = match_key(header);
    key == "phone" || key == "to" || TO_ALIASES.contains(&key.as_str())
}

/// Carries out `action`; returns what to print on stdout and the exit code.
pub async fn suppress(
    settings: &Settings,
    action: SuppressAction,
) -> Result<(String, ExitCode), RunError> {
    // A command of a moment: nothing to stop it but the server's answer.
    let ledger = Ledger::open(&settings.ledger, &CancellationToken::new()).await?;
    let region = settings.campaign.default_region;
    let added_at = Timestamp::now().strftime("%Y-%m-%dT%H:%M:%SZ").to_string();
    let why = |reason: Option<String>| reason.unwrap_or_default();
    match action {
        SuppressAction::Add { phones, reason } => {
            let phones = normalised(&phones, region)?;
            let reason = why(reason);
            let entries = entries(phones, &reason, &added_at);
            let count = entries.len();
            let added = ledger.suppress(entries).await?;
            let text = format!("{added} added, {} already on the list\n", count - added);
            Ok((text, ExitCode::Success))
        }
        SuppressAction::Import { file, reason } => {
            let (phones, bad) = read_phones(&file, region)?;
            let reason = why(reason);
            let count = phones.len();
            let added = ledger.suppress(entries(phones, &reason, &added_at)).await?;
            let mut text = format!(
                "{}: {added} added, {} already on the list",
                file.display(),
                count - added
            );
            let exit = match bad.is_empty() {
                true => ExitCode::Success,
                false => {
                    let rows: Vec<String> =
                        bad.iter().take(10).map(|row| row.to_string()).collect();
                    text.push_str(&format!(
                        ", {} not a phone (rows {}{})",
                        bad.len(),
                        rows.join(", "),
                        if bad.len() > 10 { ", …" } else { "" }
                    ));
                    ExitCode::NotAllSent
                }
            };
            text.push('\n');
            Ok((text, exit))
        }
        SuppressAction::Remove { phones } => {
            let phones = normalised(&phones, region)?;
            let count = phones.len();
            let removed = ledger.unsuppress(phones).await?;
            let text = format!(
                "{removed} removed, {} were not on the list\n",
                count - removed
            );
            Ok((text, ExitCode::Success))
        }
        SuppressAction::List => {
            let mut writer = csv::Writer::from_writer(Vec::new());
            let write = |writer: &mut csv::Writer<Vec<u8>>, cells: [&str; 3]| {
                writer
                    .write_record(cells)
                    .expect("writing to memory cannot fail");
            };
            write(&mut writer, ["phone", "reason", "added_at"]);
            for entry in ledger.suppressed().await? {
                write(&mut writer, [&entry.phone, &entry.reason, &entry.added_at]);
            }
            let bytes = writer.into_inner().expect("writing to memory cannot fail");
            Ok((
                String::from_utf8_lossy(&bytes).into_owned(),
                ExitCode::Success,
            ))
        }
    }
}

fn entries(phones: Vec<String>, reason: &str, added_at: &str) -> Vec<Suppression> {
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

/// The phones of a CSV file's phone column, normalised, and the rows (as a
/// spreadsheet numbers them) that hold no phone.
pub(super) fn read_phones(
    file: &Path,
    region: Region,
) -> Result<(Vec<String>, Vec<u64>), RunError> {
    let unreadable =
        |error: String| RunError::Usage(format!("cannot read {}: {error}", file.display()));
    let opened = input::open(
        &Source::File(file.to_path_buf()),
        EncodingChoice::Auto,
        DelimiterChoice::Auto,
    )
    .map_err(|error| unreadable(error.to_string()))?;
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(opened.delimiter)
        .flexible(true)
        .from_reader(opened.reader);
    let headers = reader
        .headers()
        .map_err(|error| unreadable(error.to_string()))?
        .clone();
    let column = match headers.len() {
        1 => 0,
        _ => headers.iter().position(is_phone_header).ok_or_else(|| {
            unreadable(format!(
                "no phone column: name it one of phone, to, {}",
                TO_ALIASES.join(", ")
            ))
        })?,
    };
    let (mut phones, mut bad) = (Vec::new(), Vec::new());
    for (index, record) in reader.records().enumerate() {
        let row = index as u64 + 2;
        let cell = record
            .ok()
            .and_then(|record| record.get(column).map(str::to_string));
        match cell.map(|cell| phone::normalize(&cell, region)) {
            Some(Ok(phone)) => phones.push(phone.digits),
            _ => bad.push(row),
        }
    }
    Ok((phones, bad))
}
