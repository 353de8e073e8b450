//! `interacto-bulk numbers`: what the ledger knows of each number; and
//! `numbers pause` and `resume`, which keep one from sending in every run.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use crate::config::Settings;
use crate::exit::RunError;
use crate::ledger::NumberRecord;
use crate::pacing::Pace;
use crate::report::NumberReport;
use crate::types::{nanos_of, printable, HoldKind, NumberHold};

use super::{open_ledger, IfNew};

/// Every number the ledger knows, with today's count and cap (the warm-up
/// included) at the configured schedule and pace; "today" in the zone the
/// ledger counts the number's days in. `if_new`: when the ledger is not
/// there yet.
pub async fn numbers(settings: &Settings, if_new: IfNew) -> Result<Vec<NumberReport>, RunError> {
    let ledger = open_ledger(settings, if_new).await?;
    let cap = settings.schedule.daily_cap();
    let timezone = settings.schedule.time_zone();
    let now = Timestamp::now();
    // A week back in any zone: a day more than this run's week.
    let since = now
        .to_zoned_datetime(timezone.clone())
        .date()
        .checked_sub(jiff::Span::new().days(7))
        .unwrap_or_default();
    // The numbers `pause` and `resume` know: one paused before it ever
    // sent is a number too.
    let ids = ledger.number_ids().await?;
    let records = ledger.numbers(since).await?;
    let holds = ledger.holds().await?;
    let pace = Pace::of(&settings.pacing);
    Ok(ids
        .into_iter()
        .map(|id| {
            let record = records
                .iter()
                .find(|record| record.instance_id == id)
                .cloned()
                .unwrap_or(NumberRecord {
                    instance_id: id,
                    ..NumberRecord::default()
                });
            let zone = match record.timezone.as_str() {
                "" => timezone.clone(),
                name => TimeZone::get(name).unwrap_or_else(|_| timezone.clone()),
            };
            let today = now.to_zoned_datetime(zone).date();
            let hold = holds
                .iter()
                .find(|hold| hold.instance_id == record.instance_id);
            NumberReport::new(&record, hold, today, &cap, pace, now)
        })
        .collect())
}

/// `numbers pause`, as asked.
#[derive(Debug, Clone)]
pub struct Pause {
    /// The number, by its exact id.
    pub instance: String,
    /// Why, for the rows it defers.
    pub reason: String,
    /// `--until`: a time, or a span from now; `None`: until resumed.
    pub until: Option<String>,
    /// `--new`: a number that has not sent yet, which the ledger does not
    /// know.
    pub new: bool,
}

/// `numbers pause`: keeps the number from sending in every run sharing the
/// ledger, until `until` (a time, or a span from now) or `numbers resume`.
/// Only a number the ledger knows, unless `new` says it has not sent yet: a
/// pause of another id would leave the number meant sending. Returns what
/// it did, in words.
pub async fn pause_number(
    settings: &Settings,
    pause: &Pause,
    if_new: IfNew,
) -> Result<String, RunError> {
    let now = Timestamp::now();
    let until = pause
        .until
        .as_deref()
        .map(|text| until_of(text, now, &settings.schedule.time_zone()))
        .transpose()
        .map_err(RunError::Usage)?;
    let ledger = open_ledger(settings, if_new).await?;
    let instance = pause.instance.as_str();
    let known = ledger.number_ids().await?;
    if let Some(unknown) = Unknown::of(instance, &known, pause.new) {
        let asked = Asked::Pause { new: pause.new };
        return Err(RunError::Usage(unknown.refusal(asked, &ledger)));
    }
    let hold = NumberHold {
        instance_id: instance.to_string(),
        kind: HoldKind::Paused,
        reason: printable(&pause.reason).into_owned(),
        since: nanos_of(now),
        until: until.map(nanos_of),
    };
    ledger.hold_number(hold, true).await?;
    Ok(match until {
        Some(at) => format!(
            "{instance} paused until {}: every run sharing the ledger {ledger} defers its rows",
            at.strftime("%Y-%m-%d %H:%M:%S UTC")
        ),
        None => format!(
            "{instance} paused until `numbers resume {instance}`: every run sharing the ledger \
             {ledger} defers its rows"
        ),
    })
}

