//! Forgetting a person on request (`ledger forget`, the LGPD's erasure)
//! without forgetting what was sent. A forgotten card's row goes; what the
//! campaign must still know of it stays in `forgotten`, by keyed digests of
//! the row (its campaign and card, its key, the card to the person, the
//! person), never by phone: that the card went and when. So the campaign
//! never sends it again, the same card within a day is still a repeat and a
//! cooldown still holds — and the phone is in no record.
//!
//! The digests are BLAKE3 keyed with the ledger's own secret, made at random
//! when the ledger is created. Whoever holds the whole ledger holds the
//! secret too, and could test a phone against them: they are not the phone,
//! they are not anonymous.

use std::collections::BTreeMap;

use super::surety;
use crate::types::{Fate, Forgotten};

/// The ledger's key for its digests: 32 random bytes, kept as hex.
#[derive(Clone)]
pub(super) struct Secret([u8; 32]);

impl Secret {
    /// A new secret, from the operating system's random source.
    pub fn new() -> std::io::Result<Secret> {
        use std::io::Read;
        let mut bytes = [0; 32];
        std::fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
        Ok(Secret(bytes))
    }

    pub fn to_hex(&self) -> String {
        self.0.iter().map(|byte| format!("{byte:02x}")).collect()
    }

    pub fn from_hex(text: &str) -> Option<Secret> {
        let mut bytes = [0; 32];
        if text.len() != 64 {
            return None;
        }
        for (at, byte) in bytes.iter_mut().enumerate() {
            *byte = u8::from_str_radix(text.get(at * 2..at * 2 + 2)?, 16).ok()?;
        }
        Some(Secret(bytes))
    }

    /// The digest of `parts` (each ended by a NUL, so that no two lists
    /// of parts read alike): 128 bits, as 32 hex digits.
    fn digest(&self, parts: &[&str]) -> String {
        let mut hasher = blake3::Hasher::new_keyed(&self.0);
        for part in parts {
            hasher.update(part.as_bytes());
            hasher.update(&[0]);
        }
        hasher.finalize().to_hex()[..32].to_string()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(…)")
    }
}

/// What a digest of a row stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum DigestKind {
    /// The campaign's card to the person: the row's record.
    CampaignCard,
    /// The campaign's row of a key column: the row's record too.
    CampaignKey,
    /// The card to the person, by any campaign: the same card within a day.
    Card,
    /// The person, by any card: the cooldown.
    Recipient,
}

impl DigestKind {
    pub const ALL: [DigestKind; 4] = [
        DigestKind::CampaignCard,
        DigestKind::CampaignKey,
        DigestKind::Card,
        DigestKind::Recipient,
    ];

    /// Of two records of one digest of this kind, the one to keep: of the
    /// campaign's card, the surer; of a card or a person, the later.
    pub fn merged(self, held: Forgotten, new: Forgotten) -> Forgotten {
        match self {
            DigestKind::CampaignCard | DigestKind::CampaignKey => surer(held, new),
            DigestKind::Card | DigestKind::Recipient if new.left_at > held.left_at => new,
            DigestKind::Card | DigestKind::Recipient => held,
        }
    }
}

/// The digests a row of `campaign` (its key as `sends` keeps it, '' for the
/// default; its recipient and card phone) is found by among the forgotten,
/// in [`DigestKind::ALL`]'s order; '' where a row has none of a kind (no key
/// column).
pub(super) fn row_digests(
    secret: &Secret,
    campaign: &str,
    stored_key: &str,
    to: &str,
    card_phone: &str,
) -> [String; 4] {
    DigestKind::ALL.map(|kind| match kind {
        DigestKind::CampaignCard => secret.digest(&["campaign card", campaign, to, card_phone]),
        DigestKind::CampaignKey if stored_key.is_empty() => String::new(),
        DigestKind::CampaignKey => secret.digest(&["campaign key", campaign, stored_key]),
        DigestKind::Card => secret.digest(&["card", to, card_phone]),
        DigestKind::Recipient => secret.digest(&["recipient", to]),
    })
}

/// What the forgotten cards say of one row.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct ForgottenOf {
    /// The campaign's card of the row (by its card or its key).
    pub campaign: Option<Forgotten>,
    /// When the same card last went to the person, by any campaign.
    pub same_card_at: Option<i64>,
    /// When the person was last reached.
    pub reached_at: Option<i64>,
}

impl ForgottenOf {
    /// Adds what one digest of the row, of `kind`, found.
    pub fn found(&mut self, kind: DigestKind, found: Forgotten) {
        match kind {
            DigestKind::CampaignCard | DigestKind::CampaignKey => {
                self.campaign = Some(match self.campaign {
                    Some(held) => kind.merged(held, found),
                    None => found,
                })
            }
            DigestKind::Card => self.same_card_at = self.same_card_at.max(Some(found.left_at)),
            DigestKind::Recipient => self.reached_at = self.reached_at.max(Some(found.left_at)),
        }
    }
}

/// Adds what the digest at `at` found to its row's, the digests being each
/// row's [`row_digests`] in turn.
pub(super) fn found_by_digest(rows: &mut [ForgottenOf], at: usize, found: Forgotten) {
    let kinds = DigestKind::ALL.len();
    if let Some(row) = rows.get_mut(at / kinds) {
        row.found(DigestKind::ALL[at % kinds], found);
    }
}

