//! Phone numbers to the API's form: E.164 digits without the `+`.
//!
//! The rules are libphonenumber's, through `rlibphonenumber`: a port that
//! matches Google's library on differential fuzzing, and parses a number in
//! well under a microsecond with no lock shared between threads. The one
//! liberty taken is [`plain_brazilian`], a shortcut past the parser for the
//! commonest shapes, shown equal to it by a property test.

use rlibphonenumber::{
    ParseError, PhoneNumber, PhoneNumberFormat, PhoneNumberType, ValidationError, PHONE_NUMBER_UTIL,
};

pub use rlibphonenumber::Region;

use super::{code_point, is_invisible, shown};

/// A number the API can be given, and what the dry-run report tells of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phone {
    /// E.164 without the `+`: `5511987654321`.
    pub digits: String,
    /// The country it belongs to.
    pub country: Region,
    /// A fixed line: it receives WhatsApp only if it runs WhatsApp Business.
    pub landline: bool,
    /// Written with Excel's lossless decimal ending (`5511987654321.0`),
    /// read without it.
    pub excel_decimal: bool,
}

/// Why a phone field cannot be sent to.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PhoneError {
    #[error("is empty")]
    Empty,
    #[error("`{0}` looks like a number in scientific notation (Excel does this): format the column as text and export again")]
    ScientificNotation(String),
    #[error("`{text}` contains {}, which is not part of a phone number", named(*bad))]
    BadCharacter { text: String, bad: char },
    #[error("`{text}` is not a phone number: {reason}")]
    Unparsable {
        text: String,
        kind: &'static str,
        reason: String,
    },
    #[error("`{text}` is {kind} for {region}: {}", hint.clone().unwrap_or_else(|| format!("{digits} digits after the country code, {region} numbers have {expected}")))]
    Length {
        text: String,
        kind: &'static str,
        region: String,
        digits: usize,
        expected: String,
        /// The same in a Brazilian's terms, where the number is Brazilian.
        hint: Option<String>,
    },
    #[error("`{text}` is {digits} digits with its country code; the API takes 8 to 15")]
    OutsideApi { text: String, digits: usize },
    #[error("`{text}` is not a valid {region} number: {}", hint.clone().unwrap_or_else(|| format!("no {region} number starts like this")))]
    NotValid {
        text: String,
        region: String,
        hint: Option<String>,
    },
    #[error("`{text}` is not a valid {region} number; read as international it would be a {country} number (+{digits}), but a foreign number must be written with `+` (or `00`) and its country code")]
    ForeignWithoutPlus {
        text: String,
        region: String,
        country: String,
        digits: String,
    },
    #[error("`{text}` is a {country} number; campaign.countries allows only {allowed}")]
    CountryNotAllowed {
        text: String,
        country: String,
        allowed: String,
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
            PhoneError::ForeignWithoutPlus { .. } => "foreign number without +",
            PhoneError::CountryNotAllowed { .. } => "country not allowed",
            PhoneError::OutsideApi { digits, .. } if *digits < API_DIGITS_LEAST => "too short",
            PhoneError::OutsideApi { .. } => "too long",
        }
    }
}

/// A character in a message: `x` quoted, an invisible one by its code point.
fn named(c: char) -> String {
    match is_invisible(c) {
        true => format!("{} (an invisible character)", code_point(c)),
        false => format!("`{c}`"),
    }
}

/// Normalises a phone as written in a spreadsheet or pasted from WhatsApp.
///
/// Spaces, `-`, en and em dashes, `.`, `(`, `)` and `/` are separators;
/// invisible characters that copying brings along (zero-width spaces,
/// direction marks, the byte-order mark) are dropped. A leading `+` or `00`
/// makes the number international. Digits alone are a national number of
/// `region` (with libphonenumber's national and carrier prefixes), or an
/// international number starting with `region`'s own country code
/// (`5511…` for BR): never another country's, which is how a typo in a
/// Brazilian number would reach a stranger abroad. The number must be valid
/// for its country in libphonenumber's metadata: a Brazilian mobile without
/// its ninth digit, for one, is not.
pub fn normalize(raw: &str, region: Region) -> Result<Phone, PhoneError> {
    normalize_with(raw, region, plain_brazilian)
}

