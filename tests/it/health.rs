//! A number's health, shared by every run: a pause set on one machine
//! stops the other's runs (before they start, and mid-run); the API's
//! verdict on a number (401) outlasts its run, on every machine, until an
//! operator resumes it; a hold for too many failures ends by itself (the
//! binary's clock moved with libfaketime); a pause or resume names a number
//! the ledger knows exactly, or does nothing. Two "machines" are two
//! workspaces, each its own home, sharing one ledger; what reached the
//! server is counted.

use crate::common::{self, embedded, stderr, stdout, summary_json, Config, Store, Workspace};
use interacto_bulk::api::{MockOptions, MockServer};

on_both_stores!(
    a_pause_from_one_machine_defers_the_others_run_before_it_starts,
    a_pause_reaches_a_run_in_progress_within_seconds,
    a_number_the_api_refused_stays_out_of_every_run_until_resumed,
    a_hold_for_failures_ends_by_itself,
    first_contacts_are_capped_apart_from_people_the_number_knows,
    a_long_retry_after_holds_the_number_for_every_run_until_then,
    a_recipient_is_one_first_contact_however_many_cards_go_to_them,
    a_pause_names_a_number_the_ledger_knows_exactly_or_pauses_nothing,
    resuming_a_number_the_ledger_does_not_know_is_refused,
    a_number_not_used_yet_is_paused_with_new_and_sends_nothing,
    the_ledger_knows_a_number_by_its_sends_or_a_pause_in_force,
);

/// Two machines' configs on one ledger, through `inst-1`.
async fn two_machines(base_url: &str, store: Store) -> (Workspace, Workspace, Config) {
    let (here, there) = (Workspace::new(), Workspace::new());
    let ledger = store.ledger(&here).await;
    let settings = Config::fast(base_url).ledger(&ledger);
    (here, there, settings)
}

async fn a_pause_from_one_machine_defers_the_others_run_before_it_starts(store: Store) {
    let server = embedded(MockOptions::default()).await;
    let (here, there, settings) = two_machines(&server.base_url(), store).await;
    let (mine, theirs) = (here.config(&settings), there.config(&settings));

    let output = here
        .ok(&[
            "numbers",
            "pause",
            "inst-1",
            "--reason",
            "a warning on the phone",
            "--until",
            "2h",
            "--new",
            "--create",
            "--config",
            &mine,
        ])
        .await;
    common::assert_has(&stdout(&output), "inst-1 paused until");

    there.write("campaign.csv", &common::campaign(3));
    let output = there.send(&theirs, &["--summary", "json"]).await;
    assert_exit!(output, 5);
    assert_eq!(server.requests(), 0, "nothing goes through a paused number");
    let summary = summary_json(&output);
    assert_eq!(summary["stop_reason"], "paused", "{summary}");
    let resume_after: jiff::Timestamp = summary["resume_after"].as_str().unwrap().parse().unwrap();
    let in_two_hours = jiff::Timestamp::now() + jiff::SignedDuration::from_hours(2);
    assert!(resume_after.duration_until(in_two_hours).abs() < jiff::SignedDuration::from_mins(1));
    for line in there.results("campaign.results.csv") {
        assert_eq!(line["status"], "DEFERRED");
        assert!(
            line["error"].contains("inst-1 is paused (a warning on the phone) until"),
            "{line:?}"
        );
    }

    // The check says so, and its estimate leaves them out.
    let check = there.validate(&["--config", &theirs], 0).await;
    assert_eq!(check["held_numbers"]["inst-1"]["messages"], 3, "{check}");
    assert_eq!(check["messages"], 0, "{check}");
    let report = there.report(&["--config", &theirs], 0).await;
    assert!(
        report.contains("is paused (a warning on the phone) until")
            && report.contains("its 3 messages would be DEFERRED"),
        "{report}"
    );

    // Resumed from the other machine, the same campaign goes.
    let output = there
        .run(&["numbers", "resume", "inst-1", "--config", &theirs])
        .await;
    common::assert_has(&stdout(&output), "inst-1 may send again");
    let output = there.send(&theirs, &["--resume"]).await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 3);
}

