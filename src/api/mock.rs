//! The embedded mock API: `POST /message/contact` as `api/openapi.yaml` says,
//! checking headers and body, answering in the vendor's shape, with faults on
//! request for rehearsals and tests.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use super::wire::{Accepted, AcceptedMessage, ApiError};

/// How the mock behaves. The default accepts every well-formed request at once.
#[derive(Debug, Clone, Default)]
pub struct MockOptions {
    /// Only this key is accepted; without it any non-empty key is.
    pub require_key: Option<String>,
    /// Share of requests answered 500.
    pub failure_rate: f64,
    /// The first this many requests answered 500: a fault at a known place.
    pub fail_first: u64,
    /// Share of requests answered 429 with `Retry-After`.
    pub throttle_rate: f64,
    /// Seconds in `Retry-After`.
    pub retry_after: u64,
    /// Wait before each answer.
    pub latency: Duration,
    /// Answer 401 to everything once this many messages were accepted.
    pub auth_fail_after: Option<u64>,
    /// Instances whose requests are answered 401 (a number that was disconnected).
    pub revoked_instances: Vec<String>,
    /// Share of requests whose message is queued but whose answer is cut off
    /// (the connection drops after the headers): the client cannot know.
    pub drop_rate: f64,
    /// Keep every request, for tests that inspect them.
    pub record: bool,
}

/// One request the mock received, kept when `record` is on.
#[derive(Debug, Clone)]
pub struct Received {
    pub instance_id: Option<String>,
    pub authorization: Option<String>,
    pub body: Value,
    /// The HTTP status the mock answered with.
    pub answered: u16,
    /// When the request arrived.
    pub at: std::time::Instant,
}

struct MockState {
    options: MockOptions,
    accepted: AtomicU64,
    requests: AtomicU64,
    /// Of `fail_first`, the errors still to give.
    failures_left: AtomicU64,
    in_flight: AtomicU64,
    most_in_flight: AtomicU64,
    received: Mutex<Vec<Received>>,
    /// First half of every message id, so ids differ between mock runs.
    id_prefix: u32,
}

