//! The ledger every run shares, on both stores (a SQLite file; a real
//! PostgreSQL): a number's pace kept by several runs together, daily caps
//! exact across concurrent runs, rehearsals that spend nothing real, and no
//! sending without a ledger.

use std::time::Duration;

use crate::common::{self, code, embedded, stderr, stdout, Config, Store, Workspace, API_KEY};
use crate::pg;
use interacto_bulk::api::MockOptions;

on_both_stores!(
    three_runs_at_once_share_one_daily_cap_exactly,
    every_message_counted_against_the_cap_is_sent,
    a_rehearsal_spends_none_of_the_real_cap,
    two_campaigns_through_one_number_at_once_keep_its_pace_together,
    a_run_killed_holding_its_turns_leaves_the_pace_whole,
    a_new_number_warms_up_and_numbers_shows_it,
    suppressed_recipients_are_never_sent_to,
    the_same_card_never_goes_twice_whatever_the_runs,
    a_cooldown_holds_back_a_recipient_across_campaigns,
    an_unknown_sent_again_on_request_passes_the_same_card_check,
    turns_booked_by_a_clock_an_hour_ahead_do_not_stall_the_next_run,
);

/// A quick config whose ledger is `url`.
fn with_ledger(base_url: &str, url: &str) -> Config {
    Config::fast(base_url).ledger(url)
}

async fn three_runs_at_once_share_one_daily_cap_exactly(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings.set("schedule.daily_cap", "10"));
    let runs: Vec<_> = (0..3)
        .map(|run| {
            let name = format!("c{run}.csv");
            work.write(&name, &common::campaign_from(run * 10, 10));
            work.spawn(&["send", &name, "--config", &config])
        })
        .collect();

    let mut codes = Vec::new();
    for (run, output) in runs.into_iter().enumerate() {
        let output = common::ended(output).await;
        // A run the cap stopped before all its 10 were sent ends 5.
        let results = work.results(&format!("c{run}.results.csv"));
        let stopped = common::count(&results, "SENT") < 10;
        assert_exit!(output, if stopped { 5 } else { 0 }, "run {run}");
        codes.push(code(&output));
    }

    assert_eq!(server.accepted(), 10, "exactly the cap in all: {codes:?}");
    assert!(
        codes.contains(&5),
        "a run was stopped by the cap: {codes:?}"
    );
}

/// At a fast pace many messages are between their turn and their request
/// when the cap is reached: the ones counted still go, the rest wait.
async fn every_message_counted_against_the_cap_is_sent(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(
        &settings
            .set("schedule.daily_cap", "25")
            .set("pacing.rate", "\"100000/s\"")
            .set("pacing.burst", "1000"),
    );
    work.write("campaign.csv", &common::campaign(200));

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 5, "stopped by the cap");
    assert_eq!(server.accepted(), 25, "the whole cap, and no more");
    let results = work.results("campaign.results.csv");
    let sent = results.iter().filter(|line| line["status"] == "SENT");
    let deferred = results.iter().filter(|line| line["status"] == "DEFERRED");
    assert_eq!((sent.count(), deferred.count()), (25, 175));
    let output = work
        .run_with_env(&["numbers", "--config", &config, "--json"], &[])
        .await;
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(numbers[0]["sent_today"], 25, "counted as sent: {numbers}");
}

async fn a_rehearsal_spends_none_of_the_real_cap(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings.set("schedule.daily_cap", "5"));
    work.write("campaign.csv", &common::campaign(5));

    let output = work
        .send(&config, &["--mock", "--out", "rehearsal.csv"])
        .await;
    assert_exit!(output, 0);
    let output = work
        .send(&config, &["--dry-run", "--out", "check.csv"])
        .await;
    assert_exit!(output, 0);

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 5, "the real run had its whole cap");
}

