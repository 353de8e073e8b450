//! `[campaign]`: how to read the campaign file and what its columns are.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use super::input::{DelimiterChoice, EncodingChoice};
use super::phone::Region;
use super::Column;
use crate::setting::{self, invalid, InvalidSetting};

/// `[campaign]`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct CampaignSettings {
    /// The country of numbers written without a country code.
    #[serde(deserialize_with = "region")]
    pub default_region: Region,
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
            default_region: Region::BR,
            encoding: EncodingChoice::Auto,
            delimiter: DelimiterChoice::Auto,
            key_column: None,
            columns: BTreeMap::new(),
        }
    }
}

impl CampaignSettings {
    pub fn check(&self) -> Result<(), InvalidSetting> {
        self.column_mapping().map(drop)
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
    let code = String::deserialize(deserializer)?;
    code.trim().to_ascii_uppercase().parse().map_err(|_| {
        serde::de::Error::custom(format!("`{code}` is not a two-letter ISO country code"))
    })
}
