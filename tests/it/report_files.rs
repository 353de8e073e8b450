//! The report page never replaces what it must not: its own results file,
//! the campaign, another results or check file, or a file through a link;
//! `send --report` checks where the page goes before the first card goes,
//! and a page it could not write at the end makes the run exit 3.

use crate::common::{self, stderr, stdout, Workspace};
use interacto_bulk::api::MockServer;
use interacto_bulk::results::{Dialect, Kind};

/// A campaign of 3 rows not sent yet, and the mock it would go to: the
/// mock, the workspace and the config.
async fn a_campaign() -> (MockServer, Workspace, String) {
    let (server, work, config) = common::against_the_mock().await;
    work.write("campaign.csv", &common::campaign(3));
    (server, work, config)
}

/// [`a_campaign`] sent, all `SENT`: the mock, the workspace, the config,
/// and the results file as it was written.
async fn a_sent_campaign() -> (MockServer, Workspace, String, Vec<u8>) {
    let (server, work, config) = a_campaign().await;
    let output = work.send(&config, &[]).await;
    assert_exit!(output, 0);
    let results = std::fs::read(work.path("campaign.results.csv")).unwrap();
    (server, work, config, results)
}

fn bytes(work: &Workspace, name: &str) -> Vec<u8> {
    std::fs::read(work.path(name)).unwrap()
}

/// Asserts that `send --report page` was refused, saying `saying`, and
/// that no card reached the mock.
async fn refused_before_sending(
    (server, work, config): (&MockServer, &Workspace, &str),
    page: &str,
    saying: &str,
) {
    let output = work.send(config, &["--report", page]).await;
    common::assert_refused(&output, saying);
    common::assert_has(&stderr(&output), "nothing was sent");
    assert_eq!(server.requests(), 0, "nothing was sent (--report {page})");
}

/// A results file of `kind` in `dialect`, one line long, as another
/// campaign's run would leave it.
fn a_results_file(dialect: Dialect, kind: Kind) -> Vec<u8> {
    let line = "2,k,5511987650000,Loja,551130034000,inst-1,SENT,QUEUED,m1,201,1,1200,0,,\
                2026-12-07T21:09:00Z\n";
    let mut file = dialect.header(kind);
    let delimiter = char::from(dialect.delimiter()).to_string();
    file.extend_from_slice(format!("other,{line}").replace(',', &delimiter).as_bytes());
    file
}

