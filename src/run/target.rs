//! Where a run's messages go: the real API, or the embedded mock on loopback.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;

use tracing::info;

use crate::api::{ApiClient, ApiKey, MockOptions, MockServer};
use crate::config::Settings;
use crate::exit::RunError;

/// Where the messages go.
pub struct Target {
    pub client: Arc<ApiClient>,
    /// The WhatsApp numbers that send; never empty.
    pub instances: Vec<String>,
    /// Kept alive for the run when sending to the embedded mock.
    _mock: Option<MockServer>,
}

impl Target {
    /// Builds the HTTP client for the real API, or starts the embedded mock
    /// and points at it.
    pub async fn connect(settings: &Settings, mock: bool) -> Result<Target, RunError> {
        let timeout = settings.api.timeout;
        let instances = settings.api.senders();
        if mock {
            let server = MockServer::start(
                SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
                MockOptions::default(),
            )
            .await
            .map_err(RunError::Mock)?;
            info!(address = %server.base_url(), "sending to the embedded mock API");
            let base_url = server
                .base_url()
                .parse()
                .expect("a socket address makes a URL");
            let client = ApiClient::new(&base_url, &ApiKey::new("mock-key"), timeout)?;
            return Ok(Target {
                client: Arc::new(client),
                instances: match instances.is_empty() {
                    true => vec!["mock-instance".to_string()],
                    false => instances,
                },
                _mock: Some(server),
            });
        }
        let api_key = settings.api.api_key.as_ref().ok_or_else(|| {
            RunError::Usage("no API key: set INTERACTO_API_KEY (or api.api_key in the config file), or use --mock to rehearse".to_string())
        })?;
        if instances.is_empty() {
            return Err(RunError::Usage(
                "no instance: set INTERACTO_INSTANCE_ID, --instance, or api.instance_id / api.instances in the config file"
                    .to_string(),
            ));
        }
        let client = ApiClient::new(&settings.api.base_url, api_key, timeout)?;
        Ok(Target {
            client: Arc::new(client),
            instances,
            _mock: None,
        })
    }
}
