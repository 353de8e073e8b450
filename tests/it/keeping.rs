//! A ledger that lasts: upgrades from the release before, a newer ledger
//! refused, who may read it on disk, and one day per number whatever each
//! run's zone.

use crate::common::{self, embedded, stderr, stdout, Config, Store, Workspace};
use crate::pg;
use interacto_bulk::api::MockOptions;

on_both_stores!(
    a_ledger_of_a_newer_version_is_refused_untouched,
    runs_in_zones_fourteen_hours_apart_share_one_day_of_the_cap,
    cards_older_than_the_keep_are_pruned_by_runs_and_on_request,
    a_forgotten_person_s_cards_are_gone_and_their_opt_out_stays,
);

/// A ledger written by the release before the campaign memory (schema 5,
/// commit c3a197b): campaign `c.csv` of three rows sent through
/// `fixture-number` under `daily_cap = 50` on 2026-11-30 at 21:06 UTC, and
/// `+55 41 98888-7777` suppressed ("pediu para sair").
const EARLIER_RELEASE: &[u8] = include_bytes!("../fixtures/ledger-v5.db");

/// The campaign of either fixture (this one, and names.rs's of schema 16), as
/// it was sent.
pub const FIXTURE_CAMPAIGN: &str = "to,contact_name,contact_phone
+55 11 98765-4321,Loja,+55 11 3003-4000
+55 21 99876-5432,Loja,+55 11 3003-4000
+55 31 97654-3210,Loja,+55 11 3003-4000
";

/// An hour after the fixture's cards went: its day, within 24 hours.
const FIXTURE_DAY: &str = "@2026-11-30 22:06:00";

#[tokio::test(flavor = "multi_thread")]
async fn the_earlier_release_s_ledger_is_upgraded_with_its_cards_counts_and_opt_outs() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    std::fs::write(work.path("ledger.db"), EARLIER_RELEASE).unwrap();
    let ledger = format!("sqlite://{}", work.path("ledger.db").display());
    let config = work.config(
        &settings
            .ledger(&ledger)
            .set("api.instance_id", "\"fixture-number\"")
            .set("schedule.daily_cap", "50")
            .set("schedule.timezone", "\"UTC\""),
    );

    // Its number's count, on the day it was made.
    let output = work
        .run_later(FIXTURE_DAY, &["numbers", "--config", &config, "--json"])
        .await;
    assert_exit!(output, 0);
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(numbers[0]["instance_id"], "fixture-number", "{numbers}");
    assert_eq!(numbers[0]["first_day"], "2026-11-30", "{numbers}");
    assert_eq!(numbers[0]["sent_today"], 3, "{numbers}");

    // Its opt-out.
    let output = work
        .run_with_env(&["suppress", "list", "--config", &config], &[])
        .await;
    common::assert_has(&stdout(&output), "5541988887777,pediu para sair");

    // Its cards: the same cards, within the day, do not go again.
    work.write("campaign.csv", FIXTURE_CAMPAIGN);
    let output = work
        .run_later(FIXTURE_DAY, &["send", "campaign.csv", "--config", &config])
        .await;
    assert_eq!(server.requests(), 0, "{}", stderr(&output));
    let results = work.results("campaign.results.csv");
    assert_eq!(common::count(&results, "DUPLICATE"), 3, "{results:?}");

    // And the version reads as one row, for monitoring.
    let connection = rusqlite::Connection::open(work.path("ledger.db")).unwrap();
    let versions: Vec<i64> = connection
        .prepare("SELECT version FROM ledger_version")
        .unwrap()
        .query_map([], |row| row.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(versions, [interacto_bulk::ledger::SCHEMA_VERSION]);
}

/// Sets the ledger at `url` to schema version 99, as a newer release
/// would leave it.
async fn made_newer(url: &str) {
    let sql = "DELETE FROM ledger_version; INSERT INTO ledger_version (version) VALUES (99)";
    match url.strip_prefix("sqlite://") {
        Some(path) => rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(sql)
            .unwrap(),
        None => {
            let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            client.batch_execute(sql).await.unwrap();
        }
    }
}

