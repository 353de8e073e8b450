//! Every memory counts: what takes memory out of the ledger, or puts a
//! second ledger beside it, never sends a card twice. A ledger restored from
//! a backup, a new ledger after a trial run, a clock a year ahead, a person
//! forgotten on request, one name in two Unicode forms, a dated export, a run
//! judging another's card in flight, counts kept by every run. Each case as
//! an operator meets it, through the binary, on both stores where the store
//! matters; what reached the server is counted.

use crate::common::{self, assert_has, stderr, Config, Store, Workspace};
use crate::pg;

on_both_stores!(
    a_ledger_restored_from_a_backup_sends_nothing_the_results_file_shows_sent,
    a_new_ledger_after_a_trial_run_takes_what_the_results_file_shows_sent,
    a_run_whose_clock_is_a_year_ahead_prunes_nothing_the_others_need,
);

/// A day and an hour later, for the binary's clock.
const NEXT_DAY: &str = "+25h";

/// A copy of the ledger at `url` as it is now, as its owner would back it
/// up: SQLite's own copy of a live database (`VACUUM INTO`, as the shell's
/// `.backup`), or a PostgreSQL database made from it.
async fn back_up(url: &str, work: &Workspace) -> String {
    match url.strip_prefix("sqlite://") {
        Some(path) => {
            let backup = work.path("backup.db");
            rusqlite::Connection::open(path)
                .unwrap()
                .execute("VACUUM INTO ?1", [backup.to_str().unwrap()])
                .unwrap();
            format!("sqlite://{}", backup.display())
        }
        None => {
            let copy = pg::database().await;
            let name = |url: &str| url.rsplit('/').next().unwrap().to_string();
            let maintenance = format!("{}/postgres", url.rsplit_once('/').unwrap().0);
            let (client, connection) = tokio_postgres::connect(&maintenance, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            // One statement each: neither may run in a transaction.
            for statement in [
                format!("DROP DATABASE {}", name(&copy)),
                format!("CREATE DATABASE {} TEMPLATE {}", name(&copy), name(url)),
            ] {
                client.batch_execute(&statement).await.unwrap();
            }
            copy
        }
    }
}

/// The ledger at `url` replaced by `backup`: the file copied back over it,
/// or (PostgreSQL) the runs pointed at the restored database.
fn restore(url: &str, backup: &str, settings: Config) -> Config {
    match (
        url.strip_prefix("sqlite://"),
        backup.strip_prefix("sqlite://"),
    ) {
        (Some(path), Some(copy)) => {
            for end in ["-wal", "-shm"] {
                let _ = std::fs::remove_file(format!("{path}{end}"));
            }
            std::fs::copy(copy, path).unwrap();
            settings
        }
        _ => settings.ledger(backup),
    }
}

async fn a_ledger_restored_from_a_backup_sends_nothing_the_results_file_shows_sent(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let url = store.ledger(&work).await;
    let settings = settings.ledger(&url);
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign(4));
    let output = work.send(&config, &["--limit", "2"]).await;
    assert_exit!(output, 0);
    let backup = back_up(&url, &work).await;
    let output = work.send(&config, &["--resume"]).await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 4);

    // The backup of before rows 4 and 5 went comes back.
    let config = work.config(&restore(&url, &backup, settings));
    let output = work.send(&config, &["--resume"]).await;

    assert_exit!(output, 0);
    assert_eq!(
        server.accepted(),
        4,
        "nothing sent again: {}",
        stderr(&output)
    );
    assert_has(&stderr(&output), "shows rows 4, 5 SENT or UNKNOWN");
    assert_has(&stderr(&output), "remembered now from the file");
    let results = work.results("campaign.results.csv");
    assert_eq!(common::count(&results, "SENT"), 4, "{results:?}");
    // Healed: the next day, the ledger alone holds them.
    let output = work
        .run_later(
            NEXT_DAY,
            &[
                "send",
                "campaign.csv",
                "--config",
                &config,
                "--out",
                "other.csv",
            ],
        )
        .await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 4, "{}", stderr(&output));
}

async fn a_new_ledger_after_a_trial_run_takes_what_the_results_file_shows_sent(store: Store) {
    let (server, work, settings) = common::against(Default::default()).await;
    let old = work.fresh_ledger("old");
    let config = work.config(&settings.clone().ledger(&old));
    work.write("campaign.csv", &common::campaign(10));
    let output = work.send(&config, &["--out", "real.csv"]).await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 10);

    // A move to a new ledger, tried first on one row under another file:
    // that row goes again (no memory of it came along), and the campaign is
    // now known to the new ledger.
    let new = store.ledger(&work).await;
    let config = work.config(&settings.ledger(&new));
    let output = work
        .send(&config, &["--out", "try.csv", "--limit", "1"])
        .await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 11);

    // The nightly run carries on the real results file.
    let output = work.send(&config, &["--resume", "--out", "real.csv"]).await;

    assert_exit!(output, 0);
    assert_eq!(
        server.accepted(),
        11,
        "nothing sent again: {}",
        stderr(&output)
    );
    assert_has(&stderr(&output), "remembered now from the file");
    let results = work.results("real.csv");
    assert_eq!(common::count(&results, "SENT"), 10, "{results:?}");
}

async fn a_run_whose_clock_is_a_year_ahead_prunes_nothing_the_others_need(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign_from(0, 3));
    work.write("other.csv", &common::campaign_from(3, 1));
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);

    // A container whose clock is 401 days ahead, past ledger.keep (400d)
    // for every card, sends another campaign, and is asked to prune.
    let ahead = "+401d";
    let output = work
        .run_later(ahead, &["send", "other.csv", "--config", &config])
        .await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 4);
    let said = stderr(&output);
    assert!(!said.contains("the ledger forgot"), "{said}");
    if store == Store::Sqlite {
        // Its clock is the ledger's clock: it says what it would have done.
        assert_has(&said, "401 days after the ledger's newest card");
    }

    // Back on time, the campaign carries on: nothing goes twice.
    let output = work.send(&config, &["--resume"]).await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 4, "{}", stderr(&output));
    let output = work
        .run_with_env(&["ledger", "stats", "--json", "--config", &config], &[])
        .await;
    let stats: serde_json::Value = serde_json::from_str(&common::stdout(&output)).unwrap();
    assert_eq!(stats["cards"], 4, "{stats}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_prune_below_the_cooldown_is_refused_as_the_key_is() {
    let (server, work, settings) = common::against(Default::default()).await;
    let config = work.config(&settings.set("schedule.cooldown", "\"7d\""));
    work.write("campaign.csv", &common::campaign(2));
    work.ok(&["send", "campaign.csv", "--config", &config])
        .await;

    let output = work
        .run_later(
            "+3d",
            &["ledger", "prune", "--keep", "2d", "--config", &config],
        )
        .await;

    assert_exit!(output, 2);
    assert_has(
        &stderr(&output),
        "--keep 2d is shorter than schedule.cooldown (7 days)",
    );
    // The cards are still there: another campaign within the cooldown
    // holds its recipients back.
    work.write(
        "next.csv",
        &common::campaign(2).replace("3003-4000", "3003-4001"),
    );
    let output = work
        .run_later("+3d", &["send", "next.csv", "--config", &config])
        .await;
    assert_exit!(output, 1);
    assert_eq!(server.accepted(), 2, "{}", stderr(&output));
    let results = work.results("next.results.csv");
    assert_eq!(common::count(&results, "DEFERRED"), 2, "{results:?}");
}
