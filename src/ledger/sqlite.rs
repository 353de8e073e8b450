//! The ledger in a SQLite file, shared by every run on the machine: WAL so
//! readers never wait for a writer, a busy timeout so writers queue instead
//! of failing. Each connection lives on a thread of its own, which takes the
//! calls in turn; no call runs on an async worker. Writes go through one;
//! what the admission step reads as rows are read goes through another, so
//! that it never holds up the door's passes.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::civil::Date;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::erasure::{self, ForgottenOf, Secret};
use super::Store;
use super::{
    assemble, cap_for, facts_of, key_of, new_secret, secret_of, spell_nfc, stats_time, stored_key,
    surer_found, too_new, within_cap, zone_to_keep, Admitted, CapTaken, Claim, Claimed, Erased,
    Forgot, Found, LedgerError, LedgerStats, Lookup, NumberRecord, Passing, PhoneUses, Pruned,
    PruningClocks, Settled, MIGRATIONS, NUMBER_IDS, SCHEMA_VERSION, SECRET_IF_NONE,
};
use crate::admission::Rules;
use crate::clock::Clock;
use crate::pacing::{Booking, ClockState, Pace};
use crate::schedule::DailyCap;
use crate::types::{
    printable, AsRead, Cause, Facts, Fate, Forgotten, HoldKind, NumberHold, Remembered, Suppression,
};

/// The columns of a row of `sends`, in [`found_from`]'s order: a macro, so
/// that the statements that read them are constant text (a statement is
/// found in the connection's cache by its text, many times a card).
macro_rules! sends {
    () => {
        "recipient, card_phone, campaign, key, fate, instance_id, message_id, api_status, \
         http_status, attempts, left_at, finished_at, in_flight_until"
    };
}

pub struct SqliteLedger {
    /// The connection every write goes through.
    writer: Worker,
    /// What the writer has seen of other runs' writes.
    others: Arc<OtherWrites>,
    /// A connection of its own for the admission step's reads; `None` for a
    /// ledger in memory, which only its one connection sees.
    reader: Option<Worker>,
    /// Where it is, for messages.
    shown: String,
    /// The run's clock: bookings are on it.
    clock: Clock,
    /// The key of the forgotten cards' digests.
    secret: Secret,
}

/// Other runs' writes, as the writing connection sees them: SQLite's
/// `data_version` changes when another connection commits (never for its
/// own). Each change seen is a new epoch; facts read in an epoch the writer
/// still sees, in its write transaction, were not changed by another run
/// since (this run's own writes never touch a row it has yet to send).
#[derive(Debug, Default)]
struct OtherWrites {
    /// `data_version` when the writer last looked.
    version: AtomicI64,
    epoch: AtomicU64,
}

impl OtherWrites {
    /// Looks at `data_version` on the writing connection, in its write
    /// transaction; returns the epoch.
    fn look(&self, connection: &Connection) -> rusqlite::Result<u64> {
        let version: i64 = connection.query_row("PRAGMA data_version", [], |row| row.get(0))?;
        match self.version.swap(version, Ordering::SeqCst) == version {
            true => Ok(self.epoch.load(Ordering::SeqCst)),
            false => Ok(self.epoch.fetch_add(1, Ordering::SeqCst) + 1),
        }
    }
}

/// A connection on a thread of its own, taking calls in turn.
struct Worker {
    /// Calls for the thread; closed on drop.
    calls: Option<mpsc::Sender<Call>>,
    thread: Option<JoinHandle<()>>,
}

/// One call on the connection, made on its thread.
type Call = Box<dyn FnOnce(&mut Connection) + Send>;

/// SQLite's page cache for each connection: 256 KiB measured as fast as the
/// default 2 MiB on the 1M-row benchmark, and keeps the run within 64 MiB.
const PAGE_CACHE_KIB: i64 = 256;

/// Pages the WAL holds before a checkpoint (SQLite's default is 1000): at
/// most 40 MiB of file, none of it in memory.
const WAL_PAGES: i64 = 10_000;

/// How long a writer waits for another run's write before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl SqliteLedger {
    /// Opens (or creates) the ledger at `path`; `None` is a throwaway one in
    /// memory. Its times are read on `clock`.
    pub async fn open(path: Option<PathBuf>, clock: Clock) -> Result<Self, LedgerError> {
        let shown = match &path {
            Some(path) => format!("sqlite://{}", path.display()),
            None => "in memory".to_string(),
        };
        let failed = |problem: String| LedgerError {
            url: shown.clone(),
            problem,
        };
        // The writer migrates the ledger, then reads its secret.
        let (secret_read, secret) = std::sync::mpsc::channel();
        let writer = {
            let path = path.clone();
            Worker::start("ledger", move || {
                let connection = open_patiently(path).map_err(|error| error.to_string())?;
                let secret: rusqlite::Result<Option<String>> = connection
                    .query_row("SELECT secret FROM ledger_secret", [], |row| row.get(0))
                    .optional();
                let _ = secret_read.send(secret.map_err(|error| error.to_string()));
                Ok(connection)
            })
            .await
            .map_err(failed)?
        };
        let secret = secret
            .recv()
            .map_err(|_| "the ledger's thread stopped".to_string())
            .and_then(|secret| secret_of(secret?))
            .map_err(failed)?;
        let reader = match path {
            Some(path) => Some(
                Worker::start("ledger-reader", move || {
                    open_reader(&path).map_err(|error| error.to_string())
                })
                .await
                .map_err(failed)?,
            ),
            None => None,
        };
        let ledger = SqliteLedger {
            writer,
            reader,
            others: Arc::default(),
            shown,
            clock,
            secret,
        };
        // The epoch starts at the version the writer sees now.
        let others = ledger.others.clone();
        ledger
            .call(move |connection| others.look(connection).map(drop))
            .await?;
        Ok(ledger)
    }
}

#[async_trait::async_trait]
impl Store for SqliteLedger {
    fn shown(&self) -> &str {
        &self.shown
    }

    async fn book_turns(
        &self,
        instance: &str,
        pace: Pace,
        phone_times: Vec<i64>,
    ) -> Result<Booking, LedgerError> {
        let instance = instance.to_string();
        let clock = self.clock.clone();
        self.call_mut(move |connection| {
            // Read, book and write back in one write transaction: another
            // run's booking waits for this one, never interleaves.
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut state = transaction
                .query_row(
                    "SELECT next_at, phone_free_at, booked_at FROM clocks WHERE instance_id = ?1",
                    params![instance],
                    |row| {
                        Ok(ClockState {
                            next_at: row.get(0)?,
                            phone_free_at: row.get(1)?,
                            booked_at: row.get(2)?,
                        })
                    },
                )
                .optional()?
                .unwrap_or_default();
            let booking = state.book(pace, clock.now_nanos(), &phone_times);
            transaction.execute(
                "INSERT INTO clocks (instance_id, next_at, phone_free_at, booked_at)
                 VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (instance_id) DO UPDATE
                     SET next_at = excluded.next_at, phone_free_at = excluded.phone_free_at,
                         booked_at = excluded.booked_at",
                params![
                    instance,
                    state.next_at,
                    state.phone_free_at,
                    state.booked_at
                ],
            )?;
            transaction.commit()?;
            Ok(booking)
        })
        .await
    }

