//! The end-of-run summary on stdout, as text or one JSON object: what this
//! run did, where the campaign stands, why it stopped and what to do next.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::check::{counted, first_rows, View};
use super::CheckReport;
use crate::campaign::NameFrom;
use crate::exit::{Ending, ExitCode};
use crate::types::{FailureGroup, Failures, Status, StopReason, Tally};

/// The end-of-run summary, printed on stdout. A run that could not start
/// has one too, with its `error` and no counts.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub version: &'static str,
    /// The campaign file.
    pub campaign: String,
    /// The campaign's name, which its memory in the ledger goes by (`None`
    /// for a run that could not start before it was known).
    pub campaign_name: Option<String>,
    /// Where the name came from: `set` (`campaign.name` or `--campaign`),
    /// `file` (the file's name without its extension) or `file_without_date`
    /// (and without the date it ended in).
    pub campaign_name_from: Option<NameFrom>,
    pub results: String,
    pub dry_run: bool,
    /// A `--mock` rehearsal that did not wait for the pace (`--real-pace`
    /// makes it wait): its time says nothing of a real send's.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub at_speed: bool,
    pub started_at: String,
    pub finished_at: String,
    pub elapsed_seconds: f64,
    /// Rows this run wrote a line for.
    pub rows: u64,
    /// This run's lines by status.
    pub counts: BTreeMap<&'static str, u64>,
    /// This run's lines by instance and status.
    pub instances: BTreeMap<String, BTreeMap<&'static str, u64>>,
    /// Instances that sent no more in this run, and why.
    pub left_rotation: BTreeMap<String, String>,
    /// Instances whose accepted messages the API's answers said were for
    /// another instance, and which: check `api.instance_id`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub answered_for: BTreeMap<String, String>,
    /// The campaign as the results file holds it after the run.
    pub state: Option<CampaignState>,
    pub exit_code: u8,
    /// The same, for the process.
    #[serde(skip)]
    pub exit: ExitCode,
    /// Why the run could not start (exits 2 and 4), or why the report page
    /// `--report` asked for was not written at its end (exit 3).
    pub error: Option<String>,
    /// Why the run stopped before the end, in words.
    pub stopped: Option<String>,
    /// The same for a machine: `interrupted`, `halted`, `window`, `daily_cap`, `api_wait`.
    pub stop_reason: Option<&'static str>,
    /// When sending may go on, where known.
    pub resume_after: Option<String>,
    /// What to do now, for a run that did not finish the campaign.
    pub next_step: Option<String>,
    pub check: Option<CheckReport>,
    /// The rows `FAILED` or `UNKNOWN`, grouped by their error, the
    /// commonest first.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub failures: Vec<FailureGroup>,
    #[serde(skip)]
    tally: Tally,
}

/// Where the campaign stands: every row's line after the run.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignState {
    pub rows: u64,
    pub sent: u64,
    /// Rows that will never be sent: `INVALID`, `SUPPRESSED`, `DUPLICATE`,
    /// `UNSENDABLE`.
    pub never: u64,
    /// Rows a later run could still send (`FAILED`, `DEFERRED`, those
    /// `--limit` left unread), or that may have been delivered (`UNKNOWN`):
    /// neither sent nor never to be.
    pub pending: u64,
    /// Rows past `--limit`, not read by the run (no line in the results
    /// file): a file's counted; `null` when standard input reached the
    /// limit (its rest is not read: it may never end).
    pub unread: Option<u64>,
    /// Nothing is left that a later run could send.
    pub complete: bool,
    pub counts: BTreeMap<&'static str, u64>,
}

/// What a run that went through its campaign (or stopped) hands the summary.
pub struct Finished {
    pub campaign: String,
    pub campaign_name: String,
    pub campaign_name_from: NameFrom,
    pub results: String,
    pub dry_run: bool,
    /// A rehearsal that did not wait for the pace.
    pub at_speed: bool,
    /// `--strict`: every row must be SENT for a run to succeed.
    pub strict: bool,
    pub started_at: Timestamp,
    pub elapsed: Duration,
    pub tally: Tally,
    pub by_instance: BTreeMap<String, Tally>,
    pub left_rotation: BTreeMap<String, String>,
    /// Instances whose accepted messages the API said were another's.
    pub answered_for: BTreeMap<String, String>,
    /// Numbers the API refused, which send no more until a person resumes
    /// them (`numbers resume`).
    pub refused: Vec<String>,
    /// The results file's rows after the run, once it is one line a row.
    pub state: Option<Tally>,
    /// The rows `--limit` left unread ([`crate::campaign::Campaign::unread`]).
    pub unread: Option<u64>,
    pub check: CheckReport,
    pub failures: Failures,
    pub stopped: Option<StopReason>,
}

