//! What makes it a tool to install: completions, manual pages, a config file
//! found without a flag, help that lists the environment and the exit codes,
//! `validate` that estimates what `send` would do, and the rough edges seen.

use std::path::Path;

use crate::cli::repo;
use crate::common::{stderr, stdout, Workspace};

const COMMANDS: [&str; 7] = [
    "send",
    "validate",
    "mock-server",
    "numbers",
    "suppress",
    "completions",
    "man",
];

#[tokio::test(flavor = "multi_thread")]
async fn completions_for_every_shell_know_every_command() {
    let work = Workspace::new();
    for shell in ["bash", "zsh", "fish", "powershell"] {
        let output = work.run(&["completions", shell]).await;
        assert_exit!(output, 0, "{shell}");
        let script = stdout(&output);
        for command in COMMANDS {
            assert!(script.contains(command), "{shell} lacks {command}");
        }
        assert!(script.contains("resend-unknown"), "{shell}");
    }
    work.fails(&["completions", "tcsh"], 2).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_manual_page_for_the_tool_and_for_each_command() {
    let work = Workspace::new();
    let output = work.ok(&["man"]).await;
    let page = stdout(&output);
    assert!(
        page.starts_with(".ie") || page.contains(".TH interacto-bulk 1"),
        "{page}"
    );
    for command in COMMANDS {
        assert!(
            page.contains(&format!(
                "interacto\\-bulk\\-{}(1)",
                command.replace('-', "\\-")
            )),
            "the page lists {command}"
        );
        let output = work.run(&["man", command]).await;
        assert_exit!(output, 0, "{command}");
        assert!(
            stdout(&output).contains(&format!(".TH interacto-bulk-{command} 1")),
            "{command}"
        );
    }
    let send = stdout(&work.run(&["man", "send"]).await);
    assert!(send.contains("\\-\\-no\\-wait"), "{send}");
    work.refuses(&["man", "sned"], "one of: send, validate")
        .await;
}

/// Bash itself completes: the script sourced, `send --re<TAB>` and the
/// commands after the tool's name.
#[tokio::test(flavor = "multi_thread")]
async fn bash_completes_a_commands_options_after_the_command() {
    let work = Workspace::new();
    let output = work.ok(&["completions", "bash"]).await;
    work.write("completion.bash", &stdout(&output));
    let complete = |line: &str| {
        let words: Vec<&str> = line.split(' ').collect();
        let cword = words.len() - 1;
        let previous = words[cword.saturating_sub(1)];
        format!(
            "source ./completion.bash\nCOMP_WORDS=({line})\nCOMP_CWORD={cword}\n\
             _interacto__bulk interacto-bulk '{}' '{previous}'\nprintf '%s\\n' \"${{COMPREPLY[@]}}\"\n",
            words[cword]
        )
    };
    for (line, expected) in [
        (
            "interacto-bulk send --re",
            vec!["--resume", "--resend-unknown", "--real-pace", "--report"],
        ),
        ("interacto-bulk suppress im", vec!["import"]),
        ("interacto-bulk man --out", vec!["--out-dir"]),
        ("interacto-bulk con", vec!["config"]),
    ] {
        let output = work
            .sealed("bash")
            .args(["--norc", "--noprofile", "-c", &complete(line)])
            .output()
            .await
            .expect("bash runs");
        let offered: Vec<String> = stdout(&output).lines().map(str::to_string).collect();
        assert_eq!(offered, expected, "{line}: {}", stderr(&output));
    }
}

/// `man --out-dir` writes every page, and every page a page refers to is
/// among them; the tool's page carries the sections a manual page has.
#[tokio::test(flavor = "multi_thread")]
async fn every_manual_page_referred_to_is_written() {
    let work = Workspace::new();
    work.ok(&["man", "--out-dir", "man/man1"]).await;
    let folder = Path::new(&work.path("man/man1")).to_path_buf();
    let written: Vec<String> = std::fs::read_dir(&folder)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(written.len() >= 18, "{written:?}");
    for name in &written {
        let page = std::fs::read_to_string(folder.join(name)).unwrap();
        for reference in page.split(|c: char| c.is_whitespace() || c == ',') {
            let Some(referred) = reference.strip_suffix("(1)") else {
                continue;
            };
            let file = format!("{}.1", referred.replace("\\-", "-"));
            assert!(
                written.contains(&file),
                "{name} refers to {referred}(1): {written:?}"
            );
        }
        assert!(page.contains(".SH \"EXIT STATUS\""), "{name}");
        assert!(page.contains(".SH \"SEE ALSO\""), "{name}");
    }
    let top = std::fs::read_to_string(folder.join("interacto-bulk.1")).unwrap();
    for section in ["ENVIRONMENT", "FILES", "STATUSES"] {
        assert!(top.contains(&format!(".SH \"{section}\"")), "{section}");
    }
    for status in [
        "SENT",
        "UNKNOWN",
        "DEFERRED",
        "SUPPRESSED",
        "INTERACTO_LEDGER_URL",
    ] {
        assert!(top.contains(status), "{status}");
    }
    assert!(
        !written.iter().any(|name| name.contains("help")),
        "{written:?}"
    );
}

/// With only the binary, the example config is one command away.
#[tokio::test(flavor = "multi_thread")]
async fn config_example_prints_the_projects_example_config() {
    let work = Workspace::new();
    let output = work.ok(&["config", "example"]).await;
    let shipped = std::fs::read_to_string(repo("config.example.toml")).unwrap();
    assert_eq!(stdout(&output), shipped);
}

#[tokio::test(flavor = "multi_thread")]
async fn help_lists_the_environment_the_exit_codes_and_global_options_apart() {
    let work = Workspace::new();
    let help = stdout(&work.run(&["--help"]).await);
    for variable in [
        "INTERACTO_API_KEY",
        "INTERACTO_INSTANCE_ID",
        "INTERACTO_BASE_URL",
        "INTERACTO_LEDGER_URL",
        "INTERACTO_CONFIG",
    ] {
        assert!(help.contains(variable), "{variable}: {help}");
    }
    for exit in ["0 ", "1 ", "2 ", "3 ", "4 ", "5 ", "130 "] {
        assert!(help.contains(&format!("\n  {exit}")), "exit {exit}: {help}");
    }
    let send = stdout(&work.run(&["send", "--help"]).await);
    let own = send.find("--dry-run").unwrap();
    let global = send
        .find("Global options:")
        .expect("a heading for -v, -q, --log-format");
    assert!(
        own < global && send[global..].contains("--log-format"),
        "{send}"
    );
    assert!(!send[..global].contains("--verbose"), "{send}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_start_with_example_of_help_runs_as_written() {
    let work = Workspace::new();
    let help = stdout(&work.run(&["--help"]).await);
    let example = help
        .split('`')
        .find(|part| part.starts_with("interacto-bulk send"))
        .expect("a `interacto-bulk send …` example");
    // In a copy of the samples, as a new user would have them.
    std::fs::create_dir(work.path("samples")).unwrap();
    for sample in ["campaign.csv", "rehearsal.toml"] {
        std::fs::copy(
            repo(&format!("samples/{sample}")),
            work.path(&format!("samples/{sample}")),
        )
        .unwrap();
    }
    let args: Vec<&str> = example.split_whitespace().skip(1).collect();
    for _ in 0..2 {
        let output = work.run_with_env(&args, &[]).await;
        assert_exit!(output, 0, "{example}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_users_config_file_is_found_without_a_flag_and_named_in_the_log() {
    let work = Workspace::new();
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone\n11987654321,Ana,+55 11 3003-4000\n",
    );
    let folder = work.path("home/config/interacto-bulk");
    std::fs::create_dir_all(&folder).unwrap();
    std::fs::write(folder.join("config.toml"), "[pacing]\nrate = \"7/min\"\n").unwrap();

    let output = work
        .ok(&["validate", "campaign.csv", "--summary", "json"])
        .await;
    let check = crate::common::summary_json(&output);
    assert_eq!(check["check"]["rate"], "7/min");
    assert!(
        stderr(&output).contains(&format!("config={}", folder.join("config.toml").display())),
        "{}",
        stderr(&output)
    );

    // INTERACTO_CONFIG names another; --config wins over both.
    work.write("other.toml", "[pacing]\nrate = \"9/min\"\n");
    let rate = |output: &std::process::Output| {
        let summary = crate::common::summary_json(output);
        summary["check"]["rate"].as_str().unwrap().to_string()
    };
    let args = [
        "validate",
        "campaign.csv",
        "--summary",
        "json",
        "--overwrite",
    ];
    let output = work
        .run_with_env(&args, &[("INTERACTO_CONFIG", "other.toml")])
        .await;
    assert_eq!(rate(&output), "9/min");
    work.write("flag.toml", "[pacing]\nrate = \"11/min\"\n");
    let mut with_flag = args.to_vec();
    with_flag.extend(["--config", "flag.toml"]);
    let output = work
        .run_with_env(&with_flag, &[("INTERACTO_CONFIG", "other.toml")])
        .await;
    assert_eq!(rate(&output), "11/min");
    let output = work
        .run_with_env(&args, &[("INTERACTO_CONFIG", "missing.toml")])
        .await;
    assert_exit!(output, 2, "a named file must exist");
}

#[tokio::test(flavor = "multi_thread")]
async fn validate_estimates_with_the_sends_flags_and_refuses_what_only_a_send_means() {
    let work = Workspace::new();
    work.write("campaign.csv", &crate::common::campaign(6));
    let flags = [
        "--rate",
        "1/s",
        "--instance",
        "a",
        "--instance",
        "b",
        "--concurrency",
        "2",
    ];
    let check = work.validate(&flags, 0).await;
    assert_eq!(check["rate"], "1/s");
    assert_eq!(check["instances"], 2);

    for flag in ["--resume", "--resend-unknown"] {
        let output = work.run(&["validate", "campaign.csv", flag]).await;
        assert_exit!(output, 2, "{flag}");
        crate::common::assert_has(&stderr(&output), flag);
    }
    work.refuses(
        &["send", "campaign.csv", "--concurrency", "0"],
        "must be at least 1",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn files_as_excel_writes_them_are_read_and_reported_as_they_are() {
    let work = Workspace::new();
    // Excel's `sep=;` line, and trailing columns with no header.
    work.write(
        "sep.csv",
        "sep=;\r\nto;contact_name;contact_phone;;\r\n11987654321;Ana;551130034000;;\r\n",
    );
    let output = work.ok(&["validate", "sep.csv"]).await;
    let report = stdout(&output);
    assert!(report.contains("1 row checked"), "{report}");
    assert!(report.contains("`;`-separated"), "{report}");
    assert!(
        !stderr(&output).contains("ignoring columns"),
        "{}",
        stderr(&output)
    );

    // UTF-16, as Excel's "Unicode text".
    let text = "to\tcontact_name\tcontact_phone\n11987654321\tAna\t551130034000\n";
    let mut bytes = vec![0xFF, 0xFE];
    bytes.extend(text.encode_utf16().flat_map(u16::to_le_bytes));
    std::fs::write(work.path("unicode.csv"), bytes).unwrap();
    let output = work.ok(&["validate", "unicode.csv"]).await;
    crate::common::assert_has(&stdout(&output), "(utf-16, `\\t`-separated)");
    assert!(Path::new(&work.path("unicode.check.csv")).exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn the_pace_each_number_keeps_is_said_at_the_start() {
    let server = crate::common::embedded(interacto_bulk::api::MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(
        &crate::common::Config::fast(&server.base_url()).set("pacing.pace_by_message", "true"),
    );
    work.write("campaign.csv", &crate::common::campaign(1));
    let output = work.send(&config, &["--rate", "1000/s"]).await;
    assert_exit!(output, 0);
    let log = stderr(&output);
    assert!(
        log.contains("each number sends at most one message every 7 s: pace_by_message waits"),
        "{log}"
    );
    assert!(log.contains("slower than the rate 1000/s allows"), "{log}");
}

#[tokio::test(flavor = "multi_thread")]
async fn send_at_trace_shows_each_body_and_answer_but_never_the_key() {
    let server = crate::common::embedded(interacto_bulk::api::MockOptions::default()).await;
    let work = Workspace::new();
    let config = work.config(&crate::common::Config::fast(&server.base_url()));
    work.write("campaign.csv", &crate::common::campaign(2));
    let output = work.send(&config, &["-vv"]).await;
    assert_exit!(output, 0);
    let log = stderr(&output);
    assert!(
        log.contains("request") && log.contains("\"contact\""),
        "{log}"
    );
    assert!(log.contains("answer") && log.contains("QUEUED"), "{log}");
    assert!(
        !log.contains(crate::common::API_KEY),
        "the key is in the log"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_mock_server_logs_what_it_answers_and_stops_in_its_own_words() {
    let work = Workspace::new();
    let port = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let listen = format!("127.0.0.1:{port}");
    let mock = work.spawn(&["mock-server", "--listen", &listen, "-v"]);
    let base = format!("http://{listen}");
    // A mock server logs no `starting`: it is ready once it listens.
    mock.wait_until_ready("the mock to listen", || {
        std::net::TcpStream::connect(&listen).is_ok()
    })
    .await;
    let config = work.config(&crate::common::Config::fast(&base));
    work.write("campaign.csv", &crate::common::campaign(2));
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);

    crate::common::terminate(&mock);
    let output = crate::common::ended(mock).await;
    let log = stderr(&output);
    assert_eq!(log.matches("answered").count(), 2, "{log}");
    assert!(
        log.contains("instance=inst-1") && log.contains("status=201"),
        "{log}"
    );
    assert!(log.contains("to=5511"), "{log}");
    assert!(log.contains("mock server: stopping"), "{log}");
    assert!(!log.contains("no new messages"), "{log}");
}

/// The binary on a terminal, so that the progress bar is drawn, and what
/// the terminal showed.
#[tokio::test(flavor = "multi_thread")]
async fn on_a_terminal_the_wait_for_the_window_shows_when_it_opens() {
    let work = Workspace::new();
    work.write("campaign.csv", &crate::common::campaign(3));
    let window = crate::common::utc_window_from_now(2, 3);
    let config = work.config(
        &crate::common::Config::fast("http://127.0.0.1:9")
            .set("schedule.window", &format!("{window:?}"))
            .set("schedule.timezone", "\"UTC\""),
    );
    let child = work.on_a_terminal(&["send", "campaign.csv", "--config", &config]);
    child.wait_for_start().await;
    // A few redraws of the bar (every 200 ms).
    crate::common::wait_for("the bar to wait for the window", || {
        child
            .log()
            .matches("waiting for the send window until")
            .count()
            >= 3
    })
    .await;
    crate::common::terminate(&child);
    let output = crate::common::ended(child).await;
    let screen = String::from_utf8_lossy(&output.stdout);
    assert!(
        screen.contains("waiting for the send window until"),
        "{screen}"
    );
    let opening = window.split('-').next().unwrap();
    assert!(
        screen.contains(opening),
        "the opening time is shown: {screen}"
    );
    assert!(!screen.contains("ETA 0"), "{screen}");
}

#[tokio::test(flavor = "multi_thread")]
async fn config_errors_say_it_once() {
    let work = Workspace::new();
    work.write("campaign.csv", &crate::common::campaign(1));
    let output = work
        .fails(&["validate", "campaign.csv", "--config", "nothere.toml"], 2)
        .await;
    let error = stderr(&output);
    assert_eq!(error.matches("os error 2").count(), 1, "{error}");
    assert!(
        error.contains("cannot read config file nothere.toml"),
        "{error}"
    );

    work.write("bad.toml", "[pacing]\nrate = \"fast\"\n");
    let output = work
        .fails(&["validate", "campaign.csv", "--config", "bad.toml"], 2)
        .await;
    let error = stderr(&output);
    assert_eq!(error.matches("is not a rate").count(), 1, "{error}");
    assert!(error.contains("bad.toml, line 2: pacing.rate"), "{error}");
}
