//! Before anything is sent, the campaign's memory in the ledger is made
//! whole from the other memories a run has: the results file it carries on
//! (and the journal a killed run left). Every line of the file is compared
//! with the ledger: a row the file shows `SENT` or `UNKNOWN` that the ledger
//! does not hold as gone (a ledger restored from a backup, a new ledger, a
//! trial run that made the campaign known to it) is remembered from the
//! file, so it never goes again; a row the ledger holds as gone that the
//! file shows otherwise keeps the ledger's word. Either way the run says how
//! many. The answers of cards a run let out but could not record (it was
//! killed, or lost the ledger) are taken from the file too.

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use jiff::Timestamp;
use tracing::warn;

use crate::admission::Rules;
use crate::exit::RunError;
use crate::ledger::{Ledger, LedgerError, Lookup, Passing, Settled};
use crate::results::{self, Earlier, EarlierLine, Left};
use crate::types::{nanos_of, Facts, Fate, Remembered, Status};

/// Lines of a results file compared with the ledger at once: one question
/// to the ledger each, and never the whole file in memory.
const COMPARED_AT_ONCE: usize = 1_024;

/// Makes the memory of `campaign` whole from the results file at `path`, as
/// it was before this run (`earlier`; its lines end at `until`), and from
/// the journal a killed run `left`.
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
    let Some(earlier) = earlier else {
        report_in_doubt(unsettled.len(), 0);
        remember_in_doubt(ledger, campaign, journal_keys, &HashSet::new()).await?;
        return Ok(ledger.meet(campaign).await?);
    };

    let scan = Scan {
        ledger: ledger.clone(),
        campaign: campaign.to_string(),
        path: path.to_path_buf(),
        unsettled,
        journal_from: left.map(|left| left.results_from),
        upgraded: earlier.upgraded,
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
        compared,
    } = found?;

    let answered = settle_answered(ledger, campaign, &unsettled, &answers).await?;
    report_in_doubt(unsettled.len(), answered);

    remember_in_doubt(ledger, campaign, journal_keys, &answered_since_journal).await?;
    ledger.meet(campaign).await?;
    compared.report(path);
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
            daily_cap: Default::default(),
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
    /// It is an earlier version's file, which may hold a rehearsal's lines.
    upgraded: bool,
}

/// What reading the results file found.
struct Found {
    unsettled: HashMap<String, Remembered>,
    /// The last line answering each unsettled card (written after it left).
    answers: HashMap<String, EarlierLine>,
    /// Keys with a line from the run an earlier version's journal speaks of.
    answered_since_journal: HashSet<String>,
    /// Where the file and the ledger disagreed.
    compared: Compared,
}

impl Scan {
    /// Reads the file's lines on a blocking thread, comparing them with the
    /// ledger a batch at a time.
    fn read(self, earlier: &Earlier, until: u64) -> Result<Found, RunError> {
        let mut answers: HashMap<String, EarlierLine> = HashMap::new();
        let mut answered_since_journal = HashSet::new();
        let mut comparing = Comparing {
            ledger: &self.ledger,
            campaign: &self.campaign,
            runtime: tokio::runtime::Handle::current(),
            upgraded: self.upgraded,
            lines: Vec::with_capacity(COMPARED_AT_ONCE),
            compared: Compared {
                // After a crash the file holds every run's lines since its
                // last tidying: a row's DEFERRED line may come before its
                // SENT one.
                one_line_a_row: self.journal_from.is_none(),
                ..Compared::default()
            },
            failed: None,
        };
        results::earlier_lines(&self.path, earlier, until, |line| {
            if let Some(leaving) = self.unsettled.get(&line.key) {
                if answers_leaving(&line, leaving) {
                    answers.insert(line.key.clone(), line.clone());
                }
            }
            if self.journal_from.is_some_and(|from| line.offset >= from) {
                answered_since_journal.insert(line.key.clone());
            }
            comparing.add(line);
        })?;
        let compared = comparing.finish()?;
        Ok(Found {
            unsettled: self.unsettled,
            answers,
            answered_since_journal,
            compared,
        })
    }
}

/// The lines of the results file on their way to be compared with the
/// ledger, a batch at a time; what is compared so far.
struct Comparing<'a> {
    ledger: &'a Ledger,
    campaign: &'a str,
    /// The run's runtime, which the ledger's calls are made on from this
    /// blocking thread.
    runtime: tokio::runtime::Handle,
    upgraded: bool,
    lines: Vec<EarlierLine>,
    compared: Compared,
    /// The ledger could not be read or written: the rest is not compared.
    failed: Option<LedgerError>,
}

