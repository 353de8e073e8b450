//! `interacto-bulk numbers`: what the ledger knows of each sending number.

use std::fmt::Write as _;

use jiff::civil::Date;
use jiff::Timestamp;
use serde::Serialize;

use crate::ledger::NumberRecord;
use crate::pacing::Pace;
use crate::schedule::DailyCap;
use crate::types::NumberHold;

/// One number, as the `numbers` command shows it.
#[derive(Debug, Clone, Serialize)]
pub struct NumberReport {
    pub instance_id: String,
    /// The first day the ledger saw it send (counted with a cap or warm-up).
    pub first_day: Option<String>,
    /// The zone its days are counted in, by every run sharing the ledger
    /// (the first counting run's); `None` until one counts it.
    pub timezone: Option<String>,
    pub sent_today: u64,
    /// Today's cap, the warm-up included; `None`: no cap.
    pub cap_today: Option<u64>,
    /// Today's first contacts (recipients it never reached before).
    pub first_contacts_today: u64,
    /// `schedule.daily_new_contacts`; `None`: no limit.
    pub first_contacts_cap: Option<u64>,
    /// When its next message may leave, at the configured pace (UTC).
    pub next_free: Option<String>,
    /// Messages counted on each of the last 7 days, oldest first.
    pub last_7_days: Vec<DaySent>,
    /// `active`, `paused` (by an operator, or the API's refusal) or `held`
    /// (for a while, by a run's verdict): whether runs send through it.
    pub state: &'static str,
    /// Why it is paused or held.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Since when (UTC).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub since: Option<String>,
    /// Until when (UTC); absent for a pause until `numbers resume`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub until: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DaySent {
    pub day: String,
    pub sent: u64,
}

impl NumberReport {
    pub fn new(
        record: &NumberRecord,
        hold: Option<&NumberHold>,
        today: Date,
        cap: &DailyCap,
        pace: Pace,
        now: Timestamp,
    ) -> Self {
        let days_sending = record
            .first_day
            .and_then(|first| first.until(today).ok())
            .map_or(0, |span| i64::from(span.get_days()).max(0));
        let tolerance = pace
            .interval
            .saturating_mul(i64::from(pace.burst.max(1)) - 1);
        let now_nanos = i64::try_from(now.as_nanosecond()).unwrap_or(i64::MAX);
        let next_free = record.next_at.map(|next| {
            let at = next.saturating_sub(tolerance).max(now_nanos);
            Timestamp::from_nanosecond(i128::from(at))
                .unwrap_or(now)
                .strftime("%Y-%m-%dT%H:%M:%SZ")
                .to_string()
        });
        let last_7_days = (0..7)
            .rev()
            .filter_map(|back| today.checked_sub(jiff::Span::new().days(back)).ok())
            .map(|day| DaySent {
                day: day.to_string(),
                sent: record.sent.get(&day).copied().unwrap_or(0),
            })
            .collect();
        NumberReport {
            instance_id: record.instance_id.clone(),
            first_day: record.first_day.map(|day| day.to_string()),
            timezone: Some(record.timezone.clone()).filter(|zone| !zone.is_empty()),
            sent_today: record.sent.get(&today).copied().unwrap_or(0),
            cap_today: cap.cap_on(days_sending),
            first_contacts_today: record.new_contacts.get(&today).copied().unwrap_or(0),
            first_contacts_cap: cap.new_contacts,
            next_free,
            last_7_days,
            state: hold.map_or("active", |hold| hold.kind.as_str()),
            reason: hold.map(|hold| hold.reason.clone()),
            since: hold.map(|hold| utc(hold.since)),
            until: hold.and_then(|hold| hold.until).map(utc),
        }
    }
}

/// A time of the ledger (nanoseconds since 1970) as `numbers` shows it.
fn utc(nanos: i64) -> String {
    Timestamp::from_nanosecond(i128::from(nanos))
        .map(|at| at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default()
}

/// Said under the numbers: why a rehearsal's messages are not among them.
const REHEARSALS_NOT_RECORDED: &str =
    "rehearsals (--mock, --dry-run, validate) are not recorded in the ledger: only real sends";

/// One line a number, for people.
pub fn numbers_text(reports: &[NumberReport]) -> String {
    if reports.is_empty() {
        return format!("the ledger knows no number yet; {REHEARSALS_NOT_RECORDED}\n");
    }
    let mut text = String::new();
    for report in reports {
        let cap = report
            .cap_today
            .map_or_else(|| "no cap".to_string(), |cap| cap.to_string());
        let week: Vec<String> = report
            .last_7_days
            .iter()
            .map(|day| day.sent.to_string())
            .collect();
        let first_contacts = report.first_contacts_cap.map_or_else(String::new, |cap| {
            format!(", first contacts {} of {cap}", report.first_contacts_today)
        });
        let state = match (&report.reason, &report.until) {
            (None, _) => String::new(),
            (Some(reason), Some(until)) => format!(" · {} until {until} ({reason})", report.state),
            (Some(reason), None) => format!(
                " · {} until `numbers resume {}` ({reason})",
                report.state, report.instance_id
            ),
        };
        let _ = writeln!(
            text,
            "{}{state}  first sent {}{} · today {} of {cap}{first_contacts} · next free {} · last 7 days {}",
            report.instance_id,
            report.first_day.as_deref().unwrap_or("—"),
            report
                .timezone
                .as_ref()
                .map_or_else(String::new, |zone| format!(" (days in {zone})")),
            report.sent_today,
            report.next_free.as_deref().unwrap_or("now"),
            week.join(" ")
        );
    }
    let _ = writeln!(text, "{REHEARSALS_NOT_RECORDED}");
    text
}
