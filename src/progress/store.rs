//! The SQL of progress: the monotonic upsert, activity hours, enrollment locks, rollups.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, FromQueryResult, QueryFilter, QueryOrder, QuerySelect,
    Statement, Value,
};
use uuid::Uuid;

use super::model::{CourseRollup, MAX_TIME_STEP_SECS, ProgressStatus};
use crate::{
    entities::{activity_hour, enrollment, lesson, lesson_progress},
    kernel::{facts::percent, fields::FieldErrors},
};

/// A validated update, ready for the UPSERT.
pub(super) struct Normalized {
    completed: bool,
    progress: f64,
    /// As reported (≥ 0); the SQL clamps the growth.
    time_spent: i64,
    score: Option<f64>,
}

pub(super) fn normalize(
    status: ProgressStatus,
    progress: Option<f64>,
    time_spent: Option<i64>,
    score: Option<f64>,
    errors: &mut FieldErrors,
) -> Normalized {
    if let Some(p) = progress
        && !(0.0..=1.0).contains(&p)
    {
        errors.push("progress", "must be between 0.0 and 1.0");
    }
    if let Some(t) = time_spent
        && t < 0
    {
        errors.push("time_spent_seconds", "must not be negative");
    }
    if let Some(s) = score
        && !(0.0..=100.0).contains(&s)
    {
        errors.push("score", "must be between 0 and 100");
    }
    let completed = status == ProgressStatus::Completed;
    Normalized {
        completed,
        progress: if completed { 1.0 } else { progress.unwrap_or(0.0).clamp(0.0, 1.0) },
        time_spent: time_spent.unwrap_or(0).max(0),
        score,
    }
}

/// The one write of a lesson's progress. Monotonic in every column, so it commutes with any
/// concurrent or repeated write of the same lesson. Writes nothing and returns `None` when the
/// lesson is gone: on PostgreSQL the statement sees a delete that committed while this
/// transaction waited for its locks.
pub(super) async fn upsert<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    lesson: LessonRef,
    u: &Normalized,
    at: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<Option<lesson_progress::Model>, DbErr> {
    let backend = db.get_database_backend();
    // PostgreSQL's GREATEST/LEAST are SQLite's two-argument MAX/MIN.
    let (max, min) = match backend {
        DbBackend::Postgres => ("GREATEST", "LEAST"),
        _ => ("MAX", "MIN"),
    };
    let sql = format!(
        "INSERT INTO lesson_progress (id, user_id, lesson_id, course_id, status, progress, \
             time_spent_seconds, score, completed_at, created_at, updated_at) \
         SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $10 \
         WHERE EXISTS (SELECT 1 FROM lessons WHERE id = $3) \
         ON CONFLICT (user_id, lesson_id) DO UPDATE SET \
             status = CASE WHEN lesson_progress.status = 'completed' THEN 'completed' \
                      ELSE excluded.status END, \
             progress = {max}(lesson_progress.progress, excluded.progress), \
             time_spent_seconds = {max}(lesson_progress.time_spent_seconds, \
                 {min}($11, lesson_progress.time_spent_seconds + $12)), \
             score = {max}(COALESCE(lesson_progress.score, excluded.score), \
                 COALESCE(excluded.score, lesson_progress.score)), \
             completed_at = COALESCE(lesson_progress.completed_at, excluded.completed_at), \
             updated_at = excluded.updated_at \
         RETURNING *"
    );
    let values: Vec<Value> = vec![
        Uuid::now_v7().into(),
        user_id.into(),
        lesson.id.into(),
        lesson.course_id.into(),
        (if u.completed { ProgressStatus::Completed } else { ProgressStatus::InProgress }).as_str().into(),
        u.progress.into(),
        u.time_spent.min(MAX_TIME_STEP_SECS).into(),
        u.score.into(),
        (u.completed.then_some(at)).into(),
        now.into(),
        u.time_spent.into(),
        MAX_TIME_STEP_SECS.into(),
    ];
    let row = db.query_one_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    row.map(|row| lesson_progress::Model::from_query_result(&row, "").map_err(|e| DbErr::Custom(e.to_string())))
        .transpose()
}

/// A lesson, as far as progress needs to know it.
#[derive(Debug, Clone, Copy)]
pub(super) struct LessonRef {
    pub id: Uuid,
    pub course_id: Uuid,
}

impl From<&lesson::Model> for LessonRef {
    fn from(l: &lesson::Model) -> Self {
        LessonRef { id: l.id, course_id: l.course_id }
    }
}

/// What a single update needs to know before it writes, read in one statement that also takes
/// the enrollment lock (see [`lock_enrollments`]).
#[derive(Debug, FromQueryResult)]
pub(super) struct UpdateTarget {
    lesson_id: Uuid,
    course_id: Uuid,
    /// The course's instructor, when they are still an active instructor.
    pub instructor_id: Option<Uuid>,
    active_this_hour: i32,
    active_today: i32,
}

impl UpdateTarget {
    pub fn lesson(&self) -> LessonRef {
        LessonRef { id: self.lesson_id, course_id: self.course_id }
    }

    /// Whether the student already learned during this hour (the activity row exists).
    pub fn active_this_hour(&self) -> bool {
        self.active_this_hour != 0
    }