impl Comparing<'_> {
    fn add(&mut self, line: EarlierLine) {
        // A row that never had a recipient (INVALID) is nobody's card.
        if line.to.is_empty() {
            return;
        }
        self.lines.push(line);
        if self.lines.len() >= COMPARED_AT_ONCE {
            self.compare();
        }
    }

    /// Compares the lines so far with what the ledger holds of their rows,
    /// and remembers the cards only the file knew went.
    fn compare(&mut self) {
        let lines = std::mem::take(&mut self.lines);
        if self.failed.is_some() || lines.is_empty() {
            return;
        }
        let lookups = lines
            .iter()
            .map(|line| Lookup {
                key: line.key.clone(),
                to: line.to.clone(),
                card_phone: line.contact_phone.clone(),
            })
            .collect();
        let asked = self.ledger.facts(self.campaign, lookups, false);
        let facts = match self.runtime.block_on(asked) {
            Ok((facts, _)) => facts,
            Err(error) => {
                self.failed = Some(error);
                return;
            }
        };
        let mut healed = Vec::new();
        let now = self.ledger.clock().now_nanos();
        for (line, facts) in lines.iter().zip(facts) {
            let verdict = judge(line, &facts, self.upgraded);
            self.compared.note(line, verdict);
            if let Verdict::Heal(fate) = verdict {
                // A time a spreadsheet mangled is now's: never the oldest
                // card, pruned first.
                let left_at = line.finished_at.map_or(now, nanos_of);
                healed.push((line.key.clone(), remembered(line, fate, left_at)));
            }
        }
        if healed.is_empty() {
            return;
        }
        let remembering = self.ledger.remember(self.campaign, healed);
        self.failed = self.runtime.block_on(remembering).err();
    }

    fn finish(mut self) -> Result<Compared, RunError> {
        self.compare();
        match self.failed {
            Some(error) => Err(error.into()),
            None => Ok(self.compared),
        }
    }
}

/// Where the results file and the ledger disagreed, row by row.
#[derive(Debug, Default)]
struct Compared {
    /// Rows the file shows `SENT` or `UNKNOWN` that the ledger did not hold
    /// as gone: remembered from the file.
    healed: Rows,
    /// Rows the ledger holds as gone that the file shows not sent (`FAILED`,
    /// `DEFERRED`, `SUPPRESSED`): the ledger's word is kept.
    ledger_kept: Rows,
    /// `SENT` lines of an earlier version's file with the embedded mock's
    /// message ids: a rehearsal's, not taken as sent.
    mock_like: usize,
    /// The file holds one line a row (it was tidied at the end of its last
    /// run), so a line that says a row was not sent is its last word.
    one_line_a_row: bool,
}

/// Rows counted, with the first few for the log.
#[derive(Debug, Default)]
struct Rows {
    count: u64,
    first: Vec<u64>,
}

impl Rows {
    const SHOWN: usize = 5;

    fn note(&mut self, row: u64) {
        self.count += 1;
        if self.first.len() < Self::SHOWN {
            self.first.push(row);
        }
    }

    /// `row 2`, `rows 2, 5, 9 and 4 more`.
    fn shown(&self) -> String {
        let rows: Vec<String> = self.first.iter().map(u64::to_string).collect();
        let more = self.count - self.first.len() as u64;
        match (self.count, more) {
            (1, _) => format!("row {}", rows.join("")),
            (_, 0) => format!("rows {}", rows.join(", ")),
            (_, more) => format!("rows {} and {more} more", rows.join(", ")),
        }
    }
}

/// What one line of the results file says against what the ledger holds
/// of its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// The file knows the card went (or may have), more surely than the
    /// ledger: remembered from the file.
    Heal(Fate),
    /// The ledger holds the card as gone; the file says it was not sent.
    LedgerKept,
    /// A `SENT` line of an earlier version's file with the embedded mock's
    /// message id: a rehearsal's.
    Rehearsed,
    /// Nothing to do.
    Agree,
}

/// Judges one line against the facts of its row.
fn judge(line: &EarlierLine, facts: &Facts, upgraded: bool) -> Verdict {
    // A forgotten card is held by its digests: its phone never goes back
    // into the ledger.
    if facts.forgotten.is_some() {
        return Verdict::Agree;
    }
    let held = facts.remembered.as_ref().map(|record| record.fate);
    let by_file = match line.status {
        Some(Status::Sent) => Fate::Sent,
        // A line with no try of its own only repeats another run's doubt
        // (the card was in flight there): no memory of a send.
        Some(Status::Unknown) if line.attempts > 0 => Fate::Unknown,
        Some(Status::Failed | Status::Deferred | Status::Suppressed) => {
            return match held {
                Some(Fate::Sent | Fate::Unknown) => Verdict::LedgerKept,
                _ => Verdict::Agree,
            }
        }
        _ => return Verdict::Agree,
    };
    // An earlier version wrote a --mock rehearsal's lines where a send's
    // go: those are no cards that went.
    if upgraded && by_file == Fate::Sent && mock_message_id(&line.message_id) {
        return Verdict::Rehearsed;
    }
    match (held, by_file) {
        (None | Some(Fate::Failed), _) | (Some(Fate::Unknown), Fate::Sent) => {
            Verdict::Heal(by_file)
        }
        _ => Verdict::Agree,
    }
}

