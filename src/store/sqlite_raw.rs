//! The group commit's direct line to SQLite. Through sqlx every statement is a round trip to
//! the connection's own thread: a command sent, the thread woken, each result row sent back and
//! the waiting task woken again, about sixteen thread wake-ups for a batch of eight statements
//! (docs/performance.md, "The local hand-off and the direct writer"). Here the group commit, on
//! a thread of its own, locks the writer connection's handle (sqlx's thread waits meanwhile)
//! and runs the whole transaction through rusqlite on that same connection: one batch, one
//! hand-over.
//!
//! [`RawSqlite`] implements `sql::Conn`, so the repository functions the batch calls
//! (`events::ingest`, `transitions::apply_many`, …) are the very ones every other caller uses.
//! Values come back typed by their column's declared type, so `get::<bool>` reads a `boolean`
//! column and `get::<i32>` an `integer` one as through sqlx. (sea-orm's own `ConnectionTrait`
//! cannot be implemented here: its rows can be made only by its drivers, and its `proxy`
//! feature, which would allow it, does not build in sea-orm 2.0.4.)

use std::collections::BTreeMap;
use std::sync::Mutex;

use rusqlite::types::{Value as SqlValue, ValueRef};
use sea_orm::{DbErr, Statement, Value};

use crate::store::sql::{Conn, Executed, Row};
use crate::store::{Store, StoreError};

/// Runs `body` in one `BEGIN IMMEDIATE` transaction on the store's SQLite writer connection;
/// commits when `body` succeeds, rolls back when it fails. The caller must run on a thread
/// that may block (the SQLite committer's own): SQLite's calls are made right here. Other
/// writers wait for the writer connection meanwhile, as for any transaction.
pub(crate) async fn transaction<T>(
    store: &Store,
    body: impl AsyncFnOnce(&RawSqlite) -> Result<T, StoreError>,
) -> Result<T, StoreError> {
    let sqlx = |e: sea_orm::sqlx::Error| StoreError::from(DbErr::Custom(e.to_string()));
    let pool = store.writer().get_sqlite_connection_pool();
    let mut conn = pool.acquire().await.map_err(sqlx)?;
    let mut handle = conn.lock_handle().await.map_err(sqlx)?;
    // SAFETY: sqlx's thread leaves the handle alone while it is locked, and `raw`, which does
    // not close the connection, is dropped before the lock.
    let raw = unsafe { rusqlite::Connection::from_handle(handle.as_raw_handle().as_ptr()) }
        .map(|conn| RawSqlite {
            conn: Mutex::new(conn),
        })
        .map_err(sqlite)?;
    raw.exec_batch("BEGIN IMMEDIATE")?;
    let done = match body(&raw).await {
        Ok(value) => raw.exec_batch("COMMIT").map(|()| value),
        Err(error) => Err(error),
    };
    if done.is_err() {
        // Nothing to roll back when COMMIT itself ended the transaction; that error is moot.
        let _ = raw.exec_batch("ROLLBACK");
    }
    drop(raw);
    done
}

/// The writer connection while the group commit holds it. The mutex is never contended (one
/// committer); it makes the connection `Sync`, which `Conn` asks for.
pub(crate) struct RawSqlite {
    conn: Mutex<rusqlite::Connection>,
}

fn sqlite(error: rusqlite::Error) -> StoreError {
    StoreError::from(DbErr::Custom(format!("SQLite: {error}")))
}

impl RawSqlite {
    fn conn(&self) -> std::sync::MutexGuard<'_, rusqlite::Connection> {
        self.conn
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Runs SQL without parameters, several statements allowed (`BEGIN IMMEDIATE`, `COMMIT`).
    pub(crate) fn exec_batch(&self, sql: &str) -> Result<(), StoreError> {
        self.conn().execute_batch(sql).map_err(sqlite)
    }

    /// Runs one statement with its values; returns its rows (when `rows`) and the count of rows
    /// it changed.
    fn run(&self, stmt: &Statement, rows: bool) -> Result<(Vec<Row>, u64), DbErr> {
        let err = |e: rusqlite::Error| DbErr::Custom(format!("SQLite: {e}"));
        let conn = self.conn();
        let mut prepared = conn.prepare(&stmt.sql).map_err(err)?;
        let columns: Vec<(String, String)> = prepared
            .columns()
            .iter()
            .map(|c| {
                let declared = c.decl_type().unwrap_or_default().to_lowercase();
                (c.name().to_string(), declared)
            })
            .collect();
        let values = stmt.values.as_ref().map(|v| v.0.as_slice()).unwrap_or(&[]);
        let params = values.iter().map(to_sql).collect::<Result<Vec<_>, _>>()?;
        let mut cursor = prepared
            .query(rusqlite::params_from_iter(params))
            .map_err(err)?;
        let mut found = Vec::new();
        while let Some(row) = cursor.next().map_err(err)? {
            if !rows {
                continue;
            }
            let mut values = BTreeMap::new();
            for (i, (name, declared)) in columns.iter().enumerate() {
                let value = row.get_ref(i).map_err(err)?;
                values.insert(name.clone(), from_sql(value, declared));
            }
            found.push(Row::Raw(values));
        }
        drop(cursor);
        drop(prepared);
        Ok((found, conn.changes()))
    }
}

