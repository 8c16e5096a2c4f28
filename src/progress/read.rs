//! The reads of progress: enrollments, per-course rollups with modules, streaks.

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, EntityTrait, FromQueryResult, PaginatorTrait, QueryFilter, QuerySelect, QueryTrait,
    sea_query::{Expr, ExprTrait, Order, Query, SelectStatement},
};
use uuid::Uuid;

use super::{
    ProgressError, ProgressService,
    model::{CourseProgress, EnrollmentView, ModuleRollup, ProgressStatus},
};
use crate::{
    catalog::access::{in_courses_taught_by, teaches},
    entities::{course, enrollment, lesson, lesson_progress, module},
    kernel::{
        context::{Principal, Role},
        facts::percent,
        pagination::{Page, PageRequest},
        streak,
    },
};

impl ProgressService {
    pub async fn list_enrollments(
        &self,
        p: &Principal,
        page: PageRequest,
    ) -> Result<Page<EnrollmentView>, ProgressError> {
        let q = page.oldest_first(
            enrollment::Entity::find().filter(enrollment::Column::UserId.eq(p.user_id)),
            enrollment::Column::Id,
        );
        let rows = q.all(&self.db.conn).await?;
        Ok(Page::from_rows(rows.into_iter().map(EnrollmentView::from).collect(), page, |e| e.id))
    }

    /// Per-course progress of `user_id`'s enrollments, optionally only in courses taught by
    /// `instructor`. Rollups are computed from the current outline on every read, so adding or
    /// removing lessons is reflected at once. One statement: the page of enrollments, each
    /// joined to its course's outline and the student's completed lessons, in reading order.
    pub async fn course_progress(
        &self,
        user_id: Uuid,
        instructor: Option<Uuid>,
        page: PageRequest,
    ) -> Result<Page<CourseProgress>, ProgressError> {
        let db = &self.db.conn;
        let mut ids = page.oldest_first(
            enrollment::Entity::find()
                .select_only()
                .column(enrollment::Column::Id)
                .filter(enrollment::Column::UserId.eq(user_id)),
            enrollment::Column::Id,
        );
        if let Some(i) = instructor {
            ids = ids.filter(in_courses_taught_by(i));
        }
        let rows = db.query_all_raw(db.get_database_backend().build(&outline_of(ids.into_query(), user_id))).await?;
        let mut items: Vec<(Uuid, CourseProgress)> = Vec::new();
        for row in rows {
            let r = OutlineRow::from_query_result(&row, "")?;
            if items.last().is_none_or(|(id, _)| *id != r.enrollment_id) {
                items.push((
                    r.enrollment_id,
                    CourseProgress {
                        course_id: r.course_id,
                        title: r.title.unwrap_or_default(),
                        completed_lessons: 0,
                        total_lessons: 0,
                        percent: 0.0,
                        next_lesson_id: None,
                        completed_at: r.completed_at,
                        enrolled_at: r.enrolled_at,
                        modules: vec![],
                    },
                ));
            }
            let Some((_, out)) = items.last_mut() else { continue };
            let Some(module_id) = r.module_id else { continue };
            if out.modules.last().is_none_or(|m| m.module_id != module_id) {
                out.modules.push(ModuleRollup { module_id, completed_lessons: 0, total_lessons: 0, percent: 0.0 });
            }
            let Some(lesson_id) = r.lesson_id else { continue };
            let module = out.modules.last_mut().expect("pushed above");
            module.total_lessons += 1;
            out.total_lessons += 1;
            if r.done != 0 {
                module.completed_lessons += 1;
                out.completed_lessons += 1;
            } else if out.next_lesson_id.is_none() {
                out.next_lesson_id = Some(lesson_id);
            }
        }
        for (_, out) in &mut items {
            for m in &mut out.modules {
                m.percent = percent(m.completed_lessons, m.total_lessons);
            }
            out.percent = percent(out.completed_lessons, out.total_lessons);
        }
        let page = Page::from_rows(items, page, |(id, _)| *id);
        Ok(Page { items: page.items.into_iter().map(|(_, c)| c).collect(), next_cursor: page.next_cursor })
    }

