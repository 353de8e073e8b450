//! The ledger: what every run must know, shared by every run that points at
//! it — a SQLite file on one machine (the default), or a PostgreSQL database
//! for several. It holds every card let out, by recipient, card and
//! campaign (`sends`): each campaign's memory (the fate of its cards, by
//! recipient key: the one record of what was sent), and what went to each
//! recipient (for the same card within a day, and the cooldown); the
//! suppression list; each number's clock (every run through the number
//! books its turns there, so together they keep its pace) and its daily
//! count (taken in the same atomic step that lets a card leave, so no two
//! runs can both take the last one).
//!
//! It fails closed: a ledger that cannot be opened stops the run before
//! anything is sent, and one lost mid-run halts it.

mod erasure;
mod postgres;
mod settings;
mod sqlite;

use std::collections::BTreeMap;
use std::fmt;

use jiff::civil::Date;
use tokio_util::sync::CancellationToken;

use crate::admission::{self, Admission, Card, Rules};
use crate::clock::Clock;
use crate::pacing::{Booking, Pace};
use crate::schedule::DailyCap;
use crate::types::{nanos_of, AsRead, Cause, Facts, Fate, NumberHold, Remembered, Suppression};

pub use erasure::{Forgot, PhoneUses};
pub use settings::{Keep, LedgerSettings, LedgerUrl, UrlOrigin};

use erasure::{Erased, ForgottenOf, Secret};

/// The ledger of a run: the shared one, or a throwaway one for rehearsals.
pub struct Ledger {
    store: Box<dyn Store>,
    clock: Clock,
}

/// What the ledger knows of one number.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NumberRecord {
    pub instance_id: String,
    /// The first day it was seen sending (with a daily cap or warm-up set).
    pub first_day: Option<Date>,
    /// The zone its days are counted in, as the ledger keeps it ('' until a
    /// run counts it).
    pub timezone: String,
    /// GCRA's next theoretical turn, nanoseconds since 1970.
    pub next_at: Option<i64>,
    /// Messages counted per day, from the days asked for.
    pub sent: BTreeMap<Date, u64>,
    /// First contacts counted per day (`schedule.daily_new_contacts`).
    pub new_contacts: BTreeMap<Date, u64>,
}

/// The ledger cannot be opened, read or written.
#[derive(Debug, thiserror::Error)]
#[error("ledger {url}: {problem}")]
pub struct LedgerError {
    /// Where the ledger is, its password hidden.
    pub url: String,
    pub problem: String,
}

/// A row the admission step asks about as it is read.
#[derive(Debug, Clone)]
pub struct Lookup {
    pub key: String,
    pub to: String,
    pub card_phone: String,
}

/// A card about to leave through `instance_id`.
#[derive(Debug, Clone)]
pub struct Claim {
    pub key: String,
    pub to: String,
    pub card_phone: String,
    pub instance_id: String,
    /// What the admission step read of it: still true at the door if no
    /// other run wrote to the ledger since.
    pub as_read: Option<Box<AsRead>>,
}

/// What became of a card that was let out at `left_at`.
#[derive(Debug, Clone)]
pub struct Settled {
    pub key: String,
    pub to: String,
    pub card_phone: String,
    pub left_at: i64,
    /// Its record once answered (`Sent`, `Unknown` or `Failed`); `None`
    /// when its request never went (the run stopped first): the ledger
    /// forgets it, so that a later run sends it.
    pub answer: Option<Remembered>,
}

/// What the door asks of the ledger in one transaction: the answers that
/// came since the last pass, then the cards about to leave.
#[derive(Debug, Clone)]
pub struct Passing {
    pub settled: Vec<Settled>,
    pub claims: Vec<Claim>,
    pub rules: Rules,
    /// The run's clock at the pass, nanoseconds since 1970: when the cards
    /// let out leave.
    pub now: i64,
    /// Counts each card let out in its number's day, against its caps.
    pub daily_cap: DailyCap,
}

/// What the ledger said of a card about to leave.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claimed {
    /// Recorded as leaving at `left_at` (and counted against the cap): it
    /// goes now. `resending`: an earlier try may have been delivered
    /// (`--resend-unknown`), so if this one fails the card stays in doubt.
    Granted { left_at: i64, resending: bool },
    /// Held back, for this cause (a repeat is remembered as one).
    Held(Cause),
    /// Its number's cap for the day, which is reached, until the number's
    /// next day begins (nanoseconds since 1970).
    CapReached { cap: u64, until: Option<i64> },
}

impl Ledger {
    /// Opens the ledger `settings` name, creating and migrating its schema
    /// on first use; its times are read on `clock`. Once `stop` is cancelled
    /// (the run was asked to stop), a wait for a PostgreSQL server ends
    /// within seconds, whatever it does.
    pub async fn open(
        settings: &LedgerSettings,
        stop: &CancellationToken,
        clock: Clock,
    ) -> Result<Ledger, LedgerError> {
        let store = open_store(settings, Opening::MayCreate, stop, &clock)
            .await?
            .expect("a ledger that may be created is there once opened");
        Ok(Ledger { store, clock })
    }

    /// [`Ledger::open`], but only a ledger that is there already: `None`,
    /// having created nothing, where there is none yet (no SQLite file; a
    /// PostgreSQL database without the ledger's tables). A command that
    /// started a new, empty ledger would be working on one no run reads.
    pub async fn open_existing(
        settings: &LedgerSettings,
        stop: &CancellationToken,
        clock: Clock,
    ) -> Result<Option<Ledger>, LedgerError> {
        let store = open_store(settings, Opening::Existing, stop, &clock).await?;
        Ok(store.map(|store| Ledger { store, clock }))
    }

