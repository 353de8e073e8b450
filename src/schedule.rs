//! When messages may go: the send window in the campaign's time zone, and
//! the daily cap per instance, counted across runs in a small ledger.

use std::fmt;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{Timestamp, ZonedDateTime};

/// `08:00-20:00`: the local times messages may be sent between. A start
/// after the end (`22:00-06:00`) is a window across midnight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    pub start: Time,
    pub end: Time,
}

impl FromStr for Window {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid =
            || format!("`{text}` is not a window: write HH:MM-HH:MM, for example 08:00-20:00");
        let (start, end) = text.split_once('-').ok_or_else(invalid)?;
        let time = |part: &str| -> Result<Time, String> {
            let (hour, minute) = part.trim().split_once(':').ok_or_else(invalid)?;
            let hour: i8 = hour.parse().map_err(|_| invalid())?;
            let minute: i8 = minute.parse().map_err(|_| invalid())?;
            // 24:00 ends a window at midnight.
            if (hour, minute) == (24, 0) {
                return Ok(Time::MIN);
            }
            Time::new(hour, minute, 0, 0).map_err(|_| invalid())
        };
        let window = Window {
            start: time(start)?,
            end: time(end)?,
        };
        if window.start == window.end {
            return Err(format!(
                "`{text}` is an empty window; leave schedule.window out to send at any time"
            ));
        }
        Ok(window)
    }
}

impl fmt::Display for Window {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}-{}",
            self.start.strftime("%H:%M"),
            self.end.strftime("%H:%M")
        )
    }
}

impl Window {
    pub fn contains(&self, time: Time) -> bool {
        if self.start < self.end {
            self.start <= time && time < self.end
        } else {
            time >= self.start || time < self.end
        }
    }
}

/// The send window with its time zone.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub window: Window,
    pub timezone: TimeZone,
}

impl Schedule {
    /// `None` when the window is open at `now`, else when it next opens.
    pub fn closed_until(&self, now: Timestamp) -> Option<ZonedDateTime> {
        let here = now.to_zoned_datetime(self.timezone.clone());
        if self.window.contains(here.time()) {
            return None;
        }
        // Today's opening, or tomorrow's if today's has passed. Daylight
        // saving gaps are resolved forward, as clocks do.
        let mut day = here.date();
        loop {
            let opening = day
                .to_datetime(self.window.start)
                .to_zoned_datetime(self.timezone.clone())
                .ok()?;
            if opening.timestamp() > now {
                return Some(opening);
            }
            day = day.tomorrow().ok()?;
        }
    }

    /// How long until the window opens, from `now`; zero when it is open.
    pub fn wait(&self, now: Timestamp) -> Duration {
        self.closed_until(now)
            .map(|opening| {
                Duration::try_from(opening.timestamp().duration_since(now))
                    .unwrap_or(Duration::ZERO)
            })
            .unwrap_or(Duration::ZERO)
    }
}

/// Messages per instance per local day, counted in `<state_dir>/ledger`,
/// one small file per instance and day, each change made under a file
/// lock so that runs on different campaigns sharing a number add up.
#[derive(Debug, Clone)]
pub struct DailyCap {
    pub cap: u64,
    pub state_dir: PathBuf,
    pub timezone: TimeZone,
}

impl DailyCap {
    /// The platform's state directory for this tool (`$XDG_STATE_HOME` or
    /// `~/.local/state` on Linux), else the data directory.
    pub fn default_state_dir() -> Option<PathBuf> {
        dirs::state_dir()
            .or_else(dirs::data_local_dir)
            .map(|dir| dir.join("interacto-bulk"))
    }

    /// Counts one more message for `instance` today, unless the cap is
    /// reached; returns whether it may be sent.
    pub fn reserve(&self, instance: &str, now: Timestamp) -> io::Result<bool> {
        let day = now.to_zoned_datetime(self.timezone.clone()).date();
        let folder = self.state_dir.join("ledger").join(file_name(instance));
        fs::create_dir_all(&folder)?;
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(folder.join(format!("{day}.count")))?;
        file.lock()?;
        let mut text = String::new();
        file.read_to_string(&mut text)?;
        let sent: u64 = text.trim().parse().unwrap_or(0);
        if sent >= self.cap {
            return Ok(false);
        }
        file.seek(SeekFrom::Start(0))?;
        file.set_len(0)?;
        write!(file, "{}", sent + 1)?;
        file.flush()?;
        Ok(true)
        // The lock goes with the file.
    }
}

