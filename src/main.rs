//! flags → logging → run → exit code.

use std::path::Path;

use clap::{CommandFactory, Parser};
use tokio_util::sync::CancellationToken;
use tracing_subscriber::EnvFilter;

use interacto_bulk::api::{MockOptions, MockServer};
use interacto_bulk::campaign::Source;
use interacto_bulk::cli::{
    Cli, Command, ConfigAction, LedgerArgs, LogArgs, LogFormat, MockServerArgs, NumbersAction,
    NumbersArgs, PacingArgs, ReportArgs, RunArgs, SendArgs, SummaryFormat, SuppressArgs,
};
use interacto_bulk::commands::{IfNew, Pause};
use interacto_bulk::config::{Environment, Overrides, Settings};
use interacto_bulk::exit::{ExitCode, RunError};
use interacto_bulk::report::page::Lang;
use interacto_bulk::report::{self, Destination, LogWriter, Summary};
use interacto_bulk::results::{Kind, WriteGate};
use interacto_bulk::RunRequest;

fn main() -> std::process::ExitCode {
    let cli = parse_flags();
    let wants_progress = match &cli.command {
        Command::Send(args) => !args.run.no_progress,
        Command::Validate(args) => !args.run.no_progress,
        _ => false,
    };
    let progress_area = report::progress_area(wants_progress);
    init_logging(&cli.log, LogWriter::new(progress_area.clone()));

    let runtime = tokio::runtime::Runtime::new().expect("the tokio runtime starts");
    let outcome = runtime.block_on(async {
        let shutdown = CancellationToken::new();
        let gate = WriteGate::default();
        let words = SignalWords::of(&cli.command);
        // Watched from here on, before the command does anything a signal
        // should cut short.
        let signals = Signals::watch();
        tokio::spawn(watch_signals(
            signals,
            shutdown.clone(),
            gate.clone(),
            words,
        ));
        run_command(cli.command, &progress_area, shutdown, gate).await
    });
    // A blocking read that never returns (a FIFO nobody writes to) must not
    // keep the process from ending once the run is over.
    runtime.shutdown_background();
    let code = outcome.unwrap_or_else(|error| {
        tracing::error!("{error}");
        ExitCode::of_error(&error)
    });
    std::process::ExitCode::from(code.code())
}

/// The flags, or clap's error and its exit, with a `--summary json` line
/// before it when the command line asks for one.
fn parse_flags() -> Cli {
    Cli::try_parse().unwrap_or_else(|error| {
        // A log of `--summary json` lines has a line for every run, one
        // refused for its flags too.
        if error.use_stderr() && asks_for_a_json_summary(std::env::args_os()) {
            let problem = error.kind().as_str().unwrap_or("invalid arguments");
            let first_line = error.to_string();
            let first_line = first_line.lines().next().unwrap_or(problem);
            let summary = Summary::failed(
                String::new(),
                String::new(),
                false,
                jiff::Timestamp::now(),
                first_line.trim_start_matches("error: ").to_string(),
                ExitCode::Usage,
            );
            print_out(&format!("{}\n", summary.json()));
        }
        error.exit()
    })
}

/// Runs the command the flags name, to the exit code it ends with.
async fn run_command(
    command: Command,
    progress_area: &indicatif::MultiProgress,
    shutdown: CancellationToken,
    gate: WriteGate,
) -> Result<ExitCode, RunError> {
    match command {
        Command::Send(args) => {
            let mode = Mode::of_send(&args);
            let overrides = overrides(args.pacing, &args.run);
            run_campaign(args.run, overrides, mode, progress_area, shutdown, gate).await
        }
        Command::Validate(args) => {
            let overrides = overrides(args.pacing, &args.run);
            run_campaign(
                args.run,
                overrides,
                Mode::validate(),
                progress_area,
                shutdown,
                gate,
            )
            .await
        }
        Command::MockServer(args) => serve_mock(args, shutdown).await.map(|()| ExitCode::Success),
        Command::Numbers(args) => until_a_signal("numbers", show_numbers(args), &shutdown)
            .await
            .map(|()| ExitCode::Success),
        Command::Suppress(args) => until_a_signal("suppress", suppress(args), &shutdown).await,
        Command::Ledger(args) => until_a_signal("ledger", keep_ledger(args), &shutdown).await,
        Command::Report(args) => until_a_signal("report", write_report(args), &shutdown).await,
        Command::Completions { shell } => {
            print_completions(shell);
            Ok(ExitCode::Success)
        }
        Command::Man { command, out_dir } => manual_pages(&command, out_dir.as_deref()),
        Command::Config {
            action: ConfigAction::Example,
        } => {
            print_out(CONFIG_EXAMPLE);
            Ok(ExitCode::Success)
        }
    }
}

