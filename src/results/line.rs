//! One results line, written field by field: a busy run writes tens of
//! thousands a second.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io;

use crate::types::Outcome;

/// Writes outcomes as results lines. It keeps its scratch space and the last
/// timestamp it formatted from line to line: a busy run writes tens of
/// thousands of lines a second, mostly within the same millisecond.
#[derive(Debug, Default)]
pub struct LineFormat {
    /// The campaign's name, each line's first cell, ready to write.
    campaign: String,
    /// Seconds written with `,` (Excel in Brazil), not `.`.
    decimal_comma: bool,
    /// For each of the campaign's columns the file carries, which of the
    /// row's kept cells goes there (`None`: this run's campaign lacks it).
    kept: Vec<Option<usize>>,
    number: String,
    stamp_millis: Option<i64>,
    stamp: String,
}

impl LineFormat {
    /// Lines for a file whose header carries the campaign's columns
    /// `file_kept`, of rows whose kept cells are those of `row_kept`.
    pub fn new(
        dialect: super::Dialect,
        campaign: &str,
        file_kept: &[String],
        row_kept: &[String],
    ) -> Self {
        // By name (the first of a name, should two share it); a header of
        // a hundred thousand columns is read in one pass, not one a column.
        let mut by_name = std::collections::HashMap::with_capacity(row_kept.len());
        for (index, name) in row_kept.iter().enumerate() {
            by_name.entry(name.as_str()).or_insert(index);
        }
        LineFormat {
            campaign: cell(campaign).into_owned(),
            decimal_comma: dialect.decimal_mark() == ',',
            kept: file_kept
                .iter()
                .map(|name| by_name.get(name.as_str()).copied())
                .collect(),
            ..LineFormat::default()
        }
    }

    /// Writes `outcome` as one line, in the order of [`super::COLUMNS`],
    /// then the campaign's columns the file carries.
    pub fn write<W: io::Write>(
        &mut self,
        outcome: &Outcome,
        writer: &mut csv::Writer<W>,
    ) -> csv::Result<()> {
        let mut integers = itoa::Buffer::new();
        let recipient = &outcome.recipient;
        writer.write_field(self.campaign.as_bytes())?;
        writer.write_field(integers.format(recipient.row))?;
        for text in [
            &recipient.key,
            &recipient.to,
            &recipient.contact_name,
            &recipient.contact_phone,
            &outcome.instance_id,
        ] {
            writer.write_field(cell(text).as_bytes())?;
        }
        writer.write_field(outcome.status.as_str())?;
        writer.write_field(cell(&outcome.api_status).as_bytes())?;
        writer.write_field(cell(&outcome.message_id).as_bytes())?;
        match outcome.http_status {
            Some(status) => writer.write_field(integers.format(status))?,
            None => writer.write_field("")?,
        }
        writer.write_field(integers.format(outcome.attempts))?;
        for seconds in [outcome.delay, outcome.typing] {
            self.number.clear();
            if let Some(seconds) = seconds {
                write!(self.number, "{seconds}").expect("writing to a String cannot fail");
                if self.decimal_comma {
                    self.number = self.number.replace('.', ",");
                }
            }
            writer.write_field(&self.number)?;
        }
        writer.write_field(cell(&outcome.error).as_bytes())?;
        writer.write_field(self.timestamp(outcome.finished_at))?;
        for kept in &self.kept {
            let text = kept.map_or("", |index| recipient.kept.get(index));
            writer.write_field(cell(text).as_bytes())?;
        }
        writer.write_record(None::<&[u8]>)
    }

    /// `2026-11-24T09:00:00.123Z`, formatted once per millisecond.
    fn timestamp(&mut self, at: jiff::Timestamp) -> &str {
        let millis = at.as_millisecond();
        if self.stamp_millis != Some(millis) {
            self.stamp.clear();
            write!(self.stamp, "{}", at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ"))
                .expect("writing to a String cannot fail");
            self.stamp_millis = Some(millis);
        }
        &self.stamp
    }
}

/// A CSV writer for results lines: it writes cells as [`LineFormat`] gives
/// them, quoted where a spreadsheet needs it, and nothing more.
pub fn line_writer<W: io::Write>(inner: W, dialect: super::Dialect) -> csv::Writer<W> {
    csv::WriterBuilder::new()
        .has_headers(false)
        .delimiter(dialect.delimiter())
        .quote_style(csv::QuoteStyle::Never)
        .from_writer(inner)
}

/// A text cell as a spreadsheet must see it: [`spreadsheet_safe`], then in
/// quotes when it holds a field separator of any spreadsheet (`,`, or `;`
/// as Excel in Brazil splits on, or a tab), a quote or a line end.
pub(super) fn cell(text: &str) -> Cow<'_, str> {
    let safe = spreadsheet_safe(text);
    if !safe.contains([',', ';', '\t', '"', '\r', '\n']) {
        return safe;
    }
    let mut quoted = String::with_capacity(safe.len() + 2);
    quoted.push('"');
    for c in safe.chars() {
        if c == '"' {
            quoted.push('"');
        }
        quoted.push(c);
    }
    quoted.push('"');
    Cow::Owned(quoted)
}

