//! What a row is checked against, and the check of one record on its own:
//! all a checker thread needs.

use std::sync::Arc;

use csv::ByteRecord;

use super::fields::{self, Card, FieldRules, Fields, PhoneBook};
use super::input::TextEncoding;
use super::records::Place;
use super::Layout;
use crate::types::{Problem, Recipient, Rejected, Row, Status};

pub struct RowRules {
    pub layout: Arc<Layout>,
    pub encoding: TextEncoding,
    pub fields: FieldRules,
}

impl RowRules {
    /// Checks one record on its own: a job, or the line of an invalid row.
    /// Duplicates are found later, in file order.
    pub fn check(&self, place: Place, record: &ByteRecord, phones: &mut PhoneBook) -> Row {
        let Place { row, line } = place;
        let fields = Fields {
            record,
            layout: &self.layout,
            encoding: self.encoding,
        };
        if record.len() != self.layout.width {
            let message = format!(
                "line {line}: the row has {} fields, the header has {}",
                record.len(),
                self.layout.width
            );
            let problem = Problem::new("wrong number of fields", message);
            return Row::Rejected(self.invalid(&fields, row, vec![problem]));
        }
        match fields::check(&fields, phones, &self.fields, row) {
            Ok(job) => Row::Job(job),
            Err(problems) => Row::Rejected(self.invalid(&fields, row, problems)),
        }
    }

    /// An `INVALID` row, with its fields as they were written (the card's
    /// where the row names none).
    fn invalid(&self, fields: &Fields, row: u64, problems: Vec<Problem>) -> Rejected {
        let layout = fields.layout;
        let card = self.fields.card.as_ref();
        let or_card = |written: String, from_card: fn(&Card) -> &String| match card {
            Some(card) if written.trim().is_empty() => from_card(card).clone(),
            _ => written,
        };
        let contact_name = or_card(fields.lossy(layout.contact_name), |card| &card.name);
        let contact_phone = or_card(fields.lossy(layout.contact_phone), |card| &card.phone);
        let to = fields.lossy(Some(layout.to));
        let key = match layout.key {
            Some(index) => fields.lossy(Some(index)).trim().to_string(),
            None => format!("{}:{}", to.trim(), contact_phone.trim()),
        };
        Rejected {
            recipient: Recipient {
                row,
                key,
                to,
                contact_name,
                contact_phone,
                kept: fields.kept(),
            },
            status: Status::Invalid,
            problems,
        }
    }
}
