//! `send` end to end: the real binary against a real HTTP server on 127.0.0.1.

use std::collections::HashSet;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{json, Value};
use wiremock::matchers::{body_partial_json, header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

use crate::common::{
    self, accepted, embedded, ended, finish, line, server_expecting_no_request, stderr, stdout,
    wait_for, Config, Workspace, API_KEY,
};
use interacto_bulk::api::MockOptions;

#[tokio::test(flavor = "multi_thread")]
async fn every_row_is_sent_once_with_the_headers_and_body_of_the_contract() {
    let server = MockServer::start().await;
    Mock::given(method("POST"))
        .and(path("/message/contact"))
        .and(header("Authorization", API_KEY))
        .and(header("Instance-Id", "inst-1"))
        .and(header("Content-Type", "application/json"))
        .respond_with(accepted("66b3c041eac929f51c6f160f"))
        .expect(3)
        .mount(&server)
        .await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.uri()));
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone,delay,typing,priority,tags,metadata,metadata.city\n\
         (11) 98765-4321,Ana Souza,+55 11 3003-4000,3,6,2,urgente|lead,\"{\"\"leadId\"\": \"\"1234533\"\"}\",Recife\n\
         +55 21 99876-5432,João Silva,+55 11 3003-4000,,,,,,\n\
         5531988887777,Maria Santos,551130034000,\"2,5\",,,\"[\"\"a\"\"]\",,\n",
    );

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 0);
    let mut bodies: Vec<Value> = server
        .received_requests()
        .await
        .unwrap()
        .iter()
        .map(|request| request.body_json().unwrap())
        .collect();
    bodies.sort_by_key(|body| body["to"].as_str().unwrap().to_string());
    assert_eq!(
        bodies,
        vec![
            json!({"to": "5511987654321", "contact": {"name": "Ana Souza", "phone": "551130034000"},
                   "delay": 3, "typing": 6, "priority": 2, "tags": ["urgente", "lead"],
                   "metadata": {"leadId": "1234533", "city": "Recife"}}),
            json!({"to": "5521998765432", "contact": {"name": "João Silva", "phone": "551130034000"},
                   "delay": 2, "typing": 5}),
            json!({"to": "5531988887777", "contact": {"name": "Maria Santos", "phone": "551130034000"},
                   "delay": 2.5, "typing": 5, "tags": ["a"]}),
        ]
    );
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 3);
    for line in &results {
        assert_eq!(line["status"], "SENT");
        assert_eq!(line["message_id"], "66b3c041eac929f51c6f160f");
        assert_eq!(line["api_status"], "QUEUED");
        assert_eq!(line["http_status"], "201");
        assert_eq!(line["attempts"], "1");
        assert_eq!(line["instance_id"], "inst-1");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn delay_and_typing_below_the_floors_are_raised_and_the_results_say_so() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let config = work.config(
        &settings
            .set("pacing.min_delay", "4")
            .set("pacing.min_typing", "6")
            .set("pacing.default_delay", "5")
            .set("pacing.default_typing", "7"),
    );
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone,delay,typing\n\
         11987654321,Ana,551130034000,1,2\n\
         11987654322,Bia,551130034000,,\n\
         11987654323,Caio,551130034000,9,9\n",
    );

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 0);
    let timing = |to: &str| {
        let body = server
            .received()
            .into_iter()
            .map(|request| request.body)
            .find(|body| body["to"] == to)
            .expect("the row was sent");
        (
            body["delay"].as_f64().unwrap(),
            body["typing"].as_f64().unwrap(),
        )
    };
    assert_eq!(timing("5511987654321"), (4.0, 6.0));
    assert_eq!(timing("5511987654322"), (5.0, 7.0));
    assert_eq!(timing("5511987654323"), (9.0, 9.0));
    let results = work.results("campaign.results.csv");
    let raised = line(&results, 2);
    assert_eq!(
        (raised["delay"].as_str(), raised["typing"].as_str()),
        ("4", "6")
    );
    assert!(
        raised["error"].contains("delay raised from 1"),
        "{}",
        raised["error"]
    );
    assert_eq!(line(&results, 4)["error"], "");
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_and_duplicate_rows_are_never_sent_and_are_reported() {
    let (server, work, config) = common::against_the_mock().await;
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone,delay\n\
         11987654321,Ana,551130034000,\n\
         12345,Bia,551130034000,\n\
         11987654322,,551130034000,\n\
         (11) 98765-4321,Ana again,+55 11 3003 4000,\n\
         11987654323,Caio,551130034000,soon\n\
         11987654324,Duda,551130034000,\n",
    );

    let output = work.send(&config, &[]).await;

    assert_exit!(
        output,
        0,
        "rows never to be sent leave the campaign complete"
    );
    let sent: HashSet<String> = common::recipients(&server).into_iter().collect();
    assert_eq!(
        sent,
        HashSet::from(["5511987654321".to_string(), "5511987654324".to_string()])
    );
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 6, "one line per input row");
    let status = |row| line(&results, row)["status"].clone();
    let error = |row| line(&results, row)["error"].clone();
    assert_eq!((status(2), status(7)), ("SENT".into(), "SENT".into()));
    assert_eq!(status(3), "INVALID");
    assert!(error(3).starts_with("to:"), "{}", error(3));
    assert_eq!(status(4), "INVALID");
    assert_eq!(error(4), "contact_name: is empty");
    assert_eq!(status(5), "DUPLICATE");
    assert!(error(5).contains("row 2"), "{}", error(5));
    assert_eq!(status(6), "INVALID");
    assert!(
        error(6).contains("delay: `soon` is not a number"),
        "{}",
        error(6)
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_dry_run_sends_nothing_and_marks_rows_valid() {
    let server = server_expecting_no_request().await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.uri()));
    work.write("campaign.csv", &common::campaign(5));

    for args in [
        vec!["send", "campaign.csv", "--dry-run"],
        vec!["validate", "campaign.csv", "--overwrite"],
    ] {
        let mut args = args;
        args.extend(["--config", &config]);
        let output = work.ok(&args).await;
        common::assert_has(&stdout(&output), "dry run");
        let results = work.results("campaign.check.csv");
        assert_eq!(results.len(), 5);
        assert!(results
            .iter()
            .all(|line| line["status"] == "VALID" && line["message_id"].is_empty()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn an_existing_results_file_is_refused_without_overwrite_and_nothing_is_sent() {
    let server = server_expecting_no_request().await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.uri()));
    work.write("campaign.csv", &common::campaign(2));
    work.write("campaign.results.csv", "precious earlier results\n");

    let output = work.send(&config, &[]).await;

    common::assert_refused(&output, "--overwrite");
    assert_eq!(
        std::fs::read_to_string(work.path("campaign.results.csv")).unwrap(),
        "precious earlier results\n"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn overwrite_replaces_the_results_file() {
    let (_server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(2));
    work.write("out.csv", "old\n");

    let output = work
        .send(&config, &["--out", "out.csv", "--overwrite"])
        .await;

    assert_exit!(output, 0);
    assert_eq!(work.results("out.csv").len(), 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn refused_messages_are_failed_with_the_http_status_and_the_api_message() {
    let server = MockServer::start().await;
    Mock::given(body_partial_json(json!({"to": "5511987654321"})))
        .respond_with(
            ResponseTemplate::new(400)
                .set_body_json(json!({"statusCode": 400, "message": "number not on WhatsApp"})),
        )
        .mount(&server)
        .await;
    Mock::given(body_partial_json(json!({"to": "5511987654322"})))
        .respond_with(ResponseTemplate::new(201).set_body_string("not json"))
        .mount(&server)
        .await;
    Mock::given(method("POST"))
        .respond_with(accepted("ok-1"))
        .mount(&server)
        .await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.uri()));
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone\n11987654321,Ana,551130034000\n11987654322,Bia,551130034000\n11987654323,Caio,551130034000\n",
    );

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 1);
    let results = work.results("campaign.results.csv");
    let refused = line(&results, 2);
    assert_eq!(
        (refused["status"].as_str(), refused["http_status"].as_str()),
        ("FAILED", "400")
    );
    assert!(
        refused["error"].contains("number not on WhatsApp"),
        "{}",
        refused["error"]
    );
    let unreadable = line(&results, 3);
    assert_eq!(
        unreadable["status"], "UNKNOWN",
        "a 201 we cannot read may still have been queued"
    );
    assert_eq!(line(&results, 4)["status"], "SENT");
}

#[tokio::test(flavor = "multi_thread")]
async fn an_api_that_cannot_be_reached_fails_the_rows_and_the_run_ends() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let work = Workspace::new();
    let config = work.config(&Config::fast(&format!("http://127.0.0.1:{port}")));
    work.write("campaign.csv", &common::campaign(2));

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 1);
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 2);
    assert!(results
        .iter()
        .all(|line| line["status"] == "FAILED" && line["error"].contains("cannot reach")));
}

