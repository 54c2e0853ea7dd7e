//! Portal links (`POST /api/v1/workspaces/{ws}/portal-links`): single-use links that open the
//! console scoped to one workspace and role. The token itself is never stored, only its SHA-256
//! (unique, so a redeemed token finds its row by index); `used_at`, `revoked_at` and `expires_at`
//! decide whether the link, and a console session opened by it, still works.

use sea_orm_migration::{prelude::*, schema::*};

pub struct Migration;

impl MigrationName for Migration {
    fn name(&self) -> &str {
        "m20261207_400001_portal_links"
    }
}

#[derive(DeriveIden)]
enum PortalLinks {
    Table,
    Id,
    Workspace,
    Role,
    TokenHash,
    CreatedAt,
    ExpiresAt,
    UsedAt,
    RevokedAt,
    CreatedBy,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(PortalLinks::Table)
                    .if_not_exists()
                    .col(text(PortalLinks::Id).primary_key())
                    .col(text(PortalLinks::Workspace))
                    .col(text(PortalLinks::Role))
                    .col(text(PortalLinks::TokenHash))
                    .col(big_integer(PortalLinks::CreatedAt))
                    .col(big_integer(PortalLinks::ExpiresAt))
                    .col(big_integer_null(PortalLinks::UsedAt))
                    .col(big_integer_null(PortalLinks::RevokedAt))
                    .col(text(PortalLinks::CreatedBy))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("uq_portal_links_token_hash")
                    .table(PortalLinks::Table)
                    .col(PortalLinks::TokenHash)
                    .unique()
                    .if_not_exists()
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_portal_links_workspace")
                    .table(PortalLinks::Table)
                    .col(PortalLinks::Workspace)
                    .col(PortalLinks::CreatedAt)
                    .if_not_exists()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(
                Table::drop()
                    .table(PortalLinks::Table)
                    .if_exists()
                    .to_owned(),
            )
            .await
    }
}
