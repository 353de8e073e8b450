//! Delivery you can trust: retries, ambiguous sends, halts, signals, the
//! lock and `--resume`, each against a real server on 127.0.0.1 and bounded
//! in time.

use std::collections::{HashMap, HashSet};
use std::process::Output;
use std::time::{Duration, Instant};

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{
    self, accepted, embedded, ended, line, queued_per_recipient, statuses, stderr, stdout,
    terminate, wait_for, Config, Workspace, API_KEY,
};
use interacto_bulk::api::MockOptions;

/// A wiremock server that answers `first` to the first `times` requests
/// and accepts every one after.
async fn answering_first(first: ResponseTemplate, times: u64) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(first)
        .up_to_n_times(times)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(accepted("m-1"))
        .mount(&server)
        .await;
    server
}

/// Sends a one-row campaign with `config`: the run's output and the row's line.
async fn send_one_row(config: &Config) -> (Output, HashMap<String, String>) {
    let work = Workspace::new();
    let config = work.config(config);
    work.write("campaign.csv", &common::campaign(1));
    let output = work.send(&config, &[]).await;
    let line = line(&work.results("campaign.results.csv"), 2).clone();
    (output, line)
}

#[tokio::test(flavor = "multi_thread")]
async fn transient_failures_are_retried_and_the_attempts_counted() {
    let server = answering_first(ResponseTemplate::new(503), 2).await;

    let (output, line) = send_one_row(&Config::fast(&server.uri())).await;

    assert_exit!(output, 0);
    assert_eq!(
        (line["status"].as_str(), line["attempts"].as_str()),
        ("SENT", "3")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn retry_after_is_honoured_up_to_max_backoff() {
    let throttled = ResponseTemplate::new(429).insert_header("Retry-After", "1");
    let server = answering_first(throttled, 1).await;
    // A longer wait than max_backoff stops the instance instead (see hostile.rs).
    let config = Config::fast(&server.uri()).set("retry.max_backoff", "2");

    let (output, line) = send_one_row(&config).await;

    assert_exit!(output, 0);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 2);
    assert_eq!(line["attempts"], "2");
    // The backoff alone would be under 50 ms; the server asked for a second.
    assert!(
        output_took_at_least(&output, Duration::from_millis(900)),
        "the second try waited for Retry-After: {}",
        stdout(&output)
    );
}

/// Whether the run's own elapsed time, from its text summary, is at least `least`.
fn output_took_at_least(output: &Output, least: Duration) -> bool {
    let text = stdout(output);
    let seconds: f64 = text
        .split(" in ")
        .nth(1)
        .and_then(|rest| rest.split(" s").next())
        .and_then(|number| number.parse().ok())
        .unwrap_or(0.0);
    seconds >= least.as_secs_f64()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_permanent_refusal_is_not_retried() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(422).set_body_json(json!({"message": "bad number"})))
        .expect(1)
        .mount(&server)
        .await;

    let (output, line) = send_one_row(&Config::fast(&server.uri())).await;

    assert_exit!(output, 1);
    assert_eq!(
        (line["status"].as_str(), line["attempts"].as_str()),
        ("FAILED", "1")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timeout_is_unknown_and_not_sent_again_unless_the_user_opts_in() {
    let server = embedded(MockOptions {
        latency: Duration::from_millis(1500),
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(2));
    let quick_timeout = Config::fast(&server.base_url()).set("api.timeout", "0.4");
    let config = work.config(&quick_timeout);

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 1);
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 2);
    assert!(results
        .iter()
        .all(|line| line["status"] == "UNKNOWN" && line["attempts"] == "1"));
    assert_eq!(server.requests(), 2, "one request per row, none repeated");

    let config = work.config(
        &quick_timeout
            .set("retry.retry_ambiguous", "true")
            .set("retry.max_attempts", "2"),
    );
    // The same cards again on purpose: a ledger that has not seen them, and
    // a results file that does not tell it.
    let ledger = work.fresh_ledger("again");
    let output = work
        .send(&config, &["--out", "again.csv", "--ledger", &ledger])
        .await;
    assert_exit!(output, 1);
    let results = work.results("again.csv");
    assert_eq!(results.len(), 2);
    assert!(results
        .iter()
        .all(|line| line["status"] == "UNKNOWN" && line["attempts"] == "2"));
    assert_eq!(server.requests(), 2 + 4);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_401_halts_the_run_at_once_and_the_rest_is_deferred() {
    let server = embedded(MockOptions {
        auth_fail_after: Some(3),
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()).set("pacing.concurrency", "1"));
    work.write("campaign.csv", &common::campaign(10));

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 3);
    common::assert_has(&stdout(&output), "halted");
    common::assert_has(&stderr(&output), "401");
    assert_eq!(server.received().len(), 4, "no request after the 401");
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 10, "every row has its line");
    let counts = statuses(&results);
    assert_eq!(
        (counts["SENT"], counts["FAILED"], counts["DEFERRED"]),
        (3, 1, 6)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn too_many_failures_halt_the_run() {
    let server = embedded(MockOptions {
        failure_rate: 1.0,
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(
        &Config::fast(&server.base_url())
            .set("pacing.concurrency", "1")
            .set("retry.max_attempts", "2")
            .set("retry.min_attempts_before_halt", "5")
            .set("retry.max_failure_ratio", "0.5"),
    );
    work.write("campaign.csv", &common::campaign(30));

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 3);
    common::assert_has(&stdout(&output), "max_failure_ratio");
    let counts = statuses(&work.results("campaign.results.csv"));
    assert_eq!(counts["FAILED"], 5);
    assert_eq!(counts["DEFERRED"], 25);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_fault_soak_ends_every_row_with_one_status_and_never_delivers_twice() {
    let server = embedded(MockOptions {
        failure_rate: 0.03,
        throttle_rate: 0.03,
        retry_after: 0,
        drop_rate: 0.02,
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(
        &Config::fast(&server.base_url())
            .set("pacing.concurrency", "8")
            .set("pacing.rate", "\"5000/s\""),
    );
    let rows = 2000;
    work.write("campaign.csv", &common::campaign(rows));

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 1, "dropped answers leave rows UNKNOWN");
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), rows);
    let rows_seen: HashSet<&str> = results.iter().map(|line| line["row"].as_str()).collect();
    assert_eq!(rows_seen.len(), rows, "exactly one line per row");
    let queued = queued_per_recipient(&server);
    assert!(
        queued.values().all(|count| *count == 1),
        "a recipient was queued twice"
    );
    for line in &results {
        let times = queued.get(&line["to"]).copied().unwrap_or(0);
        match line["status"].as_str() {
            "SENT" => assert_eq!(times, 1),
            // The soak's UNKNOWN rows are answers it cut off: queued, once.
            "UNKNOWN" => assert_eq!(times, 1, "an UNKNOWN row was not queued: {line:?}"),
            "FAILED" => assert_eq!(times, 0, "a FAILED row was queued: {line:?}"),
            other => panic!("unexpected status {other}"),
        }
    }
    let counts = statuses(&results);
    assert!(counts["SENT"] > rows * 9 / 10, "{counts:?}");
    assert!(
        counts.get("UNKNOWN").copied().unwrap_or(0) > 0,
        "the soak did drop answers: {counts:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sigterm_stops_cleanly_and_a_resume_completes_the_campaign() {
    let (server, work, config) = common::against_the_mock().await;
    let rows = 60;
    work.write("campaign.csv", &common::campaign(rows));

    let child = work.spawn(&[
        "send",
        "campaign.csv",
        "--config",
        &config,
        "--rate",
        "20/s",
    ]);
    child.wait_for_start().await;
    wait_for("a few messages", || server.accepted() >= 5).await;
    terminate(&child);
    let output = ended(child).await;

    assert_exit!(output, 130);
    let first = work.results("campaign.results.csv");
    assert_eq!(
        first.len(),
        rows,
        "every row has its line after a clean stop"
    );
    let sent_first = statuses(&first)["SENT"];
    assert!(
        sent_first >= 5 && sent_first < rows,
        "{:?}",
        statuses(&first)
    );
    assert_eq!(statuses(&first)["DEFERRED"], rows - sent_first);
    assert!(
        !work.path("campaign.results.csv.journal").exists(),
        "a clean stop leaves no journal"
    );
    assert!(!work.path("campaign.results.csv.lock").exists());

    let ids_first: Vec<(String, String)> = first
        .iter()
        .filter(|line| line["status"] == "SENT")
        .map(|line| (line["row"].clone(), line["message_id"].clone()))
        .collect();

    let output = work.send(&config, &["--resume", "--summary", "json"]).await;

    assert_exit!(output, 0, "the resume completes the campaign");
    let summary = common::summary_json(&output);
    assert_eq!(summary["counts"]["SKIPPED"], sent_first);
    assert_eq!(summary["state"]["complete"], true);
    assert_eq!(summary["state"]["sent"], rows);
    let all = work.results("campaign.results.csv");
    assert_eq!(all.len(), rows, "one line per row, in row order");
    for (index, line) in all.iter().enumerate() {
        assert_eq!(line["row"], (index + 2).to_string());
        assert_eq!(line["status"], "SENT", "{line:?}");
        assert_eq!(line["message_id"].len(), 24, "{line:?}");
    }
    for (row, id) in &ids_first {
        let kept = all.iter().find(|line| &line["row"] == row).unwrap();
        assert_eq!(&kept["message_id"], id, "the first run's id is kept");
    }
    assert_eq!(server.accepted() as usize, rows);
    assert!(queued_per_recipient(&server)
        .values()
        .all(|count| *count == 1));

    let output = work.send(&config, &["--resume"]).await;
    assert_exit!(output, 0, "a complete campaign again");
    assert_eq!(server.accepted() as usize, rows, "nothing more is sent");
    assert_eq!(work.results("campaign.results.csv"), all);
}

#[tokio::test(flavor = "multi_thread")]
async fn after_kill_9_a_resume_never_sends_twice_and_accounts_for_every_row() {
    let server = embedded(MockOptions {
        latency: Duration::from_millis(300),
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()).set("pacing.concurrency", "4"));
    let rows = 40;
    work.write("campaign.csv", &common::campaign(rows));

    let mut child = work.spawn(&[
        "send",
        "campaign.csv",
        "--config",
        &config,
        "--rate",
        "40/s",
    ]);
    let results = work.path("campaign.results.csv");
    wait_for("messages in flight and a line SENT", || {
        server.accepted() >= 6
            && std::fs::read_to_string(&results).is_ok_and(|text| text.contains(",SENT,"))
    })
    .await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    assert!(
        work.path("campaign.results.csv.journal").exists(),
        "the journal survives the kill"
    );
    // The rows the killed run wrote SENT, in the lines it finished.
    let text = std::fs::read_to_string(&results).unwrap();
    work.write(
        "killed.csv",
        &text[..text.rfind('\n').map_or(0, |end| end + 1)],
    );
    let sent_before: HashMap<String, String> = work
        .results("killed.csv")
        .into_iter()
        .filter(|line| line["status"] == "SENT")
        .map(|line| (line["row"].clone(), line["message_id"].clone()))
        .collect();
    assert!(!sent_before.is_empty(), "the killed run sent a row");

    let output = work.send(&config, &["--resume", "--summary", "json"]).await;

    assert_exit!(output, 1, "rows in flight at the kill are UNKNOWN");
    let summary = common::summary_json(&output);
    let next = summary["next_step"].as_str().unwrap();
    assert!(
        next.contains("UNKNOWN") && next.contains("--resend-unknown"),
        "{next}"
    );
    common::all_handled(&server).await;
    let queued = queued_per_recipient(&server);
    assert!(
        queued.values().all(|count| *count == 1),
        "a recipient was queued twice: {queued:?}"
    );
    let all = work.results("campaign.results.csv");
    assert_eq!(all.len(), rows, "one line per row after the resume");
    let rows_seen: HashSet<&str> = all.iter().map(|line| line["row"].as_str()).collect();
    assert_eq!(
        rows_seen.len(),
        rows,
        "the resume run accounts for every row"
    );
    let counts = statuses(&all);
    assert!(
        counts.get("UNKNOWN").copied().unwrap_or(0) > 0,
        "in-flight rows are UNKNOWN: {counts:?}"
    );
    for line in &all {
        let times = queued.get(&line["to"]).copied().unwrap_or(0);
        match line["status"].as_str() {
            "SENT" | "SKIPPED" => assert_eq!(times, 1, "{line:?}"),
            // In flight at the kill: it may or may not have arrived, and
            // either is right, as long as it was not sent again (above).
            "UNKNOWN" => {}
            other => panic!("unexpected status {other}: {line:?}"),
        }
    }
    for (row, id) in &sent_before {
        let kept = common::line(&all, row.parse().unwrap());
        assert_eq!(
            (kept["status"].as_str(), &kept["message_id"]),
            ("SENT", id),
            "what the killed run sent is kept"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_run_on_the_same_results_exits_4_naming_the_holder() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(20));
    let first = work.spawn(&["send", "campaign.csv", "--config", &config, "--rate", "5/s"]);
    first.wait_for_start().await;
    wait_for("the first run to start sending", || server.accepted() >= 1).await;

    // The second run sends as another instance, so its requests would show.
    let output = work
        .run_with_env(
            &["send", "campaign.csv", "--config", &config, "--resume"],
            &[
                ("INTERACTO_API_KEY", API_KEY),
                ("INTERACTO_INSTANCE_ID", "second-run"),
            ],
        )
        .await;

    assert_exit!(output, 4);
    assert!(
        stderr(&output).contains(&format!("pid {}", first.id().unwrap())),
        "{}",
        stderr(&output)
    );
    assert_eq!(
        common::requests_from(&server, "second-run"),
        0,
        "the second run sent nothing"
    );
    terminate(&first);
    let output = ended(first).await;
    assert_exit!(output, 130);
    let line_for_row_2 = line(&work.results("campaign.results.csv"), 2).clone();
    assert_eq!(line_for_row_2["status"], "SENT");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_second_signal_aborts_at_once_and_the_results_file_stays_valid() {
    let server = embedded(MockOptions {
        latency: Duration::from_secs(3),
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()).set("pacing.concurrency", "4"));
    work.write("campaign.csv", &common::campaign(50));

    let child = work.spawn(&["send", "campaign.csv", "--config", &config]);
    child.wait_for_start().await;
    wait_for("requests in flight", || server.requests() >= 4).await;
    terminate(&child);
    child.wait_for_log("stopping: no new messages").await;
    terminate(&child);
    let started = Instant::now();
    let output = ended(child).await;

    assert_exit!(output, 130);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "it did not wait for the answers"
    );
    common::assert_has(&stderr(&output), "aborting");
    // Every line parses; the rows in flight have none, and the journal remembers them.
    let results = work.results("campaign.results.csv");
    assert!(results.iter().all(|line| line["status"] != "SENT"));
    assert!(work.path("campaign.results.csv.journal").exists());

    // The resume talks to a quick server, to keep the test short.
    let quick = embedded(MockOptions::default()).await;
    let quick_config = work.config(&Config::fast(&quick.base_url()).set("pacing.concurrency", "4"));
    work.fails(
        &[
            "send",
            "campaign.csv",
            "--config",
            &quick_config,
            "--resume",
        ],
        1,
    )
    .await;
    assert_eq!(quick.accepted(), 46);
    let all = work.results("campaign.results.csv");
    assert_eq!(all.len(), 50, "one line per row after the resume");
    let counts = statuses(&all);
    assert_eq!(
        counts["UNKNOWN"], 4,
        "the four in flight at the abort: {counts:?}"
    );
    assert_eq!(counts["SENT"], 46);
}
