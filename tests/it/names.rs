//! One name for one campaign, on both stores: a name typed and the same
//! name from a macOS file name (Unicode NFC and NFD), and a nightly export's
//! dated file names, are each one campaign; a ledger of the release before
//! keeps its campaigns' memory under the names in NFC, both forms of one
//! name merged. What reached the server is counted.

use crate::common::{self, queued_per_recipient, stderr, stdout, summary_json, Store};
use crate::keeping::FIXTURE_CAMPAIGN;
use interacto_bulk::api::MockOptions;

on_both_stores!(
    a_name_typed_and_the_same_name_from_a_macos_file_name_are_one_campaign,
    two_dated_exports_two_days_apart_are_one_campaign,
    the_release_before_s_campaign_named_in_nfd_is_the_one_typed_in_nfc,
    both_forms_of_a_name_in_a_ledger_merge_keeping_the_surer_record,
);

/// `promoção` as a macOS file name spells it (NFD: `c` + U+0327, `a` + U+0303).
const NFD: &str = "promoc\u{327}a\u{303}o";
/// `promoção` as it is typed (NFC).
const NFC: &str = "promo\u{e7}\u{e3}o";
/// `promoção` in neither form: `ç` composed, `ã` not.
const MIXED: &str = "promo\u{e7}a\u{303}o";

/// A day and an hour later, for the binary's clock.
const NEXT_DAY: &str = "+25h";

/// When the fixture's campaign first ran (`campaigns.first_run_at`), in
/// each store's fixture.
fn fixture_first_run(store: Store) -> i64 {
    match store {
        Store::Sqlite => 1_796_677_782_238_130_039,
        Store::Postgres => 1_796_677_798_893_823_297,
    }
}

/// A day and two hours after the fixture's cards went: past the day in which
/// the same card is held back as a repeat, so only the campaign's memory
/// keeps them from going again.
const AFTER_THE_FIXTURE_S_DAY: &str = "@2026-12-08 23:00:00";

/// Runs `sql` (statements, no results) in the ledger at `url`.
async fn execute(url: &str, sql: &str) {
    match url.strip_prefix("sqlite://") {
        Some(path) => rusqlite::Connection::open(path)
            .unwrap()
            .execute_batch(sql)
            .unwrap(),
        None => connect(url).await.batch_execute(sql).await.unwrap(),
    }
}

/// The rows `query` reads from the ledger at `url`, each column as text,
/// sorted (the stores order text differently).
async fn rows(url: &str, query: &str) -> Vec<Vec<String>> {
    let mut rows: Vec<Vec<String>> = match url.strip_prefix("sqlite://") {
        Some(path) => {
            let connection = rusqlite::Connection::open(path).unwrap();
            let mut statement = connection.prepare(query).unwrap();
            let columns = statement.column_count();
            statement
                .query_map([], |row| (0..columns).map(|at| row.get(at)).collect())
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap()
        }
        None => connect(url)
            .await
            .query(query, &[])
            .await
            .unwrap()
            .iter()
            .map(|row| (0..row.len()).map(|at| row.get(at)).collect())
            .collect(),
    };
    rows.sort();
    rows
}

async fn connect(url: &str) -> tokio_postgres::Client {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
}

/// Asserts every recipient was queued once, and `cards` cards in all.
fn each_queued_once(server: &interacto_bulk::api::MockServer, cards: usize) {
    let queued = queued_per_recipient(server);
    assert_eq!(queued.len(), cards, "{queued:?}");
    assert!(queued.values().all(|times| *times == 1), "{queued:?}");
    assert_eq!(server.accepted(), cards as u64, "{cards} cards, ever");
}

