//! Helpers for tests that run the real binary against a server on 127.0.0.1.
//! Every binary a test starts begins from a cleared environment: nothing of
//! the shell running the tests (an `INTERACTO_*` variable, `RUST_LOG`, a home
//! directory) reaches it, only what the test sets.

use std::cell::Cell;
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::{Ipv4Addr, SocketAddr};
use std::ops::{Deref, DerefMut};
use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;
use tempfile::TempDir;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, Command};

use interacto_bulk::api::{MockOptions, MockServer};

pub const API_KEY: &str = "test-key-5f2c9a81d0e4";

/// Where a test's ledger is: the tests of what runs share run on both.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Store {
    Sqlite,
    Postgres,
}

impl Store {
    /// A new, empty ledger: a file in `work`, or a database of its own.
    pub async fn ledger(self, work: &Workspace) -> String {
        match self {
            Store::Sqlite => format!("sqlite://{}", work.path("ledger.db").display()),
            Store::Postgres => crate::pg::database().await,
        }
    }
}

/// A ledger written by the release before the campaign memory's second
/// round (schema 16, commit fe4dab9), on `store`, as its URL: campaign
/// `promoção` named in NFD after its file, three cards (to `+55 11
/// 98765-4321`, `+55 21 99876-5432` and `+55 31 97654-3210`, each `Loja`,
/// `+55 11 3003-4000`) sent through `fixture-number` under `daily_cap = 50`
/// on 2026-12-07 at 21:09 UTC, with no schedule.timezone (the number's zone
/// kept as `localtime`).
pub async fn release_before(store: Store, work: &Workspace) -> String {
    match store {
        Store::Sqlite => {
            let path = work.path("ledger.db");
            std::fs::write(&path, include_bytes!("../fixtures/ledger-v16.db")).unwrap();
            format!("sqlite://{}", path.display())
        }
        Store::Postgres => {
            let url = crate::pg::database().await;
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("the tests' PostgreSQL answers");
            tokio::spawn(connection);
            let dump = include_str!("../fixtures/ledger-v16.pg.sql");
            client.batch_execute(dump).await.expect("the dump loads");
            url
        }
    }
}

/// A test against the embedded mock with `options`: the mock, a
/// workspace, and a quick config that sends to the mock.
pub async fn against(options: MockOptions) -> (MockServer, Workspace, Config) {
    let server = embedded(options).await;
    let settings = Config::fast(&server.base_url());
    (server, Workspace::new(), settings)
}

/// A test against the default mock: the mock, a workspace, and the quick
/// config's file.
pub async fn against_the_mock() -> (MockServer, Workspace, String) {
    let (server, work, settings) = against(MockOptions::default()).await;
    let config = work.config(&settings);
    (server, work, config)
}

/// A test of what runs on `store`: [`against`] the default mock, the
/// config keeping a new ledger on `store`.
pub async fn on_store(store: Store) -> (MockServer, Workspace, Config) {
    let (server, work, settings) = against(MockOptions::default()).await;
    let ledger = store.ledger(&work).await;
    (server, work, settings.ledger(&ledger))
}

/// Each test, once on each store: `async fn name(store: Store)` becomes
/// `name::sqlite` and `name::postgres`.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            #[tokio::test(flavor = "multi_thread")]
            async fn sqlite() {
                super::$test($crate::common::Store::Sqlite).await
            }

            #[tokio::test(flavor = "multi_thread")]
            async fn postgres() {
                super::$test($crate::common::Store::Postgres).await
            }
        }
    )*};
}

/// Asserts that a finished binary exited with exactly `exit`; the message
/// gives its stderr, after the words given (`assert_exit!(output, 2, "{flag}")`).
macro_rules! assert_exit {
    ($output:expr, $exit:expr $(,)?) => {
        $crate::common::check_exit(&$output, $exit, "")
    };
    ($output:expr, $exit:expr, $($what:tt)+) => {
        $crate::common::check_exit(&$output, $exit, &format!($($what)+))
    };
}

/// The embedded mock on a free port of 127.0.0.1, keeping every request.
pub async fn embedded(options: MockOptions) -> MockServer {
    let options = MockOptions {
        record: true,
        ..options
    };
    MockServer::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options)
        .await
        .expect("the mock starts")
}

