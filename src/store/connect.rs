//! Opening the connection pools, the one place that knows how SQLite and PostgreSQL differ at
//! connect time.
//!
//! SQLite allows one writer at a time, and a busy timeout does not save a deferred transaction
//! that read first and then tries to write while another connection writes: SQLite answers
//! "database is locked" at once. So every write goes through a pool of exactly one connection,
//! where writers queue in the pool instead of failing, and reads use a separate pool whose
//! connections are `query_only`, so a write sent there by mistake fails loudly at once instead of
//! now and then under load. WAL lets those readers run while the writer commits. PostgreSQL has
//! row locks, so one pool serves both roles.

use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::ConnectOptions;
use sea_orm::sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{DatabaseConnection, SqlxPostgresConnector, SqlxSqliteConnector};

use crate::store::{Backend, StoreError, StoreOptions};

/// How long a SQLite connection waits for a lock held by another process (a `flowd` CLI command
/// next to the server, a checkpoint) before giving up.
pub(crate) const SQLITE_BUSY_TIMEOUT: Duration = Duration::from_secs(10);

/// The writer and reader connections of a store; the same pool twice on PostgreSQL.
pub(crate) struct Pools {
    pub writer: DatabaseConnection,
    pub reader: DatabaseConnection,
}

pub(crate) async fn sqlite(url: &str, options: &StoreOptions) -> Result<Pools, StoreError> {
    reject_in_memory(url)?;
    let base = SqliteConnectOptions::from_str(url)
        .map_err(|source| connect_error(Backend::Sqlite, source))?
        .busy_timeout(SQLITE_BUSY_TIMEOUT)
        // sqlx logs every statement at debug level, and checking that costs ~5% of the
        // writer's time even when the level is off; flowd logs its own events instead.
        .disable_statement_logging()
        // flowd keeps no foreign keys; switching the check off spares a lookup per write.
        .foreign_keys(false)
        .synchronous(if options.sqlite_sync_full {
            SqliteSynchronous::Full
        } else {
            SqliteSynchronous::Normal
        });
    // The writer opens first: it creates the file and switches it to WAL (a persistent setting)
    // before any reader looks at it.
    let writer = sqlite_writer_pool()
        .connect_with(
            base.clone()
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal),
        )
        .await
        .map_err(|source| connect_error(Backend::Sqlite, source))?;
    let reader = sqlite_reader_pool(options.max_connections)
        .connect_with(base.pragma("query_only", "ON"))
        .await
        .map_err(|source| connect_error(Backend::Sqlite, source))?;
    Ok(Pools {
        writer: SqlxSqliteConnector::from_sqlx_sqlite_pool(writer),
        reader: SqlxSqliteConnector::from_sqlx_sqlite_pool(reader),
    })
}

/// Exactly one connection, kept open for the life of the store: closing the last connection
/// would checkpoint and delete the WAL files under the readers' feet.
fn sqlite_writer_pool() -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(1)
        .min_connections(1)
        .idle_timeout(None)
        .max_lifetime(None)
        // A local file does not go stale; a ping per acquire would cost a round trip to the
        // connection's thread on every write.
        .test_before_acquire(false)
}

fn sqlite_reader_pool(max_connections: u32) -> SqlitePoolOptions {
    SqlitePoolOptions::new()
        .max_connections(max_connections.max(1))
        .test_before_acquire(false)
}

/// Each pool would get its own private in-memory database, so writes would be invisible to reads.
fn reject_in_memory(url: &str) -> Result<(), StoreError> {
    if url.contains(":memory:") || url.contains("mode=memory") {
        return Err(StoreError::UnsupportedUrl {
            reason: "in-memory SQLite is not supported; use a file (a temporary one for tests)"
                .to_owned(),
        });
    }
    Ok(())
}

pub(crate) async fn postgres(url: &str, options: &StoreOptions) -> Result<Pools, StoreError> {
    let connect_options = PgConnectOptions::from_str(url)
        .map_err(|source| connect_error(Backend::Postgres, source))?
        .disable_statement_logging();
    let pool = PgPoolOptions::new()
        .max_connections(options.max_connections.max(1))
        .connect_with(connect_options)
        .await
        .map_err(|source| connect_error(Backend::Postgres, source))?;
    let connection = SqlxPostgresConnector::from_sqlx_postgres_pool(pool);
    Ok(Pools {
        writer: connection.clone(),
        reader: connection,
    })
}

fn connect_error(backend: Backend, source: sea_orm::sqlx::Error) -> StoreError {
    StoreError::Connect { backend, source }
}
