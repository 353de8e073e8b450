//! interacto-bulk: send WhatsApp contact cards in bulk through the Interacto
//! API, paced so that the sending number is not blocked.
//!
//! Layout, in the order data flows:
//! `cli` (flags) → `config` (file + env + flags → checked `Settings`) →
//! `campaign` (CSV rows → validated `Job`s, on a blocking thread) →
//! `pacing` (delay/typing floors, per-instance clock) → `schedule` (send
//! window, daily cap) → `dispatch` (instances, worker pool, retries, halts) →
//! `api` (HTTP client, wire types, embedded mock) → `results` (one thread
//! writes the results CSV; lock, journal, resume) → `report` (progress,
//! summary, exit code).

pub mod api;
pub mod campaign;
pub mod cli;
pub mod config;
pub mod dispatch;
pub mod pacing;
pub mod report;
pub mod results;
pub mod schedule;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use indicatif::MultiProgress;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use api::{ApiClient, MockOptions, MockServer};
use campaign::{Campaign, CampaignError, Job, Row, Source};
use config::{ApiKey, Settings};
use dispatch::{Gates, Lane, RunControl, Sending};
use pacing::{Estimate, InstancePacer};
use report::{CheckReport, ExitCode, Progress, Summary};
use results::{Journal, LockError, Outcome, Previous, ResultsError, RunLock, Status, WriteGate};

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

