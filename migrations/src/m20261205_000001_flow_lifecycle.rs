//! A flow's life as operators see it: when and why it was paused (`paused_at`, `pause_reason`,
//! `pause_detail` — `manual`, or `auto_paused` with the numbers that tripped the breaker) and
//! when it was deleted (`deleted_at`: deleting keeps the row, so the flow stays listed with
//! `?include_deleted=true` and its runs keep a name). Plus the index the flow list's per-flow
//! run figures (last run, runs and failures of the last 24 h) read in one query.
//!
//! Each column is added in its own statement (SQLite alters one column at a time) and only when
//! missing, so a run that stopped half-way can complete.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000001_flow_lifecycle"
    }
}

#[derive(DeriveIden, Clone, Copy)]
enum Flows {
    Table,
    PausedAt,
    PauseReason,
    PauseDetail,
    DeletedAt,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    FlowId,
    CreatedAt,
}

const INDEX: &str = "idx_runs_flow_created_at";

fn column(column: Flows) -> ColumnDef {
    match column {
        Flows::PausedAt | Flows::DeletedAt => big_integer_null(column),
        _ => text_null(column),
    }
}

const COLUMNS: [(Flows, &str); 4] = [
    (Flows::PausedAt, "paused_at"),
    (Flows::PauseReason, "pause_reason"),
    (Flows::PauseDetail, "pause_detail"),
    (Flows::DeletedAt, "deleted_at"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for (iden, name) in COLUMNS {
            if !manager.has_column("flows", name).await? {
                manager
                    .alter_table(
                        Table::alter()
                            .table(Flows::Table)
                            .add_column(column(iden))
                            .to_owned(),
                    )
                    .await?;
            }
        }
        manager
            .create_index(
                Index::create()
                    .name(INDEX)
                    .table(Runs::Table)
                    .col(Runs::FlowId)
                    .col(Runs::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Runs::Table).to_owned())
            .await?;
        for (iden, _) in COLUMNS {
            manager
                .alter_table(
                    Table::alter()
                        .table(Flows::Table)
                        .drop_column(iden)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
