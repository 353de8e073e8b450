//! Settings from the config file, the environment and the flags (highest
//! wins), checked and turned into types once, at start.

use std::collections::BTreeMap;
use std::fmt;
use std::num::{NonZeroU32, NonZeroUsize};
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use crate::campaign::phone::Region;
use reqwest::Url;
use serde::Deserialize;

use crate::campaign::{Column, DelimiterChoice, EncodingChoice};
use crate::pacing::{Floors, Rate};
use crate::schedule::{DailyCap, Schedule};
use jiff::tz::TimeZone;

pub const DEFAULT_BASE_URL: &str = "https://api.interacto.io";

/// A setting that could not be read or does not make sense; names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("config file {path}: {source}")]
    Parse {
        path: String,
        source: Box<toml::de::Error>,
    },
    #[error("{key}: {problem}")]
    Invalid { key: String, problem: String },
}

fn invalid(key: &str, problem: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        key: key.to_string(),
        problem: problem.into(),
    }
}

/// The config file as written: every key optional, unknown keys rejected.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfigFile {
    pub api: ApiSection,
    pub pacing: PacingSection,
    pub campaign: CampaignSection,
    pub retry: RetrySection,
    pub schedule: ScheduleSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ScheduleSection {
    pub window: Option<String>,
    pub timezone: Option<String>,
    pub daily_cap: Option<u64>,
    pub state_dir: Option<std::path::PathBuf>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ApiSection {
    pub base_url: Option<String>,
    pub api_key: Option<String>,
    pub instance_id: Option<String>,
    pub instances: Option<Vec<String>>,
    pub timeout: Option<f64>,
    pub allow_insecure_http: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PacingSection {
    pub rate: Option<String>,
    pub burst: Option<u32>,
    pub concurrency: Option<usize>,
    pub min_delay: Option<f64>,
    pub min_typing: Option<f64>,
    pub default_delay: Option<f64>,
    pub default_typing: Option<f64>,
    pub jitter: Option<f64>,
    pub pace_by_message: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignSection {
    pub default_region: Option<String>,
    pub encoding: Option<String>,
    pub delimiter: Option<String>,
    pub key_column: Option<String>,
    /// Canonical column -> the header used in the campaign file.
    pub columns: BTreeMap<String, String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RetrySection {
    pub max_attempts: Option<u32>,
    pub retry_ambiguous: Option<bool>,
    pub max_failure_ratio: Option<f64>,
    pub min_attempts_before_halt: Option<u64>,
    pub initial_backoff: Option<f64>,
    pub max_backoff: Option<f64>,
}

impl ConfigFile {
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: shown.clone(),
            source,
        })?;
        toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: shown,
            source: Box::new(source),
        })
    }
}

/// The `INTERACTO_*` environment variables, read once by `main`.
#[derive(Default, Clone)]
pub struct Environment {
    pub api_key: Option<String>,
    pub instance_id: Option<String>,
    pub base_url: Option<String>,
}

impl Environment {
    pub fn from_process() -> Self {
        let read = |name| {
            std::env::var(name)
                .ok()
                .filter(|value: &String| !value.trim().is_empty())
        };
        Environment {
            api_key: read("INTERACTO_API_KEY"),
            instance_id: read("INTERACTO_INSTANCE_ID"),
            base_url: read("INTERACTO_BASE_URL"),
        }
    }
}

/// The flags that override settings.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub rate: Option<Rate>,
    pub concurrency: Option<NonZeroUsize>,
    /// `--instance`, repeated.
    pub instances: Vec<String>,
}

/// The API key. Never printed: `Debug` and `Display` show a placeholder.
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

/// Checked settings for one run.
#[derive(Debug, Clone)]
pub struct Settings {
    pub api: ApiSettings,
    pub pacing: PacingSettings,
    pub campaign: CampaignSettings,
    pub retry: RetrySettings,
    pub schedule: ScheduleSettings,
}

/// When messages may go: a send window and a daily cap, both optional.
#[derive(Debug, Clone, Default)]
pub struct ScheduleSettings {
    pub window: Option<Schedule>,
    pub daily_cap: Option<DailyCap>,
}

