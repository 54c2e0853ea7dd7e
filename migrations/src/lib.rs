//! Database migrations of flowd. Each migration is written with sea-query's schema builder so
//! that the same code creates the same tables on SQLite and PostgreSQL. The store applies them
//! (`Store::migrate`, run by `flowd migrate` and on `flowd serve` start); sea-orm-migration
//! records applied versions in `seaql_migrations`, which makes applying them again a no-op.
//!
//! Rules for new migrations: never edit one that has shipped, add a new file instead; keep
//! times as BIGINT unix milliseconds, JSON as TEXT and ids as TEXT, as the first one does.

pub use sea_orm_migration::prelude::*;

mod m20261123_000001_initial;
mod m20261123_000002_flow_limit_indexes;
mod m20261124_000001_node_liveness;
mod m20261205_000001_flow_lifecycle;
mod m20261205_000002_secrets;
mod m20261206_100001_order_key;
mod m20261206_100002_operations;
mod m20261206_100003_retention;
mod m20261206_300001_run_figures_index;
mod m20261206_500001_usage_rollup;
mod m20261207_100001_workspaces;
mod m20261207_200001_audit_log;
mod m20261207_300001_workspace_quotas;
mod m20261207_400001_portal_links;

/// The list of flowd's migrations, oldest first.
pub struct Migrator;

#[async_trait::async_trait]
impl MigratorTrait for Migrator {
    fn migrations() -> Vec<Box<dyn MigrationTrait>> {
        vec![
            Box::new(m20261123_000001_initial::Migration),
            Box::new(m20261123_000002_flow_limit_indexes::Migration),
            Box::new(m20261124_000001_node_liveness::Migration),
            Box::new(m20261205_000001_flow_lifecycle::Migration),
            Box::new(m20261205_000002_secrets::Migration),
            Box::new(m20261206_100001_order_key::Migration),
            Box::new(m20261206_100002_operations::Migration),
            Box::new(m20261206_100003_retention::Migration),
            Box::new(m20261206_300001_run_figures_index::Migration),
            Box::new(m20261206_500001_usage_rollup::Migration),
            Box::new(m20261207_100001_workspaces::Migration),
            Box::new(m20261207_200001_audit_log::Migration),
            Box::new(m20261207_300001_workspace_quotas::Migration),
            Box::new(m20261207_400001_portal_links::Migration),
        ]
    }
}
