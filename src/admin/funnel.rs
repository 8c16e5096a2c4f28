//! A course's drop-off funnel: for each module in outline order, how many students started it
//! and how many finished every one of its lessons.

use sea_orm::{EntityTrait, FromQueryResult, Statement};
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{AdminError, AdminService};
use crate::entities::course;

#[derive(Debug, Clone, Serialize, ToSchema, PartialEq, Eq, FromQueryResult)]
pub struct FunnelStep {
    pub module_id: Uuid,
    pub title: String,
    /// Students with progress on at least one of the module's lessons.
    pub started: i64,
    /// Students who completed every lesson the module has now. A module without lessons has
    /// nobody to count: 0.
    pub completed: i64,
}

impl AdminService {
    pub async fn funnel(&self, course_id: Uuid) -> Result<Vec<FunnelStep>, AdminError> {
        let db = &self.db.conn;
        course::Entity::find_by_id(course_id).one(db).await?.ok_or(AdminError::NotFound)?;
        // One pass over the course's progress rows (reached through idx_lessons_course and
        // idx_lesson_progress_lesson): grouped per module and student, then per module.
        let sql = "WITH per_student AS ( \
                SELECT l.module_id, p.user_id, \
                    SUM(CASE WHEN p.status = 'completed' THEN 1 ELSE 0 END) AS done \
                FROM lesson_progress p JOIN lessons l ON l.id = p.lesson_id \
                WHERE l.course_id = $1 \
                GROUP BY l.module_id, p.user_id \
            ), sizes AS ( \
                SELECT module_id, COUNT(*) AS lessons FROM lessons WHERE course_id = $1 GROUP BY module_id \
            ), per_module AS ( \
                SELECT s.module_id, COUNT(*) AS started, \
                    SUM(CASE WHEN s.done = z.lessons THEN 1 ELSE 0 END) AS completed \
                FROM per_student s JOIN sizes z ON z.module_id = s.module_id \
                GROUP BY s.module_id \
            ) \
            SELECT m.id AS module_id, m.title, \
                COALESCE(f.started, 0) AS started, COALESCE(f.completed, 0) AS completed \
            FROM modules m LEFT JOIN per_module f ON f.module_id = m.id \
            WHERE m.course_id = $1 ORDER BY m.position";
        let stmt = Statement::from_sql_and_values(db.get_database_backend(), sql, [course_id.into()]);
        Ok(FunnelStep::find_by_statement(stmt).all(db).await?)
    }
}
