//! The reading side of a run, on a blocking thread: every row of the
//! campaign goes on as a job to the dispatcher, or straight to the results
//! as a line (rejected, already sent by an earlier run, suppressed, or
//! `VALID` in a dry run).

use std::collections::HashMap;
use std::time::Duration;

use jiff::Timestamp;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::campaign::{Campaign, CampaignError};
use crate::dispatch;
use crate::dispatch::at_text;
use crate::ledger::{RecentContacts, Suppression};
use crate::pacing::nanos;
use crate::report::CheckReport;
use crate::results::Previous;
use crate::types::{Job, Outcome, Row, Status};

/// The reading side of a run: rejected rows go straight to the results,
/// jobs to the dispatcher, or, in a dry run (`jobs` is `None`), to the
/// results as `VALID`. With `--resume`, jobs earlier runs sent are `SKIPPED`
/// and those they may have sent `UNKNOWN`.
pub struct Reading {
    pub jobs: Option<mpsc::Sender<Job>>,
    pub outcomes: mpsc::Sender<Outcome>,
    /// The instances rows are assigned to, for the lines this side writes.
    pub instances: Vec<String>,
    pub previous: Option<Previous>,
    /// The suppression list, by phone: those recipients are never sent to.
    pub suppressed: HashMap<String, Suppression>,
    /// Who the ledger knew, at the start, to have been reached recently.
    pub recent: RecentContacts,
    /// `schedule.cooldown`.
    pub cooldown: Option<Duration>,
    pub resend_unknown: bool,
    pub stop: CancellationToken,
    /// The campaign is a regular file: once the run stops, its remaining
    /// rows are still read, to be written DEFERRED. A pipe may never end,
    /// so reading it stops with the run.
    pub source_ends: bool,
}

impl Reading {
    pub fn read(
        self,
        mut campaign: Campaign,
        mut check: CheckReport,
    ) -> Result<CheckReport, CampaignError> {
        for row in &mut campaign {
            let mut row = row?;
            if let Row::Job(job) = &mut row {
                job.resending = self.resending(job);
            }
            let earlier = match &row {
                Row::Job(job) => self
                    .earlier_verdict(job)
                    .or_else(|| self.suppression(job))
                    .or_else(|| self.recently_reached(job)),
                Row::Rejected(_) => None,
            };
            // Where a job goes: for the estimate, and for a dry run's line.
            let instance = match (&row, &earlier) {
                (Row::Job(job), None) => self.instance_index(job),
                _ => 0,
            };
            if earlier.is_none() {
                check.add(&row, instance);
            }
            let delivered = match (row, &self.jobs, earlier) {
                (Row::Rejected(rejected), _, _) => self
                    .outcomes
                    .blocking_send(Outcome::rejected(rejected))
                    .is_ok(),
                (Row::Job(_), _, Some(outcome)) => self.outcomes.blocking_send(outcome).is_ok(),
                (Row::Job(job), Some(jobs), None) => jobs.blocking_send(job).is_ok(),
                (Row::Job(job), None, None) => {
                    let instance_id = self.instances.get(instance).map_or("", String::as_str);
                    self.outcomes
                        .blocking_send(Outcome::valid(job, instance_id))
                        .is_ok()
                }
            };
            // A dry run just stops; a send of a file goes on so that every
            // row gets its line (DEFERRED from the dispatcher).
            let stops_here = self.jobs.is_none() || !self.source_ends;
            if !delivered || (stops_here && self.stop.is_cancelled()) {
                break;
            }
        }
        Ok(check)
    }

    /// The instance that sends (or would send) `job`; empty when none is set.
    fn instance_for(&self, job: &Job) -> &str {
        match self.instances.as_slice() {
            [] => "",
            instances => &instances[self.instance_index(job)],
        }
    }

    /// Its place in `instances` (0 when none is set).
    fn instance_index(&self, job: &Job) -> usize {
        dispatch::assign(&job.recipient.to, &self.instances)
    }

    /// The `SUPPRESSED` line of a recipient on the suppression list.
    fn suppression(&self, job: &Job) -> Option<Outcome> {
        let entry = self.suppressed.get(&job.recipient.to)?;
        let mut outcome = Outcome::for_job(job, self.instance_for(job), Status::Suppressed);
        outcome.delay = None;
        outcome.typing = None;
        let reason = match entry.reason.is_empty() {
            true => String::new(),
            false => format!(" ({})", entry.reason),
        };
        outcome.error = format!(
            "on the suppression list since {}{reason}; never sent",
            entry.added_at
        );
        Some(outcome)
    }

    /// Whether `job` is an `UNKNOWN` of an earlier run the user asked to
    /// send again.
    fn resending(&self, job: &Job) -> bool {
        self.resend_unknown
            && self
                .previous
                .as_ref()
                .and_then(|previous| previous.verdict(&job.recipient.key))
                == Some(Status::Unknown)
    }

    /// The line of a recipient the ledger knew, at the run's start, to have
    /// had this card within 24 hours (`DUPLICATE`) or any message within the
    /// cooldown (`DEFERRED` until it may go). The ledger's check as each
    /// message leaves is what holds against runs at the same moment; this
    /// one marks rows before any turn is booked, and shows them in a dry run.
    fn recently_reached(&self, job: &Job) -> Option<Outcome> {
        let recipient = &job.recipient;
        let now = Timestamp::now().as_nanosecond();
        let card_at = self
            .recent
            .cards
            .get(&recipient.to)
            .and_then(|cards| cards.get(&recipient.contact_phone))
            .filter(|_| !job.resending);
        let (status, error) = match (card_at, self.recent.recipients.get(&recipient.to), self.cooldown) {
            (Some(at), _, _) => (
                Status::Duplicate,
                format!(
                    "the same card went to this recipient at {} (a run sharing the ledger); not sent again within 24 hours",
                    at_text(*at)
                ),
            ),
            (None, Some(last), Some(cooldown)) if i128::from(last.saturating_add(nanos(cooldown))) > now => (
                Status::Deferred,
                format!(
                    "the recipient was reached recently (schedule.cooldown); not before {}, when --resume sends it",
                    at_text(last.saturating_add(nanos(cooldown)))
                ),
            ),
            _ => return None,
        };
        let mut outcome = Outcome::for_job(job, self.instance_for(job), status);
        outcome.delay = None;
        outcome.typing = None;
        outcome.error = error;
        Some(outcome)
    }

    fn earlier_verdict(&self, job: &Job) -> Option<Outcome> {
        let verdict = self.previous.as_ref()?.verdict(&job.recipient.key)?;
        let (status, error) = match verdict {
            Status::Sent => (Status::Skipped, "already sent by an earlier run"),
            Status::Unknown if !self.resend_unknown => (
                Status::Unknown,
                "an earlier run may have delivered it; not sent again (--resend-unknown sends it)",
            ),
            _ => return None,
        };
        let mut outcome = Outcome::for_job(job, self.instance_for(job), status);
        outcome.delay = None;
        outcome.typing = None;
        outcome.error = error.to_string();
        Some(outcome)
    }
}
