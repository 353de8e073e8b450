//! Reading a campaign: the CSV, streamed row by row, each row checked and
//! turned into a [`Job`](crate::types::Job) or a [`Rejected`](crate::types::Rejected) line. A bad row is data, not an error.

mod checking;
pub mod columns;
mod fields;
pub mod input;
mod name;
pub mod phone;
mod records;
mod rules;
mod seen;
mod settings;
mod source;

use std::borrow::Cow;
use std::sync::Arc;

use csv::ByteRecord;
use tracing::{debug, info};

pub use checking::BATCH_ROWS;
pub use columns::{Column, Layout, LayoutError};
pub use fields::Card;
pub use input::{DelimiterChoice, EncodingChoice, TextEncoding};
pub use name::{check_name, name_of, NameFrom, Named};
pub use settings::{CampaignSettings, CardSettings};
pub use source::Source;

use crate::pacing::PacingSettings;
use crate::setting::InvalidSetting;
use crate::types::Row;
use checking::{Batch, Checkers};
use fields::FieldRules;
use records::Records;
use rules::RowRules;
use seen::SeenJobs;

/// The campaign cannot be read at all (as opposed to a bad row).
#[derive(Debug, thiserror::Error)]
pub enum CampaignError {
    #[error("cannot read the campaign {source_name}: {error}")]
    Read {
        source_name: String,
        error: csv::Error,
    },
    #[error("campaign {source_name}: {error}")]
    Layout {
        source_name: String,
        error: LayoutError,
    },
    #[error(transparent)]
    Settings(#[from] InvalidSetting),
    /// The campaign has no name its memory can go by.
    #[error("{0}")]
    Unnamed(String),
}

/// Counts data rows with a quick pass over the file, for the progress bar's ETA.
/// Standard input and pipes can be read only once, so they have no count.
pub fn count_rows(source: &Source, encoding: TextEncoding, delimiter: u8) -> Option<u64> {
    if !source.is_regular_file() {
        return None;
    }
    let opened = input::open(
        source,
        EncodingChoice::Fixed(encoding),
        DelimiterChoice::Fixed(delimiter),
    )
    .ok()?;
    let mut records = Records::new(opened.reader, delimiter);
    let mut record = ByteRecord::new();
    let mut count: u64 = 0;
    while records.next(&mut record).ok()?.is_some() {
        count += 1;
    }
    // The first record is the header.
    Some(count.saturating_sub(1))
}

/// Reads rows in file order, each checked; memory stays flat whatever the
/// file size, but for one fingerprint per distinct job, kept to spot
/// duplicates. Records are parsed here and checked on helper threads
/// ([`checking`]), a batch at a time.
pub struct Campaign {
    records: Records,
    source_name: String,
    layout: Arc<Layout>,
    encoding: TextEncoding,
    /// The file was UTF-16, read converted to UTF-8.
    from_utf16: bool,
    delimiter: u8,
    checkers: Checkers,
    /// Checked rows of the oldest batch taken back, not yet handed on; the
    /// last first.
    ready: Vec<Row>,
    /// No more records will be read: the end of the file or of `--limit`,
    /// or an error, given once the rows before it are out.
    read_all: bool,
    read_error: Option<CampaignError>,
    rows_left: u64,
    /// The rows `--limit` left unread: a file's counted; `None` for a pipe
    /// that reached it, whose rest is not read (it may never end).
    unread: Option<u64>,
    /// Whether the source is a file, whose rest can be counted.
    countable: bool,
    /// The jobs (and keys) seen so far, with the row each was first on.
    seen: SeenJobs,
}

impl Campaign {
    /// Opens the campaign, settles its encoding and delimiter, and resolves its header.
    pub fn open(
        source: &Source,
        settings: &CampaignSettings,
        pacing: &PacingSettings,
        limit: Option<u64>,
        keep_columns: bool,
    ) -> Result<Self, CampaignError> {
        let source_name = source.describe();
        let read_error = |error: csv::Error| CampaignError::Read {
            source_name: source_name.clone(),
            error,
        };
        let layout_error = |error| CampaignError::Layout {
            source_name: source_name.clone(),
            error,
        };
        let opened = input::open(source, settings.encoding, settings.delimiter)
            .map_err(|error| read_error(error.into()))?;
        let (encoding, delimiter) = (opened.encoding, opened.delimiter);
        if opened.from_utf16 {
            info!("the campaign is UTF-16; converting it to UTF-8 while reading");
        }
        debug!(%encoding, delimiter = %char::from(delimiter).escape_default(), "reading the campaign");
        let mut records = Records::new(opened.reader, delimiter);

        let mut header = ByteRecord::new();
        if records.next(&mut header).map_err(read_error)?.is_none() {
            return Err(layout_error(LayoutError::NoHeader));
        }
        let headers: Vec<String> = header
            .iter()
            .map(|name| match encoding.decode(name) {
                Some(name) => name.into_owned(),
                None => String::from_utf8_lossy(name).into_owned(),
            })
            .collect();
        let mut layout = Layout::resolve(
            &headers,
            &settings.column_mapping()?,
            settings.key_column.as_deref(),
            settings.card.is_some(),
        )
        .map_err(layout_error)?;
        if keep_columns {
            layout.keep_columns(&headers);
        }
        for (column, header) in &layout.renamed {
            debug!("column {column} is read from the header `{header}`");
        }
        if layout.width == 1 && delimiter != b'\t' {
            info!("the header has a single column; set campaign.delimiter if the file uses another separator");
        }
        let layout = Arc::new(layout);
        let checkers = Checkers::start(RowRules {
            layout: Arc::clone(&layout),
            encoding,
            fields: FieldRules {
                pacing: *pacing,
                region: settings.default_region,
                countries: settings.countries.clone(),
                card: settings.card()?,
            },
        })
        .map_err(|error| read_error(error.into()))?;
        Ok(Campaign {
            records,
            source_name,
            layout,
            encoding,
            from_utf16: opened.from_utf16,
            delimiter,
            checkers,
            ready: Vec::new(),
            read_all: false,
            read_error: None,
            rows_left: limit.unwrap_or(u64::MAX),
            unread: Some(0),
            countable: source.is_regular_file(),
            seen: SeenJobs::default(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The encoding the file is read in (detected, or set in the config).
    pub fn encoding(&self) -> TextEncoding {
        self.encoding
    }

    /// The encoding as the file has it, for the report: `utf-16` for a
    /// file read converted.
    pub fn encoding_label(&self) -> String {
        match self.from_utf16 {
            true => "utf-16".to_string(),
            false => self.encoding.to_string(),
        }
    }

    /// The field separator (detected, or set in the config).
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The rows `--limit` left for a later run (known once the rows are all
    /// out): a file's all counted; `None` when a pipe reached the limit (its
    /// rest, if any, is not read: it may never end).
    pub fn unread(&self) -> Option<u64> {
        self.unread
    }

    /// The next data row, checked; `None` at the end of the file (or of `--limit`).
    pub fn next_row(&mut self) -> Option<Result<Row, CampaignError>> {
        loop {
            if let Some(row) = self.ready.pop() {
                return Some(Ok(match row {
                    Row::Job(job) => self.seen.unless_duplicate(job, self.layout.key.is_some()),
                    rejected => rejected,
                }));
            }
            self.hand_out_batches();
            if !self.checkers.take_back(&mut self.ready) {
                return self.read_error.take().map(Err);
            }
        }
    }

    /// Reads records into batches for the checkers while they have room.
    fn hand_out_batches(&mut self) {
        while !self.read_all && self.checkers.has_room() {
            let mut batch = self.checkers.empty_batch();
            self.read_into(&mut batch);
            if !batch.is_empty() {
                self.checkers.hand_out(batch);
            }
        }
    }

    fn read_into(&mut self, batch: &mut Batch) {
        while let Some((place, record)) = batch.next_slot() {
            if self.rows_left == 0 {
                self.unread = self.count_unread(record);
                self.read_all = true;
                return;
            }
            match self.records.next(record) {
                Ok(Some(read)) => *place = read,
                Ok(None) => {
                    self.read_all = true;
                    return;
                }
                Err(error) => {
                    self.read_all = true;
                    self.read_error = Some(CampaignError::Read {
                        source_name: self.source_name.clone(),
                        error,
                    });
                    return;
                }
            }
            batch.commit_slot();
            self.rows_left -= 1;
        }
    }

    /// Past `--limit`: a file's records left, unchecked (a line that is no
    /// row counts too: a later run says what it is); a pipe's not read.
    fn count_unread(&mut self, scratch: &mut ByteRecord) -> Option<u64> {
        if !self.countable {
            return None;
        }
        let mut unread = 0;
        while let Ok(Some(_)) = self.records.next(scratch) {
            unread += 1;
        }
        Some(unread)
    }
}

impl Iterator for Campaign {
    type Item = Result<Row, CampaignError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}

/// A value quoted in a message, cut short if it is long, with invisible
/// characters named by their code point (`<U+200B>`): shown raw, they make
/// a message that looks wrong for no reason anyone can see.
pub fn shown(text: &str) -> Cow<'_, str> {
    const MOST: usize = 60;
    let cut = match text.char_indices().nth(MOST) {
        Some((end, _)) => &text[..end],
        None => text,
    };
    let long = cut.len() < text.len();
    if !long && !cut.chars().any(is_invisible) {
        return Cow::Borrowed(text);
    }
    let mut quoted = String::with_capacity(cut.len() + 8);
    for c in cut.chars() {
        match is_invisible(c) {
            true => quoted.push_str(&format!("<{}>", code_point(c))),
            false => quoted.push(c),
        }
    }
    if long {
        quoted.push('…');
    }
    Cow::Owned(quoted)
}

/// A character that takes no room on screen: controls, format characters
/// (zero-width spaces and joiners, direction marks, the byte-order mark),
/// and spaces other than the plain one.
pub fn is_invisible(c: char) -> bool {
    c.is_control()
        || (c.is_whitespace() && c != ' ')
        || matches!(c,
            '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}'
            | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}' | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}'
            | '\u{E0000}'..='\u{E0FFF}')
}

/// `U+200B`.
pub fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Job, Rejected, Status};
    use serde_json::Value;

    fn read(csv: &str) -> Vec<Row> {
        read_with(csv, None)
    }

    fn read_with(csv: &str, limit: Option<u64>) -> Vec<Row> {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), csv).unwrap();
        Campaign::open(
            &Source::File(file.path().to_path_buf()),
            &CampaignSettings::default(),
            &PacingSettings::default(),
            limit,
            true,
        )
        .unwrap()
        .map(Result::unwrap)
        .collect()
    }

