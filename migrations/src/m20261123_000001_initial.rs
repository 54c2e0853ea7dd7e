//! The initial schema: flows and their revisions, events, runs with their steps and attempts,
//! the inbox, API keys, the once-only keys of schedules and webhooks, and the node registry.
//!
//! Portable on purpose: times are BIGINT unix milliseconds (UTC), JSON is TEXT and ids are TEXT,
//! so SQLite and PostgreSQL store and compare them the same way. No foreign keys: runs outlive
//! deleted flows, and the runner writes rows in an order that keys would only get in the way of.
//! Tables and indexes are created with IF NOT EXISTS: `Store::migrate` runs this in one
//! transaction, but a run through another path that stopped half-way can then still complete.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    // Spelled out rather than derived from the file name, so that moving the file cannot change
    // the version recorded in `seaql_migrations`.
    fn name(&self) -> &str {
        "m20261123_000001_initial"
    }
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in tables() {
            manager.create_table(table).await?;
        }
        for index in indexes() {
            manager.create_index(index).await?;
        }
        Ok(())
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // Dropping a table drops its indexes too, on both backends.
        for table in [
            Flows::Table.into_iden(),
            FlowRevisions::Table.into_iden(),
            Events::Table.into_iden(),
            Runs::Table.into_iden(),
            StepRuns::Table.into_iden(),
            Attempts::Table.into_iden(),
            Notifications::Table.into_iden(),
            ApiKeys::Table.into_iden(),
            ScheduleFires::Table.into_iden(),
            WebhookRequests::Table.into_iden(),
            Nodes::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).if_exists().to_owned())
                .await?;
        }
        Ok(())
    }
}

fn tables() -> Vec<TableCreateStatement> {
    vec![
        flows(),
        flow_revisions(),
        events(),
        runs(),
        step_runs(),
        attempts(),
        notifications(),
        api_keys(),
        schedule_fires(),
        webhook_requests(),
        nodes(),
    ]
}

fn flows() -> TableCreateStatement {
    Table::create()
        .table(Flows::Table)
        .if_not_exists()
        .col(text(Flows::Id).primary_key())
        .col(text(Flows::Name))
        .col(text(Flows::Source))
        .col(text_null(Flows::Path))
        .col(big_integer(Flows::Revision))
        .col(boolean(Flows::Enabled))
        .col(boolean(Flows::Paused).default(false))
        .col(text_null(Flows::LoadError))
        .col(big_integer(Flows::CreatedAt))
        .col(big_integer(Flows::UpdatedAt))
        .to_owned()
}

fn flow_revisions() -> TableCreateStatement {
    Table::create()
        .table(FlowRevisions::Table)
        .if_not_exists()
        .col(text(FlowRevisions::FlowId))
        .col(big_integer(FlowRevisions::Revision))
        .col(text(FlowRevisions::Sha256))
        .col(text(FlowRevisions::Source))
        .col(text(FlowRevisions::Definition))
        .col(big_integer(FlowRevisions::CreatedAt))
        .primary_key(
            Index::create()
                .col(FlowRevisions::FlowId)
                .col(FlowRevisions::Revision),
        )
        .to_owned()
}

fn events() -> TableCreateStatement {
    Table::create()
        .table(Events::Table)
        .if_not_exists()
        .col(text(Events::Id).primary_key())
        .col(text(Events::Entity))
        .col(text(Events::Action))
        .col(text(Events::EntityId))
        .col(text(Events::Data))
        .col(text_null(Events::Previous))
        .col(text(Events::RunIds))
        .col(big_integer(Events::CreatedAt))
        .to_owned()
}