/// The region a two-letter ISO code names, in either case, if libphonenumber
/// knows its numbers (`XX` is two letters, but no country's).
pub fn region_named(code: &str) -> Option<Region> {
    let region: Region = code.trim().to_ascii_uppercase().parse().ok()?;
    PHONE_NUMBER_UTIL
        .get_country_code_for_region(region)
        .map(|_| region)
}

/// Whether a number of this country may be sent to, by `campaign.countries`.
pub fn allowed(phone: &Phone, text: &str, countries: &[Region]) -> Result<(), PhoneError> {
    if countries.is_empty() || countries.contains(&phone.country) {
        return Ok(());
    }
    Err(PhoneError::CountryNotAllowed {
        text: shown(text.trim()).into_owned(),
        country: phone.country.to_string(),
        allowed: countries
            .iter()
            .map(Region::to_string)
            .collect::<Vec<_>>()
            .join(", "),
    })
}

/// [`normalize`], with the shortcut past the parser as a parameter, so a
/// test can take the long way every time.
fn normalize_with(
    raw: &str,
    region: Region,
    shortcut: fn(&str, bool, Region) -> Option<PhoneNumber>,
) -> Result<Phone, PhoneError> {
    let text = raw.trim();
    let (digits, international, excel_decimal) = read_digits(text)?;
    let phone = normalize_digits(digits, international, text, region, shortcut)?;
    Ok(Phone {
        excel_decimal,
        ..phone
    })
}

/// The number the digits make, as [`normalize_with`] reads them.
fn normalize_digits(
    mut digits: String,
    mut international: bool,
    text: &str,
    region: Region,
    shortcut: fn(&str, bool, Region) -> Option<PhoneNumber>,
) -> Result<Phone, PhoneError> {
    if !international {
        if let Some(rest) = digits.strip_prefix("00") {
            digits = rest.to_string();
            international = true;
        }
    }
    if international {
        return match shortcut(&digits, true, region) {
            Some(number) => judged(&number, text),
            None => parse_judged(&format!("+{digits}"), None, text),
        };
    }

    let national = match shortcut(&digits, false, region) {
        Some(number) => judged(&number, text),
        None => parse_judged(&digits, Some(region), text),
    };
    let Err(national) = national else {
        return national;
    };
    // A number shaped like one of the region's own, with a hint how to
    // mend it, is that: `(47) 9876-5432` is a Brazilian mobile without its
    // ninth digit, not Norway's +47.
    if matches!(
        national,
        PhoneError::NotValid { hint: Some(_), .. } | PhoneError::Length { hint: Some(_), .. }
    ) {
        return Err(national);
    }
    // libphonenumber keeps the national reading when both look possible;
    // a number written with the region's own country code is still its own.
    let own_code = PHONE_NUMBER_UTIL.get_country_code_for_region(region);
    match parse_judged(&format!("+{digits}"), None, text) {
        Ok(phone) if own_code.is_some_and(|code| phone.digits.starts_with(&code.to_string())) => {
            Ok(phone)
        }
        Ok(foreign) => Err(PhoneError::ForeignWithoutPlus {
            text: shown(text).into_owned(),
            region: region.to_string(),
            country: foreign.country.to_string(),
            digits: foreign.digits,
        }),
        Err(_) => Err(national),
    }
}

