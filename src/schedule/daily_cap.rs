//! The daily cap per instance: how many messages a number may send in one
//! local day. The count itself lives in the ledger, shared by every run.

use jiff::civil::Date;
use jiff::tz::TimeZone;
use jiff::Timestamp;

/// Messages per instance per local day.
#[derive(Debug, Clone)]
pub struct DailyCap {
    pub cap: u64,
    /// The zone whose midnight starts a new day.
    pub timezone: TimeZone,
}

impl DailyCap {
    /// The day `now` counts in.
    pub fn day(&self, now: Timestamp) -> Date {
        now.to_zoned_datetime(self.timezone.clone()).date()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_day_is_the_local_one() {
        let cap = DailyCap {
            cap: 1,
            timezone: TimeZone::get("America/Sao_Paulo").unwrap(),
        };
        // 01:00 UTC is still the day before in São Paulo (UTC-3).
        let now: Timestamp = "2026-11-25T01:00:00Z".parse().unwrap();
        assert_eq!(cap.day(now).to_string(), "2026-11-24");
    }
}
