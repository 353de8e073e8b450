//! A campaign's name: what its memory in the ledger goes by, so that every
//! run of it — whatever its results file, on whatever machine — knows what
//! the others sent. `campaign.name` or `--campaign` sets it; otherwise it is
//! the campaign file's name without its extension, and without the date it
//! ends in (a nightly export's `leads-2026-12-07.csv` is `leads`, every
//! night). Every name is kept in Unicode NFC, however it came.

use serde::Serialize;

use super::Source;
use crate::types::in_nfc;

/// The longest name taken; a name is a label, not a document.
const LONGEST: usize = 200;

/// What may stand between a name and the date it ends in, and between the
/// date's parts.
const SEPARATORS: &str = "-_. ";

/// The campaign's name: the one set, else the file's stem without the date
/// it ends in. Standard input has no file name, so it needs one set.
pub fn name_of(set: Option<&str>, source: &Source) -> Result<Named, String> {
    if let Some(name) = set {
        return Ok(Named {
            name: in_nfc(name.trim()),
            from: NameFrom::Set,
            with_date: None,
        });
    }
    let stem = match source {
        Source::Stdin => None,
        Source::File(path) => path
            .file_stem()
            .map(|stem| in_nfc(stem.to_string_lossy().trim())),
    };
    match stem.filter(|stem| !stem.is_empty()) {
        Some(stem) => Ok(named_after_file(stem)),
        None => Err(
            "a campaign read from standard input needs a name, which its memory in the ledger \
             goes by (what each run sent, so that no run sends it again): give one with \
             --campaign NAME or campaign.name"
                .to_string(),
        ),
    }
}

/// A campaign named after its file's `stem`: without the date it ends in,
/// unless that leaves nothing (a file named only a date keeps its name).
fn named_after_file(stem: String) -> Named {
    let undated = date_starts_at(&stem)
        .map(|at| stem[..at].trim_end_matches(|c| SEPARATORS.contains(c)))
        .filter(|undated| !undated.is_empty());
    match undated {
        Some(undated) => Named {
            name: undated.to_string(),
            from: NameFrom::FileWithoutDate,
            with_date: Some(stem.clone()),
        },
        None => Named {
            name: stem,
            from: NameFrom::File,
            with_date: None,
        },
    }
}

/// A campaign's name, and where it came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    pub name: String,
    pub from: NameFrom,
    /// The file's stem, date and all, where the name is without its date:
    /// what an earlier version named the campaign.
    pub with_date: Option<String>,
}

/// Where a campaign's name came from, as the summary's
/// `campaign_name_from` says it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NameFrom {
    /// `campaign.name` or `--campaign`.
    Set,
    /// The campaign file's name without its extension.
    File,
    /// The campaign file's name without its extension and the date it ended
    /// in: every night's dated export is one campaign.
    FileWithoutDate,
}

impl NameFrom {
    /// How a campaign read from `file` came by a name that is not the file's
    /// as it reads, in words (`after leads-2026-12-07.csv without its date;
    /// …`); `None` where nothing needs saying.
    pub fn in_words(self, file: &str) -> Option<String> {
        let file = std::path::Path::new(file)
            .file_name()
            .map_or_else(|| file.into(), |name| name.to_string_lossy());
        match self {
            NameFrom::FileWithoutDate => Some(format!(
                "after {file} without its date; --campaign or campaign.name names it otherwise"
            )),
            NameFrom::Set | NameFrom::File => None,
        }
    }
}

