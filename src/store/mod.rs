//! The store: flowd's database layer on sea-orm, SQLite by default and PostgreSQL for several
//! nodes. `Store` owns the connection pools and applies the migrations; `entity` holds one thin
//! sea-orm entity per table; repository functions per aggregate (`runs.rs`, `flows.rs`) build on
//! both. Every difference between SQLite and PostgreSQL lives in this module and nowhere else.
//!
//! Writes go through `Store::writer` (or a transaction from `Store::begin_write`), reads through
//! `Store::reader`. On SQLite these are different pools, the writer holding a single connection,
//! so concurrent writers queue instead of failing with "database is locked" (see `connect.rs`).

pub mod api_keys;
pub mod audit;
mod connect;
pub mod entity;
mod error;
pub mod events;
pub mod flows;
pub mod group_commit;
pub mod handoff;
pub mod limits;
pub mod nodes;
pub mod notifications;
pub mod operations;
mod options;
pub mod portal_links;
pub mod quotas;
pub mod retention;
pub mod run_log;
pub mod runs;
pub mod schedules;
pub mod secrets;
pub mod sql;
mod sqlite_raw;
pub mod starts;
/// Fresh databases for tests; compiled for the unit tests and, through the `test-support`
/// feature, for the integration tests, never into a build that ships.
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod transitions;
pub mod usage;
mod wal;
pub mod webhooks;
pub mod workspaces;

use std::fmt;

use migration::{Migrator, MigratorTrait};
use sea_orm::{
    AccessMode, ConnectionTrait, DatabaseConnection, DatabaseTransaction, IsolationLevel,
    SqliteTransactionMode, TransactionOptions, TransactionTrait,
};
use tracing::{info, warn};

pub use error::StoreError;
pub use options::StoreOptions;

/// An arbitrary constant naming flowd's PostgreSQL advisory lock for migrations ("flowd_mg").
const MIGRATION_LOCK_KEY: i64 = 0x666c_6f77_645f_6d67;

/// The database engine behind a store, for the few places that must write different SQL.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl Backend {
    /// The backend a database URL asks for: `sqlite:…` or `postgres://…` / `postgresql://…`.
    pub fn from_url(url: &str) -> Result<Backend, StoreError> {
        if url.starts_with("sqlite:") {
            Ok(Backend::Sqlite)
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(Backend::Postgres)
        } else {
            Err(StoreError::UnsupportedUrl {
                reason: "expected sqlite://PATH or postgres://…".to_owned(),
            })
        }
    }
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        })
    }
}

/// The connection pools of one database. Cloning is cheap and shares the pools.
#[derive(Clone, Debug)]
pub struct Store {
    writer: DatabaseConnection,
    reader: DatabaseConnection,
    backend: Backend,
}

impl Store {
    /// Opens `url` (`sqlite://flowd.db`, created if missing, or `postgres://…`). Does not migrate.
    pub async fn connect(url: &str, options: &StoreOptions) -> Result<Store, StoreError> {
        let backend = Backend::from_url(url)?;
        let pools = match backend {
            Backend::Sqlite => connect::sqlite(url, options).await?,
            Backend::Postgres => connect::postgres(url, options).await?,
        };
        info!(%backend, sync_full = options.sqlite_sync_full, "Database opened.");
        Ok(Store {
            writer: pools.writer,
            reader: pools.reader,
            backend,
        })
    }

    /// Applies pending migrations; a no-op when there are none. Safe to run from several
    /// processes at once: all of it happens in one write transaction, which SQLite serialises
    /// (`BEGIN IMMEDIATE`) and PostgreSQL serialises through an advisory lock, so a second node
    /// waits and then finds nothing left to do.
    /// Names of the migrations not applied yet, oldest first.
    pub async fn pending_migrations(&self) -> Result<Vec<String>, StoreError> {
        let pending = Migrator::get_pending_migrations(&self.writer).await?;
        Ok(pending.iter().map(|m| m.name().to_string()).collect())
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let txn = self.begin_write().await?;
        if self.backend == Backend::Postgres {
            txn.execute_unprepared(&format!(
                "SELECT pg_advisory_xact_lock({MIGRATION_LOCK_KEY})"
            ))
            .await?;
        }
        Migrator::up(&txn, None).await?;
        txn.commit().await?;
        info!(backend = %self.backend, "Database migrated.");
        Ok(())
    }