async fn a_ledger_of_a_newer_version_is_refused_untouched(store: Store) {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let ledger = store.ledger(&work).await;
    let config = work.config(&settings.ledger(&ledger));
    work.write("campaign.csv", &common::campaign(3));
    let output = work
        .run_with_env(&["numbers", "--create", "--config", &config], &[])
        .await;
    assert_exit!(output, 0, "a new ledger");
    made_newer(&ledger).await;

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 2);
    assert_eq!(server.requests(), 0);
    let said = stderr(&output);
    assert!(
        said.contains("schema version 99") && said.contains("upgrade interacto-bulk"),
        "{said}"
    );
    assert!(!said.contains(pg::PASSWORD_SHOWN_NOWHERE), "{said}");
    let output = work
        .run_with_env(&["numbers", "--config", &config], &[])
        .await;
    assert_exit!(output, 2);
}

/// Two runs through one number, one in Kiritimati (UTC+14), one in UTC, at
/// 12:00 UTC: 02:00 the next day for the first, noon for the second. The
/// number's day is the one the ledger keeps for it, so they share its cap.
async fn runs_in_zones_fourteen_hours_apart_share_one_day_of_the_cap(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let in_zone = |zone: &str| {
        work.config(
            &settings
                .clone()
                .set("schedule.daily_cap", "5")
                .set("schedule.timezone", &format!("{zone:?}")),
        )
    };
    let (kiritimati, utc) = (in_zone("Pacific/Kiritimati"), in_zone("UTC"));
    work.write("first.csv", &common::campaign(10));
    work.write("second.csv", &common::campaign_from(10, 10));
    let noon = "@2026-12-01 12:00:00";

    let first = work
        .run_later(noon, &["send", "first.csv", "--config", &kiritimati])
        .await;
    let second = work
        .run_later(noon, &["send", "second.csv", "--config", &utc])
        .await;

    assert_exit!(first, 5);
    assert_exit!(second, 5);
    assert_eq!(server.accepted(), 5, "one cap for the number's one day");
    let output = work
        .run_later(noon, &["numbers", "--config", &utc, "--json"])
        .await;
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(numbers[0]["timezone"], "Pacific/Kiritimati", "{numbers}");
    assert_eq!(numbers[0]["sent_today"], 5, "{numbers}");
    assert_eq!(numbers[0]["first_day"], "2026-12-02", "{numbers}");
}

