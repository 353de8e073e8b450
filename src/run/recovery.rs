//! Before anything is sent, what the campaign's memory in the ledger lacks
//! is filled in from what earlier runs left: the answers of cards a run let
//! out but could not record (it was killed, or lost the ledger), which its
//! results file holds; and, the first time a campaign meets a ledger (after
//! an upgrade, or a move to another ledger), what its results file and an
//! earlier version's journal knew was sent.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use tracing::{info, warn};

use crate::admission::Rules;
use crate::exit::RunError;
use crate::ledger::{Ledger, Passing, Settled};
use crate::results::{self, Earlier, EarlierLine, Left};
use crate::types::{nanos_of, Fate, Remembered, Status};

/// Records imported from a results file are handed to the ledger this many
/// at a time, so a big file is never held in memory.
const IMPORT_BATCH: usize = 10_000;

/// Fills in the memory of `campaign` from the results file at `path`, as it
/// was before this run (`earlier`; its lines end at `until`), and from the
/// journal a killed run `left`.
pub async fn recover(
    ledger: &Arc<Ledger>,
    campaign: &str,
    path: &Path,
    earlier: Option<&Earlier>,
    left: Option<&Left>,
    until: u64,
) -> Result<(), RunError> {
    let unsettled: HashMap<String, Remembered> =
        ledger.unsettled(campaign).await?.into_iter().collect();
    let journal_keys = left.map_or(&[][..], |left| left.keys.as_slice());
    let known = ledger.knows(campaign).await?;
    let Some(earlier) = earlier else {
        report_in_doubt(unsettled.len(), 0);
        remember_in_doubt(ledger, campaign, journal_keys, &HashSet::new()).await?;
        return Ok(ledger.meet(campaign).await?);
    };
    // What a results file shows sent is remembered from it the first time
    // the campaign meets the ledger, and from an earlier version's file.
    let imports = !known || earlier.upgraded;
    if unsettled.is_empty() && journal_keys.is_empty() && !imports {
        return Ok(());
    }

    let scan = Scan {
        ledger: ledger.clone(),
        campaign: campaign.to_string(),
        path: path.to_path_buf(),
        unsettled,
        journal_from: left.map(|left| left.results_from),
        imports,
    };
    let found = {
        let earlier = earlier.clone();
        tokio::task::spawn_blocking(move || scan.read(&earlier, until))
            .await
            .expect("reading the results file does not panic")
    };
    let Found {
        unsettled,
        answers,
        answered_since_journal,
        imported,
    } = found?;

    let answered = settle_answered(ledger, campaign, &unsettled, &answers).await?;
    report_in_doubt(unsettled.len(), answered);

    remember_in_doubt(ledger, campaign, journal_keys, &answered_since_journal).await?;
    // Only now, with what the file knew remembered, is the campaign known.
    ledger.meet(campaign).await?;
    if imported > 0 {
        info!(
            rows = imported,
            results = %earlier_path(path),
            "the ledger had no memory of this campaign; the rows its results file shows SENT \
             or UNKNOWN are remembered now, and never sent again"
        );
    }
    Ok(())
}

/// Answers the results file holds settle the cards they answer, in one
/// pass of the ledger; returns how many.
async fn settle_answered(
    ledger: &Ledger,
    campaign: &str,
    unsettled: &HashMap<String, Remembered>,
    answers: &HashMap<String, EarlierLine>,
) -> Result<usize, RunError> {
    let settled: Vec<Settled> = answers
        .iter()
        .filter_map(|(key, line)| {
            let leaving = unsettled.get(key)?;
            let answer = match line.status? {
                Status::Sent => Some(remembered(line, Fate::Sent, leaving.left_at)),
                Status::Unknown => Some(remembered(line, Fate::Unknown, leaving.left_at)),
                Status::Failed => Some(remembered(line, Fate::Failed, leaving.left_at)),
                Status::Deferred => None,
                _ => return None,
            };
            Some(Settled {
                key: key.clone(),
                to: leaving.to.clone(),
                card_phone: leaving.card_phone.clone(),
                left_at: leaving.left_at,
                answer,
            })
        })
        .collect();
    let answered = settled.len();
    if !settled.is_empty() {
        let passing = Passing {
            settled,
            claims: Vec::new(),
            rules: Rules::default(),
            now: ledger.clock().now_nanos(),
            daily_cap: None,
        };
        ledger.pass(campaign, passing).await?;
    }
    Ok(answered)
}

