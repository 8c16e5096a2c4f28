//! Project submissions: one row per handed-in version, its files (the bytes live in the object
//! store under keys of our own), and the preference for review emails.
//!
//! A file row is what makes an object in the store live: an object without one (an upload that
//! failed, a process killed mid-request, a submission deleted with its lesson) is removed by the
//! janitor once it is older than any upload can take. The scan columns make the file its own
//! durable job: a file whose scan could not run stays `pending` and is retried.

use sea_orm_migration::{prelude::*, schema::*};

#[derive(DeriveMigrationName)]
pub struct Migration;

#[derive(DeriveIden)]
enum Submissions {
    Table,
    Id,
    UserId,
    LessonId,
    CourseId,
    Version,
    Status,
    Note,
    Feedback,
    Score,
    ReviewedBy,
    ReviewedAt,
    TotalBytes,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum SubmissionFiles {
    Table,
    Id,
    SubmissionId,
    UserId,
    Position,
    Filename,
    Size,
    ContentType,
    Sha256,
    ObjectKey,
    ScanStatus,
    ScanSignature,
    ScanAttempts,
    ScanNextAt,
    ScanLockedUntil,
    CreatedAt,
}

#[derive(DeriveIden)]
enum NotificationPreferences {
    Table,
    ProjectReviews,
}

#[derive(DeriveIden)]
enum Users {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Lessons {
    Table,
    Id,
}

#[derive(DeriveIden)]
enum Courses {
    Table,
    Id,
}

fn cascade(column: Submissions, table: impl IntoIden, id: impl IntoIden) -> ForeignKeyCreateStatement {
    ForeignKey::create().from(Submissions::Table, column).to(table, id).on_delete(ForeignKeyAction::Cascade).to_owned()
}

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.create_table(
            Table::create()
                .table(Submissions::Table)
                .col(pk_uuid(Submissions::Id))
                .col(uuid(Submissions::UserId))
                .col(uuid(Submissions::LessonId))
                .col(uuid(Submissions::CourseId))
                .col(integer(Submissions::Version))
                .col(string_len(Submissions::Status, 32))
                .col(text(Submissions::Note))
                .col(text_null(Submissions::Feedback))
                .col(integer_null(Submissions::Score))
                .col(uuid_null(Submissions::ReviewedBy))
                .col(timestamp_with_time_zone_null(Submissions::ReviewedAt))
                .col(big_integer(Submissions::TotalBytes))
                .col(timestamp_with_time_zone(Submissions::CreatedAt))
                .col(timestamp_with_time_zone(Submissions::UpdatedAt))
                .foreign_key(&mut cascade(Submissions::UserId, Users::Table, Users::Id))
                .foreign_key(&mut cascade(Submissions::LessonId, Lessons::Table, Lessons::Id))
                .foreign_key(&mut cascade(Submissions::CourseId, Courses::Table, Courses::Id))
                .to_owned(),
        )
        .await?;
        // One version number per student and lesson: two racing resubmissions cannot both be
        // version 2. Also serves "my submissions for this lesson".
        m.create_index(
            Index::create()
                .name("uq_submissions_version")
                .table(Submissions::Table)
                .col(Submissions::UserId)
                .col(Submissions::LessonId)
                .col(Submissions::Version)
                .unique()
                .to_owned(),
        )
        .await?;
        // The review queue: a course's submissions by status, oldest first.
        m.create_index(
            Index::create()
                .name("idx_submissions_course_status")
                .table(Submissions::Table)
                .col(Submissions::CourseId)
                .col(Submissions::Status)
                .col(Submissions::Id)
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_submissions_status")
                .table(Submissions::Table)
                .col(Submissions::Status)
                .col(Submissions::CreatedAt)
                .to_owned(),
        )
        .await?;

        m.create_table(
            Table::create()
                .table(SubmissionFiles::Table)
                .col(pk_uuid(SubmissionFiles::Id))
                .col(uuid(SubmissionFiles::SubmissionId))
                .col(uuid(SubmissionFiles::UserId))
                .col(integer(SubmissionFiles::Position))
                .col(string_len(SubmissionFiles::Filename, 255))
                .col(big_integer(SubmissionFiles::Size))
                .col(string_len(SubmissionFiles::ContentType, 100))
                .col(string_len(SubmissionFiles::Sha256, 64))
                .col(string_len_uniq(SubmissionFiles::ObjectKey, 200))
                .col(string_len(SubmissionFiles::ScanStatus, 16))
                .col(string_len_null(SubmissionFiles::ScanSignature, 200))
                .col(integer(SubmissionFiles::ScanAttempts))
                .col(timestamp_with_time_zone_null(SubmissionFiles::ScanNextAt))
                .col(timestamp_with_time_zone_null(SubmissionFiles::ScanLockedUntil))
                .col(timestamp_with_time_zone(SubmissionFiles::CreatedAt))
                .foreign_key(
                    ForeignKey::create()
                        .from(SubmissionFiles::Table, SubmissionFiles::SubmissionId)
                        .to(Submissions::Table, Submissions::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .foreign_key(
                    ForeignKey::create()
                        .from(SubmissionFiles::Table, SubmissionFiles::UserId)
                        .to(Users::Table, Users::Id)
                        .on_delete(ForeignKeyAction::Cascade),
                )
                .to_owned(),
        )
        .await?;
        m.create_index(
            Index::create()
                .name("idx_submission_files_submission")
                .table(SubmissionFiles::Table)
                .col(SubmissionFiles::SubmissionId)
                .col(SubmissionFiles::Position)
                .to_owned(),
        )
        .await?;
        // The storage quota sums one student's files.
        m.create_index(
            Index::create()
                .name("idx_submission_files_user")
                .table(SubmissionFiles::Table)
                .col(SubmissionFiles::UserId)
                .to_owned(),
        )
        .await?;
        // The scan retry job looks for pending files that are due.
        m.create_index(
            Index::create()
                .name("idx_submission_files_scan")
                .table(SubmissionFiles::Table)
                .col(SubmissionFiles::ScanStatus)
                .col(SubmissionFiles::ScanNextAt)
                .to_owned(),
        )
        .await?;

        m.alter_table(
            Table::alter()
                .table(NotificationPreferences::Table)
                .add_column(boolean(NotificationPreferences::ProjectReviews).default(true))
                .to_owned(),
        )
        .await
    }

    async fn down(&self, m: &SchemaManager) -> Result<(), DbErr> {
        m.alter_table(
            Table::alter()
                .table(NotificationPreferences::Table)
                .drop_column(NotificationPreferences::ProjectReviews)
                .to_owned(),
        )
        .await?;
        m.drop_table(Table::drop().table(SubmissionFiles::Table).to_owned()).await?;
        m.drop_table(Table::drop().table(Submissions::Table).to_owned()).await
    }
}
