//! Raw SQL for the hot paths, written once for both backends: statements use `?` placeholders
//! and [`stmt`] numbers them `$1, $2, …` for PostgreSQL. Row decoding helpers keep repository
//! functions short.

use sea_orm::{DbBackend, QueryResult, Statement, TryGetable, Value};

use crate::store::{Backend, StoreError};

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
pub fn get<T: TryGetable>(row: &QueryResult, column: &str) -> Result<T, StoreError> {
    Ok(row.try_get::<T>("", column)?)
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
