//! Usage as a rollup: finished runs are folded into `usage_daily` shortly after they end (by a
//! background pass), so `GET /api/v1/usage` reads the rollup plus only the runs not folded yet,
//! whatever the history's size. `runs.usage_folded` says whether a run's usage is in the
//! rollup already (a retried run is taken out again); the partial index holds only the runs
//! not folded, so finding them costs what is in flight, not the history.

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261206_500001_usage_rollup"
    }
}

const INDEX: &str = "idx_runs_usage_unfolded";

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // Raw SQL: sea-query's builder cannot express a partial index on both backends.
        db.execute_unprepared(
            "ALTER TABLE runs ADD COLUMN usage_folded BOOLEAN NOT NULL DEFAULT FALSE",
        )
        .await?;
        db.execute_unprepared(&format!(
            "CREATE INDEX IF NOT EXISTS {INDEX} ON runs (created_at) WHERE usage_folded = FALSE"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {INDEX}"))
            .await?;
        db.execute_unprepared("ALTER TABLE runs DROP COLUMN usage_folded")
            .await?;
        Ok(())
    }
}
