//! Entity of `events`: entity events received through the API, with the runs they started. The
//! primary key is the sender's `event_id` (or a generated UUIDv7), which makes a repeated event
//! a conflict instead of a second set of runs.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub entity: String,
    /// `create`, `update` or `delete`.
    pub action: String,
    pub entity_id: String,
    /// JSON text.
    pub data: String,
    /// JSON text: the entity before an update.
    pub previous: Option<String>,
    /// JSON array of run ids, to answer a repeated event the same way.
    pub run_ids: String,
    pub created_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
