//! Checking the fields of one row: every problem is collected, so one pass
//! over the file shows them all.

use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt;

use csv::ByteRecord;
use serde_json::{Map, Value};

use super::input::TextEncoding;
use super::phone::{self, Phone, PhoneError, Region};
use super::{shown, Layout};
use crate::pacing::{PacingSettings, MESSAGE_SECONDS_MAX};
use crate::types::{Destination, Job, KeptCells, Problem, Recipient};

/// A check of one value; the problem's field is named by [`Problems::check`].
type Check<T> = Result<T, Problem>;

/// What the fields of a row are checked against, beside their layout.
pub struct FieldRules {
    pub pacing: PacingSettings,
    /// The country of numbers written without a country code.
    pub region: Region,
    /// `campaign.countries`: where recipients may be; empty, anywhere.
    pub countries: Vec<Region>,
    /// `[campaign.card]`: the card of rows that do not name their own.
    pub card: Option<Card>,
}

/// The card of `[campaign.card]`, checked and normalised once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Card {
    pub name: String,
    /// E.164 digits, as the API takes them.
    pub phone: String,
}

/// Remembers recent contact phones: the contact card is often the same on
/// every row, and libphonenumber's rules are not free. (A `to` is looked up
/// afresh: each is on one row, but for duplicates.)
pub struct PhoneBook {
    region: Region,
    known: HashMap<Box<str>, Result<Phone, PhoneError>>,
}

impl PhoneBook {
    const CAPACITY: usize = 4096;

    pub fn new(region: Region) -> Self {
        PhoneBook {
            region,
            known: HashMap::new(),
        }
    }

    fn normalize(&mut self, raw: &str) -> Result<Phone, PhoneError> {
        if let Some(known) = self.known.get(raw) {
            return known.clone();
        }
        let result = phone::normalize(raw, self.region);
        if self.known.len() >= Self::CAPACITY {
            // Forgetting everything at once keeps this simple and bounded.
            self.known.clear();
        }
        self.known.insert(raw.into(), result.clone());
        result
    }
}

/// The fields of one record, by column, in the campaign's encoding.
pub struct Fields<'a> {
    pub record: &'a ByteRecord,
    pub layout: &'a Layout,
    pub encoding: TextEncoding,
}

impl<'a> Fields<'a> {
    fn text(&self, index: usize) -> Check<Cow<'a, str>> {
        let bytes = self.record.get(index).unwrap_or_default();
        self.encoding.decode(bytes).ok_or_else(|| {
            Problem::new(
                "not valid UTF-8 text",
                "is not valid UTF-8 text (if the file comes from Excel, set campaign.encoding = \"windows-1252\")",
            )
        })
    }

    /// The row's cells of the campaign's own columns, as written.
    pub fn kept(&self) -> KeptCells {
        let columns = &self.layout.kept;
        if columns.is_empty() {
            return KeptCells::default();
        }
        let bytes = columns
            .iter()
            .map(|(_, index)| self.record.get(*index).map_or(0, <[u8]>::len))
            .sum();
        let mut kept = KeptCells::with_capacity(columns.len(), bytes);
        for (_, index) in columns {
            kept.push(&self.as_written(*index));
        }
        kept
    }

    /// The field as written, for results lines of rows that are not sent.
    pub fn lossy(&self, index: Option<usize>) -> String {
        index.map_or_else(String::new, |index| self.as_written(index).into_owned())
    }

    /// The field's text, bytes the encoding cannot read replaced.
    fn as_written(&self, index: usize) -> Cow<'a, str> {
        let bytes = self.record.get(index).unwrap_or_default();
        match self.encoding.decode(bytes) {
            Some(text) => text,
            None => String::from_utf8_lossy(bytes).into_owned().into(),
        }
    }

    /// An optional column's text: `None` when the column is absent or the cell blank.
    fn optional(&self, index: Option<usize>) -> Check<Option<Cow<'a, str>>> {
        let Some(index) = index else { return Ok(None) };
        let text = self.text(index)?;
        Ok((!text.trim().is_empty()).then_some(text))
    }

    /// The key column's value, trimmed.
    fn key(&self, index: usize) -> Check<String> {
        let key = self.text(index)?;
        let key = key.trim();
        if key.is_empty() {
            return Err(Problem::new("empty", "the key column is empty"));
        }
        Ok(key.to_string())
    }
}

#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    /// `field` is made a string only for a problem.
    fn check<T>(&mut self, field: impl fmt::Display, result: Check<T>) -> Option<T> {
        result
            .map_err(|problem| self.0.push(problem.in_field(field)))
            .ok()
    }
}