/// A command of a moment (`numbers`, `suppress`, `ledger`, `report`),
/// stopped with [`RunError::Stopped`] as soon as a signal comes, whatever it
/// waits on (a PostgreSQL that never answers, a FIFO nobody writes to): it
/// has nothing in flight to finish. A change to the ledger the store had
/// not committed is rolled back; one it was committing may have gone
/// through (the message says to look).
async fn until_a_signal<T>(
    command: &'static str,
    work: impl std::future::Future<Output = Result<T, RunError>>,
    shutdown: &CancellationToken,
) -> Result<T, RunError> {
    tokio::select! {
        biased;
        () = shutdown.cancelled() => Err(RunError::Stopped(command)),
        done = work => done,
    }
}

/// `completions SHELL`: the shell's completion script on stdout.
fn print_completions(shell: clap_complete::Shell) {
    let mut completions = Vec::new();
    let mut command = Cli::command();
    clap_complete::generate(shell, &mut command, "interacto-bulk", &mut completions);
    let mut script = String::from_utf8_lossy(&completions).into_owned();
    if shell == clap_complete::Shell::Bash {
        // clap_complete's bash script looks a hyphenated
        // binary's commands up as `interacto__bulk__subcmd__send`
        // but names their case arms `interacto__subcmd__bulk__…`,
        // so nothing after the command completed: one name.
        script = script.replace("interacto__subcmd__bulk", "interacto__bulk");
    }
    print_out(&script);
}

/// Whether the command line asks for the summary as JSON
/// (`--summary json` or `--summary=json`), read without clap, which could
/// not read it.
fn asks_for_a_json_summary(args: impl Iterator<Item = std::ffi::OsString>) -> bool {
    let args: Vec<String> = args.map(|arg| arg.to_string_lossy().into_owned()).collect();
    args.iter().any(|arg| arg == "--summary=json")
        || args
            .windows(2)
            .any(|pair| pair[0] == "--summary" && pair[1] == "json")
}

/// `report RESULTS.csv`: the campaign's report page.
async fn write_report(args: ReportArgs) -> Result<ExitCode, RunError> {
    let with_ledger = args.ledger.is_some();
    let settings = ledger_settings(args.config.as_deref(), args.ledger)?;
    // What the ledger knows of the numbers now, when it is named.
    let numbers = match with_ledger {
        true => interacto_bulk::commands::numbers(&settings, IfNew::RefuseOnly).await?,
        false => Vec::new(),
    };
    let lang = match args.lang.as_deref() {
        Some("pt-BR") => Lang::PtBr,
        Some(_) => Lang::En,
        None => Lang::from_env(std::env::var("LANG").ok().as_deref()),
    };
    let out = args
        .out
        .unwrap_or_else(|| args.results.with_extension("html"));
    let to = Destination {
        page: out.clone(),
        results: args.results.clone(),
        campaign: None,
    };
    // Rows past a run's --limit are not in the file: only its summary knows.
    let bytes = report_page(&to, lang, &settings, numbers, false)
        .await
        .map_err(|error| RunError::Usage(error.to_string()))?;
    print_out(&format!(
        "{} ({} KB)\n",
        out.display(),
        bytes.div_ceil(1024)
    ));
    Ok(ExitCode::Success)
}

/// The example config, as the project ships it.
const CONFIG_EXAMPLE: &str = include_str!("../config.example.toml");

/// The manual page of the tool or of one of its commands on stdout, or
/// every page into `out_dir`.
fn manual_pages(command: &[String], out_dir: Option<&Path>) -> Result<ExitCode, RunError> {
    if let Some(folder) = out_dir {
        let written = std::fs::create_dir_all(folder)
            .and_then(|()| interacto_bulk::cli::manual::write_all(folder))
            .map_err(|error| {
                RunError::Usage(format!(
                    "cannot write the manual pages into {}: {error}",
                    folder.display()
                ))
            })?;
        for path in written {
            print_out(&format!("{}\n", path.display()));
        }
        return Ok(ExitCode::Success);
    }
    let Some(page) = interacto_bulk::cli::manual::page(command) else {
        let names: Vec<_> = Cli::command()
            .get_subcommands()
            .map(|command| command.get_name().to_string())
            .filter(|name| name != "help")
            .collect();
        return Err(RunError::Usage(format!(
            "`{}` is not a command; one of: {}",
            command.join(" "),
            names.join(", ")
        )));
    };
    print_out(&String::from_utf8_lossy(&page));
    Ok(ExitCode::Success)
}

