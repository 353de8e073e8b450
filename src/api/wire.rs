//! The JSON of `POST /message/contact`, as `api/openapi.yaml` describes it.

use serde::{Deserialize, Serialize, Serializer};
use serde_json::{Map, Value};

use crate::types::Job;

/// The request body.
#[derive(Debug, Serialize)]
pub struct ContactMessage<'a> {
    pub to: &'a str,
    pub contact: Contact<'a>,
    #[serde(serialize_with = "seconds")]
    pub delay: f64,
    #[serde(serialize_with = "seconds")]
    pub typing: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(skip_serializing_if = "<[_]>::is_empty")]
    pub tags: &'a [String],
    #[serde(skip_serializing_if = "Map::is_empty")]
    pub metadata: &'a Map<String, Value>,
}

#[derive(Debug, Serialize)]
pub struct Contact<'a> {
    pub name: &'a str,
    pub phone: &'a str,
}

impl<'a> From<&'a Job> for ContactMessage<'a> {
    fn from(job: &'a Job) -> Self {
        ContactMessage {
            to: &job.recipient.to,
            contact: Contact {
                name: &job.recipient.contact_name,
                phone: &job.recipient.contact_phone,
            },
            delay: job.timing.delay,
            typing: job.timing.typing,
            priority: job.priority,
            tags: &job.tags,
            metadata: &job.metadata,
        }
    }
}

/// Whole seconds as `2`, like the vendor's examples, and fractions as `2.5`.
fn seconds<S: Serializer>(value: &f64, serializer: S) -> Result<S::Ok, S::Error> {
    if value.fract() == 0.0 && *value >= 0.0 && *value < u32::MAX as f64 {
        serializer.serialize_u64(*value as u64)
    } else {
        serializer.serialize_f64(*value)
    }
}

/// The 201 answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Accepted {
    pub status_code: u16,
    pub message: String,
    pub data: AcceptedMessage,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AcceptedMessage {
    pub id: String,
    pub status: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instance_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub midia: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sended: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<Value>,
}

/// The body of an answer that is not 2xx (not documented by the vendor; see openapi.yaml).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ApiError {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_code: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vendor_example_answer_parses() {
        let body = r#"{"statusCode":201,"message":"request successful","data":{"id":"66b3c041eac929f51c6f160f",
            "instanceId":"66a09db606fd14660c8fc1d0","to":"551198888888","midia":{"name":"Joe Doe","phone":"5511999999999"},
            "status":"QUEUED","sended":false,"priority":123,"timestamp":"2023-11-07T05:31:56Z","metadata":{}}}"#;
        let accepted: Accepted = serde_json::from_str(body).unwrap();
        assert_eq!(
            (accepted.data.id.as_str(), accepted.data.status.as_str()),
            ("66b3c041eac929f51c6f160f", "QUEUED")
        );
    }

    #[test]
    fn the_body_omits_what_the_row_does_not_have_and_writes_whole_seconds_as_integers() {
        let metadata = Map::new();
        let message = ContactMessage {
            to: "5511999999999",
            contact: Contact {
                name: "João Silva",
                phone: "5511999999999",
            },
            delay: 2.0,
            typing: 7.5,
            priority: None,
            tags: &[],
            metadata: &metadata,
        };
        assert_eq!(
            serde_json::to_string(&message).unwrap(),
            r#"{"to":"5511999999999","contact":{"name":"João Silva","phone":"5511999999999"},"delay":2,"typing":7.5}"#
        );
    }
}
