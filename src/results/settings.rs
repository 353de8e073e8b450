//! `[results]`: how the results file is written.

use serde::Deserialize;

/// `[results]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultsSettings {
    /// Write the results for Excel in Brazil: UTF-8 with a byte-order mark,
    /// `;` between cells, `,` as the decimal mark. A resume keeps the form
    /// the file already has.
    pub excel: bool,
    /// Carry the campaign's own columns after the standard ones, so the
    /// file joins back to where the leads came from.
    pub keep_columns: bool,
}

impl Default for ResultsSettings {
    fn default() -> Self {
        ResultsSettings {
            excel: false,
            keep_columns: true,
        }
    }
}

/// The two forms of the results file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Dialect {
    /// Plain CSV: `,` between cells, `.` as the decimal mark.
    #[default]
    Plain,
    /// What Excel set to Portuguese (Brazil) opens as columns.
    Excel,
}

const BOM: &[u8] = "\u{feff}".as_bytes();

impl Dialect {
    pub fn of(settings: &ResultsSettings) -> Self {
        match settings.excel {
            true => Dialect::Excel,
            false => Dialect::Plain,
        }
    }

    pub fn delimiter(self) -> u8 {
        match self {
            Dialect::Plain => b',',
            Dialect::Excel => b';',
        }
    }

    pub fn decimal_mark(self) -> char {
        match self {
            Dialect::Plain => '.',
            Dialect::Excel => ',',
        }
    }

    /// The header line of a results file of `kind`, line end included.
    pub fn header(self, kind: Kind) -> Vec<u8> {
        let mut line = match self {
            Dialect::Plain => Vec::new(),
            Dialect::Excel => BOM.to_vec(),
        };
        let delimiter = char::from(self.delimiter()).to_string();
        let columns: Vec<&str> = std::iter::once(kind.first_column())
            .chain(super::COLUMNS[1..].iter().copied())
            .collect();
        line.extend_from_slice(columns.join(&delimiter).as_bytes());
        line.push(b'\n');
        line
    }

    /// The header of a file of `kind` that carries the campaign's columns
    /// `kept` after the standard ones.
    pub fn header_with(self, kind: Kind, kept: &[String]) -> Vec<u8> {
        let mut line = self.header(kind);
        line.pop();
        for name in kept {
            line.push(self.delimiter());
            line.extend_from_slice(super::line::cell(name).as_bytes());
        }
        line.push(b'\n');
        line
    }

    /// The form and kind of a results file of this tool, from its first
    /// line (the campaign's columns may follow the standard ones); `None`
    /// for any other file.
    pub fn of_header(line: &[u8]) -> Option<(Self, Header)> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let bare = |header: Vec<u8>| header.strip_suffix(b"\n").map(<[u8]>::to_vec);
        for dialect in [Dialect::Plain, Dialect::Excel] {
            for kind in [Kind::Send, Kind::Rehearsal, Kind::Check] {
                let Some(standard) = bare(dialect.header(kind)) else {
                    continue;
                };
                let rest = line.strip_prefix(standard.as_slice());
                if rest.is_some_and(|rest| rest.is_empty() || rest[0] == dialect.delimiter()) {
                    return Some((dialect, Header::Of(kind)));
                }
            }
            if bare(dialect.legacy_header()).as_deref() == Some(line) {
                return Some((dialect, Header::Legacy));
            }
        }
        None
    }

    /// The campaign's columns a header of this form carries after the
    /// standard ones, by name.
    pub fn kept_of_header(self, line: &[u8]) -> Vec<String> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(self.delimiter())
            .from_reader(line);
        let mut record = csv::StringRecord::new();
        match reader.read_record(&mut record) {
            Ok(true) => record
                .iter()
                .skip(super::COLUMNS.len())
                .map(|name| super::cell_value(name).to_string())
                .collect(),
            _ => Vec::new(),
        }
    }

    /// The header of a results file of an earlier version, which had no
    /// campaign column.
    fn legacy_header(self) -> Vec<u8> {
        let header = self.header(Kind::Send);
        let first = header
            .iter()
            .position(|byte| *byte == self.delimiter())
            .expect("the header has more than one column");
        let bom = match self {
            Dialect::Plain => 0,
            Dialect::Excel => BOM.len(),
        };
        [&header[..bom], &header[first + 1..]].concat()
    }
}

/// What a results file records: its first column's header says so, and
/// each line's first cell names the campaign.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Kind {
    /// A send's report: what became of each row.
    #[default]
    Send,
    /// A `--mock` rehearsal's: nothing in it went to WhatsApp.
    Rehearsal,
    /// A dry run's (`validate`): what a send would do.
    Check,
}

impl Kind {
    /// What a run writes: a dry run checks, `--mock` rehearses, else a send.
    pub fn of(dry_run: bool, mock: bool) -> Self {
        match (dry_run, mock) {
            (true, _) => Kind::Check,
            (false, true) => Kind::Rehearsal,
            (false, false) => Kind::Send,
        }
    }

    /// Its file's default name's second part: `<stem>.results.csv`,
    /// `<stem>.mock.csv`, `<stem>.check.csv`.
    pub fn file_name(self) -> &'static str {
        match self {
            Kind::Send => "results",
            Kind::Rehearsal => "mock",
            Kind::Check => "check",
        }
    }

    pub fn first_column(self) -> &'static str {
        match self {
            Kind::Send => "campaign",
            Kind::Rehearsal => "rehearsal",
            Kind::Check => "check",
        }
    }

    /// What such a file is, in words.
    pub fn describe(self) -> &'static str {
        match self {
            Kind::Send => "the results file of a send",
            Kind::Rehearsal => "the file of a --mock rehearsal (nothing in it went to WhatsApp)",
            Kind::Check => "the file of a dry run (validate, or send --dry-run)",
        }
    }
}

/// What a results file's header says it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Header {
    Of(Kind),
    /// An earlier version's results file, with no campaign column: taken as
    /// the campaign's own.
    Legacy,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_and_kind_knows_its_own_header_and_no_other() {
        for dialect in [Dialect::Plain, Dialect::Excel] {
            for kind in [Kind::Send, Kind::Rehearsal, Kind::Check] {
                assert_eq!(
                    Dialect::of_header(&dialect.header(kind)),
                    Some((dialect, Header::Of(kind)))
                );
            }
        }
        assert!(Dialect::Excel.header(Kind::Send).starts_with(BOM));
        assert_eq!(
            Dialect::of_header(
                b"row,key,to,contact_name,contact_phone,instance_id,status,api_status,\
                  message_id,http_status,attempts,delay,typing,error,finished_at\n"
            ),
            Some((Dialect::Plain, Header::Legacy)),
            "an earlier version's file"
        );
        assert_eq!(Dialect::of_header(b"to,contact_name\n"), None);
        assert_eq!(Dialect::of_header(b""), None);
    }
}