    /// A ledger in memory, gone with the run: rehearsals (`--mock`, dry
    /// runs) must not spend the real numbers' caps or enter the campaign's
    /// memory.
    pub async fn throwaway(clock: Clock) -> Result<Ledger, LedgerError> {
        let store = Box::new(sqlite::SqliteLedger::open(None, clock.clone()).await?);
        Ok(Ledger { store, clock })
    }

    /// What the ledger knows that bears on each row of `campaign`, for the
    /// admission step; the recipients' last contact only `with_cooldown`.
    /// With the facts, the ledger's epoch as they were read, where the store
    /// can tell when another run writes to it (SQLite): then a pass that
    /// finds the epoch unchanged takes them as they are.
    pub async fn facts(
        &self,
        campaign: &str,
        lookups: Vec<Lookup>,
        with_cooldown: bool,
    ) -> Result<(Vec<Facts>, Option<u64>), LedgerError> {
        self.store.facts(campaign, lookups, with_cooldown).await
    }

    /// One pass of the door, in one transaction against every run sharing
    /// the ledger: records the answers in `passing.settled`, then admits
    /// each claim on what the ledger holds now; a card that goes is counted
    /// against its number's cap and recorded as leaving, a repeat is
    /// remembered as one. Returns what became of each claim, in order.
    pub async fn pass(
        &self,
        campaign: &str,
        passing: Passing,
    ) -> Result<Vec<Claimed>, LedgerError> {
        self.store.pass(campaign, passing).await
    }

    /// Remembers fates of `campaign`'s rows decided without a pass (a
    /// repeat found as rows are read; what a results file or an earlier
    /// version's journal knew): a row's record is only filled in where it
    /// has none or a `Failed` one, or made `Sent` where it was `Unknown`.
    pub async fn remember(
        &self,
        campaign: &str,
        records: Vec<(String, Remembered)>,
    ) -> Result<(), LedgerError> {
        // One record a key, the surest first: a key may be on several lines.
        let mut by_key: BTreeMap<String, Remembered> = BTreeMap::new();
        for (key, record) in records {
            let surer = |held: &Remembered| surety(record.fate) > surety(held.fate);
            match by_key.get(&key) {
                Some(held) if !surer(held) => {}
                _ => {
                    by_key.insert(key, record);
                }
            }
        }
        if by_key.is_empty() {
            return Ok(());
        }
        let records: Vec<_> = by_key.into_iter().collect();
        self.store.remember(campaign, records).await
    }

    /// The cards of `campaign` recorded as leaving with no answer recorded:
    /// in flight in another run, or left by one that stopped.
    pub async fn unsettled(
        &self,
        campaign: &str,
    ) -> Result<Vec<(String, Remembered)>, LedgerError> {
        self.store.unsettled(campaign).await
    }

    /// Whether a run of `campaign` sent through this ledger.
    pub async fn knows(&self, campaign: &str) -> Result<bool, LedgerError> {
        self.store.knows(campaign).await
    }

    /// Notes that `campaign` sends through this ledger.
    pub async fn meet(&self, campaign: &str) -> Result<(), LedgerError> {
        self.store.meet(campaign, self.clock.now_nanos()).await
    }

    /// Books the next turns of `instance` for messages whose phone takes
    /// `phone_times` (nanoseconds), in one atomic step against every other
    /// run sharing the ledger; returns when each may leave (nanoseconds
    /// since 1970, on the clock the booking read).
    pub async fn book_turns(
        &self,
        instance: &str,
        pace: Pace,
        phone_times: Vec<i64>,
    ) -> Result<Booking, LedgerError> {
        self.store.book_turns(instance, pace, phone_times).await
    }

    /// Every number the ledger knows, with its counts from `since` on.
    pub async fn numbers(&self, since: Date) -> Result<Vec<NumberRecord>, LedgerError> {
        self.store.numbers(since).await
    }

