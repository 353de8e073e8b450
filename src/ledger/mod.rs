//! The ledger: what every run must know about the sending numbers, shared
//! by every run that points at it — a SQLite file on one machine (the
//! default), or a PostgreSQL database for several. It holds each number's
//! clock (when its next message may leave: every run through the number
//! books its turns there, so together they keep its pace) and its daily
//! count (a run takes a message from the cap in one atomic step, so no two
//! runs can both take the last one).
//!
//! It fails closed: a ledger that cannot be opened stops the run before
//! anything is sent, and one lost mid-run halts it.

mod postgres;
mod settings;
mod sqlite;

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use jiff::civil::Date;

use crate::pacing::{nanos, Pace};
use crate::schedule::DailyCap;

pub use settings::{LedgerSettings, LedgerUrl};

/// The ledger of a run: the shared one, or a throwaway one for rehearsals.
pub enum Ledger {
    Sqlite(sqlite::SqliteLedger),
    Postgres(postgres::PostgresLedger),
}

/// What the ledger knows of one number.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberRecord {
    pub instance_id: String,
    /// The first day it was seen sending (with a daily cap or warm-up set).
    pub first_day: Option<Date>,
    /// GCRA's next theoretical turn, nanoseconds since 1970.
    pub next_at: Option<i64>,
    /// Messages counted per day, from the days asked for.
    pub sent: BTreeMap<Date, u64>,
}

/// A recipient on the suppression list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    /// The phone, normalised as campaign phones are.
    pub phone: String,
    pub reason: String,
    /// When it was added, UTC (`2026-11-25T13:00:00Z`).
    pub added_at: String,
}

/// What counting a message against a daily cap came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Taken {
    /// Counted: it may be sent.
    Counted,
    /// The day's cap, which is reached: it may not.
    CapReached(u64),
}

/// The ledger cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("ledger {url}: {problem}")]
pub struct LedgerError {
    /// Where the ledger is, its password hidden.
    pub url: String,
    pub problem: String,
}

impl Ledger {
    /// Opens the ledger at `url`, creating and migrating its schema on
    /// first use.
    pub async fn open(url: &LedgerUrl) -> Result<Ledger, LedgerError> {
        match url {
            LedgerUrl::Sqlite(path) => Ok(Ledger::Sqlite(
                sqlite::SqliteLedger::open(Some(path.clone())).await?,
            )),
            LedgerUrl::Postgres(text) => Ok(Ledger::Postgres(
                postgres::PostgresLedger::open(text, url.to_string()).await?,
            )),
        }
    }

    /// A ledger in memory, gone with the run: rehearsals (`--mock`, dry
    /// runs) must not spend the real numbers' caps.
    pub async fn throwaway() -> Result<Ledger, LedgerError> {
        Ok(Ledger::Sqlite(sqlite::SqliteLedger::open(None).await?))
    }

    /// Counts one more message for `instance` on `day`, unless that day's
    /// cap (its warm-up cap on the number's first days of sending, counted
    /// from the first the ledger saw) is reached. One atomic step.
    pub async fn take_from_daily_cap(
        &self,
        instance: &str,
        day: Date,
        cap: &DailyCap,
    ) -> Result<Taken, LedgerError> {
        match self {
            Ledger::Sqlite(store) => store.take_from_daily_cap(instance, day, cap).await,
            Ledger::Postgres(store) => store.take_from_daily_cap(instance, day, cap).await,
        }
    }

    /// Books the next turns of `instance` for messages whose phone takes
    /// `phone_times` (nanoseconds), in one atomic step against every other
    /// run sharing the ledger; returns when each may leave (nanoseconds
    /// since 1970, this machine's clock).
    pub async fn book_turns(
        &self,
        instance: &str,
        pace: Pace,
        phone_times: Vec<i64>,
    ) -> Result<Vec<i64>, LedgerError> {
        match self {
            Ledger::Sqlite(store) => store.book_turns(instance, pace, phone_times).await,
            Ledger::Postgres(store) => store.book_turns(instance, pace, phone_times).await,
        }
    }

    /// Every number the ledger knows, with its counts from `since` on.
    pub async fn numbers(&self, since: Date) -> Result<Vec<NumberRecord>, LedgerError> {
        match self {
            Ledger::Sqlite(store) => store.numbers(since).await,
            Ledger::Postgres(store) => store.numbers(since).await,
        }
    }

