//! A campaign's name: what its memory in the ledger goes by, so that every
//! run of it — whatever its results file, on whatever machine — knows what
//! the others sent. `campaign.name` or `--campaign` sets it; otherwise it is
//! the campaign file's name without its extension. Every name is kept in
//! Unicode NFC, however it came.

use super::Source;
use crate::types::in_nfc;

/// The longest name taken; a name is a label, not a document.
const LONGEST: usize = 200;

/// The campaign's name: the one set, else the file's stem. Standard input
/// has no file name, so it needs one set.
pub fn name_of(set: Option<&str>, source: &Source) -> Result<Named, String> {
    if let Some(name) = set {
        return Ok(Named {
            name: in_nfc(name.trim()),
            from_file: false,
        });
    }
    let stem = match source {
        Source::Stdin => None,
        Source::File(path) => path
            .file_stem()
            .map(|stem| in_nfc(stem.to_string_lossy().trim())),
    };
    match stem.filter(|stem| !stem.is_empty()) {
        Some(name) => Ok(Named {
            name,
            from_file: true,
        }),
        None => Err(
            "a campaign read from standard input needs a name, which its memory in the ledger \
             goes by (what each run sent, so that no run sends it again): give one with \
             --campaign NAME or campaign.name"
                .to_string(),
        ),
    }
}

/// A campaign's name, and whether it came from the file's name.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub from_file: bool,
}

impl Named {
    /// Whether a name taken from the file ends in a date (`leads-2026-11-30`,
    /// `export_20261130`): a dated export gets a new name every night,
    /// which would make every night a new campaign.
    pub fn looks_dated(&self) -> bool {
        self.from_file && ends_in_a_date(&self.name)
    }
}

/// A name set by `campaign.name` or `--campaign`, checked.
pub fn check_name(name: &str) -> Result<(), String> {
    let name = name.trim();
    if name.is_empty() {
        return Err("the campaign's name is empty".to_string());
    }
    if name.chars().count() > LONGEST {
        return Err(format!(
            "the campaign's name is longer than {LONGEST} characters"
        ));
    }
    if let Some(control) = name.chars().find(|c| c.is_control()) {
        return Err(format!(
            "the campaign's name holds a control character (U+{:04X})",
            u32::from(control)
        ));
    }
    Ok(())
}

/// Whether `name` ends in a date: its trailing digits and separators read
/// as year, month and day (either way round), or year and month, with a
/// year of this century.
fn ends_in_a_date(name: &str) -> bool {
    let kept = name.trim_end_matches(|c: char| c.is_ascii_digit() || "-_. ".contains(c));
    let groups: Vec<&str> = name[kept.len()..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|group| !group.is_empty())
        .collect();
    let year = |group: &str| group.len() == 4 && group.starts_with("20");
    let short = |group: &str| (1..=2).contains(&group.len());
    match groups.as_slice() {
        [.., y, m, d] if year(y) && short(m) && short(d) => true,
        [.., d, m, y] if short(d) && short(m) && year(y) => true,
        [y, m] | [m, y] if year(y) && short(m) => true,
        [.., packed] if packed.len() == 8 => year(&packed[..4]) || year(&packed[4..]),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn from_file(path: &str) -> Named {
        name_of(None, &Source::File(PathBuf::from(path))).unwrap()
    }

    #[test]
    fn a_campaign_is_named_after_its_file_unless_named() {
        assert_eq!(from_file("exports/leads.csv").name, "leads");
        let set = name_of(Some(" leads "), &Source::Stdin).unwrap();
        assert_eq!((set.name.as_str(), set.from_file), ("leads", false));
        let error = name_of(None, &Source::Stdin).unwrap_err();
        assert!(error.contains("--campaign"), "{error}");
    }

    #[test]
    fn a_dated_export_is_noticed() {
        for dated in [
            "leads-2026-11-30.csv",
            "leads-2026-11.csv",
            "leads_20261130.csv",
            "export 30.11.2026.csv",
            "leads-30-11-2026.csv",
            "2026-11-30.csv",
        ] {
            assert!(from_file(dated).looks_dated(), "{dated}");
        }
        for plain in [
            "leads.csv",
            "leads-v2.csv",
            "top-100.csv",
            "campaign-2026.csv",
        ] {
            assert!(!from_file(plain).looks_dated(), "{plain}");
        }
        let named = name_of(Some("leads-2026-11-30"), &Source::Stdin).unwrap();
        assert!(!named.looks_dated(), "a name set on purpose is the user's");
    }

    #[test]
    fn a_name_is_kept_in_nfc_wherever_it_comes_from() {
        let (nfd, nfc) = ("promoc\u{327}a\u{303}o", "promo\u{e7}\u{e3}o");
        assert_eq!(from_file(&format!("{nfd}.csv")).name, nfc);
        assert_eq!(name_of(Some(nfd), &Source::Stdin).unwrap().name, nfc);
    }

    #[test]
    fn a_name_is_checked() {
        assert!(check_name("Black Friday, 2026").is_ok());
        assert!(check_name("  ").is_err());
        assert!(check_name("a\u{7}b").is_err());
        assert!(check_name(&"x".repeat(201)).is_err());
    }
}
