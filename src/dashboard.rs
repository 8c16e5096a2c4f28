//! The student's home screen: their progress, streak, learning path, recent awards and unread
//! notifications in one read. It reads across domains, as `reactions` writes across them, and
//! keeps to a handful of statements: this is the first request of every visit.

use sea_orm::{ConnectionTrait, DbErr, FromQueryResult, Statement};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use crate::{
    achievements::{self, AwardView},
    assessments::paths::LearningPathView,
    auth::UserView,
    entities::learning_path,
    infra::db::Db,
    kernel::pagination::PageRequest,
    progress::{CourseProgress, ProgressError, ProgressService},
};

/// Enrollments shown; the rest are on `/me/progress`.
const ENROLLMENTS_SHOWN: u64 = 100;
/// Awards shown.
const AWARDS_SHOWN: u64 = 5;

#[derive(Debug, Serialize, ToSchema)]
pub struct Dashboard {
    pub user: UserView,
    /// Progress in the first 100 enrollments (all of them through `/me/progress`).
    pub enrollments_progress: Vec<CourseProgress>,
    /// Exactly what `GET /me/learning-path` returns: before the first assessment,
    /// `generated_at` is null and `steps` empty.
    pub learning_path: LearningPathView,
    /// The five most recent awards.
    pub recent_achievements: Vec<AwardView>,
    pub unread_notifications: u64,
    /// Consecutive days with progress, up to today (or yesterday, if not yet today).
    pub streak_days: u32,
}

/// `user`'s dashboard, counting streak days in the given offset from UTC. The user row itself
/// came with the session check.
pub async fn load(
    db: &Db,
    progress: &ProgressService,
    user: UserView,
    utc_offset_minutes: i32,
) -> Result<Dashboard, ProgressError> {
    let first = PageRequest { limit: ENROLLMENTS_SHOWN, after: None };
    let enrollments_progress = progress.course_progress(user.id, None, first).await?.items;
    let streak_days = progress.streak_days(user.id, utc_offset_minutes).await?;
    let (learning_path, unread_notifications) = path_and_unread(db, user.id).await?;
    let recent_achievements =
        achievements::awarded(db, user.id, PageRequest { limit: AWARDS_SHOWN, after: None }).await?.items;
    Ok(Dashboard { user, enrollments_progress, learning_path, recent_achievements, unread_notifications, streak_days })
}

/// The stored path (or the empty one) and the unread count, in one statement.
async fn path_and_unread(db: &Db, user_id: Uuid) -> Result<(LearningPathView, u64), DbErr> {
    let sql = "SELECT lp.user_id, lp.generated_at, lp.based_on_assessment_id, lp.steps, \
                      (SELECT COUNT(*) FROM notifications n \
                       WHERE n.user_id = $1 AND n.read_at IS NULL) AS unread_notifications \
               FROM (SELECT 1 AS one) AS me LEFT JOIN learning_paths lp ON lp.user_id = $1";
    let stmt = Statement::from_sql_and_values(db.backend(), sql, [user_id.into()]);
    let row = db.conn.query_one_raw(stmt).await?.ok_or_else(|| DbErr::Custom("no dashboard row".into()))?;
    let path = learning_path::Model::from_query_result_optional(&row, "")?
        .map(LearningPathView::from)
        .unwrap_or_else(LearningPathView::empty);
    let unread: i64 = row.try_get("", "unread_notifications")?;
    Ok((path, unread.max(0) as u64))
}
