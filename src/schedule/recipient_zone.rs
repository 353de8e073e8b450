//! A recipient's time zones, from their number: libphonenumber's prefix →
//! zones map (generated into [`super::zone_map`] by `tools/zone_map.py`).
//! The longest prefix of the number that the map knows decides; a prefix
//! may name several zones (the number may be in any of them).

use super::zone_map::{PREFIXES, ZONES};

/// The zones a number (E.164 digits without `+`, as the tool keeps it) may
/// be in; empty when the map knows none of its prefixes.
pub fn zones_of(digits: &str) -> Vec<&'static str> {
    // Prefixes are at most a dozen digits: try the longest first.
    let longest = digits.len().min(12);
    for length in (1..=longest).rev() {
        let prefix = &digits[..length];
        if let Ok(found) = PREFIXES.binary_search_by(|(known, _)| (*known).cmp(prefix)) {
            return PREFIXES[found]
                .1
                .iter()
                .map(|index| ZONES[usize::from(*index)])
                .collect();
        }
    }
    Vec::new()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn brazil_spans_its_zones_by_area_code() {
        assert_eq!(zones_of("5511987654321"), ["America/Sao_Paulo"]);
        assert_eq!(zones_of("5568999887766"), ["America/Rio_Branco"], "Acre");
        assert_eq!(zones_of("5565999887766"), ["America/Manaus"], "Mato Grosso");
        assert_eq!(zones_of("5592999887766"), ["America/Manaus"], "Amazonas");
    }

    #[test]
    fn the_azores_are_an_hour_behind_lisbon() {
        assert_eq!(zones_of("351213456789"), ["Europe/Lisbon"]);
        assert_eq!(zones_of("351296123456"), ["Atlantic/Azores"]);
    }

    #[test]
    fn a_prefix_may_name_several_zones_and_an_unknown_one_none() {
        let brazil = zones_of("55");
        assert!(
            brazil.len() > 1 && brazil.contains(&"America/Sao_Paulo"),
            "{brazil:?}"
        );
        assert!(zones_of("999").is_empty());
        assert!(zones_of("").is_empty());
    }

    #[test]
    fn every_zone_of_the_table_is_one_jiff_knows() {
        for zone in ZONES {
            assert!(jiff::tz::TimeZone::get(zone).is_ok(), "{zone}");
        }
        assert!(
            PREFIXES.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "sorted"
        );
    }
}
