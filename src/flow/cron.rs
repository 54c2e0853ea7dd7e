//! Cron schedules for flow triggers: parse a trigger's `cron:` expression and
//! optional `timezone:`, and compute when the flow fires.
//!
//! Fire times are computed on the wall clock of the schedule's IANA time zone
//! (UTC when none is given) and returned as UTC instants. So
//! `0 30 9 * * Mon-Fri` with `timezone: Europe/Rome` fires at 09:30 Rome time all
//! year round, whatever the UTC offset is. The scheduler sleeps until
//! [`CronSchedule::next_after`]. On start-up it asks
//! [`CronSchedule::latest_between`] for the latest fire time missed during
//! downtime, so it runs at most one catch-up run however long the downtime was.
//!
//! # Expressions
//!
//! - 5 fields: `minute hour day-of-month month day-of-week` (classic cron,
//!   minute precision, fires at second 0);
//! - 6 fields: `second minute hour day-of-month month day-of-week`;
//! - 7 fields: the 6 fields followed by `year` (1970-2100);
//! - macros: `@yearly` and `@annually` (00:00 on January 1st), `@monthly`
//!   (00:00 on the 1st), `@weekly` (00:00 on Sunday), `@daily` and `@midnight`
//!   (00:00), `@hourly` (minute 0 of every hour).
//!
//! A field is `*`, a number, a range `1-5`, a list `1,15,30`, or a step
//! `*/15`, `1-5/2` or `10/5` (from 10 to the end of the field's range). Months
//! can be written JAN-DEC and days SUN-SAT, in any letter case. `?` means the
//! same as `*` in the two day fields. The Quartz extensions `L`, `W` and `#`
//! are not supported. Fields can be separated by any amount of whitespace.
//! Nothing fires after 2100, the last year the `cron` crate knows about.
//!
//! # Days of the week
//!
//! Day numbers always use classic cron numbering, in the 5-, 6- and 7-field
//! forms alike: 0 and 7 are Sunday, 1 is Monday, ... 6 is Saturday. So
//! `0 9 * * 1-5` fires Monday to Friday. (The `cron` crate, like Quartz, uses 1
//! for Sunday. We turn day numbers into day names before passing the expression
//! to it, so this difference never reaches users.) A range that ends on 7 or
//! SUN runs up to and including Sunday: `5-7` and `Fri-Sun` both mean Friday,
//! Saturday and Sunday. A step counts from the start of its range:
//! `1-5/2` is Monday, Wednesday and Friday, and `*/2` is Sunday, Tuesday,
//! Thursday and Saturday.
//!
//! When both day-of-month and day-of-week are restricted, a day must match
//! both. For example, `0 9 1-7 * Mon` fires on the first Monday of each month.
//! Classic cron differs here: it fires when either field matches.
//!
//! # Daylight saving time
//!
//! A wall-clock time fires at the first instant at which the zone's clock
//! shows that time or a later one. As a result:
//!
//! - A time skipped when clocks go forward fires once, at the moment of the
//!   jump. In Europe/Rome the clocks go from 02:00 straight to 03:00 on
//!   2026-03-29, so a daily 02:30 schedule fires at 03:00 CEST (01:00 UTC) that
//!   day. If several times fall in the skipped hour (every 15 minutes, say),
//!   they all become that single run.
//! - A time repeated when clocks go back fires once, the first time it occurs.
//!   On 2026-10-25 the clocks in Rome go from 03:00 back to 02:00, so a daily
//!   02:30 schedule fires at 02:30 CEST (00:30 UTC) and not again at 02:30
//!   CET. Likewise, a schedule that fires during the repeated hour fires
//!   only during the first pass through it.
//!
//! The `cron` crate on its own behaves differently with a time zone: it skips
//! times that do not exist without saying so, fires repeated times twice, and,
//! if asked from inside the repeated hour, can return a time that has already
//! passed. So this module gives the crate plain wall-clock times, in which
//! there is no daylight saving, and turns the results into instants itself.

use std::collections::BTreeSet;
use std::str::FromStr;

use chrono::{
    DateTime, Datelike, LocalResult, NaiveDate, NaiveDateTime, Offset, SubsecRound, TimeDelta,
    TimeZone, Utc,
};
use chrono_tz::{TZ_VARIANTS, Tz};
use cron::TimeUnitSpec;

/// A parsed schedule trigger: a cron expression and the time zone whose wall
/// clock it follows.
#[derive(Clone, Debug)]
pub struct CronSchedule {
    /// The expression as the user wrote it (trimmed), for messages and display.
    expression: String,
    /// The expression translated to the `cron` crate's dialect.
    schedule: cron::Schedule,
    timezone: Tz,
}

/// Why a schedule trigger could not be parsed. The `Display` text is a
/// complete sentence that names the bad part.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CronError {
    /// The cron expression is malformed.
    #[error("{message}")]
    Expression { expression: String, message: String },
    /// The time zone is not an IANA name known to chrono-tz.
    #[error("unknown time zone `{name}`{}", timezone_hint(.suggestion))]
    Timezone {
        name: String,
        /// The closest known name, when one is close enough to be a likely typo.
        suggestion: Option<String>,
    },
}

impl CronSchedule {
    /// Parses a cron expression (5, 6 or 7 fields, or a macro such as
    /// `@daily`) and an optional IANA time zone name (UTC when `None`).
    pub fn parse(expr: &str, timezone: Option<&str>) -> Result<CronSchedule, CronError> {
        let expression = expr.trim().to_string();
        let translated = translate_expression(&expression)?;
        let schedule = cron::Schedule::from_str(&translated)
            .map_err(|error| crate_rejected(&expression, &error))?;
        let timezone = match timezone {
            Some(name) => parse_timezone(name)?,
            None => Tz::UTC,
        };
        Ok(CronSchedule {
            expression,
            schedule,
            timezone,
        })
    }

    /// The first fire time strictly after `after`, in UTC; `None` if the
    /// schedule never fires again (e.g. February 30, or a past year).
    pub fn next_after(&self, after: DateTime<Utc>) -> Option<DateTime<Utc>> {
        let (earliest, latest) = supported_window()?;
        if after > latest {
            return None;
        }
        let reached = last_wall_second_reached(self.timezone, after.max(earliest))?;
        let next_wall = self.schedule.after(&reached.and_utc()).next()?;
        fire_instant(self.timezone, next_wall.naive_utc())
    }

