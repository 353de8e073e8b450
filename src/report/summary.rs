//! The end-of-run summary on stdout, as text or one JSON object: what this
//! run did, where the campaign stands, why it stopped and what to do next.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use super::CheckReport;
use crate::exit::ExitCode;
use crate::types::{Status, StopReason, Tally};

/// The end-of-run summary, printed on stdout. A run that could not start
/// has one too, with its `error` and no counts.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub version: &'static str,
    pub campaign: String,
    pub results: String,
    pub dry_run: bool,
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
    /// The campaign as the results file holds it after the run.
    pub state: Option<CampaignState>,
    pub exit_code: u8,
    /// The same, for the process.
    #[serde(skip)]
    pub exit: ExitCode,
    /// Why the run could not start (exits 2 and 4).
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
    #[serde(skip)]
    tally: Tally,
}

/// Where the campaign stands: every row's latest line.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignState {
    pub rows: u64,
    pub sent: u64,
    /// Rows not `SENT` yet, whatever holds them.
    pub pending: u64,
    pub complete: bool,
    pub counts: BTreeMap<&'static str, u64>,
}

/// What a run that went through its campaign (or stopped) hands the summary.
pub struct Finished {
    pub campaign: String,
    pub results: String,
    pub dry_run: bool,
    pub started_at: Timestamp,
    pub elapsed: Duration,
    pub tally: Tally,
    pub by_instance: BTreeMap<String, Tally>,
    pub left_rotation: BTreeMap<String, String>,
    /// The results file's rows after the run, once it is one line a row.
    pub state: Option<Tally>,
    pub check: CheckReport,
    pub stopped: Option<StopReason>,
}

impl Summary {
    pub fn new(finished: Finished) -> Self {
        let Finished {
            campaign,
            results,
            dry_run,
            started_at,
            elapsed,
            tally,
            by_instance,
            left_rotation,
            state,
            mut check,
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
        let exit = ExitCode::of_run(stopped.as_ref(), rows, dry_run);
        let next_step = next_step(exit, rows);
        Summary {
            version: env!("CARGO_PKG_VERSION"),
            campaign,
            results,
            dry_run,
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
            state: state.map(|state| CampaignState {
                rows: state.rows(),
                sent: state.get(Status::Sent),
                pending: state.rows() - state.get(Status::Sent),
                complete: state.get(Status::Sent) == state.rows(),
                counts: counts(&state),
            }),
            exit_code: exit.code(),
            exit,
            error: None,
            stopped: stopped.as_ref().map(stopped_in_words),
            stop_reason: stopped.as_ref().map(StopReason::code),
            resume_after: stopped.as_ref().and_then(StopReason::until).map(stamp),
            next_step,
            check: Some(check),
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
            results,
            dry_run,
            started_at: stamp(started_at),
            finished_at: stamp(now),
            elapsed_seconds: rounded(
                Duration::try_from(now.duration_since(started_at)).unwrap_or_default(),
            ),
            rows: 0,
            counts: counts(&Tally::default()),
            instances: BTreeMap::new(),
            left_rotation: BTreeMap::new(),
            state: None,
            exit_code: exit.code(),
            exit,
            error: Some(error),
            stopped: None,
            stop_reason: None,
            resume_after: None,
            next_step: None,
            check: None,
            tally: Tally::default(),
        }
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
        if let Some(state) = &self.state {
            let skipped = self.tally.get(Status::Skipped);
            let earlier = match skipped {
                0 => String::new(),
                n => format!(" ({n} by earlier runs)"),
            };
            text.push_str(&match state.complete {
                true => format!("campaign complete: all {} rows SENT{earlier}\n", state.rows),
                false => format!(
                    "campaign: {} of {} rows SENT{earlier}, {} not yet\n",
                    state.sent, state.rows, state.pending
                ),
            });
        }
        for (instance, why) in &self.left_rotation {
            text.push_str(&format!("instance {instance} sent no more: {why}\n"));
        }
        if let Some(check) = &self.check {
            text.push_str(&check.text(self.dry_run));
        }
        if let Some(why) = &self.stopped {
            text.push_str(&format!("STOPPED, {why}\n"));
        }
        if let Some(next) = &self.next_step {
            text.push_str(&format!("next: {next}\n"));
        }
        text.push_str(&format!("results: {}\n", self.results));
        text
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
        StopReason::Deferred(deferral) => format!(
            "deferred: {}; --resume sends the DEFERRED rows",
            deferral.why
        ),
    }
}

/// What to do after a run that left rows unsent (exits 1 and 3), in words.
fn next_step(exit: ExitCode, rows: &Tally) -> Option<String> {
    let mut steps = Vec::new();
    if exit == ExitCode::Halted {
        steps.push("fix what halted the run (above), then run again with --resume".to_string());
    }
    if exit == ExitCode::NotAllSent || exit == ExitCode::Halted {
        let count = |status| rows.get(status);
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
        if count(Status::Invalid) + count(Status::Duplicate) > 0 {
            steps.push(format!(
                "{} INVALID or DUPLICATE: fix those rows in the campaign (the error column says \
                 how), then --resume",
                count(Status::Invalid) + count(Status::Duplicate)
            ));
        }
    }
    (!steps.is_empty()).then(|| steps.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn finished(tally: Tally, state: Option<Tally>) -> Finished {
        Finished {
            campaign: "c.csv".into(),
            results: "c.results.csv".into(),
            dry_run: false,
            started_at: Timestamp::now(),
            elapsed: Duration::from_millis(1500),
            tally,
            by_instance: BTreeMap::new(),
            left_rotation: BTreeMap::new(),
            state,
            check: CheckReport::at_20_a_minute(),
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
        assert!(summary
            .text()
            .contains("campaign complete: all 3 rows SENT (2 by earlier runs)"));
        assert_eq!(summary.next_step, None);
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
