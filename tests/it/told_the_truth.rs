//! What the tool says is all the operator sees: it never passes on an
//! escape sequence it was given. Through the binary, against servers on
//! 127.0.0.1 that answer with them.

use serde_json::json;
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{self, stderr, stdout, Config, Workspace};

/// Clears the screen, sets the window's title, rings the bell: what a
/// hostile or broken server might answer.
const ESCAPES: &str = "\u{1b}[2J\u{1b}]0;owned\u{7}\u{9b}31m";

/// Whether any control character but a line end or a tab is in `bytes`.
fn holds_a_control(bytes: &[u8]) -> bool {
    String::from_utf8_lossy(bytes)
        .chars()
        .any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t'))
}

async fn answering(answer: ResponseTemplate) -> MockServer {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .respond_with(answer)
        .mount(&server)
        .await;
    server
}

#[tokio::test(flavor = "multi_thread")]
async fn escape_sequences_in_the_api_s_answers_reach_no_terminal_and_no_file() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));
    let refusing = answering(
        ResponseTemplate::new(400)
            .set_body_json(json!({"statusCode": 400, "message": format!("bad to {ESCAPES}")})),
    )
    .await;
    let accepting = answering(ResponseTemplate::new(201).set_body_json(json!({
        "statusCode": 201, "message": "ok",
        "data": {"id": format!("m-1{ESCAPES}"), "status": format!("QUEUED{ESCAPES}")}
    })))
    .await;

    for (server, out) in [(&refusing, "refused.csv"), (&accepting, "accepted.csv")] {
        let config = work.config(&Config::fast(&server.uri()).ledger(&work.fresh_ledger(out)));
        let output = work
            .run(&["send", "campaign.csv", "--config", &config, "--out", out])
            .await;

        assert_eq!(server.received_requests().await.unwrap().len(), 1);
        assert!(
            !holds_a_control(&output.stdout),
            "{out}: {}",
            stdout(&output)
        );
        assert!(
            !holds_a_control(&output.stderr),
            "{out}: {}",
            stderr(&output)
        );
        let written = std::fs::read(work.path(out)).unwrap();
        assert!(
            !holds_a_control(&written),
            "{}",
            String::from_utf8_lossy(&written)
        );
        common::assert_has(&String::from_utf8_lossy(&written), "\\u{1b}[2J");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_number_paused_by_the_api_s_refusal_shows_its_words_without_their_escapes() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(2));
    let refusing = answering(
        ResponseTemplate::new(401)
            .set_body_json(json!({"statusCode": 401, "message": format!("invalid key {ESCAPES}")})),
    )
    .await;
    let config = work.config(&Config::fast(&refusing.uri()).ledger(&work.fresh_ledger("l")));
    let output = work
        .run(&["send", "campaign.csv", "--config", &config])
        .await;
    assert!(!holds_a_control(&output.stdout), "{}", stdout(&output));

    // The pause's reason, kept in the ledger, as `numbers` and the next run show it.
    let numbers = work
        .run_with_env(&["numbers", "--config", &config], &[])
        .await;
    assert!(!holds_a_control(&numbers.stdout), "{}", stdout(&numbers));
    common::assert_has(&stdout(&numbers), "invalid key");
    let again = work
        .run(&[
            "send",
            "campaign.csv",
            "--config",
            &config,
            "--out",
            "again.csv",
        ])
        .await;
    assert!(!holds_a_control(&again.stdout), "{}", stdout(&again));
    assert!(!holds_a_control(&again.stderr), "{}", stderr(&again));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_number_the_api_refused_alerts_every_run_until_a_person_resumes_it() {
    let refusing = interacto_bulk::api::MockOptions {
        revoked_instances: vec!["inst-1".to_string()],
        ..Default::default()
    };
    let (server, work, settings) = common::against(refusing).await;
    let config = work.config(&settings.ledger(&work.fresh_ledger("l")));
    work.write("campaign.csv", &common::campaign(3));

    // The refusal, then the cron runs after it: each needs a person, and
    // only the first asks anything of the API.
    let mut tried = 0;
    for run in 0..3 {
        let output = work
            .run(&[
                "send",
                "campaign.csv",
                "--config",
                &config,
                "--resume",
                "--summary",
                "json",
            ])
            .await;
        assert_exit!(output, 3, "run {run}");
        let summary = common::summary_json(&output);
        let next = summary["next_step"].as_str().unwrap_or_default();
        common::assert_has(next, "interacto-bulk numbers resume inst-1");
        if run == 0 {
            tried = server.requests();
            assert!(tried >= 1);
        }
    }
    assert_eq!(server.requests(), tried, "only the first run tried");
    let numbers = work
        .run_with_env(&["numbers", "--json", "--config", &config], &[])
        .await;
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&numbers)).unwrap();
    assert_eq!(numbers[0]["state"], "refused", "{numbers}");

    // An operator's own pause is theirs to lift: no alert.
    let output = work
        .run_with_env(&["numbers", "resume", "inst-1", "--config", &config], &[])
        .await;
    assert_exit!(output, 0);
    let output = work
        .run_with_env(&["numbers", "pause", "inst-1", "--config", &config], &[])
        .await;
    assert_exit!(output, 0);
    let output = work
        .run(&["send", "campaign.csv", "--config", &config, "--resume"])
        .await;
    assert_exit!(output, 5);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limited_run_leaves_the_rest_pending_and_is_not_complete() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(10));

    let output = work
        .send(
            &config,
            &[
                "--limit",
                "4",
                "--summary",
                "json",
                "--report",
                "limited.html",
            ],
        )
        .await;
    assert_exit!(output, 1);
    assert_eq!(server.accepted(), 4);
    let page = std::fs::read_to_string(work.path("limited.html")).unwrap();
    let state = on_the_page(&page, "#state").unwrap();
    assert!(!state.starts_with("Complete"), "{state}");
    let summary = common::summary_json(&output);
    let state = &summary["state"];
    assert_eq!(state["complete"], false, "{summary}");
    assert_eq!(state["rows"], 10, "{summary}");
    assert_eq!(state["pending"], 6, "{summary}");
    assert_eq!(state["unread"], 6, "{summary}");
    common::assert_has(
        summary["next_step"].as_str().unwrap_or_default(),
        "6 rows past --limit",
    );

    // In words too; a larger --limit sends more, none the rest.
    let output = work.send(&config, &["--resume", "--limit", "8"]).await;
    assert_exit!(output, 1);
    common::assert_has(&stdout(&output), "8 of 10 rows SENT");
    common::assert_has(&stdout(&output), "past --limit 2");
    let output = work.send(&config, &["--resume", "--summary", "json"]).await;
    assert_exit!(output, 0);
    assert_eq!(common::summary_json(&output)["state"]["complete"], true);
    assert_eq!(server.accepted(), 10);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_check_whose_only_unsendable_rows_repeat_others_passes() {
    let work = Workspace::new();
    let mut campaign = common::campaign(3);
    let first = campaign.lines().nth(1).unwrap().to_string();
    campaign.push_str(&format!("{first}\n"));
    work.write("campaign.csv", &campaign);
    let config = work.config(&Config::fast("http://127.0.0.1:9"));

    let output = work
        .fails(
            &[
                "validate",
                "campaign.csv",
                "--config",
                &config,
                "--summary",
                "json",
            ],
            0,
        )
        .await;
    let summary = common::summary_json(&output);
    assert_eq!(summary["counts"]["DUPLICATE"], 1, "{summary}");
    assert_eq!(summary["counts"]["VALID"], 3, "{summary}");

    // A row to fix still fails the check.
    campaign.push_str("not a phone,Someone,+55 11 3003-4000\n");
    work.write("campaign.csv", &campaign);
    work.fails(
        &[
            "validate",
            "campaign.csv",
            "--config",
            &config,
            "--overwrite",
        ],
        1,
    )
    .await;
}

