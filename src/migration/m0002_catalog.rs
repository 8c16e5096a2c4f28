//! Courses → modules → lessons, enrollments and per-lesson progress.
//!
//! Positions are 1-based, dense and unique per parent: the unique indexes make a bug that
//! would leave two items at one position fail loudly instead of corrupting the outline.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Courses {
    Table,
    Id,
    Slug,
    InstructorId,
    Title,
    Summary,
    Level,
    Published,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Modules {
    Table,
    Id,
    CourseId,
    Title,
    Position,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Lessons {
    Table,
    Id,
    ModuleId,
    CourseId,
    Title,
    Kind,
    Position,
    Content,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Enrollments {
    Table,
    Id,
    UserId,
    CourseId,
    EnrolledAt,
    CompletedAt,
}

#[derive(DeriveIden)]
enum LessonProgress {
    Table,
    Id,
    UserId,
    LessonId,
    CourseId,
    Status,
    Progress,
    TimeSpentSeconds,
    Score,
    CompletedAt,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum ProgressEvents {
    Table,
    UserId,
    EventId,
    LessonId,
    OccurredAt,
    ReceivedAt,
}

#[derive(DeriveIden)]
enum ActivityHours {
    Table,
    UserId,
    Hour,
}

fn fk(
    from_table: impl IntoIden,
    from_col: impl IntoIden,
    to_table: impl IntoIden,
    to_col: impl IntoIden,
) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(from_table, from_col).to(to_table, to_col).on_delete(ForeignKeyAction::Cascade).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Courses::Table)
                .col(pk_uuid(Courses::Id))
                .col(string_len_uniq(Courses::Slug, 64))
                .col(uuid(Courses::InstructorId))
                .col(string_len(Courses::Title, 200))
                .col(text(Courses::Summary))
                .col(string_len(Courses::Level, 20))
                .col(boolean(Courses::Published).default(false))
                .col(timestamp_with_time_zone(Courses::CreatedAt))
                .col(timestamp_with_time_zone(Courses::UpdatedAt))
                // Restrict, not cascade: deleting an instructor must not silently delete courses
                // that students are enrolled in.
                .foreign_key(
                    ForeignKey::create()
                        .from(Courses::Table, Courses::InstructorId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Restrict),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("idx_courses_instructor").table(Courses::Table).col(Courses::InstructorId).to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Modules::Table)
                .col(pk_uuid(Modules::Id))
                .col(uuid(Modules::CourseId))
                .col(string_len(Modules::Title, 200))
                .col(integer(Modules::Position))
                .col(timestamp_with_time_zone(Modules::CreatedAt))
                .col(timestamp_with_time_zone(Modules::UpdatedAt))
                .foreign_key(&mut fk(Modules::Table, Modules::CourseId, Courses::Table, Courses::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_modules_course_position")
                .table(Modules::Table)
                .col(Modules::CourseId)
                .col(Modules::Position)
                .unique()
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Lessons::Table)
                .col(pk_uuid(Lessons::Id))
                .col(uuid(Lessons::ModuleId))
                // Denormalised so that course rollups count lessons without a join.
                .col(uuid(Lessons::CourseId))
                .col(string_len(Lessons::Title, 200))
                .col(string_len(Lessons::Kind, 20))
                .col(integer(Lessons::Position))
                .col(text_null(Lessons::Content))
                .col(timestamp_with_time_zone(Lessons::CreatedAt))
                .col(timestamp_with_time_zone(Lessons::UpdatedAt))
                .foreign_key(&mut fk(Lessons::Table, Lessons::ModuleId, Modules::Table, Modules::Id))
                .foreign_key(&mut fk(Lessons::Table, Lessons::CourseId, Courses::Table, Courses::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_lessons_module_position")
                .table(Lessons::Table)
                .col(Lessons::ModuleId)
                .col(Lessons::Position)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create().name("idx_lessons_course").table(Lessons::Table).col(Lessons::CourseId).to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(Enrollments::Table)
                .col(pk_uuid(Enrollments::Id))
                .col(uuid(Enrollments::UserId))
                .col(uuid(Enrollments::CourseId))
                .col(timestamp_with_time_zone(Enrollments::EnrolledAt))
                .col(timestamp_with_time_zone_null(Enrollments::CompletedAt))
                .foreign_key(&mut fk(Enrollments::Table, Enrollments::UserId, Users::Table, Users::Id))
                .foreign_key(&mut fk(Enrollments::Table, Enrollments::CourseId, Courses::Table, Courses::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_enrollments_user_course")
                .table(Enrollments::Table)
                .col(Enrollments::UserId)
                .col(Enrollments::CourseId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_enrollments_course")
                .table(Enrollments::Table)
                .col(Enrollments::CourseId)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(LessonProgress::Table)
                .col(pk_uuid(LessonProgress::Id))
                .col(uuid(LessonProgress::UserId))
                .col(uuid(LessonProgress::LessonId))
                .col(uuid(LessonProgress::CourseId))
                .col(string_len(LessonProgress::Status, 20))
                .col(double(LessonProgress::Progress))
                .col(big_integer(LessonProgress::TimeSpentSeconds))
                .col(double_null(LessonProgress::Score))
                .col(timestamp_with_time_zone_null(LessonProgress::CompletedAt))
                .col(timestamp_with_time_zone(LessonProgress::CreatedAt))
                .col(timestamp_with_time_zone(LessonProgress::UpdatedAt))
                .foreign_key(&mut fk(LessonProgress::Table, LessonProgress::UserId, Users::Table, Users::Id))
                // Removing a lesson removes its progress, so rollups never count a lesson
                // that is no longer in the course.
                .foreign_key(&mut fk(LessonProgress::Table, LessonProgress::LessonId, Lessons::Table, Lessons::Id))
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("uq_lesson_progress_user_lesson")
                .table(LessonProgress::Table)
                .col(LessonProgress::UserId)
                .col(LessonProgress::LessonId)
                .unique()
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_lesson_progress_user_course")
                .table(LessonProgress::Table)
                .col(LessonProgress::UserId)
                .col(LessonProgress::CourseId)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_lesson_progress_lesson")
                .table(LessonProgress::Table)
                .col(LessonProgress::LessonId)
                .to_owned(),
        )
        .await?;

        // Batch deduplication: an event id is remembered per user, forever (they are small).
        m.create_table(
            Table::create()
                .table(ProgressEvents::Table)
                .col(uuid(ProgressEvents::UserId))
                .col(string_len(ProgressEvents::EventId, 100))
                .col(uuid(ProgressEvents::LessonId))
                .col(timestamp_with_time_zone(ProgressEvents::OccurredAt))
                .col(timestamp_with_time_zone(ProgressEvents::ReceivedAt))
                .primary_key(Index::create().col(ProgressEvents::UserId).col(ProgressEvents::EventId))
                .foreign_key(&mut fk(ProgressEvents::Table, ProgressEvents::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;

        // One row per user and UTC hour with any progress: enough to count streaks in any
        // whole-hour time zone without storing every event.
        m.create_table(
            Table::create()
                .table(ActivityHours::Table)
                .col(uuid(ActivityHours::UserId))
                .col(big_integer(ActivityHours::Hour))
                .primary_key(Index::create().col(ActivityHours::UserId).col(ActivityHours::Hour))
                .foreign_key(&mut fk(ActivityHours::Table, ActivityHours::UserId, Users::Table, Users::Id))
                .to_owned(),
        )
        .await?;
        Ok(())
    }
}
