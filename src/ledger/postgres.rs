//! The ledger in a PostgreSQL database, for several machines sharing
//! numbers. Every booking is a transaction that locks the number's row, and
//! every pass of the door locks the recipients and keys it touches, so runs
//! on any machine queue behind each other instead of interleaving. A pass
//! is a few statements over arrays, however many cards it holds. The driver
//! is async: nothing here blocks an async worker.

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use jiff::civil::Date;
use tokio::sync::Mutex;
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::{Client, NoTls, Row, Transaction};
use tokio_util::sync::CancellationToken;

use super::erasure::{self, ForgottenOf, Secret};
use super::Store;
use super::{
    assemble, cap_for, facts_of, key_of, new_secret, secret_of, spell_nfc, stats_time, stored_key,
    surer_found, too_new, within_cap, zone_to_keep, Admitted, CapTaken, Claim, Claimed, Erased,
    Forgot, Found, LedgerError, LedgerSettings, LedgerStats, Lookup, NumberRecord, Opening,
    Passing, PhoneUses, Pruned, PruningClocks, Settled, MIGRATIONS, NUMBER_IDS, SCHEMA_VERSION,
    SECRET_IF_NONE, WENT,
};
use crate::pacing::{Booking, ClockState, Pace};
use crate::schedule::DailyCap;
use crate::types::{
    printable, Cause, Facts, Fate, Forgotten, HoldKind, NumberHold, Remembered, Suppression,
};

/// A statement's parameters with their PostgreSQL types: a statement so
/// typed goes in one round trip (`query_typed`), without a prepare first.
macro_rules! typed {
    ($($value:expr),* $(,)?) => {
        &[$(typed($value)),*]
    };
}

/// A parameter's PostgreSQL type.
trait PgType {
    const TYPE: Type;
}

impl PgType for &str {
    const TYPE: Type = Type::TEXT;
}

impl PgType for String {
    const TYPE: Type = Type::TEXT;
}

impl PgType for i64 {
    const TYPE: Type = Type::INT8;
}

impl PgType for Option<i64> {
    const TYPE: Type = Type::INT8;
}

impl PgType for Vec<&str> {
    const TYPE: Type = Type::TEXT_ARRAY;
}

impl PgType for Vec<i64> {
    const TYPE: Type = Type::INT8_ARRAY;
}

impl PgType for Vec<Option<i64>> {
    const TYPE: Type = Type::INT8_ARRAY;
}

fn typed<T: PgType + ToSql + Sync>(value: &T) -> (&(dyn ToSql + Sync), Type) {
    (value, T::TYPE)
}

pub struct PostgresLedger {
    /// One connection; a transaction holds it for its few statements. A
    /// lost one is made again, once a call.
    client: Mutex<Client>,
    /// How to connect again (boxed: it is large, and seldom read).
    config: Box<tokio_postgres::Config>,
    /// How long a call may take before the server is given up on.
    patience: Duration,
    /// Cancelled when the run is asked to stop: a wait then ends soon.
    stop: CancellationToken,
    /// Where it is, the password hidden.
    shown: String,
    /// The key of the forgotten cards' digests, read once the schema is
    /// the newest.
    secret: std::sync::OnceLock<Secret>,
}

/// How long opening a ledger may take when it migrates the schema: on a
/// ledger of millions of cards a step may take minutes.
const MIGRATION_PATIENCE: Duration = Duration::from_secs(30 * 60);

/// How long a live server takes to answer `SELECT 1`, at most.
const PROBE_PATIENCE: Duration = Duration::from_secs(2);

/// How long a wait for the server may go on once the run is asked to stop:
/// enough for the last answers to be recorded, short of the 5 s an
/// operator's `kill` gives.
const STOPPING_PATIENCE: Duration = Duration::from_secs(3);

/// What one try of a store method comes to ([`PostgresLedger::patiently`]
/// puts a failure into words, and tries again on a lost connection).
type Once<T> = Result<T, Failed>;

/// Why a try failed: the server's error, or the store's own.
#[derive(Debug)]
enum Failed {
    Server(tokio_postgres::Error),
    Ledger(LedgerError),
}

impl From<tokio_postgres::Error> for Failed {
    fn from(error: tokio_postgres::Error) -> Self {
        Failed::Server(error)
    }
}

impl From<LedgerError> for Failed {
    fn from(error: LedgerError) -> Self {
        Failed::Ledger(error)
    }
}