/// A running mock; it stops when [`MockServer::stop`] is called or it is dropped.
pub struct MockServer {
    addr: SocketAddr,
    state: Arc<MockState>,
    shutdown: CancellationToken,
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl MockServer {
    /// Listens on `listen` (port 0 picks a free one) and serves in the background.
    pub async fn start(listen: SocketAddr, options: MockOptions) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(MockState {
            failures_left: AtomicU64::new(options.fail_first),
            options,
            accepted: AtomicU64::new(0),
            requests: AtomicU64::new(0),
            in_flight: AtomicU64::new(0),
            most_in_flight: AtomicU64::new(0),
            received: Mutex::new(Vec::new()),
            id_prefix: jiff::Timestamp::now().as_second() as u32,
        });
        let router = Router::new()
            .route("/message/contact", post(send_contact))
            .with_state(state.clone());
        let shutdown = CancellationToken::new();
        let stopped = shutdown.clone().cancelled_owned();
        let task = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(stopped)
                .await
        });
        Ok(MockServer {
            addr,
            state,
            shutdown,
            task: Some(task),
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`, for `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many messages were answered 201.
    pub fn accepted(&self) -> u64 {
        self.state.accepted.load(Ordering::Relaxed)
    }

    /// How many requests arrived, answered or not.
    pub fn requests(&self) -> u64 {
        self.state.requests.load(Ordering::Relaxed)
    }

    /// The most requests that were being answered at one moment.
    pub fn most_in_flight(&self) -> u64 {
        self.state.most_in_flight.load(Ordering::Relaxed)
    }

    /// Every request so far (only with `record`).
    pub fn received(&self) -> Vec<Received> {
        self.state
            .received
            .lock()
            .expect("no request handler panics holding the lock")
            .clone()
    }

    /// Stops taking connections and waits for open ones to finish.
    pub async fn stop(mut self) {
        self.shutdown.cancel();
        if let Some(task) = self.task.take() {
            let _ = task.await;
        }
    }

    /// Serves until the token is cancelled.
    pub async fn serve_until(mut self, token: CancellationToken) -> std::io::Result<()> {
        token.cancelled().await;
        self.shutdown.cancel();
        match self.task.take() {
            Some(task) => task.await.unwrap_or(Ok(())),
            None => Ok(()),
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

async fn send_contact(
    State(state): State<Arc<MockState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let options = &state.options;
    let _counted = InFlight::enter(&state);
    // tokio's clock: a test on its paused clock times arrivals on it.
    let at = tokio::time::Instant::now().into_std();
    if !options.latency.is_zero() {
        tokio::time::sleep(options.latency).await;
    }
    let parsed: Option<Value> = serde_json::from_slice(&body).ok();
    let response = answer(&state, &headers, parsed.as_ref());
    debug!(
        instance = %headers
            .get("instance-id")
            .and_then(|value| value.to_str().ok())
            .unwrap_or("-"),
        to = %parsed
            .as_ref()
            .and_then(|body| body["to"].as_str())
            .unwrap_or("-"),
        status = response.status().as_u16(),
        "answered"
    );
    if options.record {
        let text = |name| {
            headers
                .get(name)
                .and_then(|value: &HeaderValue| value.to_str().ok())
                .map(String::from)
        };
        state
            .received
            .lock()
            .expect("no request handler panics holding the lock")
            .push(Received {
                instance_id: text("instance-id"),
                authorization: text("authorization"),
                body: parsed.unwrap_or(Value::Null),
                answered: response.status().as_u16(),
                at,
            });
    }
    response
}

/// Counts a request as in flight until it is answered or its client goes away.
struct InFlight<'a>(&'a MockState);

impl<'a> InFlight<'a> {
    fn enter(state: &'a MockState) -> Self {
        state.requests.fetch_add(1, Ordering::SeqCst);
        let now = state.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        state.most_in_flight.fetch_max(now, Ordering::SeqCst);
        InFlight(state)
    }
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// The answer to one request: refused as the API refuses it, a fault
/// injected at the rates asked for, or the message queued.
fn answer(state: &MockState, headers: &HeaderMap, body: Option<&Value>) -> Response {
    let (instance_id, body) = match admitted(state, headers, body) {
        Ok(admitted) => admitted,
        Err((status, message)) => return error(status, &message),
    };
    if let Some(fault) = injected_fault(state) {
        return fault;
    }
    let serial = state.accepted.fetch_add(1, Ordering::Relaxed);
    if fastrand::f64() < state.options.drop_rate {
        // Queued, but the answer never arrives whole.
        let cut = futures_util::stream::once(async {
            Err::<Bytes, _>(std::io::Error::other("connection dropped by the mock"))
        });
        return (StatusCode::CREATED, Body::from_stream(cut)).into_response();
    }
    queued(state, serial, instance_id, body)
}

/// A header's text, trimmed; empty when absent or not text.
fn header_text<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|value: &HeaderValue| value.to_str().ok())
        .unwrap_or("")
        .trim()
}

/// The request's instance and body, or the status and message the API
/// refuses it with: a key missing, wrong or revoked, an instance missing or
/// disconnected, a body that is not JSON or breaks the contract.
fn admitted<'a>(
    state: &MockState,
    headers: &'a HeaderMap,
    body: Option<&'a Value>,
) -> Result<(&'a str, &'a Value), (StatusCode, String)> {
    let options = &state.options;
    let key = header_text(headers, header::AUTHORIZATION.as_str());
    if key.is_empty()
        || options
            .require_key
            .as_deref()
            .is_some_and(|wanted| wanted != key)
    {
        return Err((
            StatusCode::UNAUTHORIZED,
            "invalid or missing API key".to_string(),
        ));
    }
    if options
        .auth_fail_after
        .is_some_and(|limit| state.accepted.load(Ordering::Relaxed) >= limit)
    {
        return Err((StatusCode::UNAUTHORIZED, "API key revoked".to_string()));
    }
    let instance_id = header_text(headers, "instance-id");
    if instance_id.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            "missing Instance-Id header".to_string(),
        ));
    }
    if options
        .revoked_instances
        .iter()
        .any(|revoked| revoked == instance_id)
    {
        return Err((
            StatusCode::UNAUTHORIZED,
            "instance disconnected".to_string(),
        ));
    }
    if !header_text(headers, header::CONTENT_TYPE.as_str()).starts_with("application/json") {
        return Err((
            StatusCode::BAD_REQUEST,
            "Content-Type must be application/json".to_string(),
        ));
    }
    let Some(body) = body else {
        return Err((StatusCode::BAD_REQUEST, "the body is not JSON".to_string()));
    };
    let problems = contract_problems(body);
    if !problems.is_empty() {
        return Err((StatusCode::BAD_REQUEST, problems.join("; ")));
    }
    Ok((instance_id, body))
}