/// A PostgreSQL that accepts connections and never answers; how many came.
async fn silent_postgres() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    use std::sync::atomic::{AtomicUsize, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let came = std::sync::Arc::new(AtomicUsize::new(0));
    let counted = came.clone();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            counted.fetch_add(1, Ordering::SeqCst);
            held.push(socket);
        }
    });
    (addr, came)
}

/// Signals `run`, once `ready`, and waits for its end: within 5 s, exit
/// 130, saying it was interrupted.
async fn stops_on_a_signal(run: common::Running, signal: libc::c_int, what: &str) {
    common::signal(&run, signal);
    let signalled = std::time::Instant::now();
    let output = common::ended(run).await;
    let took = signalled.elapsed();
    assert!(
        took < std::time::Duration::from_secs(5),
        "{what}: {took:?} after the signal"
    );
    assert_exit!(output, 130, "{what}");
    common::assert_has(&stderr(&output), "interrupted");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_ledger_command_stops_on_a_signal_while_postgresql_never_answers() {
    use std::sync::atomic::Ordering;
    let (addr, came) = silent_postgres().await;
    let url = format!("postgres://tester@{addr}/ledger");
    let work = Workspace::new();
    let commands: [&[&str]; 8] = [
        &["numbers"],
        &["numbers", "pause", "inst-1"],
        &["numbers", "resume", "inst-1"],
        &["suppress", "add", "+55 11 98000-0001"],
        &["suppress", "list"],
        &["ledger", "stats"],
        &["ledger", "prune"],
        &["ledger", "forget", "+55 11 98000-0001"],
    ];
    for (n, command) in commands.into_iter().enumerate() {
        let mut args = command.to_vec();
        args.extend(["--ledger", &url]);
        let run = work.spawn(&args);
        run.wait_until_ready("the command's connection", || {
            came.load(Ordering::SeqCst) > n
        })
        .await;
        // SIGTERM as systemd sends it; Ctrl-C for the emergency pause.
        let signal = match command.starts_with(&["numbers", "pause"]) {
            true => libc::SIGINT,
            false => libc::SIGTERM,
        };
        stops_on_a_signal(run, signal, &command.join(" ")).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_of_a_fifo_nobody_writes_to_stops_on_a_signal() {
    let work = Workspace::new();
    let fifo = work.path("stalled.csv");
    let name = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: mkfifo(3) with a NUL-terminated path in the test's folder.
    assert_eq!(unsafe { libc::mkfifo(name.as_ptr(), 0o600) }, 0);
    let run = work.spawn(&["report", "stalled.csv", "--out", "stalled.html"]);
    // A writer that opens the FIFO (once the report opened it to read), says
    // half a header, and stalls.
    let opened = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (done, until_done) = std::sync::mpsc::channel::<()>();
    let writer = {
        let (fifo, opened) = (fifo.clone(), opened.clone());
        std::thread::spawn(move || {
            use std::io::Write;
            let mut pipe = std::fs::OpenOptions::new().write(true).open(fifo).unwrap();
            let _ = pipe.write_all(b"campaign,row,key,to");
            opened.store(true, std::sync::atomic::Ordering::SeqCst);
            let _ = until_done.recv_timeout(std::time::Duration::from_secs(30));
        })
    };
    run.wait_until_ready("the report reading the FIFO", || {
        opened.load(std::sync::atomic::Ordering::SeqCst)
    })
    .await;
    stops_on_a_signal(run, libc::SIGTERM, "report of a FIFO").await;
    assert!(!work.path("stalled.html").exists(), "no report written");
    done.send(()).unwrap();
    writer.join().unwrap();
}

/// The page's text of the element `selector` picks, or `None`.
fn on_the_page(page: &str, selector: &str) -> Option<String> {
    let html = scraper::Html::parse_document(page);
    let selector = scraper::Selector::parse(selector).unwrap();
    html.select(&selector)
        .next()
        .map(|element| element.text().collect::<String>())
}

/// The page's count of rows.
fn rows_on_the_page(page: &str) -> u64 {
    let rows = on_the_page(page, "#rows").expect("the page counts rows");
    rows.split_whitespace().next().unwrap().parse().unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_after_kill_9_counts_each_row_once_and_says_the_run_was_stopped() {
    let server = common::embedded(interacto_bulk::api::MockOptions {
        latency: std::time::Duration::from_millis(20),
        ..Default::default()
    })
    .await;
    let work = Workspace::new();
    // Slow enough that the kill comes well before the last row (40 rows
    // after the first run's 20 take two seconds).
    let config = work.config(&Config::fast(&server.base_url()).set("pacing.rate", "\"20/s\""));
    let rows = 60;
    work.write("campaign.csv", &common::campaign(rows));
    // A first run sends 20; the second writes their lines again (SENT, by
    // an earlier run) and is killed half-way through the rest.
    work.fails(
        &["send", "campaign.csv", "--config", &config, "--limit", "20"],
        1,
    )
    .await;
    let mut child = work.spawn(&["send", "campaign.csv", "--config", &config, "--resume"]);
    common::wait_for("ten more cards", || server.accepted() >= 30).await;
    child.start_kill().unwrap();
    child.wait().await.unwrap();
    let lines = std::fs::read_to_string(work.path("campaign.results.csv"))
        .unwrap()
        .lines()
        .count()
        - 1;
    assert!(lines > 40, "the file holds both runs' lines: {lines}");

    let output = work
        .run(&["report", "campaign.results.csv", "--out", "killed.html"])
        .await;
    assert_exit!(output, 0);
    let page = std::fs::read_to_string(work.path("killed.html")).unwrap();
    // Each row once: at most the campaign's, at least the first run's 20
    // (the killed run's own lines may lag the cards the server took).
    let shown = rows_on_the_page(&page);
    assert!(
        shown <= rows as u64 && shown >= 20,
        "{shown} rows of a {rows}-row campaign"
    );
    let sent: u64 = on_the_page(&page, "[data-status=SENT] b")
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        sent <= server.accepted(),
        "{sent} SENT, {} reached",
        server.accepted()
    );
    assert!(
        on_the_page(&page, "#stopped").is_some(),
        "no banner: {page}"
    );
    assert!(!on_the_page(&page, "#state")
        .unwrap()
        .starts_with("Complete"));

    // Once --resume settles it (a card in flight at the kill UNKNOWN:
    // exit 1), the page is whole and says nothing more.
    let output = work
        .run(&["send", "campaign.csv", "--config", &config, "--resume"])
        .await;
    assert!(matches!(output.status.code(), Some(0 | 1)), "{output:?}");
    work.ok(&["report", "campaign.results.csv", "--out", "settled.html"])
        .await;
    let page = std::fs::read_to_string(work.path("settled.html")).unwrap();
    assert_eq!(rows_on_the_page(&page), rows as u64);
    assert!(on_the_page(&page, "#stopped").is_none());
    assert!(on_the_page(&page, "#without-line").is_none());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_made_during_a_run_says_a_run_is_sending() {
    let server = common::embedded(interacto_bulk::api::MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()).set("pacing.rate", "\"5/s\""));
    work.write("campaign.csv", &common::campaign(40));
    let run = work.spawn(&["send", "campaign.csv", "--config", &config]);
    run.wait_for_start().await;
    common::wait_for("a few cards", || server.accepted() >= 3).await;

    let output = work
        .run(&["report", "campaign.results.csv", "--out", "now.html"])
        .await;
    assert_exit!(output, 0);
    let page = std::fs::read_to_string(work.path("now.html")).unwrap();
    let running = on_the_page(&page, "#running").expect("a banner: a run is sending");
    common::assert_has(&running, &format!("pid {}", run.id().unwrap()));
    assert!(rows_on_the_page(&page) <= 40);
    assert!(!on_the_page(&page, "#state")
        .unwrap()
        .starts_with("Complete"));
    common::terminate(&run);
    common::ended(run).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rehearsal_s_report_and_a_check_s_say_so_at_the_top() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(2));
    let config = work.config(&Config::fast("http://127.0.0.1:9"));
    work.ok(&["send", "campaign.csv", "--config", &config, "--mock"])
        .await;
    work.ok(&["validate", "campaign.csv", "--config", &config])
        .await;

    for (file, banner, state) in [
        ("campaign.mock.csv", "#rehearsal", "A rehearsal"),
        ("campaign.check.csv", "#check", "A check"),
    ] {
        let output = work.run(&["report", file, "--out", "page.html"]).await;
        assert_exit!(output, 0, "{file}");
        let page = std::fs::read_to_string(work.path("page.html")).unwrap();
        let said = on_the_page(&page, banner).unwrap_or_else(|| panic!("{file}: {page}"));
        common::assert_has(&said, "nothing");
        assert!(on_the_page(&page, "#state").unwrap().starts_with(state));
        std::fs::remove_file(work.path("page.html")).unwrap();
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn a_refusal_an_earlier_version_kept_as_a_pause_needs_a_person_after_the_upgrade() {
    let work = Workspace::new();
    let url = common::release_before(common::Store::Sqlite, &work).await;
    // As the release before kept the API's refusal: a pause.
    let path = url.trim_start_matches("sqlite://");
    let db = rusqlite::Connection::open(path).unwrap();
    db.execute(
        "INSERT INTO number_holds (instance_id, kind, reason, since, until)
         VALUES ('fixture-number', 'paused', 'refused by the API: HTTP 401 Unauthorized', 0, NULL)",
        [],
    )
    .unwrap();
    drop(db);

    let output = work
        .run_with_env(&["numbers", "--json", "--ledger", &url], &[])
        .await;
    assert_exit!(output, 0);
    let numbers: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(numbers[0]["instance_id"], "fixture-number", "{numbers}");
    assert_eq!(numbers[0]["state"], "refused", "{numbers}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_results_file_edited_with_escapes_makes_a_page_without_them() {
    let work = Workspace::new();
    let header = interacto_bulk::results::COLUMNS.join(",");
    // campaign,row,key,to,contact_name,contact_phone,instance_id,status,
    // api_status,message_id,http_status,attempts,delay,typing,error,finished_at
    let line = format!(
        "c,2,,5511980000000,Loja,5511300340000,inst-1,FAILED,,,500,1,2,1,HTTP 500 {ESCAPES},\
         2026-12-07T10:00:00.000Z"
    );
    work.write("c.results.csv", &format!("{header}\n{line}\n"));
    let output = work
        .run(&["report", "c.results.csv", "--out", "c.html"])
        .await;
    assert_exit!(output, 0);
    let page = std::fs::read(work.path("c.html")).unwrap();
    assert!(
        !holds_a_control(&page),
        "{}",
        String::from_utf8_lossy(&page)
    );
    common::assert_has(&String::from_utf8_lossy(&page), "HTTP 500 \\u{1b}[2J");
}

#[tokio::test(flavor = "multi_thread")]
async fn one_number_refused_among_two_alerts_each_run_while_the_other_sends() {
    let server = common::embedded(interacto_bulk::api::MockOptions {
        revoked_instances: vec!["inst-b".to_string()],
        ..Default::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(
        &Config::fast(&server.base_url())
            .unset("api.instance_id")
            .set("api.instances", "[\"inst-a\", \"inst-b\"]"),
    );
    work.write("campaign.csv", &common::campaign(20));
    for run in 0..2 {
        let output = work.send(&config, &["--resume", "--summary", "json"]).await;
        assert_exit!(output, 3, "run {run}");
        let summary = common::summary_json(&output);
        common::assert_has(
            summary["next_step"].as_str().unwrap_or_default(),
            "numbers resume inst-b",
        );
    }
    let through_a = common::requests_from(&server, "inst-a");
    assert!(through_a > 0, "the other number sent");
    assert_eq!(server.accepted() as usize, through_a);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_limited_check_of_a_pipe_left_open_ends_at_the_limit() {
    use tokio::io::AsyncWriteExt;
    let work = Workspace::new();
    let config = work.config(&Config::fast("http://127.0.0.1:9"));
    // More than the first MiB the encoding is told from, then nothing more
    // while the writer stays: the check must not wait for a row past it.
    let rows = 25_000;
    let campaign = common::campaign(rows);
    assert!(campaign.len() > 1 << 20);
    let limit = rows.to_string();
    let mut command = work.command(
        &[
            "validate",
            "-",
            "--campaign",
            "piped",
            "--config",
            &config,
            "--limit",
            &limit,
        ],
        &[],
    );
    command
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = command.spawn().unwrap();
    let mut stdin = child.stdin.take().unwrap();
    stdin.write_all(campaign.as_bytes()).await.unwrap();
    stdin.flush().await.unwrap();
    let output = common::ended(child).await;
    drop(stdin);
    assert_exit!(output, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_never_replaces_a_file_that_starts_with_a_blank_line() {
    let (_server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(2));
    work.ok(&["send", "campaign.csv", "--config", &config])
        .await;
    let leads = "\nto,contact_name,contact_phone\n+55 11 98000-0001,Ana,+55 11 3003-4000\n";
    work.write("leads.csv", leads);

    let output = work
        .run(&["report", "campaign.results.csv", "--out", "leads.csv"])
        .await;
    assert_exit!(output, 2);
    assert_eq!(
        std::fs::read_to_string(work.path("leads.csv")).unwrap(),
        leads
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_report_of_a_file_edited_to_an_absurd_row_number_names_the_line() {
    let work = Workspace::new();
    let header = interacto_bulk::results::COLUMNS.join(",");
    let line = "c,999999999999,,5511980000000,Loja,5511300340000,inst-1,SENT,QUEUED,x,201,1,2,1,,\
                2026-12-07T10:00:00.000Z";
    work.write("c.results.csv", &format!("{header}\n{line}\n"));
    let output = work
        .run(&["report", "c.results.csv", "--out", "c.html"])
        .await;
    assert_exit!(output, 2);
    common::assert_has(&stderr(&output), "c.results.csv, line 2");
}
