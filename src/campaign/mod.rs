//! Reading a campaign: the CSV, streamed row by row, each row checked and
//! turned into a [`Job`] or a [`Rejected`] line. A bad row is data, not an error.

mod checking;
mod columns;
mod fields;
pub mod input;
pub mod phone;
mod records;

use std::borrow::Cow;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use csv::ByteRecord;
use serde_json::{Map, Value};
use tracing::{debug, info};

pub use columns::{Column, Layout, LayoutError};
pub use fields::Problem;
pub use input::{DelimiterChoice, EncodingChoice, TextEncoding};

use crate::config::CampaignSettings;
use crate::pacing::{Floors, Timing};
use checking::{Batch, Checkers};
use fields::{Fields, PhoneBook};
use phone::Region;
use records::{Place, Records};

/// One message to send: a row that passed every check, normalised.
#[derive(Debug, Clone)]
pub struct Job {
    /// The row as a spreadsheet numbers it: the header is row 1.
    pub row: u64,
    /// The line of the file the row starts on.
    pub line: u64,
    pub key: String,
    pub to: String,
    pub contact_name: String,
    pub contact_phone: String,
    pub timing: Timing,
    pub priority: Option<i64>,
    pub tags: Vec<String>,
    pub metadata: Map<String, Value>,
}

/// A row that will not be sent, with the fields as they were written.
#[derive(Debug, Clone)]
pub struct Rejected {
    pub row: u64,
    /// The line of the file the row starts on (differs from `row` after
    /// quoted fields that span lines).
    pub line: u64,
    pub key: String,
    pub to: String,
    pub contact_name: String,
    pub contact_phone: String,
    pub reason: Rejection,
    pub problems: Vec<Problem>,
}