/// The mode bits of `path`.
fn mode_of(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

#[tokio::test(flavor = "multi_thread")]
async fn the_default_ledger_is_its_owner_s_alone() {
    let (_server, work, settings) = common::against(MockOptions::default()).await;
    // The default ledger, under the workspace's own XDG_STATE_HOME; a pace
    // slow enough to look at its WAL while it runs.
    let config = work.config(&settings.set("pacing.rate", "\"4/s\""));
    work.write("campaign.csv", &common::campaign(6));
    let folder = work.path("home/state/interacto-bulk");
    let ledger = folder.join("ledger.db");

    let run = work.spawn(&["send", "campaign.csv", "--config", &config]);
    let wal = folder.join("ledger.db-wal");
    common::wait_for("the ledger's WAL", || wal.exists()).await;
    let during = [&wal, &folder.join("ledger.db-shm")].map(|file| (file.exists(), mode_of(file)));
    let output = common::ended(run).await;

    assert_exit!(output, 0);
    assert_eq!(mode_of(&folder), 0o700, "the folder");
    assert_eq!(mode_of(&ledger), 0o600, "the file");
    assert_eq!(
        during,
        [(true, 0o600); 2],
        "its -wal and -shm, while it runs"
    );
    assert!(!stderr(&output).contains("chmod"), "{}", stderr(&output));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_others_can_read_draws_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let work = Workspace::new();
    let ledger = work.path("shared/ledger.db");
    let url = format!("sqlite://{}", ledger.display());
    let numbers = ["numbers", "--ledger", &url];
    let output = work
        .run_with_env(&[&numbers[..], &["--create"]].concat(), &[])
        .await;
    assert_exit!(output, 0);
    assert_eq!(mode_of(&ledger), 0o600);
    std::fs::set_permissions(&ledger, std::fs::Permissions::from_mode(0o644)).unwrap();

    let output = work.run_with_env(&numbers, &[]).await;

    assert_exit!(output, 0);
    let said = stderr(&output);
    assert!(
        said.contains("can be read by other users") && said.contains("chmod 600"),
        "{said}"
    );
    assert_eq!(mode_of(&ledger), 0o644, "left as it was");
}

/// `ledger stats --json` of the ledger `config` names.
async fn stats(work: &Workspace, config: &str) -> serde_json::Value {
    let output = work
        .run_with_env(&["ledger", "stats", "--json", "--config", config], &[])
        .await;
    assert_exit!(output, 0);
    serde_json::from_str(&stdout(&output)).unwrap()
}

async fn cards_older_than_the_keep_are_pruned_by_runs_and_on_request(store: Store) {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let ledger = store.ledger(&work).await;
    let config = work.config(
        &settings
            .ledger(&ledger)
            .set("ledger.keep", "\"30d\"")
            .set("schedule.daily_cap", "100"),
    );
    // Forty days ago, and twenty: the first are past the keep, the others not.
    work.write("old.csv", &common::campaign_from(0, 4));
    work.write("recent.csv", &common::campaign_from(4, 3));
    for (shift, file) in [("-40d", "old.csv"), ("-20d", "recent.csv")] {
        let output = work
            .run_later(shift, &["send", file, "--config", &config])
            .await;
        assert_exit!(output, 0);
    }
    assert_eq!(stats(&work, &config).await["cards"], 7);

    // A run today, twenty days after the ledger's newest card, prunes
    // nothing past that card's keep: its clock might run ahead.
    work.write("today.csv", &common::campaign_from(7, 2));
    let output = work.ok(&["send", "today.csv", "--config", &config]).await;
    common::assert_has(&stderr(&output), "20 days after the ledger's newest card");
    assert_eq!(stats(&work, &config).await["cards"], 9);
    // Once it sent, the ledger vouches for today: what is older than 30
    // days goes.
    let output = work
        .run_with_env(&["ledger", "prune", "--config", &config], &[])
        .await;
    assert_exit!(output, 0);
    common::assert_has(&stdout(&output), "removed 4 cards");
    let held = stats(&work, &config).await;
    assert_eq!(held["cards"], 5, "{held}");
    assert_eq!(held["recipients"], 5, "{held}");
    assert_eq!(held["campaigns"], 3, "{held}");
    assert_eq!(held["numbers"], 1, "{held}");
    assert_eq!(
        held["schema_version"],
        interacto_bulk::ledger::SCHEMA_VERSION
    );
    assert!(held["bytes"].as_u64().unwrap() > 0, "{held}");
    assert!(held["oldest"].as_str().unwrap() < held["newest"].as_str().unwrap());
    // The forgotten campaign's rows go again, in a run that carries on no
    // results file of it (its file still shows them sent).
    work.ok(&["send", "old.csv", "--out", "again.csv", "--config", &config])
        .await;
    assert_eq!(server.accepted(), 4 + 3 + 2 + 4);

    // On request, with another keep: the 20-day-old cards go too.
    let output = work
        .run_with_env(
            &["ledger", "prune", "--keep", "10d", "--config", &config],
            &[],
        )
        .await;
    assert_exit!(output, 0);
    assert!(
        stdout(&output).starts_with("removed 3 cards"),
        "{}",
        stdout(&output)
    );
    assert_eq!(stats(&work, &config).await["cards"], 6);
    // The daily counts of those days are gone with them.
    let numbers = work
        .run_with_env(&["numbers", "--json", "--config", &config], &[])
        .await;
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&numbers)).unwrap();
    assert_eq!(numbers[0]["sent_today"], 6, "{numbers}");
}