    async fn numbers(&self, since: Date) -> Result<Vec<NumberRecord>, LedgerError> {
        let since = since.to_string();
        self.call(move |connection| {
            let first_days = connection
                .prepare("SELECT instance_id, first_day, timezone FROM numbers")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let clocks = connection
                .prepare("SELECT instance_id, next_at FROM clocks")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let counts = connection
                .prepare(
                    "SELECT instance_id, day, sent, new_contacts FROM daily_counts WHERE day >= ?1",
                )?
                .query_map(params![since], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(assemble(first_days, clocks, counts))
        })
        .await
    }

    async fn number_ids(&self, now: i64) -> Result<Vec<String>, LedgerError> {
        self.call(move |connection| {
            connection
                .prepare(NUMBER_IDS)?
                .query_map(params![now], |row| row.get(0))?
                .collect()
        })
        .await
    }

    async fn suppress(&self, entries: Vec<Suppression>) -> Result<usize, LedgerError> {
        self.call_mut(move |connection| {
            rows_changed_by_each(connection, &entries, |transaction, entry| {
                transaction.execute(
                    "INSERT INTO suppressed (phone, reason, added_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (phone) DO NOTHING",
                    params![entry.phone, entry.reason, entry.added_at],
                )
            })
        })
        .await
    }

    async fn unsuppress(&self, phones: Vec<String>) -> Result<usize, LedgerError> {
        self.call_mut(move |connection| {
            rows_changed_by_each(connection, &phones, |transaction, phone| {
                transaction.execute("DELETE FROM suppressed WHERE phone = ?1", params![phone])
            })
        })
        .await
    }

    async fn hold_number(
        &self,
        hold: NumberHold,
        by_operator: bool,
        now: i64,
    ) -> Result<bool, LedgerError> {
        self.call_mut(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let held = transaction
                .query_row(
                    "SELECT instance_id, kind, reason, since, until FROM number_holds
                     WHERE instance_id = ?1",
                    params![hold.instance_id],
                    number_hold,
                )
                .optional()?;
            if !by_operator && held.is_some_and(|held| !hold.outlasts(&held, now)) {
                return Ok(false);
            }
            transaction.execute(
                "INSERT INTO number_holds (instance_id, kind, reason, since, until)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (instance_id) DO UPDATE SET kind = excluded.kind,
                     reason = excluded.reason, since = excluded.since, until = excluded.until",
                params![
                    hold.instance_id,
                    hold.kind.as_str(),
                    hold.reason,
                    hold.since,
                    hold.until
                ],
            )?;
            transaction.commit()?;
            Ok(true)
        })
        .await
    }

    async fn release_number(&self, instance: &str) -> Result<bool, LedgerError> {
        let instance = instance.to_string();
        self.call_mut(move |connection| {
            let released = connection.execute(
                "DELETE FROM number_holds WHERE instance_id = ?1",
                params![instance],
            )?;
            Ok(released > 0)
        })
        .await
    }

    async fn holds(&self, now: i64) -> Result<Vec<NumberHold>, LedgerError> {
        // On the reading connection: a run asks every few seconds, and must
        // not wait behind the door's writes.
        let worker = self.reader.as_ref().unwrap_or(&self.writer);
        self.on(worker, move |connection| {
            connection
                .prepare_cached(
                    "SELECT instance_id, kind, reason, since, until FROM number_holds
                     WHERE until IS NULL OR until > ?1 ORDER BY instance_id",
                )?
                .query_map(params![now], number_hold)?
                .collect()
        })
        .await
    }

    async fn suppressed(&self) -> Result<Vec<Suppression>, LedgerError> {
        self.call(|connection| {
            connection
                .prepare("SELECT phone, reason, added_at FROM suppressed ORDER BY phone")?
                .query_map([], |row| {
                    Ok(Suppression {
                        phone: row.get(0)?,
                        reason: row.get(1)?,
                        added_at: row.get(2)?,
                    })
                })?
                .collect()
        })
        .await
    }

    async fn facts(
        &self,
        campaign: &str,
        lookups: Vec<Lookup>,
        with_cooldown: bool,
    ) -> Result<(Vec<Facts>, Option<u64>), LedgerError> {
        let campaign = campaign.to_string();
        let secret = self.secret.clone();
        let worker = self.reader.as_ref().unwrap_or(&self.writer);
        // The epoch before the read: a write of another run during it moves
        // the epoch on, and the door reads the facts again.
        let epoch = self.others.epoch.load(Ordering::SeqCst);
        let facts = self
            .on(worker, move |connection| {
                // One read transaction: every row is read as of one moment.
                let transaction = connection.transaction()?;
                let asked = Looking::at(&transaction, with_cooldown, &secret)?;
                let rows: Vec<(&str, &str, &str)> = lookups
                    .iter()
                    .map(|row| (row.key.as_str(), row.to.as_str(), row.card_phone.as_str()))
                    .collect();
                let facts = read_facts(&transaction, &campaign, &rows, asked)?;
                transaction.commit()?;
                Ok(facts)
            })
            .await?;
        Ok((facts, Some(epoch)))
    }

    async fn pass(&self, campaign: &str, passing: Passing) -> Result<Vec<Claimed>, LedgerError> {
        let campaign = campaign.to_string();
        let others = self.others.clone();
        let secret = self.secret.clone();
        self.call_mut(move |connection| {
            // One write transaction: another run's pass waits for this one.
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let epoch = others.look(&transaction)?;
            for settled in &passing.settled {
                settle(&transaction, &campaign, settled)?;
            }
            let facts = Self::facts_of_claims(&transaction, &campaign, &passing, (epoch, &secret))?;
            let decided = Self::decide(&transaction, &passing, facts)?;
            let in_flight = passing.rules.in_flight_at_most;
            for (claim, claimed) in passing.claims.iter().zip(&decided) {
                record(&transaction, &campaign, claim, claimed, in_flight)?;
            }
            transaction.commit()?;
            Ok(decided)
        })
        .await
    }

    async fn remember(
        &self,
        campaign: &str,
        records: Vec<(String, Remembered)>,
    ) -> Result<(), LedgerError> {
        let campaign = campaign.to_string();
        self.call_mut(move |connection| {
            let transaction = connection.transaction()?;
            for (key, record) in &records {
                remember(&transaction, &campaign, key, record)?;
            }
            transaction.commit()
        })
        .await
    }

    async fn unsettled(&self, campaign: &str) -> Result<Vec<(String, Remembered)>, LedgerError> {
        let campaign = campaign.to_string();
        self.call(move |connection| {
            connection
                .prepare(concat!(
                    "SELECT ",
                    sends!(),
                    " FROM sends WHERE campaign = ?1 AND fate = 'LEAVING'"
                ))?
                .query_map(params![campaign], found_from)?
                .map(|found| {
                    let Found { key, record, .. } = found?;
                    Ok((key_of(&key, &record.to, &record.card_phone), record))
                })
                .collect()
        })
        .await
    }

    async fn knows(&self, campaign: &str) -> Result<bool, LedgerError> {
        let campaign = campaign.to_string();
        let worker = self.reader.as_ref().unwrap_or(&self.writer);
        self.on(worker, move |connection| {
            connection.query_row(
                "SELECT EXISTS (SELECT 1 FROM campaigns WHERE name = ?1)",
                params![campaign],
                |row| row.get(0),
            )
        })
        .await
    }

    async fn meet(&self, campaign: &str, now: i64) -> Result<(), LedgerError> {
        let campaign = campaign.to_string();
        self.call(move |connection| {
            connection.execute(
                "INSERT INTO campaigns (name, first_run_at) VALUES (?1, ?2)
                 ON CONFLICT (name) DO NOTHING",
                params![campaign, now],
            )?;
            Ok(())
        })
        .await
    }

