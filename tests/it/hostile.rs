//! Attacked at its edges: absurd numbers, special files, signals, paths that
//! are other files, servers that misbehave. Nothing makes the tool panic,
//! hang, send twice, clobber a file or leak the key.

use std::collections::HashMap;
use std::process::Output;
use std::time::Duration;

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{
    self, count, embedded, ended, line, stderr, stdout, terminate, wait_for, Config, RawServer,
    Workspace, API_KEY,
};
use interacto_bulk::api::MockOptions;

#[tokio::test(flavor = "multi_thread")]
async fn absurd_delays_are_invalid_rows_and_the_rest_is_sent() {
    let (server, work, config) = common::against_the_mock().await;
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
            true => work.send(&config, &["--overwrite", "--strict"]).await,
            false => work.run(&args).await,
        };
        assert_exit!(output, 1, "not every row sent");
        let results = match args.is_empty() {
            true => work.results("campaign.results.csv"),
            false => work.results("campaign.check.csv"),
        };
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

        assert_exit!(output, 2, "{key} = {value}");
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
    assert_exit!(output, exit, "{flags:?}");
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
    let (server, work, config) = common::against_the_mock().await;
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
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(20));
    let slow = ["send", "campaign.csv", "--config", &config, "--rate", "5/s"];
    let first = work.spawn(&[&slow[..], &["--out", "real.csv"]].concat());
    first.wait_for_start().await;
    wait_for("the first run to send", || server.accepted() >= 1).await;
    std::os::unix::fs::symlink("real.csv", work.path("link.csv")).unwrap();
    std::fs::hard_link(work.path("real.csv"), work.path("hard.csv")).unwrap();

    for out in ["link.csv", "hard.csv", "./real.csv"] {
        let output = work
            .send(&config, &["--out", out, "--resume", "--instance", "second"])
            .await;
        assert_exit!(output, 4, "{out}");
    }

    terminate(&first);
    let output = ended(first).await;
    assert_exit!(output, 130);
    assert_eq!(
        common::requests_from(&server, "second"),
        0,
        "the second runs sent nothing"
    );
    let results = work.results("real.csv");
    assert_eq!(results.len(), 20, "one whole line per row, none torn");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_earlier_versions_journal_without_its_results_file_is_never_sent_again() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(3));
    // What an earlier version, killed while sending, leaves once someone
    // deletes its results: the keys it had in flight.
    work.write(
        "campaign.results.csv.journal",
        "run 171\nsend 2 \"5511980000000:551130034000\"\n",
    );

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 1);
    let results = work.results("campaign.results.csv");
    assert_eq!(common::line(&results, 2)["status"], "UNKNOWN");
    assert_eq!(count(&results, "SENT"), 2);
    assert!(!common::recipients(&server).contains(&"5511980000000".to_string()));
    assert!(!work.path("campaign.results.csv.journal").exists());

    // The ledger remembers it from now on, whatever the results file.
    std::fs::remove_file(work.path("campaign.results.csv")).unwrap();
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 1);
    assert_eq!(server.accepted(), 2, "nothing more was sent");
}

#[tokio::test(flavor = "multi_thread")]
async fn symbolic_links_where_its_files_go_are_never_written_through() {
    let (_server, work, config) = common::against_the_mock().await;
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
    assert_exit!(output, 0);
    assert_eq!(precious(), "precious\n");
    assert!(!std::fs::symlink_metadata(work.path("out.csv"))
        .unwrap()
        .is_symlink());
    assert_eq!(work.results("out.csv").len(), 2);

    // A lock file that is a link: refused.
    link("out.csv.lock");
    let output = work.send(&config, &["--out", "out.csv", "--resume"]).await;
    assert_exit!(output, 2);
    assert_eq!(precious(), "precious\n");
    unlink("out.csv.lock");

    // A journal that is a link: the run's own journal replaces it. (Other
    // recipients: the first ones got their cards already.)
    link("out.csv.journal");
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone\n11987650001,Ana,551130034000\n",
    );
    let output = work
        .send(&config, &["--out", "out.csv", "--overwrite"])
        .await;
    assert_exit!(output, 0);
    assert_eq!(precious(), "precious\n");
}