async fn a_pause_reaches_a_run_in_progress_within_seconds(store: Store) {
    let server = embedded(MockOptions::default()).await;
    let (here, there, settings) = two_machines(&server.base_url(), store).await;
    let settings = settings.set("pacing.rate", "\"4/s\"");
    let (mine, theirs) = (here.config(&settings), there.config(&settings));
    there.write("campaign.csv", &common::campaign(60));
    let run = there.spawn(&["send", "campaign.csv", "--config", &theirs]);
    common::wait_for("the first messages", || server.accepted() >= 3).await;

    here.ok(&["numbers", "pause", "inst-1", "--config", &mine])
        .await;
    let paused_at = server.accepted();
    let output = common::ended(run).await;
    assert_exit!(output, 5);
    // Within the poll (2 s) and the messages already past their turn: at
    // 4/s, a dozen at most.
    let sent = server.accepted();
    assert!(
        sent <= paused_at + 12,
        "{paused_at} at the pause, {sent} in all"
    );
    let results = there.results("campaign.results.csv");
    assert_eq!(common::count(&results, "SENT") as u64, sent);
    assert_eq!(common::count(&results, "DEFERRED") as u64, 60 - sent);
    common::assert_has(&stderr(&output), "inst-1 is paused (paused by an operator)");
}

async fn a_number_the_api_refused_stays_out_of_every_run_until_resumed(store: Store) {
    let server = embedded(MockOptions {
        revoked_instances: vec!["inst-1".to_string()],
        ..MockOptions::default()
    })
    .await;
    let (here, there, settings) = two_machines(&server.base_url(), store).await;
    let (mine, theirs) = (here.config(&settings), there.config(&settings));
    here.write("campaign.csv", &common::campaign(5));
    let output = here.send(&mine, &[]).await;
    assert_exit!(output, 3);
    let refused = server.requests();
    assert!(refused >= 1);

    // The next run, on the other machine, asks nothing of the API.
    there.write("campaign.csv", &common::campaign_from(5, 5));
    let output = there.send(&theirs, &["--summary", "json"]).await;
    assert_exit!(output, 3);
    assert_eq!(
        server.requests(),
        refused,
        "no request through a refused number"
    );
    let line = &there.results("campaign.results.csv")[0];
    assert!(
        line["error"].contains("inst-1 is refused by the API: HTTP 401"),
        "{line:?}"
    );
    assert!(
        line["error"].contains(", until `numbers resume inst-1`"),
        "{line:?}"
    );
    let output = there.run(&["numbers", "--json", "--config", &theirs]).await;
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let inst = numbers
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["instance_id"] == "inst-1")
        .unwrap();
    assert_eq!(inst["state"], "refused", "{numbers}");

    // Resumed, it is tried again.
    there
        .run(&["numbers", "resume", "inst-1", "--config", &theirs])
        .await;
    let output = there.send(&theirs, &["--resume"]).await;
    assert_exit!(output, 3);
    assert!(server.requests() > refused);
}

async fn a_hold_for_failures_ends_by_itself(store: Store) {
    let server = embedded(MockOptions {
        failure_rate: 1.0,
        ..MockOptions::default()
    })
    .await;
    let (here, there, settings) = two_machines(&server.base_url(), store).await;
    let settings = settings.set("retry.max_attempts", "1");
    let (mine, theirs) = (here.config(&settings), there.config(&settings));
    here.write("campaign.csv", &common::campaign(30));
    let output = here.send(&mine, &[]).await;
    assert_exit!(output, 3);
    let failed = server.requests();

    // Within schedule.quarantine (1 h): held, on the other machine too.
    there.write("campaign.csv", &common::campaign_from(30, 3));
    let output = there.send(&theirs, &["--summary", "json"]).await;
    assert_exit!(output, 5);
    assert_eq!(summary_json(&output)["stop_reason"], "held");
    assert_eq!(server.requests(), failed);

    // Two hours later the hold is over: the number is tried again.
    let output = there
        .run_later(
            "+2h",
            &["send", "campaign.csv", "--config", &theirs, "--resume"],
        )
        .await;
    assert!(server.requests() > failed, "{}", stderr(&output));
}

