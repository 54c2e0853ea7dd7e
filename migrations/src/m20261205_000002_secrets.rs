//! The secret store: one row per secret and workspace (`default` until workspaces exist), the
//! value sealed with the master key (`flowd::secrets::cipher`, never stored in the clear) and the
//! fingerprint of the key that sealed it, so a node with another key is refused at start.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261205_000002_secrets"
    }
}

#[derive(DeriveIden)]
enum Secrets {
    Table,
    Workspace,
    Name,
    Sealed,
    KeyFingerprint,
    CreatedAt,
    UpdatedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Secrets::Table)
                    .if_not_exists()
                    .col(text(Secrets::Workspace))
                    .col(text(Secrets::Name))
                    .col(text(Secrets::Sealed))
                    .col(text(Secrets::KeyFingerprint))
                    .col(big_integer(Secrets::CreatedAt))
                    .col(big_integer(Secrets::UpdatedAt))
                    .primary_key(Index::create().col(Secrets::Workspace).col(Secrets::Name))
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Secrets::Table).if_exists().to_owned())
            .await
    }
}