    async fn prune(&self, before: i64, day: Date, most: u64) -> Result<Pruned, LedgerError> {
        let (day, most) = (day.to_string(), i64::try_from(most).unwrap_or(i64::MAX));
        self.call_mut(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            // Oldest first, by the time index: the rest is never read.
            let cards = transaction.execute(
                "DELETE FROM sends WHERE (recipient, card_phone, campaign, key) IN (
                     SELECT recipient, card_phone, campaign, key FROM sends
                     WHERE left_at < ?1 ORDER BY left_at LIMIT ?2)",
                params![before, most],
            )?;
            let daily_counts =
                transaction.execute("DELETE FROM daily_counts WHERE day < ?1", params![day])?;
            transaction.execute("DELETE FROM forgotten WHERE left_at < ?1", params![before])?;
            transaction.commit()?;
            Ok(Pruned {
                cards: cards as u64,
                daily_counts: daily_counts as u64,
                ..Pruned::default()
            })
        })
        .await
    }

    async fn pruning_clocks(&self, run_now: i64) -> Result<PruningClocks, LedgerError> {
        self.call(move |connection| {
            let newest =
                connection.query_row("SELECT MAX(left_at) FROM sends", [], |row| row.get(0))?;
            Ok(PruningClocks {
                now: run_now,
                newest,
            })
        })
        .await
    }

    async fn any_card_before(&self, before: i64) -> Result<bool, LedgerError> {
        self.call(move |connection| {
            connection.query_row(
                "SELECT EXISTS (SELECT 1 FROM sends WHERE left_at < ?1)",
                params![before],
                |row| row.get(0),
            )
        })
        .await
    }

    async fn stats(&self) -> Result<LedgerStats, LedgerError> {
        self.call(|connection| {
            let count = |sql: &str| -> rusqlite::Result<u64> {
                connection.query_row(sql, [], |row| row.get::<_, i64>(0).map(|n| n as u64))
            };
            let (oldest, newest): (Option<i64>, Option<i64>) = connection.query_row(
                "SELECT MIN(left_at), MAX(left_at) FROM sends",
                [],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            let file: Option<String> = connection.query_row(
                "SELECT file FROM pragma_database_list WHERE name = 'main'",
                [],
                |row| row.get(0),
            )?;
            let bytes = file
                .filter(|file| !file.is_empty())
                .map(|file| {
                    ["", "-wal"]
                        .iter()
                        .filter_map(|end| std::fs::metadata(format!("{file}{end}")).ok())
                        .map(|metadata| metadata.len())
                        .sum()
                })
                .unwrap_or(0);
            Ok(LedgerStats {
                cards: count("SELECT COUNT(*) FROM sends")?,
                recipients: count("SELECT COUNT(*) FROM (SELECT DISTINCT recipient FROM sends)")?,
                suppressed: count("SELECT COUNT(*) FROM suppressed")?,
                numbers: count(
                    "SELECT COUNT(*) FROM (SELECT instance_id FROM numbers
                     UNION SELECT instance_id FROM clocks)",
                )?,
                campaigns: count("SELECT COUNT(*) FROM campaigns")?,
                oldest: stats_time(oldest),
                newest: stats_time(newest),
                bytes,
                schema_version: SCHEMA_VERSION,
            })
        })
        .await
    }

    async fn phone_uses(&self, phones: Vec<String>) -> Result<Vec<PhoneUses>, LedgerError> {
        self.call(move |connection| {
            let count = |sql: &str, phone: &str| -> rusqlite::Result<u64> {
                let count: i64 = connection
                    .prepare_cached(sql)?
                    .query_row(params![phone], |row| row.get(0))?;
                Ok(u64::try_from(count).unwrap_or(0))
            };
            phones
                .iter()
                .map(|phone| {
                    Ok(PhoneUses {
                        as_recipient: count(
                            "SELECT COUNT(*) FROM sends WHERE recipient = ?1",
                            phone,
                        )?,
                        on_cards: count(
                            "SELECT COUNT(*) FROM sends WHERE card_phone = ?1 AND recipient <> ?1",
                            phone,
                        )?,
                    })
                })
                .collect()
        })
        .await
    }

    async fn forget(&self, phones: Vec<String>, as_card: bool) -> Result<Forgot, LedgerError> {
        let secret = self.secret.clone();
        self.call_mut(move |connection| {
            // What is deleted is overwritten, not just let go.
            connection.pragma_update(None, "secure_delete", true)?;
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut cards = Vec::with_capacity(phones.len());
            for phone in &phones {
                let erased = erase_rows(&transaction, phone, as_card)?;
                for (digest, (kind, forgotten)) in erasure::digests_of(&secret, &erased) {
                    keep_forgotten(&transaction, &digest, kind, forgotten)?;
                }
                cards.push((phone.clone(), erased.len() as u64));
            }
            transaction.commit()?;
            // Forgotten now; what follows only cleans the disk, and says
            // what it could not.
            let remains = rewrite_without_old_copies(connection).unwrap_or_else(|error| {
                Some(format!(
                    "the ledger file could not be rewritten ({error}): the erased cards' bytes \
                     may remain in its free space until it is; run the same `ledger forget` \
                     again when no run is using the ledger"
                ))
            });
            Ok(Forgot { cards, remains })
        })
        .await
    }
}

impl SqliteLedger {
    /// The facts each claim of a pass is decided on: those the admission
    /// step read, while they still hold, else read now under the pass's lock.
    fn facts_of_claims(
        transaction: &Connection,
        campaign: &str,
        passing: &Passing,
        (epoch, secret): (u64, &Secret),
    ) -> rusqlite::Result<Vec<Facts>> {
        let Passing { claims, rules, .. } = passing;
        // The facts of the claims whose facts as read do not hold, read
        // now, in one go.
        let unread: Vec<(&str, &str, &str)> = claims
            .iter()
            .filter(|claim| still_true(claim, epoch, rules).is_none())
            .map(|claim| {
                (
                    claim.key.as_str(),
                    claim.to.as_str(),
                    claim.card_phone.as_str(),
                )
            })
            .collect();
        let asked = match unread.is_empty() {
            true => Looking::default(),
            false => Looking::at(transaction, rules.cooldown.is_some(), secret)?,
        };
        let mut read = read_facts(transaction, campaign, &unread, asked)?.into_iter();
        Ok(claims
            .iter()
            .map(|claim| match still_true(claim, epoch, rules) {
                Some(as_read) => as_read.facts.clone(),
                None => read.next().expect("a fact read for every claim not held"),
            })
            .collect())
    }

    /// Which claims of a pass go: admitted on their facts, then within the
    /// first contacts and the daily cap each number has left. Both are
    /// counted whether or not a cap is set: a run with a cap counts what
    /// runs without one sent.
    fn decide(
        transaction: &Connection,
        passing: &Passing,
        facts: Vec<Facts>,
    ) -> rusqlite::Result<Vec<Claimed>> {
        let Passing {
            claims,
            rules,
            now,
            daily_cap: cap,
            ..
        } = passing;
        let mut admitted = Admitted::new(claims, facts, rules, *now);
        let new = first_contacts(transaction, claims, &admitted)?;
        if cap.new_contacts.is_some() {
            let mut allowed = BTreeMap::new();
            for (instance, wanted) in Admitted::wanted_new(claims, &new) {
                let left = first_contacts_left(transaction, instance, cap, *now, wanted)?;
                allowed.insert(instance, left);
            }
            admitted.limit_first_contacts(claims, &new, allowed);
        }
        let mut allowed = BTreeMap::new();
        for (instance, wanted) in admitted.wanted(claims) {
            let taken = take_from_cap(transaction, instance, cap, *now, wanted)?;
            allowed.insert(instance, taken);
        }
        let decided = admitted.grant(claims, allowed, *now);
        for (instance, made) in Admitted::first_contacts_made(claims, &new, &decided) {
            count_first_contacts(transaction, instance, cap, *now, made)?;
        }
        Ok(decided)
    }