    /// The latest fire time in `(since, now]`, if any. After downtime the
    /// scheduler runs only this one, however many fire times were missed.
    pub fn latest_between(
        &self,
        since: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> Option<DateTime<Utc>> {
        let (earliest, latest) = supported_window()?;
        if now <= since || now < earliest {
            return None;
        }
        let reached = last_wall_second_reached(self.timezone, now.min(latest))?;
        // The crate looks strictly before its argument, so start one second later.
        let bound = reached.checked_add_signed(TimeDelta::seconds(1))?;
        let bound = self.backward_search_start(bound)?;
        let latest_wall = self.schedule.after(&bound.and_utc()).next_back()?;
        let fire = fire_instant(self.timezone, latest_wall.naive_utc())?;
        (fire > since).then_some(fire)
    }

    /// Where to start the crate's backward search for wall times before
    /// `bound`. The crate (0.17) misses fire times when `bound` falls in a year
    /// the schedule excludes (e.g. `2030` asked from 2031 or beyond 2100), so
    /// start at the end of the latest scheduled year instead.
    fn backward_search_start(&self, bound: NaiveDateTime) -> Option<NaiveDateTime> {
        let bound_year = u32::try_from(bound.year()).ok()?;
        let latest_year = self.schedule.years().range(..=bound_year).next_back()?;
        if latest_year == bound_year {
            return Some(bound);
        }
        let next_year = i32::try_from(latest_year).ok()?.checked_add(1)?;
        NaiveDate::from_ymd_opt(next_year, 1, 1)?.and_hms_opt(0, 0, 0)
    }

    /// The expression as written by the user (without surrounding spaces).
    pub fn expression(&self) -> &str {
        &self.expression
    }

    /// The time zone whose wall clock the schedule follows.
    pub fn timezone(&self) -> Tz {
        self.timezone
    }
}

// ---------------------------------------------------------------------------
// From wall-clock times to instants
// ---------------------------------------------------------------------------

/// The instants we compute with: the `cron` crate only knows the years
/// 1970-2100. Keeping a few days' margin on both sides covers every UTC offset
/// and keeps chrono arithmetic far from its limits, so extreme inputs cannot
/// overflow.
fn supported_window() -> Option<(DateTime<Utc>, DateTime<Utc>)> {
    const EARLIEST: i64 = -259_200; // 1969-12-29T00:00:00Z
    const LATEST: i64 = 4_134_153_600; // 2101-01-03T00:00:00Z
    Some((
        DateTime::from_timestamp(EARLIEST, 0)?,
        DateTime::from_timestamp(LATEST, 0)?,
    ))
}

/// The instant a wall-clock time fires: the first instant at which the clock
/// of `tz` shows `wall` or later. That is the earlier instant for a time that
/// occurs twice, and the moment of the jump for a time that does not exist.
fn fire_instant(tz: Tz, wall: NaiveDateTime) -> Option<DateTime<Utc>> {
    let resolved = match tz.from_local_datetime(&wall) {
        LocalResult::None => {
            let exists = |w: NaiveDateTime| tz.from_local_datetime(&w).earliest().is_some();
            let after_gap = first_wall_second_where(wall, exists)?;
            tz.from_local_datetime(&after_gap).earliest()
        }
        other => other.earliest(),
    }?;
    Some(resolved.with_timezone(&Utc))
}

/// The latest wall-clock second whose fire instant is at or before `instant`:
/// exactly the wall times a schedule has already fired for by then.
fn last_wall_second_reached(tz: Tz, instant: DateTime<Utc>) -> Option<NaiveDateTime> {
    let local = instant.with_timezone(&tz);
    let wall = local.naive_local().trunc_subsecs(0);
    match tz.from_local_datetime(&wall) {
        // On the second pass through a repeated hour, the first pass already
        // fired everything up to the end of that hour.
        LocalResult::Ambiguous(first, _) if first.offset().fix() != local.offset().fix() => {
            let unambiguous = |w: NaiveDateTime| {
                !matches!(tz.from_local_datetime(&w), LocalResult::Ambiguous(..))
            };
            let end_of_repeat = first_wall_second_where(wall, unambiguous)?;
            end_of_repeat.checked_sub_signed(TimeDelta::seconds(1))
        }
        _ => Some(wall),
    }
}

/// The first whole wall-clock second at or after `start` for which `accept`
/// holds, where the seconds that fail form one run starting at `start` (a
/// daylight-saving gap or repeated hour). Probes forward in coarse steps, then
/// bisects the step where `accept` starts to hold. The search is bounded: such
/// transitions last at most a day (Samoa skipped 2011-12-30 entirely).
fn first_wall_second_where(
    start: NaiveDateTime,
    accept: impl Fn(NaiveDateTime) -> bool,
) -> Option<NaiveDateTime> {
    const PROBE_STEP_SECONDS: i64 = 15 * 60;
    const MAX_PROBES: i64 = 48 * 4;
    if accept(start) {
        return Some(start);
    }
    let at = |seconds: i64| start.checked_add_signed(TimeDelta::seconds(seconds));
    let mut failing = 0;
    for probe in 1..=MAX_PROBES {
        let candidate = probe * PROBE_STEP_SECONDS;
        if accept(at(candidate)?) {
            let mut accepted = candidate;
            while accepted - failing > 1 {
                let middle = failing + (accepted - failing) / 2;
                if accept(at(middle)?) {
                    accepted = middle;
                } else {
                    failing = middle;
                }
            }
            return at(accepted);
        }
        failing = candidate;
    }
    None
}

// ---------------------------------------------------------------------------
// Expression translation and validation
// ---------------------------------------------------------------------------

const MACROS: [(&str, &str); 7] = [
    ("@yearly", "0 0 0 1 1 *"),
    ("@annually", "0 0 0 1 1 *"),
    ("@monthly", "0 0 0 1 * *"),
    ("@weekly", "0 0 0 * * SUN"),
    ("@daily", "0 0 0 * * *"),
    ("@midnight", "0 0 0 * * *"),
    ("@hourly", "0 0 * * * *"),
];

const FIVE_FIELDS: [FieldKind; 5] = [
    FieldKind::Minute,
    FieldKind::Hour,
    FieldKind::DayOfMonth,
    FieldKind::Month,
    FieldKind::DayOfWeek,
];
const SIX_FIELDS: [FieldKind; 6] = [
    FieldKind::Second,
    FieldKind::Minute,
    FieldKind::Hour,
    FieldKind::DayOfMonth,
    FieldKind::Month,
    FieldKind::DayOfWeek,
];
const SEVEN_FIELDS: [FieldKind; 7] = [
    FieldKind::Second,
    FieldKind::Minute,
    FieldKind::Hour,
    FieldKind::DayOfMonth,
    FieldKind::Month,
    FieldKind::DayOfWeek,
    FieldKind::Year,
];

/// Translates a user's expression into the `cron` crate's dialect: seconds
/// first, months as numbers, days of the week as names. Validates every field
/// on the way, so that mistakes get a message naming the bad part instead of
/// the crate's parser output.
fn translate_expression(expression: &str) -> Result<String, CronError> {
    if expression.starts_with('@') {
        return translate_macro(expression);
    }
    let fields: Vec<&str> = expression.split_whitespace().collect();
    let kinds: &[FieldKind] = match fields.len() {
        5 => &FIVE_FIELDS,
        6 => &SIX_FIELDS,
        7 => &SEVEN_FIELDS,
        found => return Err(field_count_error(expression, found)),
    };
    // Classic 5-field cron has minute precision: fire at second 0.
    let mut translated = if fields.len() == 5 {
        vec!["0".to_string()]
    } else {
        Vec::new()
    };
    for (kind, text) in kinds.iter().zip(&fields) {
        let field = translate_field(*kind, text)
            .map_err(|problem| field_error(expression, kinds, &problem))?;
        translated.push(field);
    }
    Ok(translated.join(" "))
}

fn translate_macro(expression: &str) -> Result<String, CronError> {
    let wanted = expression.to_ascii_lowercase();
    if let Some((_, translated)) = MACROS.iter().find(|(name, _)| *name == wanted) {
        return Ok((*translated).to_string());
    }
    let known: Vec<&str> = MACROS.iter().map(|(name, _)| *name).collect();
    let hint = match closest(&wanted, known.iter().copied()) {
        Some(name) => format!(", did you mean `{name}`?"),
        None => format!("; the known macros are {}", known.join(", ")),
    };
    Err(expression_error(
        expression,
        format!("unknown cron macro `{expression}`{hint}"),
    ))
}

/// Translates one field (a comma-separated list of items); the error is the
/// problem, e.g. "minute `61` is out of range 0-59".
fn translate_field(kind: FieldKind, text: &str) -> Result<String, String> {
    let items = text
        .split(',')
        .map(|item| {
            if item.is_empty() {
                return Err(format!(
                    "{} `{text}` has an empty entry in its list",
                    kind.name()
                ));
            }
            let parsed = parse_item(kind, item)?;
            Ok(match kind {
                FieldKind::DayOfWeek => render_weekday_item(&parsed),
                _ => render_item(&parsed),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(items.join(","))
}

/// The kinds of cron fields, in the order they appear in an expression.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum FieldKind {
    Second,
    Minute,
    Hour,
    DayOfMonth,
    Month,
    DayOfWeek,
    Year,
}

impl FieldKind {
    fn name(self) -> &'static str {
        match self {
            FieldKind::Second => "second",
            FieldKind::Minute => "minute",
            FieldKind::Hour => "hour",
            FieldKind::DayOfMonth => "day-of-month",
            FieldKind::Month => "month",
            FieldKind::DayOfWeek => "day-of-week",
            FieldKind::Year => "year",
        }
    }

    /// Allowed numbers; day-of-week uses classic numbering (0 and 7 = Sunday).
    fn range(self) -> (u32, u32) {
        match self {
            FieldKind::Second | FieldKind::Minute => (0, 59),
            FieldKind::Hour => (0, 23),
            FieldKind::DayOfMonth => (1, 31),
            FieldKind::Month => (1, 12),
            FieldKind::DayOfWeek => (0, 7),
            FieldKind::Year => (1970, 2100),
        }
    }

    /// Names accepted in place of numbers (the same names the `cron` crate knows).
    fn names(self) -> &'static [(&'static str, u32)] {
        match self {
            FieldKind::Month => &MONTH_NAMES,
            FieldKind::DayOfWeek => &WEEKDAY_NAMES,
            _ => &[],
        }
    }

    /// What a value should look like, completing "... is not ...".
    fn expected(self) -> String {
        let (min, max) = self.range();
        match self {
            FieldKind::Month => format!("a month number {min}-{max} or a name JAN-DEC"),
            FieldKind::DayOfWeek => {
                format!("a day number {min}-{max} (0 and 7 are Sunday) or a name SUN-SAT")
            }
            _ => format!("a number {min}-{max}"),
        }
    }

    fn accepts_question_mark(self) -> bool {
        matches!(self, FieldKind::DayOfMonth | FieldKind::DayOfWeek)
    }
}

const MONTH_NAMES: [(&str, u32); 23] = [
    ("jan", 1),
    ("january", 1),
    ("feb", 2),
    ("february", 2),
    ("mar", 3),
    ("march", 3),
    ("apr", 4),
    ("april", 4),
    ("may", 5),
    ("jun", 6),
    ("june", 6),
    ("jul", 7),
    ("july", 7),
    ("aug", 8),
    ("august", 8),
    ("sep", 9),
    ("september", 9),
    ("oct", 10),
    ("october", 10),
    ("nov", 11),
    ("november", 11),
    ("dec", 12),
    ("december", 12),
];

/// Day names with classic numbers (Sunday = 0).
const WEEKDAY_NAMES: [(&str, u32); 16] = [
    ("sun", 0),
    ("sunday", 0),
    ("mon", 1),
    ("monday", 1),
    ("tue", 2),
    ("tues", 2),
    ("tuesday", 2),
    ("wed", 3),
    ("wednesday", 3),
    ("thu", 4),
    ("thurs", 4),
    ("thursday", 4),
    ("fri", 5),
    ("friday", 5),
    ("sat", 6),
    ("saturday", 6),
];

/// The names the `cron` crate understands, indexed by classic day number mod 7.
const CRATE_WEEKDAYS: [&str; 7] = ["SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"];

/// One list entry of a field: `*`, `5` or `1-5`, with an optional `/step`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Item {
    base: Base,
    step: Option<u32>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Base {
    Every,
    Value(u32),
    Range(u32, u32),
}

fn parse_item(kind: FieldKind, item: &str) -> Result<Item, String> {
    if is_incomplete(item) {
        return Err(format!(
            "{} `{item}` is incomplete: write a value, a range like `1-5` or a step like `*/15`",
            kind.name()
        ));
    }
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(parse_step(kind, item, step)?)),
        None => (item, None),
    };
    Ok(Item {
        base: parse_base(kind, base)?,
        step,
    })
}

