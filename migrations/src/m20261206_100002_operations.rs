//! Bulk operations (`POST /api/v1/runs/retry` and `/replay`): one row per operation with its
//! filter, the last run id it matched when it was created (`upper_id`), its progress (`cursor`:
//! the last run id processed, moved in the same transaction as the runs it retried or
//! replayed, so a restart resumes there and no run is handled twice) and the node that works on
//! it under a lease.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_100002_operations"
    }
}

#[derive(DeriveIden)]
enum Operations {
    Table,
    Id,
    Kind,
    Filter,
    State,
    UpperId,
    Cursor,
    Matched,
    Done,
    Skipped,
    Error,
    Owner,
    LeaseExpiresAt,
    CreatedAt,
    UpdatedAt,
    FinishedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Operations::Table)
                    .if_not_exists()
                    .col(text(Operations::Id).primary_key())
                    .col(text(Operations::Kind))
                    .col(text(Operations::Filter))
                    .col(text(Operations::State))
                    .col(text_null(Operations::UpperId))
                    .col(text_null(Operations::Cursor))
                    .col(big_integer(Operations::Matched))
                    .col(big_integer(Operations::Done))
                    .col(big_integer(Operations::Skipped))
                    .col(text_null(Operations::Error))
                    .col(text_null(Operations::Owner))
                    .col(big_integer_null(Operations::LeaseExpiresAt))
                    .col(big_integer(Operations::CreatedAt))
                    .col(big_integer(Operations::UpdatedAt))
                    .col(big_integer_null(Operations::FinishedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_operations_state")
                    .table(Operations::Table)
                    .col(Operations::State)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(Operations::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
