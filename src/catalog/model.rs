//! What the catalog API takes and returns.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use super::validate::{CONTENT_MAX, SUMMARY_MAX, TITLE_MAX};
pub use crate::entities::enums::{LessonKind, Level};
use crate::{entities::lesson, kernel::input::schema};

// ---- inputs (deserialised at the edge; unknown fields are rejected there) ----

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewCourse {
    /// 3 to 64 characters of `a-z`, `0-9` and `-`; unique.
    #[schema(schema_with = schema::slug)]
    pub slug: String,
    #[schema(schema_with = schema::title::<TITLE_MAX>)]
    pub title: String,
    /// Markdown, at most 2,000 characters.
    #[schema(schema_with = schema::text::<SUMMARY_MAX>)]
    pub summary: String,
    pub level: Level,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CoursePatch {
    #[schema(schema_with = schema::title_or_null::<TITLE_MAX>)]
    pub title: Option<String>,
    #[schema(schema_with = schema::text_or_null::<SUMMARY_MAX>)]
    pub summary: Option<String>,
    pub level: Option<Level>,
    pub published: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewModule {
    #[schema(schema_with = schema::title::<TITLE_MAX>)]
    pub title: String,
    /// 1-based; omitted or past the end appends. Later modules move down by one.
    #[schema(minimum = 1)]
    pub position: Option<i32>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ModulePatch {
    #[schema(schema_with = schema::title_or_null::<TITLE_MAX>)]
    pub title: Option<String>,
    /// 1-based new position within the course (past the end: last); the others close up around it.
    #[schema(minimum = 1)]
    pub position: Option<i32>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct NewLesson {
    #[schema(schema_with = schema::title::<TITLE_MAX>)]
    pub title: String,
    pub kind: LessonKind,
    /// 1-based; omitted or past the end appends. Later lessons move down by one.
    #[schema(minimum = 1)]
    pub position: Option<i32>,
    /// A URL or a markdown body, up to 200,000 characters.
    #[schema(schema_with = schema::text_or_null::<CONTENT_MAX>)]
    pub content: Option<String>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LessonPatch {
    #[schema(schema_with = schema::title_or_null::<TITLE_MAX>)]
    pub title: Option<String>,
    pub kind: Option<LessonKind>,
    /// 1-based new position within its module (past the end: last).
    #[schema(minimum = 1)]
    pub position: Option<i32>,
    /// An empty string removes the content.
    #[schema(schema_with = schema::text_or_null::<CONTENT_MAX>)]
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
            kind: l.kind,
            position: l.position,
            content: l.content,
            created_at: l.created_at,
            updated_at: l.updated_at,
        }
    }
}