/// Remembers the keys an earlier version's journal was sending, with no
/// results line since, as in doubt.
async fn remember_in_doubt(
    ledger: &Ledger,
    campaign: &str,
    journal_keys: &[String],
    answered: &HashSet<String>,
) -> Result<(), RunError> {
    let now = ledger.clock().now_nanos();
    let in_doubt: Vec<(String, Remembered)> = journal_keys
        .iter()
        .filter(|key| !answered.contains(*key))
        .map(|key| (key.clone(), in_doubt_since_upgrade(key, now)))
        .collect();
    if !in_doubt.is_empty() {
        warn!(
            messages = in_doubt.len(),
            "an earlier version was sending when it stopped; those messages may have been \
             delivered and are UNKNOWN"
        );
        ledger.remember(campaign, in_doubt).await?;
    }
    Ok(())
}

/// What reading the results file is for.
struct Scan {
    ledger: Arc<Ledger>,
    campaign: String,
    path: PathBuf,
    /// The cards of the campaign recorded as leaving, with no answer.
    unsettled: HashMap<String, Remembered>,
    /// Where the lines of the run an earlier version's journal speaks of start.
    journal_from: Option<u64>,
    /// Whether to import the rows the file shows sent.
    imports: bool,
}

/// What reading the results file found.
struct Found {
    unsettled: HashMap<String, Remembered>,
    /// The last line answering each unsettled card (written after it left).
    answers: HashMap<String, EarlierLine>,
    /// Keys with a line from the run an earlier version's journal speaks of.
    answered_since_journal: HashSet<String>,
    /// How many records were imported.
    imported: usize,
}

impl Scan {
    /// Reads the file's lines (on a blocking thread: imports are handed to
    /// the ledger from here, a batch at a time).
    fn read(self, earlier: &Earlier, until: u64) -> Result<Found, RunError> {
        let Scan {
            ledger,
            campaign,
            path,
            unsettled,
            journal_from,
            imports,
        } = self;
        let mut answers: HashMap<String, EarlierLine> = HashMap::new();
        let mut answered_since_journal = HashSet::new();
        let mut batch = Vec::new();
        let mut imported = 0;
        let mut failed = None;
        let runtime = tokio::runtime::Handle::current();
        let mut import = |batch: &mut Vec<(String, Remembered)>| {
            if failed.is_none() && !batch.is_empty() {
                imported += batch.len();
                let records = std::mem::take(batch);
                failed = runtime.block_on(ledger.remember(&campaign, records)).err();
            }
        };
        let mut mock_like = 0;
        results::earlier_lines(&path, earlier, until, |line| {
            if let Some(leaving) = unsettled.get(&line.key) {
                if answers_leaving(&line, leaving) {
                    answers.insert(line.key.clone(), line.clone());
                }
            }
            if journal_from.is_some_and(|from| line.offset >= from) {
                answered_since_journal.insert(line.key.clone());
            }
            if imports {
                let left_at = line.finished_at.map_or(0, nanos_of);
                let fate = match line.status {
                    Some(Status::Sent) => Some(Fate::Sent),
                    Some(Status::Unknown) => Some(Fate::Unknown),
                    _ => None,
                };
                // An earlier version wrote a --mock rehearsal's lines where a
                // send's go: those are no cards that went.
                let rehearsed = fate == Some(Fate::Sent) && mock_message_id(&line.message_id);
                mock_like += usize::from(rehearsed);
                if let Some(fate) = fate.filter(|_| !rehearsed) {
                    batch.push((line.key.clone(), remembered(&line, fate, left_at)));
                    if batch.len() >= IMPORT_BATCH {
                        import(&mut batch);
                    }
                }
            }
        })?;
        import(&mut batch);
        if let Some(error) = failed {
            return Err(error.into());
        }
        report_mock_like(mock_like, &path);
        Ok(Found {
            unsettled,
            answers,
            answered_since_journal,
            imported,
        })
    }
}

