//! Achievements (catalog rules as data, awards), and single-use real-time tickets.
//!
//! An achievement row *is* its rule: `kind` names the metric and `threshold` (JSON) the value to
//! reach, so an admin adds "five courses" or "score ≥ 80" as a row, without a rebuild. The
//! unique (user_id, achievement_id) index is what makes "awarded exactly once" true under
//! concurrent events on several instances: every award is an insert that does nothing on
//! conflict.

use chrono::Utc;
use sea_orm_migration::{prelude::*, schema::*};
use uuid::Uuid;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Achievements {
    Table,
    Id,
    Code,
    Title,
    Description,
    Icon,
    Kind,
    Threshold,
    CreatedAt,
}

#[derive(DeriveIden)]
enum UserAchievements {
    Table,
    Id,
    UserId,
    AchievementId,
    AwardedAt,
}

#[derive(DeriveIden)]
enum RealtimeTickets {
    Table,
    TokenHash,
    UserId,
    SessionId,
    ExpiresAt,
    CreatedAt,
}

/// The built-in catalog: (code, title, description, icon, kind, threshold).
const SEED: &[(&str, &str, &str, &str, &str, &str)] = &[
    ("first_lesson", "First steps", "Complete your first lesson.", "footprints", "lessons_completed", r#"{"count":1}"#),
    (
        "first_module",
        "Module master",
        "Complete every lesson of a module.",
        "layers",
        "modules_completed",
        r#"{"count":1}"#,
    ),
    (
        "first_course",
        "Graduate",
        "Complete your first course.",
        "graduation-cap",
        "courses_completed",
        r#"{"count":1}"#,
    ),
    ("streak_3", "On a roll", "Learn three days in a row.", "flame", "streak_days", r#"{"days":3}"#),
    ("streak_7", "Week warrior", "Learn seven days in a row.", "flame", "streak_days", r#"{"days":7}"#),
    ("streak_30", "Unstoppable", "Learn thirty days in a row.", "flame", "streak_days", r#"{"days":30}"#),
    (
        "assessment_score_90",
        "Top score",
        "Score 90 or more in an assessment.",
        "star",
        "assessment_score",
        r#"{"min_score":90}"#,
    ),
    (
        "first_project_approved",
        "Builder",
        "Have your first project approved.",
        "hammer",
        "projects_approved",
        r#"{"count":1}"#,
    ),
];

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Achievements::Table)
                .col(pk_uuid(Achievements::Id))
                .col(string_len_uniq(Achievements::Code, 64))
                .col(string_len(Achievements::Title, 200))
                .col(text(Achievements::Description))
                .col(string_len(Achievements::Icon, 64))
                .col(string_len(Achievements::Kind, 32))
                .col(json(Achievements::Threshold))
                .col(timestamp_with_time_zone(Achievements::CreatedAt))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("idx_achievements_kind").table(Achievements::Table).col(Achievements::Kind).to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(UserAchievements::Table)
                .col(pk_uuid(UserAchievements::Id))
                .col(uuid(UserAchievements::UserId))
                .col(uuid(UserAchievements::AchievementId))
                .col(timestamp_with_time_zone(UserAchievements::AwardedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(UserAchievements::Table, UserAchievements::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(UserAchievements::Table, UserAchievements::AchievementId)
                        .to(Achievements::Table, Achievements::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        // The once-per-student guarantee; also serves "my achievements" lookups.
        m.create_index(
            Index::create()
                .name("uq_user_achievements")
                .table(UserAchievements::Table)
                .col(UserAchievements::UserId)
                .col(UserAchievements::AchievementId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_table(
            Table::create()
                .table(RealtimeTickets::Table)
                .col(string_len(RealtimeTickets::TokenHash, 64).primary_key())
                .col(uuid(RealtimeTickets::UserId))
                .col(uuid(RealtimeTickets::SessionId))
                .col(timestamp_with_time_zone(RealtimeTickets::ExpiresAt))
                .col(timestamp_with_time_zone(RealtimeTickets::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(RealtimeTickets::Table, RealtimeTickets::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_realtime_tickets_expires")
                .table(RealtimeTickets::Table)
                .col(RealtimeTickets::ExpiresAt)
                .to_owned(),
        )
        .await?;

        let mut insert = Query::insert();
        insert.into_table(Achievements::Table).columns([
            Achievements::Id,
            Achievements::Code,
            Achievements::Title,
            Achievements::Description,
            Achievements::Icon,
            Achievements::Kind,
            Achievements::Threshold,
            Achievements::CreatedAt,
        ]);
        let now = Utc::now();
        for (code, title, description, icon, kind, threshold) in SEED {
            let threshold: serde_json::Value = serde_json::from_str(threshold).expect("seed threshold is JSON");
            insert.values_panic([
                Uuid::now_v7().into(),
                (*code).into(),
                (*title).into(),
                (*description).into(),
                (*icon).into(),
                (*kind).into(),
                threshold.into(),
                now.into(),
            ]);
        }
        m.exec_stmt(insert).await
    }
}
