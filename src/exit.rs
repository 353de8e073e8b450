//! How a run ends: the errors that stop it before it can start, and the
//! process exit code of every end, decided here and nowhere else.

use crate::api::ClientError;
use crate::campaign::CampaignError;
use crate::config::ConfigError;
use crate::ledger::LedgerError;
use crate::results::{LockError, ResultsError};
use crate::types::{Status, StopReason, Tally};

/// Why a run could not start, or could not finish writing its results.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// A flag or a missing setting: the message says what to do.
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Client(#[from] ClientError),
    #[error("cannot start the mock API: {0}")]
    Mock(std::io::Error),
    /// The ledger cannot be opened: nothing is sent without it.
    #[error("{0}; nothing was sent")]
    Ledger(#[from] LedgerError),
    /// The run stopped after messages may have gone out, for a reason
    /// other than its rows (the results file could not be written).
    #[error("halted: {0}")]
    Halted(String),
    /// A signal came before the run could start.
    #[error("interrupted before anything was sent")]
    Interrupted,
    /// A signal stopped a command of a moment (`numbers`, `suppress`,
    /// `ledger`, `report`) before it finished.
    #[error(
        "interrupted: `{0}` stopped before it said it was done; a change to the ledger it was \
         making may or may not have been made (`numbers`, `suppress list` or `ledger stats` \
         shows which)"
    )]
    Stopped(&'static str),
}

/// How a run ended, as the process exit code (the README's table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ExitCode {
    /// The campaign is complete: every row SENT, or never to be sent
    /// (INVALID, SUPPRESSED, DUPLICATE, UNSENDABLE); with `--strict`, every
    /// row SENT. In a dry run, every row VALID (or sent before), a
    /// DUPLICATE or SUPPRESSED.
    Success = 0,
    /// The run finished, but rows are left that a later run could send
    /// (FAILED, DEFERRED, rows past `--limit`), or may have been delivered
    /// (UNKNOWN).
    NotAllSent = 1,
    /// Usage, config or campaign-file error: nothing was sent.
    Usage = 2,
    /// Halted: the API refused the credentials, or too many messages
    /// failed; or nothing more was sent because the API refused the numbers
    /// earlier (only `numbers resume` lets them send again).
    Halted = 3,
    /// Another run holds the lock on the results file.
    Locked = 4,
    /// Held back by the send window or the daily cap; rows are DEFERRED.
    Deferred = 5,
    /// Interrupted by SIGINT or SIGTERM; `--resume` carries on.
    Interrupted = 130,
}

impl ExitCode {
    /// A run that went through its campaign, or stopped for `stopped`;
    /// `rows` are the campaign's rows after it (a send's results file, one
    /// line a row: rows earlier runs sent count as sent).
    pub fn of_run(stopped: Option<&StopReason>, rows: &Tally, ending: Ending) -> Self {
        match stopped {
            Some(StopReason::Halted(_)) => ExitCode::Halted,
            // Numbers only a person can let send again: an alert each run.
            Some(StopReason::Deferred(deferral)) if deferral.needs_a_person() => ExitCode::Halted,
            Some(StopReason::Interrupted) => ExitCode::Interrupted,
            Some(StopReason::Deferred(_)) => ExitCode::Deferred,
            None if rows.rows_where(|status| ending.done(status)) == rows.rows() => {
                ExitCode::Success
            }
            None => ExitCode::NotAllSent,
        }
    }

    /// A send or a check at its end: [`ExitCode::of_run`], then what its
    /// rows do not show. A number the API refused (`refused_numbers`) sends
    /// nothing until a person resumes it, whatever the others did: an alert,
    /// every run. Rows `--limit` left (`past_limit`) keep a campaign from
    /// being done.
    pub fn of_finished(
        stopped: Option<&StopReason>,
        rows: &Tally,
        ending: Ending,
        refused_numbers: bool,
        past_limit: bool,
    ) -> Self {
        match ExitCode::of_run(stopped, rows, ending) {
            ExitCode::Success | ExitCode::NotAllSent | ExitCode::Deferred if refused_numbers => {
                ExitCode::Halted
            }
            ExitCode::Success if past_limit => ExitCode::NotAllSent,
            exit => exit,
        }
    }

    /// A run that could not start: another run's lock, or anything the user must fix.
    pub fn of_error(error: &RunError) -> Self {
        match error {
            RunError::Results(ResultsError::Lock(LockError::Held { .. })) => ExitCode::Locked,
            RunError::Interrupted | RunError::Stopped(_) => ExitCode::Interrupted,
            RunError::Halted(_) => ExitCode::Halted,
            _ => ExitCode::Usage,
        }
    }

