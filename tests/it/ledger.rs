//! The ledger every run shares: daily caps exact across concurrent runs,
//! rehearsals that spend nothing real, and no sending without a ledger.

use crate::common::{self, code, embedded, stderr, Config, Workspace, API_KEY};
use interacto_bulk::api::MockOptions;

/// A quick config whose ledger is a SQLite file in `work`.
fn with_ledger(work: &Workspace, base_url: &str) -> Config {
    let url = format!("sqlite://{}", work.path("ledger.db").display());
    Config::fast(base_url).set("ledger.url", &format!("{url:?}"))
}

/// `rows` recipients that no other campaign here has, from `first`.
fn campaign_from(first: usize, rows: usize) -> String {
    let all = common::campaign(first + rows);
    let mut lines = all.lines();
    let header = lines.next().unwrap();
    let rest: Vec<&str> = lines.skip(first).collect();
    format!("{header}\n{}\n", rest.join("\n"))
}

#[tokio::test(flavor = "multi_thread")]
async fn three_runs_at_once_share_one_daily_cap_exactly() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config =
        work.config(&with_ledger(&work, &server.base_url()).set("schedule.daily_cap", "10"));
    let runs: Vec<_> = (0..3)
        .map(|run| {
            let name = format!("c{run}.csv");
            work.write(&name, &campaign_from(run * 10, 10));
            work.spawn(&["send", &name, "--config", &config])
        })
        .collect();

    let mut codes = Vec::new();
    for run in runs {
        codes.push(code(&common::ended(run).await));
    }

    assert_eq!(server.accepted(), 10, "exactly the cap in all: {codes:?}");
    assert!(
        codes.contains(&5),
        "a run was stopped by the cap: {codes:?}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rehearsal_with_mock_spends_none_of_the_real_cap() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config =
        work.config(&with_ledger(&work, &server.base_url()).set("schedule.daily_cap", "5"));
    work.write("campaign.csv", &common::campaign(5));

    let output = work
        .send(&config, &["--mock", "--out", "rehearsal.csv"])
        .await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    let output = work
        .send(&config, &["--dry-run", "--out", "check.csv"])
        .await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));

    let output = work.send(&config, &[]).await;

    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(server.accepted(), 5, "the real run had its whole cap");
}

#[tokio::test(flavor = "multi_thread")]
async fn without_a_ledger_nothing_is_sent() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(2));
    let config = work.config(&Config::fast(&server.base_url()));

    for url in ["sqlite:///dev/null/ledger.db", "sqlite:///proc/ledger.db"] {
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
                &[("INTERACTO_API_KEY", API_KEY)],
            )
            .await;

        assert_eq!(code(&output), 2, "{url}: {}", stderr(&output));
        assert!(
            stderr(&output).contains(url),
            "names the ledger: {}",
            stderr(&output)
        );
    }
    assert_eq!(server.requests(), 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn two_campaigns_through_one_number_at_once_keep_its_pace_together() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&with_ledger(&work, &server.base_url()).set("pacing.rate", "\"5/s\""));
    work.write("first.csv", &campaign_from(0, 8));
    work.write("second.csv", &campaign_from(8, 8));

    let first = work.spawn(&["send", "first.csv", "--config", &config]);
    let second = work.spawn(&["send", "second.csv", "--config", &config]);
    for run in [first, second] {
        let output = common::ended(run).await;
        assert_eq!(code(&output), 0, "{}", stderr(&output));
    }

    let mut arrivals: Vec<_> = server
        .received()
        .into_iter()
        .map(|request| request.at)
        .collect();
    assert_eq!(arrivals.len(), 16);
    // 5/s for the number, not for each run: 200 ms apart over both.
    common::assert_paced(
        &mut arrivals,
        std::time::Duration::from_millis(200),
        "two runs at 5/s",
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_run_killed_holding_its_turns_leaves_the_pace_whole() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&with_ledger(&work, &server.base_url()).set("pacing.rate", "\"4/s\""));
    work.write("campaign.csv", &common::campaign(10));
    let mut first = work.spawn(&["send", "campaign.csv", "--config", &config]);
    common::wait_for("two messages", || server.accepted() >= 2).await;

    first.start_kill().unwrap();
    first.wait().await.unwrap();
    let output = work.send(&config, &["--resume"]).await;

    assert!([0, 1].contains(&code(&output)), "{}", stderr(&output));
    let mut arrivals: Vec<_> = server
        .received()
        .into_iter()
        .map(|request| request.at)
        .collect();
    common::assert_paced(
        &mut arrivals,
        std::time::Duration::from_millis(250),
        "4/s across a kill",
    );
}