/// Two runs, as from two machines (each its own directory and home),
/// through one number and one ledger.
async fn two_campaigns_through_one_number_at_once_keep_its_pace_together(store: Store) {
    let server = embedded(MockOptions::default()).await;
    let (here, there) = (Workspace::new(), Workspace::new());
    // With SQLite the "machines" share the file, as runs on one machine do.
    let ledger = store.ledger(&here).await;
    let settings = with_ledger(&server.base_url(), &ledger).set("pacing.rate", "\"5/s\"");
    let mut runs = Vec::new();
    for (work, first) in [(&here, 0), (&there, 8)] {
        work.write("campaign.csv", &common::campaign_from(first, 8));
        let config = work.config(&settings);
        runs.push(work.spawn(&["send", "campaign.csv", "--config", &config]));
    }
    for run in runs {
        let output = common::ended(run).await;
        assert_exit!(output, 0);
    }

    let mut arrivals: Vec<_> = server
        .received()
        .into_iter()
        .map(|request| request.at)
        .collect();
    assert_eq!(arrivals.len(), 16);
    // 5/s for the number, not for each run: 200 ms apart over both.
    common::assert_paced(&mut arrivals, Duration::from_millis(200), "two runs at 5/s");
}

async fn a_run_killed_holding_its_turns_leaves_the_pace_whole(store: Store) {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let ledger = store.ledger(&work).await;
    let config =
        work.config(&with_ledger(&server.base_url(), &ledger).set("pacing.rate", "\"4/s\""));
    work.write("campaign.csv", &common::campaign(10));
    let mut first = work.spawn(&["send", "campaign.csv", "--config", &config]);
    common::wait_for("two messages", || server.accepted() >= 2).await;

    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let output = work.send(&config, &["--resume"]).await;

    let results = work.results("campaign.results.csv");
    assert_exit!(output, common::exit_for(&results));
    let mut arrivals: Vec<_> = server
        .received()
        .into_iter()
        .map(|request| request.at)
        .collect();
    common::assert_paced(
        &mut arrivals,
        Duration::from_millis(250),
        "4/s across a kill",
    );
}

/// A run whose clock ran an hour ahead (libfaketime) sends through the
/// number; the next run, on time, must not wait that hour for its turn, yet
/// keeps the pace of what went, and says why it waits, on the terminal
/// too. With SQLite (one machine) the clock was set back in between, and
/// the run says so; with PostgreSQL both book on the server's clock, and
/// the first run's clock never mattered.
async fn turns_booked_by_a_clock_an_hour_ahead_do_not_stall_the_next_run(store: Store) {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let ledger = store.ledger(&work).await;
    // Paced by each message's delay + typing: 7 s for the first row, none
    // for the rest.
    let mut settings =
        with_ledger(&server.base_url(), &ledger).set("pacing.pace_by_message", "true");
    for floor in ["min_delay", "min_typing", "default_delay", "default_typing"] {
        settings = settings.set(&format!("pacing.{floor}"), "0");
    }
    let config = work.config(&settings);
    work.write(
        "ahead.csv",
        "to,contact_name,contact_phone,delay\n+55 11 98000-0000,A,+55 11 3003-4000,7\n",
    );
    work.write("campaign.csv", &common::campaign_from(1, 2));

    let output = work
        .run_later("+1h", &["send", "ahead.csv", "--config", &config])
        .await;
    assert_exit!(output, 0);
    let run = work.on_a_terminal(&["send", "campaign.csv", "--config", &config]);
    let output = common::ended(run).await;
    let screen = String::from_utf8_lossy(&output.stdout);
    assert_exit!(output, 0, "{screen}");

    let set_back =
        screen.contains("were booked 59m") && screen.contains("ahead of the clock's time now");
    assert_eq!(set_back, store == Store::Sqlite, "{screen}");
    assert!(
        screen.contains("s for the number's turn: its phone is busy until"),
        "the wait is logged with its reason: {screen}"
    );
    assert!(
        screen.contains("s for inst-1's turn"),
        "and shown by the progress bar: {screen}"
    );
    // What went keeps its pace: the phone's 7 s after the card sent ahead.
    let arrivals = common::arrival_times(&server);
    assert_eq!(arrivals.len(), 3);
    assert!(
        arrivals[1] - arrivals[0] >= Duration::from_millis(6900),
        "{arrivals:?}"
    );
}

