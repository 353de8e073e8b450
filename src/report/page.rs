//! The campaign report a person looks at: one self-contained HTML page
//! (styles and SVG charts inline, no scripts, nothing fetched), in English
//! or Brazilian Portuguese, built from a results file read once, row by
//! row, into aggregates: a million rows make a page of kilobytes.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::fs::File;
use std::io::{self, BufRead, BufReader};
use std::path::{Path, PathBuf};

use jiff::Timestamp;

use crate::results::{cell_value, Dialect, Header, Kind};
use crate::types::{FailureGroup, Failures, Status, Tally};

/// The language of the page's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    En,
    PtBr,
}

impl Lang {
    /// From `LANG` (`pt_BR.UTF-8` → Portuguese), English otherwise.
    pub fn from_env(lang: Option<&str>) -> Self {
        match lang {
            Some(lang) if lang.to_ascii_lowercase().starts_with("pt") => Lang::PtBr,
            _ => Lang::En,
        }
    }
}

/// Why a page was not made: a results file that cannot be read as one, or
/// a page that may not, or could not, be written where it was asked for.
#[derive(Debug, thiserror::Error)]
pub enum PageError {
    #[error("cannot read the results file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(transparent)]
    Destination(#[from] super::DestinationError),
    #[error("cannot write the report {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    #[error("{0} is not a results file of this tool (its header differs)")]
    NotResults(PathBuf),
    #[error("{path}, line {line}: {problem}")]
    Line {
        path: PathBuf,
        line: u64,
        problem: String,
    },
}

/// What a results file says, summed up.
#[derive(Debug, Default)]
pub struct Aggregates {
    /// A send's file, a rehearsal's or a check's.
    pub kind: Kind,
    /// Rows before the file's last with no line: a run stopped before it
    /// finished them (in flight, or not reached).
    pub without_line: u64,
    pub campaign: String,
    pub rows: u64,
    pub tally: Tally,
    pub by_instance: BTreeMap<String, Tally>,
    /// Requests (lines with an answer) per hour (seconds since 1970 of the
    /// hour's start) per instance.
    pub per_hour: BTreeMap<i64, BTreeMap<String, u64>>,
    /// `FAILED` and `UNKNOWN` rows by their error.
    pub failures: Failures,
    /// `DEFERRED` rows by their reason.
    pub deferred: Failures,
    /// The minutes in which lines were finished: the runs, as the file
    /// shows them.
    minutes: BTreeSet<i64>,
    /// The reasons rows were held back, by the minute their lines were
    /// written: why each run stopped.
    stops: BTreeMap<i64, BTreeMap<String, u64>>,
    /// Recipients by country code (`55`), and landlines among them.
    pub countries: BTreeMap<String, u64>,
    pub landlines: u64,
    pub landline_rows: Vec<u64>,
}

/// Reads the results file at `path` into its aggregates: one line a row,
/// its last (a file a run was stopped in before it tidied it holds each
/// run's lines, as `--resume` reads it). A file read twice for that; a
/// pipe, which cannot be, once, every line as it comes.
pub fn read(path: &Path) -> Result<Aggregates, PageError> {
    let mut aggregates = Aggregates::default();
    let last_lines = match std::fs::metadata(path).map(|meta| meta.is_file()) {
        Ok(true) => {
            // 4 bytes a row: a line number past 4 billion is no campaign's.
            let mut last: Vec<u32> = Vec::new();
            read_lines(path, |line| {
                let index = usize::try_from(line.row - 2).unwrap_or(usize::MAX);
                if index >= last.len() {
                    last.resize(index.saturating_add(1), 0);
                }
                last[index] = u32::try_from(line.number).unwrap_or(u32::MAX);
            })?;
            Some(last)
        }
        _ => None,
    };
    let kind = read_lines(path, |line| {
        let index = usize::try_from(line.row - 2).unwrap_or(usize::MAX);
        let last = last_lines.as_ref().and_then(|last| last.get(index));
        if last.is_some_and(|last| u64::from(*last) != line.number) {
            return;
        }
        if aggregates.campaign.is_empty() {
            aggregates.campaign = line.campaign.to_string();
        }
        aggregates.add(
            line.row,
            line.status,
            line.instance,
            line.to,
            line.error,
            line.finished_at,
        );
    })?;
    aggregates.kind = kind;
    aggregates.without_line = last_lines.map_or(0, |last| {
        last.iter().filter(|number| **number == 0).count() as u64
    });
    Ok(aggregates)
}

/// One line of a results file, as the report reads it.
struct Line<'a> {
    /// Its line number in the file (the header is 1).
    number: u64,
    row: u64,
    status: Status,
    campaign: &'a str,
    instance: &'a str,
    to: &'a str,
    error: &'a str,
    finished_at: &'a str,
}

