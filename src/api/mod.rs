//! The Interacto API: wire types, the HTTP client, and the embedded mock.

pub mod client;
pub mod mock;
pub mod wire;

pub use client::{ApiClient, ClientError, SendError};
pub use mock::{MockOptions, MockServer};
pub use wire::ContactMessage;