/// Two machines sharing a PostgreSQL ledger, one clock an hour ahead of
/// the other's (libfaketime), send through one number at once: both book
/// on the server's clock, so the number keeps one pace.
#[tokio::test(flavor = "multi_thread")]
async fn machines_whose_clocks_differ_keep_one_pace_on_postgres() {
    let server = embedded(MockOptions::default()).await;
    let (here, there) = (Workspace::new(), Workspace::new());
    let ledger = Store::Postgres.ledger(&here).await;
    let settings = with_ledger(&server.base_url(), &ledger).set("pacing.rate", "\"5/s\"");
    let mut runs = Vec::new();
    for (work, first, shift) in [(&here, 0, "+0"), (&there, 8, "+1h")] {
        work.write("campaign.csv", &common::campaign_from(first, 8));
        let config = work.config(&settings);
        runs.push(work.spawn_later(shift, &["send", "campaign.csv", "--config", &config]));
    }
    for run in runs {
        let output = common::ended(run).await;
        assert_exit!(output, 0);
    }
    let mut arrivals: Vec<_> = server
        .received()
        .into_iter()
        .map(|request| request.at)
        .collect();
    assert_eq!(arrivals.len(), 16);
    common::assert_paced(
        &mut arrivals,
        Duration::from_millis(200),
        "two clocks, one pace",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_ledger_nothing_is_sent() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    work.write("campaign.csv", &common::campaign(2));
    let config = work.config(&settings);
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let unreachable = format!("postgres://bulk:hush-hush@127.0.0.1:{closed_port}/ledger");

    for url in [
        "sqlite:///dev/null/ledger.db",
        "sqlite:///proc/ledger.db",
        &unreachable,
    ] {
        let output = work
            .run_with_env(
                &[
                    "send",
                    "campaign.csv",
                    "--config",
                    &config,
                    "--overwrite",
                    "--ledger",
                    url,
                ],
                &[("INTERACTO_API_KEY", API_KEY), ("RUST_LOG", "trace")],
            )
            .await;

        assert_exit!(output, 2, "{url}");
        assert!(
            stderr(&output).contains("ledger"),
            "names the ledger: {}",
            stderr(&output)
        );
        assert!(
            !stderr(&output).contains("hush-hush"),
            "{}",
            stderr(&output)
        );
    }
    assert_eq!(server.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_ledger_lost_mid_run_halts_it_and_a_resume_completes() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let ledger = pg::database().await;
    let config =
        work.config(&with_ledger(&server.base_url(), &ledger).set("pacing.rate", "\"5/s\""));
    work.write("campaign.csv", &common::campaign(20));
    let run = work.spawn(&[
        "send",
        "campaign.csv",
        "--config",
        &config,
        "-vv",
        "--summary",
        "json",
    ]);
    common::wait_for("a few messages", || server.accepted() >= 2).await;

    pg::refused(&ledger, true).await;
    let output = common::ended(run).await;
    pg::refused(&ledger, false).await;

    assert_exit!(output, 3);
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 20, "nothing lost: every row has its line");
    assert!(results.iter().any(|line| line["status"] == "DEFERRED"));
    let password = ledger.split(':').nth(2).unwrap().split('@').next().unwrap();
    for text in [stdout(&output), stderr(&output)] {
        assert!(
            !text.contains(password),
            "the ledger's password leaked: {text}"
        );
    }

    let output = work.send(&config, &["--resume"]).await;
    let results = work.results("campaign.results.csv");
    assert_exit!(output, common::exit_for(&results));
    assert_eq!(server.accepted(), 20, "every row sent once in all");
}

async fn a_new_number_warms_up_and_numbers_shows_it(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(
        &settings
            .set("schedule.warmup", "[2, 3]")
            .set("schedule.daily_cap", "10")
            .set("schedule.timezone", "\"UTC\""),
    );
    work.write("campaign.csv", &common::campaign(5));

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 5, "its first day's cap");
    assert_eq!(server.accepted(), 2);
    let output = work
        .run_with_env(&["numbers", "--config", &config, "--json"], &[])
        .await;
    assert_exit!(output, 0);
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let today = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .date()
        .to_string();
    assert_eq!(numbers.as_array().unwrap().len(), 1, "{numbers}");
    let number = &numbers[0];
    assert_eq!(number["instance_id"], "inst-1");
    assert_eq!(number["sent_today"], 2);
    assert_eq!(number["cap_today"], 2);
    assert_eq!(number["first_day"], today.as_str());
    assert_eq!(number["last_7_days"][6]["day"], today.as_str());
    assert_eq!(number["last_7_days"][6]["sent"], 2);
    assert!(
        !stdout(&output).contains(pg::PASSWORD_SHOWN_NOWHERE),
        "{}",
        stdout(&output)
    );

    let text = work
        .run_with_env(&["numbers", "--config", &config], &[])
        .await;
    assert!(
        stdout(&text).contains("inst-1") && stdout(&text).contains("today 2 of 2"),
        "{}",
        stdout(&text)
    );
}

