//! Quotas per workspace (SPEC §11): the settings (`workspace_quotas`, no row means no quota),
//! the counters of the windows in use (`quota_windows`: runs started per UTC day, HTTP attempts
//! per minute), the runs a quota held per flow and day for usage (`quota_holds`, kept like
//! `usage_daily`, beyond retention), and which inbox notices went out (`quota_notices`, one per
//! workspace, quota kind and day, made unique by its key so several nodes send it once).

use sea_orm_migration::prelude::*;

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_300001_workspace_quotas"
    }
}

const TABLES: [&str; 4] = [
    "CREATE TABLE IF NOT EXISTS workspace_quotas (workspace TEXT NOT NULL PRIMARY KEY, \
     runs_per_day BIGINT NULL, http_attempts_per_minute BIGINT NULL, updated_at BIGINT NOT NULL)",
    "CREATE TABLE IF NOT EXISTS quota_windows (workspace TEXT NOT NULL, kind TEXT NOT NULL, \
     window_start BIGINT NOT NULL, used BIGINT NOT NULL, PRIMARY KEY (workspace, kind, window_start))",
    "CREATE TABLE IF NOT EXISTS quota_holds (flow_id TEXT NOT NULL, day BIGINT NOT NULL, \
     held BIGINT NOT NULL, PRIMARY KEY (flow_id, day))",
    "CREATE TABLE IF NOT EXISTS quota_notices (workspace TEXT NOT NULL, kind TEXT NOT NULL, \
     day BIGINT NOT NULL, PRIMARY KEY (workspace, kind, day))",
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        // Raw SQL, as the other late migrations: the same text creates the same tables on both.
        for sql in TABLES {
            db.execute_unprepared(sql).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        let db = manager.get_connection();
        for table in [
            "quota_notices",
            "quota_holds",
            "quota_windows",
            "workspace_quotas",
        ] {
            db.execute_unprepared(&format!("DROP TABLE IF EXISTS {table}"))
                .await?;
        }
        Ok(())
    }
}
