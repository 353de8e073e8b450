//! A campaign's one memory: what its runs sent is remembered in the ledger
//! by recipient key, on both stores, and holds over the campaign's life —
//! two results files, a lost one, a re-export with new leads on top, a file
//! a spreadsheet saved, a rehearsal before the real send, the next day (the
//! binary's clock moved with libfaketime). What reached the server is
//! counted, not what a file claims.

use std::collections::HashMap;
use std::time::Duration;

use tokio::io::AsyncWriteExt;

use crate::common::{
    self, count, embedded, queued_per_recipient, statuses, stderr, stdout, summary_json, wait_for,
    Config, Store, Workspace, API_KEY,
};
use crate::pg;
use interacto_bulk::api::{MockOptions, MockServer};

on_both_stores!(
    two_results_files_of_one_campaign_never_send_a_card_twice_not_even_the_next_day,
    a_lost_results_file_is_rebuilt_and_the_next_day_nothing_is_sent_again,
    new_leads_on_top_of_a_re_export_each_get_their_own_line_and_nobody_gets_two,
    a_results_file_saved_without_its_final_line_end_keeps_its_last_line,
    a_rehearsal_never_passes_for_the_real_send,
    rows_never_to_be_sent_complete_the_campaign_unless_strict,
    a_repeat_of_another_campaigns_card_is_never_sent_not_even_the_next_day,
    a_campaign_is_sent_again_on_purpose_under_a_new_name,
    after_kill_9_at_concurrency_8_no_more_than_8_rows_are_in_doubt,
);

/// A day and an hour later, for the binary's clock.
const NEXT_DAY: &str = "+25h";

/// The message id of each recipient's SENT line.
fn sent_ids(results: &[HashMap<String, String>]) -> HashMap<String, String> {
    results
        .iter()
        .filter(|line| line["status"] == "SENT")
        .map(|line| (line["to"].clone(), line["message_id"].clone()))
        .collect()
}

async fn two_results_files_of_one_campaign_never_send_a_card_twice_not_even_the_next_day(
    store: Store,
) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign(2));

    let output = work.send(&config, &["--out", "a.csv"]).await;
    assert_exit!(output, 0);
    // A second cron line, or a new --out after a lost file: the same campaign.
    let output = work.send(&config, &["--out", "b.csv"]).await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 2);
    let (a, b) = (work.results("a.csv"), work.results("b.csv"));
    assert_eq!(count(&b, "SENT"), 2, "{b:?}");
    assert_eq!(
        sent_ids(&a),
        sent_ids(&b),
        "the report names the cards that went"
    );

    // The next day, long past any 24-hour window.
    for out in ["b.csv", "c.csv"] {
        let resume = match out {
            "b.csv" => vec!["--resume"],
            _ => vec![],
        };
        let mut args = vec!["send", "campaign.csv", "--config", &config, "--out", out];
        args.extend(resume);
        let output = work.run_later(NEXT_DAY, &args).await;
        assert_exit!(output, 0, "{out}");
        assert_eq!(sent_ids(&work.results(out)), sent_ids(&a));
    }
    assert_eq!(server.accepted(), 2, "two requests for two rows, ever");
}

async fn a_lost_results_file_is_rebuilt_and_the_next_day_nothing_is_sent_again(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign(3));
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);
    let first = work.results("campaign.results.csv");

    std::fs::remove_file(work.path("campaign.results.csv")).unwrap();
    let output = work
        .run_later(
            NEXT_DAY,
            &[
                "send",
                "campaign.csv",
                "--config",
                &config,
                "--summary",
                "json",
            ],
        )
        .await;

    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 3, "nothing sent again");
    let summary = summary_json(&output);
    assert_eq!(summary["counts"]["SKIPPED"], 3, "{summary}");
    assert_eq!(summary["state"]["complete"], true);
    let rebuilt = work.results("campaign.results.csv");
    for (before, after) in first.iter().zip(&rebuilt) {
        for column in [
            "row",
            "to",
            "status",
            "message_id",
            "instance_id",
            "finished_at",
        ] {
            assert_eq!(before[column], after[column], "{column}");
        }
    }
}

