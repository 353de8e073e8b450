//! `[results]`: how the results file is written.

use serde::Deserialize;

/// `[results]`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ResultsSettings {
    /// Write the results for Excel in Brazil: UTF-8 with a byte-order mark,
    /// `;` between cells, `,` as the decimal mark. A resume keeps the form
    /// the file already has.
    pub excel: bool,
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

    /// The header line, line end included.
    pub fn header(self) -> Vec<u8> {
        let mut line = match self {
            Dialect::Plain => Vec::new(),
            Dialect::Excel => BOM.to_vec(),
        };
        let delimiter = char::from(self.delimiter()).to_string();
        line.extend_from_slice(super::COLUMNS.join(&delimiter).as_bytes());
        line.push(b'\n');
        line
    }

    /// The form of a results file of this tool, from its first line; `None`
    /// for any other file.
    pub fn of_header(line: &[u8]) -> Option<Self> {
        let line = line.strip_suffix(b"\n").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        [Dialect::Plain, Dialect::Excel]
            .into_iter()
            .find(|dialect| dialect.header().strip_suffix(b"\n") == Some(line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_form_knows_its_own_header_and_no_other() {
        for dialect in [Dialect::Plain, Dialect::Excel] {
            assert_eq!(Dialect::of_header(&dialect.header()), Some(dialect));
        }
        assert!(Dialect::Excel.header().starts_with(BOM));
        assert_eq!(Dialect::of_header(b"to,contact_name\n"), None);
        assert_eq!(Dialect::of_header(b""), None);
    }
}
