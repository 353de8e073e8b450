//! The send window in each recipient's own time zone
//! (`schedule.window_in = "recipient"`): windows are chosen from the time
//! now, so that each test holds at any hour, and what reached the server
//! is what counts.

use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::common::{self, embedded, ended, line, stderr, summary_json, Config, Workspace};
use interacto_bulk::api::MockOptions;

const SAO_PAULO: &str = "America/Sao_Paulo";
const ACRE: &str = "America/Rio_Branco";
const LISBON: &str = "Europe/Lisbon";

/// `HH:MM-HH:MM` in local time: from `from` minutes to `to` minutes after
/// the minute it is now at `at` in `zone` (negative: before).
fn window_around(at: Timestamp, zone: &str, from: i64, to: i64) -> String {
    let local = at.to_zoned_datetime(TimeZone::get(zone).unwrap());
    let minute = local
        .time()
        .with()
        .second(0)
        .subsec_nanosecond(0)
        .build()
        .unwrap();
    let at_minute = |offset: i64| {
        minute
            .wrapping_add(SignedDuration::from_mins(offset))
            .strftime("%H:%M")
            .to_string()
    };
    format!("{}-{}", at_minute(from), at_minute(to))
}

/// The minute `at` is in, plus `minutes`, as the ledger's messages write
/// it (`2026-12-01 14:00`, UTC).
fn minute_after(at: Timestamp, minutes: i64) -> String {
    let minute = Timestamp::from_second(at.as_second() - at.as_second().rem_euclid(60)).unwrap();
    minute
        .checked_add(SignedDuration::from_mins(minutes))
        .unwrap()
        .strftime("%Y-%m-%d %H:%M")
        .to_string()
}

/// A campaign of `rows`, one line each: (phone, name).
fn campaign_of(rows: &[(String, String)]) -> String {
    let mut text = String::from("to,contact_name,contact_phone\n");
    for (phone, name) in rows {
        text.push_str(&format!("{phone},{name},+55 11 3003-4000\n"));
    }
    text
}

/// `count` rows alternating São Paulo and Acre mobiles, São Paulo first.
fn alternating(count: usize) -> Vec<(String, String)> {
    (0..count)
        .map(|n| match n % 2 {
            0 => (format!("+55 11 98765-{n:04}"), format!("SP {n}")),
            _ => (format!("+55 68 99988-{n:04}"), format!("Acre {n}")),
        })
        .collect()
}

/// A fast config with the window in each recipient's zone, São Paulo the
/// sender's.
fn in_recipients_zones(base_url: &str, window: &str) -> Config {
    Config::fast(base_url)
        .set("schedule.window", &format!("{window:?}"))
        .set("schedule.window_in", "\"recipient\"")
        .set("schedule.timezone", &format!("{SAO_PAULO:?}"))
}

/// A minute to come, for the binary's clock to start `ahead` seconds
/// before (libfaketime's shift), and when that minute comes on this test's
/// own clock.
struct Moment {
    at: Timestamp,
    shift: String,
    here: std::time::Instant,
}

