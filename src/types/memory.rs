//! What the ledger remembers of a campaign's cards, by recipient key, and
//! of the people who must never get one.

/// What became of one row's card, as the campaign's memory in the ledger
/// holds it: the one record every run of the campaign consults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Recorded as its request went, no answer recorded yet: in flight, or
    /// the run stopped before it could record one.
    Leaving,
    /// The API accepted it.
    Sent,
    /// It may or may not have reached the API.
    Unknown,
    /// The API refused it, or it could not be sent: a later run tries again.
    Failed,
    /// The same card had gone to the recipient within a day: never sent by
    /// this campaign.
    Duplicate,
}

impl Fate {
    pub const ALL: [Fate; 5] = [
        Fate::Leaving,
        Fate::Sent,
        Fate::Unknown,
        Fate::Failed,
        Fate::Duplicate,
    ];

    /// The card reached the recipient, or may have: a card refused,
    /// forgotten or found a repeat did not.
    pub fn went(self) -> bool {
        matches!(self, Fate::Leaving | Fate::Sent | Fate::Unknown)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Fate::Leaving => "LEAVING",
            Fate::Sent => "SENT",
            Fate::Unknown => "UNKNOWN",
            Fate::Failed => "FAILED",
            Fate::Duplicate => "DUPLICATE",
        }
    }

    pub fn parse(text: &str) -> Option<Fate> {
        Fate::ALL.into_iter().find(|fate| fate.as_str() == text)
    }
}

/// A campaign's record of one row's card.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Remembered {
    pub fate: Fate,
    /// The recipient it went (or was to go) to, normalised.
    pub to: String,
    /// The phone on the card, normalised.
    pub card_phone: String,
    pub instance_id: String,
    pub message_id: String,
    pub api_status: String,
    pub http_status: Option<u16>,
    pub attempts: u32,
    /// When its request went, nanoseconds since 1970; for a `Duplicate`,
    /// when the same card had gone.
    pub left_at: i64,
    /// When its answer came (0 while `Leaving`).
    pub finished_at: i64,
    /// While `Leaving`: until when the run that let it out may still send
    /// it, by that run's own retries, waits and timeouts (nanoseconds
    /// since 1970); 0 where no run said (an earlier version's record).
    pub in_flight_until: i64,
}

impl Remembered {
    /// The record of a row whose card had gone to its recipient at `at`,
    /// from another campaign or row: a repeat, never sent by this campaign.
    pub fn repeat(to: &str, card_phone: &str, instance_id: &str, at: i64) -> Self {
        Remembered {
            fate: Fate::Duplicate,
            to: to.to_string(),
            card_phone: card_phone.to_string(),
            instance_id: instance_id.to_string(),
            message_id: String::new(),
            api_status: String::new(),
            http_status: None,
            attempts: 0,
            left_at: at,
            finished_at: at,
            in_flight_until: 0,
        }
    }
}

/// A card of a person forgotten on request (`ledger forget`): what became
/// of it and when, kept without who it went to, so that its campaign never
/// sends it again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Forgotten {
    pub fate: Fate,
    /// When it left, nanoseconds since 1970.
    pub left_at: i64,
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

/// What the ledger knows that bears on one row.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// The campaign's record of the row's key.
    pub remembered: Option<Remembered>,
    /// The campaign's card of the row, its recipient forgotten on request:
    /// it went (or may have), and to whom the ledger no longer says.
    pub forgotten: Option<Forgotten>,
    /// When the campaign sent the same card to the recipient under another
    /// key (a campaign with a key column), nanoseconds since 1970.
    pub campaign_card_at: Option<i64>,
    /// The recipient's entry on the suppression list.
    pub suppressed: Option<Suppression>,
    /// When the same card (recipient and card phone) last went, by any
    /// campaign, nanoseconds since 1970.
    pub same_card_at: Option<i64>,
    /// When any card last went to the recipient (only read with a cooldown).
    pub last_reached: Option<i64>,
}

/// The facts of a row as the admission step read them, and the ledger's
/// epoch then: at the door, facts of an epoch in which no other run wrote
/// to the ledger since still hold, and need not be read again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AsRead {
    pub facts: Facts,
    pub epoch: u64,
}
