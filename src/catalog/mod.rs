//! Courses, modules and lessons: authoring and browsing. Knows the database and the audit
//! trail, nothing of HTTP.

pub mod access;
mod browse;
mod courses;
mod lessons;
mod model;
mod modules;
pub mod positions;
mod validate;

use std::{sync::Arc, time::Duration};

use chrono::Utc;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, sea_query::Expr,
};
use uuid::Uuid;

use self::access::can_edit;
pub use self::{model::*, validate::validate_slug};
use crate::{
    entities::{course, enrollment},
    infra::{
        cache::{GenCache, Generation},
        db::Db,
    },
    kernel::{
        context::Principal,
        facts::{ReactionError, Reactor},
        fields::FieldErrors,
        pagination::Page,
    },
};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("validation failed")]
    Validation(#[from] FieldErrors),
    /// Missing, or not visible / not editable by the caller: the two are indistinguishable.
    #[error("not found")]
    NotFound,
    #[error("slug already taken")]
    SlugTaken,
    #[error("database")]
    Db(#[from] DbErr),
    #[error("consequences of an outline change")]
    Reaction(#[from] ReactionError),
}

pub struct CatalogService {
    pub db: Db,
    pub cache: CatalogCache,
    /// Removing lessons can complete students' courses; the reactor decides what follows.
    pub reactor: Arc<dyn Reactor>,
}

/// What students read most: course outlines and the published course list. Cached under the
/// catalog's generation, which every edit bumps after committing (see `infra::cache`), so no
/// instance serves an outline older than the last edit that returned.
pub struct CatalogCache {
    pub generation: Arc<Generation>,
    outlines: GenCache<Uuid, Option<Arc<CourseView>>>,
    published_pages: GenCache<(u64, Option<Uuid>), Arc<Page<CourseSummary>>>,
}

impl CatalogCache {
    pub fn new(generation: Generation) -> Self {
        // The TTL only bounds staleness if a generation bump is lost (Redis outage mid-edit).
        let ttl = Duration::from_secs(30);
        CatalogCache {
            generation: Arc::new(generation),
            outlines: GenCache::new(10_000, ttl),
            published_pages: GenCache::new(1_000, ttl),
        }
    }
}

impl CatalogService {
    pub fn new(db: Db, generation: Generation, reactor: Arc<dyn Reactor>) -> Self {
        CatalogService { db, cache: CatalogCache::new(generation), reactor }
    }

    /// Loads a course for an edit and takes the outline's write lock: every structural edit of
    /// one course (and its positions) runs one at a time.
    pub(super) async fn course_for_edit<C: ConnectionTrait>(
        db: &C,
        p: &Principal,
        id: Uuid,
    ) -> Result<course::Model, CatalogError> {
        let mut q = course::Entity::find_by_id(id);
        if db.get_database_backend() == DbBackend::Postgres {
            q = q.lock_exclusive();
        }
        match q.one(db).await? {
            Some(c) if can_edit(&c, p) => Ok(c),
            _ => Err(CatalogError::NotFound),
        }
    }

    /// Locks the course's enrollment rows before a delete (PostgreSQL). A progress write
    /// locks an enrollment and then references a lesson; a delete removes a lesson and then
    /// updates enrollments. Taking the enrollments first gives both the same order, so they
    /// cannot deadlock.
    pub(super) async fn lock_course_enrollments<C: ConnectionTrait>(db: &C, course_id: Uuid) -> Result<(), DbErr> {
        if db.get_database_backend() == DbBackend::Postgres {
            enrollment::Entity::find()
                .select_only()
                .column(enrollment::Column::Id)
                .filter(enrollment::Column::CourseId.eq(course_id))
                .order_by_asc(enrollment::Column::Id)
                .lock_exclusive()
                .into_tuple::<Uuid>()
                .all(db)
                .await?;
        }
        Ok(())
    }

    /// Bumps the course's `updated_at`: any outline edit is an edit of the course.
    pub(super) async fn touch_course<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<(), DbErr> {
        course::Entity::update_many()
            .col_expr(course::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(course::Column::Id.eq(id))
            .exec(db)
            .await?;
        Ok(())
    }
}
