//! The admission step as rows are read: each job is admitted on what the
//! ledger knows of it (one question to the ledger a batch of rows), and goes on to the
//! dispatcher, or in a dry run to the results as `VALID`; a row held back
//! goes straight to the results, with its cause. The ledger has its last
//! word again as each card leaves, against every run at that moment; this
//! step keeps turns from being booked for rows that will not go, and lets
//! a dry run show them.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::sync::mpsc;

use crate::admission::{self, Admission, Rules};
use crate::dispatch::{self, RunControl};
use crate::ledger::{Ledger, LedgerError, Lookup};
use crate::report::CheckReport;
use crate::types::{AsRead, Cause, Facts, Fate, Job, Outcome, Remembered, Row, Status};

/// Batches whose facts are asked for at once: one admitted while the ledger
/// reads the next.
const ASKED_AHEAD: usize = 2;

/// The ledger's answer to come: what it knows of each job of a batch, and
/// its epoch.
type Asking = tokio::task::JoinHandle<Result<(Vec<Facts>, Option<u64>), LedgerError>>;

/// What the admission step works with.
pub struct Admitting {
    /// The shared ledger, whatever the run: what it knows holds for
    /// rehearsals too.
    pub ledger: Arc<Ledger>,
    /// A send remembers the repeats it finds, so that no later run of the
    /// campaign tries them; a rehearsal or a dry run enters nothing.
    pub remembers: bool,
    pub campaign: String,
    pub rules: Rules,
    /// The instances rows are assigned to, for the lines this step writes.
    pub instances: Vec<String>,
    /// Where jobs go; `None` in a dry run, whose jobs are `VALID` lines.
    pub jobs: Option<mpsc::Sender<Job>>,
    pub outcomes: mpsc::Sender<Outcome>,
    pub control: Arc<RunControl>,
    /// `schedule.daily_new_contacts` is set: the report counts the rows to
    /// recipients the ledger never saw reached.
    pub counts_first_contacts: bool,
}

impl Admitting {
    /// Admits every row from `rows`; returns the dry-run report of the
    /// rows that were not held back.
    pub async fn admit(
        self,
        rows: mpsc::Receiver<Vec<Row>>,
        mut check: CheckReport,
    ) -> CheckReport {
        // Once the ledger cannot be read, the rest is written unchecked.
        let mut lost: Option<String> = None;
        let mut ahead = AskedAhead {
            rows,
            rows_open: true,
            asked: VecDeque::new(),
        };
        while let Some((batch, asking)) = ahead.next(&self).await {
            let answer = asking.await.expect("asking the ledger does not panic");
            let (facts, epoch) = self.facts_of(answer, &mut lost);
            self.admit_rows(batch, facts, epoch, lost.as_deref(), &mut check)
                .await;
        }
        check
    }

    /// The facts of a batch and the ledger's epoch, as the ledger answered;
    /// none once it could not answer: the run halts, and why is kept in
    /// `lost` for the lines of the rows left.
    fn facts_of(
        &self,
        answer: Result<(Vec<Facts>, Option<u64>), LedgerError>,
        lost: &mut Option<String>,
    ) -> (Option<Vec<Facts>>, Option<u64>) {
        if lost.is_some() {
            return (None, None);
        }
        match answer {
            Ok((facts, epoch)) => (Some(facts), epoch),
            Err(error) => {
                let control = &self.control;
                control.halt(format!("cannot read the ledger: {error}"));
                *lost = Some(error.to_string());
                (None, None)
            }
        }
    }

    /// Admits each row of `batch` on its facts (`None`: the ledger could
    /// not be read, for the reason in `lost`): on to the dispatcher, or its
    /// line; then remembers the repeats found.
    async fn admit_rows(
        &self,
        mut batch: Vec<Row>,
        facts: Option<Vec<Facts>>,
        epoch: Option<u64>,
        lost: Option<&str>,
        check: &mut CheckReport,
    ) {
        let mut facts = facts.map(Vec::into_iter);
        let now = self.ledger.clock().now_nanos();
        let mut repeats = Vec::new();
        for row in batch.drain(..) {
            let mut job = match row {
                Row::Job(job) => job,
                Row::Rejected(rejected) => {
                    check.add_rejected(&rejected);
                    self.line(Outcome::rejected(rejected, self.ledger.clock().now()))
                        .await;
                    continue;
                }
            };
            let instance = dispatch::assign(&job.recipient.to, &self.instances);
            let Some(facts) = facts.as_mut().and_then(Iterator::next) else {
                let why = lost.unwrap_or("the ledger could not be read");
                self.line(self.unchecked(&job, instance, why)).await;
                continue;
            };
            let never_reached = facts.last_reached.is_none();
            match self.admit_job(&mut job, facts, epoch, now, &mut repeats) {
                Admission::Held(cause) => {
                    let at = self.ledger.clock().now();
                    let outcome = Outcome::held(&job, self.instance_id(instance), cause, at);
                    self.line(outcome).await;
                }
                Admission::Goes { .. } => {
                    check.add_job(&job, instance);
                    if never_reached && self.counts_first_contacts {
                        check.add_first_contact(instance);
                    }
                    self.goes(job, instance).await;
                }
            }
        }
        if self.remembers && !repeats.is_empty() {
            if let Err(error) = self.ledger.remember(&self.campaign, repeats).await {
                let control = &self.control;
                control.halt(format!("cannot write to the ledger: {error}"));
            }
        }
    }

