//! Arbitrary bytes as a campaign file, read to the end: every row checked
//! (phones, names, numbers, tags, JSON), nothing may panic, and every row
//! comes out once, in order. The first byte picks a header, so that the
//! field checks see fields behind a valid header most of the time.
#![no_main]

use std::io::Write;

use libfuzzer_sys::fuzz_target;

use interacto_bulk::campaign::{Campaign, CampaignSettings, Source};
use interacto_bulk::pacing::PacingSettings;
use interacto_bulk::types::Row;

const HEADERS: [&[u8]; 3] = [
    b"to,contact_name,contact_phone,delay,typing,priority,tags,metadata,metadata.city\n",
    b"id;telefone;nome;fone\n",
    b"",
];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, body)) = data.split_first() else {
        return;
    };
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    file.write_all(HEADERS[usize::from(pick) % HEADERS.len()])
        .unwrap();
    file.write_all(body).unwrap();
    let mut settings = CampaignSettings::default();
    if pick % 2 == 1 {
        settings.key_column = Some("id".to_string());
        settings.columns.extend([
            ("to".into(), "telefone".into()),
            ("contact_name".into(), "nome".into()),
            ("contact_phone".into(), "fone".into()),
        ]);
    }
    let source = Source::File(file.path().to_path_buf());
    let Ok(campaign) = Campaign::open(&source, &settings, &PacingSettings::default(), None, true) else {
        return;
    };
    let mut last_row = 0;
    for row in campaign {
        let Ok(row) = row else { return };
        let number = match &row {
            Row::Job(job) => {
                assert!(
                    job.timing.delay >= 2.0 && job.timing.typing >= 3.0,
                    "the floors hold"
                );
                job.recipient.row
            }
            Row::Rejected(rejected) => {
                assert!(!rejected.error().is_empty(), "a rejected row says why");
                rejected.recipient.row
            }
        };
        assert!(number > last_row, "rows come out once, in order");
        last_row = number;
    }
});
