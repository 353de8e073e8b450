//! Phone numbers to the API's form: E.164 digits without the `+`.

use phonenumber::{country, Mode};

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
    Unparsable { text: String, reason: String },
    #[error("`{text}` is not a valid number for {region}")]
    NotValid { text: String, region: String },
}

/// Normalises a phone as written in a spreadsheet.
///
/// Spaces, `-`, `.`, `(`, `)` and `/` are dropped; a leading `+` or `00` makes
/// it international. Digits alone are first read as a national number of
/// `region`, then, if that is not valid, as an international number written
/// without its `+` (the API's own form, `5511999999999`).
pub fn normalize(raw: &str, region: country::Id) -> Result<String, PhoneError> {
    let text = raw.trim();
    if text.is_empty() {
        return Err(PhoneError::Empty);
    }
    if looks_scientific(text) {
        return Err(PhoneError::ScientificNotation(text.to_string()));
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
                    text: text.to_string(),
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
        return parse_valid(&format!("+{digits}"), None)
            .map_err(|reason| reason.for_text(text, "its country"));
    }
    match parse_valid(&digits, Some(region)) {
        Ok(e164) => Ok(e164),
        Err(national) => parse_valid(&format!("+{digits}"), None)
            .map_err(|_| national.for_text(text, region.as_ref())),
    }
}

enum Rejection {
    Unparsable(String),
    NotValid,
}

impl Rejection {
    fn for_text(self, text: &str, region: &str) -> PhoneError {
        match self {
            Rejection::Unparsable(reason) => PhoneError::Unparsable {
                text: text.to_string(),
                reason,
            },
            Rejection::NotValid => PhoneError::NotValid {
                text: text.to_string(),
                region: region.to_string(),
            },
        }
    }
}

fn parse_valid(number: &str, region: Option<country::Id>) -> Result<String, Rejection> {
    let parsed = phonenumber::parse(region, number)
        .map_err(|error| Rejection::Unparsable(error.to_string()))?;
    if !phonenumber::is_valid(&parsed) {
        return Err(Rejection::NotValid);
    }
    let e164 = parsed.format().mode(Mode::E164).to_string();
    Ok(e164.trim_start_matches('+').to_string())
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
        normalize(raw, country::Id::BR)
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
    fn the_default_region_applies_to_national_numbers() {
        assert_eq!(
            normalize("(650) 253-0000", country::Id::US).as_deref(),
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
            br("12345"),
            Err(PhoneError::NotValid { .. } | PhoneError::Unparsable { .. })
        ));
        assert!(matches!(
            br("+55 11 1234"),
            Err(PhoneError::NotValid { .. } | PhoneError::Unparsable { .. })
        ));
    }
}
