//! The HTTP client: one shared `reqwest::Client` with keep-alive, the three
//! headers, and every answer sorted into accepted, refused, unreachable or ambiguous.

use std::error::Error as _;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION, LOCATION, RETRY_AFTER};
use reqwest::redirect::Policy;
use reqwest::{StatusCode, Url};
use tracing::trace;

use super::wire::{Accepted, ApiError, ContactMessage};
use super::ApiKey;
use crate::types::printable;

/// Why a message was not accepted.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// The API answered with an error status: the message was not queued.
    #[error("HTTP {http_status}: {message}")]
    Refused {
        http_status: u16,
        message: String,
        retry_after: Option<Duration>,
    },
    /// No connection could be made: the message certainly did not leave.
    #[error("cannot reach the API: {0}")]
    Unreachable(String),
    /// The request could not even be built: it never left, and trying again
    /// would not help.
    #[error("the request could not be made: {0}")]
    NotSent(String),
    /// The request may have reached the API (a timeout or a lost connection
    /// while waiting, or an answer that cannot be read): sending it again
    /// could deliver the card twice.
    #[error("{detail}")]
    Ambiguous {
        http_status: Option<u16>,
        detail: String,
    },
}

impl SendError {
    pub fn http_status(&self) -> Option<u16> {
        match self {
            SendError::Refused { http_status, .. } => Some(*http_status),
            SendError::Ambiguous { http_status, .. } => *http_status,
            SendError::Unreachable(_) | SendError::NotSent(_) => None,
        }
    }
}

/// Could not build the client (bad key characters, TLS set-up).
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("the API key contains characters that cannot go in an HTTP header")]
    BadKey,
    #[error("cannot set up the HTTP client: {0}")]
    Build(#[from] reqwest::Error),
}

pub struct ApiClient {
    http: reqwest::Client,
    endpoint: Url,
    /// Kept only to take it out of any text a server sends back.
    key: ApiKey,
}

/// What proves a message was queued: a 2xx answer naming it.
#[derive(Debug, Clone)]
pub struct Queued {
    pub http_status: u16,
    /// The API's `data.id`.
    pub message_id: String,
    /// The API's `data.status`, such as `QUEUED`.
    pub api_status: String,
    /// The instance the answer names, when it is not the one the request
    /// went through (the vendor's own example answers always name one
    /// instance): the message was queued all the same.
    pub other_instance: Option<String>,
}

/// The most of an answer that is read: the API's own are a few hundred bytes.
pub const ANSWER_BYTES_MAX: usize = 64 * 1024;

