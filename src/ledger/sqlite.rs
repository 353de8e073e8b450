//! The ledger in a SQLite file, shared by every run on the machine: WAL so
//! readers never wait for a writer, a busy timeout so writers queue instead
//! of failing. The connection lives on a thread of its own, which takes the
//! calls in turn; no call runs on an async worker.

use std::path::PathBuf;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use jiff::civil::Date;
use rusqlite::{params, Connection, OptionalExtension, TransactionBehavior};

use super::{
    assemble, day_index, now_nanos, Claim, Claimed, LedgerError, NumberRecord, RecentContacts,
    Suppression, Taken, MIGRATIONS, SAME_CARD_WINDOW,
};
use crate::pacing::{nanos, ClockState, Pace};
use crate::schedule::DailyCap;

pub struct SqliteLedger {
    /// Calls for the thread that owns the connection; closed on drop.
    calls: Option<mpsc::Sender<Call>>,
    thread: Option<JoinHandle<()>>,
    /// Where it is, for messages.
    shown: String,
}

/// One call on the connection, made on its thread.
type Call = Box<dyn FnOnce(&mut Connection) + Send>;

/// SQLite's page cache for the connection: 256 KiB measured as fast as the
/// default 2 MiB on the 1M-row benchmark, and keeps the run within 64 MiB.
const PAGE_CACHE_KIB: i64 = 256;

/// How long a writer waits for another run's write before it gives up.
const BUSY_TIMEOUT: Duration = Duration::from_secs(30);

