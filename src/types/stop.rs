//! Why a run stopped taking rows before the end of its campaign.

/// Why the run stopped taking rows before the end of the campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// No instance is left: every further message would fail the same way.
    Halted(String),
    /// Held back by the send window (`--no-wait`) or the daily cap.
    Deferred(String),
}

impl StopReason {
    /// Why, in the words a `DEFERRED` line gives.
    pub fn why(&self) -> String {
        match self {
            StopReason::Interrupted => "the run was interrupted".to_string(),
            StopReason::Halted(reason) => format!("the run halted ({reason})"),
            StopReason::Deferred(reason) => reason.clone(),
        }
    }
}