/// Checks and normalises every field of the record on `row`, and makes it a job.
pub fn check(
    fields: &Fields,
    phones: &mut PhoneBook,
    rules: &FieldRules,
    row: u64,
) -> Result<Job, Vec<Problem>> {
    let layout = fields.layout;
    let mut problems = Problems::default();
    let to = problems.check("to", recipient_phone(fields, rules));
    // The card: the row's own columns where it has them, else `[campaign.card]`.
    let card = rules.card.as_ref();
    let contact_phone = problems.check("contact_phone", card_phone(fields, phones, card));
    let contact_name = problems.check("contact_name", card_name(fields, card));
    let delay = problems.check("delay", parse_optional(fields, layout.delay, seconds));
    let typing = problems.check("typing", parse_optional(fields, layout.typing, seconds));
    let priority = problems.check("priority", parse_optional(fields, layout.priority, integer));
    let tags = problems.check("tags", parse_optional(fields, layout.tags, tags));
    let metadata = metadata(fields, &mut problems);

    // With a key column the key is its value; else the job's phones.
    let key_column = layout
        .key
        .map(|index| problems.check("key", fields.key(index)));

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
        ) if problems.0.is_empty() => Ok(Job {
            recipient: Recipient {
                row,
                key: match key_column.flatten() {
                    Some(key) => key,
                    None => format!("{}:{contact_phone}", to.digits),
                },
                to: to.digits,
                contact_name,
                contact_phone,
                kept: fields.kept(),
            },
            timing: rules.pacing.timing(delay, typing),
            priority,
            tags: tags.unwrap_or_default(),
            metadata: metadata.unwrap_or_default(),
            destination: Destination {
                country: to.country,
                landline: to.landline,
                excel_decimal: to.excel_decimal,
            },
            as_read: None,
        }),
        _ => Err(problems.0),
    }
}

/// A phone rule broken, as a problem of its field.
fn phone_flaw(error: PhoneError) -> Problem {
    Problem::new(error.kind(), error.to_string())
}

/// The recipient's phone, normalised and in one of `campaign.countries`.
fn recipient_phone(fields: &Fields, rules: &FieldRules) -> Check<Phone> {
    fields.text(fields.layout.to).and_then(|text| {
        phone::normalize(&text, rules.region)
            .and_then(|phone| phone::allowed(&phone, &text, &rules.countries).map(|()| phone))
            .map_err(phone_flaw)
    })
}

/// The card's phone, in E.164 digits: the row's, else `[campaign.card]`'s.
fn card_phone(fields: &Fields, phones: &mut PhoneBook, card: Option<&Card>) -> Check<String> {
    match (fields.optional(fields.layout.contact_phone), card) {
        (Ok(None), Some(card)) => Ok(card.phone.clone()),
        (Ok(Some(text)), _) => phones
            .normalize(&text)
            .map(|phone| phone.digits)
            .map_err(phone_flaw),
        (Ok(None), None) => Err(phone_flaw(PhoneError::Empty)),
        (Err(problem), _) => Err(problem),
    }
}

/// The card's name, cleaned: the row's, else `[campaign.card]`'s.
fn card_name(fields: &Fields, card: Option<&Card>) -> Check<String> {
    match (fields.optional(fields.layout.contact_name), card) {
        (Ok(None), Some(card)) => Ok(card.name.clone()),
        (Ok(Some(text)), _) => clean_name(&text),
        (Ok(None), None) => clean_name(""),
        (Err(problem), _) => Err(problem),
    }
}

/// The metadata: the metadata column's object, with each `metadata.<key>`
/// column's value added; a key the metadata column has already is a problem.
/// `None` when a problem was found in the metadata column.
fn metadata(fields: &Fields, problems: &mut Problems) -> Option<Option<Map<String, Value>>> {
    let mut metadata = problems.check(
        "metadata",
        parse_optional(fields, fields.layout.metadata, json_object),
    );
    for (key, index) in &fields.layout.metadata_entries {
        let name = format_args!("metadata.{key}");
        let Some(value) = problems
            .check(name, fields.optional(Some(*index)))
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
                name,
                Err(Problem::new(
                    "also in metadata",
                    format!("`{key}` is also in the metadata column"),
                )),
            );
        } else {
            map.insert(key.clone(), Value::String(value.trim().to_string()));
        }
    }
    metadata
}