/// Sends a three-row campaign to a wiremock server that answers every
/// request with `answer`; returns the output, the results and the server.
async fn send_three_rows_to(
    answer: ResponseTemplate,
    extra: &[(&str, &str)],
) -> (Output, Vec<HashMap<String, String>>, MockServer) {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(&server)
        .await;
    let work = Workspace::new();
    let mut config = Config::fast(&server.uri()).set("pacing.concurrency", "1");
    for (key, value) in extra {
        config = config.set(key, value);
    }
    let config = work.config(&config);
    work.write("campaign.csv", &common::campaign(3));
    let output = work.send(&config, &[]).await;
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 3, "one line per row");
    (output, results, server)
}

fn body(id: &str, instance: &str) -> serde_json::Value {
    json!({"statusCode": 201, "message": "request successful",
           "data": {"id": id, "status": "QUEUED", "instanceId": instance}})
}

#[tokio::test(flavor = "multi_thread")]
async fn a_retry_after_longer_than_max_backoff_stops_the_instance_for_now() {
    let in_a_day = ResponseTemplate::new(429).insert_header("Retry-After", "86400");
    let year_9999 =
        ResponseTemplate::new(429).insert_header("Retry-After", "Fri, 31 Dec 9999 23:59:59 GMT");
    for answer in [in_a_day, year_9999] {
        let (output, results, server) = send_three_rows_to(answer, &[]).await;

        assert_exit!(output, 5);
        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        assert_eq!(count(&results, "DEFERRED"), 3, "{results:?}");
        assert!(
            results[0]["error"].contains("Retry-After")
                || results[1]["error"].contains("Retry-After"),
            "{results:?}"
        );
        common::assert_has(&stdout(&output), "retry.max_backoff");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_504_may_have_been_queued_so_it_is_unknown_and_not_sent_again() {
    let (output, results, server) = send_three_rows_to(ResponseTemplate::new(504), &[]).await;

    assert_exit!(output, 1);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        3,
        "one request a row"
    );
    for line in &results {
        assert_eq!(
            (
                line["status"].as_str(),
                line["http_status"].as_str(),
                line["attempts"].as_str()
            ),
            ("UNKNOWN", "504", "1"),
            "{line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn redirects_are_not_followed_and_the_row_fails_naming_where() {
    for status in [301, 302, 303, 307, 308] {
        let away =
            ResponseTemplate::new(status).insert_header("Location", "http://127.0.0.1:9/elsewhere");
        let (output, results, server) = send_three_rows_to(away, &[]).await;

        assert_exit!(output, 1, "{status}");
        assert_eq!(
            server.received_requests().await.unwrap().len(),
            3,
            "{status}"
        );
        for line in &results {
            assert_eq!(line["status"], "FAILED", "{status}: {line:?}");
            assert!(line["error"].contains("127.0.0.1:9/elsewhere"), "{line:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn only_an_answer_with_a_message_id_counts_as_sent() {
    let ok = ResponseTemplate::new(200).set_body_json(body("m-200", "inst-1"));
    let (output, results, _) = send_three_rows_to(ok, &[]).await;
    assert_exit!(output, 0);
    assert!(results
        .iter()
        .all(|line| line["status"] == "SENT" && line["http_status"] == "200"));

    // An id, whatever instance the answer names (the vendor's own example
    // names one instance always): queued, SENT, the instance noted.
    let other = ResponseTemplate::new(201).set_body_json(body("m-1", "another-instance"));
    let (output, results, server) = send_three_rows_to(other, &[]).await;
    assert_exit!(output, 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 3);
    for line in &results {
        assert_eq!(line["status"], "SENT", "{line:?}");
        assert!(
            line["error"].contains("names instance another-instance, not inst-1"),
            "{line:?}"
        );
    }

    // No id: the API may have queued it, and nothing says which message it is.
    let without_id = ResponseTemplate::new(201).set_body_json(body("", "inst-1"));
    let (output, results, server) = send_three_rows_to(without_id, &[]).await;
    assert_exit!(output, 1);
    assert_eq!(
        server.received_requests().await.unwrap().len(),
        3,
        "not sent again"
    );
    for line in &results {
        assert_eq!(line["status"], "UNKNOWN", "{line:?}");
        assert!(line["error"].contains("without a message id"), "{line:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_instance_id_that_cannot_go_in_a_header_is_refused_at_start() {
    let server = MockServer::start().await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.uri()));
    work.write("campaign.csv", &common::campaign(3));

    let output = work.send(&config, &["--instance", "bad\u{1}id"]).await;
    assert_exit!(output, 2);
    assert!(
        stderr(&output).contains("--instance") && stderr(&output).contains("U+0001"),
        "{}",
        stderr(&output)
    );

    let config = work.config(&Config::fast(&server.uri()).set("api.instance_id", "\"bad\\nid\""));
    let output = work.send(&config, &[]).await;
    common::assert_refused(&output, "api.instance_id");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn an_endless_answer_is_cut_off_and_the_row_is_unknown() {
    let endless = RawServer::start(
        "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n",
        true,
    )
    .await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&endless.base_url()));
    work.write("campaign.csv", &common::campaign(2));

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 1);
    for line in work.results("campaign.results.csv") {
        assert_eq!(line["status"], "UNKNOWN", "{line:?}");
        assert!(
            line["error"].contains("longer than 65536 bytes"),
            "{line:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_to_loopback_never_goes_through_a_proxy() {
    let proxy = RawServer::start(
        "HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n",
        false,
    )
    .await;
    let server = embedded(MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()));
    work.write("campaign.csv", &common::campaign(2));
    let proxy_url = proxy.base_url();

    let output = work
        .run_with_env(
            &["send", "campaign.csv", "--config", &config],
            &[
                ("INTERACTO_API_KEY", API_KEY),
                ("HTTP_PROXY", &proxy_url),
                ("http_proxy", &proxy_url),
                ("ALL_PROXY", &proxy_url),
            ],
        )
        .await;

    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 2);
    assert_eq!(proxy.connections(), 0, "the proxy saw nothing");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_key_is_taken_out_of_whatever_a_server_or_a_parser_says() {
    let echo = ResponseTemplate::new(400).set_body_string(format!(
        "bad request; headers were Authorization: {API_KEY}"
    ));
    let (output, results, _) = send_three_rows_to(echo, &[]).await;
    assert_exit!(output, 1);
    for line in &results {
        assert!(line["error"].contains("<the API key>"), "{line:?}");
    }
    let written = format!("{results:?}{}{}", stdout(&output), stderr(&output));
    assert!(!written.contains(API_KEY), "the key leaked: {written}");

    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));
    for text in [
        format!("[api]\napi_key = \"{API_KEY}\n"),
        format!("[api]\napi_key = {API_KEY}\n"),
        "[api]\napi_key = 987654321\n".to_string(),
    ] {
        let config = work.write("config.toml", &text);
        let output = work
            .run_with_env(
                &[
                    "validate",
                    "campaign.csv",
                    "--config",
                    config.to_str().unwrap(),
                ],
                &[],
            )
            .await;
        assert_exit!(output, 2);
        assert!(
            !stderr(&output).contains(API_KEY) && !stderr(&output).contains("987654321"),
            "{}",
            stderr(&output)
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_file_with_the_key_that_others_can_read_is_warned_about() {
    use std::os::unix::fs::PermissionsExt;
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));
    let config = work.write("config.toml", &format!("[api]\napi_key = \"{API_KEY}\"\n"));
    let path = config.to_str().unwrap();
    let args = ["validate", "campaign.csv", "--config", path, "--overwrite"];
    let run = || work.run_with_env(&args, &[]);

    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o644)).unwrap();
    let output = run().await;
    common::assert_has(&stderr(&output), "chmod 600");

    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o600)).unwrap();
    let output = run().await;
    assert!(
        !stderr(&output).contains("chmod 600"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_hangup_stops_the_run_like_sigterm() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(30));
    let child = work.spawn(&[
        "send",
        "campaign.csv",
        "--config",
        &config,
        "--rate",
        "20/s",
    ]);
    child.wait_for_start().await;
    wait_for("a few messages", || server.accepted() >= 3).await;

    common::signal(&child, libc::SIGHUP);
    let output = ended(child).await;

    assert_exit!(output, 130);
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 30, "every row has its line");
    assert!(count(&results, "DEFERRED") > 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_closed_stdout_is_no_reason_to_panic() {
    let work = Workspace::new();
    work.write(
        "campaign.csv",
        &format!("{}bad,X,551130034000\n", common::campaign(2)),
    );
    for summary in ["text", "json"] {
        let mut child = work
            .command(
                &[
                    "validate",
                    "campaign.csv",
                    "--overwrite",
                    "--summary",
                    summary,
                ],
                &[],
            )
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        drop(child.stdout.take());

        let output = ended(child).await;

        assert_exit!(output, 1, "the run's own code");
        assert!(!stderr(&output).contains("panicked"), "{}", stderr(&output));
    }
}

/// Whether a thread of process `pid` waits in open(2) for the other end of
/// a named pipe.
fn waits_for_a_writer(pid: u32) -> bool {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    threads.flatten().any(|thread| {
        std::fs::read_to_string(thread.path().join("wchan"))
            .is_ok_and(|wchan| wchan == "wait_for_partner")
    })
}

/// A named pipe at `path`, as `mkfifo` makes.
fn fifo(path: &std::path::Path) {
    let name = std::ffi::CString::new(path.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path the test owns.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0, "mkfifo");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_device_is_not_a_campaign() {
    let work = Workspace::new();
    for device in ["/dev/zero", "/dev/urandom", "/dev/null", "/tmp"] {
        let output = work
            .run(&["validate", device, "--out", "out.csv", "--overwrite"])
            .await;

        assert_exit!(output, 2, "{device}");
        common::assert_has(&stderr(&output), "not a regular file");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipe_nobody_writes_to_gives_way_to_a_signal() {
    let work = Workspace::new();
    fifo(&work.path("campaign.csv"));
    let child = work.spawn(&["validate", "campaign.csv"]);
    // It opens the campaign before it logs its start, and waits there.
    let pid = child.id().expect("still running");
    child
        .wait_until_ready("the run to wait for a writer", || waits_for_a_writer(pid))
        .await;

    terminate(&child);
    let output = ended(child).await;

    assert_exit!(output, 130);
    common::assert_has(&stderr(&output), "interrupted");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipe_without_a_header_line_is_refused_with_a_short_error() {
    let work = Workspace::new();
    let path = work.path("campaign.csv");
    fifo(&path);
    let child = work.spawn(&["validate", "campaign.csv"]);
    // Zeros and no line end, like /dev/zero through a pipe: 20 MiB.
    let writer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut pipe = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        for _ in 0..320 {
            if pipe.write_all(&[0; 64 * 1024]).is_err() {
                return;
            }
        }
    });

    let output = ended(child).await;
    writer.await.unwrap();

    common::assert_refused(&output, "no line ends");
    assert!(
        stderr(&output).len() < 2000,
        "a short error: {} bytes",
        stderr(&output).len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_pipe_that_never_ends_stops_being_read_on_a_signal() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let config = work.config(&settings.set("pacing.rate", "\"50/s\""));
    let path = work.path("campaign.csv");
    fifo(&path);
    let child = work.spawn(&["send", "campaign.csv", "--config", &config]);
    // Rows for as long as the run reads them (at most a million).
    let writer = tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut pipe = std::fs::OpenOptions::new().write(true).open(path).unwrap();
        let _ = pipe.write_all(b"to,contact_name,contact_phone\n");
        for n in 0..1_000_000 {
            let row = format!("+55 11 9{:08},Pessoa,+55 11 3003-4000\n", n);
            if pipe.write_all(row.as_bytes()).is_err() {
                return;
            }
        }
    });
    child.wait_for_start().await;
    wait_for("a few messages", || server.accepted() >= 3).await;

    terminate(&child);
    let output = ended(child).await;
    writer.await.unwrap();

    assert_exit!(output, 130);
    let results = work.results("campaign.results.csv");
    let sent = count(&results, "SENT");
    assert_eq!(
        sent as u64,
        server.accepted(),
        "every message sent has its line"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn cells_are_written_as_excel_in_brazil_would_read_them_safely() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let config = work.config(&settings.set("campaign.key_column", "\"id\""));
    // Rows 4 and 5 are INVALID (a bad phone), so their name is kept as written.
    work.write(
        "campaign.csv",
        "id,to,contact_name,contact_phone\n\
         a;=1+1,11987654321,Ana;=1+1;x,551130034000\n\
         c,11987654323,＝1+1,551130034000\n\
         b,123,\"  =HYPERLINK(\"\"x\"\")\",551130034000\n\
         d,123,Tab\there,551130034000\n",
    );

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 0);
    let raw = std::fs::read_to_string(work.path("campaign.results.csv")).unwrap();
    assert!(raw.contains(",\"a;=1+1\","), "{raw}");
    assert!(raw.contains(",\"Ana;=1+1;x\","), "{raw}");
    assert!(raw.contains(",'＝1+1,"), "{raw}");
    assert!(raw.contains(",\"'  =HYPERLINK(\"\"x\"\")\","), "{raw}");
    assert!(raw.contains(",\"Tab\there\","), "{raw}");

    // The keys match again: a resume finds the sent rows sent.
    let output = work.send(&config, &["--resume"]).await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 2, "nothing sent twice");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_full_disk_mid_run_is_a_halt_and_a_resume_accounts_for_every_row() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let config = work.config(
        &settings
            .set("pacing.rate", "\"5000/s\"")
            .set("pacing.concurrency", "8"),
    );
    let rows = 4000;
    work.write("campaign.csv", &common::campaign(rows));
    let mut command = work.command(
        &["send", "campaign.csv", "--config", &config],
        &[("INTERACTO_API_KEY", API_KEY)],
    );
    // SAFETY: setrlimit(2) and signal(2) are async-signal-safe. Files the
    // run writes cannot grow past 512 kB (the results of 4,000 rows do not
    // fit), as on a full disk (EFBIG instead of ENOSPC; SIGXFSZ ignored so
    // the write fails instead of the process).
    unsafe {
        command.pre_exec(|| {
            let limit = libc::rlimit {
                rlim_cur: 512 * 1024,
                rlim_max: 512 * 1024,
            };
            libc::setrlimit(libc::RLIMIT_FSIZE, &limit);
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            Ok(())
        });
    }

    let output = common::finish(command).await;

    assert_exit!(output, 3);
    common::assert_has(&stderr(&output), "--resume");
    let sent_before = server.accepted();
    assert!(sent_before > 0, "it did send before the disk filled");

    let output = work.send(&config, &["--resume"]).await;

    let results = work.results("campaign.results.csv");
    assert_exit!(output, common::exit_for(&results));
    assert_eq!(results.len(), rows, "every row has its line, once");
    let queued = common::queued_per_recipient(&server);
    assert!(
        queued.values().all(|times| *times == 1),
        "nothing sent twice"
    );
    assert_eq!(server.accepted() as usize, queued.len());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_of_a_hundred_thousand_columns_is_read_and_a_huge_one_named_briefly() {
    let work = Workspace::new();
    let columns: Vec<String> = (0..100_000).map(|n| format!("metadata.k{n}")).collect();
    let cells = vec!["v"; 100_000].join(",");
    work.write(
        "wide.csv",
        &format!(
            "to,contact_name,contact_phone,{}\n11987654321,Ana,551130034000,{cells}\n",
            columns.join(",")
        ),
    );

    work.ok(&["validate", "wide.csv"]).await;
    assert_eq!(work.results("wide.check.csv")[0]["status"], "VALID");

    // Ten megabytes of header and none of the columns needed: a short error.
    work.write("huge.csv", &format!("{}\nx\n", "h".repeat(10 << 20)));
    let output = work.fails(&["validate", "huge.csv"], 2).await;
    assert!(
        stderr(&output).len() < 2000,
        "{} bytes of error",
        stderr(&output).len()
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_valid_number_the_api_cannot_take_is_invalid() {
    let work = Workspace::new();
    // Found by the fuzzer: seven digits, a valid Austrian number, too short for the API.
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone\n+43 59804,Ana,551130034000\n11987654321,Bia,+43 59804\n",
    );

    work.fails(&["validate", "campaign.csv"], 1).await;
    for line in work.results("campaign.check.csv") {
        assert_eq!(line["status"], "INVALID", "{line:?}");
        assert!(line["error"].contains("the API takes 8 to 15"), "{line:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_resume_that_cannot_start_its_journal_keeps_the_old_one_whole() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(3));
    // What a run killed while sending row 2 leaves: a header, and a journal.
    let header = "row,key,to,contact_name,contact_phone,instance_id,status,api_status,message_id,\
                  http_status,attempts,delay,typing,error,finished_at\n";
    work.write("campaign.results.csv", header);
    let in_flight = "5511980000000:551130034000";
    let journal = format!("run {}\nsend 2 \"{in_flight}\"\n", header.len());
    work.write("campaign.results.csv.journal", &journal);
    // The new journal cannot be written beside it (as if the run died there).
    std::fs::create_dir(work.path("campaign.results.csv.journal.new")).unwrap();

    let output = work.send(&config, &["--resume"]).await;

    assert_exit!(output, 2);
    assert_eq!(server.requests(), 0);
    let kept = std::fs::read_to_string(work.path("campaign.results.csv.journal")).unwrap();
    assert_eq!(kept, journal, "the old journal is whole");

    std::fs::remove_dir(work.path("campaign.results.csv.journal.new")).unwrap();
    let output = work.send(&config, &["--resume"]).await;

    assert_exit!(output, 1);
    let results = work.results("campaign.results.csv");
    assert_eq!(line(&results, 2)["status"], "UNKNOWN", "{results:?}");
    assert_eq!(server.accepted(), 2, "the row in flight is not sent again");
}

/// Whether `text` holds a run of 8 or more of the test key's characters.
fn holds_part_of_the_key(text: &str) -> bool {
    let key = crate::common::API_KEY;
    (0..=key.len() - 8).any(|at| text.contains(&key[at..at + 8]))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_that_echoes_the_key_past_its_cut_shows_none_of_it() {
    // The key straddles the 200 bytes an error message is cut to.
    let echo = format!("{}Bearer {}", "x".repeat(185), crate::common::API_KEY);
    let refusal = ResponseTemplate::new(400).set_body_string(echo);
    let (output, results, _) = send_three_rows_to(refusal, &[]).await;

    assert_exit!(output, 1);
    for line in &results {
        assert_eq!(line["status"], "FAILED", "{line:?}");
        assert!(!holds_part_of_the_key(&line["error"]), "{line:?}");
        assert!(line["error"].contains("Bearer <the API"), "{line:?}");
    }
    for text in [stdout(&output), stderr(&output)] {
        assert!(!holds_part_of_the_key(&text), "{text}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_that_is_a_device_a_fifo_or_huge_is_refused_at_once() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));
    let fifo = work.path("config.fifo");
    let made = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(made.success());
    work.write("huge.toml", &"# padding\n".repeat(120_000));
    let fifo = fifo.display().to_string();
    for (config, said) in [
        ("/dev/zero", "not a regular file"),
        (fifo.as_str(), "not a regular file"),
        ("huge.toml", "larger than 1 MiB"),
    ] {
        let started = std::time::Instant::now();
        let by_flag = work
            .run(&["send", "campaign.csv", "--dry-run", "--config", config])
            .await;
        let by_env = work
            .run_with_env(
                &["send", "campaign.csv", "--dry-run"],
                &[("INTERACTO_API_KEY", API_KEY), ("INTERACTO_CONFIG", config)],
            )
            .await;
        for output in [by_flag, by_env] {
            assert_exit!(output, 2, "{config}");
            assert!(
                stderr(&output).contains(said),
                "{config}: {}",
                stderr(&output)
            );
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{config}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_others_can_change_draws_a_warning() {
    use std::os::unix::fs::PermissionsExt;
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));
    let config = work.config(&Config::fast("http://127.0.0.1:9"));
    std::fs::set_permissions(&config, std::fs::Permissions::from_mode(0o666)).unwrap();

    let output = work
        .ok(&["send", "campaign.csv", "--dry-run", "--config", &config])
        .await;
    assert!(
        stderr(&output).contains("can be changed by other users")
            && stderr(&output).contains("chmod go-w"),
        "{}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_json_summary_is_printed_for_a_run_refused_for_its_flags() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));
    for summary in [&["--summary", "json"][..], &["--summary=json"][..]] {
        let mut args = vec!["send", "campaign.csv", "--rate", "fast"];
        args.extend_from_slice(summary);

        let output = work.fails(&args, 2).await;
        let line: serde_json::Value = serde_json::from_str(stdout(&output).trim())
            .unwrap_or_else(|_| panic!("one JSON line: {}", stdout(&output)));
        assert_eq!(line["exit_code"], 2, "{line}");
        assert!(
            line["error"]
                .as_str()
                .unwrap()
                .contains("`fast` is not a rate"),
            "{line}"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn hard_links_at_the_tidy_and_lock_names_never_get_written_through() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let config = work.config(&settings.ledger(&work.fresh_ledger("ledger")));
    let campaign = common::campaign(3);
    work.write("campaign.csv", &campaign);
    let unchanged = || std::fs::read_to_string(work.path("campaign.csv")).unwrap();

    // The end-of-run rewrite's temporary name, linked to the campaign.
    std::fs::hard_link(
        work.path("campaign.csv"),
        work.path(".campaign.results.csv.tidy"),
    )
    .unwrap();
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);
    assert_eq!(
        unchanged(),
        campaign,
        "the campaign was written through its link"
    );
    assert_eq!(
        common::count(&work.results("campaign.results.csv"), "SENT"),
        3
    );

    // The lock's name, linked to another file: refused, nothing sent.
    work.write("notes.txt", "the operator's notes\n");
    std::fs::hard_link(work.path("notes.txt"), work.path("again.results.csv.lock")).unwrap();
    let output = work
        .send(
            &config,
            &["--out", "again.results.csv", "--campaign", "again"],
        )
        .await;
    common::assert_refused(&output, "hard link");
    assert_eq!(
        std::fs::read_to_string(work.path("notes.txt")).unwrap(),
        "the operator's notes\n"
    );
    assert_eq!(server.accepted(), 3, "nothing more sent");
}
