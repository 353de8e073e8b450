//! One run of a campaign, as one pipeline: where the messages go, the
//! campaign and its results file opened, one thread writing results, one
//! reading rows, the dispatcher sending, and the summary at the end.

mod numbers;
mod reading;
mod suppress;
mod target;

pub use numbers::numbers;
pub use suppress::suppress;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use indicatif::MultiProgress;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::campaign::{self, Campaign, Source};
use crate::config::Settings;
use crate::dispatch::{self, Gates, RunControl, Sending};
use crate::exit::RunError;
use crate::ledger::{Ledger, Suppression};
use crate::pacing::{Estimate, Pace};
use crate::report::{CheckReport, Finished, Progress, Summary};
use crate::results::{
    self, Dialect, Journal, LineFormat, Previous, ResultsError, ResultsWriter, RunLock, WriteGate,
};
use crate::types::Job;
use reading::Reading;
use target::Target;

/// What to run, beyond the settings.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub source: Source,
    pub results_path: PathBuf,
    /// Replace an existing results file.
    pub overwrite: bool,
    /// Add to an existing results file, skipping what earlier runs sent.
    pub resume: bool,
    /// With `resume`: send again the messages earlier runs left `UNKNOWN`.
    pub resend_unknown: bool,
    pub dry_run: bool,
    /// Send to an embedded mock API on loopback.
    pub mock: bool,
    /// Outside the send window, stop (rows DEFERRED) instead of waiting.
    pub no_wait: bool,
    pub limit: Option<u64>,
    /// Held while the results file is written, so an abort never cuts a line.
    pub results_gate: WriteGate,
}

/// Runs one campaign: reads, checks, paces and sends every row, and writes
/// the results file. Cancelling `shutdown` stops it taking new rows; rows
/// not sent are written `DEFERRED`.
pub async fn run(
    settings: Settings,
    request: RunRequest,
    progress_area: &MultiProgress,
    shutdown: CancellationToken,
) -> Result<Summary, RunError> {
    let started = Instant::now();
    let started_at = jiff::Timestamp::now();

    // Target: the API or the embedded mock; nowhere in a dry run. Missing
    // credentials stop the run here, before any file is touched.
    let target = match request.dry_run {
        true => None,
        false => Some(Target::connect(&settings, request.mock).await?),
    };
    let instances = match &target {
        Some(target) => target.instances.clone(),
        None => settings.api.senders(),
    };

    // Ledger: shared with every run that points at it; without it nothing
    // is sent. Its suppression list and recent contacts apply to every run,
    // rehearsals too; but a rehearsal (a dry run, --mock) keeps its clock,
    // counts and records in a throwaway ledger that spends nothing real.
    let shared_ledger = {
        let url = settings
            .ledger
            .url_or_default()
            .expect("checked with the settings");
        Ledger::open(&url).await?
    };
    let suppressed: HashMap<String, Suppression> = shared_ledger
        .suppressed()
        .await?
        .into_iter()
        .map(|entry| (entry.phone.clone(), entry))
        .collect();
    let recent = shared_ledger
        .recent_contacts(settings.schedule.cooldown)
        .await?;
    let ledger = Arc::new(match (&target, request.mock) {
        (Some(_), false) => shared_ledger,
        _ => Ledger::throwaway().await?,
    });

    // Open: the campaign, the lock, the results file and the journal; these
    // read and write files, so off the async workers.
    // A pipe nobody writes to blocks its opening: a signal ends the wait.
    let opened = {
        let (settings, request) = (settings.clone(), request.clone());
        let (sending, counting) = (target.is_some(), !progress_area.is_hidden());
        let opening = tokio::task::spawn_blocking(move || {
            Opened::open(&settings, &request, sending, counting)
        });
        tokio::select! {
            biased;
            opened = opening => opened.expect("opening the campaign does not panic")?,
            () = shutdown.cancelled() => return Err(RunError::Interrupted),
        }
    };
    info!(
        campaign = %request.source.describe(),
        results = %request.results_path.display(),
        dry_run = request.dry_run,
        resume = request.resume,
        rate = %settings.pacing.rate,
        "starting"
    );
    if target.is_some() {
        info!("{}", settings.pacing.describe_pace());
    }

    // Results: one thread writes every line, and moves the progress bar.
    let progress = match progress_area.is_hidden() {
        true => Progress::hidden(),
        false => Progress::new(progress_area, opened.total_rows),
    };
    let (outcomes, writer) = {
        let progress = progress.clone();
        results::spawn_writer(
            opened.results_file,
            opened.line_format,
            request.results_path.clone(),
            move |tally| progress.show(tally),
            request.results_gate.clone(),
        )
    };

    // Read: rows checked on a blocking thread; jobs go on to the dispatcher,
    // every other row straight to the results.
    let control = RunControl::new(shutdown, settings.retry);
    let (jobs, queued) = mpsc::channel::<Job>(256);
    let reader = {
        let pacing = &settings.pacing;
        let mut check = CheckReport::new(
            opened.campaign.encoding_label(),
            opened.campaign.delimiter(),
            Estimate::new(pacing.rate, pacing.pace_by_message, instances.len()),
            settings.schedule.send_window(),
            settings.campaign.default_region,
        );
        check.columns_from(&opened.campaign.layout().renamed);
        check.daily_cap(
            settings.schedule.daily_cap,
            !settings.schedule.warmup.is_empty(),
        );
        let reading = Reading {
            jobs: (!request.dry_run).then_some(jobs),
            outcomes: outcomes.clone(),
            instances,
            previous: opened.previous,
            suppressed,
            recent,
            cooldown: settings.schedule.cooldown,
            resend_unknown: request.resend_unknown,
            stop: control.stopping().clone(),
            source_ends: request.source.is_regular_file(),
        };
        let campaign = opened.campaign;
        tokio::task::spawn_blocking(move || reading.read(campaign, check))
    };

    // Send: one lane per instance, each paced on its own, `concurrency`
    // requests in flight over all of them.
    let (journal, lock, results_path) = (opened.journal, opened.lock, opened.results_path);
    match (&target, &journal) {
        (Some(target), Some(journal)) => {
            let sending = Sending {
                client: target.client.clone(),
                instances: target.instances.clone(),
                pace: Pace::of(&settings.pacing),
                concurrency: settings.pacing.concurrency,
                journal: journal.clone(),
                ledger: ledger.clone(),
                outcomes: outcomes.clone(),
                control: control.clone(),
                gates: Gates {
                    window: settings.schedule.send_window(),
                    daily_cap: settings.schedule.daily_cap(),
                    cooldown: settings.schedule.cooldown,
                    no_wait: request.no_wait,
                    progress: progress.clone(),
                },
            };
            dispatch::dispatch(queued, sending).await;
        }
        _ => drop(queued),
    }

    // Finish: every row has its line; then the journal has done its work
    // and the lock can go.
    let read = reader.await.expect("the campaign reader does not panic");
    drop(outcomes);
    let written = match writer.await.expect("the results writer does not panic") {
        Ok(written) => written,
        // Messages may have gone out: not a usage error but a halt, and
        // the journal stays for the resume that accounts for them.
        Err(error) if target.is_some() => {
            progress.finish();
            return Err(RunError::Halted(format!(
                "{error}; messages sent before it are in the journal beside it: \
                 once the file can be written, run again with --resume"
            )));
        }
        Err(error) => return Err(error.into()),
    };
    progress.finish();

    // Then the results file becomes the campaign's state, one line a row,
    // once the journal (whose offsets point into the file as it was) is gone.
    // A dry run's fresh file is that already.
    let journal = journal.and_then(Arc::into_inner);
    let tidy = !request.dry_run || request.resume;
    let state = tokio::task::spawn_blocking(move || {
        let journal_gone = match journal.map(Journal::finish) {
            Some(Err(error)) => {
                warn!("cannot remove the journal: {error}");
                false
            }
            _ => true,
        };
        let state = match tidy && journal_gone {
            true => match results::compact(&results_path) {
                Ok(state) => Some(state),
                Err(error) => {
                    warn!("the results file keeps every run's lines: {error}");
                    None
                }
            },
            false => None,
        };
        drop(lock);
        state
    })
    .await
    .expect("tidying the results file does not panic");
    let check = read?;

    // Report.
    Ok(Summary::new(Finished {
        campaign: request.source.describe(),
        results: request.results_path.display().to_string(),
        dry_run: request.dry_run,
        started_at,
        elapsed: started.elapsed(),
        tally: written.tally,
        by_instance: written.by_instance,
        left_rotation: control.left(),
        state,
        check,
        stopped: control.reason(),
    }))
}

