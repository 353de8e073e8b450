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

    /// Each number's day and its caps: the counts are kept by every run
    /// that sends, whether or not it sets a cap (a run with a cap counts
    /// what the others sent).
    pub fn daily_cap(&self) -> DailyCap {
        DailyCap {
            cap: self.daily_cap,
            warmup: self.warmup.clone(),
            new_contacts: self.daily_new_contacts,
            timezone: self.time_zone(),
        }
    }
}

/// The machine's own time zone, by its IANA name, found once: the ledger
/// keeps each number's zone by that name, the same on every machine. Not
/// the `TZ` of whoever started the run: two cron lines with different `TZ`
/// must count one day, or a daily cap would allow twice its number. No
/// `/etc/localtime` is UTC, as for the C library.
fn machine_zone() -> TimeZone {
    static ZONE: std::sync::OnceLock<TimeZone> = std::sync::OnceLock::new();
    ZONE.get_or_init(|| machine_zone_at(std::path::Path::new("/etc")))
        .clone()
}

/// The zone `etc/localtime` sets: by the name its link names
/// (`…/zoneinfo/America/Sao_Paulo`), else the name of the system's zone
/// file it is a copy of (`etc/timezone`'s, Debian's, tried first: it may be
/// stale); a zone no name is found for keeps its rules, unnamed (the ledger
/// then keeps no zone for it, and says so).
fn machine_zone_at(etc: &std::path::Path) -> TimeZone {
    let localtime = etc.join("localtime");
    let linked = std::fs::read_link(&localtime)
        .ok()
        .and_then(|target| name_after_zoneinfo(&target))
        .and_then(|name| TimeZone::get(&name).ok());
    if let Some(zone) = linked {
        return zone;
    }
    let Ok(data) = std::fs::read(&localtime) else {
        return TimeZone::UTC;
    };
    let named = std::fs::read_to_string(etc.join("timezone")).ok();
    if let Some(zone) = copy_of_a_system_zone(&data, named.as_deref().map(str::trim)) {
        return zone;
    }
    tracing::warn!(
        "the machine's time zone ({}) has no name this tool can find: set schedule.timezone \
         (say \"America/Sao_Paulo\"), or each machine sharing the ledger may count a number's \
         day in its own zone",
        localtime.display()
    );
    TimeZone::tzif("", &data).unwrap_or(TimeZone::UTC)
}

/// `America/Sao_Paulo` from a path such as
/// `/usr/share/zoneinfo/America/Sao_Paulo` (or `../usr/share/zoneinfo/…`).
fn name_after_zoneinfo(target: &std::path::Path) -> Option<String> {
    let text = target.to_str()?;
    let (_, name) = text.rsplit_once("zoneinfo/")?;
    // posix/ and right/ hold the same zones under the same names.
    let name = name
        .strip_prefix("posix/")
        .or_else(|| name.strip_prefix("right/"))
        .unwrap_or(name);
    Some(name.to_string())
}

/// The system zone whose file holds the same bytes as `data`: `likely`
/// first, then the names jiff knows, looked up in `/usr/share/zoneinfo`.
fn copy_of_a_system_zone(data: &[u8], likely: Option<&str>) -> Option<TimeZone> {
    let zoneinfo = std::path::Path::new("/usr/share/zoneinfo");
    let mut names: Vec<String> = jiff::tz::db()
        .available()
        .map(|name| name.to_string())
        .collect();
    // Canonical names (`America/Sao_Paulo`) before links (`Brazil/East`).
    names.sort_by_key(|name| (!name.contains('/'), name.starts_with("Etc/"), name.clone()));
    let candidates = likely.map(str::to_string).into_iter().chain(names);
    candidates
        .filter(|name| !name.is_empty() && !name.contains(".."))
        .find(|name| std::fs::read(zoneinfo.join(name)).is_ok_and(|file| file == data))
        .and_then(|name| TimeZone::get(&name).ok())
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

    #[test]
    fn the_machine_s_zone_is_found_by_its_name() {
        let etc = tempfile::tempdir().unwrap();
        let name_of = |etc: &std::path::Path| machine_zone_at(etc).iana_name().map(String::from);
        assert_eq!(name_of(etc.path()).as_deref(), Some("UTC"), "no localtime");

        let link = etc.path().join("localtime");
        std::os::unix::fs::symlink("../usr/share/zoneinfo/America/Sao_Paulo", &link).unwrap();
        assert_eq!(name_of(etc.path()).as_deref(), Some("America/Sao_Paulo"));

        std::fs::remove_file(&link).unwrap();
        std::os::unix::fs::symlink("/usr/share/zoneinfo/posix/Asia/Tokyo", &link).unwrap();
        assert_eq!(name_of(etc.path()).as_deref(), Some("Asia/Tokyo"));

        // A copy of a system zone file, with Debian's /etc/timezone stale:
        // the copy's own zone (.ci/run installs tzdata where missing).
        std::fs::remove_file(&link).unwrap();
        std::fs::copy("/usr/share/zoneinfo/America/Sao_Paulo", &link).unwrap();
        std::fs::write(etc.path().join("timezone"), "Europe/Lisbon\n").unwrap();
        assert_eq!(name_of(etc.path()).as_deref(), Some("America/Sao_Paulo"));
        std::fs::write(etc.path().join("timezone"), "Brazil/East\n").unwrap();
        assert_eq!(
            name_of(etc.path()).as_deref(),
            Some("Brazil/East"),
            "the name it gives, when it names that file"
        );
    }
}
