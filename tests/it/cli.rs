//! The command line as a user meets it: help, config errors, bad campaign files, `--mock`.

use std::path::Path;

use crate::common::{self, stderr, stdout, Workspace};

pub fn repo(path: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join(path)
        .display()
        .to_string()
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_campaign_runs_end_to_end_against_the_embedded_mock() {
    let work = Workspace::new();
    let output = work
        .run_with_env(
            &[
                "send",
                &repo("samples/campaign.csv"),
                "--mock",
                "--config",
                &repo("samples/rehearsal.toml"),
                "--summary",
                "json",
            ],
            &[],
        )
        .await;

    assert_exit!(output, 0);
    let results = work.results("campaign.mock.csv");
    assert_eq!(results.len(), 10);
    assert!(results
        .iter()
        .all(|line| line["status"] == "SENT" && line["message_id"].len() == 24));
    assert!(results
        .iter()
        .all(|line| line["instance_id"] == "mock-instance" && line["rehearsal"] == "campaign"));
    assert!(
        !work.path("campaign.results.csv").exists(),
        "a rehearsal never writes where the real results go"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_sample_with_errors_names_the_field_and_problem_of_every_bad_row() {
    let work = Workspace::new();
    let output = work
        .run(&["validate", &repo("samples/campaign-with-errors.csv")])
        .await;

    assert_exit!(output, 1, "not every row is valid");
    let results = work.results("campaign-with-errors.check.csv");
    assert_eq!(results.len(), 10);
    let expected = [
        ("2", "VALID", ""),
        (
            "3",
            "INVALID",
            "to: `5.511987654321E+12` looks like a number in scientific notation",
        ),
        ("4", "INVALID", "to: `(21) 1234-5` is too short for BR"),
        ("5", "INVALID", "contact_name: is empty"),
        ("6", "INVALID", "delay: `rápido` is not a number"),
        ("7", "DUPLICATE", "the same to and contact_phone as row 2"),
        ("8", "INVALID", "metadata: not valid JSON"),
        (
            "9",
            "INVALID",
            "line 9: the row has 2 fields, the header has 7",
        ),
        ("10", "INVALID", "typing: `-1` is not a number of seconds"),
        (
            "11",
            "INVALID",
            "to: `(47) 9876-5432` is not a valid BR number: an old 8-digit mobile: BR mobiles have 9 digits after the area code, starting with 9 (add the 9: (47) 99876-5432)",
        ),
    ];
    for (row, status, error) in expected {
        let line = common::line(&results, row.parse().unwrap());
        assert_eq!(line["status"], status, "row {row}");
        assert!(
            line["error"].starts_with(error),
            "row {row}: {}",
            line["error"]
        );
    }
}

/// Runs `command campaign.csv` on a one-row campaign with a config file of
/// `text`: it must stop at start (exit 2, no results file) with an error
/// that names `named`.
/// A `--mock` rehearsal does not wait for the pace and says how long the
/// real send would take; `--real-pace` rehearses the timing too. (At 2/s,
/// five cards are at least 2 s apart from first to last when paced.)
#[tokio::test(flavor = "multi_thread")]
async fn a_rehearsal_goes_at_speed_unless_asked_for_the_real_pace() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(5));
    let config = work.config(
        &common::Config::fast("http://127.0.0.1:9")
            .unset("api.instance_id")
            .set("pacing.rate", "\"2/s\""),
    );
    let spread = |results: &[std::collections::HashMap<String, String>]| {
        let times: Vec<jiff::Timestamp> = results
            .iter()
            .map(|line| line["finished_at"].parse().unwrap())
            .collect();
        let (first, last) = (times.iter().min().unwrap(), times.iter().max().unwrap());
        last.duration_since(*first).unsigned_abs()
    };

    let output = work
        .ok(&[
            "send",
            "campaign.csv",
            "--mock",
            "--config",
            &config,
            "--summary",
            "json",
        ])
        .await;
    let summary: serde_json::Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(summary["at_speed"], true, "{summary}");
    assert!(
        summary["check"]["expected_seconds"].as_f64().unwrap() >= 2.0,
        "{summary}"
    );
    let results = work.results("campaign.mock.csv");
    assert_eq!(common::count(&results, "SENT"), 5);
    assert!(
        spread(&results) < std::time::Duration::from_secs(2),
        "{results:?}"
    );
    let output = work
        .run(&[
            "send",
            "campaign.csv",
            "--mock",
            "--config",
            &config,
            "--overwrite",
        ])
        .await;
    assert!(
        stdout(&output).contains("s: 5 messages at 2/s on one instance")
            && stdout(&output).contains("sending would take about")
            && stdout(&output).contains("a rehearsal at speed"),
        "{}",
        stdout(&output)
    );

    let output = work
        .ok(&[
            "send",
            "campaign.csv",
            "--mock",
            "--real-pace",
            "--config",
            &config,
            "--overwrite",
        ])
        .await;
    assert!(!stdout(&output).contains("at speed"), "{}", stdout(&output));
    let results = work.results("campaign.mock.csv");
    assert!(
        spread(&results) >= std::time::Duration::from_millis(1900),
        "{results:?}"
    );

    let output = work.run(&["send", "campaign.csv", "--real-pace"]).await;
    assert_exit!(output, 2, "--real-pace needs --mock");
}

/// What cron mails: at the default level, a run of any size says the start,
/// the pace and its summary in at most 15 lines; -v adds a line a row.
#[tokio::test(flavor = "multi_thread")]
async fn a_large_run_with_bad_rows_and_failures_is_quiet_unless_asked() {
    let server = common::embedded(interacto_bulk::api::MockOptions {
        failure_rate: 0.5,
        ..Default::default()
    })
    .await;
    let work = Workspace::new();
    let mut campaign = common::campaign(800);
    let bad = [
        "5.511987654321E+12",
        "(21) 1234-5",
        "abc",
        "",
        "+1 555",
        "(31) 9876-543",
        "+55 11 98888-777",
    ];
    for n in 0..300 {
        campaign.push_str(&format!(
            "{},Bad {n},+55 11 3003-4000\n",
            bad[n % bad.len()]
        ));
    }
    work.write("campaign.csv", &campaign);
    let config = work.config(
        &common::Config::fast(&server.base_url())
            .set("pacing.rate", "\"1000/s\"")
            .set("retry.max_attempts", "2")
            .set("retry.max_failure_ratio", "1.0"),
    );

    let output = work.send(&config, &[]).await;
    assert_exit!(output, 1);
    let results = work.results("campaign.results.csv");
    let not_sent = results
        .iter()
        .filter(|line| line["status"] != "SENT")
        .count();
    assert!(
        common::count(&results, "FAILED") > 100,
        "{:?}",
        common::statuses(&results)
    );
    let said = format!("{}{}", stderr(&output), stdout(&output));
    assert!(said.lines().count() <= 15, "{said}");
    assert!(
        said.contains("FAILED or DEFERRED: --resume tries them again"),
        "{said}"
    );

    let output = work.send(&config, &["--out", "again.csv", "-v"]).await;
    let lines_a_row = stderr(&output)
        .lines()
        .filter(|line| line.contains("not sent"))
        .count();
    let again = work.results("again.csv");
    let not_sent_again = again.iter().filter(|line| line["status"] != "SENT").count();
    assert_eq!(lines_a_row, not_sent_again, "{}", stderr(&output));
    assert!(not_sent > 0);
}

/// Headers a spreadsheet allows and a results file's one-line header does
/// not: a line break in a name, a name twice, a standard name in capitals.
/// Each value stays under its own header, and the file stays readable (a
/// check replaced on the next validate, a rehearsal rewritten at its end).
#[tokio::test(flavor = "multi_thread")]
async fn awkward_headers_keep_each_value_under_its_own() {
    let work = Workspace::new();
    work.write(
        "odd.csv",
        "to,\"Obs\nextra\",Nome,Nome,STATUS,check,contact_name,contact_phone\n\
         11987650001,o1,first,second,s1,c1,Ana,+55 11 3003-4000\n",
    );
    for _ in 0..2 {
        work.ok(&["validate", "odd.csv"]).await;
    }
    work.ok(&["send", "odd.csv", "--mock"]).await;
    for file in ["odd.check.csv", "odd.mock.csv"] {
        let text = std::fs::read_to_string(work.path(file)).unwrap();
        assert!(
            text.lines()
                .next()
                .unwrap()
                .ends_with(",finished_at,Obs extra,Nome,Nome (2)"),
            "{file}: {text}"
        );
        assert_eq!(text.lines().count(), 2, "{file}: {text}");
        let line = &work.results(file)[0];
        assert_eq!(line["Obs extra"], "o1", "{file}");
        assert_eq!(
            (line["Nome"].as_str(), line["Nome (2)"].as_str()),
            ("first", "second"),
            "{file}"
        );
    }
}

/// The check file is a report: validating again after fixing the file
/// replaces it; a file that is not this campaign's check is left alone.
#[tokio::test(flavor = "multi_thread")]
async fn validate_again_after_fixing_the_rows_replaces_the_check_file() {
    let work = Workspace::new();
    let mut campaign = common::campaign(2);
    campaign.push_str("+55 11 9876-543,Short,+55 11 3003-4000\n");
    work.write("leads.csv", &campaign);
    let output = work.fails(&["validate", "leads.csv"], 1).await;
    common::assert_has(&stdout(&output), "1 INVALID: fix those rows in the campaign file (the error column says how), and validate again");

    work.write("leads.csv", &common::campaign(3));
    work.ok(&["validate", "leads.csv"]).await;
    let check = work.results("leads.check.csv");
    assert_eq!(common::statuses(&check)["VALID"], 3, "{check:?}");

    // Another campaign's check, or a send's results, under --out: refused.
    work.write("other.csv", &common::campaign(1));
    let before = std::fs::read(work.path("leads.check.csv")).unwrap();
    for out in ["leads.check.csv"] {
        work.refuses(
            &["validate", "other.csv", "--out", out],
            "is the results file of the campaign `leads`",
        )
        .await;
    }
    assert_eq!(std::fs::read(work.path("leads.check.csv")).unwrap(), before);
}

/// An operator who rehearsed with --mock and looks at `numbers` learns why
/// the rehearsal is not there; a run with no config file says where one
/// was looked for.
#[tokio::test(flavor = "multi_thread")]
async fn numbers_says_rehearsals_are_not_recorded_and_a_missing_config_is_named() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(2));
    let ledger = work.fresh_ledger("ledger");
    work.ok(&["send", "campaign.csv", "--mock", "--ledger", &ledger])
        .await;
    let output = work.ok(&["numbers", "--ledger", &ledger]).await;
    common::assert_has(
        &stdout(&output),
        "the ledger knows no number yet; rehearsals (--mock, --dry-run, validate) are not recorded",
    );

    let output = work
        .fails(&["send", "campaign.csv", "--ledger", &ledger], 2)
        .await;
    let looked_for = work.path("home/config/interacto-bulk/config.toml");
    assert!(
        stderr(&output).contains(&format!(
            "no instance (the sending number): set INTERACTO_INSTANCE_ID, --instance, or \
             api.instance_id / api.instances in a config file (this run read no config file \
             (none given with --config or INTERACTO_CONFIG, and no {})",
            looked_for.display()
        )),
        "{}",
        stderr(&output)
    );
}