impl ApiClient {
    pub fn new(base_url: &Url, api_key: &ApiKey, timeout: Duration) -> Result<Self, ClientError> {
        let mut authorization =
            HeaderValue::from_str(api_key.expose()).map_err(|_| ClientError::BadKey)?;
        // Keeps the key out of reqwest's and hyper's own debug output.
        authorization.set_sensitive(true);
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, authorization);
        let mut http = reqwest::Client::builder()
            .default_headers(headers)
            .user_agent(concat!("interacto-bulk/", env!("CARGO_PKG_VERSION")))
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .pool_idle_timeout(Duration::from_secs(60))
            // The API has no reason to redirect, and a redirect would carry
            // the card (or lose the body) to somewhere else.
            .redirect(Policy::none());
        if base_url.scheme() == "http" {
            // Plain http goes straight to this machine, never through a
            // proxy that would read the key.
            http = http.no_proxy();
        }
        Ok(ApiClient {
            http: http.build()?,
            endpoint: endpoint(base_url),
            key: api_key.clone(),
        })
    }

    /// Sends one contact card through one instance.
    pub async fn send(
        &self,
        instance_id: &str,
        message: &ContactMessage<'_>,
    ) -> Result<Queued, SendError> {
        let response = self.post(instance_id, message).await?;
        let status = response.status();
        let http_status = status.as_u16();
        self.not_from_the_api(&response)?;
        let retry_after = retry_after(response.headers());
        let (body, cut_short) = read_capped(response, ANSWER_BYTES_MAX)
            .await
            .map_err(|error| SendError::Ambiguous {
                http_status: Some(http_status),
                detail: format!("the answer was cut off: {}", describe(error)),
            })?;
        if tracing::enabled!(tracing::Level::TRACE) {
            let answer = self.redact(String::from_utf8_lossy(&body).into_owned());
            trace!(instance = instance_id, status = http_status, %answer, "answer");
        }

        if status.is_success() {
            return self.queued(status, &body, cut_short, instance_id);
        }
        Err(SendError::Refused {
            http_status,
            // Taken out before the message is cut: a cut may keep part of it.
            message: printable(&error_message(
                status,
                self.redact(String::from_utf8_lossy(&body).into_owned())
                    .as_bytes(),
            ))
            .into_owned(),
            retry_after,
        })
    }

    /// Posts the card through the instance, to whatever answer comes back;
    /// a request that never got one is classified by why.
    async fn post(
        &self,
        instance_id: &str,
        message: &ContactMessage<'_>,
    ) -> Result<reqwest::Response, SendError> {
        // The body holds no key (it travels in a header); -vv shows it.
        if tracing::enabled!(tracing::Level::TRACE) {
            let body = serde_json::to_string(message).unwrap_or_default();
            trace!(instance = instance_id, %body, "request");
        }
        self.http
            .post(self.endpoint.clone())
            .header("Instance-Id", instance_id)
            .json(message)
            .send()
            .await
            .map_err(classify_transport_error)
    }

    /// Fails on an answer that is not the API's own, read before its body:
    /// a redirect (never followed), or a gateway that gave up waiting for
    /// an API that may have queued the message.
    fn not_from_the_api(&self, response: &reqwest::Response) -> Result<(), SendError> {
        let status = response.status();
        let http_status = status.as_u16();
        if status.is_redirection() {
            let location = response
                .headers()
                .get(LOCATION)
                .and_then(|value| value.to_str().ok())
                .unwrap_or("nowhere");
            return Err(SendError::Refused {
                http_status,
                message: self.redact(format!(
                    "the API redirected to {}; redirects are not followed",
                    printable(location)
                )),
                retry_after: None,
            });
        }
        if status == StatusCode::GATEWAY_TIMEOUT {
            return Err(SendError::Ambiguous {
                http_status: Some(http_status),
                detail: "HTTP 504: a gateway gave up waiting, and the API behind it may have queued the message".to_string(),
            });
        }
        Ok(())
    }

    /// What a 2xx answer says was queued; one cut short, unreadable or
    /// naming no message is ambiguous: the card may have gone.
    fn queued(
        &self,
        status: StatusCode,
        body: &[u8],
        cut_short: bool,
        instance_id: &str,
    ) -> Result<Queued, SendError> {
        let http_status = status.as_u16();
        let ambiguous = |detail: String| SendError::Ambiguous {
            http_status: Some(http_status),
            detail: printable(&self.redact(format!("HTTP {status} {detail}"))).into_owned(),
        };
        if cut_short {
            return Err(ambiguous(format!(
                "with an answer longer than {ANSWER_BYTES_MAX} bytes"
            )));
        }
        let accepted = serde_json::from_slice::<Accepted>(body)
            .map_err(|error| ambiguous(format!("with an answer that cannot be read: {error}")))?;
        let data = accepted.data;
        if data.id.trim().is_empty() {
            return Err(ambiguous("without a message id".to_string()));
        }
        // What the answer says is written to the results file and shown.
        let said = |text: String| printable(&text).into_owned();
        Ok(Queued {
            http_status,
            message_id: said(data.id),
            api_status: said(data.status),
            other_instance: (data.instance_id.filter(|id| id != instance_id)).map(said),
        })
    }

    /// `text` with the API key taken out, and any run of [`KEY_RUN`] or more
    /// of its characters in a row: a server may echo the request back, and
    /// a cut may keep part of the key.
    fn redact(&self, text: String) -> String {
        redacted(self.key.expose().as_bytes(), text)
    }
}

/// The shortest run of the key's characters taken out of what a server says.
const KEY_RUN: usize = 8;

/// What [`ApiClient::redact`] writes in the key's place.
const KEY_SHOWN: &str = "<the API key>";

/// `text` without `key`, nor any run of [`KEY_RUN`] or more of its bytes.
fn redacted(key: &[u8], text: String) -> String {
    if key.is_empty() {
        return text;
    }
    let shortest = KEY_RUN.min(key.len());
    let bytes = text.as_bytes();
    let mut kept = Vec::with_capacity(bytes.len());
    let mut at = 0;
    while at < bytes.len() {
        let longest = match key.contains(&bytes[at]) {
            false => None,
            true => (shortest..=key.len().min(bytes.len() - at))
                .rev()
                .find(|&run| key.windows(run).any(|part| part == &bytes[at..at + run])),
        };
        match longest {
            Some(run) => {
                kept.extend_from_slice(KEY_SHOWN.as_bytes());
                at += run;
            }
            None => {
                kept.push(bytes[at]);
                at += 1;
            }
        }
    }
    String::from_utf8(kept)
        .unwrap_or_else(|error| String::from_utf8_lossy(error.as_bytes()).into_owned())
}

