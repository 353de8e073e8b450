//! The command line: the flags, and the manual pages made from them
//! ([`manual`]). `config` turns the flags into checked settings; the
//! commands take plain types ([`crate::commands`]).

pub mod manual;

use std::num::NonZeroUsize;
use std::path::PathBuf;

use clap::{ArgAction, Args, Parser, Subcommand, ValueEnum};

use crate::commands::{LedgerTask, SuppressTask};
use crate::ledger::Keep;
use crate::pacing::Rate;

/// Start here, and where to read on; `--help` adds the environment and the exit codes.
const AFTER_HELP: &str = "\
Start with `interacto-bulk send samples/campaign.csv --mock --config samples/rehearsal.toml --overwrite`: \
the whole pipeline against a local copy of the API, nothing leaves the machine.
The API key is read from INTERACTO_API_KEY or the config file, never from a flag.";

/// The environment variables the tool reads, as `--help` and the manual
/// page list them.
pub const ENVIRONMENT: &str = "  INTERACTO_API_KEY      the API key (never a flag; never printed)
  INTERACTO_INSTANCE_ID  the sending number, if the config sets none
  INTERACTO_BASE_URL     the API's address [default: https://api.interacto.io]
  INTERACTO_LEDGER_URL   the ledger every run shares (sqlite://PATH or postgres://...)
  INTERACTO_CONFIG       the config file, when --config is not given
                         [default: $XDG_CONFIG_HOME/interacto-bulk/config.toml, if it exists]
  RUST_LOG               log filter; overrides -v and -q
  NO_COLOR               no colour in the logs";

/// The exit codes, as `--help` and the manual page list them.
pub const EXIT_CODES: &str =
    "  0    the campaign is complete: every row SENT, or never to be sent (INVALID,
       SUPPRESSED, DUPLICATE, UNSENDABLE); with --strict, every row SENT; in a
       dry run, every row VALID (or sent before), DUPLICATE or SUPPRESSED
  1    finished, rows left: FAILED or DEFERRED, rows past --limit (a later run
       sends them), UNKNOWN (the summary says what to do)
  2    usage, config or campaign-file error; nothing sent
  3    a person is needed: halted (credentials refused, too many failures, disk
       full; then --resume), or a number the API refused, which sends nothing
       until `numbers resume ID` (every run says so), or the --report page could
       not be written (the summary says how to write it)
  4    another run holds the lock on the results file
  5    stopped by the send window (--no-wait), a daily cap or first-contact
       limit, or a number an operator paused or a run held for a while;
       --resume later
  130  interrupted by a signal; --resume carries on";

/// `--help`'s end: where to start, the environment and the exit codes.
fn after_long_help() -> String {
    format!("{AFTER_HELP}\n\nEnvironment:\n{ENVIRONMENT}\n\nExit codes:\n{EXIT_CODES}")
}

/// Send WhatsApp contact-card messages in bulk through the Interacto API,
/// paced so that the sending number is not blocked.
#[derive(Debug, Parser)]
#[command(name = "interacto-bulk", version, propagate_version = true)]
#[command(after_help = AFTER_HELP, after_long_help = after_long_help())]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    #[command(flatten)]
    pub log: LogArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Validate, pace and send every row of a campaign CSV; write a results CSV
    Send(SendArgs),
    /// Check a campaign CSV without sending anything (the same as `send --dry-run`)
    Validate(ValidateArgs),
    /// Serve the Interacto API locally, with optional faults, for rehearsals and tests
    MockServer(MockServerArgs),
    /// Show what the ledger knows of each sending number: its first day,
    /// today's count and cap, its next free turn, the last 7 days
    Numbers(NumbersArgs),
    /// Keep recipients from ever getting a message (opt-outs; Brazil's LGPD
    /// requires honouring them): add, import, remove, list
    Suppress(SuppressArgs),
    /// Write a campaign report a person looks at: one HTML file, charts inline, from a
    /// results file
    Report(ReportArgs),
    /// Look after the ledger: what it holds, pruning cards older than ledger.keep,
    /// forgetting a person on request (LGPD)
    Ledger(LedgerArgs),
    /// Print a shell completion script on stdout, e.g.
    /// `interacto-bulk completions bash > ~/.local/share/bash-completion/completions/interacto-bulk`
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a manual page (roff) on stdout, e.g. `interacto-bulk man send | man -l -`;
    /// or write every page: `interacto-bulk man --out-dir ~/.local/share/man/man1`
    Man {
        /// A command's own page: `send`, `suppress add`, …
        #[arg(value_name = "COMMAND")]
        command: Vec<String>,
        /// Write the page of the tool and of every command into this folder
        /// (created if missing), as interacto-bulk.1, interacto-bulk-send.1, …
        #[arg(long, value_name = "DIR", conflicts_with = "command")]
        out_dir: Option<PathBuf>,
    },
    /// The config file: `config example` prints a commented example to start from
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
}

