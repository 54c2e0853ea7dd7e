//! Entity of `nodes`: the `flowd serve` processes sharing the database, with their heartbeats.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "nodes")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub hostname: String,
    pub version: String,
    pub started_at: i64,
    pub heartbeat_at: i64,
    /// The node's `--lease`: without a heartbeat for this long, the node counts as lost.
    pub lease_ms: i64,
    /// Set when the node stopped in an orderly way.
    pub stopped_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
