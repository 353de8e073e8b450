//! A campaign's name in the one form it is kept and compared in: Unicode
//! NFC. `promoção` typed is NFC, while a macOS file name spells it NFD (`c`
//! + U+0327, `a` + U+0303); both print alike, and must be one campaign.

use unicode_normalization::{is_nfc_quick, IsNormalized, UnicodeNormalization};

/// `name` in Unicode NFC, the form every campaign name is kept in.
pub fn in_nfc(name: &str) -> String {
    match is_nfc_quick(name.chars()) {
        IsNormalized::Yes => name.to_string(),
        IsNormalized::No | IsNormalized::Maybe => name.nfc().collect(),
    }
}

/// Whether two campaign names are one: equal in NFC.
pub fn same_name(one: &str, other: &str) -> bool {
    one == other || in_nfc(one) == in_nfc(other)
}