fn moment_in(ahead: i64) -> Moment {
    let now = Timestamp::now();
    let here = std::time::Instant::now();
    let at =
        Timestamp::from_second(now.as_second() - now.as_second().rem_euclid(60) + 120).unwrap();
    let shift = (at.as_second() - ahead) - now.as_second();
    let subsecond = std::time::Duration::from_nanos(now.subsec_nanosecond().unsigned_abs().into());
    Moment {
        at,
        shift: format!("+{shift}s"),
        here: here + std::time::Duration::from_secs(ahead.unsigned_abs()) - subsecond,
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn sao_paulo_goes_while_acre_is_shut_and_acre_once_it_opens() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    work.write("campaign.csv", &campaign_of(&alternating(8)));
    let now = Timestamp::now();
    // An hour either side of São Paulo's time now: Acre, two hours behind,
    // opens in an hour.
    let window = window_around(now, SAO_PAULO, -60, 60);
    let config = work.config(&in_recipients_zones(&server.base_url(), &window));

    let output = work
        .send(&config, &["--no-wait", "--summary", "json"])
        .await;

    assert_exit!(output, 5);
    let sent = common::recipients(&server);
    assert_eq!(sent.len(), 4, "{sent:?}");
    assert!(sent.iter().all(|to| to.starts_with("5511")), "{sent:?}");
    let results = work.results("campaign.results.csv");
    let opens = minute_after(now, 60);
    for row in [3, 5, 7, 9] {
        let acre = line(&results, row);
        assert_eq!(acre["status"], "DEFERRED", "{acre:?}");
        assert!(
            acre["error"].contains(&format!("{window} in {ACRE} (it opens {opens}")),
            "{acre:?}"
        );
    }
    let summary = summary_json(&output);
    assert_eq!(summary["stop_reason"], "window");
    assert!(
        summary["resume_after"]
            .as_str()
            .unwrap()
            .starts_with(&opens.replace(' ', "T")),
        "{summary}"
    );

    // Seventy minutes on, Acre's window is open and São Paulo's shut: the
    // resume sends Acre's four and nothing else.
    let output = work
        .run_later(
            "+70m",
            &["send", "campaign.csv", "--config", &config, "--resume"],
        )
        .await;

    assert_exit!(output, 0);
    let sent = common::recipients(&server);
    assert_eq!(sent.len(), 8, "{sent:?}");
    assert!(
        sent[4..].iter().all(|to| to.starts_with("5568")),
        "{sent:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn acre_goes_while_sao_paulo_is_shut() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    work.write("campaign.csv", &campaign_of(&alternating(6)));
    let now = Timestamp::now();
    let window = window_around(now, ACRE, -60, 60);
    let config = work.config(&in_recipients_zones(&server.base_url(), &window));

    let output = work.send(&config, &["--no-wait"]).await;

    assert_exit!(output, 5);
    let sent = common::recipients(&server);
    assert_eq!(sent.len(), 3, "{sent:?}");
    assert!(sent.iter().all(|to| to.starts_with("5568")), "{sent:?}");
    // São Paulo opens when its clock reaches Acre's an hour ago: 21 hours on.
    let results = work.results("campaign.results.csv");
    let opens = minute_after(now, 21 * 60);
    let sao_paulo = line(&results, 2);
    assert_eq!(sao_paulo["status"], "DEFERRED");
    assert!(
        sao_paulo["error"].contains(&format!("in {SAO_PAULO} (it opens {opens}")),
        "{sao_paulo:?}"
    );
    // Read in the sender's zone (the default), every recipient waits.
    let config = work.config(
        &in_recipients_zones(&server.base_url(), &window).set("schedule.window_in", "\"timezone\""),
    );
    work.write("other.csv", &campaign_of(&alternating(6)));
    work.fails(&["send", "other.csv", "--config", &config, "--no-wait"], 5)
        .await;
    assert_eq!(
        common::recipients(&server).len(),
        3,
        "nothing more was sent"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_azores_wait_for_their_own_morning_and_a_number_of_either_zone_for_both() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let rows = [
        ("+351 21 345 6789", "Lisboa"),
        ("+351 296 123 456", "Açores"),
        // A mobile: the table gives its prefix both zones.
        ("+351 912 345 678", "Telemóvel"),
    ]
    .map(|(phone, name)| (phone.to_string(), name.to_string()));
    work.write("campaign.csv", &campaign_of(&rows));
    let now = Timestamp::now();
    // From half an hour ago in Lisbon to two hours on: the Azores, an hour
    // behind, open in half an hour, and then it is open in both zones.
    let window = window_around(now, LISBON, -30, 120);
    let config = work.config(&in_recipients_zones(&server.base_url(), &window));

    let output = work.send(&config, &["--no-wait"]).await;

    assert_exit!(output, 5);
    assert_eq!(common::recipients(&server), ["351213456789"]);
    let results = work.results("campaign.results.csv");
    let opens = minute_after(now, 30);
    let azores = line(&results, 3);
    assert!(
        azores["error"].contains(&format!("in Atlantic/Azores (it opens {opens}")),
        "{azores:?}"
    );
    let mobile = line(&results, 4);
    assert!(
        mobile["error"].contains(&format!(
            "in Atlantic/Azores or Europe/Lisbon (it opens {opens}"
        )),
        "{mobile:?}"
    );

    // An hour wide, the window is never open in both zones at once: the
    // mobile is UNSENDABLE with that reason (no later run sends it under
    // these settings: the campaign is complete), and the check says so.
    let narrow = window_around(now, LISBON, -30, 30);
    let config = work.config(&in_recipients_zones(&server.base_url(), &narrow));
    // (On a ledger of its own: this one's Lisbon card is sent already.)
    let ledger = work.fresh_ledger("check");
    let check = work
        .validate(&["--config", &config, "--ledger", &ledger], 0)
        .await;
    assert_eq!(check["never_in_window"], 1, "{check}");
    assert_eq!(check["time_zones"]["Europe/Lisbon"], 1, "{check}");
    assert_eq!(check["time_zones"]["Atlantic/Azores"], 1, "{check}");
    assert_eq!(
        check["time_zones"]["Atlantic/Azores or Europe/Lisbon"], 1,
        "{check}"
    );
    work.write("again.csv", &campaign_of(&rows[2..]));
    let output = work
        .fails(
            &[
                "send",
                "again.csv",
                "--config",
                &config,
                "--summary",
                "json",
            ],
            0,
        )
        .await;
    let summary = summary_json(&output);
    assert_eq!(summary["state"]["never"], 1, "{summary}");
    assert_eq!(summary["state"]["complete"], true, "{summary}");
    assert_eq!(
        summary["resume_after"],
        serde_json::Value::Null,
        "{summary}"
    );
    common::assert_has(
        summary["next_step"].as_str().unwrap_or_default(),
        "1 UNSENDABLE",
    );
    let results = work.results("again.results.csv");
    assert_eq!(results[0]["status"], "UNSENDABLE");
    assert!(
        results[0]["error"].contains("never open in all of the number's time zones"),
        "{results:?}"
    );
    assert_eq!(
        common::recipients(&server).len(),
        1,
        "nothing more was sent"
    );

    // A window that opens in both zones sends it on --resume.
    let wide = work.config(&in_recipients_zones(&server.base_url(), "00:00-23:59"));
    work.fails(&["send", "again.csv", "--config", &wide, "--resume"], 0)
        .await;
    assert_eq!(common::recipients(&server).len(), 2);
    assert_eq!(work.results("again.results.csv")[0]["status"], "SENT");
}

/// Without `--no-wait` the run sends the open recipients, waits for the
/// others' window (the bar says for whom and until when), and sends them
/// once it opens: the binary's clock is set a few seconds before Acre's
/// window opens.
#[tokio::test(flavor = "multi_thread")]
async fn alternating_rows_send_the_open_ones_and_wait_for_the_others() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    // More rows than a lane takes from its queue at once.
    work.write("campaign.csv", &campaign_of(&alternating(150)));
    // The binary's clock starts 8 s before a minute, when Acre's window
    // opens: 8 s from now on this test's clock.
    let opening = moment_in(8);
    let window = window_around(opening.at, ACRE, 0, 150);
    let config = work.config(&in_recipients_zones(&server.base_url(), &window));

    let child = work.on_a_terminal_later(
        &opening.shift,
        &["send", "campaign.csv", "--config", &config],
    );
    let output = ended(child).await;

    let screen = String::from_utf8_lossy(&output.stdout);
    assert_exit!(output, 0, "{screen}");
    let sent = common::recipients(&server);
    assert_eq!(sent.len(), 150, "{sent:?}");
    assert!(
        sent[..75].iter().all(|to| to.starts_with("5511")),
        "{sent:?}"
    );
    assert!(
        sent[75..].iter().all(|to| to.starts_with("5568")),
        "{sent:?}"
    );
    // São Paulo's cards went at once, Acre's once their window opened on
    // the binary's clock.
    let received = server.received();
    assert!(received[74].at < opening.here, "São Paulo's went before");
    assert!(received[75].at >= opening.here, "Acre's waited for 8 s");
    let opens_there = window.split('-').next().unwrap();
    let until = opening
        .at
        .to_zoned_datetime(TimeZone::get(SAO_PAULO).unwrap())
        .strftime("%Y-%m-%d %H:%M -03")
        .to_string();
    assert!(
        screen.contains(&format!(
            "waiting for the send window until {until} ({opens_there} for 75 recipients in {ACRE})"
        )),
        "{screen}"
    );
    assert!(
        screen.contains(&format!(
            "outside the send window {window} of the 75 recipients in hand"
        )),
        "{screen}"
    );
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 150);
    assert!(
        results.iter().all(|row| row["status"] == "SENT"),
        "{results:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_estimate_sends_in_each_zones_own_hours() {
    let work = Workspace::new();
    // 58 in São Paulo, 2 the table knows no zone for (read in São Paulo's),
    // 60 in Acre: an hour of sending each at a minute a message.
    let mut rows = alternating(116);
    rows.extend([
        ("+870 773 111 632".to_string(), "Inmarsat".to_string()),
        ("+882 16 1234 5678".to_string(), "Rede".to_string()),
    ]);
    rows.extend((0..2).map(|n| (format!("+55 68 99988-66{n:02}"), format!("Acre {n}"))));
    work.write("campaign.csv", &campaign_of(&rows));
    let now = Timestamp::now();
    // Open for an hour from two hours on, in São Paulo's time: São Paulo's
    // hour is then, Acre's two hours later.
    let window = window_around(now, SAO_PAULO, 120, 180);
    let base = in_recipients_zones("http://127.0.0.1:9", &window).set("pacing.rate", "\"1/min\"");
    let config = work.config(&base);

    let check = work.validate(&["--config", &config], 0).await;
    assert_eq!(check["time_zones"][SAO_PAULO], 58, "{check}");
    assert_eq!(check["time_zones"][ACRE], 60, "{check}");
    assert_eq!(
        check["time_zones"]["unknown (America/Sao_Paulo)"], 2,
        "{check}"
    );
    assert_eq!(check["time_zone_unknown"], 2, "{check}");
    assert_eq!(check["sending_seconds"], 120.0 * 60.0);
    // Five hours from the minute it is: Acre's hour ends then.
    let expected = check["expected_seconds"].as_f64().unwrap();
    let into_the_minute = (now.as_second().rem_euclid(60)) as f64;
    let five_hours = 5.0 * 3600.0 - into_the_minute;
    assert!(
        (five_hours - 5.0..=five_hours + 5.0).contains(&expected),
        "{expected}, not {five_hours}"
    );
    // In São Paulo's time for everyone, the second hour waits a day.
    let config = work.config(&base.clone().set("schedule.window_in", "\"timezone\""));
    let check = work
        .validate(&["--config", &config, "--overwrite"], 0)
        .await;
    let expected = check["expected_seconds"].as_f64().unwrap();
    let next_day = 27.0 * 3600.0 - into_the_minute;
    assert!(
        (next_day - 5.0..=next_day + 5.0).contains(&expected),
        "{expected}, not {next_day}"
    );
    assert!(check.get("time_zones").is_none(), "{check}");

    let report = work.report(&["--config", &work.config(&base)], 0).await;
    assert!(
        report.contains(&format!(
            "recipients by time zone: {ACRE} 60, {SAO_PAULO} 58, unknown ({SAO_PAULO}) 2"
        )),
        "{report}"
    );
    assert!(
        report.contains(&format!(
            "sending only {window} in each recipient's time zone, {SAO_PAULO} where unknown"
        )),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn window_in_without_a_window_is_refused() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));
    let config =
        work.config(&Config::fast("http://127.0.0.1:9").set("schedule.window_in", "\"recipient\""));
    let output = work.send(&config, &[]).await;
    common::assert_refused(&output, "schedule.window_in");
    let config = work.config(
        &Config::fast("http://127.0.0.1:9")
            .set("schedule.window", "\"08:00-20:00\"")
            .set("schedule.window_in", "\"sender\""),
    );
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 2);
    assert!(
        stderr(&output).contains("recipient"),
        "the choices are named: {}",
        stderr(&output)
    );
}

