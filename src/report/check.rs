//! The dry-run report: what the rows of a campaign came to, problems
//! grouped by kind, who they go to, and how long sending would take.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;
use serde::Serialize;

use crate::campaign::phone::Region;
use crate::campaign::Column;
use crate::pacing::Estimate;
use crate::schedule::{SendWindow, WindowState, Zones};
use crate::types::{Job, Problem, Rejected};

/// A number the ledger holds, as the check reports it.
#[derive(Debug, Clone, Serialize)]
pub struct HeldNumber {
    /// The messages that would be `DEFERRED`.
    pub messages: u64,
    pub why: String,
}

/// How much of the report a summary shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum View {
    /// A dry run's: every kind of problem with an example, and what a send
    /// would do (recipients, landlines, how long it takes).
    Check,
    /// A rehearsal at speed: the commonest problems, and how long the real
    /// send would take.
    Rehearsal,
    /// A send's: the commonest problems.
    Send,
}

/// The rows of landlines the report names; the rest are counted.
const FIRST_LANDLINES: usize = 20;

/// The kinds of problem a send's summary shows, the commonest first.
const SUMMARY_PROBLEMS: usize = 3;

/// What the rows of a campaign came to: problems grouped by kind with their
/// first rows, how many rows had delay/typing raised to a floor, where the
/// recipients are, and how long sending takes at the configured pacing.
#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub encoding: String,
    pub delimiter: String,
    /// Columns read from a header of another name: column -> header.
    pub columns: BTreeMap<String, String>,
    pub problems: Vec<ProblemGroup>,
    pub raised_to_floor: u64,
    pub messages: u64,
    /// From the first message to the last, if sending started now: the
    /// busiest instance's share at its pace, and the hours the send window
    /// is shut in between.
    pub expected_seconds: f64,
    /// The busiest instance's time spent sending, window left out.
    pub sending_seconds: f64,
    pub instances: usize,
    /// Messages the busiest instance sends.
    pub busiest_instance_messages: u64,
    pub rate: String,
    pub pace_by_message: bool,
    /// `08:00-20:00 America/Sao_Paulo`, when a send window is set.
    pub window: Option<String>,
    /// The days the busiest instance's share takes at `schedule.daily_cap`,
    /// when that is more than one (at least that many: today's count and a
    /// warm-up come on top).
    pub days_at_daily_cap: Option<u64>,
    /// Recipients by country, when any is outside `campaign.default_region`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub countries: BTreeMap<String, u64>,
    /// Recipients on fixed lines, which receive WhatsApp only with WhatsApp Business.
    pub landlines: u64,
    /// The first rows of those, by row number.
    pub landline_rows: Vec<u64>,
    /// Recipients written with Excel's decimal ending (`…321.0`), read as
    /// the number.
    pub excel_decimals: u64,
    #[serde(skip)]
    estimate: Estimate,
    #[serde(skip)]
    schedule: Option<SendWindow>,
    #[serde(skip)]
    home: Region,
    /// `schedule.daily_cap`, and whether a warm-up lowers the first days.
    #[serde(skip)]
    daily_cap: Option<(u64, bool)>,
    /// The numbers paused or held in the ledger, by their index among the
    /// run's instances: their rows would not go.
    #[serde(skip)]
    held: Vec<(usize, String)>,
    /// `schedule.daily_new_contacts`.
    #[serde(skip)]
    first_contacts_cap: Option<u64>,
    /// Messages to recipients the ledger never saw reached, by instance
    /// index: first contacts, at least.
    #[serde(skip)]
    first_contacts_by_instance: BTreeMap<usize, u64>,
    /// Messages to recipients the ledger never saw reached (with
    /// `schedule.daily_new_contacts`): first contacts, at least.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub first_contacts: Option<u64>,
    /// The days the busiest number's first contacts take at
    /// `schedule.daily_new_contacts`, when more than one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub days_at_first_contacts: Option<u64>,
    /// The messages of those numbers, by instance, with the hold's words.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub held_numbers: BTreeMap<String, HeldNumber>,
    /// Recipients by country, counted as they come (a handful of countries).
    #[serde(skip)]
    by_country: Vec<(Region, u64)>,
    /// With the window in each recipient's zone: recipients by zone
    /// (`America/Manaus or America/Cuiaba` for a number in either), the
    /// ones whose number tells none under `unknown (<sender's zone>)`.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub time_zones: BTreeMap<String, u64>,
    /// Of those, the ones whose number tells no zone: the window is read in
    /// the sender's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone_unknown: Option<u64>,
    /// Messages to recipients whose window is never open in all their
    /// zones at once: they would be `DEFERRED`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub never_in_window: Option<u64>,
    /// Recipients by zones, as they come.
    #[serde(skip)]
    by_zones: BTreeMap<Zones, u64>,
    /// Each instance's sending time, by its recipients' zones: the window
    /// opens for each at its own hours.
    #[serde(skip)]
    sending_by_zones: BTreeMap<(usize, Zones), Duration>,
}