/// An item with a missing part (`-1`, `1-`, `/5`, `*/`), which would otherwise
/// produce a message quoting an empty value.
fn is_incomplete(item: &str) -> bool {
    let (base, step) = match item.split_once('/') {
        Some((base, step)) => (base, Some(step)),
        None => (item, None),
    };
    let range_side_missing = base
        .split_once('-')
        .is_some_and(|(start, end)| start.is_empty() || end.is_empty());
    base.is_empty() || step == Some("") || range_side_missing
}

fn parse_base(kind: FieldKind, text: &str) -> Result<Base, String> {
    if text == "*" || (text == "?" && kind.accepts_question_mark()) {
        return Ok(Base::Every);
    }
    let Some((start, end)) = text.split_once('-') else {
        return Ok(Base::Value(parse_value(kind, text, false)?));
    };
    let first = parse_value(kind, start, false)?;
    let last = parse_value(kind, end, true)?;
    if first > last {
        return Err(format!(
            "{} range `{text}` runs backwards: its start comes after its end",
            kind.name()
        ));
    }
    Ok(Base::Range(first, last))
}

/// Parses a number or name; `ends_range` is true for the end of a range.
fn parse_value(kind: FieldKind, text: &str, ends_range: bool) -> Result<u32, String> {
    let (min, max) = kind.range();
    if !text.is_empty() && text.bytes().all(|byte| byte.is_ascii_digit()) {
        return match text.parse::<u32>() {
            Ok(number) if (min..=max).contains(&number) => Ok(number),
            _ => Err(format!(
                "{} `{text}` is out of range {min}-{max}",
                kind.name()
            )),
        };
    }
    let lower = text.to_ascii_lowercase();
    match kind.names().iter().find(|(name, _)| *name == lower) {
        // `Fri-Sun` means "through Sunday", so SUN ending a range counts as 7.
        Some((_, 0)) if ends_range && kind == FieldKind::DayOfWeek => Ok(7),
        Some((_, number)) => Ok(*number),
        None => Err(format!(
            "{} `{text}` is not {}",
            kind.name(),
            kind.expected()
        )),
    }
}