    fn job(row: &Row) -> &Job {
        match row {
            Row::Job(job) => job,
            Row::Rejected(rejected) => {
                panic!(
                    "row {} rejected: {}",
                    rejected.recipient.row,
                    rejected.error()
                )
            }
        }
    }

    fn rejected(row: &Row) -> &Rejected {
        match row {
            Row::Rejected(rejected) => rejected,
            Row::Job(job) => panic!("row {} accepted", job.recipient.row),
        }
    }

    /// Rows of many batches, over every checker: 2,500 numbers, then the
    /// first 500 again, each repeat named after its first row.
    #[test]
    fn rows_checked_in_batches_come_out_in_file_order_with_their_duplicates() {
        let distinct = 5 * checking::BATCH_ROWS;
        let mut csv = String::from("to,contact_name,contact_phone\n");
        for index in (0..distinct).chain(0..500) {
            csv.push_str(&format!("+55 11 9{index:08},N{index},+55 11 3003-4000\n"));
        }
        let rows = read(&csv);
        assert_eq!(rows.len(), distinct + 500);
        for (index, row) in rows.iter().enumerate() {
            let number = (index + 2) as u64;
            if index < distinct {
                assert_eq!(job(row).recipient.row, number);
                assert_eq!(job(row).recipient.contact_name, format!("N{index}"));
            } else {
                let repeat = rejected(row);
                assert_eq!(repeat.recipient.row, number);
                assert_eq!(repeat.status, Status::Duplicate);
                let first = index - distinct + 2;
                assert!(
                    repeat.error().ends_with(&format!("as row {first}")),
                    "{}",
                    repeat.error()
                );
            }
        }
    }