/// A cell a spreadsheet would run as a formula gets a leading `'` (OWASP's
/// advice for CSV injection): one that starts, after any spaces, with `=`,
/// `+`, `-`, `@` or their full-width forms, or with a tab or a carriage
/// return. A cell that starts with `'` gets one too, so [`cell_value`]
/// gives back exactly what was written, as `--resume` needs.
fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    let formula = cell
        .trim_start_matches(' ')
        .starts_with(['=', '+', '-', '@', '＝', '＋', '－', '＠']);
    if formula || cell.starts_with(['\t', '\r', '\'']) {
        Cow::Owned(format!("'{cell}"))
    } else {
        Cow::Borrowed(cell)
    }
}

/// The value a results cell was written from.
pub fn cell_value(cell: &str) -> &str {
    cell.strip_prefix('\'').unwrap_or(cell)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Recipient, Status};

    #[test]
    fn a_line_has_every_column_in_order_and_reuses_its_timestamp() {
        let outcome = Outcome {
            recipient: Recipient {
                row: 7,
                key: "k-7".to_string(),
                to: "5511999999999".to_string(),
                contact_name: "=Ana".to_string(),
                contact_phone: "551130034000".to_string(),
                kept: {
                    let mut kept = crate::types::KeptCells::default();
                    for cell in ["Recife", "ana@x.com", "a, b"] {
                        kept.push(cell);
                    }
                    kept
                },
            },
            instance_id: "solo".to_string(),
            status: Status::Sent,
            api_status: "QUEUED".to_string(),
            message_id: "msg-1".to_string(),
            http_status: Some(201),
            attempts: 2,
            delay: Some(2.5),
            typing: Some(5.0),
            error: String::new(),
            finished_at: "2026-11-24T09:00:00.123456Z".parse().unwrap(),
            sent_earlier: false,
        };
        // The file carries E-mail and Cidade (in its order), and Bairro,
        // which this run's rows lack.
        let row_kept = ["Cidade", "E-mail", "Obs"].map(String::from);
        let file_kept = ["E-mail", "Bairro", "Cidade", "Obs"].map(String::from);
        let mut lines = LineFormat::new(
            crate::results::Dialect::Plain,
            "leads, nov",
            &file_kept,
            &row_kept,
        );
        let mut writer = line_writer(Vec::new(), crate::results::Dialect::Plain);
        lines.write(&outcome, &mut writer).unwrap();
        let later = Outcome {
            recipient: Recipient {
                row: 8,
                ..outcome.recipient.clone()
            },
            http_status: None,
            delay: None,
            finished_at: "2026-11-24T09:00:01.5Z".parse().unwrap(),
            ..outcome
        };
        lines.write(&later, &mut writer).unwrap();
        let written = String::from_utf8(writer.into_inner().unwrap()).unwrap();
        assert_eq!(
            written,
            "\"leads, nov\",7,k-7,5511999999999,'=Ana,551130034000,solo,SENT,QUEUED,msg-1,201,2,2.5,5,,2026-11-24T09:00:00.123Z,ana@x.com,,Recife,\"a, b\"\n\
             \"leads, nov\",8,k-7,5511999999999,'=Ana,551130034000,solo,SENT,QUEUED,msg-1,,2,,5,,2026-11-24T09:00:01.500Z,ana@x.com,,Recife,\"a, b\"\n"
        );
    }

    #[test]
    fn formula_like_cells_are_neutralised() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("+5511999999999"), "'+5511999999999");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("5511999999999"), "5511999999999");
        assert_eq!(spreadsheet_safe("João"), "João");
        assert_eq!(spreadsheet_safe("  =1+1"), "'  =1+1");
        assert_eq!(spreadsheet_safe("＝1+1"), "'＝1+1");
        for text in ["=1+1", " =1", "'quoted", "''", "-", "plain", "", "＠x"] {
            assert_eq!(
                cell_value(&spreadsheet_safe(text)),
                text,
                "round trip of {text:?}"
            );
        }
    }

    #[test]
    fn cells_a_spreadsheet_would_split_are_quoted() {
        assert_eq!(cell("Ana;=1+1;x"), "\"Ana;=1+1;x\"");
        assert_eq!(cell("a\tb"), "\"a\tb\"");
        assert_eq!(cell("say \"hi\", Ana"), "\"say \"\"hi\"\", Ana\"");
        assert_eq!(cell("=x;y"), "\"'=x;y\"");
        assert_eq!(cell("plain text"), "plain text");
    }
}
