//! One run of a campaign, as one pipeline: where the messages go, the
//! campaign's name and its memory in the ledger, the campaign and its
//! results file opened, what earlier runs left recovered, one thread writing
//! results, one reading rows, the admission step, the dispatcher sending,
//! and the summary at the end.

mod admitting;
mod reading;
mod recovery;
mod target;

use std::path::PathBuf;
use std::sync::Arc;

use indicatif::MultiProgress;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::admission::Rules;
use crate::campaign::{self, Campaign, CampaignError, NameFrom, Source};
use crate::clock::Clock;
use crate::config::Settings;
use crate::dispatch::{self, Gates, RunControl, Sending};
use crate::exit::RunError;
use crate::ledger::{Ledger, PRUNE_BATCH};
use crate::pacing::{Estimate, Pace};
use crate::report::{CheckReport, Finished, Progress, Summary};
use crate::results::{self, Dialect, Journal, Kind, ResultsError, RunLock, WriteGate, Written};
use crate::types::{Job, Outcome, Row};
use admitting::Admitting;
use reading::Reading;
use target::Target;

/// What to run, beyond the settings.
#[derive(Debug, Clone)]
pub struct RunRequest {
    pub source: Source,
    pub results_path: PathBuf,
    /// Replace an existing results file.
    pub overwrite: bool,
    /// Add to an existing results file of the campaign.
    pub resume: bool,
    /// Send again the messages earlier runs left `UNKNOWN`.
    pub resend_unknown: bool,
    pub dry_run: bool,
    /// Send to an embedded mock API on loopback: a rehearsal.
    pub mock: bool,
    /// A rehearsal waits for the pace as a real send would (else it goes
    /// as fast as the mock answers).
    pub real_pace: bool,
    /// Outside the send window, stop (rows DEFERRED) instead of waiting.
    pub no_wait: bool,
    pub limit: Option<u64>,
    /// Exit 1 unless every row is SENT (or VALID in a dry run).
    pub strict: bool,
    /// Held while the results file is written, so an abort never cuts a line.
    pub results_gate: WriteGate,
    /// Where every stage reads the time: [`Clock::system`], or in tests one
    /// that follows tokio's paused clock.
    pub clock: Clock,
}

impl RunRequest {
    /// What the run's results file records.
    pub fn kind(&self) -> Kind {
        Kind::of(self.dry_run, self.mock)
    }

    /// A `--mock` rehearsal that does not wait for the pace.
    pub fn at_speed(&self) -> bool {
        self.mock && !self.dry_run && !self.real_pace
    }
}

/// Runs one campaign: reads, checks, admits, paces and sends every row, and
/// writes the results file. Cancelling `shutdown` stops it taking new rows;
/// rows not sent are written `DEFERRED`.
pub async fn run(
    settings: Settings,
    request: RunRequest,
    progress_area: &MultiProgress,
    shutdown: CancellationToken,
) -> Result<Summary, RunError> {
    let started = (request.clock.instant(), request.clock.now());
    if request.kind() == Kind::Check && request.resume {
        return Err(RunError::Usage(
            "a dry run writes its own file afresh; --resume carries on a send".to_string(),
        ));
    }
    let prepared = prepare(&settings, &request, progress_area, &shutdown).await?;
    let journal = recover(&settings, &request, &prepared).await?;
    let ran = send_every_row(&settings, &request, prepared, progress_area, shutdown).await?;
    finish(request, ran, journal, started).await
}

/// Everything a run needs before its first row: the campaign's name, where
/// it sends, the ledger, and its files opened.
struct Prepared {
    campaign_name: String,
    /// Where the campaign's name came from.
    name_from: NameFrom,
    /// The API or the embedded mock; `None` in a dry run.
    target: Option<Target>,
    instances: Vec<String>,
    /// What every run sharing it knows.
    ledger: Arc<Ledger>,
    /// Where this run's cards leave through: the ledger, or for a rehearsal
    /// a throwaway one.
    door_ledger: Arc<Ledger>,
    opened: Opened,
}

