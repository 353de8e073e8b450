//! The daily cap per instance: how many messages a number may send in one
//! local day, lower on its first days (the warm-up). The counts live in the
//! ledger, shared by every run.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Messages per instance per local day.
#[derive(Debug, Clone)]
pub struct DailyCap {
    /// The cap once the warm-up is over; `None`: no cap then.
    pub cap: Option<u64>,
    /// The caps of a number's 1st, 2nd, … day of sending.
    pub warmup: Vec<u64>,
    /// First contacts a day (`schedule.daily_new_contacts`).
    pub new_contacts: Option<u64>,
    /// The zone whose midnight starts a new day.
    pub timezone: TimeZone,
}

/// Days counted in UTC, with no cap.
impl Default for DailyCap {
    fn default() -> Self {
        DailyCap {
            cap: None,
            warmup: Vec::new(),
            new_contacts: None,
            timezone: TimeZone::UTC,
        }
    }
}

impl DailyCap {
    /// The cap of a number's day of sending `day_index` (0 for its first).
    pub fn cap_on(&self, day_index: i64) -> Option<u64> {
        usize::try_from(day_index)
            .ok()
            .and_then(|index| self.warmup.get(index).copied())
            .or(self.cap)
    }

    /// The day `now` counts in.
    pub fn day(&self, now: Timestamp) -> Date {
        now.to_zoned_datetime(self.timezone.clone()).date()
    }

    /// This cap counted in the zone a number's days are kept in (its IANA
    /// name as the ledger keeps it); '' or a name this build does not know:
    /// in this run's zone.
    pub fn in_zone(&self, kept: &str) -> DailyCap {
        let timezone = match kept {
            "" => self.timezone.clone(),
            name => TimeZone::get(name).unwrap_or_else(|_| self.timezone.clone()),
        };
        DailyCap {
            timezone,
            ..self.clone()
        }
    }

    /// This run's zone as the ledger keeps it for a number it counts first
    /// ('' for a zone without an IANA name, which the next run names).
    pub fn zone_name(&self) -> &str {
        self.timezone.iana_name().unwrap_or("")
    }

    /// Whether any cap is set: without one, the days are only counted.
    pub fn caps(&self) -> bool {
        self.cap.is_some() || !self.warmup.is_empty() || self.new_contacts.is_some()
    }

    /// When the day after `now`'s begins: a capped number sends again.
    pub fn next_day(&self, now: Timestamp) -> Option<Timestamp> {
        let tomorrow = self.day(now).tomorrow().ok()?;
        tomorrow
            .to_zoned_datetime(self.timezone.clone())
            .ok()
            .map(|start| start.timestamp())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_is_the_local_one() {
        let cap = DailyCap {
            new_contacts: None,
            cap: Some(1),
            warmup: Vec::new(),
            timezone: TimeZone::get("America/Sao_Paulo").unwrap(),
        };
        // 01:00 UTC is still the day before in São Paulo (UTC-3).
        let now: Timestamp = "2026-11-25T01:00:00Z".parse().unwrap();
        assert_eq!(cap.day(now).to_string(), "2026-11-24");
    }

    #[test]
    fn a_new_number_warms_up_then_takes_the_cap() {
        let cap = DailyCap {
            new_contacts: None,
            cap: Some(500),
            warmup: vec![20, 40, 80],
            timezone: TimeZone::UTC,
        };
        let caps: Vec<_> = (0..5).map(|day| cap.cap_on(day)).collect();
        assert_eq!(caps, [Some(20), Some(40), Some(80), Some(500), Some(500)]);
        let warmup_only = DailyCap { cap: None, ..cap };
        assert_eq!(warmup_only.cap_on(3), None);
    }
}
