//! When a failed send is tried again, after how long, and when failures
//! are so many that the run halts: `[retry]` and the policy it drives.

use std::time::Duration;

use serde::Deserialize;

use crate::api::SendError;
use crate::setting::{self, invalid, InvalidSetting};
use crate::types::Status;

/// The longest backoff, in seconds: a longer wait is a reason to stop, not to wait.
pub const BACKOFF_MAX: f64 = 3600.0;

/// `[retry]`.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySettings {
    /// Tries per message, the first one included.
    pub max_attempts: u32,
    /// Try again after an answer that may have been lost (risks a duplicate card).
    pub retry_ambiguous: bool,
    /// Halt when more than this share of the messages tried failed…
    pub max_failure_ratio: f64,
    /// …once at least this many were tried.
    pub min_attempts_before_halt: u64,
    /// The first backoff's ceiling; it doubles each try up to `max_backoff`.
    #[serde(deserialize_with = "setting::seconds")]
    pub initial_backoff: Duration,
    #[serde(deserialize_with = "setting::seconds")]
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 5,
            retry_ambiguous: false,
            max_failure_ratio: 0.5,
            min_attempts_before_halt: 20,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

impl RetrySettings {
    /// The longest a run may keep one message in flight: every try with
    /// its `timeout`, and before each retry its backoff and the number's
    /// `turn` (at most). After that no run can still be sending it.
    pub fn longest_in_flight(&self, timeout: Duration, turn: Duration) -> Duration {
        (timeout + self.max_backoff + turn).saturating_mul(self.max_attempts)
    }

    pub fn check(&self) -> Result<(), InvalidSetting> {
        if self.max_attempts == 0 {
            return Err(invalid(
                "retry.max_attempts",
                "must be at least 1 (the first try)",
            ));
        }
        if !(0.0..=1.0).contains(&self.max_failure_ratio) {
            return Err(invalid(
                "retry.max_failure_ratio",
                format!("{} is not between 0 and 1", self.max_failure_ratio),
            ));
        }
        for (key, value) in [
            ("retry.initial_backoff", self.initial_backoff),
            ("retry.max_backoff", self.max_backoff),
        ] {
            setting::check_duration(key, value, BACKOFF_MAX)?;
        }
        if self.max_backoff < self.initial_backoff {
            return Err(invalid(
                "retry.max_backoff",
                "is below retry.initial_backoff",
            ));
        }
        Ok(())
    }
}

/// What is known of a message after a failed try.
#[derive(Debug, Clone, Copy)]
pub struct Tried {
    /// Tries so far, the failed one included.
    pub attempts: u32,
    /// A try so far, the failed one included, may have been delivered.
    pub maybe_delivered: bool,
}

impl Tried {
    /// The status of a message not tried again for a reason of the run's
    /// (it stopped, the number stopped, the window shut): `DEFERRED`, so a
    /// later `--resume` sends it, unless a try may have been delivered.
    pub fn not_tried_again(self) -> Status {
        match self.maybe_delivered {
            true => Status::Unknown,
            false => Status::Deferred,
        }
    }
}

/// What to do after one failed try.
#[derive(Debug, PartialEq)]
pub enum Next {
    /// Try again after this long (and then the number's own turn).
    Retry(Duration),
    /// Stop trying: the message ends with this status.
    GiveUp(Status),
    /// The API refused the credentials (401/403): the number leaves
    /// rotation, paused for every run until resumed; the message FAILED.
    RetireNumber,
    /// The API asked the number to wait longer than `retry.max_backoff`:
    /// it stops for now, held that long for every run; the message ends
    /// with `status`.
    HoldNumber { wait: Duration, status: Status },
}

/// The one retry policy: from the failure, the tries so far and whether one
/// may have been delivered. Not again when the API said no for good, when
/// the card may already have arrived (unless the user accepts a
/// duplicate), or after `retry.max_attempts`; a `Retry-After` is honoured
/// up to `retry.max_backoff`, and a longer one stops the number instead.
pub fn next_step(error: &SendError, tried: Tried, retry: &RetrySettings) -> Next {
    let given_up = match tried.maybe_delivered {
        true => Status::Unknown,
        false => Status::Failed,
    };
    let asked = match error {
        SendError::Refused {
            http_status: 401 | 403,
            ..
        } => return Next::RetireNumber,
        SendError::Refused {
            http_status: 429 | 500 | 502 | 503,
            retry_after,
            ..
        } => *retry_after,
        SendError::Refused { .. } | SendError::NotSent(_) => return Next::GiveUp(given_up),
        SendError::Unreachable(_) => None,
        SendError::Ambiguous { .. } if retry.retry_ambiguous => None,
        SendError::Ambiguous { .. } => return Next::GiveUp(Status::Unknown),
    };
    if tried.attempts >= retry.max_attempts {
        return Next::GiveUp(given_up);
    }
    match asked {
        Some(wait) if wait > retry.max_backoff => Next::HoldNumber {
            wait,
            status: tried.not_tried_again(),
        },
        Some(wait) => Next::Retry(wait),
        None => Next::Retry(backoff(retry, tried.attempts)),
    }
}