    /// The id of every number the ledger knows, in order: each that booked
    /// a turn or was counted (it has sent, or was about to), and each paused
    /// or held now. `numbers` lists these, and `numbers pause` and `resume`
    /// take no other without being told it is new.
    pub async fn number_ids(&self) -> Result<Vec<String>, LedgerError> {
        let mut ids = self.store.number_ids(self.clock.now_nanos()).await?;
        // In Rust's order, whatever the store's collation.
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    /// Adds recipients to the suppression list; returns how many were not
    /// on it already (those keep their first reason and date).
    pub async fn suppress(&self, entries: Vec<Suppression>) -> Result<usize, LedgerError> {
        self.store.suppress(entries).await
    }

    /// Takes phones off the suppression list; returns how many were on it.
    pub async fn unsuppress(&self, phones: Vec<String>) -> Result<usize, LedgerError> {
        self.store.unsuppress(phones).await
    }

    /// The whole suppression list, by phone.
    pub async fn suppressed(&self) -> Result<Vec<Suppression>, LedgerError> {
        self.store.suppressed().await
    }

    /// Keeps a number from sending, for every run sharing the ledger. An
    /// operator's hold (`by_operator`) replaces any other; a run's verdict
    /// only one it outlasts. Returns whether it was set.
    pub async fn hold_number(
        &self,
        hold: NumberHold,
        by_operator: bool,
    ) -> Result<bool, LedgerError> {
        let now = self.clock.now_nanos();
        self.store.hold_number(hold, by_operator, now).await
    }

    /// Lets a number send again; whether it was held.
    pub async fn release_number(&self, instance: &str) -> Result<bool, LedgerError> {
        self.store.release_number(instance).await
    }

    /// The numbers held now.
    pub async fn holds(&self) -> Result<Vec<NumberHold>, LedgerError> {
        self.store.holds(self.clock.now_nanos()).await
    }

    /// Removes the cards older than `keep` and the daily counts of their
    /// days, oldest first, at most `most` cards (`None`: all, a transaction
    /// for each [`PRUNE_BATCH`]). Older by a clock the ledger can trust:
    /// never past `keep` before its own newest card, whatever this run's
    /// clock says (one a year ahead would forget every card), and with
    /// PostgreSQL by the server's clock. The suppression list is never
    /// pruned.
    pub async fn prune(&self, keep: Keep, most: Option<u64>) -> Result<Pruned, LedgerError> {
        let clocks = self.store.pruning_clocks(self.clock.now_nanos()).await?;
        let Some(before) = clocks.trusted().map(|trusted| keep.cutoff_nanos(trusted)) else {
            return Ok(Pruned::default());
        };
        let day = jiff::Timestamp::from_nanosecond(i128::from(before))
            .unwrap_or_default()
            .to_zoned_datetime(jiff::tz::TimeZone::UTC)
            .date();
        let mut pruned = Pruned {
            before: Some(before),
            ..Pruned::default()
        };
        loop {
            let batch = most.map_or(PRUNE_BATCH, |most| (most - pruned.cards).min(PRUNE_BATCH));
            let done = self.store.prune(before, day, batch).await?;
            pruned.cards += done.cards;
            pruned.daily_counts += done.daily_counts;
            if done.cards < batch || most.is_some_and(|most| pruned.cards >= most) {
                break;
            }
        }
        // Said only when this clock would have forgotten more.
        if clocks.ahead_of_newest() {
            let by_this_clock = keep.cutoff_nanos(clocks.now);
            if self.store.any_card_before(by_this_clock).await? {
                pruned.clock_ahead = Some(clocks);
            }
        }
        Ok(pruned)
    }

    /// What the ledger holds.
    pub async fn stats(&self) -> Result<LedgerStats, LedgerError> {
        self.store.stats().await
    }

    /// How the ledger knows each of `phones` (normalised): as a recipient,
    /// or as the phone on others' cards.
    pub async fn phone_uses(&self, phones: Vec<String>) -> Result<Vec<PhoneUses>, LedgerError> {
        self.store.phone_uses(phones).await
    }

    /// Erases every card sent to each of `phones` (normalised) and, with
    /// `as_card`, every card carrying it as the card's phone, in one
    /// transaction, keeping only what the campaigns must know of them as
    /// digests ([`erasure`]); their entries on the suppression list stay.
    /// Then the store is made to hold nothing more of them on disk, as far
    /// as it can. Returns how many cards went for each phone.
    pub async fn forget(&self, phones: Vec<String>, as_card: bool) -> Result<Forgot, LedgerError> {
        self.store.forget(phones, as_card).await
    }

    /// The clock the ledger's times are read on: the run's.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }
}

/// What a ledger's store does, each call one transaction (or, where it
/// says, a few): SQLite on one machine, PostgreSQL for several. [`Ledger`]
/// holds one and adds what is the same for both (the clock, a prune's
/// batches, a record a key).
#[async_trait::async_trait]
trait Store: Send + Sync {
    /// Where the store is, its password hidden.
    fn shown(&self) -> &str;
    async fn facts(
        &self,
        campaign: &str,
        lookups: Vec<Lookup>,
        with_cooldown: bool,
    ) -> Result<(Vec<Facts>, Option<u64>), LedgerError>;
    async fn pass(&self, campaign: &str, passing: Passing) -> Result<Vec<Claimed>, LedgerError>;
    async fn remember(
        &self,
        campaign: &str,
        records: Vec<(String, Remembered)>,
    ) -> Result<(), LedgerError>;
    async fn unsettled(&self, campaign: &str) -> Result<Vec<(String, Remembered)>, LedgerError>;
    async fn knows(&self, campaign: &str) -> Result<bool, LedgerError>;
    async fn meet(&self, campaign: &str, now: i64) -> Result<(), LedgerError>;
    /// Books on the run's clock (SQLite, read inside the transaction) or on
    /// the server's (PostgreSQL: one for every machine).
    async fn book_turns(
        &self,
        instance: &str,
        pace: Pace,
        phone_times: Vec<i64>,
    ) -> Result<Booking, LedgerError>;
    async fn numbers(&self, since: Date) -> Result<Vec<NumberRecord>, LedgerError>;
    /// [`NUMBER_IDS`], its holds those in force at `now`.
    async fn number_ids(&self, now: i64) -> Result<Vec<String>, LedgerError>;
    async fn suppress(&self, entries: Vec<Suppression>) -> Result<usize, LedgerError>;
    async fn unsuppress(&self, phones: Vec<String>) -> Result<usize, LedgerError>;
    async fn suppressed(&self) -> Result<Vec<Suppression>, LedgerError>;
    async fn hold_number(
        &self,
        hold: NumberHold,
        by_operator: bool,
        now: i64,
    ) -> Result<bool, LedgerError>;
    async fn release_number(&self, instance: &str) -> Result<bool, LedgerError>;
    async fn holds(&self, now: i64) -> Result<Vec<NumberHold>, LedgerError>;
    /// The clock pruning goes by (`run_now`, or the server's), and when the
    /// newest card left.
    async fn pruning_clocks(&self, run_now: i64) -> Result<PruningClocks, LedgerError>;
    /// At most `most` cards, in one transaction.
    async fn prune(&self, before: i64, day: Date, most: u64) -> Result<Pruned, LedgerError>;
    /// Whether any card left before `before`.
    async fn any_card_before(&self, before: i64) -> Result<bool, LedgerError>;
    async fn stats(&self) -> Result<LedgerStats, LedgerError>;
    async fn phone_uses(&self, phones: Vec<String>) -> Result<Vec<PhoneUses>, LedgerError>;
    async fn forget(&self, phones: Vec<String>, as_card: bool) -> Result<Forgot, LedgerError>;
}

/// The most cards one prune transaction removes: other runs wait for a
/// transaction, so it stays short.
pub const PRUNE_BATCH: u64 = 10_000;

/// What a prune removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub cards: u64,
    pub daily_counts: u64,
    /// What left before this was removed (nanoseconds since 1970); `None`
    /// when the ledger holds no card to go by.
    pub before: Option<i64>,
    /// The clock went past the newest card by more than a day, and by it
    /// more would have been removed: not removed.
    pub clock_ahead: Option<PruningClocks>,
}