#[derive(Debug, Subcommand)]
pub enum ConfigAction {
    /// Print the example config, every setting with its default and what it does:
    /// `interacto-bulk config example > ~/.config/interacto-bulk/config.toml`
    Example,
}

#[derive(Debug, Args)]
pub struct SuppressArgs {
    #[command(subcommand)]
    pub action: SuppressAction,

    /// Config file (TOML): the ledger, and campaign.default_region for phones
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// The ledger that keeps the list: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
    /// [config: ledger.url; env: INTERACTO_LEDGER_URL, the place for a password: a command
    /// line shows in `ps`]
    #[arg(long, value_name = "URL", global = true)]
    pub ledger: Option<String>,

    /// If there is no ledger yet where the URL points, start a new, empty one; without it the
    /// command refuses (exit 2) and creates nothing (`send` and `validate` start theirs unasked)
    #[arg(long, global = true)]
    pub create: bool,
}

#[derive(Debug, Subcommand)]
pub enum SuppressAction {
    /// Add phones to the list (written as in a campaign; normalised the same way)
    Add {
        #[arg(required = true, value_name = "PHONE")]
        phones: Vec<String>,
        /// Why, kept with each phone
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Add every phone of a CSV file, read as a campaign is (Excel's encodings and
    /// delimiters): its phone column (header `phone`, `to`, `telefone`, `celular`,
    /// `whatsapp`, `fone` or `número`, matched like campaign headers), or its only
    /// column; a first line holding a phone is a row. Rows not imported are named,
    /// exit 1
    Import {
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// Why, kept with each phone
        #[arg(long, value_name = "TEXT")]
        reason: Option<String>,
    },
    /// Take phones off the list
    Remove {
        #[arg(required = true, value_name = "PHONE")]
        phones: Vec<String>,
    },
    /// The whole list, as CSV on stdout (phone,reason,added_at)
    List,
}

#[derive(Debug, Args)]
pub struct LedgerArgs {
    #[command(subcommand)]
    pub action: LedgerAction,

    /// Config file (TOML): the ledger, ledger.keep, and campaign.default_region for phones
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// The ledger: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
    /// [config: ledger.url; env: INTERACTO_LEDGER_URL, the place for a password: a command
    /// line shows in `ps`]
    #[arg(long, value_name = "URL", global = true)]
    pub ledger: Option<String>,

    /// If there is no ledger yet where the URL points, start a new, empty one; without it the
    /// command refuses (exit 2) and creates nothing (`send` and `validate` start theirs unasked)
    #[arg(long, global = true)]
    pub create: bool,
}

#[derive(Debug, Subcommand)]
pub enum LedgerAction {
    /// What the ledger holds: cards, recipients, suppressed phones, numbers, campaigns,
    /// its oldest and newest card, its size on disk and schema version
    Stats {
        /// One JSON object on stdout
        #[arg(long)]
        json: bool,
    },
    /// Remove now every card older than ledger.keep, and the daily counts of those days
    /// (runs also prune as they go, a little each); the suppression list is never pruned
    Prune {
        /// Keep this many days instead of ledger.keep, like 400d
        #[arg(long, value_name = "DAYS")]
        keep: Option<Keep>,
    },
    /// Erase every card sent to these phones, as a person's request under the LGPD asks: the
    /// ledger keeps that each card went (a digest, not the phone), so no campaign sends it
    /// again; an opt-out stays on the suppression list, so it is still honoured
    Forget {
        /// Phones, written as in a campaign (normalised the same way)
        #[arg(value_name = "PHONE", required_unless_present = "from")]
        phones: Vec<String>,
        /// A CSV file of phones, read like `suppress import`'s
        #[arg(long, value_name = "FILE")]
        from: Option<PathBuf>,
        /// Forget the cards that carry these phones as the card's phone too (a phone that is
        /// only on cards is refused without it: the business's own number, most likely)
        #[arg(long)]
        as_card: bool,
    },
}

impl From<SuppressAction> for SuppressTask {
    fn from(action: SuppressAction) -> Self {
        match action {
            SuppressAction::Add { phones, reason } => SuppressTask::Add { phones, reason },
            SuppressAction::Import { file, reason } => SuppressTask::Import { file, reason },
            SuppressAction::Remove { phones } => SuppressTask::Remove { phones },
            SuppressAction::List => SuppressTask::List,
        }
    }
}

impl From<LedgerAction> for LedgerTask {
    fn from(action: LedgerAction) -> Self {
        match action {
            LedgerAction::Stats { json } => LedgerTask::Stats { json },
            LedgerAction::Prune { keep } => LedgerTask::Prune { keep },
            LedgerAction::Forget {
                phones,
                from,
                as_card,
            } => LedgerTask::Forget {
                phones,
                from,
                as_card,
            },
        }
    }
}

#[derive(Debug, Args)]
pub struct NumbersArgs {
    /// Pause or resume a number, for every run sharing the ledger
    #[command(subcommand)]
    pub action: Option<NumbersAction>,

    /// Config file (TOML): the ledger, the daily cap and warm-up, the pace
    #[arg(long, value_name = "FILE", global = true)]
    pub config: Option<PathBuf>,

    /// The ledger: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
    /// [config: ledger.url; env: INTERACTO_LEDGER_URL, the place for a password: a command
    /// line shows in `ps`]
    #[arg(long, value_name = "URL", global = true)]
    pub ledger: Option<String>,

    /// If there is no ledger yet where the URL points, start a new, empty one; without it the
    /// command refuses (exit 2) and creates nothing (`send` and `validate` start theirs unasked)
    #[arg(long, global = true)]
    pub create: bool,

    /// One JSON array on stdout instead of a line a number
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The results file (or a check or rehearsal file)
    #[arg(value_name = "RESULTS.csv")]
    pub results: PathBuf,

    /// Where the page goes [default: the results file's name with .html]. It replaces only an
    /// earlier report: never the results file, a results, rehearsal or check file, or anything
    /// through a symbolic link (exit 2)
    #[arg(long, value_name = "FILE.html")]
    pub out: Option<PathBuf>,

    /// The page's language [default: from LANG: pt-BR for pt_*, else en]
    #[arg(long, value_name = "LANG", value_parser = ["en", "pt-BR"])]
    pub lang: Option<String>,

    /// Config file (TOML): the pace the chart shows
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Also show what the ledger knows of the file's numbers now: paused or held (why,
    /// until), today's count: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
    /// [env: INTERACTO_LEDGER_URL is not read for this: name the ledger to show it]
    #[arg(long, value_name = "URL")]
    pub ledger: Option<String>,
}

#[derive(Debug, Subcommand)]
pub enum NumbersAction {
    /// Send nothing through the number, in every run sharing the ledger, on any machine
    /// (a run in progress stops within a few seconds): its rows are DEFERRED, exit 5. Only a
    /// number the ledger knows, by its exact id: any other is refused (exit 2, nothing paused),
    /// naming the closest ids it knows, unless --new
    Pause {
        /// The instance id, exactly as the ledger knows it (case and spaces count; `numbers`
        /// lists them)
        #[arg(value_name = "ID", value_parser = instance_id)]
        instance: String,
        /// Why, for the rows it defers and for `numbers`
        #[arg(long, value_name = "TEXT", default_value = "paused by an operator")]
        reason: String,
        /// Until a time (2026-12-01T08:00:00Z, or 2026-12-01 08:00 in schedule.timezone) or for
        /// a while (30m, 12h, 2d); without it, until `numbers resume`
        #[arg(long, value_name = "TIME|DURATION")]
        until: Option<String>,
        /// The number has not sent yet, so the ledger does not know it: pause it before it is
        /// put into service. Still refused for an id the ledger knows in another case or with
        /// spaces around it (that is a typo of a number that sends)
        #[arg(long)]
        new: bool,
    },
    /// Let a paused or held number send again. Only a number the ledger knows, by its exact
    /// id: any other is refused (exit 2), naming the closest ids it knows (one paused with
    /// `pause --new` is known)
    Resume {
        /// The instance id, exactly as the ledger knows it (`numbers` lists them)
        #[arg(value_name = "ID", value_parser = instance_id)]
        instance: String,
    },
}

/// `numbers pause|resume ID`: an id a config could name (`api.instance_id`'s
/// rule), so that an empty one is refused before any ledger is opened.
/// Spaces around it are left for the command to refuse, naming the id meant.
fn instance_id(text: &str) -> Result<String, String> {
    if text.trim().is_empty() {
        return Err(
            "an id empty or only spaces names no number (`numbers` lists the ids the ledger \
             knows)"
                .into(),
        );
    }
    crate::api::check_instances("ID", &[text.to_string()]).map_err(|invalid| invalid.problem)?;
    Ok(text.to_string())
}

#[derive(Debug, Args)]
pub struct SendArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub resume: ResumeArgs,

    #[command(flatten)]
    pub pacing: PacingArgs,

    /// Validate and write the check file (<campaign stem>.check.csv), but send nothing
    #[arg(long, conflicts_with = "resume")]
    pub dry_run: bool,

    /// Rehearse: send to an embedded mock API on 127.0.0.1 instead of the real one (no
    /// credentials needed), without waiting for the pace (the summary says how long a real
    /// send would take); writes <campaign stem>.mock.csv, and nothing enters the ledger
    #[arg(long)]
    pub mock: bool,

    /// With --mock: wait for the pace as a real send would, to rehearse its timing
    #[arg(long, requires = "mock")]
    pub real_pace: bool,

    /// At the end, write the campaign's report (one HTML file) here, in LANG's language.
    /// Checked before the first card goes (exit 2, nothing sent): its folder must exist, and
    /// it replaces only an earlier report, never the results file, the campaign file, a
    /// results, rehearsal or check file, or anything through a symbolic link. A page that
    /// cannot be written at the end makes the run exit 3
    #[arg(long, value_name = "FILE.html")]
    pub report: Option<PathBuf>,

    /// Exit 1 unless every row is SENT (by default INVALID, SUPPRESSED, DUPLICATE and UNSENDABLE rows,
    /// which no later run would send, complete a campaign)
    #[arg(long)]
    pub strict: bool,

    /// Outside the send window, stop at once (rows DEFERRED, exit 5) instead of waiting; with
    /// schedule.window_in = "recipient", only the rows whose window is shut wait for a --resume
    #[arg(long)]
    pub no_wait: bool,
}

/// How the messages would go: `validate` takes them too, so that its
/// estimate is the send's.
#[derive(Debug, Args)]
pub struct PacingArgs {
    /// Messages per instance, as N/s, N/min or N/h [config: pacing.rate]
    #[arg(long, value_name = "RATE")]
    pub rate: Option<Rate>,