/// Reads every line of the results file at `path`, in file order, into
/// `visit`; returns what kind of file it is.
fn read_lines(path: &Path, mut visit: impl FnMut(Line<'_>)) -> Result<Kind, PageError> {
    let io_error = |source| PageError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut reader = BufReader::with_capacity(1 << 16, File::open(path).map_err(io_error)?);
    let mut header = Vec::new();
    reader.read_until(b'\n', &mut header).map_err(io_error)?;
    let (dialect, kind) = match Dialect::of_header(&header) {
        Some((dialect, Header::Of(kind))) => (dialect, kind),
        _ => return Err(PageError::NotResults(path.to_path_buf())),
    };
    let names: Vec<String> = csv::ReaderBuilder::new()
        .has_headers(false)
        .delimiter(dialect.delimiter())
        .from_reader(header.as_slice())
        .records()
        .next()
        .and_then(Result::ok)
        .map(|record| {
            record
                .iter()
                .map(|name| name.trim_start_matches('\u{feff}').to_string())
                .collect()
        })
        .unwrap_or_default();
    let column = |name: &str| names.iter().position(|header| header == name);
    let [row_at, to_at, instance_at, status_at, error_at, finished_at] =
        ["row", "to", "instance_id", "status", "error", "finished_at"].map(column);
    let (Some(row_at), Some(status_at)) = (row_at, status_at) else {
        return Err(PageError::NotResults(path.to_path_buf()));
    };
    let mut records = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .delimiter(dialect.delimiter())
        .from_reader(reader);
    let mut record = csv::StringRecord::new();
    let mut highest = 0;
    loop {
        let more = records
            .read_record(&mut record)
            .map_err(|error| PageError::Line {
                path: path.to_path_buf(),
                line: error.position().map_or(0, |at| at.line() + 1),
                problem: error.to_string(),
            })?;
        if !more {
            break;
        }
        let number = record.position().map_or(0, |at| at.line() + 1);
        let bad = |problem: String| PageError::Line {
            path: path.to_path_buf(),
            line: number,
            problem,
        };
        let cell = |at: Option<usize>| {
            at.and_then(|at| record.get(at))
                .map(cell_value)
                .unwrap_or("")
        };
        let row: u64 = cell(Some(row_at))
            .parse()
            .ok()
            .filter(|row| *row >= 2)
            .ok_or_else(|| bad(format!("`{}` is not a row number", cell(Some(row_at)))))?;
        // A row far past every row so far is an edit or corruption, and
        // must not make the reading's table claim gigabytes.
        if !crate::results::a_row_after(highest, row) {
            return Err(bad(format!("{row} is a row number no campaign has")));
        }
        highest = highest.max(row);
        let status = Status::parse(cell(Some(status_at)))
            .ok_or_else(|| bad(format!("`{}` is not a status", cell(Some(status_at)))))?;
        visit(Line {
            number,
            row,
            status,
            campaign: cell_value(record.get(0).unwrap_or("")),
            instance: cell(instance_at),
            to: cell(to_at),
            error: cell(error_at),
            finished_at: cell(finished_at),
        });
    }
    Ok(kind)
}

impl Aggregates {
    fn add(
        &mut self,
        row: u64,
        status: Status,
        instance: &str,
        to: &str,
        error: &str,
        finished: &str,
    ) {
        self.rows += 1;
        self.tally.add(status);
        if !instance.is_empty() {
            self.by_instance
                .entry(instance.to_string())
                .or_default()
                .add(status);
        }
        match status {
            Status::Failed | Status::Unknown => self.failures.add(status, error, row),
            Status::Deferred => self.deferred.add(status, reason_of(error), row),
            _ => {}
        }
        if let Ok(at) = finished.parse::<Timestamp>() {
            let seconds = at.as_second();
            self.minutes.insert(seconds.div_euclid(60));
            if status == Status::Deferred {
                *self
                    .stops
                    .entry(seconds.div_euclid(60))
                    .or_default()
                    .entry(reason_of(error).to_string())
                    .or_default() += 1;
            }
            if status.is_an_answer() && !instance.is_empty() {
                *self
                    .per_hour
                    .entry(seconds.div_euclid(3600) * 3600)
                    .or_default()
                    .entry(instance.to_string())
                    .or_default() += 1;
            }
        }
        if matches!(status, Status::Invalid) || to.is_empty() {
            return;
        }
        let (country, landline) = country_of(to);
        *self.countries.entry(country.to_string()).or_default() += 1;
        if landline {
            self.landlines += 1;
            if self.landline_rows.len() < 20 {
                self.landline_rows.push(row);
            }
        }
    }

    /// The runs the file shows: stretches of minutes with lines finished,
    /// a quarter of an hour apart or more, and why each stopped where its
    /// rows say (the commonest reason of the rows it held back).
    pub fn runs(&self) -> Vec<(i64, i64, Option<&str>)> {
        let mut runs: Vec<(i64, i64)> = Vec::new();
        for &minute in &self.minutes {
            match runs.last_mut() {
                Some((_, last)) if minute - *last <= 15 => *last = minute,
                _ => runs.push((minute, minute)),
            }
        }
        runs.into_iter()
            .map(|(first, last)| {
                let mut reasons: BTreeMap<&str, u64> = BTreeMap::new();
                for counts in self.stops.range(first..=last).map(|(_, counts)| counts) {
                    for (reason, count) in counts {
                        *reasons.entry(reason.as_str()).or_default() += count;
                    }
                }
                let why = reasons
                    .into_iter()
                    .max_by_key(|(_, count)| *count)
                    .map(|(reason, _)| reason);
                (first * 60, last * 60 + 59, why)
            })
            .collect()
    }
}

/// A DEFERRED line's reason, without what is particular to the row (the
/// time a cooldown ends).
fn reason_of(error: &str) -> &str {
    let error = error.strip_prefix("not sent: ").unwrap_or(error);
    match error.find(['(', ';']) {
        Some(cut) if cut > 0 => error[..cut].trim_end(),
        _ => error,
    }
}

/// The country code of an E.164 number (`55` for Brazil) and, for
/// Brazil, whether it is a landline (8 digits after the area code,
/// starting 2 to 5): what the check reports, without the parser's cost.
fn country_of(to: &str) -> (&str, bool) {
    if let Some(national) = to.strip_prefix("55") {
        let landline = national.len() == 10 && matches!(national.as_bytes()[2], b'2'..=b'5');
        return ("55", landline);
    }
    for length in 1..=3 {
        let Some(code) = to.get(..length) else { break };
        let known = code
            .parse::<i32>()
            .ok()
            .and_then(|code| rlibphonenumber::PHONE_NUMBER_UTIL.get_region_for_country_code(code));
        if known.is_some_and(|region| region != rlibphonenumber::Region::ZZ) {
            return (code, false);
        }
    }
    ("?", false)
}

/// The words of the page in `lang`.
struct Words {
    title: &'static str,
    state: &'static str,
    complete: &'static str,
    not_complete: &'static str,
    next: &'static str,
    rows: &'static str,
    per_hour: &'static str,
    pace: &'static str,
    by_number: &'static str,
    number: &'static str,
    failures: &'static str,
    deferred: &'static str,
    first_rows: &'static str,
    runs: &'static str,
    from: &'static str,
    to: &'static str,
    stopped: &'static str,
    now: &'static str,
    today: &'static str,
    countries: &'static str,
    landlines: &'static str,
    none: &'static str,
    made: &'static str,
    rehearsal: &'static str,
    check: &'static str,
    running: &'static str,
    stopped_run: &'static str,
    without_line: &'static str,
    rehearsal_state: &'static str,
    check_state: &'static str,
}

const EN: Words = Words {
    title: "Campaign report",
    state: "Where the campaign stands",
    complete: "Complete: nothing is left that a later run could send.",
    not_complete: "Not complete: rows are left for a later run.",
    next: "Next",
    rows: "rows",
    per_hour: "Messages per hour, by number",
    pace: "the configured pace",
    by_number: "Statuses by number",
    number: "Number",
    failures: "Failed or in doubt, by reason",
    deferred: "Held back for later, by reason",
    first_rows: "first rows",
    runs: "When the runs ran",
    from: "from",
    to: "to",
    stopped: "rows held back",
    now: "The numbers now, as the ledger knows them",
    today: "sent today",
    countries: "Recipients by country code",
    landlines: "messages to landlines, which receive WhatsApp only with WhatsApp Business; rows",
    none: "none",
    made: "Made by interacto-bulk",
    rehearsal: "REHEARSAL (--mock): no message in this file went to anyone. The statuses are what \
                the embedded mock API answered; SENT here means nothing on WhatsApp.",
    check: "CHECK (a dry run): nothing was sent. VALID means a send would send the row.",
    running: "A RUN IS SENDING THIS CAMPAIGN NOW",
    stopped_run: "THE LAST RUN WAS STOPPED BEFORE IT FINISHED (killed, or its machine went down): \
                  each row shows its last line; rows it had in flight have none yet. The same \
                  command with --resume settles them (a card in doubt as UNKNOWN), then this \
                  page is whole.",
    without_line: "rows with no line yet (in flight when the run stopped, or not reached)",
    rehearsal_state: "A rehearsal: nothing was sent.",
    check_state: "A check: nothing was sent.",
};

const PT_BR: Words = Words {
    title: "Relatório da campanha",
    state: "Situação da campanha",
    complete: "Concluída: nada resta que uma próxima execução possa enviar.",
    not_complete: "Não concluída: há linhas para uma próxima execução.",
    next: "Próximo passo",
    rows: "linhas",
    per_hour: "Mensagens por hora, por número",
    pace: "o ritmo configurado",
    by_number: "Status por número",
    number: "Número",
    failures: "Com falha ou em dúvida, por motivo",
    deferred: "Adiadas, por motivo",
    first_rows: "primeiras linhas",
    runs: "Quando as execuções rodaram",
    from: "de",
    to: "até",
    stopped: "linhas adiadas",
    now: "Os números agora, segundo o ledger",
    today: "enviadas hoje",
    countries: "Destinatários por código de país",
    landlines:
        "mensagens para telefones fixos, que só recebem WhatsApp com o WhatsApp Business; linhas",
    none: "nenhuma",
    made: "Gerado pelo interacto-bulk",
    rehearsal: "ENSAIO (--mock): nenhuma mensagem deste arquivo foi para ninguém. Os status são \
                o que a API simulada respondeu; SENT aqui não significa nada no WhatsApp.",
    check: "VERIFICAÇÃO (simulação): nada foi enviado. VALID quer dizer que um envio enviaria a \
            linha.",
    running: "UMA EXECUÇÃO ESTÁ ENVIANDO ESTA CAMPANHA AGORA",
    stopped_run: "A ÚLTIMA EXECUÇÃO FOI INTERROMPIDA ANTES DE TERMINAR (encerrada à força, ou a \
                  máquina caiu): cada linha mostra seu último registro; as que estavam em envio \
                  ainda não têm nenhum. O mesmo comando com --resume as resolve (um cartão em \
                  dúvida como UNKNOWN), e então esta página fica completa.",
    without_line: "linhas ainda sem registro (em envio quando a execução parou, ou não lidas)",
    rehearsal_state: "Um ensaio: nada foi enviado.",
    check_state: "Uma verificação: nada foi enviado.",
};

/// What the page says besides the file's own aggregates.
pub struct Context {
    pub lang: Lang,
    /// Messages an hour a number may send at the configured pace.
    pub pace_per_hour: Option<f64>,
    /// The next step, in the summary's words.
    pub next_step: Option<String>,
    /// What the ledger knows of the numbers now, when it was asked.
    pub numbers: Vec<super::NumberReport>,
    /// Whether a run is at work on the file, or was stopped in it.
    pub run: RunOnFile,
    /// The run that wrote the file left rows past its `--limit` unread:
    /// they have no line, and the campaign is not done.
    pub past_limit: bool,
}

/// A run at work on the results file, as its lock and journal say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RunOnFile {
    /// None: the last one finished and tidied the file.
    Finished,
    /// One holds the lock now (`held by pid … since …`).
    Going(String),
    /// One left its journal and holds no lock: killed before it finished.
    Stopped,
}

