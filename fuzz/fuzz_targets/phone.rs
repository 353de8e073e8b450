//! Arbitrary text as a phone number: normalising never panics, and what it
//! gives is always the API's form (8 to 15 digits, no leading 0).
#![no_main]

use libfuzzer_sys::fuzz_target;

use interacto_bulk::campaign::phone::{self, Region};

fuzz_target!(|text: &str| {
    for region in [Region::BR, Region::PT, Region::US] {
        if let Ok(e164) = phone::normalize(text, region).map(|phone| phone.digits) {
            assert!((8..=15).contains(&e164.len()), "{e164}");
            assert!(!e164.starts_with('0'), "{e164}");
            assert!(e164.bytes().all(|byte| byte.is_ascii_digit()), "{e164}");
        }
    }
});
