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
        let longest = digits.len().min(LONGEST_PREFIX);
        for length in (1..=longest).rev() {
            let prefix = digits.get(..length).unwrap_or_default();
            if let Ok(found) = PREFIXES.binary_search_by(|(known, _)| (*known).cmp(prefix)) {
                return Zones::Recipient(PREFIXES[found].1);
            }
        }
        Zones::Sender
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

    /// `America/Rio_Branco`, `America/Manaus or America/Porto_Velho`,
    /// `Europe/Moscow or 10 more zones`; `sender` for the sender's.
    pub fn describe(self, sender: &str) -> String {
        let names: Vec<&str> = self.names().collect();
        match names.as_slice() {
            [] => sender.to_string(),
            [one] => one.to_string(),
            [first, second] => format!("{first} or {second}"),
            [first, rest @ ..] => format!("{first} or {} more zones", rest.len()),
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
