//! `[pacing]`: the rate per instance, the requests in flight, and the
//! delay/typing floors, with their defaults.

use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::setting::{self, invalid, InvalidSetting};
use crate::types::Timing;

/// The most seconds of delay, or of typing, one message may carry (and of
/// the floors and jitter that make them): the API's examples use 2 and 8,
/// and no person waits ten minutes for one card.
pub const MESSAGE_SECONDS_MAX: f64 = 600.0;

/// The most requests in flight at once.
pub const CONCURRENCY_MAX: usize = 1000;

/// How fast an instance may send, and the delay and typing every request
/// must carry.
///
/// The vendor warns that messages sent in sequence without delay and typing
/// can get the WhatsApp number blocked, so a row can only raise them, never
/// lower them below the floors.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PacingSettings {
    /// Messages per instance.
    #[serde(deserialize_with = "setting::from_text")]
    pub rate: Rate,
    /// Messages allowed back to back before the rate applies.
    pub burst: NonZeroU32,
    /// Requests in flight at once, all instances together.
    pub concurrency: NonZeroUsize,
    /// Seconds no request's delay goes below.
    pub min_delay: f64,
    /// Seconds no request's typing goes below.
    pub min_typing: f64,
    /// Seconds of delay for a row without a value.
    pub default_delay: f64,
    /// Seconds of typing for a row without a value.
    pub default_typing: f64,
    /// Up to this many seconds of random extra delay per message.
    pub jitter: f64,
    /// Wait for the previous message's delay + typing before the next request.
    pub pace_by_message: bool,
}

impl Default for PacingSettings {
    fn default() -> Self {
        PacingSettings {
            rate: Rate {
                count: NonZeroU32::new(20).expect("20 is not zero"),
                per: Duration::from_secs(60),
            },
            burst: NonZeroU32::MIN,
            concurrency: NonZeroUsize::new(4).expect("4 is not zero"),
            min_delay: 2.0,
            min_typing: 3.0,
            default_delay: 2.0,
            default_typing: 5.0,
            jitter: 0.0,
            pace_by_message: true,
        }
    }
}

impl PacingSettings {
    /// The longest a message may wait for its number's turn: the rate's
    /// interval and, with `pace_by_message`, the longest a phone takes over
    /// one message (delay, jitter and typing, each at most their ceiling).
    pub fn longest_turn(&self) -> Duration {
        let phone = Duration::from_secs_f64(3.0 * MESSAGE_SECONDS_MAX);
        match self.pace_by_message {
            true => self.rate.interval() + phone,
            false => self.rate.interval(),
        }
    }

    /// Every value a number of seconds, and the defaults not below the floors.
    pub fn check(&self) -> Result<(), InvalidSetting> {
        for (key, value) in [
            ("pacing.min_delay", self.min_delay),
            ("pacing.min_typing", self.min_typing),
            ("pacing.default_delay", self.default_delay),
            ("pacing.default_typing", self.default_typing),
            ("pacing.jitter", self.jitter),
        ] {
            setting::check_seconds(key, value, MESSAGE_SECONDS_MAX)?;
        }
        if self.concurrency.get() > CONCURRENCY_MAX {
            return Err(invalid(
                "pacing.concurrency",
                format!(
                    "{} is more than {CONCURRENCY_MAX} requests in flight",
                    self.concurrency
                ),
            ));
        }
        for (field, default, floor) in [
            ("delay", self.default_delay, self.min_delay),
            ("typing", self.default_typing, self.min_typing),
        ] {
            if default < floor {
                return Err(invalid(
                    &format!("pacing.default_{field}"),
                    format!("{default} is below pacing.min_{field} = {floor}"),
                ));
            }
        }
        Ok(())
    }

    /// The pace each number will keep, and what sets it, in words: logged
    /// once at the start, so that a rate the phone's own time overrules does
    /// not go unnoticed.
    pub fn describe_pace(&self) -> String {
        let interval = self.rate.interval();
        let burst = match self.burst.get() {
            1 => String::new(),
            n => format!(", bursts of up to {n}"),
        };
        let by_rate = format!(
            "one message every {} (rate {}{burst})",
            seconds_in_words(interval),
            self.rate
        );
        if !self.pace_by_message {
            return format!("each number sends at most {by_rate}; pace_by_message is off");
        }
        let phone = Duration::from_secs_f64(
            self.default_delay.max(self.min_delay) + self.default_typing.max(self.min_typing),
        );
        if phone > interval {
            format!(
                "each number sends at most one message every {}: pace_by_message waits for each \
                 message's delay + typing ({} for a row without its own), which is slower than \
                 the rate {} allows; set pace_by_message = false to go by the rate",
                seconds_in_words(phone),
                seconds_in_words(phone),
                self.rate
            )
        } else {
            format!(
                "each number sends at most {by_rate}; pace_by_message waits longer only after \
                 a message whose delay + typing is more"
            )
        }
    }

