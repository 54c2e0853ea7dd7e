//! Retry decisions of the `http` step as pure functions: which statuses are retried, how long to
//! back off, and how to read `Retry-After`. No clock and no randomness inside: the caller passes
//! `now` and a jitter sample, so the runner stays deterministic under test.
//!
//! Backoff is `delay × 2^(attempt-1)`, spread by ±20 % jitter, then capped at `max_delay`. A
//! `Retry-After` from the server is honoured as a lower bound, even above `max_delay` (the server
//! knows best when it can take the request again), but never beyond [`RETRY_AFTER_CAP`] (one
//! hour), so a hostile or broken header cannot park a run for days.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// The longest wait a `Retry-After` header can impose.
pub const RETRY_AFTER_CAP: Duration = Duration::from_secs(3600);

/// Relative spread of the jitter: a sample of ±1 moves the delay by ±20 %.
const JITTER_SPREAD: f64 = 0.2;

/// What a final response status means for the step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 408, 429 and 5xx: the target may accept the same request later.
    Retry,
    /// Everything else (other 4xx, 3xx left after redirects, 1xx): retrying will not help.
    Fail,
}

pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        408 | 429 | 500..=599 => StatusClass::Retry,
        _ => StatusClass::Fail,
    }
}

/// Whether `Retry-After` is read from a response with this status (RFC 9110 defines it for 503
/// and RFC 6585 for 429).
pub fn honours_retry_after(status: u16) -> bool {
    matches!(status, 429 | 503)
}

/// How long to wait after attempt number `attempt` (1-based) failed. `jitter` is a sample in
/// [-1, 1]; values outside are clamped and NaN counts as 0.
pub fn backoff(
    attempt: u32,
    delay: Duration,
    max_delay: Duration,
    retry_after: Option<Duration>,
    jitter: f64,
) -> Duration {
    let computed = exponential(attempt, delay, max_delay, jitter);
    match retry_after {
        Some(after) => computed.max(after.min(RETRY_AFTER_CAP)),
        None => computed,
    }
}

fn exponential(attempt: u32, delay: Duration, max_delay: Duration, jitter: f64) -> Duration {
    let jitter = if jitter.is_nan() {
        0.0
    } else {
        jitter.clamp(-1.0, 1.0)
    };
    // Float maths saturates to infinity instead of overflowing; the cap brings it back.
    let exponent = attempt.saturating_sub(1).min(1023) as i32;
    let secs = delay.as_secs_f64() * 2f64.powi(exponent) * (1.0 + JITTER_SPREAD * jitter);
    let capped = secs.min(max_delay.as_secs_f64());
    Duration::try_from_secs_f64(capped).unwrap_or(max_delay)
}

/// Parses a `Retry-After` value: delay-seconds or an HTTP-date (IMF-fixdate, and the obsolete
/// RFC 850 and asctime forms). A date in the past means "now" (zero).
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for u64 still means "a long time"; backoff caps it.
        return Some(Duration::from_secs(value.parse().unwrap_or(u64::MAX)));
    }
    let at = parse_http_date(value)?;
    Some((at - now).to_std().unwrap_or(Duration::ZERO))
}