fn parse_optional<T>(
    fields: &Fields,
    index: Option<usize>,
    parse: fn(&str) -> Check<T>,
) -> Check<Option<T>> {
    fields
        .optional(index)?
        .map(|text| parse(text.trim()))
        .transpose()
}

/// Line breaks and runs of spaces become one space; other control characters go.
pub fn clean_name(text: &str) -> Check<String> {
    let mut name = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        let mut letters = word.chars().filter(|c| !c.is_control()).peekable();
        if letters.peek().is_none() {
            continue;
        }
        if !name.is_empty() {
            name.push(' ');
        }
        name.extend(letters);
    }
    if name.is_empty() {
        Err(Problem::new("empty", "is empty"))
    } else {
        Ok(name)
    }
}

/// Seconds, with `.` or `,` as the decimal mark.
fn seconds(text: &str) -> Check<f64> {
    let text_with_dot = if text.contains(',') {
        Cow::Owned(text.replace(',', "."))
    } else {
        Cow::Borrowed(text)
    };
    match text_with_dot.parse::<f64>() {
        Ok(value) if value > MESSAGE_SECONDS_MAX => Err(Problem::new(
            "too long",
            format!(
                "`{}` seconds is more than {MESSAGE_SECONDS_MAX}, the most one message may wait",
                shown(text)
            ),
        )),
        Ok(value) if value.is_finite() && value >= 0.0 => Ok(value),
        Ok(_) => Err(Problem::new(
            "negative",
            format!("`{}` is not a number of seconds (0 or more)", shown(text)),
        )),
        Err(_) => Err(Problem::new(
            "not a number",
            format!("`{}` is not a number", shown(text)),
        )),
    }
}

fn integer(text: &str) -> Check<i64> {
    text.parse().map_err(|_| {
        Problem::new(
            "not a whole number",
            format!("`{}` is not a whole number", shown(text)),
        )
    })
}

/// `a|b|c`, or a JSON array of strings.
fn tags(text: &str) -> Check<Vec<String>> {
    if text.starts_with('[') {
        return serde_json::from_str::<Vec<String>>(text).map_err(|error| {
            Problem::new(
                "not a JSON array of strings",
                format!("not a JSON array of strings: {error}"),
            )
        });
    }
    Ok(text
        .split('|')
        .map(str::trim)
        .filter(|tag| !tag.is_empty())
        .map(String::from)
        .collect())
}

fn json_object(text: &str) -> Check<Map<String, Value>> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Problem::new(
            "not a JSON object",
            "must be a JSON object, like {\"leadId\": \"123\"}",
        )),
        Err(error) => Err(Problem::new(
            "not valid JSON",
            format!("not valid JSON: {error}"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_take_either_decimal_mark() {
        assert_eq!(seconds("2,5").ok(), Some(2.5));
        assert_eq!(seconds("2.5").ok(), Some(2.5));
        assert_eq!(seconds("0").ok(), Some(0.0));
        assert_eq!(
            seconds("-1").err().map(|problem| problem.kind),
            Some("negative")
        );
        assert_eq!(
            seconds("NaN").err().map(|problem| problem.kind),
            Some("negative")
        );
        assert_eq!(
            seconds("soon").err().map(|problem| problem.kind),
            Some("not a number")
        );
        for huge in ["600.001", "1e20", "99999999999999999999", "inf"] {
            assert_eq!(
                seconds(huge).err().map(|problem| problem.kind),
                Some("too long"),
                "{huge}"
            );
        }
        assert_eq!(seconds("600").ok(), Some(600.0));
    }

    #[test]
    fn tags_split_on_bars_or_parse_as_json() {
        assert_eq!(
            tags(" vip | lead ||").ok(),
            Some(vec!["vip".to_string(), "lead".to_string()])
        );
        assert_eq!(
            tags(r#"["a|b", "c"]"#).ok(),
            Some(vec!["a|b".to_string(), "c".to_string()])
        );
        assert!(tags("[1, 2]").is_err());
    }

    #[test]
    fn names_lose_control_characters_and_must_keep_something() {
        assert_eq!(
            clean_name("  Ana\u{7}  Souza\r\nde Lima 🎉 ")
                .ok()
                .as_deref(),
            Some("Ana Souza de Lima 🎉")
        );
        assert!(clean_name(" \u{1} ").is_err());
    }

    #[test]
    fn the_phone_book_gives_the_same_answer_from_memory() {
        let mut phones = PhoneBook::new(Region::BR);
        let first = phones.normalize("+55 11 3003-4000");
        assert_eq!(phones.normalize("+55 11 3003-4000"), first);
        assert_eq!(phones.known.len(), 1);
    }
}
