//! `[ledger]`: where the ledger is.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;

use crate::setting::{self, invalid, InvalidSetting};

/// `[ledger]`, with `INTERACTO_LEDGER_URL` and `--ledger` laid over it.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// `sqlite://PATH`; `None`: `$XDG_STATE_HOME/interacto-bulk/ledger.db`.
    #[serde(deserialize_with = "setting::optional_from_text")]
    pub url: Option<LedgerUrl>,
    /// Where `url` came from, for saying which ledger a command uses.
    #[serde(skip)]
    pub url_origin: UrlOrigin,
    /// How long the ledger remembers a card.
    #[serde(deserialize_with = "setting::from_text")]
    pub keep: Keep,
    /// PostgreSQL: how long to wait for a connection.
    #[serde(deserialize_with = "setting::seconds")]
    pub connect_timeout: Duration,
    /// PostgreSQL: how long a statement waits for a row another session
    /// holds (another run's transaction) before the run gives up.
    #[serde(deserialize_with = "setting::seconds")]
    pub lock_timeout: Duration,
    /// PostgreSQL: the longest any statement may take; a server that does
    /// not answer within it (and a few seconds more) is given up on.
    #[serde(deserialize_with = "setting::seconds")]
    pub statement_timeout: Duration,
}

impl Default for LedgerSettings {
    fn default() -> Self {
        LedgerSettings {
            url: None,
            url_origin: UrlOrigin::Default,
            keep: Keep::default(),
            connect_timeout: Duration::from_secs(10),
            lock_timeout: Duration::from_secs(10),
            statement_timeout: Duration::from_secs(30),
        }
    }
}

/// `ledger.keep`: how long a card is remembered (its campaign's memory, the
/// same-card day, the cooldown, the daily counts), written in days like
/// `400d`; older ones are pruned. The suppression list is kept for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keep(pub Duration);

impl Keep {
    /// The moment before which cards are older than this, at `now`.
    pub fn cutoff(self, now: jiff::Timestamp) -> jiff::Timestamp {
        let keep = jiff::SignedDuration::try_from(self.0).unwrap_or(jiff::SignedDuration::MAX);
        now.checked_sub(keep).unwrap_or(jiff::Timestamp::MIN)
    }

    /// [`Keep::cutoff`] in nanoseconds since 1970.
    pub fn cutoff_nanos(self, now: i64) -> i64 {
        now.saturating_sub(crate::pacing::nanos(self.0))
    }

    /// The least: the same card's 24 hours, and a card in flight, must
    /// outlive any prune.
    const LEAST_DAYS: u64 = 2;
    /// A century: more is a typo.
    const MOST_DAYS: u64 = 36_500;
}

impl Default for Keep {
    /// `400d`: a campaign run once a year is still remembered the next.
    fn default() -> Self {
        Keep(Duration::from_secs(400 * 86_400))
    }
}

impl FromStr for Keep {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let days = text
            .trim()
            .strip_suffix('d')
            .and_then(|days| days.trim().parse::<u64>().ok())
            .ok_or_else(|| format!("`{text}` is not a number of days: write it like 400d"))?;
        match days {
            days if days < Keep::LEAST_DAYS => Err(format!(
                "`{text}` is too short: the ledger keeps cards at least {}d",
                Keep::LEAST_DAYS
            )),
            days if days > Keep::MOST_DAYS => Err(format!(
                "`{text}` is more than a century ({}d)",
                Keep::MOST_DAYS
            )),
            days => Ok(Keep(Duration::from_secs(days * 86_400))),
        }
    }
}

impl fmt::Display for Keep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}d", self.0.as_secs() / 86_400)
    }
}

impl LedgerSettings {
    pub fn check(&self) -> Result<(), InvalidSetting> {
        for (key, wait) in [
            ("ledger.connect_timeout", self.connect_timeout),
            ("ledger.lock_timeout", self.lock_timeout),
            ("ledger.statement_timeout", self.statement_timeout),
        ] {
            if wait.is_zero() || wait > Duration::from_secs(3_600) {
                return Err(invalid(
                    key,
                    format!(
                        "{} s: write a number of seconds above 0, at most 3600",
                        wait.as_secs_f64()
                    ),
                ));
            }
        }
        match self.url_or_default() {
            Some(_) => Ok(()),
            None => Err(invalid(
                "ledger.url",
                "this platform has no state directory for the default ledger; set one, such as sqlite:///var/lib/interacto-bulk/ledger.db",
            )),
        }
    }