/// The rows with one kind of problem.
#[derive(Debug, Clone, Serialize)]
pub struct ProblemGroup {
    pub problem: String,
    pub rows_affected: u64,
    pub first_rows: Vec<u64>,
    /// The full message of the first row with it.
    pub example: String,
}

impl CheckReport {
    /// How many rows of each kind are listed.
    const FIRST_ROWS: usize = 5;

    /// `home` is `campaign.default_region`; `schedule` the send window.
    pub fn new(
        encoding: String,
        delimiter: u8,
        estimate: Estimate,
        schedule: Option<SendWindow>,
        home: Region,
    ) -> Self {
        CheckReport {
            encoding,
            delimiter: char::from(delimiter).escape_default().to_string(),
            columns: BTreeMap::new(),
            problems: Vec::new(),
            raised_to_floor: 0,
            messages: 0,
            expected_seconds: 0.0,
            sending_seconds: 0.0,
            instances: estimate.instances(),
            busiest_instance_messages: 0,
            rate: estimate.rate().to_string(),
            pace_by_message: estimate.pace_by_message(),
            window: schedule.as_ref().map(SendWindow::describe),
            days_at_daily_cap: None,
            countries: BTreeMap::new(),
            landlines: 0,
            landline_rows: Vec::new(),
            excel_decimals: 0,
            estimate,
            schedule,
            home,
            daily_cap: None,
            held: Vec::new(),
            held_numbers: BTreeMap::new(),
            first_contacts_cap: None,
            first_contacts_by_instance: BTreeMap::new(),
            first_contacts: None,
            days_at_first_contacts: None,
            by_country: Vec::new(),
            time_zones: BTreeMap::new(),
            time_zone_unknown: None,
            never_in_window: None,
            by_zones: BTreeMap::new(),
            sending_by_zones: BTreeMap::new(),
        }
    }

    /// Counts the days `schedule.daily_cap` spreads sending over.
    pub fn daily_cap(&mut self, cap: Option<u64>, warmup: bool) {
        self.daily_cap = cap.map(|cap| (cap, warmup));
    }

    /// Notes the columns read from headers of other names.
    pub fn columns_from(&mut self, renamed: &[(Column, String)]) {
        self.columns = renamed
            .iter()
            .map(|(column, header)| (column.to_string(), header.clone()))
            .collect();
    }

    /// Notes `schedule.daily_new_contacts`.
    pub fn first_contacts_cap(&mut self, cap: Option<u64>) {
        self.first_contacts_cap = cap;
    }

    /// One more message to a recipient the ledger never saw reached,
    /// through the instance at `instance`.
    pub fn add_first_contact(&mut self, instance: usize) {
        *self.first_contacts_by_instance.entry(instance).or_default() += 1;
    }

    /// Notes the numbers the ledger holds now: the instance at each index,
    /// with the hold in words.
    pub fn numbers_held(&mut self, held: Vec<(usize, String, String)>) {
        for (index, instance, why) in held {
            self.held.push((index, instance.clone()));
            self.held_numbers
                .insert(instance, HeldNumber { messages: 0, why });
        }
    }

