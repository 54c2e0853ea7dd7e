//! Portal links: the rows behind `POST /api/v1/workspaces/{ws}/portal-links`. A link's token is
//! 32 random bytes (base64url) handed out once; the table keeps its SHA-256, so neither a copy of
//! the database nor its logs open a console. Redeeming is one conditional UPDATE, so a link is
//! used once even when two nodes receive it at the same moment.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::OsRng;
use chacha20poly1305::aead::rand_core::RngCore;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, Set,
};

use crate::store::StoreError;
use crate::store::api_keys::hash_key;
use crate::store::entity::portal_links::{ActiveModel, Column, Entity, Model};

/// A link as stored: never its token.
pub type PortalLink = Model;

/// A new link to store.
#[derive(Debug, Clone)]
pub struct NewPortalLink {
    pub workspace: String,
    pub role: String,
    pub expires_at: i64,
    pub created_by: String,
}

/// What redeeming a token found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Redeemed {
    /// The link was valid and is now used.
    Opened(PortalLink),
    Unknown,
    Expired,
    AlreadyUsed,
    Revoked,
}

/// A new token: 32 bytes from the system's generator, base64url without padding (43 chars).
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    OsRng.fill_bytes(&mut bytes);
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The hex SHA-256 of a token, as stored and looked up.
pub fn hash_token(token: &str) -> String {
    hash_key(token)
}

/// Stores a new link with a fresh token; returns the row and the token (shown once).
pub async fn create(
    conn: &impl ConnectionTrait,
    link: NewPortalLink,
    now: i64,
) -> Result<(PortalLink, String), StoreError> {
    let token = new_token();
    let row = ActiveModel {
        id: Set(uuid::Uuid::now_v7().to_string()),
        workspace: Set(link.workspace),
        role: Set(link.role),
        token_hash: Set(hash_token(&token)),
        created_at: Set(now),
        expires_at: Set(link.expires_at),
        used_at: Set(None),
        revoked_at: Set(None),
        created_by: Set(link.created_by),
    }
    .insert(conn)
    .await?;
    Ok((row, token))
}

/// The links of `workspace`, newest first.
pub async fn list(
    conn: &impl ConnectionTrait,
    workspace: &str,
) -> Result<Vec<PortalLink>, StoreError> {
    Ok(Entity::find()
        .filter(Column::Workspace.eq(workspace))
        .order_by_desc(Column::CreatedAt)
        .order_by_desc(Column::Id)
        .all(conn)
        .await?)
}

/// The link `id`, whatever its state.
pub async fn get(conn: &impl ConnectionTrait, id: &str) -> Result<Option<PortalLink>, StoreError> {
    Ok(Entity::find_by_id(id).one(conn).await?)
}

/// Revokes link `id` of `workspace`; false when the workspace has no such link. Revoking a
/// revoked link keeps its first revocation time.
pub async fn revoke(
    conn: &impl ConnectionTrait,
    workspace: &str,
    id: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let found = Entity::find_by_id(id)
        .filter(Column::Workspace.eq(workspace))
        .one(conn)
        .await?;
    if found.is_none() {
        return Ok(false);
    }
    Entity::update_many()
        .col_expr(Column::RevokedAt, Expr::value(now))
        .filter(Column::Id.eq(id))
        .filter(Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(true)
}

/// Marks the link of `token` used if it is valid, unused, unrevoked and unexpired, in one
/// conditional UPDATE: of two concurrent redeemers, one changes the row and the other sees why
/// it cannot.
pub async fn redeem(
    conn: &impl ConnectionTrait,
    token: &str,
    now: i64,
) -> Result<Redeemed, StoreError> {
    let hash = hash_token(token);
    let changed = Entity::update_many()
        .col_expr(Column::UsedAt, Expr::value(now))
        .filter(Column::TokenHash.eq(hash.as_str()))
        .filter(Column::UsedAt.is_null())
        .filter(Column::RevokedAt.is_null())
        .filter(Column::ExpiresAt.gt(now))
        .exec(conn)
        .await?
        .rows_affected;
    let row = Entity::find()
        .filter(Column::TokenHash.eq(hash.as_str()))
        .one(conn)
        .await?;
    Ok(match row {
        None => Redeemed::Unknown,
        Some(row) if changed == 1 => Redeemed::Opened(row),
        Some(row) if row.revoked_at.is_some() => Redeemed::Revoked,
        Some(row) if row.used_at.is_some() => Redeemed::AlreadyUsed,
        Some(_) => Redeemed::Expired,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::testing::TestDb;

    fn link(workspace: &str, expires_at: i64) -> NewPortalLink {
        NewPortalLink {
            workspace: workspace.into(),
            role: "viewer".into(),
            expires_at,
            created_by: "local".into(),
        }
    }

    #[test]
    fn tokens_are_32_random_bytes_in_base64url() {
        let (a, b) = (new_token(), new_token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(URL_SAFE_NO_PAD.decode(&a).unwrap().len(), 32);
        assert!(
            a.chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        );
    }

    #[tokio::test]
    async fn a_link_opens_once_and_says_why_it_does_not_again() {
        for db in TestDb::all().await {
            let conn = db.store.writer();
            let (row, token) = create(conn, link("acme", 2_000), 1_000).await.unwrap();
            assert_ne!(row.token_hash, token);
            match redeem(conn, &token, 1_500).await.unwrap() {
                Redeemed::Opened(opened) => assert_eq!(opened.used_at, Some(1_500), "{}", db.url),
                other => panic!("{other:?} on {}", db.url),
            }
            assert_eq!(
                redeem(conn, &token, 1_600).await.unwrap(),
                Redeemed::AlreadyUsed
            );
            assert_eq!(
                redeem(conn, "nope", 1_600).await.unwrap(),
                Redeemed::Unknown
            );

            let (_, late) = create(conn, link("acme", 2_000), 1_000).await.unwrap();
            assert_eq!(redeem(conn, &late, 2_000).await.unwrap(), Redeemed::Expired);

            let (revoked, token) = create(conn, link("acme", 9_000), 1_000).await.unwrap();
            assert!(!revoke(conn, "other", &revoked.id, 1_100).await.unwrap());
            assert!(revoke(conn, "acme", &revoked.id, 1_100).await.unwrap());
            assert!(revoke(conn, "acme", &revoked.id, 1_200).await.unwrap());
            assert_eq!(
                get(conn, &revoked.id).await.unwrap().unwrap().revoked_at,
                Some(1_100)
            );
            assert_eq!(
                redeem(conn, &token, 1_300).await.unwrap(),
                Redeemed::Revoked
            );
            assert_eq!(list(conn, "acme").await.unwrap().len(), 3);
            assert!(list(conn, "other").await.unwrap().is_empty());
            db.cleanup().await;
        }
    }

    #[tokio::test]
    async fn of_two_racing_redeemers_one_opens_the_link() {
        for db in TestDb::all().await {
            let (_, token) = create(db.store.writer(), link("acme", 9_000), 1_000)
                .await
                .unwrap();
            let redeem_once = || {
                let (store, token) = (db.store.clone(), token.clone());
                tokio::spawn(async move { redeem(store.writer(), &token, 2_000).await.unwrap() })
            };
            let (a, b) = (redeem_once(), redeem_once());
            let results = [a.await.unwrap(), b.await.unwrap()];
            let opened = results
                .iter()
                .filter(|r| matches!(r, Redeemed::Opened(_)))
                .count();
            assert_eq!(opened, 1, "{results:?} on {}", db.url);
            assert!(results.contains(&Redeemed::AlreadyUsed), "{}", db.url);
            db.cleanup().await;
        }
    }
}
