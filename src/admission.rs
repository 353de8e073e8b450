//! The admission step: whether a row's card goes, decided from the facts in
//! one place. It runs twice on the same rules: as rows are read, on the
//! ledger as it was (so that a dry run shows it and no turn is booked for a
//! row that will not go), and again inside the ledger's transaction as the
//! card leaves, against every run sharing the ledger at that moment.

use std::collections::HashSet;
use std::time::Duration;

use crate::pacing::nanos;
use crate::types::{Cause, Facts, Fate};

/// How long the same card to the same recipient counts as a repeat.
pub const SAME_CARD_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The rules a run admits rows by.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    /// `schedule.cooldown`, in nanoseconds.
    pub cooldown: Option<i64>,
    /// `--resend-unknown`: a card this campaign may have delivered goes again.
    pub resend_unknown: bool,
    /// The longest a run keeps a card in flight, tries and waits between
    /// them included (nanoseconds): a card recorded as leaving longer ago
    /// than this is no other run's to answer any more, and may be resent.
    pub in_flight_at_most: i64,
}

impl Rules {
    pub fn new(
        cooldown: Option<Duration>,
        resend_unknown: bool,
        in_flight_at_most: Duration,
    ) -> Self {
        Rules {
            cooldown: cooldown.map(nanos),
            resend_unknown,
            in_flight_at_most: nanos(in_flight_at_most),
        }
    }
}

/// Whether a row's card goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Admission {
    /// It goes; `resending`: an earlier try may have been delivered
    /// (`--resend-unknown`), so the card stays in doubt if this one fails.
    Goes {
        resending: bool,
    },
    Held(Cause),
}

/// Decides one row from its facts, `now` (nanoseconds since 1970). In
/// order: what this campaign did with the row before (sent, may have sent,
/// found a repeat) or with the same card under another key, the suppression
/// list, the same card within a day, the cooldown.
pub fn admit(facts: Facts, rules: &Rules, now: i64) -> Admission {
    let Facts {
        remembered,
        forgotten,
        campaign_card_at,
        suppressed,
        same_card_at,
        last_reached,
    } = facts;
    let mut resending = false;
    if let Some(earlier) = remembered {
        // A card another run may still be sending is not resent: its
        // answer may yet come. How long is that run's to say.
        let until = match earlier.in_flight_until {
            0 => earlier.left_at.saturating_add(rules.in_flight_at_most),
            until => until,
        };
        match earlier.fate {
            Fate::Sent => return Admission::Held(Cause::SentEarlier(earlier)),
            Fate::Unknown if rules.resend_unknown => resending = true,
            Fate::Leaving if rules.resend_unknown && now >= until => resending = true,
            Fate::Unknown => return Admission::Held(Cause::InDoubt(earlier)),
            Fate::Leaving => return Admission::Held(Cause::InFlight { earlier, until }),
            Fate::Duplicate => {
                return Admission::Held(Cause::SameCard {
                    at: earlier.left_at,
                })
            }
            Fate::Failed => {}
        }
    }
    // Its recipient forgotten on request, the campaign still knows the
    // card went (a newer record, above, decides first).
    if let Some(forgotten) = forgotten.filter(|_| !resending) {
        return Admission::Held(Cause::Forgotten(forgotten));
    }
    if let Some(entry) = suppressed {
        return Admission::Held(Cause::Suppressed(entry));
    }
    // A card sent again on request is this campaign's own card once more:
    // neither a repeat of itself nor held back by its own earlier try.
    if resending {
        return Admission::Goes { resending };
    }
    // The campaign sent this card to this person under another key: once
    // is what a campaign sends, however long ago.
    if let Some(at) = campaign_card_at {
        return Admission::Held(Cause::SameCard { at });
    }
    let window_start = now.saturating_sub(nanos(SAME_CARD_WINDOW));
    if let Some(at) = same_card_at.filter(|at| *at > window_start) {
        return Admission::Held(Cause::SameCard { at });
    }
    if let (Some(last), Some(cooldown)) = (last_reached, rules.cooldown) {
        let until = last.saturating_add(cooldown);
        if until > now {
            return Admission::Held(Cause::CoolingDown { until });
        }
    }
    Admission::Goes { resending }
}