/// `numbers resume`: lets the number send again. Only a number the ledger
/// knows (one paused with `--new` is): another id has nothing to resume,
/// and is most likely a typo of one that is paused.
pub async fn resume_number(
    settings: &Settings,
    instance: &str,
    if_new: IfNew,
) -> Result<String, RunError> {
    let ledger = open_ledger(settings, if_new).await?;
    let known = ledger.number_ids().await?;
    if let Some(unknown) = Unknown::of(instance, &known, false) {
        return Err(RunError::Usage(unknown.refusal(Asked::Resume, &ledger)));
    }
    Ok(match ledger.release_number(instance).await? {
        true => format!("{instance} may send again"),
        false => format!("{instance} was neither paused nor held"),
    })
}

/// An id that names no number the ledger knows, and the ids it most likely
/// meant.
#[derive(Debug, PartialEq, Eq)]
struct Unknown<'a> {
    id: &'a str,
    /// Known ids that are `id` but for case and spaces around it: a typo of
    /// a number that sends, which `--new` does not pause.
    same_but_case: Vec<&'a str>,
    /// Otherwise the closest known ids by edit distance, at most
    /// [`CLOSEST`], nearest first (then in order).
    closest: Vec<&'a str>,
}

/// How many of the closest known ids a refusal names.
const CLOSEST: usize = 3;

impl<'a> Unknown<'a> {
    /// `None` when `id` names a number `known` holds, or (`new`) one that is
    /// not used yet: an id with no spaces around it that no known id matches
    /// but for case.
    fn of(id: &'a str, known: &'a [String], new: bool) -> Option<Unknown<'a>> {
        if known.iter().any(|known| known == id) {
            return None;
        }
        let loose = id.trim().to_lowercase();
        let same_but_case: Vec<&str> = known
            .iter()
            .filter(|known| known.to_lowercase() == loose)
            .map(String::as_str)
            .collect();
        let spaced = id.trim() != id;
        if new && same_but_case.is_empty() && !spaced {
            return None;
        }
        let mut by_distance: Vec<(usize, &str)> = match same_but_case.is_empty() {
            true => known
                .iter()
                .map(|known| (edit_distance(&loose, &known.to_lowercase()), known.as_str()))
                .collect(),
            false => Vec::new(),
        };
        by_distance.sort_unstable();
        Some(Unknown {
            id,
            same_but_case,
            closest: by_distance
                .into_iter()
                .take(CLOSEST)
                .map(|(_, known)| known)
                .collect(),
        })
    }

    /// Why nothing was done of what was `asked`, the ids most likely meant,
    /// and what to do.
    fn refusal(&self, asked: Asked, ledger: &impl std::fmt::Display) -> String {
        let id = self.id;
        let spaced = match id.trim() != id {
            true => " (an instance id has no spaces around it)",
            false => "",
        };
        let done = match asked {
            Asked::Pause { .. } => "paused",
            Asked::Resume => "resumed",
        };
        let listed = |ids: &[&str], or: &str| {
            ids.iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(or)
        };
        let meant = match (self.same_but_case.as_slice(), self.closest.as_slice()) {
            ([], []) => "; it knows no number yet".to_string(),
            ([], closest) => format!("; the closest it knows: {}", listed(closest, ", ")),
            (same, _) => format!("; did you mean {}?", listed(same, " or ")),
        };
        let what_to_do = match asked {
            Asked::Pause { new: false } => {
                "`numbers` lists the ids it knows; --new pauses a number that has not sent yet"
            }
            Asked::Pause { new: true } => {
                "--new pauses a number that has not sent yet, not one the ledger knows spelt \
                 otherwise"
            }
            Asked::Resume => "`numbers` lists the ids it knows",
        };
        format!(
            "no number `{id}` in the ledger {ledger}{spaced}: nothing was {done}{meant} \
             ({what_to_do})"
        )
    }
}

/// What was asked of a number.
#[derive(Debug, Clone, Copy)]
enum Asked {
    /// `numbers pause`; `new`: `--new`.
    Pause { new: bool },
    /// `numbers resume`.
    Resume,
}