impl SqliteLedger {
    /// Opens (or creates) the ledger at `path`; `None` is a throwaway one in memory.
    pub async fn open(path: Option<PathBuf>) -> Result<Self, LedgerError> {
        let shown = match &path {
            Some(path) => format!("sqlite://{}", path.display()),
            None => "in memory".to_string(),
        };
        let failed = |problem: String| LedgerError {
            url: shown.clone(),
            problem,
        };
        let (calls, queued) = mpsc::channel::<Call>();
        let (opened, opening) = tokio::sync::oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("ledger".to_string())
            .spawn(move || {
                let mut connection = match open_patiently(path) {
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
            .map_err(|error| failed(error.to_string()))?;
        let ledger = SqliteLedger {
            calls: Some(calls),
            thread: Some(thread),
            shown: shown.clone(),
        };
        match opening.await {
            Ok(Ok(())) => Ok(ledger),
            Ok(Err(problem)) => Err(failed(problem)),
            Err(_) => Err(failed("the ledger's thread stopped".to_string())),
        }
    }

    pub fn shown(&self) -> &str {
        &self.shown
    }

    pub async fn take_from_daily_cap(
        &self,
        instance: &str,
        day: Date,
        cap: &DailyCap,
    ) -> Result<Taken, LedgerError> {
        let (instance, cap) = (instance.to_string(), cap.clone());
        self.call_mut(move |connection| {
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            transaction.execute(
                "INSERT INTO numbers (instance_id, first_day) VALUES (?1, ?2)
                 ON CONFLICT (instance_id) DO NOTHING",
                params![instance, day.to_string()],
            )?;
            let first_day: String = transaction.query_row(
                "SELECT first_day FROM numbers WHERE instance_id = ?1",
                params![instance],
                |row| row.get(0),
            )?;
            let today_cap = cap.cap_on(day_index(&first_day, day));
            let limit = today_cap.map_or(i64::MAX, |cap| i64::try_from(cap).unwrap_or(i64::MAX));
            // A new day starts at 1, an old one goes up by one only while
            // under the cap; no row back means the cap is reached.
            let counted: Option<i64> = transaction
                .query_row(
                    "INSERT INTO daily_counts (instance_id, day, sent) VALUES (?1, ?2, 1)
                     ON CONFLICT (instance_id, day) DO UPDATE
                         SET sent = daily_counts.sent + 1
                         WHERE daily_counts.sent < ?3
                     RETURNING sent",
                    params![instance, day.to_string(), limit],
                    |row| row.get(0),
                )
                .optional()?;
            transaction.commit()?;
            Ok(match (counted, today_cap) {
                (Some(sent), _) if sent <= limit => Taken::Counted,
                (_, cap) => Taken::CapReached(cap.unwrap_or(0)),
            })
        })
        .await
    }

    pub async fn book_turns(
        &self,
        instance: &str,
        pace: Pace,
        phone_times: Vec<i64>,
    ) -> Result<Vec<i64>, LedgerError> {
        let instance = instance.to_string();
        self.call_mut(move |connection| {
            // Read, book and write back in one write transaction: another
            // run's booking waits for this one, never interleaves.
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut clock = transaction
                .query_row(
                    "SELECT next_at, phone_free_at FROM clocks WHERE instance_id = ?1",
                    params![instance],
                    |row| {
                        Ok(ClockState {
                            next_at: row.get(0)?,
                            phone_free_at: row.get(1)?,
                        })
                    },
                )
                .optional()?
                .unwrap_or_default();
            let turns = clock.book(pace, now_nanos(), &phone_times);
            transaction.execute(
                "INSERT INTO clocks (instance_id, next_at, phone_free_at) VALUES (?1, ?2, ?3)
                 ON CONFLICT (instance_id) DO UPDATE
                     SET next_at = excluded.next_at, phone_free_at = excluded.phone_free_at",
                params![instance, clock.next_at, clock.phone_free_at],
            )?;
            transaction.commit()?;
            Ok(turns)
        })
        .await
    }

    pub async fn numbers(&self, since: Date) -> Result<Vec<NumberRecord>, LedgerError> {
        let since = since.to_string();
        self.call(move |connection| {
            let first_days = connection
                .prepare("SELECT instance_id, first_day FROM numbers")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let clocks = connection
                .prepare("SELECT instance_id, next_at FROM clocks")?
                .query_map([], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            let counts = connection
                .prepare("SELECT instance_id, day, sent FROM daily_counts WHERE day >= ?1")?
                .query_map(params![since], |row| {
                    Ok((row.get(0)?, row.get(1)?, row.get(2)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(assemble(first_days, clocks, counts))
        })
        .await
    }

    pub async fn suppress(&self, entries: Vec<Suppression>) -> Result<usize, LedgerError> {
        self.call_mut(move |connection| {
            let transaction = connection.transaction()?;
            let mut added = 0;
            for entry in &entries {
                added += transaction.execute(
                    "INSERT INTO suppressed (phone, reason, added_at) VALUES (?1, ?2, ?3)
                     ON CONFLICT (phone) DO NOTHING",
                    params![entry.phone, entry.reason, entry.added_at],
                )?;
            }
            transaction.commit()?;
            Ok(added)
        })
        .await
    }

    pub async fn unsuppress(&self, phones: Vec<String>) -> Result<usize, LedgerError> {
        self.call_mut(move |connection| {
            let transaction = connection.transaction()?;
            let mut removed = 0;
            for phone in &phones {
                removed += transaction
                    .execute("DELETE FROM suppressed WHERE phone = ?1", params![phone])?;
            }
            transaction.commit()?;
            Ok(removed)
        })
        .await
    }

    pub async fn suppressed(&self) -> Result<Vec<Suppression>, LedgerError> {
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

    pub async fn claim(
        &self,
        claims: Vec<Claim>,
        cooldown: Option<i64>,
    ) -> Result<Vec<Claimed>, LedgerError> {
        self.call_mut(move |connection| {
            // One write transaction: another run's claims wait for these.
            let transaction =
                connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let now = now_nanos();
            let mut decided = Vec::with_capacity(claims.len());
            {
                let mut card_of = transaction.prepare_cached(
                    "SELECT sent_at FROM cards WHERE recipient = ?1 AND card_phone = ?2",
                )?;
                let mut last_of = transaction
                    .prepare_cached("SELECT MAX(sent_at) FROM cards WHERE recipient = ?1")?;
                let mut record_card = transaction.prepare_cached(
                    "INSERT INTO cards (recipient, card_phone, instance_id, sent_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (recipient, card_phone) DO UPDATE
                         SET instance_id = excluded.instance_id, sent_at = excluded.sent_at",
                )?;
                // Without a cooldown, one statement a message: it records
                // the card unless it went within the window (or is resent).
                // Whether it did is the count of rows it changed (cheaper
                // than RETURNING, which SQLite buffers in a table of its own).
                let mut claim_card = transaction.prepare_cached(
                    "INSERT INTO cards (recipient, card_phone, instance_id, sent_at)
                     VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT (recipient, card_phone) DO UPDATE
                         SET instance_id = excluded.instance_id, sent_at = excluded.sent_at
                         WHERE cards.sent_at <= ?5 OR ?6",
                )?;
                let window_start = now - nanos(SAME_CARD_WINDOW);
                for claim in &claims {
                    if cooldown.is_none() {
                        let recorded = claim_card.execute(params![
                            claim.recipient,
                            claim.card_phone,
                            claim.instance_id,
                            now,
                            window_start,
                            claim.resending
                        ])?;
                        let verdict =
                            match recorded {
                                0 => Claimed::SameCardAt(card_of.query_row(
                                    params![claim.recipient, claim.card_phone],
                                    |row| row.get(0),
                                )?),
                                _ => Claimed::Granted(now),
                            };
                        decided.push(verdict);
                        continue;
                    }
                    let card_sent_at: Option<i64> = card_of
                        .query_row(params![claim.recipient, claim.card_phone], |row| row.get(0))
                        .optional()?;
                    let last_reached: Option<i64> =
                        last_of.query_row(params![claim.recipient], |row| row.get(0))?;
                    let verdict = Claimed::decide(claim, card_sent_at, last_reached, now, cooldown);
                    if let Claimed::Granted(at) = verdict {
                        record_card.execute(params![
                            claim.recipient,
                            claim.card_phone,
                            claim.instance_id,
                            at
                        ])?;
                    }
                    decided.push(verdict);
                }
            }
            transaction.commit()?;
            Ok(decided)
        })
        .await
    }

    pub async fn release(
        &self,
        recipient: &str,
        card_phone: &str,
        at: i64,
    ) -> Result<(), LedgerError> {
        let (recipient, card_phone) = (recipient.to_string(), card_phone.to_string());
        self.call(move |connection| {
            connection.execute(
                "DELETE FROM cards WHERE recipient = ?1 AND card_phone = ?2 AND sent_at = ?3",
                params![recipient, card_phone, at],
            )?;
            Ok(())
        })
        .await
    }

    pub async fn recent_contacts(
        &self,
        cards_since: i64,
        recipients_since: i64,
    ) -> Result<RecentContacts, LedgerError> {
        self.call(move |connection| {
            let mut recent = RecentContacts::default();
            let mut cards = connection.prepare(
                "SELECT recipient, card_phone, sent_at FROM cards WHERE sent_at > ?1",
            )?;
            let rows = cards.query_map(params![cards_since], |row| {
                Ok((row.get::<_, String>(0)?, row.get::<_, String>(1)?, row.get(2)?))
            })?;
            for row in rows {
                let (recipient, card, at) = row?;
                recent.cards.entry(recipient).or_default().insert(card, at);
            }
            let mut recipients = connection.prepare(
                "SELECT recipient, MAX(sent_at) FROM cards GROUP BY recipient HAVING MAX(sent_at) > ?1",
            )?;
            let rows = recipients.query_map(params![recipients_since], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
            for row in rows {
                let (recipient, at) = row?;
                recent.recipients.insert(recipient, at);
            }
            Ok(recent)
        })
        .await
    }

    pub async fn sent_on(&self, instance: &str, day: Date) -> Result<u64, LedgerError> {
        let (instance, day) = (instance.to_string(), day.to_string());
        self.call(move |connection| {
            let sent: Option<i64> = connection
                .query_row(
                    "SELECT sent FROM daily_counts WHERE instance_id = ?1 AND day = ?2",
                    params![instance, day],
                    |row| row.get(0),
                )
                .optional()?;
            Ok(u64::try_from(sent.unwrap_or(0)).unwrap_or(0))
        })
        .await
    }

    /// Runs `work` on the connection, on a blocking thread.
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
        let failed = |problem: String| LedgerError {
            url: self.shown.clone(),
            problem,
        };
        let stopped = || failed("the ledger's thread has stopped".to_string());
        let (done, answer) = tokio::sync::oneshot::channel();
        let call: Call = Box::new(move |connection| {
            let _ = done.send(work(connection));
        });
        let calls = self.calls.as_ref().ok_or_else(stopped)?;
        calls.send(call).map_err(|_| stopped())?;
        answer
            .await
            .map_err(|_| stopped())?
            .map_err(|error| failed(error.to_string()))
    }
}

impl Drop for SqliteLedger {
    /// Lets the thread finish the calls it has and close the connection
    /// (which checkpoints the WAL) before the run ends.
    fn drop(&mut self) {
        self.calls.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// [`open_and_migrate`], again while another run is creating the same new
/// ledger: switching a new file to WAL can fail at once on a lock, without
/// the busy timeout.
fn open_patiently(path: Option<PathBuf>) -> Result<Connection, String> {
    let deadline = std::time::Instant::now() + BUSY_TIMEOUT;
    loop {
        match open_and_migrate(path.clone()) {
            Err(error) if error.contains("locked") && std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(20 + u64::from(fastrand::u8(..)) / 4));
            }
            opened => return opened,
        }
    }
}

fn open_and_migrate(path: Option<PathBuf>) -> Result<Connection, String> {
    let mut connection = match &path {
        Some(path) => {
            if let Some(folder) = path
                .parent()
                .filter(|folder| !folder.as_os_str().is_empty())
            {
                std::fs::create_dir_all(folder)
                    .map_err(|error| format!("cannot create {}: {error}", folder.display()))?;
            }
            Connection::open(path)
        }
        None => Connection::open_in_memory(),
    }
    .map_err(|error| error.to_string())?;
    let setup = || -> rusqlite::Result<()> {
        connection.busy_timeout(BUSY_TIMEOUT)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.pragma_update(None, "synchronous", "NORMAL")?;
        // Negative means KiB. The default 2 MiB held pages a run reads
        // once; the operating system caches the file anyway.
        connection.pragma_update(None, "cache_size", -PAGE_CACHE_KIB)?;
        Ok(())
    };
    setup().map_err(|error| error.to_string())?;
    migrate(&mut connection).map_err(|error| error.to_string())?;
    Ok(connection)
}

/// Brings the schema to the newest version, in one transaction that other
/// runs wait for: two runs opening a new ledger at once migrate it once.
fn migrate(connection: &mut Connection) -> rusqlite::Result<()> {
    let transaction = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
    transaction.execute(
        "CREATE TABLE IF NOT EXISTS ledger_version (version BIGINT NOT NULL)",
        [],
    )?;
    let version: i64 = transaction
        .query_row("SELECT MAX(version) FROM ledger_version", [], |row| {
            row.get::<_, Option<i64>>(0)
        })?
        .unwrap_or(0);
    for (index, step) in MIGRATIONS.iter().enumerate() {
        let step_version = index as i64 + 1;
        if step_version > version {
            transaction.execute_batch(&sqlite_step(step))?;
            transaction.execute(
                "INSERT INTO ledger_version (version) VALUES (?1)",
                params![step_version],
            )?;
        }
    }
    transaction.commit()
}

/// A step of the schema as SQLite runs it: every table of the ledger has a
/// primary key, and SQLite keeps a table's rows in that key's order alone,
/// without a hidden rowid tree beside it (half the writes for each card).
fn sqlite_step(step: &str) -> String {
    match step.trim_start().starts_with("CREATE TABLE") {
        true => format!("{step} WITHOUT ROWID"),
        false => step.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn day(text: &str) -> Date {
        text.parse().unwrap()
    }

    async fn take(ledger: &SqliteLedger, instance: &str, date: Date, n: u64) -> Taken {
        ledger
            .take_from_daily_cap(instance, date, &cap(n))
            .await
            .unwrap()
    }

    fn cap(n: u64) -> DailyCap {
        DailyCap {
            cap: Some(n),
            warmup: Vec::new(),
            timezone: jiff::tz::TimeZone::UTC,
        }
    }

    #[tokio::test]
    async fn the_daily_cap_counts_per_instance_and_day_and_stops_at_the_cap() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nested/ledger.db");
        let first = SqliteLedger::open(Some(path.clone())).await.unwrap();
        let second = SqliteLedger::open(Some(path)).await.unwrap();
        let today = day("2026-11-24");
        assert_eq!(take(&first, "a", today, 2).await, Taken::Counted);
        assert_eq!(
            take(&second, "a", today, 2).await,
            Taken::Counted,
            "another run, the same file"
        );
        assert_eq!(take(&first, "a", today, 2).await, Taken::CapReached(2));
        assert_eq!(
            take(&second, "b", today, 2).await,
            Taken::Counted,
            "each instance its own"
        );
        assert_eq!(
            take(&first, "a", day("2026-11-25"), 2).await,
            Taken::Counted,
            "a new day"
        );
        assert_eq!(
            take(&second, "a", today, 3).await,
            Taken::Counted,
            "a higher cap allows more"
        );
        assert_eq!(first.sent_on("a", today).await.unwrap(), 3);
    }

    #[tokio::test]
    async fn a_new_number_warms_up_from_the_first_day_it_sends() {
        let ledger = SqliteLedger::open(None).await.unwrap();
        let cap = DailyCap {
            cap: Some(5),
            warmup: vec![1, 2],
            timezone: jiff::tz::TimeZone::UTC,
        };
        let mut sent = Vec::new();
        for date in ["2026-11-24", "2026-11-25", "2026-11-26"] {
            let mut today = 0;
            while ledger
                .take_from_daily_cap("new", day(date), &cap)
                .await
                .unwrap()
                == Taken::Counted
            {
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
            SqliteLedger::open(Some(path.clone())).await.unwrap(),
            SqliteLedger::open(Some(path)).await.unwrap(),
        );
        let pace = Pace {
            interval: 1_000_000_000,
            burst: 1,
            pace_by_message: false,
        };
        let mut turns = first.book_turns("a", pace, vec![0, 0]).await.unwrap();
        turns.extend(second.book_turns("a", pace, vec![0]).await.unwrap());
        for pair in turns.windows(2) {
            assert!(pair[1] - pair[0] >= 1_000_000_000, "{turns:?}");
        }
        let other = second.book_turns("b", pace, vec![0]).await.unwrap();
        assert!(other[0] < turns[1], "another number has its own clock");
    }

    #[tokio::test]
    async fn an_in_memory_ledger_starts_empty_each_time() {
        let today = day("2026-11-24");
        for _ in 0..2 {
            let ledger = SqliteLedger::open(None).await.unwrap();
            assert_eq!(ledger.sent_on("a", today).await.unwrap(), 0);
            let taken = ledger.take_from_daily_cap("a", today, &cap(1)).await;
            assert_eq!(taken.unwrap(), Taken::Counted);
        }
    }
}