/// The digits of `text`, whether it starts with `+`, and whether it had
/// Excel's decimal ending (dropped); separators and invisible characters
/// dropped, anything else refused.
fn read_digits(text: &str) -> Result<(String, bool, bool), PhoneError> {
    if looks_scientific(text) {
        return Err(PhoneError::ScientificNotation(shown(text).into_owned()));
    }
    let (text, excel_decimal) = match without_excel_decimal(text) {
        Some(whole) => (whole, true),
        None => (text, false),
    };
    let mut digits = String::with_capacity(text.len());
    let mut international = false;
    let mut visible = false;
    for c in text.chars() {
        match c {
            '0'..='9' => digits.push(c),
            '+' if !visible => international = true,
            ' ' | '-' | '\u{2013}' | '\u{2014}' | '.' | '(' | ')' | '/' | '\u{a0}' => {}
            c if is_pasted_invisible(c) => continue,
            bad => {
                return Err(PhoneError::BadCharacter {
                    text: shown(text).into_owned(),
                    bad,
                })
            }
        }
        visible = true;
    }
    if !visible {
        return Err(PhoneError::Empty);
    }
    Ok((digits, international, excel_decimal))
}

/// What copying from WhatsApp Web or a spreadsheet brings along unseen:
/// zero-width spaces and joiners, direction marks and embeddings, the word
/// joiner and the byte-order mark.
fn is_pasted_invisible(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}' | '\u{FEFF}')
}

/// The commonest shapes of a Brazilian number, as libphonenumber's parser
/// would read them, without the parser: `+55` or `55` then 10 or 11
/// digits, a national number of 10 or 11 digits, or one with its trunk
/// prefix `0`. Each is the area code and number as they stand, when
/// nothing in them could be a country code (`55`), trunk or carrier prefix
/// (`0`, `90`) the parser would strip. Anything else takes the parser.
fn plain_brazilian(digits: &str, international: bool, region: Region) -> Option<PhoneNumber> {
    let national = match (international, digits.len()) {
        (true, _) => digits.strip_prefix("55")?,
        _ if region != Region::BR => return None,
        (false, 11 | 12) if digits.starts_with('0') => &digits[1..],
        (false, 12 | 13) => digits.strip_prefix("55")?,
        (false, _) => digits,
    };
    let plain = matches!(national.len(), 10 | 11)
        && !national.starts_with('0')
        && !national.starts_with("55")
        && !national.starts_with("90");
    if !plain {
        return None;
    }
    Some(PhoneNumber {
        country_code: 55,
        national_number: national.parse().ok()?,
        ..PhoneNumber::default()
    })
}

fn parse_judged(number: &str, region: Option<Region>, text: &str) -> Result<Phone, PhoneError> {
    let parsed = PHONE_NUMBER_UTIL
        .parse(number, region)
        .map_err(|error| unparsable(error, number, text))?;
    judged(&parsed, text)
}

/// A parsed number, if libphonenumber knows numbers of its country like it
/// (its type is known) and the API takes its length.
fn judged(number: &PhoneNumber, text: &str) -> Result<Phone, PhoneError> {
    let kind = number.get_type();
    if kind == PhoneNumberType::Unknown {
        return Err(why_not_valid(number, text));
    }
    // E.164 is `+` and digits: the `+` goes, the rest is the API's form.
    let mut digits = number.format_as(PhoneNumberFormat::E164).into_owned();
    if digits.starts_with('+') {
        digits.remove(0);
    }
    // The API takes 8 to 15 digits; a few countries have valid shorter numbers.
    if !(API_DIGITS_LEAST..=API_DIGITS_MOST).contains(&digits.len()) {
        return Err(PhoneError::OutsideApi {
            text: shown(text).into_owned(),
            digits: digits.len(),
        });
    }
    let country = number
        .get_region_code()
        .or_else(|| PHONE_NUMBER_UTIL.get_region_for_country_code(number.country_code))
        .unwrap_or(Region::ZZ);
    Ok(Phone {
        digits,
        country,
        landline: kind == PhoneNumberType::FixedLine,
        excel_decimal: false,
    })
}

/// How many digits the API takes in `to` and `contact.phone` (`^[1-9][0-9]{7,14}$`).
const API_DIGITS_LEAST: usize = 8;
const API_DIGITS_MOST: usize = 15;