/// Why a run could not start or finish.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("{0}")]
    Config(String),
    #[error(transparent)]
    Campaign(#[from] CampaignError),
    #[error(transparent)]
    Results(#[from] ResultsError),
    #[error(transparent)]
    Client(#[from] api::ClientError),
    #[error("cannot start the mock API: {0}")]
    Mock(std::io::Error),
}

impl RunError {
    pub fn exit_code(&self) -> ExitCode {
        match self {
            RunError::Results(ResultsError::Lock(LockError::Held { .. })) => ExitCode::Locked,
            _ => ExitCode::Usage,
        }
    }
}

/// Where the messages go.
struct Target {
    client: Arc<ApiClient>,
    /// The WhatsApp numbers that send; never empty.
    instances: Vec<String>,
    /// Kept alive for the run when sending to the embedded mock.
    _mock: Option<MockServer>,
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
    let target = if request.dry_run {
        None
    } else {
        Some(connect(&settings, request.mock).await?)
    };
    let instances = match &target {
        Some(target) => target.instances.clone(),
        None => settings.api.instances.clone(),
    };

    let campaign = Campaign::open(
        &request.source,
        &settings.campaign,
        settings.pacing.floors,
        request.limit,
    )?;
    if !campaign.layout().unknown.is_empty() {
        warn!(columns = %campaign.layout().unknown.join(", "), "ignoring columns the tool does not use");
    }

    // The lock first: a second run must not even read the results file.
    let lock = RunLock::acquire(&request.results_path).map_err(ResultsError::from)?;
    let OpenedResults {
        writer: results_file,
        previous,
        journal,
    } = open_results(&request, target.is_some())?;
    info!(
        campaign = %request.source.describe(),
        results = %request.results_path.display(),
        dry_run = request.dry_run,
        resume = request.resume,
        rate = %settings.pacing.rate,
        "starting"
    );

    let progress = if progress_area.is_hidden() {
        Progress::hidden()
    } else {
        let total =
            campaign::count_rows(&request.source, campaign.encoding(), campaign.delimiter())
                .map(|rows| request.limit.map_or(rows, |limit| limit.min(rows)));
        Progress::new(progress_area, total)
    };
    let (outcomes, writer) = results::spawn_writer(
        results_file,
        request.results_path.clone(),
        progress.clone(),
        request.results_gate.clone(),
    );

    let control = RunControl::new(shutdown, settings.retry);
    let (jobs, queued) = mpsc::channel::<Job>(256);
    let reader = {
        let check = CheckReport::new(
            campaign.encoding(),
            campaign.delimiter(),
            Estimate::new(settings.pacing.rate, settings.pacing.pace_by_message),
        );
        let reading = Reading {
            jobs: (!request.dry_run).then_some(jobs),
            outcomes: outcomes.clone(),
            instances: instances.clone(),
            previous,
            resend_unknown: request.resend_unknown,
            stop: control.stopping().clone(),
        };
        tokio::task::spawn_blocking(move || reading.read(campaign, check))
    };

    if let (Some(target), Some(journal)) = (&target, &journal) {
        let pacing = &settings.pacing;
        let lanes = target
            .instances
            .iter()
            .map(|instance_id| Lane {
                instance_id: instance_id.clone(),
                pacer: InstancePacer::new(pacing.rate, pacing.burst, pacing.pace_by_message),
            })
            .collect();
        let sending = Sending {
            client: target.client.clone(),
            concurrency: settings.pacing.concurrency,
            journal: journal.clone(),
            outcomes: outcomes.clone(),
            control: control.clone(),
            gates: Gates {
                window: settings.schedule.window.clone(),
                daily_cap: settings.schedule.daily_cap.clone(),
                no_wait: request.no_wait,
                progress: progress.clone(),
            },
        };
        dispatch::dispatch(queued, lanes, sending).await;
    } else {
        drop(queued);
    }
    let read = reader.await.expect("the campaign reader does not panic");
    drop(outcomes);
    let tally = writer.await.expect("the results writer does not panic")?;
    progress.finish();
    // Every message sent now has its line: the journal has done its work.
    if let Some(journal) = journal.and_then(Arc::into_inner) {
        if let Err(error) = journal.finish() {
            warn!("cannot remove the journal: {error}");
        }
    }
    drop(lock);
    let check = read?;

    Ok(Summary::new(
        request.source.describe(),
        request.results_path.display().to_string(),
        request.dry_run,
        &tally,
        started.elapsed(),
        check,
        control.reason(),
    ))
}

/// The results file of a run, what earlier runs recorded in it, and the
/// journal when messages will be sent.
struct OpenedResults {
    writer: results::ResultsWriter,
    previous: Option<Previous>,
    journal: Option<Arc<Journal>>,
}

/// Opens the results file as the request asks: new, replaced, or resumed.
fn open_results(request: &RunRequest, sending: bool) -> Result<OpenedResults, RunError> {
    let path = &request.results_path;
    let (writer, previous, results_from) = if request.resume {
        let (writer, previous, from) = results::open_for_resume(path)?;
        (writer, Some(previous), from)
    } else {
        (results::create(path, request.overwrite)?, None, 0)
    };
    let in_flight = previous
        .as_ref()
        .map_or(&[][..], |previous| &previous.in_flight[..]);
    let journal = match sending {
        true => Some(Arc::new(
            Journal::start(path, results_from, in_flight).map_err(|source| ResultsError::Io {
                path: path.clone(),
                source,
            })?,
        )),
        false => None,
    };
    Ok(OpenedResults {
        writer,
        previous,
        journal,
    })
}

/// Builds the HTTP client for the real API, or starts the embedded mock and points at it.
async fn connect(settings: &Settings, mock: bool) -> Result<Target, RunError> {
    let timeout = settings.api.timeout;
    if mock {
        let server = MockServer::start(
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            MockOptions::default(),
        )
        .await
        .map_err(RunError::Mock)?;
        info!(address = %server.base_url(), "sending to the embedded mock API");
        let base_url = server
            .base_url()
            .parse()
            .expect("a socket address makes a URL");
        let client = ApiClient::new(&base_url, &ApiKey::new("mock-key"), timeout)?;
        return Ok(Target {
            client: Arc::new(client),
            instances: match settings.api.instances.is_empty() {
                true => vec!["mock-instance".to_string()],
                false => settings.api.instances.clone(),
            },
            _mock: Some(server),
        });
    }
    let api_key = settings.api.api_key.as_ref().ok_or_else(|| {
        RunError::Config("no API key: set INTERACTO_API_KEY (or api.api_key in the config file), or use --mock to rehearse".to_string())
    })?;
    if settings.api.instances.is_empty() {
        return Err(RunError::Config(
            "no instance: set INTERACTO_INSTANCE_ID, --instance, or api.instance_id / api.instances in the config file"
                .to_string(),
        ));
    }
    let client = ApiClient::new(&settings.api.base_url, api_key, timeout)?;
    Ok(Target {
        client: Arc::new(client),
        instances: settings.api.instances.clone(),
        _mock: None,
    })
}

/// The reading side of a run, on a blocking thread: rejected rows go
/// straight to the results, jobs to the dispatcher, or, in a dry run (`jobs`
/// is `None`), to the results as `VALID`. With `--resume`, jobs earlier runs
/// sent are `SKIPPED` and those they may have sent `UNKNOWN`.
struct Reading {
    jobs: Option<mpsc::Sender<Job>>,
    outcomes: mpsc::Sender<Outcome>,
    /// The instances rows are assigned to, for the lines this side writes.
    instances: Vec<String>,
    previous: Option<Previous>,
    resend_unknown: bool,
    stop: CancellationToken,
}

impl Reading {
    fn read(
        self,
        mut campaign: Campaign,
        mut check: CheckReport,
    ) -> Result<CheckReport, CampaignError> {
        for row in &mut campaign {
            let row = row?;
            let earlier = match &row {
                Row::Job(job) => self.earlier_verdict(job),
                Row::Rejected(_) => None,
            };
            if earlier.is_none() {
                check.add(&row);
            }
            let delivered = match (row, &self.jobs, earlier) {
                (Row::Rejected(rejected), _, _) => self
                    .outcomes
                    .blocking_send(Outcome::rejected(rejected))
                    .is_ok(),
                (Row::Job(_), _, Some(outcome)) => self.outcomes.blocking_send(outcome).is_ok(),
                (Row::Job(job), Some(jobs), None) => jobs.blocking_send(job).is_ok(),
                (Row::Job(job), None, None) => {
                    let instance_id = self.instance_for(&job);
                    self.outcomes
                        .blocking_send(Outcome::valid(job, instance_id))
                        .is_ok()
                }
            };
            // A dry run just stops on a signal; a send goes on so that every
            // row gets its line (DEFERRED from the dispatcher).
            if !delivered || (self.jobs.is_none() && self.stop.is_cancelled()) {
                break;
            }
        }
        Ok(check)
    }

    /// The instance that sends (or would send) `job`; empty when none is set.
    fn instance_for(&self, job: &Job) -> &str {
        match self.instances.as_slice() {
            [] => "",
            instances => &instances[dispatch::assign(&job.to, instances)],
        }
    }

    fn earlier_verdict(&self, job: &Job) -> Option<Outcome> {
        let (status, error) = match self.previous.as_ref()?.verdict(&job.key)? {
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
