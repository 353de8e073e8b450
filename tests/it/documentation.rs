//! The documentation agrees with the code: every settings key, read from
//! the settings types themselves, is in `config.example.toml` and the
//! README's table, with the defaults the types give.

use std::collections::BTreeMap;
use std::path::Path;

use serde::de::{self, Deserialize, Deserializer, Visitor};

use crate::cli::repo;
use interacto_bulk::api::ApiSettings;
use interacto_bulk::campaign::CampaignSettings;
use interacto_bulk::config::{Environment, Overrides, Settings};
use interacto_bulk::ledger::LedgerSettings;
use interacto_bulk::pacing::PacingSettings;
use interacto_bulk::results::ResultsSettings;
use interacto_bulk::retry::RetrySettings;
use interacto_bulk::schedule::ScheduleSettings;

/// The field names of a settings type, as serde reads them from a file.
fn keys_of<T: for<'de> Deserialize<'de>>() -> &'static [&'static str] {
    let mut keys: &'static [&'static str] = &[];
    let _ = T::deserialize(FieldNames(&mut keys));
    keys
}

/// A deserializer that only notes the fields a struct asks for.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("not a struct"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        Err(de::Error::custom("the fields are noted"))
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes
        byte_buf option unit unit_struct newtype_struct seq tuple tuple_struct map
        enum identifier ignored_any
    }
}

/// Every `section.key` of the config file, from the types.
fn every_key() -> Vec<String> {
    let sections: [(&str, &[&str]); 7] = [
        ("api", keys_of::<ApiSettings>()),
        ("pacing", keys_of::<PacingSettings>()),
        ("campaign", keys_of::<CampaignSettings>()),
        ("retry", keys_of::<RetrySettings>()),
        ("schedule", keys_of::<ScheduleSettings>()),
        ("ledger", keys_of::<LedgerSettings>()),
        ("results", keys_of::<ResultsSettings>()),
    ];
    let names: Vec<&str> = sections.iter().map(|(name, _)| *name).collect();
    assert_eq!(names, keys_of::<Settings>(), "every section is listed here");
    sections
        .iter()
        .flat_map(|(section, keys)| keys.iter().map(move |key| format!("{section}.{key}")))
        .collect()
}

/// `section.key` -> (the value as written, whether it is set or commented
/// out), from the example config. A table header such as
/// `[campaign.columns]` documents the key `campaign.columns`.
fn example_keys(text: &str) -> BTreeMap<String, (String, bool)> {
    let mut keys = BTreeMap::new();
    let mut section = String::new();
    for line in text.lines() {
        if let Some(table) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            section = table.split('.').next().unwrap().to_string();
            keys.insert(table.to_string(), (String::new(), false));
            continue;
        }
        let active = !line.starts_with('#');
        let line = line.trim_start_matches('#').trim();
        if let Some((key, value)) = line.split_once(" = ") {
            if key.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                let value = value.trim().to_string();
                keys.entry(format!("{section}.{key}"))
                    .or_insert((value, active));
            }
        }
    }
    keys
}

/// `section.key` -> its default as the README's configuration table gives it.
fn readme_defaults(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|line| {
            let cells: Vec<&str> = line.split(" | ").collect();
            let key = cells.first()?.strip_prefix("| `")?.strip_suffix('`')?;
            let default = cells.get(1)?.trim_matches('`');
            Some((key.to_string(), default.to_string()))
        })
        .collect()
}

#[test]
fn the_example_config_is_the_defaults_and_shows_every_key() {
    let path = repo("config.example.toml");
    let settings = Settings::load(
        Some(Path::new(&path)),
        Environment::default(),
        Overrides::default(),
    )
    .expect("config.example.toml is a valid config");
    assert_eq!(
        Settings {
            read_from: None,
            ..settings
        },
        Settings::default()
            .resolve(Environment::default(), Overrides::default())
            .unwrap(),
        "every value config.example.toml sets is the default"
    );
    let example = example_keys(&std::fs::read_to_string(path).unwrap());
    for key in every_key() {
        assert!(
            example.contains_key(&key),
            "config.example.toml does not show `{key}`"
        );
    }
}

#[test]
fn the_readme_lists_every_key_with_the_example_configs_default() {
    let readme = readme_defaults(&std::fs::read_to_string(repo("README.md")).unwrap());
    let example = example_keys(&std::fs::read_to_string(repo("config.example.toml")).unwrap());
    for key in every_key() {
        let documented = readme
            .get(&key)
            .unwrap_or_else(|| panic!("the README's configuration table lacks `{key}`"));
        if let Some((value, true)) = example.get(&key) {
            assert_eq!(
                documented, value,
                "`{key}`: the README's default differs from config.example.toml"
            );
        }
    }
}
