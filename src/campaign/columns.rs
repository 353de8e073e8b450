//! Which header holds which column, resolved once from the header row.

use std::collections::HashMap;
use std::fmt;

/// A column the tool understands.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Column {
    To,
    ContactName,
    ContactPhone,
    Delay,
    Typing,
    Priority,
    Tags,
    /// A JSON object of metadata.
    Metadata,
    /// One metadata entry, from a `metadata.<key>` column.
    MetadataEntry(String),
}

const NAMED: [(&str, Column); 8] = [
    ("to", Column::To),
    ("contact_name", Column::ContactName),
    ("contact_phone", Column::ContactPhone),
    ("delay", Column::Delay),
    ("typing", Column::Typing),
    ("priority", Column::Priority),
    ("tags", Column::Tags),
    ("metadata", Column::Metadata),
];

/// Headers Brazilian exports use for the recipient's phone, read as `to`
/// when the file has no `to` column (compared as [`match_key`]s).
pub const TO_ALIASES: [&str; 5] = ["telefone", "celular", "whatsapp", "fone", "numero"];

impl Column {
    /// The names accepted as `[campaign.columns]` keys, for error messages.
    pub const CONFIG_KEYS: &'static str =
        "to, contact_name, contact_phone, delay, typing, priority, tags, metadata, metadata.<key>";

    /// The column a header (or a config key) names, ignoring case, spaces, `_`, `-` and `.`.
    pub fn from_name(name: &str) -> Option<Column> {
        let name = name.trim_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        if let Some(key) = strip_prefix_ignore_case(name, "metadata.") {
            let key = key.trim();
            return (!key.is_empty()).then(|| Column::MetadataEntry(key.to_string()));
        }
        let wanted = match_key(name);
        NAMED
            .iter()
            .find(|(canonical, _)| match_key(canonical) == wanted)
            .map(|(_, column)| column.clone())
    }
}

impl fmt::Display for Column {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Column::MetadataEntry(key) => write!(f, "metadata.{key}"),
            named => {
                let (name, _) = NAMED
                    .iter()
                    .find(|(_, column)| column == named)
                    .expect("every named column is in NAMED");
                f.write_str(name)
            }
        }
    }
}

fn strip_prefix_ignore_case<'a>(text: &'a str, prefix: &str) -> Option<&'a str> {
    let head = text.get(..prefix.len())?;
    head.eq_ignore_ascii_case(prefix)
        .then(|| &text[prefix.len()..])
}

/// The form headers are compared in: lower case, without accents, spaces,
/// `_`, `-` and `.` (`Número` and `numero` are one header).
pub fn match_key(header: &str) -> String {
    header
        .chars()
        .filter(|c| !(c.is_whitespace() || matches!(c, '_' | '-' | '.' | '\u{feff}')))
        .flat_map(char::to_lowercase)
        .map(without_accent)
        .collect()
}

/// The letter without its accent, for the accented letters of Portuguese,
/// Spanish and French.
fn without_accent(c: char) -> char {
    match c {
        'á' | 'à' | 'â' | 'ã' | 'ä' => 'a',
        'é' | 'è' | 'ê' | 'ë' => 'e',
        'í' | 'ì' | 'î' | 'ï' => 'i',
        'ó' | 'ò' | 'ô' | 'õ' | 'ö' => 'o',
        'ú' | 'ù' | 'û' | 'ü' => 'u',
        'ç' => 'c',
        'ñ' => 'n',
        other => other,
    }
}

/// Where each column sits in a record.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    pub to: usize,
    /// Absent when `[campaign.card]` gives the card.
    pub contact_name: Option<usize>,
    pub contact_phone: Option<usize>,
    pub delay: Option<usize>,
    pub typing: Option<usize>,
    pub priority: Option<usize>,
    pub tags: Option<usize>,
    pub metadata: Option<usize>,
    pub metadata_entries: Vec<(String, usize)>,
    /// The `key_column`, when the campaign carries its own job ids.
    pub key: Option<usize>,
    /// Headers that hold nothing the tool uses (nor carries to the
    /// results, once [`Layout::keep_columns`] has taken its own).
    pub unknown: Vec<String>,
    /// Columns read from a header of another name (mapped in
    /// `[campaign.columns]`, or `telefone` as `to`), for the report.
    pub renamed: Vec<(Column, String)>,
    /// How many fields a record should have.
    pub width: usize,
    /// The campaign's own columns its results lines carry, by header and
    /// index (`results.keep_columns`).
    pub kept: Vec<(String, usize)>,
}