impl RunOnFile {
    /// The results file at `path`'s, now.
    pub fn of(path: &Path) -> RunOnFile {
        match crate::results::holder(path) {
            Some(holder) => RunOnFile::Going(crate::types::printable(&holder).into_owned()),
            None if matches!(crate::results::read_left(path), Ok(Some(_))) => RunOnFile::Stopped,
            None => RunOnFile::Finished,
        }
    }
}

/// Colours of the statuses, the same in every chart.
fn colour(status: Status) -> &'static str {
    match status {
        Status::Sent => "#2e7d32",
        Status::Failed => "#c62828",
        Status::Unknown => "#ef6c00",
        Status::Deferred => "#1565c0",
        Status::Invalid => "#6a1b9a",
        Status::Duplicate => "#757575",
        Status::Suppressed => "#37474f",
        Status::Unsendable => "#4e342e",
        Status::Valid => "#558b2f",
        Status::Skipped => "#9e9d24",
    }
}

/// `<`, `>`, `&`, `"` made text, and each control character spelled out
/// (a results file may have been edited since the run cleaned its cells).
fn escape(text: &str) -> String {
    let mut escaped = String::with_capacity(text.len());
    for c in crate::types::printable(text).chars() {
        match c {
            '<' => escaped.push_str("&lt;"),
            '>' => escaped.push_str("&gt;"),
            '&' => escaped.push_str("&amp;"),
            '"' => escaped.push_str("&quot;"),
            c => escaped.push(c),
        }
    }
    escaped
}

