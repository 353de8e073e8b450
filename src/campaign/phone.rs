//! Phone numbers to the API's form: E.164 digits without the `+`.
//!
//! The rules are libphonenumber's, through `rlibphonenumber`: a port that
//! matches Google's library on differential fuzzing, and parses a number in
//! well under a microsecond with no lock shared between threads.

use rlibphonenumber::{
    ParseError, PhoneNumber, PhoneNumberFormat, ValidationError, PHONE_NUMBER_UTIL,
};

pub use rlibphonenumber::Region;

use super::shown;

/// Why a phone field cannot be sent to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("is empty")]
    Empty,
    #[error("`{0}` looks like a number in scientific notation (Excel does this): format the column as text and export again")]
    ScientificNotation(String),
    #[error("`{text}` contains `{bad}`, which is not part of a phone number")]
    BadCharacter { text: String, bad: char },
    #[error("`{text}` is not a phone number: {reason}")]
    Unparsable {
        text: String,
        kind: &'static str,
        reason: String,
    },
    #[error("`{text}` is {kind} for {region}: {digits} digits after the country code, {region} numbers have {expected}")]
    Length {
        text: String,
        kind: &'static str,
        region: String,
        digits: usize,
        expected: String,
    },
    #[error("`{text}` is {digits} digits with its country code; the API takes 8 to 15")]
    OutsideApi { text: String, digits: usize },
    #[error("`{text}` is not a valid {region} number: no {region} number starts like this{}", hint.map(|hint| format!(" ({hint})")).unwrap_or_default())]
    NotValid {
        text: String,
        region: String,
        hint: Option<&'static str>,
    },
}

impl PhoneError {
    /// The same words for every row with this kind of problem, for the dry-run report.
    pub fn kind(&self) -> &'static str {
        match self {
            PhoneError::Empty => "empty",
            PhoneError::ScientificNotation(_) => "scientific notation",
            PhoneError::BadCharacter { .. } => "not a phone number",
            PhoneError::Unparsable { kind, .. } | PhoneError::Length { kind, .. } => kind,
            PhoneError::NotValid { .. } => "not a valid number for its country",
            PhoneError::OutsideApi { digits, .. } if *digits < API_DIGITS_LEAST => "too short",
            PhoneError::OutsideApi { .. } => "too long",
        }
    }
}

/// Normalises a phone as written in a spreadsheet.
///
/// Spaces, `-`, `.`, `(`, `)` and `/` are dropped; a leading `+` or `00` makes
/// it international. Digits alone are first read as a national number of
/// `region` (with libphonenumber's national and carrier prefixes), then, if
/// that is not valid, as an international number written without its `+`
/// (the API's own form, `5511999999999`). The number must be valid for its
/// country in libphonenumber's metadata: a Brazilian mobile without its
/// ninth digit, for one, is not.
pub fn normalize(raw: &str, region: Region) -> Result<String, PhoneError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(PhoneError::Empty);
    }
    if looks_scientific(text) {
        return Err(PhoneError::ScientificNotation(shown(text).into_owned()));
    }
    let mut digits = String::with_capacity(text.len());
    let mut international = false;
    for (index, c) in text.char_indices() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if index == 0 => international = true,
            ' ' | '-' | '.' | '(' | ')' | '/' | '\u{a0}' => {}
            bad => {
                return Err(PhoneError::BadCharacter {
                    text: shown(text).into_owned(),
                    bad,
                })
            }
        }
    }
    if !international {
        if let Some(rest) = digits.strip_prefix("00") {
            digits = rest.to_string();
            international = true;
        }
    }

    if international {
        return parse_valid(&format!("+{digits}"), None, text);
    }
    match parse_valid(&digits, Some(region), text) {
        Ok(e164) => Ok(e164),
        Err(national) => parse_valid(&format!("+{digits}"), None, text).map_err(|_| national),
    }
}

fn parse_valid(number: &str, region: Option<Region>, text: &str) -> Result<String, PhoneError> {
    let parsed = PHONE_NUMBER_UTIL
        .parse(number, region)
        .map_err(|error| unparsable(error, text))?;
    if !parsed.is_valid() {
        return Err(why_not_valid(&parsed, text));
    }
    let e164 = parsed.format_as(PhoneNumberFormat::E164);
    let digits = e164.trim_start_matches('+');
    // The API takes 8 to 15 digits; a few countries have valid shorter numbers.
    if !(API_DIGITS_LEAST..=API_DIGITS_MOST).contains(&digits.len()) {
        return Err(PhoneError::OutsideApi {
            text: shown(text).into_owned(),
            digits: digits.len(),
        });
    }
    Ok(digits.to_string())
}