async fn new_leads_on_top_of_a_re_export_each_get_their_own_line_and_nobody_gets_two(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(
        &settings
            .set("schedule.daily_cap", "6")
            .set("schedule.timezone", "\"UTC\""),
    );
    // Tonight's export: ten leads. The cap stops the run after six.
    let leads = common::campaign(13);
    let mut lines: Vec<&str> = leads.lines().collect();
    let header = lines.remove(0);
    let (new_leads, old_leads) = lines.split_at(3);
    work.write(
        "campaign.csv",
        &format!("{header}\n{}\n", old_leads.join("\n")),
    );
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 5, "stopped by the cap");
    assert_eq!(server.accepted(), 6);
    let first = sent_ids(&work.results("campaign.results.csv"));

    // Tomorrow's re-export has three new leads on top: every row moves down.
    let reexport = [new_leads, old_leads].concat();
    work.write(
        "campaign.csv",
        &format!("{header}\n{}\n", reexport.join("\n")),
    );
    let output = work
        .run_later(
            NEXT_DAY,
            &["send", "campaign.csv", "--config", &config, "--resume"],
        )
        .await;

    assert_exit!(output, 5, "the next day's cap");
    let output = work
        .run_later(
            "+49h",
            &["send", "campaign.csv", "--config", &config, "--resume"],
        )
        .await;
    assert_exit!(output, 0);
    let queued = queued_per_recipient(&server);
    assert_eq!(queued.len(), 13, "every lead reached: {queued:?}");
    assert!(queued.values().all(|times| *times == 1), "{queued:?}");
    let results = work.results("campaign.results.csv");
    assert_eq!(
        results.len(),
        13,
        "one line per row of the campaign as it is now"
    );
    for line in &results {
        let row: usize = line["row"].parse().unwrap();
        let own = reexport[row - 2];
        assert!(
            own.starts_with(&format!(
                "+55 11 9{}-{}",
                &line["to"][5..9],
                &line["to"][9..]
            )),
            "each line names its own row's person: {line:?}, row {row}: {own}"
        );
        assert_eq!(line["status"], "SENT", "{line:?}");
    }
    let ids = sent_ids(&results);
    for (to, id) in &first {
        assert_eq!(&ids[to], id, "a card sent on the first night keeps its id");
    }
}

async fn a_results_file_saved_without_its_final_line_end_keeps_its_last_line(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign(3));
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);
    let first = work.results("campaign.results.csv");
    // As Google Sheets' CSV download, or a script's "\n".join, saves it.
    let path = work.path("campaign.results.csv");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(&path, text.trim_end()).unwrap();

    for shift in ["+0", NEXT_DAY] {
        let output = work
            .run_later(
                shift,
                &["send", "campaign.csv", "--config", &config, "--resume"],
            )
            .await;
        assert_exit!(output, 0);
        assert!(
            !stderr(&output).contains("cut"),
            "a complete line is not a crash remnant: {}",
            stderr(&output)
        );
    }
    assert_eq!(server.accepted(), 3, "nothing sent again");
    assert_eq!(work.results("campaign.results.csv"), first);
}

async fn a_rehearsal_never_passes_for_the_real_send(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign(4));

    let output = work.send(&config, &["--mock"]).await;
    assert_exit!(output, 0);
    let rehearsal = std::fs::read_to_string(work.path("campaign.mock.csv")).unwrap();
    assert!(
        rehearsal.starts_with("rehearsal,row,key,"),
        "the file says it is a rehearsal: {rehearsal}"
    );
    assert_eq!(server.requests(), 0, "a rehearsal never reaches the API");

    // The real send: the rehearsal entered nothing in the campaign's memory.
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 4, "every card really went");

    // A real run never carries on from a rehearsal's file.
    let output = work
        .send(&config, &["--resume", "--out", "campaign.mock.csv"])
        .await;
    assert_exit!(output, 2);
    assert!(
        stderr(&output).contains("rehearsal"),
        "says why: {}",
        stderr(&output)
    );
    assert_eq!(
        std::fs::read_to_string(work.path("campaign.mock.csv")).unwrap(),
        rehearsal,
        "the rehearsal's file is untouched"
    );
    assert_eq!(server.accepted(), 4);
}