impl PostgresLedger {
    /// Connects to the database at `url` (`shown` in messages) and brings
    /// the ledger's schema to the newest version; `None`, having created no
    /// table, when the database holds no ledger and `opening` may not
    /// create one.
    pub async fn open(
        url: &str,
        shown: String,
        settings: &LedgerSettings,
        opening: Opening,
        stop: CancellationToken,
    ) -> Result<Option<Self>, LedgerError> {
        let mut config: tokio_postgres::Config = url.parse().map_err(|error| LedgerError {
            url: shown.clone(),
            problem: describe(&error),
        })?;
        // The server ends a statement that waits on another session's row,
        // or runs, too long; keepalives find a server that went away.
        let options = format!(
            "{} -c lock_timeout={} -c statement_timeout={}",
            config.get_options().unwrap_or(""),
            settings.lock_timeout.as_millis().max(1),
            settings.statement_timeout.as_millis().max(1)
        );
        config
            .options(options.trim())
            .connect_timeout(settings.connect_timeout)
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(30));
        let ledger = PostgresLedger {
            client: Mutex::new(connect(&config, &shown, settings.connect_timeout).await?),
            config: Box::new(config),
            // The server's own timeouts come first; this is for a server
            // that does not answer at all.
            patience: settings.statement_timeout + Duration::from_secs(5),
            stop,
            shown,
            secret: std::sync::OnceLock::new(),
        };
        // A migration of a big ledger may take minutes; SIGTERM still ends
        // the wait within seconds.
        let secret = ledger
            .within_for(MIGRATION_PATIENCE, async {
                let mut client = ledger.client.lock().await;
                if opening == Opening::Existing && !holds_a_ledger(&client, &ledger.shown).await? {
                    return Ok(None);
                }
                migrate(&mut client, &ledger.shown).await?;
                let secret = client
                    .query_opt("SELECT secret FROM ledger_secret", &[])
                    .await
                    .map_err(|error| ledger.failed(&error))?
                    .map(|row| row.get(0));
                secret_of(secret)
                    .map(Some)
                    .map_err(|problem| ledger.problem(problem))
            })
            .await?;
        Ok(secret.map(|secret| {
            let _ = ledger.secret.set(secret);
            ledger
        }))
    }

    /// The key of the forgotten cards' digests.
    fn secret(&self) -> &Secret {
        self.secret.get().expect("read as the ledger is opened")
    }

    /// Runs `work` within the ledger's patience; when it failed because the
    /// connection was lost, connects again and runs it once more.
    async fn patiently<T, Work>(&self, work: impl Fn() -> Work) -> Result<T, LedgerError>
    where
        Work: Future<Output = Once<T>>,
    {
        let once = || async { work().await.map_err(|failed| self.in_words(failed)) };
        match self.within(once()).await {
            Err(error) if self.lost().await => {
                tracing::warn!("{error}; connecting again");
                let client = self
                    .within(connect(&self.config, &self.shown, self.patience))
                    .await?;
                *self.client.lock().await = client;
                self.within(once()).await
            }
            done => done,
        }
    }

    /// A try's failure as the ledger's error.
    fn in_words(&self, failed: Failed) -> LedgerError {
        match failed {
            Failed::Server(error) => self.failed(&error),
            Failed::Ledger(error) => error,
        }
    }

    /// Whether the connection is gone: closed, or not answering a short
    /// probe (a server that ended it may say so before the socket closes).
    /// A run asked to stop connects to nothing more.
    async fn lost(&self) -> bool {
        if self.stop.is_cancelled() {
            return false;
        }
        let client = self.client.lock().await;
        let probe = client.simple_query("SELECT 1");
        client.is_closed()
            || !matches!(tokio::time::timeout(PROBE_PATIENCE, probe).await, Ok(Ok(_)))
    }

    /// `work`, given up on when the server does not answer within the
    /// ledger's patience, or soon after the run is asked to stop.
    async fn within<T>(
        &self,
        work: impl Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, LedgerError> {
        self.within_for(self.patience, work).await
    }

    /// [`PostgresLedger::within`] with a patience of its own.
    async fn within_for<T>(
        &self,
        patience: Duration,
        work: impl Future<Output = Result<T, LedgerError>>,
    ) -> Result<T, LedgerError> {
        let stopping = async {
            self.stop.cancelled().await;
            tokio::time::sleep(STOPPING_PATIENCE).await;
        };
        tokio::select! {
            done = tokio::time::timeout(patience, work) => done.unwrap_or_else(|_| {
                Err(self.problem(format!(
                    "the server did not answer within {} s",
                    patience.as_secs()
                )))
            }),
            () = stopping => Err(self.problem(
                "the run was asked to stop while it waited for the server".to_string(),
            )),
        }
    }

    fn problem(&self, problem: String) -> LedgerError {
        LedgerError {
            url: self.shown.clone(),
            problem,
        }
    }

    async fn book_turns_once(
        &self,
        instance: &str,
        pace: Pace,
        phone_times: Vec<i64>,
    ) -> Once<Booking> {
        let mut client = self.client.lock().await;
        let transaction = client.transaction().await?;
        // The row first (if new), then locked: another run's booking of
        // this number waits here until this one commits.
        transaction
            .execute_typed(
                "INSERT INTO clocks (instance_id, next_at, phone_free_at) VALUES ($1, 0, 0)
                 ON CONFLICT (instance_id) DO NOTHING",
                typed![&instance],
            )
            .await?;
        let row = transaction
            .query_typed_one(
                "SELECT next_at, phone_free_at, booked_at FROM clocks
                 WHERE instance_id = $1 FOR UPDATE",
                typed![&instance],
            )
            .await?;
        let mut clock = ClockState {
            next_at: row.get(0),
            phone_free_at: row.get(1),
            booked_at: row.get(2),
        };
        // The server's clock, read once the row is ours: every machine's
        // turns are on it, so machines whose clocks differ keep one pace.
        let now: i64 = transaction
            .query_typed_one(&format!("SELECT {SERVER_NOW}"), &[])
            .await?
            .get(0);
        let booking = clock.book(pace, now, &phone_times);
        transaction
            .execute_typed(
                "UPDATE clocks SET next_at = $2, phone_free_at = $3, booked_at = $4
                 WHERE instance_id = $1",
                typed![
                    &instance,
                    &clock.next_at,
                    &clock.phone_free_at,
                    &clock.booked_at
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(booking)
    }

    async fn numbers_once(&self, since: Date) -> Once<Vec<NumberRecord>> {
        let client = self.client.lock().await;
        let first_days = client
            .query("SELECT instance_id, first_day, timezone FROM numbers", &[])
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2)))
            .collect();
        let clocks = client
            .query("SELECT instance_id, next_at FROM clocks", &[])
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1)))
            .collect();
        let counts = client
            .query(
                "SELECT instance_id, day, sent, new_contacts FROM daily_counts WHERE day >= $1",
                &[&since.to_string()],
            )
            .await?
            .iter()
            .map(|row| (row.get(0), row.get(1), row.get(2), row.get(3)))
            .collect();
        Ok(assemble(first_days, clocks, counts))
    }

    async fn number_ids_once(&self, now: i64) -> Once<Vec<String>> {
        let client = self.client.lock().await;
        let rows = client.query_typed(NUMBER_IDS, typed![&now]).await?;
        Ok(rows.iter().map(|row| row.get(0)).collect())
    }

    async fn suppress_once(&self, entries: Vec<Suppression>) -> Once<usize> {
        let mut client = self.client.lock().await;
        let transaction = client.transaction().await?;
        let mut added = 0;
        for entry in &entries {
            added += transaction
                .execute(
                    "INSERT INTO suppressed (phone, reason, added_at) VALUES ($1, $2, $3)
                     ON CONFLICT (phone) DO NOTHING",
                    &[&entry.phone, &entry.reason, &entry.added_at],
                )
                .await?;
        }
        transaction.commit().await?;
        Ok(usize::try_from(added).unwrap_or(usize::MAX))
    }

    async fn unsuppress_once(&self, phones: Vec<String>) -> Once<usize> {
        let client = self.client.lock().await;
        let removed = client
            .execute("DELETE FROM suppressed WHERE phone = ANY($1)", &[&phones])
            .await?;
        Ok(usize::try_from(removed).unwrap_or(usize::MAX))
    }

    async fn hold_number_once(&self, hold: NumberHold, by_operator: bool, now: i64) -> Once<bool> {
        let mut client = self.client.lock().await;
        let transaction = client.transaction().await?;
        // The number's holds locked, whether or not it has one yet: another
        // run's verdict on it, or an operator's pause, waits for this one.
        transaction
            .execute_typed(
                "SELECT pg_advisory_xact_lock(7, hashtext($1))",
                typed![&hold.instance_id],
            )
            .await?;
        let held = transaction
            .query_typed_opt(
                "SELECT instance_id, kind, reason, since, until FROM number_holds
                 WHERE instance_id = $1",
                typed![&hold.instance_id],
            )
            .await?
            .map(|row| number_hold(&row));
        if !by_operator && held.is_some_and(|held| !hold.outlasts(&held, now)) {
            return Ok(false);
        }
        let kind = hold.kind.as_str();
        transaction
            .execute_typed(
                "INSERT INTO number_holds (instance_id, kind, reason, since, until)
                 VALUES ($1, $2, $3, $4, $5)
                 ON CONFLICT (instance_id) DO UPDATE SET kind = excluded.kind,
                     reason = excluded.reason, since = excluded.since, until = excluded.until",
                typed![
                    &hold.instance_id,
                    &kind,
                    &hold.reason,
                    &hold.since,
                    &hold.until
                ],
            )
            .await?;
        transaction.commit().await?;
        Ok(true)
    }

    async fn release_number_once(&self, instance: &str) -> Once<bool> {
        let client = self.client.lock().await;
        let released = client
            .execute_typed(
                "DELETE FROM number_holds WHERE instance_id = $1",
                typed![&instance],
            )
            .await?;
        Ok(released > 0)
    }

    async fn holds_once(&self, now: i64) -> Once<Vec<NumberHold>> {
        let client = self.client.lock().await;
        let rows = client
            .query_typed(
                "SELECT instance_id, kind, reason, since, until FROM number_holds
                 WHERE until IS NULL OR until > $1 ORDER BY instance_id",
                typed![&now],
            )
            .await?;
        Ok(rows.iter().map(number_hold).collect())
    }

    async fn suppressed_once(&self) -> Once<Vec<Suppression>> {
        let client = self.client.lock().await;
        let rows = client
            .query(
                "SELECT phone, reason, added_at FROM suppressed ORDER BY phone",
                &[],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| Suppression {
                phone: row.get(0),
                reason: row.get(1),
                added_at: row.get(2),
            })
            .collect())
    }

    async fn facts_once(
        &self,
        campaign: &str,
        lookups: Vec<Lookup>,
        with_cooldown: bool,
    ) -> Once<Vec<Facts>> {
        let mut client = self.client.lock().await;
        // A transaction of its own, so that every row is read as of one moment.
        let transaction = client
            .build_transaction()
            .isolation_level(tokio_postgres::IsolationLevel::RepeatableRead)
            .read_only(true)
            .start()
            .await?;
        let rows: Vec<(&str, &str, &str)> = lookups
            .iter()
            .map(|row| (row.key.as_str(), row.to.as_str(), row.card_phone.as_str()))
            .collect();
        let facts = read_facts(&transaction, campaign, &rows, with_cooldown, self.secret()).await?;
        transaction.commit().await?;
        Ok(facts)
    }

    async fn pass_once(&self, campaign: &str, passing: Passing) -> Once<Vec<Claimed>> {
        let mut client = self.client.lock().await;
        let transaction = client.transaction().await?;
        let facts =
            Self::lock_settle_and_read(&transaction, campaign, &passing, self.secret()).await?;
        if passing.claims.is_empty() {
            transaction.commit().await?;
            return Ok(Vec::new());
        }
        let decided = Self::decide(&transaction, &passing, facts).await?;
        let in_flight = passing.rules.in_flight_at_most;
        record(&transaction, campaign, &passing.claims, &decided, in_flight).await?;
        transaction.commit().await?;
        Ok(decided)
    }

    /// The first statements of a pass: the locks of every card it touches,
    /// the answers of those settled, and the facts of those claimed.
    async fn lock_settle_and_read(
        transaction: &Transaction<'_>,
        campaign: &str,
        passing: &Passing,
        secret: &Secret,
    ) -> Result<Vec<Facts>, tokio_postgres::Error> {
        // The locks first, every one the pass needs, in one order.
        let cards = passing
            .settled
            .iter()
            .map(|settled| (settled.to.as_str(), settled.key.as_str()))
            .chain(
                passing
                    .claims
                    .iter()
                    .map(|claim| (claim.to.as_str(), claim.key.as_str())),
            );
        let Passing {
            settled,
            claims,
            rules,
            ..
        } = passing;
        let rows: Vec<(&str, &str, &str)> = claims
            .iter()
            .map(|claim| {
                (
                    claim.key.as_str(),
                    claim.to.as_str(),
                    claim.card_phone.as_str(),
                )
            })
            .collect();
        // The locks, the answers and the facts go together, one round
        // trip; the server runs them in this order, the facts read under
        // the locks.
        let (_, _, facts) = tokio::try_join!(
            lock_cards(transaction, campaign, cards),
            settle(transaction, campaign, settled),
            async {
                match rows.is_empty() {
                    true => Ok(Vec::new()),
                    false => {
                        let cooldown = rules.cooldown.is_some();
                        read_facts(transaction, campaign, &rows, cooldown, secret).await
                    }
                }
            },
        )?;
        Ok(facts)
    }

    /// Which claims of a pass go: admitted on their facts, then within the
    /// first contacts and the daily cap each number has left. Both are
    /// counted whether or not a cap is set: a run with a cap counts what
    /// runs without one sent.
    async fn decide(
        transaction: &Transaction<'_>,
        passing: &Passing,
        facts: Vec<Facts>,
    ) -> Result<Vec<Claimed>, tokio_postgres::Error> {
        let Passing {
            claims,
            rules,
            now,
            daily_cap: cap,
            ..
        } = passing;
        let mut admitted = Admitted::new(claims, facts, rules, *now);
        // Every number of the pass locked first, in one order: two passes
        // never wait for each other's numbers.
        for instance in admitted.wanted(claims).keys() {
            number_day(transaction, instance, cap, *now).await?;
        }
        let new = first_contacts(transaction, claims, &admitted).await?;
        if cap.new_contacts.is_some() {
            let mut allowed = BTreeMap::new();
            for (instance, wanted) in Admitted::wanted_new(claims, &new) {
                let left = first_contacts_left(transaction, instance, cap, *now, wanted).await?;
                allowed.insert(instance, left);
            }
            admitted.limit_first_contacts(claims, &new, allowed);
        }
        let mut allowed = BTreeMap::new();
        for (instance, wanted) in admitted.wanted(claims) {
            let taken = take_from_cap(transaction, instance, cap, *now, wanted).await?;
            allowed.insert(instance, taken);
        }
        let decided = admitted.grant(claims, allowed, *now);
        for (instance, made) in Admitted::first_contacts_made(claims, &new, &decided) {
            count_first_contacts(transaction, instance, cap, *now, made).await?;
        }
        Ok(decided)
    }

    async fn remember_once(&self, campaign: &str, records: Vec<(String, Remembered)>) -> Once<()> {
        let mut client = self.client.lock().await;
        let transaction = client.transaction().await?;
        remember(&transaction, campaign, &records).await?;
        Ok(transaction.commit().await?)
    }

    async fn unsettled_once(&self, campaign: &str) -> Once<Vec<(String, Remembered)>> {
        let client = self.client.lock().await;
        let rows = client
            .query(
                &format!("SELECT {SENDS} FROM sends WHERE campaign = $1 AND fate = 'LEAVING'"),
                &[&campaign],
            )
            .await?;
        Ok(rows
            .iter()
            .map(|row| {
                let Found { key, record, .. } = found_from(row, 0);
                (key_of(&key, &record.to, &record.card_phone), record)
            })
            .collect())
    }

    async fn knows_once(&self, campaign: &str) -> Once<bool> {
        let client = self.client.lock().await;
        let row = client
            .query_typed_one(
                "SELECT EXISTS (SELECT 1 FROM campaigns WHERE name = $1)",
                typed![&campaign],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn meet_once(&self, campaign: &str, now: i64) -> Once<()> {
        let client = self.client.lock().await;
        client
            .execute(
                "INSERT INTO campaigns (name, first_run_at) VALUES ($1, $2)
                 ON CONFLICT (name) DO NOTHING",
                &[&campaign, &now],
            )
            .await?;
        Ok(())
    }

    async fn prune_once(&self, before: i64, day: Date, most: u64) -> Once<Pruned> {
        let mut client = self.client.lock().await;
        let most = i64::try_from(most).unwrap_or(i64::MAX);
        let transaction = client.transaction().await?;
        // Oldest first, by the time index: the rest is never read.
        let cards = transaction
            .execute(
                "DELETE FROM sends WHERE (recipient, card_phone, campaign, key) IN (
                     SELECT recipient, card_phone, campaign, key FROM sends
                     WHERE left_at < $1 ORDER BY left_at LIMIT $2)",
                &[&before, &most],
            )
            .await?;
        let daily_counts = transaction
            .execute(
                "DELETE FROM daily_counts WHERE day < $1",
                &[&day.to_string()],
            )
            .await?;
        transaction
            .execute("DELETE FROM forgotten WHERE left_at < $1", &[&before])
            .await?;
        transaction.commit().await?;
        Ok(Pruned {
            cards,
            daily_counts,
            ..Pruned::default()
        })
    }

    /// On the server's clock: one for every machine.
    async fn pruning_clocks_once(&self) -> Once<PruningClocks> {
        let client = self.client.lock().await;
        let row = client
            .query_typed_one(
                &format!("SELECT {SERVER_NOW}, (SELECT MAX(left_at) FROM sends)"),
                &[],
            )
            .await?;
        Ok(PruningClocks {
            now: row.get(0),
            newest: row.get(1),
        })
    }

    async fn any_card_before_once(&self, before: i64) -> Once<bool> {
        let client = self.client.lock().await;
        let row = client
            .query_typed_one(
                "SELECT EXISTS (SELECT 1 FROM sends WHERE left_at < $1)",
                typed![&before],
            )
            .await?;
        Ok(row.get(0))
    }

    async fn stats_once(&self) -> Once<LedgerStats> {
        let client = self.client.lock().await;
        let row = client
            .query_one(
                "SELECT (SELECT COUNT(*) FROM sends),
                        (SELECT COUNT(DISTINCT recipient) FROM sends),
                        (SELECT COUNT(*) FROM suppressed),
                        (SELECT COUNT(*) FROM (SELECT instance_id FROM numbers
                                               UNION SELECT instance_id FROM clocks) n),
                        (SELECT COUNT(*) FROM campaigns),
                        (SELECT MIN(left_at) FROM sends),
                        (SELECT MAX(left_at) FROM sends),
                        pg_database_size(current_database())",
                &[],
            )
            .await?;
        let count = |index: usize| u64::try_from(row.get::<_, i64>(index)).unwrap_or(0);
        Ok(LedgerStats {
            cards: count(0),
            recipients: count(1),
            suppressed: count(2),
            numbers: count(3),
            campaigns: count(4),
            oldest: stats_time(row.get(5)),
            newest: stats_time(row.get(6)),
            bytes: count(7),
            schema_version: SCHEMA_VERSION,
        })
    }

    async fn phone_uses_once(&self, phones: Vec<String>) -> Once<Vec<PhoneUses>> {
        let client = self.client.lock().await;
        let rows = client
            .query_typed(
                "SELECT (SELECT COUNT(*) FROM sends WHERE recipient = p.phone),
                        (SELECT COUNT(*) FROM sends
                         WHERE card_phone = p.phone AND recipient <> p.phone)
                 FROM unnest($1::text[]) WITH ORDINALITY AS p(phone, i) ORDER BY p.i",
                typed![&phones.iter().map(String::as_str).collect::<Vec<_>>()],
            )
            .await?;
        let count = |row: &Row, at: usize| u64::try_from(row.get::<_, i64>(at)).unwrap_or(0);
        Ok(rows
            .iter()
            .map(|row| PhoneUses {
                as_recipient: count(row, 0),
                on_cards: count(row, 1),
            })
            .collect())
    }

    async fn forget_once(&self, phones: Vec<String>, as_card: bool) -> Once<Vec<(String, u64)>> {
        let mut client = self.client.lock().await;
        let transaction = client.transaction().await?;
        let mut forgotten = Vec::with_capacity(phones.len());
        for phone in phones {
            let erased = erase_rows(&transaction, &phone, as_card).await?;
            for (digest, (kind, card)) in erasure::digests_of(self.secret(), &erased) {
                keep_forgotten(&transaction, &digest, kind, card).await?;
            }
            forgotten.push((phone, erased.len() as u64));
        }
        transaction.commit().await?;
        Ok(forgotten)
    }

    /// The space of the deleted rows made free for the next ones (outside
    /// any transaction, as VACUUM must be).
    async fn vacuum_once(&self) -> Once<()> {
        let client = self.client.lock().await;
        client.batch_execute("VACUUM sends, forgotten").await?;
        Ok(())
    }

    fn failed(&self, error: &tokio_postgres::Error) -> LedgerError {
        LedgerError {
            url: self.shown.clone(),
            problem: describe(error),
        }
    }
}

