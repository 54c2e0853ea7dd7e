//! Indexes for per-flow limits: the runner counts a flow's runs executing now (`concurrency`)
//! and started within the rate-limit window (`rate_limit`) on every claim of a limited flow.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261123_000002_flow_limit_indexes"
    }
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    FlowId,
    Status,
    StartedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_index(
                Index::create()
                    .name("idx_runs_flow_status")
                    .table(Runs::Table)
                    .col(Runs::FlowId)
                    .col(Runs::Status)
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_runs_flow_started_at")
                    .table(Runs::Table)
                    .col(Runs::FlowId)
                    .col(Runs::StartedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for name in ["idx_runs_flow_status", "idx_runs_flow_started_at"] {
            manager
                .drop_index(Index::drop().name(name).table(Runs::Table).to_owned())
                .await?;
        }
        Ok(())
    }
}
