//! The campaign report page: the counts read back from the HTML (an HTML
//! parser, not string search) equal the results file's; both languages;
//! self-contained (no script, nothing fetched); a file it cannot read names
//! the line; and a real browser (Debian's chromium, headless) renders it to
//! a picture that is not blank.

use std::collections::HashMap;

use crate::common::{self, embedded, stderr, stdout, Config, Workspace};
use interacto_bulk::api::MockOptions;
use scraper::{Html, Selector};

/// A send with every kind of outcome: bad rows, failures, two numbers.
async fn a_sent_campaign(work: &Workspace) -> String {
    let server = embedded(MockOptions {
        failure_rate: 0.4,
        ..MockOptions::default()
    })
    .await;
    let mut campaign = common::campaign(120);
    campaign.push_str("(21) 3234-5,Bad,+55 11 3003-4000\n(21) 3222-1234,Loja,+55 11 3003-4000\n");
    work.write("campaign.csv", &campaign);
    let config = work.config(
        &Config::fast(&server.base_url())
            .unset("api.instance_id")
            .set("api.instances", "[\"inst-a\", \"inst-b\"]")
            .set("retry.max_attempts", "1")
            .set("retry.max_failure_ratio", "1.0"),
    );
    let output = work.send(&config, &["--report", "report.html"]).await;
    // A mock failing 4 in 10 leaves some of the 120 rows FAILED.
    assert_exit!(output, 1);
    config
}

fn page(work: &Workspace, name: &str) -> (String, Html) {
    let text = std::fs::read_to_string(work.path(name)).unwrap();
    let html = Html::parse_document(&text);
    (text, html)
}

