//! The reads of progress: enrollments, per-course rollups with modules, streaks.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter, QueryOrder};
use uuid::Uuid;

use super::{
    ProgressError, ProgressService,
    access::completed_lessons,
    model::{CourseProgress, EnrollmentView, ModuleRollup},
};
use crate::{
    catalog::access::{in_courses_taught_by, teaches},
    entities::{course, enrollment, lesson, module},
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
    /// removing lessons is reflected at once.
    pub async fn course_progress(
        &self,
        user_id: Uuid,
        instructor: Option<Uuid>,
        page: PageRequest,
    ) -> Result<Page<CourseProgress>, ProgressError> {
        let db = &self.db.conn;
        let mut q = page.oldest_first(
            enrollment::Entity::find().filter(enrollment::Column::UserId.eq(user_id)),
            enrollment::Column::Id,
        );
        if let Some(i) = instructor {
            q = q.filter(in_courses_taught_by(i));
        }
        let enrollments = q.all(db).await?;
        // Only the page's courses are loaded; the extra "is there more" row is included, which
        // costs a little and keeps the code simple.
        let ids: Vec<Uuid> = enrollments.iter().map(|e| e.course_id).collect();
        let (courses, modules, lessons, done) = if ids.is_empty() {
            Default::default()
        } else {
            let courses: HashMap<Uuid, course::Model> = course::Entity::find()
                .filter(course::Column::Id.is_in(ids.clone()))
                .all(db)
                .await?
                .into_iter()
                .map(|c| (c.id, c))
                .collect();
            let modules = module::Entity::find()
                .filter(module::Column::CourseId.is_in(ids.clone()))
                .order_by_asc(module::Column::CourseId)
                .order_by_asc(module::Column::Position)
                .all(db)
                .await?;
            let lessons = lesson::Entity::find()
                .filter(lesson::Column::CourseId.is_in(ids.clone()))
                .order_by_asc(lesson::Column::Position)
                .all(db)
                .await?;
            let done = completed_lessons(db, user_id, &ids).await?;
            (courses, modules, lessons, done)
        };
        let mut lessons_by_module: HashMap<Uuid, Vec<&lesson::Model>> = HashMap::new();
        for l in &lessons {
            lessons_by_module.entry(l.module_id).or_default().push(l);
        }
        let items = enrollments
            .into_iter()
            .map(|e| {
                let mut out = CourseProgress {
                    course_id: e.course_id,
                    title: courses.get(&e.course_id).map(|c| c.title.clone()).unwrap_or_default(),
                    completed_lessons: 0,
                    total_lessons: 0,
                    percent: 0.0,
                    next_lesson_id: None,
                    completed_at: e.completed_at,
                    enrolled_at: e.enrolled_at,
                    modules: vec![],
                };
                // `modules` is ordered by course then position, lessons by position: walking
                // them in order visits the outline in reading order.
                for m in modules.iter().filter(|m| m.course_id == e.course_id) {
                    let ls = lessons_by_module.get(&m.id).map(Vec::as_slice).unwrap_or(&[]);
                    let completed = ls.iter().filter(|l| done.contains(&l.id)).count() as u64;
                    if out.next_lesson_id.is_none() {
                        out.next_lesson_id = ls.iter().find(|l| !done.contains(&l.id)).map(|l| l.id);
                    }
                    out.completed_lessons += completed;
                    out.total_lessons += ls.len() as u64;
                    out.modules.push(ModuleRollup {
                        module_id: m.id,
                        completed_lessons: completed,
                        total_lessons: ls.len() as u64,
                        percent: percent(completed, ls.len() as u64),
                    });
                }
                out.percent = percent(out.completed_lessons, out.total_lessons);
                (e.id, out)
            })
            .collect::<Vec<_>>();
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