/// A sea-orm value as SQLite stores it.
fn to_sql(value: &Value) -> Result<SqlValue, DbErr> {
    Ok(match value {
        Value::Bool(v) => v.map_or(SqlValue::Null, |v| SqlValue::Integer(i64::from(v))),
        Value::TinyInt(v) => v.map_or(SqlValue::Null, |v| SqlValue::Integer(i64::from(v))),
        Value::SmallInt(v) => v.map_or(SqlValue::Null, |v| SqlValue::Integer(i64::from(v))),
        Value::Int(v) => v.map_or(SqlValue::Null, |v| SqlValue::Integer(i64::from(v))),
        Value::BigInt(v) => v.map_or(SqlValue::Null, SqlValue::Integer),
        Value::TinyUnsigned(v) => v.map_or(SqlValue::Null, |v| SqlValue::Integer(i64::from(v))),
        Value::SmallUnsigned(v) => v.map_or(SqlValue::Null, |v| SqlValue::Integer(i64::from(v))),
        Value::Unsigned(v) => v.map_or(SqlValue::Null, |v| SqlValue::Integer(i64::from(v))),
        Value::BigUnsigned(v) => v.map_or(SqlValue::Null, |v| {
            SqlValue::Integer(i64::try_from(v).unwrap_or(i64::MAX))
        }),
        Value::Float(v) => v.map_or(SqlValue::Null, |v| SqlValue::Real(f64::from(v))),
        Value::Double(v) => v.map_or(SqlValue::Null, SqlValue::Real),
        Value::String(v) => v.clone().map_or(SqlValue::Null, SqlValue::Text),
        Value::Char(v) => v.map_or(SqlValue::Null, |v| SqlValue::Text(v.to_string())),
        Value::Bytes(v) => v.clone().map_or(SqlValue::Null, SqlValue::Blob),
        other => {
            return Err(DbErr::Custom(format!(
                "a value the direct SQLite writer cannot bind: {other:?}"
            )));
        }
    })
}

/// A column's value as sqlx would type it: by the declared type where there is one
/// (`boolean`, `integer`, `bigint`, `text`, …), else by what SQLite stored.
fn from_sql(value: ValueRef<'_>, declared: &str) -> Value {
    let int = match value {
        ValueRef::Integer(i) => Some(i),
        ValueRef::Real(f) => Some(f as i64),
        _ => None,
    };
    if declared.contains("bool") {
        return Value::Bool(int.map(|i| i != 0));
    }
    if declared.contains("bigint") || declared.contains("int8") {
        return Value::BigInt(int);
    }
    if declared.contains("int") {
        return Value::Int(int.map(|i| i as i32));
    }
    match value {
        ValueRef::Null if declared.contains("real") || declared.contains("doub") => {
            Value::Double(None)
        }
        ValueRef::Null if declared.contains("blob") => Value::Bytes(None),
        ValueRef::Null => Value::String(None),
        ValueRef::Integer(i) => Value::BigInt(Some(i)),
        ValueRef::Real(f) => Value::Double(Some(f)),
        ValueRef::Text(text) => Value::String(Some(String::from_utf8_lossy(text).into_owned())),
        ValueRef::Blob(bytes) => Value::Bytes(Some(bytes.to_vec())),
    }
}

