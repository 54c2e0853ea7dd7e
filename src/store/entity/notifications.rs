//! Entity of `notifications`: the inbox that `notify` steps with channel `inbox` write to.

use sea_orm::entity::prelude::*;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "notifications")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: String,
    pub flow_id: Option<String>,
    pub run_id: Option<String>,
    pub step_id: Option<String>,
    pub title: String,
    pub text: String,
    pub created_at: i64,
    /// NULL while unread.
    pub read_at: Option<i64>,
    /// The workspace whose inbox it is in (SPEC §11).
    pub workspace: String,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
