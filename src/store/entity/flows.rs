//! Entity of `flows`: one row per flow, from a file or the API. The definition itself lives in
//! `flow_revisions`; `revision` points at the current one. `paused` is set through the API and
//! survives reloads, for file flows too.

use sea_orm::entity::prelude::*;

use crate::store::flows::FlowSource;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "flows")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub name: String,
    /// `file` or `api`.
    pub source: FlowSource,
    /// The file a file flow was loaded from.
    pub path: Option<String>,
    pub revision: i64,
    /// From the definition (`enabled:`).
    pub enabled: bool,
    /// Defaults to false.
    pub paused: bool,
    /// When the flow was paused; `None` while it runs.
    pub paused_at: Option<i64>,
    /// Why: `manual` (through the API) or `auto_paused` (the failure breaker).
    pub pause_reason: Option<String>,
    /// For `auto_paused`: the numbers that tripped the breaker, for a person.
    pub pause_detail: Option<String>,
    /// When the flow was deleted; a deleted flow keeps its row for its runs' history.
    pub deleted_at: Option<i64>,
    /// The last reload problem of a file flow; the previous revision keeps running meanwhile.
    pub load_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