/// An instance id as a file name: kept when plain, else hex.
fn file_name(instance: &str) -> String {
    if !instance.is_empty()
        && instance
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        instance.to_string()
    } else {
        instance.bytes().map(|b| format!("{b:02x}")).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn sao_paulo(window: &str) -> Schedule {
        Schedule {
            window: window.parse().unwrap(),
            timezone: TimeZone::get("America/Sao_Paulo").unwrap(),
        }
    }

    #[test]
    fn windows_parse_and_refuse_nonsense() {
        assert_eq!(
            "08:00-20:00".parse::<Window>().unwrap().to_string(),
            "08:00-20:00"
        );
        assert_eq!("22:30-24:00".parse::<Window>().unwrap().end, Time::MIN);
        for bad in ["8-20", "08:00", "25:00-26:00", "08:00-08:00", "ab:cd-ef:gh"] {
            assert!(bad.parse::<Window>().is_err(), "{bad}");
        }
    }

    #[test]
    fn a_window_across_midnight_is_open_late_and_early() {
        let window: Window = "22:00-06:00".parse().unwrap();
        assert!(window.contains(Time::constant(23, 0, 0, 0)));
        assert!(window.contains(Time::constant(5, 59, 0, 0)));
        assert!(!window.contains(Time::constant(12, 0, 0, 0)));
    }

    #[test]
    fn outside_the_window_it_says_when_it_opens_in_local_time() {
        // 07:00 in São Paulo (UTC-3) is 10:00 UTC.
        let opening = sao_paulo("08:00-20:00")
            .closed_until(at("2026-11-24T10:00:00Z"))
            .unwrap();
        assert_eq!(opening.timestamp(), at("2026-11-24T11:00:00Z"));
        // After 20:00 it opens the next morning.
        let opening = sao_paulo("08:00-20:00")
            .closed_until(at("2026-11-24T23:30:00Z"))
            .unwrap();
        assert_eq!(opening.timestamp(), at("2026-11-25T11:00:00Z"));
        assert!(sao_paulo("08:00-20:00")
            .closed_until(at("2026-11-24T12:00:00Z"))
            .is_none());
    }

    #[test]
    fn daylight_saving_moves_the_opening_in_utc() {
        let new_york = Schedule {
            window: "09:00-17:00".parse().unwrap(),
            timezone: TimeZone::get("America/New_York").unwrap(),
        };
        // 09:00 is 13:00 UTC in summer (EDT) and 14:00 UTC in winter (EST).
        let summer = new_york.closed_until(at("2026-07-01T05:00:00Z")).unwrap();
        let winter = new_york.closed_until(at("2026-12-01T05:00:00Z")).unwrap();
        assert_eq!(summer.timestamp(), at("2026-07-01T13:00:00Z"));
        assert_eq!(winter.timestamp(), at("2026-12-01T14:00:00Z"));
    }

    #[test]
    fn the_daily_cap_counts_per_instance_and_day_across_ledgers() {
        let dir = tempfile::tempdir().unwrap();
        let cap = |n| DailyCap {
            cap: n,
            state_dir: dir.path().to_path_buf(),
            timezone: TimeZone::UTC,
        };
        let today = at("2026-11-24T12:00:00Z");
        assert!(cap(2).reserve("inst-a", today).unwrap());
        // Another run, another ledger value, the same files.
        assert!(cap(2).reserve("inst-a", today).unwrap());
        assert!(!cap(2).reserve("inst-a", today).unwrap());
        assert!(
            cap(2).reserve("inst-b", today).unwrap(),
            "each instance has its own count"
        );
        assert!(
            cap(2)
                .reserve("inst-a", at("2026-11-25T00:00:01Z"))
                .unwrap(),
            "a new day"
        );
        assert!(
            cap(3).reserve("inst-a", today).unwrap(),
            "a higher cap allows more"
        );
    }

    #[test]
    fn odd_instance_ids_become_safe_file_names() {
        assert_eq!(
            file_name("66a09db606fd14660c8fc1d0"),
            "66a09db606fd14660c8fc1d0"
        );
        assert_eq!(file_name("../x"), "2e2e2f78");
    }
}
