//! Per-entity ordering (`settings.order_key`): each run stores the key its flow's template
//! rendered for it when it was created, and the claim of an ordered flow takes a run only when
//! no earlier run with the same key is unfinished. The index serves that check: the runs of one
//! flow and key, by id (UUIDv7, so in creation order). Runs without a key are left out of it.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_100001_order_key"
    }
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    OrderKey,
}

const INDEX: &str = "idx_runs_flow_order_key";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("runs", "order_key").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Runs::Table)
                        .add_column(text_null(Runs::OrderKey))
                        .to_owned(),
                )
                .await?;
        }
        // A partial index (both backends have them): only ordered runs pay for it.
        let sql = format!(
            "CREATE INDEX IF NOT EXISTS {INDEX} ON runs (flow_id, order_key, id) WHERE order_key IS NOT NULL"
        );
        manager.get_connection().execute_unprepared(&sql).await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(Index::drop().name(INDEX).table(Runs::Table).to_owned())
            .await?;
        manager
            .alter_table(
                Table::alter()
                    .table(Runs::Table)
                    .drop_column(Runs::OrderKey)
                    .to_owned(),
            )
            .await
    }
}
