//! Entity of `step_runs`: the state of each step of a run. A step recorded as `succeeded` is
//! never executed again, which is what makes resuming after a crash safe.

use sea_orm::entity::prelude::*;

use crate::core::status::StepStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "step_runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub run_id: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub step_index: i32,
    pub step_id: String,
    /// `map`, `http`, `notify` or `delay`.
    pub kind: String,
    /// `pending`, `running`, `succeeded`, `failed` or `skipped`.
    pub status: StepStatus,
    /// JSON text.
    pub output: Option<String>,
    pub error: Option<String>,
    /// Attempts made so far (the highest `attempts.n`), counted by usage. Defaults to 0.
    pub attempts: i32,
    /// Attempts made before the run was last retried; the retry budget counts from here.
    pub retry_base: i32,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