fn parse_http_date(value: &str) -> Option<DateTime<Utc>> {
    if let Ok(at) = DateTime::parse_from_rfc2822(value) {
        return Some(at.with_timezone(&Utc));
    }
    const OBSOLETE: [&str; 2] = ["%A, %d-%b-%y %H:%M:%S GMT", "%a %b %e %H:%M:%S %Y"];
    OBSOLETE
        .iter()
        .find_map(|format| NaiveDateTime::parse_from_str(value, format).ok())
        .map(|naive| naive.and_utc())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    const S: fn(u64) -> Duration = Duration::from_secs;

    #[test]
    fn statuses_are_classified() {
        assert_eq!(classify_status(200), StatusClass::Success);
        assert_eq!(classify_status(204), StatusClass::Success);
        for status in [408, 429, 500, 502, 503, 504, 599] {
            assert_eq!(classify_status(status), StatusClass::Retry, "{status}");
        }
        for status in [100, 301, 304, 400, 401, 404, 409, 422] {
            assert_eq!(classify_status(status), StatusClass::Fail, "{status}");
        }
        assert!(honours_retry_after(429) && honours_retry_after(503));
        assert!(!honours_retry_after(500));
    }

    #[test]
    fn backoff_doubles_without_jitter() {
        let d = |n| backoff(n, S(10), S(7200), None, 0.0);
        assert_eq!(d(0), S(10), "attempt 0 is treated as the first");
        assert_eq!(d(1), S(10));
        assert_eq!(d(2), S(20));
        assert_eq!(d(3), S(40));
        assert_eq!(d(9), S(2560));
    }

    #[test]
    fn backoff_is_capped() {
        assert_eq!(backoff(10, S(10), S(7200), None, 0.0), S(5120));
        assert_eq!(backoff(11, S(10), S(7200), None, 0.0), S(7200));
        assert_eq!(backoff(u32::MAX, S(10), S(7200), None, 1.0), S(7200));
        let huge = Duration::MAX;
        assert_eq!(backoff(64, huge, S(60), None, 0.0), S(60));
    }

    #[test]
    fn jitter_stays_within_twenty_percent() {
        assert_eq!(backoff(2, S(10), S(7200), None, 1.0), S(24));
        assert_eq!(backoff(2, S(10), S(7200), None, -1.0), S(16));
        assert_eq!(backoff(2, S(10), S(7200), None, 5.0), S(24), "clamped");
        assert_eq!(backoff(2, S(10), S(7200), None, f64::NAN), S(20));
        for step in 0..=20 {
            let jitter = -1.0 + f64::from(step) * 0.1;
            let d = backoff(3, S(10), S(7200), None, jitter);
            assert!(d >= S(32) && d <= S(48), "{jitter}: {d:?}");
        }
        assert_eq!(
            backoff(11, S(10), S(7200), None, 1.0),
            S(7200),
            "jitter never exceeds the cap"
        );
    }

    #[test]
    fn retry_after_is_a_lower_bound_up_to_an_hour() {
        assert_eq!(backoff(1, S(10), S(60), Some(S(30)), 0.0), S(30));
        assert_eq!(backoff(1, S(10), S(60), Some(S(1)), 0.0), S(10));
        assert_eq!(
            backoff(1, S(10), S(60), Some(S(600)), 0.0),
            S(600),
            "above max_delay"
        );
        assert_eq!(
            backoff(1, S(10), S(60), Some(S(86_400)), 0.0),
            RETRY_AFTER_CAP
        );
        assert_eq!(backoff(20, S(10), S(7200), Some(S(5)), 0.0), S(7200));
    }

    #[test]
    fn retry_after_seconds() {
        let now = Utc::now();
        assert_eq!(parse_retry_after("1", now), Some(S(1)));
        assert_eq!(parse_retry_after(" 120 ", now), Some(S(120)));
        assert_eq!(parse_retry_after("0", now), Some(S(0)));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(S(u64::MAX))
        );
        for bad in ["", "-1", "1.5", "soon", "+3"] {
            assert_eq!(parse_retry_after(bad, now), None, "{bad:?}");
        }
    }

    #[test]
    fn retry_after_dates() {
        let now = Utc
            .with_ymd_and_hms(2015, 10, 21, 7, 27, 0)
            .single()
            .expect("valid date");
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now),
            Some(S(60))
        );
        assert_eq!(
            parse_retry_after("Wednesday, 21-Oct-15 07:28:30 GMT", now),
            Some(S(90))
        );
        assert_eq!(
            parse_retry_after("Wed Oct 21 07:29:00 2015", now),
            Some(S(120))
        );
        assert_eq!(
            parse_retry_after("Tue, 20 Oct 2015 07:28:00 GMT", now),
            Some(Duration::ZERO),
            "a past date means now"
        );
        assert_eq!(
            parse_retry_after("Wed, 32 Oct 2015 07:28:00 GMT", now),
            None
        );
    }
}
