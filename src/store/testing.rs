//! Fresh databases for tests: `TestDb::sqlite()` always, `TestDb::postgres()` when
//! `FLOWD_TEST_DATABASE_URL` points at a server (e.g. `postgres://postgres@127.0.0.1:5432/test`),
//! and `TestDb::all()` for suites that run once per backend. Without the variable a test says on
//! stderr that it skipped PostgreSQL, unless `CI` is `true` (or `1`): there it fails, so a CI
//! that lost its server does not pass on SQLite alone.
//!
//! Every test gets its own database (a file in a temporary directory, or a database named
//! `flowd_test_<uuid>` on the server), so tests run in parallel and on a server that earlier runs
//! used. Call `cleanup().await` at the end of a test: Drop cannot await. If a test panics before
//! that, Drop still drops the PostgreSQL database, from a thread with its own small runtime.
//!
//! Test support, so failures panic with a message instead of returning errors.

use std::io::Write;
use std::time::Duration;

use sea_orm::sqlx::postgres::PgPoolOptions;
use sea_orm::{ConnectionTrait, DatabaseConnection, SqlxPostgresConnector};
use tempfile::TempDir;
use uuid::Uuid;

use crate::core::new_run::NewRun;
use crate::store::{Backend, Store, StoreError, StoreOptions};

/// The variable naming the PostgreSQL server for tests; its database is used only to connect.
pub const DATABASE_URL_VAR: &str = "FLOWD_TEST_DATABASE_URL";
/// Set to `true` by CI services (GitHub Actions, GitLab CI, …).
const CI_VAR: &str = "CI";

/// A database for one test, dropped by `cleanup`.
pub struct TestDb {
    /// The URL of this test's database, to open more stores on it.
    pub url: String,
    pub store: Store,
    place: Place,
}

/// Where the database lives, and what cleaning up has to remove.
enum Place {
    Sqlite {
        dir: Option<TempDir>,
    },
    Postgres {
        admin_url: String,
        name: String,
        dropped: bool,
    },
}

/// A pending run of flow `f`, revision 1, started by hand and due at `now`, for store tests.
pub fn pending_run(id: &str, now: i64) -> NewRun {
    NewRun {
        id: id.to_string(),
        flow_id: "f".into(),
        revision: 1,
        trigger: r#"{"kind":"manual","input":null}"#.into(),
        entity: None,
        entity_id: None,
        created_at: now,
        deadline_at: None,
        order_key: None,
    }
}

impl TestDb {
    /// A migrated SQLite database in a new temporary directory.
    pub async fn sqlite() -> TestDb {
        Self::new_sqlite(true).await
    }

    /// A migrated database on the `FLOWD_TEST_DATABASE_URL` server, or `None` (after saying so)
    /// when the variable is not set; panics instead when `CI` says this is CI.
    pub async fn postgres() -> Option<TestDb> {
        Self::new_postgres(true).await
    }

    /// One migrated database per configured backend: SQLite, plus PostgreSQL when configured.
    pub async fn all() -> Vec<TestDb> {
        Self::new_all(true).await
    }

    /// Like `all`, but without migrations, for tests of migrating itself.
    pub async fn all_unmigrated() -> Vec<TestDb> {
        Self::new_all(false).await
    }

    /// Closes the store and removes the database.
    pub async fn cleanup(mut self) {
        self.store.clone().close().await;
        match &mut self.place {
            Place::Sqlite { dir } => remove_dir(dir.take()),
            Place::Postgres {
                admin_url,
                name,
                dropped,
            } => match drop_database(admin_url, name).await {
                Ok(()) => *dropped = true,
                Err(error) => eprintln!("could not drop test database {name}: {error}"),
            },
        }
    }

    async fn new_all(migrate: bool) -> Vec<TestDb> {
        let mut dbs = vec![Self::new_sqlite(migrate).await];
        dbs.extend(Self::new_postgres(migrate).await);
        dbs
    }

    async fn new_sqlite(migrate: bool) -> TestDb {
        let dir = tempfile::tempdir().expect("create a temporary directory");
        let url = format!("sqlite://{}", dir.path().join("flowd.db").display());
        let store = open(&url, migrate).await;
        TestDb {
            url,
            store,
            place: Place::Sqlite { dir: Some(dir) },
        }
    }

    async fn new_postgres(migrate: bool) -> Option<TestDb> {
        let Some(admin_url) = std::env::var(DATABASE_URL_VAR)
            .ok()
            .filter(|u| !u.is_empty())
        else {
            skip_postgres();
            return None;
        };
        let name = format!("flowd_test_{}", Uuid::now_v7().simple());
        create_database(&admin_url, &name)
            .await
            .unwrap_or_else(|e| panic!("create test database {name} via {DATABASE_URL_VAR}: {e}"));
        let url = with_database(&admin_url, &name);
        let store = open(&url, migrate).await;
        Some(TestDb {
            url,
            store,
            place: Place::Postgres {
                admin_url,
                name,
                dropped: false,
            },
        })
    }
}

impl Drop for TestDb {
    /// Best effort for tests that panicked before `cleanup`: SQLite's directory goes with its
    /// `TempDir`; a PostgreSQL database is dropped from a separate thread, because this may run
    /// inside the test's runtime, which cannot be blocked on from within.
    fn drop(&mut self) {
        if let Place::Postgres {
            admin_url,
            name,
            dropped: false,
        } = &self.place
        {
            drop_database_blocking(admin_url.clone(), name.clone());
        }
    }
}

