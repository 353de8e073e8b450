//! `interacto-bulk ledger`: looking after the ledger every run shares —
//! what it holds, pruning what is older than `ledger.keep`, and forgetting
//! a person on request.

use std::path::PathBuf;

use crate::config::Settings;
use crate::exit::{ExitCode, RunError};
use crate::ledger::{Keep, Ledger, LedgerStats, Pruned};

use super::suppress::{normalised, read_phones, unread_text};
use super::{open_ledger, IfNew};

/// What `ledger` is asked to do.
#[derive(Debug, Clone)]
pub enum LedgerTask {
    /// What it holds, as text or (`json`) one JSON object.
    Stats { json: bool },
    /// Remove every card older than `keep` (else `ledger.keep`).
    Prune { keep: Option<Keep> },
    /// Erase every card sent to these phones, and those of a CSV file's
    /// phone column; with `as_card`, the cards carrying them too.
    Forget {
        phones: Vec<String>,
        from: Option<PathBuf>,
        as_card: bool,
    },
}

/// Carries out `task` on the ledger `settings` name (`if_new`: when it is
/// not there yet); returns what to print on stdout and the exit code.
pub async fn keep_ledger(
    settings: &Settings,
    task: LedgerTask,
    if_new: IfNew,
) -> Result<(String, ExitCode), RunError> {
    let ledger = open_ledger(settings, if_new).await?;
    match task {
        LedgerTask::Stats { json } => {
            let stats = ledger.stats().await?;
            let text = match json {
                true => format!(
                    "{}\n",
                    serde_json::to_string(&stats).expect("stats always serialise")
                ),
                false => stats_text(&stats),
            };
            Ok((text, ExitCode::Success))
        }
        LedgerTask::Prune { keep } => {
            let keep = keep.unwrap_or(settings.ledger.keep);
            refuse_shorter_than_the_cooldown(keep, settings)?;
            let pruned = ledger.prune(keep, None).await?;
            Ok((pruned_text(&pruned, keep), ExitCode::Success))
        }
        LedgerTask::Forget {
            phones,
            from,
            as_card,
        } => forget(&ledger, settings, (phones, from), as_card).await,
    }
}

/// `ledger forget`: erases what the ledger holds of each phone, said phone
/// by phone. A phone only on others' cards (the business's own number) is
/// refused unless `as_card`: forgetting it erases the records of every
/// card carrying it.
async fn forget(
    ledger: &Ledger,
    settings: &Settings,
    (phones, from): (Vec<String>, Option<PathBuf>),
    as_card: bool,
) -> Result<(String, ExitCode), RunError> {
    let region = settings.campaign.default_region;
    let mut wanted = normalised(&phones, region)?;
    let mut unread = Vec::new();
    if let Some(file) = &from {
        let (read, bad) = read_phones(file, region)?;
        wanted.extend(read);
        unread = bad;
    }
    wanted.sort();
    wanted.dedup();
    let uses = ledger.phone_uses(wanted.clone()).await?;
    let only_on_cards: Vec<String> = wanted
        .iter()
        .zip(&uses)
        .filter(|(_, uses)| uses.as_recipient == 0 && uses.on_cards > 0)
        .map(|(phone, uses)| format!("{phone} is on {} cards as the card's phone", uses.on_cards))
        .collect();
    if !as_card && !only_on_cards.is_empty() {
        return Err(RunError::Usage(format!(
            "{}, and no card went to it: forgetting it would erase the records of every card \
             that carries it (their recipients stay remembered, without it); --as-card says that \
             is what you want. Nothing was forgotten",
            only_on_cards.join("; ")
        )));
    }
    let suppressed = ledger.suppressed().await?;
    let forgot = ledger.forget(wanted, as_card).await?;
    let mut text = String::new();
    for ((phone, cards), uses) in forgot.cards.iter().zip(&uses) {
        let opted_out = suppressed.iter().any(|entry| &entry.phone == phone);
        text.push_str(&format!(
            "{phone}: {cards} cards forgotten (the ledger keeps that they went, not to whom){}{}\n",
            match opted_out {
                true => "; their opt-out stays on the suppression list",
                false => "",
            },
            match (as_card, uses.on_cards) {
                (false, 1..) => format!(
                    "; also on {} cards to others as the card's phone, kept (--as-card forgets those)",
                    uses.on_cards
                ),
                _ => String::new(),
            }
        ));
    }
    if let Some(remains) = &forgot.remains {
        text.push_str(&format!("{remains}\n"));
    }
    text.push_str(
        "results files, and backups of the ledger, made before now still hold these phones\n",
    );
    let exit = match (&from, unread.is_empty()) {
        (Some(file), false) => {
            text.push_str(&unread_text(file, &unread));
            text.push_str("nothing was forgotten for those rows\n");
            ExitCode::NotAllSent
        }
        _ => ExitCode::Success,
    };
    Ok((text, exit))
}

/// A `--keep` the cooldown would outlast: the ledger must remember a
/// recipient as long as the cooldown holds them back (as `ledger.keep`).
fn refuse_shorter_than_the_cooldown(keep: Keep, settings: &Settings) -> Result<(), RunError> {
    match settings.schedule.cooldown {
        Some(cooldown) if cooldown > keep.0 => Err(RunError::Usage(format!(
            "--keep {keep} is shorter than schedule.cooldown ({} days): the ledger must \
             remember a recipient as long as the cooldown holds them back; keep at least that",
            cooldown.as_secs().div_ceil(86_400)
        ))),
        _ => Ok(()),
    }
}

/// What `ledger prune` did, for people.
fn pruned_text(pruned: &Pruned, keep: Keep) -> String {
    let before = pruned
        .before
        .and_then(|before| jiff::Timestamp::from_nanosecond(i128::from(before)).ok());
    let mut text = match before {
        Some(before) => format!(
            "removed {} cards that left before {} and {} daily counts (kept: {keep})\n",
            pruned.cards,
            before.strftime("%Y-%m-%d %H:%M UTC"),
            pruned.daily_counts
        ),
        None => "the ledger holds no card: nothing to remove\n".to_string(),
    };
    if let Some(clocks) = pruned.clock_ahead {
        text.push_str(&format!("{}\n", clocks.held_back()));
    }
    text
}

/// `ledger stats` for people.
fn stats_text(stats: &LedgerStats) -> String {
    let none = || "—".to_string();
    format!(
        "cards          {}\nrecipients     {}\nsuppressed     {}\nnumbers        {}\ncampaigns      {}\n\
         oldest card    {}\nnewest card    {}\nsize on disk   {:.1} MiB\nschema version {}\n",
        stats.cards,
        stats.recipients,
        stats.suppressed,
        stats.numbers,
        stats.campaigns,
        stats.oldest.clone().unwrap_or_else(none),
        stats.newest.clone().unwrap_or_else(none),
        stats.bytes as f64 / (1024.0 * 1024.0),
        stats.schema_version
    )
}
