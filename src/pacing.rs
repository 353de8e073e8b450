//! The anti-ban rules: delay/typing floors on every request body, and the
//! per-instance clock that decides when the next request may leave.

use std::fmt;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use tokio::time::Instant;

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
        // governor counts in nanoseconds; a faster rate has no meaning here.
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

/// The delay and typing values every request must carry.
///
/// The vendor warns that messages sent in sequence without them can get the
/// WhatsApp number blocked, so a row can only raise them, never lower them.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Floors {
    pub min_delay: f64,
    pub min_typing: f64,
    pub default_delay: f64,
    pub default_typing: f64,
    /// Up to this many seconds of random extra delay per message.
    pub jitter: f64,
}

/// The delay and typing one message is sent with, and why they differ from the row.
#[derive(Debug, Clone, PartialEq)]
pub struct Timing {
    pub delay: f64,
    pub typing: f64,
    /// Set when a row's own value was raised to a floor.
    pub note: Option<String>,
}

impl Timing {
    /// How long the phone itself takes over this message.
    pub fn phone_time(&self) -> Duration {
        Duration::from_secs_f64(self.delay + self.typing)
    }
}

impl Default for Floors {
    /// The defaults of `[pacing]`.
    fn default() -> Self {
        Floors {
            min_delay: 2.0,
            min_typing: 3.0,
            default_delay: 2.0,
            default_typing: 5.0,
            jitter: 0.0,
        }
    }
}

impl Floors {
    /// Fills in defaults and raises values below the floors.
    pub fn apply(&self, delay: Option<f64>, typing: Option<f64>) -> Timing {
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
        let delay = delay + self.jitter_sample();
        Timing {
            delay,
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

/// When one instance (one WhatsApp number) may take its next request.
///
/// Two rules, both must allow it: the GCRA rate limit (`rate`, `burst`), and,
/// with `pace_by_message`, the previous message's `delay + typing` must have
/// passed, so the tool never queues far ahead of what the phone really sends
/// and stopping the run really stops the campaign.
pub struct InstancePacer {
    limiter: DefaultDirectRateLimiter,
    pace_by_message: bool,
    phone_free_at: Instant,
}

impl InstancePacer {
    pub fn new(rate: Rate, burst: NonZeroU32, pace_by_message: bool) -> Self {
        let quota = Quota::with_period(rate.interval())
            .expect("Rate::from_str rejects rates with a zero interval")
            .allow_burst(burst);
        InstancePacer {
            limiter: RateLimiter::direct(quota),
            pace_by_message,
            phone_free_at: Instant::now(),
        }
    }

    /// Waits until a message of this timing may be sent, and books the phone's time for it.
    pub async fn wait_turn(&mut self, timing: &Timing) {
        if self.pace_by_message {
            tokio::time::sleep_until(self.phone_free_at).await;
        }
        self.limiter.until_ready().await;
        if self.pace_by_message {
            self.phone_free_at = Instant::now() + timing.phone_time();
        }
    }
}

/// How long sending takes at this pacing, message by message: each one waits
/// for the rate limit and, with `pace_by_message`, for the previous one's
/// delay and typing. Network time is left out.
#[derive(Debug, Clone, Copy)]
pub struct Estimate {
    rate: Rate,
    pace_by_message: bool,
    messages: u64,
    total: Duration,
}

impl Estimate {
    pub fn new(rate: Rate, pace_by_message: bool) -> Self {
        Estimate {
            rate,
            pace_by_message,
            messages: 0,
            total: Duration::ZERO,
        }
    }

    pub fn add(&mut self, timing: &Timing) {
        let gap = if self.pace_by_message {
            self.rate.interval().max(timing.phone_time())
        } else {
            self.rate.interval()
        };
        self.total += gap;
        self.messages += 1;
    }

    pub fn messages(&self) -> u64 {
        self.messages
    }

    pub fn duration(&self) -> Duration {
        self.total
    }

    pub fn rate(&self) -> Rate {
        self.rate
    }

    pub fn pace_by_message(&self) -> bool {
        self.pace_by_message
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn floors() -> Floors {
        Floors::default()
    }

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
        let timing = floors().apply(None, None);
        assert_eq!((timing.delay, timing.typing, timing.note), (2.0, 5.0, None));
    }

    #[test]
    fn values_below_the_floor_are_raised_and_say_so() {
        let timing = floors().apply(Some(0.5), Some(1.0));
        assert_eq!((timing.delay, timing.typing), (2.0, 3.0));
        let note = timing.note.unwrap();
        assert!(note.contains("delay raised from 0.5"), "{note}");
        assert!(note.contains("typing raised from 1"), "{note}");
    }

    #[test]
    fn values_above_the_floor_are_kept() {
        let timing = floors().apply(Some(10.0), Some(4.5));
        assert_eq!(
            (timing.delay, timing.typing, timing.note),
            (10.0, 4.5, None)
        );
    }

    #[test]
    fn jitter_only_adds_and_stays_within_its_bound() {
        let floors = Floors {
            jitter: 1.5,
            ..floors()
        };
        for _ in 0..200 {
            let timing = floors.apply(Some(2.0), None);
            assert!((2.0..=3.5).contains(&timing.delay), "{}", timing.delay);
        }
    }

    #[test]
    fn the_estimate_takes_the_longer_of_the_rate_and_the_phone_time() {
        let rate = "20/min".parse().unwrap();
        let mut paced = Estimate::new(rate, true);
        let mut unpaced = Estimate::new(rate, false);
        for timing in [
            floors().apply(None, None),
            floors().apply(Some(1.0), Some(0.0)),
        ] {
            paced.add(&timing);
            unpaced.add(&timing);
        }
        // 7 s of phone time beats the 3 s interval; the floors raise the second to 5 s.
        assert_eq!(paced.duration(), Duration::from_secs(12));
        assert_eq!(unpaced.duration(), Duration::from_secs(6));
        assert_eq!(paced.messages(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn pace_by_message_waits_for_the_previous_message_to_be_typed() {
        let rate = "100/s".parse().unwrap();
        let mut pacer = InstancePacer::new(rate, NonZeroU32::MIN, true);
        let timing = floors().apply(None, None);
        let start = Instant::now();
        pacer.wait_turn(&timing).await;
        pacer.wait_turn(&timing).await;
        assert!(
            start.elapsed() >= Duration::from_secs(7),
            "{:?}",
            start.elapsed()
        );
    }
}