const STYLE: &str = "body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;\
margin:2rem auto;max-width:60rem;color:#212121;padding:0 1rem}h1{font-size:1.6rem}\
h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}table{border-collapse:collapse}\
td,th{padding:.25rem .6rem;text-align:right;border-bottom:1px solid #eee}\
td:first-child,th:first-child{text-align:left}.status{display:inline-block;margin:.2rem .8rem .2rem 0}\
.swatch{display:inline-block;width:.8rem;height:.8rem;margin-right:.3rem;vertical-align:middle}\
.big{font-size:1.4rem;font-weight:600}\
.banner{background:#fff3e0;border-left:.4rem solid #ef6c00;padding:.6rem 1rem;font-weight:600}footer{margin-top:3rem;color:#757575;font-size:.8rem}";

/// The page, in `context.lang`.
pub fn render(aggregates: &Aggregates, context: &Context) -> String {
    let words = match context.lang {
        Lang::En => &EN,
        Lang::PtBr => &PT_BR,
    };
    let lang = match context.lang {
        Lang::En => "en",
        Lang::PtBr => "pt-BR",
    };
    let mut page = String::with_capacity(32 * 1024);
    let campaign = escape(&aggregates.campaign);
    let _ = write!(
        page,
        "<!DOCTYPE html><html lang=\"{lang}\"><head><meta charset=\"utf-8\">\
         <title>{} — {campaign}</title><style>{STYLE}</style></head><body>\
         <h1>{} — {campaign}</h1>",
        words.title, words.title
    );
    banners(&mut page, aggregates, context, words);
    state_section(&mut page, aggregates, context, words);
    hourly_section(&mut page, aggregates, context, words);
    numbers_section(&mut page, aggregates, words);
    ledger_section(&mut page, aggregates, context, words);
    groups_section(
        &mut page,
        words.failures,
        &aggregates.failures.clone().commonest_first(),
        words,
    );
    groups_section(
        &mut page,
        words.deferred,
        &aggregates.deferred.clone().commonest_first(),
        words,
    );
    runs_section(&mut page, aggregates, words);
    countries_section(&mut page, aggregates, words);
    let _ = writeln!(
        page,
        "<footer>{} {}</footer></body></html>",
        words.made,
        env!("CARGO_PKG_VERSION")
    );
    page
}

