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
    counts_are_kept_by_every_run_that_sends_cap_or_not,
    machines_fourteen_hours_apart_with_no_zone_set_share_one_cap,
    a_number_counted_in_localtime_by_the_release_before_is_given_a_zone_s_name,
    a_person_forgotten_on_request_is_not_sent_the_card_again,
    forgetting_the_card_s_own_phone_is_refused_unless_asked_and_resends_nobody,
    a_forgotten_phone_is_in_no_record_of_the_ledger,
    a_card_another_run_is_retrying_is_not_resent_by_a_run_with_shorter_settings,
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
    assert_exit!(output, 1);
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
    assert_exit!(output, 1);
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

/// What `numbers --json` says of the first number, with `config`.
async fn first_number(work: &Workspace, config: &str) -> serde_json::Value {
    let output = work
        .run_with_env(&["numbers", "--json", "--config", config], &[])
        .await;
    assert_exit!(output, 0);
    let numbers: serde_json::Value = serde_json::from_str(&common::stdout(&output)).unwrap();
    numbers[0].clone()
}

async fn counts_are_kept_by_every_run_that_sends_cap_or_not(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let uncapped = work.config(&settings);
    work.write("first.csv", &common::campaign_from(0, 5));
    work.ok(&["send", "first.csv", "--config", &uncapped]).await;
    let number = first_number(&work, &uncapped).await;
    assert_eq!(number["sent_today"], 5, "{number}");
    assert_eq!(number["first_contacts_today"], 5, "{number}");
    assert!(number["first_day"].is_string(), "{number}");

    // A run with a limit of 8 first contacts a day counts the 5 made.
    let limited = work.config(&settings.set("schedule.daily_new_contacts", "8"));
    work.write("second.csv", &common::campaign_from(5, 5));
    let output = work
        .run(&["send", "second.csv", "--config", &limited])
        .await;

    assert_exit!(output, 5);
    assert_eq!(server.accepted(), 5 + 3, "{}", stderr(&output));
    let results = work.results("second.results.csv");
    assert_eq!(common::count(&results, "DEFERRED"), 2, "{results:?}");
    let number = first_number(&work, &limited).await;
    assert_eq!(number["first_contacts_today"], 8, "{number}");
    assert_eq!(number["sent_today"], 8, "{number}");
}

async fn machines_fourteen_hours_apart_with_no_zone_set_share_one_cap(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    // No schedule.timezone: each machine's own zone, which the ledger
    // keeps by name for the number the first time one counts it.
    let config = work.config(&settings.set("schedule.daily_cap", "5"));
    work.write("first.csv", &common::campaign_from(0, 10));
    work.write("second.csv", &common::campaign_from(10, 10));
    let send = |file| ["send", file, "--config", &config];

    let first = work
        .run_on_a_machine_in("Etc/GMT+12", &send("first.csv"))
        .await;
    let second = work
        .run_on_a_machine_in("Etc/GMT-14", &send("second.csv"))
        .await;

    assert_exit!(first, 5);
    assert_exit!(second, 5);
    assert_eq!(server.accepted(), 5, "one cap for the number's one day");
    let number = first_number(&work, &config).await;
    assert_eq!(number["timezone"], "Etc/GMT+12", "{number}");
}

async fn a_number_counted_in_localtime_by_the_release_before_is_given_a_zone_s_name(store: Store) {
    let (server, work, settings) = common::against(Default::default()).await;
    let url = common::release_before(store, &work).await;
    let config = work.config(
        &settings
            .ledger(&url)
            .set("api.instance_id", "\"fixture-number\"")
            .set("schedule.daily_cap", "50"),
    );
    work.write("campaign.csv", &common::campaign(2));

    let output = work
        .run_on_a_machine_in(
            "America/Sao_Paulo",
            &["send", "campaign.csv", "--config", &config],
        )
        .await;

    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 2);
    assert_has(
        &stderr(&output),
        "counted this number's days in `localtime`",
    );
    let number = first_number(&work, &config).await;
    assert_eq!(number["timezone"], "America/Sao_Paulo", "{number}");
}

