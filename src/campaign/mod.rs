//! Reading a campaign: the CSV, streamed row by row, each row checked and
//! turned into a [`Job`] or a [`Rejected`] line. A bad row is data, not an error.

mod columns;
pub mod phone;

use std::collections::HashMap;
use std::fs::File;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io::{self, BufReader, Read};
use std::path::{Path, PathBuf};

use csv::ByteRecord;
use phonenumber::country;
use serde_json::{Map, Value};

pub use columns::{Column, Layout, LayoutError};

use crate::config::CampaignSettings;
use crate::pacing::{Floors, Timing};

/// One message to send: a row that passed every check, normalised.
#[derive(Debug, Clone)]
pub struct Job {
    /// The row as a spreadsheet numbers it: the header is row 1.
    pub row: u64,
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
    pub key: String,
    pub to: String,
    pub contact_name: String,
    pub contact_phone: String,
    pub reason: Rejection,
    pub error: String,
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
            Source::File(path) => Box::new(File::open(path)?),
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

    /// Counts data rows with a quick pass over the file, for the progress bar's ETA.
    /// Standard input can be read only once, so it has no count.
    pub fn count_rows(&self) -> Option<u64> {
        let Source::File(path) = self else {
            return None;
        };
        let mut reader = csv_reader(Box::new(File::open(path).ok()?));
        let mut record = ByteRecord::new();
        let mut records: u64 = 0;
        while reader.read_byte_record(&mut record).ok()? {
            records += 1;
        }
        // The first record is the header.
        Some(records.saturating_sub(1))
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

fn csv_reader(input: Box<dyn Read + Send>) -> csv::Reader<BufReader<Box<dyn Read + Send>>> {
    csv::ReaderBuilder::new()
        .has_headers(false)
        // Rows of the wrong width are reported as INVALID, not refused by the reader.
        .flexible(true)
        .from_reader(BufReader::with_capacity(64 * 1024, input))
}

/// Reads rows one at a time; memory stays flat whatever the file size,
/// but for one fingerprint per distinct job, kept to spot duplicates.
pub struct Campaign {
    reader: csv::Reader<BufReader<Box<dyn Read + Send>>>,
    source_name: String,
    layout: Layout,
    region: country::Id,
    floors: Floors,
    record: ByteRecord,
    next_row: u64,
    rows_left: u64,
    /// Fingerprint of a job -> the row it was first seen on.
    seen: HashMap<u64, u64>,
}

impl Campaign {
    /// Opens the campaign and resolves its header.
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
        let input = source.open().map_err(|error| read_error(error.into()))?;
        let mut reader = csv_reader(input);
        let mut header = ByteRecord::new();
        if !reader.read_byte_record(&mut header).map_err(read_error)? {
            return Err(CampaignError::Layout {
                source_name,
                error: LayoutError::NoHeader,
            });
        }
        let headers: Vec<String> = header
            .iter()
            .map(|name| String::from_utf8_lossy(name).into_owned())
            .collect();
        let layout = Layout::resolve(&headers, &settings.columns, settings.key_column.as_deref())
            .map_err(|error| CampaignError::Layout {
            source_name: source_name.clone(),
            error,
        })?;
        Ok(Campaign {
            reader,
            source_name,
            layout,
            region: settings.default_region,
            floors,
            record: ByteRecord::new(),
            next_row: 2,
            rows_left: limit.unwrap_or(u64::MAX),
            seen: HashMap::new(),
        })
    }

    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The next data row, checked; `None` at the end of the file (or of `--limit`).
    pub fn next_row(&mut self) -> Option<Result<Row, CampaignError>> {
        if self.rows_left == 0 {
            return None;
        }
        match self.reader.read_byte_record(&mut self.record) {
            Ok(true) => {}
            Ok(false) => return None,
            Err(error) => {
                return Some(Err(CampaignError::Read {
                    source_name: self.source_name.clone(),
                    error,
                }))
            }
        }
        self.rows_left -= 1;
        let row = self.next_row;
        self.next_row += 1;
        Some(Ok(self.check(row)))
    }

    fn check(&mut self, row: u64) -> Row {
        let fields = Fields {
            record: &self.record,
            layout: &self.layout,
        };
        let raw = |index| fields.lossy(index);
        let reject = |reason, error: String| {
            let key = match self.layout.key {
                Some(index) => raw(Some(index)),
                None => format!(
                    "{}:{}",
                    raw(Some(self.layout.to)).trim(),
                    raw(Some(self.layout.contact_phone)).trim()
                ),
            };
            Row::Rejected(Rejected {
                row,
                key,
                to: raw(Some(self.layout.to)),
                contact_name: raw(Some(self.layout.contact_name)),
                contact_phone: raw(Some(self.layout.contact_phone)),
                reason,
                error,
            })
        };

        if self.record.len() != self.layout.width {
            let error = format!(
                "the row has {} fields, the header has {}",
                self.record.len(),
                self.layout.width
            );
            return reject(Rejection::Invalid, error);
        }
        let checked = match check_fields(&fields, self.region, self.floors) {
            Ok(checked) => checked,
            Err(problems) => return reject(Rejection::Invalid, problems.join("; ")),
        };

        let key = match self.layout.key {
            Some(index) => match fields.text(index) {
                Ok(key) if !key.trim().is_empty() => key.trim().to_string(),
                _ => return reject(Rejection::Invalid, "the key column is empty".to_string()),
            },
            None => format!("{}:{}", checked.to, checked.contact_phone),
        };
        let job_print = fingerprint(("job", &checked.to, &checked.contact_phone));
        let key_print = self.layout.key.map(|_| fingerprint(("key", &key)));
        let duplicate_of = match (
            self.seen.get(&job_print),
            key_print.and_then(|print| self.seen.get(&print)),
        ) {
            (Some(first), _) => Some(format!("the same to and contact_phone as row {first}")),
            (None, Some(first)) => Some(format!("the same key as row {first}")),
            (None, None) => None,
        };
        if let Some(error) = duplicate_of {
            return Row::Rejected(Rejected {
                row,
                key,
                to: checked.to,
                contact_name: checked.contact_name,
                contact_phone: checked.contact_phone,
                reason: Rejection::Duplicate,
                error,
            });
        }
        self.seen.insert(job_print, row);
        if let Some(print) = key_print {
            self.seen.insert(print, row);
        }

        Row::Job(Job {
            row,
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

/// A 64-bit fingerprint: 16 bytes per job instead of the strings themselves.
/// Two different jobs collide with a chance of about 1 in 10^7 in a
/// 1,000,000-row campaign, and the cost of one would be a row marked DUPLICATE.
fn fingerprint(value: impl Hash) -> u64 {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish()
}

/// The fields of one record, by column.
struct Fields<'a> {
    record: &'a ByteRecord,
    layout: &'a Layout,
}

impl Fields<'_> {
    fn text(&self, index: usize) -> Result<&str, String> {
        std::str::from_utf8(self.record.get(index).unwrap_or_default())
            .map_err(|_| "is not valid UTF-8 text".to_string())
    }

    fn lossy(&self, index: Option<usize>) -> String {
        index
            .and_then(|index| self.record.get(index))
            .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
            .unwrap_or_default()
    }

    /// An optional column's text, `None` when the column is absent or the cell blank.
    fn optional(&self, index: Option<usize>) -> Result<Option<&str>, String> {
        match index {
            None => Ok(None),
            Some(index) => self
                .text(index)
                .map(|text| Some(text.trim()).filter(|text| !text.is_empty())),
        }
    }
}

struct Checked {
    to: String,
    contact_name: String,
    contact_phone: String,
    timing: Timing,
    priority: Option<i64>,
    tags: Vec<String>,
    metadata: Map<String, Value>,
}

/// The problems found in one row, each prefixed with its field.
#[derive(Default)]
struct Problems(Vec<String>);

impl Problems {
    fn check<T>(&mut self, field: &str, result: Result<T, String>) -> Option<T> {
        result
            .map_err(|problem| self.0.push(format!("{field}: {problem}")))
            .ok()
    }
}

/// Checks every field, collecting all problems so one pass shows them all.
fn check_fields(
    fields: &Fields,
    region: country::Id,
    floors: Floors,
) -> Result<Checked, Vec<String>> {
    let layout = fields.layout;
    let mut problems = Problems::default();
    let phone = |index| {
        fields
            .text(index)
            .and_then(|text| phone::normalize(text, region).map_err(|error| error.to_string()))
    };
    let optional = |index, parse: fn(&str) -> Result<_, String>| {
        fields
            .optional(index)
            .and_then(|text| text.map(parse).transpose())
    };

    let to = problems.check("to", phone(layout.to));
    let contact_name = problems.check(
        "contact_name",
        fields.text(layout.contact_name).and_then(clean_name),
    );
    let contact_phone = problems.check("contact_phone", phone(layout.contact_phone));
    let delay = problems.check("delay", optional(layout.delay, seconds));
    let typing = problems.check("typing", optional(layout.typing, seconds));
    let priority = problems.check(
        "priority",
        fields
            .optional(layout.priority)
            .and_then(|text| text.map(integer).transpose()),
    );
    let tags = problems.check(
        "tags",
        fields
            .optional(layout.tags)
            .and_then(|text| text.map(tags).transpose()),
    );
    let mut metadata = problems.check(
        "metadata",
        fields
            .optional(layout.metadata)
            .and_then(|text| text.map(json_object).transpose()),
    );
    for (key, index) in &layout.metadata_entries {
        let name = format!("metadata.{key}");
        let Some(value) = problems
            .check(&name, fields.optional(Some(*index)))
            .flatten()
        else {
            continue;
        };
        // `None` here means the metadata column itself was bad, already reported.
        let Some(map) = metadata.as_mut() else {
            continue;
        };
        let map = map.get_or_insert_with(Map::new);
        if map.contains_key(key) {
            problems.check::<()>(
                &name,
                Err(format!("`{key}` is also in the metadata column")),
            );
        } else {
            map.insert(key.clone(), Value::String(value.to_string()));
        }
    }

    match (
        to,
        contact_name,
        contact_phone,
        delay,
        typing,
        priority,
        tags,
        metadata,
    ) {
        (
            Some(to),
            Some(contact_name),
            Some(contact_phone),
            Some(delay),
            Some(typing),
            Some(priority),
            Some(tags),
            Some(metadata),
        ) if problems.0.is_empty() => Ok(Checked {
            to,
            contact_name,
            contact_phone,
            timing: floors.apply(delay, typing),
            priority,
            tags: tags.unwrap_or_default(),
            metadata: metadata.unwrap_or_default(),
        }),
        _ => Err(problems.0),
    }
}

fn clean_name(text: &str) -> Result<String, String> {
    let name: String = text.trim().chars().filter(|c| !c.is_control()).collect();
    if name.is_empty() {
        Err("is empty".to_string())
    } else {
        Ok(name)
    }
}

/// Seconds, with `.` or `,` as the decimal mark.
fn seconds(text: &str) -> Result<f64, String> {
    match text.replace(',', ".").parse::<f64>() {
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        Ok(_) => Err(format!("`{text}` is not a number of seconds (0 or more)")),
        Err(_) => Err(format!("`{text}` is not a number")),
    }
}

fn integer(text: &str) -> Result<i64, String> {
    text.parse()
        .map_err(|_| format!("`{text}` is not a whole number"))
}

/// `a|b|c`, or a JSON array of strings.
fn tags(text: &str) -> Result<Vec<String>, String> {
    if text.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(text)
            .map_err(|error| format!("not a JSON array of strings: {error}"));
    }
    Ok(text
        .split('|')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(String::from)
        .collect())
}

fn json_object(text: &str) -> Result<Map<String, Value>, String> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("must be a JSON object, like {\"leadId\": \"123\"}".to_string()),
        Err(error) => Err(format!("not valid JSON: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floors() -> Floors {
        Floors {
            min_delay: 2.0,
            min_typing: 3.0,
            default_delay: 2.0,
            default_typing: 5.0,
            jitter: 0.0,
        }
    }

    fn read(csv: &str) -> Vec<Row> {
        let path = std::env::temp_dir().join(format!(
            "interacto-bulk-unit-{}-{}.csv",
            std::process::id(),
            fastrand::u64(..)
        ));
        std::fs::write(&path, csv).unwrap();
        let settings = CampaignSettings {
            default_region: country::Id::BR,
            key_column: None,
            columns: Vec::new(),
        };
        let rows = Campaign::open(&Source::File(path.clone()), &settings, floors(), None)
            .unwrap()
            .map(Result::unwrap)
            .collect();
        std::fs::remove_file(path).unwrap();
        rows
    }

    fn job(row: &Row) -> &Job {
        match row {
            Row::Job(job) => job,
            Row::Rejected(rejected) => panic!("row {} rejected: {}", rejected.row, rejected.error),
        }
    }

    fn rejected(row: &Row) -> &Rejected {
        match row {
            Row::Rejected(rejected) => rejected,
            Row::Job(job) => panic!("row {} accepted", job.row),
        }
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
        assert_eq!(Source::File(path.clone()).count_rows(), Some(2));
        assert_eq!(Source::Stdin.count_rows(), None);
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
        let error = &rejected(&rows[0]).error;
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
        assert!(duplicate.error.contains("row 2"), "{}", duplicate.error);
    }

    #[test]
    fn a_row_of_the_wrong_width_is_invalid_and_the_next_row_still_counts() {
        let rows =
            read("to,contact_name,contact_phone\n11988887777,A\n11988887776,B,5511999999999\n");
        assert!(rejected(&rows[0]).error.contains("2 fields"));
        assert_eq!(job(&rows[1]).row, 3);
    }

    #[test]
    fn a_metadata_entry_clashing_with_the_metadata_object_is_refused() {
        let rows = read("to,contact_name,contact_phone,metadata,metadata.a\n11988887777,A,5511999999999,\"{\"\"a\"\":1}\",2\n");
        assert!(rejected(&rows[0]).error.contains("metadata.a"));
    }
}
