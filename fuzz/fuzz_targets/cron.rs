//! Cron expressions as a `schedule` trigger writes them: the input's first line is the
//! expression, the second an optional time zone. Nothing may panic; a fire time found is
//! strictly after the instant asked about, and the latest fire time before a moment lies in
//! the window asked about.
#![no_main]

use chrono::{DateTime, TimeDelta, Utc};
use flowd::flow::cron::CronSchedule;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut lines = text.splitn(2, '\n');
    let expression = lines.next().unwrap_or_default();
    let timezone = lines.next().map(str::trim).filter(|t| !t.is_empty());
    let Ok(schedule) = CronSchedule::parse(expression, timezone) else {
        return;
    };
    let at: DateTime<Utc> = DateTime::from_timestamp(1_765_000_000, 0).expect("a valid instant");
    if let Some(next) = schedule.next_after(at) {
        assert!(next > at, "{expression:?}: {next} is not after {at}");
    }
    let since = at - TimeDelta::days(400);
    if let Some(latest) = schedule.latest_between(since, at) {
        assert!(
            latest > since && latest <= at,
            "{expression:?}: {latest} outside the window"
        );
    }
});