/// The store's methods above, each one try, tried once more on a new
/// connection when the server was lost ([`PostgresLedger::patiently`]).
#[async_trait::async_trait]
impl Store for PostgresLedger {
    fn shown(&self) -> &str {
        &self.shown
    }

    async fn facts(
        &self,
        campaign: &str,
        lookups: Vec<Lookup>,
        with_cooldown: bool,
    ) -> Result<(Vec<Facts>, Option<u64>), LedgerError> {
        let facts = self
            .patiently(|| self.facts_once(campaign, lookups.clone(), with_cooldown))
            .await?;
        // No epoch: every pass reads the facts again.
        Ok((facts, None))
    }

    async fn pass(&self, campaign: &str, passing: Passing) -> Result<Vec<Claimed>, LedgerError> {
        self.patiently(|| self.pass_once(campaign, passing.clone()))
            .await
    }

    async fn remember(
        &self,
        campaign: &str,
        records: Vec<(String, Remembered)>,
    ) -> Result<(), LedgerError> {
        self.patiently(|| self.remember_once(campaign, records.clone()))
            .await
    }

    async fn unsettled(&self, campaign: &str) -> Result<Vec<(String, Remembered)>, LedgerError> {
        self.patiently(|| self.unsettled_once(campaign)).await
    }

