//! The results file is the campaign's state: one line per row after every
//! run, an exit code cron can trust, a JSON summary on every exit, names
//! that do not collide, and a form Excel in Brazil opens.

use serde_json::Value;

use crate::common::{
    self, embedded, ended, statuses, stderr, summary_json, terminate, utc_window_from_now,
    wait_for, Config, Workspace,
};
use interacto_bulk::api::MockOptions;

const HEADER: &str = "row,key,to,contact_name,contact_phone,instance_id,status,api_status,message_id,http_status,attempts,delay,typing,error,finished_at";

/// A line of a results file, as the tool writes it.
fn line(row: u64, status: &str, id: &str) -> String {
    let to = format!("55119876543{:02}", row);
    format!(
        "{row},{to}:551130034000,{to},Pessoa {row},551130034000,inst-1,{status},QUEUED,{id},201,1,2,5,,2026-11-20T10:00:00.000Z"
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn a_crash_while_tidying_leaves_a_file_the_next_run_completes() {
    let (server, work, config) = common::against_the_mock().await;
    let mut campaign = String::from("to,contact_name,contact_phone\n");
    for row in 2..=5u64 {
        campaign.push_str(&format!("119876543{:02},Pessoa {row},551130034000\n", row));
    }
    work.write("campaign.csv", &campaign);
    // Two runs' lines, out of row order, as a run killed before it could
    // tidy leaves them; and half a tidy file beside them.
    let lines = [
        line(3, "SENT", "66b3c041eac929f51c6f0003"),
        line(2, "FAILED", ""),
        line(5, "SENT", "66b3c041eac929f51c6f0005"),
        line(4, "DEFERRED", ""),
        line(3, "SKIPPED", ""),
        line(5, "SKIPPED", ""),
        line(2, "SENT", "66b3c041eac929f51c6f0002"),
    ];
    work.write(
        "campaign.results.csv",
        &format!("{HEADER}\n{}\n", lines.join("\n")),
    );
    work.write(".campaign.results.csv.tidy", &format!("{HEADER}\n3,55"));

    let output = work.send(&config, &["--resume"]).await;

    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 1, "only row 4 was left to send");
    let results = work.results("campaign.results.csv");
    let rows: Vec<(&str, &str, &str)> = results
        .iter()
        .map(|line| {
            (
                line["row"].as_str(),
                line["status"].as_str(),
                line["message_id"].as_str(),
            )
        })
        .collect();
    assert_eq!(rows[0], ("2", "SENT", "66b3c041eac929f51c6f0002"));
    assert_eq!(rows[1], ("3", "SENT", "66b3c041eac929f51c6f0003"));
    assert_eq!((rows[2].0, rows[2].1), ("4", "SENT"));
    assert_eq!(rows[3], ("5", "SENT", "66b3c041eac929f51c6f0005"));
    assert_eq!(rows.len(), 4);
    assert_eq!(
        results[1]["finished_at"], "2026-11-20T10:00:00.000Z",
        "a row sent earlier keeps the time it was sent"
    );
    assert!(!work.path(".campaign.results.csv.tidy").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn every_exit_prints_one_json_summary() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()));
    work.write("campaign.csv", &common::campaign(3));
    // Each run its own ledger: the same cards again within a day would be DUPLICATE.
    let ledgers: Vec<String> = (0..8)
        .map(|n| work.fresh_ledger(&format!("l{n}")))
        .collect();

    // 0: every row sent.
    let summary = summary_of_send(&work, &config, &ledgers[0], &[], 0).await;
    assert_eq!(summary["version"], env!("CARGO_PKG_VERSION"));
    assert!(summary["started_at"].as_str().unwrap() <= summary["finished_at"].as_str().unwrap());
    assert_eq!(summary["instances"]["inst-1"]["SENT"], 3);
    assert_eq!(summary["state"]["complete"], true);

    // 4: another run holds the lock.
    std::fs::write(
        work.path("campaign.results.csv.lock"),
        "pid 1 on this machine\n",
    )
    .unwrap();
    let holder = std::fs::File::open(work.path("campaign.results.csv.lock")).unwrap();
    holder.lock().unwrap();
    let summary = summary_of_send(&work, &config, &ledgers[1], &["--resume"], 4).await;
    assert!(
        summary["error"].as_str().unwrap().contains("lock"),
        "{summary}"
    );
    drop(holder);

    // 2: a config that cannot be read.
    work.write("bad.toml", "[pacing]\nrate = \"fast\"\n");
    let output = work
        .fails(
            &[
                "send",
                "campaign.csv",
                "--config",
                "bad.toml",
                "--summary",
                "json",
            ],
            2,
        )
        .await;
    let summary = summary_saying(&output, 2);
    assert!(
        summary["error"].as_str().unwrap().contains("pacing.rate"),
        "{summary}"
    );

    // 0 with a row never to be sent; 1 with --strict.
    work.write(
        "campaign.csv",
        &format!("{}(21) 1234-5,Bad,551130034000\n", common::campaign(2)),
    );
    let summary = summary_of_send(&work, &config, &ledgers[2], &["--overwrite"], 0).await;
    assert_eq!(
        (
            summary["state"]["never"].clone(),
            summary["state"]["pending"].clone()
        ),
        (Value::from(1), Value::from(0))
    );
    assert!(
        summary["next_step"].as_str().unwrap().contains("INVALID"),
        "{summary}"
    );
    let strict = ["--resume", "--strict"];
    let summary = summary_of_send(&work, &config, &ledgers[2], &strict, 1).await;
    assert!(
        summary["next_step"].as_str().unwrap().contains("--strict"),
        "{summary}"
    );

    // 5: outside the send window, with --no-wait.
    let closed = work.config(
        &Config::fast(&server.base_url())
            .set(
                "schedule.window",
                &format!("{:?}", utc_window_from_now(2, 3)),
            )
            .set("schedule.timezone", "\"UTC\""),
    );
    // A results file of its own: the campaign's file shows its rows SENT,
    // and a run carrying it on would remember them.
    let no_wait = ["--no-wait", "--out", "closed.csv"];
    let summary = summary_of_send(&work, &closed, &ledgers[3], &no_wait, 5).await;
    assert_eq!(summary["stop_reason"], "window");
    assert!(summary["resume_after"].is_string(), "{summary}");

    // 3: the API refuses the key.
    let refusing = embedded(MockOptions {
        auth_fail_after: Some(0),
        ..MockOptions::default()
    })
    .await;
    let refused = work.config(&Config::fast(&refusing.base_url()));
    let summary = summary_of_send(&work, &refused, &ledgers[4], &["--out", "refused.csv"], 3).await;
    assert_eq!(summary["stop_reason"], "halted");
    assert!(
        summary["next_step"].as_str().unwrap().contains("--resume"),
        "{summary}"
    );

    // 130: SIGTERM mid-run.
    work.write("campaign.csv", &common::campaign(40));
    let slow = work.config(&Config::fast(&server.base_url()).set("pacing.rate", "\"10/s\""));
    let before = server.accepted();
    let child = work.spawn(&[
        "send",
        "campaign.csv",
        "--config",
        &slow,
        "--out",
        "stopped.csv",
        "--summary",
        "json",
        "--ledger",
        &ledgers[5],
    ]);
    child.wait_for_start().await;
    wait_for("a message", || server.accepted() > before).await;
    terminate(&child);
    let output = ended(child).await;
    assert_exit!(output, 130);
    let summary = summary_saying(&output, 130);
    assert_eq!(summary["stop_reason"], "interrupted");
}