    /// Runs `work` on the writing connection, on its thread.
    async fn call<T: Send + 'static>(
        &self,
        work: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.call_mut(move |connection| work(connection)).await
    }

    /// [`SqliteLedger::call`] for work that needs a transaction.
    async fn call_mut<T: Send + 'static>(
        &self,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, LedgerError> {
        self.on(&self.writer, work).await
    }

    /// Runs `work` on `worker`'s connection.
    async fn on<T: Send + 'static>(
        &self,
        worker: &Worker,
        work: impl FnOnce(&mut Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, LedgerError> {
        let failed = |problem: String| LedgerError {
            url: self.shown.clone(),
            problem,
        };
        let stopped = || failed("the ledger's thread has stopped".to_string());
        let (done, answer) = tokio::sync::oneshot::channel();
        let call: Call = Box::new(move |connection| {
            let _ = done.send(work(connection));
        });
        let calls = worker.calls.as_ref().ok_or_else(stopped)?;
        calls.send(call).map_err(|_| stopped())?;
        self.clock
            .answer_from_thread(answer)
            .await
            .map_err(|_| stopped())?
            .map_err(|error| failed(error.to_string()))
    }
}

impl Worker {
    /// Starts a thread named `name` that opens its connection with `open`.
    async fn start(
        name: &str,
        open: impl FnOnce() -> Result<Connection, String> + Send + 'static,
    ) -> Result<Worker, String> {
        let (calls, queued) = mpsc::channel::<Call>();
        let (opened, opening) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name(name.to_string())
            .spawn(move || {
                let mut connection = match open() {
                    Ok(connection) => connection,
                    Err(problem) => {
                        let _ = opened.send(Err(problem));
                        return;
                    }
                };
                let _ = opened.send(Ok(()));
                for call in queued {
                    call(&mut connection);
                }
            })
            .map_err(|error| error.to_string())?;
        let worker = Worker {
            calls: Some(calls),
            thread: Some(thread),
        };
        match opening.await {
            Ok(Ok(())) => Ok(worker),
            Ok(Err(problem)) => Err(problem),
            Err(_) => Err("the ledger's thread stopped".to_string()),
        }
    }
}

impl Drop for Worker {
    /// Lets the thread finish the calls it has and close the connection
    /// (which checkpoints the WAL) before the run ends.
    fn drop(&mut self) {
        self.calls.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// A row of `sends` from its [`sends!`] columns.
fn found_from(row: &rusqlite::Row<'_>) -> rusqlite::Result<Found> {
    found_at(row, 0)
}

/// A row of `sends` from its [`sends!`] columns, from column `first` on.
fn found_at(row: &rusqlite::Row<'_>, first: usize) -> rusqlite::Result<Found> {
    let fate: String = row.get(first + 4)?;
    Ok(Found {
        campaign: row.get(first + 2)?,
        key: row.get(first + 3)?,
        record: Remembered {
            fate: Fate::parse(&fate).unwrap_or(Fate::Unknown),
            to: row.get(first)?,
            card_phone: row.get(first + 1)?,
            instance_id: row.get(first + 5)?,
            message_id: row.get(first + 6)?,
            api_status: row.get(first + 7)?,
            http_status: row
                .get::<_, Option<i64>>(first + 8)?
                .and_then(|status| u16::try_from(status).ok()),
            attempts: u32::try_from(row.get::<_, i64>(first + 9)?).unwrap_or(u32::MAX),
            left_at: row.get(first + 10)?,
            finished_at: row.get(first + 11)?,
            in_flight_until: row.get(first + 12)?,
        },
    })
}

/// The facts of `claim` as the admission step read them, if they still
/// hold: read in the `epoch` the writer sees, in which no other run wrote,
/// and without a cooldown (under one, this run's own cards to the same
/// person count too).
fn still_true<'a>(claim: &'a Claim, epoch: u64, rules: &Rules) -> Option<&'a AsRead> {
    claim
        .as_read
        .as_deref()
        .filter(|read| read.epoch == epoch && rules.cooldown.is_none())
}

/// What [`read_facts`] looks up beside each row's cards: what no one would
/// be found in is not looked up.
#[derive(Default)]
struct Looking {
    /// Anyone is on the suppression list.
    suppressed: bool,
    /// The recipients' last card (a cooldown, or the first contacts).
    last_reached: bool,
    /// Anyone was forgotten: the ledger's secret, for the digests.
    forgotten: Option<Secret>,
}

impl Looking {
    fn at(connection: &Connection, last_reached: bool, secret: &Secret) -> rusqlite::Result<Self> {
        let any = |table: &str| -> rusqlite::Result<bool> {
            connection
                .prepare_cached(&format!("SELECT EXISTS (SELECT 1 FROM {table})"))?
                .query_row([], |row| row.get(0))
        };
        Ok(Looking {
            suppressed: any("suppressed")?,
            last_reached,
            forgotten: any("forgotten")?.then(|| secret.clone()),
        })
    }
}

/// What the ledger holds that bears on each of `rows` (key, recipient, card
/// phone): the rows of its card (every campaign's), with a key column the
/// row of its key, and as `asked`, the suppression list, the recipient's
/// last card, the forgotten cards. A statement each for all the rows, each
/// row looked up by its key in the index.
fn read_facts(
    connection: &Connection,
    campaign: &str,
    rows: &[(&str, &str, &str)],
    asked: Looking,
) -> rusqlite::Result<Vec<Facts>> {
    if rows.is_empty() {
        return Ok(Vec::new());
    }
    let stored: Vec<&str> = rows
        .iter()
        .map(|(key, to, phone)| stored_key(key, to, phone))
        .collect();
    let mut card_rows: Vec<Vec<Found>> = vec![Vec::new(); rows.len()];
    let cards = rows.iter().flat_map(|(_, to, phone)| [to, phone]);
    let mut statement = connection.prepare_cached(&sql_for(Asked::Cards, rows.len()))?;
    let mut found = statement.query(rusqlite::params_from_iter(cards))?;
    while let Some(row) = found.next()? {
        card_rows[ordinal(row)?].push(found_at(row, 1)?);
    }
    let mut key_rows: Vec<Option<Found>> = vec![None; rows.len()];
    if stored.iter().any(|key| !key.is_empty()) {
        let keys = std::iter::once(&campaign).chain(&stored);
        let mut statement = connection.prepare_cached(&sql_for(Asked::Keys, rows.len()))?;
        let mut found = statement.query(rusqlite::params_from_iter(keys))?;
        while let Some(row) = found.next()? {
            let at = ordinal(row)?;
            key_rows[at] = Some(surer_found(key_rows[at].take(), found_at(row, 1)?));
        }
    }
    let recipients = || rows.iter().map(|(_, to, _)| to);
    let mut suppressed: Vec<Option<Suppression>> = vec![None; rows.len()];
    if asked.suppressed {
        let sql = sql_for(Asked::Suppressed, rows.len());
        let mut statement = connection.prepare_cached(&sql)?;
        let mut found = statement.query(rusqlite::params_from_iter(recipients()))?;
        while let Some(row) = found.next()? {
            suppressed[ordinal(row)?] = Some(Suppression {
                phone: row.get(1)?,
                reason: row.get(2)?,
                added_at: row.get(3)?,
            });
        }
    }
    let mut last_reached: Vec<Option<i64>> = vec![None; rows.len()];
    if asked.last_reached {
        let sql = sql_for(Asked::LastReached, rows.len());
        let mut statement = connection.prepare_cached(&sql)?;
        let mut found = statement.query(rusqlite::params_from_iter(recipients()))?;
        while let Some(row) = found.next()? {
            last_reached[ordinal(row)?] = row.get(1)?;
        }
    }
    let mut forgotten = vec![ForgottenOf::default(); rows.len()];
    if let Some(secret) = &asked.forgotten {
        read_forgotten(connection, campaign, rows, &stored, secret, &mut forgotten)?;
    }
    Ok(card_rows
        .into_iter()
        .zip(key_rows)
        .zip(suppressed)
        .zip(last_reached)
        .zip(forgotten)
        .zip(stored)
        .map(|(((((card, key), suppressed), last), forgotten), stored)| {
            facts_of(campaign, stored, (card, key), suppressed, last, forgotten)
        })
        .collect())
}