/// A header's name on one line, its runs of spaces and line breaks one
/// space.
fn one_line(header: &str) -> String {
    header.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A header row the campaign cannot be read with.
#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("the campaign has no header row")]
    NoHeader,
    #[error(
        "the header has no {missing} column (required: {required}); \
         it has: {found}. Map other names in [campaign.columns], for example to = \"telefone\""
    )]
    Missing {
        missing: String,
        required: &'static str,
        found: String,
    },
    #[error(
        "the headers {0} could each be the recipient's phone (`to`): \
         name the one to send to in [campaign.columns], for example to = \"{1}\""
    )]
    WhichTo(String, String),
    #[error("the headers `{first}` and `{second}` both hold the column {column}")]
    Twice {
        column: Column,
        first: String,
        second: String,
    },
    #[error("campaign.key_column `{0}` is not a header of the campaign")]
    NoKeyColumn(String),
}

impl Layout {
    /// Carries the campaign's columns into its results lines, after the
    /// standard ones: every named column, but one named like a standard
    /// column in any case (which the line has already, normalised). A
    /// header goes on one line (a results file's header is one line), and
    /// a name met before gets its place: `Nome (2)`.
    pub fn keep_columns(&mut self, headers: &[String]) {
        let standard = |name: &str| {
            crate::results::COLUMNS
                .iter()
                .chain(&["check", "rehearsal"])
                .any(|column| column.eq_ignore_ascii_case(name))
        };
        let mut seen: HashMap<String, usize> = HashMap::new();
        let mut carried = std::collections::HashSet::new();
        self.kept = headers
            .iter()
            .enumerate()
            .map(|(index, header)| (one_line(header), index))
            .filter(|(header, _)| !header.is_empty() && !standard(header))
            .inspect(|(_, index)| {
                carried.insert(headers[*index].trim());
            })
            .map(|(header, index)| {
                let times = seen.entry(header.to_lowercase()).or_insert(0);
                *times += 1;
                match *times {
                    1 => (header, index),
                    n => (format!("{header} ({n})"), index),
                }
            })
            .collect();
        self.unknown
            .retain(|header| !carried.contains(header.as_str()));
    }

    /// The headers of [`Layout::kept`].
    pub fn kept_headers(&self) -> Vec<String> {
        self.kept.iter().map(|(header, _)| header.clone()).collect()
    }

    /// Matches headers to columns: first the `[campaign.columns]` mapping,
    /// then the canonical names, then, for `to` alone, the Portuguese names
    /// of [`TO_ALIASES`]. With `card_set` (`[campaign.card]`) the card's
    /// columns are optional.
    pub fn resolve(
        headers: &[String],
        mapping: &[(String, Column)],
        key_column: Option<&str>,
        card_set: bool,
    ) -> Result<Layout, LayoutError> {
        if headers.iter().all(|header| match_key(header).is_empty()) {
            return Err(LayoutError::NoHeader);
        }
        let mut matched = Matched::by_name(headers, mapping, key_column)?;
        matched.alias_as_to(headers)?;
        matched.require(headers, card_set)?;
        let mut layout = Layout {
            width: headers.len(),
            unknown: matched.unknown,
            ..Layout::default()
        };
        for (column, index) in matched.assigned {
            layout.place(column, index, headers[index].trim());
        }
        if let Some(wanted) = key_column {
            let wanted_key = match_key(wanted);
            layout.key = headers
                .iter()
                .position(|header| match_key(header) == wanted_key);
            if layout.key.is_none() {
                return Err(LayoutError::NoKeyColumn(wanted.to_string()));
            }
        }
        Ok(layout)
    }

    /// Puts a matched column at its index, noting the header it was read
    /// from when that header has another name, for the report.
    fn place(&mut self, column: Column, index: usize, header: &str) {
        if match_key(header) != match_key(&column.to_string()) {
            self.renamed.push((column.clone(), header.to_string()));
        }
        match column {
            Column::To => self.to = index,
            Column::ContactName => self.contact_name = Some(index),
            Column::ContactPhone => self.contact_phone = Some(index),
            Column::Delay => self.delay = Some(index),
            Column::Typing => self.typing = Some(index),
            Column::Priority => self.priority = Some(index),
            Column::Tags => self.tags = Some(index),
            Column::Metadata => self.metadata = Some(index),
            Column::MetadataEntry(key) => self.metadata_entries.push((key, index)),
        }
    }
}

