//! What a row is checked against, and the check of one record on its own:
//! all a checker thread needs.

use std::sync::Arc;

use csv::ByteRecord;

use super::fields::{self, Fields, PhoneBook};
use super::input::TextEncoding;
use super::phone::Region;
use super::records::Place;
use super::Layout;
use crate::pacing::PacingSettings;
use crate::types::{Problem, Recipient, Rejected, Row, Status};

pub struct RowRules {
    pub layout: Arc<Layout>,
    pub encoding: TextEncoding,
    pub pacing: PacingSettings,
    pub region: Region,
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
            return Row::Rejected(invalid(&fields, row, vec![problem]));
        }
        match fields::check(&fields, phones, &self.pacing, row) {
            Ok(job) => Row::Job(job),
            Err(problems) => Row::Rejected(invalid(&fields, row, problems)),
        }
    }
}

/// An `INVALID` row, with its fields as they were written.
fn invalid(fields: &Fields, row: u64, problems: Vec<Problem>) -> Rejected {
    let layout = fields.layout;
    let key = match layout.key {
        Some(index) => fields.lossy(Some(index)).trim().to_string(),
        None => format!(
            "{}:{}",
            fields.lossy(Some(layout.to)).trim(),
            fields.lossy(Some(layout.contact_phone)).trim()
        ),
    };
    Rejected {
        recipient: Recipient {
            row,
            key,
            to: fields.lossy(Some(layout.to)),
            contact_name: fields.lossy(Some(layout.contact_name)),
            contact_phone: fields.lossy(Some(layout.contact_phone)),
        },
        status: Status::Invalid,
        problems,
    }
}