    async fn knows(&self, campaign: &str) -> Result<bool, LedgerError> {
        self.patiently(|| self.knows_once(campaign)).await
    }

    async fn meet(&self, campaign: &str, now: i64) -> Result<(), LedgerError> {
        self.patiently(|| self.meet_once(campaign, now)).await
    }

    /// On the server's clock, not the run's.
    async fn book_turns(
        &self,
        instance: &str,
        pace: Pace,
        phone_times: Vec<i64>,
    ) -> Result<Booking, LedgerError> {
        self.patiently(|| self.book_turns_once(instance, pace, phone_times.clone()))
            .await
    }

    async fn numbers(&self, since: Date) -> Result<Vec<NumberRecord>, LedgerError> {
        self.patiently(|| self.numbers_once(since)).await
    }

    async fn number_ids(&self, now: i64) -> Result<Vec<String>, LedgerError> {
        self.patiently(|| self.number_ids_once(now)).await
    }

    async fn suppress(&self, entries: Vec<Suppression>) -> Result<usize, LedgerError> {
        self.patiently(|| self.suppress_once(entries.clone())).await
    }

    async fn unsuppress(&self, phones: Vec<String>) -> Result<usize, LedgerError> {
        self.patiently(|| self.unsuppress_once(phones.clone()))
            .await
    }

    async fn suppressed(&self) -> Result<Vec<Suppression>, LedgerError> {
        self.patiently(|| self.suppressed_once()).await
    }

    async fn hold_number(
        &self,
        hold: NumberHold,
        by_operator: bool,
        now: i64,
    ) -> Result<bool, LedgerError> {
        self.patiently(|| self.hold_number_once(hold.clone(), by_operator, now))
            .await
    }

    async fn release_number(&self, instance: &str) -> Result<bool, LedgerError> {
        self.patiently(|| self.release_number_once(instance)).await
    }

    async fn holds(&self, now: i64) -> Result<Vec<NumberHold>, LedgerError> {
        self.patiently(|| self.holds_once(now)).await
    }

    async fn pruning_clocks(&self, _run_now: i64) -> Result<PruningClocks, LedgerError> {
        self.patiently(|| self.pruning_clocks_once()).await
    }

    async fn prune(&self, before: i64, day: Date, most: u64) -> Result<Pruned, LedgerError> {
        self.patiently(|| self.prune_once(before, day, most)).await
    }

    async fn any_card_before(&self, before: i64) -> Result<bool, LedgerError> {
        self.patiently(|| self.any_card_before_once(before)).await
    }

    async fn stats(&self) -> Result<LedgerStats, LedgerError> {
        self.patiently(|| self.stats_once()).await
    }

    async fn phone_uses(&self, phones: Vec<String>) -> Result<Vec<PhoneUses>, LedgerError> {
        self.patiently(|| self.phone_uses_once(phones.clone()))
            .await
    }

    async fn forget(&self, phones: Vec<String>, as_card: bool) -> Result<Forgot, LedgerError> {
        let cards = self
            .patiently(|| self.forget_once(phones.clone(), as_card))
            .await?;
        // Forgotten now; the vacuum only frees their space, and a failure
        // is said, not an error.
        let vacuumed = match self.patiently(|| self.vacuum_once()).await {
            Ok(()) => "the tables vacuumed, so their space goes to the next rows".to_string(),
            Err(error) => format!("the tables could not be vacuumed ({error}): run VACUUM sends"),
        };
        Ok(Forgot {
            cards,
            remains: Some(format!(
                "PostgreSQL: the cards' rows are deleted and {vacuumed}; until it does their \
                 bytes stay in the database's files, and they stay in its write-ahead log, its \
                 replicas and its backups (`VACUUM FULL sends` rewrites the table at once, and \
                 locks it while it runs)"
            )),
        })
    }
}

/// The server's clock, nanoseconds since 1970.
const SERVER_NOW: &str = "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000000000)::BIGINT";

/// The columns of a row of `sends`, in [`found_from`]'s order.
const SENDS: &str = "recipient, card_phone, campaign, key, fate, instance_id, message_id, \
                     api_status, http_status, attempts, left_at, finished_at, in_flight_until";

/// A row of `sends` from its [`SENDS`] columns, from column `first` on.
fn found_from(row: &Row, first: usize) -> Found {
    let fate: String = row.get(first + 4);
    Found {
        campaign: row.get(first + 2),
        key: row.get(first + 3),
        record: Remembered {
            fate: Fate::parse(&fate).unwrap_or(Fate::Unknown),
            to: row.get(first),
            card_phone: row.get(first + 1),
            instance_id: row.get(first + 5),
            message_id: row.get(first + 6),
            api_status: row.get(first + 7),
            http_status: row
                .get::<_, Option<i64>>(first + 8)
                .and_then(|status| u16::try_from(status).ok()),
            attempts: u32::try_from(row.get::<_, i64>(first + 9)).unwrap_or(u32::MAX),
            left_at: row.get(first + 10),
            finished_at: row.get(first + 11),
            in_flight_until: row.get(first + 12),
        },
    }
}

