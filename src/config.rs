//! Settings for one run: the config file, then the environment, then the
//! flags (highest wins). Each stage owns its settings type and its defaults;
//! this module reads the file, lays the environment and the flags over it,
//! and has each stage check its own.

use std::io::Read;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use tracing::{debug, info, warn};

use crate::api::{self, ApiKey, ApiSettings};
use crate::campaign::CampaignSettings;
use crate::ledger::{LedgerSettings, UrlOrigin};
use crate::pacing::{PacingSettings, Rate};
use crate::results::ResultsSettings;
use crate::retry::RetrySettings;
use crate::schedule::ScheduleSettings;
use crate::setting::{invalid, InvalidSetting};

/// Checked settings for one run, one section per stage. Every key of the
/// file is optional; a missing key takes its stage's default.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Settings {
    pub api: ApiSettings,
    pub pacing: PacingSettings,
    pub campaign: CampaignSettings,
    pub retry: RetrySettings,
    pub schedule: ScheduleSettings,
    pub ledger: LedgerSettings,
    pub results: ResultsSettings,
    /// The config file these were read from; `None` when there was none.
    #[serde(skip)]
    pub read_from: Option<PathBuf>,
}

/// A setting that could not be read or does not make sense; names the key.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {error}")]
    Read { path: String, error: std::io::Error },
    #[error("config file {path}{}: {problem}", line.map(|line| format!(", line {line}")).unwrap_or_default())]
    File {
        path: String,
        line: Option<usize>,
        problem: String,
    },
    #[error(transparent)]
    Invalid(#[from] InvalidSetting),
}

/// The `INTERACTO_*` environment variables, read once by `main`, and the
/// user's config file.
#[derive(Default, Clone)]
pub struct Environment {
    pub api_key: Option<String>,
    pub instance_id: Option<String>,
    pub base_url: Option<String>,
    pub ledger_url: Option<String>,
    /// The config file when `--config` is not given: `INTERACTO_CONFIG`, else
    /// `$XDG_CONFIG_HOME/interacto-bulk/config.toml` (the platform's
    /// equivalent elsewhere) if it exists.
    pub config_file: Option<PathBuf>,
}

impl Environment {
    pub fn from_process() -> Self {
        let read = |name| {
            std::env::var(name)
                .ok()
                .filter(|value: &String| !value.trim().is_empty())
        };
        let config_file = read("INTERACTO_CONFIG")
            .map(PathBuf::from)
            .or_else(|| user_config_file().filter(|default| default.is_file()));
        Environment {
            api_key: read("INTERACTO_API_KEY"),
            instance_id: read("INTERACTO_INSTANCE_ID"),
            base_url: read("INTERACTO_BASE_URL"),
            ledger_url: read("INTERACTO_LEDGER_URL"),
            config_file,
        }
    }
}

/// The user's config file, read when neither `--config` nor
/// `INTERACTO_CONFIG` names one: `$XDG_CONFIG_HOME/interacto-bulk/config.toml`
/// (the platform's equivalent elsewhere).
pub fn user_config_file() -> Option<PathBuf> {
    Some(
        dirs::config_dir()?
            .join("interacto-bulk")
            .join("config.toml"),
    )
}

/// The flags that override settings.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub rate: Option<Rate>,
    pub concurrency: Option<NonZeroUsize>,
    /// `--instance`, repeated.
    pub instances: Vec<String>,
    /// `--ledger`, as written: read here, so that no error echoes a
    /// password back (the flag parser would quote the whole value).
    pub ledger: Option<String>,
    /// `--campaign`.
    pub campaign: Option<String>,
}

impl Settings {
    /// Reads the config file (if any), lays the environment and the flags
    /// over it, and checks every value.
    pub fn load(
        path: Option<&Path>,
        env: Environment,
        flags: Overrides,
    ) -> Result<Self, ConfigError> {
        let file = match path.or(env.config_file.as_deref()) {
            Some(path) => {
                debug!(config = %path.display(), "reading the config file");
                Settings {
                    read_from: Some(path.to_path_buf()),
                    ..Settings::read(path)?
                }
            }
            None => {
                info!(
                    "{}: the built-in defaults",
                    Settings::default().config_file()
                );
                Settings::default()
            }
        };
        file.resolve(env, flags)
    }

    /// The config file these settings came from, in words, for a message
    /// that asks for a setting: with none, where one was looked for.
    pub fn config_file(&self) -> String {
        match &self.read_from {
            Some(path) => format!("the config file {}", path.display()),
            None => format!(
                "no config file (none given with --config or INTERACTO_CONFIG, and no {})",
                user_config_file().map_or_else(
                    || "user config folder".to_string(),
                    |path| path.display().to_string()
                )
            ),
        }
    }