    #[test]
    fn a_limit_past_one_batch_stops_at_its_row() {
        let mut csv = String::from("to,contact_name,contact_phone\n");
        for index in 0..1000 {
            csv.push_str(&format!("+55 11 9{index:08},N,+55 11 3003-4000\n"));
        }
        let limit = checking::BATCH_ROWS as u64 + 7;
        let rows: Vec<Row> = read_with(&csv, Some(limit));
        assert_eq!(rows.len() as u64, limit);
        assert_eq!(job(rows.last().unwrap()).recipient.row, limit + 1);
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "9".repeat(500);
        assert_eq!(shown(&long).chars().count(), 61);
        assert_eq!(shown("short"), "short");
    }

    #[test]
    fn the_row_count_for_the_progress_bar_leaves_out_the_header() {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(
            file.path(),
            "to,contact_name,contact_phone\na,b,c\n\"multi\nline\",b,c\n",
        )
        .unwrap();
        let source = Source::File(file.path().to_path_buf());
        assert_eq!(count_rows(&source, TextEncoding::Utf8, b','), Some(2));
        assert_eq!(count_rows(&Source::Stdin, TextEncoding::Utf8, b','), None);
    }

    #[test]
    fn a_full_row_becomes_a_normalised_job() {
        let rows = read(
            "to,contact_name,contact_phone,delay,typing,priority,tags,metadata,metadata.city\n\
             (11) 98888-7777, Ana Souza ,+55 11 99999-9999,\"2,5\",4,3,vip|lead,\"{\"\"leadId\"\":\"\"7\"\"}\",Recife\n",
        );
        let job = job(&rows[0]);
        let recipient = &job.recipient;
        assert_eq!(recipient.row, 2);
        assert_eq!(
            (recipient.to.as_str(), recipient.contact_phone.as_str()),
            ("5511988887777", "5511999999999")
        );
        assert_eq!(recipient.key, "5511988887777:5511999999999");
        assert_eq!(recipient.contact_name, "Ana Souza");
        assert_eq!((job.timing.delay, job.timing.typing), (2.5, 4.0));
        assert_eq!(job.priority, Some(3));
        assert_eq!(job.tags, vec!["vip", "lead"]);
        assert_eq!(
            Value::Object(job.metadata.clone()),
            serde_json::json!({"leadId": "7", "city": "Recife"})
        );
    }