/// What the forgotten cards say of each of `rows`, by their digests.
fn read_forgotten(
    connection: &Connection,
    campaign: &str,
    rows: &[(&str, &str, &str)],
    stored: &[&str],
    secret: &Secret,
    forgotten: &mut [ForgottenOf],
) -> rusqlite::Result<()> {
    let digests: Vec<String> = rows
        .iter()
        .zip(stored)
        .flat_map(|((_, to, phone), key)| erasure::row_digests(secret, campaign, key, to, phone))
        .collect();
    let sql = sql_for(Asked::Forgotten, digests.len());
    let mut statement = connection.prepare_cached(&sql)?;
    let mut found = statement.query(rusqlite::params_from_iter(&digests))?;
    while let Some(row) = found.next()? {
        let fate: String = row.get(1)?;
        let card = Forgotten {
            fate: Fate::parse(&fate).unwrap_or(Fate::Unknown),
            left_at: row.get(2)?,
        };
        erasure::found_by_digest(forgotten, ordinal(row)?, card);
    }
    Ok(())
}

/// What [`read_facts`] looks up, a statement each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Asked {
    Cards,
    Keys,
    Suppressed,
    LastReached,
    /// By digest, not by row: `rows` is the number of digests.
    Forgotten,
}

/// The text of the statement that looks `asked` up for `rows` rows, made
/// once per thread for each number of rows (a run asks with a few).
fn sql_for(asked: Asked, rows: usize) -> std::rc::Rc<str> {
    thread_local! {
        static TEXTS: std::cell::RefCell<std::collections::HashMap<(Asked, usize), std::rc::Rc<str>>> =
            Default::default();
    }
    TEXTS.with_borrow_mut(|texts| {
        texts
            .entry((asked, rows))
            .or_insert_with(|| {
                let text = match asked {
                    Asked::Cards => format!(
                        "WITH v(i, recipient, card_phone) AS (VALUES {})
                         SELECT v.i, {} FROM v CROSS JOIN sends s
                             ON s.recipient = v.recipient AND s.card_phone = v.card_phone",
                        values(rows, 2, 1),
                        prefixed_sends("s.")
                    ),
                    Asked::Keys => format!(
                        "WITH v(i, key) AS (VALUES {})
                         SELECT v.i, {} FROM v CROSS JOIN sends s
                             ON s.campaign = ?1 AND s.key = v.key
                         WHERE v.key <> ''",
                        values(rows, 1, 2),
                        prefixed_sends("s.")
                    ),
                    Asked::Suppressed => format!(
                        "WITH v(i, phone) AS (VALUES {})
                         SELECT v.i, s.phone, s.reason, s.added_at FROM v CROSS JOIN suppressed s
                             ON s.phone = v.phone",
                        values(rows, 1, 1)
                    ),
                    Asked::Forgotten => format!(
                        "WITH v(i, digest) AS (VALUES {})
                         SELECT v.i, f.fate, f.left_at FROM v CROSS JOIN forgotten f
                             ON f.digest = v.digest",
                        values(rows, 1, 1)
                    ),
                    Asked::LastReached => format!(
                        "WITH v(i, recipient) AS (VALUES {})
                         SELECT v.i, (SELECT MAX(s.left_at) FROM sends s
                                      WHERE s.recipient = v.recipient
                                          AND s.fate IN ('LEAVING', 'SENT', 'UNKNOWN'))
                         FROM v",
                        values(rows, 1, 1)
                    ),
                };
                std::rc::Rc::from(text)
            })
            .clone()
    })
}