    /// A run aborted by a second signal.
    pub fn of_abort() -> Self {
        ExitCode::Interrupted
    }

    /// A run whose `--report` page could not be written at its end, however
    /// it ended otherwise: only a person can write it, so an alert.
    pub fn of_unwritten_report() -> Self {
        ExitCode::Halted
    }

    pub fn code(self) -> u8 {
        self as u8
    }
}

/// What a row must be for a run to have done its work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// A send: nothing is left that a later run could send.
    Complete,
    /// `--strict`: every row SENT.
    Strict,
    /// A dry run: every row would go (or went before), or is one that no
    /// fix of the file would send: a repeat (of a row, or of a card the
    /// person had within a day), an opted-out recipient.
    Check,
}

impl Ending {
    pub fn done(self, status: Status) -> bool {
        match self {
            Ending::Complete => status.is_final(),
            Ending::Strict => matches!(status, Status::Sent | Status::Skipped),
            Ending::Check => matches!(
                status,
                Status::Valid
                    | Status::Sent
                    | Status::Skipped
                    | Status::Duplicate
                    | Status::Suppressed
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(statuses: &[Status]) -> Tally {
        let mut tally = Tally::default();
        statuses.iter().for_each(|status| tally.add(*status));
        tally
    }

    #[test]
    fn a_complete_campaign_exits_zero_and_strict_wants_every_row_sent() {
        let all_sent = tally(&[Status::Sent, Status::Sent]);
        assert_eq!(
            ExitCode::of_run(None, &all_sent, Ending::Strict),
            ExitCode::Success
        );
        let never_to_send = tally(&[
            Status::Sent,
            Status::Invalid,
            Status::Suppressed,
            Status::Duplicate,
        ]);
        assert_eq!(
            ExitCode::of_run(None, &never_to_send, Ending::Complete),
            ExitCode::Success
        );
        assert_eq!(
            ExitCode::of_run(None, &never_to_send, Ending::Strict),
            ExitCode::NotAllSent
        );
        for left in [Status::Failed, Status::Unknown, Status::Deferred] {
            let rows = tally(&[Status::Sent, left]);
            assert_eq!(
                ExitCode::of_run(None, &rows, Ending::Complete),
                ExitCode::NotAllSent,
                "{left:?}"
            );
        }
        let dry_run = tally(&[Status::Valid, Status::Sent, Status::Duplicate]);
        assert_eq!(
            ExitCode::of_run(None, &dry_run, Ending::Check),
            ExitCode::Success
        );
        let dry_run = tally(&[Status::Valid, Status::Invalid]);
        assert_eq!(
            ExitCode::of_run(None, &dry_run, Ending::Check),
            ExitCode::NotAllSent
        );
    }

    #[test]
    fn a_refused_number_alerts_and_rows_past_the_limit_are_left() {
        let done = tally(&[Status::Sent]);
        let left = tally(&[Status::Sent, Status::Deferred]);
        let finished = |rows: &Tally, refused, past_limit| {
            ExitCode::of_finished(None, rows, Ending::Complete, refused, past_limit)
        };
        assert_eq!(finished(&done, false, false), ExitCode::Success);
        assert_eq!(finished(&done, true, false), ExitCode::Halted);
        assert_eq!(finished(&left, true, false), ExitCode::Halted);
        assert_eq!(finished(&done, false, true), ExitCode::NotAllSent);
        assert_eq!(finished(&left, false, true), ExitCode::NotAllSent);
        let interrupted = Some(&StopReason::Interrupted);
        assert_eq!(
            ExitCode::of_finished(interrupted, &done, Ending::Complete, true, true),
            ExitCode::Interrupted
        );
    }

    #[test]
    fn a_stopped_run_exits_with_the_code_of_its_stop() {
        let rows = tally(&[Status::Sent]);
        for (stop, code) in [
            (StopReason::Interrupted, 130),
            (StopReason::Halted("401".into()), 3),
            (
                StopReason::Deferred(crate::types::Deferral {
                    cause: crate::types::Hold::Window,
                    why: "window".into(),
                    until: None,
                }),
                5,
            ),
        ] {
            assert_eq!(
                ExitCode::of_run(Some(&stop), &rows, Ending::Complete).code(),
                code
            );
        }
    }

    #[test]
    fn a_held_lock_exits_4_and_other_errors_2() {
        let held = RunError::Results(ResultsError::Lock(LockError::Held {
            path: "x.lock".into(),
            holder: "pid 1".into(),
        }));
        assert_eq!(ExitCode::of_error(&held), ExitCode::Locked);
        let usage = RunError::Usage("no API key".into());
        assert_eq!(ExitCode::of_error(&usage), ExitCode::Usage);
    }
}