    #[test]
    fn every_bad_field_of_a_row_is_named() {
        let rows =
            read("to,contact_name,contact_phone,delay,priority\n123,,5511999999999,-1,high\n");
        let error = &rejected(&rows[0]).error();
        for field in ["to:", "contact_name: is empty", "delay:", "priority:"] {
            assert!(error.contains(field), "{error}");
        }
        assert!(!error.contains("contact_phone"), "{error}");
    }

    #[test]
    fn duplicates_after_normalisation_name_the_first_row() {
        let rows = read("to,contact_name,contact_phone\n11988887777,A,5511999999999\n+55 (11) 98888-7777,B,11 99999 9999\n");
        job(&rows[0]);
        let duplicate = rejected(&rows[1]);
        assert_eq!(duplicate.status, Status::Duplicate);
        assert!(duplicate.error().contains("row 2"), "{}", duplicate.error());
    }

    #[test]
    fn a_row_of_the_wrong_width_is_invalid_and_the_next_row_still_counts() {
        let rows =
            read("to,contact_name,contact_phone\n11988887777,A\n11988887776,B,5511999999999\n");
        assert!(rejected(&rows[0]).error().contains("2 fields"));
        assert_eq!(job(&rows[1]).recipient.row, 3);
    }

    #[test]
    fn a_metadata_entry_clashing_with_the_metadata_object_is_refused() {
        let rows = read("to,contact_name,contact_phone,metadata,metadata.a\n11988887777,A,5511999999999,\"{\"\"a\"\":1}\",2\n");
        assert!(rejected(&rows[0]).error().contains("metadata.a"));
    }
}
