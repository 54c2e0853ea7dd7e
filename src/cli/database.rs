//! Opening the database from a command other than `serve`. Such a command says which database
//! it uses, and refuses to create a new SQLite file unless asked: `flowd keys create` typed in
//! the wrong folder would otherwise store a key in a fresh `flowd.db` that no server reads.

use std::path::PathBuf;

use crate::store::{Store, StoreOptions};

/// The file of a `sqlite:` URL, without its query.
pub fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or(rest);
    (!path.is_empty()).then(|| PathBuf::from(path))
}

/// The database as a person can recognise it, without a password: the SQLite file, or the
/// PostgreSQL host, port and database.
pub fn describe(url: &str) -> String {
    if let Some(path) = sqlite_path(url) {
        return format!("SQLite file {}", path.display());
    }
    match url::Url::parse(url) {
        Ok(parsed) => format!(
            "{} database {} on {}:{}",
            parsed.scheme(),
            parsed.path().trim_start_matches('/'),
            parsed.host_str().unwrap_or("localhost"),
            parsed.port().unwrap_or(5432)
        ),
        Err(_) => "the database given by --database-url".to_owned(),
    }
}

/// Opens and migrates the database for `command`, saying which one on stderr. A missing SQLite
/// file is an error unless `create` is set.
pub async fn open(
    command: &str,
    url: &str,
    create: bool,
    options: &StoreOptions,
) -> anyhow::Result<Store> {
    if let Some(path) = sqlite_path(url)
        && !path.exists()
        && !create
    {
        anyhow::bail!(
            "no database at {} (run in the folder where `flowd serve` runs, pass --database-url \
             or set FLOWD_DATABASE_URL to the server's database, or add --create to make a new one)",
            path.display()
        );
    }
    eprintln!("flowd {command}: using the {}", describe(url));
    let store = Store::connect(url, options).await?;
    store.migrate().await?;
    Ok(store)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_paths_are_read_from_urls() {
        assert_eq!(sqlite_path("sqlite://flowd.db"), Some("flowd.db".into()));
        assert_eq!(
            sqlite_path("sqlite:///tmp/x.db?mode=rwc"),
            Some("/tmp/x.db".into())
        );
        assert_eq!(sqlite_path("postgres://u@h/db"), None);
    }

    #[test]
    fn descriptions_never_show_a_password() {
        let text = describe("postgres://flowd:hunter2@db.internal:6543/prod");
        assert_eq!(text, "postgres database prod on db.internal:6543");
        assert!(!text.contains("hunter2"));
        assert_eq!(
            describe("sqlite:///var/lib/flowd/flowd.db?mode=rwc"),
            "SQLite file /var/lib/flowd/flowd.db"
        );
    }
}