/// The API's 201 answer, for wiremock.
pub fn accepted(id: &str) -> wiremock::ResponseTemplate {
    wiremock::ResponseTemplate::new(201).set_body_json(json!({
        "statusCode": 201, "message": "request successful",
        "data": {"id": id, "status": "QUEUED", "sended": false}
    }))
}

/// A wiremock server that fails the test if any request reaches it.
pub async fn server_expecting_no_request() -> wiremock::MockServer {
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(wiremock::matchers::any())
        .respond_with(accepted("never"))
        .expect(0)
        .mount(&server)
        .await;
    server
}

/// How many times the mock queued each recipient (answers cut off included).
pub fn queued_per_recipient(server: &MockServer) -> HashMap<String, usize> {
    let mut queued = HashMap::new();
    for request in server
        .received()
        .into_iter()
        .filter(|request| request.answered == 201)
    {
        let to = request.body["to"].as_str().expect("a request has a `to`");
        *queued.entry(to.to_string()).or_insert(0) += 1;
    }
    queued
}

/// The recipient (`to`) of every request that reached the mock, in the
/// order they came.
pub fn recipients(server: &MockServer) -> Vec<String> {
    server
        .received()
        .iter()
        .map(|request| {
            let to = request.body["to"].as_str().expect("a request has a `to`");
            to.to_string()
        })
        .collect()
}

/// When each request reached the mock, in the order they came.
pub fn arrival_times(server: &MockServer) -> Vec<Instant> {
    server
        .received()
        .into_iter()
        .map(|request| request.at)
        .collect()
}

/// How many requests reached the mock through `instance`.
pub fn requests_from(server: &MockServer, instance: &str) -> usize {
    server
        .received()
        .iter()
        .filter(|request| request.instance_id.as_deref() == Some(instance))
        .count()
}

/// Waits until the mock is done with every connection: each request that
/// reached it was answered, or dropped with its client (a killed run's), so
/// that what it received can be counted.
pub async fn all_handled(server: &MockServer) {
    let port = format!(":{:04X} ", server.addr().port());
    wait_for("the mock to close every connection", || {
        let table = std::fs::read_to_string("/proc/net/tcp").expect("/proc/net/tcp is readable");
        // Columns: sl, local address, remote address, state (01
        // established, 08 waiting for this side to close).
        !table.lines().skip(1).any(|socket| {
            let columns: Vec<&str> = socket.split_whitespace().collect();
            format!("{} ", columns[1]).ends_with(&port) && ["01", "08"].contains(&columns[3])
        })
    })
    .await;
}

/// A test's config file, section by section: it starts from
/// [`Config::fast`] and changes keys one at a time.
#[derive(Clone)]
pub struct Config {
    /// `section.key` -> the value as TOML writes it.
    keys: BTreeMap<String, String>,
}

impl Config {
    /// Sends to `base_url` through `inst-1` quickly: the floors stay, the waits go.
    pub fn fast(base_url: &str) -> Self {
        Config {
            keys: BTreeMap::new(),
        }
        .set("api.base_url", &format!("{base_url:?}"))
        .set("api.instance_id", "\"inst-1\"")
        .set("api.timeout", "5")
        .set("retry.initial_backoff", "0.01")
        .set("retry.max_backoff", "0.05")
        .set("pacing.rate", "\"200/s\"")
        .set("pacing.burst", "1")
        .set("pacing.pace_by_message", "false")
    }

    /// Sets `section.key` to `value`, written as TOML (`"5/s"` with its quotes).
    pub fn set(mut self, key: &str, value: &str) -> Self {
        self.keys.insert(key.to_string(), value.to_string());
        self
    }

    /// Keeps the ledger at `url` (`sqlite://…`, `postgres://…`).
    pub fn ledger(self, url: &str) -> Self {
        self.set("ledger.url", &format!("{url:?}"))
    }

    pub fn unset(mut self, key: &str) -> Self {
        self.keys.remove(key);
        self
    }