/// The clocks a prune goes by, nanoseconds since 1970.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruningClocks {
    /// The run's clock, or PostgreSQL's.
    pub now: i64,
    /// When the newest card in the ledger left, if it holds any.
    pub newest: Option<i64>,
}

impl PruningClocks {
    /// The latest moment the ledger's own records vouch for: its newest
    /// card, or the clock where that is earlier.
    fn trusted(&self) -> Option<i64> {
        self.newest.map(|newest| newest.min(self.now))
    }

    /// Why a prune removed less than its clock asked, in words.
    pub fn held_back(&self) -> String {
        let shown = |nanos: i64| {
            jiff::Timestamp::from_nanosecond(i128::from(nanos)).map_or_else(
                |_| nanos.to_string(),
                |at| at.strftime("%Y-%m-%d %H:%M UTC").to_string(),
            )
        };
        let newest = self.newest.unwrap_or(self.now);
        let days = (self.now.saturating_sub(newest) + DAY_NANOS / 2) / DAY_NANOS;
        format!(
            "the clock pruning goes by says {}, {days} days after the ledger's newest card \
             ({}): nothing was pruned that is not older than ledger.keep before that card. If \
             that clock runs ahead (a container, a VM restored from a snapshot), set it right: \
             by it every card would have been forgotten, and sent again; if nothing was sent \
             for {days} days, all is well",
            shown(self.now),
            shown(newest)
        )
    }

    /// Whether the clock is more than a day past the newest card: it runs
    /// ahead, or nothing was sent for a while.
    pub fn ahead_of_newest(&self) -> bool {
        self.newest
            .is_some_and(|newest| self.now > newest.saturating_add(DAY_NANOS))
    }
}

/// A day in nanoseconds.
const DAY_NANOS: i64 = 86_400 * 1_000_000_000;

/// What a ledger holds, for `ledger stats`.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LedgerStats {
    pub cards: u64,
    pub recipients: u64,
    pub suppressed: u64,
    pub numbers: u64,
    pub campaigns: u64,
    /// When the oldest and the newest card left (RFC 3339, UTC).
    pub oldest: Option<String>,
    pub newest: Option<String>,
    /// The database's size on disk (SQLite: the file with its WAL).
    pub bytes: u64,
    pub schema_version: i64,
}

/// A time of the ledger as `ledger stats` shows it.
fn stats_time(nanos: Option<i64>) -> Option<String> {
    let at = jiff::Timestamp::from_nanosecond(i128::from(nanos?)).ok()?;
    Some(at.strftime("%Y-%m-%dT%H:%M:%SZ").to_string())
}

/// Where the ledger is, its password hidden (a SQLite file by its absolute
/// path).
impl fmt::Display for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.store.shown())
    }
}

impl fmt::Debug for Ledger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Ledger({})", self.store.shown())
    }
}

/// Whether opening a ledger may start a new one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Opening {
    MayCreate,
    Existing,
}

