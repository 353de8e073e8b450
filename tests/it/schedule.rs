//! Send windows and daily caps, for cron: what is held back is DEFERRED
//! (exit 5), and a later `--resume` sends it.

use std::time::Duration;

use crate::common::{self, code, embedded, stderr, stdout, Workspace};
use interacto_bulk::api::MockOptions;

/// A two-hour window open now and a one-hour window closed now, in UTC.
fn windows() -> (String, String) {
    let hour = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .hour();
    let at = |offset: i8| format!("{:02}:00", (hour + offset).rem_euclid(24));
    (
        format!("{}-{}", at(0), at(2)),
        format!("{}-{}", at(2), at(3)),
    )
}

fn with_schedule(work: &Workspace, base_url: &str, schedule: &str) -> String {
    let config = work.fast_config(base_url, "");
    let text = format!(
        "{}\n[schedule]\ntimezone = \"UTC\"\n{schedule}",
        std::fs::read_to_string(&config).unwrap()
    );
    std::fs::write(&config, text).unwrap();
    config.to_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_the_window_no_wait_defers_everything_and_a_resume_inside_it_sends() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let (open, closed) = windows();
    work.write("campaign.csv", &common::campaign(8));
    let closed_config = with_schedule(
        &work,
        &server.base_url(),
        &format!("window = \"{closed}\"\n"),
    );

    let output = work
        .run(&[
            "send",
            "campaign.csv",
            "--config",
            &closed_config,
            "--no-wait",
        ])
        .await;

    assert_eq!(code(&output), 5, "{}", stderr(&output));
    assert!(
        stdout(&output).contains("outside the send window"),
        "{}",
        stdout(&output)
    );
    assert_eq!(server.requests(), 0);
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 8);
    assert!(
        results.iter().all(|line| line["status"] == "DEFERRED"),
        "{results:?}"
    );

    let open_config = with_schedule(&work, &server.base_url(), &format!("window = \"{open}\"\n"));
    let output = work
        .run(&["send", "campaign.csv", "--config", &open_config, "--resume"])
        .await;

    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(server.accepted(), 8);
    let all = work.results("campaign.results.csv");
    assert!(all[8..].iter().all(|line| line["status"] == "SENT"));
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_the_window_the_run_waits_and_says_until_when() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let (_, closed) = windows();
    work.write("campaign.csv", &common::campaign(3));
    let config = with_schedule(
        &work,
        &server.base_url(),
        &format!("window = \"{closed}\"\n"),
    );
    let child = work.spawn(&["send", "campaign.csv", "--config", &config]);

    tokio::time::sleep(Duration::from_millis(1500)).await;
    common::terminate(&child);
    let output = tokio::time::timeout(Duration::from_secs(20), child.wait_with_output())
        .await
        .unwrap()
        .unwrap();

    assert_eq!(code(&output), 130);
    assert_eq!(server.requests(), 0, "nothing is sent outside the window");
    let start = closed.split('-').next().unwrap();
    assert!(
        stderr(&output).contains("waiting until"),
        "{}",
        stderr(&output)
    );
    assert!(
        stderr(&output).contains(start),
        "the log names the opening time: {}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_cap_is_shared_by_two_runs_on_one_instance() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let state = work.path("state");
    let schedule = format!("daily_cap = 5\nstate_dir = \"{}\"\n", state.display());
    let config = with_schedule(&work, &server.base_url(), &schedule);
    work.write("first.csv", &common::campaign(3));
    let second: String = common::campaign(10)
        .lines()
        .skip(4)
        .collect::<Vec<_>>()
        .join("\n");
    work.write(
        "second.csv",
        &format!("to,contact_name,contact_phone\n{second}\n"),
    );

    let output = work.run(&["send", "first.csv", "--config", &config]).await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    let output = work.run(&["send", "second.csv", "--config", &config]).await;

    assert_eq!(code(&output), 5, "{}", stderr(&output));
    assert!(
        stdout(&output).contains("daily cap of 5"),
        "{}",
        stdout(&output)
    );
    let results = work.results("second.results.csv");
    let count = |status: &str| {
        results
            .iter()
            .filter(|line| line["status"] == status)
            .count()
    };
    assert_eq!(
        (count("SENT"), count("DEFERRED")),
        (2, 5),
        "7 rows, 2 left under the cap"
    );
    assert_eq!(server.accepted(), 5, "five in all today");
}