    /// An instance (WhatsApp number) to send through; repeat for several
    /// [config: api.instances; env: INTERACTO_INSTANCE_ID]
    #[arg(long, value_name = "ID")]
    pub instance: Vec<String>,

    /// Requests in flight at once, at least 1 [config: pacing.concurrency]
    #[arg(long, value_name = "N", value_parser = at_least_one)]
    pub concurrency: Option<NonZeroUsize>,
}

/// `send` carries on an earlier run's results; `validate` starts afresh.
#[derive(Debug, Args)]
pub struct ResumeArgs {
    /// Carry on the campaign in its existing results file (rows its runs SENT, or left
    /// UNKNOWN, are never sent again, whatever the file: the ledger remembers them)
    #[arg(long, conflicts_with = "overwrite")]
    pub resume: bool,

    /// With --resume: send again the rows earlier runs of the campaign left UNKNOWN (they
    /// may reach the person twice)
    #[arg(long, requires = "resume")]
    pub resend_unknown: bool,
}

#[derive(Debug, Args)]
pub struct ValidateArgs {
    #[command(flatten)]
    pub run: RunArgs,

    #[command(flatten)]
    pub pacing: PacingArgs,
}

/// A count that must be 1 or more, said in words.
fn at_least_one(text: &str) -> Result<NonZeroUsize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("must be at least 1".to_string()),
        Ok(n) => Ok(NonZeroUsize::new(n).expect("not zero")),
        Err(_) => Err(format!("`{text}` is not a whole number")),
    }
}