/// Writes to stdout; a reader that went away (`… | head`) is not an error
/// of the run, whose exit code stands.
fn print_out(text: &str) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let _ = stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush());
}

/// What a command says on the first signal and on the second.
struct SignalWords {
    stopping: &'static str,
    aborting: &'static str,
}

impl SignalWords {
    /// The mock server's words, or a run's (whose results file outlives an abort).
    fn of(command: &Command) -> SignalWords {
        match command {
            Command::MockServer(_) => SignalWords {
                stopping: "mock server: stopping (signal again to stop at once)",
                aborting: "mock server: stopping at once",
            },
            Command::Numbers(_) | Command::Suppress(_) | Command::Ledger(_) | Command::Report(_) => {
                SignalWords {
                    stopping: "stopping at once",
                    aborting: "stopping at once",
                }
            }
            _ => SignalWords {
                stopping: "stopping: no new messages; those in flight get their answer (signal again to abort at once)",
                aborting: "aborting; the results file stays valid and --resume carries on",
            },
        }
    }
}

/// The first SIGINT, SIGTERM or SIGHUP (a closed terminal) stops the run
/// taking rows; the second aborts at once, after any results line being
/// written is whole.
async fn watch_signals(
    mut signals: Signals,
    shutdown: CancellationToken,
    gate: WriteGate,
    words: SignalWords,
) {
    signals.received().await;
    tracing::warn!("{}", words.stopping);
    shutdown.cancel();
    signals.received().await;
    tracing::error!("{}", words.aborting);
    let _whole_lines = gate.hold();
    std::process::exit(ExitCode::of_abort().code().into());
}

/// The signals that stop a command: SIGINT (Ctrl-C), SIGTERM, SIGHUP.
struct Signals {
    #[cfg(unix)]
    watched: [tokio::signal::unix::Signal; 3],
}

impl Signals {
    /// Watches them from now on (a signal before this kills the process).
    #[cfg(unix)]
    fn watch() -> Signals {
        use tokio::signal::unix::{signal, SignalKind};
        let watched = [
            SignalKind::interrupt(),
            SignalKind::terminate(),
            SignalKind::hangup(),
        ]
        .map(|kind| signal(kind).expect("SIGINT, SIGTERM and SIGHUP can be watched"));
        Signals { watched }
    }

    #[cfg(not(unix))]
    fn watch() -> Signals {
        Signals {}
    }

    #[cfg(unix)]
    async fn received(&mut self) {
        let [interrupt, terminate, hangup] = &mut self.watched;
        tokio::select! {
            _ = interrupt.recv() => {}
            _ = terminate.recv() => {}
            _ = hangup.recv() => {}
        }
    }

    #[cfg(not(unix))]
    async fn received(&mut self) {
        let _ = tokio::signal::ctrl_c().await;
    }
}

/// `send --dry-run`, `validate` and `send --mock` differ only in these.
struct Mode {
    dry_run: bool,
    mock: bool,
    real_pace: bool,
    /// Write the campaign's report here at the end.
    report: Option<std::path::PathBuf>,
    no_wait: bool,
    resume: bool,
    resend_unknown: bool,
    strict: bool,
}

impl Mode {
    /// `send`, as its flags say.
    fn of_send(args: &SendArgs) -> Mode {
        Mode {
            dry_run: args.dry_run,
            mock: args.mock,
            real_pace: args.real_pace,
            report: args.report.clone(),
            no_wait: args.no_wait,
            resume: args.resume.resume,
            resend_unknown: args.resume.resend_unknown,
            strict: args.strict,
        }
    }

    /// `validate`: `send --dry-run`, and nothing else.
    fn validate() -> Mode {
        Mode {
            dry_run: true,
            mock: false,
            real_pace: false,
            report: None,
            no_wait: false,
            resume: false,
            resend_unknown: false,
            strict: false,
        }
    }
}

