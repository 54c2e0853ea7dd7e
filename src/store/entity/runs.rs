//! Entity of `runs`: one row per run, the persisted state of the runner's state machine.
//! `due_at` is the single column workers poll (with a partial index): creation time while
//! pending, the wake-up while waiting, the lease expiry while running, NULL once terminal.

use sea_orm::entity::prelude::*;

use crate::core::status::RunStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    /// UUIDv7 text, so ids sort by creation time.
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub flow_id: String,
    /// The flow revision this run executes.
    pub revision: i64,
    /// `pending`, `running`, `waiting`, `succeeded`, `failed` or `cancelled`.
    pub status: RunStatus,
    /// JSON text: the trigger kind and its data.
    pub trigger: String,
    pub entity: Option<String>,
    pub entity_id: Option<String>,
    /// Index of the next step to execute. Defaults to 0.
    pub next_step: i32,
    /// Attempt of the current step, from 1. Defaults to 1.
    pub attempt: i32,
    pub due_at: Option<i64>,
    pub wake_at: Option<i64>,
    pub lease_owner: Option<String>,
    /// Bumped on every claim, so a node that lost its lease cannot write any more. Defaults to 0.
    pub lease_epoch: i64,
    pub lease_expires_at: Option<i64>,
    /// Defaults to false.
    pub cancel_requested: bool,
    /// When the run times out.
    pub deadline_at: Option<i64>,
    /// Times the flow's `rate_limit` put this run off before it started, for usage reports.
    /// Defaults to 0.
    pub rate_limited_waits: i32,
    /// The flow's `settings.order_key` rendered for this run: runs with the same key execute
    /// one at a time, in creation order.
    pub order_key: Option<String>,
    pub error: Option<String>,
    pub created_at: i64,
    pub started_at: Option<i64>,
    pub finished_at: Option<i64>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
