//! Durations as flows write them: `<number><unit>` with unit `ms`, `s`, `m`, `h` or `d`
//! (`250ms`, `1.5s`, `10m`, `2h`, `7d`). They are kept as milliseconds and written back in the
//! largest unit that states them exactly, so an exported flow reads like its source.

use std::fmt;
use std::str::FromStr;

use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The pattern a duration must match; shared with the JSON Schema so editors check it too.
pub const DURATION_PATTERN: &str = r"^[0-9]+(\.[0-9]+)?(ms|s|m|h|d)$";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration {
    millis: u64,
}

impl Duration {
    pub const fn from_millis(millis: u64) -> Duration {
        Duration { millis }
    }

    pub const fn from_secs(secs: u64) -> Duration {
        Duration {
            millis: secs * 1000,
        }
    }

    pub const fn as_millis(self) -> u64 {
        self.millis
    }

    pub fn to_std(self) -> std::time::Duration {
        std::time::Duration::from_millis(self.millis)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{0}` is not a duration: write a number and a unit ms, s, m, h or d, e.g. `30s` or `10m`")]
pub struct DurationError(pub String);

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(text: &str) -> Result<Duration, DurationError> {
        let bad = || DurationError(text.to_string());
        let split = text
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .ok_or_else(bad)?;
        let (number, unit) = text.split_at(split);
        if number.is_empty() || number.starts_with('.') || number.ends_with('.') {
            return Err(bad());
        }
        let unit_ms: f64 = match unit {
            "ms" => 1.0,
            "s" => 1_000.0,
            "m" => 60_000.0,
            "h" => 3_600_000.0,
            "d" => 86_400_000.0,
            _ => return Err(bad()),
        };
        let value: f64 = number.parse().map_err(|_| bad())?;
        let millis = (value * unit_ms).round();
        // About 292 million years: anything larger is a typo, not a wait.
        if !millis.is_finite() || millis > 9.2e18 {
            return Err(bad());
        }
        Ok(Duration {
            millis: millis as u64,
        })
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u64, &str); 4] = [
            (86_400_000, "d"),
            (3_600_000, "h"),
            (60_000, "m"),
            (1_000, "s"),
        ];
        for (size, unit) in UNITS {
            if self.millis >= size && self.millis.is_multiple_of(size) {
                return write!(f, "{}{unit}", self.millis / size);
            }
        }
        write!(f, "{}ms", self.millis)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for Duration {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": DURATION_PATTERN,
            "description": "A duration: a number and a unit ms, s, m, h or d, e.g. `30s`, `10m`, `1.5h`.",
            "examples": ["30s", "10m", "2h"],
            "x-message": "a duration: a number and a unit ms, s, m, h or d, e.g. `30s` or `10m`"
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_unit() {
        let ms = |t: &str| t.parse::<Duration>().unwrap().as_millis();
        assert_eq!(ms("250ms"), 250);
        assert_eq!(ms("1s"), 1_000);
        assert_eq!(ms("1.5s"), 1_500);
        assert_eq!(ms("10m"), 600_000);
        assert_eq!(ms("2h"), 7_200_000);
        assert_eq!(ms("1d"), 86_400_000);
        assert_eq!(ms("0s"), 0);
    }

    #[test]
    fn rejects_what_is_not_a_duration() {
        for bad in [
            "",
            "10",
            "s",
            "1.s",
            ".5s",
            "10 m",
            "10min",
            "-1s",
            "1e3s",
            "99999999999999999999d",
        ] {
            assert!(bad.parse::<Duration>().is_err(), "{bad} should be rejected");
        }
    }

    #[test]
    fn displays_in_the_largest_exact_unit() {
        let show = |t: &str| t.parse::<Duration>().unwrap().to_string();
        assert_eq!(show("60s"), "1m");
        assert_eq!(show("90s"), "90s");
        assert_eq!(show("1.5s"), "1500ms");
        assert_eq!(show("24h"), "1d");
        assert_eq!(show("0s"), "0ms");
    }
}