/// A run's files, opened: the campaign, the lock on its results file, the
/// results file with what earlier runs recorded in it, and the journal
/// when messages will be sent.
struct Opened {
    campaign: Campaign,
    /// The results file's real path.
    results_path: PathBuf,
    lock: RunLock,
    results_file: ResultsWriter,
    line_format: LineFormat,
    previous: Option<Previous>,
    journal: Option<Arc<Journal>>,
    /// Data rows in the campaign, for the progress bar; counted only for it.
    total_rows: Option<u64>,
}

impl Opened {
    fn open(
        settings: &Settings,
        request: &RunRequest,
        sending: bool,
        counting: bool,
    ) -> Result<Self, RunError> {
        let campaign = Campaign::open(
            &request.source,
            &settings.campaign,
            &settings.pacing,
            request.limit,
        )?;
        if !campaign.layout().unknown.is_empty() {
            warn!(columns = %campaign.layout().unknown.join(", "), "ignoring columns the tool does not use");
        }
        // The results file by its real name, and never the campaign; then
        // the lock: a second run must not even read the results file.
        let path = &results::resolve(&request.results_path, request.overwrite)?;
        if let Source::File(campaign) = &request.source {
            results::refuse_campaign(campaign, path)?;
        }
        let lock = RunLock::acquire(path).map_err(ResultsError::from)?;
        let dialect = Dialect::of(&settings.results);
        let (results_file, line_format, previous, results_from) = if request.resume {
            let resumed = results::open_for_resume(path, dialect)?;
            (
                resumed.writer,
                resumed.lines,
                Some(resumed.previous),
                resumed.length,
            )
        } else {
            let (writer, lines, _) = results::create(path, request.overwrite, dialect)?;
            (writer, lines, None, 0)
        };
        let journal = match sending {
            true => {
                let in_flight = previous
                    .as_ref()
                    .map_or(&[][..], |previous| &previous.in_flight[..]);
                let journal = Journal::start(path, results_from, in_flight).map_err(|source| {
                    ResultsError::Io {
                        path: path.to_path_buf(),
                        source,
                    }
                })?;
                Some(Arc::new(journal))
            }
            false => None,
        };
        let total_rows = counting
            .then(|| {
                campaign::count_rows(&request.source, campaign.encoding(), campaign.delimiter())
            })
            .flatten()
            .map(|rows| request.limit.map_or(rows, |limit| limit.min(rows)));
        Ok(Opened {
            campaign,
            results_path: path.clone(),
            lock,
            results_file,
            line_format,
            previous,
            journal,
            total_rows,
        })
    }
}
