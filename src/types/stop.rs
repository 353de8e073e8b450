//! Why a run stopped taking rows before the end of its campaign.

use jiff::Timestamp;

/// Why the run stopped taking rows before the end of the campaign.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopReason {
    /// SIGINT or SIGTERM.
    Interrupted,
    /// No instance is left: every further message would fail the same way.
    Halted(String),
    /// Held back until later: the send window (`--no-wait`), the daily
    /// cap, or the API asking for a long wait.
    Deferred(Deferral),
}

impl Deferral {
    /// Only a person can lift it: a number the API refused.
    pub fn needs_a_person(&self) -> bool {
        self.cause == Hold::Number(HoldKind::Refused)
    }
}

/// A stop until later, and when later is, where known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deferral {
    pub cause: Hold,
    /// In words, as `DEFERRED` lines give it.
    pub why: String,
    /// When sending may go on.
    pub until: Option<Timestamp>,
}

/// What holds messages back until later.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hold {
    Window,
    DailyCap,
    /// The API's `Retry-After` asked for longer than `retry.max_backoff`.
    ApiWait,
    /// The number is paused or held in the ledger, for every run.
    Number(HoldKind),
    /// The number's first contacts for the day are used up.
    FirstContacts,
}

/// A number kept from sending by every run that shares the ledger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NumberHold {
    pub instance_id: String,
    pub kind: HoldKind,
    pub reason: String,
    /// Since when, in nanoseconds since 1970.
    pub since: i64,
    /// Until when (nanoseconds since 1970); `None`: until `numbers resume`.
    pub until: Option<i64>,
}

/// Why a number is kept from sending.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HoldKind {
    /// By an operator (`numbers pause`): until resumed, or its `until`.
    Paused,
    /// By the API refusing its credentials (401/403): until a person mends
    /// them and resumes it (`numbers resume`); every run stopped by it needs
    /// that person, and says so (exit 3).
    Refused,
    /// For a while, by what a run saw: too many failures (quarantine), or
    /// the API asking to wait (`Retry-After`).
    Held,
}

impl HoldKind {
    pub fn as_str(self) -> &'static str {
        match self {
            HoldKind::Paused => "paused",
            HoldKind::Refused => "refused",
            HoldKind::Held => "held",
        }
    }

    /// As the ledger keeps it (anything but `held` is a pause: the safe side).
    pub fn stored(text: &str) -> Self {
        match text {
            "held" => HoldKind::Held,
            "refused" => HoldKind::Refused,
            _ => HoldKind::Paused,
        }
    }
}

impl NumberHold {
    /// Whether `self`, set while `other` holds, may take its place: an
    /// operator's word always does; a run's verdict only when it holds the
    /// number longer (never over a pause until resumed).
    pub fn outlasts(&self, other: &NumberHold, now: i64) -> bool {
        let other_ended = other.until.is_some_and(|until| until <= now);
        match (self.until, other.until) {
            _ if other_ended => true,
            (_, None) => false,
            (None, Some(_)) => true,
            (Some(mine), Some(theirs)) => mine > theirs,
        }
    }

    /// The hold as the rows it defers say it.
    pub fn deferral(&self) -> Deferral {
        let until = self
            .until
            .and_then(|until| Timestamp::from_nanosecond(i128::from(until)).ok());
        let when = |at: Timestamp| at.strftime("%Y-%m-%d %H:%M:%S UTC").to_string();
        let (instance, reason) = (&self.instance_id, &self.reason);
        let until_words = match until {
            Some(at) => when(at),
            None => format!("`numbers resume {instance}`"),
        };
        let why = match self.kind {
            // Its reason says who refused it: "refused by the API: …".
            HoldKind::Refused => format!("instance {instance} is {reason}, until {until_words}"),
            kind => format!(
                "instance {instance} is {} ({reason}) until {until_words}",
                kind.as_str()
            ),
        };
        Deferral {
            cause: Hold::Number(self.kind),
            why,
            until,
        }
    }

    /// Whether it holds the number at `now`.
    pub fn holds_at(&self, now: i64) -> bool {
        self.until.is_none_or(|until| until > now)
    }
}

impl StopReason {
    /// Why, in the words a `DEFERRED` line gives.
    pub fn why(&self) -> String {
        match self {
            StopReason::Interrupted => "the run was interrupted".to_string(),
            StopReason::Halted(reason) => format!("the run halted ({reason})"),
            StopReason::Deferred(deferral) => deferral.why.clone(),
        }
    }

    /// The same for a machine: `interrupted`, `halted`, `window`,
    /// `daily_cap`, `api_wait`, `paused`, `refused`, `held`,
    /// `first_contacts`.
    pub fn code(&self) -> &'static str {
        match self {
            StopReason::Interrupted => "interrupted",
            StopReason::Halted(_) => "halted",
            StopReason::Deferred(deferral) => match deferral.cause {
                Hold::Window => "window",
                Hold::DailyCap => "daily_cap",
                Hold::ApiWait => "api_wait",
                Hold::Number(kind) => kind.as_str(),
                Hold::FirstContacts => "first_contacts",
            },
        }
    }

    /// When sending may go on, where known.
    pub fn until(&self) -> Option<Timestamp> {
        match self {
            StopReason::Deferred(deferral) => deferral.until,
            _ => None,
        }
    }
}
