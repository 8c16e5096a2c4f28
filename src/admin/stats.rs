//! The platform's numbers for the admin console: the figures in one query, the top courses in
//! a second. Both read every enrollment, so on a large database they are the part that grows
//! with the platform; answers are cached briefly (see `cache`).

use chrono::{DateTime, Utc};
use sea_orm::{ConnectionTrait, DbBackend, FromQueryResult, Statement};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{AdminError, AdminService};

/// Active accounts by role.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct UsersByRole {
    pub student: i64,
    pub instructor: i64,
    pub admin: i64,
}

/// Students with any learning activity in the last day, 7 days and 30 days.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ActiveStudents {
    pub day: i64,
    pub week: i64,
    pub month: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct AssessmentCounts {
    /// Every assessment a student opened, whatever became of it.
    pub started: i64,
    pub completed: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct ReviewQueue {
    pub waiting: i64,
    /// When the submission that has waited longest was handed in; null when nothing waits.
    pub oldest_submitted_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct OutboxHealth {
    /// Waiting to be sent, including retries after a temporary failure.
    pub queued: i64,
    /// Gave up after every attempt: an admin may retry them.
    pub failed: i64,
}

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq, FromQueryResult)]
pub struct TopCourse {
    pub course_id: Uuid,
    pub title: String,
    pub enrollments: i64,
    pub completions: i64,
}

/// How many courses `top_courses` lists.
const TOP_COURSES: i64 = 5;

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct PlatformStats {
    pub users_by_role: UsersByRole,
    /// Students with any learning activity in the last 7 days.
    pub active_students_7d: i64,
    pub enrollments: i64,
    /// Enrollments whose every lesson is completed.
    pub completions: i64,
    pub assessments_completed: i64,
    /// Submissions waiting for review.
    pub submissions_pending: i64,
    pub active_students: ActiveStudents,
    pub assessments: AssessmentCounts,
    pub review_queue: ReviewQueue,
    pub email_outbox: OutboxHealth,
    /// The most enrolled courses (ties broken by completions), at most five.
    pub top_courses: Vec<TopCourse>,
    /// When these numbers were computed; they may be reused for a few seconds.
    pub generated_at: DateTime<Utc>,
}

impl AdminService {
    pub async fn stats(&self) -> Result<PlatformStats, AdminError> {
        if let Some(hit) = self.cache.stats().await {
            return Ok(hit);
        }
        let stats = self.compute_stats().await?;
        self.cache.keep_stats(&stats).await;
        Ok(stats)
    }

    async fn compute_stats(&self) -> Result<PlatformStats, AdminError> {
        let generated_at = Utc::now();
        let db = &self.db.conn;
        let [figures, top] = stats_statements(db.get_database_backend(), generated_at);
        let row = db.query_one_raw(figures).await?.ok_or(AdminError::NotFound)?;
        let n = |i: usize| row.try_get_by_index::<i64>(i);
        let top_courses = TopCourse::find_by_statement(top).all(db).await?;
        Ok(PlatformStats {
            users_by_role: UsersByRole { student: n(0)?, instructor: n(1)?, admin: n(2)? },
            active_students_7d: n(3)?,
            enrollments: n(4)?,
            completions: n(5)?,
            assessments_completed: n(6)?,
            submissions_pending: n(7)?,
            active_students: ActiveStudents { day: n(8)?, week: n(3)?, month: n(9)? },
            assessments: AssessmentCounts { started: n(10)?, completed: n(6)? },
            review_queue: ReviewQueue { waiting: n(7)?, oldest_submitted_at: row.try_get_by_index(11)? },
            email_outbox: OutboxHealth { queued: n(12)?, failed: n(13)? },
            top_courses,
            generated_at,
        })
    }
}

/// The figures in one statement, the top courses in a second. Each table is read once: the
/// users by role in one pass, the active students of all three windows from one range of
/// idx_activity_hours_hour (each student's latest hour in the month), the enrollments in one
/// pass, and the top courses from enrollments grouped before the join.
pub(super) fn stats_statements(backend: DbBackend, now: DateTime<Utc>) -> [Statement; 2] {
    let hours_ago = |hours: i64| (now.timestamp() - hours * 3600).div_euclid(3600);
    let sql = "SELECT r.student, r.instructor, r.admin, act.week, en.total, en.done, \
        (SELECT COUNT(*) FROM assessments WHERE status = 'completed'), \
        (SELECT COUNT(*) FROM submissions WHERE status = 'submitted'), \
        act.day, act.month, \
        (SELECT COUNT(*) FROM assessments), \
        (SELECT MIN(created_at) FROM submissions WHERE status = 'submitted'), \
        (SELECT COUNT(*) FROM email_outbox WHERE status = 'queued'), \
        (SELECT COUNT(*) FROM email_outbox WHERE status = 'failed') \
        FROM (SELECT COALESCE(SUM(CASE WHEN role = 'student' THEN 1 ELSE 0 END), 0) AS student, \
                COALESCE(SUM(CASE WHEN role = 'instructor' THEN 1 ELSE 0 END), 0) AS instructor, \
                COALESCE(SUM(CASE WHEN role = 'admin' THEN 1 ELSE 0 END), 0) AS admin \
              FROM users WHERE is_active) r, \
             (SELECT COALESCE(SUM(CASE WHEN a.last >= $2 THEN 1 ELSE 0 END), 0) AS day, \
                COALESCE(SUM(CASE WHEN a.last >= $1 THEN 1 ELSE 0 END), 0) AS week, \
                COUNT(*) AS month \
              FROM (SELECT user_id, MAX(hour) AS last FROM activity_hours WHERE hour >= $3 GROUP BY user_id) a \
              JOIN users u ON u.id = a.user_id WHERE u.role = 'student') act, \
             (SELECT COUNT(*) AS total, COUNT(completed_at) AS done FROM enrollments) en";
    let windows = [hours_ago(7 * 24).into(), hours_ago(24).into(), hours_ago(30 * 24).into()];
    let top = "SELECT c.id AS course_id, c.title, t.enrollments, t.completions \
        FROM (SELECT course_id, COUNT(*) AS enrollments, COUNT(completed_at) AS completions \
              FROM enrollments GROUP BY course_id) t \
        JOIN courses c ON c.id = t.course_id \
        ORDER BY t.enrollments DESC, t.completions DESC, c.id LIMIT $1";
    [
        Statement::from_sql_and_values(backend, sql, windows),
        Statement::from_sql_and_values(backend, top, [TOP_COURSES.into()]),
    ]
}
