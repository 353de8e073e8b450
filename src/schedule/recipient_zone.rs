//! A recipient's time zones, from their number: libphonenumber's prefix →
//! zones map (generated into [`super::zone_map`] by `tools/zone_map.py`).
//! The longest prefix of the number that the map knows decides; a prefix
//! may name several zones (the number may be in any of them).

use std::sync::OnceLock;

use jiff::tz::TimeZone;

use super::zone_map::{LONGEST_PREFIX, PREFIXES, ZONES};

/// The zones a recipient's send window is read in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Zones {
    /// The sender's (`schedule.timezone`): the window is read there, or
    /// the table knows no zone for the number.
    Sender,
    /// The zones the table gives the number's prefix, as indexes into it:
    /// the recipient may be in any of them.
    Recipient(&'static [u16]),
}

impl Zones {
    /// The zones a number (E.164 digits without `+`, as the tool keeps it)
    /// may be in: the sender's when the table knows none of its prefixes.
    pub fn of(digits: &str) -> Zones {
        // The table is sorted, so the prefixes that begin with the digits
        // read so far are together, and the one that is those digits alone
        // comes first: narrow them a digit at a time (a byte compared,
        // not a string), keeping the longest that is a prefix.
        let mut beginning = PREFIXES;
        let mut found = Zones::Sender;
        for (at, digit) in digits.bytes().enumerate().take(LONGEST_PREFIX) {
            let before = |(prefix, _): &(&str, &[u16])| {
                prefix.as_bytes().get(at).is_none_or(|next| *next < digit)
            };
            let up_to = |(prefix, _): &(&str, &[u16])| {
                prefix.as_bytes().get(at).is_none_or(|next| *next <= digit)
            };
            beginning =
                &beginning[beginning.partition_point(before)..beginning.partition_point(up_to)];
            match beginning.first() {
                None => break,
                Some((prefix, zones)) if prefix.len() == at + 1 => found = Zones::Recipient(zones),
                Some(_) => {}
            }
        }
        found
    }

    /// Their IANA names; none for the sender's.
    pub fn names(self) -> impl Iterator<Item = &'static str> {
        let indexes = match self {
            Zones::Sender => &[][..],
            Zones::Recipient(indexes) => indexes,
        };
        indexes.iter().map(|index| ZONES[usize::from(*index)])
    }

    /// The zones themselves; `sender` for the sender's.
    pub(super) fn time_zones(self, sender: &TimeZone) -> Vec<TimeZone> {
        let Zones::Recipient(indexes) = self else {
            return vec![sender.clone()];
        };
        let zones: Vec<TimeZone> = indexes.iter().filter_map(|index| zone(*index)).collect();
        match zones.is_empty() {
            // Every zone of the table is one jiff knows (a test says so).
            true => vec![sender.clone()],
            false => zones,
        }
    }

    /// `America/Rio_Branco`, `Atlantic/Azores or Europe/Lisbon`: every zone
    /// (two sets never read alike); `sender` for the sender's.
    pub fn describe(self, sender: &str) -> String {
        match self {
            Zones::Sender => sender.to_string(),
            Zones::Recipient(_) => self.names().collect::<Vec<_>>().join(" or "),
        }
    }
}

/// The zone at `index` in the table, loaded once.
fn zone(index: u16) -> Option<TimeZone> {
    static LOADED: [OnceLock<Option<TimeZone>>; ZONES.len()] =
        [const { OnceLock::new() }; ZONES.len()];
    let index = usize::from(index);
    LOADED
        .get(index)?
        .get_or_init(|| TimeZone::get(ZONES[index]).ok())
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones_of(digits: &str) -> Vec<&'static str> {
        Zones::of(digits).names().collect()
    }

    #[test]
    fn brazil_spans_its_zones_by_area_code() {
        assert_eq!(zones_of("5511987654321"), ["America/Sao_Paulo"]);
        assert_eq!(zones_of("5568999887766"), ["America/Rio_Branco"], "Acre");
        assert_eq!(zones_of("5565999887766"), ["America/Manaus"], "Mato Grosso");
        assert_eq!(zones_of("5592999887766"), ["America/Manaus"], "Amazonas");
    }

    #[test]
    fn the_maps_errors_on_the_early_side_are_corrected() {
        // Recife shares Fernando de Noronha's area code: the window must be
        // open in both, not Noronha's alone (an hour early in Recife).
        assert_eq!(
            zones_of("5581987654321"),
            ["America/Noronha", "America/Recife"]
        );
        assert_eq!(
            zones_of("558132345678"),
            ["America/Noronha", "America/Recife"]
        );
        // Pará is UTC-3 throughout; western Amazonas partly UTC-5.
        assert_eq!(zones_of("5593987654321"), ["America/Santarem"]);
        assert_eq!(zones_of("5594987654321"), ["America/Belem"]);
        assert_eq!(
            zones_of("5597987654321"),
            ["America/Eirunepe", "America/Manaus"]
        );
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
        assert_eq!(Zones::of("999"), Zones::Sender);
        assert_eq!(Zones::of(""), Zones::Sender);
        assert_eq!(Zones::of("999").describe("UTC"), "UTC");
        assert!(
            Zones::of("55").describe("UTC").starts_with("America/"),
            "{}",
            Zones::of("55").describe("UTC")
        );
    }

    #[test]
    fn the_longest_prefix_the_table_knows_decides() {
        // Every prefix of the table finds itself, and a number longer than
        // it finds it unless a longer prefix of the number is there too.
        for (prefix, zones) in PREFIXES {
            assert_eq!(Zones::of(prefix), Zones::Recipient(zones), "{prefix}");
            let longer = format!("{prefix}0000000000");
            let longest = (prefix.len()..=LONGEST_PREFIX)
                .rev()
                .find_map(|length| {
                    PREFIXES
                        .iter()
                        .find(|(known, _)| *known == &longer[..length])
                })
                .unwrap();
            assert_eq!(Zones::of(&longer), Zones::Recipient(longest.1), "{longer}");
        }
    }

    #[test]
    fn every_zone_of_the_table_is_one_jiff_knows() {
        for (index, name) in ZONES.iter().enumerate() {
            let index = u16::try_from(index).unwrap();
            assert!(zone(index).is_some(), "{name}");
        }
        assert!(
            PREFIXES.windows(2).all(|pair| pair[0].0 < pair[1].0),
            "sorted"
        );
        assert!(PREFIXES
            .iter()
            .all(|(prefix, _)| prefix.len() <= LONGEST_PREFIX));
    }
}