    /// One more job that goes, through the instance at `instance`.
    pub fn add_job(&mut self, job: &Job, instance: usize) {
        self.raised_to_floor += u64::from(job.timing.note.is_some());
        let held = self.held.iter().find(|(index, _)| *index == instance);
        let sending = match held.and_then(|(_, id)| self.held_numbers.get_mut(id)) {
            // Through a number held in the ledger: it would wait, not go.
            Some(number) => {
                number.messages += 1;
                Duration::ZERO
            }
            None => self.estimate.add(&job.timing, instance),
        };
        if let Some(window) = self.schedule.as_ref().filter(|w| w.in_recipient_zones) {
            let zones = window.zones_of(&job.recipient.to);
            *self.by_zones.entry(zones).or_default() += 1;
            *self.sending_by_zones.entry((instance, zones)).or_default() += sending;
        }
        if job.destination.landline {
            self.landlines += 1;
            if self.landline_rows.len() < FIRST_LANDLINES {
                self.landline_rows.push(job.recipient.row);
            }
        }
        self.excel_decimals += u64::from(job.destination.excel_decimal);
        let country = job.destination.country;
        match self
            .by_country
            .iter_mut()
            .find(|(seen, _)| *seen == country)
        {
            Some((_, count)) => *count += 1,
            None => self.by_country.push((country, 1)),
        }
    }

    /// One more row that is not sent, with its problems.
    pub fn add_rejected(&mut self, rejected: &Rejected) {
        for problem in &rejected.problems {
            self.add_problem(rejected.recipient.row, problem);
        }
    }
    fn add_problem(&mut self, row: u64, problem: &Problem) {
        let label = problem.label();
        let group = match self
            .problems
            .iter()
            .position(|group| group.problem == label)
        {
            Some(index) => &mut self.problems[index],
            None => {
                self.problems.push(ProblemGroup {
                    problem: label,
                    rows_affected: 0,
                    first_rows: Vec::new(),
                    example: format!("row {row}: {problem}"),
                });
                self.problems.last_mut().expect("just pushed")
            }
        };
        group.rows_affected += 1;
        if group.first_rows.len() < Self::FIRST_ROWS && group.first_rows.last() != Some(&row) {
            group.first_rows.push(row);
        }
    }

    /// Once every row is in: the most common problems first, the countries
    /// if any is foreign, and the expected time from `now`.
    pub(super) fn finish(&mut self, now: Timestamp) {
        self.problems
            .sort_by_key(|group| std::cmp::Reverse(group.rows_affected));
        if self
            .by_country
            .iter()
            .any(|(country, _)| *country != self.home)
        {
            self.countries = self
                .by_country
                .iter()
                .map(|(country, count)| (country.to_string(), *count))
                .collect();
        }
        self.messages = self.estimate.messages();
        self.busiest_instance_messages = self.estimate.busiest_messages();
        let sending = self.estimate.duration();
        self.sending_seconds = sending.as_secs_f64().round();
        let elapsed = match self.schedule.clone() {
            Some(window) if self.messages > 0 => {
                if window.in_recipient_zones {
                    self.count_zones(&window, now);
                }
                self.elapsed_in(&window, now, sending)
            }
            _ => Some(sending),
        };
        // Centuries away: the sending time alone says enough.
        self.expected_seconds = elapsed.unwrap_or(sending).as_secs_f64().round();
        self.days_at_daily_cap = self
            .daily_cap
            .map(|(cap, _)| self.busiest_instance_messages.div_ceil(cap.max(1)))
            .filter(|days| *days > 1);
        if let Some(cap) = self.first_contacts_cap {
            let busiest = self
                .first_contacts_by_instance
                .values()
                .max()
                .copied()
                .unwrap_or(0);
            self.first_contacts = Some(self.first_contacts_by_instance.values().sum());
            self.days_at_first_contacts =
                Some(busiest.div_ceil(cap.max(1))).filter(|days| *days > 1);
        }
    }

