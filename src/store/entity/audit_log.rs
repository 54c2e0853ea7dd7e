//! Entity of `audit_log`: one change, who made it, when, in which workspace (`store/audit.rs`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "audit_log")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub at: i64,
    pub workspace: String,
    /// `key:<id>`, `portal:<id>` or `local`.
    pub actor: String,
    pub action: String,
    pub target: String,
    /// A small JSON object; never a secret value.
    pub detail: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
