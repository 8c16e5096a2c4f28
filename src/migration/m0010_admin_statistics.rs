//! Indexes for the admin statistics on a large database, each named after the query it serves:
//! without them those queries scan `activity_hours` and `lesson_progress` whole.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum ActivityHours {
    Table,
    Hour,
    UserId,
}

#[derive(DeriveIden)]
enum LessonProgress {
    Table,
    CompletedAt,
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        // Active students in the last day, week and month (`/admin/stats`) and per day
        // (`/admin/stats/series`): a range of hours, read without the table.
        m.create_index(
            Index::create()
                .name("idx_activity_hours_hour")
                .table(ActivityHours::Table)
                .col(ActivityHours::Hour)
                .col(ActivityHours::UserId)
                .to_owned(),
        )
        .await?;
        // Lesson completions per day (`/admin/stats/series`): a range of completion times.
        m.create_index(
            Index::create()
                .name("idx_lesson_progress_completed")
                .table(LessonProgress::Table)
                .col(LessonProgress::CompletedAt)
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.drop_index(Index::drop().name("idx_lesson_progress_completed").table(LessonProgress::Table).to_owned())
            .await?;
        m.drop_index(Index::drop().name("idx_activity_hours_hour").table(ActivityHours::Table).to_owned()).await
    }
}
