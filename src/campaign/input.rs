//! Opening a campaign file as spreadsheets write them: the text encoding and
//! the delimiter, detected from the bytes unless the config sets them.

use std::borrow::Cow;
use std::fmt;
use std::fs::File;
use std::io::{self, Cursor, Read};
use std::str::FromStr;

use encoding_rs::WINDOWS_1252;
use encoding_rs_io::DecodeReaderBytesBuilder;
use tracing::{info, warn};

use super::Source;

/// How the bytes of a field become text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TextEncoding {
    Utf8,
    /// Excel's default "CSV" in Brazil and most of the Americas and Western Europe.
    Windows1252,
}

impl TextEncoding {
    /// The text of a field; `None` when it is not valid in this encoding.
    pub fn decode<'a>(self, bytes: &'a [u8]) -> Option<Cow<'a, str>> {
        match self {
            TextEncoding::Utf8 => std::str::from_utf8(bytes).ok().map(Cow::Borrowed),
            // Every byte has a meaning in Windows-1252.
            TextEncoding::Windows1252 => Some(WINDOWS_1252.decode_without_bom_handling(bytes).0),
        }
    }
}

impl fmt::Display for TextEncoding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TextEncoding::Utf8 => "utf-8",
            TextEncoding::Windows1252 => "windows-1252",
        })
    }
}

/// `campaign.encoding`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum EncodingChoice {
    #[default]
    Auto,
    Fixed(TextEncoding),
}

impl FromStr for EncodingChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.trim().to_ascii_lowercase().replace('_', "-").as_str() {
            "auto" => Ok(EncodingChoice::Auto),
            "utf-8" | "utf8" => Ok(EncodingChoice::Fixed(TextEncoding::Utf8)),
            "windows-1252" | "cp1252" | "latin1" | "iso-8859-1" => {
                Ok(EncodingChoice::Fixed(TextEncoding::Windows1252))
            }
            _ => Err(format!("`{text}` is not one of auto, utf-8, windows-1252")),
        }
    }
}

/// `campaign.delimiter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DelimiterChoice {
    #[default]
    Auto,
    Fixed(u8),
}

impl FromStr for DelimiterChoice {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text {
            "auto" => Ok(DelimiterChoice::Auto),
            "," | ";" | "|" => Ok(DelimiterChoice::Fixed(text.as_bytes()[0])),
            "\t" | "\\t" | "tab" => Ok(DelimiterChoice::Fixed(b'\t')),
            _ => Err(format!(
                "`{text}` is not one of auto, \",\", \";\", \"\\t\", \"|\""
            )),
        }
    }
}

/// How much of the start of the file is looked at for the encoding of
/// standard input and for the delimiter.
const SNIFF_BYTES: u64 = 1 << 20;

/// A campaign source, ready for the CSV reader.
pub struct Opened {
    pub reader: Box<dyn Read + Send>,
    pub encoding: TextEncoding,
    pub delimiter: u8,
    /// The file was UTF-16 and is converted to UTF-8 while reading.
    pub from_utf16: bool,
}

/// Opens the source, strips a byte-order mark, turns UTF-16 into UTF-8, and
/// settles the encoding and delimiter.
pub fn open(
    source: &Source,
    encoding: EncodingChoice,
    delimiter: DelimiterChoice,
) -> io::Result<Opened> {
    let mut input: Box<dyn Read + Send> = Box::new(HeaderBound {
        inner: source.open()?,
        before_a_line_end: 0,
    });
    let mut head = Vec::new();
    input.by_ref().take(SNIFF_BYTES).read_to_end(&mut head)?;

    if head.starts_with(&[0xFF, 0xFE]) || head.starts_with(&[0xFE, 0xFF]) {
        // Excel's "Unicode text": UTF-16 with a BOM, usually tab-separated.
        let utf16 = Cursor::new(head).chain(input);
        let mut decoded = DecodeReaderBytesBuilder::new()
            .bom_sniffing(true)
            .build(utf16);
        let mut head = Vec::new();
        decoded.by_ref().take(SNIFF_BYTES).read_to_end(&mut head)?;
        let hint = take_separator_hint(&mut head);
        let delimiter = settle_delimiter(delimiter, hint, &head);
        return Ok(Opened {
            reader: Box::new(Cursor::new(head).chain(decoded)),
            encoding: TextEncoding::Utf8,
            delimiter,
            from_utf16: true,
        });
    }

    let had_bom = head.starts_with(&[0xEF, 0xBB, 0xBF]);
    if had_bom {
        head.drain(..3);
    }
    let encoding = match encoding {
        EncodingChoice::Fixed(encoding) => encoding,
        EncodingChoice::Auto if had_bom => TextEncoding::Utf8,
        EncodingChoice::Auto => detect_encoding(source, &head)?,
    };
    let hint = take_separator_hint(&mut head);
    let delimiter = settle_delimiter(delimiter, hint, &head);
    Ok(Opened {
        reader: Box::new(Cursor::new(head).chain(input)),
        encoding,
        delimiter,
        from_utf16: false,
    })
}

