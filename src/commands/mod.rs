//! The commands beside a campaign's run: `numbers` (each number's day,
//! pause and resume), `suppress` (the opt-out list) and `ledger` (what the
//! ledger holds, pruning it, forgetting a person). Each takes the settings
//! and its task as plain types: only `main.rs` and `cli.rs` know the flags.

mod ledger;
mod numbers;
mod suppress;

pub use ledger::{keep_ledger, LedgerTask};
pub use numbers::{numbers, pause_number, resume_number, Pause};
pub use suppress::{suppress, SuppressTask};

use tokio_util::sync::CancellationToken;

use crate::clock::Clock;
use crate::config::Settings;
use crate::exit::RunError;
use crate::ledger::{Ledger, UrlOrigin};

/// What a command does when the ledger it names is not there yet. Only a
/// send starts one unasked: an opt-out or a pause put into a new, empty
/// ledger is one no run reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IfNew {
    /// Refuse, creating nothing, saying how to name the runs' ledger or to
    /// ask for a new one (`--create`).
    Refuse,
    /// Create it (`--create`).
    Create,
    /// Refuse, with no new one to offer: `report --ledger` shows what a
    /// ledger knows, and a new one knows nothing.
    RefuseOnly,
}

impl IfNew {
    /// `--create` given, or not.
    pub fn create(create: bool) -> IfNew {
        match create {
            true => IfNew::Create,
            false => IfNew::Refuse,
        }
    }
}

/// The ledger `settings` name, said on stderr with where its URL came from
/// (a person who sees another ledger than the runs' learns why).
async fn open_ledger(settings: &Settings, if_new: IfNew) -> Result<Ledger, RunError> {
    // A command of a moment: nothing to stop it but the server's answer.
    let (stop, clock) = (CancellationToken::new(), Clock::system());
    let ledger = match if_new {
        IfNew::Create => Some(Ledger::open(&settings.ledger, &stop, clock).await?),
        IfNew::Refuse | IfNew::RefuseOnly => {
            Ledger::open_existing(&settings.ledger, &stop, clock).await?
        }
    };
    let ledger = ledger.ok_or_else(|| RunError::Usage(no_ledger(settings, if_new)))?;
    tracing::info!("ledger {ledger} ({})", settings.ledger.url_origin);
    Ok(ledger)
}

/// Why a command refused a ledger that is not there, and what to do.
fn no_ledger(settings: &Settings, if_new: IfNew) -> String {
    let url = settings
        .ledger
        .url_or_default()
        .expect("checked with the settings");
    let origin = &settings.ledger.url_origin;
    let read = match origin {
        UrlOrigin::Default => format!("; this command read {}", settings.config_file()),
        _ => String::new(),
    };
    let what_to_do = match if_new {
        IfNew::Refuse | IfNew::Create => {
            "name the ledger your runs use with --config FILE (its ledger.url) or --ledger URL, \
             or add --create to start a new, empty one there"
        }
        IfNew::RefuseOnly => "name the ledger your runs use with --ledger URL",
    };
    format!("no ledger at {url} ({origin}{read}): nothing was created; {what_to_do}")
}
