//! Entity of `flow_revisions`: every revision of every flow, kept so that a run executes the
//! revision it was created with even after the flow changed.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "flow_revisions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub flow_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub revision: i64,
    /// Hex SHA-256 of `source`, to tell whether a reloaded file changed.
    pub sha256: String,
    /// The YAML as written.
    pub source: String,
    /// The parsed definition, as JSON text.
    pub definition: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