    /// The ledger to use: the one set, else the default file.
    pub fn url_or_default(&self) -> Option<LedgerUrl> {
        self.url.clone().or_else(|| {
            let dir = dirs::state_dir().or_else(dirs::data_local_dir)?;
            Some(LedgerUrl::Sqlite(
                dir.join("interacto-bulk").join("ledger.db"),
            ))
        })
    }
}

/// Where the ledger's URL came from: an operator who finds a command
/// working on another ledger than the runs' needs to know why.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum UrlOrigin {
    /// Nothing named one: the default file.
    #[default]
    Default,
    /// `ledger.url` in this config file.
    ConfigFile(PathBuf),
    /// `INTERACTO_LEDGER_URL`.
    Environment,
    /// `--ledger`.
    Flag,
}

impl fmt::Display for UrlOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UrlOrigin::Default => {
                f.write_str("the default: no --ledger, INTERACTO_LEDGER_URL or ledger.url")
            }
            UrlOrigin::ConfigFile(path) => write!(f, "ledger.url in {}", path.display()),
            UrlOrigin::Environment => f.write_str("INTERACTO_LEDGER_URL"),
            UrlOrigin::Flag => f.write_str("--ledger"),
        }
    }
}

/// Where a ledger is. Shown without any password.
#[derive(Clone, PartialEq, Eq)]
pub enum LedgerUrl {
    /// A SQLite file on this machine.
    Sqlite(PathBuf),
    /// A PostgreSQL database (15 or later), as libpq writes it:
    /// `postgres://user:password@host:port/database`.
    Postgres(String),
}

impl FromStr for LedgerUrl {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        if let Some(path) = text.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(
                    "`sqlite://` needs a path, such as sqlite:///var/lib/interacto-bulk/ledger.db"
                        .to_string(),
                );
            }
            return Ok(LedgerUrl::Sqlite(PathBuf::from(path)));
        }
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            text.parse::<tokio_postgres::Config>().map_err(|error| {
                format!("`{}` is not a PostgreSQL URL: {error}", hide_password(text))
            })?;
            return Ok(LedgerUrl::Postgres(text.to_string()));
        }
        let scheme = text.split("://").next().unwrap_or(text);
        Err(format!(
            "`{scheme}://…` is not a ledger: write sqlite://PATH or postgres://USER@HOST/DATABASE"
        ))
    }
}

impl fmt::Display for LedgerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
            LedgerUrl::Postgres(text) => f.write_str(&hide_password(text)),
        }
    }
}

impl fmt::Debug for LedgerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LedgerUrl({self})")
    }
}

/// `postgres://user:***@host/db`: a URL as it may be shown. Read as text,
/// not as a URL: a password may hold `@` and `/`, so the user's part ends
/// at the last `@`; and a password in the query (`?password=`) is hidden
/// too.
fn hide_password(text: &str) -> String {
    let Some((scheme, rest)) = text.split_once("://") else {
        return "…".to_string();
    };
    let (user, place) = match rest.rsplit_once('@') {
        Some((userinfo, place)) => match userinfo.split_once(':') {
            Some((user, _)) => (format!("{user}:***@"), place),
            None => (format!("{userinfo}@"), place),
        },
        None => (String::new(), rest),
    };
    let place = match place.split_once('?') {
        Some((path, query)) => {
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}?{}", query.join("&"))
        }
        None => place.to_string(),
    };
    format!("{scheme}://{user}{place}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_postgres_password_is_never_shown() {
        let url: LedgerUrl = "postgres://bulk:s3cret@db.example:5433/ledger"
            .parse()
            .unwrap();
        assert_eq!(
            url.to_string(),
            "postgres://bulk:***@db.example:5433/ledger"
        );
        assert!(!format!("{url:?}").contains("s3cret"));
        let error = "postgres://bulk:s3cret@db.example:notaport/ledger"
            .parse::<LedgerUrl>()
            .unwrap_err();
        assert!(!error.contains("s3cret"), "{error}");
    }
}
