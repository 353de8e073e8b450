//! The right person or nobody: phones read as people write and paste them,
//! never taken for another country's by accident; the card set once;
//! Portuguese headers; who the recipients are and how long sending takes.

use std::collections::HashMap;

use serde_json::Value;

use crate::common::{self, stderr, stdout, utc_window_from_now, Config, Workspace};
use interacto_bulk::api::MockOptions;

/// Brazil's 67 area codes.
const AREA_CODES: [u32; 67] = [
    11, 12, 13, 14, 15, 16, 17, 18, 19, 21, 22, 24, 27, 28, 31, 32, 33, 34, 35, 37, 38, 41, 42, 43,
    44, 45, 46, 47, 48, 49, 51, 53, 54, 55, 61, 62, 63, 64, 65, 66, 67, 68, 69, 71, 73, 74, 75, 77,
    79, 81, 82, 83, 84, 85, 86, 87, 88, 89, 91, 92, 93, 94, 95, 96, 97, 98, 99,
];

/// One-digit typos of a Brazilian mobile (area code and nine digits): each
/// digit missing, each digit doubled, and the old eight-digit form.
fn typos_of(mobile: &str) -> Vec<String> {
    let mut typos = Vec::new();
    for index in 0..mobile.len() {
        typos.push(format!("{}{}", &mobile[..index], &mobile[index + 1..]));
        typos.push(format!("{}{}", &mobile[..=index], &mobile[index..]));
    }
    typos.push(format!("{}{}", &mobile[..2], &mobile[3..]));
    typos
}

/// `(47) 9876-5432`, as a Brazilian spreadsheet writes a number.
fn written(digits: &str) -> String {
    let (area, number) = digits.split_at(2);
    let (head, tail) = number.split_at(number.len().saturating_sub(4));
    format!("({area}) {head}-{tail}")
}

