//! Attacked at its edges: absurd numbers, special files, signals, paths that
//! are other files, servers that misbehave. Nothing makes the tool panic,
//! hang, send twice, clobber a file or leak the key.

use crate::common::{self, code, embedded, line, stderr, Config, Workspace};
use interacto_bulk::api::MockOptions;

#[tokio::test(flavor = "multi_thread")]
async fn absurd_delays_are_invalid_rows_and_the_rest_is_sent() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()));
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone,delay,typing\n\
         11987654321,Ana,551130034000,1e20,\n\
         11987654322,Bia,551130034000,99999999999999999999,\n\
         11987654323,Caio,551130034000,1e15,\n\
         11987654324,Duda,551130034000,,inf\n\
         11987654325,Edu,551130034000,600,600\n",
    );

    for args in [vec!["validate", "campaign.csv", "--overwrite"], vec![]] {
        let output = match args.is_empty() {
            true => work.send(&config, &["--overwrite"]).await,
            false => work.run(&args).await,
        };
        assert_eq!(code(&output), 1, "{}", stderr(&output));
        let results = work.results("campaign.results.csv");
        assert_eq!(results.len(), 5, "every row has its line");
        for row in 2..=5 {
            let line = line(&results, row);
            assert_eq!(line["status"], "INVALID", "{line:?}");
            assert!(
                line["error"].contains("the most one message may wait"),
                "{line:?}"
            );
        }
        assert_ne!(line(&results, 6)["status"], "INVALID");
    }
    assert_eq!(server.accepted(), 1, "only the row within bounds is sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn absurd_durations_in_the_config_are_refused_naming_the_key() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));
    for (key, value) in [
        ("pacing.min_delay", "1e20"),
        ("pacing.default_typing", "601"),
        ("pacing.jitter", "1e300"),
        ("api.timeout", "1e20"),
        ("api.timeout", "601"),
        ("retry.initial_backoff", "1e20"),
        ("retry.max_backoff", "1e5"),
        ("pacing.concurrency", "100000"),
    ] {
        let config = work.config(&Config::fast("http://127.0.0.1:9").set(key, value));

        let output = work
            .run(&[
                "validate",
                "campaign.csv",
                "--config",
                &config,
                "--overwrite",
            ])
            .await;

        assert_eq!(code(&output), 2, "{key} = {value}: {}", stderr(&output));
        assert!(stderr(&output).contains(key), "{key}: {}", stderr(&output));
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
}
