//! Attacked at its edges: absurd numbers, special files, signals, paths that
//! are other files, servers that misbehave. Nothing makes the tool panic,
//! hang, send twice, clobber a file or leak the key.

use crate::common::{
    self, code, embedded, ended, line, stderr, terminate, wait_for, Config, Workspace,
};
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

/// Runs `send campaign.csv` with `flags`; the campaign must come out
/// untouched, nothing sent, and the run refused with exit `exit`.
async fn assert_refused_untouched(
    work: &Workspace,
    config: &str,
    flags: &[&str],
    exit: i32,
    named: &str,
) {
    let before = std::fs::read(work.path("campaign.csv")).unwrap();
    let output = work.send(config, flags).await;
    assert_eq!(code(&output), exit, "{flags:?}: {}", stderr(&output));
    assert!(
        stderr(&output).contains(named),
        "{flags:?}: {}",
        stderr(&output)
    );
    let after = std::fs::read(work.path("campaign.csv")).unwrap();
    assert_eq!(before, after, "{flags:?}: the campaign is untouched");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_results_lock_or_journal_path_that_is_the_campaign_is_refused() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()));
    work.write("campaign.csv", &common::campaign(20));
    std::os::unix::fs::symlink("campaign.csv", work.path("link.csv")).unwrap();
    std::fs::hard_link(work.path("campaign.csv"), work.path("hard.csv")).unwrap();
    std::fs::hard_link(work.path("campaign.csv"), work.path("out.csv.lock")).unwrap();

    for out in [
        "campaign.csv",
        "./campaign.csv",
        "link.csv",
        "hard.csv",
        "out.csv",
    ] {
        for mode in ["--overwrite", "--resume"] {
            let flags = ["--out", out, mode];
            assert_refused_untouched(&work, &config, &flags, 2, "is the campaign").await;
        }
    }
    assert_eq!(server.requests(), 0, "nothing was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_names_of_one_results_file_share_one_lock() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()));
    work.write("campaign.csv", &common::campaign(20));
    let slow = ["send", "campaign.csv", "--config", &config, "--rate", "5/s"];
    let first = work.spawn(&[&slow[..], &["--out", "real.csv"]].concat());
    wait_for("the first run to send", || server.accepted() >= 1).await;
    std::os::unix::fs::symlink("real.csv", work.path("link.csv")).unwrap();
    std::fs::hard_link(work.path("real.csv"), work.path("hard.csv")).unwrap();

    for out in ["link.csv", "hard.csv", "./real.csv"] {
        let output = work
            .send(&config, &["--out", out, "--resume", "--instance", "second"])
            .await;
        assert_eq!(code(&output), 4, "{out}: {}", stderr(&output));
    }

    terminate(&first);
    let output = ended(first).await;
    assert_eq!(code(&output), 130, "{}", stderr(&output));
    let second = server.received();
    assert!(
        second
            .iter()
            .all(|request| request.instance_id.as_deref() != Some("second")),
        "the second runs sent nothing"
    );
    let results = work.results("real.csv");
    assert_eq!(results.len(), 20, "one whole line per row, none torn");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_journal_without_its_results_file_stops_the_run() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()));
    work.write("campaign.csv", &common::campaign(3));
    // What a run killed while sending leaves, once someone deletes its results.
    work.write(
        "campaign.results.csv.journal",
        "run 171\nsend 2 \"5511980000000:551130034000\"\n",
    );

    for flags in [&["--resume"][..], &[][..]] {
        let output = work.send(&config, flags).await;

        assert_eq!(code(&output), 2, "{flags:?}: {}", stderr(&output));
        assert!(stderr(&output).contains("--resume"), "{}", stderr(&output));
        assert!(!work.path("campaign.results.csv").exists());
    }
    assert_eq!(server.requests(), 0);
    assert!(
        work.path("campaign.results.csv.journal").exists(),
        "the journal is kept"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn symbolic_links_where_its_files_go_are_never_written_through() {
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()));
    work.write("campaign.csv", &common::campaign(2));
    work.write("precious.txt", "precious\n");
    let link = |name: &str| std::os::unix::fs::symlink("precious.txt", work.path(name)).unwrap();
    let unlink = |name: &str| std::fs::remove_file(work.path(name)).unwrap();
    let precious = || std::fs::read_to_string(work.path("precious.txt")).unwrap();

    // A results file that is a link, with --overwrite: the link is replaced.
    link("out.csv");
    let output = work
        .send(&config, &["--out", "out.csv", "--overwrite"])
        .await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(precious(), "precious\n");
    assert!(!std::fs::symlink_metadata(work.path("out.csv"))
        .unwrap()
        .is_symlink());
    assert_eq!(work.results("out.csv").len(), 2);

    // A lock file that is a link: refused.
    link("out.csv.lock");
    let output = work.send(&config, &["--out", "out.csv", "--resume"]).await;
    assert_eq!(code(&output), 2, "{}", stderr(&output));
    assert_eq!(precious(), "precious\n");
    unlink("out.csv.lock");

    // A journal that is a link: the run's own journal replaces it.
    link("out.csv.journal");
    let output = work
        .send(&config, &["--out", "out.csv", "--overwrite"])
        .await;
    assert_eq!(code(&output), 0, "{}", stderr(&output));
    assert_eq!(precious(), "precious\n");
}