#[tokio::test(flavor = "multi_thread")]
async fn concurrency_bounds_the_requests_in_flight() {
    let server = embedded(MockOptions {
        latency: Duration::from_millis(150),
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()));
    work.write("campaign.csv", &common::campaign(12));

    let output = work.send(&config, &["--concurrency", "3"]).await;

    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 12);
    assert!(
        server.most_in_flight() <= 3,
        "{} in flight",
        server.most_in_flight()
    );
    assert!(
        server.most_in_flight() >= 2,
        "the pool did run requests side by side"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_appears_in_no_output_or_file_even_at_trace_level() {
    // Slow answers keep the run going while its journal and lock file are read.
    let server = embedded(MockOptions {
        require_key: Some(API_KEY.to_string()),
        latency: Duration::from_millis(300),
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()).set("pacing.concurrency", "1"));
    work.write(
        "campaign.csv",
        &format!("{}12345,Bad Row,551130034000\n", common::campaign(3)),
    );
    let args = ["send", "campaign.csv", "--config", &config];
    let child = work
        .command(
            &[&args[..], &["-vv", "--summary", "json"]].concat(),
            &[("INTERACTO_API_KEY", API_KEY), ("RUST_LOG", "trace")],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("the binary starts");

    wait_for("a request in flight", || server.requests() >= 1).await;
    let journal = std::fs::read_to_string(work.path("campaign.results.csv.journal")).unwrap();
    let lock = std::fs::read_to_string(work.path("campaign.results.csv.lock")).unwrap();
    let output = ended(child).await;

    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 3, "the key reached the server");
    assert!(
        journal.starts_with("run "),
        "the journal was read mid-run: {journal}"
    );
    assert!(lock.contains("pid"), "the lock was read mid-run: {lock}");
    let results = std::fs::read_to_string(work.path("campaign.results.csv")).unwrap();
    let ledger = std::fs::read(work.path("home/state/interacto-bulk/ledger.db")).unwrap();
    for (place, text) in [
        ("stdout", stdout(&output)),
        ("stderr", stderr(&output)),
        ("results", results),
        ("journal", journal),
        ("lock file", lock),
        ("ledger", String::from_utf8_lossy(&ledger).into_owned()),
    ] {
        assert!(!text.contains(API_KEY), "the API key leaked into {place}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn the_api_key_is_taken_from_the_config_file_when_the_environment_has_none() {
    let server = embedded(MockOptions {
        require_key: Some("file-key".to_string()),
        ..MockOptions::default()
    })
    .await;
    let work = Workspace::new();
    let config = work.config(&Config::fast(&server.base_url()).set("api.api_key", "\"file-key\""));
    work.write("campaign.csv", &common::campaign(1));

    let output = work
        .run_with_env(&["send", "campaign.csv", "--config", &config], &[])
        .await;

    assert_exit!(output, 0);
    assert_eq!(
        server.received()[0].authorization.as_deref(),
        Some("file-key")
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn sending_without_credentials_stops_before_anything_is_written() {
    let work = Workspace::new();
    work.write("campaign.csv", &common::campaign(1));

    let output = work
        .run_with_env(
            &["send", "campaign.csv"],
            &[("INTERACTO_INSTANCE_ID", "inst-1")],
        )
        .await;

    common::assert_refused(&output, "INTERACTO_API_KEY");
    assert!(!work.path("campaign.results.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn limit_reads_only_the_first_rows() {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(10));

    let output = work.send(&config, &["--limit", "4"]).await;

    // Rows are left past --limit: not complete.
    assert_exit!(output, 1);
    assert_eq!(server.accepted(), 4);
    let rows: Vec<String> = work
        .results("campaign.results.csv")
        .iter()
        .map(|line| line["row"].clone())
        .collect();
    assert_eq!(rows.len(), 4);
    assert!(rows
        .iter()
        .all(|row| ["2", "3", "4", "5"].contains(&row.as_str())));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_campaign_can_come_from_standard_input() {
    let (server, work, config) = common::against_the_mock().await;
    let campaign = work.write("campaign.csv", &common::campaign(3));
    let piped = |extra: &[&str]| {
        let mut args = vec!["send", "-", "--config", &config, "--out", "piped.csv"];
        args.extend_from_slice(extra);
        let mut command = work.command(&args, &[("INTERACTO_API_KEY", API_KEY)]);
        command.stdin(std::fs::File::open(&campaign).unwrap());
        finish(command)
    };

    let output = piped(&[]).await;
    assert_exit!(output, 2, "standard input has no name to go by");
    assert!(
        stderr(&output).contains("needs a name") && stderr(&output).contains("--campaign NAME"),
        "{}",
        stderr(&output)
    );
    assert_eq!(server.requests(), 0);

    let output = piped(&["--campaign", "leads"]).await;

    assert_exit!(output, 0);
    let results = work.results("piped.csv");
    assert_eq!(results.len(), 3);
    assert!(results.iter().all(|line| line["campaign"] == "leads"));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_json_summary_counts_every_status() {
    let (_server, work, config) = common::against_the_mock().await;
    work.write(
        "campaign.csv",
        &format!("{}bad,X,551130034000\n", common::campaign(2)),
    );

    let output = work.send(&config, &["--summary", "json"]).await;

    let summary: Value =
        serde_json::from_str(stdout(&output).trim()).expect("stdout is one JSON object");
    assert_eq!(summary["counts"]["SENT"], 2);
    assert_eq!(summary["counts"]["INVALID"], 1);
    assert_eq!(summary["rows"], 3);
    assert_eq!(summary["campaign_name"], "campaign");
    assert_eq!(summary["state"]["never"], 1);
    assert_eq!(summary["exit_code"], 0, "an INVALID row is never sent");
    assert!(
        summary["next_step"].as_str().unwrap().contains("1 INVALID"),
        "{summary}"
    );
    assert_eq!(summary["results"], "campaign.results.csv");
    assert_exit!(output, 0);
}

/// The API's documented 201 names instance `66a09db606fd14660c8fc1d0`
/// whatever was sent: a server answering the vendor's example word for
/// word queues every message. They are SENT, each line says which instance
/// the answer named, and the log and the summary say it once.
#[tokio::test(flavor = "multi_thread")]
async fn the_vendors_own_answer_naming_another_instance_is_sent_and_said_once() {
    let server = MockServer::start().await;
    let example: Value = serde_json::from_str(
        r#"{"statusCode":201,"message":"request successful","data":{"id":"66b3c041eac929f51c6f160f",
            "instanceId":"66a09db606fd14660c8fc1d0","to":"551198888888","midia":{"name":"Joe Doe","phone":"5511999999999"},
            "status":"QUEUED","sended":false,"priority":123,"timestamp":"2023-11-07T05:31:56Z","metadata":{}}}"#,
    )
    .unwrap();
    Mock::given(method("POST"))
        .respond_with(ResponseTemplate::new(201).set_body_json(example))
        .mount(&server)
        .await;
    let work = Workspace::new();
    let config = work.config(
        &Config::fast(&server.uri())
            .ledger(&work.fresh_ledger("ledger"))
            .set("pacing.rate", "\"1000/s\""),
    );
    // More rows than the failures that halt a run (20).
    work.write("campaign.csv", &common::campaign(25));

    let output = work.send(&config, &["--summary", "json"]).await;

    assert_exit!(output, 0);
    assert_eq!(server.received_requests().await.unwrap().len(), 25);
    let results = work.results("campaign.results.csv");
    assert_eq!(common::count(&results, "SENT"), 25, "{results:?}");
    assert!(results.iter().all(|line| {
        line["message_id"] == "66b3c041eac929f51c6f160f"
            && line["error"].contains("names instance 66a09db606fd14660c8fc1d0, not inst-1")
    }));
    assert_eq!(
        stderr(&output).matches("check api.instance_id").count(),
        1,
        "said once: {}",
        stderr(&output)
    );
    let summary: Value = serde_json::from_str(&stdout(&output)).unwrap();
    assert_eq!(
        summary["answered_for"]["inst-1"], "66a09db606fd14660c8fc1d0",
        "{summary}"
    );
}
