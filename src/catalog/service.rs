//! Course authoring and browsing.

use std::{collections::HashMap, sync::Arc, time::Duration};

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait,
    ActiveValue::Set,
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, IntoActiveModel, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect,
    sea_query::{Expr, ExprTrait},
};
use serde::{Deserialize, Serialize};
use serde_json::json;
use utoipa::ToSchema;
use uuid::Uuid;

use super::{
    access::{can_edit, can_view, is_owner_or_admin},
    positions::{self, Ordered},
};
use crate::{
    entities::{course, enrollment, lesson, module},
    infra::{
        cache::{GenCache, Generation},
        db::{Db, is_unique_violation},
    },
    kernel::audit::{self, Event},
    kernel::context::{Principal, RequestContext, Role},
    kernel::{
        facts::{Fact, OutlineShrunk, ReactionError, Reactor},
        pagination::{Page, PageRequest},
    },
};

#[derive(Debug, thiserror::Error)]
pub enum CatalogError {
    #[error("validation failed")]
    Validation(Vec<(String, String)>),
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

fn invalid(field: &str, msg: impl Into<String>) -> CatalogError {
    CatalogError::Validation(vec![(field.to_string(), msg.into())])
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Level {
    Beginner,
    Intermediate,
    Advanced,
}

impl Level {
    pub fn as_str(self) -> &'static str {
        match self {
            Level::Beginner => "beginner",
            Level::Intermediate => "intermediate",
            Level::Advanced => "advanced",
        }
    }
    fn parse(s: &str) -> Level {
        match s {
            "intermediate" => Level::Intermediate,
            "advanced" => Level::Advanced,
            _ => Level::Beginner,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LessonKind {
    Video,
    Reading,
    Exercise,
    Project,
    Quiz,
}

impl LessonKind {
    pub fn as_str(self) -> &'static str {
        match self {
            LessonKind::Video => "video",
            LessonKind::Reading => "reading",
            LessonKind::Exercise => "exercise",
            LessonKind::Project => "project",
            LessonKind::Quiz => "quiz",
        }
    }
    fn parse(s: &str) -> LessonKind {
        match s {
            "video" => LessonKind::Video,
            "exercise" => LessonKind::Exercise,
            "project" => LessonKind::Project,
            "quiz" => LessonKind::Quiz,
            _ => LessonKind::Reading,
        }
    }
}

// ---- inputs (deserialised at the edge; unknown fields are rejected there) ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCourse {
    /// 3 to 64 characters of `a-z`, `0-9` and `-`; unique.
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub level: Level,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CoursePatch {
    pub title: Option<String>,
    pub summary: Option<String>,
    pub level: Option<Level>,
    pub published: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModule {
    pub title: String,
    /// 1-based; omitted appends. Later modules move down by one.
    pub position: Option<i32>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModulePatch {
    pub title: Option<String>,
    /// 1-based new position within the course; the others close up around it.
    pub position: Option<i32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLesson {
    pub title: String,
    pub kind: LessonKind,
    /// 1-based; omitted appends. Later lessons move down by one.
    pub position: Option<i32>,
    /// A URL or a markdown body, up to 200,000 characters.
    pub content: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LessonPatch {
    pub title: Option<String>,
    pub kind: Option<LessonKind>,
    /// 1-based new position within its module.
    pub position: Option<i32>,
    /// An empty string removes the content.
    pub content: Option<String>,
}

// ---- views ----

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CourseSummary {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub level: Level,
    pub published: bool,
    pub instructor_id: Uuid,
    pub module_count: u64,
    pub lesson_count: u64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LessonOutline {
    pub id: Uuid,
    pub title: String,
    pub kind: LessonKind,
    pub position: i32,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModuleView {
    pub id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    pub position: i32,
    pub lessons: Vec<LessonOutline>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CourseView {
    pub id: Uuid,
    pub slug: String,
    pub title: String,
    pub summary: String,
    pub level: Level,
    pub published: bool,
    pub instructor_id: Uuid,
    pub module_count: u64,
    pub lesson_count: u64,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    /// In position order, each with its lessons in position order.
    pub modules: Vec<ModuleView>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LessonView {
    pub id: Uuid,
    pub module_id: Uuid,
    pub course_id: Uuid,
    pub title: String,
    pub kind: LessonKind,
    pub position: i32,
    pub content: Option<String>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
}

impl From<lesson::Model> for LessonView {
    fn from(l: lesson::Model) -> Self {
        LessonView {
            id: l.id,
            module_id: l.module_id,
            course_id: l.course_id,
            title: l.title,
            kind: LessonKind::parse(&l.kind),
            position: l.position,
            content: l.content,
            created_at: l.created_at,
            updated_at: l.updated_at,
        }
    }
}

// ---- validation ----

pub fn validate_slug(slug: &str) -> Result<(), CatalogError> {
    let ok = (3..=64).contains(&slug.len())
        && slug.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok { Ok(()) } else { Err(invalid("slug", "must be 3 to 64 characters of a-z, 0-9 and '-'")) }
}

fn validate_title(field: &str, title: &str) -> Result<String, CatalogError> {
    let t = title.trim();
    let n = t.chars().count();
    if n == 0 || n > 200 {
        return Err(invalid(field, "must be 1 to 200 characters"));
    }
    if t.chars().any(char::is_control) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(t.to_string())
}

fn validate_text(field: &str, text: &str, max: usize) -> Result<String, CatalogError> {
    if text.chars().count() > max {
        return Err(invalid(field, format!("must be at most {max} characters")));
    }
    // Line breaks and tabs are normal in markdown; other control characters are not.
    if text.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
        return Err(invalid(field, "must not contain control characters"));
    }
    Ok(text.to_string())
}

fn validate_position(pos: i32, max: i32) -> Result<i32, CatalogError> {
    if (1..=max).contains(&pos) { Ok(pos) } else { Err(invalid("position", format!("must be between 1 and {max}"))) }
}

/// Collects every field error of an input at once, so the client fixes them in one go.
fn collect(results: Vec<Result<(), CatalogError>>) -> Result<(), CatalogError> {
    let errors: Vec<_> = results
        .into_iter()
        .filter_map(Result::err)
        .flat_map(|e| match e {
            CatalogError::Validation(v) => v,
            _ => vec![],
        })
        .collect();
    if errors.is_empty() { Ok(()) } else { Err(CatalogError::Validation(errors)) }
}

const SUMMARY_MAX: usize = 2_000;
const CONTENT_MAX: usize = 200_000;

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
    async fn course_for_edit<C: ConnectionTrait>(
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
    async fn lock_course_enrollments<C: ConnectionTrait>(db: &C, course_id: Uuid) -> Result<(), DbErr> {
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
        let mut q = course::Entity::find().order_by_asc(course::Column::Id).limit(page.limit + 1);
        q = match p.role {
            Role::Admin => q,
            Role::Instructor => {
                q.filter(course::Column::Published.eq(true).or(course::Column::InstructorId.eq(p.user_id)))
            }
            Role::Student => q.filter(course::Column::Published.eq(true)),
        };
        if let Some(after) = page.after {
            q = q.filter(course::Column::Id.gt(after));
        }
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
                level: Level::parse(&c.level),
                published: c.published,
                instructor_id: c.instructor_id,
            })
            .collect();
        Ok(Page::from_rows(items, page, |c| c.id))
    }

    async fn outline<C: ConnectionTrait>(db: &C, c: course::Model) -> Result<CourseView, DbErr> {
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
                kind: LessonKind::parse(&l.kind),
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
            level: Level::parse(&c.level),
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

    pub async fn create_course(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        input: NewCourse,
    ) -> Result<CourseView, CatalogError> {
        let mut title = String::new();
        let mut summary = String::new();
        collect(vec![
            validate_slug(&input.slug),
            validate_title("title", &input.title).map(|t| title = t),
            validate_text("summary", &input.summary, SUMMARY_MAX).map(|s| summary = s),
        ])?;
        let now = Utc::now();
        let txn = self.db.begin_write().await?;
        let c = course::ActiveModel {
            id: Set(Uuid::now_v7()),
            slug: Set(input.slug.clone()),
            instructor_id: Set(p.user_id),
            title: Set(title),
            summary: Set(summary),
            level: Set(input.level.as_str().to_string()),
            published: Set(false),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await
        .map_err(|e| if is_unique_violation(&e) { CatalogError::SlugTaken } else { e.into() })?;
        audit::record(
            &*txn,
            ctx,
            Event::new("course.create", Some(p.user_id)).target("course", c.id).details(json!({"slug": c.slug})),
        )
        .await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(Self::outline(&self.db.conn, c).await?)
    }

    pub async fn update_course(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        id: Uuid,
        patch: CoursePatch,
    ) -> Result<CourseView, CatalogError> {
        let mut title = None;
        let mut summary = None;
        collect(vec![
            patch.title.as_deref().map_or(Ok(()), |t| validate_title("title", t).map(|t| title = Some(t))),
            patch
                .summary
                .as_deref()
                .map_or(Ok(()), |s| validate_text("summary", s, SUMMARY_MAX).map(|s| summary = Some(s))),
        ])?;
        let txn = self.db.begin_write().await?;
        let c = Self::course_for_edit(&*txn, p, id).await?;
        let mut changed = Vec::new();
        let mut am = c.clone().into_active_model();
        if let Some(t) = title.filter(|t| *t != c.title) {
            am.title = Set(t);
            changed.push("title");
        }
        if let Some(s) = summary.filter(|s| *s != c.summary) {
            am.summary = Set(s);
            changed.push("summary");
        }
        if let Some(l) = patch.level.filter(|l| l.as_str() != c.level) {
            am.level = Set(l.as_str().to_string());
            changed.push("level");
        }
        if let Some(pb) = patch.published.filter(|pb| *pb != c.published) {
            am.published = Set(pb);
            changed.push("published");
        }
        // An edit that changes nothing writes nothing, so it needs no audit row either.
        let c = if changed.is_empty() {
            c
        } else {
            am.updated_at = Set(Utc::now());
            let c = am.update(&*txn).await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("course.update", Some(p.user_id))
                    .target("course", c.id)
                    .details(json!({"fields": changed, "published": c.published})),
            )
            .await?;
            c
        };
        let view = Self::outline(&*txn, c).await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(view)
    }

    pub async fn create_module(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        course_id: Uuid,
        input: NewModule,
    ) -> Result<ModuleView, CatalogError> {
        let title = validate_title("title", &input.title)?;
        let txn = self.db.begin_write().await?;
        let c = Self::course_for_edit(&*txn, p, course_id).await?;
        let count = module::Entity::find().filter(module::Column::CourseId.eq(c.id)).count(&*txn).await? as i32;
        let position = match input.position {
            Some(pos) => validate_position(pos, count + 1)?,
            None => count + 1,
        };
        positions::shift(&*txn, Ordered::Modules, c.id, position, 1).await?;
        let now = Utc::now();
        let m = module::ActiveModel {
            id: Set(Uuid::now_v7()),
            course_id: Set(c.id),
            title: Set(title),
            position: Set(position),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await?;
        Self::touch_course(&*txn, c.id).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("module.create", Some(p.user_id))
                .target("module", m.id)
                .details(json!({"course_id": c.id, "position": position})),
        )
        .await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(ModuleView { id: m.id, course_id: m.course_id, title: m.title, position: m.position, lessons: vec![] })
    }

    /// Bumps the course's `updated_at`: any outline edit is an edit of the course.
    async fn touch_course<C: ConnectionTrait>(db: &C, id: Uuid) -> Result<(), DbErr> {
        course::Entity::update_many()
            .col_expr(course::Column::UpdatedAt, Expr::value(Utc::now()))
            .filter(course::Column::Id.eq(id))
            .exec(db)
            .await?;
        Ok(())
    }

    async fn module_for_edit<C: ConnectionTrait>(
        db: &C,
        p: &Principal,
        id: Uuid,
    ) -> Result<(course::Model, module::Model), CatalogError> {
        let m = module::Entity::find_by_id(id).one(db).await?.ok_or(CatalogError::NotFound)?;
        let c = Self::course_for_edit(db, p, m.course_id).await?;
        // Re-read under the course lock: a concurrent edit may have moved or deleted it.
        let m = module::Entity::find_by_id(id).one(db).await?.ok_or(CatalogError::NotFound)?;
        Ok((c, m))
    }

    async fn module_view<C: ConnectionTrait>(db: &C, m: module::Model) -> Result<ModuleView, DbErr> {
        let lessons = lesson::Entity::find()
            .filter(lesson::Column::ModuleId.eq(m.id))
            .order_by_asc(lesson::Column::Position)
            .all(db)
            .await?
            .into_iter()
            .map(|l| LessonOutline { id: l.id, title: l.title, kind: LessonKind::parse(&l.kind), position: l.position })
            .collect();
        Ok(ModuleView { id: m.id, course_id: m.course_id, title: m.title, position: m.position, lessons })
    }

    pub async fn update_module(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        id: Uuid,
        patch: ModulePatch,
    ) -> Result<ModuleView, CatalogError> {
        let title = patch.title.as_deref().map(|t| validate_title("title", t)).transpose()?;
        let txn = self.db.begin_write().await?;
        let (c, m) = Self::module_for_edit(&*txn, p, id).await?;
        let mut changed = Vec::new();
        if let Some(new) = patch.position {
            let count = module::Entity::find().filter(module::Column::CourseId.eq(c.id)).count(&*txn).await? as i32;
            let new = validate_position(new, count)?;
            if new != m.position {
                positions::move_to(&*txn, Ordered::Modules, c.id, m.id, m.position, new).await?;
                changed.push("position");
            }
        }
        if let Some(t) = title.filter(|t| *t != m.title) {
            module::Entity::update_many()
                .col_expr(module::Column::Title, Expr::value(t))
                .filter(module::Column::Id.eq(m.id))
                .exec(&*txn)
                .await?;
            changed.push("title");
        }
        if !changed.is_empty() {
            module::Entity::update_many()
                .col_expr(module::Column::UpdatedAt, Expr::value(Utc::now()))
                .filter(module::Column::Id.eq(m.id))
                .exec(&*txn)
                .await?;
            Self::touch_course(&*txn, c.id).await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("module.update", Some(p.user_id))
                    .target("module", m.id)
                    .details(json!({"course_id": c.id, "fields": changed})),
            )
            .await?;
        }
        let m = module::Entity::find_by_id(id).one(&*txn).await?.ok_or(CatalogError::NotFound)?;
        let view = Self::module_view(&*txn, m).await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(view)
    }

    pub async fn delete_module(&self, ctx: &RequestContext, p: &Principal, id: Uuid) -> Result<(), CatalogError> {
        let txn = self.db.begin_write().await?;
        let (c, m) = Self::module_for_edit(&*txn, p, id).await?;
        let lessons = lesson::Entity::find().filter(lesson::Column::ModuleId.eq(m.id)).count(&*txn).await?;
        Self::lock_course_enrollments(&*txn, c.id).await?;
        // Lessons and their progress go with the module (foreign keys cascade).
        module::Entity::delete_by_id(m.id).exec(&*txn).await?;
        positions::shift(&*txn, Ordered::Modules, c.id, m.position + 1, -1).await?;
        Self::touch_course(&*txn, c.id).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("module.delete", Some(p.user_id))
                .target("module", m.id)
                .details(json!({"course_id": c.id, "lessons_removed": lessons})),
        )
        .await?;
        let shrunk = Fact::OutlineShrunk(OutlineShrunk { course_id: c.id, by: p.user_id });
        self.reactor.react(&txn, ctx, vec![shrunk]).await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(())
    }

    pub async fn create_lesson(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        module_id: Uuid,
        input: NewLesson,
    ) -> Result<LessonView, CatalogError> {
        let mut title = String::new();
        let mut content = None;
        collect(vec![
            validate_title("title", &input.title).map(|t| title = t),
            input.content.as_deref().map_or(Ok(()), |s| {
                validate_text("content", s, CONTENT_MAX).map(|s| content = Some(s).filter(|s| !s.is_empty()))
            }),
        ])?;
        let txn = self.db.begin_write().await?;
        let (c, m) = Self::module_for_edit(&*txn, p, module_id).await?;
        let count = lesson::Entity::find().filter(lesson::Column::ModuleId.eq(m.id)).count(&*txn).await? as i32;
        let position = match input.position {
            Some(pos) => validate_position(pos, count + 1)?,
            None => count + 1,
        };
        positions::shift(&*txn, Ordered::Lessons, m.id, position, 1).await?;
        let now = Utc::now();
        let l = lesson::ActiveModel {
            id: Set(Uuid::now_v7()),
            module_id: Set(m.id),
            course_id: Set(c.id),
            title: Set(title),
            kind: Set(input.kind.as_str().to_string()),
            position: Set(position),
            content: Set(content),
            created_at: Set(now),
            updated_at: Set(now),
        }
        .insert(&*txn)
        .await?;
        Self::touch_course(&*txn, c.id).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("lesson.create", Some(p.user_id))
                .target("lesson", l.id)
                .details(json!({"course_id": c.id, "module_id": m.id, "position": position})),
        )
        .await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(l.into())
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

    async fn lesson_for_edit<C: ConnectionTrait>(
        db: &C,
        p: &Principal,
        id: Uuid,
    ) -> Result<(course::Model, lesson::Model), CatalogError> {
        let l = lesson::Entity::find_by_id(id).one(db).await?.ok_or(CatalogError::NotFound)?;
        let c = Self::course_for_edit(db, p, l.course_id).await?;
        let l = lesson::Entity::find_by_id(id).one(db).await?.ok_or(CatalogError::NotFound)?;
        Ok((c, l))
    }

    pub async fn update_lesson(
        &self,
        ctx: &RequestContext,
        p: &Principal,
        id: Uuid,
        patch: LessonPatch,
    ) -> Result<LessonView, CatalogError> {
        let mut title = None;
        let mut content = None;
        collect(vec![
            patch.title.as_deref().map_or(Ok(()), |t| validate_title("title", t).map(|t| title = Some(t))),
            patch.content.as_deref().map_or(Ok(()), |s| {
                validate_text("content", s, CONTENT_MAX).map(|s| content = Some(Some(s).filter(|s| !s.is_empty())))
            }),
        ])?;
        let txn = self.db.begin_write().await?;
        let (c, l) = Self::lesson_for_edit(&*txn, p, id).await?;
        let mut changed = Vec::new();
        if let Some(new) = patch.position {
            let count =
                lesson::Entity::find().filter(lesson::Column::ModuleId.eq(l.module_id)).count(&*txn).await? as i32;
            let new = validate_position(new, count)?;
            if new != l.position {
                positions::move_to(&*txn, Ordered::Lessons, l.module_id, l.id, l.position, new).await?;
                changed.push("position");
            }
        }
        let mut upd = lesson::Entity::update_many().filter(lesson::Column::Id.eq(l.id));
        if let Some(t) = title.filter(|t| *t != l.title) {
            upd = upd.col_expr(lesson::Column::Title, Expr::value(t));
            changed.push("title");
        }
        if let Some(k) = patch.kind.filter(|k| k.as_str() != l.kind) {
            upd = upd.col_expr(lesson::Column::Kind, Expr::value(k.as_str()));
            changed.push("kind");
        }
        if let Some(ct) = content.filter(|ct| *ct != l.content) {
            upd = upd.col_expr(lesson::Column::Content, Expr::value(ct));
            changed.push("content");
        }
        if !changed.is_empty() {
            upd.col_expr(lesson::Column::UpdatedAt, Expr::value(Utc::now())).exec(&*txn).await?;
            Self::touch_course(&*txn, c.id).await?;
            audit::record(
                &*txn,
                ctx,
                Event::new("lesson.update", Some(p.user_id))
                    .target("lesson", l.id)
                    .details(json!({"course_id": c.id, "fields": changed})),
            )
            .await?;
        }
        let l = lesson::Entity::find_by_id(id).one(&*txn).await?.ok_or(CatalogError::NotFound)?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(l.into())
    }

    pub async fn delete_lesson(&self, ctx: &RequestContext, p: &Principal, id: Uuid) -> Result<(), CatalogError> {
        let txn = self.db.begin_write().await?;
        let (c, l) = Self::lesson_for_edit(&*txn, p, id).await?;
        Self::lock_course_enrollments(&*txn, c.id).await?;
        // Its progress rows go with it (foreign key cascade), so rollups stay exact.
        lesson::Entity::delete_by_id(l.id).exec(&*txn).await?;
        positions::shift(&*txn, Ordered::Lessons, l.module_id, l.position + 1, -1).await?;
        Self::touch_course(&*txn, c.id).await?;
        audit::record(
            &*txn,
            ctx,
            Event::new("lesson.delete", Some(p.user_id))
                .target("lesson", l.id)
                .details(json!({"course_id": c.id, "module_id": l.module_id})),
        )
        .await?;
        // Removing the one lesson a student had left finishes the course for them.
        let shrunk = Fact::OutlineShrunk(OutlineShrunk { course_id: c.id, by: p.user_id });
        self.reactor.react(&txn, ctx, vec![shrunk]).await?;
        self.cache.generation.bump_after_commit(&txn);
        txn.commit().await?;
        Ok(())
    }
}
