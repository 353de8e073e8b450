//! Helpers for tests that run the real binary against a server on 127.0.0.1.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::Duration;

use tempfile::TempDir;

use interacto_bulk::api::{MockOptions, MockServer};

pub const API_KEY: &str = "test-key-5f2c9a81d0e4";

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

/// A scratch directory the binary runs in.
pub struct Workspace {
    pub dir: TempDir,
}

impl Workspace {
    pub fn new() -> Self {
        Workspace {
            dir: tempfile::tempdir().expect("a temporary directory"),
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

    /// A config that sends to `base_url` quickly: the floors stay, the waits go.
    pub fn fast_config(&self, base_url: &str, extra: &str) -> PathBuf {
        self.write(
            "config.toml",
            &format!(
                "[api]\nbase_url = \"{base_url}\"\ninstance_id = \"inst-1\"\ntimeout = 5\n\n\
                 [retry]\ninitial_backoff = 0.01\nmax_backoff = 0.05\n\n\
                 [pacing]\nrate = \"200/s\"\nburst = 1\npace_by_message = false\n{extra}"
            ),
        )
    }

    /// Runs the binary here with the test key in its environment and no other `INTERACTO_*`.
    pub async fn run(&self, args: &[&str]) -> Output {
        self.run_with_env(args, &[("INTERACTO_API_KEY", API_KEY)])
            .await
    }

    pub async fn run_with_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut command = tokio::process::Command::new(env!("CARGO_BIN_EXE_interacto-bulk"));
        command
            .args(args)
            .current_dir(self.dir.path())
            .env_remove("INTERACTO_API_KEY")
            .env_remove("INTERACTO_INSTANCE_ID")
            .env_remove("INTERACTO_BASE_URL")
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .kill_on_drop(true);
        for (name, value) in env {
            command.env(name, value);
        }
        tokio::time::timeout(Duration::from_secs(60), command.output())
            .await
            .expect("the binary finishes within a minute")
            .expect("the binary runs")
    }

    /// Runs `send campaign.csv --config <config>` with `extra` flags.
    pub async fn send(&self, config: impl AsRef<Path>, extra: &[&str]) -> Output {
        let config = config
            .as_ref()
            .to_str()
            .expect("test paths are UTF-8")
            .to_string();
        let mut args = vec!["send", "campaign.csv", "--config", &config];
        args.extend_from_slice(extra);
        self.run(&args).await
    }

    /// Starts the binary here in the background, for tests that signal or kill it.
    pub fn spawn(&self, args: &[&str]) -> tokio::process::Child {
        tokio::process::Command::new(env!("CARGO_BIN_EXE_interacto-bulk"))
            .args(args)
            .current_dir(self.dir.path())
            .env("INTERACTO_API_KEY", API_KEY)
            .env_remove("RUST_LOG")
            .env("NO_COLOR", "1")
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("the binary starts")
    }

    /// The results file as one map per line, by column name.
    pub fn results(&self, name: &str) -> Vec<HashMap<String, String>> {
        read_results(&self.path(name))
    }
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

pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

pub fn code(output: &Output) -> i32 {
    output.status.code().expect("the binary exits, not killed")
}

/// Sends SIGTERM, as `kill` or systemd would.
pub fn terminate(child: &tokio::process::Child) {
    let pid = child.id().expect("still running").to_string();
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Polls `done` until it holds, for at most 20 seconds.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(
            std::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
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