/// Exponential backoff with full jitter: a random wait up to a ceiling that
/// doubles each try, so many failing clients do not retry in step.
fn backoff(retry: &RetrySettings, failed_tries: u32) -> Duration {
    let doubling = 2f64.powi(failed_tries.saturating_sub(1).min(30) as i32);
    let ceiling = retry
        .initial_backoff
        .mul_f64(doubling)
        .min(retry.max_backoff);
    ceiling.mul_f64(fastrand::f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry() -> RetrySettings {
        RetrySettings {
            initial_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_millis(1000),
            ..RetrySettings::default()
        }
    }

    #[test]
    fn backoff_spreads_up_to_a_ceiling_that_doubles_each_try() {
        fastrand::seed(11);
        for (tries, ceiling) in [(1, 100), (3, 400), (30, 1000)] {
            let ceiling = Duration::from_millis(ceiling);
            let waits: Vec<Duration> = (0..200).map(|_| backoff(&retry(), tries)).collect();
            let longest = *waits.iter().max().unwrap();
            let shortest = *waits.iter().min().unwrap();
            assert!(longest <= ceiling, "try {tries}: {longest:?}");
            // Full jitter: the waits reach near the ceiling and near zero.
            assert!(longest > ceiling * 9 / 10, "try {tries}: {longest:?}");
            assert!(shortest < ceiling / 10, "try {tries}: {shortest:?}");
        }
    }

    /// The first failed try of a message no try of which was delivered.
    const FIRST: Tried = Tried {
        attempts: 1,
        maybe_delivered: false,
    };

    fn refused(http_status: u16, retry_after: Option<u64>) -> SendError {
        SendError::Refused {
            http_status,
            message: String::new(),
            retry_after: retry_after.map(Duration::from_secs),
        }
    }

    #[test]
    fn transient_answers_are_retried_and_permanent_ones_are_not() {
        for status in [429, 500, 502, 503] {
            assert!(
                matches!(
                    next_step(&refused(status, None), FIRST, &retry()),
                    Next::Retry(_)
                ),
                "{status}"
            );
        }
        for status in [301, 307, 400, 404, 409, 422] {
            assert_eq!(
                next_step(&refused(status, None), FIRST, &retry()),
                Next::GiveUp(Status::Failed),
                "{status}"
            );
        }
        assert!(matches!(
            next_step(&SendError::Unreachable(String::new()), FIRST, &retry()),
            Next::Retry(_)
        ));
        // The last try: no more, and UNKNOWN once one may have arrived.
        let last = Tried {
            attempts: retry().max_attempts,
            ..FIRST
        };
        assert_eq!(
            next_step(&refused(503, None), last, &retry()),
            Next::GiveUp(Status::Failed)
        );
        let last_in_doubt = Tried {
            maybe_delivered: true,
            ..last
        };
        assert_eq!(
            next_step(&refused(503, None), last_in_doubt, &retry()),
            Next::GiveUp(Status::Unknown)
        );
    }

    #[test]
    fn refused_credentials_retire_the_number_and_a_long_wait_holds_it() {
        for status in [401, 403] {
            assert_eq!(
                next_step(&refused(status, None), FIRST, &retry()),
                Next::RetireNumber
            );
        }
        // Retry-After within retry.max_backoff (1 s here) is waited for.
        assert_eq!(
            next_step(&refused(429, Some(1)), FIRST, &retry()),
            Next::Retry(Duration::from_secs(1))
        );
        assert_eq!(
            next_step(&refused(429, Some(120)), FIRST, &retry()),
            Next::HoldNumber {
                wait: Duration::from_secs(120),
                status: Status::Deferred
            }
        );
        let in_doubt = Tried {
            maybe_delivered: true,
            ..FIRST
        };
        assert_eq!(
            next_step(&refused(429, Some(120)), in_doubt, &retry()),
            Next::HoldNumber {
                wait: Duration::from_secs(120),
                status: Status::Unknown
            }
        );
    }

    #[test]
    fn an_ambiguous_answer_is_unknown_unless_the_user_opts_in() {
        let lost = SendError::Ambiguous {
            http_status: None,
            detail: String::new(),
        };
        let in_doubt = Tried {
            maybe_delivered: true,
            ..FIRST
        };
        assert_eq!(
            next_step(&lost, in_doubt, &retry()),
            Next::GiveUp(Status::Unknown)
        );
        let opted_in = RetrySettings {
            retry_ambiguous: true,
            ..retry()
        };
        assert!(matches!(
            next_step(&lost, in_doubt, &opted_in),
            Next::Retry(_)
        ));
    }
}