/// Whether `line` answers the card recorded as leaving in `leaving`: written
/// after it left, by the run that let it out — a try's answer (a line that
/// only repeats the ledger's doubt has no try), or its stop before sending.
fn answers_leaving(line: &EarlierLine, leaving: &Remembered) -> bool {
    let after = |at: Timestamp| at.as_millisecond() >= leaving.left_at / 1_000_000;
    let an_answer = match line.status {
        Some(Status::Sent | Status::Failed | Status::Unknown) => line.attempts > 0,
        Some(Status::Deferred) => true,
        _ => false,
    };
    an_answer && line.finished_at.is_some_and(after)
}

/// Whether a message id is one the embedded mock gives: its counter, from
/// 0, after the 8 hex digits of its start time. A real id has random digits
/// there (a MongoDB ObjectId), all zeros once in four billion.
fn mock_message_id(id: &str) -> bool {
    id.len() == 24 && id.get(8..16) == Some("00000000")
}

/// The campaign's record of a card as a results line tells it.
fn remembered(line: &EarlierLine, fate: Fate, left_at: i64) -> Remembered {
    Remembered {
        fate,
        to: line.to.clone(),
        card_phone: line.contact_phone.clone(),
        instance_id: line.instance_id.clone(),
        message_id: line.message_id.clone(),
        api_status: line.api_status.clone(),
        http_status: line.http_status,
        attempts: line.attempts,
        left_at,
        finished_at: line.finished_at.map_or(left_at, nanos_of),
    }
}

/// The record of a key an earlier version's journal was sending: in doubt.
/// Its key is `to:contact_phone` (digits both) unless the campaign has a key
/// column: then the card is not known, only the key.
fn in_doubt_since_upgrade(key: &str, now: i64) -> Remembered {
    let digits = |part: &str| !part.is_empty() && part.bytes().all(|byte| byte.is_ascii_digit());
    let (to, card_phone) = key
        .split_once(':')
        .filter(|(to, phone)| digits(to) && digits(phone))
        .unwrap_or(("", ""));
    Remembered {
        fate: Fate::Unknown,
        to: to.to_string(),
        card_phone: card_phone.to_string(),
        instance_id: String::new(),
        message_id: String::new(),
        api_status: String::new(),
        http_status: None,
        attempts: 1,
        left_at: now,
        finished_at: now,
    }
}

/// Says how many cards an earlier run left in flight, and how many of them
/// the results file answered.
fn report_in_doubt(unsettled: usize, answered: usize) {
    if unsettled == 0 {
        return;
    }
    let in_doubt = unsettled - answered;
    warn!(
        cards = unsettled,
        answered_in_results = answered,
        in_doubt,
        "a run of this campaign let cards out and recorded no answer (it was stopped, lost the \
         ledger, or is still running); those the results file does not answer may have been \
         delivered and are UNKNOWN (--resume --resend-unknown sends them again)"
    );
}

/// Says how many SENT lines of the results file look like a rehearsal's
/// (and were not taken as sent).
fn report_mock_like(rows: usize, path: &Path) {
    if rows == 0 {
        return;
    }
    warn!(
        rows,
        results = %path.display(),
        "SENT lines whose message ids are the embedded mock's: a --mock rehearsal an \
         earlier version wrote into this file? They are not taken as sent, and the real \
         run sends those rows; stop it now if they were sent for real"
    );
}

fn earlier_path(path: &Path) -> String {
    path.display().to_string()
}