async fn a_card_another_run_is_retrying_is_not_resent_by_a_run_with_shorter_settings(store: Store) {
    // The API throttles the first try (Retry-After: 5 s), then accepts.
    let api = wiremock::MockServer::start().await;
    let throttled = wiremock::ResponseTemplate::new(429)
        .insert_header("Retry-After", "5")
        .set_body_json(serde_json::json!({"statusCode": 429, "message": "slow down"}));
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(throttled)
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&api)
        .await;
    wiremock::Mock::given(wiremock::matchers::method("POST"))
        .respond_with(common::accepted("m-1"))
        .mount(&api)
        .await;
    let work = Workspace::new();
    let ledger = store.ledger(&work).await;
    let patient = Config::fast(&api.uri())
        .ledger(&ledger)
        .set("retry.max_backoff", "10");
    // Machine B's own config: one try, a second's timeout.
    let hasty = patient
        .clone()
        .set("retry.max_attempts", "1")
        .set("retry.max_backoff", "0.05")
        .set("api.timeout", "1");
    let (patient, hasty) = (work.config(&patient), work.config(&hasty));
    work.write("campaign.csv", &common::campaign(1));

    // Machine A sends, is told to wait, and waits to try again.
    let a = work.spawn(&[
        "send",
        "campaign.csv",
        "--config",
        &patient,
        "--out",
        "a.csv",
    ]);
    common::wait_until("machine A's first try", || async {
        api.received_requests().await.unwrap_or_default().len() == 1
    })
    .await;
    // Machine B, its clock a few seconds on (past what its own settings
    // would allow a card in flight), sends the cards in doubt again.
    let b = work
        .run_later(
            "+3s",
            &[
                "send",
                "campaign.csv",
                "--config",
                &hasty,
                "--out",
                "b.csv",
                "--resume",
                "--resend-unknown",
            ],
        )
        .await;
    let a = common::ended(a).await;

    assert_exit!(a, 0);
    assert_exit!(b, 1);
    let requests = api.received_requests().await.unwrap();
    assert_eq!(
        requests.len(),
        2,
        "A's two tries, and nothing from B: {}",
        stderr(&b)
    );
    assert_eq!(common::count(&work.results("b.csv"), "UNKNOWN"), 1);
}

/// `ledger forget` with `args` and `config`.
async fn forget(work: &Workspace, config: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["ledger", "forget"];
    all.extend_from_slice(args);
    all.extend(["--config", config]);
    work.run_with_env(&all, &[]).await
}

async fn a_person_forgotten_on_request_is_not_sent_the_card_again(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign(3));
    work.ok(&["send", "campaign.csv", "--config", &config])
        .await;
    let forgotten = work.results("campaign.results.csv")[1]["to"].clone();

    let output = forget(&work, &config, &[&format!("+{forgotten}")]).await;
    assert_exit!(output, 0);
    assert_has(
        &common::stdout(&output),
        &format!("{forgotten}: 1 cards forgotten"),
    );
    // The campaign carries on (its results file still shows the card), and
    // runs again the next day (from another results file, which does not).
    let output = work.send(&config, &["--resume"]).await;
    assert_exit!(output, 0);
    let output = work
        .run_with_env(&["ledger", "stats", "--json", "--config", &config], &[])
        .await;
    let stats: serde_json::Value = serde_json::from_str(&common::stdout(&output)).unwrap();
    assert_eq!(
        stats["cards"], 2,
        "the results file put no phone back: {stats}"
    );
    let output = work
        .run_later(
            NEXT_DAY,
            &[
                "send",
                "campaign.csv",
                "--config",
                &config,
                "--out",
                "again.csv",
            ],
        )
        .await;

    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 3, "{}", stderr(&output));
    let line = common::line(&work.results("again.csv"), 3).clone();
    assert_eq!(line["status"], "SENT", "{line:?}");
    assert_has(&line["error"], "forgotten on request");
}

async fn forgetting_the_card_s_own_phone_is_refused_unless_asked_and_resends_nobody(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign(3));
    work.ok(&["send", "campaign.csv", "--config", &config])
        .await;
    // The business's own number, printed on every card.
    let card_phone = "+55 11 3003-4000";

    let output = forget(&work, &config, &[card_phone]).await;
    assert_exit!(output, 2);
    assert_has(
        &stderr(&output),
        "551130034000 is on 3 cards as the card's phone",
    );
    assert_has(&stderr(&output), "--as-card");
    let output = forget(&work, &config, &[card_phone, "--as-card"]).await;
    assert_exit!(output, 0);
    assert_has(&common::stdout(&output), "551130034000: 3 cards forgotten");

    // The next day, into a results file of its own: only the digests
    // remember.
    let output = work
        .run_later(
            NEXT_DAY,
            &[
                "send",
                "campaign.csv",
                "--config",
                &config,
                "--out",
                "fresh.csv",
            ],
        )
        .await;
    assert_exit!(output, 0);
    assert_eq!(
        server.accepted(),
        3,
        "nobody sent again: {}",
        stderr(&output)
    );
}