/// The store of the ledger `settings` name; `None` when it is not there
/// and may not be created.
async fn open_store(
    settings: &LedgerSettings,
    opening: Opening,
    stop: &CancellationToken,
    clock: &Clock,
) -> Result<Option<Box<dyn Store>>, LedgerError> {
    let url = settings
        .url_or_default()
        .expect("checked with the settings");
    Ok(match &url {
        LedgerUrl::Sqlite(path) => {
            // A path relative to the working directory: cron lines in
            // different folders would each get a ledger of their own.
            let absolute = std::path::absolute(path).unwrap_or_else(|_| path.clone());
            if path.is_relative() {
                tracing::warn!(
                    "the ledger {url} is relative to the working directory: this run uses {}; \
                     runs started in another folder would use another ledger (write \
                     sqlite://{} to name this one)",
                    absolute.display(),
                    absolute.display()
                );
            }
            // A file that cannot be looked at is opened, to say why.
            let missing = matches!(absolute.try_exists(), Ok(false));
            match opening == Opening::Existing && missing {
                true => None,
                false => Some(Box::new(
                    sqlite::SqliteLedger::open(Some(absolute), clock.clone()).await?,
                )),
            }
        }
        LedgerUrl::Postgres(text) => {
            let shown = url.to_string();
            postgres::PostgresLedger::open(text, shown, settings, opening, stop.clone())
                .await?
                .map(|ledger| Box::new(ledger) as Box<dyn Store>)
        }
    })
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
    // 6: the campaigns that send through the ledger, from their first run.
    "CREATE TABLE campaigns (
         name TEXT NOT NULL PRIMARY KEY,
         first_run_at BIGINT NOT NULL
     )",
    // 7: every card let out (or found a repeat), by recipient, card and
    //    campaign: each campaign's memory of its rows (types::Remembered;
    //    `key` is '' where it is `recipient:card_phone`), and what went to
    //    each recipient. Times in nanoseconds since 1970.
    "CREATE TABLE sends (
         recipient TEXT NOT NULL,
         card_phone TEXT NOT NULL,
         campaign TEXT NOT NULL,
         key TEXT NOT NULL,
         fate TEXT NOT NULL,
         instance_id TEXT NOT NULL,
         message_id TEXT NOT NULL,
         api_status TEXT NOT NULL,
         http_status BIGINT,
         attempts BIGINT NOT NULL,
         left_at BIGINT NOT NULL,
         finished_at BIGINT NOT NULL,
         PRIMARY KEY (recipient, card_phone, campaign, key)
     )",
    // 8: the cards in flight, found at once by the run that comes next.
    "CREATE INDEX sends_leaving ON sends (campaign) WHERE fate = 'LEAVING'",
    // 9: the rows of campaigns with a key column, by key.
    "CREATE INDEX sends_by_key ON sends (campaign, key) WHERE key <> ''",
    // 10: the cards of earlier versions, which knew no campaign.
    "INSERT INTO sends (recipient, card_phone, campaign, key, fate, instance_id, message_id,
         api_status, http_status, attempts, left_at, finished_at)
     SELECT recipient, card_phone, '', '', 'SENT', instance_id, '', '', NULL, 1, sent_at, sent_at
     FROM cards",
    // 11: which they replace.
    "DROP TABLE cards",
    // 12: the zone whose midnight starts each number's day, kept from the
    //     first run that counts it ('' until one does): every run sharing
    //     the number counts its days alike, whatever its own zone.
    "ALTER TABLE numbers ADD COLUMN timezone TEXT NOT NULL DEFAULT ''",
    // 13: the cards by when they left, oldest first, for pruning a bit at a
    //     time without reading the rest.
    "CREATE INDEX sends_by_time ON sends (left_at)",
    // 14: the booker's clock at each number's last booking (0: not known),
    //     to see a clock that ran ahead.
    "ALTER TABLE clocks ADD COLUMN booked_at BIGINT NOT NULL DEFAULT 0",
    // 15: numbers kept from sending by every run (types::NumberHold): paused
    //     by an operator or the API's refusal, held for a while by a run's
    //     verdict. Times in nanoseconds since 1970; until NULL: until resumed.
    "CREATE TABLE number_holds (
         instance_id TEXT NOT NULL PRIMARY KEY,
         kind TEXT NOT NULL,
         reason TEXT NOT NULL,
         since BIGINT NOT NULL,
         until BIGINT
     )",
    // 16: each number's first contacts a day (schedule.daily_new_contacts):
    //     cards to recipients it never reached before.
    "ALTER TABLE daily_counts ADD COLUMN new_contacts BIGINT NOT NULL DEFAULT 0",
    // 17: campaign names in Unicode NFC (types::in_nfc), as runs now give
    //     them: earlier versions kept a name as it came, so `promoção` from a
    //     macOS file name (NFD) and typed (NFC) were two campaigns. A name
    //     there in several forms keeps the first run of any.
    "DELETE FROM campaigns
     WHERE name IN (
         SELECT name FROM (
             SELECT name, ROW_NUMBER() OVER (
                 PARTITION BY {nfc}(name) ORDER BY first_run_at, name
             ) AS place
             FROM campaigns
         ) AS forms
         WHERE place > 1
     );
     UPDATE campaigns SET name = {nfc}(name) WHERE name <> {nfc}(name)",
    // 18: each campaign's memory under its name in Unicode NFC, as step 17
    //     puts `campaigns`: a card's rows under several forms of one name
    //     become one, the surest (as `surety` ranks fates; of two as sure,
    //     the latest answered).
    "DELETE FROM sends
     WHERE (recipient, card_phone, campaign, key) IN (
         SELECT recipient, card_phone, campaign, key FROM (
             SELECT recipient, card_phone, campaign, key, ROW_NUMBER() OVER (
                 PARTITION BY recipient, card_phone, {nfc}(campaign), key
                 ORDER BY CASE fate WHEN 'SENT' THEN 4 WHEN 'UNKNOWN' THEN 3
                     WHEN 'LEAVING' THEN 3 WHEN 'DUPLICATE' THEN 2 ELSE 1 END DESC,
                     finished_at DESC, left_at DESC, campaign
             ) AS place
             FROM sends
             WHERE {nfc}(campaign) IN (
                 SELECT {nfc}(campaign) FROM sends WHERE campaign <> {nfc}(campaign)
             )
         ) AS forms
         WHERE place > 1
     );
     UPDATE sends SET campaign = {nfc}(campaign) WHERE campaign <> {nfc}(campaign)",
    // 19: until when the run that let a card out may still send it (its own
    //     retries, waits and timeouts), nanoseconds since 1970; 0 where no
    //     run said. Another run judges the card in doubt by it, not by its
    //     own settings.
    "ALTER TABLE sends ADD COLUMN in_flight_until BIGINT NOT NULL DEFAULT 0",
    // 20: the cards of people forgotten on request (ledger::erasure), each
    //     by a keyed digest of what it stands for, never by phone: what
    //     became of it, and when it left (nanoseconds since 1970).
    "CREATE TABLE forgotten (
         digest TEXT NOT NULL PRIMARY KEY,
         fate TEXT NOT NULL,
         left_at BIGINT NOT NULL
     )",
    // 21: the key of those digests, one row, made at random with the ledger
    //     (by the migration that makes the table: [`new_secret`]).
    "CREATE TABLE ledger_secret (secret TEXT NOT NULL PRIMARY KEY)",
    // 22: a number the API refused is `refused`, apart from an operator's
    //     pause: only a person lets it send again, and each run it stops
    //     says so (exit 3). Earlier versions kept it as `paused`.
    "UPDATE number_holds SET kind = 'refused'
     WHERE kind = 'paused' AND reason LIKE 'refused by the API:%'",
];

/// The statement that gives a ledger its secret, if it has none, at the end
/// of a migration; a parameter, not text, so that no server log shows it.
const SECRET_IF_NONE: &str =
    "INSERT INTO ledger_secret (secret) SELECT $1 WHERE NOT EXISTS (SELECT 1 FROM ledger_secret)";

