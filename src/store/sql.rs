//! Raw SQL for the hot paths, written once for both backends: statements use `?` placeholders
//! and [`stmt`] numbers them `$1, $2, …` for PostgreSQL. Row decoding helpers keep repository
//! functions short.

use std::collections::BTreeMap;

use sea_orm::sea_query::ValueType;
use sea_orm::{ConnectionTrait, DbBackend, DbErr, QueryResult, Statement, TryGetable, Value};

use crate::store::{Backend, StoreError};

/// What the group commit's statements run on: any sea-orm connection or transaction, or, on
/// SQLite, the committer's direct handle (`sqlite_raw`). The repository functions the group
/// commit calls take `&impl Conn`, so they are the same code on both.
#[async_trait::async_trait]
pub trait Conn: Sync {
    async fn execute_raw(&self, stmt: Statement) -> Result<Executed, DbErr>;
    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<Row>, DbErr>;

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<Row>, DbErr> {
        Ok(self.query_all_raw(stmt).await?.into_iter().next())
    }
}

#[async_trait::async_trait]
impl<C: ConnectionTrait> Conn for C {
    async fn execute_raw(&self, stmt: Statement) -> Result<Executed, DbErr> {
        let result = ConnectionTrait::execute_raw(self, stmt).await?;
        Ok(Executed {
            rows_affected: result.rows_affected(),
        })
    }

    async fn query_all_raw(&self, stmt: Statement) -> Result<Vec<Row>, DbErr> {
        let rows = ConnectionTrait::query_all_raw(self, stmt).await?;
        Ok(rows.into_iter().map(Row::Orm).collect())
    }

    async fn query_one_raw(&self, stmt: Statement) -> Result<Option<Row>, DbErr> {
        Ok(ConnectionTrait::query_one_raw(self, stmt)
            .await?
            .map(Row::Orm))
    }
}

/// What a statement run through [`Conn`] changed.
#[derive(Debug, Clone, Copy)]
pub struct Executed {
    pub rows_affected: u64,
}

impl Executed {
    pub fn rows_affected(&self) -> u64 {
        self.rows_affected
    }
}

/// A row read through [`Conn`]: sea-orm's, or values by column name from the direct writer.
#[derive(Debug)]
pub enum Row {
    Orm(QueryResult),
    Raw(BTreeMap<String, Value>),
}

/// Rows whose columns [`get`] reads.
pub trait Columns {
    fn column<T: TryGetable + ValueType>(&self, column: &str) -> Result<T, StoreError>;
}

impl Columns for QueryResult {
    fn column<T: TryGetable + ValueType>(&self, column: &str) -> Result<T, StoreError> {
        Ok(self.try_get::<T>("", column)?)
    }
}

impl Columns for Row {
    fn column<T: TryGetable + ValueType>(&self, column: &str) -> Result<T, StoreError> {
        match self {
            Row::Orm(row) => row.column(column),
            Row::Raw(values) => {
                let value = values
                    .get(column)
                    .ok_or_else(|| DbErr::Type(format!("no column `{column}` in the row")))?;
                T::try_from(value.clone()).map_err(|_| {
                    DbErr::Type(format!(
                        "column `{column}` holds {value:?}, not the type read"
                    ))
                    .into()
                })
            }
        }
    }
}

/// A statement for `backend` from SQL with `?` placeholders.
pub fn stmt(backend: Backend, sql: &str, values: Vec<Value>) -> Statement {
    match backend {
        Backend::Sqlite => Statement::from_sql_and_values(DbBackend::Sqlite, sql, values),
        Backend::Postgres => {
            Statement::from_sql_and_values(DbBackend::Postgres, number_placeholders(sql), values)
        }
    }
}

/// Replaces each `?` outside string literals with `$n`.
fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    let mut in_string = false;
    for c in sql.chars() {
        match c {
            '\'' => {
                in_string = !in_string;
                out.push(c);
            }
            '?' if !in_string => {
                n += 1;
                out.push('$');
                out.push_str(&n.to_string());
            }
            _ => out.push(c),
        }
    }
    out
}

/// The row lock of a claim on PostgreSQL (`FOR UPDATE SKIP LOCKED`: rows another transaction
/// holds are left to it); nothing on SQLite, whose single writer serialises claims.
pub fn skip_locked(backend: Backend) -> &'static str {
    match backend {
        Backend::Postgres => " FOR UPDATE SKIP LOCKED",
        Backend::Sqlite => "",
    }
}

/// Serializes, across nodes, the transactions that take the lock named `key` until each one
/// ends (a PostgreSQL advisory transaction lock). On SQLite the single writer already does.
pub async fn advisory_xact_lock(
    conn: &impl sea_orm::ConnectionTrait,
    backend: Backend,
    key: String,
) -> Result<(), StoreError> {
    if backend == Backend::Postgres {
        conn.execute_raw(stmt(
            backend,
            "SELECT pg_advisory_xact_lock(hashtext(?))",
            vec![key.into()],
        ))
        .await?;
    }
    Ok(())
}

/// `?, ?, ?` for an `IN (…)` list or a VALUES row of `n` values.
pub fn placeholders(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// One column of a row, by name.
pub fn get<T: TryGetable + ValueType>(row: &impl Columns, column: &str) -> Result<T, StoreError> {
    row.column(column)
}

/// A text column read as a typed value (a status, a source): a value the type does not know
/// means the row was written by something else than this flowd.
pub fn get_parsed<T: std::str::FromStr>(row: &QueryResult, column: &str) -> Result<T, StoreError> {
    let text: String = get(row, column)?;
    text.parse().map_err(|_| StoreError::UnknownValue {
        column: column.to_string(),
        value: text,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_placeholders_outside_strings() {
        assert_eq!(
            number_placeholders("SELECT ? , '?' FROM t WHERE a = ? AND b IN (?, ?)"),
            "SELECT $1 , '?' FROM t WHERE a = $2 AND b IN ($3, $4)"
        );
        assert_eq!(placeholders(3), "?, ?, ?");
    }
}
