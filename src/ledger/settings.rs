//! `[ledger]`: where the ledger is.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::Deserialize;

use crate::setting::{self, invalid, InvalidSetting};

/// `[ledger]`, with `INTERACTO_LEDGER_URL` and `--ledger` laid over it.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerSettings {
    /// `sqlite://PATH`; `None`: `$XDG_STATE_HOME/interacto-bulk/ledger.db`.
    #[serde(deserialize_with = "setting::optional_from_text")]
    pub url: Option<LedgerUrl>,
}

impl LedgerSettings {
    pub fn check(&self) -> Result<(), InvalidSetting> {
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

/// Where a ledger is. Shown without any password.
#[derive(Clone, PartialEq, Eq)]
pub enum LedgerUrl {
    /// A SQLite file on this machine.
    Sqlite(PathBuf),
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
        let scheme = text.split("://").next().unwrap_or(text);
        Err(format!(
            "`{scheme}://…` is not a ledger: write sqlite://PATH"
        ))
    }
}

impl fmt::Display for LedgerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LedgerUrl::Sqlite(path) => write!(f, "sqlite://{}", path.display()),
        }
    }
}

impl fmt::Debug for LedgerUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "LedgerUrl({self})")
    }
}