async fn rows_never_to_be_sent_complete_the_campaign_unless_strict(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    let output = work
        .run_with_env(
            &[
                "suppress",
                "add",
                "+55 11 98000-0001",
                "--create",
                "--config",
                &config,
            ],
            &[],
        )
        .await;
    assert_exit!(output, 0);
    // Two to send, one opted out, one repeat of a row, one invalid phone.
    work.write(
        "campaign.csv",
        &format!(
            "{}+55 11 98000-0000,Again,+55 11 3003-4000\n(21) 1234-5,Bad,+55 11 3003-4000\n",
            common::campaign(3)
        ),
    );

    let output = work.send(&config, &["--summary", "json"]).await;

    assert_exit!(output, 0);
    let summary = summary_json(&output);
    let state = &summary["state"];
    assert_eq!(state["complete"], true, "{summary}");
    assert_eq!(
        (state["sent"].clone(), state["never"].clone()),
        (2.into(), 3.into())
    );
    for status in ["SUPPRESSED", "DUPLICATE", "INVALID"] {
        assert_eq!(state["counts"][status], 1, "{status}: {summary}");
    }
    assert!(summary["next_step"].as_str().unwrap().contains("1 INVALID"));
    assert_eq!(server.accepted(), 2);

    // Every later run of it is complete too; with --strict, not.
    let output = work.send(&config, &["--resume"]).await;
    assert_exit!(output, 0);
    let output = work.send(&config, &["--resume", "--strict"]).await;
    assert_exit!(output, 1);
    assert_eq!(server.accepted(), 2);
}

async fn a_repeat_of_another_campaigns_card_is_never_sent_not_even_the_next_day(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign(2));
    work.write("other.csv", &common::campaign(2));
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);

    let other = ["send", "other.csv", "--config", &config];
    let output = work.run(&other).await;
    assert_exit!(output, 0, "a repeat is final");
    assert_eq!(count(&work.results("other.results.csv"), "DUPLICATE"), 2);

    // The next day the 24 hours are over, but the repeat stays a repeat.
    let resume = [&other[..], &["--resume"]].concat();
    let output = work.run_later(NEXT_DAY, &resume).await;
    assert_exit!(output, 0);
    assert_eq!(count(&work.results("other.results.csv"), "DUPLICATE"), 2);
    assert_eq!(server.accepted(), 2);
}

async fn a_campaign_is_sent_again_on_purpose_under_a_new_name(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("campaign.csv", &common::campaign(2));
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);

    let again = |name: &'static str| {
        [
            "send",
            "campaign.csv",
            "--config",
            &config,
            "--campaign",
            name,
            "--out",
            "again.csv",
            "--overwrite",
        ]
        .map(str::to_string)
    };
    work.ok(&again("campaign").each_ref().map(String::as_str))
        .await;
    assert_eq!(server.accepted(), 2, "the same name: nothing goes again");

    let output = work
        .run_later(
            NEXT_DAY,
            &again("campaign, again").each_ref().map(String::as_str),
        )
        .await;
    assert_exit!(output, 0);
    assert_eq!(
        server.accepted(),
        4,
        "a new name, the next day: every card again"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn another_campaigns_results_file_is_refused_and_left_alone() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(2));
    work.write("other.csv", &common::campaign(3));
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);
    let before = std::fs::read(work.path("campaign.results.csv")).unwrap();

    work.refuses(
        &[
            "send",
            "other.csv",
            "--config",
            &config,
            "--resume",
            "--out",
            "campaign.results.csv",
        ],
        "the results file of the campaign `campaign`, not of `other`",
    )
    .await;
    assert_eq!(
        std::fs::read(work.path("campaign.results.csv")).unwrap(),
        before
    );
    assert_eq!(server.accepted(), 2, "nothing sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_named_after_a_file_that_is_only_a_date_says_how_to_name_it() {
    let (_server, work, config) = common::against_the_mock().await;
    work.write("2026-11-30.csv", &common::campaign(1));

    let output = work
        .ok(&["validate", "2026-11-30.csv", "--config", &config])
        .await;
    let said = stderr(&output);
    assert!(
        said.contains("is only a date") && said.contains("--campaign NAME"),
        "{said}"
    );
    let output = work
        .run(&[
            "validate",
            "2026-11-30.csv",
            "--config",
            &config,
            "--campaign",
            "leads",
            "--overwrite",
        ])
        .await;
    assert!(
        !stderr(&output).contains("is only a date"),
        "{}",
        stderr(&output)
    );
}