    fn toml(&self) -> String {
        let mut sections: BTreeMap<&str, String> = BTreeMap::new();
        for (key, value) in &self.keys {
            let (section, name) = key.rsplit_once('.').expect("keys are section.key");
            sections
                .entry(section)
                .or_default()
                .push_str(&format!("{name} = {value}\n"));
        }
        sections
            .iter()
            .map(|(section, keys)| format!("[{section}]\n{keys}\n"))
            .collect()
    }
}

/// A scratch directory the binary runs in, with its own home.
pub struct Workspace {
    pub dir: TempDir,
    /// Config files written so far, so that each gets a name of its own.
    configs: Cell<u32>,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("a temporary directory"),
            configs: Cell::new(0),
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn write(&self, name: &str, text: &str) -> PathBuf {
        let path = self.path(name);
        std::fs::write(&path, text).expect("the test file is written");
        path
    }

    /// Writes `config` as a file of its own; returns its path, as a flag takes it.
    pub fn config(&self, config: &Config) -> String {
        self.configs.set(self.configs.get() + 1);
        let name = format!("config-{}.toml", self.configs.get());
        let path = self.write(&name, &config.toml());
        path.to_str().expect("test paths are UTF-8").to_string()
    }

    /// The binary with `args`, run here, in a cleared environment but for a
    /// home of its own in this workspace, `NO_COLOR` and `env`.
    pub fn command(&self, args: &[&str], env: &[(&str, &str)]) -> Command {
        let mut command = self.sealed(env!("CARGO_BIN_EXE_interacto-bulk"));
        command
            .args(args)
            .env("NO_COLOR", "1")
            .envs(env.iter().copied());
        command
    }

    /// `program`, to run here in a cleared environment but for a home of
    /// its own in this workspace.
    pub fn sealed(&self, program: &str) -> Command {
        let mut command = Command::new(program);
        command
            .current_dir(self.dir.path())
            .env_clear()
            .env("HOME", self.path("home"))
            .env("XDG_STATE_HOME", self.path("home/state"))
            .env("XDG_CONFIG_HOME", self.path("home/config"))
            .kill_on_drop(true);
        command
    }

