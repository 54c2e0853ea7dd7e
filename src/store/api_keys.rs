//! API keys created with `flowd keys create`: stored as SHA-256 hashes (a key is shown once,
//! at creation), with a short prefix so a person can tell keys apart in a listing.

use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};
use sha2::{Digest, Sha256};

use crate::core::workspace::Role;
use crate::store::StoreError;
use crate::store::entity::api_keys::{ActiveModel, Column, Entity, Model};

/// A key as listed: never the key itself.
pub type ApiKey = Model;

/// The hex SHA-256 of a key, as stored and compared.
pub fn hash_key(key: &str) -> String {
    Sha256::digest(key.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A new random key: `fk_` and 64 hex digits (two v4 UUIDs' worth of randomness).
pub fn generate_key() -> String {
    format!(
        "fk_{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

/// Stores a new key under `name`, acting in `workspace` with `role`, and returns the stored row
/// with the key itself. The caller checks that the workspace exists.
pub async fn create(
    conn: &impl ConnectionTrait,
    name: &str,
    workspace: &str,
    role: Role,
    now: i64,
) -> Result<(ApiKey, String), StoreError> {
    let key = generate_key();
    let row = ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        name: Set(name.to_string()),
        prefix: Set(key[..10].to_string()),
        hash: Set(hash_key(&key)),
        created_at: Set(now),
        last_used_at: Set(None),
        revoked_at: Set(None),
        workspace: Set(workspace.to_string()),
        role: Set(role.as_str().to_string()),
    }
    .insert(conn)
    .await?;
    Ok((row, key))
}

/// Every key, oldest first, revoked ones included.
pub async fn list(conn: &impl ConnectionTrait) -> Result<Vec<ApiKey>, StoreError> {
    Ok(Entity::find()
        .order_by_asc(Column::CreatedAt)
        .all(conn)
        .await?)
}

/// Revokes the key with this id or prefix; false when none matches.
pub async fn revoke(
    conn: &impl ConnectionTrait,
    id_or_prefix: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let result = Entity::update_many()
        .col_expr(Column::RevokedAt, sea_orm::sea_query::Expr::value(now))
        .filter(
            sea_orm::Condition::any()
                .add(Column::Id.eq(id_or_prefix))
                .add(Column::Prefix.eq(id_or_prefix)),
        )
        .filter(Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected > 0)
}
