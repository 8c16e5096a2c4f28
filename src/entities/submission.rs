use sea_orm::entity::prelude::*;

use super::enums::SubmissionStatus;

/// One handed-in version of a student's project for a lesson.
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "submissions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: Uuid,
    pub user_id: Uuid,
    pub lesson_id: Uuid,
    pub course_id: Uuid,
    /// 1 for the first hand-in of this lesson by this student, then 2, 3 … per resubmission.
    pub version: i32,
    pub status: SubmissionStatus,
    pub note: String,
    pub feedback: Option<String>,
    pub score: Option<i32>,
    pub reviewed_by: Option<Uuid>,
    pub reviewed_at: Option<DateTimeUtc>,
    pub total_bytes: i64,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