impl Named {
    /// Whether a name taken from the file is only a date (`2026-11-30`): a
    /// dated export gets a new name every night, which would make every
    /// night a new campaign.
    pub fn looks_dated(&self) -> bool {
        self.from == NameFrom::File && date_starts_at(&self.name).is_some()
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

/// Where the date `name` ends in starts (a byte index), if it ends in one:
/// its trailing digits and separators read as year, month and day (either
/// way round), or year and month, with a year of this century.
fn date_starts_at(name: &str) -> Option<usize> {
    let kept = name.trim_end_matches(|c: char| c.is_ascii_digit() || SEPARATORS.contains(c));
    let groups = digit_groups(&name[kept.len()..]);
    let texts: Vec<&str> = groups.iter().map(|(_, group)| *group).collect();
    let year = |group: &str| group.len() == 4 && group.starts_with("20");
    let short = |group: &str| (1..=2).contains(&group.len());
    let parts = match texts.as_slice() {
        [.., y, m, d] if year(y) && short(m) && short(d) => 3,
        [.., d, m, y] if short(d) && short(m) && year(y) => 3,
        [y, m] | [m, y] if year(y) && short(m) => 2,
        [.., packed] if packed.len() == 8 && (year(&packed[..4]) || year(&packed[4..])) => 1,
        _ => return None,
    };
    Some(kept.len() + groups[groups.len() - parts].0)
}

/// The runs of ASCII digits in `text`, each with where it starts.
fn digit_groups(text: &str) -> Vec<(usize, &str)> {
    let mut groups = Vec::new();
    let mut start = None;
    for (at, c) in text.char_indices().chain([(text.len(), ' ')]) {
        match (c.is_ascii_digit(), start) {
            (true, None) => start = Some(at),
            (false, Some(from)) => {
                groups.push((from, &text[from..at]));
                start = None;
            }
            _ => {}
        }
    }
    groups
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
        assert_eq!((set.name.as_str(), set.from), ("leads", NameFrom::Set));
        let error = name_of(None, &Source::Stdin).unwrap_err();
        assert!(error.contains("--campaign"), "{error}");
    }

    #[test]
    fn a_file_named_only_a_date_is_noticed() {
        for dated in [
            "2026-11-30.csv",
            "2026-11.csv",
            "20261130.csv",
            "30.11.2026.csv",
        ] {
            let named = from_file(dated);
            assert_eq!(
                named.name,
                dated.trim_end_matches(".csv"),
                "its name as it is"
            );
            assert!(named.looks_dated(), "{dated}");
        }
        for plain in [
            "leads.csv",
            "leads-v2.csv",
            "top-100.csv",
            "campaign-2026.csv",
        ] {
            assert!(!from_file(plain).looks_dated(), "{plain}");
        }
        let named = name_of(Some("2026-11-30"), &Source::Stdin).unwrap();
        assert!(!named.looks_dated(), "a name set on purpose is the user's");
    }

    #[test]
    fn a_dated_exports_campaign_is_named_after_its_file_without_the_date() {
        for (file, name) in [
            ("leads-2026-12-07.csv", "leads"),
            ("leads_20261207.csv", "leads"),
            ("leads 07-12-2026.csv", "leads"),
            ("leads-2026-12.csv", "leads"),
            ("export 30.11.2026.csv", "export"),
            ("leads - 2026-12-07.csv", "leads"),
            ("top-100-2026-12-07.csv", "top-100"),
            ("leads2026-12-07.csv", "leads"),
        ] {
            assert_eq!(from_file(file).name, name, "{file}");
            assert!(!from_file(file).looks_dated(), "{file}: nothing to warn of");
        }
        for plain in [
            "leads.csv",
            "leads-v2.csv",
            "top-100.csv",
            "campaign-2026.csv",
        ] {
            assert_eq!(from_file(plain).name, plain.trim_end_matches(".csv"));
        }
        let set = name_of(Some("leads-2026-12-07"), &Source::Stdin).unwrap();
        assert_eq!(set.name, "leads-2026-12-07", "a name set keeps its date");
    }

    #[test]
    fn a_name_is_kept_in_nfc_wherever_it_comes_from() {
        let (nfd, nfc) = ("promoc\u{327}a\u{303}o", "promo\u{e7}\u{e3}o");
        assert_eq!(from_file(&format!("{nfd}.csv")).name, nfc);
        assert_eq!(from_file(&format!("{nfd}-2026-12-07.csv")).name, nfc);
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
