//! The platform's numbers for the admin console, in one query: every figure is a count over
//! an indexed column, so the answer stays quick as the tables grow.

use chrono::Utc;
use sea_orm::{ConnectionTrait, Statement};
use serde::Serialize;
use utoipa::ToSchema;

use super::{AdminError, AdminService};

/// Active accounts by role.
#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq)]
pub struct UsersByRole {
    pub student: i64,
    pub instructor: i64,
    pub admin: i64,
}

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
}

impl AdminService {
    pub async fn stats(&self) -> Result<PlatformStats, AdminError> {
        let week_ago_hour = (Utc::now().timestamp() - 7 * 24 * 3600).div_euclid(3600);
        let sql = "SELECT \
            (SELECT COUNT(*) FROM users WHERE is_active AND role = 'student'), \
            (SELECT COUNT(*) FROM users WHERE is_active AND role = 'instructor'), \
            (SELECT COUNT(*) FROM users WHERE is_active AND role = 'admin'), \
            (SELECT COUNT(DISTINCT a.user_id) FROM activity_hours a JOIN users u ON u.id = a.user_id \
               WHERE a.hour >= $1 AND u.role = 'student'), \
            (SELECT COUNT(*) FROM enrollments), \
            (SELECT COUNT(*) FROM enrollments WHERE completed_at IS NOT NULL), \
            (SELECT COUNT(*) FROM assessments WHERE status = 'completed'), \
            (SELECT COUNT(*) FROM submissions WHERE status = 'submitted')";
        let db = &self.db.conn;
        let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, [week_ago_hour.into()]);
        let row = db.query_one_raw(stmt).await?.ok_or(AdminError::NotFound)?;
        let n = |i: usize| row.try_get_by_index::<i64>(i);
        Ok(PlatformStats {
            users_by_role: UsersByRole { student: n(0)?, instructor: n(1)?, admin: n(2)? },
            active_students_7d: n(3)?,
            enrollments: n(4)?,
            completions: n(5)?,
            assessments_completed: n(6)?,
            submissions_pending: n(7)?,
        })
    }
}