/// The most bytes before the first line end: a header of 100,000
/// `metadata.<key>` columns fits; a file without one (`/dev/zero` through a
/// pipe, a binary file) is not a campaign, and its "header" would fill
/// memory and the error message.
const HEADER_BYTES_MAX: u64 = 16 << 20;

/// The input, refused once [`HEADER_BYTES_MAX`] bytes went by with no line end.
struct HeaderBound {
    inner: Box<dyn Read + Send>,
    /// Bytes read so far with no line end among them; `u64::MAX` once one came.
    before_a_line_end: u64,
}

impl Read for HeaderBound {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        let read = self.inner.read(buffer)?;
        if self.before_a_line_end != u64::MAX {
            if buffer[..read]
                .iter()
                .any(|byte| matches!(byte, b'\n' | b'\r'))
            {
                self.before_a_line_end = u64::MAX;
            } else {
                self.before_a_line_end += read as u64;
                if self.before_a_line_end > HEADER_BYTES_MAX {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "no line ends in its first 16 MiB, so it has no header line: is it a CSV file?",
                    ));
                }
            }
        }
        Ok(read)
    }
}

/// The delimiter: the config's, else the file's `sep=` line, else the commonest.
fn settle_delimiter(choice: DelimiterChoice, hint: Option<u8>, head: &[u8]) -> u8 {
    match (choice, hint) {
        (DelimiterChoice::Fixed(delimiter), _) => delimiter,
        (DelimiterChoice::Auto, Some(hint)) => hint,
        (DelimiterChoice::Auto, None) => detect_delimiter(head),
    }
}

/// Excel's `sep=;` first line names the delimiter and is not the header:
/// takes it out of `head` and returns the delimiter it names.
fn take_separator_hint(head: &mut Vec<u8>) -> Option<u8> {
    let prefix = head.get(..4)?;
    if !prefix.eq_ignore_ascii_case(b"sep=") {
        return None;
    }
    let delimiter = *head.get(4)?;
    let line_end = match head.get(5..7) {
        Some(b"\r\n") => 7,
        _ if matches!(head.get(5), Some(b'\n' | b'\r')) => 6,
        _ => return None,
    };
    head.drain(..line_end);
    Some(delimiter)
}

/// The delimiter that appears most often in the header line, outside quotes
/// (`,` when there is none).
pub fn detect_delimiter(head: &[u8]) -> u8 {
    let mut counts = [(b',', 0usize), (b';', 0), (b'\t', 0)];
    let mut quoted = false;
    for &byte in head {
        match byte {
            b'"' => quoted = !quoted,
            b'\n' | b'\r' if !quoted => break,
            _ if !quoted => {
                if let Some((_, count)) =
                    counts.iter_mut().find(|(delimiter, _)| *delimiter == byte)
                {
                    *count += 1;
                }
            }
            _ => {}
        }
    }
    // On a tie the earlier candidate wins, so `,` is the default.
    counts
        .iter()
        .rev()
        .max_by_key(|(_, count)| *count)
        .filter(|(_, count)| *count > 0)
        .map_or(b',', |(delimiter, _)| *delimiter)
}

/// UTF-8 unless the bytes say otherwise: a file with invalid UTF-8 and
/// fewer well-formed multi-byte characters than broken sequences is read as
/// Windows-1252. A file is read through once for this; standard input is
/// judged by its first megabyte.
fn detect_encoding(source: &Source, head: &[u8]) -> io::Result<TextEncoding> {
    let mut evidence = Utf8Evidence::default();
    match source {
        Source::File(path) if source.is_regular_file() => {
            let mut file = File::open(path)?;
            let mut buffer = vec![0; 256 * 1024];
            loop {
                let read = file.read(&mut buffer)?;
                if read == 0 {
                    break;
                }
                evidence.scan(&buffer[..read]);
            }
        }
        // A pipe can be read only once: judged by its first megabyte.
        _ => evidence.scan(head),
    }
    evidence.finish();

    if evidence.invalid == 0 {
        return Ok(TextEncoding::Utf8);
    }
    if evidence.multibyte >= evidence.invalid {
        warn!(
            broken_sequences = evidence.invalid,
            "the campaign is UTF-8 with some invalid bytes; the rows that hold them will be INVALID"
        );
        return Ok(TextEncoding::Utf8);
    }
    info!("the campaign is not valid UTF-8: reading it as Windows-1252 (set campaign.encoding to choose)");
    Ok(TextEncoding::Windows1252)
}