fn runs() -> TableCreateStatement {
    Table::create()
        .table(Runs::Table)
        .if_not_exists()
        .col(text(Runs::Id).primary_key())
        .col(text(Runs::FlowId))
        .col(big_integer(Runs::Revision))
        .col(text(Runs::Status))
        .col(text(Runs::Trigger))
        .col(text_null(Runs::Entity))
        .col(text_null(Runs::EntityId))
        .col(integer(Runs::NextStep).default(0))
        .col(integer(Runs::Attempt).default(1))
        .col(big_integer_null(Runs::DueAt))
        .col(big_integer_null(Runs::WakeAt))
        .col(text_null(Runs::LeaseOwner))
        .col(big_integer(Runs::LeaseEpoch).default(0))
        .col(big_integer_null(Runs::LeaseExpiresAt))
        .col(boolean(Runs::CancelRequested).default(false))
        .col(big_integer_null(Runs::DeadlineAt))
        .col(integer(Runs::RateLimitedWaits).default(0))
        .col(text_null(Runs::Error))
        .col(big_integer(Runs::CreatedAt))
        .col(big_integer_null(Runs::StartedAt))
        .col(big_integer_null(Runs::FinishedAt))
        .to_owned()
}

fn step_runs() -> TableCreateStatement {
    Table::create()
        .table(StepRuns::Table)
        .if_not_exists()
        .col(text(StepRuns::RunId))
        .col(integer(StepRuns::StepIndex))
        .col(text(StepRuns::StepId))
        .col(text(StepRuns::Kind))
        .col(text(StepRuns::Status))
        .col(text_null(StepRuns::Output))
        .col(text_null(StepRuns::Error))
        .col(integer(StepRuns::Attempts).default(0))
        .col(integer(StepRuns::RetryBase).default(0))
        .col(big_integer_null(StepRuns::StartedAt))
        .col(big_integer_null(StepRuns::FinishedAt))
        .primary_key(
            Index::create()
                .col(StepRuns::RunId)
                .col(StepRuns::StepIndex),
        )
        .to_owned()
}

fn attempts() -> TableCreateStatement {
    Table::create()
        .table(Attempts::Table)
        .if_not_exists()
        .col(text(Attempts::RunId))
        .col(integer(Attempts::StepIndex))
        .col(integer(Attempts::N))
        .col(text(Attempts::Node))
        .col(big_integer(Attempts::StartedAt))
        .col(big_integer(Attempts::FinishedAt))
        .col(big_integer(Attempts::DurationMs))
        .col(text_null(Attempts::Request))
        .col(text_null(Attempts::Response))
        .col(text_null(Attempts::Error))
        .primary_key(
            Index::create()
                .col(Attempts::RunId)
                .col(Attempts::StepIndex)
                .col(Attempts::N),
        )
        .to_owned()
}

fn notifications() -> TableCreateStatement {
    Table::create()
        .table(Notifications::Table)
        .if_not_exists()
        .col(text(Notifications::Id).primary_key())
        .col(text_null(Notifications::FlowId))
        .col(text_null(Notifications::RunId))
        .col(text_null(Notifications::StepId))
        .col(text(Notifications::Title))
        .col(text(Notifications::Text))
        .col(big_integer(Notifications::CreatedAt))
        .col(big_integer_null(Notifications::ReadAt))
        .to_owned()
}

fn api_keys() -> TableCreateStatement {
    Table::create()
        .table(ApiKeys::Table)
        .if_not_exists()
        .col(text(ApiKeys::Id).primary_key())
        .col(text(ApiKeys::Name))
        .col(text(ApiKeys::Prefix))
        .col(text(ApiKeys::Hash))
        .col(big_integer(ApiKeys::CreatedAt))
        .col(big_integer_null(ApiKeys::LastUsedAt))
        .col(big_integer_null(ApiKeys::RevokedAt))
        .to_owned()
}

/// One row per (flow, fire time): the primary key is what makes a schedule fire once even with
/// several nodes on one database.
fn schedule_fires() -> TableCreateStatement {
    Table::create()
        .table(ScheduleFires::Table)
        .if_not_exists()
        .col(text(ScheduleFires::FlowId))
        .col(big_integer(ScheduleFires::FireAt))
        .col(text(ScheduleFires::RunId))
        .col(big_integer(ScheduleFires::CreatedAt))
        .primary_key(
            Index::create()
                .col(ScheduleFires::FlowId)
                .col(ScheduleFires::FireAt),
        )
        .to_owned()
}