/// How many digits the API takes in `to` and `contact.phone` (`^[1-9][0-9]{7,14}$`).
const API_DIGITS_LEAST: usize = 8;
const API_DIGITS_MOST: usize = 15;

fn unparsable(error: ParseError, text: &str) -> PhoneError {
    let kind = match error {
        ParseError::TooShortAfterIdd | ParseError::TooShortNsn => "too short",
        ParseError::TooLongNsn => "too long",
        ParseError::InvalidCountryCode => "unknown country code",
        ParseError::NotANumber(_) => "not a phone number",
    };
    PhoneError::Unparsable {
        text: shown(text).into_owned(),
        kind,
        reason: error.to_string(),
    }
}

/// Says what is wrong with a well-formed number libphonenumber does not accept:
/// its length for the country, or a start no number of that country has.
fn why_not_valid(parsed: &PhoneNumber, text: &str) -> PhoneError {
    let main_region = PHONE_NUMBER_UTIL.get_region_for_country_code(parsed.country_code);
    let Some(region) = main_region else {
        return unparsable(ParseError::InvalidCountryCode, text);
    };
    let national = parsed.get_national_significant_number();
    let kind = match parsed.is_possible_with_reason() {
        Ok(_) => None,
        Err(ValidationError::TooShort) => Some("too short"),
        Err(ValidationError::TooLong) => Some("too long"),
        Err(ValidationError::InvalidLength) => Some("of the wrong length"),
        Err(ValidationError::InvalidCountryCode) => {
            return unparsable(ParseError::InvalidCountryCode, text)
        }
    };
    let region_name = region.to_string();
    if let Some(kind) = kind {
        return PhoneError::Length {
            text: shown(text).into_owned(),
            kind,
            region: region_name,
            digits: national.len(),
            expected: spoken_list(&possible_lengths(parsed.country_code)),
        };
    }
    // Before 2016 Brazilian mobiles had eight digits; the old form is still common in old lists.
    let hint = (region == Region::BR
        && national.len() == 10
        && matches!(national.as_bytes()[2], b'6'..=b'9'))
    .then_some("Brazilian mobiles have nine digits after the area code, starting with 9");
    PhoneError::NotValid {
        text: shown(text).into_owned(),
        region: region_name,
        hint,
    }
}

/// The national lengths libphonenumber deems possible for a country code,
/// found by asking about one number of each length (its metadata is not public).
fn possible_lengths(country_code: i32) -> Vec<usize> {
    (1..=17)
        .filter(|&length| {
            let probe = PhoneNumber {
                country_code,
                national_number: 10u64.pow(length - 1),
                ..PhoneNumber::default()
            };
            probe.is_possible_with_reason().is_ok()
        })
        .map(|length| length as usize)
        .collect()
}

/// `[10, 11]` as `10 or 11`.
fn spoken_list(lengths: &[usize]) -> String {
    let mut words: Vec<String> = lengths.iter().map(usize::to_string).collect();
    match words.pop() {
        None => "no fixed length".to_string(),
        Some(last) if words.is_empty() => last,
        Some(last) => format!("{} or {last}", words.join(", ")),
    }
}

