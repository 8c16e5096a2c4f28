//! Machine clients' signing keys are stored sealed (`kernel::sealed`), which is longer than the
//! 64 hex characters of a bare key. The values themselves are sealed at start, where the server
//! key is known; a migration has no business holding it.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum IntegrationClients {
    Table,
    KeyHash,
    PreviousKeyHash,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // SQLite does not enforce a VARCHAR length (and cannot alter a column's type).
        if m.get_database_backend() != sea_orm::DbBackend::Postgres {
            return Ok(());
        }
        m.alter_table(
            Table::alter()
                .table(IntegrationClients::Table)
                .modify_column(ColumnDef::new(IntegrationClients::KeyHash).string_len(255).not_null())
                .modify_column(ColumnDef::new(IntegrationClients::PreviousKeyHash).string_len(255).null())
                .to_owned(),
        )
        .await
    }

    async fn down(&self, _: &SchemaManager) -> Result<(), DbErr> {
        // Narrowing would cut sealed keys; the wider column is harmless to older code.
        Ok(())
    }
}