    /// From `now` to the last message, the send window's shut hours
    /// counted: in each recipient's zones, the slowest instance's time.
    fn elapsed_in(
        &self,
        window: &SendWindow,
        now: Timestamp,
        sending: Duration,
    ) -> Option<Duration> {
        if !window.in_recipient_zones {
            return window.elapsed_for(now, &[(Zones::Sender, sending)]);
        }
        (0..self.instances)
            .map(|instance| {
                let shares: Vec<(Zones, Duration)> = self
                    .sending_by_zones
                    .range((instance, Zones::Sender)..)
                    .take_while(|((of, _), _)| *of == instance)
                    .map(|((_, zones), sending)| (*zones, *sending))
                    .collect();
                window.elapsed_for(now, &shares)
            })
            .try_fold(Duration::ZERO, |slowest, elapsed| {
                Some(slowest.max(elapsed?))
            })
    }

    /// With the window in each recipient's zone: the recipients by zone,
    /// those of no known zone, and those whose window never opens at `now`.
    fn count_zones(&mut self, window: &SendWindow, now: Timestamp) {
        let sender = window.zone_name();
        let mut never = 0;
        for (zones, count) in &self.by_zones {
            let name = match zones {
                Zones::Sender => format!("unknown ({sender})"),
                _ => zones.describe(sender),
            };
            *self.time_zones.entry(name).or_default() += count;
            if window.state(*zones, now) == WindowState::Never {
                never += count;
            }
        }
        self.time_zone_unknown = Some(self.by_zones.get(&Zones::Sender).copied().unwrap_or(0));
        self.never_in_window = Some(never);
    }

    /// The report in words, as `view` shows it.
    pub(super) fn text(&self, view: View) -> String {
        let mut text = self.problems_in_words(view);
        text.push_str(&self.how_read());
        // Who the messages go to, in every view: a number abroad is a
        // choice (written with + or 00) a send's summary shows too.
        if !self.countries.is_empty() {
            text.push_str(&self.recipients_by_country());
        }
        if view == View::Send {
            return text;
        }
        if !self.time_zones.is_empty() {
            text.push_str(&self.by_time_zone());
        }
        for number in self.held_numbers.values() {
            text.push_str(&format!(
                "{}: its {} would be DEFERRED\n",
                number.why,
                counted(number.messages, "message")
            ));
        }
        if self.messages == 0 {
            return text;
        }
        text.push_str(&self.what_sending_takes());
        text
    }

    /// The kinds of problem, most common first, with the rows they are on:
    /// every kind with an example for a check, the commonest few otherwise.
    fn problems_in_words(&self, view: View) -> String {
        let mut text = String::new();
        if self.problems.is_empty() {
            return text;
        }
        text.push_str("problems, most common first:\n");
        // A check shows each kind with an example; a send's summary,
        // read in a cron mail, the commonest few in a line each.
        let shown = match view {
            View::Check => self.problems.len(),
            View::Rehearsal | View::Send => SUMMARY_PROBLEMS,
        };
        for group in self.problems.iter().take(shown) {
            let rows = first_rows(&group.first_rows, group.rows_affected);
            text.push_str(&format!(
                "  {} — {}: {rows}\n",
                group.problem,
                counted(group.rows_affected, "row"),
            ));
            if view == View::Check {
                text.push_str(&format!("      {}\n", group.example));
            }
        }
        let hidden = &self.problems[shown.min(self.problems.len())..];
        if !hidden.is_empty() {
            let rows: u64 = hidden.iter().map(|group| group.rows_affected).sum();
            text.push_str(&format!(
                "  and {} more kinds of problem ({}): the results file's error column says \
                 what each row has\n",
                hidden.len(),
                counted(rows, "row")
            ));
        }
        text
    }