async fn a_forgotten_phone_is_in_no_record_of_the_ledger(store: Store) {
    let (_server, work, settings) = common::on_store(store).await;
    let url = store.ledger(&work).await;
    let config = work.config(&settings.ledger(&url));
    work.write("campaign.csv", &common::campaign(40));
    work.ok(&["send", "campaign.csv", "--config", &config])
        .await;
    let line = common::line(&work.results("campaign.results.csv"), 20).clone();
    let (phone, message_id) = (line["to"].clone(), line["message_id"].clone());

    let output = forget(&work, &config, &[&format!("+{phone}")]).await;

    assert_exit!(output, 0);
    let said = common::stdout(&output);
    match url.strip_prefix("sqlite://") {
        // Not in a record, and not in the file's free space either: what
        // `strings ledger.db*` would find, byte for byte.
        Some(path) => {
            assert!(!said.contains("WAL file"), "{said}");
            for end in ["", "-wal", "-shm", "-journal"] {
                let Ok(bytes) = std::fs::read(format!("{path}{end}")) else {
                    continue;
                };
                for gone in [&phone, &message_id] {
                    let found = bytes
                        .windows(gone.len())
                        .any(|window| window == gone.as_bytes());
                    assert!(!found, "{gone} is still in ledger.db{end}");
                }
                let kept = common::line(&work.results("campaign.results.csv"), 21)["to"].clone();
                if end.is_empty() {
                    assert!(
                        bytes.windows(kept.len()).any(|w| w == kept.as_bytes()),
                        "the others stay"
                    );
                }
            }
        }
        // Not in a row of any table; what PostgreSQL's files may keep is said.
        None => {
            assert_has(&said, "VACUUM FULL");
            let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .unwrap();
            tokio::spawn(connection);
            // The deleted rows' space was vacuumed, so it goes to new rows.
            let vacuumed: bool = client
                .query_one(
                    "SELECT last_vacuum IS NOT NULL FROM pg_stat_user_tables WHERE relname = 'sends'",
                    &[],
                )
                .await
                .unwrap()
                .get(0);
            assert!(vacuumed, "sends was vacuumed");
            for table in [
                "sends",
                "forgotten",
                "campaigns",
                "numbers",
                "daily_counts",
                "clocks",
            ] {
                let rows = client
                    .query(&format!("SELECT t::text FROM {table} t"), &[])
                    .await
                    .unwrap();
                for row in rows {
                    let text: String = row.get(0);
                    assert!(
                        !text.contains(&phone) && !text.contains(&message_id),
                        "{table}: {text}"
                    );
                }
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_results_file_edited_to_say_not_sent_keeps_the_ledger_s_word() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(3));
    work.ok(&["send", "campaign.csv", "--config", &config])
        .await;
    // Someone marks row 3 FAILED in a spreadsheet.
    let path = work.path("campaign.results.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    let third = text.lines().nth(2).unwrap().to_string();
    std::fs::write(
        &path,
        text.replace(&third, &third.replace(",SENT,", ",FAILED,")),
    )
    .unwrap();

    let output = work.send(&config, &["--resume"]).await;

    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 3, "{}", stderr(&output));
    assert_has(&stderr(&output), "the ledger remembers row 3 as sent");
    assert_eq!(work.results("campaign.results.csv")[1]["status"], "SENT");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dated_file_an_earlier_version_named_with_its_date_keeps_that_name() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("leads-2026-12-07.csv", &common::campaign(3));
    // As an earlier version named it: after the file, date and all.
    let as_before = ["--campaign", "leads-2026-12-07", "--limit", "2"];
    let mut args = vec!["send", "leads-2026-12-07.csv", "--config", &config];
    args.extend(as_before);
    work.fails(&args, 1).await;

    let output = work
        .run(&[
            "send",
            "leads-2026-12-07.csv",
            "--config",
            &config,
            "--resume",
        ])
        .await;

    assert_exit!(output, 0);
    assert_has(&stderr(&output), "keeps the name `leads-2026-12-07`");
    assert_eq!(
        server.accepted(),
        3,
        "the third row only: {}",
        stderr(&output)
    );
    let results = work.results("leads-2026-12-07.results.csv");
    assert_eq!(common::count(&results, "SENT"), 3, "{results:?}");
}