    /// Starts a write transaction on the writer. On SQLite it is `BEGIN IMMEDIATE`: the write
    /// lock is taken up front, so a transaction that reads before it writes cannot fail half-way
    /// when another process writes. Inside it, use the transaction, never `writer()`: the single
    /// SQLite writer connection is busy with the transaction itself.
    pub async fn begin_write(&self) -> Result<DatabaseTransaction, StoreError> {
        let options = TransactionOptions {
            sqlite_transaction_mode: Some(SqliteTransactionMode::Immediate),
            ..TransactionOptions::default()
        };
        Ok(self.writer.begin_with_options(options).await?)
    }

    /// A read-only transaction whose queries all see one snapshot, for reads that must add up
    /// (the runs not folded yet and the rollup they are folded into: a fold committing between
    /// two plain reads would count its runs twice). PostgreSQL needs `REPEATABLE READ` for that;
    /// a SQLite read transaction in WAL mode is a snapshot already.
    pub async fn begin_snapshot(&self) -> Result<DatabaseTransaction, StoreError> {
        let options = match self.backend {
            Backend::Postgres => TransactionOptions {
                isolation_level: Some(IsolationLevel::RepeatableRead),
                access_mode: Some(AccessMode::ReadOnly),
                ..TransactionOptions::default()
            },
            Backend::Sqlite => TransactionOptions::default(),
        };
        Ok(self.reader.begin_with_options(options).await?)
    }

    /// The connection for writes (and for reads that must see the writer's own state).
    pub fn writer(&self) -> &DatabaseConnection {
        &self.writer
    }

