//! Workspaces (SPEC §11): the `workspaces` table with `default` in it, and the workspace of the
//! rows that need one to be listed by workspace. Everything stored before belongs to `default`
//! (the columns' default), and every key stored before becomes an `admin` key of `default`.
//! Flows need no column: a flow is stored under its flow key (`ws/id`, the bare id in
//! `default`), and so are the runs' `flow_id`, webhook keys and usage rows. Runs get the column
//! anyway, written by the same INSERT, with one index `(workspace, id)` for a workspace's run log
//! (bulk operations keep their workspace in their filter; no existing runs index could lead with the workspace without slowing the claim, the limits
//! or the flow pages that use them). Events are stored under their workspace's event key, so
//! `event_id` is unique per workspace without changing the primary key.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_100001_workspaces"
    }
}

#[derive(DeriveIden)]
enum Workspaces {
    Table,
    Name,
    CreatedAt,
}

const RUNS_INDEX: &str = "idx_runs_workspace";

/// `(table, column, default)` of every column this migration adds.
const COLUMNS: [(&str, &str, &str); 4] = [
    ("api_keys", "workspace", "default"),
    ("api_keys", "role", "admin"),
    ("runs", "workspace", "default"),
    ("notifications", "workspace", "default"),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Workspaces::Table)
                    .if_not_exists()
                    .col(text(Workspaces::Name).primary_key())
                    .col(big_integer(Workspaces::CreatedAt))
                    .to_owned(),
            )
            .await?;
        let db = manager.get_connection();
        db.execute_unprepared(
            "INSERT INTO workspaces (name, created_at) VALUES ('default', 0) ON CONFLICT (name) DO NOTHING",
        )
        .await?;
        for (table, column, default) in COLUMNS {
            if !manager.has_column(table, column).await? {
                db.execute_unprepared(&format!(
                    "ALTER TABLE {table} ADD COLUMN {column} TEXT NOT NULL DEFAULT '{default}'"
                ))
                .await?;
            }
        }
        db.execute_unprepared(&format!(
            "CREATE INDEX IF NOT EXISTS {RUNS_INDEX} ON runs (workspace, id)"
        ))
        .await?;
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        db.execute_unprepared(&format!("DROP INDEX IF EXISTS {RUNS_INDEX}"))
            .await?;
        for (table, column, _) in COLUMNS {
            db.execute_unprepared(&format!("ALTER TABLE {table} DROP COLUMN {column}"))
                .await?;
        }
        manager
            .drop_table(Table::drop().table(Workspaces::Table).to_owned())
            .await
    }
}