    /// The timing of one message: the row's values (or the defaults), raised
    /// to the floors, plus jitter.
    pub fn timing(&self, delay: Option<f64>, typing: Option<f64>) -> Timing {
        let mut raised = Vec::new();
        let delay = raise(
            "delay",
            delay.unwrap_or(self.default_delay),
            self.min_delay,
            &mut raised,
        );
        let typing = raise(
            "typing",
            typing.unwrap_or(self.default_typing),
            self.min_typing,
            &mut raised,
        );
        Timing {
            delay: delay + self.jitter_sample(),
            typing,
            note: (!raised.is_empty()).then(|| raised.join("; ")),
        }
    }

    fn jitter_sample(&self) -> f64 {
        if self.jitter > 0.0 {
            // Whole milliseconds keep the request body readable.
            (fastrand::f64() * self.jitter * 1000.0).round() / 1000.0
        } else {
            0.0
        }
    }
}

fn raise(field: &str, value: f64, floor: f64, raised: &mut Vec<String>) -> f64 {
    if value < floor {
        raised.push(format!("{field} raised from {value} to the floor {floor}"));
        floor
    } else {
        value
    }
}

/// A sending rate such as `20/min`: `count` messages every `per`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// The time between two messages at this rate.
    pub fn interval(&self) -> Duration {
        self.per / self.count.get()
    }

    /// Messages per second, for estimates and reports.
    pub fn per_second(&self) -> f64 {
        f64::from(self.count.get()) / self.per.as_secs_f64()
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let invalid =
            || format!("`{text}` is not a rate: write N/s, N/min or N/h, for example 20/min");
        let (count, unit) = text.trim().split_once('/').ok_or_else(invalid)?;
        let count: u32 = count.trim().parse().map_err(|_| invalid())?;
        let count = NonZeroU32::new(count)
            .ok_or_else(|| format!("`{text}`: the rate must be above zero"))?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(invalid()),
        };
        // The clock counts in nanoseconds; a faster rate has no meaning here.
        if per.as_nanos() / u128::from(count.get()) == 0 {
            return Err(format!(
                "`{text}` is faster than one message per nanosecond"
            ));
        }
        Ok(Rate { count, per })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "min",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

/// `7 s`, `0.5 s`, `1 ms`.
fn seconds_in_words(duration: Duration) -> String {
    let seconds = duration.as_secs_f64();
    if seconds >= 1.0 {
        format!("{} s", (seconds * 10.0).round() / 10.0)
    } else {
        format!("{} ms", (seconds * 1000.0 * 10.0).round() / 10.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_parse_in_seconds_minutes_and_hours() {
        assert_eq!(
            "20/min".parse::<Rate>().unwrap().interval(),
            Duration::from_secs(3)
        );
        assert_eq!(
            "4/s".parse::<Rate>().unwrap().interval(),
            Duration::from_millis(250)
        );
        assert_eq!(
            "60/h".parse::<Rate>().unwrap().interval(),
            Duration::from_secs(60)
        );
        assert_eq!(" 5 / sec ".parse::<Rate>().unwrap().per_second(), 5.0);
    }

    #[test]
    fn malformed_rates_are_rejected_with_an_example() {
        for text in ["20", "0/min", "-1/s", "20/day", "1.5/s", "/min"] {
            let error = text.parse::<Rate>().unwrap_err();
            assert!(error.contains(text), "{error}");
        }
    }

    #[test]
    fn missing_values_take_the_defaults() {
        let timing = PacingSettings::default().timing(None, None);
        assert_eq!((timing.delay, timing.typing, timing.note), (2.0, 5.0, None));
    }

    #[test]
    fn values_below_the_floor_are_raised_and_say_so() {
        let timing = PacingSettings::default().timing(Some(0.5), Some(1.0));
        assert_eq!((timing.delay, timing.typing), (2.0, 3.0));
        let note = timing.note.unwrap();
        assert!(note.contains("delay raised from 0.5"), "{note}");
        assert!(note.contains("typing raised from 1"), "{note}");
    }

    #[test]
    fn values_above_the_floor_are_kept() {
        let timing = PacingSettings::default().timing(Some(10.0), Some(4.5));
        assert_eq!(
            (timing.delay, timing.typing, timing.note),
            (10.0, 4.5, None)
        );
    }

    #[test]
    fn jitter_only_adds_and_spreads_over_its_whole_bound() {
        let pacing = PacingSettings {
            jitter: 1.5,
            ..PacingSettings::default()
        };
        fastrand::seed(7);
        let delays: Vec<f64> = (0..200)
            .map(|_| pacing.timing(Some(2.0), None).delay)
            .collect();
        assert!(
            delays.iter().all(|delay| (2.0..=3.5).contains(delay)),
            "{delays:?}"
        );
        let (least, most) = delays
            .iter()
            .fold((f64::MAX, f64::MIN), |(least, most), &delay| {
                (least.min(delay), most.max(delay))
            });
        assert!(least < 2.2 && most > 3.3, "from {least} to {most}");
    }
}