    /// Runs the binary here with the test key in its environment.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[("INTERACTO_API_KEY", API_KEY)])
            .await
    }

    /// Runs the binary here with the test key and asserts it succeeded.
    pub async fn ok(&self, args: &[&str]) -> Output {
        self.fails(args, 0).await
    }

    /// Runs the binary here with the test key and asserts it exited with
    /// exactly `exit`.
    pub async fn fails(&self, args: &[&str], exit: i32) -> Output {
        let output = self.run(args).await;
        check_exit(&output, exit, &args.join(" "));
        output
    }

    /// Runs the binary here with the test key and asserts it refused (exit
    /// 2), saying `saying`.
    pub async fn refuses(&self, args: &[&str], saying: &str) -> Output {
        let output = self.fails(args, 2).await;
        assert_refused(&output, saying);
        output
    }

    /// Checks `campaign.csv` (`validate` with `flags` and `--summary json`),
    /// asserts it exited with exactly `exit` and returns the summary's
    /// `check`.
    pub async fn validate(&self, flags: &[&str], exit: i32) -> serde_json::Value {
        let mut args = vec!["validate", "campaign.csv"];
        args.extend_from_slice(flags);
        args.extend(["--summary", "json"]);
        let output = self.fails(&args, exit).await;
        summary_json(&output)["check"].clone()
    }

    /// Checks `campaign.csv` again (`validate` with `flags` and
    /// `--overwrite`) and returns the report it printed.
    pub async fn report(&self, flags: &[&str], exit: i32) -> String {
        let mut args = vec!["validate", "campaign.csv"];
        args.extend_from_slice(flags);
        args.push("--overwrite");
        stdout(&self.fails(&args, exit).await)
    }

    /// Runs the binary here with `env` and nothing else in its environment.
    pub async fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        finish(self.command(args, env)).await
    }

    /// Runs the binary here with the test key, its wall clock moved by
    /// `shift` (libfaketime's `+25h`): "the next day" for the binary, while
    /// its monotonic clock, and this test's servers, keep real time.
    pub async fn run_later(&self, shift: &str, args: &[&str]) -> Output {
        finish(self.later(shift, args)).await
    }

    /// Starts the binary here in the background like [`Workspace::spawn`],
    /// its wall clock moved by `shift` as in [`Workspace::run_later`].
    pub fn spawn_later(&self, shift: &str, args: &[&str]) -> Running {
        background(self.later(shift, args), Log::Stderr)
    }

    /// The binary with `args` and the test key, its wall clock moved by
    /// `shift` (libfaketime's).
    fn later(&self, shift: &str, args: &[&str]) -> Command {
        let mut command = self.sealed(FAKETIME);
        command
            .args(["-f", shift, env!("CARGO_BIN_EXE_interacto-bulk")])
            .args(args)
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("NO_COLOR", "1")
            .env("INTERACTO_API_KEY", API_KEY);
        command
    }

    /// Runs the binary here with the test key, as [`Workspace::run`] does,
    /// on a machine whose own time zone is `zone` (`Etc/GMT+12`): in a
    /// mount namespace of its own, `/etc` is this machine's (a link to each
    /// of its entries) but for `localtime`, which links to `zone`'s file, as
    /// `timedatectl set-timezone` leaves it. `unshare` (util-linux) makes the
    /// namespace.
    pub async fn run_on_a_machine_in(&self, zone: &str, args: &[&str]) -> Output {
        let script = r#"set -eu
            zone=$1; shift
            real=$(mktemp -d); fake=$(mktemp -d)
            mount --bind /etc "$real"
            for entry in "$real"/* "$real"/.[!.]*; do
                if [ -e "$entry" ] || [ -L "$entry" ]; then ln -s "$entry" "$fake/"; fi
            done
            rm -f "$fake/localtime" "$fake/timezone"
            ln -s "/usr/share/zoneinfo/$zone" "$fake/localtime"
            mount --bind "$fake" /etc
            exec "$@""#;
        let mut command = self.sealed("/usr/bin/unshare");
        command
            .args([
                "--mount",
                "--map-root-user",
                "/bin/sh",
                "-c",
                script,
                "sh",
                zone,
            ])
            .arg(env!("CARGO_BIN_EXE_interacto-bulk"))
            .args(args)
            .env("PATH", "/usr/bin:/bin")
            .env("TMPDIR", self.path(""))
            .env("NO_COLOR", "1")
            .env("INTERACTO_API_KEY", API_KEY);
        finish(command).await
    }

    /// Runs `send campaign.csv --config <config>` with `extra` flags.
    pub async fn send(&self, config: impl AsRef<Path>, extra: &[&str]) -> Output {
        let config = config.as_ref().to_str().expect("test paths are UTF-8");
        let mut args = vec!["send", "campaign.csv", "--config", config];
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    /// Starts the binary here in the background with the test key, for
    /// tests that signal or kill it.
    pub fn spawn(&self, args: &[&str]) -> Running {
        let command = self.command(args, &[("INTERACTO_API_KEY", API_KEY)]);
        background(command, Log::Stderr)
    }

    /// Starts the binary here with the test key on a terminal (`script`,
    /// from util-linux, gives it one), so that it draws its progress bar;
    /// the terminal's output, logs and all, is the child's stdout.
    pub fn on_a_terminal(&self, args: &[&str]) -> Running {
        self.terminal(&[env!("CARGO_BIN_EXE_interacto-bulk")], args)
    }

    /// [`Workspace::on_a_terminal`], the binary's wall clock moved by
    /// `shift` as in [`Workspace::run_later`].
    pub fn on_a_terminal_later(&self, shift: &str, args: &[&str]) -> Running {
        self.terminal(
            &[FAKETIME, "-f", shift, env!("CARGO_BIN_EXE_interacto-bulk")],
            args,
        )
    }

    fn terminal(&self, program: &[&str], args: &[&str]) -> Running {
        if std::process::Command::new("script")
            .arg("--version")
            .output()
            .is_err()
        {
            panic!("`script` (util-linux) is needed to give the binary a terminal");
        }
        let command = program
            .iter()
            .chain(args)
            .copied()
            .collect::<Vec<_>>()
            .join(" ");
        let mut script = self.sealed("script");
        script
            .args(["-qfec", &command, "/dev/null"])
            .env("PATH", "/usr/bin:/bin")
            .env("TERM", "xterm")
            .env("FAKETIME_DONT_FAKE_MONOTONIC", "1")
            .env("INTERACTO_API_KEY", API_KEY);
        background(script, Log::Stdout)
    }

    /// A new, empty ledger in this workspace, as `--ledger` takes it: for a
    /// test that sends the same cards again on purpose (the shared ledger
    /// would hold them back as repeats within 24 hours).
    pub fn fresh_ledger(&self, name: &str) -> String {
        format!("sqlite://{}", self.path(&format!("{name}.db")).display())
    }

    /// The results file as one map per line, by column name.
    pub fn results(&self, name: &str) -> Vec<HashMap<String, String>> {
        read_results(&self.path(name))
    }
}

/// libfaketime's wrapper, from Debian's `faketime` package (`.ci/run`
/// installs it where missing).
const FAKETIME: &str = "/usr/bin/faketime";

/// Runs `command` to its end, within a minute.
pub async fn finish(mut command: Command) -> Output {
    tokio::time::timeout(Duration::from_secs(60), command.output())
        .await
        .expect("the binary finishes within a minute")
        .expect("the binary runs")
}

/// Starts `command` in the background, its output piped, its log (`on`)
/// read as it comes.
fn background(mut command: Command, on: Log) -> Running {
    let child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    Running::new(child, on)
}

/// Which of a background binary's streams is its log.
pub enum Log {
    Stderr,
    /// On a terminal, whose output (logs and all) is the child's stdout.
    Stdout,
}

/// A binary started in the background. Its log is read as it comes, so
/// that a test can wait for a line of it and still have all of it when the
/// binary ends; it derefs to the [`Child`].
pub struct Running {
    child: Child,
    log: Arc<Mutex<Vec<u8>>>,
    reader: tokio::task::JoinHandle<()>,
    on: Log,
    /// Whether the test saw the binary ready for a signal.
    ready: AtomicBool,
}

impl Running {
    pub fn new(mut child: Child, on: Log) -> Self {
        let stream: Option<Box<dyn AsyncRead + Send + Unpin>> = match on {
            Log::Stderr => child.stderr.take().map(|stream| Box::new(stream) as _),
            Log::Stdout => child.stdout.take().map(|stream| Box::new(stream) as _),
        };
        let stream = stream.unwrap_or_else(|| Box::new(tokio::io::empty()));
        let log = Arc::new(Mutex::new(Vec::new()));
        let read = log.clone();
        let reader = tokio::spawn(async move {
            let mut stream = stream;
            let mut chunk = vec![0; 64 * 1024];
            while let Ok(n @ 1..) = stream.read(&mut chunk).await {
                read.lock().unwrap().extend_from_slice(&chunk[..n]);
            }
        });
        Running {
            child,
            log,
            reader,
            on,
            ready: AtomicBool::new(false),
        }
    }

    /// The log so far.
    pub fn log(&self) -> String {
        String::from_utf8_lossy(&self.log.lock().unwrap()).into_owned()
    }

    /// Waits for the run's first log line (`starting`, naming the config):
    /// by then its signal handlers are in place, and a signal is safe.
    pub async fn wait_for_start(&self) {
        self.wait_until_ready("the run's `starting` line", || {
            self.log()
                .lines()
                .any(|line| line.contains("starting") && line.contains("config"))
        })
        .await;
    }

    /// Waits for a line of the log that contains `text`.
    pub async fn wait_for_log(&self, text: &str) {
        wait_for(&format!("`{text}` in the log"), || {
            self.log().contains(text)
        })
        .await;
    }

    /// Waits for `done`, a sign that the binary is ready for a signal: for
    /// a binary that never logs `starting` (a mock server), or a test that
    /// signals it before it can (a run waiting for its ledger or campaign
    /// file).
    pub async fn wait_until_ready(&self, what: &str, done: impl FnMut() -> bool) {
        wait_for(what, done).await;
        self.ready.store(true, Ordering::SeqCst);
    }
}

impl From<Child> for Running {
    fn from(child: Child) -> Self {
        Running::new(child, Log::Stderr)
    }
}

impl Deref for Running {
    type Target = Child;

    fn deref(&self) -> &Child {
        &self.child
    }
}

impl DerefMut for Running {
    fn deref_mut(&mut self) -> &mut Child {
        &mut self.child
    }
}

/// Waits for a background binary to end, within 30 seconds.
pub async fn ended(run: impl Into<Running>) -> Output {
    let Running {
        child,
        log,
        reader,
        on,
        ..
    } = run.into();
    let mut output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output())
        .await
        .expect("the binary ends within 30 seconds")
        .expect("the binary's output is read");
    tokio::time::timeout(Duration::from_secs(30), reader)
        .await
        .expect("the binary's log ends with it")
        .expect("the log is read");
    let log = std::mem::take(&mut *log.lock().unwrap());
    match on {
        Log::Stderr => output.stderr = log,
        Log::Stdout => output.stdout = log,
    }
    output
}

/// Rows counted by their status.
pub fn statuses(results: &[HashMap<String, String>]) -> HashMap<String, usize> {
    let mut counts = HashMap::new();
    for line in results {
        *counts.entry(line["status"].clone()).or_insert(0) += 1;
    }
    counts
}

/// How many rows have `status` (0 when none).
pub fn count(results: &[HashMap<String, String>], status: &str) -> usize {
    results
        .iter()
        .filter(|line| line["status"] == status)
        .count()
}

pub fn read_results(path: &Path) -> Vec<HashMap<String, String>> {
    let mut reader = csv::Reader::from_path(path).expect("the results file opens");
    let headers = reader
        .headers()
        .expect("the results file has a header")
        .clone();
    reader
        .records()
        .map(|record| {
            let record = record.expect("every results line parses");
            headers
                .iter()
                .zip(record.iter())
                .map(|(h, v)| (h.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

/// The line for spreadsheet row `row`.
pub fn line(results: &[HashMap<String, String>], row: u64) -> &HashMap<String, String> {
    results
        .iter()
        .find(|line| line["row"] == row.to_string())
        .unwrap_or_else(|| panic!("no results line for row {row}"))
}

/// The exit a send ends with when nothing stopped it and its results file
/// holds `results`: 0 when every row is SENT, else 1. For a run whose rows
/// may end either way (a mock failing at random, a kill's cards in doubt).
pub fn exit_for(results: &[HashMap<String, String>]) -> i32 {
    match results.iter().all(|row| row["status"] == "SENT") {
        true => 0,
        false => 1,
    }
}

/// The one JSON object `--summary json` printed.
pub fn summary_json(output: &Output) -> serde_json::Value {
    serde_json::from_str(stdout(output).trim())
        .unwrap_or_else(|error| panic!("one JSON object on stdout ({error}): {}", stdout(output)))
}

/// A send window in UTC, `HH:MM-HH:MM`, that opens `opens` hours from now
/// and closes `closes` hours from now: closed now, whatever the hour.
pub fn utc_window_from_now(opens: i64, closes: i64) -> String {
    let now = jiff::Timestamp::now();
    let at = |hours: i64| {
        now.checked_add(jiff::SignedDuration::from_hours(hours))
            .expect("within jiff's range")
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .strftime("%H:%M")
            .to_string()
    };
    format!("{}-{}", at(opens), at(closes))
}

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn code(output: &Output) -> i32 {
    output.status.code().expect("the binary exits, not killed")
}

/// What [`assert_exit!`] checks: `output` exited with exactly `exit`.
pub fn check_exit(output: &Output, exit: i32, what: &str) {
    assert_eq!(
        code(output),
        exit,
        "{what}{}exit {exit} expected: {}",
        if what.is_empty() { "" } else { ": " },
        stderr(output)
    );
}

/// Asserts that a run refused (exit 2, a bad config, flag or file),
/// saying `saying` on stderr.
pub fn assert_refused(output: &Output, saying: &str) {
    check_exit(output, 2, saying);
    assert!(stderr(output).contains(saying), "{}", stderr(output));
}

/// Asserts that `text` (what a run printed or logged) contains `part`.
pub fn assert_has(text: &str, part: &str) {
    assert!(text.contains(part), "`{part}` not in:\n{text}");
}

/// Sends SIGTERM, as `kill` or systemd would.
pub fn terminate(run: &Running) {
    signal(run, libc::SIGTERM);
}

/// Sends `signal` to a background binary, once it is ready for one
/// ([`Running::wait_for_start`]): earlier, it would race the binary's
/// setting up of its signal handlers.
pub fn signal(run: &Running, signal: libc::c_int) {
    assert!(
        run.ready.load(Ordering::SeqCst),
        "a signal before the binary is ready for one: wait_for_start first"
    );
    let pid = run.id().expect("still running");
    let pid = libc::pid_t::try_from(pid).expect("a pid fits");
    // SAFETY: kill(2) with a pid this test spawned and a valid signal number.
    let sent = unsafe { libc::kill(pid, signal) };
    assert_eq!(sent, 0, "signal {signal} was delivered");
}

/// Polls `done` until it holds, for at most 20 seconds.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    wait_until(what, || std::future::ready(done())).await;
}

/// Polls `done`, a question that takes a while (a database's), until it
/// holds, for at most 20 seconds. The tests' one poll loop.
pub async fn wait_until<F: Future<Output = bool>>(what: &str, mut done: impl FnMut() -> F) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Checks requests that arrived at a server were paced `interval` apart
/// (burst 1). Arrival times carry scheduling jitter, so instead of each gap
/// it checks the span (each permit is an interval after the last, minus
/// jitter at the two ends) and that no three arrived within one interval.
pub fn assert_paced(times: &mut [std::time::Instant], interval: Duration, what: &str) {
    times.sort();
    let jitter = Duration::from_millis(50);
    if let (Some(first), Some(last)) = (times.first(), times.last()) {
        let least = interval * (times.len() as u32 - 1);
        assert!(
            *last - *first + jitter >= least,
            "{what}: {} requests in {:?}, at least {least:?} expected",
            times.len(),
            *last - *first
        );
    }
    for three in times.windows(3) {
        assert!(
            three[2] - three[0] >= interval,
            "{what}: three requests within {:?}",
            three[2] - three[0]
        );
    }
}

/// [`campaign`]'s recipients from the `first`th on, `rows` of them: a
/// campaign that shares no recipient with one of the first `first`.
pub fn campaign_from(first: usize, rows: usize) -> String {
    let all = campaign(first + rows);
    let mut lines = all.lines();
    let header = lines.next().unwrap();
    let rest: Vec<&str> = lines.skip(first).collect();
    format!("{header}\n{}\n", rest.join("\n"))
}

/// A small valid campaign: `rows` recipients, all with the same contact card.
pub fn campaign(rows: usize) -> String {
    let mut text = String::from("to,contact_name,contact_phone\n");
    for n in 0..rows {
        text.push_str(&format!(
            "+55 11 9{:04}-{:04},Pessoa {n},+55 11 3003-4000\n",
            8000 + n / 10000,
            n % 10000
        ));
    }
    text
}

/// A small HTTP server on 127.0.0.1 for what wiremock cannot do: answers
/// that never end, or a proxy that only counts who came. It reads each
/// request's head and answers with `head`, then (when `endless`) body bytes
/// until the client goes away or 256 MiB are written.
pub struct RawServer {
    pub addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    _task: tokio::task::JoinHandle<()>,
}

impl RawServer {
    pub async fn start(head: &'static str, endless: bool) -> Self {
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .await
            .expect("a loopback port");
        let addr = listener.local_addr().expect("a bound address");
        let connections = Arc::new(AtomicUsize::new(0));
        let counted = connections.clone();
        let task = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                counted.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let mut request = vec![0; 64 * 1024];
                    let _ = stream.read(&mut request).await;
                    if stream.write_all(head.as_bytes()).await.is_err() || !endless {
                        return;
                    }
                    let chunk = format!("{:x}\r\n{}\r\n", 64 * 1024, "a".repeat(64 * 1024));
                    for _ in 0..4096 {
                        if stream.write_all(chunk.as_bytes()).await.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        RawServer {
            addr,
            connections,
            _task: task,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted so far.
    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }
}