async fn after_kill_9_at_concurrency_8_no_more_than_8_rows_are_in_doubt(store: Store) {
    // Answers take a moment, so that eight requests are in flight at a time.
    let server = embedded(MockOptions {
        latency: Duration::from_millis(20),
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(
        &Config::fast(&server.base_url())
            .ledger(&store.ledger(&work).await)
            .set("pacing.rate", "\"100000/s\"")
            .set("pacing.burst", "1000")
            .set("pacing.concurrency", "8"),
    );
    let rows = 800;
    work.write("campaign.csv", &common::campaign(rows));
    let mut child = work.spawn(&["send", "campaign.csv", "--config", &config]);
    wait_for("a couple of hundred messages", || server.accepted() >= 200).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    common::all_handled(&server).await;
    let reached = server.accepted();

    let output = work.send(&config, &["--resume", "--summary", "json"]).await;

    let summary = summary_json(&output);
    let in_doubt = summary["state"]["counts"]["UNKNOWN"].as_u64().unwrap();
    assert!(
        in_doubt <= 8,
        "{in_doubt} rows in doubt: {}",
        stderr(&output)
    );
    let results = work.results("campaign.results.csv");
    let counts = statuses(&results);
    assert_eq!(
        counts["SENT"] + counts.get("UNKNOWN").copied().unwrap_or(0),
        rows,
        "{counts:?}"
    );
    let queued = queued_per_recipient(&server);
    for line in &results {
        let times = queued.get(&line["to"]).copied().unwrap_or(0);
        match line["status"].as_str() {
            "SENT" => assert_eq!(times, 1, "{line:?}"),
            // In flight at the kill: it may or may not have arrived, and
            // either is right, as long as it was not sent again.
            _ => assert!(times <= 1, "{line:?}"),
        }
    }
    assert!(server.accepted() > reached, "the resume sent the rest");
}

/// What the ledger's loss mid-run must leave, once a resume has run: every
/// card sent exactly once, none called a repeat of itself.
fn every_card_went_once(server: &MockServer, work: &Workspace, rows: usize) {
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), rows, "one line per row");
    assert_eq!(count(&results, "DUPLICATE"), 0, "no card is its own repeat");
    assert_eq!(count(&results, "SENT"), rows, "{:?}", statuses(&results));
    let queued = queued_per_recipient(server);
    assert_eq!(queued.len(), rows, "every recipient reached");
    assert!(
        queued.values().all(|times| *times == 1),
        "a card went twice"
    );
}

/// The rows of the runs that lose their ledger.
const ROWS: usize = 60;

/// A run of [`ROWS`] rows at 50/s on a PostgreSQL ledger of its own, once
/// it has sent a few: the mock, the workspace, the ledger, the config and
/// the run.
async fn sending_on_postgres() -> (MockServer, Workspace, String, String, common::Running) {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let ledger = pg::database().await;
    let config = work.config(&settings.ledger(&ledger).set("pacing.rate", "\"50/s\""));
    work.write("campaign.csv", &common::campaign(ROWS));
    let run = work.spawn(&["send", "campaign.csv", "--config", &config]);
    wait_for("a few messages", || server.accepted() >= 10).await;
    (server, work, ledger, config, run)
}