/// Sends `campaign.csv` with `config`, the ledger `ledger`, `--summary
/// json` and `extra`; asserts that it exited with `exit` and its summary
/// says so; returns the summary.
async fn summary_of_send(
    work: &Workspace,
    config: &str,
    ledger: &str,
    extra: &[&str],
    exit: i32,
) -> Value {
    let mut args = vec!["send", "campaign.csv", "--config", config];
    args.extend(["--summary", "json", "--ledger", ledger]);
    args.extend_from_slice(extra);
    summary_saying(&work.fails(&args, exit).await, exit)
}

/// The JSON summary of a run that exited with `exit`, asserting it says so.
fn summary_saying(output: &std::process::Output, exit: i32) -> Value {
    let summary = summary_json(output);
    assert_eq!(summary["exit_code"], exit, "{summary}");
    summary
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_then_send_each_writes_its_own_file() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(3));

    work.ok(&["validate", "campaign.csv", "--config", &config])
        .await;
    assert_eq!(statuses(&work.results("campaign.check.csv"))["VALID"], 3);

    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);
    assert_eq!(statuses(&work.results("campaign.results.csv"))["SENT"], 3);

    // Again: the file is there, and the message says what each way out does.
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 2);
    let error = stderr(&output);
    let resume = error.find("--resume").expect("names --resume");
    let overwrite = error.find("--overwrite").expect("names --overwrite");
    assert!(resume < overwrite, "--resume first: {error}");
    assert!(error.contains("nothing goes twice"), "{error}");
    assert_eq!(server.accepted(), 3, "nothing sent twice");

    let output = work.send(&config, &["--out", "nowhere/results.csv"]).await;
    common::assert_refused(
        &output,
        "the folder nowhere for the results file does not exist",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn results_for_excel_open_in_columns_and_a_resume_reads_them() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let excel = work.config(&Config::fast(&server.base_url()).set("results.excel", "true"));
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone,delay\n\
         11987654321,Ana; filha,551130034000,\"2,5\"\n\
         11987654322,Bia,551130034000,\n",
    );

    let output = work.send(&excel, &[]).await;

    assert_exit!(output, 0);
    let bytes = std::fs::read(work.path("campaign.results.csv")).unwrap();
    let text = String::from_utf8(bytes).unwrap();
    assert!(
        text.starts_with("\u{feff}campaign;row;key;to;contact_name;"),
        "{text}"
    );
    let first = text.lines().nth(1).unwrap();
    assert!(first.contains(";\"Ana; filha\";"), "{first}");
    assert!(first.contains(";2,5;5;"), "{first}");

    // A resume with the plain setting reads the Excel form, keeps it, sends nothing.
    let plain = work.config(&Config::fast(&server.base_url()));
    let output = work.send(&plain, &["--resume"]).await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 2);
    let again = std::fs::read_to_string(work.path("campaign.results.csv")).unwrap();
    assert_eq!(again, text, "complete, and still in Excel's form");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_rewritten_file_keeps_the_permissions_it_had() {
    use std::os::unix::fs::PermissionsExt;
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()));
    work.write("campaign.csv", &common::campaign(2));
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);
    let results = work.path("campaign.results.csv");
    std::fs::set_permissions(&results, std::fs::Permissions::from_mode(0o600)).unwrap();

    let output = work.send(&config, &["--resume"]).await;
    assert_exit!(output, 0);
    let mode = std::fs::metadata(&results).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}
