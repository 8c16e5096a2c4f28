//! Reading the catalog: the course list and outlines (cached under the catalog generation) and
//! single lessons.

use std::{collections::HashMap, sync::Arc};

use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use uuid::Uuid;

use super::{
    CatalogError, CatalogService,
    access::{can_view, is_owner_or_admin},
    model::*,
};
use crate::{
    entities::{course, lesson, module},
    kernel::{
        context::{Principal, Role},
        pagination::{Page, PageRequest},
    },
};

impl CatalogService {
    /// Counts of modules and lessons per course, for the given courses.
    async fn counts<C: ConnectionTrait>(
        db: &C,
        ids: &[Uuid],
    ) -> Result<(HashMap<Uuid, u64>, HashMap<Uuid, u64>), DbErr> {
        if ids.is_empty() {
            return Ok(Default::default());
        }
        let modules: Vec<(Uuid, i64)> = module::Entity::find()
            .select_only()
            .column(module::Column::CourseId)
            .column_as(Expr::col(module::Column::Id).count(), "n")
            .filter(module::Column::CourseId.is_in(ids.iter().copied()))
            .group_by(module::Column::CourseId)
            .into_tuple()
            .all(db)
            .await?;
        let lessons: Vec<(Uuid, i64)> = lesson::Entity::find()
            .select_only()
            .column(lesson::Column::CourseId)
            .column_as(Expr::col(lesson::Column::Id).count(), "n")
            .filter(lesson::Column::CourseId.is_in(ids.iter().copied()))
            .group_by(lesson::Column::CourseId)
            .into_tuple()
            .all(db)
            .await?;
        let to_map = |v: Vec<(Uuid, i64)>| v.into_iter().map(|(k, n)| (k, n as u64)).collect();
        Ok((to_map(modules), to_map(lessons)))
    }

    pub async fn list_courses(&self, p: &Principal, page: PageRequest) -> Result<Page<CourseSummary>, CatalogError> {
        if p.role == Role::Student {
            // Every student sees the same published list: one cached copy per page serves all.
            let generation = self.cache.generation.current().await;
            let cached = self
                .cache
                .published_pages
                .get_or_load(generation, (page.limit, page.after), || async {
                    self.load_course_list(p, page).await.map(Arc::new)
                })
                .await?;
            return Ok((*cached).clone());
        }
        self.load_course_list(p, page).await
    }

    async fn load_course_list(&self, p: &Principal, page: PageRequest) -> Result<Page<CourseSummary>, CatalogError> {
        let mut q = page.oldest_first(course::Entity::find(), course::Column::Id);
        q = match p.role {
            Role::Admin => q,
            Role::Instructor => {
                q.filter(course::Column::Published.eq(true).or(course::Column::InstructorId.eq(p.user_id)))
            }
            Role::Student => q.filter(course::Column::Published.eq(true)),
        };
        let rows = q.all(&self.db.conn).await?;
        let ids: Vec<Uuid> = rows.iter().map(|c| c.id).collect();
        let (mc, lc) = Self::counts(&self.db.conn, &ids).await?;
        let items = rows
            .into_iter()
            .map(|c| CourseSummary {
                module_count: mc.get(&c.id).copied().unwrap_or(0),
                lesson_count: lc.get(&c.id).copied().unwrap_or(0),
                id: c.id,
                slug: c.slug,
                title: c.title,
                summary: c.summary,
                level: c.level,
                published: c.published,
                instructor_id: c.instructor_id,
            })
            .collect();
        Ok(Page::from_rows(items, page, |c| c.id))
    }

    pub(super) async fn outline<C: ConnectionTrait>(db: &C, c: course::Model) -> Result<CourseView, DbErr> {
        let modules = module::Entity::find()
            .filter(module::Column::CourseId.eq(c.id))
            .order_by_asc(module::Column::Position)
            .all(db)
            .await?;
        let lessons = lesson::Entity::find()
            .filter(lesson::Column::CourseId.eq(c.id))
            .order_by_asc(lesson::Column::Position)
            .all(db)
            .await?;
        let lesson_count = lessons.len() as u64;
        let mut by_module: HashMap<Uuid, Vec<LessonOutline>> = HashMap::new();
        for l in lessons {
            by_module.entry(l.module_id).or_default().push(LessonOutline {
                id: l.id,
                title: l.title,
                kind: l.kind,
                position: l.position,
            });
        }
        let modules: Vec<ModuleView> = modules
            .into_iter()
            .map(|m| ModuleView {
                lessons: by_module.remove(&m.id).unwrap_or_default(),
                id: m.id,
                course_id: m.course_id,
                title: m.title,
                position: m.position,
            })
            .collect();
        Ok(CourseView {
            id: c.id,
            slug: c.slug,
            title: c.title,
            summary: c.summary,
            level: c.level,
            published: c.published,
            instructor_id: c.instructor_id,
            module_count: modules.len() as u64,
            lesson_count,
            created_at: c.created_at,
            updated_at: c.updated_at,
            modules,
        })
    }

    pub async fn get_course(&self, p: &Principal, id: Uuid) -> Result<CourseView, CatalogError> {
        let generation = self.cache.generation.current().await;
        let view = self
            .cache
            .outlines
            .get_or_load(generation, id, || async {
                match course::Entity::find_by_id(id).one(&self.db.conn).await? {
                    Some(c) => Ok::<_, DbErr>(Some(Arc::new(Self::outline(&self.db.conn, c).await?))),
                    None => Ok(None),
                }
            })
            .await?;
        match view {
            Some(v) if v.published || is_owner_or_admin(v.instructor_id, p) => Ok((*v).clone()),
            _ => Err(CatalogError::NotFound),
        }
    }

    /// A lesson with its content, for whoever may see its course.
    pub async fn get_lesson(&self, p: &Principal, id: Uuid) -> Result<LessonView, CatalogError> {
        let l = lesson::Entity::find_by_id(id).one(&self.db.conn).await?.ok_or(CatalogError::NotFound)?;
        let visible =
            course::Entity::find_by_id(l.course_id).one(&self.db.conn).await?.is_some_and(|c| can_view(&c, p));
        if !visible {
            return Err(CatalogError::NotFound);
        }
        Ok(l.into())
    }
}