    /// `GET /users/{id}/progress`: admins see every course; an instructor only the courses
    /// they teach, and only for a student enrolled in one of them. Anyone else: 404.
    pub async fn user_progress(
        &self,
        p: &Principal,
        user_id: Uuid,
        page: PageRequest,
    ) -> Result<Page<CourseProgress>, ProgressError> {
        let instructor = match p.role {
            Role::Admin => None,
            Role::Instructor => Some(p.user_id),
            Role::Student => return Err(ProgressError::NotFound),
        };
        let exists = match instructor {
            None => crate::entities::user::Entity::find_by_id(user_id).count(&self.db.conn).await? > 0,
            Some(i) => teaches(&self.db.conn, i, user_id).await?,
        };
        if !exists {
            return Err(ProgressError::NotFound);
        }
        self.course_progress(user_id, instructor, page).await
    }

    /// Consecutive days with any progress, ending today or yesterday (a streak is not broken
    /// until a whole day passes without learning), in the given UTC offset.
    pub async fn streak_days(&self, user_id: Uuid, utc_offset_minutes: i32) -> Result<u32, ProgressError> {
        Ok(streak::streak_days(&self.db.conn, user_id, utc_offset_minutes, streak::MAX_STREAK_DAYS).await?)
    }
}

/// One lesson of an enrolled course's outline (or a bare enrollment or module, when the course
/// has no modules or the module no lessons).
#[derive(FromQueryResult)]
struct OutlineRow {
    enrollment_id: Uuid,
    course_id: Uuid,
    enrolled_at: DateTime<Utc>,
    completed_at: Option<DateTime<Utc>>,
    title: Option<String>,
    module_id: Option<Uuid>,
    lesson_id: Option<Uuid>,
    done: i32,
}

/// The enrollments `ids` selects (all `user_id`'s), joined to their outlines in reading order.
fn outline_of(ids: SelectStatement, user_id: Uuid) -> SelectStatement {
    let e = enrollment::Entity;
    let (c, m, l, lp) = (course::Entity, module::Entity, lesson::Entity, lesson_progress::Entity);
    let completed = Expr::col((lp, lesson_progress::Column::Status)).eq(ProgressStatus::Completed.as_str());
    Query::select()
        .expr_as(Expr::col((e, enrollment::Column::Id)), "enrollment_id")
        .expr_as(Expr::col((e, enrollment::Column::CourseId)), "course_id")
        .expr_as(Expr::col((e, enrollment::Column::EnrolledAt)), "enrolled_at")
        .expr_as(Expr::col((e, enrollment::Column::CompletedAt)), "completed_at")
        .expr_as(Expr::col((c, course::Column::Title)), "title")
        .expr_as(Expr::col((m, module::Column::Id)), "module_id")
        .expr_as(Expr::col((l, lesson::Column::Id)), "lesson_id")
        .expr_as(Expr::case(completed, 1).finally(0), "done")
        .from(e)
        .left_join(c, Expr::col((c, course::Column::Id)).equals((e, enrollment::Column::CourseId)))
        .left_join(m, Expr::col((m, module::Column::CourseId)).equals((e, enrollment::Column::CourseId)))
        .left_join(l, Expr::col((l, lesson::Column::ModuleId)).equals((m, module::Column::Id)))
        .left_join(
            lp,
            Expr::col((lp, lesson_progress::Column::LessonId))
                .equals((l, lesson::Column::Id))
                // The student as a value, not `e.user_id`: PostgreSQL then reads the student's
                // rows once instead of once per lesson (a quarter of the time on a large table).
                .and(Expr::col((lp, lesson_progress::Column::UserId)).eq(user_id)),
        )
        .and_where(Expr::col((e, enrollment::Column::Id)).in_subquery(ids))
        .order_by((e, enrollment::Column::Id), Order::Asc)
        .order_by((m, module::Column::Position), Order::Asc)
        .order_by((l, lesson::Column::Position), Order::Asc)
        .to_owned()
}
