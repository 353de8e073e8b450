//! The ledger in a PostgreSQL database, for several machines sharing
//! numbers. Every booking is a transaction that locks the number's row, so
//! runs on any machine queue behind each other instead of interleaving.
//! The driver is async: nothing here blocks an async worker.

use jiff::civil::Date;
use tokio::sync::Mutex;
use tokio_postgres::{Client, NoTls};

use super::{
    assemble, day_index, now_nanos, Claim, Claimed, LedgerError, NumberRecord, RecentContacts,
    Suppression, Taken, MIGRATIONS,
};
use crate::pacing::{ClockState, Pace};
use crate::schedule::DailyCap;

pub struct PostgresLedger {
    /// One connection; a transaction holds it for its few statements.
    client: Mutex<Client>,
    /// Where it is, the password hidden.
    shown: String,
    _connection: tokio::task::JoinHandle<()>,
}

impl PostgresLedger {
    pub async fn open(url: &str, shown: String) -> Result<Self, LedgerError> {
        let failed = |error: tokio_postgres::Error| LedgerError {
            url: shown.clone(),
            problem: describe(&error),
        };
        let (mut client, connection) = tokio_postgres::connect(url, NoTls).await.map_err(failed)?;
        let connection = tokio::spawn(async move {
            // Ends when the client is dropped or the server goes away; the
            // next query then fails, and the run halts.
            let _ = connection.await;
        });
        migrate(&mut client).await.map_err(failed)?;
        Ok(PostgresLedger {
            client: Mutex::new(client),
            shown,
            _connection: connection,
        })
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
        let day_text = day.to_string();
        let mut client = self.client.lock().await;
        let failed = |error: tokio_postgres::Error| self.failed(&error);
        let transaction = client.transaction().await.map_err(failed)?;
        transaction
            .execute(
                "INSERT INTO numbers (instance_id, first_day) VALUES ($1, $2)
                 ON CONFLICT (instance_id) DO NOTHING",
                &[&instance, &day_text],
            )
            .await
            .map_err(failed)?;
        let first_day: String = transaction
            .query_one(
                "SELECT first_day FROM numbers WHERE instance_id = $1",
                &[&instance],
            )
            .await
            .map_err(failed)?
            .get(0);
        let today_cap = cap.cap_on(day_index(&first_day, day));
        let limit = today_cap.map_or(i64::MAX, |cap| i64::try_from(cap).unwrap_or(i64::MAX));
        // One statement, as in SQLite: no read-modify-write between runs.
        let counted = transaction
            .query_opt(
                "INSERT INTO daily_counts (instance_id, day, sent) VALUES ($1, $2, 1)
                 ON CONFLICT (instance_id, day) DO UPDATE
                     SET sent = daily_counts.sent + 1
                     WHERE daily_counts.sent < $3
                 RETURNING sent",
                &[&instance, &day_text, &limit],
            )
            .await
            .map_err(failed)?;
        transaction.commit().await.map_err(failed)?;
        Ok(match (counted, today_cap) {
            (Some(row), _) if row.get::<_, i64>(0) <= limit => Taken::Counted,
            (_, cap) => Taken::CapReached(cap.unwrap_or(0)),
        })
    }

    pub async fn book_turns(
        &self,
        instance: &str,
        pace: Pace,
        phone_times: Vec<i64>,
    ) -> Result<Vec<i64>, LedgerError> {
        let mut client = self.client.lock().await;
        let transaction = client
            .transaction()
            .await
            .map_err(|error| self.failed(&error))?;
        // The row first (if new), then locked: another run's booking of
        // this number waits here until this one commits.
        transaction
            .execute(
                "INSERT INTO clocks (instance_id, next_at, phone_free_at) VALUES ($1, 0, 0)
                 ON CONFLICT (instance_id) DO NOTHING",
                &[&instance],
            )
            .await
            .map_err(|error| self.failed(&error))?;
        let row = transaction
            .query_one(
                "SELECT next_at, phone_free_at FROM clocks WHERE instance_id = $1 FOR UPDATE",
                &[&instance],
            )
            .await
            .map_err(|error| self.failed(&error))?;
        let mut clock = ClockState {
            next_at: row.get(0),
            phone_free_at: row.get(1),
        };
        let turns = clock.book(pace, now_nanos(), &phone_times);
        transaction
            .execute(
                "UPDATE clocks SET next_at = $2, phone_free_at = $3 WHERE instance_id = $1",
                &[&instance, &clock.next_at, &clock.phone_free_at],
            )
            .await
            .map_err(|error| self.failed(&error))?;
        transaction
            .commit()
            .await
            .map_err(|error| self.failed(&error))?;
        Ok(turns)
    }

