//! Pacing at the pace a real campaign keeps, in no time: the run in this
//! process on tokio's paused clock (as mini-redis's tests run its server),
//! its wall time following tokio's, against the embedded mock in the same
//! runtime. A minute of pacing passes as soon as nothing else is left to do;
//! the requests are counted, and timed, where they reach the server.

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressDrawTarget};
use tokio_util::sync::CancellationToken;

use crate::common::{self, embedded, Config, Workspace, API_KEY};
use interacto_bulk::api::{MockOptions, MockServer};
use interacto_bulk::clock::Clock;
use interacto_bulk::config::{Environment, Overrides, Settings};
use interacto_bulk::report::Summary;
use interacto_bulk::results::WriteGate;
use interacto_bulk::{campaign::Source, RunRequest};

/// Sends `work`'s `campaign.csv` with `config` in this process, on a clock
/// that follows tokio's, through a ledger of its own in `work`.
async fn send_here(work: &Workspace, config: &Config) -> Summary {
    let config = work.config(config);
    let environment = Environment {
        api_key: Some(API_KEY.to_string()),
        ledger_url: Some(format!("sqlite://{}", work.path("ledger.db").display())),
        ..Environment::default()
    };
    let settings = Settings::load(Some(Path::new(&config)), environment, Overrides::default())
        .expect("the test's settings are good");
    let request = RunRequest {
        source: Source::from_arg(&work.path("campaign.csv")),
        results_path: work.path("campaign.results.csv"),
        overwrite: false,
        resume: false,
        resend_unknown: false,
        dry_run: false,
        mock: false,
        real_pace: false,
        no_wait: false,
        limit: None,
        strict: false,
        results_gate: WriteGate::default(),
        clock: Clock::following_tokio(jiff::Timestamp::now()),
    };
    let hidden = MultiProgress::with_draw_target(ProgressDrawTarget::hidden());
    interacto_bulk::run(settings, request, &hidden, CancellationToken::new())
        .await
        .expect("the run ends")
}

/// When each request reached `server`, by the instance it came through.
fn arrivals_by_instance(server: &MockServer) -> HashMap<String, Vec<std::time::Instant>> {
    let mut arrivals: HashMap<String, Vec<std::time::Instant>> = HashMap::new();
    for request in server.received() {
        let instance = request.instance_id.unwrap_or_default();
        arrivals.entry(instance).or_default().push(request.at);
    }
    arrivals
}

/// Every request at least `interval` after the one before: on the paused
/// clock nothing else takes time, so no jitter is allowed for.
fn assert_spaced(times: &mut [std::time::Instant], interval: Duration, what: &str) {
    times.sort();
    for pair in times.windows(2) {
        assert!(
            pair[1] - pair[0] >= interval,
            "{what}: two requests {:?} apart, {interval:?} expected",
            pair[1] - pair[0]
        );
    }
}

/// The default pace, 20 a minute: a message every 3 s, at the server.
#[tokio::test(start_paused = true)]
async fn the_default_pace_spaces_requests_three_seconds_apart() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(12));
    let config = Config::fast(&server.base_url())
        .unset("pacing.rate")
        .unset("pacing.burst");

    let summary = send_here(&work, &config).await;

    assert_eq!(summary.counts.get("SENT"), Some(&12), "{}", summary.text());
    let mut arrivals = common::arrival_times(&server);
    assert_eq!(arrivals.len(), 12);
    assert_spaced(&mut arrivals, Duration::from_secs(3), "20/min");
    assert!(
        summary.elapsed_seconds >= 33.0,
        "the run's own clock says it waited: {} s",
        summary.elapsed_seconds
    );
    // The results file's times are on the run's clock too.
    let finished: Vec<jiff::Timestamp> = work
        .results("campaign.results.csv")
        .iter()
        .map(|line| line["finished_at"].parse().expect("an RFC 3339 time"))
        .collect();
    let (first, last) = (
        finished.iter().min().unwrap(),
        finished.iter().max().unwrap(),
    );
    assert!(
        last.duration_since(*first) >= jiff::SignedDuration::from_secs(33),
        "{first} to {last}"
    );
}

/// `pace_by_message`: each message waits its delay and typing on the phone.
#[tokio::test(start_paused = true)]
async fn pace_by_message_waits_for_each_message_delay_and_typing() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(5));
    let config = Config::fast(&server.base_url())
        .set("pacing.pace_by_message", "true")
        .set("pacing.rate", "\"600/min\"")
        .set("pacing.default_delay", "4")
        .set("pacing.default_typing", "3");

    let summary = send_here(&work, &config).await;

    assert_eq!(summary.counts.get("SENT"), Some(&5), "{}", summary.text());
    let mut arrivals = common::arrival_times(&server);
    // Each message takes 4 s of delay and 3 s of typing on the phone.
    assert_spaced(&mut arrivals, Duration::from_secs(7), "pace_by_message");
}

/// Three numbers, each at its own 12 a minute, sending at once.
#[tokio::test(start_paused = true)]
async fn each_instance_keeps_its_own_rate() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(36));
    let config = Config::fast(&server.base_url())
        .unset("api.instance_id")
        .set("api.instances", r#"["inst-a", "inst-b", "inst-c"]"#)
        .set("pacing.rate", "\"12/min\"")
        .set("pacing.concurrency", "6");

    let summary = send_here(&work, &config).await;

    assert_eq!(summary.counts.get("SENT"), Some(&36), "{}", summary.text());
    let arrivals = arrivals_by_instance(&server);
    assert_eq!(arrivals.len(), 3, "every instance sent");
    for (instance, mut times) in arrivals {
        assert_spaced(&mut times, Duration::from_secs(5), &instance);
    }
}

/// A retry waits for its number's turn like any message: with half the
/// requests failing, the tries together keep the pace.
#[tokio::test(start_paused = true)]
async fn retries_wait_for_the_instances_clock() {
    let server = embedded(MockOptions {
        failure_rate: 0.5,
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(10));
    let config = Config::fast(&server.base_url())
        .set("pacing.rate", "\"30/min\"")
        .set("pacing.concurrency", "4")
        .set("retry.max_attempts", "6");

    let summary = send_here(&work, &config).await;

    let mut arrivals = common::arrival_times(&server);
    assert!(
        arrivals.len() > 10,
        "some first tries failed and were retried: {}",
        summary.text()
    );
    assert_spaced(&mut arrivals, Duration::from_secs(2), "30/min with retries");
}

/// A card whose turn comes while the only request slot is held, by a retry
/// waiting for its own turn, leaves once the slot is free: no sooner after
/// the retry than the pace allows (it would go on top of it).
#[tokio::test(start_paused = true)]
async fn a_card_that_waited_for_a_slot_keeps_the_pace() {
    let server = embedded(MockOptions {
        fail_first: 1,
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(4));
    let config = Config::fast(&server.base_url())
        .set("pacing.rate", "\"20/min\"")
        .set("pacing.concurrency", "1");

    let summary = send_here(&work, &config).await;

    assert_eq!(summary.counts.get("SENT"), Some(&4), "{}", summary.text());
    let mut arrivals = common::arrival_times(&server);
    assert_eq!(arrivals.len(), 5, "the first card tried twice");
    assert_spaced(&mut arrivals, Duration::from_secs(3), "20/min, one slot");
}