/// The header row matched to columns by name, before the rules that look
/// at the whole row (`telefone` as `to`, the required columns).
#[derive(Default)]
struct Matched {
    /// Each column found and its header's index, in header order.
    assigned: Vec<(Column, usize)>,
    /// The header each column was first found in, to name both when a
    /// second one holds it too.
    first_of: HashMap<Column, usize>,
    /// Headers named like `telefone`, `to` only in a file without one.
    to_aliases: Vec<usize>,
    /// Headers that hold nothing the tool uses, trimmed.
    unknown: Vec<String>,
}

impl Matched {
    /// Matches each header by the `[campaign.columns]` mapping, else by
    /// its canonical name; the aliases of `to` are set aside. Two headers
    /// of one column are an error.
    fn by_name(
        headers: &[String],
        mapping: &[(String, Column)],
        key_column: Option<&str>,
    ) -> Result<Matched, LayoutError> {
        // Maps by key, so that a header of 100,000 columns takes as long as
        // 100,000 lookups, not their square.
        let mapped: HashMap<String, &Column> = mapping
            .iter()
            .map(|(name, column)| (match_key(name), column))
            .collect();
        let wanted_key = key_column.map(match_key);
        let mut matched = Matched::default();
        for (index, header) in headers.iter().enumerate() {
            let key = match_key(header);
            let column = match mapped.get(&key) {
                Some(column) => Some((*column).clone()),
                None => Column::from_name(header),
            };
            let Some(column) = column else {
                if TO_ALIASES.contains(&key.as_str()) {
                    matched.to_aliases.push(index);
                } else if key.is_empty() {
                    // A spreadsheet's trailing empty columns: nothing to name.
                    continue;
                } else if wanted_key.as_ref() != Some(&key) {
                    matched.unknown.push(header.trim().to_string());
                }
                continue;
            };
            if let Some(first) = matched.first_of.get(&column) {
                return Err(LayoutError::Twice {
                    column,
                    first: headers[*first].trim().to_string(),
                    second: header.trim().to_string(),
                });
            }
            matched.first_of.insert(column.clone(), index);
            matched.assigned.push((column, index));
        }
        Ok(matched)
    }

    /// Reads a `telefone` header as `to`, in a file without a `to`, if it
    /// is the one such header; with a `to`, the aliases are unknown headers.
    fn alias_as_to(&mut self, headers: &[String]) -> Result<(), LayoutError> {
        match self.to_aliases.as_slice() {
            [] => {}
            [index] if !self.first_of.contains_key(&Column::To) => {
                let index = *index;
                self.first_of.insert(Column::To, index);
                self.assigned.push((Column::To, index));
            }
            several if !self.first_of.contains_key(&Column::To) => {
                let named = several
                    .iter()
                    .map(|index| format!("`{}`", super::shown(headers[*index].trim())))
                    .collect::<Vec<_>>();
                return Err(LayoutError::WhichTo(
                    named.join(" and "),
                    headers[several[0]].trim().to_string(),
                ));
            }
            unused => self.unknown.extend(
                unused
                    .iter()
                    .map(|index| headers[*index].trim().to_string()),
            ),
        }
        Ok(())
    }