    pub async fn numbers(&self, since: Date) -> Result<Vec<NumberRecord>, LedgerError> {
        let client = self.client.lock().await;
        let failed = |error: tokio_postgres::Error| self.failed(&error);
        let first_days = client
            .query("SELECT instance_id, first_day FROM numbers", &[])
            .await
            .map_err(failed)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let clocks = client
            .query("SELECT instance_id, next_at FROM clocks", &[])
            .await
            .map_err(failed)?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let counts = client
            .query(
                "SELECT instance_id, day, sent FROM daily_counts WHERE day >= $1",
                &[&since.to_string()],
            )
            .await
            .map_err(failed)?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        Ok(assemble(first_days, clocks, counts))
    }

    pub async fn suppress(&self, entries: Vec<Suppression>) -> Result<usize, LedgerError> {
        let mut client = self.client.lock().await;
        let failed = |error: tokio_postgres::Error| self.failed(&error);
        let transaction = client.transaction().await.map_err(failed)?;
        let mut added = 0;
        for entry in &entries {
            added += transaction
                .execute(
                    "INSERT INTO suppressed (phone, reason, added_at) VALUES ($1, $2, $3)
                     ON CONFLICT (phone) DO NOTHING",
                    &[&entry.phone, &entry.reason, &entry.added_at],
                )
                .await
                .map_err(failed)?;
        }
        transaction.commit().await.map_err(failed)?;
        Ok(usize::try_from(added).unwrap_or(usize::MAX))
    }