    /// These settings with the environment and the flags laid over them, checked.
    pub fn resolve(mut self, env: Environment, flags: Overrides) -> Result<Self, ConfigError> {
        self.override_with(env, flags)?;
        self.check()?;
        Ok(self)
    }

    fn read(path: &Path) -> Result<Self, ConfigError> {
        let shown = path.display().to_string();
        let refused = |problem: &str| ConfigError::File {
            path: shown.clone(),
            line: None,
            problem: problem.to_string(),
        };
        let read_error = |error| ConfigError::Read {
            path: shown.clone(),
            error,
        };
        // Looked at before it is opened: opening a FIFO waits for a writer,
        // and a device never ends.
        let metadata = std::fs::metadata(path).map_err(read_error)?;
        if !metadata.is_file() {
            return Err(refused(
                "not a regular file (a device, a FIFO, a directory or a socket): a config file is a TOML file",
            ));
        }
        if metadata.len() > CONFIG_BYTES_MAX {
            return Err(refused("larger than 1 MiB: not a config file"));
        }
        let mut bytes = Vec::new();
        std::fs::File::open(path)
            .and_then(|file| file.take(CONFIG_BYTES_MAX + 1).read_to_end(&mut bytes))
            .map_err(read_error)?;
        if bytes.len() as u64 > CONFIG_BYTES_MAX {
            return Err(refused("larger than 1 MiB: not a config file"));
        }
        let text = String::from_utf8(bytes).map_err(|_| refused("not UTF-8 text"))?;
        let settings = Settings::from_toml(&text, &shown)?;
        if writable_by_others(path) {
            warn!(
                "{shown} can be changed by other users of this machine: they could send the \
                 campaign elsewhere or point it at another ledger; `chmod go-w {shown}`"
            );
        }
        if settings.api.api_key.is_some() && readable_by_others(path) {
            warn!(
                "{shown} holds the API key and other users can read it: `chmod 600 {shown}`, \
                 or set INTERACTO_API_KEY instead"
            );
        }
        Ok(settings)
    }

    /// Parses a config file's text; errors name `path`, the line and the key.
    pub fn from_toml(text: &str, path: &str) -> Result<Self, ConfigError> {
        let file_error = |error: toml::de::Error, key: String| {
            let line = error
                .span()
                .map(|span| text[..span.start.min(text.len())].lines().count().max(1));
            let problem = match key.as_str() {
                "" | "." => error.message().to_string(),
                key => format!("{key}: {}", error.message()),
            };
            let problem = without_api_key(text, problem);
            ConfigError::File {
                path: path.to_string(),
                line,
                problem,
            }
        };
        if let Some(problem) = retired_key(text) {
            return Err(ConfigError::File {
                path: path.to_string(),
                line: None,
                problem,
            });
        }
        let deserializer = toml::de::Deserializer::parse(text)
            .map_err(|error| file_error(error, String::new()))?;
        let mut settings: Settings =
            serde_path_to_error::deserialize(deserializer).map_err(|error| {
                let key = error.path().to_string();
                file_error(error.into_inner(), key)
            })?;
        if settings.ledger.url.is_some() {
            settings.ledger.url_origin = UrlOrigin::ConfigFile(PathBuf::from(path));
        }
        Ok(settings)
    }

    fn override_with(&mut self, env: Environment, flags: Overrides) -> Result<(), InvalidSetting> {
        let api = &mut self.api;
        if let Some(url) = env.base_url {
            api.base_url =
                api::parse_url(&url).map_err(|problem| invalid("INTERACTO_BASE_URL", problem))?;
        }
        if let Some(key) = env.api_key {
            api.api_key = Some(ApiKey::new(key));
        }
        // `--instance` flags, else INTERACTO_INSTANCE_ID, else the file.
        if !flags.instances.is_empty() {
            api::check_instances("--instance", &flags.instances)?;
            api.instance_id = None;
            api.instances = flags.instances;
        } else if let Some(id) = env.instance_id {
            api.instance_id = Some(id);
            api.instances.clear();
        }
        if let Some(rate) = flags.rate {
            self.pacing.rate = rate;
        }
        if let Some(concurrency) = flags.concurrency {
            self.pacing.concurrency = concurrency;
        }
        if let Some(name) = flags.campaign {
            crate::campaign::check_name(&name).map_err(|problem| invalid("--campaign", problem))?;
            self.campaign.name = Some(name.trim().to_string());
        }
        // `--ledger`, else INTERACTO_LEDGER_URL, else the file.
        if let Some(url) = flags.ledger {
            let url = url
                .parse()
                .map_err(|problem| invalid("--ledger", problem))?;
            self.ledger.url = Some(url);
            self.ledger.url_origin = UrlOrigin::Flag;
        } else if let Some(url) = env.ledger_url {
            let url = url
                .parse()
                .map_err(|problem| invalid("INTERACTO_LEDGER_URL", problem))?;
            self.ledger.url = Some(url);
            self.ledger.url_origin = UrlOrigin::Environment;
        }
        Ok(())
    }

