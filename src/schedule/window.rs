//! The send window: the local times messages may go between, in a time zone.

use std::fmt;
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
        self.next_after(now, self.window.start)
    }

    /// The first `time` of the window's zone after `now`: today's, or
    /// tomorrow's if today's has passed. Daylight saving gaps are resolved
    /// forward, as clocks do.
    fn next_after(&self, now: Timestamp, time: Time) -> Option<ZonedDateTime> {
        let mut day = now.to_zoned_datetime(self.timezone.clone()).date();
        loop {
            let next = day
                .to_datetime(time)
                .to_zoned_datetime(self.timezone.clone())
                .ok()?;
            if next.timestamp() > now {
                return Some(next);
            }
            day = day.tomorrow().ok()?;
        }
    }

    /// How long from `start` until the window has been open for `sending`:
    /// the closed hours between count, as the sending waits them out.
    /// `None` when that is centuries away.
    pub fn elapsed_for(&self, start: Timestamp, sending: Duration) -> Option<Duration> {
        // A window is open at least a minute a day: this many turns is over 27 years.
        const MOST_WINDOWS: usize = 10_000;
        let mut now = start;
        let mut left = jiff::SignedDuration::try_from(sending).ok()?;
        for _ in 0..MOST_WINDOWS {
            if let Some(opening) = self.closed_until(now) {
                now = opening.timestamp();
            }
            // Open at `now`: it closes at the next end of the window.
            let closing = self.next_after(now, self.window.end)?;
            let open = closing.timestamp().duration_since(now);
            if left <= open {
                let end = now.checked_add(left).ok()?;
                return Duration::try_from(end.duration_since(start)).ok();
            }
            left -= open;
            now = closing.timestamp();
        }
        None
    }

    /// `08:00-20:00 America/Sao_Paulo`, for messages.
    pub fn describe(&self) -> String {
        let zone = self.timezone.iana_name().unwrap_or("local time");
        format!("{} {zone}", self.window)
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
    fn the_time_a_sending_takes_counts_the_hours_the_window_is_shut() {
        let window = sao_paulo("08:00-20:00");
        let hours = |h: u64| Duration::from_secs(h * 3600);
        // 10:00 in São Paulo (UTC-3): 10 h left today, 12 h a day after.
        let morning = at("2026-06-01T13:00:00Z");
        assert_eq!(window.elapsed_for(morning, hours(2)), Some(hours(2)));
        assert_eq!(window.elapsed_for(morning, hours(10)), Some(hours(10)));
        // 10 h today, then 12 h closed, then 2 h the next morning.
        assert_eq!(window.elapsed_for(morning, hours(12)), Some(hours(24)));
        // 10 + 12 + 12 h, then 08:00-09:00 on the fourth day.
        assert_eq!(
            window.elapsed_for(morning, hours(35)),
            Some(hours(3 * 24 - 1))
        );
        // At 22:00 the first hours are the wait for 08:00.
        let night = at("2026-06-02T01:00:00Z");
        assert_eq!(window.elapsed_for(night, hours(1)), Some(hours(11)));
        let across_midnight = sao_paulo("22:00-02:00");
        assert_eq!(
            across_midnight.elapsed_for(night, hours(5)),
            Some(hours(24 + 1))
        );
        assert_eq!(window.describe(), "08:00-20:00 America/Sao_Paulo");
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
}