/// How a migration step asks for a text in Unicode NFC: `{nfc}(x)`, `x` a
/// column. The stores spell it apart (SQLite has none: its connection is
/// given one), each with [`spell_nfc`].
const NFC_CALL: &str = "{nfc}(";

/// `step` with each `{nfc}(x)` spelled as `spelling(x)` gives it.
fn spell_nfc(step: &str, spelling: impl Fn(&str) -> String) -> String {
    let mut spelled = String::with_capacity(step.len());
    let mut rest = step;
    while let Some(at) = rest.find(NFC_CALL) {
        spelled.push_str(&rest[..at]);
        let argument = &rest[at + NFC_CALL.len()..];
        let end = argument
            .find(')')
            .expect("a migration step closes each {nfc}(");
        spelled.push_str(&spelling(&argument[..end]));
        rest = &argument[end + 1..];
    }
    spelled.push_str(rest);
    spelled
}

/// A new ledger's secret, as `ledger_secret` keeps it.
fn new_secret() -> Result<String, String> {
    Secret::new()
        .map(|secret| secret.to_hex())
        .map_err(|error| format!("cannot make the ledger's secret: {error}"))
}

/// The ledger's secret as a store read it (`SELECT secret FROM
/// ledger_secret`).
fn secret_of(text: Option<String>) -> Result<Secret, String> {
    text.as_deref()
        .and_then(Secret::from_hex)
        .ok_or_else(|| "its secret (ledger_secret) is missing or damaged".to_string())
}

/// The schema this build writes. `ledger_version` holds it, one row, for
/// monitoring (`SELECT version FROM ledger_version`).
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Why a ledger at schema `version` cannot be used by this build: one
/// written by a newer version may hold what this one would misread.
fn too_new(version: i64) -> Option<String> {
    (version > SCHEMA_VERSION).then(|| {
        format!(
            "it is at schema version {version}, written by a newer interacto-bulk; this one ({}) \
             knows versions up to {SCHEMA_VERSION}: upgrade interacto-bulk here (every run sharing \
             a ledger needs a version that knows its schema)",
            env!("CARGO_PKG_VERSION")
        )
    })
}

/// The ids of the numbers the ledger knows ([`Ledger::number_ids`]), in no
/// order; `$1`: now, nanoseconds since 1970, for the holds in force. One
/// text for both stores (SQLite reads `$1` as the first parameter).
const NUMBER_IDS: &str = "SELECT instance_id FROM numbers
     UNION SELECT instance_id FROM clocks
     UNION SELECT instance_id FROM daily_counts
     UNION SELECT instance_id FROM number_holds WHERE until IS NULL OR until > $1";

/// [`Fate::went`] as SQL. (SQLite's statements write it out, to keep their
/// text constant.)
const WENT: &str = "fate IN ('LEAVING', 'SENT', 'UNKNOWN')";

/// A row's key as `sends` keeps it: '' where it is `recipient:card_phone`
/// (the key of every campaign without a key column), so that the row is
/// found by its card alone.
fn stored_key<'a>(key: &'a str, to: &str, card_phone: &str) -> &'a str {
    let default = key
        .strip_prefix(to)
        .and_then(|rest| rest.strip_prefix(':'))
        .is_some_and(|rest| rest == card_phone);
    match default {
        true => "",
        false => key,
    }
}

/// A row's key from what `sends` keeps.
fn key_of(stored: &str, to: &str, card_phone: &str) -> String {
    match stored {
        "" => format!("{to}:{card_phone}"),
        key => key.to_string(),
    }
}

/// A row of `sends`, as a store found it.
#[derive(Debug, Clone)]
struct Found {
    campaign: String,
    /// As `sends` keeps it.
    key: String,
    record: Remembered,
}

/// The facts of one row of `campaign` (its key as `sends` keeps it) from
/// what a store found: the rows of its card, every campaign's; with a key
/// column, the row of its key; the recipient's suppression entry, and
/// their last card (with a cooldown); what the forgotten cards say of it.
fn facts_of(
    campaign: &str,
    key: &str,
    (card_rows, key_row): (Vec<Found>, Option<Found>),
    suppressed: Option<Suppression>,
    last_reached: Option<i64>,
    forgotten: ForgottenOf,
) -> Facts {
    let mut remembered = key_row.map(|row| row.record);
    let mut campaign_card_at: Option<i64> = None;
    let mut same_card_at: Option<i64> = None;
    for row in card_rows {
        if row.campaign == campaign && row.key == key {
            remembered = Some(surer_record(remembered, row.record));
        } else if row.record.fate.went() {
            if row.campaign == campaign {
                campaign_card_at = campaign_card_at.max(Some(row.record.left_at));
            }
            same_card_at = same_card_at.max(Some(row.record.left_at));
        }
    }
    Facts {
        remembered,
        forgotten: forgotten.campaign,
        campaign_card_at,
        suppressed,
        same_card_at: same_card_at.max(forgotten.same_card_at),
        last_reached: last_reached.max(forgotten.reached_at),
    }
}

/// The claims of one pass, admitted on the facts the store read for each
/// (before the pass's own records): then the store takes from each number's
/// cap for the cards that go ([`Admitted::wanted`]), and [`Admitted::grant`]
/// says what became of each claim.
struct Admitted {
    admissions: Vec<Admission>,
}

impl Admitted {
    fn new(claims: &[Claim], facts: Vec<Facts>, rules: &Rules, now: i64) -> Self {
        let cards: Vec<Card<'_>> = claims
            .iter()
            .map(|claim| Card {
                to: &claim.to,
                card_phone: &claim.card_phone,
            })
            .collect();
        Admitted {
            admissions: admission::admit_batch(&cards, facts, rules, now),
        }
    }

