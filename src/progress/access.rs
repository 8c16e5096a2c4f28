//! What other domains may ask of progress: which lessons a student completed, and completing
//! the enrollments whose every lesson is done.

use std::collections::HashSet;

use chrono::{DateTime, Utc};
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QuerySelect, Statement, Value};
use uuid::Uuid;

use crate::entities::{enums::ProgressStatus, lesson_progress};

/// Marks enrollments of `course_id` (one student's, or everyone's) complete when every lesson
/// of the course is completed. Conditional on `completed_at IS NULL`, so it sets the date once.
/// Returns the students whose enrollment it completed.
pub async fn complete_finished_enrollments<C: ConnectionTrait>(
    db: &C,
    course_id: Uuid,
    user_id: Option<Uuid>,
    at: DateTime<Utc>,
) -> Result<Vec<Uuid>, DbErr> {
    let mut sql = "UPDATE enrollments SET completed_at = $1 \
         WHERE course_id = $2 AND completed_at IS NULL \
           AND (SELECT COUNT(*) FROM lessons WHERE lessons.course_id = $2) > 0 \
           AND (SELECT COUNT(*) FROM lesson_progress lp WHERE lp.course_id = $2 \
                  AND lp.user_id = enrollments.user_id AND lp.status = 'completed') \
               >= (SELECT COUNT(*) FROM lessons WHERE lessons.course_id = $2)"
        .to_string();
    let mut values: Vec<Value> = vec![at.into(), course_id.into()];
    if let Some(u) = user_id {
        sql.push_str(" AND user_id = $3");
        values.push(u.into());
    }
    sql.push_str(" RETURNING user_id");
    let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, values);
    db.query_all_raw(stmt).await?.iter().map(|row| row.try_get_by_index::<Uuid>(0)).collect()
}

/// The lessons of `course_ids` that `user_id` has completed.
pub async fn completed_lessons<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    course_ids: &[Uuid],
) -> Result<HashSet<Uuid>, DbErr> {
    Ok(lesson_progress::Entity::find()
        .select_only()
        .column(lesson_progress::Column::LessonId)
        .filter(lesson_progress::Column::UserId.eq(user_id))
        .filter(lesson_progress::Column::CourseId.is_in(course_ids.iter().copied()))
        .filter(lesson_progress::Column::Status.eq(ProgressStatus::Completed))
        .into_tuple::<Uuid>()
        .all(db)
        .await?
        .into_iter()
        .collect())
}