    /// Whether `job` goes, as `admission` decides on its `facts`; the facts
    /// go with it for the door to check again, and a repeat the campaign
    /// does not remember yet joins `repeats`, to be remembered.
    fn admit_job(
        &self,
        job: &mut Job,
        facts: Facts,
        epoch: Option<u64>,
        now: i64,
        repeats: &mut Vec<(String, Remembered)>,
    ) -> Admission {
        let known_repeat = is_remembered_repeat(&facts);
        // Only the ledger the facts came from can tell at the door whether
        // they still hold.
        job.as_read = epoch.filter(|_| self.remembers).map(|epoch| {
            Box::new(AsRead {
                facts: facts.clone(),
                epoch,
            })
        });
        let admission = admission::admit(facts, &self.rules, now);
        if let (Admission::Held(Cause::SameCard { at }), false) = (&admission, known_repeat) {
            let recipient = &job.recipient;
            let repeat = Remembered::repeat(&recipient.to, &recipient.contact_phone, "", *at);
            repeats.push((recipient.key.clone(), repeat));
        }
        admission
    }

    /// Asks the ledger what it knows of each job of `batch`; the answer
    /// comes by the handle.
    fn ask(&self, batch: Vec<Row>) -> (Vec<Row>, Asking) {
        let lookups: Vec<Lookup> = batch
            .iter()
            .filter_map(|row| match row {
                Row::Job(job) => Some(Lookup {
                    key: job.recipient.key.clone(),
                    to: job.recipient.to.clone(),
                    card_phone: job.recipient.contact_phone.clone(),
                }),
                Row::Rejected(_) => None,
            })
            .collect();
        let (ledger, campaign) = (self.ledger.clone(), self.campaign.clone());
        // The recipient's last contact: for a cooldown, and for the report
        // of first contacts.
        let with_cooldown = self.rules.cooldown.is_some() || self.counts_first_contacts;
        let asking = tokio::spawn(async move {
            match lookups.is_empty() {
                true => Ok((Vec::new(), None)),
                false => ledger.facts(&campaign, lookups, with_cooldown).await,
            }
        });
        (batch, asking)
    }

    /// A job that goes: to the dispatcher, or in a dry run its `VALID` line.
    async fn goes(&self, job: Job, instance: usize) {
        match &self.jobs {
            Some(jobs) => {
                // The dispatcher takes every job until the end; should it
                // be gone, the job still gets its line.
                if let Err(refused) = jobs.send(job).await {
                    let why = "the run stopped before it could be sent";
                    self.line(self.unchecked(&refused.0, instance, why)).await;
                }
            }
            None => {
                let at = self.ledger.clock().now();
                let valid = Outcome::valid(job, self.instance_id(instance), at);
                self.line(valid).await;
            }
        }
    }

    /// The line of a job not admitted because the run could not go on.
    fn unchecked(&self, job: &Job, instance: usize, why: &str) -> Outcome {
        let at = self.ledger.clock().now();
        let mut outcome = Outcome::for_job(job, self.instance_id(instance), Status::Deferred, at);
        outcome.add_error(format!("not sent: {why}; --resume sends it"));
        outcome
    }

    fn instance_id(&self, index: usize) -> &str {
        self.instances.get(index).map_or("", String::as_str)
    }

    async fn line(&self, outcome: Outcome) {
        // A line a row is for -v: the results file has every row.
        let what = match outcome.status {
            Status::Sent => "sent by an earlier run",
            _ => "not sent",
        };
        tracing::debug!(row = outcome.recipient.row, status = outcome.status.as_str(), error = %outcome.error, "{what}");
        // The writer goes away early only when it cannot write, which
        // halts the run: the line has nowhere to go.
        let _ = self.outcomes.send(outcome).await;
    }
}

/// The batches of rows, each with the ledger's answer to come, oldest
/// first: the ledger reads the next while the step admits one.
struct AskedAhead {
    rows: mpsc::Receiver<Vec<Row>>,
    rows_open: bool,
    asked: VecDeque<(Vec<Row>, Asking)>,
}

impl AskedAhead {
    /// The oldest batch asked about, once up to `ASKED_AHEAD` are asked
    /// about (waiting for a batch only when none is); `None` once the rows
    /// are done.
    async fn next(&mut self, admitting: &Admitting) -> Option<(Vec<Row>, Asking)> {
        if self.asked.is_empty() && self.rows_open {
            match self.rows.recv().await {
                Some(batch) => self.asked.push_back(admitting.ask(batch)),
                None => self.rows_open = false,
            }
        }
        while self.rows_open && self.asked.len() < ASKED_AHEAD {
            match self.rows.try_recv() {
                Ok(batch) => self.asked.push_back(admitting.ask(batch)),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => self.rows_open = false,
            }
        }
        self.asked.pop_front()
    }
}

/// Whether the campaign already remembers the row as a repeat.
fn is_remembered_repeat(facts: &Facts) -> bool {
    facts
        .remembered
        .as_ref()
        .is_some_and(|earlier| earlier.fate == Fate::Duplicate)
}