    /// Each stage checks its own settings.
    fn check(&self) -> Result<(), InvalidSetting> {
        self.api.check()?;
        self.pacing.check()?;
        self.campaign.check()?;
        self.retry.check()?;
        self.schedule.check()?;
        self.ledger.check()?;
        // A cooldown longer than the ledger's memory would end early.
        match self.schedule.cooldown {
            Some(cooldown) if cooldown > self.ledger.keep.0 => Err(invalid(
                "ledger.keep",
                format!(
                    "{} is shorter than schedule.cooldown: the ledger must remember a recipient as long as the cooldown holds them back",
                    self.ledger.keep
                ),
            )),
            _ => Ok(()),
        }
    }
}

/// A key earlier versions took and this one does not, with what replaces it.
fn retired_key(text: &str) -> Option<String> {
    let table: toml::Table = text.parse().ok()?;
    table.get("schedule")?.get("state_dir").map(|_| {
        "schedule.state_dir is gone: the daily counts now live in the ledger; \
             set ledger.url = \"sqlite:///PATH/ledger.db\" (leave it out for \
             $XDG_STATE_HOME/interacto-bulk/ledger.db)"
            .to_string()
    })
}

/// A message about the config file with whatever `api_key` is set to taken
/// out: a parser may quote the value it could not read.
fn without_api_key(text: &str, mut message: String) -> String {
    for line in text.lines() {
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if key.trim().trim_matches('"') != "api_key" {
            continue;
        }
        let value = value.trim().trim_matches(['"', '\'']).trim();
        if value.len() >= 4 {
            message = message.replace(value, "<the API key>");
        }
    }
    message
}

/// The largest config file read: a real one is a few KiB.
const CONFIG_BYTES_MAX: u64 = 1024 * 1024;

#[cfg(unix)]
fn writable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o022 != 0)
}

#[cfg(not(unix))]
fn writable_by_others(_: &Path) -> bool {
    false
}

#[cfg(unix)]
fn readable_by_others(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path).is_ok_and(|meta| meta.permissions().mode() & 0o044 != 0)
}