/// Says that the current test skips PostgreSQL, or fails it under CI. The note goes to the
/// process's stderr itself: libtest captures `println!` and `eprintln!` of a passing test and
/// shows them only when it fails, which would hide the skip.
fn skip_postgres() {
    if let Err(problem) = missing_postgres(std::env::var(CI_VAR).ok().as_deref()) {
        panic!("{problem}");
    }
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let note = format!("{test}: skipped on PostgreSQL: {DATABASE_URL_VAR} not set\n");
    if let Err(error) = std::io::stderr().write_all(note.as_bytes()) {
        eprintln!("could not say that PostgreSQL was skipped: {error}");
    }
}

/// Whether running without PostgreSQL is allowed, given the value of `CI`.
fn missing_postgres(ci: Option<&str>) -> Result<(), String> {
    match ci.map(str::trim) {
        Some(ci) if ci.eq_ignore_ascii_case("true") || ci == "1" => Err(format!(
            "{DATABASE_URL_VAR} is not set, but {CI_VAR}={ci}: in CI the PostgreSQL tests must \
             run. Point it at a server, e.g. postgres://postgres@127.0.0.1:5432/test"
        )),
        _ => Ok(()),
    }
}

async fn open(url: &str, migrate: bool) -> Store {
    let store = Store::connect(url, &StoreOptions::default())
        .await
        .unwrap_or_else(|e| panic!("open test database: {e}"));
    if migrate {
        store
            .migrate()
            .await
            .unwrap_or_else(|e| panic!("migrate test database: {e}"));
    }
    store
}

fn remove_dir(dir: Option<TempDir>) {
    if let Some(dir) = dir
        && let Err(error) = dir.close()
    {
        eprintln!("could not remove a test database directory: {error}");
    }
}

async fn create_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    admin(admin_url, &format!("CREATE DATABASE \"{name}\"")).await
}

/// `WITH (FORCE)` (PostgreSQL 13+) ends sessions a failed test left behind.
async fn drop_database(admin_url: &str, name: &str) -> Result<(), StoreError> {
    admin(
        admin_url,
        &format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"),
    )
    .await
}

/// Runs one statement on the admin database over a connection of its own.
async fn admin(admin_url: &str, sql: &str) -> Result<(), StoreError> {
    let pool = PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(10))
        .connect(admin_url)
        .await
        .map_err(|source| StoreError::Connect {
            backend: Backend::Postgres,
            source,
        })?;
    let connection: DatabaseConnection = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
    let result = connection.execute_unprepared(sql).await;
    if let Err(error) = connection.close().await {
        eprintln!("could not close the admin connection: {error}");
    }
    result?;
    Ok(())
}

fn drop_database_blocking(admin_url: String, name: String) {
    let thread = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        runtime
            .block_on(drop_database(&admin_url, &name))
            .map_err(|e| format!("{name}: {e}"))
    });
    match thread.join() {
        Ok(Ok(())) => {}
        Ok(Err(error)) => eprintln!("could not drop a test database: {error}"),
        Err(_) => eprintln!("the thread dropping a test database panicked"),
    }
}

/// `url` with its database (the path) replaced by `name`, keeping credentials and parameters.
fn with_database(url: &str, name: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority = base.find("://").map_or(0, |i| i + 3);
    let path = base[authority..]
        .find('/')
        .map_or(base.len(), |i| authority + i);
    let mut out = format!("{}/{name}", &base[..path]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_database_replaces_only_the_path() {
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/test?sslmode=require", "x"),
            "postgres://u:p@h/x?sslmode=require"
        );
        assert_eq!(
            with_database("postgres://h:5432", "x"),
            "postgres://h:5432/x"
        );
        assert_eq!(
            with_database("postgres://h?sslmode=disable", "x"),
            "postgres://h/x?sslmode=disable"
        );
    }

    #[test]
    fn a_missing_postgres_fails_only_in_ci() {
        for ci in [None, Some(""), Some("false"), Some("0")] {
            assert_eq!(missing_postgres(ci), Ok(()), "CI={ci:?}");
        }
        for ci in ["true", "TRUE", "1"] {
            let problem = missing_postgres(Some(ci)).unwrap_err();
            assert!(problem.contains(DATABASE_URL_VAR), "{problem}");
        }
    }

    #[tokio::test]
    async fn cleanup_removes_the_database() {
        for db in TestDb::all().await {
            let url = db.url.clone();
            let sqlite_dir = match &db.place {
                Place::Sqlite { dir } => dir.as_ref().map(|d| d.path().to_owned()),
                Place::Postgres { .. } => None,
            };
            db.cleanup().await;
            match sqlite_dir {
                Some(dir) => assert!(!dir.exists(), "{dir:?} still exists"),
                None => assert!(
                    Store::connect(&url, &StoreOptions::default())
                        .await
                        .is_err()
                ),
            }
        }
    }

    #[tokio::test]
    async fn drop_without_cleanup_still_drops_the_postgres_database() {
        let Some(db) = TestDb::postgres().await else {
            return;
        };
        let url = db.url.clone();
        drop(db);
        assert!(
            Store::connect(&url, &StoreOptions::default())
                .await
                .is_err()
        );
    }
}