/// What the ledger holds that bears on each of `rows` (key, recipient,
/// card phone), a query each, whatever their number, sent together (one
/// round trip): the rows of each card (every campaign's), with a key column
/// the row of each key, the suppression list, with a cooldown the
/// recipients' last cards, and the forgotten cards (by their digests,
/// keyed with `secret`).
async fn read_facts(
    transaction: &Transaction<'_>,
    campaign: &str,
    rows: &[(&str, &str, &str)],
    with_cooldown: bool,
    secret: &Secret,
) -> Result<Vec<Facts>, tokio_postgres::Error> {
    let lookups = LookupColumns::of(rows, campaign, secret);
    let found = FactRows::query(transaction, campaign, &lookups, with_cooldown).await?;
    Ok(found.facts(campaign, &lookups.stored))
}

/// The rows [`read_facts`] looks up, as the arrays its statements take: a
/// column each.
struct LookupColumns<'a> {
    recipients: Vec<&'a str>,
    phones: Vec<&'a str>,
    /// The keys as `sends` stores them.
    stored: Vec<&'a str>,
    /// Each row's digests among the forgotten, [`erasure::DigestKind::ALL`] a row.
    digests: Vec<String>,
}

impl<'a> LookupColumns<'a> {
    fn of(rows: &[(&'a str, &'a str, &'a str)], campaign: &str, secret: &Secret) -> Self {
        let stored: Vec<&str> = rows
            .iter()
            .map(|(key, to, phone)| stored_key(key, to, phone))
            .collect();
        let digests = rows
            .iter()
            .zip(&stored)
            .flat_map(|((_, to, phone), key)| {
                erasure::row_digests(secret, campaign, key, to, phone)
            })
            .collect();
        LookupColumns {
            recipients: rows.iter().map(|row| row.1).collect(),
            phones: rows.iter().map(|row| row.2).collect(),
            stored,
            digests,
        }
    }
}

/// The rows [`read_facts`] finds, each with the ordinal of its lookup (1
/// for the first) in column 0.
struct FactRows {
    /// The rows of `sends` of each card.
    cards: Vec<Row>,
    /// With a key column, the row of `sends` of each key.
    keys: Vec<Row>,
    /// The recipients on the suppression list.
    suppressions: Vec<Row>,
    /// With a cooldown, when each recipient was last reached.
    last: Vec<Row>,
    /// The forgotten cards found by each digest (its ordinal, from 1).
    forgotten: Vec<Row>,
}

impl FactRows {
    /// The five queries, sent together: one round trip.
    async fn query(
        transaction: &Transaction<'_>,
        campaign: &str,
        lookups: &LookupColumns<'_>,
        with_cooldown: bool,
    ) -> Result<FactRows, tokio_postgres::Error> {
        let LookupColumns {
            recipients,
            phones,
            stored,
            digests,
        } = lookups;
        let cards_sql = format!(
            "SELECT c.i, {} FROM unnest($1::text[], $2::text[])
                 WITH ORDINALITY AS c(recipient, card_phone, i)
             JOIN sends s ON s.recipient = c.recipient AND s.card_phone = c.card_phone",
            prefixed("s.")
        );
        let keys_sql = format!(
            "SELECT c.i, {} FROM unnest($2::text[]) WITH ORDINALITY AS c(key, i)
             JOIN sends s ON s.campaign = $1 AND s.key = c.key
             WHERE c.key <> ''",
            prefixed("s.")
        );
        let last_sql = format!(
            "SELECT c.i, (SELECT MAX(s.left_at) FROM sends s
                          WHERE s.recipient = c.recipient AND s.{WENT})
             FROM unnest($1::text[]) WITH ORDINALITY AS c(recipient, i)"
        );
        let with_keys = stored.iter().any(|key| !key.is_empty());
        let digests: Vec<&str> = digests.iter().map(String::as_str).collect();
        let (cards, keys, suppressions, last, forgotten) = tokio::try_join!(
            async {
                transaction
                    .query_typed(&cards_sql, typed![recipients, phones])
                    .await
            },
            async {
                match with_keys {
                    true => {
                        transaction
                            .query_typed(&keys_sql, typed![&campaign, stored])
                            .await
                    }
                    false => Ok(Vec::new()),
                }
            },
            async {
                transaction
                    .query_typed(
                        "SELECT c.i, s.phone, s.reason, s.added_at
                         FROM unnest($1::text[]) WITH ORDINALITY AS c(phone, i)
                         JOIN suppressed s ON s.phone = c.phone",
                        typed![recipients],
                    )
                    .await
            },
            async {
                match with_cooldown {
                    true => transaction.query_typed(&last_sql, typed![recipients]).await,
                    false => Ok(Vec::new()),
                }
            },
            async {
                transaction
                    .query_typed(
                        "SELECT d.i, f.fate, f.left_at
                         FROM unnest($1::text[]) WITH ORDINALITY AS d(digest, i)
                         JOIN forgotten f ON f.digest = d.digest",
                        typed![&digests],
                    )
                    .await
            },
        )?;
        Ok(FactRows {
            cards,
            keys,
            suppressions,
            last,
            forgotten,
        })
    }

    /// The facts of each lookup, from the rows found for it; `stored`: the
    /// lookups' stored keys.
    fn facts(self, campaign: &str, stored: &[&str]) -> Vec<Facts> {
        let lookups = stored.len();
        // Each found row goes to the lookup at its ordinal (1 for the first).
        let place = |row: &Row| usize::try_from(row.get::<_, i64>(0) - 1).unwrap_or(usize::MAX);
        let mut card_rows: Vec<Vec<Found>> = vec![Vec::new(); lookups];
        for row in &self.cards {
            if let Some(found) = card_rows.get_mut(place(row)) {
                found.push(found_from(row, 1));
            }
        }
        let mut key_rows: Vec<Option<Found>> = vec![None; lookups];
        for row in &self.keys {
            if let Some(found) = key_rows.get_mut(place(row)) {
                *found = Some(surer_found(found.take(), found_from(row, 1)));
            }
        }
        let mut suppressed: Vec<Option<Suppression>> = vec![None; lookups];
        for row in &self.suppressions {
            if let Some(entry) = suppressed.get_mut(place(row)) {
                *entry = Some(Suppression {
                    phone: row.get(1),
                    reason: row.get(2),
                    added_at: row.get(3),
                });
            }
        }
        let mut last_reached: Vec<Option<i64>> = vec![None; lookups];
        for row in &self.last {
            if let Some(reached) = last_reached.get_mut(place(row)) {
                *reached = row.get(1);
            }
        }
        let mut forgotten = vec![ForgottenOf::default(); lookups];
        for row in &self.forgotten {
            let fate: String = row.get(1);
            let card = Forgotten {
                fate: Fate::parse(&fate).unwrap_or(Fate::Unknown),
                left_at: row.get(2),
            };
            erasure::found_by_digest(&mut forgotten, place(row), card);
        }
        card_rows
            .into_iter()
            .zip(key_rows)
            .zip(suppressed)
            .zip(last_reached)
            .zip(forgotten)
            .zip(stored)
            .map(|(((((card, key), suppressed), last), forgotten), stored)| {
                facts_of(campaign, stored, (card, key), suppressed, last, forgotten)
            })
            .collect()
    }
}

/// The [`SENDS`] columns, each with `prefix`.
fn prefixed(prefix: &str) -> String {
    SENDS
        .split(',')
        .map(|column| format!("{prefix}{}", column.trim()))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Locks, to the end of the transaction, every recipient and every key of
/// the campaign that a pass touches (`cards`: recipient and key), in one
/// order on every machine, so that two passes never wait for each other in
/// a circle: two machines claiming one recipient queue instead of both
/// passing.
async fn lock_cards<'a>(
    transaction: &Transaction<'_>,
    campaign: &str,
    cards: impl Iterator<Item = (&'a str, &'a str)>,
) -> Result<(), tokio_postgres::Error> {
    let mut locks: Vec<i64> = cards
        .flat_map(|(to, key)| {
            [
                lock_key(&["recipient", to]),
                lock_key(&["key", campaign, key]),
            ]
        })
        .collect();
    if locks.is_empty() {
        return Ok(());
    }
    locks.sort_unstable();
    locks.dedup();
    transaction
        .execute_typed(
            "SELECT count(pg_advisory_xact_lock(lock)) FROM (
                 SELECT lock FROM unnest($1::bigint[]) WITH ORDINALITY AS l(lock, i) ORDER BY i
             ) AS ordered",
            typed![&locks],
        )
        .await?;
    Ok(())
}

