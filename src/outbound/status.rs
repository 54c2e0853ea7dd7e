//! What a response says about the next attempt, as pure functions: which statuses succeed, are
//! worth retrying or fail for good, and how long a `Retry-After` header asks the sender to wait.
//! No clock inside: the caller passes `now`, so the decisions stay deterministic under test.

use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, Utc};

/// What a final response status means for the caller.
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