/// `(0, ?1, ?2), (1, ?3, ?4), …`: `rows` rows of an ordinal and `each`
/// parameters, numbered from `first`.
fn values(rows: usize, each: usize, first: usize) -> String {
    (0..rows)
        .map(|row| {
            let parameters: Vec<String> = (0..each)
                .map(|n| format!("?{}", first + row * each + n))
                .collect();
            format!("({row}, {})", parameters.join(", "))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// The row a found row answers, from its ordinal in column 0.
fn ordinal(row: &rusqlite::Row<'_>) -> rusqlite::Result<usize> {
    Ok(usize::try_from(row.get::<_, i64>(0)?).unwrap_or(usize::MAX))
}

/// The [`sends!`] columns, each with `prefix`.
fn prefixed_sends(prefix: &str) -> String {
    sends!()
        .split(',')
        .map(|column| format!("{prefix}{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The number's day at `now` in the zone its days are kept in, noting the
/// first day the number is seen sending (its warm-up counts from it) and
/// the zone, the first time; with the first day and the cap in that zone.
fn number_day(
    connection: &Connection,
    instance: &str,
    cap: &DailyCap,
    now: i64,
) -> rusqlite::Result<(String, DailyCap, String)> {
    let at = jiff::Timestamp::from_nanosecond(i128::from(now)).unwrap_or_default();
    connection
        .prepare_cached(
            "INSERT INTO numbers (instance_id, first_day, timezone) VALUES (?1, ?2, ?3)
             ON CONFLICT (instance_id) DO NOTHING",
        )?
        .execute(params![instance, cap.day(at).to_string(), cap.zone_name()])?;
    let (first_day, mut kept_zone): (String, String) = connection
        .prepare_cached("SELECT first_day, timezone FROM numbers WHERE instance_id = ?1")?
        .query_row(params![instance], |row| Ok((row.get(0)?, row.get(1)?)))?;
    if let Some(zone) = zone_to_keep(&kept_zone, cap.zone_name(), instance) {
        connection
            .prepare_cached("UPDATE numbers SET timezone = ?2 WHERE instance_id = ?1")?
            .execute(params![instance, zone])?;
        kept_zone = zone.to_string();
    }
    let cap = cap.in_zone(&kept_zone);
    let day = cap.day(at).to_string();
    Ok((first_day, cap, day))
}

/// The rows changed by `change` applied to each of `items`, all in one
/// transaction.
fn rows_changed_by_each<T>(
    connection: &mut Connection,
    items: &[T],
    change: impl Fn(&rusqlite::Transaction<'_>, &T) -> rusqlite::Result<usize>,
) -> rusqlite::Result<usize> {
    let transaction = connection.transaction()?;
    let mut changed = 0;
    for item in items {
        changed += change(&transaction, item)?;
    }
    transaction.commit()?;
    Ok(changed)
}

/// A count of `instance`'s `day` that `select` reads (0 before the day's
/// first message).
fn day_count(
    connection: &Connection,
    select: &str,
    instance: &str,
    day: &str,
) -> rusqlite::Result<i64> {
    Ok(connection
        .prepare_cached(select)?
        .query_row(params![instance, day], |row| row.get(0))
        .optional()?
        .unwrap_or(0))
}

/// Takes up to `wanted` messages from `instance`'s cap for the day of
/// `now`. The pass's write transaction keeps other runs out between the
/// read and the write.
fn take_from_cap(
    connection: &Connection,
    instance: &str,
    cap: &DailyCap,
    now: i64,
    wanted: u64,
) -> rusqlite::Result<CapTaken> {
    let (first_day, cap, day) = number_day(connection, instance, cap, now)?;
    let sent = day_count(
        connection,
        "SELECT sent FROM daily_counts WHERE instance_id = ?1 AND day = ?2",
        instance,
        &day,
    )?;
    let today = cap_for(&cap, &first_day, day.parse().unwrap_or_default());
    let allowed = within_cap(sent, today, wanted);
    if allowed.taken > 0 {
        connection
            .prepare_cached(
                "INSERT INTO daily_counts (instance_id, day, sent) VALUES (?1, ?2, ?3)
                 ON CONFLICT (instance_id, day) DO UPDATE SET sent = excluded.sent",
            )?
            .execute(params![
                instance,
                day,
                sent.saturating_add(i64::try_from(allowed.taken).unwrap_or(i64::MAX))
            ])?;
    }
    Ok(allowed.until_next_day(&cap, now))
}

/// How many of `wanted` first contacts `instance`'s limit for the day of
/// `now` has left (`schedule.daily_new_contacts`); counted once the pass
/// knows which went ([`count_first_contacts`]).
fn first_contacts_left(
    connection: &Connection,
    instance: &str,
    cap: &DailyCap,
    now: i64,
    wanted: u64,
) -> rusqlite::Result<CapTaken> {
    let (_, cap, day) = number_day(connection, instance, cap, now)?;
    let made = day_count(
        connection,
        "SELECT new_contacts FROM daily_counts WHERE instance_id = ?1 AND day = ?2",
        instance,
        &day,
    )?;
    Ok(within_cap(made, cap.new_contacts, wanted).until_next_day(&cap, now))
}

/// Counts `made` first contacts of `instance` on the day of `now`.
fn count_first_contacts(
    connection: &Connection,
    instance: &str,
    cap: &DailyCap,
    now: i64,
    made: u64,
) -> rusqlite::Result<()> {
    let (_, _, day) = number_day(connection, instance, cap, now)?;
    connection
        .prepare_cached(
            "INSERT INTO daily_counts (instance_id, day, sent, new_contacts) VALUES (?1, ?2, 0, ?3)
             ON CONFLICT (instance_id, day) DO UPDATE
                 SET new_contacts = daily_counts.new_contacts + excluded.new_contacts",
        )?
        .execute(params![
            instance,
            day,
            i64::try_from(made).unwrap_or(i64::MAX)
        ])?;
    Ok(())
}

/// Which of the cards that go are first contacts: to a recipient their
/// number never reached (as far as the ledger remembers). A recipient met
/// twice in one pass is a first contact once.
fn first_contacts(
    connection: &Connection,
    claims: &[Claim],
    admitted: &Admitted,
) -> rusqlite::Result<Vec<bool>> {
    let mut new = vec![false; claims.len()];
    let mut asked = std::collections::HashSet::new();
    let mut reached = connection.prepare_cached(
        "SELECT EXISTS (SELECT 1 FROM sends WHERE recipient = ?1 AND instance_id = ?2
             AND fate IN ('LEAVING', 'SENT', 'UNKNOWN'))",
    )?;
    for index in admitted.going() {
        let claim = &claims[index];
        if !asked.insert((claim.instance_id.as_str(), claim.to.as_str())) {
            continue;
        }
        let known: bool =
            reached.query_row(params![claim.to, claim.instance_id], |row| row.get(0))?;
        new[index] = !known;
    }
    Ok(new)
}

/// Records what a pass decided of one claim: a card let out is its
/// campaign's `Leaving` row, in flight for at most `in_flight` nanoseconds;
/// a repeat is remembered, so that the campaign never tries it again.
fn record(
    connection: &Connection,
    campaign: &str,
    claim: &Claim,
    claimed: &Claimed,
    in_flight: i64,
) -> rusqlite::Result<()> {
    match claimed {
        Claimed::Granted { left_at, .. } => {
            let stored = stored_key(&claim.key, &claim.to, &claim.card_phone);
            if !stored.is_empty() {
                // The key's row under the card it had before its phone
                // changed, if that card never went: one row a key.
                connection
                    .prepare_cached(
                        "DELETE FROM sends WHERE campaign = ?1 AND key = ?2 AND fate = 'FAILED'
                             AND NOT (recipient = ?3 AND card_phone = ?4)",
                    )?
                    .execute(params![campaign, stored, claim.to, claim.card_phone])?;
            }
            connection
                .prepare_cached(
                    "INSERT INTO sends (recipient, card_phone, campaign, key, fate, instance_id,
                         message_id, api_status, http_status, attempts, left_at, finished_at,
                         in_flight_until)
                     VALUES (?1, ?2, ?3, ?4, 'LEAVING', ?5, '', '', NULL, 0, ?6, 0, ?7)
                     ON CONFLICT (recipient, card_phone, campaign, key) DO UPDATE SET
                         fate = 'LEAVING', instance_id = excluded.instance_id, message_id = '',
                         api_status = '', http_status = NULL, attempts = 0,
                         left_at = excluded.left_at, finished_at = 0,
                         in_flight_until = excluded.in_flight_until",
                )?
                .execute(params![
                    claim.to,
                    claim.card_phone,
                    campaign,
                    stored,
                    claim.instance_id,
                    left_at,
                    left_at.saturating_add(in_flight)
                ])?;
        }
        Claimed::Held(Cause::SameCard { at }) => {
            let repeat = Remembered::repeat(&claim.to, &claim.card_phone, &claim.instance_id, *at);
            remember(connection, campaign, &claim.key, &repeat)?;
        }
        Claimed::Held(_) | Claimed::CapReached { .. } => {}
    }
    Ok(())
}

/// Fills in the campaign's record of `key` where it has none or a `Failed`
/// one.
fn remember(
    connection: &Connection,
    campaign: &str,
    key: &str,
    record: &Remembered,
) -> rusqlite::Result<()> {
    connection
        .prepare_cached(
            "INSERT INTO sends (recipient, card_phone, campaign, key, fate, instance_id,
                 message_id, api_status, http_status, attempts, left_at, finished_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
             ON CONFLICT (recipient, card_phone, campaign, key) DO UPDATE SET
                 fate = excluded.fate, instance_id = excluded.instance_id,
                 message_id = excluded.message_id, api_status = excluded.api_status,
                 http_status = excluded.http_status, attempts = excluded.attempts,
                 left_at = excluded.left_at, finished_at = excluded.finished_at
             WHERE sends.fate = 'FAILED' OR (sends.fate = 'UNKNOWN' AND excluded.fate = 'SENT')",
        )?
        .execute(params![
            record.to,
            record.card_phone,
            campaign,
            stored_key(key, &record.to, &record.card_phone),
            record.fate.as_str(),
            record.instance_id,
            record.message_id,
            record.api_status,
            record.http_status,
            record.attempts,
            record.left_at,
            record.finished_at
        ])?;
    Ok(())
}

/// Deletes the rows of `sends` to `phone` (found by the index), and with
/// `as_card` those carrying it as the card's phone; returns them.
fn erase_rows(
    connection: &Connection,
    phone: &str,
    as_card: bool,
) -> rusqlite::Result<Vec<Erased>> {
    let sql = match as_card {
        false => {
            "DELETE FROM sends WHERE recipient = ?1
             RETURNING campaign, key, recipient, card_phone, fate, left_at"
        }
        true => {
            "DELETE FROM sends WHERE recipient = ?1 OR card_phone = ?1
             RETURNING campaign, key, recipient, card_phone, fate, left_at"
        }
    };
    connection
        .prepare_cached(sql)?
        .query_map(params![phone], |row| {
            let fate: String = row.get(4)?;
            Ok(Erased {
                campaign: row.get(0)?,
                stored_key: row.get(1)?,
                to: row.get(2)?,
                card_phone: row.get(3)?,
                fate: Fate::parse(&fate).unwrap_or(Fate::Unknown),
                left_at: row.get(5)?,
            })
        })?
        .collect()
}

/// Keeps `forgotten` under `digest`, with what the ledger already kept
/// there (as `kind` merges them).
fn keep_forgotten(
    connection: &Connection,
    digest: &str,
    kind: erasure::DigestKind,
    forgotten: Forgotten,
) -> rusqlite::Result<()> {
    let held = connection
        .prepare_cached("SELECT fate, left_at FROM forgotten WHERE digest = ?1")?
        .query_row(params![digest], |row| {
            let fate: String = row.get(0)?;
            Ok(Forgotten {
                fate: Fate::parse(&fate).unwrap_or(Fate::Unknown),
                left_at: row.get(1)?,
            })
        })
        .optional()?;
    let kept = held.map_or(forgotten, |held| kind.merged(held, forgotten));
    connection
        .prepare_cached(
            "INSERT INTO forgotten (digest, fate, left_at) VALUES (?1, ?2, ?3)
             ON CONFLICT (digest) DO UPDATE SET fate = excluded.fate, left_at = excluded.left_at",
        )?
        .execute(params![digest, kept.fate.as_str(), kept.left_at])?;
    Ok(())
}

/// Rewrites the file from what it holds now (`VACUUM`), so that no page
/// keeps an old copy of a row (an update moves a row and leaves its old
/// bytes behind), then empties the WAL into it. Returns what may remain on
/// disk, when another run's reading kept the WAL from being emptied.
fn rewrite_without_old_copies(connection: &Connection) -> rusqlite::Result<Option<String>> {
    connection.execute_batch("VACUUM")?;
    let busy: i64 =
        connection.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |row| row.get(0))?;
    Ok((busy != 0).then(|| {
        "another run was reading the ledger, so its WAL file (ledger.db-wal) may still hold \
         the erased cards until that run ends: run the same `ledger forget` again then"
            .to_string()
    }))
}

/// Records the answer of a card let out at `settled.left_at`, if its row
/// is still that one's; a card that never left is forgotten.
fn settle(connection: &Connection, campaign: &str, settled: &Settled) -> rusqlite::Result<()> {
    let stored = stored_key(&settled.key, &settled.to, &settled.card_phone);
    let card = (settled.to.as_str(), settled.card_phone.as_str());
    match &settled.answer {
        Some(answer) => connection
            .prepare_cached(
                "UPDATE sends SET fate = ?6, instance_id = ?7, message_id = ?8, api_status = ?9,
                     http_status = ?10, attempts = ?11, finished_at = ?12
                 WHERE recipient = ?1 AND card_phone = ?2 AND campaign = ?3 AND key = ?4
                     AND fate = 'LEAVING' AND left_at = ?5",
            )?
            .execute(params![
                card.0,
                card.1,
                campaign,
                stored,
                settled.left_at,
                answer.fate.as_str(),
                answer.instance_id,
                answer.message_id,
                answer.api_status,
                answer.http_status,
                answer.attempts,
                answer.finished_at
            ])?,
        None => connection
            .prepare_cached(
                "DELETE FROM sends
                 WHERE recipient = ?1 AND card_phone = ?2 AND campaign = ?3 AND key = ?4
                     AND fate = 'LEAVING' AND left_at = ?5",
            )?
            .execute(params![card.0, card.1, campaign, stored, settled.left_at])?,
    };
    Ok(())
}

/// Why the file could not be opened as a ledger: SQLite's own error, or
/// the store's words (a folder it cannot create, a ledger too new).
#[derive(Debug, thiserror::Error)]
enum OpenError {
    #[error(transparent)]
    Sqlite(#[from] rusqlite::Error),
    #[error("{0}")]
    Refused(String),
}

impl From<String> for OpenError {
    fn from(problem: String) -> Self {
        OpenError::Refused(problem)
    }
}

impl OpenError {
    /// Another connection holds the file (SQLITE_BUSY, SQLITE_LOCKED):
    /// worth another try.
    fn is_busy(&self) -> bool {
        use rusqlite::ErrorCode::{DatabaseBusy, DatabaseLocked};
        matches!(
            self,
            OpenError::Sqlite(rusqlite::Error::SqliteFailure(failure, _))
                if matches!(failure.code, DatabaseBusy | DatabaseLocked)
        )
    }
}

/// A second connection to the ledger at `path`, which only reads.
fn open_reader(path: &Path) -> Result<Connection, OpenError> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    connection.pragma_update(None, "query_only", true)?;
    Ok(connection)
}

/// [`open_and_migrate`], again while another run is creating the same new
/// ledger: switching a new file to WAL can fail at once on a lock, without
/// the busy timeout.
fn open_patiently(path: Option<PathBuf>) -> Result<Connection, OpenError> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match open_and_migrate(path.clone()) {
            Err(error) if error.is_busy() && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20 + u64::from(fastrand::u8(..)) / 4));
            }
            opened => return opened,
        }
    }
}

