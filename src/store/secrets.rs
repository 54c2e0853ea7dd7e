//! The secret store's rows: sealed values (encryption is `crate::secrets::cipher`'s, done by the
//! engine before a value reaches this module), by workspace and name. The engine polls
//! [`fingerprint`] once a second to notice changes made on other nodes or by `flowd secrets`.

use sea_orm::{
    ColumnTrait, ConnectionTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder,
    TransactionTrait, Value,
};

use crate::store::entity::secrets::{Column, Entity, Model};
use crate::store::sql::{get, stmt};
use crate::store::{Backend, StoreError};

/// A stored secret: workspace, name, sealed value, the key's fingerprint and times.
pub type StoredSecret = Model;

/// Every stored secret of every workspace, by workspace and name.
pub async fn list(conn: &impl ConnectionTrait) -> Result<Vec<StoredSecret>, StoreError> {
    Ok(Entity::find()
        .order_by_asc(Column::Workspace)
        .order_by_asc(Column::Name)
        .all(conn)
        .await?)
}

/// Every stored secret of `workspace`, by name.
pub async fn list_in(
    conn: &impl ConnectionTrait,
    workspace: &str,
) -> Result<Vec<StoredSecret>, StoreError> {
    Ok(Entity::find()
        .filter(Column::Workspace.eq(workspace))
        .order_by_asc(Column::Name)
        .all(conn)
        .await?)
}

/// Stores (or replaces) a sealed value; a replaced secret keeps its `created_at`. Returns the row.
pub async fn put(
    conn: &impl ConnectionTrait,
    backend: Backend,
    workspace: &str,
    name: &str,
    sealed: &str,
    key_fingerprint: &str,
    now: i64,
) -> Result<StoredSecret, StoreError> {
    let sql = "INSERT INTO secrets (workspace, name, sealed, key_fingerprint, created_at, updated_at) \
               VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (workspace, name) DO UPDATE SET \
               sealed = excluded.sealed, key_fingerprint = excluded.key_fingerprint, \
               updated_at = excluded.updated_at";
    let values: Vec<Value> = vec![
        workspace.into(),
        name.into(),
        sealed.into(),
        key_fingerprint.into(),
        now.into(),
        now.into(),
    ];
    conn.execute_raw(stmt(backend, sql, values)).await?;
    Entity::find_by_id((workspace.to_string(), name.to_string()))
        .one(conn)
        .await?
        .ok_or_else(|| StoreError::NotFound {
            what: format!("secret `{name}`"),
        })
}

/// Deletes a secret; false when there was none by that name.
pub async fn delete(
    conn: &impl ConnectionTrait,
    workspace: &str,
    name: &str,
) -> Result<bool, StoreError> {
    let result = Entity::delete_many()
        .filter(Column::Workspace.eq(workspace))
        .filter(Column::Name.eq(name))
        .exec(conn)
        .await?;
    Ok(result.rows_affected > 0)
}

/// Replaces every sealed value at once (master key rotation): all rows or none. `reseal` turns a
/// row into its new sealed value and fingerprint, or refuses the whole rotation.
pub async fn reseal_all<E>(
    db: &DatabaseConnection,
    reseal: impl Fn(&StoredSecret) -> Result<(String, String), E>,
) -> Result<Result<usize, E>, StoreError> {
    let txn = db.begin().await?;
    let rows = list(&txn).await?;
    for row in &rows {
        let (sealed, fingerprint) = match reseal(row) {
            Ok(next) => next,
            Err(e) => {
                txn.rollback().await?;
                return Ok(Err(e));
            }
        };
        Entity::update_many()
            .col_expr(Column::Sealed, sea_orm::sea_query::Expr::value(sealed))
            .col_expr(
                Column::KeyFingerprint,
                sea_orm::sea_query::Expr::value(fingerprint),
            )
            .filter(Column::Workspace.eq(&row.workspace))
            .filter(Column::Name.eq(&row.name))
            .exec(&txn)
            .await?;
    }
    txn.commit().await?;
    Ok(Ok(rows.len()))
}

/// A summary that changes whenever a secret is added, replaced or deleted: cheap enough to read
/// once a second on every node.
pub async fn fingerprint(
    conn: &impl ConnectionTrait,
    backend: Backend,
) -> Result<String, StoreError> {
    let sql = "SELECT COUNT(*) AS n, CAST(SUM(updated_at) AS BIGINT) AS changed, \
               MAX(key_fingerprint) AS k FROM secrets";
    let Some(row) = conn.query_one_raw(stmt(backend, sql, vec![])).await? else {
        return Ok(String::new());
    };
    let n: i64 = get(&row, "n")?;
    let changed: Option<i64> = get(&row, "changed")?;
    let key: Option<String> = get(&row, "k")?;
    Ok(format!(
        "{n}:{}:{}",
        changed.unwrap_or(0),
        key.unwrap_or_default()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;

    #[tokio::test]
    async fn put_replace_delete_and_the_fingerprint_follows() {
        for db in TestDb::all().await {
            let (w, b) = (db.store.writer(), db.store.backend());
            let empty = fingerprint(w, b).await.unwrap();
            let first = put(w, b, "default", "TOKEN", "v1:aaa", "k1", 1_000)
                .await
                .unwrap();
            assert_eq!((first.created_at, first.updated_at), (1_000, 1_000));
            let one = fingerprint(w, b).await.unwrap();
            assert_ne!(one, empty);
            let again = put(w, b, "default", "TOKEN", "v1:bbb", "k1", 2_000)
                .await
                .unwrap();
            assert_eq!((again.created_at, again.updated_at), (1_000, 2_000));
            assert_eq!(again.sealed, "v1:bbb");
            assert_ne!(fingerprint(w, b).await.unwrap(), one);
            put(w, b, "default", "OTHER", "v1:ccc", "k1", 3_000)
                .await
                .unwrap();
            let names: Vec<String> = list(w).await.unwrap().into_iter().map(|r| r.name).collect();
            assert_eq!(names, ["OTHER", "TOKEN"]);
            let outcome = reseal_all(w, |row| {
                if row.name == "TOKEN" {
                    Err("refused")
                } else {
                    Ok(("v1:new".to_string(), "k2".to_string()))
                }
            })
            .await
            .unwrap();
            assert_eq!(outcome, Err("refused"));
            assert!(
                list(w)
                    .await
                    .unwrap()
                    .iter()
                    .all(|r| r.key_fingerprint == "k1")
            );
            let outcome = reseal_all(w, |_| Ok::<_, ()>(("v1:new".into(), "k2".into())));
            assert_eq!(outcome.await.unwrap(), Ok(2));
            assert!(
                list(w)
                    .await
                    .unwrap()
                    .iter()
                    .all(|r| r.key_fingerprint == "k2")
            );
            assert!(delete(w, "default", "TOKEN").await.unwrap());
            assert!(!delete(w, "default", "TOKEN").await.unwrap());
            assert_eq!(list(w).await.unwrap().len(), 1);
            db.cleanup().await;
        }
    }
}