/// One row per (path, webhook-id): a sender's retry finds the first run instead of starting one.
fn webhook_requests() -> TableCreateStatement {
    Table::create()
        .table(WebhookRequests::Table)
        .if_not_exists()
        .col(text(WebhookRequests::Path))
        .col(text(WebhookRequests::WebhookId))
        .col(text(WebhookRequests::RunId))
        .col(big_integer(WebhookRequests::CreatedAt))
        .primary_key(
            Index::create()
                .col(WebhookRequests::Path)
                .col(WebhookRequests::WebhookId),
        )
        .to_owned()
}

fn nodes() -> TableCreateStatement {
    Table::create()
        .table(Nodes::Table)
        .if_not_exists()
        .col(text(Nodes::Id).primary_key())
        .col(text(Nodes::Hostname))
        .col(text(Nodes::Version))
        .col(big_integer(Nodes::StartedAt))
        .col(big_integer(Nodes::HeartbeatAt))
        .to_owned()
}

fn indexes() -> Vec<IndexCreateStatement> {
    vec![
        index(
            "idx_events_entity",
            Events::Table,
            [Events::Entity, Events::EntityId],
        ),
        // Partial: only runs that still need a worker are in it, so the claim query scans a
        // small index however much history piles up. A claim's `due_at <= ?` implies
        // `due_at IS NOT NULL`, which lets both SQLite and PostgreSQL use it.
        index("idx_runs_due_at", Runs::Table, [Runs::DueAt])
            .and_where(Expr::col(Runs::DueAt).is_not_null())
            .to_owned(),
        index("idx_runs_flow_id", Runs::Table, [Runs::FlowId, Runs::Id]),
        index("idx_runs_status", Runs::Table, [Runs::Status, Runs::Id]),
        index(
            "idx_runs_entity",
            Runs::Table,
            [Runs::Entity, Runs::EntityId],
        ),
        index("idx_runs_created_at", Runs::Table, [Runs::CreatedAt]),
        index(
            "idx_notifications_read_at",
            Notifications::Table,
            [Notifications::ReadAt, Notifications::Id],
        ),
        index("uq_api_keys_hash", ApiKeys::Table, [ApiKeys::Hash])
            .unique()
            .to_owned(),
    ]
}

fn index<T, C>(name: &str, table: T, columns: impl IntoIterator<Item = C>) -> IndexCreateStatement
where
    T: IntoIden,
    C: IntoIden,
{
    let mut index = Index::create();
    index.name(name).table(table).if_not_exists();
    for column in columns {
        index.col(column);
    }
    index
}

#[derive(DeriveIden)]
enum Flows {
    Table,
    Id,
    Name,
    Source,
    Path,
    Revision,
    Enabled,
    Paused,
    LoadError,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum FlowRevisions {
    Table,
    FlowId,
    Revision,
    Sha256,
    Source,
    Definition,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    Id,
    Entity,
    Action,
    EntityId,
    Data,
    Previous,
    RunIds,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    FlowId,
    Revision,
    Status,
    Trigger,
    Entity,
    EntityId,
    NextStep,
    Attempt,
    DueAt,
    WakeAt,
    LeaseOwner,
    LeaseEpoch,
    LeaseExpiresAt,
    CancelRequested,
    DeadlineAt,
    RateLimitedWaits,
    Error,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum StepRuns {
    Table,
    RunId,
    StepIndex,
    StepId,
    Kind,
    Status,
    Output,
    Error,
    Attempts,
    /// Attempts made before the run was last retried: the step's budget counts from here.
    RetryBase,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum Attempts {
    Table,
    RunId,
    StepIndex,
    N,
    Node,
    StartedAt,
    FinishedAt,
    DurationMs,
    Request,
    Response,
    Error,
}

#[derive(DeriveIden)]
enum Notifications {
    Table,
    Id,
    FlowId,
    RunId,
    StepId,
    Title,
    Text,
    CreatedAt,
    ReadAt,
}

#[derive(DeriveIden)]
enum ApiKeys {
    Table,
    Id,
    Name,
    Prefix,
    Hash,
    CreatedAt,
    LastUsedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum ScheduleFires {
    Table,
    FlowId,
    FireAt,
    RunId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum WebhookRequests {
    Table,
    Path,
    WebhookId,
    RunId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Nodes {
    Table,
    Id,
    Hostname,
    Version,
    StartedAt,
    HeartbeatAt,
}
