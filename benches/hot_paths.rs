//! Criterion benches for the in-process work every row pays for: phone
//! normalisation, reading and checking a campaign, and writing results lines.
//! `benches/run.sh` measures the whole binary against wrk and curl; these
//! say which part of a row's cost moved.
//!
//!     cargo bench --bench hot_paths

use std::hint::black_box;
use std::io::Write;

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use interacto_bulk::campaign::{phone, Campaign, CampaignSettings, Source};
use interacto_bulk::pacing::PacingSettings;
use interacto_bulk::results::{line_writer, Dialect, LineFormat};
use interacto_bulk::types::{Outcome, Row, Status};

/// Phones as Brazilian exports write them, each one distinct, as in `gen_campaign.py`.
fn messy_phones(count: usize) -> Vec<String> {
    const AREAS: [u32; 10] = [11, 21, 31, 41, 51, 61, 71, 81, 85, 19];
    (0..count)
        .map(|index| {
            let area = AREAS[index % AREAS.len()];
            let number = format!("{index:08}");
            let (head, tail) = number.split_at(4);
            match index % 5 {
                0 => format!("({area}) 9{head}-{tail}"),
                1 => format!("+55 {area} 9{head}-{tail}"),
                2 => format!("55{area}9{number}"),
                3 => format!("0{area} 9{head} {tail}"),
                _ => format!("{area}.9{head}.{tail}"),
            }
        })
        .collect()
}

fn campaign_file(rows: usize) -> tempfile::NamedTempFile {
    let mut file = tempfile::NamedTempFile::new().expect("a temporary file");
    writeln!(
        file,
        "to,contact_name,contact_phone,delay,typing,tags,metadata.leadId"
    )
    .unwrap();
    for (index, to) in messy_phones(rows).iter().enumerate() {
        writeln!(
            file,
            "{to},Pessoa {index},+55 11 3003-4000,3,,lead|sp,L-{index}"
        )
        .unwrap();
    }
    file.flush().unwrap();
    file
}

fn phones(c: &mut Criterion) {
    let phones = messy_phones(1_000);
    let region = phone::Region::BR;
    let mut group = c.benchmark_group("phone");
    group.throughput(Throughput::Elements(phones.len() as u64));
    group.bench_function("normalize 1000 distinct messy BR phones", |b| {
        b.iter(|| {
            for raw in &phones {
                black_box(phone::normalize(raw, region).unwrap());
            }
        })
    });
    group.finish();
}

fn campaign(c: &mut Criterion) {
    const ROWS: usize = 10_000;
    let file = campaign_file(ROWS);
    let source = Source::File(file.path().to_path_buf());
    let (settings, pacing) = (CampaignSettings::default(), PacingSettings::default());
    let mut group = c.benchmark_group("campaign");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.sample_size(20);
    group.bench_function("read and check 10k rows", |b| {
        b.iter(|| {
            let campaign = Campaign::open(&source, &settings, &pacing, None, true).unwrap();
            let jobs = campaign
                .map(|row| matches!(row.unwrap(), Row::Job(_)))
                .filter(|&job| job)
                .count();
            assert_eq!(jobs, ROWS);
        })
    });
    group.finish();
}

fn results_lines(c: &mut Criterion) {
    const ROWS: usize = 10_000;
    let file = campaign_file(ROWS);
    let source = Source::File(file.path().to_path_buf());
    let jobs: Vec<_> = Campaign::open(
        &source,
        &CampaignSettings::default(),
        &PacingSettings::default(),
        None,
        true,
    )
    .unwrap()
    .filter_map(|row| match row.unwrap() {
        Row::Job(job) => Some(job),
        Row::Rejected(_) => None,
    })
    .collect();
    let mut group = c.benchmark_group("results");
    group.throughput(Throughput::Elements(ROWS as u64));
    group.bench_function("write 10k VALID lines", |b| {
        b.iter_batched_ref(
            || {
                let writer = line_writer(Vec::with_capacity(ROWS * 128), Dialect::Plain);
                (writer, LineFormat::new(Dialect::Plain, "bench", &[], &[]))
            },
            |(writer, lines)| {
                for job in &jobs {
                    let outcome =
                        Outcome::for_job(job, "instance-a", Status::Valid, jiff::Timestamp::now());
                    lines.write(&outcome, writer).unwrap();
                }
            },
            BatchSize::LargeInput,
        )
    });
    group.finish();
}

criterion_group!(benches, phones, campaign, results_lines);
criterion_main!(benches);