#[cfg(not(unix))]
fn readable_by_others(_: &Path) -> bool {
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> Settings {
        Settings::from_toml(text, "test.toml").unwrap()
    }

    fn parse(text: &str) -> Result<Settings, ConfigError> {
        Settings::from_toml(text, "test.toml")?
            .resolve(Environment::default(), Overrides::default())
    }

    #[test]
    fn an_empty_file_gives_safe_defaults() {
        let settings = parse("").unwrap();
        assert_eq!(settings.pacing.rate.to_string(), "20/min");
        assert!(settings.pacing.pace_by_message);
        assert_eq!(settings.pacing.min_delay, 2.0);
        assert_eq!(settings.api.base_url.as_str(), "https://api.interacto.io/");
        assert_eq!(
            settings.campaign.default_region,
            crate::campaign::phone::Region::BR
        );
    }

    #[test]
    fn a_bad_value_is_named_by_its_file_line_and_key() {
        let error = parse("# pacing\n[pacing]\nburst = 2\nrate = \"fast\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.starts_with("config file test.toml, line 4: pacing.rate: `fast` is not a rate"),
            "{error}"
        );
        let error = parse("[retry]\ninitial_backoff = -1\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("line 2: retry.initial_backoff: -1 is not"),
            "{error}"
        );
        let error = parse("[pacing\n").unwrap_err().to_string();
        assert!(
            error.starts_with("config file test.toml, line 1: "),
            "{error}"
        );
    }

    #[test]
    fn countries_must_be_countries_and_the_card_a_valid_one() {
        for (config, key) in [
            (
                "[campaign]\ndefault_region = \"XX\"\n",
                "campaign.default_region",
            ),
            (
                "[campaign]\ncountries = [\"BR\", \"XX\"]\n",
                "campaign.countries",
            ),
            ("[campaign]\ncountries = []\n", "campaign.countries"),
            (
                "[campaign.card]\nname = \" \"\nphone = \"+55 11 3003-4000\"\n",
                "campaign.card.name",
            ),
            (
                "[campaign.card]\nname = \"Loja\"\nphone = \"4798765432\"\n",
                "campaign.card.phone",
            ),
            ("[campaign.card]\nname = \"Loja\"\n", "campaign.card"),
        ] {
            let error = parse(config).unwrap_err().to_string();
            assert!(error.contains(key), "{config}: {error}");
        }
        let settings = parse("[campaign]\ncountries = [\"br\", \"PT\"]\n").unwrap();
        assert_eq!(
            settings.campaign.countries,
            [
                crate::campaign::phone::Region::BR,
                crate::campaign::phone::Region::PT
            ]
        );
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
        let file = file(
            "[api]\nbase_url = \"https://file.example\"\ninstance_id = \"file\"\n[pacing]\nrate = \"1/s\"\n",
        );
        let env = Environment {
            instance_id: Some("env".into()),
            ..Environment::default()
        };
        let flags = Overrides {
            rate: Some("7/min".parse().unwrap()),
            ..Overrides::default()
        };
        let settings = file.resolve(env, flags).unwrap();
        assert_eq!(settings.pacing.rate.to_string(), "7/min");
        assert_eq!(settings.api.senders(), vec!["env"]);
        assert_eq!(settings.api.base_url.host_str(), Some("file.example"));
    }

    #[test]
    fn several_instances_come_from_the_file_or_from_repeated_flags() {
        let settings = parse("[api]\ninstances = [\"a\", \"b\"]\n").unwrap();
        assert_eq!(settings.api.senders(), vec!["a", "b"]);
        let error = parse("[api]\ninstance_id = \"a\"\ninstances = [\"b\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("not both"), "{error}");
        let error = parse("[api]\ninstances = [\"a\", \"a\"]\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("twice"), "{error}");
        let file = file("[api]\ninstances = [\"a\"]\n");
        let flags = Overrides {
            instances: vec!["x".into(), "y".into()],
            ..Overrides::default()
        };
        let settings = file.resolve(Environment::default(), flags).unwrap();
        assert_eq!(settings.api.senders(), vec!["x", "y"]);
    }

    #[test]
    fn the_old_state_dir_is_refused_naming_the_ledger() {
        let error = parse("[schedule]\nstate_dir = \"/tmp/x\"\n")
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("schedule.state_dir") && error.contains("ledger.url"),
            "{error}"
        );
    }

    #[test]
    fn the_ledger_comes_from_the_flag_the_environment_or_the_file() {
        let file = file("[ledger]\nurl = \"sqlite:///file/ledger.db\"\n");
        let env = Environment {
            ledger_url: Some("sqlite:///env/ledger.db".into()),
            ..Environment::default()
        };
        let from_env = file
            .clone()
            .resolve(env.clone(), Overrides::default())
            .unwrap();
        assert_eq!(
            from_env.ledger.url.unwrap().to_string(),
            "sqlite:///env/ledger.db"
        );
        assert_eq!(from_env.ledger.url_origin, UrlOrigin::Environment);
        assert_eq!(
            file.ledger.url_origin,
            UrlOrigin::ConfigFile(PathBuf::from("test.toml"))
        );
        let flags = Overrides {
            ledger: Some("sqlite:///flag/ledger.db".parse().unwrap()),
            ..Overrides::default()
        };
        let from_flag = file.clone().resolve(env, flags).unwrap();
        assert_eq!(
            from_flag.ledger.url.unwrap().to_string(),
            "sqlite:///flag/ledger.db"
        );
        assert_eq!(from_flag.ledger.url_origin, UrlOrigin::Flag);
        let nothing_set = parse("").unwrap();
        assert_eq!(nothing_set.ledger.url_origin, UrlOrigin::Default);
        let error = parse("[ledger]\nurl = \"mysql://x\"\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("ledger.url"), "{error}");
    }

    #[test]
    fn the_schedule_is_checked_at_start() {
        let settings = parse("[schedule]\nwindow = \"08:00-20:00\"\ntimezone = \"America/Sao_Paulo\"\ndaily_cap = 100\n").unwrap();
        assert_eq!(settings.schedule.window.unwrap().to_string(), "08:00-20:00");
        assert_eq!(settings.schedule.daily_cap, Some(100));
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
        let settings = Settings::default()
            .resolve(env, Overrides::default())
            .unwrap();
        assert!(!format!("{settings:?}").contains("s3cret-key"));
    }
}