impl Compared {
    /// Counts what `verdict` said of `line`.
    fn note(&mut self, line: &EarlierLine, verdict: Verdict) {
        match verdict {
            Verdict::Heal(_) => self.healed.note(line.row),
            // Only the last word of a file of one line a row: after a
            // crash, a row's DEFERRED line may come before its SENT one.
            Verdict::LedgerKept if self.one_line_a_row => self.ledger_kept.note(line.row),
            Verdict::Rehearsed => self.mock_like += 1,
            Verdict::LedgerKept | Verdict::Agree => {}
        }
    }

    /// Says where the file and the ledger disagreed, and which won.
    fn report(&self, path: &Path) {
        let results = path.display();
        if self.healed.count > 0 {
            warn!(
                rows = self.healed.count,
                %results,
                "the results file shows {} SENT or UNKNOWN that the ledger did not remember (a \
                 ledger restored from a backup, a new ledger?): remembered now from the file, \
                 and never sent again",
                self.healed.shown()
            );
        }
        if self.ledger_kept.count > 0 {
            warn!(
                rows = self.ledger_kept.count,
                %results,
                "the ledger remembers {} as sent (or maybe sent) though the results file shows \
                 them not sent (an edited file?): they are not sent again, and their lines say \
                 what the ledger remembers",
                self.ledger_kept.shown()
            );
        }
        report_mock_like(self.mock_like, path);
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
        in_flight_until: 0,
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
        in_flight_until: 0,
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

#[cfg(test)]
mod tests {
    use super::*;

    fn line(status: Status, attempts: u32) -> EarlierLine {
        EarlierLine {
            row: 2,
            key: "5511987654321:551130034000".into(),
            to: "5511987654321".into(),
            contact_phone: "551130034000".into(),
            status: Some(status),
            attempts,
            message_id: "6b1720940f3a9c2e11aa0001".into(),
            ..EarlierLine::default()
        }
    }

    /// The facts of a row the ledger holds as `fate` (or not at all).
    fn holding(fate: Option<Fate>) -> Facts {
        let record = |fate| Remembered {
            fate,
            ..Remembered::repeat("5511987654321", "551130034000", "", 1)
        };
        Facts {
            remembered: fate.map(record),
            ..Facts::default()
        }
    }

    #[test]
    fn the_side_that_says_the_card_went_wins() {
        let cases = [
            (Status::Sent, 1, None, Verdict::Heal(Fate::Sent)),
            (
                Status::Sent,
                1,
                Some(Fate::Failed),
                Verdict::Heal(Fate::Sent),
            ),
            (
                Status::Sent,
                1,
                Some(Fate::Unknown),
                Verdict::Heal(Fate::Sent),
            ),
            (Status::Unknown, 1, None, Verdict::Heal(Fate::Unknown)),
            (Status::Unknown, 1, Some(Fate::Sent), Verdict::Agree),
            (Status::Sent, 1, Some(Fate::Leaving), Verdict::Agree),
            (Status::Sent, 1, Some(Fate::Duplicate), Verdict::Agree),
            (Status::Failed, 1, Some(Fate::Sent), Verdict::LedgerKept),
            (
                Status::Deferred,
                0,
                Some(Fate::Unknown),
                Verdict::LedgerKept,
            ),
            (Status::Deferred, 0, None, Verdict::Agree),
        ];
        for (status, attempts, held, verdict) in cases {
            let facts = holding(held);
            assert_eq!(
                judge(&line(status, attempts), &facts, false),
                verdict,
                "{status:?} {held:?}"
            );
        }
    }

    #[test]
    fn a_line_that_only_repeats_another_run_s_doubt_is_no_memory_of_a_send() {
        assert_eq!(
            judge(&line(Status::Unknown, 0), &holding(None), false),
            Verdict::Agree
        );
    }

    #[test]
    fn a_forgotten_card_never_puts_its_phone_back() {
        let facts = Facts {
            forgotten: Some(crate::types::Forgotten {
                fate: Fate::Unknown,
                left_at: 1,
            }),
            ..Facts::default()
        };
        assert_eq!(judge(&line(Status::Sent, 1), &facts, false), Verdict::Agree);
    }

    #[test]
    fn a_rehearsal_s_line_in_an_earlier_version_s_file_is_no_send() {
        let mut rehearsed = line(Status::Sent, 1);
        rehearsed.message_id = "6b17209400000000000000a1".into();
        assert_eq!(judge(&rehearsed, &holding(None), true), Verdict::Rehearsed);
        assert_eq!(
            judge(&rehearsed, &holding(None), false),
            Verdict::Heal(Fate::Sent)
        );
    }
}