/// A card judged inside the window whose turn comes after it shut does
/// not go: the binary's clock starts 3 s before São Paulo's window ends,
/// and the number sends one card every 5 s (the second's turn is 2 s after
/// the end).
#[tokio::test(flavor = "multi_thread")]
async fn no_card_leaves_after_the_window_shuts() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let rows: Vec<(String, String)> = (0..4)
        .map(|n| (format!("+55 11 98765-{n:04}"), format!("SP {n}")))
        .collect();
    work.write("campaign.csv", &campaign_of(&rows));
    let closing = moment_in(3);
    let window = window_around(closing.at, SAO_PAULO, -60, 0);
    let config = work
        .config(&in_recipients_zones(&server.base_url(), &window).set("pacing.rate", "\"12/min\""));

    let output = work
        .run_later(
            &closing.shift,
            &["send", "campaign.csv", "--config", &config, "--no-wait"],
        )
        .await;

    assert_exit!(output, 5);
    let received = server.received();
    assert_eq!(received.len(), 1, "the first went while it was open");
    // (A card that passed the door just before the end may still be on
    // its way: a second is room enough.)
    let last = received.last().unwrap().at;
    assert!(
        last < closing.here + std::time::Duration::from_secs(1),
        "a card arrived {:?} after the window shut",
        last - closing.here
    );
    let results = work.results("campaign.results.csv");
    assert_eq!(common::count(&results, "SENT"), received.len());
    assert_eq!(common::count(&results, "DEFERRED"), 3, "{results:?}");
}