    /// Adds recipients to the suppression list; returns how many were not
    /// on it already (those keep their first reason and date).
    pub async fn suppress(&self, entries: Vec<Suppression>) -> Result<usize, LedgerError> {
        match self {
            Ledger::Sqlite(store) => store.suppress(entries).await,
            Ledger::Postgres(store) => store.suppress(entries).await,
        }
    }

    /// Takes phones off the suppression list; returns how many were on it.
    pub async fn unsuppress(&self, phones: Vec<String>) -> Result<usize, LedgerError> {
        match self {
            Ledger::Sqlite(store) => store.unsuppress(phones).await,
            Ledger::Postgres(store) => store.unsuppress(phones).await,
        }
    }

    /// The whole suppression list, by phone.
    pub async fn suppressed(&self) -> Result<Vec<Suppression>, LedgerError> {
        match self {
            Ledger::Sqlite(store) => store.suppressed().await,
            Ledger::Postgres(store) => store.suppressed().await,
        }
    }

    /// Checks and records each message about to leave, in one atomic step
    /// against every run sharing the ledger: the same card to the same
    /// recipient within [`SAME_CARD_WINDOW`], or any message to a recipient
    /// within `cooldown`, is refused; the others are recorded as sent now.
    pub async fn claim(
        &self,
        claims: Vec<Claim>,
        cooldown: Option<std::time::Duration>,
    ) -> Result<Vec<Claimed>, LedgerError> {
        let cooldown = cooldown.map(nanos);
        match self {
            Ledger::Sqlite(store) => store.claim(claims, cooldown).await,
            Ledger::Postgres(store) => store.claim(claims, cooldown).await,
        }
    }

    /// Takes back the record of a message granted at `at` that then did
    /// not go (the API refused it, or the run stopped first): a `--resume`
    /// must be able to send it.
    pub async fn release(
        &self,
        recipient: &str,
        card_phone: &str,
        at: i64,
    ) -> Result<(), LedgerError> {
        match self {
            Ledger::Sqlite(store) => store.release(recipient, card_phone, at).await,
            Ledger::Postgres(store) => store.release(recipient, card_phone, at).await,
        }
    }

    /// Recent contacts: cards within [`SAME_CARD_WINDOW`], recipients
    /// within `cooldown`.
    pub async fn recent_contacts(
        &self,
        cooldown: Option<std::time::Duration>,
    ) -> Result<RecentContacts, LedgerError> {
        let now = now_nanos();
        let cards_since = now - nanos(SAME_CARD_WINDOW);
        let recipients_since = cooldown.map_or(i64::MAX, |cooldown| now - nanos(cooldown));
        match self {
            Ledger::Sqlite(store) => store.recent_contacts(cards_since, recipients_since).await,
            Ledger::Postgres(store) => store.recent_contacts(cards_since, recipients_since).await,
        }
    }

    /// How many messages `instance` sent on `day`, for reports and tests.
    pub async fn sent_on(&self, instance: &str, day: Date) -> Result<u64, LedgerError> {
        match self {
            Ledger::Sqlite(store) => store.sent_on(instance, day).await,
            Ledger::Postgres(store) => store.sent_on(instance, day).await,
        }
    }
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Ledger::Sqlite(store) => write!(f, "Ledger({})", store.shown()),
            Ledger::Postgres(store) => write!(f, "Ledger({})", store.shown()),
        }
    }
}

/// The schema, one step a version: a ledger at version N gets steps N+1… on
/// opening. Never edit a step that has shipped; add one.
const MIGRATIONS: &[&str] = &[
    // 1: messages counted per number and day.
    "CREATE TABLE daily_counts (
         instance_id TEXT NOT NULL,
         day TEXT NOT NULL,
         sent BIGINT NOT NULL,
         PRIMARY KEY (instance_id, day)
     )",
    // 2: each number's clock (pacing::ClockState), in nanoseconds since 1970.
    "CREATE TABLE clocks (
         instance_id TEXT NOT NULL PRIMARY KEY,
         next_at BIGINT NOT NULL,
         phone_free_at BIGINT NOT NULL
     )",
    // 3: the first day each number was seen sending, for its warm-up.
    "CREATE TABLE numbers (
         instance_id TEXT NOT NULL PRIMARY KEY,
         first_day TEXT NOT NULL
     )",
    // 4: recipients who must never get a message (opt-outs).
    "CREATE TABLE suppressed (
         phone TEXT NOT NULL PRIMARY KEY,
         reason TEXT NOT NULL,
         added_at TEXT NOT NULL
     )",
    // 5: the last time each card went to each recipient (nanoseconds
    //    since 1970); a recipient's latest is when it was last reached.
    "CREATE TABLE cards (
         recipient TEXT NOT NULL,
         card_phone TEXT NOT NULL,
         instance_id TEXT NOT NULL,
         sent_at BIGINT NOT NULL,
         PRIMARY KEY (recipient, card_phone)
     )",
];