/// What a reader must know before any count: a file of no real send, a
/// run at work on it, a run stopped in it.
fn banners(page: &mut String, aggregates: &Aggregates, context: &Context, words: &Words) {
    let mut banner = |id: &str, text: &str| {
        let _ = write!(
            page,
            "<p class=\"banner\" id=\"{id}\" role=\"alert\">{}</p>",
            escape(text)
        );
    };
    match aggregates.kind {
        Kind::Rehearsal => banner("rehearsal", words.rehearsal),
        Kind::Check => banner("check", words.check),
        Kind::Send => {}
    }
    match &context.run {
        RunOnFile::Going(holder) => banner("running", &format!("{} ({holder})", words.running)),
        RunOnFile::Stopped => banner("stopped", words.stopped_run),
        RunOnFile::Finished => {}
    }
}

fn state_section(page: &mut String, aggregates: &Aggregates, context: &Context, words: &Words) {
    let _ = write!(
        page,
        "<h2>{}</h2><p class=\"big\" id=\"rows\">{} {}</p><p id=\"state-counts\">",
        words.state, aggregates.rows, words.rows
    );
    for status in Status::ALL {
        let count = aggregates.tally.get(status);
        if count > 0 {
            let _ = write!(
                page,
                "<span class=\"status\" data-status=\"{0}\"><span class=\"swatch\" style=\"background:{1}\"></span>{0} <b>{2}</b></span>",
                status.as_str(),
                colour(status),
                count
            );
        }
    }
    let pending = [Status::Failed, Status::Deferred, Status::Unknown]
        .iter()
        .map(|status| aggregates.tally.get(*status))
        .sum::<u64>();
    // Blank rows of a campaign have no line either: counted only for a
    // run stopped in the file.
    if context.run == RunOnFile::Stopped && aggregates.without_line > 0 {
        let _ = write!(
            page,
            "<span class=\"status\" id=\"without-line\">{} <b>{}</b></span>",
            words.without_line, aggregates.without_line
        );
    }
    let finished = context.run == RunOnFile::Finished && !context.past_limit;
    let state = match aggregates.kind {
        Kind::Rehearsal => words.rehearsal_state,
        Kind::Check => words.check_state,
        Kind::Send if pending == 0 && finished => words.complete,
        Kind::Send => words.not_complete,
    };
    let _ = write!(page, "</p><p id=\"state\">{state}</p>");
    if let Some(next) = &context.next_step {
        let _ = write!(page, "<p><b>{}:</b> {}</p>", words.next, escape(next));
    }
    page.push_str(&bar(&aggregates.tally, aggregates.rows, 600.0));
}

