//! Entity of `api_keys`: keys created with `flowd keys create`, stored hashed (unique), with a
//! short prefix shown in listings so a person can tell keys apart, and the workspace and role
//! it grants.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "api_keys")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    pub prefix: String,
    #[sea_orm(unique)]
    pub hash: String,
    pub created_at: i64,
    pub last_used_at: Option<i64>,
    pub revoked_at: Option<i64>,
    /// The workspace the key acts in (SPEC §11); `default` for keys made before workspaces.
    pub workspace: String,
    /// `viewer`, `trigger`, `operator`, `editor` or `admin`; `admin` for keys made before.
    pub role: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
