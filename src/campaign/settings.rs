//! `[campaign]`: how to read the campaign file and what its columns are.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::fields::{clean_name, Card};
use super::input::{DelimiterChoice, EncodingChoice};
use super::phone::{self, Region};
use super::Column;
use crate::setting::{self, invalid, InvalidSetting};

/// `[campaign]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignSettings {
    /// What the campaign's memory in the ledger goes by; `None`: the
    /// campaign file's name without its extension and a date it ends in.
    #[serde(deserialize_with = "setting::non_blank")]
    pub name: Option<String>,
    /// The country of numbers written without a country code.
    #[serde(deserialize_with = "region")]
    pub default_region: Region,
    /// The only countries recipients may be in; empty: any.
    #[serde(deserialize_with = "regions")]
    pub countries: Vec<Region>,
    /// The card every row sends, unless its own columns say otherwise.
    pub card: Option<CardSettings>,
    #[serde(deserialize_with = "setting::from_text")]
    pub encoding: EncodingChoice,
    #[serde(deserialize_with = "setting::from_text")]
    pub delimiter: DelimiterChoice,
    /// A column whose value identifies a job across runs, instead of `to:contact_phone`.
    #[serde(deserialize_with = "setting::non_blank")]
    pub key_column: Option<String>,
    /// Canonical column -> the header the campaign file uses for it.
    pub columns: BTreeMap<String, String>,
}

impl Default for CampaignSettings {
    fn default() -> Self {
        CampaignSettings {
            name: None,
            default_region: Region::BR,
            countries: Vec::new(),
            card: None,
            encoding: EncodingChoice::Auto,
            delimiter: DelimiterChoice::Auto,
            key_column: None,
            columns: BTreeMap::new(),
        }
    }
}

/// `[campaign.card]`: the contact card sent to every row, as most campaigns
/// send the business's own card to each lead.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CardSettings {
    pub name: String,
    pub phone: String,
}

impl CampaignSettings {
    pub fn check(&self) -> Result<(), InvalidSetting> {
        if let Some(name) = &self.name {
            super::check_name(name).map_err(|problem| invalid("campaign.name", problem))?;
        }
        self.card()?;
        self.column_mapping().map(drop)
    }

    /// `[campaign.card]` checked by the rules of the columns it stands for.
    pub fn card(&self) -> Result<Option<Card>, InvalidSetting> {
        let Some(card) = &self.card else {
            return Ok(None);
        };
        let name = clean_name(&card.name)
            .map_err(|problem| invalid("campaign.card.name", problem.message))?;
        let phone = phone::normalize(&card.phone, self.default_region)
            .map_err(|error| invalid("campaign.card.phone", error.to_string()))?;
        Ok(Some(Card {
            name,
            phone: phone.digits,
        }))
    }

    /// `[campaign.columns]` as header -> the column it holds.
    pub fn column_mapping(&self) -> Result<Vec<(String, Column)>, InvalidSetting> {
        self.columns
            .iter()
            .map(|(canonical, header)| {
                let key = format!("campaign.columns.{canonical}");
                let column = Column::from_name(canonical).ok_or_else(|| {
                    invalid(
                        &key,
                        format!(
                            "`{canonical}` is not a campaign column; use one of {}",
                            Column::CONFIG_KEYS
                        ),
                    )
                })?;
                if header.trim().is_empty() {
                    return Err(invalid(&key, "the header name is empty"));
                }
                Ok((header.clone(), column))
            })
            .collect()
    }
}

/// A two-letter ISO country code, in either case.
fn region<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Region, D::Error> {
    region_of(&String::deserialize(deserializer)?).map_err(serde::de::Error::custom)
}

/// A list of them, not empty (leaving the key out allows every country).
fn regions<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Region>, D::Error> {
    let codes = Vec::<String>::deserialize(deserializer)?;
    if codes.is_empty() {
        return Err(serde::de::Error::custom(
            "an empty list allows no country; leave campaign.countries out to allow every country",
        ));
    }
    codes
        .iter()
        .map(|code| region_of(code))
        .collect::<Result<_, _>>()
        .map_err(serde::de::Error::custom)
}

fn region_of(code: &str) -> Result<Region, String> {
    phone::region_named(code)
        .ok_or_else(|| format!("`{code}` is not a country's two-letter ISO code (like BR or PT)"))
}
