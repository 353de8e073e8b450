//! One name for one campaign, on both stores: a name typed and the same
//! name from a macOS file name (Unicode NFC and NFD) are one campaign. What
//! reached the server is counted.

use crate::common::{self, queued_per_recipient, Store};

on_both_stores!(a_name_typed_and_the_same_name_from_a_macos_file_name_are_one_campaign);

/// `promoção` as a macOS file name spells it (NFD: `c` + U+0327, `a` + U+0303).
const NFD: &str = "promoc\u{327}a\u{303}o";
/// `promoção` as it is typed (NFC).
const NFC: &str = "promo\u{e7}\u{e3}o";

/// A day and an hour later, for the binary's clock.
const NEXT_DAY: &str = "+25h";

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

    each_queued_once(&server, 3);
    let lines = work.results(&results);
    assert_eq!(common::count(&lines, "SENT"), 3, "{lines:?}");
}