/// `daily_new_contacts = 8`, five new recipients reached today (on the
/// other machine), then five of those again (another card) and five new:
/// the five known and three new go, two wait for tomorrow (exit 5).
async fn first_contacts_are_capped_apart_from_people_the_number_knows(store: Store) {
    let server = embedded(MockOptions::default()).await;
    let (here, there, settings) = two_machines(&server.base_url(), store).await;
    let settings = settings.set("schedule.daily_new_contacts", "8");
    let (mine, theirs) = (here.config(&settings), there.config(&settings));
    let rows = |range: std::ops::Range<usize>, card: &str| -> String {
        let mut text = String::from("to,contact_name,contact_phone\n");
        for n in range {
            text.push_str(&format!("+55 11 98000-{n:04},Pessoa {n},{card}\n"));
        }
        text
    };
    here.write("campaign.csv", &rows(0..5, "+55 11 3003-4000"));
    let output = here.send(&mine, &[]).await;
    assert_exit!(output, 0);

    there.write("campaign.csv", &rows(0..10, "+55 11 3003-5000"));
    let output = there.send(&theirs, &["--summary", "json"]).await;
    assert_exit!(output, 5);
    assert_eq!(summary_json(&output)["stop_reason"], "first_contacts");
    assert_eq!(server.accepted(), 5 + 8);
    let results = there.results("campaign.results.csv");
    let sent: Vec<&str> = results
        .iter()
        .filter(|line| line["status"] == "SENT")
        .map(|line| line["to"].as_str())
        .collect();
    for known in 0..5 {
        assert!(
            sent.contains(&format!("551198000{known:04}").as_str()),
            "{sent:?}"
        );
    }
    let waiting: Vec<_> = results
        .iter()
        .filter(|line| line["status"] == "DEFERRED")
        .collect();
    assert_eq!(waiting.len(), 2, "{results:?}");
    for line in waiting {
        assert!(
            line["error"].contains("first contacts for today used up"),
            "{line:?}"
        );
    }
}

/// The API asks the number to wait two minutes, longer than
/// `retry.max_backoff`: the run stops for now, and the other machine's run
/// asks nothing of the API until then; after it (faketime), it does.
async fn a_long_retry_after_holds_the_number_for_every_run_until_then(store: Store) {
    let server = embedded(MockOptions {
        throttle_rate: 1.0,
        retry_after: 120,
        ..MockOptions::default()
    })
    .await;
    let (here, there, settings) = two_machines(&server.base_url(), store).await;
    let (mine, theirs) = (here.config(&settings), there.config(&settings));
    here.write("campaign.csv", &common::campaign(3));
    let output = here.send(&mine, &["--summary", "json"]).await;
    assert_exit!(output, 5);
    assert_eq!(summary_json(&output)["stop_reason"], "api_wait");
    let asked = server.requests();

    there.write("campaign.csv", &common::campaign_from(3, 3));
    let output = there.send(&theirs, &["--summary", "json"]).await;
    assert_exit!(output, 5);
    assert_eq!(summary_json(&output)["stop_reason"], "held");
    assert_eq!(server.requests(), asked, "held until the API's time");

    let output = there
        .run_later(
            "+5m",
            &["send", "campaign.csv", "--config", &theirs, "--resume"],
        )
        .await;
    assert!(server.requests() > asked, "{}", stderr(&output));
}

/// One first contact a day: two cards to one new recipient are that one
/// first contact, and go together; the next new recipient waits.
async fn a_recipient_is_one_first_contact_however_many_cards_go_to_them(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings.set("schedule.daily_new_contacts", "1"));
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone\n\
         +55 11 98000-0001,Loja,+55 11 3003-4000\n\
         +55 11 98000-0001,Loja,+55 11 3003-5000\n\
         +55 11 98000-0002,Loja,+55 11 3003-4000\n",
    );
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 5);
    let results = work.results("campaign.results.csv");
    let statuses: Vec<&str> = results.iter().map(|line| line["status"].as_str()).collect();
    assert_eq!(statuses, ["SENT", "SENT", "DEFERRED"], "{results:?}");
    assert_eq!(server.accepted(), 2);
    let output = work.run(&["numbers", "--json", "--config", &config]).await;
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(numbers[0]["first_contacts_today"], 1, "{numbers}");
}