impl Rejected {
    /// Every problem, for the results file.
    pub fn error(&self) -> String {
        self.problems
            .iter()
            .map(Problem::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rejection {
    Invalid,
    Duplicate,
}

/// What one data row became.
#[derive(Debug, Clone)]
pub enum Row {
    Job(Job),
    Rejected(Rejected),
}

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
}

/// Counts data rows with a quick pass over the file, for the progress bar's ETA.
/// Standard input can be read only once, so it has no count.
pub fn count_rows(source: &Source, encoding: TextEncoding, delimiter: u8) -> Option<u64> {
    let Source::File(_) = source else { return None };
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
    delimiter: u8,
    checkers: Checkers,
    /// Checked rows of the oldest batch taken back, not yet handed on.
    ready: std::vec::IntoIter<Row>,
    /// No more records will be read: the end of the file or of `--limit`,
    /// or an error, given once the rows before it are out.
    read_all: bool,
    read_error: Option<CampaignError>,
    rows_left: u64,
    /// The jobs (and keys) seen so far, with the row each was first on.
    seen: SeenJobs,
}

impl Campaign {
    /// Opens the campaign, settles its encoding and delimiter, and resolves its header.
    pub fn open(
        source: &Source,
        settings: &CampaignSettings,
        floors: Floors,
        limit: Option<u64>,
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
        let layout = Layout::resolve(&headers, &settings.columns, settings.key_column.as_deref())
            .map_err(layout_error)?;
        if layout.width == 1 && delimiter != b'\t' {
            info!("the header has a single column; set campaign.delimiter if the file uses another separator");
        }
        let layout = Arc::new(layout);
        let checkers = Checkers::start(RowRules {
            layout: Arc::clone(&layout),
            encoding,
            floors,
            region: settings.default_region,
        })
        .map_err(|error| read_error(error.into()))?;
        Ok(Campaign {
            records,
            source_name,
            layout,
            encoding,
            delimiter,
            checkers,
            ready: Vec::new().into_iter(),
            read_all: false,
            read_error: None,
            rows_left: limit.unwrap_or(u64::MAX),
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

    /// The field separator (detected, or set in the config).
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// The next data row, checked; `None` at the end of the file (or of `--limit`).
    pub fn next_row(&mut self) -> Option<Result<Row, CampaignError>> {
        loop {
            if let Some(row) = self.ready.next() {
                return Some(Ok(self.unless_duplicate(row)));
            }
            self.hand_out_batches();
            match self.checkers.take_back() {
                Some(rows) => self.ready = rows.into_iter(),
                None => return self.read_error.take().map(Err),
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

    /// A job becomes a DUPLICATE line if an earlier row had the same `to`
    /// and `contact_phone`, or the same key.
    fn unless_duplicate(&mut self, row: Row) -> Row {
        let Row::Job(job) = row else { return row };
        let job_print = fingerprint(("job", &job.to, &job.contact_phone));
        let key_print = self.layout.key.map(|_| fingerprint(("key", &job.key)));
        let duplicate_of = match (
            self.seen.first_row(job_print),
            key_print.and_then(|print| self.seen.first_row(print)),
        ) {
            (Some(first), _) => format!("the same to and contact_phone as {first}"),
            (None, Some(first)) => format!("the same key as {first}"),
            (None, None) => {
                self.seen.insert(job_print, job.row);
                if let Some(print) = key_print {
                    self.seen.insert(print, job.row);
                }
                return Row::Job(job);
            }
        };
        Row::Rejected(Rejected {
            row: job.row,
            line: job.line,
            key: job.key,
            to: job.to,
            contact_name: job.contact_name,
            contact_phone: job.contact_phone,
            reason: Rejection::Duplicate,
            problems: vec![Problem::of_row("duplicate", duplicate_of)],
        })
    }
}

/// What a row is checked against: all a checker thread needs.
pub(crate) struct RowRules {
    layout: Arc<Layout>,
    encoding: TextEncoding,
    floors: Floors,
    region: Region,
}

impl RowRules {
    /// Checks one record on its own: a job, or the line of an invalid row.
    /// Duplicates are found later, in file order.
    fn check(&self, place: Place, record: &ByteRecord, phones: &mut PhoneBook) -> Row {
        let Place { row, line } = place;
        let layout = &*self.layout;
        let fields = Fields {
            record,
            layout,
            encoding: self.encoding,
        };
        let reject = |problems: Vec<Problem>| {
            let key = match layout.key {
                Some(index) => fields.lossy(Some(index)).trim().to_string(),
                None => format!(
                    "{}:{}",
                    fields.lossy(Some(layout.to)).trim(),
                    fields.lossy(Some(layout.contact_phone)).trim()
                ),
            };
            Row::Rejected(Rejected {
                row,
                line,
                key,
                to: fields.lossy(Some(layout.to)),
                contact_name: fields.lossy(Some(layout.contact_name)),
                contact_phone: fields.lossy(Some(layout.contact_phone)),
                reason: Rejection::Invalid,
                problems,
            })
        };

        if record.len() != layout.width {
            let message = format!(
                "line {line}: the row has {} fields, the header has {}",
                record.len(),
                layout.width
            );
            return reject(vec![Problem::of_row("wrong number of fields", message)]);
        }
        let checked = match fields::check(&fields, phones, self.floors) {
            Ok(checked) => checked,
            Err(problems) => return reject(problems),
        };
        let key = match layout.key {
            Some(index) => match fields.key(index) {
                Ok(key) => key,
                Err(problem) => return reject(vec![problem]),
            },
            None => format!("{}:{}", checked.to, checked.contact_phone),
        };
        Row::Job(Job {
            row,
            line,
            key,
            to: checked.to,
            contact_name: checked.contact_name,
            contact_phone: checked.contact_phone,
            timing: checked.timing,
            priority: checked.priority,
            tags: checked.tags,
            metadata: checked.metadata,
        })
    }
}

impl Iterator for Campaign {
    type Item = Result<Row, CampaignError>;

    fn next(&mut self) -> Option<Self::Item> {
        self.next_row()
    }
}

/// A value quoted in a message, cut short if it is long.
pub fn shown(text: &str) -> Cow<'_, str> {
    const MOST: usize = 60;
    match text.char_indices().nth(MOST) {
        Some((end, _)) => Cow::Owned(format!("{}…", &text[..end])),
        None => Cow::Borrowed(text),
    }
}

/// The jobs of a campaign seen so far: a 64-bit fingerprint and the row it
/// was first on, 12 bytes an entry (13 with the table's control byte), in
/// tables that are the only thing growing with the campaign. Two different
/// jobs collide with a chance of about 1 in 10^7 in a 1,000,000-row campaign,
/// and the cost of one would be a row marked DUPLICATE.
///
/// The entries are spread over [`SEEN_SHARDS`] tables so that a table doubling
/// holds its old and new copies for a small part of the index, not the whole:
/// one table of a million jobs peaks at 40 MB while it grows to 27 MB.
struct SeenJobs(Box<[hashbrown::HashTable<SeenJob>]>);

const SEEN_SHARDS: usize = 64;

/// Fields of 4-byte alignment, so that an entry takes 12 bytes, not 16.
#[derive(Clone, Copy)]
struct SeenJob {
    print: [u32; 2],
    /// The first row, or `u32::MAX` past four billion rows.
    row: u32,
}

impl SeenJob {
    fn print(&self) -> u64 {
        u64::from(self.print[0]) << 32 | u64::from(self.print[1])
    }
}

/// Where a repeated job was first seen, for the DUPLICATE message.
struct FirstRow(u32);

impl std::fmt::Display for FirstRow {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            u32::MAX => write!(f, "an earlier row"),
            row => write!(f, "row {row}"),
        }
    }
}

impl Default for SeenJobs {
    fn default() -> Self {
        SeenJobs((0..SEEN_SHARDS).map(|_| Default::default()).collect())
    }
}

impl SeenJobs {
    // The fingerprint is a hash already: it is its own hash. A table places
    // entries by the low bits and tags them with the top seven, so the shard
    // is picked by bits from the middle.
    fn shard(print: u64) -> usize {
        (print >> 40) as usize % SEEN_SHARDS
    }

    fn first_row(&self, print: u64) -> Option<FirstRow> {
        self.0[Self::shard(print)]
            .find(print, |seen| seen.print() == print)
            .map(|seen| FirstRow(seen.row))
    }

    fn insert(&mut self, print: u64, row: u64) {
        let entry = SeenJob {
            print: [(print >> 32) as u32, print as u32],
            row: u32::try_from(row).unwrap_or(u32::MAX),
        };
        self.0[Self::shard(print)].insert_unique(print, entry, SeenJob::print);
    }
}

/// A 64-bit fingerprint of a job, kept instead of its strings.
fn fingerprint(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floors() -> Floors {
        Floors::default()
    }

    fn read(csv: &str) -> Vec<Row> {
        read_with(csv, None)
    }

    fn read_with(csv: &str, limit: Option<u64>) -> Vec<Row> {
        let path = std::env::temp_dir().join(format!(
            "interacto-bulk-unit-{}-{}.csv",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, csv).unwrap();
        let settings = CampaignSettings::default();
        let rows = Campaign::open(&Source::File(path.clone()), &settings, floors(), limit)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        std::fs::remove_file(path).unwrap();
        rows
    }

    fn job(row: &Row) -> &Job {
        match row {
            Row::Job(job) => job,
            Row::Rejected(rejected) => {
                panic!("row {} rejected: {}", rejected.row, rejected.error())
            }
        }
    }

    fn rejected(row: &Row) -> &Rejected {
        match row {
            Row::Rejected(rejected) => rejected,
            Row::Job(job) => panic!("row {} accepted", job.row),
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
                assert_eq!(job(row).row, number);
                assert_eq!(job(row).contact_name, format!("N{index}"));
            } else {
                let repeat = rejected(row);
                assert_eq!(repeat.row, number);
                assert_eq!(repeat.reason, Rejection::Duplicate);
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
        assert_eq!(job(rows.last().unwrap()).row, limit + 1);
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let long = "9".repeat(500);
        assert_eq!(shown(&long).chars().count(), 61);
        assert_eq!(shown("short"), "short");
    }

    #[test]
    fn the_row_count_for_the_progress_bar_leaves_out_the_header() {
        let path =
            std::env::temp_dir().join(format!("interacto-bulk-count-{}.csv", std::process::id()));
        std::fs::write(
            &path,
            "to,contact_name,contact_phone\na,b,c\n\"multi\nline\",b,c\n",
        )
        .unwrap();
        assert_eq!(
            count_rows(&Source::File(path.clone()), TextEncoding::Utf8, b','),
            Some(2)
        );
        assert_eq!(count_rows(&Source::Stdin, TextEncoding::Utf8, b','), None);
        std::fs::remove_file(path).unwrap();
    }

    #[test]
    fn a_full_row_becomes_a_normalised_job() {
        let rows = read(
            "to,contact_name,contact_phone,delay,typing,priority,tags,metadata,metadata.city\n\
             (11) 98888-7777, Ana Souza ,+55 11 99999-9999,\"2,5\",4,3,vip|lead,\"{\"\"leadId\"\":\"\"7\"\"}\",Recife\n",
        );
        let job = job(&rows[0]);
        assert_eq!(job.row, 2);
        assert_eq!(
            (job.to.as_str(), job.contact_phone.as_str()),
            ("5511988887777", "5511999999999")
        );
        assert_eq!(job.key, "5511988887777:5511999999999");
        assert_eq!(job.contact_name, "Ana Souza");
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
        assert_eq!(duplicate.reason, Rejection::Duplicate);
        assert!(duplicate.error().contains("row 2"), "{}", duplicate.error());
    }

    #[test]
    fn the_duplicate_index_keeps_first_rows_even_past_four_billion() {
        let mut seen = SeenJobs::default();
        for row in 2..10_000 {
            seen.insert(fingerprint(("job", row)), row);
        }
        seen.insert(fingerprint("far"), 5_000_000_000);
        let first = |row: u64| {
            seen.first_row(fingerprint(("job", row)))
                .map(|first| first.to_string())
        };
        assert_eq!(first(9_999).as_deref(), Some("row 9999"));
        assert_eq!(first(2).as_deref(), Some("row 2"));
        assert_eq!(
            seen.first_row(fingerprint("far")).unwrap().to_string(),
            "an earlier row"
        );
        assert!(first(10_000).is_none());
    }

    #[test]
    fn a_row_of_the_wrong_width_is_invalid_and_the_next_row_still_counts() {
        let rows =
            read("to,contact_name,contact_phone\n11988887777,A\n11988887776,B,5511999999999\n");
        assert!(rejected(&rows[0]).error().contains("2 fields"));
        assert_eq!(job(&rows[1]).row, 3);
    }

    #[test]
    fn a_metadata_entry_clashing_with_the_metadata_object_is_refused() {
        let rows = read("to,contact_name,contact_phone,metadata,metadata.a\n11988887777,A,5511999999999,\"{\"\"a\"\":1}\",2\n");
        assert!(rejected(&rows[0]).error().contains("metadata.a"));
    }
}
