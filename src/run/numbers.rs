//! `interacto-bulk numbers`: reads the ledger, changes nothing.

use jiff::tz::TimeZone;
use jiff::Timestamp;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::exit::RunError;
use crate::ledger::Ledger;
use crate::pacing::Pace;
use crate::report::NumberReport;

/// Every number the ledger knows, with today's count and cap (the warm-up
/// included) at the configured schedule and pace; "today" in the zone the
/// ledger counts the number's days in.
pub async fn numbers(settings: &Settings) -> Result<Vec<NumberReport>, RunError> {
    // A command of a moment: nothing to stop it but the server's answer.
    let ledger = Ledger::open(&settings.ledger, &CancellationToken::new()).await?;
    let cap = settings.schedule.daily_cap();
    let timezone = settings.schedule.time_zone();
    let now = Timestamp::now();
    // A week back in any zone: a day more than this run's week.
    let since = now
        .to_zoned_datetime(timezone.clone())
        .date()
        .checked_sub(jiff::Span::new().days(7))
        .unwrap_or_default();
    let records = ledger.numbers(since).await?;
    let pace = Pace::of(&settings.pacing);
    Ok(records
        .iter()
        .map(|record| {
            let zone = match record.timezone.as_str() {
                "" => timezone.clone(),
                name => TimeZone::get(name).unwrap_or_else(|_| timezone.clone()),
            };
            let today = now.to_zoned_datetime(zone).date();
            NumberReport::new(record, today, cap.as_ref(), pace, now)
        })
        .collect())
}