async fn a_forgotten_person_s_cards_are_gone_and_their_opt_out_stays(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("first.csv", &common::campaign_from(0, 3));
    work.ok(&["send", "first.csv", "--config", &config]).await;
    let results = work.results("first.results.csv");
    let (kept, gone) = (results[0]["to"].clone(), results[1]["to"].clone());
    let opted_out = results[2]["to"].clone();
    let run = |args: Vec<&str>| {
        let mut args = args;
        args.extend(["--config", &config]);
        let args: Vec<String> = args.iter().map(|arg| arg.to_string()).collect();
        let work = &work;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            work.run_with_env(&args, &[]).await
        }
    };
    let output = run(vec!["suppress", "add", &format!("+{opted_out}")]).await;
    assert_exit!(output, 0);

    let output = run(vec![
        "ledger",
        "forget",
        &format!("+{gone}"),
        &format!("+{opted_out}"),
    ])
    .await;

    assert_exit!(output, 0);
    let said = stdout(&output);
    let forgotten = "1 cards forgotten (the ledger keeps that they went, not to whom)";
    common::assert_has(&said, &format!("{gone}: {forgotten}\n"));
    common::assert_has(
        &said,
        &format!("{opted_out}: {forgotten}; their opt-out stays"),
    );
    assert_eq!(stats(&work, &config).await["cards"], 1);
    let list = run(vec!["suppress", "list"]).await;
    common::assert_has(&stdout(&list), &opted_out);
    // The same card the same day, in another campaign: the one forgotten
    // is still a repeat (the ledger keeps that the card went, by a digest),
    // as is the one kept; the one who opted out is still held back.
    work.write(
        "again.csv",
        &std::fs::read_to_string(work.path("first.csv")).unwrap(),
    );
    let output = work.run(&["send", "again.csv", "--config", &config]).await;
    assert_eq!(server.accepted(), 3, "{}", stderr(&output));
    let again = work.results("again.results.csv");
    let status_of = |to: &str| {
        again
            .iter()
            .find(|line| line["to"] == to)
            .map(|line| line["status"].clone())
    };
    assert_eq!(status_of(&gone).as_deref(), Some("DUPLICATE"));
    assert_eq!(status_of(&kept).as_deref(), Some("DUPLICATE"));
    assert_eq!(status_of(&opted_out).as_deref(), Some("SUPPRESSED"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_keep_shorter_than_the_cooldown_is_refused() {
    let work = Workspace::new();
    let url = work.fresh_ledger("ledger");
    for (keep, cooldown, said) in [
        ("\"30d\"", "\"60d\"", "shorter than schedule.cooldown"),
        ("\"1d\"", "\"1h\"", "too short"),
        ("\"400\"", "\"1h\"", "like 400d"),
    ] {
        let config = work.config(
            &Config::fast("http://127.0.0.1:9")
                .ledger(&url)
                .set("ledger.keep", keep)
                .set("schedule.cooldown", cooldown),
        );
        let output = work
            .run_with_env(&["ledger", "stats", "--config", &config], &[])
            .await;
        assert_exit!(output, 2, "{keep}");
        assert!(
            stderr(&output).contains("ledger.keep") && stderr(&output).contains(said),
            "{keep}: {}",
            stderr(&output)
        );
    }
}

/// A server on 127.0.0.1 that takes connections and never says a word, as
/// a hung PostgreSQL does; counts the connections it took.
async fn silent_server() -> (u16, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let taken = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counting = taken.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        // Bounded: a test makes a few connections at most.
        for _ in 0..16 {
            let Ok((socket, _)) = listener.accept().await else {
                return;
            };
            counting.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            held.push(socket);
        }
    });
    (port, taken)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_that_never_answers_is_given_up_on_and_sigterm_ends_the_wait() {
    let server = embedded(MockOptions::default()).await;
    let (port, taken) = silent_server().await;
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(2));
    let ledger = format!("postgres://bulk:s3cret@127.0.0.1:{port}/ledger");
    let waiting = |seconds: &str| {
        work.config(
            &Config::fast(&server.base_url())
                .ledger(&ledger)
                .set("ledger.connect_timeout", seconds),
        )
    };

    // Given up on after ledger.connect_timeout: nothing sent, exit 2.
    let started = std::time::Instant::now();
    let output = work.send(waiting("1"), &[]).await;
    assert_exit!(output, 2);
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
    common::assert_has(
        &stderr(&output),
        "no answer within 1 s (ledger.connect_timeout)",
    );
    assert!(!stderr(&output).contains("s3cret"));
    assert_eq!(server.requests(), 0);

    // With a long timeout, SIGTERM ends the wait.
    let before = taken.load(std::sync::atomic::Ordering::SeqCst);
    let config = waiting("600");
    let run = work.spawn(&["send", "campaign.csv", "--config", &config]);
    // It connects before it logs its start, and waits there for good.
    run.wait_until_ready("the run to connect", || {
        taken.load(std::sync::atomic::Ordering::SeqCst) > before
    })
    .await;
    let output = ended_within_5_s_of_sigterm(run).await;
    assert_exit!(output, 130);
    assert_eq!(server.requests(), 0);
}