/// A workspace whose ledger (on `store`) knows `inst-A` from a send
/// through it against the embedded mock (two cards), and its config.
async fn a_ledger_that_knows_inst_a(store: Store) -> (MockServer, Workspace, String) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings.set("api.instance_id", "\"inst-A\""));
    work.write("campaign.csv", &common::campaign(2));
    assert_exit!(work.send(&config, &[]).await, 0);
    (server, work, config)
}

/// `inst-a` (its case) and ` inst-A` (a stray space) are refused naming
/// `inst-A`, with `--new` too (a number not used yet is not one the ledger
/// knows by another case), and pause nothing: `inst-A`'s next cards go.
async fn a_pause_names_a_number_the_ledger_knows_exactly_or_pauses_nothing(store: Store) {
    let (server, work, config) = a_ledger_that_knows_inst_a(store).await;

    for typo in ["inst-a", " inst-A", "inst-A "] {
        for new in [&[][..], &["--new"]] {
            let args = [&["numbers", "pause", typo, "--config", &config][..], new].concat();
            let output = work.refuses(&args, "did you mean `inst-A`?").await;
            common::assert_has(&stderr(&output), &format!("no number `{typo}`"));
            common::assert_has(&stderr(&output), "nothing was paused");
        }
    }

    let output = work.ok(&["numbers", "--json", "--config", &config]).await;
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(numbers.as_array().unwrap().len(), 1, "{numbers}");
    assert_eq!(numbers[0]["instance_id"], "inst-A", "{numbers}");
    assert_eq!(numbers[0]["state"], "active", "{numbers}");
    work.write("more.csv", &common::campaign_from(2, 3));
    let output = work.run(&["send", "more.csv", "--config", &config]).await;
    assert_exit!(output, 0);
    assert_eq!(
        common::requests_from(&server, "inst-A"),
        5,
        "inst-A was not paused"
    );

    // Its exact id pauses it.
    let output = work
        .ok(&["numbers", "pause", "inst-A", "--config", &config])
        .await;
    common::assert_has(
        &stdout(&output),
        "inst-A paused until `numbers resume inst-A`",
    );
    work.write("last.csv", &common::campaign_from(5, 1));
    let output = work.run(&["send", "last.csv", "--config", &config]).await;
    assert_exit!(output, 5);
    assert_eq!(common::requests_from(&server, "inst-A"), 5);
}

/// Resuming an id the ledger does not know resumes nothing: refused,
/// naming the closest it knows; `--new` means nothing there.
async fn resuming_a_number_the_ledger_does_not_know_is_refused(store: Store) {
    let (_server, work, config) = a_ledger_that_knows_inst_a(store).await;
    let output = work
        .refuses(
            &["numbers", "resume", "nosuch", "--config", &config],
            "no number `nosuch`",
        )
        .await;
    common::assert_has(&stderr(&output), "the closest it knows: `inst-A`");
    common::assert_has(&stderr(&output), "nothing was resumed");
    work.refuses(
        &["numbers", "resume", "inst-a", "--config", &config],
        "did you mean `inst-A`?",
    )
    .await;
    work.refuses(
        &["numbers", "resume", "nosuch", "--new", "--config", &config],
        "--new",
    )
    .await;
}