async fn a_name_typed_and_the_same_name_from_a_macos_file_name_are_one_campaign(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    let (file, results) = (format!("{NFD}.csv"), format!("{NFD}.results.csv"));
    work.write(&file, &common::campaign(3));
    work.write("x.csv", &common::campaign(3));

    let output = work.run(&["send", &file, "--config", &config]).await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 3);

    // The same rows, the name typed, into the same results file.
    let typed = [
        "send",
        "x.csv",
        "--config",
        &config,
        "--campaign",
        NFC,
        "--out",
        &results,
        "--resume",
    ];
    let output = work.run(&typed).await;
    assert_exit!(output, 0, "the name typed");
    let output = work.run_later(NEXT_DAY, &typed).await;
    assert_exit!(output, 0, "the name typed, the next day");
    let output = work
        .run_later(NEXT_DAY, &["send", &file, "--config", &config, "--resume"])
        .await;
    assert_exit!(output, 0, "the file again, the next day");
    // And typed into a results file of its own: the ledger alone
    // remembers, by the one name.
    let fresh = [
        "send",
        "x.csv",
        "--config",
        &config,
        "--campaign",
        NFC,
        "--out",
        "fresh.csv",
    ];
    let output = work.run_later(NEXT_DAY, &fresh).await;
    assert_exit!(output, 0, "the name typed, its own file, the next day");

    each_queued_once(&server, 3);
    let lines = work.results(&results);
    assert_eq!(common::count(&lines, "SENT"), 3, "{lines:?}");
}

async fn two_dated_exports_two_days_apart_are_one_campaign(store: Store) {
    let (server, work, settings) = common::on_store(store).await;
    let config = work.config(&settings);
    work.write("leads-2026-12-07.csv", &common::campaign(3));
    work.write("leads-2026-12-09.csv", &common::campaign(3));

    let output = work
        .run(&["send", "leads-2026-12-07.csv", "--config", &config])
        .await;
    assert_exit!(output, 0);
    let summary = stdout(&output);
    common::assert_has(&summary, "campaign `leads` complete");
    common::assert_has(
        &summary,
        "named after leads-2026-12-07.csv without its date; --campaign or campaign.name names it \
         otherwise",
    );

    let later = [
        "send",
        "leads-2026-12-09.csv",
        "--config",
        &config,
        "--summary",
        "json",
    ];
    let output = work.run_later("+49h", &later).await;
    assert_exit!(output, 0);
    each_queued_once(&server, 3);
    let log = stderr(&output);
    let starting = log
        .lines()
        .find(|line| line.contains(" starting "))
        .unwrap_or_else(|| panic!("no `starting` line: {log}"));
    common::assert_has(starting, "campaign=leads ");
    common::assert_has(starting, "leads-2026-12-09.csv without its date");
    assert!(!log.contains("ends in a date"), "no warning: {log}");
    let summary = summary_json(&output);
    assert_eq!(summary["campaign_name"], "leads", "{summary}");
    assert_eq!(summary["campaign_name_from"], "file_without_date");
    assert_eq!(summary["counts"]["SKIPPED"], 3, "{summary}");
    assert!(
        work.path("leads-2026-12-09.results.csv").exists(),
        "the results file is still the file's own"
    );
}

async fn the_release_before_s_campaign_named_in_nfd_is_the_one_typed_in_nfc(store: Store) {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let ledger = common::release_before(store, &work).await;
    let config = work.config(
        &settings
            .ledger(&ledger)
            .set("api.instance_id", "\"fixture-number\"")
            .set("schedule.daily_cap", "50"),
    );
    work.write("x.csv", FIXTURE_CAMPAIGN);

    let output = work
        .run_later(
            AFTER_THE_FIXTURE_S_DAY,
            &[
                "send",
                "x.csv",
                "--config",
                &config,
                "--campaign",
                NFC,
                "--summary",
                "json",
            ],
        )
        .await;

    assert_exit!(output, 0);
    assert_eq!(server.requests(), 0, "{}", stderr(&output));
    let summary = summary_json(&output);
    assert_eq!(summary["counts"]["SKIPPED"], 3, "{summary}");
    let names = rows(
        &ledger,
        "SELECT name FROM campaigns UNION SELECT campaign FROM sends",
    )
    .await;
    assert_eq!(names, [[NFC]]);
}