fn open_and_migrate(path: Option<PathBuf>) -> Result<Connection, OpenError> {
    let mut connection = match &path {
        Some(path) => {
            kept_private(path)?;
            Connection::open(path)?
        }
        None => Connection::open_in_memory()?,
    };
    connection.busy_timeout(BUSY_TIMEOUT)?;
    connection.pragma_update(None, "journal_mode", "WAL")?;
    connection.pragma_update(None, "synchronous", "NORMAL")?;
    // Negative means KiB. The default 2 MiB held pages a run reads once;
    // the operating system caches the file anyway.
    connection.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
    // A checkpoint copies each page the WAL holds back into the file, and a
    // card's row is written twice in a few milliseconds (as it leaves, as it
    // is answered): fewer, larger checkpoints copy each such page once.
    connection.pragma_update(None, "wal_autocheckpoint", WAL_PAGES)?;
    with_nfc(&connection)?;
    migrate(&mut connection)?;
    Ok(connection)
}

/// Gives the connection `nfc(text)`: the text in Unicode NFC
/// (types::in_nfc), which SQLite lacks and migrations ask for.
fn with_nfc(connection: &Connection) -> rusqlite::Result<()> {
    use rusqlite::functions::FunctionFlags;
    let flags = FunctionFlags::SQLITE_UTF8 | FunctionFlags::SQLITE_DETERMINISTIC;
    connection.create_scalar_function("nfc", 1, flags, |context| {
        let text: String = context.get(0)?;
        Ok(crate::types::in_nfc(&text))
    })
}

/// The ledger at `path` as only its owner may read it: it holds people's
/// phones, when they were reached and why they opted out. Folders it
/// creates are 0700 and a new file 0600 (SQLite gives its `-wal` and `-shm`
/// the file's mode); an existing file others can read is left as it is,
/// with a warning saying how to close it.
fn kept_private(path: &Path) -> Result<(), String> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
    if let Some(folder) = path
        .parent()
        .filter(|folder| !folder.as_os_str().is_empty())
    {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(folder)
            .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|error| format!("cannot open {}: {error}", path.display()))?;
    let mode = file
        .metadata()
        .map_err(|error| format!("cannot read {}: {error}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        let shown = path.display();
        tracing::warn!(
            "the ledger {shown} can be read by other users of this machine (mode {:o}): \
             it holds recipients' phones and opt-outs; `chmod 600 {shown}*` keeps it yours",
            mode & 0o777
        );
    }
    Ok(())
}