/// The answer's body, up to `most` bytes; true when there was more.
async fn read_capped(
    mut response: reqwest::Response,
    most: usize,
) -> Result<(Vec<u8>, bool), reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = most - body.len();
        if chunk.len() > room {
            body.extend_from_slice(&chunk[..room]);
            return Ok((body, true));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, false))
}

/// `https://host/v1` and `https://host/v1/` both give `https://host/v1/message/contact`.
fn endpoint(base_url: &Url) -> Url {
    let mut base = base_url.clone();
    if !base.path().ends_with('/') {
        base.set_path(&format!("{}/", base.path()));
    }
    base.join("message/contact")
        .expect("a relative path always joins")
}

fn classify_transport_error(error: reqwest::Error) -> SendError {
    if error.is_builder() {
        SendError::NotSent(describe(error))
    } else if error.is_connect() {
        SendError::Unreachable(describe(error))
    } else if error.is_timeout() {
        SendError::Ambiguous {
            http_status: None,
            detail: "no answer before the timeout; the API may have queued the message".to_string(),
        }
    } else {
        SendError::Ambiguous {
            http_status: None,
            detail: format!(
                "the connection failed while waiting for the answer: {}",
                describe(error)
            ),
        }
    }
}

/// The error with its causes, which reqwest keeps apart.
fn describe(error: reqwest::Error) -> String {
    let error = error.without_url();
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// The API's own words where it gave them, else the start of the body.
fn error_message(status: StatusCode, body: &[u8]) -> String {
    let parsed: Option<ApiError> = serde_json::from_slice(body).ok();
    let words = parsed
        .and_then(|error| match (error.message, error.error) {
            (Some(message), _) if !message.is_empty() => Some(message),
            (_, Some(error)) if !error.is_empty() => Some(error),
            _ => None,
        })
        .unwrap_or_else(|| {
            String::from_utf8_lossy(&body[..body.len().min(200)])
                .trim()
                .to_string()
        });
    if words.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("no message")
            .to_string()
    } else {
        words
    }
}

/// `Retry-After` as seconds or as an HTTP date.
fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(RETRY_AFTER)?.to_str().ok()?.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(
        at.duration_since(std::time::SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_request_that_cannot_be_made_never_left() {
        let base = Url::parse("http://127.0.0.1:9").unwrap();
        let client = ApiClient::new(&base, &ApiKey::new("k"), Duration::from_secs(1)).unwrap();
        let metadata = serde_json::Map::new();
        let message = ContactMessage {
            to: "5511999999999",
            contact: crate::api::wire::Contact {
                name: "Ana",
                phone: "5511999999999",
            },
            delay: 2.0,
            typing: 5.0,
            priority: None,
            tags: &[],
            metadata: &metadata,
        };

        let error = client.send("bad\u{1}id", &message).await.unwrap_err();

        assert!(matches!(error, SendError::NotSent(_)), "{error}");
    }

    #[test]
    fn the_endpoint_keeps_a_base_path() {
        for base in ["https://api.example/v1", "https://api.example/v1/"] {
            let url = endpoint(&Url::parse(base).unwrap());
            assert_eq!(url.as_str(), "https://api.example/v1/message/contact");
        }
        assert_eq!(
            endpoint(&Url::parse("http://127.0.0.1:9").unwrap()).as_str(),
            "http://127.0.0.1:9/message/contact"
        );
    }

    #[test]
    fn retry_after_is_read_as_seconds_or_as_a_date() {
        let header = |value: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(RETRY_AFTER, HeaderValue::from_str(value).unwrap());
            retry_after(&headers)
        };
        assert_eq!(header("7"), Some(Duration::from_secs(7)));
        let in_a_minute =
            httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(60));
        let wait = header(&in_a_minute).unwrap();
        assert!(
            wait > Duration::from_secs(55) && wait <= Duration::from_secs(60),
            "{wait:?}"
        );
        assert_eq!(
            header("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO),
            "a date passed means now"
        );
        assert_eq!(header("soon"), None);
    }

    #[test]
    fn error_messages_prefer_the_api_words() {
        assert_eq!(
            error_message(
                StatusCode::BAD_REQUEST,
                br#"{"statusCode":400,"message":"bad to"}"#
            ),
            "bad to"
        );
        assert_eq!(
            error_message(StatusCode::BAD_GATEWAY, b"<html>oops</html>"),
            "<html>oops</html>"
        );
        assert_eq!(
            error_message(StatusCode::SERVICE_UNAVAILABLE, b""),
            "Service Unavailable"
        );
    }
}
