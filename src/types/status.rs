//! The tool's verdict on one row, as the results file writes it.

/// The tool's verdict on one row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Status {
    /// The API accepted the message.
    Sent,
    /// The API refused it, or it could not be sent.
    Failed,
    /// The row did not pass validation; not sent.
    Invalid,
    /// The same job as an earlier row; not sent.
    Duplicate,
    /// The message may or may not have reached the API.
    Unknown,
    /// Sent by an earlier run of the campaign: counted in a run's summary,
    /// never written (the row's line is that run's `SENT` line).
    Skipped,
    /// Not sent: the run stopped first; a later `--resume` sends it.
    Deferred,
    /// Dry run: the row would be sent.
    Valid,
    /// The recipient is on the suppression list (opted out); never sent.
    Suppressed,
    /// It cannot go under the run's settings (a send window never open in
    /// all of the recipient's zones at once): final until they change.
    Unsendable,
}

impl Status {
    pub const ALL: [Status; 10] = [
        Status::Sent,
        Status::Failed,
        Status::Invalid,
        Status::Duplicate,
        Status::Unknown,
        Status::Skipped,
        Status::Deferred,
        Status::Valid,
        Status::Suppressed,
        Status::Unsendable,
    ];

    /// What the status says of a row, in a line (the manual page's list).
    pub fn meaning(self) -> &'static str {
        match self {
            Status::Sent => "the API accepted the message; the message_id column names it",
            Status::Failed => "the API refused it, or it could not be sent; --resume tries again",
            Status::Invalid => "the row did not pass the checks (the error column says how); not sent",
            Status::Duplicate => "the same card as an earlier row, or sent to the person within a day; not sent",
            Status::Unknown => "the message may or may not have reached the API; check before --resume --resend-unknown",
            Status::Skipped => "sent by an earlier run of the campaign: counted in the summary, never written",
            Status::Deferred => "not sent yet: the run stopped first (window, cap, signal, cooldown); --resume sends it",
            Status::Valid => "a dry run's verdict: the row would be sent",
            Status::Suppressed => "the recipient opted out (the suppression list); never sent",
            Status::Unsendable => "it cannot go under the settings (a send window never open in all the recipient's zones; the error column says which); once they change, --resume sends it",
        }
    }

    /// An answer from (or about) the API, as opposed to a verdict on the file:
    /// flushed without delay, since it records what happened to a real message.
    pub fn is_an_answer(self) -> bool {
        matches!(self, Status::Sent | Status::Failed | Status::Unknown)
    }

    /// Nothing a later run of the campaign could send is left for the row:
    /// it was sent, or never will be (invalid, opted out, a repeat, not
    /// sendable under the settings).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            Status::Sent
                | Status::Skipped
                | Status::Invalid
                | Status::Suppressed
                | Status::Duplicate
                | Status::Unsendable
        )
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Status::Sent => "SENT",
            Status::Failed => "FAILED",
            Status::Invalid => "INVALID",
            Status::Duplicate => "DUPLICATE",
            Status::Unknown => "UNKNOWN",
            Status::Skipped => "SKIPPED",
            Status::Deferred => "DEFERRED",
            Status::Valid => "VALID",
            Status::Suppressed => "SUPPRESSED",
            Status::Unsendable => "UNSENDABLE",
        }
    }

    pub fn parse(text: &str) -> Option<Status> {
        Status::ALL
            .into_iter()
            .find(|status| status.as_str() == text)
    }
}