/// A number that has not sent yet is unknown to the ledger: `--new` pauses
/// it, a send through it then defers its rows, and the ledger knows it from
/// then on: `numbers resume` lets it send.
async fn a_number_not_used_yet_is_paused_with_new_and_sends_nothing(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings.set("api.instance_id", "\"new-number\""));
    let pause = [
        "numbers",
        "pause",
        "new-number",
        "--create",
        "--config",
        &config,
    ];
    let output = work.refuses(&pause, "--new").await;
    common::assert_has(&stderr(&output), "no number `new-number`");
    common::assert_has(&stderr(&output), "knows no number yet");
    let output = work.ok(&[&pause[..], &["--new"]].concat()).await;
    common::assert_has(&stdout(&output), "new-number paused until");

    work.write("campaign.csv", &common::campaign(3));
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 5);
    assert_eq!(server.requests(), 0);
    for line in work.results("campaign.results.csv") {
        assert_eq!(line["status"], "DEFERRED", "{line:?}");
    }

    let output = work
        .ok(&["numbers", "resume", "new-number", "--config", &config])
        .await;
    common::assert_has(&stdout(&output), "new-number may send again");
    assert_exit!(work.send(&config, &["--resume"]).await, 0);
    assert_eq!(common::requests_from(&server, "new-number"), 3);
}

/// The numbers `numbers` lists, by `instance_id`.
async fn listed(work: &Workspace, ledger: &str) -> Vec<String> {
    let output = work.ok(&["numbers", "--json", "--ledger", ledger]).await;
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    numbers
        .as_array()
        .unwrap()
        .iter()
        .map(|number| number["instance_id"].as_str().unwrap().to_string())
        .collect()
}

/// What the ledger knows a number by: an earlier release's ledger knows
/// `fixture-number` by its counts and clock once upgraded; a number not
/// used yet, paused with `--new` for two hours, is known while the pause
/// lasts (resumed without `--new`), and no more once it has ended.
async fn the_ledger_knows_a_number_by_its_sends_or_a_pause_in_force(store: Store) {
    let work = Workspace::new();
    let ledger = common::release_before(store, &work).await;
    let pause = |id: &'static str| ["numbers", "pause", id, "--until", "2h", "--ledger", &ledger];

    work.refuses(&pause("Fixture-Number"), "did you mean `fixture-number`?")
        .await;
    let output = work.ok(&pause("fixture-number")).await;
    common::assert_has(&stdout(&output), "fixture-number paused until");
    let resume = ["numbers", "resume", "fixture-number", "--ledger", &ledger];
    let output = work.ok(&resume).await;
    common::assert_has(&stdout(&output), "fixture-number may send again");

    work.ok(&[&pause("spare")[..], &["--new"]].concat()).await;
    assert_eq!(listed(&work, &ledger).await, ["fixture-number", "spare"]);
    let output = work.ok(&pause("spare")).await;
    common::assert_has(&stdout(&output), "spare paused until");

    let output = work.run_later("+3h", &pause("spare")).await;
    assert_exit!(output, 2);
    common::assert_has(&stderr(&output), "no number `spare`");
    common::assert_has(&stderr(&output), "the closest it knows: `fixture-number`");
    let resume = ["numbers", "resume", "spare", "--ledger", &ledger];
    let output = work.run_later("+3h", &resume).await;
    assert_exit!(output, 2);
    common::assert_has(&stderr(&output), "no number `spare`");
}

/// An empty or blank id names no number: refused before any ledger is
/// opened, whatever the flags, storing nothing.
#[tokio::test(flavor = "multi_thread")]
async fn an_empty_or_blank_id_is_refused_whatever_the_flags() {
    let (_server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(1));
    assert_exit!(work.send(&config, &[]).await, 0);
    for id in ["", "  ", "\t"] {
        for args in [
            &["numbers", "pause", id][..],
            &["numbers", "pause", id, "--new", "--create"],
            &["numbers", "resume", id],
        ] {
            work.refuses(&[args, &["--config", &config]].concat(), "empty")
                .await;
        }
    }
    let output = work.ok(&["numbers", "--json", "--config", &config]).await;
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let ids: Vec<&str> = numbers
        .as_array()
        .unwrap()
        .iter()
        .map(|number| number["instance_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["inst-1"], "{numbers}");
    assert_eq!(numbers[0]["state"], "active", "{numbers}");
}