/// A row of `sends` as the release before wrote it, as SQL.
fn send_row(recipient: &str, campaign: &str, key: &str, fate: &str, message_id: &str) -> String {
    format!(
        "INSERT INTO sends (recipient, card_phone, campaign, key, fate, instance_id, message_id,
             api_status, http_status, attempts, left_at, finished_at)
         VALUES ('{recipient}', '551130034000', '{campaign}', '{key}', '{fate}', 'fixture-number',
             '{message_id}', '', NULL, 1, 1796677782000000000, 1796677782000000000);"
    )
}

async fn both_forms_of_a_name_in_a_ledger_merge_keeping_the_surer_record(store: Store) {
    let (_server, work, settings) = common::against(MockOptions::default()).await;
    let ledger = common::release_before(store, &work).await;
    // The fixture holds `promoção` in NFD, its three cards SENT; earlier
    // versions could write the other forms beside it.
    let first = fixture_first_run(store);
    let (r1, r3, r4, r5, r6) = (
        "5511987654321",
        "5531976543210",
        "5541900000004",
        "5541900000005",
        "5541900000006",
    );
    let mut sql = format!(
        "INSERT INTO campaigns (name, first_run_at) VALUES ('{NFC}', {}), ('{MIXED}', {}),
             ('leads', 7);",
        first + 5,
        first - 5
    );
    for (recipient, campaign, key, fate, id) in [
        (r1, NFC, "", "FAILED", "m-failed"),
        (r3, NFC, "k-3", "SENT", "m-other-key"),
        (r4, NFD, "", "FAILED", "m-4-failed"),
        (r4, NFC, "", "UNKNOWN", "m-4-unknown"),
        (r4, MIXED, "", "DUPLICATE", "m-4-duplicate"),
        (r5, NFD, "", "LEAVING", "m-5-leaving"),
        (r5, NFC, "", "DUPLICATE", "m-5-duplicate"),
        (r6, NFC, "", "FAILED", "m-6-failed"),
        (r6, NFD, "", "DUPLICATE", "m-6-duplicate"),
        (r1, "leads", "", "SENT", "m-leads"),
    ] {
        sql.push_str(&send_row(recipient, campaign, key, fate, id));
    }
    execute(&ledger, &sql).await;
    let config = work.config(&settings.ledger(&ledger));

    let output = work
        .run_with_env(&["ledger", "stats", "--config", &config], &[])
        .await;

    assert_exit!(output, 0);
    let campaigns = rows(
        &ledger,
        "SELECT name, CAST(first_run_at AS TEXT) FROM campaigns",
    )
    .await;
    let earliest = (first - 5).to_string();
    assert_eq!(
        campaigns,
        [["leads", "7"], [NFC, earliest.as_str()]],
        "one campaign, from the earliest first run of its forms"
    );
    let sends = rows(
        &ledger,
        "SELECT recipient, campaign, key, fate, message_id FROM sends",
    )
    .await;
    let fixture_id = |n: u8| match store {
        Store::Sqlite => format!("6b172094000000000000000{n}"),
        Store::Postgres => format!("6b1720a5000000000000000{n}"),
    };
    let (id1, id2, id3) = (fixture_id(0), fixture_id(1), fixture_id(2));
    let expected: Vec<[&str; 5]> = vec![
        [r1, "leads", "", "SENT", "m-leads"],
        [r1, NFC, "", "SENT", &id1],
        ["5521998765432", NFC, "", "SENT", &id2],
        [r3, NFC, "", "SENT", &id3],
        [r3, NFC, "k-3", "SENT", "m-other-key"],
        [r4, NFC, "", "UNKNOWN", "m-4-unknown"],
        [r5, NFC, "", "LEAVING", "m-5-leaving"],
        [r6, NFC, "", "DUPLICATE", "m-6-duplicate"],
    ];
    assert_eq!(sends, expected, "the surer record of each card kept");
}
