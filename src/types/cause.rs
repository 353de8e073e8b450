//! Why a row does not go now, as data (the admission step decides it from
//! the facts), and the one place that puts a cause into words.

use jiff::Timestamp;

use super::{Fate, Forgotten, Recipient, Remembered, Status, Suppression};

/// Why a row is held back instead of sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Cause {
    /// A run of this campaign sent it: its record, with the message id.
    SentEarlier(Remembered),
    /// A run of this campaign may have delivered it: the answer was
    /// ambiguous (`UNKNOWN`).
    InDoubt(Remembered),
    /// A run of this campaign let it out and recorded no answer: it may
    /// still be sending it, or was stopped. No run can be sending it after
    /// `until`.
    InFlight { earlier: Remembered, until: i64 },
    /// A run of this campaign sent it, or may have, to a recipient since
    /// forgotten on request: the ledger keeps that it went, not to whom.
    Forgotten(Forgotten),
    /// The recipient is on the suppression list.
    Suppressed(Suppression),
    /// The same card went to this recipient at `at` (nanoseconds since
    /// 1970), from another campaign or another row, within a day of this
    /// campaign's try: this campaign never sends it.
    SameCard { at: i64 },
    /// The recipient was reached within `schedule.cooldown`: not before `until`.
    CoolingDown { until: i64 },
    /// A recipient its number never reached, and the number's first
    /// contacts for the day (`schedule.daily_new_contacts`, `cap`) are used
    /// up: not before its next day, `until`.
    FirstContacts { cap: u64, until: Option<i64> },
    /// The recipient's send window (`window`, in words with its zones) is
    /// shut until `opens`; `None`: it is never open in all of their zones
    /// at once.
    OutsideWindow { window: String, opens: Option<i64> },
}

impl Cause {
    /// The status a row held back for this cause has in the results file.
    pub fn status(&self) -> Status {
        match self {
            Cause::SentEarlier(_) => Status::Sent,
            Cause::InDoubt(_) | Cause::InFlight { .. } => Status::Unknown,
            Cause::Forgotten(forgotten) => match forgotten.fate {
                Fate::Sent => Status::Sent,
                Fate::Duplicate => Status::Duplicate,
                _ => Status::Unknown,
            },
            Cause::Suppressed(_) => Status::Suppressed,
            Cause::SameCard { .. } => Status::Duplicate,
            Cause::OutsideWindow { opens: None, .. } => Status::Unsendable,
            Cause::CoolingDown { .. }
            | Cause::FirstContacts { .. }
            | Cause::OutsideWindow { .. } => Status::Deferred,
        }
    }

    /// The cause in words, for the `error` column and the log, about the
    /// row of `recipient`.
    pub fn words(&self, recipient: &Recipient) -> String {
        match self {
            Cause::SentEarlier(earlier) if earlier.to != recipient.to => format!(
                "sent to {} by an earlier run of this campaign, when the row had that phone; \
                 this phone gets nothing from this campaign (a new --campaign name sends it)",
                earlier.to
            ),
            Cause::SentEarlier(_) => String::new(),
            Cause::InFlight { earlier, until } => format!(
                "a run of this campaign let it out at {} and recorded no answer (it was stopped, \
                 or is still sending it): it may have been delivered; not sent again (after {}, \
                 when no run can still be sending it, --resume --resend-unknown sends it)",
                at_text(earlier.left_at),
                at_text(*until)
            ),
            Cause::InDoubt(earlier) => format!(
                "an earlier run of this campaign may have delivered it at {}; not sent again \
                 (--resume --resend-unknown sends it)",
                at_text(earlier.left_at)
            ),
            Cause::Forgotten(forgotten) => format!(
                "{} by a run of this campaign at {}; the ledger keeps no more of it, its \
                 recipient forgotten on request (ledger forget): never sent again",
                match forgotten.fate {
                    Fate::Sent => "sent",
                    Fate::Duplicate => "found a repeat",
                    _ => "maybe delivered",
                },
                at_text(forgotten.left_at)
            ),
            Cause::Suppressed(entry) => match entry.reason.is_empty() {
                true => format!(
                    "on the suppression list since {}; never sent",
                    entry.added_at
                ),
                false => format!(
                    "on the suppression list since {} ({}); never sent",
                    entry.added_at,
                    super::printable(&entry.reason)
                ),
            },
            Cause::SameCard { at } => format!(
                "the same card went to this recipient at {} (another campaign or row sharing \
                 the ledger); this campaign never sends it",
                at_text(*at)
            ),
            Cause::CoolingDown { until } => format!(
                "the recipient was reached recently (schedule.cooldown); not before {}, when \
                 --resume sends it",
                at_text(*until)
            ),
            Cause::FirstContacts { cap, until } => format!(
                "first contacts for today used up (schedule.daily_new_contacts = {cap} a number); \
                 --resume sends it {}",
                until.map_or_else(
                    || "tomorrow".to_string(),
                    |until| format!("from {}", at_text(until))
                )
            ),
            Cause::OutsideWindow {
                window,
                opens: Some(opens),
            } => format!(
                "outside the send window {window} (it opens {}); --resume sends it then",
                at_text(*opens)
            ),
            Cause::OutsideWindow {
                window,
                opens: None,
            } => format!(
                "the send window {window} is never open in all of the number's time zones at \
                 once; a wider schedule.window (or window_in = \"timezone\"), then --resume, \
                 sends it"
            ),
        }
    }
}

/// A time as the ledger keeps it: nanoseconds since 1970.
pub fn nanos_of(at: Timestamp) -> i64 {
    i64::try_from(at.as_nanosecond()).unwrap_or(i64::MAX)
}

/// A time of the ledger (nanoseconds since 1970), as messages show it.
pub fn at_text(nanos: i64) -> String {
    Timestamp::from_nanosecond(i128::from(nanos))
        .map(|at| at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string())
        .unwrap_or_else(|_| "an unknown time".to_string())
}