async fn suppressed_recipients_are_never_sent_to(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign(4));
    let suppress = |args: &[&str]| {
        let mut all = vec!["suppress"];
        all.extend_from_slice(args);
        all.extend(["--config", &config]);
        all.iter().map(|arg| arg.to_string()).collect::<Vec<_>>()
    };
    let run = |args: Vec<String>| {
        let work = &work;
        async move {
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            work.run_with_env(&args, &[]).await
        }
    };

    // By hand, as people write phones, into a new ledger; and from a file
    // with a bad row.
    let output = run(suppress(&[
        "add",
        "(11) 98000-0000",
        "--reason",
        "asked on WhatsApp",
        "--create",
    ]))
    .await;
    assert_exit!(output, 0);
    common::assert_has(&stdout(&output), "1 added, 0 already on the list of ");
    work.write("optouts.csv", "Telefone\n+55 11 98000-0001\nnot a phone\n");
    let output = run(suppress(&["import", "optouts.csv"])).await;
    assert_exit!(output, 1, "a bad row: {}", stdout(&output));
    assert!(
        stdout(&output).contains("1 added") && stdout(&output).contains("row 3: \"not a phone\""),
        "{}",
        stdout(&output)
    );
    let output = run(suppress(&["list"])).await;
    let list = stdout(&output);
    let listed: Vec<&str> = list.lines().collect();
    assert_eq!(listed.len(), 3, "{listed:?}");
    assert!(
        listed[1].starts_with("5511980000000,asked on WhatsApp,"),
        "{listed:?}"
    );
    assert!(listed[2].starts_with("5511980000001,,"), "{listed:?}");

    // A dry run shows them (and passes: no fix of the file sends them); a
    // send never reaches them.
    let output = work
        .send(&config, &["--dry-run", "--out", "check.csv"])
        .await;
    assert_exit!(output, 0);
    assert_eq!(common::count(&work.results("check.csv"), "SUPPRESSED"), 2);
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0, "opted out is final");
    let results = work.results("campaign.results.csv");
    assert_eq!(common::count(&results, "SUPPRESSED"), 2);
    assert!(
        results[0]["error"].contains("asked on WhatsApp")
            || results[1]["error"].contains("asked on WhatsApp")
    );
    assert_eq!(server.accepted(), 2);
    assert!(!common::recipients(&server).contains(&"5511980000000".to_string()));

    // Taken off the list, a resume sends it.
    let output = run(suppress(&["remove", "+55 11 98000-0000"])).await;
    common::assert_has(&stdout(&output), "1 removed, 0 were not on the list of ");
    let output = work.send(&config, &["--resume", "--strict"]).await;
    assert_exit!(output, 1, "--strict: one still suppressed");
    assert_eq!(server.accepted(), 3);
}