/// When a failed send is tried again, and when the whole run stops.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetrySettings {
    /// Tries per message, the first one included.
    pub max_attempts: u32,
    /// Try again after an answer that may have been lost (risks a duplicate card).
    pub retry_ambiguous: bool,
    /// Halt when more than this share of the messages tried failed…
    pub max_failure_ratio: f64,
    /// …once at least this many were tried.
    pub min_attempts_before_halt: u64,
    /// The first backoff's ceiling; it doubles each try up to `max_backoff`.
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
}

impl Default for RetrySettings {
    fn default() -> Self {
        RetrySettings {
            max_attempts: 5,
            retry_ambiguous: false,
            max_failure_ratio: 0.5,
            min_attempts_before_halt: 20,
            initial_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(60),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ApiSettings {
    pub base_url: Url,
    pub api_key: Option<ApiKey>,
    /// The WhatsApp numbers that send, each its own pace; empty until set.
    pub instances: Vec<String>,
    pub timeout: Duration,
    pub allow_insecure_http: bool,
}

#[derive(Debug, Clone)]
pub struct PacingSettings {
    pub rate: Rate,
    pub burst: NonZeroU32,
    pub concurrency: NonZeroUsize,
    pub floors: Floors,
    pub pace_by_message: bool,
}

#[derive(Debug, Clone)]
pub struct CampaignSettings {
    pub default_region: Region,
    /// A column whose value identifies a job across runs, instead of `to:contact_phone`.
    pub key_column: Option<String>,
    /// Header in the file -> the canonical column it holds.
    pub columns: Vec<(String, Column)>,
    pub encoding: EncodingChoice,
    pub delimiter: DelimiterChoice,
}

impl Default for CampaignSettings {
    /// What an empty `[campaign]` section means.
    fn default() -> Self {
        resolve_campaign(CampaignSection::default()).expect("the defaults are valid")
    }
}

impl Settings {
    /// Merges file, environment and flags (flags win), and checks every value.
    pub fn resolve(
        file: ConfigFile,
        env: Environment,
        flags: Overrides,
    ) -> Result<Self, ConfigError> {
        Ok(Settings {
            api: resolve_api(file.api, env, &flags.instances)?,
            pacing: resolve_pacing(file.pacing, flags)?,
            campaign: resolve_campaign(file.campaign)?,
            retry: resolve_retry(file.retry)?,
            schedule: resolve_schedule(file.schedule)?,
        })
    }

    /// Reads the config file (if any) and resolves it.
    pub fn load(
        path: Option<&Path>,
        env: Environment,
        flags: Overrides,
    ) -> Result<Self, ConfigError> {
        let file = match path {
            Some(path) => ConfigFile::load(path)?,
            None => ConfigFile::default(),
        };
        Settings::resolve(file, env, flags)
    }
}

fn resolve_api(
    api: ApiSection,
    env: Environment,
    flag_instances: &[String],
) -> Result<ApiSettings, ConfigError> {
    let base_url = env
        .base_url
        .or(api.base_url)
        .unwrap_or_else(|| DEFAULT_BASE_URL.to_string());
    let base_url = Url::parse(&base_url).map_err(|error| {
        invalid(
            "api.base_url",
            format!("`{base_url}` is not a URL: {error}"),
        )
    })?;
    let allow_insecure_http = api.allow_insecure_http.unwrap_or(false);
    check_transport(&base_url, allow_insecure_http)?;

    let timeout = api.timeout.unwrap_or(30.0);
    if !(timeout.is_finite() && timeout > 0.0) {
        return Err(invalid(
            "api.timeout",
            "must be a number of seconds above zero",
        ));
    }
    let api_key = env
        .api_key
        .or(api.api_key)
        .filter(|key| !key.trim().is_empty());
    let instances = resolve_instances(
        flag_instances,
        env.instance_id,
        api.instance_id,
        api.instances,
    )?;
    Ok(ApiSettings {
        base_url,
        api_key: api_key.map(ApiKey),
        instances,
        timeout: Duration::from_secs_f64(timeout),
        allow_insecure_http,
    })
}

/// `--instance` flags, else `INTERACTO_INSTANCE_ID`, else the file's
/// `instance_id` or `instances` (not both).
fn resolve_instances(
    flags: &[String],
    env: Option<String>,
    single: Option<String>,
    several: Option<Vec<String>>,
) -> Result<Vec<String>, ConfigError> {
    let (key, instances) = match (flags, env, single, several) {
        ([_, ..], _, _, _) => ("--instance", flags.to_vec()),
        ([], Some(id), _, _) => ("INTERACTO_INSTANCE_ID", vec![id]),
        ([], None, Some(_), Some(_)) => {
            return Err(invalid(
                "api.instances",
                "set api.instance_id or api.instances, not both",
            ))
        }
        ([], None, Some(id), None) => ("api.instance_id", vec![id]),
        ([], None, None, Some(ids)) => ("api.instances", ids),
        ([], None, None, None) => return Ok(Vec::new()),
    };
    let mut seen = std::collections::HashSet::new();
    for id in &instances {
        if id.trim().is_empty() {
            return Err(invalid(key, "an instance id is empty"));
        }
        if !seen.insert(id.trim()) {
            return Err(invalid(key, format!("the instance `{id}` is listed twice")));
        }
    }
    Ok(instances
        .into_iter()
        .map(|id| id.trim().to_string())
        .collect())
}

/// The key travels only over HTTPS, unless the server is on this machine or
/// the user opted in.
pub fn check_transport(base_url: &Url, allow_insecure_http: bool) -> Result<(), ConfigError> {
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

fn resolve_pacing(pacing: PacingSection, flags: Overrides) -> Result<PacingSettings, ConfigError> {
    let rate = match (flags.rate, pacing.rate) {
        (Some(rate), _) => rate,
        (None, Some(text)) => text
            .parse()
            .map_err(|problem| invalid("pacing.rate", problem))?,
        (None, None) => Rate {
            count: NonZeroU32::new(20).expect("20 is not zero"),
            per: Duration::from_secs(60),
        },
    };
    let burst = NonZeroU32::new(pacing.burst.unwrap_or(1))
        .ok_or_else(|| invalid("pacing.burst", "must be at least 1"))?;
    let concurrency = match (flags.concurrency, pacing.concurrency) {
        (Some(n), _) => n,
        (None, Some(n)) => NonZeroUsize::new(n)
            .ok_or_else(|| invalid("pacing.concurrency", "must be at least 1"))?,
        (None, None) => NonZeroUsize::new(4).expect("4 is not zero"),
    };
    let seconds = |key: &str, value: Option<f64>, default: f64| -> Result<f64, ConfigError> {
        let value = value.unwrap_or(default);
        if value.is_finite() && value >= 0.0 {
            Ok(value)
        } else {
            Err(invalid(
                key,
                format!("{value} is not a number of seconds (0 or more)"),
            ))
        }
    };
    let defaults = Floors::default();
    let floors = Floors {
        min_delay: seconds("pacing.min_delay", pacing.min_delay, defaults.min_delay)?,
        min_typing: seconds("pacing.min_typing", pacing.min_typing, defaults.min_typing)?,
        default_delay: seconds(
            "pacing.default_delay",
            pacing.default_delay,
            defaults.default_delay,
        )?,
        default_typing: seconds(
            "pacing.default_typing",
            pacing.default_typing,
            defaults.default_typing,
        )?,
        jitter: seconds("pacing.jitter", pacing.jitter, defaults.jitter)?,
    };
    if floors.default_delay < floors.min_delay {
        return Err(invalid(
            "pacing.default_delay",
            format!(
                "{} is below pacing.min_delay = {}",
                floors.default_delay, floors.min_delay
            ),
        ));
    }
    if floors.default_typing < floors.min_typing {
        return Err(invalid(
            "pacing.default_typing",
            format!(
                "{} is below pacing.min_typing = {}",
                floors.default_typing, floors.min_typing
            ),
        ));
    }
    Ok(PacingSettings {
        rate,
        burst,
        concurrency,
        floors,
        pace_by_message: pacing.pace_by_message.unwrap_or(true),
    })
}

fn resolve_campaign(campaign: CampaignSection) -> Result<CampaignSettings, ConfigError> {
    let region = campaign.default_region.unwrap_or_else(|| "BR".to_string());
    let default_region = region
        .trim()
        .to_ascii_uppercase()
        .parse::<Region>()
        .map_err(|_| {
            invalid(
                "campaign.default_region",
                format!("`{region}` is not a two-letter ISO country code"),
            )
        })?;
    let mut columns = Vec::new();
    for (canonical, header) in campaign.columns {
        let key = format!("campaign.columns.{canonical}");
        let column = Column::from_name(&canonical).ok_or_else(|| {
            invalid(
                &key,
                format!(
                    "`{canonical}` is not a campaign column; use one of {}",
                    Column::CONFIG_KEYS
                ),
            )
        })?;
        if header.trim().is_empty() {
            return Err(invalid(&key, "the header name is empty"));
        }
        columns.push((header, column));
    }
    Ok(CampaignSettings {
        encoding: parse_or_default("campaign.encoding", campaign.encoding)?,
        delimiter: parse_or_default("campaign.delimiter", campaign.delimiter)?,
        default_region,
        key_column: campaign
            .key_column
            .filter(|column| !column.trim().is_empty()),
        columns,
    })
}

fn resolve_schedule(schedule: ScheduleSection) -> Result<ScheduleSettings, ConfigError> {
    let timezone = match &schedule.timezone {
        Some(name) => TimeZone::get(name.trim()).map_err(|_| {
            invalid(
                "schedule.timezone",
                format!("`{name}` is not an IANA time zone name, like America/Sao_Paulo"),
            )
        })?,
        None => TimeZone::system(),
    };
    let window = match schedule.window {
        Some(text) => Some(Schedule {
            window: text
                .parse()
                .map_err(|problem| invalid("schedule.window", problem))?,
            timezone: timezone.clone(),
        }),
        None => None,
    };
    let daily_cap = match schedule.daily_cap {
        None => None,
        Some(0) => {
            return Err(invalid(
                "schedule.daily_cap",
                "must be at least 1; leave it out for no cap",
            ))
        }
        Some(cap) => {
            let state_dir = schedule
                .state_dir
                .or_else(DailyCap::default_state_dir)
                .ok_or_else(|| {
                    invalid(
                        "schedule.state_dir",
                        "this platform has no state directory; set one for the daily-cap ledger",
                    )
                })?;
            Some(DailyCap {
                cap,
                state_dir,
                timezone,
            })
        }
    };
    Ok(ScheduleSettings { window, daily_cap })
}

fn resolve_retry(retry: RetrySection) -> Result<RetrySettings, ConfigError> {
    let defaults = RetrySettings::default();
    let max_attempts = retry.max_attempts.unwrap_or(defaults.max_attempts);
    if max_attempts == 0 {
        return Err(invalid(
            "retry.max_attempts",
            "must be at least 1 (the first try)",
        ));
    }
    let max_failure_ratio = retry
        .max_failure_ratio
        .unwrap_or(defaults.max_failure_ratio);
    if !(0.0..=1.0).contains(&max_failure_ratio) {
        return Err(invalid(
            "retry.max_failure_ratio",
            format!("{max_failure_ratio} is not between 0 and 1"),
        ));
    }
    let seconds = |key: &str, value: Option<f64>, default: Duration| match value {
        None => Ok(default),
        Some(value) if value.is_finite() && value >= 0.0 => Ok(Duration::from_secs_f64(value)),
        Some(value) => Err(invalid(
            key,
            format!("{value} is not a number of seconds (0 or more)"),
        )),
    };
    let initial_backoff = seconds(
        "retry.initial_backoff",
        retry.initial_backoff,
        defaults.initial_backoff,
    )?;
    let max_backoff = seconds("retry.max_backoff", retry.max_backoff, defaults.max_backoff)?;
    if max_backoff < initial_backoff {
        return Err(invalid(
            "retry.max_backoff",
            "is below retry.initial_backoff",
        ));
    }
    Ok(RetrySettings {
        max_attempts,
        retry_ambiguous: retry.retry_ambiguous.unwrap_or(defaults.retry_ambiguous),
        max_failure_ratio,
        min_attempts_before_halt: retry
            .min_attempts_before_halt
            .unwrap_or(defaults.min_attempts_before_halt),
        initial_backoff,
        max_backoff,
    })
}

fn parse_or_default<T>(key: &str, value: Option<String>) -> Result<T, ConfigError>
where
    T: FromStr<Err = String> + Default,
{
    match value {
        Some(text) => text.parse().map_err(|problem| invalid(key, problem)),
        None => Ok(T::default()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        let file: ConfigFile = toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: "test.toml".into(),
            source: Box::new(source),
        })?;
        Settings::resolve(file, Environment::default(), Overrides::default())
    }

    #[test]
    fn an_empty_file_gives_safe_defaults() {
        let settings = parse("").unwrap();
        assert_eq!(settings.pacing.rate.to_string(), "20/min");
        assert!(settings.pacing.pace_by_message);
        assert_eq!(settings.pacing.floors.min_delay, 2.0);
        assert_eq!(settings.api.base_url.as_str(), "https://api.interacto.io/");
        assert_eq!(settings.campaign.default_region, Region::BR);
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let error = parse("[pacing]\nrte = \"1/s\"\n").unwrap_err().to_string();
        assert!(error.contains("rte"), "{error}");
        let error = parse("[campaign.columns]\nphone = \"telefone\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("campaign.columns.phone"), "{error}");
    }

    #[test]
    fn defaults_below_the_floors_are_rejected() {
        let error = parse("[pacing]\nmin_delay = 5\ndefault_delay = 2\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("pacing.default_delay"), "{error}");
        let error = parse("[pacing]\nmin_typing = 9\n").unwrap_err().to_string();
        assert!(error.contains("pacing.default_typing"), "{error}");
    }

    #[test]
    fn flags_win_over_the_file_and_the_environment_over_the_file() {
        let file: ConfigFile = toml::from_str(
            "[api]\nbase_url = \"https://file.example\"\ninstance_id = \"file\"\n[pacing]\nrate = \"1/s\"\n",
        )
        .unwrap();
        let env = Environment {
            instance_id: Some("env".into()),
            ..Environment::default()
        };
        let flags = Overrides {
            rate: Some("7/min".parse().unwrap()),
            ..Overrides::default()
        };
        let settings = Settings::resolve(file, env, flags).unwrap();
        assert_eq!(settings.pacing.rate.to_string(), "7/min");
        assert_eq!(settings.api.instances, vec!["env"]);
        assert_eq!(settings.api.base_url.host_str(), Some("file.example"));
    }

    #[test]
    fn several_instances_come_from_the_file_or_from_repeated_flags() {
        let settings = parse("[api]\ninstances = [\"a\", \"b\"]\n").unwrap();
        assert_eq!(settings.api.instances, vec!["a", "b"]);
        let error = parse("[api]\ninstance_id = \"a\"\ninstances = [\"b\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not both"), "{error}");
        let error = parse("[api]\ninstances = [\"a\", \"a\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("twice"), "{error}");
        let file: ConfigFile = toml::from_str("[api]\ninstances = [\"a\"]\n").unwrap();
        let flags = Overrides {
            instances: vec!["x".into(), "y".into()],
            ..Overrides::default()
        };
        let settings = Settings::resolve(file, Environment::default(), flags).unwrap();
        assert_eq!(settings.api.instances, vec!["x", "y"]);
    }

    #[test]
    fn the_schedule_is_checked_at_start() {
        let settings = parse("[schedule]\nwindow = \"08:00-20:00\"\ntimezone = \"America/Sao_Paulo\"\ndaily_cap = 100\nstate_dir = \"/tmp/x\"\n").unwrap();
        assert_eq!(
            settings.schedule.window.unwrap().window.to_string(),
            "08:00-20:00"
        );
        assert_eq!(settings.schedule.daily_cap.unwrap().cap, 100);
        let error = parse("[schedule]\ntimezone = \"Mars/Olympus\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("schedule.timezone"), "{error}");
        let error = parse("[schedule]\nwindow = \"8h-20h\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("schedule.window"), "{error}");
        assert!(parse("[schedule]\ndaily_cap = 0\n").is_err());
    }

    #[test]
    fn plain_http_is_refused_except_to_loopback_or_when_allowed() {
        assert!(parse("[api]\nbase_url = \"http://api.example\"\n").is_err());
        assert!(parse("[api]\nbase_url = \"http://127.0.0.1:9\"\n").is_ok());
        assert!(parse("[api]\nbase_url = \"http://localhost:9\"\n").is_ok());
        assert!(
            parse("[api]\nbase_url = \"http://api.example\"\nallow_insecure_http = true\n").is_ok()
        );
    }

    #[test]
    fn the_api_key_never_shows_in_debug_output() {
        let env = Environment {
            api_key: Some("s3cret-key".into()),
            ..Environment::default()
        };
        let settings = Settings::resolve(ConfigFile::default(), env, Overrides::default()).unwrap();
        assert!(!format!("{settings:?}").contains("s3cret-key"));
    }
}