/// Flags shared by `send` and `validate`.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// The campaign CSV, or `-` for standard input
    #[arg(value_name = "CAMPAIGN")]
    pub campaign: PathBuf,

    /// Config file (TOML); see config.example.toml
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// The campaign's name, which its memory in the ledger goes by: no run of a campaign
    /// sends a row its runs sent; a new name sends the cards again [config: campaign.name;
    /// default: the campaign file's name without its extension and a date it ends in
    /// (leads-2026-12-07.csv: leads); required for `-`]
    #[arg(long = "campaign", id = "campaign_name", value_name = "NAME")]
    pub name: Option<String>,

    /// Results CSV [default: <campaign stem>.results.csv in the working
    /// directory; <campaign stem>.check.csv for validate and --dry-run,
    /// <campaign stem>.mock.csv for --mock]
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,

    /// Replace an existing results file (it is never replaced without this; the ledger
    /// still remembers what the campaign sent)
    #[arg(long)]
    pub overwrite: bool,

    /// The ledger every run shares: sqlite://PATH or postgres://USER:PASSWORD@HOST/DB
    /// [config: ledger.url; env: INTERACTO_LEDGER_URL;
    /// default: $XDG_STATE_HOME/interacto-bulk/ledger.db; a password goes in the environment,
    /// not here: a command line shows in `ps`]
    #[arg(long, value_name = "URL")]
    pub ledger: Option<String>,

    /// Read only the first N data rows of the campaign (a send that leaves rows past them is
    /// not complete: exit 1)
    #[arg(long, value_name = "N")]
    pub limit: Option<u64>,

    /// Do not draw the progress bar (it is only drawn on a terminal anyway)
    #[arg(long)]
    pub no_progress: bool,

    /// How to print the final summary on stdout
    #[arg(long, value_enum, default_value_t = SummaryFormat::Text)]
    pub summary: SummaryFormat,
}

