//! When messages may go: the send window, in the campaign's time zone or
//! in each recipient's own, and the daily cap per instance, counted across
//! runs.

mod daily_cap;
mod recipient_zone;
mod window;
#[rustfmt::skip] // generated: tools/zone_map.py
mod zone_map;

use std::time::Duration;

use jiff::tz::TimeZone;
use serde::{Deserialize, Deserializer};

pub use daily_cap::DailyCap;
pub use recipient_zone::Zones;
pub use window::{SendWindow, Window, WindowState};

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
    /// Whose local time the window is read in.
    pub window_in: WindowIn,
    /// Messages per instance per day, across every run sharing the ledger.
    pub daily_cap: Option<u64>,
    /// First contacts per instance per day: messages to recipients the
    /// number never reached before (as far as the ledger remembers).
    pub daily_new_contacts: Option<u64>,
    /// A new number's caps on its 1st, 2nd, … day of sending, before
    /// `daily_cap` applies: numbers that send at full volume on day one
    /// are the likeliest to be banned.
    pub warmup: Vec<u64>,
    /// Hold back a recipient that any campaign sharing the ledger reached
    /// within this long (`"7d"`, `"12h"`, `"30m"`).
    #[serde(deserialize_with = "cooldown")]
    pub cooldown: Option<Duration>,
    /// How long a number taken out of rotation for its failures is held,
    /// by every run sharing the ledger (`"1h"`).
    pub quarantine: Quarantine,
}

/// `schedule.window_in`: whose local time the send window is read in.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WindowIn {
    /// `schedule.timezone`'s, for every recipient.
    #[default]
    Timezone,
    /// Each recipient's, from their number (`schedule.timezone`'s where
    /// the number tells none).
    Recipient,
}

/// `schedule.quarantine`: one hour unless set.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quarantine(pub Duration);

impl Default for Quarantine {
    fn default() -> Self {
        Quarantine(Duration::from_secs(3600))
    }
}

impl<'de> Deserialize<'de> for Quarantine {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        parse_span(&text)
            .map(Quarantine)
            .map_err(serde::de::Error::custom)
    }
}

impl ScheduleSettings {
    pub fn check(&self) -> Result<(), InvalidSetting> {
        if self.daily_cap == Some(0) {
            return Err(invalid(
                "schedule.daily_cap",
                "must be at least 1; leave it out for no cap",
            ));
        }
        if self.daily_new_contacts == Some(0) {
            return Err(invalid(
                "schedule.daily_new_contacts",
                "must be at least 1; leave it out for no limit",
            ));
        }
        if self.window_in == WindowIn::Recipient && self.window.is_none() {
            return Err(invalid(
                "schedule.window_in",
                "reads schedule.window in each recipient's time zone: set schedule.window too",
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

    /// The send window with the zone it is read in, when one is set.
    pub fn send_window(&self) -> Option<SendWindow> {
        self.window.map(|window| SendWindow {
            window,
            timezone: self.time_zone(),
            in_recipient_zones: self.window_in == WindowIn::Recipient,
        })
    }

    /// The daily cap, when one (or a warm-up) is set.
    pub fn daily_cap(&self) -> Option<DailyCap> {
        let counted = self.daily_cap.is_some()
            || !self.warmup.is_empty()
            || self.daily_new_contacts.is_some();
        counted.then(|| DailyCap {
            cap: self.daily_cap,
            warmup: self.warmup.clone(),
            new_contacts: self.daily_new_contacts,
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

/// `7d`, `12h`, `30m` or `45s`: a cooldown.
fn cooldown<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<Duration>, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_span(&text)
        .map(Some)
        .map_err(serde::de::Error::custom)
}

/// `7d`, `12h`, `30m`, `45s`: a span of time, at most a year.
pub fn parse_span(text: &str) -> Result<Duration, String> {
    let invalid =
        || format!("`{text}` is not a time span: write a number and d, h, m or s, like 7d");
    let text = text.trim();
    let unit_at = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(invalid)?;
    let (number, unit) = text.split_at(unit_at);
    let number: u64 = number.parse().map_err(|_| invalid())?;
    let seconds = match unit.trim() {
        "d" => 86_400,
        "h" => 3_600,
        "m" => 60,
        "s" => 1,
        _ => return Err(invalid()),
    };
    // A year is more than any campaign means.
    let span = number
        .checked_mul(seconds)
        .filter(|span| *span <= 366 * 86_400);
    span.map(Duration::from_secs)
        .ok_or_else(|| format!("`{text}` is longer than a year"))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cooldowns_are_written_with_a_unit() {
        assert_eq!(parse_span("7d"), Ok(Duration::from_secs(7 * 86_400)));
        assert_eq!(parse_span(" 12h "), Ok(Duration::from_secs(43_200)));
        assert_eq!(parse_span("30m"), Ok(Duration::from_secs(1_800)));
        for bad in [
            "7",
            "d",
            "7w",
            "-1d",
            "1.5d",
            "99999999999999999999d",
            "400d",
        ] {
            assert!(parse_span(bad).is_err(), "{bad}");
        }
    }
}
