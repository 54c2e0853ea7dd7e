//! Entity of `usage_daily`: per flow and UTC day (days since 1970-01-01), the usage of the runs
//! retention pruned (see `store/retention.rs`).

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "usage_daily")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub flow_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub day: i64,
    pub runs_started: i64,
    pub runs_succeeded: i64,
    pub runs_failed: i64,
    pub http_attempts: i64,
    pub rate_limited_waits: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