/// Prepare: the campaign's name (what its memory in the ledger goes by),
/// the target, the ledger, the campaign and results files.
async fn prepare(
    settings: &Settings,
    request: &RunRequest,
    progress_area: &MultiProgress,
    shutdown: &CancellationToken,
) -> Result<Prepared, RunError> {
    let kind = request.kind();
    let named = campaign::name_of(settings.campaign.name.as_deref(), &request.source)
        .map_err(CampaignError::Unnamed)?;
    if named.looks_dated() {
        warn!(
            "the campaign is named `{name}` after its file, which is only a date: a dated export \
             gets a new name every night, and every night would be a new campaign that sends \
             everyone the card again; name the campaign (--campaign NAME, or campaign.name in \
             the config) so that every night's file is the same campaign",
            name = named.name
        );
    }

    // Target: the API or the embedded mock; nowhere in a dry run. Missing
    // credentials stop the run here, before any file is touched.
    let target = match kind {
        Kind::Check => None,
        _ => Some(Target::connect(settings, request.mock).await?),
    };
    let instances = match &target {
        Some(target) => target.instances.clone(),
        None => settings.api.senders(),
    };

    let (ledger, door_ledger) = open_ledgers(settings, request, shutdown).await?;
    let (campaign_name, name_from) = name_known_to(named, &ledger).await?;

    // Open: the campaign, the lock, the results file (this campaign's, of
    // this kind); these read and write files, so off the async workers. A
    // pipe nobody writes to blocks its opening: a signal ends the wait.
    let opened = {
        let (settings, request) = (settings.clone(), request.clone());
        let name = campaign_name.clone();
        let counting = !progress_area.is_hidden();
        let opening =
            tokio::task::spawn_blocking(move || Opened::open(&settings, &request, &name, counting));
        tokio::select! {
            biased;
            opened = opening => opened.expect("opening the campaign does not panic")?,
            () = shutdown.cancelled() => return Err(RunError::Interrupted),
        }
    };
    let sends = target.is_some();
    say_starting(
        settings,
        request,
        (&campaign_name, name_from),
        sends,
        &ledger,
    );
    Ok(Prepared {
        campaign_name,
        name_from,
        target,
        instances,
        ledger,
        door_ledger,
        opened,
    })
}

/// The campaign's name, and where it came from: a dated file's name without
/// its date, unless the ledger knows the campaign by the name with it (an
/// earlier version's, before names dropped their dates) and not without:
/// its memory is under that name, and so its results file.
async fn name_known_to(
    named: campaign::Named,
    ledger: &Ledger,
) -> Result<(String, campaign::NameFrom), RunError> {
    let Some(with_date) = named.with_date else {
        return Ok((named.name, named.from));
    };
    if ledger.knows(&named.name).await? || !ledger.knows(&with_date).await? {
        return Ok((named.name, named.from));
    }
    warn!(
        "the campaign keeps the name `{with_date}`, date and all, which the ledger knows it by \
         (an earlier version named it so); a dated file's campaign is named without its date \
         now, `{name}`: --campaign {name} makes it so, as a new campaign",
        name = named.name
    );
    Ok((with_date, campaign::NameFrom::File))
}

/// The ledger, and the one this run's cards leave through: the ledger
/// itself, or for a rehearsal a throwaway one.
async fn open_ledgers(
    settings: &Settings,
    request: &RunRequest,
    shutdown: &CancellationToken,
) -> Result<(Arc<Ledger>, Arc<Ledger>), RunError> {
    // Ledger: shared with every run that points at it; without it nothing
    // is sent. What it knows (the campaign's memory, the suppression list,
    // recent cards) holds for every run, rehearsals too; but a rehearsal
    // lets its cards out through a throwaway ledger, which spends nothing
    // of the real numbers and enters nothing in the campaign's memory.
    // A signal while the ledger is being opened ends the run at once.
    let ledger = tokio::select! {
        biased;
        ledger = Ledger::open(&settings.ledger, shutdown, request.clock.clone()) => Arc::new(ledger?),
        () = shutdown.cancelled() => return Err(RunError::Interrupted),
    };
    let door_ledger = match request.kind() {
        Kind::Send => ledger.clone(),
        _ => Arc::new(Ledger::throwaway(request.clock.clone()).await?),
    };
    Ok((ledger, door_ledger))
}

/// The run's first log line: what it runs, where to, at what pace.
fn say_starting(
    settings: &Settings,
    request: &RunRequest,
    (campaign_name, name_from): (&str, NameFrom),
    sends: bool,
    ledger: &Ledger,
) {
    let file = request.source.describe();
    info!(
        campaign = %campaign_name,
        named = name_from.in_words(&file),
        file = %file,
        results = %request.results_path.display(),
        dry_run = request.dry_run,
        rehearsal = request.mock,
        resume = request.resume,
        rate = %settings.pacing.rate,
        ledger = %ledger,
        config = %settings.read_from.as_deref().map_or_else(|| "none".into(), |path| path.display().to_string()),
        "starting"
    );
    match (sends, request.at_speed()) {
        (true, false) => info!("{}", settings.pacing.describe_pace()),
        (true, true) => info!(
            "a rehearsal at speed: not waiting for the pace (--real-pace does); the summary says \
             how long a real send would take"
        ),
        (false, _) => {}
    }
}

