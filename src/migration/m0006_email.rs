//! Email: the durable outbox, single-use account tokens (verify, reset), notification
//! preferences and the suppression list fed by bounces and complaints.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum EmailOutbox {
    Table,
    Id,
    ToAddress,
    ToName,
    UserId,
    Template,
    Subject,
    Payload,
    Status,
    Attempts,
    NextAttemptAt,
    LastError,
    LockedUntil,
    LeaseId,
    DedupKey,
    CreatedAt,
    SentAt,
}

#[derive(DeriveIden)]
enum EmailTokens {
    Table,
    TokenHash,
    UserId,
    Purpose,
    ExpiresAt,
    UsedAt,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotificationPreferences {
    Table,
    UserId,
    Achievements,
    ProgressDigest,
    AssessmentResults,
    NewSignIn,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum EmailSuppressions {
    Table,
    Address,
    Reason,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(EmailOutbox::Table)
                .col(pk_uuid(EmailOutbox::Id))
                .col(string_len(EmailOutbox::ToAddress, 254))
                .col(string_len_null(EmailOutbox::ToName, 200))
                // No foreign key: mail to a deleted user may still be in flight, and some mail
                // (a reset for an address) is not tied to a user row at all.
                .col(uuid_null(EmailOutbox::UserId))
                .col(string_len(EmailOutbox::Template, 64))
                .col(string_len(EmailOutbox::Subject, 300))
                .col(json(EmailOutbox::Payload))
                .col(string_len(EmailOutbox::Status, 16))
                .col(integer(EmailOutbox::Attempts).default(0))
                .col(timestamp_with_time_zone(EmailOutbox::NextAttemptAt))
                .col(text_null(EmailOutbox::LastError))
                .col(timestamp_with_time_zone_null(EmailOutbox::LockedUntil))
                .col(uuid_null(EmailOutbox::LeaseId))
                .col(string_len_null(EmailOutbox::DedupKey, 200))
                .col(timestamp_with_time_zone(EmailOutbox::CreatedAt))
                .col(timestamp_with_time_zone_null(EmailOutbox::SentAt))
                .to_owned(),
        )
        .await?;
        // The claim query: due rows by status and time.
        m.create_index(
            Index::create()
                .name("idx_email_outbox_due")
                .table(EmailOutbox::Table)
                .col(EmailOutbox::Status)
                .col(EmailOutbox::NextAttemptAt)
                .to_owned(),
        )
        .await?;
        // A unique key lets a caller enqueue "at most once" (e.g. one mail per achievement);
        // NULLs do not collide on either backend.
        m.create_index(
            Index::create()
                .name("idx_email_outbox_dedup")
                .table(EmailOutbox::Table)
                .col(EmailOutbox::DedupKey)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_email_outbox_to")
                .table(EmailOutbox::Table)
                .col(EmailOutbox::ToAddress)
                .col(EmailOutbox::Status)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(EmailTokens::Table)
                .col(string_len(EmailTokens::TokenHash, 64).primary_key())
                .col(uuid(EmailTokens::UserId))
                .col(string_len(EmailTokens::Purpose, 16))
                .col(timestamp_with_time_zone(EmailTokens::ExpiresAt))
                .col(timestamp_with_time_zone_null(EmailTokens::UsedAt))
                .col(timestamp_with_time_zone(EmailTokens::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(EmailTokens::Table, EmailTokens::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_email_tokens_user")
                .table(EmailTokens::Table)
                .col(EmailTokens::UserId)
                .col(EmailTokens::Purpose)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(NotificationPreferences::Table)
                .col(uuid(NotificationPreferences::UserId).primary_key())
                .col(boolean(NotificationPreferences::Achievements))
                .col(boolean(NotificationPreferences::ProgressDigest))
                .col(boolean(NotificationPreferences::AssessmentResults))
                .col(boolean(NotificationPreferences::NewSignIn))
                .col(timestamp_with_time_zone(NotificationPreferences::UpdatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(NotificationPreferences::Table, NotificationPreferences::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(EmailSuppressions::Table)
                .col(string_len(EmailSuppressions::Address, 254).primary_key())
                .col(string_len(EmailSuppressions::Reason, 32))
                .col(timestamp_with_time_zone(EmailSuppressions::CreatedAt))
                .to_owned(),
        )
        .await
    }
}
