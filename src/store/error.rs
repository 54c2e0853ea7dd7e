//! `StoreError`, the one error type of the store. Unique-key violations are recognised here, in
//! `From<DbErr>`, for both backends, so every repository function that uses `?` reports a
//! duplicate (an event id, a schedule fire, a webhook id, an API key hash) as
//! `StoreError::Conflict` and the API can map it to 409 in one place.

use sea_orm::sqlx;
use sea_orm::{DbErr, RuntimeErr, SqlErr, TransactionError};

use crate::store::Backend;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// A row with the same primary or unique key exists. `what` names the table.
    #[error("duplicate key in {what}")]
    Conflict { what: String },
    /// Raised by repository functions when the row they were asked for does not exist.
    #[error("{what} not found")]
    NotFound { what: String },
    /// A conditional write on a run found another lease owner or epoch: this node must stop
    /// working on the run.
    #[error("the run's lease is held by another worker now")]
    LeaseLost,
    /// The group-commit task is gone (the engine is shutting down).
    #[error("the database writer has stopped")]
    WriterStopped,
    #[error("unsupported database URL: {reason}")]
    UnsupportedUrl { reason: String },
    #[error("invalid {name} {value:?}: expected {expected}")]
    InvalidOption {
        name: &'static str,
        value: String,
        expected: &'static str,
    },
    /// Opening a pool failed. The URL is left out on purpose: it may hold a password.
    #[error("cannot open the {backend} database: {source}")]
    Connect {
        backend: Backend,
        #[source]
        source: sqlx::Error,
    },
    /// A stored text column holds a value this version does not know.
    #[error("column `{column}` holds an unknown value `{value}`")]
    UnknownValue { column: String, value: String },
    #[error("database error: {0}")]
    Database(#[source] DbErr),
}

impl From<DbErr> for StoreError {
    fn from(err: DbErr) -> Self {
        match unique_violation(&err) {
            Some(what) => StoreError::Conflict { what },
            None => StoreError::Database(err),
        }
    }
}

/// Lets repository code use `TransactionTrait::transaction` with closures returning
/// `StoreError`, and still get a plain `StoreError` out.
impl From<TransactionError<StoreError>> for StoreError {
    fn from(err: TransactionError<StoreError>) -> Self {
        match err {
            TransactionError::Connection(err) => err.into(),
            TransactionError::Transaction(err) => err,
        }
    }
}

/// The table whose unique key `err` violated, or the driver's message when the table cannot be
/// told; `None` when `err` is no unique violation. sea-orm's `sql_err` knows both backends' codes
/// (SQLite 1555/2067, PostgreSQL 23505).
fn unique_violation(err: &DbErr) -> Option<String> {
    let SqlErr::UniqueConstraintViolation(message) = err.sql_err()? else {
        return None;
    };
    Some(
        driver_table(err)
            .or_else(|| sqlite_table(&message))
            .unwrap_or(message),
    )
}

/// PostgreSQL reports the table in a field of its error; SQLite does not.
fn driver_table(err: &DbErr) -> Option<String> {
    let (DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err))) = err
    else {
        return None;
    };
    match err.as_ref() {
        sqlx::Error::Database(err) => err.table().map(str::to_owned),
        _ => None,
    }
}

/// SQLite says "UNIQUE constraint failed: events.id" (columns as `table.column`, comma-separated).
fn sqlite_table(message: &str) -> Option<String> {
    let (_, columns) = message.split_once("constraint failed: ")?;
    let (table, _) = columns.split_once('.')?;
    Some(table.trim().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sqlite_messages_name_the_table() {
        assert_eq!(
            sqlite_table(
                "UNIQUE constraint failed: schedule_fires.flow_id, schedule_fires.fire_at"
            ),
            Some("schedule_fires".to_owned())
        );
        assert_eq!(sqlite_table("disk I/O error"), None);
    }

    #[test]
    fn other_errors_stay_database_errors() {
        let err = StoreError::from(DbErr::Custom("boom".to_owned()));
        assert!(matches!(err, StoreError::Database(_)), "{err:?}");
    }
}