/// Recover: the ledger kept to `ledger.keep`, then what the campaign's
/// other memories hold that the ledger lacks (after the prune, so that a
/// card its results file shows sent stays remembered for this run, however
/// old). Then this run's journal: until it is gone, a crash is known. A dry
/// run has none of these.
async fn recover(
    settings: &Settings,
    request: &RunRequest,
    prepared: &Prepared,
) -> Result<Option<Journal>, RunError> {
    let kind = request.kind();
    let (ledger, opened) = (&prepared.ledger, &prepared.opened);
    let results_path = opened.results_path.clone();
    let results_from = opened.results.results_from;
    if kind == Kind::Check {
        return Ok(None);
    }
    if kind == Kind::Send {
        prune(ledger, settings.ledger.keep).await?;
        let (earlier, left) = (opened.results.earlier.as_ref(), opened.left.as_ref());
        recovery::recover(
            ledger,
            &prepared.campaign_name,
            &results_path,
            earlier,
            left,
            results_from,
        )
        .await?;
    }
    let started = tokio::task::spawn_blocking(move || Journal::start(&results_path, results_from));
    let journal = started.await.expect("starting the journal does not panic");
    journal
        .map(Some)
        .map_err(|source| ResultsError::Io {
            path: opened.results_path.clone(),
            source,
        })
        .map_err(RunError::from)
}

/// Keep: cards older than `ledger.keep` go, a bounded few each run, so that
/// no run pays for years of history.
async fn prune(ledger: &Ledger, keep: crate::ledger::Keep) -> Result<(), RunError> {
    let pruned = ledger.prune(keep, Some(PRUNE_BATCH)).await?;
    if let Some(clocks) = pruned.clock_ahead {
        warn!("{}", clocks.held_back());
    }
    if pruned.cards + pruned.daily_counts > 0 {
        info!(
            cards = pruned.cards,
            daily_counts = pruned.daily_counts,
            "the ledger forgot what is older than ledger.keep ({keep})"
        );
    }
    Ok(())
}

/// What the pipeline left for the end of the run.
struct Ran {
    sends: bool,
    /// The rows `--limit` left unread, or why the campaign could not be read.
    read: Read,
    check: CheckReport,
    written: Result<Written, ResultsError>,
    control: Arc<RunControl>,
    progress: Progress,
    lock: RunLock,
    results_path: PathBuf,
    results_from: u64,
    campaign_name: String,
    name_from: NameFrom,
}

/// Send: one thread writes every line (and moves the progress bar), one
/// reads the rows in file order, the admission step asks the ledger about
/// each, and the dispatcher sends what it lets through: one lane per
/// instance, each paced on its own, `concurrency` requests in flight over
/// all of them, every card through the door. Returns once every row has
/// its line.
async fn send_every_row(
    settings: &Settings,
    request: &RunRequest,
    prepared: Prepared,
    progress_area: &MultiProgress,
    shutdown: CancellationToken,
) -> Result<Ran, RunError> {
    let kind = request.kind();
    let Prepared {
        campaign_name,
        name_from,
        target,
        instances,
        ledger,
        door_ledger,
        opened,
    } = prepared;
    let progress = match progress_area.is_hidden() {
        true => Progress::hidden(),
        false => Progress::new(progress_area, opened.total_rows),
    };
    let results = (opened.results.writer, opened.results.lines);
    let (outcomes, writer) = start_writing(request, results, &progress);
    let check = check_report(settings, &opened.campaign, &instances, &ledger).await?;
    let control = RunControl::new(shutdown, settings.retry, settings.schedule.quarantine.0);
    let (reader, read_rows) = start_reading(request, opened.campaign, &control);

    let (jobs, queued) = mpsc::channel::<Job>(256);
    let admitting = Admitting {
        ledger: ledger.clone(),
        remembers: kind == Kind::Send,
        campaign: campaign_name.clone(),
        rules: rules(settings, request),
        instances,
        jobs: (kind != Kind::Check).then_some(jobs),
        outcomes: outcomes.clone(),
        control: control.clone(),
        counts_first_contacts: settings.schedule.daily_new_contacts.is_some(),
    };
    let sending = target.as_ref().map(|target| {
        sending_by(
            target,
            settings,
            request,
            door_ledger,
            &progress,
            &admitting,
        )
    });
    let admitter = tokio::spawn(admitting.admit(read_rows, check));
    match sending {
        Some(sending) => dispatch::dispatch(queued, sending).await,
        None => drop(queued),
    }
    let read = reader.await;
    let check = admitter.await.expect("the admission step does not panic");
    drop(outcomes);
    let written = writer.await;
    Ok(Ran {
        sends: target.is_some(),
        read,
        check,
        written,
        control,
        progress,
        lock: opened.lock,
        results_path: opened.results_path,
        results_from: opened.results.results_from,
        campaign_name,
        name_from,
    })
}

