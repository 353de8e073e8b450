//! A small run of what the benchmark harness (benches/run.sh) does, so the
//! harness cannot rot unnoticed: its generated campaigns have the mix they
//! claim, and one goes through an unthrottled send with every row accounted
//! for. (The figures come from the harness itself, never from tests.)

use std::process::Command;

use interacto_bulk::api::MockOptions;

use crate::common::{embedded, statuses, stdout, Workspace};

/// `python3 benches/gen_campaign.py rows`, as the harness runs it, in a
/// cleared environment but for the system's own `PATH`.
fn generated_campaign(rows: usize) -> String {
    let output = Command::new("python3")
        .env_clear()
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/benches/gen_campaign.py"
        ))
        .arg(rows.to_string())
        .output()
        .expect("python3 runs the generator");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the generator writes UTF-8")
}

#[tokio::test]
async fn generated_campaigns_have_the_mix_they_claim() {
    let rows = 4000;
    let workspace = Workspace::new();
    workspace.write("campaign.csv", &generated_campaign(rows));

    let output = workspace
        .run(&["validate", "campaign.csv", "--out", "checked.csv", "-q"])
        .await;
    assert_exit!(output, 1, "a campaign with bad rows fails the check");

    let results = workspace.results("checked.csv");
    let numbers: Vec<u64> = results
        .iter()
        .map(|line| line["row"].parse().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (2..rows as u64 + 2).collect::<Vec<_>>(),
        "every row, in order"
    );
    // The generator's docstring: about 1% invalid, 0.5% duplicates, and the
    // messy forms of every other number all normalise.
    let counts = statuses(&results);
    let invalid = counts["INVALID"];
    let duplicate = counts["DUPLICATE"];
    assert!((rows / 200..=rows / 50).contains(&invalid), "{counts:?}");
    assert!((rows / 500..=rows / 100).contains(&duplicate), "{counts:?}");
    assert_eq!(counts["VALID"], rows - invalid - duplicate, "{counts:?}");
    for line in results.iter().filter(|line| line["status"] == "INVALID") {
        assert!(line["error"].starts_with("to: "), "{line:?}");
    }
}

#[tokio::test]
async fn a_generated_campaign_goes_through_an_unthrottled_send() {
    let rows = 600;
    let mock = embedded(MockOptions::default()).await;
    let workspace = Workspace::new();
    workspace.write("campaign.csv", &generated_campaign(rows));
    // The harness's settings: no pacing, 64 requests in flight.
    let config = workspace.write(
        "unthrottled.toml",
        &format!(
            "[api]\nbase_url = \"{}\"\ninstance_id = \"bench\"\ntimeout = 10\n\
             [pacing]\nrate = \"1000000/s\"\nburst = 1000\nconcurrency = 64\npace_by_message = false\n",
            mock.base_url()
        ),
    );

    let output = workspace.send(&config, &["-q", "--summary", "json"]).await;
    assert_exit!(
        output,
        0,
        "invalid and duplicate rows, never to be sent, leave the campaign complete"
    );

    let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    let results = workspace.results("campaign.results.csv");
    assert_eq!(results.len(), rows);
    let counts = statuses(&results);
    assert_eq!(summary["counts"]["SENT"], counts["SENT"]);
    assert_eq!(
        counts["SENT"] + counts["INVALID"] + counts["DUPLICATE"],
        rows,
        "{counts:?}"
    );
    assert_eq!(
        mock.received().len(),
        counts["SENT"],
        "one request per SENT line"
    );
}
