//! One line of the results file: a row, and what became of it.

use jiff::Timestamp;

use super::{Cause, Job, Recipient, Rejected, Status, Timing};

/// One line of the results file.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub recipient: Recipient,
    pub instance_id: String,
    pub status: Status,
    /// The API's `data.status` (`QUEUED`) for a message it accepted.
    pub api_status: String,
    /// The API's `data.id` for a message it accepted.
    pub message_id: String,
    pub http_status: Option<u16>,
    pub attempts: u32,
    pub delay: Option<f64>,
    pub typing: Option<f64>,
    pub error: String,
    pub finished_at: Timestamp,
    /// A `SENT` line that an earlier run of the campaign wrote, written
    /// again: the summary counts it `SKIPPED`.
    pub sent_earlier: bool,
}

impl Outcome {
    /// A row that failed validation or repeats an earlier one, found so
    /// `at` (each constructor takes its line's time from the run's clock).
    pub fn rejected(rejected: Rejected, at: Timestamp) -> Self {
        let error = rejected.error();
        Outcome {
            error,
            ..Outcome::blank(rejected.recipient, rejected.status, at)
        }
    }

    /// A job with no answer yet: the base of a send's line.
    pub fn for_job(job: &Job, instance_id: &str, status: Status, at: Timestamp) -> Self {
        Outcome::of(job.recipient.clone(), &job.timing, instance_id, status, at)
    }

    /// The line of a job held back for `cause`: its status and words come
    /// from the cause, and a card an earlier run sent or may have sent keeps
    /// that run's number, message id and time.
    pub fn held(job: &Job, instance_id: &str, cause: Cause, at: Timestamp) -> Self {
        let mut outcome = Outcome::for_job(job, instance_id, cause.status(), at);
        let words = cause.words(&job.recipient);
        let earlier = match cause {
            Cause::SentEarlier(earlier)
            | Cause::InDoubt(earlier)
            | Cause::InFlight { earlier, .. } => earlier,
            // A card that went, or may have, of which the ledger keeps
            // nothing more (its recipient was forgotten on request).
            Cause::Forgotten(forgotten) => {
                outcome.add_error(words);
                outcome.sent_earlier = outcome.status == Status::Sent;
                if let Ok(at) = Timestamp::from_nanosecond(i128::from(forgotten.left_at)) {
                    outcome.finished_at = at;
                }
                return outcome;
            }
            // A card that does not go has no delay or typing (nor a note
            // about them).
            _ => {
                outcome.delay = None;
                outcome.typing = None;
                outcome.error = words;
                return outcome;
            }
        };
        outcome.add_error(words);
        // A card that went, or may have: the line of that card, with the
        // row's delay and typing.
        if !earlier.instance_id.is_empty() {
            outcome.instance_id = earlier.instance_id;
        }
        outcome.sent_earlier = outcome.status == Status::Sent;
        outcome.api_status = earlier.api_status;
        outcome.message_id = earlier.message_id;
        outcome.http_status = earlier.http_status;
        outcome.attempts = earlier.attempts;
        let at = match earlier.finished_at {
            0 => earlier.left_at,
            at => at,
        };
        if let Ok(at) = Timestamp::from_nanosecond(i128::from(at)) {
            outcome.finished_at = at;
        }
        outcome
    }

    /// The status the summary counts this line under: `SKIPPED` for a row
    /// an earlier run sent, else its own.
    pub fn counted_as(&self) -> Status {
        match self.sent_earlier {
            true => Status::Skipped,
            false => self.status,
        }
    }

    /// A dry run's `VALID` line, taking the job's strings rather than copying them.
    pub fn valid(job: Job, instance_id: &str, at: Timestamp) -> Self {
        Outcome::of(job.recipient, &job.timing, instance_id, Status::Valid, at)
    }

    fn of(
        recipient: Recipient,
        timing: &Timing,
        instance_id: &str,
        status: Status,
        at: Timestamp,
    ) -> Self {
        Outcome {
            instance_id: instance_id.to_string(),
            delay: Some(timing.delay),
            typing: Some(timing.typing),
            error: timing.note.clone().unwrap_or_default(),
            ..Outcome::blank(recipient, status, at)
        }
    }

    /// A line with nothing but the row and its status.
    fn blank(recipient: Recipient, status: Status, at: Timestamp) -> Self {
        Outcome {
            recipient,
            instance_id: String::new(),
            status,
            api_status: String::new(),
            message_id: String::new(),
            http_status: None,
            attempts: 0,
            delay: None,
            typing: None,
            error: String::new(),
            finished_at: at,
            sent_earlier: false,
        }
    }

    /// Adds to the error column, first things first.
    pub fn add_error(&mut self, error: String) {
        let note = std::mem::take(&mut self.error);
        self.error = [error, note]
            .into_iter()
            .filter(|part| !part.is_empty())
            .collect::<Vec<_>>()
            .join("; ");
    }
}