/// `5.511999999999E+12`, `5,51E+12`: what Excel shows for a long number in a general cell.
fn looks_scientific(text: &str) -> bool {
    let Some((mantissa, exponent)) = text.split_once(['e', 'E']) else {
        return false;
    };
    let exponent = exponent.strip_prefix('+').unwrap_or(exponent);
    !mantissa.is_empty()
        && mantissa
            .chars()
            .all(|c| c.is_ascii_digit() || c == '.' || c == ',')
        && !exponent.is_empty()
        && exponent.chars().all(|c| c.is_ascii_digit())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br(raw: &str) -> Result<String, PhoneError> {
        normalize(raw, Region::BR)
    }

    #[test]
    fn brazilian_numbers_in_common_spreadsheet_forms() {
        for raw in [
            "5511999999999",
            "+55 11 99999-9999",
            "(11) 99999-9999",
            "11 99999.9999",
            "0055 11 999999999",
            " 11999999999 ",
        ] {
            assert_eq!(br(raw).as_deref(), Ok("5511999999999"), "{raw}");
        }
    }

    #[test]
    fn a_landline_keeps_its_eight_digits() {
        assert_eq!(br("(21) 3222-1234").as_deref(), Ok("552132221234"));
    }

    #[test]
    fn numbers_of_other_countries_with_their_prefix() {
        assert_eq!(br("+1 650 253 0000").as_deref(), Ok("16502530000"));
        assert_eq!(br("+44 20 7946 0958").as_deref(), Ok("442079460958"));
        assert_eq!(br("00351 912 345 678").as_deref(), Ok("351912345678"));
    }

    #[test]
    fn a_valid_number_shorter_than_the_api_takes_is_refused() {
        // Found by the fuzzer: 7 digits, valid for Austria, too short for the API.
        assert!(normalize("((-43- 5      98(0-4", Region::US).is_err());
        let error = br("+43 59804").unwrap_err();
        assert!(
            matches!(error, PhoneError::OutsideApi { digits: 7, .. }),
            "{error}"
        );
        assert_eq!(error.kind(), "too short");
    }

    #[test]
    fn the_default_region_applies_to_national_numbers() {
        assert_eq!(
            normalize("(650) 253-0000", Region::US).as_deref(),
            Ok("16502530000")
        );
    }

    #[test]
    fn scientific_notation_gets_a_hint() {
        let error = br("5.511999999999E+12").unwrap_err();
        assert!(matches!(error, PhoneError::ScientificNotation(_)));
        assert!(error.to_string().contains("format the column as text"));
    }

    #[test]
    fn rubbish_is_rejected_with_the_reason() {
        assert_eq!(br(""), Err(PhoneError::Empty));
        assert!(matches!(
            br("11 9999x9999"),
            Err(PhoneError::BadCharacter { bad: 'x', .. })
        ));
        assert!(matches!(
            br("+55 11 1234"),
            Err(PhoneError::Length {
                kind: "too short",
                ..
            })
        ));
        assert!(matches!(
            br("+999 1234 5678"),
            Err(PhoneError::Unparsable {
                kind: "unknown country code",
                ..
            })
        ));
    }

    #[test]
    fn a_brazilian_mobile_without_its_ninth_digit_is_refused_with_a_hint() {
        let error = br("(11) 8765-4321").unwrap_err();
        assert_eq!(error.kind(), "not a valid number for its country");
        assert!(
            error
                .to_string()
                .contains("nine digits after the area code"),
            "{error}"
        );
        assert_eq!(br("(11) 98765-4321").as_deref(), Ok("5511987654321"));
    }

    #[test]
    fn a_wrong_length_names_the_lengths_of_the_country() {
        let error = br("(21) 1234-5").unwrap_err();
        assert!(
            error.to_string().contains("BR numbers have 8, 9, 10 or 11"),
            "{error}"
        );
        assert_eq!(error.kind(), "too short");
        let error = br("+55 11 98765 43210 1").unwrap_err();
        assert_eq!(error.kind(), "too long");
    }

    #[test]
    fn national_and_carrier_prefixes_are_dropped_as_libphonenumber_does() {
        assert_eq!(br("011 98765-4321").as_deref(), Ok("5511987654321"));
        assert_eq!(br("0 15 11 98765-4321").as_deref(), Ok("5511987654321"));
    }

    #[test]
    fn real_numbers_from_several_countries() {
        for (raw, region, e164) in [
            ("+54 9 11 2345-6789", Region::AR, "5491123456789"),
            ("030 901820", Region::DE, "4930901820"),
            ("+49 30 901820", Region::BR, "4930901820"),
            ("912 345 678", Region::PT, "351912345678"),
            ("+91 98765 43210", Region::BR, "919876543210"),
            ("07400 123456", Region::GB, "447400123456"),
            ("55 1234 5678", Region::MX, "525512345678"),
            ("+1 (212) 555-0123", Region::BR, "12125550123"),
        ] {
            assert_eq!(
                normalize(raw, region).as_deref(),
                Ok(e164),
                "{raw} in {region:?}"
            );
        }
    }

    #[test]
    fn a_number_valid_elsewhere_is_not_valid_for_the_wrong_country() {
        // A German landline written nationally, read as Brazilian.
        assert!(br("030 901820").is_err());
    }
}
