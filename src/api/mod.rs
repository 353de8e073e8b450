//! The Interacto API: its settings, wire types, the HTTP client, and the
//! embedded mock.

pub mod client;
pub mod mock;
mod settings;
pub mod wire;

pub use client::{ApiClient, ClientError, Queued, SendError, ANSWER_BYTES_MAX};
pub use mock::{MockOptions, MockServer};
pub use settings::{check_instances, parse_url, ApiKey, ApiSettings, DEFAULT_BASE_URL};
pub use wire::ContactMessage;