#[async_trait::async_trait]
impl Conn for RawSqlite {
    async fn execute_raw(&self, stmt: Statement) -> Result<Executed, DbErr> {
        let (_, rows_affected) = self.run(&stmt, false)?;
        Ok(Executed { rows_affected })
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<Row>, DbErr> {
        Ok(self.run(&stmt, true)?.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::sql::{get, stmt};
    use crate::store::testing::TestDb;
    use crate::store::{Backend, Store};

    /// Runs `body` on the direct writer of a fresh SQLite store, inside one transaction.
    async fn with_raw<T>(store: &Store, body: impl AsyncFnOnce(&RawSqlite) -> T) -> T {
        transaction(store, async |raw| Ok(body(raw).await))
            .await
            .unwrap()
    }

    #[tokio::test]
    async fn values_go_in_and_come_back_typed_as_through_sqlx() {
        let db = TestDb::sqlite().await;
        let store = &db.store;
        let create = "CREATE TABLE t (id text PRIMARY KEY, n integer, big bigint, flag boolean, \
                      x double, body blob, maybe text)";
        sea_orm::ConnectionTrait::execute_unprepared(store.writer(), create)
            .await
            .unwrap();
        let rows = with_raw(store, async |raw| {
            let insert = stmt(
                Backend::Sqlite,
                "INSERT INTO t VALUES (?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?) RETURNING id, flag",
                vec![
                    "a".into(),
                    7i32.into(),
                    (1i64 << 40).into(),
                    true.into(),
                    1.5f64.into(),
                    vec![0u8, 1, 2].into(),
                    Option::<String>::None.into(),
                    "b'\"; DROP TABLE t; --".into(),
                    Option::<i32>::None.into(),
                    0i64.into(),
                    false.into(),
                    0.0f64.into(),
                    Vec::<u8>::new().into(),
                    "here".into(),
                ],
            );
            let returned = raw.query_all_raw(insert).await.unwrap();
            assert_eq!(returned.len(), 2);
            assert!(get::<bool>(&returned[0], "flag").unwrap());
            let exec = raw
                .execute_raw(stmt(Backend::Sqlite, "UPDATE t SET n = n + 1", vec![]))
                .await
                .unwrap();
            assert_eq!(exec.rows_affected(), 2);
            let all = stmt(Backend::Sqlite, "SELECT * FROM t ORDER BY id", vec![]);
            raw.query_all_raw(all).await.unwrap()
        })
        .await;
        assert_eq!(get::<String>(&rows[0], "id").unwrap(), "a");
        assert_eq!(get::<i32>(&rows[0], "n").unwrap(), 8);
        assert_eq!(get::<i64>(&rows[0], "big").unwrap(), 1 << 40);
        assert!(get::<bool>(&rows[0], "flag").unwrap());
        assert_eq!(get::<f64>(&rows[0], "x").unwrap(), 1.5);
        assert_eq!(get::<Vec<u8>>(&rows[0], "body").unwrap(), vec![0, 1, 2]);
        assert_eq!(get::<Option<String>>(&rows[0], "maybe").unwrap(), None);
        assert_eq!(
            get::<String>(&rows[1], "id").unwrap(),
            "b'\"; DROP TABLE t; --"
        );
        assert_eq!(get::<Option<i32>>(&rows[1], "n").unwrap(), None);
        assert!(!get::<bool>(&rows[1], "flag").unwrap());
        assert_eq!(
            get::<Option<String>>(&rows[1], "maybe").unwrap(),
            Some("here".into())
        );
        db.cleanup().await;
    }

    #[tokio::test]
    async fn a_failing_body_rolls_back_and_a_committed_one_is_seen_by_sqlx() {
        let db = TestDb::sqlite().await;
        let store = &db.store;
        let insert = |id: &str| {
            stmt(
                Backend::Sqlite,
                "INSERT INTO workspaces (name, created_at) VALUES (?, 1)",
                vec![id.into()],
            )
        };
        let failed: Result<(), StoreError> = transaction(store, async |raw| {
            raw.execute_raw(insert("gone")).await?;
            Err(StoreError::WriterStopped)
        })
        .await;
        assert!(failed.is_err());
        transaction(store, async |raw| {
            Ok(raw.execute_raw(insert("kept")).await?)
        })
        .await
        .unwrap();
        let names = sea_orm::ConnectionTrait::query_all_raw(
            store.reader(),
            stmt(
                Backend::Sqlite,
                "SELECT name FROM workspaces WHERE name IN ('gone', 'kept')",
                vec![],
            ),
        )
        .await
        .unwrap();
        let names: Vec<String> = names.iter().map(|r| get(r, "name").unwrap()).collect();
        assert_eq!(names, ["kept"]);
        db.cleanup().await;
    }

    #[tokio::test]
    async fn errors_name_what_sqlite_said_and_leave_the_handle_usable() {
        let db = TestDb::sqlite().await;
        let store = &db.store;
        with_raw(store, async |raw| {
            let bad = raw
                .query_all_raw(stmt(Backend::Sqlite, "SELECT * FROM nowhere", vec![]))
                .await
                .unwrap_err();
            assert!(bad.to_string().contains("no such table: nowhere"), "{bad}");
            let two = raw
                .execute_raw(stmt(Backend::Sqlite, "SELECT 1; SELECT 2", vec![]))
                .await
                .unwrap_err();
            assert!(two.to_string().contains("ultiple statements"), "{two}");
            let one = raw
                .query_one_raw(stmt(Backend::Sqlite, "SELECT 41 + 1 AS n", vec![]))
                .await
                .unwrap()
                .unwrap();
            assert_eq!(get::<i64>(&one, "n").unwrap(), 42);
        })
        .await;
        db.cleanup().await;
    }
}
