//! Opt-out lists as people export them: every phone in them reaches the
//! suppression list, or the row is named with why it did not.

use crate::common::{self, stderr, stdout, Config, Workspace};
use interacto_bulk::api::MockOptions;

/// Runs `suppress ARGS… --config CONFIG` in `work`, starting the ledger
/// if it is new.
async fn suppress(work: &Workspace, config: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["suppress"];
    all.extend_from_slice(args);
    all.extend(["--create", "--config", config]);
    work.run_with_env(&all, &[]).await
}

#[tokio::test(flavor = "multi_thread")]
async fn an_excel_export_from_brazil_is_read_and_its_people_never_get_the_card() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let url = work.fresh_ledger("ledger");
    let config = work.config(&settings.ledger(&url));
    // Excel's "CSV" in Brazil: Windows-1252, `;`, CRLF, accents in the names.
    let list = b"Nome;Telefone;Motivo\r\nJos\xe9 Ara\xfajo;85960497465;n\xe3o quer\r\nMaria;(11) 98765-4321;sair\r\n";
    std::fs::write(work.path("optouts.csv"), list).unwrap();

    let output = suppress(&work, &config, &["import", "optouts.csv"]).await;

    assert_exit!(output, 0, "{}", stdout(&output));
    common::assert_has(&stdout(&output), "2 added");
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone\n(85) 96049-7465,Loja,+55 11 3003-4000\n+55 11 98765-4321,Loja,+55 11 3003-4000\n(21) 99876-5432,Loja,+55 11 3003-4000\n",
    );
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);
    let results = work.results("campaign.results.csv");
    assert_eq!(common::count(&results, "SUPPRESSED"), 2, "{results:?}");
    assert_eq!(server.accepted(), 1, "only the one who did not opt out");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_of_numbers_without_a_header_keeps_its_first_number() {
    let work = Workspace::new();
    let url = work.fresh_ledger("ledger");
    let config = work.config(&Config::fast("http://127.0.0.1:9").ledger(&url));
    work.write("numbers.csv", "11987654321\n21998765432\n31976543210\n");

    let output = suppress(&work, &config, &["import", "numbers.csv"]).await;

    assert_exit!(output, 0, "{}", stdout(&output));
    common::assert_has(&stdout(&output), "3 added");
    let listed = stdout(&suppress(&work, &config, &["list"]).await);
    assert!(
        listed.contains("5511987654321,"),
        "the first number: {listed}"
    );
    // A single column whose first line is a title is still a header.
    work.write("titled.csv", "Números\n41988887777\n");
    let output = suppress(&work, &config, &["import", "titled.csv"]).await;
    assert_exit!(output, 0, "{}", stdout(&output));
    common::assert_has(&stdout(&output), "1 added");
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_not_imported_are_named_with_why_and_the_import_exits_1() {
    let work = Workspace::new();
    let url = work.fresh_ledger("ledger");
    let config = work.config(&Config::fast("http://127.0.0.1:9").ledger(&url));
    work.write(
        "optouts.csv",
        "phone,reason\n11987654321,ok\n,empty one\nnot a phone,x\n12,too short\n",
    );

    let output = suppress(&work, &config, &["import", "optouts.csv"]).await;

    assert_exit!(output, 1, "{}", stdout(&output));
    let said = stdout(&output);
    assert!(said.contains("1 added"), "{said}");
    assert!(said.contains("3 rows not imported"), "{said}");
    assert!(said.contains("row 3: empty"), "{said}");
    assert!(said.contains("row 4: \"not a phone\""), "{said}");
    assert!(said.contains("row 5: \"12\""), "{said}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_list_that_is_a_fifo_or_a_device_is_refused_at_once() {
    let work = Workspace::new();
    let url = work.fresh_ledger("ledger");
    let config = work.config(&Config::fast("http://127.0.0.1:9").ledger(&url));
    let fifo = work.path("optouts.fifo");
    assert!(std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap()
        .success());
    let fifo = fifo.display().to_string();
    for list in [fifo.as_str(), "/dev/zero"] {
        let started = std::time::Instant::now();
        let output = suppress(&work, &config, &["import", list]).await;
        assert_exit!(output, 2, "{list}");
        common::assert_has(&stderr(&output), "not a regular file");
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }
}