#[tokio::test(flavor = "multi_thread")]
async fn postgres_lost_mid_run_then_a_resume_sends_every_card_once() {
    let (server, work, ledger, config, run) = sending_on_postgres().await;

    // A server that goes away and stays away: the run's connection ends,
    // and connecting again fails.
    pg::refused(&ledger, true).await;
    let output = common::ended(run).await;
    pg::refused(&ledger, false).await;
    assert_exit!(output, 3, "the run halts");
    let output = work.send(&config, &["--resume"]).await;

    assert_exit!(output, 0);
    every_card_went_once(&server, &work, ROWS);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_postgres_connection_lost_once_is_made_again_and_the_run_goes_on() {
    let (server, work, ledger, _, run) = sending_on_postgres().await;

    // What a restart of the server does to the run: its connection ends.
    pg::cut_off(&ledger).await;
    let output = common::ended(run).await;

    assert_exit!(output, 0);
    common::assert_has(&stderr(&output), "connecting again");
    every_card_went_once(&server, &work, ROWS);
}

#[tokio::test(flavor = "multi_thread")]
async fn sqlite_out_of_space_mid_run_then_a_resume_sends_every_card_once() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let full = work.path("full");
    std::fs::create_dir(&full).unwrap();
    let ledger = format!("sqlite://{}/ledger.db", full.display());
    let config = work.config(&settings.ledger(&ledger).set("pacing.rate", "\"50/s\""));
    let rows = 60;
    work.write("campaign.csv", &common::campaign(rows));
    // In a mount namespace of its own, the ledger's folder is a small
    // tmpfs; once a few lines are written (the test says when, on its
    // stdin) it is filled to the last byte, then emptied again for the
    // resume.
    let script = format!(
        r#"set -u
        mount -t tmpfs -o size=4m tmpfs "{full}" || exit 97
        "{bin}" send campaign.csv --config "{config}" & run=$!
        read written
        dd if=/dev/zero of="{full}/filler" bs=4k 2>/dev/null
        wait $run; echo "first=$?"
        rm "{full}/filler"
        "{bin}" send campaign.csv --config "{config}" --resume; echo "second=$?""#,
        full = full.display(),
        bin = env!("CARGO_BIN_EXE_interacto-bulk"),
    );
    let mut command = work.sealed("/usr/bin/unshare");
    command
        .args(["--mount", "--map-root-user", "/bin/sh", "-c", &script])
        .env("INTERACTO_API_KEY", API_KEY)
        .env("NO_COLOR", "1")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().expect("unshare starts");
    let results = work.path("campaign.results.csv");
    common::wait_for("a few results lines", || {
        std::fs::read_to_string(&results).is_ok_and(|text| text.matches('\n').count() >= 12)
    })
    .await;
    let mut stdin = child.stdin.take().expect("stdin is piped");
    stdin.write_all(b"written\n").await.unwrap();

    let output = common::ended(child).await;

    let said = stdout(&output);
    assert!(
        said.contains("first=3"),
        "the run halts on a full disk: {said}\n{}",
        stderr(&output)
    );
    assert!(
        said.contains("second=0"),
        "the resume completes: {said}\n{}",
        stderr(&output)
    );
    common::assert_has(&stderr(&output), "ledger");
    every_card_went_once(&server, &work, rows);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_earlier_versions_results_file_is_remembered_even_when_overwritten() {
    let (server, work, config) = common::against_the_mock().await;
    let mut campaign = String::from("to,contact_name,contact_phone\n");
    for row in 2..=4u64 {
        campaign.push_str(&format!("119876543{row:02},Pessoa {row},551130034000\n"));
    }
    work.write("campaign.csv", &campaign);
    // An earlier version's file (no campaign column): row 2 sent for real,
    // row 3 "sent" by a --mock rehearsal written where a send's file goes.
    let legacy = |row: u64, id: &str| {
        let to = format!("55119876543{row:02}");
        format!(
            "{row},{to}:551130034000,{to},Pessoa {row},551130034000,inst-1,SENT,QUEUED,{id},201,1,2,5,,2026-11-20T10:00:00.000Z\n"
        )
    };
    work.write(
        "campaign.results.csv",
        &format!(
            "row,key,to,contact_name,contact_phone,instance_id,status,api_status,message_id,http_status,attempts,delay,typing,error,finished_at\n{}{}",
            legacy(2, "66b3c041eac929f51c6f0002"),
            legacy(3, "6b0daa880000000000000001"),
        ),
    );

    let output = work.send(&config, &["--overwrite"]).await;

    assert_exit!(output, 0);
    assert!(
        stderr(&output).contains("embedded mock"),
        "the rehearsal's lines are named: {}",
        stderr(&output)
    );
    let queued = queued_per_recipient(&server);
    assert!(
        !queued.contains_key("5511987654302"),
        "row 2 went before: {queued:?}"
    );
    assert_eq!(queued.len(), 2, "rows 3 and 4: {queued:?}");
    let results = work.results("campaign.results.csv");
    assert_eq!(
        common::line(&results, 2)["message_id"],
        "66b3c041eac929f51c6f0002"
    );
    assert_eq!(results.len(), 3, "one line per row");
    assert!(results.iter().all(|line| line["campaign"] == "campaign"));
}