    /// The claims whose cards go, by index: the ones a first-contact limit
    /// asks about.
    fn going(&self) -> impl Iterator<Item = usize> + '_ {
        self.admissions
            .iter()
            .enumerate()
            .filter(|(_, admission)| matches!(admission, Admission::Goes { .. }))
            .map(|(index, _)| index)
    }

    /// The first contacts each number's cards of the pass would make:
    /// their recipients (`new`, by claim), each once however many cards go
    /// to it.
    fn wanted_new<'a>(claims: &'a [Claim], new: &[bool]) -> BTreeMap<&'a str, u64> {
        let recipients: std::collections::BTreeSet<(&str, &str)> = claims
            .iter()
            .zip(new)
            .filter(|(_, new)| **new)
            .map(|(claim, _)| (claim.instance_id.as_str(), claim.to.as_str()))
            .collect();
        let mut wanted: BTreeMap<&str, u64> = BTreeMap::new();
        for (instance, _) in recipients {
            *wanted.entry(instance).or_default() += 1;
        }
        wanted
    }

    /// Holds back the cards to the recipients beyond what each number's
    /// first contacts for the day allowed (`allowed`, in recipients): all
    /// of a recipient's cards go, or none. A number's other cards go on.
    fn limit_first_contacts(
        &mut self,
        claims: &[Claim],
        new: &[bool],
        mut allowed: BTreeMap<&str, CapTaken>,
    ) {
        let mut decided: std::collections::HashMap<(&str, &str), bool> = Default::default();
        let cards = claims.iter().zip(self.admissions.iter_mut()).zip(new);
        for ((claim, admission), _) in cards.filter(|(_, new)| **new) {
            let Some(limit) = allowed.get_mut(claim.instance_id.as_str()) else {
                continue;
            };
            let (cap, until) = (limit.cap, limit.until);
            let goes = *decided
                .entry((claim.instance_id.as_str(), claim.to.as_str()))
                .or_insert_with(|| match limit.taken {
                    0 => false,
                    _ => {
                        limit.taken -= 1;
                        true
                    }
                });
            if !goes {
                *admission = Admission::Held(Cause::FirstContacts { cap, until });
            }
        }
    }

    /// The first contacts a pass made, by number: the recipients of its
    /// new cards let out, each once.
    fn first_contacts_made<'a>(
        claims: &'a [Claim],
        new: &[bool],
        decided: &[Claimed],
    ) -> BTreeMap<&'a str, u64> {
        let granted = claims
            .iter()
            .zip(new)
            .zip(decided)
            .filter(|((_, new), claimed)| **new && matches!(claimed, Claimed::Granted { .. }))
            .map(|((claim, _), _)| (claim.instance_id.as_str(), claim.to.as_str()));
        let recipients: std::collections::BTreeSet<(&str, &str)> = granted.collect();
        let mut made: BTreeMap<&str, u64> = BTreeMap::new();
        for (instance, _) in recipients {
            *made.entry(instance).or_default() += 1;
        }
        made
    }

    /// How many cards of each number go: its cap is taken once a pass.
    fn wanted<'a>(&self, claims: &'a [Claim]) -> BTreeMap<&'a str, u64> {
        let mut going: BTreeMap<&str, u64> = BTreeMap::new();
        for (claim, admission) in claims.iter().zip(&self.admissions) {
            if let Admission::Goes { .. } = admission {
                *going.entry(&claim.instance_id).or_default() += 1;
            }
        }
        going
    }

    /// What became of each claim, once each number's cap allowed what it did.
    fn grant(
        self,
        claims: &[Claim],
        mut allowed: BTreeMap<&str, CapTaken>,
        now: i64,
    ) -> Vec<Claimed> {
        claims
            .iter()
            .zip(self.admissions)
            .map(|(claim, admission)| match admission {
                Admission::Held(cause) => Claimed::Held(cause),
                Admission::Goes { resending } => {
                    let cap = allowed
                        .get_mut(claim.instance_id.as_str())
                        .expect("every number with a card that goes was asked");
                    match cap.taken {
                        0 => Claimed::CapReached {
                            cap: cap.cap,
                            until: cap.until,
                        },
                        _ => {
                            cap.taken -= 1;
                            Claimed::Granted {
                                left_at: now,
                                resending,
                            }
                        }
                    }
                }
            })
            .collect()
    }
}

/// Of the record a key has and another found for it, the surer. A key has
/// one record, but two forms of a campaign's name merged by the migration
/// may have left it one under each of two phones.
fn surer_record(held: Option<Remembered>, found: Remembered) -> Remembered {
    match held {
        Some(held) if surety(held.fate) >= surety(found.fate) => held,
        _ => found,
    }
}

/// [`surer_record`] of two rows of `sends` of one key.
fn surer_found(held: Option<Found>, found: Found) -> Found {
    match held {
        Some(held) if surety(held.record.fate) >= surety(found.record.fate) => held,
        _ => found,
    }
}

/// How sure a fate is that the card went: of two records of one key, the
/// surer is kept.
fn surety(fate: Fate) -> u8 {
    match fate {
        Fate::Sent => 4,
        Fate::Unknown | Fate::Leaving => 3,
        Fate::Duplicate => 2,
        Fate::Failed => 1,
    }
}

/// What a number's cap allowed of the messages wanted in one pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct CapTaken {
    /// How many may go.
    taken: u64,
    /// The day's cap (warm-up included), for the message of those that may not.
    cap: u64,
    /// When the number's next day begins, nanoseconds since 1970.
    until: Option<i64>,
}