/// Counts by status, as the results file has them.
fn counts(results: &[HashMap<String, String>]) -> HashMap<String, usize> {
    common::statuses(results)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_counts_what_the_results_file_holds() {
    let work = Workspace::new();
    a_sent_campaign(&work).await;
    let results = work.results("campaign.results.csv");
    let (text, html) = page(&work, "report.html");

    // The campaign's state: each status's count.
    let statuses = Selector::parse("#state-counts [data-status]").unwrap();
    let shown: HashMap<String, usize> = html
        .select(&statuses)
        .map(|status| {
            let name = status.value().attr("data-status").unwrap().to_string();
            let count = status
                .select(&Selector::parse("b").unwrap())
                .next()
                .unwrap()
                .inner_html();
            (name, count.parse().unwrap())
        })
        .collect();
    assert_eq!(shown, counts(&results));
    let rows = html
        .select(&Selector::parse("#rows").unwrap())
        .next()
        .unwrap()
        .inner_html();
    assert!(rows.starts_with(&results.len().to_string()), "{rows}");

    // Statuses by number: each cell, against the file's lines of that number.
    let numbers = Selector::parse("#by-number tr[data-instance]").unwrap();
    let cells = Selector::parse("td[data-status]").unwrap();
    let mut checked = 0;
    for number in html.select(&numbers) {
        let instance = number.value().attr("data-instance").unwrap();
        for cell in number.select(&cells) {
            let status = cell.value().attr("data-status").unwrap();
            let expected = results
                .iter()
                .filter(|line| line["instance_id"] == instance && line["status"] == status)
                .count();
            assert_eq!(
                cell.inner_html().parse::<usize>().unwrap(),
                expected,
                "{instance} {status}"
            );
            checked += 1;
        }
    }
    assert!(checked >= 4, "two numbers, SENT and FAILED each");

    // Self-contained: no script, nothing fetched.
    assert!(!text.contains("<script"), "no script");
    assert!(
        !text.contains("http://") && !text.contains("https://"),
        "nothing fetched"
    );
    assert!(text.len() < 2 << 20);
    // The failures, grouped, with their first rows.
    assert!(text.contains("FAILED — HTTP 500"), "{text}");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_page_speaks_portuguese_from_lang_or_the_flag() {
    let work = Workspace::new();
    let config = a_sent_campaign(&work).await;
    work.ok(&[
        "report",
        "campaign.results.csv",
        "--out",
        "pt.html",
        "--lang",
        "pt-BR",
        "--config",
        &config,
    ])
    .await;
    let (text, html) = page(&work, "pt.html");
    let root = html.root_element();
    assert_eq!(root.value().attr("lang"), Some("pt-BR"));
    assert!(
        text.contains("Situação da campanha") && text.contains("Status por número"),
        "{text}"
    );
    let output = work
        .run_with_env(
            &[
                "report",
                "campaign.results.csv",
                "--out",
                "lang.html",
                "--config",
                &config,
            ],
            &[("LANG", "pt_BR.UTF-8")],
        )
        .await;
    assert_exit!(output, 0);
    assert!(page(&work, "lang.html").0.contains("Relatório da campanha"));
    let output = work
        .run(&["report", "campaign.results.csv", "--config", &config])
        .await;
    common::assert_has(&stdout(&output), "campaign.results.html");
    assert!(page(&work, "campaign.results.html")
        .0
        .contains("Campaign report"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_file_it_cannot_read_is_named_with_its_line() {
    let work = Workspace::new();
    a_sent_campaign(&work).await;
    let mut text = std::fs::read_to_string(work.path("campaign.results.csv")).unwrap();
    text.push_str("campaign,notarow,k,1,a,b,i,SENT,,,,,,,,\n");
    work.write("broken.csv", &text);
    let output = work.fails(&["report", "broken.csv"], 2).await;
    let lines = text.lines().count();
    common::assert_has(
        &stderr(&output),
        &format!("broken.csv, line {lines}: `notarow` is not a row number"),
    );
    work.write("other.csv", "name,phone\nAna,1\n");
    work.refuses(&["report", "other.csv"], "not a results file")
        .await;
}

/// Debian's chromium, headless, renders the page to a PNG: not blank (more
/// than a handful of colours, and ink on a good share of its rows). At the
/// lowest priority (`nice`): a browser starting takes both cores for a
/// moment, and the tests that measure pacing at a server run beside it.
#[tokio::test(flavor = "multi_thread")]
async fn a_real_browser_renders_the_page() {
    let work = Workspace::new();
    a_sent_campaign(&work).await;
    let page = work.path("report.html");
    let shot = work.path("report.png");
    let output = work
        .sealed("/usr/bin/nice")
        .args([
            "-n",
            "19",
            "/usr/bin/chromium",
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            "--window-size=1000,1400",
            &format!("--screenshot={}", shot.display()),
            &format!("file://{}", page.display()),
        ])
        .output();
    let output = tokio::time::timeout(std::time::Duration::from_secs(60), output)
        .await
        .expect("chromium ends within a minute")
        .expect("chromium runs (.ci/run installs Debian's chromium)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut pixels = vec![0; reader.output_buffer_size().unwrap()];
    let info = reader.next_frame(&mut pixels).unwrap();
    let (width, height) = (info.width as usize, info.height as usize);
    let channels = info.line_size / width;
    let mut colours = std::collections::HashSet::new();
    let mut inked_rows = 0;
    for y in 0..height {
        let row = &pixels[y * info.line_size..(y + 1) * info.line_size];
        let mut inked = false;
        for pixel in row.chunks(channels) {
            colours.insert(pixel[..3].to_vec());
            inked |= pixel[..3].iter().any(|value| *value < 200);
        }
        inked_rows += usize::from(inked);
    }
    assert!(colours.len() > 20, "{} colours", colours.len());
    assert!(
        inked_rows > height / 10,
        "{inked_rows} of {height} rows have ink"
    );
}

/// When the runs ran, and why the one that hit the daily cap stopped.
#[tokio::test(flavor = "multi_thread")]
async fn the_runs_say_why_they_stopped() {
    let (_server, work, settings) = common::against(MockOptions::default()).await;
    work.write("campaign.csv", &common::campaign(5));
    let config = work.config(&settings.set("schedule.daily_cap", "2"));
    let output = work.send(&config, &["--report", "report.html"]).await;
    assert_exit!(output, 5);
    let (_, html) = page(&work, "report.html");
    let runs: Vec<String> = html
        .select(&Selector::parse("li").unwrap())
        .map(|run| run.text().collect())
        .collect();
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert!(
        runs[0].contains("rows held back: instance inst-1 reached its daily cap of 2 messages"),
        "{runs:?}"
    );

    // With the ledger named, the page says what it knows of the number now.
    let ledger = format!(
        "sqlite://{}",
        work.path("home/state/interacto-bulk/ledger.db").display()
    );
    work.ok(&[
        "numbers",
        "pause",
        "inst-1",
        "--reason",
        "a warning on the phone",
        "--ledger",
        &ledger,
    ])
    .await;
    work.ok(&[
        "report",
        "campaign.results.csv",
        "--out",
        "now.html",
        "--ledger",
        &ledger,
    ])
    .await;
    let (_, html) = page(&work, "now.html");
    let state = html
        .select(
            &Selector::parse("#numbers-now tr[data-instance=\"inst-1\"] td[data-state]").unwrap(),
        )
        .next()
        .expect("the number's row")
        .text()
        .collect::<String>();
    assert_eq!(state, "paused — a warning on the phone", "{state}");
}
