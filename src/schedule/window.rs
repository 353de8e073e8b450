//! The send window: the local times messages may go between, in a time zone.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use jiff::civil::Time;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use super::Zones;

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

/// The send window, and whose local time it is read in.
#[derive(Debug, Clone)]
pub struct SendWindow {
    pub window: Window,
    /// `schedule.timezone`: the window's zone, or with `window_in =
    /// "recipient"` the zone of the recipients the table knows none for.
    pub timezone: TimeZone,
    /// Read in each recipient's own zones (`schedule.window_in = "recipient"`).
    pub in_recipient_zones: bool,
}

/// The window as it stands for a recipient at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WindowState {
    /// Open in each of their zones, at least until `closes`: the first
    /// zone's window end, or an offset change (daylight saving) in one of
    /// them, which may move the local time out of the window.
    Open { closes: Timestamp },
    /// Shut in some zone; open in all of them at `opens`.
    Shut { opens: Timestamp },
    /// Never open in all their zones at once, in the coming week.
    Never,
}

/// Days ahead a window is looked for in all of a recipient's zones: a
/// week covers every weekday and any daylight-saving change but the rarest.
const DAYS_AHEAD: usize = 8;

impl SendWindow {
    /// The zones the window of the recipient `to` (E.164 digits) is read in.
    pub fn zones_of(&self, to: &str) -> Zones {
        match self.in_recipient_zones {
            true => Zones::of(to),
            false => Zones::Sender,
        }
    }

    /// The window for a recipient in `zones` at `now`.
    pub fn state(&self, zones: Zones, now: Timestamp) -> WindowState {
        let zones = zones.time_zones(&self.timezone);
        let open_at = |at: Timestamp| {
            zones.iter().all(|zone| {
                self.window
                    .contains(at.to_zoned_datetime(zone.clone()).time())
            })
        };
        if open_at(now) {
            let closes = zones
                .iter()
                .filter_map(|zone| {
                    let end = next_after(zone, now, self.window.end);
                    let offset_changes =
                        zone.following(now).next().map(|change| change.timestamp());
                    end.into_iter().chain(offset_changes).min()
                })
                .min();
            return match closes {
                Some(closes) => WindowState::Open { closes },
                None => WindowState::Never,
            };
        }
        // Open in every zone from the latest of their openings on a day
        // when the windows overlap: the first such opening is the one.
        let mut openings: Vec<Timestamp> = zones
            .iter()
            .flat_map(|zone| each_day_at(zone, now, self.window.start).take(DAYS_AHEAD))
            .collect();
        openings.sort_unstable();
        match openings.into_iter().find(|at| open_at(*at)) {
            Some(opens) => WindowState::Shut { opens },
            None => WindowState::Never,
        }
    }

    /// How long from `start` until each share of sending is done, a share
    /// being the time to send to recipients in some zones, sent only while
    /// their window is open (one number sends one message at a time, the
    /// share whose window closes first first). The closed hours between
    /// count, as the sending waits them out; recipients whose window never
    /// opens are left out. `None` when that is centuries away.
    pub fn elapsed_for(&self, start: Timestamp, shares: &[(Zones, Duration)]) -> Option<Duration> {
        // Each step passes one share's window opening or closing (or an
        // offset change), or the end of the open shares: for a few hundred
        // zones' shares, a year of sending. Past it, `None`: the sending
        // time alone is given.
        const MOST_STEPS: usize = 100_000;
        struct Share {
            zones: Zones,
            left: SignedDuration,
            state: WindowState,
        }
        let mut now = start;
        let mut shares: Vec<Share> = shares
            .iter()
            .filter_map(|(zones, sending)| {
                let left = SignedDuration::try_from(*sending).ok()?;
                let state = self.state(*zones, start);
                Some(Share {
                    zones: *zones,
                    left,
                    state,
                })
            })
            .collect();
        for _ in 0..MOST_STEPS {
            for share in &mut shares {
                if share.state.changes_at().is_some_and(|at| at <= now) {
                    share.state = self.state(share.zones, now);
                }
            }
            shares.retain(|share| share.left.is_positive() && share.state != WindowState::Never);
            let Some(next_change) = shares
                .iter()
                .filter_map(|share| share.state.changes_at())
                .min()
            else {
                return Duration::try_from(now.duration_since(start)).ok();
            };
            let mut open: Vec<&mut Share> = shares
                .iter_mut()
                .filter(|share| matches!(share.state, WindowState::Open { .. }))
                .collect();
            open.sort_by_key(|share| share.state.changes_at());
            let mut span = next_change.duration_since(now);
            let mut used = SignedDuration::ZERO;
            for share in open {
                let sent = share.left.min(span);
                share.left -= sent;
                span -= sent;
                used += sent;
            }
            // All open shares sent before the next change: on from there.
            now = match used.is_zero() {
                true => next_change,
                false => now.checked_add(used).ok()?,
            };
        }
        None
    }

