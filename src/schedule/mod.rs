//! When messages may go: the send window in the campaign's time zone, and
//! the daily cap per instance, counted across runs.

mod daily_cap;
mod window;

use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer};

pub use daily_cap::DailyCap;
pub use window::{Schedule, Window};

use crate::setting::{self, invalid, InvalidSetting};

/// `[schedule]`: every key optional; without them messages go at any hour,
/// with no cap.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSettings {
    /// Local times messages may go between.
    #[serde(deserialize_with = "setting::optional_from_text")]
    pub window: Option<Window>,
    /// The zone of the window and of the daily cap's day; `None`: the
    /// machine's own (`/etc/localtime`), whatever `TZ` the run was given.
    #[serde(deserialize_with = "time_zone")]
    pub timezone: Option<TimeZone>,
    /// Messages per instance per day, across every run sharing the ledger.
    pub daily_cap: Option<u64>,
    /// A new number's caps on its 1st, 2nd, … day of sending, before
    /// `daily_cap` applies: numbers that send at full volume on day one
    /// are the likeliest to be banned.
    pub warmup: Vec<u64>,
}

impl ScheduleSettings {
    pub fn check(&self) -> Result<(), InvalidSetting> {
        if self.daily_cap == Some(0) {
            return Err(invalid(
                "schedule.daily_cap",
                "must be at least 1; leave it out for no cap",
            ));
        }
        if self.warmup.contains(&0) {
            return Err(invalid("schedule.warmup", "a day's cap must be at least 1"));
        }
        Ok(())
    }

    /// The zone local times are read in.
    pub fn time_zone(&self) -> TimeZone {
        self.timezone.clone().unwrap_or_else(machine_zone)
    }

    /// The send window with its time zone, when one is set.
    pub fn send_window(&self) -> Option<Schedule> {
        self.window.map(|window| Schedule {
            window,
            timezone: self.time_zone(),
        })
    }

    /// The daily cap, when one (or a warm-up) is set.
    pub fn daily_cap(&self) -> Option<DailyCap> {
        (self.daily_cap.is_some() || !self.warmup.is_empty()).then(|| DailyCap {
            cap: self.daily_cap,
            warmup: self.warmup.clone(),
            timezone: self.time_zone(),
        })
    }
}

/// The machine's own time zone, from `/etc/localtime`, else UTC. Not the
/// `TZ` of whoever started the run: two cron lines with different `TZ` must
/// count one day, or a daily cap would allow twice its number.
fn machine_zone() -> TimeZone {
    std::fs::read("/etc/localtime")
        .ok()
        .and_then(|data| TimeZone::tzif("localtime", &data).ok())
        .unwrap_or(TimeZone::UTC)
}

/// An IANA time zone name, like `America/Sao_Paulo`.
fn time_zone<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<TimeZone>, D::Error> {
    let name = String::deserialize(deserializer)?;
    TimeZone::get(name.trim()).map(Some).map_err(|_| {
        serde::de::Error::custom(format!(
            "`{name}` is not an IANA time zone name, like America/Sao_Paulo"
        ))
    })
}