/// Counts of well-formed multi-byte UTF-8 characters and broken sequences.
#[derive(Debug, Default)]
struct Utf8Evidence {
    multibyte: u64,
    invalid: u64,
    /// The start of a character cut at the end of the last chunk.
    carry: Vec<u8>,
}

impl Utf8Evidence {
    fn scan(&mut self, chunk: &[u8]) {
        let joined;
        let mut rest = if self.carry.is_empty() {
            chunk
        } else {
            joined = [std::mem::take(&mut self.carry).as_slice(), chunk].concat();
            &joined[..]
        };
        loop {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    self.count_multibyte(valid.as_bytes());
                    return;
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    self.count_multibyte(valid);
                    match error.error_len() {
                        Some(broken) => {
                            self.invalid += 1;
                            rest = &after[broken..];
                        }
                        None => {
                            self.carry = after.to_vec();
                            return;
                        }
                    }
                }
            }
        }
    }

    fn count_multibyte(&mut self, valid: &[u8]) {
        self.multibyte += valid.iter().filter(|byte| **byte >= 0xC0).count() as u64;
    }

    /// A character still cut at the end of the input is broken.
    fn finish(&mut self) {
        if !self.carry.is_empty() {
            self.invalid += 1;
            self.carry.clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn evidence(chunks: &[&[u8]]) -> (u64, u64) {
        let mut evidence = Utf8Evidence::default();
        chunks.iter().for_each(|chunk| evidence.scan(chunk));
        evidence.finish();
        (evidence.multibyte, evidence.invalid)
    }

    #[test]
    fn the_delimiter_is_the_most_frequent_in_the_header_line() {
        assert_eq!(
            detect_delimiter(b"to,contact_name,contact_phone\n1;2;3;4;5\n"),
            b','
        );
        assert_eq!(detect_delimiter(b"to;contact_name;contact_phone\r\n"), b';');
        assert_eq!(detect_delimiter(b"to\tcontact_name\tcontact_phone"), b'\t');
        assert_eq!(
            detect_delimiter(b"\"a;b;c\",d,e"),
            b',',
            "quoted delimiters do not count"
        );
        assert_eq!(detect_delimiter(b"to"), b',');
        assert_eq!(detect_delimiter(b""), b',');
    }

    #[test]
    fn utf8_evidence_counts_characters_across_chunk_boundaries() {
        let text = "João, Conceição".as_bytes();
        let (first, second) = text.split_at(3); // inside the two bytes of "ã"
        assert_eq!(evidence(&[first, second]), (3, 0));
    }

    #[test]
    fn windows_1252_bytes_are_broken_utf8() {
        // "João" in Windows-1252: ã is the single byte 0xE3.
        assert_eq!(evidence(&[b"Jo\xe3o, Concei\xe7\xe3o"]), (0, 3));
        assert_eq!(
            evidence(&[b"end\xc3"]),
            (0, 1),
            "a character cut by the end of the file"
        );
    }

    #[test]
    fn windows_1252_decodes_every_byte() {
        assert_eq!(
            TextEncoding::Windows1252.decode(b"Jo\xe3o \x80").unwrap(),
            "João €"
        );
        assert!(TextEncoding::Utf8.decode(b"Jo\xe3o").is_none());
    }

    #[test]
    fn settings_parse_with_their_common_spellings() {
        assert_eq!(
            "UTF8".parse(),
            Ok(EncodingChoice::Fixed(TextEncoding::Utf8))
        );
        assert_eq!(
            "cp1252".parse(),
            Ok(EncodingChoice::Fixed(TextEncoding::Windows1252))
        );
        assert!("ebcdic".parse::<EncodingChoice>().is_err());
        assert_eq!("\t".parse(), Ok(DelimiterChoice::Fixed(b'\t')));
        assert_eq!("tab".parse(), Ok(DelimiterChoice::Fixed(b'\t')));
        assert!("::".parse::<DelimiterChoice>().is_err());
    }
}