    pub async fn unsuppress(&self, phones: Vec<String>) -> Result<usize, LedgerError> {
        let client = self.client.lock().await;
        let removed = client
            .execute("DELETE FROM suppressed WHERE phone = ANY($1)", &[&phones])
            .await
            .map_err(|error| self.failed(&error))?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    pub async fn suppressed(&self) -> Result<Vec<Suppression>, LedgerError> {
        let client = self.client.lock().await;
        let rows = client
            .query(
                "SELECT phone, reason, added_at FROM suppressed ORDER BY phone",
                &[],
            )
            .await
            .map_err(|error| self.failed(&error))?;
        Ok(rows
            .iter()
            .map(|row| Suppression {
                phone: row.get(0),
                reason: row.get(1),
                added_at: row.get(2),
            })
            .collect())
    }

    pub async fn claim(
        &self,
        claims: Vec<Claim>,
        cooldown: Option<i64>,
    ) -> Result<Vec<Claimed>, LedgerError> {
        let mut client = self.client.lock().await;
        let failed = |error: tokio_postgres::Error| self.failed(&error);
        let transaction = client.transaction().await.map_err(failed)?;
        let now = now_nanos();
        let mut decided = Vec::with_capacity(claims.len());
        for claim in &claims {
            // A lock on the recipient, to the end of the transaction: two
            // machines claiming one recipient queue instead of both passing.
            transaction
                .execute(
                    "SELECT pg_advisory_xact_lock(hashtextextended($1, 0))",
                    &[&claim.recipient],
                )
                .await
                .map_err(failed)?;
            let card_sent_at: Option<i64> = transaction
                .query_opt(
                    "SELECT sent_at FROM cards WHERE recipient = $1 AND card_phone = $2",
                    &[&claim.recipient, &claim.card_phone],
                )
                .await
                .map_err(failed)?
                .map(|row| row.get(0));
            let last_reached: Option<i64> = transaction
                .query_one(
                    "SELECT MAX(sent_at) FROM cards WHERE recipient = $1",
                    &[&claim.recipient],
                )
                .await
                .map_err(failed)?
                .get(0);
            let verdict = Claimed::decide(claim, card_sent_at, last_reached, now, cooldown);
            if let Claimed::Granted(at) = verdict {
                transaction
                    .execute(
                        "INSERT INTO cards (recipient, card_phone, instance_id, sent_at)
                         VALUES ($1, $2, $3, $4)
                         ON CONFLICT (recipient, card_phone) DO UPDATE
                             SET instance_id = excluded.instance_id, sent_at = excluded.sent_at",
                        &[&claim.recipient, &claim.card_phone, &claim.instance_id, &at],
                    )
                    .await
                    .map_err(failed)?;
            }
            decided.push(verdict);
        }
        transaction.commit().await.map_err(failed)?;
        Ok(decided)
    }

    pub async fn release(
        &self,
        recipient: &str,
        card_phone: &str,
        at: i64,
    ) -> Result<(), LedgerError> {
        let client = self.client.lock().await;
        client
            .execute(
                "DELETE FROM cards WHERE recipient = $1 AND card_phone = $2 AND sent_at = $3",
                &[&recipient, &card_phone, &at],
            )
            .await
            .map_err(|error| self.failed(&error))?;
        Ok(())
    }

    pub async fn recent_contacts(
        &self,
        cards_since: i64,
        recipients_since: i64,
    ) -> Result<RecentContacts, LedgerError> {
        let client = self.client.lock().await;
        let failed = |error: tokio_postgres::Error| self.failed(&error);
        let mut recent = RecentContacts::default();
        for row in client
            .query(
                "SELECT recipient, card_phone, sent_at FROM cards WHERE sent_at > $1",
                &[&cards_since],
            )
            .await
            .map_err(failed)?
        {
            recent
                .cards
                .entry(row.get(0))
                .or_default()
                .insert(row.get(1), row.get(2));
        }
        for row in client
            .query(
                "SELECT recipient, MAX(sent_at) FROM cards GROUP BY recipient HAVING MAX(sent_at) > $1",
                &[&recipients_since],
            )
            .await
            .map_err(failed)?
        {
            recent.recipients.insert(row.get(0), row.get(1));
        }
        Ok(recent)
    }

    pub async fn sent_on(&self, instance: &str, day: Date) -> Result<u64, LedgerError> {
        let client = self.client.lock().await;
        let sent = client
            .query_opt(
                "SELECT sent FROM daily_counts WHERE instance_id = $1 AND day = $2",
                &[&instance, &day.to_string()],
            )
            .await
            .map_err(|error| self.failed(&error))?
            .map_or(0, |row| row.get::<_, i64>(0));
        Ok(u64::try_from(sent).unwrap_or(0))
    }

    fn failed(&self, error: &tokio_postgres::Error) -> LedgerError {
        LedgerError {
            url: self.shown.clone(),
            problem: describe(error),
        }
    }
}

/// The error with its cause, which tokio-postgres keeps apart.
fn describe(error: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    match error.source() {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// Brings the schema to the newest version, under an advisory lock: two
/// machines opening a new ledger at once migrate it once.
async fn migrate(client: &mut Client) -> Result<(), tokio_postgres::Error> {
    let transaction = client.transaction().await?;
    // An arbitrary key of this tool's own, held to the end of the transaction.
    transaction
        .execute("SELECT pg_advisory_xact_lock(7234019871)", &[])
        .await?;
    transaction
        .execute(
            "CREATE TABLE IF NOT EXISTS ledger_version (version BIGINT NOT NULL)",
            &[],
        )
        .await?;
    let version: i64 = transaction
        .query_one("SELECT COALESCE(MAX(version), 0) FROM ledger_version", &[])
        .await?
        .get(0);
    for (index, step) in MIGRATIONS.iter().enumerate() {
        let step_version = index as i64 + 1;
        if step_version > version {
            transaction.batch_execute(step).await?;
            transaction
                .execute(
                    "INSERT INTO ledger_version (version) VALUES ($1)",
                    &[&step_version],
                )
                .await?;
        }
    }
    transaction.commit().await
}
