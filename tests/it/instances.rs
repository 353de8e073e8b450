//! Several WhatsApp numbers: each paced on its own, a recipient always on
//! the same number, and a number that fails taken out of rotation.

use std::collections::HashMap;

use crate::common::{self, embedded, stderr, stdout, Config, Workspace};
use interacto_bulk::api::MockOptions;

/// A quick config with three instances (and no single `instance_id`).
fn three_instances(base_url: &str) -> Config {
    Config::fast(base_url)
        .unset("api.instance_id")
        .set("api.instances", r#"["inst-a", "inst-b", "inst-c"]"#)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_recipient_always_goes_through_the_same_instance() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&three_instances(&server.base_url()));
    work.write("campaign.csv", &common::campaign(30));

    let mut seen_runs = Vec::new();
    for run in ["first", "second"] {
        // The same cards again on purpose: a ledger of its own for each run.
        let ledger = work.fresh_ledger(run);
        let output = work
            .send(&config, &["--overwrite", "--ledger", &ledger])
            .await;
        assert_exit!(output, 0);
        let by_recipient: HashMap<String, String> = work
            .results("campaign.results.csv")
            .into_iter()
            .map(|line| (line["to"].clone(), line["instance_id"].clone()))
            .collect();
        seen_runs.push(by_recipient);
    }

    assert_eq!(
        seen_runs[0], seen_runs[1],
        "the same assignment in both runs"
    );
    let used: std::collections::HashSet<&String> = seen_runs[0].values().collect();
    assert_eq!(used.len(), 3, "all three instances get recipients");
    for request in server.received() {
        let to = request.body["to"].as_str().unwrap();
        assert_eq!(
            request.instance_id.as_ref(),
            seen_runs[0].get(to),
            "sent through its own instance"
        );
    }

    // A dry run shows the same assignment before anything is sent.
    work.ok(&[
        "validate",
        "campaign.csv",
        "--config",
        &config,
        "--out",
        "check.csv",
    ])
    .await;
    for line in work.results("check.csv") {
        assert_eq!(Some(&line["instance_id"]), seen_runs[0].get(&line["to"]));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_that_is_refused_leaves_rotation_and_its_rows_wait_without_moving() {
    let server = embedded(MockOptions {
        revoked_instances: vec!["inst-b".to_string()],
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(&three_instances(&server.base_url()));
    work.write("campaign.csv", &common::campaign(30));

    let output = work.send(&config, &["--summary", "json"]).await;

    // The run goes on with two instances; the refused one needs a person.
    assert_exit!(output, 3);
    let summary = common::summary_json(&output);
    let why = summary["left_rotation"]["inst-b"]
        .as_str()
        .unwrap_or_default();
    assert!(
        why.contains("401"),
        "the summary says which left and why: {summary}"
    );
    assert!(summary["instances"]["inst-a"]["SENT"].as_u64().unwrap() > 0);
    common::assert_has(&stderr(&output), "out of rotation");
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 30);
    for line in &results {
        match line["instance_id"].as_str() {
            // Tried and refused: FAILED; not tried: DEFERRED for a later
            // --resume, through the same number.
            "inst-b" => match line["status"].as_str() {
                "FAILED" => assert_eq!(line["http_status"], "401", "{line:?}"),
                "DEFERRED" => {
                    assert_eq!(line["attempts"], "0", "{line:?}");
                    assert!(
                        line["error"].contains("inst-b is out of rotation"),
                        "{line:?}"
                    );
                }
                _ => panic!("{line:?}"),
            },
            _ => assert_eq!(line["status"], "SENT", "{line:?}"),
        }
    }
    let requests_for_b = common::requests_from(&server, "inst-b");
    // One refusal takes the instance out; only requests already in flight (4 at most) were sent.
    assert!(
        (1..=4).contains(&requests_for_b),
        "{requests_for_b} requests for inst-b"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_run_halts_only_when_no_instance_is_left() {
    let server = embedded(MockOptions {
        revoked_instances: vec![
            "inst-a".to_string(),
            "inst-b".to_string(),
            "inst-c".to_string(),
        ],
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(&three_instances(&server.base_url()).set("pacing.concurrency", "1"));
    work.write("campaign.csv", &common::campaign(30));

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 3);
    common::assert_has(&stdout(&output), "no instance left");
    assert_eq!(work.results("campaign.results.csv").len(), 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn instances_can_be_given_as_repeated_flags() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(20));

    let output = work
        .send(&config, &["--instance", "x", "--instance", "y"])
        .await;

    assert_exit!(output, 0);
    let instances: std::collections::HashSet<String> = server
        .received()
        .into_iter()
        .filter_map(|r| r.instance_id)
        .collect();
    assert_eq!(instances, ["x".to_string(), "y".to_string()].into());
}