/// How long the same card to the same recipient counts as a repeat.
pub const SAME_CARD_WINDOW: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// A message about to leave, as the ledger checks and records it.
#[derive(Debug, Clone)]
pub struct Claim {
    pub recipient: String,
    pub card_phone: String,
    pub instance_id: String,
    /// An `UNKNOWN` the user asked to send again: no same-card check.
    pub resending: bool,
}

/// What the ledger said of a message about to leave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// Recorded as sent at this time: it may go.
    Granted(i64),
    /// The same card went to the same recipient at this time (nanoseconds
    /// since 1970), within [`SAME_CARD_WINDOW`].
    SameCardAt(i64),
    /// The recipient was reached recently: not before this time.
    CoolingUntil(i64),
}

/// What the ledger knew, at a run's start, of recent contacts: for marking
/// rows before any turn is booked (the claim when a message leaves is what
/// holds against runs at the same moment).
#[derive(Debug, Clone, Default)]
pub struct RecentContacts {
    /// `recipient` -> `card phone` -> when it last went.
    pub cards: HashMap<String, HashMap<String, i64>>,
    /// `recipient` -> when it was last reached.
    pub recipients: HashMap<String, i64>,
}

impl Claimed {
    /// Decides one claim from what the ledger holds: the card's last time,
    /// the recipient's last time.
    pub fn decide(
        claim: &Claim,
        card_sent_at: Option<i64>,
        last_reached: Option<i64>,
        now: i64,
        cooldown: Option<i64>,
    ) -> Claimed {
        let window = nanos(SAME_CARD_WINDOW);
        // Rows of one claim batch share `now`; a card claimed a moment ago
        // by this very batch has the same time and is a repeat too.
        if let Some(sent_at) = card_sent_at.filter(|at| !claim.resending && *at > now - window) {
            return Claimed::SameCardAt(sent_at);
        }
        if let (Some(last), Some(cooldown)) = (last_reached, cooldown) {
            if last > now - cooldown {
                return Claimed::CoolingUntil(last.saturating_add(cooldown));
            }
        }
        Claimed::Granted(now)
    }
}

/// Numbers assembled from the rows of the three tables: ids, first days,
/// clocks and counts (day as text).
fn assemble(
    first_days: Vec<(String, String)>,
    clocks: Vec<(String, i64)>,
    counts: Vec<(String, String, i64)>,
) -> Vec<NumberRecord> {
    let mut numbers: BTreeMap<String, NumberRecord> = BTreeMap::new();
    for (id, first_day) in first_days {
        let record = numbers.entry(id.clone()).or_insert_with(|| empty(&id));
        record.first_day = first_day.parse().ok();
    }
    for (id, next_at) in clocks {
        numbers
            .entry(id.clone())
            .or_insert_with(|| empty(&id))
            .next_at = Some(next_at);
    }
    for (id, day, sent) in counts {
        if let Ok(day) = day.parse() {
            let record = numbers.entry(id.clone()).or_insert_with(|| empty(&id));
            record.sent.insert(day, u64::try_from(sent).unwrap_or(0));
        }
    }
    numbers.into_values().collect()
}

fn empty(instance_id: &str) -> NumberRecord {
    NumberRecord {
        instance_id: instance_id.to_string(),
        first_day: None,
        next_at: None,
        sent: BTreeMap::new(),
    }
}

/// Which of its days of sending `day` is for a number first seen on
/// `first_day` (0 for that first day).
fn day_index(first_day: &str, day: Date) -> i64 {
    first_day
        .parse::<Date>()
        .ok()
        .and_then(|first| first.until(day).ok())
        .map_or(0, |span| i64::from(span.get_days()).max(0))
}

/// Now, in nanoseconds since 1970: the time a clock is booked against.
fn now_nanos() -> i64 {
    i64::try_from(jiff::Timestamp::now().as_nanosecond()).unwrap_or(i64::MAX)
}