fn parse_step(kind: FieldKind, item: &str, text: &str) -> Result<u32, String> {
    // The `cron` crate rejects steps larger than the field's largest value.
    let (_, max) = kind.range();
    let valid = text.bytes().all(|byte| byte.is_ascii_digit());
    match text.parse::<u32>() {
        Ok(step) if valid && (1..=max).contains(&step) => Ok(step),
        _ => Err(format!(
            "{} step `{text}` in `{item}` must be a number from 1 to {max}",
            kind.name()
        )),
    }
}

/// Renders an item of any field except day-of-week for the `cron` crate.
fn render_item(item: &Item) -> String {
    let base = match item.base {
        Base::Every => "*".to_string(),
        Base::Value(value) => value.to_string(),
        Base::Range(first, last) => format!("{first}-{last}"),
    };
    match item.step {
        Some(step) => format!("{base}/{step}"),
        None => base,
    }
}

/// Renders a day-of-week item with day names, because the `cron` crate
/// numbers days differently (1 = Sunday) from classic cron (0 = Sunday).
fn render_weekday_item(item: &Item) -> String {
    match (item.base, item.step) {
        (Base::Every, None) => "*".to_string(),
        (Base::Every, Some(step)) => format!("*/{step}"),
        (Base::Value(day), None) => weekday_name(day).to_string(),
        // As in cronie, `a/n` runs from `a` to the end of the week.
        (Base::Value(day), Some(step)) => render_weekday_range(day, 7, step),
        (Base::Range(first, last), step) => render_weekday_range(first, last, step.unwrap_or(1)),
    }
}

fn render_weekday_range(first: u32, last: u32, step: u32) -> String {
    if last < 7 {
        let range = format!("{}-{}", weekday_name(first), weekday_name(last));
        return match step {
            1 => range,
            _ => format!("{range}/{step}"),
        };
    }
    // Day 7 is Sunday again, but the crate's week ends on Saturday: `FRI-SUN`
    // would be a descending range. List the days instead.
    let days: BTreeSet<u32> = (first..=last)
        .step_by(step.max(1) as usize)
        .map(|day| day % 7)
        .collect();
    let names: Vec<&str> = days.into_iter().map(weekday_name).collect();
    names.join(",")
}

fn weekday_name(classic_number: u32) -> &'static str {
    CRATE_WEEKDAYS[(classic_number % 7) as usize]
}

// ---------------------------------------------------------------------------
// Errors and suggestions
// ---------------------------------------------------------------------------

fn expression_error(expression: &str, message: String) -> CronError {
    CronError::Expression {
        expression: expression.to_string(),
        message,
    }
}

fn field_count_error(expression: &str, found: usize) -> CronError {
    let message = if found == 0 {
        "cron expression is empty; it must have 5, 6 or 7 fields, like `0 9 * * Mon-Fri`"
            .to_string()
    } else {
        format!("cron expression `{expression}` must have 5, 6 or 7 fields, found {found}")
    };
    expression_error(expression, message)
}

/// "cron expression `…` has 5 fields (minute hour …); <problem>": repeating
/// the field names shows how the expression was read, which matters because a
/// 6-field expression starts with seconds.
fn field_error(expression: &str, kinds: &[FieldKind], problem: &str) -> CronError {
    let names: Vec<&str> = kinds.iter().map(|kind| kind.name()).collect();
    let message = format!(
        "cron expression `{expression}` has {} fields ({}); {problem}",
        kinds.len(),
        names.join(" ")
    );
    expression_error(expression, message)
}

/// Our validation should catch everything the crate rejects; if it does not,
/// still say which expression failed, with the crate's explanation.
fn crate_rejected(expression: &str, error: &cron::error::Error) -> CronError {
    let text = error.to_string();
    // The crate's message repeats the expression with a caret line above the reason.
    let reason = text
        .lines()
        .map(str::trim)
        .rfind(|line| !line.is_empty() && *line != "^")
        .unwrap_or("it could not be parsed");
    expression_error(
        expression,
        format!("cron expression `{expression}` is not valid: {reason}"),
    )
}

fn parse_timezone(name: &str) -> Result<Tz, CronError> {
    let name = name.trim();
    name.parse::<Tz>().map_err(|_| CronError::Timezone {
        name: name.to_string(),
        suggestion: suggest_timezone(name),
    })
}

fn timezone_hint(suggestion: &Option<String>) -> String {
    match suggestion {
        Some(name) => format!(", did you mean `{name}`?"),
        None => "; use an IANA name such as `Europe/Rome`, `America/New_York` or `UTC`".to_string(),
    }
}