impl Summary {
    pub fn new(finished: Finished) -> Self {
        let Finished {
            campaign,
            campaign_name,
            campaign_name_from,
            results,
            dry_run,
            at_speed,
            strict,
            started_at,
            elapsed,
            tally,
            by_instance,
            left_rotation,
            answered_for,
            refused,
            state,
            unread,
            mut check,
            failures,
            stopped,
        } = finished;
        let now = Timestamp::now();
        check.finish(now);
        // A dry run's file is its own rows; a send's, every run's.
        let state = match dry_run {
            true => None,
            false => state,
        };
        let rows = state.as_ref().unwrap_or(&tally);
        let ending = match (dry_run, strict) {
            (true, _) => Ending::Check,
            (false, true) => Ending::Strict,
            (false, false) => Ending::Complete,
        };
        // A dry run checks the rows it read; a send cut short is not done.
        let unread = if dry_run { Some(0) } else { unread };
        let past_limit = unread != Some(0);
        let exit = ExitCode::of_finished(
            stopped.as_ref(),
            rows,
            ending,
            !refused.is_empty(),
            past_limit,
        );
        let next_step = next_step(exit, rows, ending, &refused, unread);
        Summary {
            version: env!("CARGO_PKG_VERSION"),
            campaign,
            campaign_name: Some(campaign_name),
            campaign_name_from: Some(campaign_name_from),
            results,
            dry_run,
            at_speed,
            started_at: stamp(started_at),
            finished_at: stamp(now),
            elapsed_seconds: rounded(elapsed),
            rows: tally.rows(),
            counts: counts(&tally),
            instances: by_instance
                .iter()
                .filter(|(instance, _)| !instance.is_empty())
                .map(|(instance, tally)| (instance.clone(), counts(tally)))
                .collect(),
            left_rotation,
            answered_for,
            state: state.map(|state| {
                let sent = state.get(Status::Sent) + state.get(Status::Skipped);
                let done = state.rows_where(Status::is_final);
                CampaignState {
                    rows: state.rows() + unread.unwrap_or(0),
                    sent,
                    never: done - sent,
                    pending: state.rows() - done + unread.unwrap_or(0),
                    unread,
                    complete: done == state.rows() && !past_limit,
                    counts: counts(&state),
                }
            }),
            exit_code: exit.code(),
            exit,
            error: None,
            stopped: stopped.as_ref().map(stopped_in_words),
            stop_reason: stopped.as_ref().map(StopReason::code),
            resume_after: stopped.as_ref().and_then(StopReason::until).map(stamp),
            next_step,
            check: Some(check),
            failures: failures.commonest_first(),
            tally,
        }
    }

    /// The summary of a run that could not start: `error` says why.
    pub fn failed(
        campaign: String,
        results: String,
        dry_run: bool,
        started_at: Timestamp,
        error: String,
        exit: ExitCode,
    ) -> Self {
        let now = Timestamp::now();
        Summary {
            version: env!("CARGO_PKG_VERSION"),
            campaign,
            campaign_name: None,
            campaign_name_from: None,
            results,
            dry_run,
            at_speed: false,
            started_at: stamp(started_at),
            finished_at: stamp(now),
            elapsed_seconds: rounded(
                Duration::try_from(now.duration_since(started_at)).unwrap_or_default(),
            ),
            rows: 0,
            counts: counts(&Tally::default()),
            instances: BTreeMap::new(),
            left_rotation: BTreeMap::new(),
            answered_for: BTreeMap::new(),
            state: None,
            exit_code: exit.code(),
            exit,
            error: Some(error),
            stopped: None,
            stop_reason: None,
            resume_after: None,
            next_step: None,
            check: None,
            failures: Vec::new(),
            tally: Tally::default(),
        }
    }

    /// The report page asked for could not be written at the end of the
    /// run (`error` says why): the run exits 3, as when the results file
    /// cannot be written; `again` is the command that writes the page from
    /// the results file.
    pub fn report_not_written(&mut self, error: String, again: &str) {
        self.exit = ExitCode::of_unwritten_report();
        self.exit_code = self.exit.code();
        let step = format!("the report was not written: fix what kept it (above), then `{again}`");
        self.next_step = Some(match self.next_step.take() {
            Some(rest) => format!("{step}; {rest}"),
            None => step,
        });
        self.error = Some(error);
    }