/// The results writer, on a thread of its own: every line goes to it, and
/// it moves the progress bar.
fn start_writing(
    request: &RunRequest,
    (writer, lines): (results::ResultsWriter, results::LineFormat),
    progress: &Progress,
) -> (
    mpsc::Sender<Outcome>,
    crate::threads::Finished<Result<Written, ResultsError>>,
) {
    let progress = progress.clone();
    results::spawn_writer(
        writer,
        lines,
        request.results_path.clone(),
        move |tally| progress.show(tally),
        request.results_gate.clone(),
    )
}

/// How the admission step, and the door again, admit rows: the cooldown,
/// whether `UNKNOWN` rows go again, and how long a card may be in flight.
fn rules(settings: &Settings, request: &RunRequest) -> Rules {
    Rules::new(
        settings.schedule.cooldown,
        request.resend_unknown,
        (settings.retry).longest_in_flight(settings.api.timeout, settings.pacing.longest_turn()),
    )
}

/// What the dispatcher sends with: the target's numbers, at the pace the
/// settings ask (or at speed), through `door_ledger`; the campaign, its
/// rules, where lines go and the run's control as the admission step has them.
fn sending_by(
    target: &Target,
    settings: &Settings,
    request: &RunRequest,
    door_ledger: Arc<Ledger>,
    progress: &Progress,
    admitting: &Admitting,
) -> Sending {
    Sending {
        client: target.client.clone(),
        instances: target.instances.clone(),
        pace: match request.at_speed() {
            true => Pace::UNTHROTTLED,
            false => Pace::of(&settings.pacing),
        },
        concurrency: settings.pacing.concurrency,
        ledger: door_ledger,
        campaign: admitting.campaign.clone(),
        rules: admitting.rules,
        outcomes: admitting.outcomes.clone(),
        control: admitting.control.clone(),
        gates: gates(settings, request, progress),
        clock: request.clock.clone(),
    }
}

/// What the reading came to: the rows `--limit` left unread
/// ([`Campaign::unread`]), or why the campaign could not be read.
type Read = Result<Option<u64>, CampaignError>;

/// The rows, read and checked on a thread of their own, in file order.
fn start_reading(
    request: &RunRequest,
    campaign: Campaign,
    control: &RunControl,
) -> (crate::threads::Finished<Read>, mpsc::Receiver<Vec<Row>>) {
    let (rows, read_rows) = mpsc::channel::<Vec<Row>>(4);
    let reading = Reading {
        rows,
        stop: control.stopping().clone(),
        read_to_the_end: request.kind() != Kind::Check && request.source.is_regular_file(),
    };
    let reader = crate::threads::spawn("reader", move || reading.read(campaign));
    (reader, read_rows)
}

/// When the instances may send: the window, the daily cap.
fn gates(settings: &Settings, request: &RunRequest, progress: &Progress) -> Gates {
    Gates {
        window: settings.schedule.send_window(),
        daily_cap: settings.schedule.daily_cap(),
        no_wait: request.no_wait,
        progress: progress.clone(),
    }
}

/// What the dry-run report says of the file, and how long sending takes:
/// filled in by the admission step, row by row.
async fn check_report(
    settings: &Settings,
    campaign: &Campaign,
    instances: &[String],
    ledger: &Ledger,
) -> Result<CheckReport, RunError> {
    let pacing = &settings.pacing;
    let mut check = CheckReport::new(
        campaign.encoding_label(),
        campaign.delimiter(),
        Estimate::new(pacing.rate, pacing.pace_by_message, instances.len()),
        settings.schedule.send_window(),
        settings.campaign.default_region,
    );
    check.columns_from(&campaign.layout().renamed);
    // The numbers paused or held in the (real) ledger: their rows wait.
    let held = ledger
        .holds()
        .await?
        .into_iter()
        .filter_map(|hold| {
            let index = instances.iter().position(|id| *id == hold.instance_id)?;
            Some((index, hold.instance_id.clone(), hold.deferral().why))
        })
        .collect();
    check.numbers_held(held);
    check.daily_cap(
        settings.schedule.daily_cap,
        !settings.schedule.warmup.is_empty(),
    );
    check.first_contacts_cap(settings.schedule.daily_new_contacts);
    Ok(check)
}