    /// The connection for read-only queries; on SQLite, writing through it fails.
    pub fn reader(&self) -> &DatabaseConnection {
        &self.reader
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// Checks that the database answers (for `/readyz`). Uses the reader so that a long queue of
    /// SQLite writes does not make the node look unready.
    pub async fn ping(&self) -> Result<(), StoreError> {
        Ok(self.reader.ping().await?)
    }

    /// Closes the pools, waiting for connections in use to be returned.
    pub async fn close(self) {
        for (role, connection) in [("writer", self.writer), ("reader", self.reader)] {
            if let Err(error) = connection.close().await {
                warn!(role, %error, "Closing a database pool failed.");
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use migration::SchemaManager;
    use sea_orm::{ActiveModelTrait, EntityTrait, PaginatorTrait, Set, Statement, Value};

    use super::*;
    use crate::store::entity::nodes;
    use crate::store::testing::TestDb;

    const TABLES: [&str; 21] = [
        "flows",
        "flow_revisions",
        "events",
        "runs",
        "step_runs",
        "attempts",
        "notifications",
        "api_keys",
        "schedule_fires",
        "webhook_requests",
        "nodes",
        "secrets",
        "operations",
        "usage_daily",
        "workspaces",
        "portal_links",
        "audit_log",
        "workspace_quotas",
        "quota_windows",
        "quota_holds",
        "quota_notices",
    ];

    async fn assert_migrated(store: &Store) {
        let applied = Migrator::get_applied_migrations(store.writer())
            .await
            .unwrap();
        assert_eq!(applied.len(), Migrator::migrations().len());
        let manager = SchemaManager::new(store.reader());
        for table in TABLES {
            assert!(manager.has_table(table).await.unwrap(), "table {table}");
        }
    }

    #[tokio::test]
    async fn migrate_creates_every_table_and_can_run_again() {
        for db in TestDb::all().await {
            assert_migrated(&db.store).await;
            db.store.migrate().await.unwrap();
            db.store.migrate().await.unwrap();
            assert_migrated(&db.store).await;
            db.cleanup().await;
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn nodes_migrating_a_fresh_database_at_once_all_succeed() {
        for db in TestDb::all_unmigrated().await {
            let mut stores = Vec::new();
            for _ in 0..3 {
                stores.push(
                    Store::connect(&db.url, &StoreOptions::default())
                        .await
                        .unwrap(),
                );
            }
            let tasks: Vec<_> = stores
                .iter()
                .cloned()
                .map(|store| tokio::spawn(async move { store.migrate().await }))
                .collect();
            for task in tasks {
                task.await.unwrap().unwrap();
            }
            assert_migrated(&db.store).await;
            for store in stores {
                store.close().await;
            }
            db.cleanup().await;
        }
    }

    /// 8 tasks × 200 transactions that read before they write, the pattern that fails with
    /// "database is locked" on a shared SQLite pool, plus a reader running alongside.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_writers_queue_instead_of_failing() {
        const TASKS: usize = 8;
        const TRANSACTIONS: usize = 200;
        for db in TestDb::all().await {
            let reader = tokio::spawn(read_nodes_until(db.store.clone(), TASKS * TRANSACTIONS));
            let writers: Vec<_> = (0..TASKS)
                .map(|task| tokio::spawn(write_nodes(db.store.clone(), task, TRANSACTIONS)))
                .collect();
            for writer in writers {
                writer.await.unwrap();
            }
            tokio::time::timeout(Duration::from_secs(30), reader)
                .await
                .expect("the reader sees every row")
                .unwrap();
            let count = nodes::Entity::find()
                .count(db.store.reader())
                .await
                .unwrap();
            assert_eq!(count, (TASKS * TRANSACTIONS) as u64);
            db.cleanup().await;
        }
    }

    async fn write_nodes(store: Store, task: usize, transactions: usize) {
        for i in 0..transactions {
            let txn = store.begin_write().await.unwrap();
            let seen = nodes::Entity::find().count(&txn).await.unwrap();
            let node = nodes::ActiveModel {
                id: Set(format!("node-{task}-{i}")),
                hostname: Set(format!("host-{task}")),
                version: Set("test".to_owned()),
                started_at: Set(seen as i64),
                heartbeat_at: Set(seen as i64),
                ..Default::default()
            };
            node.insert(&txn)
                .await
                .unwrap_or_else(|e| panic!("write failed: {e}"));
            txn.commit()
                .await
                .unwrap_or_else(|e| panic!("commit failed: {e}"));
        }
    }

    async fn read_nodes_until(store: Store, expected: usize) {
        loop {
            let count = nodes::Entity::find().count(store.reader()).await.unwrap();
            if count as usize >= expected {
                return;
            }
            tokio::task::yield_now().await;
        }
    }

    async fn pragma(connection: &DatabaseConnection, name: &str) -> Value {
        let sql = format!("PRAGMA {name}");
        let row = connection
            .query_one_raw(Statement::from_string(
                connection.get_database_backend(),
                sql,
            ))
            .await
            .unwrap()
            .unwrap();
        match name {
            "journal_mode" => Value::from(row.try_get_by_index::<String>(0).unwrap()),
            _ => Value::from(row.try_get_by_index::<i64>(0).unwrap()),
        }
    }

    #[tokio::test]
    async fn sqlite_pragmas_follow_the_options() {
        let db = TestDb::sqlite().await;
        for connection in [db.store.writer(), db.store.reader()] {
            assert_eq!(pragma(connection, "journal_mode").await, Value::from("wal"));
            assert_eq!(pragma(connection, "synchronous").await, Value::from(1_i64)); // NORMAL
            assert_eq!(
                pragma(connection, "busy_timeout").await,
                Value::from(10_000_i64)
            );
            assert_eq!(pragma(connection, "foreign_keys").await, Value::from(0_i64));
        }
        assert_eq!(
            pragma(db.store.writer(), "query_only").await,
            Value::from(0_i64)
        );
        assert_eq!(
            pragma(db.store.reader(), "query_only").await,
            Value::from(1_i64)
        );

        let options = StoreOptions {
            sqlite_sync_full: true,
            ..StoreOptions::default()
        };
        let full = Store::connect(&db.url, &options).await.unwrap();
        for connection in [full.writer(), full.reader()] {
            assert_eq!(pragma(connection, "synchronous").await, Value::from(2_i64)); // FULL
        }
        full.close().await;
        db.cleanup().await;
    }

    #[tokio::test]
    async fn sqlite_reader_refuses_writes() {
        let db = TestDb::sqlite().await;
        let node = nodes::ActiveModel {
            id: Set("n1".to_owned()),
            hostname: Set("h".to_owned()),
            version: Set("v".to_owned()),
            started_at: Set(1),
            heartbeat_at: Set(1),
            ..Default::default()
        };
        let err = node.insert(db.store.reader()).await.unwrap_err();
        assert!(err.to_string().contains("readonly"), "{err}");
        db.cleanup().await;
    }

    #[tokio::test]
    async fn ping_answers_and_backend_matches_the_url() {
        for db in TestDb::all().await {
            db.store.ping().await.unwrap();
            assert_eq!(db.store.backend(), Backend::from_url(&db.url).unwrap());
            db.cleanup().await;
        }
    }

    #[tokio::test]
    async fn connect_rejects_other_and_in_memory_urls() {
        for url in ["mysql://localhost/flowd", "sqlite::memory:", "flowd.db"] {
            let err = Store::connect(url, &StoreOptions::default())
                .await
                .unwrap_err();
            assert!(
                matches!(err, StoreError::UnsupportedUrl { .. }),
                "{url}: {err:?}"
            );
        }
    }
}