/// A bar of `tally`'s statuses, `width` wide.
fn bar(tally: &Tally, rows: u64, width: f64) -> String {
    let mut svg = format!("<svg width=\"{width}\" height=\"22\" role=\"img\">");
    let mut x = 0.0;
    for status in Status::ALL {
        let count = tally.get(status);
        if count == 0 || rows == 0 {
            continue;
        }
        let w = width * count as f64 / rows as f64;
        let _ = write!(svg, "<rect x=\"{x:.1}\" y=\"2\" width=\"{w:.1}\" height=\"18\" fill=\"{}\"><title>{} {count}</title></rect>", colour(status), status.as_str());
        x += w;
    }
    svg.push_str("</svg>");
    svg
}

fn hourly_section(page: &mut String, aggregates: &Aggregates, context: &Context, words: &Words) {
    if aggregates.per_hour.is_empty() {
        return;
    }
    let _ = write!(page, "<h2>{}</h2>", words.per_hour);
    let instances: BTreeSet<&str> = aggregates
        .per_hour
        .values()
        .flat_map(|counts| counts.keys().map(String::as_str))
        .collect();
    let palette = [
        "#1565c0", "#2e7d32", "#ef6c00", "#6a1b9a", "#c62828", "#00838f",
    ];
    let hours: Vec<(&i64, &BTreeMap<String, u64>)> = aggregates.per_hour.iter().collect();
    let busiest = hours
        .iter()
        .flat_map(|(_, counts)| counts.values())
        .copied()
        .max()
        .unwrap_or(1);
    // The pace drawn when it is near what went; far above (an unthrottled
    // rehearsal), said in words, or the bars would be flat.
    let pace_drawn = context
        .pace_per_hour
        .filter(|pace| *pace <= 3.0 * busiest as f64);
    let most = busiest.max(pace_drawn.map_or(1, |pace| pace.ceil() as u64));
    let (width, height, left) = (720.0, 220.0, 40.0);
    let slot = (width - left) / hours.len() as f64;
    let bar_width = (slot / instances.len().max(1) as f64).max(1.0);
    let y = |count: f64| height - 20.0 - (height - 40.0) * count / most as f64;
    let mut svg =
        format!("<svg width=\"{width}\" height=\"{height}\" role=\"img\" id=\"per-hour\">");
    let _ = write!(
        svg,
        "<text x=\"0\" y=\"{:.0}\" font-size=\"11\">{most}</text>",
        y(most as f64) + 4.0
    );
    for (hour_index, (hour, counts)) in hours.iter().enumerate() {
        for (instance_index, instance) in instances.iter().enumerate() {
            let count = counts.get(*instance).copied().unwrap_or(0);
            if count == 0 {
                continue;
            }
            let x = left + slot * hour_index as f64 + bar_width * instance_index as f64;
            let top = y(count as f64);
            let _ = write!(
                svg,
                "<rect x=\"{x:.1}\" y=\"{top:.1}\" width=\"{bar_width:.1}\" height=\"{:.1}\" fill=\"{}\"><title>{} {}: {count}</title></rect>",
                height - 20.0 - top,
                palette[instance_index % palette.len()],
                escape(instance),
                Timestamp::from_second(**hour).map(|at| at.strftime("%Y-%m-%d %H:00 UTC").to_string()).unwrap_or_default()
            );
        }
    }
    if let Some(pace) = pace_drawn {
        let line = y(pace);
        let _ = write!(svg, "<line x1=\"{left}\" x2=\"{width}\" y1=\"{line:.1}\" y2=\"{line:.1}\" stroke=\"#c62828\" stroke-dasharray=\"4 3\"/><text x=\"{left}\" y=\"{:.1}\" font-size=\"11\" fill=\"#c62828\">{} ({pace:.0}/h)</text>", line - 3.0, words.pace);
    }
    let (first, last) = (hours[0].0, hours[hours.len() - 1].0);
    let hour_words = |at: i64| {
        Timestamp::from_second(at)
            .map(|at| at.strftime("%m-%d %H:00").to_string())
            .unwrap_or_default()
    };
    let _ = write!(svg, "<text x=\"{left}\" y=\"{height}\" font-size=\"11\">{}</text><text x=\"{width}\" y=\"{height}\" font-size=\"11\" text-anchor=\"end\">{} UTC</text></svg>", hour_words(*first), hour_words(*last));
    page.push_str(&svg);
    page.push_str("<p>");
    if let (Some(pace), None) = (context.pace_per_hour, pace_drawn) {
        let _ = write!(
            page,
            "<span class=\"status\">{}: {pace:.0}/h</span>",
            words.pace
        );
    }
    for (index, instance) in instances.iter().enumerate() {
        let _ = write!(page, "<span class=\"status\"><span class=\"swatch\" style=\"background:{}\"></span>{}</span>", palette[index % palette.len()], escape(instance));
    }
    page.push_str("</p>");
}

