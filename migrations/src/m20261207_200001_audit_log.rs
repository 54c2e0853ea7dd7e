//! The audit log (issue #19): who changed what, when, in which workspace. One row per change,
//! written in the same transaction as the change where it is one. Listed newest first, overall
//! or by workspace, and pruned by age under the retention setting: hence the two indexes on
//! `(at, id)` and `(workspace, at, id)`.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_200001_audit_log"
    }
}

#[derive(DeriveIden)]
enum AuditLog {
    Table,
    Id,
    At,
    Workspace,
    Actor,
    Action,
    Target,
    Detail,
}

const BY_TIME: &str = "idx_audit_log_at";
const BY_WORKSPACE: &str = "idx_audit_log_workspace_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(AuditLog::Table)
                    .if_not_exists()
                    .col(text(AuditLog::Id).primary_key())
                    .col(big_integer(AuditLog::At))
                    .col(text(AuditLog::Workspace))
                    .col(text(AuditLog::Actor))
                    .col(text(AuditLog::Action))
                    .col(text(AuditLog::Target))
                    .col(text(AuditLog::Detail))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(BY_TIME)
                    .table(AuditLog::Table)
                    .col(AuditLog::At)
                    .col(AuditLog::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(BY_WORKSPACE)
                    .table(AuditLog::Table)
                    .col(AuditLog::Workspace)
                    .col(AuditLog::At)
                    .col(AuditLog::Id)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(AuditLog::Table).if_exists().to_owned())
            .await
    }
}
