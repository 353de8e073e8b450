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
            RunError::Usage(format!(
                "no API key: set INTERACTO_API_KEY (or api.api_key in a config file; this run read \
                 {}), or use --mock to rehearse",
                settings.config_file()
            ))
        })?;
        if instances.is_empty() {
            return Err(RunError::Usage(format!(
                "no instance (the sending number): set INTERACTO_INSTANCE_ID, --instance, or \
                 api.instance_id / api.instances in a config file (this run read {})",
                settings.config_file()
            )));
        }
        let client = ApiClient::new(&settings.api.base_url, api_key, timeout)?;
        Ok(Target {
            client: Arc::new(client),
            instances,
            _mock: None,
        })
    }
}
