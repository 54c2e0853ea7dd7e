//! `StoreOptions`: the few knobs of the store (`FLOWD_SQLITE_SYNC`,
//! `FLOWD_DATABASE_MAX_CONNECTIONS`), parsed by [`StoreOptions::from_lookup`] from the values the
//! command line's `Config` gathered. A misspelt value is an error, not a silent default:
//! `FLOWD_SQLITE_SYNC=ful` must not quietly drop power-cut safety.

use crate::store::StoreError;

/// Pool size when nothing is configured: enough for a small team's API plus the workers.
const DEFAULT_MAX_CONNECTIONS: u32 = 10;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreOptions {
    /// SQLite `synchronous=FULL` instead of `NORMAL` (`FLOWD_SQLITE_SYNC=full`): survives power
    /// cuts, at the price of an fsync per commit.
    pub sqlite_sync_full: bool,
    /// Connections of the PostgreSQL pool, and of the SQLite read pool (SQLite writes always go
    /// through one connection).
    pub max_connections: u32,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            sqlite_sync_full: false,
            max_connections: DEFAULT_MAX_CONNECTIONS,
        }
    }
}

impl StoreOptions {
    /// Options from a lookup of the variables by name (the `Config` passes its flags and
    /// environment this way, tests a list); unset or empty variables keep their defaults.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<StoreOptions, StoreError> {
        let mut options = StoreOptions::default();
        if let Some(value) = non_empty(lookup("FLOWD_SQLITE_SYNC")) {
            options.sqlite_sync_full = parse_sync(&value)?;
        }
        if let Some(value) = non_empty(lookup("FLOWD_DATABASE_MAX_CONNECTIONS")) {
            options.max_connections = parse_max_connections(&value)?;
        }
        Ok(options)
    }
}

fn non_empty(value: Option<String>) -> Option<String> {
    value.map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

fn parse_sync(value: &str) -> Result<bool, StoreError> {
    match value.to_ascii_lowercase().as_str() {
        "normal" => Ok(false),
        "full" => Ok(true),
        _ => Err(StoreError::InvalidOption {
            name: "FLOWD_SQLITE_SYNC",
            value: value.to_owned(),
            expected: "normal or full",
        }),
    }
}

fn parse_max_connections(value: &str) -> Result<u32, StoreError> {
    match value.parse::<u32>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err(StoreError::InvalidOption {
            name: "FLOWD_DATABASE_MAX_CONNECTIONS",
            value: value.to_owned(),
            expected: "a whole number of at least 1",
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lookup<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        move |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| (*value).to_owned())
        }
    }

    #[test]
    fn defaults_when_unset_or_empty() {
        assert_eq!(
            StoreOptions::from_lookup(lookup(&[])).unwrap(),
            StoreOptions::default()
        );
        let empty = [
            ("FLOWD_SQLITE_SYNC", " "),
            ("FLOWD_DATABASE_MAX_CONNECTIONS", ""),
        ];
        assert_eq!(
            StoreOptions::from_lookup(lookup(&empty)).unwrap(),
            StoreOptions::default()
        );
    }

    #[test]
    fn reads_sync_and_pool_size() {
        let vars = [
            ("FLOWD_SQLITE_SYNC", "FULL"),
            ("FLOWD_DATABASE_MAX_CONNECTIONS", "4"),
        ];
        let options = StoreOptions::from_lookup(lookup(&vars)).unwrap();
        assert!(options.sqlite_sync_full);
        assert_eq!(options.max_connections, 4);
    }

    #[test]
    fn rejects_misspelt_values() {
        for vars in [
            [("FLOWD_SQLITE_SYNC", "ful")],
            [("FLOWD_DATABASE_MAX_CONNECTIONS", "0")],
            [("FLOWD_DATABASE_MAX_CONNECTIONS", "ten")],
        ] {
            let err = StoreOptions::from_lookup(lookup(&vars)).unwrap_err();
            assert!(matches!(err, StoreError::InvalidOption { .. }), "{err:?}");
        }
    }
}
