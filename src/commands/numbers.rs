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
    let mut records = ledger.numbers(since).await?;
    let holds = ledger.holds().await?;
    // A number paused before it ever sent is a number too.
    for hold in &holds {
        if !records
            .iter()
            .any(|record| record.instance_id == hold.instance_id)
        {
            records.push(NumberRecord {
                instance_id: hold.instance_id.clone(),
                ..NumberRecord::default()
            });
        }
    }
    records.sort_by(|a, b| a.instance_id.cmp(&b.instance_id));
    let pace = Pace::of(&settings.pacing);
    Ok(records
        .iter()
        .map(|record| {
            let zone = match record.timezone.as_str() {
                "" => timezone.clone(),
                name => TimeZone::get(name).unwrap_or_else(|_| timezone.clone()),
            };
            let today = now.to_zoned_datetime(zone).date();
            let hold = holds
                .iter()
                .find(|hold| hold.instance_id == record.instance_id);
            NumberReport::new(record, hold, today, &cap, pace, now)
        })
        .collect())
}

/// `numbers pause`: keeps the number from sending in every run sharing the
/// ledger, until `until` (a time, or a span from now) or `numbers resume`.
/// Returns what it did, in words.
pub async fn pause_number(
    settings: &Settings,
    instance: &str,
    reason: &str,
    until: Option<&str>,
    if_new: IfNew,
) -> Result<String, RunError> {
    let now = Timestamp::now();
    let until = until
        .map(|text| until_of(text, now, &settings.schedule.time_zone()))
        .transpose()
        .map_err(RunError::Usage)?;
    let ledger = open_ledger(settings, if_new).await?;
    let hold = NumberHold {
        instance_id: instance.to_string(),
        kind: HoldKind::Paused,
        reason: printable(reason).into_owned(),
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

/// `numbers resume`: lets the number send again.
pub async fn resume_number(
    settings: &Settings,
    instance: &str,
    if_new: IfNew,
) -> Result<String, RunError> {
    let ledger = open_ledger(settings, if_new).await?;
    Ok(match ledger.release_number(instance).await? {
        true => format!("{instance} may send again"),
        false => format!("{instance} was neither paused nor held"),
    })
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
