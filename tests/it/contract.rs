//! The API contract in `api/openapi.yaml` holds on both sides: every
//! request the client sends, and every answer the embedded mock gives, is
//! valid against its schema there. So the mock cannot drift from the
//! contract unnoticed, and neither can the client.

use serde_json::{json, Value};

use crate::cli::repo;
use crate::common::{self, embedded, API_KEY};
use interacto_bulk::api::MockOptions;

/// The contract's schemas, as one JSON document whose `$ref`s resolve.
fn contract() -> Value {
    let text = std::fs::read_to_string(repo("api/openapi.yaml")).expect("api/openapi.yaml");
    serde_norway::from_str(&text).expect("the contract is valid YAML")
}

/// A validator for `#/components/schemas/<name>` of the contract.
fn schema(name: &str) -> jsonschema::Validator {
    let contract = contract();
    let document = json!({
        "$ref": format!("#/components/schemas/{name}"),
        "components": contract["components"],
    });
    jsonschema::draft7::new(&document).expect("the contract's schemas compile")
}

fn assert_valid(validator: &jsonschema::Validator, value: &Value, what: &str) {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .map(|error| format!("{} at {}", error, error.instance_path()))
        .collect();
    assert!(errors.is_empty(), "{what}: {errors:?}\n{value:#}");
}

#[tokio::test(flavor = "multi_thread")]
async fn every_request_the_client_sends_meets_the_contract() {
    let (server, work, config) = common::against_the_mock().await;
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone,delay,typing,priority,tags,metadata,metadata.cidade\n\
         (11) 98765-4321,Ana,+55 11 3003-4000,\"2,5\",,3,lead|sp,\"{\"\"leadId\"\": 7}\",São Paulo\n\
         +351 912 345 678,Rui,+55 11 3003-4000,,,,,,\n",
    );

    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);

    let message = schema("ContactMessage");
    let received = server.received();
    assert_eq!(received.len(), 2);
    for request in received {
        assert_valid(&message, &request.body, "a request body");
        assert!(request.instance_id.is_some_and(|id| !id.is_empty()));
        assert_eq!(request.authorization.as_deref(), Some(API_KEY));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn every_answer_of_the_mock_meets_the_contract() {
    let accepted = schema("Accepted");
    let error = schema("Error");
    let body = json!({
        "to": "5511987654321",
        "contact": {"name": "Ana", "phone": "551130034000"},
        "delay": 2, "typing": 5, "priority": 1, "tags": ["a"], "metadata": {"k": "v"}
    });
    let client = reqwest::Client::new();
    let post = |base: String, key: Option<&'static str>, body: Value| {
        let mut request = client
            .post(format!("{base}/message/contact"))
            .header("Instance-Id", "inst-1")
            .json(&body);
        if let Some(key) = key {
            request = request.header("Authorization", key);
        }
        request.send()
    };

    let plain = embedded(MockOptions::default()).await;
    let answer = post(plain.base_url(), Some(API_KEY), body.clone())
        .await
        .unwrap();
    assert_eq!(answer.status(), 201);
    assert_valid(&accepted, &answer.json().await.unwrap(), "a 201");

    for (key, sent, status) in [
        (None, body.clone(), 401),
        (Some(API_KEY), json!({"to": "0"}), 400),
        (
            Some(API_KEY),
            json!({"contact": {"name": "", "phone": "1"}}),
            400,
        ),
    ] {
        let answer = post(plain.base_url(), key, sent).await.unwrap();
        assert_eq!(answer.status(), status);
        assert_valid(
            &error,
            &answer.json().await.unwrap(),
            &format!("a {status}"),
        );
    }

    let throttling = embedded(MockOptions {
        throttle_rate: 1.0,
        retry_after: 3,
        ..MockOptions::default()
    })
    .await;
    let answer = post(throttling.base_url(), Some(API_KEY), body.clone())
        .await
        .unwrap();
    assert_eq!(answer.status(), 429);
    let retry_after = answer.headers()["retry-after"]
        .to_str()
        .unwrap()
        .to_string();
    assert!(
        retry_after.parse::<u64>().is_ok(),
        "Retry-After is an integer: {retry_after}"
    );
    assert_valid(&error, &answer.json().await.unwrap(), "a 429");

    let failing = embedded(MockOptions {
        failure_rate: 1.0,
        ..MockOptions::default()
    })
    .await;
    let answer = post(failing.base_url(), Some(API_KEY), body).await.unwrap();
    assert_eq!(answer.status(), 500);
    assert_valid(&error, &answer.json().await.unwrap(), "a 500");
}

#[test]
fn the_contract_refuses_what_the_api_would() {
    // The schema is not vacuous: a body the API would refuse fails it.
    let message = schema("ContactMessage");
    for bad in [
        json!({"to": "+5511987654321", "contact": {"name": "Ana", "phone": "551130034000"}}),
        json!({"to": "5511987654321"}),
        json!({"to": "5511987654321", "contact": {"name": "", "phone": "551130034000"}}),
        json!({"to": "5511987654321", "contact": {"name": "Ana", "phone": "551130034000"}, "delay": -1}),
    ] {
        assert!(!message.is_valid(&bad), "{bad}");
    }
}