/// The settings the flags of `send` and `validate` lay over the config.
fn overrides(pacing: PacingArgs, run: &RunArgs) -> Overrides {
    Overrides {
        rate: pacing.rate,
        concurrency: pacing.concurrency,
        instances: pacing.instance,
        ledger: run.ledger.clone(),
        campaign: run.name.clone(),
    }
}

/// `send` and `validate`: the run, the campaign's report page when asked
/// for, and the summary on stdout.
async fn run_campaign(
    args: RunArgs,
    overrides: Overrides,
    mode: Mode,
    progress_area: &indicatif::MultiProgress,
    shutdown: CancellationToken,
    results_gate: WriteGate,
) -> Result<ExitCode, RunError> {
    let started_at = jiff::Timestamp::now();
    let request = run_request(&args, &mode, results_gate);
    let (campaign, results) = (
        request.source.describe(),
        request.results_path.display().to_string(),
    );
    let results_path = request.results_path.clone();
    let campaign_file = match &request.source {
        Source::File(path) => Some(path.clone()),
        _ => None,
    };
    let report_to = mode.report.clone().map(|page| Destination {
        page,
        results: results_path.clone(),
        campaign: campaign_file,
    });
    let run = async {
        let settings = Settings::load(
            args.config.as_deref(),
            Environment::from_process(),
            overrides,
        )?;
        // A page that would replace a file it must not is refused before
        // the first card goes, not found out after the last.
        if let Some(to) = &report_to {
            to.check()
                .map_err(|error| RunError::Usage(format!("{error}; nothing was sent")))?;
        }
        let mut summary =
            interacto_bulk::run(settings.clone(), request, progress_area, shutdown).await?;
        if let Some(to) = &report_to {
            write_campaign_report(to, &settings, &mut summary).await;
        }
        Ok(summary)
    };
    match (run.await, args.summary) {
        (Ok(summary), SummaryFormat::Text) => {
            print_out(&summary.text());
            Ok(summary.exit)
        }
        (Ok(summary), SummaryFormat::Json) => {
            print_out(&format!("{}\n", summary.json()));
            Ok(summary.exit)
        }
        // A run that cannot start has a JSON line too, so a log of them has every run.
        (Err(error), SummaryFormat::Json) => {
            let exit = ExitCode::of_error(&error);
            let summary = Summary::failed(
                campaign,
                results,
                mode.dry_run,
                started_at,
                error.to_string(),
                exit,
            );
            print_out(&format!("{}\n", summary.json()));
            Err(error)
        }
        (Err(error), SummaryFormat::Text) => Err(error),
    }
}

/// What the library's run is asked to do, from the flags; the results file
/// by default beside the campaign, named for the run's kind.
fn run_request(args: &RunArgs, mode: &Mode, results_gate: WriteGate) -> RunRequest {
    let source = Source::from_arg(&args.campaign);
    RunRequest {
        results_path: args.out.clone().unwrap_or_else(|| {
            source.default_results_path(Kind::of(mode.dry_run, mode.mock).file_name())
        }),
        source,
        overwrite: args.overwrite,
        resume: mode.resume,
        resend_unknown: mode.resend_unknown,
        dry_run: mode.dry_run,
        mock: mode.mock,
        real_pace: mode.real_pace,
        no_wait: mode.no_wait,
        limit: args.limit,
        strict: mode.strict,
        results_gate,
        clock: interacto_bulk::clock::Clock::system(),
    }
}

/// The report of the campaign as the run left it (`--report`); one that
/// cannot be written is said, and the run exits 3 ([`Summary::report_not_written`]).
async fn write_campaign_report(to: &Destination, settings: &Settings, summary: &mut Summary) {
    let lang = Lang::from_env(std::env::var("LANG").ok().as_deref());
    // The send made the ledger, if it was not there.
    let numbers = interacto_bulk::commands::numbers(settings, IfNew::RefuseOnly)
        .await
        .unwrap_or_default();
    let past_limit = summary
        .state
        .as_ref()
        .is_some_and(|state| state.unread != Some(0));
    match report_page(to, lang, settings, numbers, past_limit).await {
        Ok(_) => tracing::info!(report = %to.page.display(), "wrote the campaign's report"),
        Err(error) => {
            tracing::error!("{error}");
            let again = format!(
                "interacto-bulk report {} --out {}",
                to.results.display(),
                to.page.display()
            );
            summary.report_not_written(error.to_string(), &again);
        }
    }
}

