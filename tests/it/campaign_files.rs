//! Awkward campaign files (tests/corpus) through `validate`: the exact status
//! and error of every row, and that nothing panics.

use std::path::Path;

use crate::common::{line, stderr, stdout, Workspace};

fn corpus(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/corpus")
        .join(name)
        .display()
        .to_string()
}

/// Validates `file` and checks each expected `(row, status, start of error)`.
async fn expect_rows(
    file: &str,
    extra: &[&str],
    exit: i32,
    expected: &[(u64, &str, &str)],
) -> Workspace {
    let work = Workspace::new();
    let mut args = vec![
        "validate".to_string(),
        corpus(file),
        "--out".into(),
        "out.csv".into(),
    ];
    args.extend(extra.iter().map(|arg| arg.to_string()));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();

    let output = work.run(&args).await;

    assert_exit!(output, exit, "{file}: {}", stdout(&output));
    let results = work.results("out.csv");
    assert_eq!(
        results.len(),
        expected.len(),
        "{file}: one line per data row"
    );
    for (row, status, error) in expected {
        let line = line(&results, *row);
        assert_eq!(
            line["status"], *status,
            "{file} row {row}: {}",
            line["error"]
        );
        assert!(
            line["error"].starts_with(error),
            "{file} row {row}: {}",
            line["error"]
        );
    }
    work
}