/// Of two records of one card, the one surer that the card went (the
/// later, of two as sure).
fn surer(a: Forgotten, b: Forgotten) -> Forgotten {
    match surety(a.fate).cmp(&surety(b.fate)) {
        std::cmp::Ordering::Less => b,
        std::cmp::Ordering::Greater => a,
        std::cmp::Ordering::Equal if b.left_at > a.left_at => b,
        std::cmp::Ordering::Equal => a,
    }
}

/// A row of `sends` about to be forgotten.
#[derive(Debug, Clone)]
pub(super) struct Erased {
    pub campaign: String,
    /// As `sends` keeps it.
    pub stored_key: String,
    pub to: String,
    pub card_phone: String,
    pub fate: Fate,
    pub left_at: i64,
}

/// What the forgotten rows leave in `forgotten`: each digest once, with
/// what it stands for, and what to keep of it. A card refused (`FAILED`) leaves
/// nothing: a later run sends it, as it would have; only a card that went
/// (or may have) counts for the same card within a day and the cooldown.
pub(super) fn digests_of(
    secret: &Secret,
    erased: &[Erased],
) -> BTreeMap<String, (DigestKind, Forgotten)> {
    let mut kept: BTreeMap<String, (DigestKind, Forgotten)> = BTreeMap::new();
    for row in erased.iter().filter(|row| row.fate != Fate::Failed) {
        let digests = row_digests(
            secret,
            &row.campaign,
            &row.stored_key,
            &row.to,
            &row.card_phone,
        );
        let forgotten = Forgotten {
            fate: row.fate,
            left_at: row.left_at,
        };
        for (kind, digest) in DigestKind::ALL.into_iter().zip(digests) {
            let counts = match kind {
                DigestKind::CampaignCard | DigestKind::CampaignKey => !digest.is_empty(),
                DigestKind::Card | DigestKind::Recipient => row.fate.went(),
            };
            if counts {
                kept.entry(digest)
                    .and_modify(|(_, held)| *held = kind.merged(*held, forgotten))
                    .or_insert((kind, forgotten));
            }
        }
    }
    kept
}

/// What `ledger forget` did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Forgot {
    /// Each phone, with how many cards' records went.
    pub cards: Vec<(String, u64)>,
    /// What the store may still hold of them on disk, in words; `None`:
    /// nothing.
    pub remains: Option<String>,
}

/// How the ledger knows a phone asked to be forgotten.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PhoneUses {
    /// Cards sent to it.
    pub as_recipient: u64,
    /// Cards to others that carry it as the card's phone.
    pub on_cards: u64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret() -> Secret {
        Secret::from_hex(&"ab".repeat(32)).unwrap()
    }

    fn erased(campaign: &str, key: &str, fate: Fate, left_at: i64) -> Erased {
        Erased {
            campaign: campaign.into(),
            stored_key: key.into(),
            to: "5511987654321".into(),
            card_phone: "551130034000".into(),
            fate,
            left_at,
        }
    }

    #[test]
    fn a_secret_is_kept_as_hex_and_read_back() {
        let made = Secret::new().unwrap();
        let read = Secret::from_hex(&made.to_hex()).unwrap();
        assert_eq!(read.0, made.0);
        assert!(Secret::from_hex("abc").is_none());
        assert!(Secret::from_hex(&"zz".repeat(32)).is_none());
    }

    #[test]
    fn a_row_s_digests_name_no_phone_and_differ_by_what_they_stand_for() {
        let digests = row_digests(&secret(), "leads", "", "5511987654321", "551130034000");
        assert_eq!(digests[1], "", "no key column, no key digest");
        for digest in [&digests[0], &digests[2], &digests[3]] {
            assert_eq!(digest.len(), 32);
            assert!(!digest.contains("5511987654321"));
        }
        assert_ne!(digests[0], digests[2]);
        let other = row_digests(&secret(), "other", "", "5511987654321", "551130034000");
        assert_ne!(digests[0], other[0], "another campaign's card");
        assert_eq!(digests[2], other[2], "the same card to the same person");
        let keyed = Secret::from_hex(&"cd".repeat(32)).unwrap();
        let elsewhere = row_digests(&keyed, "leads", "", "5511987654321", "551130034000");
        assert_ne!(digests[0], elsewhere[0], "another ledger's secret");
    }

    #[test]
    fn what_is_kept_is_the_surest_of_each_digest_and_a_refused_card_leaves_nothing() {
        let rows = [
            erased("leads", "", Fate::Duplicate, 5),
            erased("leads", "", Fate::Sent, 3),
            erased("other", "", Fate::Failed, 9),
        ];
        let kept = digests_of(&secret(), &rows);
        let digests = row_digests(&secret(), "leads", "", "5511987654321", "551130034000");
        assert_eq!(
            kept[&digests[0]].1,
            Forgotten {
                fate: Fate::Sent,
                left_at: 3
            }
        );
        assert_eq!(
            kept[&digests[3]].1.left_at, 3,
            "only a card that went reached them"
        );
        let refused = row_digests(&secret(), "other", "", "5511987654321", "551130034000");
        assert!(!kept.contains_key(&refused[0]));
        assert_eq!(kept.len(), 3);
    }
}