async fn the_same_card_never_goes_twice_whatever_the_runs(store: Store) {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let ledger = store.ledger(&work).await;
    let config = work.config(&with_ledger(&server.base_url(), &ledger));
    work.write("campaign.csv", &common::campaign(30));

    // Two campaigns with the same cards, at once: each card goes once, and
    // the campaign that did not send it never will.
    let runs: Vec<_> = ["spring", "summer"]
        .iter()
        .map(|name| {
            let out = format!("{name}.csv");
            work.spawn(&[
                "send",
                "campaign.csv",
                "--config",
                &config,
                "--campaign",
                name,
                "--out",
                &out,
            ])
        })
        .collect();
    for run in runs {
        let output = common::ended(run).await;
        assert_exit!(output, 0);
    }
    assert_eq!(server.accepted(), 30, "each card once");
    let (spring, summer) = (work.results("spring.csv"), work.results("summer.csv"));
    assert_eq!(
        common::count(&spring, "SENT") + common::count(&summer, "SENT"),
        30
    );
    assert_eq!(
        common::count(&spring, "DUPLICATE") + common::count(&summer, "DUPLICATE"),
        30
    );
    let repeat = spring
        .iter()
        .chain(&summer)
        .find(|line| line["status"] == "DUPLICATE")
        .unwrap();
    assert!(
        repeat["error"].contains("the same card went to this recipient at"),
        "{repeat:?}"
    );

    // One campaign's results file lost, the campaign run again: nothing
    // goes, and the file is rebuilt from the ledger, message ids and all.
    std::fs::remove_file(work.path("spring.csv")).unwrap();
    let output = work
        .send(&config, &["--campaign", "spring", "--out", "spring.csv"])
        .await;
    assert_exit!(output, 0);
    let again = work.results("spring.csv");
    for (before, after) in spring.iter().zip(&again) {
        for column in ["row", "status", "message_id", "instance_id"] {
            assert_eq!(before[column], after[column], "{column}: {after:?}");
        }
        if after["status"] == "SENT" {
            assert_eq!(before["finished_at"], after["finished_at"], "{after:?}");
        }
    }
    assert_eq!(server.accepted(), 30);
}

async fn a_cooldown_holds_back_a_recipient_across_campaigns(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings.set("schedule.cooldown", "\"7d\""));
    work.write("campaign.csv", &common::campaign(3));
    // The same people, another card.
    work.write(
        "other.csv",
        &common::campaign(3).replace("3003-4000", "3003-5000"),
    );

    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);
    work.fails(
        &[
            "send",
            "other.csv",
            "--config",
            &config,
            "--dry-run",
            "--out",
            "check.csv",
        ],
        1,
    )
    .await;
    assert_eq!(
        common::count(&work.results("check.csv"), "DEFERRED"),
        3,
        "a dry run shows it"
    );

    work.fails(&["send", "other.csv", "--config", &config], 1)
        .await;
    let results = work.results("other.results.csv");
    assert_eq!(common::count(&results, "DEFERRED"), 3, "{results:?}");
    assert!(
        results[0]["error"].contains("not before"),
        "{:?}",
        results[0]
    );
    assert_eq!(server.accepted(), 3, "only the first campaign reached them");
}

async fn an_unknown_sent_again_on_request_passes_the_same_card_check(store: Store) {
    // Answers slower than the timeout: the cards may have arrived (UNKNOWN).
    let slow = embedded(MockOptions {
        latency: Duration::from_millis(1500),
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let ledger = store.ledger(&work).await;
    work.write("campaign.csv", &common::campaign(2));
    let config = work.config(&with_ledger(&slow.base_url(), &ledger).set("api.timeout", "0.4"));
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 1);
    assert_eq!(
        common::count(&work.results("campaign.results.csv"), "UNKNOWN"),
        2
    );

    let quick = embedded(MockOptions::default()).await;
    let config = work.config(&with_ledger(&quick.base_url(), &ledger));
    let output = work.send(&config, &["--resume"]).await;
    assert_eq!(quick.accepted(), 0, "an UNKNOWN is not sent again unasked");
    assert_exit!(output, 1);

    let output = work.send(&config, &["--resume", "--resend-unknown"]).await;

    assert_exit!(output, 0);
    assert_eq!(
        quick.accepted(),
        2,
        "asked for, they go again despite the ledger's record"
    );
}