/// The IANA name closest to `name`, if close enough to be a typo. Without a
/// `/`, the name is also compared with city names, so `Rome` finds `Europe/Rome`.
fn suggest_timezone(name: &str) -> Option<String> {
    let wanted = name.to_ascii_lowercase();
    let limit = typo_limit(&wanted);
    let compare_city = !wanted.contains('/');
    TZ_VARIANTS
        .iter()
        .map(|tz| tz.name())
        .filter_map(|candidate| {
            let lower = candidate.to_ascii_lowercase();
            let full = edit_distance(&wanted, &lower);
            let city = lower.rsplit('/').next().filter(|_| compare_city);
            let by_city = city.map_or(usize::MAX, |city| edit_distance(&wanted, city));
            // On a tie prefer a match on the full name (`utc` → `UTC`, not `Etc/UTC`).
            let key = if full <= by_city {
                (full, false)
            } else {
                (by_city, true)
            };
            (key.0 <= limit).then_some((key, candidate))
        })
        .min_by_key(|(key, _)| *key)
        .map(|(_, candidate)| candidate.to_string())
}

/// The candidate closest to `wanted` (already lowercase), if close enough.
fn closest<'a>(wanted: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = typo_limit(wanted);
    candidates
        .map(|candidate| (edit_distance(wanted, candidate), candidate))
        .filter(|(distance, _)| *distance <= limit)
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

/// How many edits still look like a typo: about one per four characters.
fn typo_limit(text: &str) -> usize {
    (text.chars().count() / 4).clamp(1, 3)
}