    pub fn text(&self) -> String {
        let counts = self.tally.line();
        let what = if self.dry_run {
            "checked (dry run, nothing sent)"
        } else {
            "processed"
        };
        let file = self
            .check
            .as_ref()
            .map(|check| format!(" ({}, `{}`-separated)", check.encoding, check.delimiter))
            .unwrap_or_default();
        let rows = match self.rows {
            1 => "1 row".to_string(),
            n => format!("{n} rows"),
        };
        let mut text = format!(
            "{}: {rows} {what} in {:.1} s{file}\n  {counts}\n",
            self.campaign, self.elapsed_seconds,
        );
        if let Some(named) = self.named_line() {
            text.push_str(&named);
        }
        if let Some(state) = &self.state {
            text.push_str(&self.state_line(state));
        }
        for (instance, why) in &self.left_rotation {
            text.push_str(&format!("instance {instance} sent no more: {why}\n"));
        }
        for (instance, other) in &self.answered_for {
            text.push_str(&format!(
                "the API queued the messages of instance {instance} with answers naming instance {other}: check api.instance_id\n"
            ));
        }
        if let Some(check) = &self.check {
            let view = match (self.dry_run, self.at_speed) {
                (true, _) => View::Check,
                (false, true) => View::Rehearsal,
                (false, false) => View::Send,
            };
            text.push_str(&check.text(view));
        }
        text.push_str(&failures_text(&self.failures));
        if self.at_speed {
            text.push_str(
                "a rehearsal at speed: a real send waits for the pace (--mock --real-pace \
                 rehearses that too)\n",
            );
        }
        if let Some(why) = &self.stopped {
            text.push_str(&format!("STOPPED, {why}\n"));
        }
        if let Some(error) = &self.error {
            text.push_str(&format!("ERROR: {error}\n"));
        }
        if let Some(next) = &self.next_step {
            text.push_str(&format!("next: {next}\n"));
        }
        text.push_str(&format!("results: {}\n", self.results));
        text
    }

    /// `campaign `leads` named after leads-2026-12-07.csv without its date;
    /// …`, where the name is not the file's as it reads.
    fn named_line(&self) -> Option<String> {
        let name = self.campaign_name.as_deref()?;
        let after = self.campaign_name_from?.in_words(&self.campaign)?;
        Some(format!("campaign `{name}` named {after}\n"))
    }

    /// `campaign `leads` complete: 8 of 10 rows SENT (3 by earlier runs), 2
    /// never sent (INVALID 1 · SUPPRESSED 1)`.
    fn state_line(&self, state: &CampaignState) -> String {
        let name = self.campaign_name.as_deref().unwrap_or_default();
        let earlier = match self.tally.get(Status::Skipped) {
            0 => String::new(),
            n => format!(" ({n} by earlier runs)"),
        };
        let mut line = match (state.complete, state.sent == state.rows) {
            (true, true) => format!(
                "campaign `{name}` complete: all {} rows SENT{earlier}",
                state.rows
            ),
            (true, false) => format!(
                "campaign `{name}` complete: {} of {} rows SENT{earlier}",
                state.sent, state.rows
            ),
            (false, _) => {
                let mut left = self.state_counts(|status| !status.is_final());
                if state.unread != Some(0) {
                    let sep = if left.is_empty() { "" } else { " · " };
                    let count = state.unread.map_or("some".to_string(), |n| n.to_string());
                    left.push_str(&format!("{sep}past --limit {count}"));
                }
                format!(
                    "campaign `{name}`: {} of {} rows SENT{earlier}, {} not yet ({left})",
                    state.sent, state.rows, state.pending,
                )
            }
        };
        if state.never > 0 {
            let never = |status: Status| status.is_final() && status != Status::Sent;
            line.push_str(&format!(
                ", {} never sent ({})",
                state.never,
                self.state_counts(never)
            ));
        }
        line.push('\n');
        line
    }

    /// The campaign's counts of the statuses `kept` keeps, as a line.
    fn state_counts(&self, kept: impl Fn(Status) -> bool) -> String {
        let state = self.state.as_ref().expect("only asked with a state");
        state
            .counts
            .iter()
            .filter(|(status, count)| **count > 0 && Status::parse(status).is_some_and(&kept))
            .map(|(status, count)| format!("{status} {count}"))
            .collect::<Vec<_>>()
            .join(" · ")
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a summary always serialises")
    }
}

