//! CSV records with the numbers people look for: the line of the file a
//! record starts on, and its row as a spreadsheet shows it (blank lines are
//! rows there, a quoted field spanning lines is not more than one).
//!
//! The csv crate's own line numbers skip blank lines, lag behind CRLF line
//! ends and ignore a lone CR, so the bytes it reads are kept on a short tape (from the
//! current record on) and the line breaks counted here.

use std::collections::VecDeque;
use std::io::{self, BufReader, Read};
use std::sync::{Arc, Mutex};

use csv::ByteRecord;

/// Where a record sits in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Place {
    /// The row as a spreadsheet numbers it: the header is row 1.
    pub row: u64,
    /// The line of the file the record starts on.
    pub line: u64,
}

pub struct Records {
    reader: csv::Reader<BufReader<Taped>>,
    tape: Arc<Mutex<Tape>>,
    /// Line breaks inside quoted fields so far: rows a spreadsheet does not show.
    breaks_in_fields: u64,
}

impl Records {
    pub fn new(input: Box<dyn Read + Send>, delimiter: u8) -> Self {
        let tape = Arc::new(Mutex::new(Tape::default()));
        let taped = Taped {
            inner: input,
            tape: tape.clone(),
        };
        let reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .delimiter(delimiter)
            // Rows of the wrong width are reported as INVALID, not refused by the reader.
            .flexible(true)
            .from_reader(BufReader::with_capacity(64 * 1024, taped));
        Records {
            reader,
            tape,
            breaks_in_fields: 0,
        }
    }

    /// Reads the next record that is not blank into `record`.
    pub fn next(&mut self, record: &mut ByteRecord) -> Result<Option<Place>, csv::Error> {
        loop {
            if !self.reader.read_byte_record(record)? {
                return Ok(None);
            }
            let start = record.position().map_or(0, csv::Position::byte);
            let line = self
                .tape
                .lock()
                .expect("the tape is never poisoned")
                .line_at(start);
            let place = Place {
                row: line - self.breaks_in_fields,
                line,
            };
            self.breaks_in_fields += record
                .iter()
                .map(|field| line_breaks(field.iter()))
                .sum::<u64>();
            // Spreadsheets export rows of empty cells (`,,,`); they are not jobs.
            if !record.iter().all(|field| field.trim_ascii().is_empty()) {
                return Ok(Some(place));
            }
        }
    }
}

/// The bytes read but not yet passed by a record, and the line breaks before them.
#[derive(Default)]
struct Tape {
    bytes: VecDeque<u8>,
    /// The offset in the input of `bytes[0]`.
    offset: u64,
    /// Line breaks before `offset`.
    breaks: u64,
}

impl Tape {
    /// The line of the first content at or after `start` (the csv crate may
    /// put a record's start on the line end or blank lines before it), and
    /// forgets the bytes before it.
    fn line_at(&mut self, start: u64) -> u64 {
        let from = usize::try_from(start.saturating_sub(self.offset))
            .unwrap_or(usize::MAX)
            .min(self.bytes.len());
        let blank = self
            .bytes
            .range(from..)
            .take_while(|byte| matches!(byte, b'\r' | b'\n'))
            .count();
        let content = from + blank;
        // `bytes[content]` is not a line end, so a `\r` at the end of the range is whole.
        self.breaks += line_breaks(self.bytes.range(..content));
        self.bytes.drain(..content);
        self.offset += content as u64;
        self.breaks + 1
    }
}

/// Line breaks as spreadsheets count them: `\n`, `\r\n`, and a lone `\r`.
fn line_breaks<'a>(bytes: impl Iterator<Item = &'a u8>) -> u64 {
    let mut breaks = 0;
    let mut after_cr = false;
    for &byte in bytes {
        match byte {
            b'\n' if after_cr => {}
            b'\n' | b'\r' => breaks += 1,
            _ => {}
        }
        after_cr = byte == b'\r';
    }
    breaks
}

/// The input, copying what it reads onto the tape.
struct Taped {
    inner: Box<dyn Read + Send>,
    tape: Arc<Mutex<Tape>>,
}

impl Read for Taped {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        self.tape
            .lock()
            .expect("the tape is never poisoned")
            .bytes
            .extend(&buffer[..read]);
        Ok(read)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn places(text: &'static [u8]) -> Vec<(u64, u64)> {
        let mut records = Records::new(Box::new(text), b',');
        let mut record = ByteRecord::new();
        let mut places = Vec::new();
        while let Some(place) = records.next(&mut record).unwrap() {
            places.push((place.row, place.line));
        }
        places
    }

    #[test]
    fn lines_count_with_either_line_end() {
        assert_eq!(places(b"h,h\na,b\nc,d\n"), vec![(1, 1), (2, 2), (3, 3)]);
        assert_eq!(
            places(b"h,h\r\na,b\r\nc,d\r\n"),
            vec![(1, 1), (2, 2), (3, 3)]
        );
        assert_eq!(places(b"h,h\r\na,b\r\nc,d"), vec![(1, 1), (2, 2), (3, 3)]);
    }

    #[test]
    fn an_old_mac_line_end_is_a_line_too() {
        assert_eq!(places(b"h,h\ra,b\r\rc,d\r"), vec![(1, 1), (2, 2), (4, 4)]);
        assert_eq!(
            places(b"h,h\n\"a\rb\",x\nd,e\n"),
            vec![(1, 1), (2, 2), (3, 4)]
        );
    }

    #[test]
    fn blank_lines_are_rows_of_a_spreadsheet_but_not_records() {
        assert_eq!(
            places(b"h,h\n\na,b\r\n\r\n\r\nc,d\n"),
            vec![(1, 1), (3, 3), (6, 6)]
        );
        assert_eq!(
            places(b"h,h\na,b\n,\n  ,  \nc,d\n"),
            vec![(1, 1), (2, 2), (5, 5)]
        );
    }

    #[test]
    fn a_quoted_field_spanning_lines_is_one_row() {
        assert_eq!(
            places(b"h,h\n\"a\nb\nc\",x\nd,e\n"),
            vec![(1, 1), (2, 2), (3, 5)]
        );
        assert_eq!(
            places(b"h,h\r\n\"a\r\nb\",x\r\nd,e\r\n"),
            vec![(1, 1), (2, 2), (3, 4)]
        );
    }

    #[test]
    fn a_file_of_many_small_reads_numbers_the_same() {
        // One byte per read: the tape must not depend on how the input arrives.
        struct Trickle(&'static [u8]);
        impl Read for Trickle {
            fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
                let Some((first, rest)) = self.0.split_first() else {
                    return Ok(0);
                };
                buffer[0] = *first;
                self.0 = rest;
                Ok(1)
            }
        }
        let mut records = Records::new(Box::new(Trickle(b"h,h\r\n\r\n\"a\nb\",c\nd,e")), b',');
        let mut record = ByteRecord::new();
        let mut places = Vec::new();
        while let Some(place) = records.next(&mut record).unwrap() {
            places.push((place.row, place.line));
        }
        assert_eq!(places, vec![(1, 1), (3, 3), (4, 5)]);
    }
}