/// Levenshtein's distance between `a` and `b`, in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, a) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, b) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = match a == *b {
                true => diagonal,
                false => 1 + diagonal.min(above).min(row[j]),
            };
            diagonal = above;
        }
    }
    row[b.len()]
}

/// `--until`: a span from now (`30m`, `12h`, `2d`), a time with its zone
/// (`2026-12-01T08:00:00Z`), or a local one (`2026-12-01 08:00`) in `zone`.
fn until_of(text: &str, now: Timestamp, zone: &TimeZone) -> Result<Timestamp, String> {
    let text = text.trim();
    let at = crate::schedule::parse_span(text)
        .ok()
        .and_then(|span| jiff::SignedDuration::try_from(span).ok())
        .and_then(|span| now.checked_add(span).ok())
        .or_else(|| text.parse::<Timestamp>().ok())
        .or_else(|| {
            text.parse::<jiff::civil::DateTime>()
                .ok()
                .and_then(|local| zone.to_timestamp(local).ok())
        })
        .ok_or_else(|| {
            format!(
                "--until `{text}` is neither a span (30m, 12h, 2d) nor a time \
                 (2026-12-01T08:00:00Z, or 2026-12-01 08:00 in schedule.timezone)"
            )
        })?;
    if at <= now {
        return Err(format!("--until `{text}` is already past"));
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn known(ids: &[&str]) -> Vec<String> {
        ids.iter().map(|id| id.to_string()).collect()
    }

    #[test]
    fn an_id_the_ledger_knows_exactly_is_known() {
        let known = known(&["inst-A", "inst-B"]);
        assert_eq!(Unknown::of("inst-A", &known, false), None);
        assert_eq!(Unknown::of("inst-A", &known, true), None);
    }

    #[test]
    fn another_case_or_spaces_around_it_name_the_number_meant_even_with_new() {
        let known = known(&["inst-A", "inst-B", "inst-a2"]);
        for typo in ["inst-a", " inst-A", "INST-A ", "\tinst-a"] {
            for new in [false, true] {
                let unknown = Unknown::of(typo, &known, new).expect("refused");
                assert_eq!(unknown.same_but_case, ["inst-A"], "{typo:?}");
                assert!(unknown.closest.is_empty(), "{typo:?}");
            }
        }
    }

    #[test]
    fn a_new_id_is_refused_without_new_naming_the_closest_in_order() {
        let known = known(&["inst-C", "inst-B", "inst-A", "other"]);
        let unknown = Unknown::of("inst-D", &known, false).expect("refused");
        assert!(unknown.same_but_case.is_empty());
        assert_eq!(unknown.closest, ["inst-A", "inst-B", "inst-C"]);
        assert_eq!(Unknown::of("inst-D", &known, true), None);
    }

    #[test]
    fn a_ledger_that_knows_no_number_says_so() {
        let unknown = Unknown::of("inst-1", &[], false).expect("refused");
        let said = unknown.refusal(Asked::Resume, &"sqlite:///l.db");
        assert_eq!(
            said,
            "no number `inst-1` in the ledger sqlite:///l.db: nothing was resumed; it knows no \
             number yet (`numbers` lists the ids it knows)"
        );
    }

    #[test]
    fn a_refusal_names_the_id_meant_and_what_to_do() {
        let known = known(&["inst-A"]);
        let said = Unknown::of(" inst-A", &known, true)
            .expect("refused")
            .refusal(Asked::Pause { new: true }, &"L");
        assert_eq!(
            said,
            "no number ` inst-A` in the ledger L (an instance id has no spaces around it): \
             nothing was paused; did you mean `inst-A`? (--new pauses a number that has not \
             sent yet, not one the ledger knows spelt otherwise)"
        );
    }

    #[test]
    fn edit_distance_counts_insertions_deletions_and_substitutions() {
        assert_eq!(edit_distance("", ""), 0);
        assert_eq!(edit_distance("inst-1", "inst-1"), 0);
        assert_eq!(edit_distance("inst-1", "inst-2"), 1);
        assert_eq!(edit_distance("inst1", "inst-1"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("ação", "acao"), 2);
    }
}