/// An advisory lock's key for `parts`: FNV-1a, the same on every machine
/// and version.
fn lock_key(parts: &[&str]) -> i64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for byte in parts.iter().flat_map(|part| part.bytes().chain([0])) {
        hash = (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash as i64
}

/// The number's day at `now` in the zone its days are kept in, noting the
/// first day the number is seen sending (its warm-up counts from it) and
/// the zone, the first time; with the first day and the cap in that zone.
async fn number_day(
    transaction: &Transaction<'_>,
    instance: &str,
    cap: &DailyCap,
    now: i64,
) -> Result<(String, DailyCap, String), tokio_postgres::Error> {
    let at = jiff::Timestamp::from_nanosecond(i128::from(now)).unwrap_or_default();
    transaction
        .execute_typed(
            "INSERT INTO numbers (instance_id, first_day, timezone) VALUES ($1, $2, $3)
             ON CONFLICT (instance_id) DO NOTHING",
            typed![&instance, &cap.day(at).to_string(), &cap.zone_name()],
        )
        .await?;
    // Locked: the first run to count a number without a kept zone names it.
    let row = transaction
        .query_typed_one(
            "SELECT first_day, timezone FROM numbers WHERE instance_id = $1 FOR UPDATE",
            typed![&instance],
        )
        .await?;
    let (first_day, mut kept_zone): (String, String) = (row.get(0), row.get(1));
    if let Some(zone) = zone_to_keep(&kept_zone, cap.zone_name(), instance) {
        transaction
            .execute_typed(
                "UPDATE numbers SET timezone = $2 WHERE instance_id = $1",
                typed![&instance, &zone],
            )
            .await?;
        kept_zone = zone.to_string();
    }
    let cap = cap.in_zone(&kept_zone);
    let day = cap.day(at).to_string();
    transaction
        .execute_typed(
            "INSERT INTO daily_counts (instance_id, day, sent) VALUES ($1, $2, 0)
             ON CONFLICT (instance_id, day) DO NOTHING",
            typed![&instance, &day],
        )
        .await?;
    Ok((first_day, cap, day))
}

/// A count of `instance`'s `day` that `select` reads, the day's row
/// locked (`FOR UPDATE`): runs at once take from it one after the other.
async fn locked_day_count(
    transaction: &Transaction<'_>,
    select: &str,
    instance: &str,
    day: &str,
) -> Result<i64, tokio_postgres::Error> {
    Ok(transaction
        .query_typed_one(select, typed![&instance, &day])
        .await?
        .get(0))
}

/// Takes up to `wanted` messages from `instance`'s cap for the day of
/// `now`; the day's row locked, so runs at once take one after the other.
async fn take_from_cap(
    transaction: &Transaction<'_>,
    instance: &str,
    cap: &DailyCap,
    now: i64,
    wanted: u64,
) -> Result<CapTaken, tokio_postgres::Error> {
    let (first_day, cap, day) = number_day(transaction, instance, cap, now).await?;
    let sent = locked_day_count(
        transaction,
        "SELECT sent FROM daily_counts WHERE instance_id = $1 AND day = $2 FOR UPDATE",
        instance,
        &day,
    )
    .await?;
    let today = cap_for(&cap, &first_day, day.parse().unwrap_or_default());
    let allowed = within_cap(sent, today, wanted);
    if allowed.taken > 0 {
        let now_sent = sent.saturating_add(i64::try_from(allowed.taken).unwrap_or(i64::MAX));
        transaction
            .execute_typed(
                "UPDATE daily_counts SET sent = $3 WHERE instance_id = $1 AND day = $2",
                typed![&instance, &day, &now_sent],
            )
            .await?;
    }
    Ok(allowed.until_next_day(&cap, now))
}

/// How many of `wanted` first contacts `instance`'s limit for the day of
/// `now` has left (`schedule.daily_new_contacts`), the day's row locked;
/// counted once the pass knows which went ([`count_first_contacts`]).
async fn first_contacts_left(
    transaction: &Transaction<'_>,
    instance: &str,
    cap: &DailyCap,
    now: i64,
    wanted: u64,
) -> Result<CapTaken, tokio_postgres::Error> {
    let (_, cap, day) = number_day(transaction, instance, cap, now).await?;
    let made = locked_day_count(
        transaction,
        "SELECT new_contacts FROM daily_counts WHERE instance_id = $1 AND day = $2 FOR UPDATE",
        instance,
        &day,
    )
    .await?;
    Ok(within_cap(made, cap.new_contacts, wanted).until_next_day(&cap, now))
}

/// Counts `made` first contacts of `instance` on the day of `now`.
async fn count_first_contacts(
    transaction: &Transaction<'_>,
    instance: &str,
    cap: &DailyCap,
    now: i64,
    made: u64,
) -> Result<(), tokio_postgres::Error> {
    let (_, _, day) = number_day(transaction, instance, cap, now).await?;
    let made = i64::try_from(made).unwrap_or(i64::MAX);
    transaction
        .execute_typed(
            "UPDATE daily_counts SET new_contacts = new_contacts + $3
             WHERE instance_id = $1 AND day = $2",
            typed![&instance, &day, &made],
        )
        .await?;
    Ok(())
}

/// Which of the cards that go are first contacts: to a recipient their
/// number never reached (as far as the ledger remembers), in one statement.
/// A recipient met twice in one pass is a first contact once.
async fn first_contacts(
    transaction: &Transaction<'_>,
    claims: &[Claim],
    admitted: &Admitted,
) -> Result<Vec<bool>, tokio_postgres::Error> {
    let mut new = vec![false; claims.len()];
    let mut asked = std::collections::HashSet::new();
    let going: Vec<usize> = admitted
        .going()
        .filter(|index| {
            let claim = &claims[*index];
            asked.insert((claim.instance_id.as_str(), claim.to.as_str()))
        })
        .collect();
    if going.is_empty() {
        return Ok(new);
    }
    let recipients: Vec<&str> = going.iter().map(|i| claims[*i].to.as_str()).collect();
    let instances: Vec<&str> = going
        .iter()
        .map(|i| claims[*i].instance_id.as_str())
        .collect();
    let never_reached = transaction
        .query_typed(
            &format!(
                "SELECT u.i FROM unnest($1::text[], $2::text[])
                     WITH ORDINALITY AS u(recipient, instance_id, i)
                 WHERE NOT EXISTS (SELECT 1 FROM sends s WHERE s.recipient = u.recipient
                     AND s.instance_id = u.instance_id AND s.{WENT})"
            ),
            typed![&recipients, &instances],
        )
        .await?;
    for row in never_reached {
        let ordinal = usize::try_from(row.get::<_, i64>(0)).unwrap_or(0);
        if let Some(index) = ordinal.checked_sub(1).and_then(|at| going.get(at)) {
            new[*index] = true;
        }
    }
    Ok(new)
}

/// Deletes the rows of `sends` to `phone` (found by the index), and with
/// `as_card` those carrying it as the card's phone; returns them. One
/// statement: a card let out meanwhile is deleted with its digests kept, or
/// not at all.
async fn erase_rows(
    transaction: &Transaction<'_>,
    phone: &str,
    as_card: bool,
) -> Result<Vec<Erased>, tokio_postgres::Error> {
    let sql = match as_card {
        false => {
            "DELETE FROM sends WHERE recipient = $1
             RETURNING campaign, key, recipient, card_phone, fate, left_at"
        }
        true => {
            "DELETE FROM sends WHERE recipient = $1 OR card_phone = $1
             RETURNING campaign, key, recipient, card_phone, fate, left_at"
        }
    };
    let rows = transaction.query_typed(sql, typed![&phone]).await?;
    Ok(rows
        .iter()
        .map(|row| Erased {
            campaign: row.get(0),
            stored_key: row.get(1),
            to: row.get(2),
            card_phone: row.get(3),
            fate: Fate::parse(row.get(4)).unwrap_or(Fate::Unknown),
            left_at: row.get(5),
        })
        .collect())
}

/// Keeps `forgotten` under `digest`, with what the ledger already kept
/// there (as `kind` merges them); the digest's row locked meanwhile.
async fn keep_forgotten(
    transaction: &Transaction<'_>,
    digest: &str,
    kind: erasure::DigestKind,
    forgotten: Forgotten,
) -> Result<(), tokio_postgres::Error> {
    let held = transaction
        .query_typed_opt(
            "SELECT fate, left_at FROM forgotten WHERE digest = $1 FOR UPDATE",
            typed![&digest],
        )
        .await?
        .map(|row| Forgotten {
            fate: Fate::parse(row.get(0)).unwrap_or(Fate::Unknown),
            left_at: row.get(1),
        });
    let kept = held.map_or(forgotten, |held| kind.merged(held, forgotten));
    transaction
        .execute_typed(
            "INSERT INTO forgotten (digest, fate, left_at) VALUES ($1, $2, $3)
             ON CONFLICT (digest) DO UPDATE SET fate = excluded.fate, left_at = excluded.left_at",
            typed![&digest, &kept.fate.as_str(), &kept.left_at],
        )
        .await?;
    Ok(())
}

/// Records what a pass decided: the cards let out are their campaign's
/// `Leaving` rows, in flight for at most `in_flight` nanoseconds; repeats
/// are remembered, so that the campaign never tries them again.
async fn record(
    transaction: &Transaction<'_>,
    campaign: &str,
    claims: &[Claim],
    decided: &[Claimed],
    in_flight: i64,
) -> Result<(), tokio_postgres::Error> {
    let mut leaving: Vec<&Claim> = Vec::new();
    let mut left_at = 0;
    let mut repeats = Vec::new();
    for (claim, claimed) in claims.iter().zip(decided) {
        match claimed {
            Claimed::Granted { left_at: at, .. } => {
                leaving.push(claim);
                left_at = *at;
            }
            Claimed::Held(Cause::SameCard { at }) => repeats.push((
                claim.key.clone(),
                Remembered::repeat(&claim.to, &claim.card_phone, &claim.instance_id, *at),
            )),
            Claimed::Held(_) | Claimed::CapReached { .. } => {}
        }
    }
    if !leaving.is_empty() {
        let recipients: Vec<&str> = leaving.iter().map(|claim| claim.to.as_str()).collect();
        let phones: Vec<&str> = leaving
            .iter()
            .map(|claim| claim.card_phone.as_str())
            .collect();
        let keys: Vec<&str> = leaving
            .iter()
            .map(|claim| stored_key(&claim.key, &claim.to, &claim.card_phone))
            .collect();
        let instances: Vec<&str> = leaving
            .iter()
            .map(|claim| claim.instance_id.as_str())
            .collect();
        if keys.iter().any(|key| !key.is_empty()) {
            // A key's row under the card it had before its phone changed,
            // if that card never went: one row a key.
            transaction
                .execute_typed(
                    "DELETE FROM sends AS s
                     USING unnest($2::text[], $3::text[], $4::text[])
                         AS u(recipient, card_phone, key)
                     WHERE u.key <> '' AND s.campaign = $1 AND s.key = u.key
                         AND s.fate = 'FAILED'
                         AND NOT (s.recipient = u.recipient AND s.card_phone = u.card_phone)",
                    typed![&campaign, &recipients, &phones, &keys],
                )
                .await?;
        }
        transaction
            .execute_typed(
                "INSERT INTO sends (recipient, card_phone, campaign, key, fate, instance_id,
                     message_id, api_status, http_status, attempts, left_at, finished_at,
                     in_flight_until)
                 SELECT u.recipient, u.card_phone, $1, u.key, 'LEAVING', u.instance_id, '', '',
                     NULL, 0, $6, 0, $7
                 FROM unnest($2::text[], $3::text[], $4::text[], $5::text[])
                     AS u(recipient, card_phone, key, instance_id)
                 ON CONFLICT (recipient, card_phone, campaign, key) DO UPDATE SET
                     fate = 'LEAVING', instance_id = excluded.instance_id, message_id = '',
                     api_status = '', http_status = NULL, attempts = 0,
                     left_at = excluded.left_at, finished_at = 0,
                     in_flight_until = excluded.in_flight_until",
                typed![
                    &campaign,
                    &recipients,
                    &phones,
                    &keys,
                    &instances,
                    &left_at,
                    &left_at.saturating_add(in_flight)
                ],
            )
            .await?;
    }
    remember(transaction, campaign, &repeats).await
}

