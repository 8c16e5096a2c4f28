//! What happened. A domain write reports typed facts instead of calling its neighbours; the
//! `reactions` module decides what follows each one (audit rows, notifications, learning-path
//! recomputes, achievements, queued emails, live events), inside the same transaction. So a
//! fact has the same consequences whichever door it came through.
//!
//! Domains see only the [`Reactor`] trait; the composition root hands them the one
//! implementation. That keeps the dependency arrow pointing down: `reactions` knows every
//! domain, no domain knows `reactions`.

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sea_orm::DbErr;
use serde::Serialize;
use utoipa::ToSchema;
use uuid::Uuid;

use super::context::RequestContext;
use crate::{
    entities::{achievement, assessment, lesson_progress, submission, submission_file},
    infra::db::WriteTxn,
};

#[derive(Debug, Clone)]
pub enum Fact {
    LessonProgressed(LessonProgressed),
    ProgressBatchApplied(ProgressBatchApplied),
    CourseCompleted(CourseCompleted),
    OutlineShrunk(OutlineShrunk),
    AssessmentCompleted(AssessmentCompleted),
    AchievementAwarded(AchievementAwarded),
    SubmissionCreated(SubmissionCreated),
    FileScanned(FileScanned),
    SubmissionReviewed(SubmissionReviewed),
}

/// One lesson's progress was written by a single update.
#[derive(Debug, Clone)]
pub struct LessonProgressed {
    pub user_id: Uuid,
    /// The row as it is after the write.
    pub progress: lesson_progress::Model,
    pub course: CourseRollup,
    /// The course's instructor, when still an active instructor (read with the lesson).
    pub instructor_id: Option<Uuid>,
    /// The student had not learned yet today (UTC) before this update.
    pub first_activity_today: bool,
}

/// A batch of offline progress events was applied (some may have been duplicates or refused).
#[derive(Debug, Clone)]
pub struct ProgressBatchApplied {
    pub user_id: Uuid,
    pub received: usize,
    pub applied: usize,
    pub duplicates: usize,
    pub rejected: usize,
    /// Rollups of the courses an applied event touched.
    pub courses: Vec<CourseRollup>,
    /// Whether any applied event completed a lesson.
    pub completed_lessons: bool,
}

/// A student's enrollment became complete: every lesson of the course is completed.
#[derive(Debug, Clone)]
pub struct CourseCompleted {
    pub user_id: Uuid,
    pub course_id: Uuid,
    pub at: DateTime<Utc>,
    pub cause: CompletionCause,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompletionCause {
    /// The student completed the last lesson.
    Progress,
    /// The course's outline lost the lessons the student had left.
    OutlineShrunk { by: Uuid },
}

/// Lessons were removed from a course (a lesson or a whole module was deleted by `by`), so
/// enrollments whose remaining lessons were all completed are complete now.
#[derive(Debug, Clone)]
pub struct OutlineShrunk {
    pub course_id: Uuid,
    pub by: Uuid,
}

/// The assessment tool delivered results that completed an assessment (skill levels stored).
#[derive(Debug, Clone)]
pub struct AssessmentCompleted {
    /// The assessment as completed by this delivery.
    pub assessment: assessment::Model,
    pub client_id: Uuid,
    pub external_id: String,
    pub overall_score: f64,
    pub skills: usize,
}

/// A student earned an achievement (exactly once: the award row is unique).
#[derive(Debug, Clone)]
pub struct AchievementAwarded {
    pub user_id: Uuid,
    pub achievement: achievement::Model,
    pub awarded_at: DateTime<Utc>,
    /// The student's value of the achievement's metric when it was earned.
    pub value: f64,
}

/// A student handed in a project version. Files scanned during the upload carry their verdict;
/// when one was infected the submission is already `rejected`.
#[derive(Debug, Clone)]
pub struct SubmissionCreated {
    pub submission: submission::Model,
    pub files: Vec<submission_file::Model>,
    pub lesson_title: String,
}

/// A scan that could not run during the upload ran later. `file.scan_status` is the verdict;
/// when it is `infected`, `submission` is the submission as rejected by it.
#[derive(Debug, Clone)]
pub struct FileScanned {
    pub file: submission_file::Model,
    pub submission: submission::Model,
    /// Set when this verdict rejected the submission (its first infected file).
    pub rejected: bool,
}

/// An instructor (or admin) approved a submission or asked for changes.
#[derive(Debug, Clone)]
pub struct SubmissionReviewed {
    pub submission: submission::Model,
    pub lesson_title: String,
    /// The student's approved projects (distinct lessons) after this review.
    pub approved_projects: u64,
}

/// A course's completion for one student, computed from its current outline.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct CourseRollup {
    pub course_id: Uuid,
    pub completed_lessons: u64,
    pub total_lessons: u64,
    /// 0 to 100, one decimal.
    pub percent: f64,
    /// When the student first finished every lesson; set once, never cleared.
    pub completed_at: Option<DateTime<Utc>>,
}

/// `done` of `total` as a percentage with one decimal (0 for an empty course).
pub fn percent(done: u64, total: u64) -> f64 {
    if total == 0 { 0.0 } else { ((done as f64) * 1000.0 / (total as f64)).round() / 10.0 }
}

#[derive(Debug, thiserror::Error)]
pub enum ReactionError {
    #[error("database")]
    Db(#[from] DbErr),
    #[error("queueing an email")]
    Email(#[source] Box<dyn std::error::Error + Send + Sync>),
}

/// Turns facts into their consequences inside the caller's transaction. Effects that must wait
/// for the commit (live events, worker wake-ups) are registered on `txn`.
pub trait Reactor: Send + Sync {
    fn react<'a>(
        &'a self,
        txn: &'a WriteTxn,
        ctx: &'a RequestContext,
        facts: Vec<Fact>,
    ) -> BoxFuture<'a, Result<(), ReactionError>>;
}