fn counts(tally: &Tally) -> BTreeMap<&'static str, u64> {
    Status::ALL
        .iter()
        .map(|status| (status.as_str(), tally.get(*status)))
        .collect()
}

/// `2026-11-25T15:00:00.123Z`.
fn stamp(at: Timestamp) -> String {
    at.strftime("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn rounded(elapsed: Duration) -> f64 {
    (elapsed.as_secs_f64() * 1000.0).round() / 1000.0
}

fn stopped_in_words(reason: &StopReason) -> String {
    match reason {
        StopReason::Halted(why) => format!("halted: {why}"),
        StopReason::Interrupted => "interrupted: run again with --resume to carry on".to_string(),
        StopReason::Deferred(deferral) if deferral.needs_a_person() => {
            format!("halted: {}", deferral.why)
        }
        StopReason::Deferred(deferral) => format!(
            "deferred: {}; --resume sends the DEFERRED rows",
            deferral.why
        ),
    }
}

/// The step only a person can take, first: the numbers the API refused,
/// which no run sends through again until they are resumed.
fn numbers_to_resume(refused: &[String]) -> Option<String> {
    let resume: Vec<String> = refused
        .iter()
        .map(|id| format!("interacto-bulk numbers resume {id}"))
        .collect();
    (!refused.is_empty()).then(|| {
        format!(
            "the API refused {}: mend its key or connection, then `{}` (until then every run \
             exits 3 and sends nothing through it), then --resume",
            refused.join(", "),
            resume.join("`, `")
        )
    })
}

/// The next step for a campaign whose results file holds `rows`, in the
/// summary's words (for the report page).
pub fn next_step_of(rows: &Tally, refused: &[String]) -> Option<String> {
    let exit = ExitCode::of_finished(None, rows, Ending::Complete, !refused.is_empty(), false);
    next_step(exit, rows, Ending::Complete, refused, Some(0))
}

/// The kinds of failure a summary shows, the commonest first.
const SUMMARY_FAILURES: usize = 3;

/// `not sent for what the API or the network did:` and the commonest
/// errors, a line each; the results file has every row's.
fn failures_text(failures: &[FailureGroup]) -> String {
    if failures.is_empty() {
        return String::new();
    }
    let mut text =
        String::from("not sent for what the API or the network did, most common first:\n");
    for group in failures.iter().take(SUMMARY_FAILURES) {
        text.push_str(&format!(
            "  {} — {} — {}: {}\n",
            group.status,
            group.error,
            counted(group.rows, "row"),
            first_rows(&group.first_rows, group.rows)
        ));
    }
    let hidden = failures.get(SUMMARY_FAILURES..).unwrap_or_default();
    if !hidden.is_empty() {
        let rows: u64 = hidden.iter().map(|group| group.rows).sum();
        text.push_str(&format!(
            "  and {} more kinds ({rows} rows): the results file's error column says what each row met\n",
            hidden.len()
        ));
    }
    text
}

/// What to do after a run, in words: for numbers the API `refused` (only a
/// person lets them send again), for rows left (exits 1 and 3), for
/// `INVALID` rows, which only a fixed campaign file sends, and for the rows
/// `--limit` left `unread` (`None`: standard input's, not counted).
fn next_step(
    exit: ExitCode,
    rows: &Tally,
    ending: Ending,
    refused: &[String],
    unread: Option<u64>,
) -> Option<String> {
    let count = |status| rows.get(status);
    let mut steps = Vec::new();
    match numbers_to_resume(refused) {
        Some(resume) => steps.push(resume),
        None if exit == ExitCode::Halted => {
            steps.push("fix what halted the run (above), then run again with --resume".to_string())
        }
        None => {}
    }
    if exit == ExitCode::NotAllSent || exit == ExitCode::Halted {
        if count(Status::Failed) + count(Status::Deferred) > 0 {
            steps.push(format!(
                "{} FAILED or DEFERRED: --resume tries them again",
                count(Status::Failed) + count(Status::Deferred)
            ));
        }
        if count(Status::Unknown) > 0 {
            steps.push(format!(
                "{} UNKNOWN: they may have been delivered; check with the API (or the people) \
                 before --resume --resend-unknown, which sends them again",
                count(Status::Unknown)
            ));
        }
    }
    if ending == Ending::Strict && exit == ExitCode::NotAllSent {
        let never = rows.line_of(|status| status.is_final() && status != Status::Sent);
        if !never.is_empty() {
            steps.push(format!("--strict: not SENT, and never will be: {never}"));
        }
    }
    if count(Status::Unsendable) > 0 {
        steps.push(format!(
            "{} UNSENDABLE: no run sends them under these settings (the error column says \
             which: a send window never open in all of the recipient's zones); change them, \
             then --resume sends them",
            count(Status::Unsendable)
        ));
    }
    if count(Status::Invalid) > 0 {
        let then = match ending {
            Ending::Check => "and validate again",
            Ending::Strict | Ending::Complete => "the next run sends them",
        };
        steps.push(format!(
            "{} INVALID: fix those rows in the campaign file (the error column says how), {then}",
            count(Status::Invalid)
        ));
    }
    if unread != Some(0) {
        let left = unread.map_or("rows may be left".to_string(), |n| {
            super::check::counted(n, "row")
        });
        steps.push(format!(
            "{left} past --limit: --resume with a larger --limit (or none) sends the rest"
        ));
    }
    (!steps.is_empty()).then(|| steps.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(tally: Tally, state: Option<Tally>) -> Finished {
        Finished {
            campaign: "c.csv".into(),
            campaign_name: "c".into(),
            campaign_name_from: NameFrom::File,
            results: "c.results.csv".into(),
            dry_run: false,
            at_speed: false,
            strict: false,
            started_at: Timestamp::now(),
            elapsed: Duration::from_millis(1500),
            tally,
            by_instance: BTreeMap::new(),
            left_rotation: BTreeMap::new(),
            answered_for: BTreeMap::new(),
            refused: Vec::new(),
            state,
            unread: Some(0),
            check: CheckReport::at_20_a_minute(),
            failures: Failures::default(),
            stopped: None,
        }
    }

    fn tally(statuses: &[Status]) -> Tally {
        let mut tally = Tally::default();
        statuses.iter().for_each(|status| tally.add(*status));
        tally
    }

    #[test]
    fn the_json_summary_has_every_status() {
        let summary = Summary::new(finished(tally(&[Status::Sent]), None));
        let json: serde_json::Value = serde_json::from_str(&summary.json()).unwrap();
        assert_eq!(json["counts"]["SENT"], 1);
        assert_eq!(json["counts"]["FAILED"], 0);
        assert_eq!(json["elapsed_seconds"], 1.5);
        assert_eq!(json["version"], env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn a_resume_that_completes_the_campaign_says_so_and_exits_zero() {
        let this_run = tally(&[Status::Skipped, Status::Skipped, Status::Sent]);
        let campaign = tally(&[Status::Sent, Status::Sent, Status::Sent]);
        let summary = Summary::new(finished(this_run, Some(campaign)));
        assert_eq!(summary.exit, ExitCode::Success);
        assert!(
            summary
                .text()
                .contains("campaign `c` complete: all 3 rows SENT (2 by earlier runs)"),
            "{}",
            summary.text()
        );
        assert_eq!(summary.next_step, None);
    }

    #[test]
    fn rows_never_to_be_sent_complete_a_campaign_and_invalid_ones_say_what_to_do() {
        let campaign = tally(&[Status::Sent, Status::Invalid, Status::Suppressed]);
        let summary = Summary::new(finished(campaign.clone(), Some(campaign.clone())));
        assert_eq!(summary.exit, ExitCode::Success);
        let state = summary.state.as_ref().unwrap();
        assert_eq!((state.sent, state.never, state.pending), (1, 2, 0));
        assert!(
            summary.text().contains(
                "campaign `c` complete: 1 of 3 rows SENT, 2 never sent (INVALID 1 · SUPPRESSED 1)"
            ),
            "{}",
            summary.text()
        );
        assert!(summary
            .next_step
            .as_ref()
            .unwrap()
            .contains("1 INVALID: fix"));

        let strict = Finished {
            strict: true,
            ..finished(campaign.clone(), Some(campaign))
        };
        let summary = Summary::new(strict);
        assert_eq!(summary.exit, ExitCode::NotAllSent);
        assert!(
            summary.next_step.as_ref().unwrap().contains("--strict"),
            "{:?}",
            summary.next_step
        );
    }

    #[test]
    fn rows_left_say_what_to_do() {
        let campaign = tally(&[Status::Sent, Status::Failed, Status::Unknown]);
        let summary = Summary::new(finished(tally(&[Status::Failed]), Some(campaign)));
        assert_eq!(summary.exit, ExitCode::NotAllSent);
        let next = summary.next_step.unwrap();
        assert!(
            next.contains("1 FAILED or DEFERRED: --resume tries them again"),
            "{next}"
        );
        assert!(next.contains("1 UNKNOWN"), "{next}");
    }
}
