//! The one time format of the API, the templates and the stored trigger data.

use chrono::{DateTime, SecondsFormat, Utc};

/// RFC 3339 in UTC with milliseconds, e.g. `2026-12-05T08:30:00.000Z`.
pub fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// [`rfc3339`] of a time in milliseconds since the epoch, as the store keeps times.
pub fn rfc3339_ms(ms: i64) -> String {
    DateTime::from_timestamp_millis(ms).map_or_else(|| ms.to_string(), rfc3339)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_utc_with_milliseconds() {
        assert_eq!(rfc3339_ms(1_500), "1970-01-01T00:00:01.500Z");
        let t = DateTime::from_timestamp(1_764_921_600, 0).unwrap();
        assert_eq!(rfc3339(t), "2025-12-05T08:00:00.000Z");
    }
}