/// Fills in the campaign's records of `records`' keys (one each) where it
/// has none or a `Failed` one.
async fn remember(
    transaction: &Transaction<'_>,
    campaign: &str,
    records: &[(String, Remembered)],
) -> Result<(), tokio_postgres::Error> {
    if records.is_empty() {
        return Ok(());
    }
    let column = |pick: fn(&Remembered) -> &str| -> Vec<&str> {
        records.iter().map(|(_, record)| pick(record)).collect()
    };
    let recipients = column(|record| &record.to);
    let phones = column(|record| &record.card_phone);
    let keys: Vec<&str> = records
        .iter()
        .map(|(key, record)| stored_key(key, &record.to, &record.card_phone))
        .collect();
    let fates = column(|record| record.fate.as_str());
    let instances = column(|record| &record.instance_id);
    let message_ids = column(|record| &record.message_id);
    let api_statuses = column(|record| &record.api_status);
    let http_statuses: Vec<Option<i64>> = records
        .iter()
        .map(|(_, record)| record.http_status.map(i64::from))
        .collect();
    let attempts: Vec<i64> = records
        .iter()
        .map(|(_, record)| i64::from(record.attempts))
        .collect();
    let left_at: Vec<i64> = records.iter().map(|(_, record)| record.left_at).collect();
    let finished_at: Vec<i64> = records
        .iter()
        .map(|(_, record)| record.finished_at)
        .collect();
    transaction
        .execute(
            "INSERT INTO sends (recipient, card_phone, campaign, key, fate, instance_id,
                 message_id, api_status, http_status, attempts, left_at, finished_at)
             SELECT u.recipient, u.card_phone, $1, u.key, u.fate, u.instance_id, u.message_id,
                 u.api_status, u.http_status, u.attempts, u.left_at, u.finished_at
             FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                 $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bigint[],
                 $12::bigint[])
                 AS u(recipient, card_phone, key, fate, instance_id, message_id, api_status,
                     http_status, attempts, left_at, finished_at)
             ON CONFLICT (recipient, card_phone, campaign, key) DO UPDATE SET
                 fate = excluded.fate, instance_id = excluded.instance_id,
                 message_id = excluded.message_id, api_status = excluded.api_status,
                 http_status = excluded.http_status, attempts = excluded.attempts,
                 left_at = excluded.left_at, finished_at = excluded.finished_at
             WHERE sends.fate = 'FAILED' OR (sends.fate = 'UNKNOWN' AND excluded.fate = 'SENT')",
            &[
                &campaign,
                &recipients,
                &phones,
                &keys,
                &fates,
                &instances,
                &message_ids,
                &api_statuses,
                &http_statuses,
                &attempts,
                &left_at,
                &finished_at,
            ],
        )
        .await?;
    Ok(())
}

/// Records the answers of cards let out, each if its row is still that
/// one's; a card that never left is forgotten.
async fn settle(
    transaction: &Transaction<'_>,
    campaign: &str,
    settled: &[Settled],
) -> Result<(), tokio_postgres::Error> {
    let answered: Vec<(&Settled, &Remembered)> = settled
        .iter()
        .filter_map(|settled| Some((settled, settled.answer.as_ref()?)))
        .collect();
    let never_left: Vec<&Settled> = settled.iter().filter(|s| s.answer.is_none()).collect();
    // Both statements go together, in one round trip with what the pass
    // sends with them.
    tokio::try_join!(
        record_answers(transaction, campaign, &answered),
        drop_never_left(transaction, campaign, &never_left),
    )
    .map(drop)
}

/// The columns that find settled cards' rows of `sends` (still `LEAVING`,
/// and since the same moment), an array each.
struct SettledColumns<'a> {
    recipients: Vec<&'a str>,
    phones: Vec<&'a str>,
    keys: Vec<&'a str>,
    left_at: Vec<i64>,
}

