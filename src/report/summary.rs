//! The end-of-run summary on stdout, as text or one JSON object.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Serialize;

use super::CheckReport;
use crate::exit::ExitCode;
use crate::types::{Status, StopReason, Tally};

/// The end-of-run summary, printed on stdout.
#[derive(Debug, Clone, Serialize)]
pub struct Summary {
    pub campaign: String,
    pub results: String,
    pub dry_run: bool,
    pub rows: u64,
    pub counts: BTreeMap<&'static str, u64>,
    pub elapsed_seconds: f64,
    pub exit_code: u8,
    /// The same, for the process.
    #[serde(skip)]
    pub exit: ExitCode,
    /// Why the run stopped before the end, if it did.
    pub stopped: Option<String>,
    pub check: CheckReport,
    #[serde(skip)]
    tally: Tally,
}

impl Summary {
    pub fn new(
        campaign: String,
        results: String,
        dry_run: bool,
        tally: &Tally,
        elapsed: Duration,
        mut check: CheckReport,
        stopped: Option<StopReason>,
    ) -> Self {
        check.finish(jiff::Timestamp::now());
        let exit = ExitCode::of_run(stopped.as_ref(), tally, dry_run);
        let stopped = stopped.map(|reason| match reason {
            StopReason::Halted(why) => format!("halted: {why}"),
            StopReason::Interrupted => {
                "interrupted: run again with --resume to carry on".to_string()
            }
            StopReason::Deferred(why) => {
                format!("deferred: {why}; --resume sends the DEFERRED rows")
            }
        });
        Summary {
            campaign,
            results,
            dry_run,
            rows: tally.rows(),
            counts: Status::ALL
                .iter()
                .map(|status| (status.as_str(), tally.get(*status)))
                .collect(),
            elapsed_seconds: (elapsed.as_secs_f64() * 1000.0).round() / 1000.0,
            exit_code: exit.code(),
            exit,
            stopped,
            check,
            tally: tally.clone(),
        }
    }

    pub fn text(&self) -> String {
        let counts = self.tally.line();
        let what = if self.dry_run {
            "checked (dry run, nothing sent)"
        } else {
            "processed"
        };
        let file = format!(
            "{}, `{}`-separated",
            self.check.encoding, self.check.delimiter
        );
        let stopped = self
            .stopped
            .as_ref()
            .map(|why| format!("STOPPED, {why}\n"))
            .unwrap_or_default();
        format!(
            "{}: {} rows {what} in {:.1} s ({file})\n  {counts}\n{}{stopped}results: {}\n",
            self.campaign,
            self.rows,
            self.elapsed_seconds,
            self.check.text(self.dry_run),
            self.results
        )
    }

    pub fn json(&self) -> String {
        serde_json::to_string(self).expect("a summary always serialises")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_json_summary_has_every_status() {
        let mut tally = Tally::default();
        tally.add(Status::Sent);
        let summary = Summary::new(
            "c.csv".into(),
            "c.results.csv".into(),
            false,
            &tally,
            Duration::from_millis(1500),
            CheckReport::at_20_a_minute(),
            None,
        );
        let json: serde_json::Value = serde_json::from_str(&summary.json()).unwrap();
        assert_eq!(json["counts"]["SENT"], 1);
        assert_eq!(json["counts"]["FAILED"], 0);
        assert_eq!(json["elapsed_seconds"], 1.5);
    }
}
