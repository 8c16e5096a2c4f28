//! Assessment tool integration: machine clients, seen request nonces, assessments, skill levels
//! and learning paths.
//!
//! The unique indexes carry the correctness rules: one nonce per client (replays fail at the
//! database, not by luck), one (client, external_id) per completed assessment (idempotent
//! deliveries), one launch token hash, one skill level per (user, skill), one path per user.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum IntegrationClients {
    Table,
    Id,
    Name,
    KeyHash,
    PreviousKeyHash,
    PreviousValidUntil,
    CreatedBy,
    CreatedAt,
    RotatedAt,
    RevokedAt,
}

#[derive(DeriveIden)]
enum IntegrationNonces {
    Table,
    ClientId,
    Nonce,
    SeenAt,
}

#[derive(DeriveIden)]
enum Assessments {
    Table,
    Id,
    UserId,
    Status,
    LaunchTokenHash,
    ExpiresAt,
    CreatedAt,
    CompletedAt,
    ReceivedAt,
    ClientId,
    ExternalId,
    PayloadHash,
    OverallScore,
    Skills,
    Details,
    RawPayload,
}

#[derive(DeriveIden)]
enum SkillLevels {
    Table,
    UserId,
    Skill,
    Score,
    AssessmentId,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum LearningPaths {
    Table,
    UserId,
    GeneratedAt,
    BasedOnAssessmentId,
    Steps,
}

fn user_fk(table: impl IntoIden, col: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(table, col).to(Users::Table, Users::Id).on_delete(ForeignKeyAction::Cascade).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(IntegrationClients::Table)
                .col(pk_uuid(IntegrationClients::Id))
                .col(string_len(IntegrationClients::Name, 100))
                // Hex SHA-256 of the secret (the HMAC key); the secret itself is never stored.
                .col(string_len(IntegrationClients::KeyHash, 64))
                .col(string_len_null(IntegrationClients::PreviousKeyHash, 64))
                .col(timestamp_with_time_zone_null(IntegrationClients::PreviousValidUntil))
                // No foreign key: a client outlives the admin account that created it.
                .col(uuid_null(IntegrationClients::CreatedBy))
                .col(timestamp_with_time_zone(IntegrationClients::CreatedAt))
                .col(timestamp_with_time_zone_null(IntegrationClients::RotatedAt))
                .col(timestamp_with_time_zone_null(IntegrationClients::RevokedAt))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(IntegrationNonces::Table)
                .col(uuid(IntegrationNonces::ClientId))
                .col(string_len(IntegrationNonces::Nonce, 64))
                .col(timestamp_with_time_zone(IntegrationNonces::SeenAt))
                .primary_key(Index::create().col(IntegrationNonces::ClientId).col(IntegrationNonces::Nonce))
                .foreign_key(
                    ForeignKey::create()
                        .from(IntegrationNonces::Table, IntegrationNonces::ClientId)
                        .to(IntegrationClients::Table, IntegrationClients::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Assessments::Table)
                .col(pk_uuid(Assessments::Id))
                .col(uuid(Assessments::UserId))
                .col(string_len(Assessments::Status, 16))
                .col(string_len_uniq(Assessments::LaunchTokenHash, 64))
                .col(timestamp_with_time_zone(Assessments::ExpiresAt))
                .col(timestamp_with_time_zone(Assessments::CreatedAt))
                .col(timestamp_with_time_zone_null(Assessments::CompletedAt))
                .col(timestamp_with_time_zone_null(Assessments::ReceivedAt))
                .col(uuid_null(Assessments::ClientId))
                .col(string_len_null(Assessments::ExternalId, 128))
                .col(string_len_null(Assessments::PayloadHash, 64))
                .col(double_null(Assessments::OverallScore))
                .col(json_null(Assessments::Skills))
                .col(json_null(Assessments::Details))
                // The request body exactly as the tool sent it, for disputes and re-processing.
                .col(text_null(Assessments::RawPayload))
                .foreign_key(&mut user_fk(Assessments::Table, Assessments::UserId))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_assessments_user")
                .table(Assessments::Table)
                .col(Assessments::UserId)
                .col(Assessments::Id)
                .to_owned(),
        )
        .await?;
        // NULLs are distinct in both databases, so pending rows never collide.
        m.create_index(
            Index::create()
                .name("uq_assessments_client_external")
                .table(Assessments::Table)
                .col(Assessments::ClientId)
                .col(Assessments::ExternalId)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(SkillLevels::Table)
                .col(uuid(SkillLevels::UserId))
                .col(string_len(SkillLevels::Skill, 64))
                .col(double(SkillLevels::Score))
                .col(uuid(SkillLevels::AssessmentId))
                .col(timestamp_with_time_zone(SkillLevels::UpdatedAt))
                .primary_key(Index::create().col(SkillLevels::UserId).col(SkillLevels::Skill))
                .foreign_key(&mut user_fk(SkillLevels::Table, SkillLevels::UserId))
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(LearningPaths::Table)
                .col(pk_uuid(LearningPaths::UserId))
                .col(timestamp_with_time_zone(LearningPaths::GeneratedAt))
                .col(uuid_null(LearningPaths::BasedOnAssessmentId))
                .col(json(LearningPaths::Steps))
                .foreign_key(&mut user_fk(LearningPaths::Table, LearningPaths::UserId))
                .to_owned(),
        )
        .await
    }
}