#[tokio::test(flavor = "multi_thread")]
async fn utf8_with_a_byte_order_mark() {
    let work = expect_rows(
        "utf8-bom.csv",
        &[],
        0,
        &[(2, "VALID", ""), (3, "VALID", "")],
    )
    .await;
    assert_eq!(
        line(&work.results("out.csv"), 2)["contact_name"],
        "João Conceição"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn windows_1252_with_semicolons_crlf_and_decimal_commas_is_detected() {
    let work = Workspace::new();
    let config = work.write(
        "pt.toml",
        "[campaign.columns]\nto = \"telefone\"\ncontact_name = \"nome\"\n",
    );
    let output = work
        .ok(&[
            "validate",
            &corpus("windows-1252-semicolon-crlf.csv"),
            "--out",
            "out.csv",
            "--config",
            config.to_str().unwrap(),
        ])
        .await;
    assert!(
        stderr(&output).contains("Windows-1252"),
        "a log line says so: {}",
        stderr(&output)
    );
    crate::common::assert_has(&stdout(&output), "windows-1252, `;`-separated");
    let results = work.results("out.csv");
    assert_eq!(line(&results, 2)["contact_name"], "João Conceição");
    assert_eq!(line(&results, 2)["delay"], "2.5");
    assert_eq!(line(&results, 3)["contact_name"], "Ana Lúcia € Cia");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_encoding_can_be_set_instead_of_detected() {
    let work = Workspace::new();
    let config = work.write(
        "utf8.toml",
        "[campaign]\nencoding = \"utf-8\"\ndelimiter = \";\"\n[campaign.columns]\nto = \"telefone\"\ncontact_name = \"nome\"\n",
    );
    work.fails(
        &[
            "validate",
            &corpus("windows-1252-semicolon-crlf.csv"),
            "--out",
            "out.csv",
            "--config",
            config.to_str().unwrap(),
        ],
        1,
    )
    .await;
    let results = work.results("out.csv");
    assert_eq!(line(&results, 2)["status"], "INVALID");
    assert!(
        line(&results, 2)["error"].contains("windows-1252"),
        "the error says what to set"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn excel_unicode_text_is_utf16_with_tabs() {
    let work = expect_rows(
        "excel-unicode-text.txt",
        &[],
        0,
        &[(2, "VALID", ""), (3, "VALID", "")],
    )
    .await;
    assert_eq!(
        line(&work.results("out.csv"), 3)["contact_name"],
        "Åsa Øberg"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tab_separated() {
    expect_rows(
        "tab-separated.tsv",
        &[],
        1,
        &[
            (2, "VALID", ""),
            (3, "INVALID", "priority: `high` is not a whole number"),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn quoted_fields_blank_lines_and_empty_rows_keep_spreadsheet_row_numbers() {
    let work = expect_rows(
        "quoted-and-blank-lines.csv",
        &[],
        1,
        &[
            (2, "INVALID", "metadata: not valid JSON"),
            (4, "VALID", ""),
            (6, "VALID", ""),
            (7, "INVALID", "to: `12345` is too short for BR"),
        ],
    )
    .await;
    let results = work.results("out.csv");
    assert_eq!(line(&results, 2)["contact_name"], "Souza, Ana");
    assert_eq!(line(&results, 4)["contact_name"], "Bia \"the boss\"");
    assert_eq!(line(&results, 6)["contact_name"], "Caio Second line");
}

#[tokio::test(flavor = "multi_thread")]
async fn rows_with_too_many_or_too_few_fields_name_their_line() {
    expect_rows(
        "ragged-rows.csv",
        &[],
        1,
        &[
            (
                2,
                "INVALID",
                "line 2: the row has 5 fields, the header has 3",
            ),
            (
                3,
                "INVALID",
                "line 3: the row has 2 fields, the header has 3",
            ),
            (4, "VALID", ""),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn invalid_utf8_inside_a_utf8_file_spoils_only_its_row() {
    expect_rows(
        "broken-utf8.csv",
        &[],
        1,
        &[
            (2, "VALID", ""),
            (3, "VALID", ""),
            (4, "INVALID", "contact_name: is not valid UTF-8 text"),
            (5, "VALID", ""),
        ],
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn emoji_names_pass_and_control_characters_go() {
    let work = expect_rows(
        "emoji-names.csv",
        &[],
        0,
        &[(2, "VALID", ""), (3, "VALID", ""), (4, "VALID", "")],
    )
    .await;
    let results = work.results("out.csv");
    assert_eq!(line(&results, 2)["contact_name"], "Ana 🌻 Souza");
    assert_eq!(line(&results, 3)["contact_name"], "👩‍💻");
    assert_eq!(line(&results, 4)["contact_name"], "Bia");
}

#[tokio::test(flavor = "multi_thread")]
async fn phone_numbers_follow_libphonenumber() {
    let work = expect_rows(
        "phones.csv",
        &[],
        1,
        &[
            (
                2,
                "INVALID",
                "to: `5.511987654321E+12` looks like a number in scientific notation",
            ),
            (
                3,
                "INVALID",
                "to: `(11) 8765-4321` is not a valid BR number",
            ),
            (4, "VALID", ""),
            (5, "VALID", ""),
            (6, "INVALID", "to: `11 98765-4321 ramal 2` contains `r`"),
            (
                7,
                "INVALID",
                "contact_phone: `+55 11 1234` is too short for BR",
            ),
        ],
    )
    .await;
    let results = work.results("out.csv");
    assert_eq!(line(&results, 4)["to"], "442079460958");
    assert_eq!(line(&results, 5)["to"], "5511987654321");
    assert!(line(&results, 3)["error"].contains("BR mobiles have 9 digits"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_header_only_file_has_no_rows_and_succeeds() {
    expect_rows("header-only.csv", &[], 0, &[]).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn an_empty_file_is_an_input_error() {
    let work = Workspace::new();
    work.refuses(
        &["validate", &corpus("empty.csv"), "--out", "out.csv"],
        "no header row",
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn a_missing_required_column_is_named_and_nothing_is_written() {
    let work = Workspace::new();
    work.refuses(
        &[
            "validate",
            &corpus("missing-column.csv"),
            "--out",
            "out.csv",
        ],
        "no to, contact_name column",
    )
    .await;
    assert!(!work.path("out.csv").exists());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_huge_field_is_just_a_bad_row() {
    let work = Workspace::new();
    let huge = "9".repeat(2_000_000);
    let name = "N".repeat(1_000_000);
    work.write(
        "huge.csv",
        &format!("to,contact_name,contact_phone\n{huge},Ana,551130034000\n11987654321,{name},551130034000\n11987654322,Bia,551130034000\n"),
    );

    work.fails(&["validate", "huge.csv", "--out", "out.csv"], 1)
        .await;
    let results = work.results("out.csv");
    assert_eq!(line(&results, 2)["status"], "INVALID");
    assert!(
        line(&results, 2)["error"].len() < 300,
        "the message quotes the value cut short"
    );
    assert_eq!(line(&results, 3)["status"], "VALID");
    assert_eq!(line(&results, 4)["status"], "VALID");
}

#[tokio::test(flavor = "multi_thread")]
async fn the_dry_run_report_groups_problems_and_estimates_the_sending_time() {
    let work = Workspace::new();
    let mut text = String::from("to,contact_name,contact_phone,delay\n");
    for n in 0..30 {
        text.push_str(&format!("119876543{n:02},Pessoa {n},551130034000,1\n"));
    }
    for n in 0..12 {
        text.push_str(&format!("12{n},Bad {n},551130034000,\n"));
    }
    work.write("campaign.csv", &text);

    let output = work
        .fails(&["validate", "campaign.csv", "--out", "out.csv"], 1)
        .await;
    let report = stdout(&output);
    assert!(report.contains("VALID 30"), "{report}");
    assert!(
        report.contains("to: too short — 12 rows: 32, 33, 34, 35, 36 and 7 more"),
        "{report}"
    );
    assert!(
        report.contains("delay/typing raised to the floor on 30 rows"),
        "{report}"
    );
    // 30 messages, each 2 s delay + 5 s typing at the default floors: 7 s apart.
    assert!(
        report.contains("about 3 min 30 s: 30 messages at 20/min on one instance"),
        "{report}"
    );

    let check = work.validate(&["--out", "out.csv", "--overwrite"], 1).await;
    assert_eq!(check["problems"][0]["problem"], "to: too short");
    assert_eq!(check["problems"][0]["rows_affected"], 12);
    assert_eq!(check["raised_to_floor"], 30);
    assert_eq!(check["expected_seconds"], 210.0);
}