/// A throttle (429 with Retry-After) or a server error, at the rates the
/// options ask for (or the first requests' errors); `None` for most requests.
fn injected_fault(state: &MockState) -> Option<Response> {
    let options = &state.options;
    let first = state
        .failures_left
        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |left| {
            left.checked_sub(1)
        })
        .is_ok();
    if fastrand::f64() < options.throttle_rate {
        let mut response = error(StatusCode::TOO_MANY_REQUESTS, "too many requests");
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(options.retry_after));
        return Some(response);
    }
    if first || fastrand::f64() < options.failure_rate {
        return Some(error(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal error (injected by the mock)",
        ));
    }
    None
}

/// The API's 201 for a message queued, its id made of the server's prefix
/// and the `serial`-th message accepted.
fn queued(state: &MockState, serial: u64, instance_id: &str, body: &Value) -> Response {
    let accepted = Accepted {
        status_code: 201,
        message: "request successful".to_string(),
        data: AcceptedMessage {
            id: format!("{:08x}{:016x}", state.id_prefix, serial),
            status: "QUEUED".to_string(),
            instance_id: Some(instance_id.to_string()),
            to: body["to"].as_str().map(String::from),
            midia: Some(body["contact"].clone()),
            sended: Some(false),
            priority: body["priority"].as_i64(),
            timestamp: Some(
                jiff::Timestamp::now()
                    .strftime("%Y-%m-%dT%H:%M:%SZ")
                    .to_string(),
            ),
            metadata: Some(body.get("metadata").cloned().unwrap_or_else(|| json!({}))),
        },
    };
    (StatusCode::CREATED, Json(accepted)).into_response()
}

fn error(status: StatusCode, message: &str) -> Response {
    let body = ApiError {
        status_code: Some(status.as_u16()),
        message: Some(message.to_string()),
        error: status.canonical_reason().map(String::from),
    };
    (status, Json(body)).into_response()
}

/// What is wrong with a request body, per the ContactMessage schema.
pub fn contract_problems(body: &Value) -> Vec<String> {
    let mut problems = Vec::new();
    let Some(object) = body.as_object() else {
        return vec!["the body must be a JSON object".to_string()];
    };
    let is_e164 = |value: &Value| {
        value.as_str().is_some_and(|text| {
            (8..=15).contains(&text.len())
                && !text.starts_with('0')
                && text.bytes().all(|b| b.is_ascii_digit())
        })
    };
    if !object.get("to").is_some_and(is_e164) {
        problems.push("to must be E.164 digits without +".to_string());
    }
    match object.get("contact").and_then(Value::as_object) {
        None => problems.push("contact must be an object with name and phone".to_string()),
        Some(contact) => {
            if contact
                .get("name")
                .and_then(Value::as_str)
                .is_none_or(str::is_empty)
            {
                problems.push("contact.name must be a non-empty string".to_string());
            }
            if !contact.get("phone").is_some_and(is_e164) {
                problems.push("contact.phone must be E.164 digits without +".to_string());
            }
        }
    }
    for field in ["delay", "typing"] {
        if let Some(value) = object.get(field) {
            if !value.as_f64().is_some_and(|seconds| seconds >= 0.0) {
                problems.push(format!("{field} must be a number of seconds, 0 or more"));
            }
        }
    }
    if object.get("priority").is_some_and(|value| !value.is_i64()) {
        problems.push("priority must be an integer of 64 bits (api/openapi.yaml)".to_string());
    }
    if let Some(tags) = object.get("tags") {
        if !tags
            .as_array()
            .is_some_and(|tags| tags.iter().all(Value::is_string))
        {
            problems.push("tags must be an array of strings".to_string());
        }
    }
    if object
        .get("metadata")
        .is_some_and(|value| !value.is_object())
    {
        problems.push("metadata must be an object".to_string());
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendor_example_body_meets_the_contract() {
        let body = json!({"to": "5511999999999", "contact": {"name": "João Silva", "phone": "5511999999999"},
            "delay": 2, "typing": 8, "priority": 2, "tags": ["urgente", "lead"], "metadata": {"leadId": "1234533"}});
        assert!(contract_problems(&body).is_empty());
    }

    #[test]
    fn bodies_outside_the_contract_are_named() {
        let body = json!({"to": "+5511999999999", "contact": {"name": "", "phone": "0123"}, "delay": -1, "priority": 1.5, "tags": [1]});
        let problems = contract_problems(&body).join("; ");
        for field in [
            "to",
            "contact.name",
            "contact.phone",
            "delay",
            "priority",
            "tags",
        ] {
            assert!(problems.contains(field), "{problems}");
        }
    }
}
