//! Why a run stopped taking rows before the end of its campaign.

use jiff::Timestamp;

/// Why the run stopped taking rows before the end of the campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// No instance is left: every further message would fail the same way.
    Halted(String),
    /// Held back until later: the send window (`--no-wait`), the daily
    /// cap, or the API asking for a long wait.
    Deferred(Deferral),
}

/// A stop until later, and when later is, where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    pub cause: Hold,
    /// In words, as `DEFERRED` lines give it.
    pub why: String,
    /// When sending may go on.
    pub until: Option<Timestamp>,
}

/// What holds messages back until later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Window,
    DailyCap,
    /// The API's `Retry-After` asked for longer than `retry.max_backoff`.
    ApiWait,
}

impl StopReason {
    /// Why, in the words a `DEFERRED` line gives.
    pub fn why(&self) -> String {
        match self {
            StopReason::Interrupted => "the run was interrupted".to_string(),
            StopReason::Halted(reason) => format!("the run halted ({reason})"),
            StopReason::Deferred(deferral) => deferral.why.clone(),
        }
    }

    /// The same for a machine: `interrupted`, `halted`, `window`, `daily_cap`, `api_wait`.
    pub fn code(&self) -> &'static str {
        match self {
            StopReason::Interrupted => "interrupted",
            StopReason::Halted(_) => "halted",
            StopReason::Deferred(deferral) => match deferral.cause {
                Hold::Window => "window",
                Hold::DailyCap => "daily_cap",
                Hold::ApiWait => "api_wait",
            },
        }
    }

    /// When sending may go on, where known.
    pub fn until(&self) -> Option<Timestamp> {
        match self {
            StopReason::Deferred(deferral) => deferral.until,
            _ => None,
        }
    }
}