#[derive(Debug, Args)]
pub struct MockServerArgs {
    /// Address to listen on
    #[arg(long, default_value = "127.0.0.1:8080", value_name = "ADDR")]
    pub listen: std::net::SocketAddr,

    /// Only accept this API key (any non-empty key is accepted without it)
    #[arg(long, value_name = "KEY")]
    pub require_key: Option<String>,

    /// Share of requests answered 500, from 0 to 1
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = ratio, allow_negative_numbers = true)]
    pub failure_rate: f64,

    /// Share of requests answered 429 with Retry-After, from 0 to 1
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = ratio, allow_negative_numbers = true)]
    pub throttle_rate: f64,

    /// Seconds in the Retry-After header of a 429
    #[arg(long, default_value_t = 1, value_name = "SECONDS")]
    pub retry_after: u64,

    /// Milliseconds to wait before answering each request
    #[arg(long, default_value_t = 0, value_name = "MS")]
    pub latency_ms: u64,

    /// Share of requests queued but answered with a cut-off connection, from 0 to 1
    #[arg(long, default_value_t = 0.0, value_name = "RATIO", value_parser = ratio, allow_negative_numbers = true)]
    pub drop_rate: f64,

    /// Answer 401 to every request for this instance; repeat for several
    #[arg(long, value_name = "ID")]
    pub revoke_instance: Vec<String>,

    /// Answer 401 to every request after the first N accepted messages
    #[arg(long, value_name = "N")]
    pub auth_fail_after: Option<u64>,
}

/// A share of requests, from 0 to 1.
fn ratio(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(ratio) if (0.0..=1.0).contains(&ratio) => Ok(ratio),
        _ => Err(format!("must be a number between 0 and 1, not {text}")),
    }
}

/// The heading the flags of every command are listed under, after the command's own.
const GLOBAL: &str = "Global options";

#[derive(Debug, Args)]
pub struct LogArgs {
    /// More log detail on stderr (-v debug, -vv trace); RUST_LOG overrides
    #[arg(short, long, action = ArgAction::Count, global = true, conflicts_with = "quiet", help_heading = GLOBAL)]
    pub verbose: u8,

    /// Less log detail on stderr (-q warnings only, -qq errors only)
    #[arg(short, long, action = ArgAction::Count, global = true, help_heading = GLOBAL)]
    pub quiet: u8,

    /// Log line format on stderr
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true, help_heading = GLOBAL)]
    pub log_format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SummaryFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}