    /// `08:00-20:00 America/Sao_Paulo`, or `08:00-20:00 in each recipient's
    /// time zone, America/Sao_Paulo where unknown`, for messages.
    pub fn describe(&self) -> String {
        let zone = self.zone_name();
        match self.in_recipient_zones {
            false => format!("{} {zone}", self.window),
            true => format!(
                "{} in each recipient's time zone, {zone} where unknown",
                self.window
            ),
        }
    }

    /// `08:00-20:00 in America/Rio_Branco`: the window as it stands for
    /// recipients in `zones`.
    pub fn in_zones(&self, zones: Zones) -> String {
        format!("{} in {}", self.window, zones.describe(self.zone_name()))
    }

    /// The sender's zone by name.
    pub fn zone_name(&self) -> &str {
        self.timezone.iana_name().unwrap_or("local time")
    }
}

impl WindowState {
    /// When a shut window opens.
    pub fn opens(self) -> Option<Timestamp> {
        match self {
            WindowState::Shut { opens } => Some(opens),
            _ => None,
        }
    }

    /// When the state changes: the window closes or opens.
    fn changes_at(self) -> Option<Timestamp> {
        match self {
            WindowState::Open { closes } => Some(closes),
            WindowState::Shut { opens } => Some(opens),
            WindowState::Never => None,
        }
    }
}

/// The first `time` of `zone` after `now`: today's, or tomorrow's if today's
/// has passed. Daylight saving gaps are resolved forward, as clocks do.
fn next_after(zone: &TimeZone, now: Timestamp, time: Time) -> Option<Timestamp> {
    each_day_at(zone, now, time).next()
}