/// The parser's refusal in this tool's words.
fn unparsable(error: ParseError, number: &str, text: &str) -> PhoneError {
    let digits = number.bytes().filter(u8::is_ascii_digit).count();
    let (kind, reason) = match error {
        ParseError::TooShortAfterIdd => (
            "too short",
            "too short after the international prefix".to_string(),
        ),
        ParseError::TooShortNsn => (
            "too short",
            format!("{digits} digits is too short for any phone number"),
        ),
        ParseError::TooLongNsn => (
            "too long",
            format!("{digits} digits is too long for any phone number (two numbers in one cell?)"),
        ),
        ParseError::InvalidCountryCode => (
            "unknown country code",
            "no country has the code it starts with".to_string(),
        ),
        ParseError::NotANumber(_) => ("not a phone number", "it has no number to read".to_string()),
    };
    PhoneError::Unparsable {
        text: shown(text).into_owned(),
        kind,
        reason,
    }
}

/// Says what is wrong with a well-formed number libphonenumber does not accept:
/// its length for the country, or a start no number of that country has.
fn why_not_valid(parsed: &PhoneNumber, text: &str) -> PhoneError {
    let main_region = PHONE_NUMBER_UTIL.get_region_for_country_code(parsed.country_code);
    let Some(region) = main_region else {
        return unparsable(ParseError::InvalidCountryCode, "", text);
    };
    let national = parsed.get_national_significant_number();
    let kind = match parsed.is_possible_with_reason() {
        Ok(_) => None,
        Err(ValidationError::TooShort) => Some("too short"),
        Err(ValidationError::TooLong) => Some("too long"),
        Err(ValidationError::InvalidLength) => Some("of the wrong length"),
        Err(ValidationError::InvalidCountryCode) => {
            return unparsable(ParseError::InvalidCountryCode, "", text)
        }
    };
    let region_name = region.to_string();
    let hint = (region == Region::BR)
        .then(|| brazilian_hint(&national))
        .flatten();
    if let Some(kind) = kind {
        return PhoneError::Length {
            text: shown(text).into_owned(),
            kind,
            region: region_name,
            digits: national.len(),
            expected: spoken_list(&possible_lengths(parsed.country_code)),
            hint,
        };
    }
    PhoneError::NotValid {
        text: shown(text).into_owned(),
        region: region_name,
        hint,
    }
}

/// What is wrong with a Brazilian number (area code, then the number), in
/// the terms of someone who writes them: a mobile has nine digits after
/// the area code, starting with 9 (until 2016 it had eight, and old lists
/// still have them); a landline has eight, starting with 2 to 5.
fn brazilian_hint(national: &str) -> Option<String> {
    let after = national.len().checked_sub(2).filter(|after| *after > 0)?;
    let area = &national[..2];
    if !(area.starts_with(|c: char| ('1'..='9').contains(&c))
        && area.ends_with(|c: char| ('1'..='9').contains(&c)))
    {
        return None;
    }
    let first = national.as_bytes()[2];
    let short = |have: usize, want: usize, what: &str| {
        let missing = want - have;
        let digits = counted_digits(missing);
        format!("{digits} short: BR {what} have {want} digits after the area code ({area}), this has {have}")
    };
    match (first, after) {
        (b'6'..=b'9', 8) => Some(format!(
            "an old 8-digit mobile: BR mobiles have 9 digits after the area code, starting \
             with 9 (add the 9: ({area}) 9{}-{})",
            &national[2..6],
            &national[6..]
        )),
        (b'9', 1..=7) => Some(short(after, 9, "mobiles")),
        (b'2'..=b'5', 1..=7) => Some(short(after, 8, "landlines")),
        (b'9', 10..) => Some(format!(
            "{} too many: BR mobiles have 9 digits after the area code ({area}), this has {after}",
            counted_digits(after - 9)
        )),
        _ => None,
    }
}

