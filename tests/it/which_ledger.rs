//! The commands beside a run (`numbers`, `suppress`, `ledger`) name the
//! ledger they use and where its URL came from, and never start a new,
//! empty one by accident: an opt-out put into a ledger no run reads is a
//! person who gets the card.

use std::process::Output;

use crate::common::{self, stderr, stdout, Store, Workspace};
use crate::pg;
use interacto_bulk::api::MockOptions;

on_both_stores!(
    a_command_finds_no_ledger_and_makes_none_unless_asked,
    every_command_names_its_ledger_and_keeps_its_stdout_readable,
);

/// The ledger at `url` as the tool shows it: its password hidden.
fn shown(url: &str) -> String {
    url.replace(pg::PASSWORD_SHOWN_NOWHERE, "***")
}

/// Whether the ledger at `url` holds anything at all: the SQLite file (or
/// its `-wal`, `-shm`) exists; the PostgreSQL database has a table.
async fn anything_at(url: &str) -> bool {
    match url.strip_prefix("sqlite://") {
        Some(path) => ["", "-wal", "-shm"]
            .iter()
            .any(|end| std::path::Path::new(&format!("{path}{end}")).exists()),
        None => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .expect("the tests' PostgreSQL answers");
            tokio::spawn(connection);
            let tables: i64 = client
                .query_one(
                    "SELECT count(*) FROM information_schema.tables
                     WHERE table_schema NOT IN ('pg_catalog', 'information_schema')",
                    &[],
                )
                .await
                .expect("the tables are counted")
                .get(0);
            tables > 0
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn suppress_add_without_a_config_refuses_to_start_the_default_ledger() {
    let work = Workspace::new();
    let default = work.path("home/state/interacto-bulk/ledger.db");
    let add = ["suppress", "add", "+55 11 98765-4321"];

    let output = work.run_with_env(&add, &[]).await;

    assert_exit!(output, 2, "{}", stdout(&output));
    let said = stderr(&output);
    for part in [
        &format!("sqlite://{}", default.display()),
        "--config",
        "ledger.url",
        "--ledger",
        "--create",
    ] {
        common::assert_has(&said, part);
    }
    assert!(
        !work.path("home/state/interacto-bulk").exists(),
        "neither the ledger nor its folder is made"
    );

    let output = work
        .run_with_env(&[&add[..], &["--create"]].concat(), &[])
        .await;

    assert_exit!(output, 0);
    common::assert_has(&stdout(&output), "1 added");
    common::assert_has(
        &format!("{}{}", stdout(&output), stderr(&output)),
        &format!("sqlite://{}", default.display()),
    );
    assert!(default.exists());
}

/// The cron job's config names its ledger: an opt-out added with that
/// config is said to go there, and the job's next run honours it.
#[tokio::test(flavor = "multi_thread")]
async fn an_opt_out_added_with_the_cron_job_s_config_reaches_its_next_run() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let ledger = work.fresh_ledger("cron");
    let config = work.config(&settings.ledger(&ledger));
    work.write("yesterday.csv", &common::campaign_from(0, 1));
    work.ok(&["send", "yesterday.csv", "--config", &config])
        .await;

    let output = work
        .run_with_env(
            &["suppress", "add", "+55 11 98000-0001", "--config", &config],
            &[],
        )
        .await;

    assert_exit!(output, 0);
    common::assert_has(&stdout(&output), "1 added");
    common::assert_has(
        &stderr(&output),
        &format!("ledger {ledger} (ledger.url in {config})"),
    );
    work.write("tonight.csv", &common::campaign_from(1, 2));
    work.ok(&["send", "tonight.csv", "--config", &config]).await;
    let tonight = &common::recipients(&server)[1..];
    assert_eq!(
        tonight,
        ["5511980000002"],
        "the one who opted out got nothing"
    );
}

/// Runs the binary in `work` with `env` alone, asserting it succeeded.
async fn ok_with_env(work: &Workspace, args: &[&str], env: &[(&str, &str)]) -> Output {
    let output = work.run_with_env(args, env).await;
    assert_exit!(output, 0, "{}", args.join(" "));
    output
}

async fn every_command_names_its_ledger_and_keeps_its_stdout_readable(store: Store) {
    let work = Workspace::new();
    let url = store.ledger(&work).await;
    let config = work.write("cron.toml", &format!("[ledger]\nurl = {url:?}\n"));
    let config = config.to_str().expect("test paths are UTF-8");
    let from_config = format!("ledger {} (ledger.url in {config})", shown(&url));
    ok_with_env(
        &work,
        &[
            "suppress",
            "add",
            "+55 11 98765-4321",
            "--create",
            "--config",
            config,
        ],
        &[],
    )
    .await;

    let output = ok_with_env(&work, &["numbers", "--json", "--config", config], &[]).await;
    common::assert_has(&stderr(&output), &from_config);
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(numbers, serde_json::json!([]));

    let output = ok_with_env(&work, &["suppress", "list", "--config", config], &[]).await;
    common::assert_has(&stderr(&output), &from_config);
    let list = stdout(&output);
    let mut reader = csv::Reader::from_reader(list.as_bytes());
    assert_eq!(
        reader.headers().unwrap(),
        vec!["phone", "reason", "added_at"]
    );
    let phones: Vec<String> = reader
        .records()
        .map(|record| record.unwrap()[0].to_string())
        .collect();
    assert_eq!(phones, ["5511987654321"], "{list}");

    let env = [("INTERACTO_LEDGER_URL", url.as_str())];
    let output = ok_with_env(&work, &["ledger", "stats", "--json"], &env).await;
    common::assert_has(
        &stderr(&output),
        &format!("ledger {} (INTERACTO_LEDGER_URL)", shown(&url)),
    );
    let stats: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(stats["suppressed"], 1, "{stats}");

    let output = ok_with_env(&work, &["numbers", "--ledger", &url], &[]).await;
    common::assert_has(
        &stderr(&output),
        &format!("ledger {} (--ledger)", shown(&url)),
    );
    let said = format!("{}{}", stdout(&output), stderr(&output));
    assert!(!said.contains(pg::PASSWORD_SHOWN_NOWHERE), "{said}");
}

async fn a_command_finds_no_ledger_and_makes_none_unless_asked(store: Store) {
    let work = Workspace::new();
    let url = store.ledger(&work).await;
    let config = work.write("cron.toml", &format!("[ledger]\nurl = {url:?}\n"));
    let config = config.to_str().expect("test paths are UTF-8");
    let commands: [&[&str]; 6] = [
        &["ledger", "stats"],
        &["ledger", "prune"],
        &["ledger", "forget", "+55 11 98765-4321"],
        &["suppress", "list"],
        &["numbers"],
        &["numbers", "pause", "inst-1"],
    ];

    for command in commands {
        let output = work
            .run_with_env(&[command, &["--config", config]].concat(), &[])
            .await;

        assert_exit!(output, 2, "{}: {}", command.join(" "), stdout(&output));
        let said = stderr(&output);
        common::assert_has(&said, &shown(&url));
        common::assert_has(&said, "--create");
        assert!(!said.contains(pg::PASSWORD_SHOWN_NOWHERE), "{said}");
        assert!(
            !anything_at(&url).await,
            "{}: made nothing",
            command.join(" ")
        );
    }

    let output = ok_with_env(
        &work,
        &["ledger", "stats", "--json", "--create", "--config", config],
        &[],
    )
    .await;
    let stats: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(stats["cards"], 0, "{stats}");
    assert!(anything_at(&url).await, "--create made it");
    ok_with_env(&work, &["ledger", "stats", "--config", config], &[]).await;
}