/// Each day's `time` of `zone` after `now`.
fn each_day_at(
    zone: &TimeZone,
    now: Timestamp,
    time: Time,
) -> impl Iterator<Item = Timestamp> + '_ {
    let mut day = Some(now.to_zoned_datetime(zone.clone()).date());
    std::iter::from_fn(move || {
        while let Some(today) = day {
            day = today.tomorrow().ok();
            let at = today
                .to_datetime(time)
                .to_zoned_datetime(zone.clone())
                .ok()?;
            if at.timestamp() > now {
                return Some(at.timestamp());
            }
        }
        None
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Timestamp {
        text.parse().unwrap()
    }

    fn in_zone(window: &str, zone: &str) -> SendWindow {
        SendWindow {
            window: window.parse().unwrap(),
            timezone: TimeZone::get(zone).unwrap(),
            in_recipient_zones: false,
        }
    }

    fn sao_paulo(window: &str) -> SendWindow {
        in_zone(window, "America/Sao_Paulo")
    }

    fn in_recipients_zones(window: &str) -> SendWindow {
        SendWindow {
            in_recipient_zones: true,
            ..sao_paulo(window)
        }
    }

    /// When the window opens for the sender, from `now`.
    fn opens(window: &SendWindow, now: &str) -> Option<Timestamp> {
        match window.state(Zones::Sender, at(now)) {
            WindowState::Shut { opens } => Some(opens),
            _ => None,
        }
    }

    #[test]
    fn the_time_a_sending_takes_counts_the_hours_the_window_is_shut() {
        let window = sao_paulo("08:00-20:00");
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let alone = |start: Timestamp, sending: Duration| {
            window.elapsed_for(start, &[(Zones::Sender, sending)])
        };
        // 10:00 in São Paulo (UTC-3): 10 h left today, 12 h a day after.
        let morning = at("2026-06-01T13:00:00Z");
        assert_eq!(alone(morning, hours(2)), Some(hours(2)));
        assert_eq!(alone(morning, hours(10)), Some(hours(10)));
        // 10 h today, then 12 h closed, then 2 h the next morning.
        assert_eq!(alone(morning, hours(12)), Some(hours(24)));
        // 10 + 12 + 12 h, then 08:00-09:00 on the fourth day.
        assert_eq!(alone(morning, hours(35)), Some(hours(3 * 24 - 1)));
        // At 22:00 the first hours are the wait for 08:00.
        let night = at("2026-06-02T01:00:00Z");
        assert_eq!(alone(night, hours(1)), Some(hours(11)));
        let across_midnight = sao_paulo("22:00-02:00");
        assert_eq!(
            across_midnight.elapsed_for(night, &[(Zones::Sender, hours(5))]),
            Some(hours(24 + 1))
        );
        assert_eq!(window.describe(), "08:00-20:00 America/Sao_Paulo");
    }

    #[test]
    fn recipients_in_other_zones_fill_the_hours_the_first_ones_are_shut() {
        let window = in_recipients_zones("08:00-20:00");
        let hours = |h: u64| Duration::from_secs(h * 3600);
        let sao_paulo = Zones::of("5511987654321");
        let acre = Zones::of("5568999887766");
        // 19:00 in São Paulo, 17:00 in Acre (UTC-5).
        let evening = at("2026-06-01T22:00:00Z");
        // São Paulo's hour, then Acre's two hours after it closes there.
        assert_eq!(
            window.elapsed_for(evening, &[(sao_paulo, hours(1)), (acre, hours(2))]),
            Some(hours(3))
        );
        // Acre's third hour waits for its next morning: one number sends
        // one message at a time.
        assert_eq!(
            window.elapsed_for(evening, &[(sao_paulo, hours(1)), (acre, hours(3))]),
            Some(hours(3 + 12 + 1))
        );
        // Four hours of São Paulo: one tonight, three from 08:00 tomorrow;
        // Acre's two fit in while São Paulo is shut.
        assert_eq!(
            window.elapsed_for(evening, &[(sao_paulo, hours(4)), (acre, hours(2))]),
            Some(hours(1 + 12 + 3))
        );
        assert_eq!(
            window.describe(),
            "08:00-20:00 in each recipient's time zone, America/Sao_Paulo where unknown"
        );
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
    fn outside_the_window_it_says_when_it_opens() {
        let window = sao_paulo("08:00-20:00");
        // 07:00 in São Paulo (UTC-3) is 10:00 UTC.
        assert_eq!(
            opens(&window, "2026-11-24T10:00:00Z"),
            Some(at("2026-11-24T11:00:00Z"))
        );
        // After 20:00 it opens the next morning.
        assert_eq!(
            opens(&window, "2026-11-24T23:30:00Z"),
            Some(at("2026-11-25T11:00:00Z"))
        );
        assert_eq!(
            window.state(Zones::Sender, at("2026-11-24T12:00:00Z")),
            WindowState::Open {
                closes: at("2026-11-24T23:00:00Z")
            }
        );
    }

    #[test]
    fn each_recipient_is_judged_in_their_own_zone() {
        let window = in_recipients_zones("08:00-20:00");
        // 09:00 in São Paulo: 07:00 in Acre, 08:00 in Manaus.
        let now = at("2026-11-24T12:00:00Z");
        let state = |to: &str| window.state(window.zones_of(to), now);
        assert!(matches!(state("5511987654321"), WindowState::Open { .. }));
        assert_eq!(
            state("5568999887766"),
            WindowState::Shut {
                opens: at("2026-11-24T13:00:00Z")
            }
        );
        assert!(matches!(state("5592999887766"), WindowState::Open { .. }));
        // A number the table does not know: the sender's zone.
        assert!(matches!(state("999123"), WindowState::Open { .. }));
        // Lisbon is open at 08:30; the Azores (an hour behind) at 09:00 UTC.
        let morning = at("2026-11-24T08:30:00Z");
        let lisbon = window.state(window.zones_of("351213456789"), morning);
        let azores = window.state(window.zones_of("351296123456"), morning);
        assert!(matches!(lisbon, WindowState::Open { .. }), "{lisbon:?}");
        assert_eq!(
            azores,
            WindowState::Shut {
                opens: at("2026-11-24T09:00:00Z")
            }
        );
        // Read in the sender's zone, every recipient is open.
        let sender = sao_paulo("08:00-20:00");
        assert!(matches!(
            sender.state(sender.zones_of("5568999887766"), now),
            WindowState::Open { .. }
        ));
    }

    #[test]
    fn several_zones_open_only_when_open_in_all() {
        let window = in_recipients_zones("08:00-20:00");
        // "55" alone: every zone of Brazil, from Noronha (UTC-2) to Acre
        // (UTC-5). Open from 08:00 in Acre (13:00 UTC) to 20:00 on Noronha
        // (22:00 UTC).
        let brazil = Zones::of("55");
        assert_eq!(
            window.state(brazil, at("2026-11-24T12:00:00Z")),
            WindowState::Shut {
                opens: at("2026-11-24T13:00:00Z")
            }
        );
        assert_eq!(
            window.state(brazil, at("2026-11-24T14:00:00Z")),
            WindowState::Open {
                closes: at("2026-11-24T22:00:00Z")
            }
        );
        // Two hours a day cannot be open in zones three hours apart.
        let narrow = in_recipients_zones("09:00-11:00");
        assert_eq!(
            narrow.state(brazil, at("2026-11-24T14:00:00Z")),
            WindowState::Never
        );
        assert_eq!(
            narrow.elapsed_for(
                at("2026-11-24T14:00:00Z"),
                &[(brazil, Duration::from_secs(60))]
            ),
            Some(Duration::ZERO),
            "left out of the estimate"
        );
    }

    #[test]
    fn an_open_window_is_judged_again_when_the_clocks_go_back() {
        // New York falls back at 06:00 UTC on 2026-11-01: 01:59 EDT, then
        // 01:00 EST, outside a window from 01:30.
        let new_york = in_zone("01:30-03:00", "America/New_York");
        assert_eq!(
            new_york.state(Zones::Sender, at("2026-11-01T05:45:00Z")),
            WindowState::Open {
                closes: at("2026-11-01T06:00:00Z")
            }
        );
        assert!(matches!(
            new_york.state(Zones::Sender, at("2026-11-01T06:00:00Z")),
            WindowState::Shut { .. }
        ));
    }

    #[test]
    fn daylight_saving_moves_the_opening_in_utc() {
        let new_york = in_zone("09:00-17:00", "America/New_York");
        // 09:00 is 13:00 UTC in summer (EDT) and 14:00 UTC in winter (EST).
        assert_eq!(
            opens(&new_york, "2026-07-01T05:00:00Z"),
            Some(at("2026-07-01T13:00:00Z"))
        );
        assert_eq!(
            opens(&new_york, "2026-12-01T05:00:00Z"),
            Some(at("2026-12-01T14:00:00Z"))
        );
    }
}