fn numbers_section(page: &mut String, aggregates: &Aggregates, words: &Words) {
    if aggregates.by_instance.is_empty() {
        return;
    }
    let statuses: Vec<Status> = Status::ALL
        .into_iter()
        .filter(|status| {
            aggregates
                .by_instance
                .values()
                .any(|tally| tally.get(*status) > 0)
        })
        .collect();
    let _ = write!(
        page,
        "<h2>{}</h2><table id=\"by-number\"><tr><th>{}</th>",
        words.by_number, words.number
    );
    for status in &statuses {
        let _ = write!(page, "<th>{}</th>", status.as_str());
    }
    page.push_str("<th></th></tr>");
    for (instance, tally) in &aggregates.by_instance {
        let _ = write!(
            page,
            "<tr data-instance=\"{0}\"><td>{0}</td>",
            escape(instance)
        );
        for status in &statuses {
            let _ = write!(
                page,
                "<td data-status=\"{}\">{}</td>",
                status.as_str(),
                tally.get(*status)
            );
        }
        let _ = write!(page, "<td>{}</td></tr>", bar(tally, tally.rows(), 200.0));
    }
    page.push_str("</table>");
}

/// The file's numbers as the ledger knows them now: paused or held, and
/// why, and today's count.
fn ledger_section(page: &mut String, aggregates: &Aggregates, context: &Context, words: &Words) {
    let numbers: Vec<&super::NumberReport> = context
        .numbers
        .iter()
        .filter(|number| aggregates.by_instance.contains_key(&number.instance_id))
        .collect();
    if numbers.is_empty() {
        return;
    }
    let _ = write!(page, "<h2>{}</h2><table id=\"numbers-now\">", words.now);
    for number in numbers {
        let why = match (&number.reason, &number.until) {
            (Some(reason), Some(until)) => format!(" — {} ({until})", escape(reason)),
            (Some(reason), None) => format!(" — {}", escape(reason)),
            _ => String::new(),
        };
        let _ = write!(
            page,
            "<tr data-instance=\"{0}\"><td>{0}</td><td data-state=\"{1}\">{1}{why}</td><td>{2} {3}</td></tr>",
            escape(&number.instance_id),
            number.state,
            number.sent_today,
            words.today
        );
    }
    page.push_str("</table>");
}