/// Brings the schema to the newest version, in one transaction that other
/// runs wait for: two runs opening a new ledger at once migrate it once. A
/// ledger of a newer version is refused, untouched.
fn migrate(connection: &mut Connection) -> Result<(), OpenError> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    transaction.execute(
        "CREATE TABLE IF NOT EXISTS ledger_version (version BIGINT NOT NULL)",
        [],
    )?;
    let version: i64 = transaction.query_row(
        "SELECT COALESCE(MAX(version), 0) FROM ledger_version",
        [],
        |row| row.get(0),
    )?;
    if let Some(problem) = too_new(version) {
        return Err(OpenError::Refused(problem));
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    for step in &MIGRATIONS[usize::try_from(version).unwrap_or(0)..] {
        transaction.execute_batch(&sqlite_step(step))?;
    }
    transaction.execute(SECRET_IF_NONE, params![new_secret()?])?;
    transaction.execute_batch(&format!(
        "DELETE FROM ledger_version; INSERT INTO ledger_version (version) VALUES ({SCHEMA_VERSION})"
    ))?;
    Ok(transaction.commit()?)
}

/// A step of the schema as SQLite runs it: every table of the ledger has a
/// primary key, and SQLite keeps a table's rows in that key's order alone,
/// without a hidden rowid tree beside it (half the writes for each card).
/// A text in NFC is the connection's own `nfc` ([`with_nfc`]).
fn sqlite_step(step: &str) -> String {
    let step = spell_nfc(step, |text| format!("nfc({text})"));
    match step.trim_start().starts_with("CREATE TABLE") {
        true => format!("{step} WITHOUT ROWID"),
        false => step,
    }
}

/// A row of `number_holds`.
fn number_hold(row: &rusqlite::Row) -> rusqlite::Result<NumberHold> {
    Ok(NumberHold {
        instance_id: row.get(0)?,
        kind: HoldKind::stored(&row.get::<_, String>(1)?),
        // Shown by every run and `numbers`: an earlier version kept an
        // API's answer here as it came.
        reason: printable(&row.get::<_, String>(2)?).into_owned(),
        since: row.get(3)?,
        until: row.get(4)?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Date {
        text.parse().unwrap()
    }

    /// The messages `instance` counted on `day`, as `numbers` reads them.
    async fn sent_on(ledger: &SqliteLedger, instance: &str, day: Date) -> u64 {
        let numbers = ledger.numbers(day).await.unwrap();
        numbers
            .iter()
            .find(|number| number.instance_id == instance)
            .and_then(|number| number.sent.get(&day).copied())
            .unwrap_or(0)
    }

    /// Whether one more card through `instance` at noon on `date` is let
    /// out under a cap of `n` (each card to a recipient of its own).
    async fn take(ledger: &SqliteLedger, instance: &str, date: Date, n: u64) -> bool {
        take_under(ledger, instance, date, &cap(n)).await
    }

    async fn take_under(ledger: &SqliteLedger, instance: &str, date: Date, cap: &DailyCap) -> bool {
        static RECIPIENTS: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let to = RECIPIENTS
            .fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            .to_string();
        let noon = jiff::tz::TimeZone::UTC
            .to_timestamp(date.at(12, 0, 0, 0))
            .unwrap();
        let passing = Passing {
            settled: Vec::new(),
            claims: vec![Claim {
                key: to.clone(),
                to,
                card_phone: "1".into(),
                instance_id: instance.into(),
                as_read: None,
            }],
            rules: crate::admission::Rules::default(),
            now: i64::try_from(noon.as_nanosecond()).unwrap(),
            daily_cap: cap.clone(),
        };
        match &ledger.pass("c", passing).await.unwrap()[..] {
            [Claimed::Granted { .. }] => true,
            [Claimed::CapReached { .. }] => false,
            other => panic!("{other:?}"),
        }
    }

    fn cap(n: u64) -> DailyCap {
        DailyCap {
            new_contacts: None,
            cap: Some(n),
            warmup: Vec::new(),
            timezone: jiff::tz::TimeZone::UTC,
        }
    }

    #[tokio::test]
    async fn the_daily_cap_counts_per_instance_and_day_and_stops_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/ledger.db");
        let first = SqliteLedger::open(Some(path.clone()), Clock::system())
            .await
            .unwrap();
        let second = SqliteLedger::open(Some(path), Clock::system())
            .await
            .unwrap();
        let today = day("2026-11-24");
        assert!(take(&first, "a", today, 2).await);
        assert!(
            take(&second, "a", today, 2).await,
            "another run, the same file"
        );
        assert!(!take(&first, "a", today, 2).await);
        assert!(take(&second, "b", today, 2).await, "each instance its own");
        assert!(take(&first, "a", day("2026-11-25"), 2).await, "a new day");
        assert!(
            take(&second, "a", today, 3).await,
            "a higher cap allows more"
        );
        assert_eq!(sent_on(&first, "a", today).await, 3);
    }

    #[tokio::test]
    async fn a_new_number_warms_up_from_the_first_day_it_sends() {
        let ledger = SqliteLedger::open(None, Clock::system()).await.unwrap();
        let cap = DailyCap {
            new_contacts: None,
            cap: Some(5),
            warmup: vec![1, 2],
            timezone: jiff::tz::TimeZone::UTC,
        };
        let mut sent = Vec::new();
        for date in ["2026-11-24", "2026-11-25", "2026-11-26"] {
            let mut today = 0;
            while take_under(&ledger, "new", day(date), &cap).await {
                today += 1;
            }
            sent.push(today);
        }
        assert_eq!(sent, [1, 2, 5]);
    }

    #[tokio::test]
    async fn two_ledgers_on_one_file_book_one_clock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let (first, second) = (
            SqliteLedger::open(Some(path.clone()), Clock::system())
                .await
                .unwrap(),
            SqliteLedger::open(Some(path), Clock::system())
                .await
                .unwrap(),
        );
        let pace = Pace {
            interval: 1_000_000_000,
            burst: 1,
            pace_by_message: false,
            phone_time: 0,
        };
        let mut turns = first.book_turns("a", pace, vec![0, 0]).await.unwrap().turns;
        turns.extend(second.book_turns("a", pace, vec![0]).await.unwrap().turns);
        for pair in turns.windows(2) {
            assert!(pair[1] - pair[0] >= 1_000_000_000, "{turns:?}");
        }
        let other = second.book_turns("b", pace, vec![0]).await.unwrap().turns;
        assert!(other[0] < turns[1], "another number has its own clock");
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn runs_creating_one_new_ledger_at_once_all_open_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ledger.db");
        let opening: Vec<_> = (0..6)
            .map(|_| tokio::spawn(SqliteLedger::open(Some(path.clone()), Clock::system())))
            .collect();
        for opened in opening {
            opened
                .await
                .unwrap()
                .expect("each run opens the new ledger");
        }
    }

    #[test]
    fn a_busy_or_locked_file_is_worth_another_try_and_nothing_else_is() {
        let failure = |code| {
            OpenError::Sqlite(rusqlite::Error::SqliteFailure(
                rusqlite::ffi::Error::new(code),
                None,
            ))
        };
        assert!(failure(rusqlite::ffi::SQLITE_BUSY).is_busy());
        assert!(failure(rusqlite::ffi::SQLITE_LOCKED).is_busy());
        assert!(!failure(rusqlite::ffi::SQLITE_CORRUPT).is_busy());
        // Words that speak of a lock are not a lock.
        assert!(!OpenError::Refused("the file is locked away".to_string()).is_busy());
    }

    #[tokio::test]
    async fn an_in_memory_ledger_starts_empty_each_time() {
        let today = day("2026-11-24");
        for _ in 0..2 {
            let ledger = SqliteLedger::open(None, Clock::system()).await.unwrap();
            assert_eq!(sent_on(&ledger, "a", today).await, 0);
            assert!(take(&ledger, "a", today, 1).await);
        }
    }
}