/// Past the rows a number holds for their window, the ones whose window is
/// shut are DEFERRED, and the open ones behind them still go: nothing waits
/// on a parking that is full.
#[tokio::test(flavor = "multi_thread")]
async fn more_rows_than_a_number_holds_for_their_window_do_not_hold_up_the_open_ones() {
    const PARKED_MOST: usize = 10_000;
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let mut rows: Vec<(String, String)> = (0..PARKED_MOST + 50)
        .map(|n| {
            (
                format!("+55 68 9{:04}-{:04}", 8000 + n / 10_000, n % 10_000),
                format!("Acre {n}"),
            )
        })
        .collect();
    rows.extend((0..50).map(|n| (format!("+55 11 98765-{n:04}"), format!("SP {n}"))));
    work.write("campaign.csv", &campaign_of(&rows));
    let window = window_around(Timestamp::now(), SAO_PAULO, -60, 60);
    let config = work.config(&in_recipients_zones(&server.base_url(), &window));

    let child = work.spawn(&["send", "campaign.csv", "--config", &config]);
    child.wait_for_start().await;
    common::wait_for("São Paulo's 50 cards", || server.requests() >= 50).await;
    common::terminate(&child);
    let output = ended(child).await;

    assert_exit!(output, 130);
    let sent = common::recipients(&server);
    assert_eq!(sent.len(), 50);
    assert!(sent.iter().all(|to| to.starts_with("5511")), "{sent:?}");
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), PARKED_MOST + 100, "a line for every row");
    let overflow = results
        .iter()
        .filter(|row| row["error"].starts_with("outside the send window"))
        .count();
    assert_eq!(overflow, 50, "the rows past the parking");
    assert_eq!(common::count(&results, "DEFERRED"), PARKED_MOST + 50);
}