/// Writes the report page `to` says, on a thread of its own: the results
/// file is read whole (a FIFO may never end, and a signal must still stop
/// the command), and the page written to disk.
async fn report_page(
    to: &Destination,
    lang: Lang,
    settings: &Settings,
    numbers: Vec<interacto_bulk::report::NumberReport>,
    past_limit: bool,
) -> Result<usize, interacto_bulk::report::page::PageError> {
    let (to, settings) = (to.clone(), settings.clone());
    tokio::task::spawn_blocking(move || {
        interacto_bulk::report::page::write_report(&to, lang, &settings, numbers, past_limit)
    })
    .await
    .expect("writing the report does not panic")
}

/// The settings of a command that only reads or writes the ledger.
fn ledger_settings(
    config: Option<&std::path::Path>,
    ledger: Option<String>,
) -> Result<Settings, RunError> {
    let overrides = Overrides {
        ledger,
        ..Overrides::default()
    };
    Ok(Settings::load(
        config,
        Environment::from_process(),
        overrides,
    )?)
}

async fn show_numbers(args: NumbersArgs) -> Result<(), RunError> {
    let settings = ledger_settings(args.config.as_deref(), args.ledger)?;
    let if_new = IfNew::create(args.create);
    match args.action {
        Some(NumbersAction::Pause {
            instance,
            reason,
            until,
            new,
        }) => {
            let pause = Pause {
                instance,
                reason,
                until,
                new,
            };
            let said = interacto_bulk::commands::pause_number(&settings, &pause, if_new).await?;
            print_out(&format!("{said}\n"));
            return Ok(());
        }
        Some(NumbersAction::Resume { instance }) => {
            let said =
                interacto_bulk::commands::resume_number(&settings, &instance, if_new).await?;
            print_out(&format!("{said}\n"));
            return Ok(());
        }
        None => {}
    }
    let numbers = interacto_bulk::commands::numbers(&settings, if_new).await?;
    match args.json {
        true => print_out(&format!(
            "{}\n",
            serde_json::to_string(&numbers).expect("a report always serialises")
        )),
        false => print_out(&report::numbers_text(&numbers)),
    }
    Ok(())
}

async fn keep_ledger(args: LedgerArgs) -> Result<ExitCode, RunError> {
    let settings = ledger_settings(args.config.as_deref(), args.ledger)?;
    let if_new = IfNew::create(args.create);
    let (text, exit) =
        interacto_bulk::commands::keep_ledger(&settings, args.action.into(), if_new).await?;
    print_out(&text);
    Ok(exit)
}

async fn suppress(args: SuppressArgs) -> Result<ExitCode, RunError> {
    let settings = ledger_settings(args.config.as_deref(), args.ledger)?;
    let if_new = IfNew::create(args.create);
    let (text, exit) =
        interacto_bulk::commands::suppress(&settings, args.action.into(), if_new).await?;
    print_out(&text);
    Ok(exit)
}

async fn serve_mock(args: MockServerArgs, stop: CancellationToken) -> Result<(), RunError> {
    let options = MockOptions {
        require_key: args.require_key,
        failure_rate: args.failure_rate,
        throttle_rate: args.throttle_rate,
        retry_after: args.retry_after,
        latency: std::time::Duration::from_millis(args.latency_ms),
        auth_fail_after: args.auth_fail_after,
        revoked_instances: args.revoke_instance,
        drop_rate: args.drop_rate,
        fail_first: 0,
        record: false,
    };
    let server = MockServer::start(args.listen, options)
        .await
        .map_err(RunError::Mock)?;
    print_out(&format!(
        "mock Interacto API listening on {}\n",
        server.base_url()
    ));
    server.serve_until(stop).await.map_err(RunError::Mock)
}

/// Logs go to stderr; `RUST_LOG` wins over `-v`/`-q`.
fn init_logging(args: &LogArgs, writer: LogWriter) {
    let level = match (args.verbose, args.quiet) {
        (0, 0) => "info",
        (1, _) => "debug",
        (v, _) if v >= 2 => "trace",
        (_, 1) => "warn",
        _ => "error",
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,interacto_bulk={level}")));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_target(false);
    match args.log_format {
        LogFormat::Text => builder.with_ansi(wants_colour()).init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn wants_colour() -> bool {
    use std::io::IsTerminal;
    std::env::var_os("NO_COLOR").is_none() && std::io::stderr().is_terminal()
}