    /// Fails when a required column is missing (only `to` when
    /// `[campaign.card]` gives the card), naming the headers there are.
    fn require(&self, headers: &[String], card_set: bool) -> Result<(), LayoutError> {
        let required: &[Column] = match card_set {
            true => &[Column::To],
            false => &[Column::To, Column::ContactName, Column::ContactPhone],
        };
        let missing: Vec<String> = required
            .iter()
            .filter(|required| !self.first_of.contains_key(required))
            .map(|column| column.to_string())
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        // Named, but not all of a header of thousands, nor all of a huge one.
        const NAMED_MOST: usize = 20;
        let mut found = headers
            .iter()
            .take(NAMED_MOST)
            .map(|h| format!("`{}`", super::shown(h.trim())))
            .collect::<Vec<_>>()
            .join(", ");
        if headers.len() > NAMED_MOST {
            found.push_str(&format!(" and {} more", headers.len() - NAMED_MOST));
        }
        Err(LayoutError::Missing {
            missing: missing.join(", "),
            required: match card_set {
                true => "to",
                false => "to, contact_name, contact_phone; or set [campaign.card]",
            },
            found,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(names: &[&str]) -> Vec<String> {
        names.iter().map(|name| name.to_string()).collect()
    }

    #[test]
    fn headers_match_ignoring_case_spaces_and_separators() {
        let layout = Layout::resolve(
            &headers(&["\u{feff}TO", " Contact Name ", "contact-phone", "De.lay"]),
            &[],
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            (
                layout.to,
                layout.contact_name,
                layout.contact_phone,
                layout.delay
            ),
            (0, Some(1), Some(2), Some(3))
        );
    }

    #[test]
    fn metadata_columns_keep_their_key_as_written() {
        let layout = Layout::resolve(
            &headers(&["to", "contact_name", "contact_phone", "Metadata.leadId"]),
            &[],
            None,
            false,
        )
        .unwrap();
        assert_eq!(layout.metadata_entries, vec![("leadId".to_string(), 3)]);
    }

    #[test]
    fn the_config_mapping_names_other_headers() {
        let mapping = vec![
            ("Telefone".to_string(), Column::To),
            ("nome".to_string(), Column::ContactName),
            ("fone contato".to_string(), Column::ContactPhone),
        ];
        let layout = Layout::resolve(
            &headers(&["nome", "telefone", "Fone_Contato", "cidade"]),
            &mapping,
            None,
            false,
        )
        .unwrap();
        assert_eq!(
            (layout.to, layout.contact_name, layout.contact_phone),
            (1, Some(0), Some(2))
        );
        assert_eq!(layout.unknown, vec!["cidade"]);
    }

    #[test]
    fn a_missing_required_column_is_named_with_what_was_found() {
        let error = Layout::resolve(&headers(&["to", "name", "phone"]), &[], None, false)
            .unwrap_err()
            .to_string();
        assert!(error.contains("contact_name, contact_phone"), "{error}");
        assert!(error.contains("`name`, `phone`"), "{error}");
    }

    #[test]
    fn two_headers_for_one_column_are_refused() {
        let error = Layout::resolve(
            &headers(&["to", "TO", "contact_name", "contact_phone"]),
            &[],
            None,
            false,
        )
        .unwrap_err();
        assert!(
            matches!(
                error,
                LayoutError::Twice {
                    column: Column::To,
                    ..
                }
            ),
            "{error}"
        );
    }

    #[test]
    fn the_key_column_must_exist_and_is_not_reported_unknown() {
        let names = headers(&["id", "to", "contact_name", "contact_phone"]);
        let layout = Layout::resolve(&names, &[], Some("ID"), false).unwrap();
        assert_eq!((layout.key, layout.unknown.len()), (Some(0), 0));
        assert!(Layout::resolve(&names, &[], Some("lead"), false).is_err());
    }

    #[test]
    fn a_portuguese_phone_header_is_to_when_nothing_else_is() {
        let layout = Layout::resolve(&headers(&["Nome", "NÚMERO"]), &[], None, true).unwrap();
        assert_eq!((layout.to, layout.contact_name), (1, None));
        assert_eq!(layout.renamed, vec![(Column::To, "NÚMERO".to_string())]);
        assert_eq!(layout.unknown, vec!["Nome"]);

        let layout = Layout::resolve(&headers(&["Telefone", "to"]), &[], None, true).unwrap();
        assert_eq!(
            (layout.to, layout.unknown.as_slice()),
            (1, &["Telefone".to_string()][..])
        );

        let error = Layout::resolve(&headers(&["fone", "WhatsApp"]), &[], None, true).unwrap_err();
        assert!(matches!(error, LayoutError::WhichTo(..)), "{error}");

        let mapping = vec![("celular".to_string(), Column::To)];
        let layout = Layout::resolve(&headers(&["fone", "celular"]), &mapping, None, true).unwrap();
        assert_eq!(
            (layout.to, layout.unknown.as_slice()),
            (1, &["fone".to_string()][..])
        );
    }

    #[test]
    fn the_cards_columns_are_required_only_without_a_card() {
        let names = headers(&["to"]);
        assert!(Layout::resolve(&names, &[], None, false).is_err());
        let layout = Layout::resolve(&names, &[], None, true).unwrap();
        assert_eq!((layout.contact_name, layout.contact_phone), (None, None));
    }
}
