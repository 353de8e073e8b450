//! Send windows and daily caps, for cron: what is held back is DEFERRED
//! (exit 5), and a later `--resume` sends it.

use crate::common::{self, count, ended, stderr, stdout, Config, API_KEY};
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

/// `settings` with `[schedule]` in UTC and `key = value`.
fn with_schedule(settings: &Config, key: &str, value: &str) -> Config {
    settings
        .clone()
        .set("schedule.timezone", "\"UTC\"")
        .set(&format!("schedule.{key}"), value)
}

/// A fixed-offset IANA zone where it is now about noon, so that no local
/// midnight falls within a test that counts a day.
fn zone_at_noon() -> String {
    let utc_hour = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .hour();
    // Etc/GMT-N is N hours ahead of UTC (POSIX signs are reversed).
    match 12 - utc_hour {
        0 => "Etc/GMT".to_string(),
        ahead if ahead > 0 => format!("Etc/GMT-{ahead}"),
        behind => format!("Etc/GMT+{}", -behind),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_the_window_no_wait_defers_everything_and_a_resume_inside_it_sends() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let (open, closed) = windows();
    work.write("campaign.csv", &common::campaign(8));
    let closed_config = work.config(&with_schedule(&settings, "window", &format!("{closed:?}")));

    let output = work
        .fails(
            &[
                "send",
                "campaign.csv",
                "--config",
                &closed_config,
                "--no-wait",
            ],
            5,
        )
        .await;
    common::assert_has(&stdout(&output), "outside the send window");
    assert_eq!(server.requests(), 0);
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 8);
    assert!(
        results.iter().all(|line| line["status"] == "DEFERRED"),
        "{results:?}"
    );

    let open_config = work.config(&with_schedule(&settings, "window", &format!("{open:?}")));
    work.ok(&["send", "campaign.csv", "--config", &open_config, "--resume"])
        .await;
    assert_eq!(server.accepted(), 8);
    let all = work.results("campaign.results.csv");
    assert_eq!(all.len(), 8, "one line per row after the resume");
    assert!(all.iter().all(|line| line["status"] == "SENT"), "{all:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn outside_the_window_the_run_waits_and_says_until_when() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let (_, closed) = windows();
    work.write("campaign.csv", &common::campaign(3));
    let config = work.config(&with_schedule(&settings, "window", &format!("{closed:?}")));
    let child = work.spawn(&["send", "campaign.csv", "--config", &config]);

    child.wait_for_start().await;
    child.wait_for_log("waiting until").await;
    common::terminate(&child);
    let output = ended(child).await;

    assert_exit!(output, 130);
    assert_eq!(server.requests(), 0, "nothing is sent outside the window");
    let start = closed.split('-').next().unwrap();
    common::assert_has(&stderr(&output), "waiting until");
    assert!(
        stderr(&output).contains(start),
        "the log names the opening time: {}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_cap_is_shared_by_two_runs_on_one_instance() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let ledger = work.fresh_ledger("ledger");
    let config = work.config(
        &with_schedule(&settings, "daily_cap", "5")
            .set("schedule.timezone", &format!("{:?}", zone_at_noon()))
            .ledger(&ledger),
    );
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

    work.ok(&["send", "first.csv", "--config", &config]).await;

    let output = work
        .fails(&["send", "second.csv", "--config", &config], 5)
        .await;
    common::assert_has(&stdout(&output), "daily cap of 5");
    let results = work.results("second.results.csv");
    assert_eq!(
        (count(&results, "SENT"), count(&results, "DEFERRED")),
        (2, 5),
        "7 rows, 2 left under the cap"
    );
    assert_eq!(server.accepted(), 5, "five in all today");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_daily_cap_counts_one_day_whatever_tz_a_run_is_given() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let ledger = work.fresh_ledger("ledger");
    let config = work.config(&settings.set("schedule.daily_cap", "3").ledger(&ledger));
    work.write("campaign.csv", &common::campaign(6));
    // A zone on another date than UTC right now: Kiritimati (UTC+14) is a
    // day ahead from 10:00 UTC, Etc/GMT+12 (UTC-12) a day behind until 12:00.
    let utc_hour = jiff::Timestamp::now()
        .to_zoned_datetime(jiff::tz::TimeZone::UTC)
        .hour();
    let elsewhere = if utc_hour >= 12 {
        "Pacific/Kiritimati"
    } else {
        "Etc/GMT+12"
    };
    for tz in ["UTC", elsewhere] {
        let output = work
            .run_with_env(
                &["send", "campaign.csv", "--config", &config, "--resume"],
                &[("INTERACTO_API_KEY", API_KEY), ("TZ", tz)],
            )
            .await;
        assert_exit!(output, 5, "{tz}");
    }
    assert_eq!(server.accepted(), 3, "one cap for the day, not one per TZ");
}
