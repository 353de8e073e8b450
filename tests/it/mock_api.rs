//! The embedded mock API, spoken to over real HTTP on 127.0.0.1.

use std::net::{Ipv4Addr, SocketAddr};
use std::process::Stdio;
use std::time::Duration;

use tokio::time::Instant;

use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, BufReader};

use crate::common::{stderr, Workspace};
use interacto_bulk::api::{MockOptions, MockServer};

fn body() -> Value {
    json!({"to": "5511999999999", "contact": {"name": "João Silva", "phone": "5511999999999"},
           "delay": 2, "typing": 8, "priority": 2, "tags": ["urgente", "lead"], "metadata": {"leadId": "1234533"}})
}

async fn start(options: MockOptions) -> MockServer {
    MockServer::start(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), options)
        .await
        .expect("the mock starts")
}

async fn post(server: &MockServer, key: Option<&str>, body: &Value) -> reqwest::Response {
    let mut request = reqwest::Client::new()
        .post(format!("{}/message/contact", server.base_url()))
        .header("Instance-Id", "66a09db606fd14660c8fc1d0")
        .json(body);
    if let Some(key) = key {
        request = request.header("Authorization", key);
    }
    request.send().await.expect("the mock answers")
}

#[tokio::test]
async fn a_valid_request_is_accepted_in_the_vendor_shape_with_a_fresh_id() {
    let server = start(MockOptions::default()).await;

    let first: Value = post(&server, Some("k"), &body())
        .await
        .json()
        .await
        .unwrap();
    let second = post(&server, Some("k"), &body()).await;

    assert_eq!(second.status(), 201);
    let second: Value = second.json().await.unwrap();
    assert_eq!(first["statusCode"], 201);
    assert_eq!(first["message"], "request successful");
    assert_eq!(first["data"]["status"], "QUEUED");
    assert_eq!(first["data"]["sended"], false);
    assert_eq!(first["data"]["instanceId"], "66a09db606fd14660c8fc1d0");
    assert_eq!(
        first["data"]["midia"],
        json!({"name": "João Silva", "phone": "5511999999999"})
    );
    assert_eq!(first["data"]["id"].as_str().unwrap().len(), 24);
    assert_ne!(first["data"]["id"], second["data"]["id"]);
    assert_eq!(server.accepted(), 2);
}

#[tokio::test]
async fn requests_outside_the_contract_are_answered_400_with_what_is_wrong() {
    let server = start(MockOptions::default()).await;
    let mut bad = body();
    bad["to"] = json!("+55 11 99999-9999");

    let response = post(&server, Some("k"), &bad).await;

    assert_eq!(response.status(), 400);
    let error: Value = response.json().await.unwrap();
    assert!(
        error["message"]
            .as_str()
            .unwrap()
            .contains("to must be E.164"),
        "{error}"
    );
    assert_eq!(server.accepted(), 0);
}

#[tokio::test]
async fn a_missing_or_wrong_key_is_answered_401() {
    let server = start(MockOptions {
        require_key: Some("right".into()),
        ..MockOptions::default()
    })
    .await;

    assert_eq!(post(&server, None, &body()).await.status(), 401);
    assert_eq!(post(&server, Some("wrong"), &body()).await.status(), 401);
    assert_eq!(post(&server, Some("right"), &body()).await.status(), 201);
}

#[tokio::test]
async fn faults_can_be_injected() {
    let throttled = start(MockOptions {
        throttle_rate: 1.0,
        retry_after: 7,
        ..MockOptions::default()
    })
    .await;
    let response = post(&throttled, Some("k"), &body()).await;
    assert_eq!(response.status(), 429);
    assert_eq!(response.headers()["retry-after"], "7");

    let failing = start(MockOptions {
        failure_rate: 1.0,
        ..MockOptions::default()
    })
    .await;
    assert_eq!(post(&failing, Some("k"), &body()).await.status(), 500);

    let revoked = start(MockOptions {
        auth_fail_after: Some(2),
        ..MockOptions::default()
    })
    .await;
    let statuses = [
        post(&revoked, Some("k"), &body()).await.status(),
        post(&revoked, Some("k"), &body()).await.status(),
        post(&revoked, Some("k"), &body()).await.status(),
    ];
    assert_eq!(statuses.map(|status| status.as_u16()), [201, 201, 401]);
}

// The clock is paused: it moves only when every task waits, as far as the
// next timer, so the mock's wait is measured without taking real time.
#[tokio::test(start_paused = true)]
async fn latency_delays_each_answer() {
    let server = start(MockOptions {
        latency: Duration::from_millis(200),
        ..MockOptions::default()
    })
    .await;
    let started = Instant::now();

    post(&server, Some("k"), &body()).await;

    assert!(started.elapsed() >= Duration::from_millis(200));
}

#[tokio::test]
async fn the_mock_server_command_prints_its_address_and_serves() {
    let work = Workspace::new();
    let mut child = work
        .command(
            &[
                "mock-server",
                "--listen",
                "127.0.0.1:0",
                "--require-key",
                "k",
            ],
            &[],
        )
        .stdout(Stdio::piped())
        .spawn()
        .expect("the binary starts");
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .expect("the address is printed at once")
        .unwrap()
        .expect("a line");
    let base_url = first.rsplit(' ').next().unwrap().to_string();
    assert!(base_url.starts_with("http://127.0.0.1:"), "{first}");

    let response = reqwest::Client::new()
        .post(format!("{base_url}/message/contact"))
        .header("Authorization", "k")
        .header("Instance-Id", "i")
        .json(&body())
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 201);
    child.kill().await.unwrap();
}

#[tokio::test]
async fn the_mock_server_refuses_every_rate_outside_zero_to_one() {
    let work = Workspace::new();
    for flag in ["--failure-rate", "--throttle-rate", "--drop-rate"] {
        for value in ["2", "-0.1", "NaN", "often"] {
            let output = work
                .run(&["mock-server", "--listen", "127.0.0.1:0", flag, value])
                .await;
            assert_exit!(output, 2, "{flag} {value}");
            let error = stderr(&output);
            assert!(
                error.contains(flag) && error.contains("between 0 and 1"),
                "{error}"
            );
        }
    }
}

/// The contract bounds `priority` to 64 signed bits (what the tool sends),
/// and the mock holds to it at both ends: the largest goes through, one
/// more is refused naming the field (an OpenAPI fuzzer found the two
/// disagreeing).
#[tokio::test]
async fn priority_is_a_64_bit_integer_in_the_contract_and_in_the_mock() {
    let server = start(MockOptions::default()).await;
    let contract =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/api/openapi.yaml")).unwrap();
    assert!(
        contract.contains("maximum: 9223372036854775807"),
        "the bound is written down"
    );

    let mut largest = body();
    largest["priority"] = json!(i64::MAX);
    let accepted = post(&server, Some("k"), &largest).await;
    assert_eq!(accepted.status(), 201);
    let answer: Value = accepted.json().await.unwrap();
    assert_eq!(answer["data"]["priority"], json!(i64::MAX));

    let mut beyond = body();
    beyond["priority"] = json!(u64::try_from(i64::MAX).unwrap() + 1);
    let refused = post(&server, Some("k"), &beyond).await;
    assert_eq!(refused.status(), 400);
    let answer: Value = refused.json().await.unwrap();
    assert!(
        answer
            .to_string()
            .contains("priority must be an integer of 64 bits"),
        "{answer}"
    );
}