/// Holds every number's clock row locked in a transaction of its own, as a
/// run stuck mid-transaction on another machine would; dropped, it lets go.
async fn clocks_held(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute(
            "INSERT INTO clocks (instance_id, next_at, phone_free_at) VALUES ('inst-1', 0, 0)
                 ON CONFLICT (instance_id) DO NOTHING;
             BEGIN;
             SELECT * FROM clocks FOR UPDATE;",
        )
        .await
        .unwrap();
    client
}

/// Whether a session of the database at `url` waits on a lock.
async fn someone_waits_on_a_lock(url: &str) -> bool {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    let database = url.rsplit('/').next().unwrap();
    client
        .query_one(
            "SELECT EXISTS (SELECT 1 FROM pg_stat_activity
                            WHERE datname = $1 AND wait_event_type = 'Lock')",
            &[&database],
        )
        .await
        .unwrap()
        .get(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_row_lock_held_elsewhere_halts_the_run_after_the_lock_timeout_or_at_sigterm() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let ledger = Store::Postgres.ledger(&work).await;
    let config = |lock_timeout: &str| {
        work.config(
            &settings
                .clone()
                .ledger(&ledger)
                .set("ledger.lock_timeout", lock_timeout),
        )
    };
    work.write("campaign.csv", &common::campaign(3));
    // The tables, made by a first look.
    let output = work
        .run_with_env(&["numbers", "--create", "--config", &config("1")], &[])
        .await;
    assert_exit!(output, 0);
    let holder = clocks_held(&ledger).await;

    let started = std::time::Instant::now();
    let output = work.send(config("1"), &[]).await;

    assert_exit!(output, 3, "halted");
    assert!(started.elapsed() < std::time::Duration::from_secs(15));
    common::assert_has(&stderr(&output), "lock timeout");
    assert_eq!(server.requests(), 0);

    // Without a lock timeout to speak of, SIGTERM ends the wait.
    let long = config("600");
    let run = work.spawn(&["send", "campaign.csv", "--overwrite", "--config", &long]);
    run.wait_for_start().await;
    common::wait_until("the run to wait on the lock", || {
        someone_waits_on_a_lock(&ledger)
    })
    .await;
    let output = ended_within_5_s_of_sigterm(run).await;
    assert_exit!(output, 130, "asked to stop, not halted");
    assert_eq!(server.requests(), 0);
    drop(holder);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_path_relative_to_the_working_directory_is_said_with_its_whole_path() {
    let work = Workspace::new();
    let output = work
        .run_with_env(
            &["numbers", "--create", "--ledger", "sqlite://here.db"],
            &[],
        )
        .await;

    assert_exit!(output, 0);
    let whole = work.path("here.db");
    assert!(whole.exists(), "made in the working directory");
    let said = stderr(&output);
    assert!(
        said.contains("relative to the working directory")
            && said.contains(&whole.display().to_string()),
        "{said}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_password_is_never_shown_however_it_is_written() {
    let work = Workspace::new();
    for url in [
        // A typo in the scheme: the flag parser would have quoted it all.
        "postgress://bulk:s3cretpw@127.0.0.1/db",
        // `@` and `/` in the password.
        "postgres://bulk:s3cr@t/pw@127.0.0.1:1/db?connect_timeout=1",
        // In the query.
        "postgres://bulk@127.0.0.1:1/db?password=s3cretpw&connect_timeout=1",
    ] {
        let output = work.run_with_env(&["numbers", "--ledger", url], &[]).await;

        assert_exit!(output, 2, "{url}");
        let said = format!("{}{}", stdout(&output), stderr(&output));
        assert!(!said.contains("s3cr"), "{url}: {said}");
        assert!(said.contains("***") || said.contains("…"), "{url}: {said}");
    }
}

/// Sends `run` SIGTERM and waits for its end, which must come within 5 s
/// whatever it was waiting for.
async fn ended_within_5_s_of_sigterm(run: common::Running) -> std::process::Output {
    let signalled = std::time::Instant::now();
    common::terminate(&run);
    let output = common::ended(run).await;
    assert!(
        signalled.elapsed() < std::time::Duration::from_secs(5),
        "ended {:?} after SIGTERM",
        signalled.elapsed()
    );
    output
}
