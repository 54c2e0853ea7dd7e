//! Entity of `operations`: bulk retries and replays, their progress and the node working on
//! each (see `store/operations.rs`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "operations")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    /// `retry` or `replay`.
    pub kind: String,
    /// JSON text: the run filter.
    pub filter: String,
    /// `running`, `done` or `failed`.
    pub state: String,
    /// The last run id the operation matched when it was created (runs created later are not
    /// part of it).
    pub upper_id: Option<String>,
    /// The last run id processed.
    pub cursor: Option<String>,
    pub matched: i64,
    pub done: i64,
    pub skipped: i64,
    pub error: Option<String>,
    pub owner: Option<String>,
    pub lease_expires_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
