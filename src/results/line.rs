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
    number: String,
    stamp_millis: Option<i64>,
    stamp: String,
}

impl LineFormat {
    /// Writes `outcome` as one line, in the order of [`super::COLUMNS`].
    pub fn write<W: io::Write>(
        &mut self,
        outcome: &Outcome,
        writer: &mut csv::Writer<W>,
    ) -> csv::Result<()> {
        let mut integers = itoa::Buffer::new();
        let recipient = &outcome.recipient;
        writer.write_field(integers.format(recipient.row))?;
        for cell in [
            &recipient.key,
            &recipient.to,
            &recipient.contact_name,
            &recipient.contact_phone,
            &outcome.instance_id,
        ] {
            writer.write_field(spreadsheet_safe(cell).as_bytes())?;
        }
        writer.write_field(outcome.status.as_str())?;
        writer.write_field(spreadsheet_safe(&outcome.api_status).as_bytes())?;
        writer.write_field(spreadsheet_safe(&outcome.message_id).as_bytes())?;
        match outcome.http_status {
            Some(status) => writer.write_field(integers.format(status))?,
            None => writer.write_field("")?,
        }
        writer.write_field(integers.format(outcome.attempts))?;
        for seconds in [outcome.delay, outcome.typing] {
            self.number.clear();
            if let Some(seconds) = seconds {
                write!(self.number, "{seconds}").expect("writing to a String cannot fail");
            }
            writer.write_field(&self.number)?;
        }
        writer.write_field(spreadsheet_safe(&outcome.error).as_bytes())?;
        writer.write_field(self.timestamp(outcome.finished_at))?;
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

/// A cell a spreadsheet would run as a formula gets a leading `'` (OWASP's
/// advice for CSV injection). A cell that starts with `'` gets one too, so
/// [`cell_value`] gives back exactly what was written, as `--resume` needs.
fn spreadsheet_safe(cell: &str) -> Cow<'_, str> {
    match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r' | '\'') => Cow::Owned(format!("'{cell}")),
        _ => Cow::Borrowed(cell),
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
        };
        let mut lines = LineFormat::default();
        let mut writer = csv::Writer::from_writer(Vec::new());
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
            "7,k-7,5511999999999,'=Ana,551130034000,solo,SENT,QUEUED,msg-1,201,2,2.5,5,,2026-11-24T09:00:00.123Z\n\
             8,k-7,5511999999999,'=Ana,551130034000,solo,SENT,QUEUED,msg-1,,2,,5,,2026-11-24T09:00:01.500Z\n"
        );
    }

    #[test]
    fn formula_like_cells_are_neutralised() {
        assert_eq!(spreadsheet_safe("=HYPERLINK(\"x\")"), "'=HYPERLINK(\"x\")");
        assert_eq!(spreadsheet_safe("+5511999999999"), "'+5511999999999");
        assert_eq!(spreadsheet_safe("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(spreadsheet_safe("5511999999999"), "5511999999999");
        assert_eq!(spreadsheet_safe("João"), "João");
        for cell in ["=1+1", "'quoted", "''", "-", "plain", ""] {
            assert_eq!(
                cell_value(&spreadsheet_safe(cell)),
                cell,
                "round trip of {cell:?}"
            );
        }
    }
}