#[tokio::test(flavor = "multi_thread")]
async fn report_never_writes_its_page_over_the_results_file_it_reads() {
    let (_server, work, config, results) = a_sent_campaign().await;

    for out in ["campaign.results.csv", "./campaign.results.csv"] {
        let output = work
            .refuses(
                &["report", "campaign.results.csv", "--out", out],
                "is the results file it reports on",
            )
            .await;
        common::assert_has(&stderr(&output), out);
        assert_eq!(bytes(&work, "campaign.results.csv"), results, "{out}");
    }
    // The results file still carries the campaign on.
    let output = work.send(&config, &["--resume"]).await;
    assert_exit!(output, 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn send_never_writes_its_report_over_its_results_file_and_sends_nothing() {
    let (server, work, config) = a_campaign().await;
    let run = (&server, &work, config.as_str());

    // The results file is not there yet: its name is enough, as are its
    // lock's and its journal's.
    let results_file = "is the results file it reports on";
    refused_before_sending(run, "campaign.results.csv", results_file).await;
    refused_before_sending(run, "./campaign.results.csv", results_file).await;
    for own in ["campaign.results.csv.lock", "campaign.results.csv.journal"] {
        refused_before_sending(run, own, "which a run on the results file").await;
    }
    let output = work
        .send(&config, &["--out", "out.csv", "--report", "out.csv"])
        .await;
    common::assert_refused(&output, results_file);
    assert_eq!(server.requests(), 0, "nothing was sent");
    assert!(!work.path("campaign.results.csv").exists());
    assert!(!work.path("out.csv").exists());

    // A results file there already: left as it was, and --resume goes on.
    let output = work.send(&config, &["--limit", "1"]).await;
    assert_exit!(output, 1);
    let results = bytes(&work, "campaign.results.csv");
    let output = work
        .send(&config, &["--resume", "--report", "campaign.results.csv"])
        .await;
    common::assert_refused(&output, results_file);
    assert_eq!(server.requests(), 1, "only the first run's row was sent");
    assert_eq!(bytes(&work, "campaign.results.csv"), results);
    let output = work.send(&config, &["--resume"]).await;
    assert_exit!(output, 0);
    assert_eq!(server.accepted(), 3);
}

#[tokio::test(flavor = "multi_thread")]
async fn send_never_writes_its_report_over_the_campaign_file_and_sends_nothing() {
    let (server, work, config) = a_campaign().await;
    let lead_list = bytes(&work, "campaign.csv");

    for page in ["campaign.csv", "./campaign.csv"] {
        let run = (&server, &work, config.as_str());
        refused_before_sending(run, page, "is the campaign file campaign.csv itself").await;
        assert_eq!(bytes(&work, "campaign.csv"), lead_list, "{page}");
    }
}

/// A symbolic link at `name` in `work` to `precious.txt`, which holds
/// `precious`; returns a check that the file is whole and the link still a
/// link.
fn a_link_to_a_precious_file<'a>(work: &'a Workspace, name: &str) -> impl Fn() + 'a {
    work.write("precious.txt", "precious\n");
    std::os::unix::fs::symlink("precious.txt", work.path(name)).unwrap();
    let name = name.to_string();
    move || {
        let precious = std::fs::read_to_string(work.path("precious.txt")).unwrap();
        assert_eq!(precious, "precious\n", "{name}");
        let link = std::fs::symlink_metadata(work.path(&name)).unwrap();
        assert!(link.is_symlink(), "{name}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn report_never_writes_its_page_through_a_link_named_or_at_its_default_name() {
    let (_server, work, _config, _) = a_sent_campaign().await;

    let left_alone = a_link_to_a_precious_file(&work, "page.html");
    let output = work
        .refuses(
            &["report", "campaign.results.csv", "--out", "page.html"],
            "is a symbolic link",
        )
        .await;
    common::assert_has(&stderr(&output), "page.html");
    left_alone();

    // At the default name, <results stem>.html.
    std::fs::remove_file(work.path("page.html")).unwrap();
    let left_alone = a_link_to_a_precious_file(&work, "campaign.results.html");
    let output = work
        .refuses(&["report", "campaign.results.csv"], "is a symbolic link")
        .await;
    common::assert_has(&stderr(&output), "campaign.results.html");
    left_alone();
}

#[tokio::test(flavor = "multi_thread")]
async fn send_with_a_report_at_a_link_is_refused_before_anything_is_sent() {
    let (server, work, config) = a_campaign().await;
    let left_alone = a_link_to_a_precious_file(&work, "page.html");

    let run = (&server, &work, config.as_str());
    refused_before_sending(run, "page.html", "is a symbolic link").await;
    left_alone();

    // A link to a folder that is not there is refused the same way.
    std::os::unix::fs::symlink("nowhere/x.html", work.path("dangling.html")).unwrap();
    refused_before_sending(run, "dangling.html", "is a symbolic link").await;
    assert!(!work.path("nowhere").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn send_with_a_report_in_a_missing_folder_is_refused_before_anything_is_sent() {
    let (server, work, config) = a_campaign().await;

    let run = (&server, &work, config.as_str());
    refused_before_sending(
        run,
        "missing-folder/x.html",
        "the folder missing-folder for the report missing-folder/x.html does not exist",
    )
    .await;
    assert!(!work.path("campaign.results.csv").exists());
    assert!(!work.path("missing-folder").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn report_never_replaces_a_results_rehearsal_or_check_file_of_any_campaign() {
    let (_server, work, _config, _) = a_sent_campaign().await;
    for dialect in [Dialect::Plain, Dialect::Excel] {
        for kind in [Kind::Send, Kind::Rehearsal, Kind::Check] {
            let other = a_results_file(dialect, kind);
            std::fs::write(work.path("other.csv"), &other).unwrap();
            let output = work
                .refuses(
                    &["report", "campaign.results.csv", "--out", "other.csv"],
                    &format!("is {} (its first line says so)", kind.describe()),
                )
                .await;
            common::assert_has(&stderr(&output), "other.csv");
            assert_eq!(bytes(&work, "other.csv"), other, "{dialect:?} {kind:?}");
        }
    }
    // A dry run's check file, as validate writes it.
    work.ok(&["validate", "campaign.csv"]).await;
    let check = bytes(&work, "campaign.check.csv");
    work.refuses(
        &[
            "report",
            "campaign.results.csv",
            "--out",
            "campaign.check.csv",
        ],
        "is the file of a dry run",
    )
    .await;
    assert_eq!(bytes(&work, "campaign.check.csv"), check);
}

#[tokio::test(flavor = "multi_thread")]
async fn send_never_writes_its_report_over_a_results_file_and_sends_nothing() {
    let (server, work, config) = a_campaign().await;
    let other = a_results_file(Dialect::Plain, Kind::Send);
    std::fs::write(work.path("last-week.results.csv"), &other).unwrap();

    let run = (&server, &work, config.as_str());
    let saying = "is the results file of a send (its first line says so)";
    refused_before_sending(run, "last-week.results.csv", saying).await;
    assert_eq!(bytes(&work, "last-week.results.csv"), other);
}

#[tokio::test(flavor = "multi_thread")]
async fn an_earlier_report_is_replaced_whole_and_never_written_through() {
    let (_server, work, _config, _) = a_sent_campaign().await;
    work.write(
        "campaign.results.html",
        "<!DOCTYPE html><p>last week's page</p>\n",
    );
    // A hard link to the earlier page (a copy kept, an attachment) keeps it.
    std::fs::hard_link(work.path("campaign.results.html"), work.path("kept.html")).unwrap();

    let output = work.ok(&["report", "campaign.results.csv"]).await;
    common::assert_has(&stdout(&output), "campaign.results.html");
    let page = std::fs::read_to_string(work.path("campaign.results.html")).unwrap();
    assert!(page.contains("Campaign report"), "{page}");
    let kept = std::fs::read_to_string(work.path("kept.html")).unwrap();
    assert_eq!(kept, "<!DOCTYPE html><p>last week's page</p>\n");
    // And again: the tool's own page is replaced each time.
    work.ok(&["report", "campaign.results.csv"]).await;
    assert!(!work.path(".campaign.results.html.new").exists());

    // Anything else at that name is not a page, and stays.
    work.write("notes.txt", "call Ana back\n");
    work.refuses(
        &["report", "campaign.results.csv", "--out", "notes.txt"],
        "is there and is not an HTML page",
    )
    .await;
    assert_eq!(bytes(&work, "notes.txt"), b"call Ana back\n");
}

/// A folder left at the name the page is first written to (`.<page>.new`)
/// keeps the page from being written once the cards went: the run says so
/// and exits 3, and the results file is whole.
#[tokio::test(flavor = "multi_thread")]
async fn a_report_that_cannot_be_written_at_the_end_makes_the_run_exit_3() {
    let (server, work, config) = a_campaign().await;
    std::fs::create_dir(work.path(".report.html.new")).unwrap();

    let output = work
        .send(&config, &["--report", "report.html", "--summary", "json"])
        .await;

    assert_exit!(output, 3);
    assert_eq!(server.accepted(), 3, "the cards went");
    common::assert_has(&stderr(&output), "cannot write the report report.html");
    let summary = common::summary_json(&output);
    assert_eq!(summary["exit_code"], 3);
    let error = summary["error"].as_str().unwrap();
    assert!(
        error.contains("cannot write the report report.html"),
        "{error}"
    );
    let next = summary["next_step"].as_str().unwrap();
    assert!(
        next.contains("interacto-bulk report campaign.results.csv --out report.html"),
        "{next}"
    );
    assert!(!work.path("report.html").exists());
    assert_eq!(
        common::count(&work.results("campaign.results.csv"), "SENT"),
        3
    );

    // The text summary says so too.
    std::fs::remove_dir_all(work.path(".report.html.new")).unwrap();
    std::fs::create_dir(work.path(".again.html.new")).unwrap();
    let output = work
        .send(&config, &["--resume", "--report", "again.html"])
        .await;
    assert_exit!(output, 3);
    common::assert_has(
        &stdout(&output),
        "ERROR: cannot write the report again.html",
    );
    common::assert_has(&stdout(&output), "the report was not written");
}