impl CapTaken {
    /// The same, until the day after `now` (nanoseconds since 1970) begins
    /// for the number whose `cap` it is.
    fn until_next_day(self, cap: &DailyCap, now: i64) -> CapTaken {
        let at = jiff::Timestamp::from_nanosecond(i128::from(now)).unwrap_or_default();
        CapTaken {
            until: cap.next_day(at).map(nanos_of),
            ..self
        }
    }
}

/// How many of `wanted` messages a number with `sent` today and `cap` may
/// still send.
fn within_cap(sent: i64, cap: Option<u64>, wanted: u64) -> CapTaken {
    let sent = u64::try_from(sent).unwrap_or(0);
    match cap {
        Some(cap) => CapTaken {
            taken: wanted.min(cap.saturating_sub(sent)),
            cap,
            until: None,
        },
        None => CapTaken {
            taken: wanted,
            cap: 0,
            until: None,
        },
    }
}

/// The zone to keep for a number whose days the ledger keeps in `kept`,
/// counted now by a run in `ours` (an IANA name, '' for none): ours, the
/// first time a run with a named zone counts the number, or in place of
/// `localtime`, which earlier versions kept and each machine read as its
/// own (two machines twelve hours apart each took the whole cap).
fn zone_to_keep<'a>(kept: &str, ours: &'a str, instance: &str) -> Option<&'a str> {
    if ours.is_empty() {
        return None;
    }
    match kept {
        "" => Some(ours),
        "localtime" => {
            tracing::warn!(
                instance,
                "the ledger counted this number's days in `localtime`, which each machine reads \
                 as its own zone: from now on they are counted in {ours}, this machine's zone \
                 (schedule.timezone sets it)"
            );
            Some(ours)
        }
        _ => None,
    }
}

/// The cap on `day` of a number first seen sending on `first_day`.
fn cap_for(cap: &DailyCap, first_day: &str, day: Date) -> Option<u64> {
    cap.cap_on(day_index(first_day, day))
}

/// Numbers assembled from the rows of the three tables: ids, first days and
/// zones, clocks and counts (day as text).
fn assemble(
    first_days: Vec<(String, String, String)>,
    clocks: Vec<(String, i64)>,
    counts: Vec<(String, String, i64, i64)>,
) -> Vec<NumberRecord> {
    let mut numbers: BTreeMap<String, NumberRecord> = BTreeMap::new();
    for (id, first_day, timezone) in first_days {
        let record = numbers.entry(id.clone()).or_insert_with(|| empty(&id));
        record.first_day = first_day.parse().ok();
        record.timezone = timezone;
    }
    for (id, next_at) in clocks {
        numbers
            .entry(id.clone())
            .or_insert_with(|| empty(&id))
            .next_at = Some(next_at);
    }
    for (id, day, sent, new_contacts) in counts {
        if let Ok(day) = day.parse() {
            let record = numbers.entry(id.clone()).or_insert_with(|| empty(&id));
            record.sent.insert(day, u64::try_from(sent).unwrap_or(0));
            record
                .new_contacts
                .insert(day, u64::try_from(new_contacts).unwrap_or(0));
        }
    }
    numbers.into_values().collect()
}

fn empty(instance_id: &str) -> NumberRecord {
    NumberRecord {
        instance_id: instance_id.to_string(),
        first_day: None,
        timezone: String::new(),
        next_at: None,
        sent: BTreeMap::new(),
        new_contacts: BTreeMap::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::Status;

    fn claim(key: &str, to: &str, instance: &str) -> Claim {
        Claim {
            key: key.into(),
            to: to.into(),
            card_phone: "551130034000".into(),
            instance_id: instance.into(),
            as_read: None,
        }
    }

    fn found(to: &str, key: &str, fate: Fate) -> Found {
        Found {
            campaign: "leads".into(),
            key: key.into(),
            record: Remembered {
                fate,
                ..Remembered::repeat(to, "551130034000", "x", 1)
            },
        }
    }

    #[test]
    fn a_key_with_two_records_is_held_by_the_surer() {
        // The forms of one campaign's name merged: key L-1 was sent to its
        // old phone under one form, and failed to its new one under the other.
        let sent_to_old = found("5511900000001", "L-1", Fate::Sent);
        let failed_to_new = found("5511900000002", "L-1", Fate::Failed);
        let facts = facts_of(
            "leads",
            "L-1",
            (vec![failed_to_new], Some(sent_to_old)),
            None,
            None,
            ForgottenOf::default(),
        );
        assert_eq!(facts.remembered.map(|record| record.fate), Some(Fate::Sent));
    }

    #[test]
    fn a_pass_takes_from_each_numbers_cap_only_for_the_cards_that_go() {
        // Card `a` and `b` are one card to one person: `b` is a repeat.
        let claims = [
            claim("a", "1", "x"),
            claim("b", "1", "x"),
            claim("c", "2", "x"),
            claim("d", "3", "x"),
            claim("e", "4", "y"),
        ];
        let admitted = Admitted::new(&claims, vec![Facts::default(); 5], &Rules::default(), 7);
        let wanted = admitted.wanted(&claims);
        assert_eq!(
            wanted.iter().map(|(id, n)| (*id, *n)).collect::<Vec<_>>(),
            [("x", 3), ("y", 1)],
            "the repeat of card `a` takes nothing"
        );
        let allowed = wanted
            .into_iter()
            .map(|(id, n)| (id, within_cap(0, Some(2), n)))
            .collect();
        let decided = admitted.grant(&claims, allowed, 7);
        let granted = Claimed::Granted {
            left_at: 7,
            resending: false,
        };
        assert_eq!(decided[0], granted);
        assert!(matches!(&decided[1], Claimed::Held(cause) if cause.status() == Status::Duplicate));
        assert_eq!(decided[2], granted);
        assert!(matches!(decided[3], Claimed::CapReached { cap: 2, .. }));
        assert_eq!(decided[4], granted);
    }
}