/// Levenshtein distance between two strings, counted in characters.
fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, a_char) in a.chars().enumerate() {
        let mut current = Vec::with_capacity(b.len() + 1);
        current.push(i + 1);
        for (j, b_char) in b.iter().enumerate() {
            let substitution = previous[j] + usize::from(a_char != *b_char);
            let insertion = current[j] + 1;
            let deletion = previous[j + 1] + 1;
            current.push(substitution.min(insertion).min(deletion));
        }
        previous = current;
    }
    previous[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Weekday;
    use std::time::{Duration, Instant};

    fn utc(year: i32, month: u32, day: u32, hour: u32, minute: u32, second: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(year, month, day, hour, minute, second)
            .single()
            .expect("valid test instant")
    }

    fn schedule(expr: &str, timezone: Option<&str>) -> CronSchedule {
        CronSchedule::parse(expr, timezone)
            .unwrap_or_else(|error| panic!("`{expr}` should parse: {error}"))
    }

    /// The next `count` fire times after `start`.
    fn fires(schedule: &CronSchedule, start: DateTime<Utc>, count: usize) -> Vec<DateTime<Utc>> {
        std::iter::successors(schedule.next_after(start), |last| {
            schedule.next_after(*last)
        })
        .take(count)
        .collect()
    }

    /// The weekdays a daily 09:00 schedule with this day-of-week field fires
    /// on, over one week starting on Sunday 2026-03-01.
    fn weekdays(day_of_week: &str) -> Vec<Weekday> {
        let daily = schedule(&format!("0 9 * * {day_of_week}"), None);
        let week_end = utc(2026, 3, 8, 0, 0, 0);
        fires(&daily, utc(2026, 3, 1, 0, 0, 0), 8)
            .into_iter()
            .take_while(|fire| *fire < week_end)
            .map(|fire| fire.weekday())
            .collect()
    }

    fn expression_message(expr: &str) -> String {
        match CronSchedule::parse(expr, None) {
            Err(error @ CronError::Expression { .. }) => error.to_string(),
            other => panic!("`{expr}` should be rejected, got {other:?}"),
        }
    }

    fn timezone_error(name: &str) -> (String, Option<String>) {
        match CronSchedule::parse("0 9 * * *", Some(name)) {
            Err(error @ CronError::Timezone { .. }) => {
                let message = error.to_string();
                let CronError::Timezone { suggestion, .. } = error else {
                    unreachable!()
                };
                (message, suggestion)
            }
            other => panic!("time zone `{name}` should be rejected, got {other:?}"),
        }
    }

    use Weekday::{Fri, Mon, Sat, Sun, Thu, Tue, Wed};

    // --- parsing --------------------------------------------------------

    #[test]
    fn five_fields_fire_at_second_zero() {
        let morning = schedule("30 9 * * *", None);
        assert_eq!(
            morning.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 1, 9, 30, 0))
        );
    }

    #[test]
    fn six_fields_start_with_seconds() {
        let morning = schedule("15 30 9 * * *", None);
        assert_eq!(
            morning.next_after(utc(2026, 1, 1, 0, 0, 0)),
            Some(utc(2026, 1, 1, 9, 30, 15))
        );
    }

    #[test]
    fn seven_fields_end_with_year() {
        let once = schedule("0 0 12 1 1 * 2030", None);
        assert_eq!(
            once.next_after(utc(2026, 6, 1, 0, 0, 0)),
            Some(utc(2030, 1, 1, 12, 0, 0))
        );
        assert_eq!(once.next_after(utc(2030, 1, 1, 12, 0, 0)), None);
    }

    #[test]
    fn every_second_fires_each_whole_second_strictly_after() {
        let every_second = schedule("* * * * * *", None);
        let start = utc(2026, 5, 1, 10, 0, 0);
        assert_eq!(
            fires(&every_second, start, 3),
            vec![
                utc(2026, 5, 1, 10, 0, 1),
                utc(2026, 5, 1, 10, 0, 2),
                utc(2026, 5, 1, 10, 0, 3)
            ]
        );
        let half_past = start + TimeDelta::milliseconds(500);
        assert_eq!(
            every_second.next_after(half_past),
            Some(utc(2026, 5, 1, 10, 0, 1))
        );
    }

    #[test]
    fn extra_whitespace_is_accepted_and_expression_is_kept() {
        let spaced = schedule("  0   9 *\t* \t1-5  ", Some("Europe/Rome"));
        assert_eq!(spaced.expression(), "0   9 *\t* \t1-5");
        assert_eq!(spaced.timezone(), Tz::Europe__Rome);
        assert_eq!(schedule("0 9 * * *", None).timezone(), Tz::UTC);
        assert_eq!(weekdays(" 1-5 "), weekdays("1-5"));
    }

    #[test]
    fn months_accept_names_and_steps() {
        let quarterly = schedule("0 0 1 jan-DEC/3 *", None);
        let months: Vec<u32> = fires(&quarterly, utc(2026, 1, 1, 0, 0, 0), 4)
            .iter()
            .map(|fire| fire.month())
            .collect();
        assert_eq!(months, vec![4, 7, 10, 1]);
    }

    // --- days of the week -----------------------------------------------

    #[test]
    fn classic_day_numbers_map_to_the_right_weekdays() {
        assert_eq!(weekdays("0"), vec![Sun]);
        assert_eq!(weekdays("7"), vec![Sun]);
        assert_eq!(weekdays("1"), vec![Mon]);
        assert_eq!(weekdays("6"), vec![Sat]);
        assert_eq!(weekdays("1-5"), vec![Mon, Tue, Wed, Thu, Fri]);
        assert_eq!(weekdays("5-7"), vec![Sun, Fri, Sat]);
        assert_eq!(weekdays("0-7"), vec![Sun, Mon, Tue, Wed, Thu, Fri, Sat]);
        assert_eq!(weekdays("*"), vec![Sun, Mon, Tue, Wed, Thu, Fri, Sat]);
    }

    #[test]
    fn day_of_week_steps_count_from_the_range_start() {
        assert_eq!(weekdays("*/2"), vec![Sun, Tue, Thu, Sat]);
        assert_eq!(weekdays("1-5/2"), vec![Mon, Wed, Fri]);
        assert_eq!(weekdays("5-7/2"), vec![Sun, Fri]);
        assert_eq!(weekdays("4-7/2"), vec![Thu, Sat]);
        assert_eq!(weekdays("1/3"), vec![Sun, Mon, Thu]);
    }

    #[test]
    fn day_of_week_lists_mix_numbers_and_names() {
        assert_eq!(weekdays("1,3,5"), vec![Mon, Wed, Fri]);
        assert_eq!(weekdays("0,6"), vec![Sun, Sat]);
        assert_eq!(weekdays("7,Wed,5-6"), vec![Sun, Wed, Fri, Sat]);
        assert_eq!(weekdays("Mon-Fri"), vec![Mon, Tue, Wed, Thu, Fri]);
        assert_eq!(weekdays("mon,WED,Friday"), vec![Mon, Wed, Fri]);
        assert_eq!(weekdays("Fri-Sun"), vec![Sun, Fri, Sat]);
        assert_eq!(weekdays("Mon-Fri/2"), vec![Mon, Wed, Fri]);
        assert_eq!(weekdays("?"), weekdays("*"));
    }

    #[test]
    fn day_of_week_is_translated_to_crate_names() {
        let translate = |text| translate_field(FieldKind::DayOfWeek, text);
        assert_eq!(translate("1-5/2"), Ok("MON-FRI/2".to_string()));
        assert_eq!(translate("*/2"), Ok("*/2".to_string()));
        assert_eq!(translate("0,7"), Ok("SUN,SUN".to_string()));
        assert_eq!(translate("5-7"), Ok("SUN,FRI,SAT".to_string()));
        assert_eq!(translate("Mon-Fri"), Ok("MON-FRI".to_string()));
    }

    #[test]
    fn classic_numbering_also_applies_to_six_and_seven_fields() {
        let monday = schedule("0 0 9 * * 1", None);
        assert_eq!(
            monday
                .next_after(utc(2026, 3, 1, 0, 0, 0))
                .map(|f| f.weekday()),
            Some(Mon)
        );
        let sunday = schedule("0 0 9 * * 0 2026", None);
        assert_eq!(
            sunday.next_after(utc(2026, 3, 2, 0, 0, 0)),
            Some(utc(2026, 3, 8, 9, 0, 0))
        );
    }

    #[test]
    fn day_of_month_and_day_of_week_must_both_match() {
        let first_monday = schedule("0 9 1-7 * Mon", None);
        assert_eq!(
            fires(&first_monday, utc(2026, 3, 1, 0, 0, 0), 2),
            vec![utc(2026, 3, 2, 9, 0, 0), utc(2026, 4, 6, 9, 0, 0)]
        );
    }

    // --- macros ---------------------------------------------------------

    #[test]
    fn macros_fire_like_their_expansions() {
        let start = utc(2026, 3, 4, 10, 20, 30); // a Wednesday
        let next = |expr| schedule(expr, None).next_after(start);
        assert_eq!(next("@yearly"), Some(utc(2027, 1, 1, 0, 0, 0)));
        assert_eq!(next("@annually"), Some(utc(2027, 1, 1, 0, 0, 0)));
        assert_eq!(next("@monthly"), Some(utc(2026, 4, 1, 0, 0, 0)));
        assert_eq!(next("@weekly"), Some(utc(2026, 3, 8, 0, 0, 0)));
        assert_eq!(next("@daily"), Some(utc(2026, 3, 5, 0, 0, 0)));
        assert_eq!(next("@midnight"), Some(utc(2026, 3, 5, 0, 0, 0)));
        assert_eq!(next("@hourly"), Some(utc(2026, 3, 4, 11, 0, 0)));
        assert_eq!(next(" @Daily "), Some(utc(2026, 3, 5, 0, 0, 0)));
    }

    #[test]
    fn unknown_macros_are_named() {
        assert_eq!(
            expression_message("@dayly"),
            "unknown cron macro `@dayly`, did you mean `@daily`?"
        );
        assert_eq!(
            expression_message("@reboot"),
            "unknown cron macro `@reboot`; the known macros are \
             @yearly, @annually, @monthly, @weekly, @daily, @midnight, @hourly"
        );
    }

    // --- bad expressions --------------------------------------------------

    #[test]
    fn out_of_range_values_name_the_field() {
        assert_eq!(
            expression_message("61 0 * * *"),
            "cron expression `61 0 * * *` has 5 fields (minute hour day-of-month month \
             day-of-week); minute `61` is out of range 0-59"
        );
        // The second of five fields is the hour.
        assert!(expression_message("0 61 * * *").ends_with("; hour `61` is out of range 0-23"));
        assert_eq!(
            expression_message("0 0 24 * * *"),
            "cron expression `0 0 24 * * *` has 6 fields (second minute hour day-of-month \
             month day-of-week); hour `24` is out of range 0-23"
        );
        assert_eq!(
            expression_message("0 0 0 1 1 * 2101"),
            "cron expression `0 0 0 1 1 * 2101` has 7 fields (second minute hour \
             day-of-month month day-of-week year); year `2101` is out of range 1970-2100"
        );
        assert!(expression_message("0 9 * * 8").ends_with("day-of-week `8` is out of range 0-7"));
        assert!(expression_message("0 9 0 * *").ends_with("day-of-month `0` is out of range 1-31"));
        assert!(
            expression_message("0 9 * * 1-99999999999")
                .ends_with("day-of-week `99999999999` is out of range 0-7")
        );
    }

    #[test]
    fn field_count_is_checked() {
        assert_eq!(
            expression_message("* * * *"),
            "cron expression `* * * *` must have 5, 6 or 7 fields, found 4"
        );
        assert_eq!(
            expression_message("* * * * * * * *"),
            "cron expression `* * * * * * * *` must have 5, 6 or 7 fields, found 8"
        );
        assert_eq!(
            expression_message("   "),
            "cron expression is empty; it must have 5, 6 or 7 fields, like `0 9 * * Mon-Fri`"
        );
    }

    #[test]
    fn malformed_fields_are_named() {
        let problem = |expr: &str| {
            let message = expression_message(expr);
            message
                .split_once("); ")
                .map(|(_, problem)| problem.to_string())
                .unwrap_or(message)
        };
        assert_eq!(
            problem("0 9 * * Mun"),
            "day-of-week `Mun` is not a day number 0-7 (0 and 7 are Sunday) or a name SUN-SAT"
        );
        assert_eq!(
            problem("0 9 * Jux *"),
            "month `Jux` is not a month number 1-12 or a name JAN-DEC"
        );
        assert_eq!(
            problem("0 9 L * *"),
            "day-of-month `L` is not a number 1-31"
        );
        assert_eq!(
            problem("0 9 * * 1#2"),
            "day-of-week `1#2` is not a day number 0-7 (0 and 7 are Sunday) or a name SUN-SAT"
        );
        assert_eq!(problem("0 ? * * *"), "hour `?` is not a number 0-23");
        for (expr, item) in [
            ("0 -1 * * *", "-1"),
            ("0 1- * * *", "1-"),
            ("0 */ * * *", "*/"),
        ] {
            assert_eq!(
                problem(expr),
                format!(
                    "hour `{item}` is incomplete: write a value, a range like `1-5` \
                     or a step like `*/15`"
                )
            );
        }
        assert!(problem("/5 * * * *").starts_with("minute `/5` is incomplete"));
        assert_eq!(
            problem("0 9 5-1 * *"),
            "day-of-month range `5-1` runs backwards: its start comes after its end"
        );
        assert_eq!(
            problem("*/0 * * * *"),
            "minute step `0` in `*/0` must be a number from 1 to 59"
        );
        assert_eq!(
            problem("*/x * * * *"),
            "minute step `x` in `*/x` must be a number from 1 to 59"
        );
        assert_eq!(
            problem("0 9 * * 1-5/8"),
            "day-of-week step `8` in `1-5/8` must be a number from 1 to 7"
        );
        assert_eq!(
            problem("1,,2 * * * *"),
            "minute `1,,2` has an empty entry in its list"
        );
        assert_eq!(problem("+5 * * * *"), "minute `+5` is not a number 0-59");
    }

    // --- time zones -------------------------------------------------------

    #[test]
    fn misspelt_time_zones_get_a_suggestion() {
        assert_eq!(
            timezone_error("Europe/Rom"),
            (
                "unknown time zone `Europe/Rom`, did you mean `Europe/Rome`?".to_string(),
                Some("Europe/Rome".to_string())
            )
        );
        assert_eq!(
            timezone_error("europe/rome").1,
            Some("Europe/Rome".to_string())
        );
        assert_eq!(
            timezone_error("America/NewYork").1,
            Some("America/New_York".to_string())
        );
        assert_eq!(timezone_error("Rome").1, Some("Europe/Rome".to_string()));
        assert_eq!(timezone_error("utc").1, Some("UTC".to_string()));
    }

    #[test]
    fn unknown_time_zones_without_a_close_match() {
        assert_eq!(
            timezone_error("Mars/Olympus_Mons"),
            (
                "unknown time zone `Mars/Olympus_Mons`; use an IANA name such as \
                 `Europe/Rome`, `America/New_York` or `UTC`"
                    .to_string(),
                None
            )
        );
        assert_eq!(timezone_error("").1, None);
    }

    #[test]
    fn wall_clock_follows_the_time_zone() {
        let rome = schedule("0 30 9 * * Mon-Fri", Some("Europe/Rome"));
        // Winter (CET, UTC+1), then summer (CEST, UTC+2).
        assert_eq!(
            rome.next_after(utc(2026, 1, 5, 0, 0, 0)),
            Some(utc(2026, 1, 5, 8, 30, 0))
        );
        assert_eq!(
            rome.next_after(utc(2026, 7, 6, 0, 0, 0)),
            Some(utc(2026, 7, 6, 7, 30, 0))
        );
    }

    // --- daylight saving time ---------------------------------------------

    #[test]
    fn spring_forward_fires_a_skipped_time_at_the_jump() {
        // 2026-03-29 in Rome: 02:00 CET (01:00 UTC) jumps to 03:00 CEST.
        let half_past_two = schedule("30 2 * * *", Some("Europe/Rome"));
        assert_eq!(
            fires(&half_past_two, utc(2026, 3, 27, 12, 0, 0), 3),
            vec![
                utc(2026, 3, 28, 1, 30, 0), // 02:30 CET
                utc(2026, 3, 29, 1, 0, 0),  // 03:00 CEST, the moment of the jump
                utc(2026, 3, 30, 0, 30, 0), // 02:30 CEST
            ]
        );
    }

    #[test]
    fn spring_forward_collapses_skipped_times_into_one_run() {
        let quarterly = schedule("0 */15 * * * *", Some("Europe/Rome"));
        assert_eq!(
            fires(&quarterly, utc(2026, 3, 29, 0, 40, 0), 3),
            vec![
                utc(2026, 3, 29, 0, 45, 0), // 01:45 CET
                utc(2026, 3, 29, 1, 0, 0),  // 02:00-03:00 local: one run at the jump
                utc(2026, 3, 29, 1, 15, 0), // 03:15 CEST
            ]
        );
    }

    #[test]
    fn fall_back_fires_a_repeated_time_once() {
        // 2026-10-25 in Rome: 03:00 CEST (01:00 UTC) goes back to 02:00 CET.
        let half_past_two = schedule("30 2 * * *", Some("Europe/Rome"));
        assert_eq!(
            fires(&half_past_two, utc(2026, 10, 24, 12, 0, 0), 2),
            vec![
                utc(2026, 10, 25, 0, 30, 0), // 02:30 CEST, first occurrence
                utc(2026, 10, 26, 1, 30, 0), // 02:30 CET the next day
            ]
        );
        // Asked during the second pass (02:10 CET), it neither repeats nor
        // returns the already-past first occurrence.
        assert_eq!(
            half_past_two.next_after(utc(2026, 10, 25, 1, 10, 0)),
            Some(utc(2026, 10, 26, 1, 30, 0))
        );
    }

    #[test]
    fn fall_back_fires_the_repeated_hour_only_once() {
        let half_hourly = schedule("0,30 * * * *", Some("Europe/Rome"));
        assert_eq!(
            fires(&half_hourly, utc(2026, 10, 24, 23, 50, 0), 5),
            vec![
                utc(2026, 10, 25, 0, 0, 0),  // 02:00 CEST
                utc(2026, 10, 25, 0, 30, 0), // 02:30 CEST
                utc(2026, 10, 25, 2, 0, 0),  // 03:00 CET: 02:00/02:30 CET are not repeated
                utc(2026, 10, 25, 2, 30, 0),
                utc(2026, 10, 25, 3, 0, 0),
            ]
        );
    }

    #[test]
    fn a_skipped_day_fires_at_the_jump() {
        // Samoa skipped 2011-12-30: 2011-12-29 24:00 (UTC-10) became 2011-12-31 00:00 (UTC+14).
        let noon = schedule("0 12 * * *", Some("Pacific/Apia"));
        assert_eq!(
            fires(&noon, utc(2011, 12, 29, 12, 0, 0), 3),
            vec![
                utc(2011, 12, 29, 22, 0, 0), // 12:00 on the 29th, UTC-10
                utc(2011, 12, 30, 10, 0, 0), // the jump: noon on the 30th never happened
                utc(2011, 12, 30, 22, 0, 0), // 12:00 on the 31st, UTC+14
            ]
        );
    }

    // --- catch-up ---------------------------------------------------------

    #[test]
    fn latest_between_returns_nothing_when_nothing_was_missed() {
        let daily = schedule("0 9 * * *", None);
        let since = utc(2026, 5, 1, 9, 0, 0);
        assert_eq!(
            daily.latest_between(since, utc(2026, 5, 2, 8, 59, 59)),
            None
        );
        assert_eq!(daily.latest_between(since, since), None);
        assert_eq!(daily.latest_between(utc(2026, 5, 2, 0, 0, 0), since), None);
    }

    #[test]
    fn latest_between_returns_the_single_missed_fire() {
        let daily = schedule("0 9 * * *", None);
        let since = utc(2026, 5, 1, 9, 0, 0);
        // `since` is excluded (already run), `now` is included.
        assert_eq!(
            daily.latest_between(since, utc(2026, 5, 2, 9, 0, 0)),
            Some(utc(2026, 5, 2, 9, 0, 0))
        );
        assert_eq!(
            daily.latest_between(since, utc(2026, 5, 2, 12, 0, 0)),
            Some(utc(2026, 5, 2, 9, 0, 0))
        );
    }

    #[test]
    fn latest_between_returns_only_the_latest_of_many_missed() {
        let daily = schedule("0 9 * * *", None);
        assert_eq!(
            daily.latest_between(utc(2026, 5, 1, 0, 0, 0), utc(2026, 5, 11, 8, 0, 0)),
            Some(utc(2026, 5, 10, 9, 0, 0))
        );
        let every_second = schedule("* * * * * *", None);
        let now = utc(2026, 6, 1, 0, 0, 0) + TimeDelta::milliseconds(750);
        assert_eq!(
            every_second.latest_between(utc(2020, 1, 1, 0, 0, 0), now),
            Some(utc(2026, 6, 1, 0, 0, 0))
        );
    }

    #[test]
    fn latest_between_finds_fires_in_an_earlier_scheduled_year() {
        // Works around the `cron` crate's backward search, which misses these.
        let june_2030 = schedule("0 0 12 1 6 * 2030", None);
        let since = utc(2029, 1, 1, 0, 0, 0);
        let expected = Some(utc(2030, 6, 1, 12, 0, 0));
        assert_eq!(
            june_2030.latest_between(since, utc(2031, 3, 1, 0, 0, 0)),
            expected
        );
        assert_eq!(
            june_2030.latest_between(since, utc(2031, 1, 1, 0, 0, 0)),
            expected
        );
        assert_eq!(
            june_2030.latest_between(since, utc(2030, 6, 1, 11, 0, 0)),
            None
        );
        let leap_days = schedule("0 0 0 29 2 * 2028,2032", None);
        assert_eq!(
            leap_days.latest_between(utc(2027, 1, 1, 0, 0, 0), utc(2031, 12, 31, 0, 0, 0)),
            Some(utc(2028, 2, 29, 0, 0, 0))
        );
    }

    #[test]
    fn latest_between_agrees_with_next_after_across_daylight_saving() {
        for expr in [
            "30 2 * * *",
            "0 */15 * * * *",
            "0,30 * * * *",
            "0 3 * * Sun",
        ] {
            let rome = schedule(expr, Some("Europe/Rome"));
            for (day_start, day_end) in [
                (utc(2026, 3, 28, 20, 0, 0), utc(2026, 3, 29, 6, 0, 0)),
                (utc(2026, 10, 24, 20, 0, 0), utc(2026, 10, 25, 6, 0, 0)),
            ] {
                let all_fires = fires(&rome, day_start, 100);
                let mut now = day_start;
                while now < day_end {
                    let expected = all_fires
                        .iter()
                        .copied()
                        .take_while(|fire| *fire <= now)
                        .last();
                    assert_eq!(
                        rome.latest_between(day_start, now),
                        expected,
                        "`{expr}` at {now}"
                    );
                    now += TimeDelta::minutes(5);
                }
            }
        }
    }

    // --- termination --------------------------------------------------------

    #[test]
    fn impossible_dates_never_fire_and_return_quickly() {
        let started = Instant::now();
        for expr in ["0 0 30 2 *", "0 0 31 4 *", "0 0 0 31 11 * 2026-2100"] {
            let never = schedule(expr, Some("Europe/Rome"));
            assert_eq!(never.next_after(utc(2026, 1, 1, 0, 0, 0)), None, "{expr}");
            assert_eq!(
                never.latest_between(utc(1970, 1, 1, 0, 0, 0), utc(2100, 1, 1, 0, 0, 0)),
                None,
                "{expr}"
            );
        }
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn extreme_instants_do_not_panic() {
        let every_second = schedule("* * * * * *", Some("Pacific/Kiritimati"));
        assert_eq!(every_second.next_after(DateTime::<Utc>::MAX_UTC), None);
        assert_eq!(
            every_second.next_after(DateTime::<Utc>::MIN_UTC),
            Some(utc(1970, 1, 1, 10, 40, 0)) // 1970-01-01 00:00 at UTC-10:40, as Kiritimati was then
        );
        assert_eq!(
            every_second.latest_between(DateTime::<Utc>::MIN_UTC, DateTime::<Utc>::MAX_UTC),
            Some(utc(2100, 12, 31, 9, 59, 59)) // 2100-12-31 23:59:59 at UTC+14
        );
        assert_eq!(
            every_second.latest_between(DateTime::<Utc>::MIN_UTC, utc(1960, 1, 1, 0, 0, 0)),
            None
        );
    }

    #[test]
    fn edit_distance_counts_characters() {
        assert_eq!(edit_distance("rom", "rome"), 1);
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(edit_distance("", "abc"), 3);
        assert_eq!(edit_distance("zürich", "zurich"), 1);
    }
}
