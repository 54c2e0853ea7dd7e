//! Entity of `attempts`: one row per attempt of a step (an HTTP request and its answer, with
//! secrets already redacted), shown by `GET /api/v1/runs/{id}` and counted for usage.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "attempts")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub step_index: i32,
    /// Attempt number, from 1.
    #[sea_orm(primary_key, auto_increment = false)]
    pub n: i32,
    /// The node that made the attempt.
    pub node: String,
    pub started_at: i64,
    pub finished_at: i64,
    pub duration_ms: i64,
    /// JSON text: method, url, redacted headers, body.
    pub request: Option<String>,
    /// JSON text: status, headers, the first 64 KiB of the body.
    pub response: Option<String>,
    pub error: Option<String>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
