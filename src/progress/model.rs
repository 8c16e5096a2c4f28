//! What the progress API takes and returns.

use crate::kernel::input::schema;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;
use uuid::Uuid;

use crate::entities::{enrollment, lesson_progress};
pub use crate::{entities::enums::ProgressStatus, kernel::facts::CourseRollup};

/// Most time one update may add to a lesson's total. A client reporting more (a clock jump,
/// a tab left open for a week, a hostile value) is clamped, not refused.
pub const MAX_TIME_STEP_SECS: i64 = 86_400;
/// Most events in one batch; more is a 422 (and a body over the size limit is a 413 first).
pub const MAX_BATCH_EVENTS: usize = 500;

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressUpdate {
    pub status: ProgressStatus,
    /// 0.0 to 1.0; completing a lesson sets it to 1.0.
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub progress: Option<f64>,
    /// The total time spent on the lesson so far, as the client counts it. The stored total
    /// only grows, by at most 86,400 per update.
    #[schema(minimum = 0)]
    pub time_spent_seconds: Option<i64>,
    /// 0 to 100; the best score is kept.
    #[schema(minimum = 0.0, maximum = 100.0)]
    pub score: Option<f64>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressEvent {
    /// Client-chosen, unique per user (1 to 100 characters). A repeat is skipped.
    #[schema(schema_with = schema::client_key::<100>)]
    pub event_id: String,
    pub lesson_id: Uuid,
    pub status: ProgressStatus,
    #[schema(minimum = 0.0, maximum = 1.0)]
    pub progress: Option<f64>,
    #[schema(minimum = 0)]
    pub time_spent_seconds: Option<i64>,
    #[schema(minimum = 0.0, maximum = 100.0)]
    pub score: Option<f64>,
    pub occurred_at: DateTime<Utc>,
}

#[derive(Debug, Clone, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ProgressBatch {
    /// At most 500.
    #[schema(max_items = 500)]
    pub events: Vec<ProgressEvent>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LessonProgressView {
    pub lesson_id: Uuid,
    pub course_id: Uuid,
    pub status: ProgressStatus,
    pub progress: f64,
    pub time_spent_seconds: i64,
    pub score: Option<f64>,
    pub completed_at: Option<DateTime<Utc>>,
    pub updated_at: DateTime<Utc>,
}

impl From<lesson_progress::Model> for LessonProgressView {
    fn from(r: lesson_progress::Model) -> Self {
        LessonProgressView {
            lesson_id: r.lesson_id,
            course_id: r.course_id,
            status: r.status,
            progress: r.progress,
            time_spent_seconds: r.time_spent_seconds,
            score: r.score,
            completed_at: r.completed_at,
            updated_at: r.updated_at,
        }
    }
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct LessonProgressResult {
    pub lesson: LessonProgressView,
    pub course: CourseRollup,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct RejectedEvent {
    pub event_id: String,
    /// `not_found`: the lesson does not exist or is not in a course you are enrolled in.
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct BatchResult {
    pub received: usize,
    pub applied: usize,
    /// Events whose `event_id` had been seen before (also within this batch).
    pub duplicates: usize,
    /// Events not applied and not remembered: a later retry may still apply them.
    pub rejected: Vec<RejectedEvent>,
    /// The rollups of every course an applied event touched.
    pub courses: Vec<CourseRollup>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ModuleRollup {
    pub module_id: Uuid,
    pub completed_lessons: u64,
    pub total_lessons: u64,
    pub percent: f64,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CourseProgress {
    pub course_id: Uuid,
    pub title: String,
    pub completed_lessons: u64,
    pub total_lessons: u64,
    pub percent: f64,
    /// The first lesson in outline order that is not completed; null when all are.
    pub next_lesson_id: Option<Uuid>,
    pub completed_at: Option<DateTime<Utc>>,
    pub enrolled_at: DateTime<Utc>,
    pub modules: Vec<ModuleRollup>,
}

#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct EnrollmentView {
    pub id: Uuid,
    pub course_id: Uuid,
    pub enrolled_at: DateTime<Utc>,
    pub completed_at: Option<DateTime<Utc>>,
}

impl From<enrollment::Model> for EnrollmentView {
    fn from(e: enrollment::Model) -> Self {
        EnrollmentView { id: e.id, course_id: e.course_id, enrolled_at: e.enrolled_at, completed_at: e.completed_at }
    }
}