impl<'a> SettledColumns<'a> {
    fn of(cards: impl Iterator<Item = &'a Settled> + Clone) -> Self {
        SettledColumns {
            recipients: cards.clone().map(|s| s.to.as_str()).collect(),
            phones: cards.clone().map(|s| s.card_phone.as_str()).collect(),
            keys: cards
                .clone()
                .map(|s| stored_key(&s.key, &s.to, &s.card_phone))
                .collect(),
            left_at: cards.map(|s| s.left_at).collect(),
        }
    }
}

/// Writes the answers of cards let out into their rows, each if its row
/// is still that one's.
async fn record_answers(
    transaction: &Transaction<'_>,
    campaign: &str,
    answered: &[(&Settled, &Remembered)],
) -> Result<u64, tokio_postgres::Error> {
    if answered.is_empty() {
        return Ok(0);
    }
    let SettledColumns {
        recipients,
        phones,
        keys,
        left_at,
    } = SettledColumns::of(answered.iter().map(|(s, _)| *s));
    let fates: Vec<&str> = answered.iter().map(|(_, a)| a.fate.as_str()).collect();
    let instances: Vec<&str> = answered
        .iter()
        .map(|(_, a)| a.instance_id.as_str())
        .collect();
    let message_ids: Vec<&str> = answered
        .iter()
        .map(|(_, a)| a.message_id.as_str())
        .collect();
    let api_statuses: Vec<&str> = answered
        .iter()
        .map(|(_, a)| a.api_status.as_str())
        .collect();
    let http_statuses: Vec<Option<i64>> = answered
        .iter()
        .map(|(_, a)| a.http_status.map(i64::from))
        .collect();
    let attempts: Vec<i64> = answered
        .iter()
        .map(|(_, a)| i64::from(a.attempts))
        .collect();
    let finished_at: Vec<i64> = answered.iter().map(|(_, a)| a.finished_at).collect();
    transaction
        .execute_typed(
            "UPDATE sends AS s SET fate = u.fate, instance_id = u.instance_id,
                 message_id = u.message_id, api_status = u.api_status,
                 http_status = u.http_status, attempts = u.attempts,
                 finished_at = u.finished_at
             FROM unnest($2::text[], $3::text[], $4::text[], $5::bigint[], $6::text[],
                 $7::text[], $8::text[], $9::text[], $10::bigint[], $11::bigint[],
                 $12::bigint[])
                 AS u(recipient, card_phone, key, left_at, fate, instance_id, message_id,
                     api_status, http_status, attempts, finished_at)
             WHERE s.recipient = u.recipient AND s.card_phone = u.card_phone
                 AND s.campaign = $1 AND s.key = u.key AND s.fate = 'LEAVING'
                 AND s.left_at = u.left_at",
            typed![
                &campaign,
                &recipients,
                &phones,
                &keys,
                &left_at,
                &fates,
                &instances,
                &message_ids,
                &api_statuses,
                &http_statuses,
                &attempts,
                &finished_at,
            ],
        )
        .await
}

/// Deletes the rows of cards that never left, each if its row is still
/// that one's.
async fn drop_never_left(
    transaction: &Transaction<'_>,
    campaign: &str,
    never_left: &[&Settled],
) -> Result<u64, tokio_postgres::Error> {
    if never_left.is_empty() {
        return Ok(0);
    }
    let SettledColumns {
        recipients,
        phones,
        keys,
        left_at,
    } = SettledColumns::of(never_left.iter().copied());
    transaction
        .execute_typed(
            "DELETE FROM sends AS s
             USING unnest($2::text[], $3::text[], $4::text[], $5::bigint[])
                 AS u(recipient, card_phone, key, left_at)
             WHERE s.recipient = u.recipient AND s.card_phone = u.card_phone
                 AND s.campaign = $1 AND s.key = u.key AND s.fate = 'LEAVING'
                 AND s.left_at = u.left_at",
            typed![&campaign, &recipients, &phones, &keys, &left_at],
        )
        .await
}

/// The error with its cause, which tokio-postgres keeps apart.
fn describe(error: &tokio_postgres::Error) -> String {
    use std::error::Error as _;
    match error.source() {
        Some(cause) => format!("{error}: {cause}"),
        None => error.to_string(),
    }
}

/// A new connection with `config`, within `patience` (a server that takes
/// the connection and never answers is given up on too).
async fn connect(
    config: &tokio_postgres::Config,
    shown: &str,
    patience: Duration,
) -> Result<Client, LedgerError> {
    let failed = |problem: String| LedgerError {
        url: shown.to_string(),
        problem,
    };
    let connecting = config.connect(NoTls);
    let (client, connection) = tokio::time::timeout(patience, connecting)
        .await
        .map_err(|_| {
            failed(format!(
                "no answer within {} s (ledger.connect_timeout)",
                patience.as_secs_f64()
            ))
        })?
        .map_err(|error| failed(describe(&error)))?;
    // Ends when the client is dropped or the server goes away; the next
    // call then finds the client closed.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}

/// Whether the database holds a ledger: its `ledger_version` table.
async fn holds_a_ledger(client: &Client, shown: &str) -> Result<bool, LedgerError> {
    client
        .query_one("SELECT to_regclass('ledger_version') IS NOT NULL", &[])
        .await
        .map(|row| row.get(0))
        .map_err(|error| LedgerError {
            url: shown.to_string(),
            problem: describe(&error),
        })
}

/// Brings the schema to the newest version, under an advisory lock: two
/// machines opening a new ledger at once migrate it once.
async fn migrate(client: &mut Client, shown: &str) -> Result<(), LedgerError> {
    let failed = |error: tokio_postgres::Error| LedgerError {
        url: shown.to_string(),
        problem: describe(&error),
    };
    let transaction = client.transaction().await.map_err(failed)?;
    // A migration may take longer than a run's statements may, and waits
    // for another machine's migration however long it takes.
    transaction
        .batch_execute("SET LOCAL statement_timeout = 0; SET LOCAL lock_timeout = 0")
        .await
        .map_err(failed)?;
    // An arbitrary key of this tool's own, held to the end of the transaction.
    transaction
        .execute("SELECT pg_advisory_xact_lock(7234019871)", &[])
        .await
        .map_err(failed)?;
    transaction
        .execute(
            "CREATE TABLE IF NOT EXISTS ledger_version (version BIGINT NOT NULL)",
            &[],
        )
        .await
        .map_err(failed)?;
    let version: i64 = transaction
        .query_one("SELECT COALESCE(MAX(version), 0) FROM ledger_version", &[])
        .await
        .map_err(failed)?
        .get(0);
    if let Some(problem) = too_new(version) {
        return Err(LedgerError {
            url: shown.to_string(),
            problem,
        });
    }
    if version == SCHEMA_VERSION {
        return Ok(());
    }
    for step in &MIGRATIONS[usize::try_from(version).unwrap_or(0)..] {
        transaction
            .batch_execute(&postgres_step(step))
            .await
            .map_err(failed)?;
    }
    let secret = new_secret().map_err(|problem| LedgerError {
        url: shown.to_string(),
        problem,
    })?;
    transaction
        .execute_typed(SECRET_IF_NONE, typed![&secret])
        .await
        .map_err(failed)?;
    transaction
        .batch_execute(&format!(
            "DELETE FROM ledger_version; INSERT INTO ledger_version (version) VALUES ({SCHEMA_VERSION})"
        ))
        .await
        .map_err(failed)?;
    transaction.commit().await.map_err(failed)
}

/// A step of the schema as PostgreSQL runs it: a text in NFC is its own
/// `normalize` (PostgreSQL 13 and later, in a UTF8 database).
fn postgres_step(step: &str) -> String {
    spell_nfc(step, |text| format!("normalize({text}, NFC)"))
}

/// A row of `number_holds`.
fn number_hold(row: &tokio_postgres::Row) -> NumberHold {
    NumberHold {
        instance_id: row.get(0),
        kind: HoldKind::stored(row.get(1)),
        // Shown by every run and `numbers`: an earlier version kept an
        // API's answer here as it came.
        reason: printable(row.get(2)).into_owned(),
        since: row.get(3),
        until: row.get(4),
    }
}