/// A try again after a wait is judged anew: the API asks to wait 3 s, by
/// then the window has shut, and the card waits for it (DEFERRED with
/// `--no-wait`) instead of going late.
#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_the_window_shut_waits_for_it() {
    let server = embedded(MockOptions {
        throttle_rate: 1.0,
        retry_after: 3,
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    work.write("campaign.csv", &campaign_of(&alternating(1)));
    // Two seconds before the window shuts: time for the binary to start and
    // try (under load, one was not), short of the 3 s it is asked to wait.
    let closing = moment_in(2);
    let window = window_around(closing.at, SAO_PAULO, -60, 0);
    let config = work
        .config(&in_recipients_zones(&server.base_url(), &window).set("retry.max_backoff", "5"));

    let output = work
        .run_later(
            &closing.shift,
            &[
                "send",
                "campaign.csv",
                "--config",
                &config,
                "--no-wait",
                "--summary",
                "json",
            ],
        )
        .await;

    assert_exit!(output, 5);
    assert_eq!(
        server.requests(),
        1,
        "not tried again after the window shut"
    );
    let results = work.results("campaign.results.csv");
    assert_eq!(results[0]["status"], "DEFERRED");
    assert!(
        results[0]["error"].contains(&format!(
            "not tried again: outside the send window {window} in {SAO_PAULO}"
        )),
        "{results:?}"
    );
    assert_eq!(summary_json(&output)["stop_reason"], "window");
}
