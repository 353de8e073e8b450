//! `[api]`: where the API is, the key, the sending numbers, the timeout.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use reqwest::Url;
use serde::{Deserialize, Deserializer};

use crate::setting::{self, invalid, InvalidSetting};

pub const DEFAULT_BASE_URL: &str = "https://api.interacto.io";

/// The longest wait for one answer, in seconds.
pub const TIMEOUT_MAX: f64 = 600.0;

/// `[api]`, with the environment and `--instance` laid over it by `config`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSettings {
    #[serde(deserialize_with = "url")]
    pub base_url: Url,
    #[serde(deserialize_with = "api_key")]
    pub api_key: Option<ApiKey>,
    /// One sending WhatsApp number…
    pub instance_id: Option<String>,
    /// …or several (not both).
    pub instances: Vec<String>,
    /// How long to wait for one answer.
    #[serde(deserialize_with = "setting::seconds")]
    pub timeout: Duration,
    /// Allow plain http to a host other than this machine.
    pub allow_insecure_http: bool,
}

impl Default for ApiSettings {
    fn default() -> Self {
        ApiSettings {
            base_url: DEFAULT_BASE_URL.parse().expect("the default URL parses"),
            api_key: None,
            instance_id: None,
            instances: Vec::new(),
            timeout: Duration::from_secs(30),
            allow_insecure_http: false,
        }
    }
}

impl ApiSettings {
    pub fn check(&self) -> Result<(), InvalidSetting> {
        if self.timeout.is_zero() {
            return Err(invalid(
                "api.timeout",
                "must be a number of seconds above zero",
            ));
        }
        setting::check_duration("api.timeout", self.timeout, TIMEOUT_MAX)?;
        check_transport(&self.base_url, self.allow_insecure_http)?;
        if self.instance_id.is_some() && !self.instances.is_empty() {
            return Err(invalid(
                "api.instances",
                "set api.instance_id or api.instances, not both",
            ));
        }
        let key = match self.instance_id {
            Some(_) => "api.instance_id",
            None => "api.instances",
        };
        check_instances(key, &self.senders())
    }

    /// The WhatsApp numbers that send, each at its own pace; empty until one is set.
    pub fn senders(&self) -> Vec<String> {
        self.instance_id
            .iter()
            .chain(&self.instances)
            .map(|id| id.trim().to_string())
            .collect()
    }
}

/// No instance id empty, none twice; `key` names where they came from.
pub fn check_instances(key: &str, ids: &[String]) -> Result<(), InvalidSetting> {
    let mut seen = HashSet::new();
    for id in ids {
        if id.trim().is_empty() {
            return Err(invalid(key, "an instance id is empty"));
        }
        if let Some(bad) = id
            .trim()
            .chars()
            .find(|c| !(c.is_ascii_graphic() || *c == ' '))
        {
            return Err(invalid(
                key,
                format!(
                    "the instance `{}` holds U+{:04X}, which cannot go in an HTTP header",
                    id.escape_debug(),
                    u32::from(bad)
                ),
            ));
        }
        if !seen.insert(id.trim()) {
            return Err(invalid(key, format!("the instance `{id}` is listed twice")));
        }
    }
    Ok(())
}

/// The key travels only over HTTPS, unless the server is on this machine or
/// the user opted in.
pub fn check_transport(base_url: &Url, allow_insecure_http: bool) -> Result<(), InvalidSetting> {
    match base_url.scheme() {
        "https" => Ok(()),
        "http" if allow_insecure_http || is_loopback(base_url) => Ok(()),
        "http" => Err(invalid(
            "api.base_url",
            format!(
                "`{base_url}` is plain http, which would send the API key unencrypted; \
                 use https, or set api.allow_insecure_http = true"
            ),
        )),
        scheme => Err(invalid(
            "api.base_url",
            format!("scheme `{scheme}` is not http or https"),
        )),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// A base URL, with the text quoted when it is not one.
pub fn parse_url(text: &str) -> Result<Url, String> {
    Url::parse(text.trim()).map_err(|error| format!("`{text}` is not a URL: {error}"))
}

fn url<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Url, D::Error> {
    let text = String::deserialize(deserializer)?;
    parse_url(&text).map_err(serde::de::Error::custom)
}

fn api_key<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Option<ApiKey>, D::Error> {
    Ok(setting::non_blank(deserializer)?.map(ApiKey))
}

/// The API key. Never printed: `Debug` shows a placeholder.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey(String);

impl ApiKey {
    pub fn new(key: impl Into<String>) -> Self {
        ApiKey(key.into())
    }

    /// The key itself, for the `Authorization` header only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ApiKey(<hidden>)")
    }
}
