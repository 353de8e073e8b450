//! Property tests: arbitrary bytes and arbitrary rows never make the reader
//! or the validator panic, and every data row comes out exactly once.

use std::io::Write;

use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;

use interacto_bulk::campaign::phone::{self, Region};
use interacto_bulk::campaign::{Campaign, CampaignSettings, Source};
use interacto_bulk::pacing::PacingSettings;
use interacto_bulk::types::Row;

/// Seeds of cases that failed once; proptest runs them before new ones.
const REGRESSIONS: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/it/properties.proptest-regressions"
);

const HEADER: &str = "to,contact_name,contact_phone,delay,typing,priority,tags,metadata\n";

/// Every row the campaign yields, as (row number, was it a job).
fn read_all(bytes: &[u8]) -> Vec<(u64, bool)> {
    let mut file = tempfile::NamedTempFile::new().unwrap();
    file.write_all(bytes).unwrap();
    let campaign = Campaign::open(
        &Source::File(file.path().to_path_buf()),
        &CampaignSettings::default(),
        &PacingSettings::default(),
        None,
        true,
    )
    .expect("a file with a valid header opens");
    campaign
        .map(
            |row| match row.expect("reading a local file does not fail") {
                Row::Job(job) => {
                    assert!(
                        job.timing.delay >= 2.0 && job.timing.typing >= 3.0,
                        "floors hold"
                    );
                    (job.recipient.row, true)
                }
                Row::Rejected(rejected) => {
                    assert!(!rejected.error().is_empty(), "a rejected row says why");
                    (rejected.recipient.row, false)
                }
            },
        )
        .collect()
}

/// What the csv crate itself sees: records that are not blank, minus the header.
fn reference_count(bytes: &[u8]) -> usize {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(bytes);
    let mut record = csv::ByteRecord::new();
    let mut count = 0;
    while reader.read_byte_record(&mut record).unwrap() {
        if !record.iter().all(|field| field.trim_ascii().is_empty()) {
            count += 1;
        }
    }
    count - 1
}

fn any_field() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "[0-9 ()+.-]{0,20}",
        "\\PC{0,12}",
        Just(String::new()),
        Just("\"".to_string()),
        Just("a,b\r\nc".to_string()),
        Just("5.511987654321E+12".to_string()),
        Just("(11) 98765-4321".to_string()),
        Just("+55 11 3003-4000".to_string()),
        Just("[\"a\",1]".to_string()),
        Just("{\"k\": \"v\"}".to_string()),
        Just("2,5".to_string()),
        Just("-1".to_string()),
    ]
}

proptest! {
    // Cases that failed once are run again first, from the file beside this one.
    #![proptest_config(ProptestConfig {
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(REGRESSIONS))),
        ..ProptestConfig::default()
    })]

    #[test]
    fn arbitrary_bytes_after_a_header_never_panic_and_every_record_is_a_row(body in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let bytes = [HEADER.as_bytes(), &body].concat();
        let rows = read_all(&bytes);
        prop_assert_eq!(rows.len(), reference_count(&bytes));
        prop_assert!(rows.windows(2).all(|pair| pair[0].0 < pair[1].0), "row numbers rise: {:?}", rows);
    }

    #[test]
    fn arbitrary_rows_come_out_once_each_with_their_spreadsheet_number(
        records in proptest::collection::vec(proptest::collection::vec(any_field(), 8), 0..30)
    ) {
        let mut writer = csv::Writer::from_writer(Vec::new());
        writer.write_record(HEADER.trim_end().split(',')).unwrap();
        for record in &records {
            writer.write_record(record).unwrap();
        }
        let bytes = writer.into_inner().unwrap();

        let rows: Vec<u64> = read_all(&bytes).into_iter().map(|(row, _)| row).collect();

        let expected: Vec<u64> = records
            .iter()
            .enumerate()
            .filter(|(_, record)| !record.iter().all(|field| field.as_bytes().trim_ascii().is_empty()))
            .map(|(index, _)| index as u64 + 2)
            .collect();
        prop_assert_eq!(rows, expected);
    }

    #[test]
    fn a_normalised_phone_always_meets_the_api_pattern(raw in any_field()) {
        if let Ok(e164) = phone::normalize(&raw, Region::BR).map(|phone| phone.digits) {
            prop_assert!((8..=15).contains(&e164.len()), "{}", e164);
            prop_assert!(!e164.starts_with('0'), "{}", e164);
            prop_assert!(e164.bytes().all(|byte| byte.is_ascii_digit()), "{}", e164);
        }
    }
}

#[test]
fn the_saved_failure_cases_are_where_proptest_reads_them() {
    let saved = std::fs::read_to_string(REGRESSIONS).expect("the regressions file is there");
    assert!(
        saved.lines().any(|line| line.starts_with("cc ")),
        "it holds at least one saved case"
    );
}