/// A card about to leave, as a batch of them is admitted.
#[derive(Debug, Clone, Copy)]
pub struct Card<'a> {
    pub to: &'a str,
    pub card_phone: &'a str,
}

/// Decides a batch of cards leaving together, each from the facts read
/// before the batch and the cards before it in the batch: the same card
/// twice in one batch (two rows of one person, under two keys) goes once.
pub fn admit_batch(
    cards: &[Card<'_>],
    facts: Vec<Facts>,
    rules: &Rules,
    now: i64,
) -> Vec<Admission> {
    let mut going: HashSet<(&str, &str)> = HashSet::new();
    let mut reached: HashSet<&str> = HashSet::new();
    cards
        .iter()
        .zip(facts)
        .map(|(card, mut facts)| {
            if going.contains(&(card.to, card.card_phone)) {
                facts.same_card_at = Some(now);
            }
            if reached.contains(card.to) {
                facts.last_reached = Some(now);
            }
            let admission = admit(facts, rules, now);
            if let Admission::Goes { .. } = admission {
                going.insert((card.to, card.card_phone));
                reached.insert(card.to);
            }
            admission
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::{Remembered, Suppression};

    const HOUR: i64 = 3_600_000_000_000;
    const NOW: i64 = 1_000 * HOUR;

    fn rules() -> Rules {
        Rules::default()
    }

    fn remembered(fate: Fate, left_at: i64) -> Option<Remembered> {
        Some(Remembered {
            fate,
            to: "5511987654321".into(),
            card_phone: "551130034000".into(),
            instance_id: "inst-1".into(),
            message_id: "m-1".into(),
            api_status: "QUEUED".into(),
            http_status: Some(201),
            attempts: 1,
            left_at,
            finished_at: left_at,
            in_flight_until: 0,
        })
    }

    fn held_status(admission: &Admission) -> Option<crate::types::Status> {
        match admission {
            Admission::Held(cause) => Some(cause.status()),
            Admission::Goes { .. } => None,
        }
    }

    #[test]
    fn what_the_campaign_did_before_decides_first_whenever_it_was() {
        use crate::types::Status;
        let long_ago = NOW - 400 * 24 * HOUR;
        let cases = [
            (Fate::Sent, Some(Status::Sent)),
            (Fate::Unknown, Some(Status::Unknown)),
            (Fate::Leaving, Some(Status::Unknown)),
            (Fate::Duplicate, Some(Status::Duplicate)),
            (Fate::Failed, None),
        ];
        for (fate, expected) in cases {
            let facts = Facts {
                remembered: remembered(fate, long_ago),
                ..Facts::default()
            };
            assert_eq!(
                held_status(&admit(facts, &rules(), NOW)),
                expected,
                "{fate:?}"
            );
        }
    }

    #[test]
    fn resend_unknown_lets_a_card_in_doubt_through_its_own_earlier_try() {
        let facts = Facts {
            remembered: remembered(Fate::Unknown, NOW - HOUR),
            same_card_at: Some(NOW - HOUR),
            last_reached: Some(NOW - HOUR),
            ..Facts::default()
        };
        let rules = Rules {
            resend_unknown: true,
            cooldown: Some(24 * HOUR),
            in_flight_at_most: HOUR,
        };
        assert_eq!(
            admit(facts.clone(), &rules, NOW),
            Admission::Goes { resending: true }
        );
        let sent = Facts {
            remembered: remembered(Fate::Sent, NOW - HOUR),
            ..facts
        };
        assert_eq!(
            held_status(&admit(sent, &rules, NOW)),
            Some(crate::types::Status::Sent),
            "a card known to be sent never goes again"
        );
    }

    #[test]
    fn a_card_another_run_may_still_be_sending_is_not_resent_until_it_cannot_be() {
        let rules = Rules {
            resend_unknown: true,
            in_flight_at_most: HOUR,
            ..rules()
        };
        let leaving = |left_at| Facts {
            remembered: remembered(Fate::Leaving, left_at),
            ..Facts::default()
        };
        assert_eq!(
            held_status(&admit(leaving(NOW - HOUR / 2), &rules, NOW)),
            Some(crate::types::Status::Unknown)
        );
        assert_eq!(
            admit(leaving(NOW - 2 * HOUR), &rules, NOW),
            Admission::Goes { resending: true }
        );
    }

    #[test]
    fn a_card_in_flight_is_judged_by_the_bound_its_own_run_recorded() {
        // This run would give up on a card after a minute; the run that let
        // it out said it may send it for an hour.
        let rules = Rules {
            resend_unknown: true,
            in_flight_at_most: HOUR / 60,
            ..rules()
        };
        let mut facts = Facts {
            remembered: remembered(Fate::Leaving, NOW - HOUR / 2),
            ..Facts::default()
        };
        facts.remembered.as_mut().unwrap().in_flight_until = NOW + HOUR / 2;
        assert_eq!(
            held_status(&admit(facts.clone(), &rules, NOW)),
            Some(crate::types::Status::Unknown)
        );
        assert_eq!(
            admit(facts, &rules, NOW + HOUR),
            Admission::Goes { resending: true }
        );
    }

    #[test]
    fn the_same_card_under_another_key_of_the_campaign_is_a_repeat_for_ever() {
        let facts = Facts {
            campaign_card_at: Some(NOW - 400 * 24 * HOUR),
            ..Facts::default()
        };
        assert_eq!(
            admit(facts, &rules(), NOW),
            Admission::Held(Cause::SameCard {
                at: NOW - 400 * 24 * HOUR
            })
        );
    }

    #[test]
    fn the_same_card_within_a_day_is_a_repeat_and_after_it_is_not() {
        let within = Facts {
            same_card_at: Some(NOW - 23 * HOUR),
            ..Facts::default()
        };
        assert_eq!(
            admit(within, &rules(), NOW),
            Admission::Held(Cause::SameCard {
                at: NOW - 23 * HOUR
            })
        );
        let after = Facts {
            same_card_at: Some(NOW - 25 * HOUR),
            ..Facts::default()
        };
        assert_eq!(
            admit(after, &rules(), NOW),
            Admission::Goes { resending: false }
        );
    }

    #[test]
    fn a_cooldown_holds_a_recipient_until_it_ends() {
        let facts = Facts {
            last_reached: Some(NOW - 2 * HOUR),
            ..Facts::default()
        };
        let rules = Rules {
            cooldown: Some(3 * HOUR),
            ..rules()
        };
        assert_eq!(
            admit(facts.clone(), &rules, NOW),
            Admission::Held(Cause::CoolingDown { until: NOW + HOUR })
        );
        assert_eq!(
            admit(facts, &super::tests::rules(), NOW),
            Admission::Goes { resending: false }
        );
    }

    #[test]
    fn a_suppressed_recipient_is_held_unless_the_card_already_went() {
        let entry = Suppression {
            phone: "5511987654321".into(),
            reason: "asked".into(),
            added_at: "2026-11-25T13:00:00Z".into(),
        };
        let facts = Facts {
            suppressed: Some(entry.clone()),
            ..Facts::default()
        };
        assert_eq!(
            admit(facts, &rules(), NOW),
            Admission::Held(Cause::Suppressed(entry.clone()))
        );
        let sent = Facts {
            suppressed: Some(entry),
            remembered: remembered(Fate::Sent, NOW - HOUR),
            ..Facts::default()
        };
        assert!(matches!(
            admit(sent, &rules(), NOW),
            Admission::Held(Cause::SentEarlier(_))
        ));
    }

    #[test]
    fn the_same_card_twice_in_one_batch_goes_once() {
        let cards = [
            Card {
                to: "a",
                card_phone: "x",
            },
            Card {
                to: "a",
                card_phone: "x",
            },
            Card {
                to: "a",
                card_phone: "y",
            },
        ];
        let rules = Rules {
            cooldown: Some(HOUR),
            ..rules()
        };
        let admitted = admit_batch(&cards, vec![Facts::default(); 3], &rules, NOW);
        assert_eq!(admitted[0], Admission::Goes { resending: false });
        assert_eq!(admitted[1], Admission::Held(Cause::SameCard { at: NOW }));
        assert_eq!(
            admitted[2],
            Admission::Held(Cause::CoolingDown { until: NOW + HOUR }),
            "another card to the same person, within the cooldown"
        );
    }
}