/// Finish: every row has its line; then the journal has done its work, the
/// results file becomes the campaign's report (this run's lines, one a row,
/// in row order; a dry run's file is that already), the lock goes, and the
/// summary says what came of it.
async fn finish(
    request: RunRequest,
    ran: Ran,
    journal: Option<Journal>,
    (started, started_at): (Instant, jiff::Timestamp),
) -> Result<Summary, RunError> {
    let kind = request.kind();
    let written = match ran.written {
        Ok(written) => written,
        // Messages may have gone out: not a usage error but a halt, and
        // the journal stays, so the next run knows the file was cut.
        Err(error) if ran.sends => {
            ran.progress.finish();
            return Err(RunError::Halted(format!(
                "{error}; the ledger remembers what was sent: once the file can be written, run \
                 again with --resume"
            )));
        }
        Err(error) => return Err(error.into()),
    };
    ran.progress.finish();

    let (lock, results_path, results_from) = (ran.lock, ran.results_path, ran.results_from);
    let state = tokio::task::spawn_blocking(move || {
        let journal_gone = match journal.map(Journal::finish) {
            Some(Err(error)) => {
                warn!("cannot remove the journal: {error}");
                false
            }
            _ => true,
        };
        let state = match kind != Kind::Check && journal_gone {
            true => match results::compact(&results_path, results_from) {
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
    let unread = ran.read?;

    Ok(Summary::new(Finished {
        campaign: request.source.describe(),
        campaign_name: ran.campaign_name,
        campaign_name_from: ran.name_from,
        results: request.results_path.display().to_string(),
        dry_run: request.dry_run,
        at_speed: request.at_speed(),
        strict: request.strict,
        started_at,
        elapsed: started.elapsed(),
        tally: written.tally,
        by_instance: written.by_instance,
        failures: written.failures,
        left_rotation: ran.control.left(),
        refused: ran.control.refused(),
        answered_for: ran.control.answered_for_others(),
        state,
        unread,
        check: ran.check,
        stopped: ran.control.reason(),
    }))
}

/// A run's files, opened: the campaign, the lock on its results file, and
/// the results file, with what it held when there was one.
struct Opened {
    campaign: Campaign,
    /// The results file's real path.
    results_path: PathBuf,
    lock: RunLock,
    results: results::Opened,
    /// The journal a killed run left.
    left: Option<results::Left>,
    /// Data rows in the campaign, for the progress bar; counted only for it.
    total_rows: Option<u64>,
}

impl Opened {
    fn open(
        settings: &Settings,
        request: &RunRequest,
        campaign_name: &str,
        counting: bool,
    ) -> Result<Self, RunError> {
        let campaign = Campaign::open(
            &request.source,
            &settings.campaign,
            &settings.pacing,
            request.limit,
            settings.results.keep_columns,
        )?;
        let ignored = &campaign.layout().unknown;
        if !ignored.is_empty() {
            warn!(columns = %ignored.join(", "), "ignoring columns the tool does not use");
        }
        // The results file by its real name, and never the campaign; then
        // the lock: a second run must not even read the results file. A
        // check file is a report, not state: the campaign's own is replaced.
        let (dialect, kind) = (Dialect::of(&settings.results), request.kind());
        let replace_check = kind == Kind::Check
            && !request.overwrite
            && results::is_ours_or_refused(&request.results_path, Kind::Check, campaign_name)?;
        let overwrite = request.overwrite || replace_check;
        let path = &results::resolve(&request.results_path, overwrite)?;
        if let Source::File(campaign) = &request.source {
            results::refuse_campaign(campaign, path)?;
        }
        let lock = RunLock::acquire(path).map_err(ResultsError::from)?;
        let left = results::read_left(path).map_err(|source| ResultsError::Io {
            path: path.clone(),
            source,
        })?;
        // A send's file of this campaign is carried on even with
        // --overwrite: what it knows reaches the campaign's memory before
        // the run's own lines replace it (the rewrite at the end keeps only
        // those).
        let kept = campaign.layout().kept_headers();
        let carry_on = request.resume
            || (request.overwrite
                && kind == Kind::Send
                && results::is_ours(path, kind, campaign_name));
        let results = match carry_on {
            true => results::open_existing(path, dialect, kind, campaign_name, &kept)?,
            false => results::create(path, overwrite, dialect, kind, campaign_name, &kept)?,
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
            results,
            left,
            total_rows,
        })
    }
}