fn groups_section(page: &mut String, title: &str, groups: &[FailureGroup], words: &Words) {
    if groups.is_empty() {
        return;
    }
    let _ = write!(page, "<h2>{title}</h2><table>");
    for group in groups.iter().take(20) {
        let rows: Vec<String> = group.first_rows.iter().map(u64::to_string).collect();
        let _ = write!(
            page,
            "<tr><td>{} — {}</td><td>{}</td><td>{}: {}</td></tr>",
            group.status,
            escape(&group.error),
            group.rows,
            words.first_rows,
            rows.join(", ")
        );
    }
    page.push_str("</table>");
}

fn runs_section(page: &mut String, aggregates: &Aggregates, words: &Words) {
    let runs = aggregates.runs();
    if runs.is_empty() {
        return;
    }
    let when = |at: i64| {
        Timestamp::from_second(at)
            .map(|at| at.strftime("%Y-%m-%d %H:%M UTC").to_string())
            .unwrap_or_default()
    };
    let _ = write!(page, "<h2>{}</h2><ul>", words.runs);
    for (first, last, why) in runs.iter().rev().take(30).rev() {
        let stopped = why.map_or_else(String::new, |why| {
            format!(" — {}: {}", words.stopped, escape(why))
        });
        let _ = write!(
            page,
            "<li>{} {} {} {}{stopped}</li>",
            words.from,
            when(*first),
            words.to,
            when(*last)
        );
    }
    page.push_str("</ul>");
}

fn countries_section(page: &mut String, aggregates: &Aggregates, words: &Words) {
    if aggregates.countries.is_empty() {
        return;
    }
    let _ = write!(page, "<h2>{}</h2><table id=\"countries\">", words.countries);
    let mut countries: Vec<(&String, &u64)> = aggregates.countries.iter().collect();
    countries.sort_by_key(|(_, count)| std::cmp::Reverse(**count));
    for (code, count) in countries.iter().take(30) {
        let _ = write!(page, "<tr><td>+{code}</td><td>{count}</td></tr>");
    }
    page.push_str("</table>");
    let rows: Vec<String> = aggregates
        .landline_rows
        .iter()
        .map(u64::to_string)
        .collect();
    let more = aggregates.landlines - aggregates.landline_rows.len() as u64;
    let rows = match (rows.is_empty(), more) {
        (true, _) => words.none.to_string(),
        (false, 0) => rows.join(", "),
        (false, more) => format!("{} … +{more}", rows.join(", ")),
    };
    let _ = write!(
        page,
        "<p>{} {}: {rows}</p>",
        aggregates.landlines, words.landlines
    );
}

/// The numbers the API refused, as the ledger knows them now.
fn refused(numbers: &[super::NumberReport]) -> Vec<String> {
    let refused = crate::types::HoldKind::Refused.as_str();
    numbers
        .iter()
        .filter(|number| number.state == refused)
        .map(|number| number.instance_id.clone())
        .collect()
}

/// Writes the report of the results file `to.results` to `to.page`, in
/// `lang`, with the pace of `settings`; returns the page's size in bytes.
/// A page that would replace a file it must not is refused before the
/// results file is read.
pub fn write_report(
    to: &super::Destination,
    lang: Lang,
    settings: &crate::config::Settings,
    numbers: Vec<super::NumberReport>,
    past_limit: bool,
) -> Result<usize, PageError> {
    to.check()?;
    let aggregates = read(&to.results)?;
    let one_turn = crate::pacing::Pace::of(&settings.pacing).one_turn();
    let context = Context {
        lang,
        pace_per_hour: (one_turn > 0).then(|| 3600e9 / one_turn as f64),
        next_step: super::next_step_of(&aggregates.tally, &refused(&numbers)),
        numbers,
        run: RunOnFile::of(&to.results),
        past_limit,
    };
    let page = render(&aggregates, &context);
    to.write(page.as_bytes())
        .map_err(|source| PageError::Write {
            path: to.page.clone(),
            source,
        })?;
    Ok(page.len())
}
