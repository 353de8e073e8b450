//! How settings are written, shared by every stage's settings type: values
//! read from text, seconds, and the error that names the key it is about.
//! Like `types`, this module imports no stage.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::de::{Deserialize, Deserializer, Error as _};

/// A setting that does not make sense, named by its key (`pacing.default_delay`,
/// or the flag or environment variable it came from).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {problem}")]
pub struct InvalidSetting {
    pub key: String,
    pub problem: String,
}

pub fn invalid(key: &str, problem: impl Into<String>) -> InvalidSetting {
    InvalidSetting {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// A value written as text (`"20/min"`, `"08:00-20:00"`), read with its
/// `FromStr`, whose error says what is wrong and quotes the text.
pub fn from_text<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    let text = String::deserialize(deserializer)?;
    text.parse().map_err(D::Error::custom)
}

/// [`from_text`] for a setting that may be left out.
pub fn optional_from_text<'de, D, T>(deserializer: D) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: FromStr,
    T::Err: fmt::Display,
{
    from_text(deserializer).map(Some)
}

/// Text where an empty (or blank) value means the setting is not set.
pub fn non_blank<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<String>, D::Error> {
    let text = String::deserialize(deserializer)?;
    Ok((!text.trim().is_empty()).then_some(text))
}

/// A number of seconds, 0 or more.
pub fn seconds<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
    let value = f64::deserialize(deserializer)?;
    if !(value.is_finite() && value >= 0.0) {
        return Err(D::Error::custom(format!(
            "{value} is not a number of seconds (0 or more)"
        )));
    }
    Duration::try_from_secs_f64(value)
        .map_err(|_| D::Error::custom(format!("{value:e} seconds is longer than any wait")))
}

/// Checks a number of seconds, from 0 to `most`.
pub fn check_seconds(key: &str, value: f64, most: f64) -> Result<(), InvalidSetting> {
    if !(value.is_finite() && value >= 0.0) {
        return Err(invalid(
            key,
            format!("{value} is not a number of seconds (0 or more)"),
        ));
    }
    if value > most {
        return Err(invalid(
            key,
            format!("{value:e} seconds is more than {most}, the most it may be"),
        ));
    }
    Ok(())
}

/// [`check_seconds`] for a duration.
pub fn check_duration(key: &str, value: Duration, most: f64) -> Result<(), InvalidSetting> {
    check_seconds(key, value.as_secs_f64(), most)
}