/// `one digit`, `two digits`, `5 digits`.
fn counted_digits(n: usize) -> String {
    match n {
        1 => "one digit".to_string(),
        2 => "two digits".to_string(),
        3 => "three digits".to_string(),
        n => format!("{n} digits"),
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

/// `5511987654321.0`, `11987654321,00`: a phone column Excel kept as a
/// number and wrote with decimals, which lose nothing: the number is the
/// whole part (read as digits, the zeros would become part of it).
fn without_excel_decimal(text: &str) -> Option<&str> {
    let (whole, decimals) = text.rsplit_once(['.', ','])?;
    let lossless = whole.len() >= API_DIGITS_LEAST
        && whole.bytes().all(|b| b.is_ascii_digit())
        && !decimals.is_empty()
        && decimals.bytes().all(|b| b == b'0');
    lossless.then_some(whole)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn br(raw: &str) -> Result<String, PhoneError> {
        digits(raw, Region::BR)
    }

    fn digits(raw: &str, region: Region) -> Result<String, PhoneError> {
        normalize(raw, region).map(|phone| phone.digits)
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
            digits("(650) 253-0000", Region::US).as_deref(),
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
            error.to_string().contains("9 digits after the area code"),
            "{error}"
        );
        assert_eq!(br("(11) 98765-4321").as_deref(), Ok("5511987654321"));
    }

    #[test]
    fn brazilian_numbers_get_hints_in_brazilian_terms() {
        for (raw, hint) in [
            ("(31) 9876-543", "two digits short: BR mobiles have 9 digits after the area code (31), this has 7"),
            ("(21) 3234-5", "three digits short: BR landlines have 8 digits after the area code (21), this has 5"),
            ("(47) 9876-5432", "an old 8-digit mobile: BR mobiles have 9 digits after the area code, starting with 9 (add the 9: (47) 99876-5432)"),
            ("(48) 8765-4321", "add the 9: (48) 98765-4321"),
            ("(11) 8765-4321", "add the 9: (11) 98765-4321"),
            ("(11) 98765-43210", "one digit too many: BR mobiles have 9 digits"),
        ] {
            let error = br(raw).unwrap_err().to_string();
            assert!(error.contains(hint), "{raw}: {error}");
            assert!(!error.contains("read as international"), "{raw}: {error}");
        }
    }

    #[test]
    fn a_wrong_length_names_the_lengths_of_the_country() {
        let error = br("(21) 1234-5").unwrap_err();
        assert!(
            error.to_string().contains("BR numbers have 8, 9, 10 or 11"),
            "{error}"
        );
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
                digits(raw, region).as_deref(),
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

    #[test]
    fn digits_alone_are_never_another_countrys_number() {
        // Shaped like Brazilian numbers (area codes that are also country
        // codes): refused with the Brazilian hint.
        for (typo, hint) in [
            ("(47) 9876-5432", "add the 9: (47) 99876-5432"),
            ("(45) 9876-5432", "add the 9"),
            ("(65) 9876-5432", "add the 9"),
            ("(49) 98765-432", "add the 9"),
            ("(91) 98765-43210", "one digit too many"),
        ] {
            let error = br(typo).unwrap_err();
            assert_ne!(error.kind(), "foreign number without +", "{typo}: {error}");
            assert!(error.to_string().contains(hint), "{typo}: {error}");
        }
        // Not shaped like one (no area code starts with 0): foreign.
        let error = br("20966381017").unwrap_err();
        assert_eq!(error.kind(), "foreign number without +", "{error}");
        assert!(error.to_string().contains("a EG number"), "{error}");
        assert!(error.to_string().contains("with `+`"), "{error}");
        // Written as foreign, they are foreign.
        assert_eq!(br("+47 98765432").as_deref(), Ok("4798765432"));
        assert_eq!(br("0047 98765432").as_deref(), Ok("4798765432"));
        // The region's own country code without `+` is still its own.
        assert_eq!(br("55 21 3222 1234").as_deref(), Ok("552132221234"));
    }

    #[test]
    fn what_copying_brings_along_is_dropped() {
        for pasted in [
            "\u{200e}+55 11 98765-4321\u{200f}",
            "\u{feff}(11) 98765\u{2013}4321",
            "11\u{200b}98765\u{2014}4321",
            "\u{202a}+55\u{a0}11\u{2060}98765-4321\u{202c}",
        ] {
            assert_eq!(br(pasted).as_deref(), Ok("5511987654321"), "{pasted:?}");
        }
        assert_eq!(br("\u{200b}\u{feff}"), Err(PhoneError::Empty));
        let error = br("11\u{2066}98765-4321").unwrap_err().to_string();
        assert!(error.contains("U+2066 (an invisible character)"), "{error}");
        assert!(error.contains("`11<U+2066>98765-4321`"), "{error}");
        assert!(!error.contains('\u{2066}'), "{error}");
    }

    #[test]
    fn excel_decimals_are_read_as_the_number_and_no_message_uses_the_librarys_words() {
        for decimal in ["5511987654321.0", "11987654321,00"] {
            let phone = normalize(decimal, Region::BR).unwrap();
            assert_eq!(phone.digits, "5511987654321", "{decimal}");
            assert!(phone.excel_decimal, "{decimal}");
        }
        assert!(
            !normalize("5511987654321", Region::BR)
                .unwrap()
                .excel_decimal
        );
        // Not lossless: not Excel's ending, and not a phone.
        assert!(br("5511987654321.5").is_err());
        // Two numbers in one cell.
        let error = br("11 98765-4321 / 11 91234-5678").unwrap_err().to_string();
        assert!(error.contains("two numbers in one cell"), "{error}");
        for text in [
            "11 98765-4321 / 11 91234-5678",
            "1",
            "+",
            "+999 1234 5678",
            "+55",
        ] {
            let error = br(text).unwrap_err().to_string();
            for library in ["nsn", "Nsn", "NotANumber", "Idd"] {
                assert!(!error.contains(library), "{text}: {error}");
            }
        }
    }

    #[test]
    fn a_number_tells_its_country_and_whether_it_is_a_landline() {
        let landline = normalize("(21) 3222-1234", Region::BR).unwrap();
        assert_eq!((landline.country, landline.landline), (Region::BR, true));
        let mobile = normalize("(21) 99876-5432", Region::BR).unwrap();
        assert_eq!((mobile.country, mobile.landline), (Region::BR, false));
        let portuguese = normalize("+351 912 345 678", Region::BR).unwrap();
        assert_eq!(portuguese.country, Region::PT);
        let american = normalize("+1 212 555 0123", Region::BR).unwrap();
        assert_eq!(american.country, Region::US);
        assert!(allowed(&portuguese, "+351 912 345 678", &[Region::BR, Region::PT]).is_ok());
        let error = allowed(&american, "+1 212 555 0123", &[Region::BR, Region::PT]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "`+1 212 555 0123` is a US number; campaign.countries allows only BR, PT"
        );
        assert!(allowed(&american, "", &[]).is_ok());
    }

    /// The long way every time.
    fn no_shortcut(_: &str, _: bool, _: Region) -> Option<PhoneNumber> {
        None
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(30_000))]

        /// Numbers in and around the shortcut's shapes, as digits or written
        /// with `+` or `00`, in its region and another.
        #[test]
        fn the_shortcut_gives_exactly_the_parsers_answer(
            prefix in "|\\+|00",
            digits in "[1-9][0-9]{9,10}|[0-9]{1,17}|(55|90|0|055|550|5590)[0-9]{7,11}",
            region in proptest::sample::select(vec![Region::BR, Region::PT]),
        ) {
            let text = format!("{prefix}{digits}");
            proptest::prop_assert_eq!(
                normalize_with(&text, region, plain_brazilian),
                normalize_with(&text, region, no_shortcut)
            );
        }

        #[test]
        fn a_known_type_is_exactly_a_valid_number(digits in "[0-9]{4,16}") {
            for region in [Region::BR, Region::US, Region::PT, Region::DE] {
                if let Ok(number) = PHONE_NUMBER_UTIL.parse(&digits, Some(region)) {
                    proptest::prop_assert_eq!(
                        number.get_type() != PhoneNumberType::Unknown,
                        number.is_valid()
                    );
                }
            }
        }
    }
}