    /// Whether the student already learned today (UTC): a streak counted in UTC days cannot
    /// have moved.
    pub fn active_today(&self) -> bool {
        self.active_today != 0
    }
}

/// The lesson `lesson_id` if `user_id` is enrolled in its course, with that enrollment locked
/// on PostgreSQL, and the student's activity so far today.
pub(super) async fn update_target<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    lesson_id: Uuid,
    now: DateTime<Utc>,
) -> Result<Option<UpdateTarget>, DbErr> {
    let backend = db.get_database_backend();
    let hour = hour_of(now);
    let day_start = now.timestamp().div_euclid(86_400) * 24;
    let mut sql = "SELECT l.id AS lesson_id, l.course_id AS course_id, \
             CASE WHEN u.is_active AND u.role = 'instructor' THEN c.instructor_id END AS instructor_id, \
             CASE WHEN EXISTS (SELECT 1 FROM activity_hours a WHERE a.user_id = $1 AND a.hour = $3) \
                  THEN 1 ELSE 0 END AS active_this_hour, \
             CASE WHEN EXISTS (SELECT 1 FROM activity_hours a WHERE a.user_id = $1 \
                                 AND a.hour >= $4 AND a.hour <= $3) \
                  THEN 1 ELSE 0 END AS active_today \
         FROM lessons l \
         JOIN enrollments e ON e.course_id = l.course_id AND e.user_id = $1 \
         JOIN courses c ON c.id = l.course_id \
         LEFT JOIN users u ON u.id = c.instructor_id \
         WHERE l.id = $2"
        .to_string();
    if backend == DbBackend::Postgres {
        sql.push_str(" FOR UPDATE OF e");
    }
    let values: Vec<Value> = vec![user_id.into(), lesson_id.into(), hour.into(), day_start.into()];
    let row = db.query_one_raw(Statement::from_sql_and_values(backend, sql, values)).await?;
    row.map(|row| UpdateTarget::from_query_result(&row, "").map_err(|e| DbErr::Custom(e.to_string()))).transpose()
}

/// Remembers that the user learned during `at`'s hour (for streaks).
pub(super) async fn touch_activity<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    hours: impl IntoIterator<Item = i64>,
) -> Result<(), DbErr> {
    let rows: Vec<activity_hour::ActiveModel> = hours
        .into_iter()
        .map(|hour| activity_hour::ActiveModel {
            user_id: sea_orm::ActiveValue::Set(user_id),
            hour: sea_orm::ActiveValue::Set(hour),
        })
        .collect();
    if rows.is_empty() {
        return Ok(());
    }
    activity_hour::Entity::insert_many(rows)
        .on_conflict_do_nothing_on([activity_hour::Column::UserId, activity_hour::Column::Hour])
        .exec_without_returning(db)
        .await?;
    Ok(())
}

pub(super) fn hour_of(t: DateTime<Utc>) -> i64 {
    t.timestamp().div_euclid(3600)
}

/// The enrollment rows of a user in some courses, locked on PostgreSQL (in course order, so
/// two batches never deadlock). The lock serialises one student's writes to one course, which
/// makes "was that the last lesson?" race-free: each write counts after the previous commits.
pub(super) async fn lock_enrollments<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    course_ids: &[Uuid],
) -> Result<HashMap<Uuid, enrollment::Model>, DbErr> {
    if course_ids.is_empty() {
        return Ok(HashMap::new());
    }
    let mut q = enrollment::Entity::find()
        .filter(enrollment::Column::UserId.eq(user_id))
        .filter(enrollment::Column::CourseId.is_in(course_ids.iter().copied()))
        .order_by_asc(enrollment::Column::CourseId);
    if db.get_database_backend() == DbBackend::Postgres {
        q = q.lock_exclusive();
    }
    Ok(q.all(db).await?.into_iter().map(|e| (e.course_id, e)).collect())
}

/// The student's rollup of one course, in one statement.
pub(super) async fn course_rollup<C: ConnectionTrait>(
    db: &C,
    user_id: Uuid,
    course_id: Uuid,
) -> Result<CourseRollup, DbErr> {
    let sql = "SELECT (SELECT COUNT(*) FROM lessons WHERE course_id = $2) AS total_lessons, \
                      (SELECT COUNT(*) FROM lesson_progress WHERE user_id = $1 AND course_id = $2 \
                         AND status = 'completed') AS completed_lessons, \
                      (SELECT completed_at FROM enrollments WHERE user_id = $1 AND course_id = $2) \
                         AS completed_at";
    let values: Vec<Value> = vec![user_id.into(), course_id.into()];
    let row = db
        .query_one_raw(Statement::from_sql_and_values(db.get_database_backend(), sql, values))
        .await?
        .ok_or_else(|| DbErr::Custom("rollup returned no row".into()))?;
    let total = row.try_get::<i64>("", "total_lessons")?.max(0) as u64;
    let completed = row.try_get::<i64>("", "completed_lessons")?.max(0) as u64;
    Ok(CourseRollup {
        course_id,
        completed_lessons: completed,
        total_lessons: total,
        percent: percent(completed, total),
        completed_at: row.try_get("", "completed_at")?,
    })
}
