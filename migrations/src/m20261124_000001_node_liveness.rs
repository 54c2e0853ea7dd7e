//! Node liveness: how long each node's leases last (`lease_ms`), so anyone reading the registry
//! can tell a live node from a lost one (no heartbeat for longer than its lease), and when a node
//! stopped in an orderly way (`stopped_at`). Nodes run with different `--lease` settings, which
//! is why the lease is stored per node rather than assumed.
//!
//! Each column is added in its own statement (SQLite alters one column at a time) and only when
//! missing, so a run that stopped half-way can complete.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261124_000001_node_liveness"
    }
}

#[derive(DeriveIden)]
enum Nodes {
    Table,
    LeaseMs,
    StoppedAt,
}

/// flowd's default `--lease` (30s), for rows written before this migration.
const DEFAULT_LEASE_MS: i64 = 30_000;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        if !manager.has_column("nodes", "lease_ms").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Nodes::Table)
                        .add_column(big_integer(Nodes::LeaseMs).default(DEFAULT_LEASE_MS))
                        .to_owned(),
                )
                .await?;
        }
        if !manager.has_column("nodes", "stopped_at").await? {
            manager
                .alter_table(
                    Table::alter()
                        .table(Nodes::Table)
                        .add_column(big_integer_null(Nodes::StoppedAt))
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for column in [Nodes::LeaseMs, Nodes::StoppedAt] {
            manager
                .alter_table(
                    Table::alter()
                        .table(Nodes::Table)
                        .drop_column(column)
                        .to_owned(),
                )
                .await?;
        }
        Ok(())
    }
}