    /// How the rows were read where it was not as written: Excel's decimal
    /// phones, delays raised to a floor, columns under other headers.
    fn how_read(&self) -> String {
        let mut text = String::new();
        if self.excel_decimals > 0 {
            text.push_str(&format!(
                "{} written with Excel's decimal ending (`5511987654321.0`), read as the number\n",
                counted(self.excel_decimals, "phone")
            ));
        }
        if self.raised_to_floor > 0 {
            text.push_str(&format!(
                "delay/typing raised to the floor on {}\n",
                counted(self.raised_to_floor, "row")
            ));
        }
        if !self.columns.is_empty() {
            let columns = self
                .columns
                .iter()
                .map(|(column, header)| format!("{column} from `{header}`"))
                .collect::<Vec<_>>()
                .join(", ");
            text.push_str(&format!("columns read from other headers: {columns}\n"));
        }
        text
    }

    /// `recipients by country: BR 812, PT 3`, the commonest first.
    fn recipients_by_country(&self) -> String {
        let mut countries: Vec<_> = self.countries.iter().collect();
        countries.sort_by_key(|(_, count)| std::cmp::Reverse(**count));
        let countries = countries
            .iter()
            .map(|(country, count)| format!("{country} {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        format!("recipients by country: {countries}\n")
    }

    /// What sending the messages would take: the landlines among them, how
    /// long, and the days first contacts and the daily cap spread it over.
    fn what_sending_takes(&self) -> String {
        let mut text = String::new();
        if self.landlines > 0 {
            let rows = first_rows(&self.landline_rows, self.landlines);
            text.push_str(&format!(
                "{} to landlines, which receive WhatsApp only if they run WhatsApp Business: \
                 rows {rows}\n",
                counted(self.landlines, "message")
            ));
        }
        text.push_str(&format!("sending would take {}\n", self.expected_time()));
        if let (Some(first), Some(cap)) = (self.first_contacts, self.first_contacts_cap) {
            let days = match self.days_at_first_contacts {
                Some(days) => format!(", which spreads them over at least {days} days"),
                None => String::new(),
            };
            text.push_str(&format!(
                "{} to recipients the ledger never saw reached: first contacts, at most {cap} a \
                 number a day (schedule.daily_new_contacts){days}\n",
                counted(first, "message")
            ));
        }
        if let (Some(days), Some((cap, warmup))) = (self.days_at_daily_cap, self.daily_cap) {
            let warming = match warmup {
                true => ", more while a number warms up",
                false => "",
            };
            text.push_str(&format!(
                "the daily cap of {cap} a number spreads it over at least {days} days{warming}\n"
            ));
        }
        text
    }
}

impl CheckReport {
    /// `recipients by time zone: America/Sao_Paulo 812, America/Manaus 97,
    /// unknown (America/Sao_Paulo) 2`, the commonest first, and the
    /// messages whose window never opens.
    fn by_time_zone(&self) -> String {
        const SHOWN: usize = 8;
        let mut zones: Vec<_> = self.time_zones.iter().collect();
        zones.sort_by_key(|(_, count)| std::cmp::Reverse(**count));
        let mut shown = zones
            .iter()
            .take(SHOWN)
            .map(|(zone, count)| format!("{zone} {count}"))
            .collect::<Vec<_>>()
            .join(", ");
        if zones.len() > SHOWN {
            let rest: u64 = zones[SHOWN..].iter().map(|(_, count)| **count).sum();
            shown.push_str(&format!(" and {rest} in {} more", zones.len() - SHOWN));
        }
        let mut text = format!("recipients by time zone: {shown}\n");
        if let Some(never) = self.never_in_window.filter(|never| *never > 0) {
            text.push_str(&format!(
                "{} to recipients whose send window is never open in all of their number's time \
                 zones at once: they would be UNSENDABLE (a wider window sends them)\n",
                counted(never, "message")
            ));
        }
        text
    }

    /// `about 2 days 3 h (sending only 08:00-20:00 America/Sao_Paulo): 5000
    /// messages at 20/min a number on 3 instances, the busiest with 1712; …`.
    fn expected_time(&self) -> String {
        let pacing = match self.pace_by_message {
            true => ", pace_by_message on",
            false => "",
        };
        let messages = counted(self.messages, "message");
        let spread = match self.instances {
            1 => format!("{messages} at {} on one instance{pacing}", self.rate),
            n => format!(
                "{messages} at {} a number on {n} instances, the busiest with {}{pacing}",
                self.rate, self.busiest_instance_messages
            ),
        };
        let expected = human_duration(Duration::from_secs_f64(self.expected_seconds));
        match &self.window {
            None => format!("about {expected}: {spread}"),
            Some(window) => format!(
                "about {expected} (sending only {window}): {spread}; {} of sending",
                human_duration(Duration::from_secs_f64(self.sending_seconds))
            ),
        }
    }
}

#[cfg(test)]
impl CheckReport {
    /// An empty report of a UTF-8, comma-separated campaign at 20/min.
    pub(crate) fn at_20_a_minute() -> Self {
        CheckReport::new(
            "utf-8".to_string(),
            b',',
            Estimate::new("20/min".parse().unwrap(), true, 1),
            None,
            Region::BR,
        )
    }
}

/// `1 row`, `2 rows`.
/// `3, 7, 14 and 12 more`: the first rows of `total`.
pub(super) fn first_rows(first: &[u64], total: u64) -> String {
    let mut rows = first
        .iter()
        .map(u64::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let more = total.saturating_sub(first.len() as u64);
    if more > 0 {
        rows.push_str(&format!(" and {more} more"));
    }
    rows
}

pub(super) fn counted(count: u64, noun: &str) -> String {
    if count == 1 {
        format!("1 {noun}")
    } else {
        format!("{count} {noun}s")
    }
}

/// `62 days 19 h`, `2 h 05 min`, `4 min 10 s`, `12 s`.
pub fn human_duration(duration: Duration) -> String {
    let seconds = duration.as_secs_f64().round() as u64;
    match (seconds / 3600, seconds % 3600 / 60, seconds % 60) {
        (0, 0, s) => format!("{s} s"),
        (0, m, s) => format!("{m} min {s:02} s"),
        (h, m, _) if h < 48 => format!("{h} h {m:02} min"),
        (h, _, _) => format!("{} days {} h", h / 24, h % 24),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check() -> CheckReport {
        CheckReport::at_20_a_minute()
    }

    #[test]
    fn problems_are_grouped_by_kind_with_their_first_rows() {
        let mut report = check();
        let problem = |field: &str, kind, message: &str| Problem {
            field: field.to_string(),
            kind,
            message: message.to_string(),
        };
        for row in 2..10 {
            report.add_problem(
                row,
                &problem("to", "too short", &format!("`{row}` is too short for BR")),
            );
        }
        report.add_problem(11, &problem("delay", "not a number", "`x` is not a number"));
        report.finish(Timestamp::now());
        assert_eq!(report.problems.len(), 2);
        let short = &report.problems[0];
        assert_eq!(
            (short.problem.as_str(), short.rows_affected),
            ("to: too short", 8)
        );
        assert_eq!(short.first_rows, vec![2, 3, 4, 5, 6]);
        assert_eq!(short.example, "row 2: to: `2` is too short for BR");
        let text = report.text(View::Check);
        assert!(
            text.contains("to: too short — 8 rows: 2, 3, 4, 5, 6 and 3 more"),
            "{text}"
        );
        assert!(text.contains("delay: not a number — 1 row: 11"), "{text}");
    }

    #[test]
    fn durations_read_like_a_clock() {
        assert_eq!(human_duration(Duration::from_secs(12)), "12 s");
        assert_eq!(human_duration(Duration::from_secs(250)), "4 min 10 s");
        assert_eq!(human_duration(Duration::from_secs(7500)), "2 h 05 min");
        assert_eq!(
            human_duration(Duration::from_secs(5_425_200)),
            "62 days 19 h"
        );
    }
}
