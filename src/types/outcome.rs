//! One line of the results file: a row, and what became of it.

use jiff::Timestamp;

use super::{Job, Recipient, Rejected, Status, Timing};

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
}

impl Outcome {
    /// A row that failed validation or repeats an earlier one.
    pub fn rejected(rejected: Rejected) -> Self {
        let error = rejected.error();
        Outcome {
            error,
            ..Outcome::blank(rejected.recipient, rejected.status)
        }
    }

    /// A job with no answer yet: the base of a send's line.
    pub fn for_job(job: &Job, instance_id: &str, status: Status) -> Self {
        Outcome::of(job.recipient.clone(), &job.timing, instance_id, status)
    }

    /// A dry run's `VALID` line, taking the job's strings rather than copying them.
    pub fn valid(job: Job, instance_id: &str) -> Self {
        Outcome::of(job.recipient, &job.timing, instance_id, Status::Valid)
    }

    fn of(recipient: Recipient, timing: &Timing, instance_id: &str, status: Status) -> Self {
        Outcome {
            instance_id: instance_id.to_string(),
            delay: Some(timing.delay),
            typing: Some(timing.typing),
            error: timing.note.clone().unwrap_or_default(),
            ..Outcome::blank(recipient, status)
        }
    }

    /// A line with nothing but the row and its status.
    fn blank(recipient: Recipient, status: Status) -> Self {
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
            finished_at: Timestamp::now(),
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