#[tokio::test(flavor = "multi_thread")]
async fn no_typo_of_a_brazilian_number_is_taken_for_a_foreign_one() {
    let work = Workspace::new();
    let mut text = String::from("to,contact_name,contact_phone\n");
    let mut typos = 0;
    for area in AREA_CODES {
        for mobile in ["987654321", "912345678", "998877665"] {
            for typo in typos_of(&format!("{area}{mobile}")) {
                text.push_str(&format!("\"{}\",Ana,+55 11 3003-4000\n", written(&typo)));
                typos += 1;
            }
        }
    }
    // The issue's own examples, as written.
    for example in [
        "(47) 9876-5432",
        "(45) 9876-5432",
        "(65) 9876-5432",
        "(49) 98765-432",
        "(91) 98765-43210",
        "20966381017",
    ] {
        text.push_str(&format!("{example},Ana,+55 11 3003-4000\n"));
        typos += 1;
    }
    work.write("campaign.csv", &text);

    let check = work.validate(&["--out", "check.csv"], 1).await;
    let results = work.results("check.csv");
    assert_eq!(results.len(), typos);
    let foreign: Vec<_> = results
        .iter()
        .filter(|line| line["status"] == "VALID" && !line["to"].starts_with("55"))
        .map(|line| (&line["row"], &line["to"]))
        .collect();
    assert!(foreign.is_empty(), "taken as foreign: {foreign:?}");
    // Some typos are still valid Brazilian numbers (a missing digit can
    // leave a landline); the ones that would be foreign say so, or, shaped
    // like a Brazilian number, how to mend it.
    let refused_as_foreign = results
        .iter()
        .filter(|line| {
            line["error"].contains("must be written with `+`")
                || line["error"].contains("after the area code")
        })
        .count();
    assert!(
        refused_as_foreign > typos / 20,
        "{refused_as_foreign} of {typos}"
    );
    let problems = check["problems"].as_array().unwrap();
    assert!(problems
        .iter()
        .any(|group| group["problem"] == "to: foreign number without +"));
    // Area codes that are also country codes get the Brazilian hint.
    let examples: Vec<_> = results.iter().rev().take(6).collect();
    for (example, says) in examples.iter().rev().zip([
        "add the 9: (47) 99876-5432",
        "add the 9: (45) 99876-5432",
        "add the 9: (65) 99876-5432",
        "add the 9",
        "one digit too many",
        "foreign number must be written with `+`",
    ]) {
        assert_eq!(example["status"], "INVALID", "{example:?}");
        assert!(example["error"].contains(says), "{says}: {example:?}");
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn numbers_pasted_with_invisible_characters_and_dashes_are_read() {
    let work = Workspace::new();
    let pasted = [
        "\u{200e}+55 11 98765-4321\u{200f}",
        "\u{feff}(11) 98765\u{2013}4322",
        "11\u{200b}98765\u{2014}4323",
        "\u{202a}+55\u{a0}11\u{2060}98765-4324\u{202c}",
        "\u{200d}5511987654325\u{200c}",
    ];
    let mut text = String::from("to,contact_name,contact_phone\n");
    for phone in pasted {
        text.push_str(&format!("{phone},Ana,+55 11 3003-4000\n"));
    }
    text.push_str("11\u{2066}98765-4326,Ana,+55 11 3003-4000\n");
    text.push_str("5511987654327.0,Ana,+55 11 3003-4000\n");
    text.push_str("11 98765-4328 / 11 91234-5678,Ana,+55 11 3003-4000\n");
    work.write("campaign.csv", &text);

    let output = work
        .fails(&["validate", "campaign.csv", "--out", "check.csv"], 1)
        .await;
    let results = work.results("check.csv");
    assert_eq!(results.len(), pasted.len() + 3);
    for (index, line) in results.iter().take(pasted.len()).enumerate() {
        assert_eq!(line["status"], "VALID", "{line:?}");
        assert_eq!(line["to"], format!("551198765432{}", index + 1));
    }
    let isolate = common::line(&results, 7);
    assert_eq!(isolate["status"], "INVALID");
    assert!(
        isolate["error"].contains("contains U+2066 (an invisible character)"),
        "{isolate:?}"
    );
    let report = stdout(&output);
    assert!(report.contains("`11<U+2066>98765-4326`"), "{report}");
    assert!(!report.contains('\u{2066}'), "shown raw: {report}");
    // Excel's lossless `.0` ending: the number it stands for.
    let decimal = common::line(&results, 8);
    assert_eq!(decimal["status"], "VALID", "{decimal:?}");
    assert_eq!(decimal["to"], "5511987654327", "{decimal:?}");
    assert!(
        report.contains(
            "1 phone written with Excel's decimal ending (`5511987654321.0`), read as the number"
        ),
        "{report}"
    );
    let two = common::line(&results, 9);
    assert!(two["error"].contains("two numbers in one cell"), "{two:?}");
    assert!(!report.to_lowercase().contains("nsn"), "{report}");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_card_set_once_goes_to_every_lead_of_a_file_with_portuguese_headers() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let fast = work.config(&settings);
    let mut config = std::fs::read_to_string(&fast).unwrap();
    config.push_str(
        "[campaign.card]\nname = \"Loja Exemplo\"\nphone = \"(11) 3003-4000\"\n\
         [campaign.columns]\n\"metadata.nome\" = \"Nome\"\n",
    );
    let config = work.write("card.toml", &config);
    work.write(
        "campaign.csv",
        "Número;Nome;Cidade\n\
         (11) 98765-4321;Ana Souza;São Paulo\n\
         +55 21 99876-5432;João Lima;Rio\n\
         41 99123-4567;Bia Costa;Curitiba\n",
    );

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 0);
    let report = stdout(&output);
    assert!(
        report.contains(
            "columns read from other headers: metadata.nome from `Nome`, to from `Número`"
        ),
        "{report}"
    );
    let mut bodies: Vec<Value> = server
        .received()
        .into_iter()
        .map(|request| request.body)
        .collect();
    bodies.sort_by_key(|body| body["to"].as_str().unwrap().to_string());
    let sent: Vec<(&str, &str, &str, &str)> = bodies
        .iter()
        .map(|body| {
            (
                body["to"].as_str().unwrap(),
                body["contact"]["name"].as_str().unwrap(),
                body["contact"]["phone"].as_str().unwrap(),
                body["metadata"]["nome"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        sent,
        [
            ("5511987654321", "Loja Exemplo", "551130034000", "Ana Souza"),
            ("5521998765432", "Loja Exemplo", "551130034000", "João Lima"),
            ("5541991234567", "Loja Exemplo", "551130034000", "Bia Costa"),
        ]
    );
    let results = work.results("campaign.results.csv");
    assert_eq!(results.len(), 3);
    assert!(results
        .iter()
        .all(|line| line["status"] == "SENT" && line["contact_name"] == "Loja Exemplo"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_rows_own_card_columns_override_the_card_where_filled() {
    let (server, work, settings) = common::against(MockOptions::default()).await;
    let config = work.config(
        &settings
            .set("campaign.card.name", "\"Loja Exemplo\"")
            .set("campaign.card.phone", "\"+55 11 3003-4000\""),
    );
    work.write(
        "campaign.csv",
        "whatsapp,contact_name,contact_phone\n\
         11987654321,,\n\
         11987654322,Filial Rio,+55 21 3222-1234\n\
         11987654323,Vendedor Bia,\n",
    );

    let output = work.send(&config, &[]).await;

    assert_exit!(output, 0);
    let cards: HashMap<String, (String, String)> = server
        .received()
        .into_iter()
        .map(|request| {
            let body = request.body;
            (
                body["to"].as_str().unwrap().to_string(),
                (
                    body["contact"]["name"].as_str().unwrap().to_string(),
                    body["contact"]["phone"].as_str().unwrap().to_string(),
                ),
            )
        })
        .collect();
    let card = |name: &str, phone: &str| (name.to_string(), phone.to_string());
    assert_eq!(cards["5511987654321"], card("Loja Exemplo", "551130034000"));
    assert_eq!(cards["5511987654322"], card("Filial Rio", "552132221234"));
    assert_eq!(cards["5511987654323"], card("Vendedor Bia", "551130034000"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_bad_card_or_an_unclear_phone_header_stops_before_anything_is_sent() {
    let server = common::server_expecting_no_request().await;
    let work = Workspace::new();
    work.write(
        "campaign.csv",
        "telefone,celular\n11987654321,11987654322\n",
    );
    let bad_card = work.config(
        &Config::fast(&server.uri())
            .set("campaign.card.name", "\"Loja\"")
            .set("campaign.card.phone", "\"(47) 9876-5432\""),
    );
    let output = work.send(&bad_card, &[]).await;
    common::assert_refused(&output, "campaign.card.phone");

    let card = work.config(
        &Config::fast(&server.uri())
            .set("campaign.card.name", "\"Loja\"")
            .set("campaign.card.phone", "\"+55 11 3003-4000\""),
    );
    let output = work.send(&card, &[]).await;
    assert_exit!(output, 2);
    let error = stderr(&output);
    assert!(
        error.contains("the headers `telefone` and `celular` could each be the recipient's phone"),
        "{error}"
    );

    // Without a card, the card's columns are required, and the error says how to do without.
    work.write("campaign.csv", "telefone,nome\n11987654321,Ana\n");
    let output = work
        .send(work.config(&Config::fast(&server.uri())), &[])
        .await;
    common::assert_refused(&output, "or set [campaign.card]");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_to_column_wins_over_a_telefone_column() {
    let work = Workspace::new();
    work.write(
        "campaign.csv",
        "telefone,to,contact_name,contact_phone\n1133334444,11987654321,Ana,+55 11 3003-4000\n",
    );
    work.ok(&["validate", "campaign.csv", "--out", "check.csv"])
        .await;
    let check = work.results("check.csv");
    assert_eq!(check[0]["to"], "5511987654321");
    // The other phone column is not lost: the check carries it, as written.
    assert_eq!(check[0]["telefone"], "1133334444", "{check:?}");
}

#[tokio::test(flavor = "multi_thread")]
async fn allowed_countries_and_where_recipients_are_in_the_dry_run_report() {
    let work = Workspace::new();
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone\n\
         11987654321,Ana,+55 11 3003-4000\n\
         (21) 3222-1234,Loja,+55 11 3003-4000\n\
         +351 912 345 678,Rui,+55 11 3003-4000\n\
         +1 212 555 0123,Joe,+55 11 3003-4000\n",
    );
    let config = work
        .config(&Config::fast("http://127.0.0.1:9").set("campaign.countries", "[\"BR\", \"pt\"]"));

    let check = work
        .validate(&["--config", &config, "--out", "check.csv"], 1)
        .await;
    let results = work.results("check.csv");
    let american = common::line(&results, 5);
    assert_eq!(american["status"], "INVALID");
    assert_eq!(
        american["error"],
        "to: `+1 212 555 0123` is a US number; campaign.countries allows only BR, PT"
    );
    assert_eq!(check["countries"], serde_json::json!({"BR": 2, "PT": 1}));
    assert_eq!(check["landlines"], 1);

    let report = work
        .report(&["--config", &config, "--out", "check.csv"], 1)
        .await;
    assert!(
        report.contains("recipients by country: BR 2, PT 1"),
        "{report}"
    );
    assert!(
        report.contains(
            "1 message to landlines, which receive WhatsApp only if they run WhatsApp Business"
        ),
        "{report}"
    );

    // All at home: no country list, but the landline count.
    work.write(
        "campaign.csv",
        "to,contact_name,contact_phone\n11987654321,Ana,+55 11 3003-4000\n",
    );
    let check = work.validate(&["--out", "home.csv"], 0).await;
    assert!(check.get("countries").is_none(), "{check}");
    assert_eq!(check["landlines"], 0);
}

#[tokio::test(flavor = "multi_thread")]
async fn the_expected_time_is_the_busiest_instances_share_across_the_send_window() {
    let work = Workspace::new();
    let mut text = String::from("to,contact_name,contact_phone\n");
    for n in 0..60 {
        text.push_str(&format!("119876543{n:02},Ana,+55 11 3003-4000\n"));
    }
    work.write("campaign.csv", &text);
    // A window that opens in two hours and stays open for two: the sending
    // (a minute a message, at most an hour) waits for it.
    let window = utc_window_from_now(2, 4);
    let config = work.config(
        &Config::fast("http://127.0.0.1:9")
            .unset("api.instance_id")
            .set("api.instances", "[\"a\", \"b\", \"c\"]")
            .set("pacing.rate", "\"1/min\"")
            .set("schedule.window", &format!("{window:?}"))
            .set("schedule.timezone", "\"UTC\""),
    );

    let check = work
        .validate(&["--config", &config, "--out", "check.csv"], 0)
        .await;
    let results = work.results("check.csv");
    let mut shares: HashMap<&str, u64> = HashMap::new();
    for line in &results {
        *shares.entry(line["instance_id"].as_str()).or_default() += 1;
    }
    let busiest = *shares.values().max().unwrap();
    assert!(busiest < 60, "the rows are spread: {shares:?}");
    assert_eq!(check["instances"], 3);
    assert_eq!(check["busiest_instance_messages"], busiest);
    assert_eq!(check["sending_seconds"], (busiest * 60) as f64);
    // From now: the wait for the window (within the minute it was cut to), then the sending.
    let expected = check["expected_seconds"].as_f64().unwrap();
    let sending = (busiest * 60) as f64;
    assert!(
        (2.0 * 3600.0 - 60.0 + sending - 5.0..=2.0 * 3600.0 + sending + 5.0).contains(&expected),
        "{expected} for {sending} s of sending"
    );
    assert_eq!(check["window"], format!("{window} UTC"));

    let report = work
        .report(&["--config", &config, "--out", "check.csv"], 0)
        .await;
    assert!(
        report.contains(&format!(
            "(sending only {window} UTC): 60 messages at 1/min a number on 3 instances, the busiest with {busiest}"
        )),
        "{report}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn the_expected_time_says_how_many_days_a_daily_cap_spreads_it_over() {
    let work = Workspace::new();
    let mut text = String::from("to,contact_name,contact_phone\n");
    for n in 0..60 {
        text.push_str(&format!("119876543{n:02},Ana,+55 11 3003-4000\n"));
    }
    work.write("campaign.csv", &text);
    let config = work.config(
        &Config::fast("http://127.0.0.1:9")
            .unset("api.instance_id")
            .set("api.instances", "[\"a\", \"b\"]")
            .set("schedule.daily_cap", "10")
            .set("schedule.warmup", "[5]"),
    );
    let check = work
        .validate(&["--config", &config, "--out", "check.csv"], 0)
        .await;
    let busiest = check["busiest_instance_messages"].as_u64().unwrap();
    assert_eq!(check["days_at_daily_cap"], busiest.div_ceil(10));

    let report = work
        .report(&["--config", &config, "--out", "check.csv"], 0)
        .await;
    assert!(
        report.contains(&format!(
            "the daily cap of 10 a number spreads it over at least {} days, more while a number warms up",
            busiest.div_ceil(10)
        )),
        "{report}"
    );
}

/// The report names the rows of landlines: the first 20, then a count.
#[tokio::test(flavor = "multi_thread")]
async fn the_check_names_the_rows_of_landlines() {
    let work = Workspace::new();
    let mut text = String::from("to,contact_name,contact_phone\n");
    for n in 0..25 {
        text.push_str(&format!(
            "(21) 3222-{:04},Loja {n},+55 11 3003-4000\n",
            1000 + n
        ));
        text.push_str(&format!(
            "(21) 99222-{:04},Ana {n},+55 11 3003-4000\n",
            1000 + n
        ));
    }
    work.write("campaign.csv", &text);
    let output = work.ok(&["validate", "campaign.csv"]).await;
    let rows: Vec<String> = (0..20).map(|n| (2 + 2 * n).to_string()).collect();
    let expected = format!(
        "25 messages to landlines, which receive WhatsApp only if they run WhatsApp Business: rows {} and 5 more",
        rows.join(", ")
    );
    common::assert_has(&stdout(&output), &expected);
}