async fn assert_config_refused(command: &str, text: &str, named: &str) {
    let work = Workspace::new();
    let config = work.write("config.toml", text);
    work.write("campaign.csv", &common::campaign(1));
    let config = config.to_str().expect("test paths are UTF-8");

    work.refuses(&[command, "campaign.csv", "--config", config], named)
        .await;
    assert!(!work.path("campaign.results.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_config_with_an_unknown_key_is_refused_naming_the_key() {
    let text = "[pacing]\nrate = \"10/min\"\nmax_speed = 3\n";
    assert_config_refused("validate", text, "max_speed").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn defaults_below_the_floors_are_refused_at_start() {
    let text = "[pacing]\nmin_typing = 4\ndefault_typing = 1\n";
    assert_config_refused("validate", text, "pacing.default_typing").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn plain_http_to_another_host_is_refused() {
    let text = "[api]\nbase_url = \"http://api.interacto.io\"\n";
    assert_config_refused("send", text, "allow_insecure_http").await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_rate_flag_is_a_usage_error() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));

    let output = work
        .fails(&["send", "campaign.csv", "--mock", "--rate", "fast"], 2)
        .await;
    assert!(
        stderr(&output).contains("20/min"),
        "the error shows an example: {}",
        stderr(&output)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_campaign_without_a_required_column_is_refused_naming_it() {
    let work = Workspace::new();
    work.write("campaign.csv", "phone,name\n11987654321,Ana\n");

    let output = work.fails(&["send", "campaign.csv", "--mock"], 2).await;
    let error = stderr(&output);
    assert!(error.contains("to, contact_name, contact_phone"), "{error}");
    assert!(error.contains("[campaign.columns]"), "{error}");
    assert!(
        !work.path("campaign.results.csv").exists(),
        "nothing is written for a file that cannot be read"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_campaign_file_is_an_input_error() {
    let work = Workspace::new();
    work.refuses(&["validate", "nowhere.csv"], "nowhere.csv")
        .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn unknown_columns_are_carried_to_the_results_or_named_in_one_warning() {
    let work = Workspace::new();
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone,cidade,idade,status\n11987654321,Ana,551130034000,Recife,30,lead\n",
    );
    let warnings = |output: &std::process::Output| -> Vec<String> {
        stderr(output)
            .lines()
            .filter(|line| line.contains("WARN"))
            .map(String::from)
            .collect()
    };

    // Carried (results.keep_columns): only the one named like a results
    // column is not.
    let output = work.ok(&["validate", "campaign.csv"]).await;
    let said = warnings(&output);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("columns=status"), "{}", said[0]);

    let config = work
        .config(&common::Config::fast("http://127.0.0.1:9").set("results.keep_columns", "false"));
    let output = work
        .ok(&["validate", "campaign.csv", "--config", &config])
        .await;
    let said = warnings(&output);
    assert_eq!(said.len(), 1, "{said:?}");
    assert!(said[0].contains("cidade, idade, status"), "{}", said[0]);
    let header = std::fs::read_to_string(work.path("campaign.check.csv")).unwrap();
    assert!(
        header.lines().next().unwrap().ends_with(",finished_at"),
        "{header}"
    );
}

/// The results, check and rehearsal files carry the campaign's own columns
/// after the standard ones, under their own headers and in the campaign's
/// order, so they join back to the CRM; a resume after a re-export that
/// moved and added columns keeps the file's columns, found by name.
#[tokio::test(flavor = "multi_thread")]
async fn the_campaigns_own_columns_follow_the_standard_ones_in_every_file() {
    let server = common::embedded(interacto_bulk::api::MockOptions::default()).await;
    let work = Workspace::new();
    let campaign = "Nome;Telefone;Cidade;E-mail\n\
         Ana Souza;(11) 98765-4321;São Paulo;ana@x.com\n\
         João;(21) 1234-5;=HYPERLINK(\"x\");joao@x.com\n\
         Bia;(41) 99123-4567;Curitiba;bia@x.com\n";
    work.write("leads.csv", campaign);
    let mut config =
        std::fs::read_to_string(work.config(&common::Config::fast(&server.base_url()))).unwrap();
    config.push_str("[campaign.card]\nname = \"Loja\"\nphone = \"(11) 3003-4000\"\n");
    let config = work.write("card.toml", &config);
    let config = config.to_str().unwrap();
    let standard = interacto_bulk::results::COLUMNS[1..].join(",");

    for (args, file, first, exit) in [
        (vec!["validate", "leads.csv"], "leads.check.csv", "check", 1),
        (
            vec!["send", "leads.csv", "--mock"],
            "leads.mock.csv",
            "rehearsal",
            0,
        ),
        (
            vec!["send", "leads.csv", "--limit", "1"],
            "leads.results.csv",
            "campaign",
            // Rows are left past --limit.
            1,
        ),
    ] {
        let mut args = args.clone();
        args.extend(["--config", config]);
        work.fails(&args, exit).await;
        let text = std::fs::read_to_string(work.path(file)).unwrap();
        assert_eq!(
            text.lines().next().unwrap(),
            format!("{first},{standard},Nome,Telefone,Cidade,E-mail"),
            "{file}"
        );
        let lines = work.results(file);
        assert_eq!(lines[0]["Cidade"], "São Paulo", "{file}");
        assert_eq!(lines[0]["Telefone"], "(11) 98765-4321", "{file}");
        assert_eq!(lines[0]["to"], "5511987654321", "{file}");
        if lines.len() > 1 {
            assert_eq!(
                lines[1]["Cidade"], "'=HYPERLINK(\"x\")",
                "{file}: a formula stays text"
            );
            assert_eq!(lines[1]["E-mail"], "joao@x.com", "{file}");
        }
    }

    // Tomorrow's export: a new column, the others moved about.
    work.write(
        "leads.csv",
        "E-mail;Bairro;Telefone;Nome;Cidade\n\
         ana@x.com;Centro;(11) 98765-4321;Ana Souza;São Paulo\n\
         joao@x.com;Lapa;(21) 1234-5;João;Rio\n\
         bia@x.com;Batel;(41) 99123-4567;Bia;Curitiba\n",
    );
    let output = work
        .ok(&["send", "leads.csv", "--config", config, "--resume"])
        .await;
    assert_eq!(server.accepted(), 2, "Ana once, Bia once");
    assert!(
        stderr(&output).contains("not these new ones of the campaign file")
            && stderr(&output).contains("columns=Bairro"),
        "{}",
        stderr(&output)
    );
    let text = std::fs::read_to_string(work.path("leads.results.csv")).unwrap();
    assert!(
        text.lines()
            .next()
            .unwrap()
            .ends_with(",Nome,Telefone,Cidade,E-mail"),
        "{text}"
    );
    let lines = work.results("leads.results.csv");
    assert_eq!(lines.len(), 3, "{text}");
    for (line, (name, city)) in lines.iter().zip([
        ("Ana Souza", "São Paulo"),
        ("João", "Rio"),
        ("Bia", "Curitiba"),
    ]) {
        assert_eq!(
            (line["Nome"].as_str(), line["Cidade"].as_str()),
            (name, city),
            "{text}"
        );
    }
    assert_eq!(lines[2]["status"], "SENT");
}

#[tokio::test(flavor = "multi_thread")]
async fn help_lists_the_commands_and_flags() {
    let work = Workspace::new();
    let output = work.ok(&["send", "--help"]).await;
    for flag in [
        "--config",
        "--out",
        "--overwrite",
        "--dry-run",
        "--mock",
        "--limit",
        "--rate",
        "--concurrency",
        "--no-progress",
        "--summary",
        "--log-format",
        "--resume",
        "--resend-unknown",
        "--instance",
        "--no-wait",
        "--ledger",
    ] {
        assert!(stdout(&output).contains(flag), "send --help lacks {flag}");
    }
    let output = work.run(&["--help"]).await;
    for command in ["send", "validate", "mock-server", "numbers", "suppress"] {
        assert!(stdout(&output).contains(command), "--help lacks {command}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn json_logs_are_one_object_per_line() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));

    let output = work
        .ok(&["validate", "campaign.csv", "--log-format", "json"])
        .await;
    let lines: Vec<&str> = std::str::from_utf8(&output.stderr)
        .unwrap()
        .lines()
        .collect();
    assert!(!lines.is_empty());
    for line in lines {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|_| panic!("not JSON: {line}"));
    }
}
