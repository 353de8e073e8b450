//! `interacto-bulk numbers`: reads the ledger, changes nothing.

use jiff::Timestamp;

use crate::config::Settings;
use crate::exit::RunError;
use crate::ledger::Ledger;
use crate::pacing::Pace;
use crate::report::NumberReport;

/// Every number the ledger knows, with today's count and cap (the warm-up
/// included) at the configured schedule and pace.
pub async fn numbers(settings: &Settings) -> Result<Vec<NumberReport>, RunError> {
    let url = settings
        .ledger
        .url_or_default()
        .expect("checked with the settings");
    let ledger = Ledger::open(&url).await?;
    let cap = settings.schedule.daily_cap();
    let timezone = settings.schedule.time_zone();
    let now = Timestamp::now();
    let today = now.to_zoned_datetime(timezone).date();
    let week_start = today
        .checked_sub(jiff::Span::new().days(6))
        .unwrap_or(today);
    let records = ledger.numbers(week_start).await?;
    let pace = Pace::of(&settings.pacing);
    Ok(records
        .iter()
        .map(|record| NumberReport::new(record, today, cap.as_ref(), pace, now))
        .collect())
}
