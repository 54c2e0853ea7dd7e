//! Retention: finished runs older than the retention are pruned, and usage must survive that.
//! `usage_daily` holds, per flow and UTC day, the usage of the runs pruned so far (added in the
//! same transaction that deletes them), so usage is the pruned runs' rollup plus the live
//! runs' count, exact either way. The index on `events.created_at` lets old events be pruned in
//! batches without a scan.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_100003_retention"
    }
}

#[derive(DeriveIden)]
enum UsageDaily {
    Table,
    FlowId,
    Day,
    RunsStarted,
    RunsSucceeded,
    RunsFailed,
    HttpAttempts,
    RateLimitedWaits,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    CreatedAt,
}

const EVENTS_INDEX: &str = "idx_events_created_at";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(UsageDaily::Table)
                    .if_not_exists()
                    .col(text(UsageDaily::FlowId))
                    .col(big_integer(UsageDaily::Day))
                    .col(big_integer(UsageDaily::RunsStarted))
                    .col(big_integer(UsageDaily::RunsSucceeded))
                    .col(big_integer(UsageDaily::RunsFailed))
                    .col(big_integer(UsageDaily::HttpAttempts))
                    .col(big_integer(UsageDaily::RateLimitedWaits))
                    .primary_key(Index::create().col(UsageDaily::FlowId).col(UsageDaily::Day))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name(EVENTS_INDEX)
                    .table(Events::Table)
                    .col(Events::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name(EVENTS_INDEX)
                    .table(Events::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_table(
                Table::drop()
                    .table(UsageDaily::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
