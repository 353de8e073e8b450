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
